//! Pairs (`Conn::pair_with`): two connections of a set as one stream, as
//! a proxy joins a client and its upstream. Each test runs a five-line
//! proxy in process, a client, and a plain upstream listener whose
//! accepted side the test holds, so both ends of the stream are in hand.
#![cfg(feature = "server")]

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edgeloop::Trigger;
use edgeloop::conn::{Conn, ConnId, ConnOptions, ConnectOptions, Handler, Others};
use edgeloop::server::ServerOptions;
use util::server::{ServerThread, start};

#[derive(Default)]
enum Side {
    #[default]
    Client,
    Upstream(u32),
}

/// The proxy: each accepted connection opens its upstream and pairs.
struct Proxy {
    upstream: SocketAddr,
    connect: ConnectOptions,
    /// Failed connects, and the tag of the session each handed back.
    failed: Arc<AtomicUsize>,
}

impl Handler for Proxy {
    type Session = Side;
    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        if let Side::Client = conn.session() {
            let id = conn
                .connect(self.upstream, self.connect, Side::Upstream(7))
                .unwrap();
            conn.pair_with(id).unwrap();
            assert_eq!(conn.partner(), Some(id));
        }
    }
    fn on_data(&mut self, _: &mut Conn<'_, Self>, _: &[u8]) {
        panic!("a paired connection's bytes go to its partner, not to on_data");
    }
    fn on_connect_failed(
        &mut self,
        _: &mut Others<'_, Self>,
        _: ConnId,
        session: Side,
        _: std::io::Error,
    ) {
        assert!(
            matches!(session, Side::Upstream(7)),
            "the session given to connect"
        );
        self.failed.fetch_add(1, Ordering::SeqCst);
    }
}

const HIGH_WATER: usize = 64 * 1024;

fn options(trigger: Trigger) -> ServerOptions {
    let mut options = ServerOptions::default();
    options.conn = ConnOptions::with_trigger(trigger).water_marks(HIGH_WATER);
    options
}

/// A proxy to `upstream` with `options`; its failed-connect count.
fn proxy(
    upstream: SocketAddr,
    connect: ConnectOptions,
    options: ServerOptions,
) -> (ServerThread, Arc<AtomicUsize>) {
    let failed = Arc::new(AtomicUsize::new(0));
    let counter = failed.clone();
    let server = start(
        move || Proxy {
            upstream,
            connect,
            failed: counter,
        },
        options,
    );
    (server, failed)
}

/// A client through `server`, and the upstream side the proxy opened for
/// it (accepted from `upstream`).
fn through(server: &ServerThread, upstream: &TcpListener) -> (TcpStream, TcpStream) {
    let client = util::connect(server.addr);
    let (accepted, _) = upstream.accept().unwrap();
    accepted
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    (client, accepted)
}

fn upstream_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// `len` bytes of a pattern that `seed` picks: a byte lost, repeated or
/// reordered anywhere shows.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes all of `data` on a thread, then shuts the write side down.
fn send_then_shut(stream: &TcpStream, data: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut w = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    })
}

fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    if let Err(e) = stream.read_to_end(&mut got) {
        panic!("after {} bytes: {e}", got.len());
    }
    got
}

/// 8 MiB each way at once, both triggers: every byte arrives, in order,
/// and each side's EOF reaches the other only after its last byte. Both
/// connections of the pair are closed afterwards.
#[test]
fn a_pair_carries_both_directions_byte_exact() {
    for trigger in [Trigger::Edge, Trigger::Level] {
        let (upstream, addr) = upstream_listener();
        let (server, _) = proxy(addr, ConnectOptions::default(), options(trigger));
        let (mut client, mut accepted) = through(&server, &upstream);
        let (up, down) = (pattern(1, 8 << 20), pattern(2, 8 << 20));
        let writers = [
            send_then_shut(&client, up.clone()),
            send_then_shut(&accepted, down.clone()),
        ];
        let at_upstream = std::thread::spawn(move || read_all(&mut accepted));
        let at_client = read_all(&mut client);
        assert!(at_client == down, "{trigger:?}: upstream to client");
        assert!(
            at_upstream.join().unwrap() == up,
            "{trigger:?}: client to upstream"
        );
        for writer in writers {
            writer.join().unwrap();
        }
        let (stats, open) = server.stop();
        assert_eq!(
            open, 0,
            "{trigger:?}: both sides closed once both were done"
        );
        assert_eq!((stats.resets, stats.budget_aborts), (0, 0));
    }
}

