//! The socketserver-like layer: lifecycle, every server kind end to end,
//! Unix socket binding rules, datagram edge cases and Workers (the worker
//! pool is in tests/pool.rs) (failure modes 31-35 in docs/failure-modes.md). Each test that could deadlock runs
//! under a watchdog, as CPython's test_socketserver does.
#![cfg(feature = "server")]

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edgeloop::conn::{Conn, Handler};
use edgeloop::server::{
    Datagram, DatagramHandler, DatagramOptions, DatagramServer, ServerOptions, StreamServer,
    UnixPath, Workers,
};
use util::server::{Echo, start};
use util::stream::{fill, verify};
use util::watchdog;

fn temp_path(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("edgeloop-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn shutdown_from_another_thread_returns_a_blocked_serve_forever_promptly() {
    watchdog(Duration::from_secs(20), || {
        let server = start(|| Echo, ServerOptions::default());
        std::thread::sleep(Duration::from_millis(100)); // blocked in epoll_wait
        let t = Instant::now();
        server.shutdown.shutdown();
        assert!(server.shutdown.wait(Duration::from_secs(5)).unwrap());
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(100),
            "serve_forever took {took:?} to return"
        );
        server.stop();
    });
}

/// Shuts its own server down from inside a handler.
struct Quitter {
    shutdown: Option<edgeloop::server::ShutdownHandle>,
    waited: Option<std::io::ErrorKind>,
}

impl Handler for Quitter {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(data);
        let s = self.shutdown.as_ref().unwrap();
        s.shutdown();
        s.shutdown(); // twice is fine
        // Blocking on our own loop would deadlock: it is refused instead.
        self.waited = s.wait(Duration::from_secs(1)).err().map(|e| e.kind());
    }
}

#[test]
fn shutdown_from_inside_a_handler_neither_blocks_nor_deadlocks() {
    let waited = watchdog(Duration::from_secs(20), || {
        let mut server = StreamServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Quitter {
                shutdown: None,
                waited: None,
            },
            ServerOptions::default(),
        )
        .unwrap();
        let shutdown = server.shutdown_handle();
        server.connections_mut().0.handler_mut().shutdown = Some(shutdown);
        let addr = server.local_addr().to_string();
        let client = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"bye").unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap(); // the reply, then EOF
            back
        });
        server.serve_forever().unwrap();
        assert_eq!(client.join().unwrap(), b"bye");
        server.connections().handler().waited
    });
    assert_eq!(waited, Some(std::io::ErrorKind::WouldBlock));
}

#[test]
fn shutdown_before_serving_returns_at_once() {
    watchdog(Duration::from_secs(20), || {
        let mut server = StreamServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Echo,
            ServerOptions::default(),
        )
        .unwrap();
        let handle = server.shutdown_handle();
        handle.shutdown();
        handle.shutdown();
        server.serve_forever().unwrap();
        // At once: not a single wait, blocking or not.
        assert_eq!(server.reactor().core().stats().waits, 0);
        assert!(handle.wait(Duration::ZERO).unwrap());
        // The listener is closed: new connects are refused.
        assert!(TcpStream::connect(server.local_addr()).is_err());
    });
}

#[test]
fn clients_with_a_mebibyte_in_flight_at_shutdown_get_their_bytes_then_eof() {
    // failure mode 32 in docs/failure-modes.md: stop accepting, flush, close with EOF, not RST.
    watchdog(Duration::from_secs(60), || {
        let server = start(|| Echo, ServerOptions::default());
        let addr = server.addr;
        let go = Arc::new(std::sync::Barrier::new(201));
        let clients: Vec<_> = (0..200u64)
            .map(|seed| {
                let go = go.clone();
                std::thread::spawn(move || {
                    let c = TcpStream::connect(addr).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut w = c.try_clone().unwrap();
                    let writer = std::thread::spawn(move || {
                        let mut data = vec![0u8; 1 << 20];
                        fill(seed, 0, &mut data);
                        let _ = w.write_all(&data); // the server may stop reading
                    });
                    let mut r = c;
                    let mut buf = vec![0u8; 64 * 1024];
                    // In flight: accepted and echoing before the shutdown (a
                    // connection still in the backlog when the listener
                    // closes is reset by the kernel, by design).
                    let mut got = r.read(&mut buf).unwrap() as u64;
                    verify(seed, 0, &buf[..got as usize]);
                    go.wait();
                    loop {
                        match r.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                verify(seed, got, &buf[..n]);
                                got += n as u64;
                            }
                            Err(e) => {
                                panic!("client {seed}: {e} after {got} bytes (a reset, not EOF)")
                            }
                        }
                    }
                    writer.join().unwrap();
                    drop(r);
                    got
                })
            })
            .collect();
        go.wait();
        std::thread::sleep(Duration::from_millis(50));
        let (_, open) = server.stop();
        assert_eq!(open, 0);
        let received: Vec<u64> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        assert!(received.iter().sum::<u64>() > 0);
    });
}

