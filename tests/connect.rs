//! Outbound connections: established ones open like accepted ones; a
//! refused or timed-out one is reported once, with its error, and costs no
//! spin; thousands go out from several source addresses.
#![cfg(feature = "server")]

mod util;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use edgeloop::conn::{
    CloseReason, Conn, ConnId, ConnOptions, ConnectOptions, Connections, Handler, Others,
};
use edgeloop::server::ServerOptions;
use edgeloop::{Backend, Reactor, SourceId, Trigger};
use util::server::{Echo, start};

/// Sends a message naming its connection on open; keeps what comes back.
#[derive(Default)]
struct Client {
    opened: usize,
    failed: Vec<io::ErrorKind>,
    /// The sessions the failed connects handed back.
    failed_sessions: Vec<Vec<u8>>,
    closed: usize,
    /// Echoes complete, by source address.
    echoed_from: HashMap<IpAddr, usize>,
}

fn message(id: ConnId) -> Vec<u8> {
    format!("<{}>", id.index()).into_bytes()
}

impl Handler for Client {
    type Session = Vec<u8>;

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        self.opened += 1;
        let m = message(conn.id());
        conn.write(&m);
    }

    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.session().extend_from_slice(data);
        let want = message(conn.id());
        if conn.session().len() >= want.len() {
            assert_eq!(
                *conn.session(),
                want,
                "an echo of another connection's message"
            );
            let local = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(
                std::os::fd::AsRawFd::as_raw_fd(&conn.fd()),
            )
            .unwrap();
            let ip = local.as_sockaddr_in().map(|a| IpAddr::V4(a.ip())).unwrap();
            *self.echoed_from.entry(ip).or_default() += 1;
        }
    }

    fn on_connect_failed(
        &mut self,
        _: &mut Others<'_, Self>,
        _: ConnId,
        session: Vec<u8>,
        error: io::Error,
    ) {
        self.failed.push(error.kind());
        self.failed_sessions.push(session);
    }

    fn on_close(&mut self, _: &mut Others<'_, Self>, _: ConnId, _: Vec<u8>, _: CloseReason) {
        self.closed += 1;
    }
}

fn client(trigger: Trigger) -> (Reactor, SourceId<Connections<Client>>) {
    let mut reactor = util::reactor(Backend::Epoll);
    let set = Connections::new(Client::default(), ConnOptions::with_trigger(trigger)).unwrap();
    let set = reactor.install(set).unwrap();
    (reactor, set)
}

/// Runs until `done` or 20 s.
fn run_until(reactor: &mut Reactor, mut done: impl FnMut(&Reactor) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(reactor) {
        assert!(Instant::now() < deadline, "not done in 20 s");
        reactor.run_once(Some(Duration::from_millis(100))).unwrap();
    }
}

#[test]
fn an_outbound_connection_opens_like_an_accepted_one_and_echoes() {
    for trigger in [Trigger::Level, Trigger::Edge] {
        let server = start(|| Echo, ServerOptions::default());
        let (mut reactor, set) = client(trigger);
        let (connections, core) = reactor.source_mut(set);
        connections
            .connect(
                core,
                server.addr,
                ConnectOptions::default(),
                Default::default(),
            )
            .unwrap();
        run_until(&mut reactor, |r| {
            r.source(set).handler().echoed_from.values().sum::<usize>() == 1
        });
        let client = reactor.source(set).handler();
        assert_eq!((client.opened, client.failed.len()), (1, 0), "{trigger:?}");
        assert_eq!(reactor.source(set).stats().connects, 1);
    }
}

#[test]
fn a_refused_connect_is_reported_once_and_does_not_spin() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again: nobody listens there now
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for trigger in [Trigger::Level, Trigger::Edge] {
        let (mut reactor, set) = client(trigger);
        let (connections, core) = reactor.source_mut(set);
        match connections.connect(core, addr, ConnectOptions::default(), Default::default()) {
            // Refused before it started: the result says so, no callback.
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            Ok(_) => run_until(&mut reactor, |r| !r.source(set).handler().failed.is_empty()),
        }
        let before = *reactor.core().stats();
        for _ in 0..5 {
            reactor.run_once(Some(Duration::from_millis(20))).unwrap();
        }
        let after = reactor.core().stats().since(&before);
        let client = reactor.source(set).handler();
        assert!(client.failed.len() <= 1 && client.opened == 0 && client.closed == 0);
        if let Some(kind) = client.failed.first() {
            assert_eq!(*kind, io::ErrorKind::ConnectionRefused);
        }
        assert_eq!(
            after.dispatched, 0,
            "{trigger:?}: events after the failure: a spin"
        );
        assert!(reactor.source(set).is_empty());
    }
}