/// A half-close passes through, in either order: the side that shut down
/// first still gets everything the other sends after it, then EOF.
#[test]
fn a_half_close_passes_through_in_either_order() {
    for client_first in [true, false] {
        let (upstream, addr) = upstream_listener();
        let (server, _) = proxy(addr, ConnectOptions::default(), options(Trigger::Edge));
        let (mut client, mut accepted) = through(&server, &upstream);
        let (first, second) = if client_first {
            (&mut client, &mut accepted)
        } else {
            (&mut accepted, &mut client)
        };
        first.write_all(b"request").unwrap();
        first.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_all(second), b"request", "client first: {client_first}");
        // The other way is still open: a reply after the EOF gets through.
        let reply = pattern(3, 1 << 20);
        second.write_all(&reply).unwrap();
        second.shutdown(Shutdown::Write).unwrap();
        assert!(read_all(first) == reply, "client first: {client_first}");
        let (_, open) = server.stop();
        assert_eq!(open, 0);
    }
}

/// A reset on either side reaches the other as a reset, not as an EOF
/// that would look like the end of a complete stream.
#[test]
fn a_reset_on_one_side_resets_the_other() {
    for client_resets in [true, false] {
        let (upstream, addr) = upstream_listener();
        let (server, _) = proxy(addr, ConnectOptions::default(), options(Trigger::Edge));
        let (mut client, mut accepted) = through(&server, &upstream);
        client.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        accepted.read_exact(&mut one).unwrap(); // the pair is up
        let (resetting, other) = if client_resets {
            (client, &mut accepted)
        } else {
            (accepted, &mut client)
        };
        util::set_linger_zero(&resetting);
        drop(resetting);
        let error = other.read(&mut one).unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::ConnectionReset,
            "client resets: {client_resets}"
        );
        let (stats, open) = server.stop();
        assert_eq!((stats.resets, open), (1, 0));
    }
}

/// A client that does not read: what the upstream sends queues on the
/// client's side only up to the high-water mark, and then the *upstream*
/// is paused (not the client: its own bytes still go up). Once the client
/// reads, everything arrives.
#[test]
fn a_client_that_does_not_read_pauses_only_its_upstream() {
    let (upstream, addr) = upstream_listener();
    let (server, _) = proxy(addr, ConnectOptions::default(), options(Trigger::Edge));
    let mut client = util::connect_small_rcvbuf(server.addr, 16 * 1024);
    let (mut accepted, _) = upstream.accept().unwrap();
    accepted
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The upstream offers 64 MiB; with the client not reading, only the
    // sockets' buffers and one high-water mark can take any of it.
    let down = pattern(4, 64 << 20);
    let writer = send_then_shut(&accepted, down.clone());
    std::thread::sleep(Duration::from_millis(500));
    // The other direction is not paused.
    client.write_all(b"still talking").unwrap();
    let mut got = [0u8; 13];
    accepted.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still talking");
    let at_client = read_all(&mut client);
    assert!(at_client == down, "every byte, once the client reads");
    writer.join().unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (stats, _) = server.stop();
    assert!(
        stats.peak_queued <= HIGH_WATER + 64 * 1024,
        "the proxy held {} bytes for a client that did not read (high water {HIGH_WATER})",
        stats.peak_queued
    );
    assert!(stats.backpressure_pauses >= 1);
    assert_eq!(stats.budget_aborts, 0);
}

/// An upstream that refuses, and one that never answers (a full backlog,
/// past the connect timeout): the client is reset, and the handler gets
/// the failed connection's session back.
#[test]
fn a_failed_upstream_connect_resets_the_client() {
    let refused = {
        let (listener, addr) = upstream_listener();
        drop(listener);
        addr
    };
    // Backlog 1 and nobody accepting: once it is full the kernel drops
    // SYNs, and a connect hangs until our timeout.
    let full =
        edgeloop::conn::tcp_listener("127.0.0.1:0".parse().unwrap(), Some(1), false).unwrap();
    let hanging = full.local_addr().unwrap();
    let _fill: Vec<TcpStream> = (0..4).filter_map(|_| try_connect(hanging)).collect();
    for addr in [refused, hanging] {
        let connect = ConnectOptions::default().with_timeout(Some(Duration::from_millis(200)));
        let (server, failed) = proxy(addr, connect, options(Trigger::Level));
        let mut client = util::connect(server.addr);
        let started = Instant::now();
        let error = client.read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{addr}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(failed.load(Ordering::SeqCst), 1, "{addr}");
        let (stats, open) = server.stop();
        assert_eq!((stats.connect_failures, open), (1, 0), "{addr}");
    }
}

/// A connect that gives up after 100 ms (one to a full backlog hangs).
fn try_connect(addr: SocketAddr) -> Option<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()
}

/// Idle time counts the pair's traffic either way: a client that sends
/// nothing while its upstream trickles a byte every 100 ms is not idle at
/// a 400 ms timeout; once both are quiet the pair is closed.
#[test]
fn idle_time_counts_traffic_either_way() {
    let (upstream, addr) = upstream_listener();
    let mut options = options(Trigger::Edge);
    options.conn.idle_timeout = Some(Duration::from_millis(400));
    let (server, _) = proxy(addr, ConnectOptions::default(), options);
    let (mut client, mut accepted) = through(&server, &upstream);
    let trickle = std::thread::spawn(move || {
        for _ in 0..12 {
            accepted.write_all(b"t").unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        accepted
    });
    let mut got = [0u8; 12];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"tttttttttttt", "open while the upstream talks");
    let mut accepted = trickle.join().unwrap();
    let quiet = Instant::now();
    assert_eq!(client.read(&mut [0u8; 1]).unwrap(), 0, "closed once idle");
    assert_eq!(accepted.read(&mut [0u8; 1]).unwrap(), 0);
    assert!(quiet.elapsed() >= Duration::from_millis(250));
    let (stats, open) = server.stop();
    assert_eq!((stats.idle_timeouts >= 1, open), (true, 0));
}