#[test]
fn handle_request_serves_one_request_or_times_out() {
    let mut server = StreamServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Echo,
        ServerOptions::default(),
    )
    .unwrap();
    assert!(!server.handle_request(Duration::from_millis(50)).unwrap());
    let mut c = TcpStream::connect(server.local_addr()).unwrap();
    c.write_all(b"one").unwrap();
    assert!(server.handle_request(Duration::from_secs(5)).unwrap());
    let mut b = [0u8; 3];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"one");
}

#[test]
fn unix_stream_server_echoes_and_removes_its_file() {
    let path = temp_path("stream.sock");
    let unix = UnixPath::File(path.clone());
    let mut server =
        StreamServer::bind_unix(&unix, Some(0o600), Echo, ServerOptions::default()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut c = UnixStream::connect(&path).unwrap();
    c.write_all(b"over unix").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let handle = server.shutdown_handle();
    let t = std::thread::spawn(move || {
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        handle.shutdown();
        back
    });
    server.serve_forever().unwrap();
    assert_eq!(t.join().unwrap(), b"over unix");
    drop(server);
    assert!(!path.exists(), "the socket file is removed on close");
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_is_left_alone() {
    let path = temp_path("stale.sock");
    let unix = UnixPath::File(path.clone());
    // A stale file: bound, then its owner vanished without unlinking.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let live = StreamServer::bind_unix(&unix, None, Echo, ServerOptions::default()).unwrap();
    // A second server on the live path: refused, clearly.
    let err = StreamServer::bind_unix(&unix, None, Echo, ServerOptions::default())
        .err()
        .expect("binding a live server's path must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains("live server"), "{err}");
    // The live server's path still works.
    assert!(UnixStream::connect(&path).is_ok());
    drop(live);
}

/// F4 of the attack on the examples: `unix_echo --path notes.txt` deleted
/// the user's file (connect() on a non-socket gives ECONNREFUSED, which was
/// taken for a stale socket), and a symlink at the path was replaced too.
/// Only a socket file is ever unlinked; anything else is a clear error
/// naming the path, and stays as it was.
#[test]
fn a_regular_file_or_a_symlink_at_a_unix_path_is_never_deleted() {
    let file = temp_path("notes.txt");
    std::fs::write(&file, b"my notes").unwrap();
    let link = temp_path("link.sock");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    for (path, what) in [(&file, "a regular file"), (&link, "a symlink")] {
        let unix = UnixPath::File(path.clone());
        let err = StreamServer::bind_unix(&unix, None, Echo, ServerOptions::default())
            .err()
            .expect("binding over a non-socket must fail");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
        let message = err.to_string();
        assert!(message.contains(what), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        let err =
            DatagramServer::bind_unix(&unix, None, DatagramEcho::default(), Default::default())
                .err()
                .expect("a datagram server must refuse too");
        assert!(err.to_string().contains(what), "{err}");
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"my notes",
        "the file is intact"
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn unix_paths_too_long_fail_cleanly_and_abstract_names_leave_no_file() {
    let long = UnixPath::File(std::path::PathBuf::from(format!(
        "/tmp/{}",
        "x".repeat(120)
    )));
    let err = StreamServer::bind_unix(&long, None, Echo, ServerOptions::default())
        .err()
        .expect("a 124-byte path must fail");
    assert!(err.to_string().contains("107"), "{err}");
    let name = format!("edgeloop-test-{}", std::process::id());
    let server = StreamServer::bind_unix(
        &UnixPath::parse(&format!("@{name}")),
        None,
        Echo,
        ServerOptions::default(),
    )
    .unwrap();
    assert_eq!(server.local_addr().to_string(), format!("@{name}"));
    assert!(matches!(
        server.local_addr().unix(),
        Some(UnixPath::Abstract(_))
    ));
    assert!(!std::path::Path::new(&name).exists());
}

/// Echoes datagrams; records what it saw.
#[derive(Default)]
struct DatagramEcho {
    seen: Vec<(usize, Option<usize>)>,
    errors: Vec<std::io::ErrorKind>,
    reply_errors: Vec<String>,
}

impl DatagramHandler for DatagramEcho {
    fn on_datagram(&mut self, datagram: &mut Datagram<'_>, data: &[u8]) {
        self.seen.push((data.len(), datagram.truncated()));
        if data == b"too big" {
            let huge = vec![0u8; 65_508];
            if let Err(e) = datagram.reply(&huge) {
                self.reply_errors.push(e.to_string());
            }
            datagram.reply(b"still here").unwrap();
            return;
        }
        if let Err(e) = datagram.reply(data) {
            self.reply_errors.push(e.to_string());
        }
    }
    fn on_error(&mut self, error: std::io::Error) {
        self.errors.push(error.kind());
    }
}

/// Counts datagrams in the loop state, replying with the count so far.
struct Tally;

impl DatagramHandler<u64> for Tally {
    fn on_datagram(&mut self, datagram: &mut Datagram<'_, u64>, _: &[u8]) {
        *datagram.data_mut() += 1;
        let count = datagram.data().to_string();
        datagram.reply(count.as_bytes()).unwrap();
    }
}

/// A datagram server takes loop state as a stream server does: a reactor
/// built with its data, handed to `from_udp`; the handler reaches it
/// through the `Datagram`, the program through the server's reactor.
#[test]
fn a_datagram_server_runs_on_a_reactor_with_loop_state() {
    let reactor = edgeloop::Reactor::with_data(0u64).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut server =
        DatagramServer::from_udp(reactor, socket, Tally, DatagramOptions::default()).unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for expected in ["1", "2", "3"] {
        client.send_to(b"x", server.local_addr()).unwrap();
        assert!(server.handle_request(Duration::from_secs(5)).unwrap());
        let mut reply = [0; 8];
        let n = client.recv(&mut reply).unwrap();
        assert_eq!(&reply[..n], expected.as_bytes());
    }
    assert_eq!(*server.reactor().core().data(), 3);
}

#[test]
fn udp_reports_truncation_emsgsize_and_empty_datagrams() {
    // failure mode 33 in docs/failure-modes.md.
    let options = DatagramOptions::default().with_max_packet_size(8192);
    let mut server = DatagramServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        DatagramEcho::default(),
        options,
    )
    .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.connect(server.local_addr()).unwrap();
    let mut buf = vec![0u8; 70_000];
    for payload in [&b"hello"[..], &[], &[7u8; 9000][..], b"too big"] {
        client.send(payload).unwrap();
        assert!(server.handle_request(Duration::from_secs(5)).unwrap());
    }
    assert_eq!(client.recv(&mut buf).unwrap(), 5);
    assert_eq!(
        client.recv(&mut buf).unwrap(),
        0,
        "an empty datagram is echoed empty"
    );
    assert_eq!(
        client.recv(&mut buf).unwrap(),
        8192,
        "the truncated part is echoed"
    );
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"still here", "usable after EMSGSIZE");
    server.with_handler(|h| {
        assert_eq!(
            h.seen,
            [(5, None), (0, None), (8192, Some(9000)), (7, None)]
        );
        assert_eq!(h.reply_errors.len(), 1);
        assert!(
            h.reply_errors[0].contains("EMSGSIZE"),
            "{:?}",
            h.reply_errors
        );
    });
}

#[test]
fn an_icmp_error_on_a_connected_udp_socket_surfaces_once_without_a_spin() {
    // failure mode 34 in docs/failure-modes.md: a datagram to a closed port; the ICMP error
    // makes the next recv fail with ECONNREFUSED.
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(closed_addr).unwrap();
    socket.set_nonblocking(true).unwrap();
    socket.send(b"anyone?").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut reactor = util::reactor(edgeloop::Backend::Epoll);
    let errors = Arc::new(AtomicUsize::new(0));
    let e = errors.clone();
    reactor
        .core_mut()
        .register(
            socket,
            edgeloop::Interest::READABLE,
            edgeloop::Trigger::Level,
            move |_, socket, _| {
                let mut b = [0u8; 16];
                if let Err(err) = socket.recv(&mut b) {
                    if err.kind() == std::io::ErrorKind::ConnectionRefused {
                        e.fetch_add(1, Ordering::SeqCst);
                    }
                }
                edgeloop::PostAction::Continue
            },
        )
        .unwrap();
    for _ in 0..5 {
        reactor.run_once(Some(Duration::from_millis(20))).unwrap();
    }
    assert_eq!(errors.load(Ordering::SeqCst), 1, "surfaced once");
    assert!(
        reactor.core().stats().dispatched <= 2,
        "no spin: {:?}",
        reactor.core().stats()
    );
}

#[test]
fn unix_datagram_server_replies_to_bound_senders_only() {
    let path = temp_path("dgram.sock");
    let mut server = DatagramServer::bind_unix(
        &UnixPath::File(path.clone()),
        None,
        DatagramEcho::default(),
        DatagramOptions::default(),
    )
    .unwrap();
    let client_path = temp_path("dgram-client.sock");
    let client = UnixDatagram::bind(&client_path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(b"ping", &path).unwrap();
    assert!(server.handle_request(Duration::from_secs(5)).unwrap());
    server.with_handler(|h| assert!(h.reply_errors.is_empty(), "{:?}", h.reply_errors));
    let mut b = [0u8; 16];
    let n = client.recv(&mut b).unwrap();
    assert_eq!(&b[..n], b"ping");
    // An unbound sender has no address: the reply fails, the server goes on.
    let anonymous = UnixDatagram::unbound().unwrap();
    anonymous.send_to(b"who am i", &path).unwrap();
    assert!(server.handle_request(Duration::from_secs(5)).unwrap());
    server.with_handler(|h| {
        assert_eq!(h.reply_errors.len(), 1);
        assert!(
            h.reply_errors[0].contains("no address"),
            "{:?}",
            h.reply_errors
        );
    });
    drop(server);
    assert!(!path.exists());
    let _ = std::fs::remove_file(client_path);
}

#[test]
fn workers_spread_connections_over_every_reactor() {
    watchdog(Duration::from_secs(30), || {
        let workers = Workers::bind(
            "127.0.0.1:0".parse().unwrap(),
            2,
            || Echo,
            ServerOptions::default(),
        )
        .unwrap();
        let addr = workers.local_addr();
        for i in 0..200u32 {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(&i.to_le_bytes()).unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).unwrap();
            assert_eq!(u32::from_le_bytes(b), i);
        }
        workers.shutdown();
        let stats = workers.join().unwrap();
        let accepts: Vec<u64> = stats.iter().map(|s| s.accepts).collect();
        assert_eq!(accepts.iter().sum::<u64>(), 200);
        assert!(
            accepts.iter().all(|&a| a > 0),
            "every worker got connections: {accepts:?}"
        );
    });
}

#[test]
fn idle_connections_are_closed_after_the_timeout_and_busy_ones_are_not() {
    // failure mode 23 in docs/failure-modes.md.
    watchdog(Duration::from_secs(20), || {
        let mut options = ServerOptions::default();
        options.conn.idle_timeout = Some(Duration::from_millis(300));
        let server = start(|| Echo, options);
        let mut quiet = TcpStream::connect(server.addr).unwrap();
        let mut busy = TcpStream::connect(server.addr).unwrap();
        busy.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        quiet
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let start = Instant::now();
        // The busy client talks every 100 ms for a second: never idle 300 ms.
        while start.elapsed() < Duration::from_millis(1000) {
            busy.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            busy.read_exact(&mut b).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        // The quiet one was closed (EOF) within the timeout plus a tick.
        let mut b = [0u8; 1];
        let t = Instant::now();
        assert_eq!(
            quiet.read(&mut b).unwrap(),
            0,
            "the idle connection was closed"
        );
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "it was closed well before now"
        );
        busy.write_all(b"y").unwrap();
        busy.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"y", "the busy one is still served");
        drop((quiet, busy));
        std::thread::sleep(Duration::from_millis(50));
        let (stats, _) = server.stop();
        assert_eq!(stats.idle_timeouts, 1, "{stats:?}");
    });
}

/// The connection cap is one setting: `ServerOptions::with_max_connections`
/// sets `AcceptOptions::max_connections`, so either way of asking caps the
/// same (two settings could disagree, and the looser one win).
#[test]
fn connections_over_the_cap_are_accepted_closed_and_counted() {
    let by_server = ServerOptions::default().with_max_connections(2);
    let by_accept = ServerOptions::default()
        .with_accept(edgeloop::conn::AcceptOptions::default().with_max_connections(2));
    for options in [by_server, by_accept] {
        over_the_cap(options);
    }
}

fn over_the_cap(options: ServerOptions) {
    watchdog(Duration::from_secs(20), move || {
        let server = start(|| Echo, options);
        let mut kept: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(server.addr).unwrap())
            .collect();
        for c in kept.iter_mut() {
            c.write_all(b"k").unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).unwrap();
        }
        let mut third = TcpStream::connect(server.addr).unwrap();
        third
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut b = [0u8; 1];
        match third.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("the connection over the cap was served: {other:?}"),
        }
        drop(kept);
        std::thread::sleep(Duration::from_millis(50));
        // Below the cap again: served.
        let mut fourth = TcpStream::connect(server.addr).unwrap();
        fourth.write_all(b"4").unwrap();
        fourth.read_exact(&mut b).unwrap();
        let (stats, _) = server.stop();
        assert_eq!(stats.refused, 1, "{stats:?}");
    });
}

