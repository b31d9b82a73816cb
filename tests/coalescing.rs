//! Write coalescing: a handler call's first write to its own connection
//! is sent at once, later ones are held and go out in one `send` when the
//! call returns (or at `flush`, `close`, `shutdown_write`); an abort drops
//! what is held.
#![cfg(feature = "server")]

mod util;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use edgeloop::conn::{Conn, ConnOptions, Handler};
use edgeloop::server::ServerOptions;
use edgeloop::{Backend, Trigger};
use util::connect;
use util::server::start;

/// One reply line per request line: `x` → `x!`.
struct Lines;

impl Handler for Lines {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        for line in data.split_inclusive(|&b| b == b'\n') {
            conn.write(&line[..line.len() - 1]);
            conn.write(b"!\n");
        }
    }
}

fn on(backend: Backend, trigger: Trigger) -> ServerOptions {
    ServerOptions::default()
        .with_backend(backend)
        .with_conn(ConnOptions::with_trigger(trigger))
}

#[test]
fn replies_to_pipelined_requests_cost_at_most_two_sends_per_read() {
    const LINES: usize = 2000;
    for (backend, trigger) in [
        (Backend::Epoll, Trigger::Edge),
        (Backend::Epoll, Trigger::Level),
        (Backend::Poll, Trigger::Level),
    ] {
        let server = start(|| Lines, on(backend, trigger));
        let mut client = connect(server.addr);
        let request: String = (0..LINES).map(|i| format!("{i}\n")).collect();
        client.write_all(request.as_bytes()).unwrap();
        let expected: String = (0..LINES).map(|i| format!("{i}!\n")).collect();
        let mut reply = vec![0; expected.len()];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(String::from_utf8(reply).unwrap(), expected);
        drop(client);
        let (stats, _) = server.stop();
        // 4,000 writes; without coalescing that is 4,000 sends.
        assert!(
            stats.writes <= 2 * stats.reads,
            "{backend:?}/{trigger:?}: {} sends for {} reads",
            stats.writes,
            stats.reads
        );
    }
}

/// Writes `a`, `b`, `c` and then does what the request line says.
struct ThenAct {
    queued: Arc<AtomicUsize>,
}

impl Handler for ThenAct {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(b"a");
        conn.write(b"b");
        conn.write(b"c");
        self.queued.store(conn.queued(), Ordering::SeqCst);
        match data {
            b"close\n" => conn.close(),
            b"shutdown\n" => conn.shutdown_write(),
            b"abort\n" => conn.abort(),
            b"flush\n" => {
                conn.flush();
                conn.write(b"d");
            }
            _ => {}
        }
    }
}

/// Sends `request` and reads until EOF or `want` bytes.
fn exchange(request: &str, want: usize) -> (Vec<u8>, usize, edgeloop::conn::ConnStats) {
    let queued = Arc::new(AtomicUsize::new(0));
    let q = queued.clone();
    let server = start(move || ThenAct { queued: q }, ServerOptions::default());
    let mut client = connect(server.addr);
    client.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut buf = [0; 16];
    while reply.len() < want {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
    }
    drop(client);
    let (stats, _) = server.stop();
    (reply, queued.load(Ordering::SeqCst), stats)
}

#[test]
fn what_a_call_holds_is_sent_before_a_close_or_a_shutdown() {
    for request in ["close\n", "shutdown\n"] {
        let (reply, _, _) = exchange(request, usize::MAX);
        assert_eq!(reply, b"abc", "{request:?}");
    }
}

#[test]
fn held_bytes_count_as_queued() {
    // `a` went out at once; `b` and `c` are held until the call returns.
    let (reply, queued, stats) = exchange("x\n", 3);
    assert_eq!(reply, b"abc");
    assert_eq!(queued, 2);
    assert_eq!(stats.writes, 2);
}

#[test]
fn flush_sends_what_is_held_at_once() {
    let (reply, _, stats) = exchange("flush\n", 4);
    assert_eq!(reply, b"abcd");
    // `a`; `bc` at the flush; `d` when the call returns.
    assert_eq!(stats.writes, 3);
}

#[test]
fn an_abort_drops_what_is_held() {
    let (reply, _, _) = exchange("abort\n", usize::MAX);
    assert_eq!(reply, b"a", "only the first write, sent at once, gets out");
}

#[test]
fn held_bytes_the_socket_takes_only_part_of_are_queued_whole() {
    // A send buffer far smaller than what one call holds: the send of the
    // held bytes at the call's end is partial, and the rest is queued.
    use edgeloop::Reactor;
    use edgeloop::conn::Connections;
    use nix::sys::socket::{setsockopt, sockopt};
    use std::os::unix::net::UnixStream;
    const LINES: usize = 3000;
    let mut reactor = Reactor::new().unwrap();
    let set = reactor
        .install(Connections::new(Lines, ConnOptions::default()).unwrap())
        .unwrap();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    setsockopt(&ours, sockopt::SndBuf, &4096).unwrap();
    let (connections, core) = reactor.source_mut(set);
    connections.attach(core, ours.into()).unwrap();
    let request: String = (0..LINES).map(|i| format!("{i}\n")).collect();
    theirs.write_all(request.as_bytes()).unwrap();
    let expected: String = (0..LINES).map(|i| format!("{i}!\n")).collect();
    theirs.set_nonblocking(true).unwrap();
    let mut reply = Vec::new();
    for _ in 0..10_000 {
        reactor
            .run_once(Some(std::time::Duration::from_millis(1)))
            .unwrap();
        let mut buf = [0; 4096];
        while let Ok(n @ 1..) = theirs.read(&mut buf) {
            reply.extend_from_slice(&buf[..n]);
        }
        if reply.len() >= expected.len() {
            break;
        }
    }
    assert_eq!(String::from_utf8(reply).unwrap(), expected);
    assert!(reactor.source(set).stats().partial_writes > 0);
}