#[test]
fn a_connect_to_a_full_backlog_times_out_once() {
    // Backlog 1 and nobody accepting: the accept queue fills, and the
    // kernel drops further SYNs, so those connects hang until our timeout.
    let listener =
        edgeloop::conn::tcp_listener("127.0.0.1:0".parse().unwrap(), Some(1), false).unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut reactor, set) = client(Trigger::Edge);
    const TRIES: usize = 6;
    let options = ConnectOptions::default().with_timeout(Some(Duration::from_millis(300)));
    for i in 0..TRIES {
        let (connections, core) = reactor.source_mut(set);
        // What the connection is for, given up front: a failure hands it
        // back.
        connections
            .connect(core, addr, options, vec![b'0' + i as u8])
            .unwrap();
    }
    run_until(&mut reactor, |r| {
        let c = r.source(set).handler();
        c.opened + c.failed.len() == TRIES
    });
    let client = reactor.source(set).handler();
    assert!(
        client.failed.iter().all(|k| *k == io::ErrorKind::TimedOut) && !client.failed.is_empty(),
        "{:?} (opened {})",
        client.failed,
        client.opened
    );
    assert_eq!(
        reactor.source(set).stats().connect_failures,
        client.failed.len() as u64
    );
    assert_eq!(client.failed_sessions.len(), client.failed.len());
    assert!(
        client.failed_sessions.iter().all(|s| s.len() == 1),
        "each failure carries its own session: {:?}",
        client.failed_sessions
    );
    drop(listener);
}

#[test]
fn thousands_of_outbound_connections_from_three_source_addresses_each_echo() {
    const PER_SOURCE: usize = 1000;
    let sources: [IpAddr; 3] = [
        "127.0.0.2".parse().unwrap(),
        "127.0.0.3".parse().unwrap(),
        "127.0.0.4".parse().unwrap(),
    ];
    let server = start(|| Echo, ServerOptions::default());
    let (mut reactor, set) = client(Trigger::Edge);
    for ip in sources {
        for _ in 0..PER_SOURCE {
            let (connections, core) = reactor.source_mut(set);
            connections
                .connect(
                    core,
                    server.addr,
                    ConnectOptions::default().with_local_ip(Some(ip)),
                    Default::default(),
                )
                .unwrap();
        }
    }
    run_until(&mut reactor, |r| {
        r.source(set).handler().echoed_from.values().sum::<usize>() == 3 * PER_SOURCE
    });
    let client = reactor.source(set).handler();
    assert!(client.failed.is_empty(), "{:?}", client.failed);
    for ip in sources {
        assert_eq!(client.echoed_from.get(&ip), Some(&PER_SOURCE), "{ip}");
    }
    assert_eq!(
        reactor.source(set).len(),
        3 * PER_SOURCE,
        "all open at once"
    );
}

/// `shutdown_write` asked while the connect is in flight waits for it:
/// what was written before goes out, then our EOF, and the server's echo
/// and EOF come back (a request-then-half-close client).
#[test]
fn a_shutdown_asked_while_connecting_takes_effect_once_connected() {
    let server = start(|| Echo, ServerOptions::default());
    let (mut reactor, set) = client(Trigger::Edge);
    let (connections, core) = reactor.source_mut(set);
    let id = connections
        .connect(
            core,
            server.addr,
            ConnectOptions::default(),
            Default::default(),
        )
        .unwrap();
    connections
        .with_conn(core, id, |_, conn| {
            let m = message(conn.id());
            conn.write(&m);
            conn.shutdown_write();
        })
        .expect("a connecting connection is reachable by its id");
    run_until(&mut reactor, |r| r.source(set).handler().closed == 1);
    let client = reactor.source(set).handler();
    assert_eq!(client.opened, 1);
    assert_eq!(
        client.echoed_from.values().sum::<usize>(),
        1,
        "the message went out once, before our EOF (on_open's write came after the shutdown)"
    );
}

/// Closing a connection that is still connecting abandons it: its handler
/// hears of an aborted connect, once, and no `on_close` follows.
#[test]
fn closing_a_connection_still_connecting_reports_an_aborted_connect() {
    let listener =
        edgeloop::conn::tcp_listener("127.0.0.1:0".parse().unwrap(), Some(1), false).unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut reactor, set) = client(Trigger::Level);
    let mut ids = Vec::new();
    for _ in 0..6 {
        let (connections, core) = reactor.source_mut(set);
        ids.push(
            connections
                .connect(core, addr, ConnectOptions::default(), Default::default())
                .unwrap(),
        );
    }
    // Some complete into the backlog of 1; the rest hang in SYN_SENT.
    for _ in 0..3 {
        reactor.run_once(Some(Duration::from_millis(50))).unwrap();
    }
    let (connections, core) = reactor.source_mut(set);
    connections.close_all(core);
    run_until(&mut reactor, |r| r.source(set).is_empty());
    let client = reactor.source(set).handler();
    assert!(!client.failed.is_empty(), "some were still connecting");
    assert!(
        client
            .failed
            .iter()
            .all(|k| *k == io::ErrorKind::ConnectionAborted),
        "{:?}",
        client.failed
    );
    assert_eq!(client.failed.len() + client.closed, 6);
    assert_eq!(client.opened, client.closed);
    drop(listener);
}