/// F6: at the cap, with `evict_idle`, the connection quiet for longest is
/// closed to admit a new one (nginx's reuse of idle keep-alive
/// connections), and the busy one keeps its place.
#[test]
fn at_the_cap_evict_idle_closes_the_longest_idle_connection_for_a_new_one() {
    watchdog(Duration::from_secs(20), || {
        let mut options = ServerOptions::default().with_max_connections(2);
        options.accept.evict_idle = true;
        let server = start(|| Echo, options);
        let mut quiet = TcpStream::connect(server.addr).unwrap();
        let mut busy = TcpStream::connect(server.addr).unwrap();
        let mut b = [0u8; 1];
        quiet.write_all(b"q").unwrap();
        quiet.read_exact(&mut b).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        busy.write_all(b"b").unwrap();
        busy.read_exact(&mut b).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let mut newcomer = TcpStream::connect(server.addr).unwrap();
        newcomer.write_all(b"n").unwrap();
        newcomer.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"n", "the newcomer is served");
        match quiet.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("the longest-idle connection was kept: {other:?}"),
        }
        busy.write_all(b"B").unwrap();
        busy.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"B", "the busier one kept its place");
        drop((quiet, busy, newcomer));
        let (stats, _) = server.stop();
        assert_eq!((stats.evicted, stats.refused), (1, 0), "{stats:?}");
    });
}

/// Options that cannot work are refused when the server is built, naming
/// the option: the connections' default trigger is Edge, which poll and
/// select cannot deliver (a user once got a server that bound, then reset
/// every connection, with only a WARN line to say why).
#[test]
fn a_trigger_the_backend_cannot_deliver_is_refused_at_bind_naming_the_option() {
    for backend in [edgeloop::Backend::Poll, edgeloop::Backend::Select] {
        let options = ServerOptions::default().with_backend(backend);
        let err = StreamServer::bind("127.0.0.1:0".parse().unwrap(), Echo, options)
            .err()
            .expect("Edge on poll/select must be refused");
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
        let message = err.to_string();
        assert!(
            message.contains("ServerOptions.conn.trigger is Edge"),
            "{message}"
        );
        assert!(message.contains("Trigger::Level"), "{message}");
        // With Level it binds and serves.
        let mut options = ServerOptions::default().with_backend(backend);
        options.conn.trigger = edgeloop::Trigger::Level;
        StreamServer::bind("127.0.0.1:0".parse().unwrap(), Echo, options).unwrap();
    }
}