/// Pairing refuses what cannot be a pair, with an error that says so.
#[test]
fn pairing_refuses_self_a_second_partner_and_a_gone_connection() {
    struct Refusals;
    impl Handler for Refusals {
        type Session = ();
        fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
            let me = conn.id();
            assert_eq!(
                conn.pair_with(me).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
            let others: Vec<ConnId> = conn.ids().filter(|&id| id != me).collect();
            if let Some(&other) = others.first() {
                conn.pair_with(other).unwrap();
                assert_eq!(
                    conn.pair_with(other).unwrap_err().kind(),
                    ErrorKind::InvalidInput
                );
            }
        }
        fn on_data(&mut self, _: &mut Conn<'_, Self>, _: &[u8]) {}
    }
    let (mut reactor, set, addr) = util::listening_set(Refusals, ConnOptions::default());
    let (_a, _b) = (
        TcpStream::connect(addr).unwrap(),
        TcpStream::connect(addr).unwrap(),
    );
    while reactor.source(set).len() < 2 {
        reactor.run_once(Some(Duration::from_millis(100))).unwrap();
    }
    let ids: Vec<ConnId> = reactor.source(set).ids().collect();
    let (connections, core) = reactor.source_mut(set);
    connections.abort_all(core);
    let error = reactor.source_mut(set).0.pair(ids[0], ids[1]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
}

/// The client sends its request and shuts down; the upstream answers with
/// more than the client's side takes, then closes. The upstream side is
/// paused (the client's queue is past its high-water mark) when the
/// upstream's FIN arrives: the hangup that raises (our SHUT_WR and its FIN
/// meeting) is not a dead socket, and every byte still reaches the client,
/// then EOF. Unix socket pairs, whose buffers do not grow, make the pause
/// certain.
#[test]
fn a_hangup_behind_unread_data_is_not_a_reset() {
    use edgeloop::conn::Connections;
    use std::os::unix::net::UnixStream;
    struct Forward;
    impl Handler for Forward {
        type Session = ();
        fn on_data(&mut self, _: &mut Conn<'_, Self>, _: &[u8]) {
            panic!("paired");
        }
    }
    for trigger in [Trigger::Edge, Trigger::Level] {
        let mut reactor = util::reactor(edgeloop::Backend::Epoll);
        let options = ConnOptions::with_trigger(trigger).water_marks(HIGH_WATER);
        let set = reactor
            .install(Connections::new(Forward, options).unwrap())
            .unwrap();
        let (a, mut client) = UnixStream::pair().unwrap();
        let (b, mut upstream) = UnixStream::pair().unwrap();
        let (connections, core) = reactor.source_mut(set);
        let ida = connections.attach(core, a.into()).unwrap();
        let idb = connections.attach(core, b.into()).unwrap();
        connections.pair(ida, idb).unwrap();
        let turn = |reactor: &mut edgeloop::Reactor| {
            reactor.run_once(Some(Duration::from_millis(10))).unwrap();
        };
        client.write_all(b"request").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        upstream.set_nonblocking(true).unwrap();
        let mut request = Vec::new();
        while upstream.read_to_end(&mut request).is_err() {
            turn(&mut reactor);
        }
        assert_eq!(request, b"request", "{trigger:?}");
        // The upstream writes until nothing more fits anywhere: the
        // client does not read, so the proxy pauses the upstream side.
        let reply = pattern(6, 8 << 20);
        let mut written = 0;
        let mut stuck = 0;
        while stuck < 20 {
            match upstream.write(&reply[written..]) {
                Ok(n) => {
                    written += n;
                    stuck = 0;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => stuck += 1,
                Err(e) => panic!("{e}"),
            }
            turn(&mut reactor);
        }
        assert!(written < reply.len(), "{trigger:?}: the proxy paused");
        drop(upstream); // its FIN, behind bytes the proxy has not read
        for _ in 0..10 {
            turn(&mut reactor);
        }
        client.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match client.read_to_end(&mut got) {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock => turn(&mut reactor),
                Err(e) => panic!("{trigger:?}: after {} bytes: {e}", got.len()),
            }
            assert!(Instant::now() < deadline, "{trigger:?}: stuck");
        }
        assert!(
            got == reply[..written],
            "{trigger:?}: {} of {written}",
            got.len()
        );
        let connections = reactor.source(set);
        assert_eq!((connections.stats().resets, connections.len()), (0, 0));
    }
}
