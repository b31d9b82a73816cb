//! Idle timeouts and lingering closes (one stamp per connection, one sweep
//! per set): a connection closes after its deadline and not before,
//! activity postpones it, thousands that went quiet together close within
//! the bound with few wakeups, and closing and connecting connections keep
//! their own deadlines.
//!
//! "Not before" is asserted exactly (the mechanism never closes early,
//! whatever the load). "Within the bound" is asserted with a generous
//! margin, since a busy machine delays every turn.
#![cfg(feature = "server")]

mod util;

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use edgeloop::conn::{
    CloseReason, Conn, ConnId, ConnOptions, ConnectOptions, Connections, Handler, Others,
};
use edgeloop::{Backend, Reactor, SourceId, Trigger};

/// What a load-heavy machine may add to a deadline; the mechanism's own
/// bound is a few milliseconds.
const MARGIN: Duration = Duration::from_secs(3);

/// Echoes, and records every close.
#[derive(Default)]
struct Echo {
    closed: Vec<(ConnId, Instant, String)>,
    failed: Vec<(Instant, ErrorKind)>,
    /// Bytes to write and then close with, on open.
    flood_and_close: usize,
}

impl Handler for Echo {
    type Session = ();
    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        if self.flood_and_close > 0 {
            conn.write(&vec![7u8; self.flood_and_close]);
            conn.close();
        }
    }
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(data);
    }
    fn on_close(&mut self, _: &mut Others<'_, Self>, id: ConnId, _: (), reason: CloseReason) {
        self.closed
            .push((id, Instant::now(), format!("{reason:?}")));
    }
    fn on_connect_failed(&mut self, _: &mut Others<'_, Self>, _: ConnId, _: (), error: io::Error) {
        self.failed.push((Instant::now(), error.kind()));
    }
}

fn set(
    trigger: Trigger,
    options: ConnOptions,
    handler: Echo,
) -> (Reactor, SourceId<Connections<Echo>>) {
    let mut reactor = util::reactor(Backend::Epoll);
    let mut options = options;
    options.trigger = trigger;
    let set = Connections::new(handler, options).unwrap();
    let set = reactor.install(set).unwrap();
    (reactor, set)
}

/// Attaches the server end of a fresh pair; the client end and when.
fn attach(reactor: &mut Reactor, set: SourceId<Connections<Echo>>) -> (UnixStream, Instant) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    theirs.set_nonblocking(true).unwrap();
    let at = Instant::now();
    let (connections, core) = reactor.source_mut(set);
    connections.attach(core, OwnedFd::from(ours)).unwrap();
    (theirs, at)
}