#[test]
fn an_established_connect_leaves_no_timer_behind() {
    // One connect with a timeout, one without: once both are open, the
    // reactor holds the same timers as with neither (the timeout's timer
    // is cancelled, not left to fire into an established connection).
    let server = start(|| Echo, ServerOptions::default());
    let mut timers = Vec::new();
    for timeout in [None, Some(Duration::from_secs(30))] {
        let (mut reactor, set) = client(Trigger::Level);
        let (connections, core) = reactor.source_mut(set);
        connections
            .connect(
                core,
                server.addr,
                ConnectOptions::default().with_timeout(timeout),
                Default::default(),
            )
            .unwrap();
        run_until(&mut reactor, |r| r.source(set).handler().opened == 1);
        timers.push(reactor.core().timers());
    }
    assert_eq!(
        timers[0], timers[1],
        "timers without and with a connect timeout"
    );
}

/// Records `TCP_NODELAY` of every connection it opens.
#[derive(Default)]
struct NoDelay(Vec<bool>);

impl Handler for NoDelay {
    type Session = ();
    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        let on = nix::sys::socket::getsockopt(&conn.fd(), nix::sys::socket::sockopt::TcpNoDelay);
        self.0.push(on.unwrap());
    }
    fn on_data(&mut self, _: &mut Conn<'_, Self>, _: &[u8]) {}
}

#[test]
fn tcp_nodelay_is_on_for_accepted_and_connected_tcp_unless_turned_off() {
    for nodelay in [true, false] {
        let options = ConnOptions::default().with_nodelay(nodelay);
        let (mut reactor, set, addr) = util::listening_set(NoDelay::default(), options);
        // The set connects to itself: one outbound, one accepted.
        let (connections, core) = reactor.source_mut(set);
        connections
            .connect(core, addr, ConnectOptions::default(), ())
            .unwrap();
        run_until(&mut reactor, |r| r.source(set).handler().0.len() == 2);
        assert_eq!(reactor.source(set).handler().0, [nodelay; 2]);
    }
}

/// Queues more than the socket takes, then aborts.
struct CutShort;

impl Handler for CutShort {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, _: &[u8]) {
        conn.write(&vec![b'x'; 8 << 20]);
        conn.abort();
    }
}

#[test]
fn an_aborted_connection_ends_with_a_reset_not_an_eof() {
    let (mut reactor, _, addr) = util::listening_set(CutShort, ConnOptions::default());
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.write_all(b"go").unwrap();
    client.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0; 1 << 16];
    let end = loop {
        assert!(Instant::now() < deadline, "no end in 20 s");
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
        match client.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => break Err(e.kind()),
        }
    };
    assert_eq!(end, Err(io::ErrorKind::ConnectionReset));
}

#[test]
fn on_open_never_runs_before_connect_returns_the_id() {
    // A Unix connect completes at once, inside `connect_unix`: the handler
    // still hears of it on a later turn, when the caller holds the id.
    let dir = std::env::temp_dir().join(format!("edgeloop-connect-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let listener = std::os::unix::net::UnixListener::bind(&dir).unwrap();
    for trigger in [Trigger::Level, Trigger::Edge] {
        let (mut reactor, set) = client(trigger);
        let (connections, core) = reactor.source_mut(set);
        let id = connections
            .connect_unix(core, &dir, ConnectOptions::default(), Default::default())
            .unwrap();
        assert_eq!(reactor.source(set).handler().opened, 0, "{trigger:?}");
        run_until(&mut reactor, |r| r.source(set).handler().opened == 1);
        assert!(
            reactor.source(set).ids().any(|open| open == id),
            "{trigger:?}"
        );
        let _accepted = listener.accept().unwrap();
    }
    drop(listener);
    let _ = std::fs::remove_file(&dir);
}

/// The peer answers and shuts down before the loop sees the connect
/// complete: the completion's event carries the data and the FIN's edge
/// at once (IN|OUT|RDHUP). Under Edge with the short-read rule, the read
/// after the connect must not stop at the short read of the data, or the
/// EOF is never read (no new edge comes for it).
#[test]
fn a_peer_that_answers_and_shuts_before_the_connect_is_seen_gets_its_eof_read() {
    #[derive(Default)]
    struct Reader {
        got: Vec<u8>,
        eof: bool,
    }
    impl Handler for Reader {
        type Session = ();
        fn on_data(&mut self, _: &mut Conn<'_, Self>, data: &[u8]) {
            self.got.extend_from_slice(data);
        }
        fn on_eof(&mut self, conn: &mut Conn<'_, Self>) {
            self.eof = true;
            conn.close();
        }
    }
    for trigger in [Trigger::Edge, Trigger::Level] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut reactor = util::reactor(Backend::Epoll);
        let options = ConnOptions::with_trigger(trigger);
        let set = reactor
            .install(Connections::new(Reader::default(), options).unwrap())
            .unwrap();
        let (connections, core) = reactor.source_mut(set);
        let addr = listener.local_addr().unwrap();
        connections
            .connect(core, addr, ConnectOptions::default(), ())
            .unwrap();
        // Before the loop runs at all: answer and shut down.
        let (mut peer, _) = listener.accept().unwrap();
        peer.write_all(b"hello").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        run_until(&mut reactor, |r| r.source(set).handler().eof);
        assert_eq!(reactor.source(set).handler().got, b"hello", "{trigger:?}");
    }
}