/// Reads what the server sent without blocking: true at EOF.
fn at_eof(client: &mut UnixStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn an_idle_connection_closes_after_its_timeout_and_not_before_and_activity_postpones_it() {
    let timeout = Duration::from_millis(300);
    for trigger in [Trigger::Level, Trigger::Edge] {
        let options = ConnOptions::default().with_idle_timeout(Some(timeout));
        let (mut reactor, set) = set(trigger, options, Echo::default());
        let (mut quiet, quiet_opened) = attach(&mut reactor, set);
        let (mut busy, _) = attach(&mut reactor, set);
        let start = Instant::now();
        let mut last_write = start;
        let (mut quiet_eof, mut busy_eof) = (None, None);
        while (quiet_eof.is_none() || busy_eof.is_none())
            && start.elapsed() < Duration::from_secs(10)
        {
            // The busy client sends every 100 ms for the first second.
            if start.elapsed() < Duration::from_secs(1)
                && last_write.elapsed() >= Duration::from_millis(100)
            {
                last_write = Instant::now();
                busy.write_all(b"x").unwrap();
            }
            reactor.run_once(Some(Duration::from_millis(10))).unwrap();
            if quiet_eof.is_none() && at_eof(&mut quiet) {
                quiet_eof = Some(Instant::now());
            }
            if busy_eof.is_none() && at_eof(&mut busy) {
                busy_eof = Some(Instant::now());
            }
        }
        let quiet_eof = quiet_eof.expect("the quiet connection was closed");
        let busy_eof = busy_eof.expect("the busy connection was closed once quiet");
        let quiet_idle = quiet_eof - quiet_opened;
        assert!(
            quiet_idle >= timeout,
            "{trigger:?}: quiet closed early, after {quiet_idle:?}"
        );
        assert!(
            quiet_idle <= timeout + MARGIN,
            "{trigger:?}: quiet closed after {quiet_idle:?}"
        );
        assert!(
            busy_eof - start >= Duration::from_secs(1),
            "{trigger:?}: the busy connection was closed while it talked"
        );
        let busy_idle = busy_eof - last_write;
        assert!(
            busy_idle >= timeout,
            "{trigger:?}: busy closed early, {busy_idle:?} after its last byte"
        );
        assert!(
            busy_idle <= timeout + MARGIN,
            "{trigger:?}: busy closed after {busy_idle:?}"
        );
        assert_eq!(reactor.source(set).stats().idle_timeouts, 2, "{trigger:?}");
    }
}

/// 5,000 connections that went quiet together (10,000 fds, in the fd
/// cap): every one closes no earlier than its timeout, all within the
/// bound, then each is aborted by its linger (the peers never close), and
/// the loop wakes for a handful of sweeps, not for a timer per connection.
#[test]
fn five_thousand_idle_connections_all_close_within_the_bound_with_few_wakeups() {
    const N: usize = 5_000;
    let timeout = Duration::from_millis(500);
    let linger = Duration::from_millis(200);
    let options = ConnOptions::default()
        .with_idle_timeout(Some(timeout))
        .with_linger(linger);
    let (mut reactor, set) = set(Trigger::Edge, options, Echo::default());
    let clients: Vec<(UnixStream, Instant)> = (0..N).map(|_| attach(&mut reactor, set)).collect();
    let spread = clients[N - 1].1 - clients[0].1;
    let mut eof: Vec<Option<Instant>> = vec![None; N];
    let mut clients = clients;
    let before = *reactor.core().stats();
    let start = Instant::now();
    while (!reactor.source(set).is_empty() || eof.iter().any(Option::is_none))
        && start.elapsed() < Duration::from_secs(30)
    {
        reactor.run_once(Some(Duration::from_millis(50))).unwrap();
        for (i, (client, _)) in clients.iter_mut().enumerate() {
            if eof[i].is_none() && at_eof(client) {
                eof[i] = Some(Instant::now());
            }
        }
    }
    let stats = reactor.core().stats().since(&before);
    let connections = reactor.source(set);
    assert!(connections.is_empty(), "{} still open", connections.len());
    assert_eq!(connections.stats().idle_timeouts, N as u64);
    for (i, (_, opened)) in clients.iter().enumerate() {
        let eof = eof[i].unwrap_or_else(|| panic!("client {i} never saw EOF"));
        let idle = eof - *opened;
        assert!(idle >= timeout, "client {i} closed early, after {idle:?}");
        assert!(idle <= timeout + MARGIN, "client {i} closed after {idle:?}");
    }
    // Each was aborted by its linger, which starts at the idle close: no
    // earlier than its timeout plus its linger after it opened (the
    // lingering connections kept their own deadline).
    let handler = connections.handler();
    assert_eq!(handler.closed.len(), N);
    for (id, closed, reason) in &handler.closed {
        assert_eq!(reason, "Aborted", "{id:?}");
        let opened = clients[id.index()].1;
        assert!(
            *closed >= opened + timeout + linger,
            "{id:?} aborted before its linger, {:?} after it opened",
            *closed - opened
        );
    }
    // One sweep per slack (7 ms at 500 ms) over the span the deadlines
    // fall in, per phase (idle, linger), plus a few: nothing like one
    // timer per connection.
    let sweeps_bound = 2 * (spread.as_millis() as u64 / 3 + 1) + 20;
    println!(
        "{N} connections attached over {spread:?}: {} timers fired, {} waits",
        stats.timers_fired, stats.waits
    );
    assert!(
        stats.timers_fired <= sweeps_bound,
        "{} sweeps for {N} connections attached over {spread:?}",
        stats.timers_fired
    );
}

/// A closing connection whose peer never reads cannot linger forever: its
/// queued output makes no progress, and `linger` after the last progress
/// it is aborted, although it never flushed: the linger clock does not
/// wait for a flush that never comes.
#[test]
fn a_closing_connection_whose_peer_never_reads_is_aborted_after_linger() {
    let linger = Duration::from_millis(300);
    for trigger in [Trigger::Level, Trigger::Edge] {
        let handler = Echo {
            flood_and_close: 16 << 20,
            ..Echo::default()
        };
        let options = ConnOptions::default().with_linger(linger);
        let (mut reactor, set) = set(trigger, options, handler);
        let (_never_reads, opened) = attach(&mut reactor, set);
        let start = Instant::now();
        while !reactor.source(set).is_empty() && start.elapsed() < Duration::from_secs(10) {
            reactor.run_once(Some(Duration::from_millis(50))).unwrap();
        }
        let connections = reactor.source(set);
        assert!(
            connections.is_empty(),
            "{trigger:?}: still lingering with its queue"
        );
        let (_, closed, reason) = &connections.handler().closed[0];
        assert_eq!(reason, "Aborted", "{trigger:?}");
        assert!(*closed - opened >= linger, "{trigger:?}: aborted early");
        assert!(
            *closed - opened <= linger + MARGIN,
            "{trigger:?}: aborted late"
        );
    }
}

/// A connection still connecting is not idle: its connect timeout rules,
/// however short the idle timeout.
#[test]
fn a_connecting_connection_keeps_its_connect_timeout_under_a_shorter_idle_timeout() {
    // Backlog 1 and nobody accepting: later connects hang in SYN_SENT.
    let listener =
        edgeloop::conn::tcp_listener("127.0.0.1:0".parse().unwrap(), Some(1), false).unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ConnOptions::default().with_idle_timeout(Some(Duration::from_millis(50)));
    let (mut reactor, set) = set(Trigger::Edge, options, Echo::default());
    let connect_timeout = Duration::from_millis(600);
    let started = Instant::now();
    const TRIES: usize = 6;
    for _ in 0..TRIES {
        let (connections, core) = reactor.source_mut(set);
        let options = ConnectOptions::default().with_timeout(Some(connect_timeout));
        connections.connect(core, addr, options, ()).unwrap();
    }
    while reactor.source(set).handler().failed.is_empty()
        && started.elapsed() < Duration::from_secs(20)
    {
        reactor.run_once(Some(Duration::from_millis(50))).unwrap();
    }
    let failed = &reactor.source(set).handler().failed;
    assert!(!failed.is_empty(), "no connect timed out");
    for (at, kind) in failed {
        assert_eq!(*kind, ErrorKind::TimedOut);
        assert!(
            *at - started >= connect_timeout,
            "failed early, after {:?}",
            *at - started
        );
    }
    drop(listener);
}

/// Output moving is activity: a download to a client that sends nothing
/// outlives an idle timeout shorter than the transfer (it is not closed
/// as idle while its queue drains), and arrives whole.
#[test]
fn a_download_to_a_silent_client_is_not_idle() {
    const CHUNK: usize = 64 * 1024;
    /// 8 MiB: more than the kernel's socket buffers take, so most of it
    /// waits in the connection's queue.
    const CHUNKS: usize = 128;
    /// Queues the download on open, closes once it is all sent.
    struct Download;
    impl Handler for Download {
        type Session = ();
        fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
            for _ in 0..CHUNKS {
                conn.write(&[b'd'; CHUNK]);
            }
        }
        fn on_drain(&mut self, conn: &mut Conn<'_, Self>) {
            conn.close();
        }
        fn on_data(&mut self, _: &mut Conn<'_, Self>, _: &[u8]) {}
    }
    let options = ConnOptions::default().with_idle_timeout(Some(Duration::from_millis(200)));
    let (mut reactor, set, addr) = util::listening_set(Download, options);
    // A slow reader: 64 KiB every 5 ms, about 0.65 s for the 8 MiB,
    // three idle timeouts.
    let reader = std::thread::spawn(move || {
        let mut client = util::connect(addr);
        let mut got = 0;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = client.read(&mut buf).unwrap();
            if n == 0 {
                return got;
            }
            got += n;
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reader.is_finished() {
        assert!(
            Instant::now() < deadline,
            "not done in 20 s: {:?} queued {}",
            reactor.source(set).stats(),
            reactor.source(set).queued()
        );
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    assert_eq!(reader.join().unwrap(), CHUNK * CHUNKS, "the whole download");
    assert_eq!(reactor.source(set).stats().idle_timeouts, 0);
}
