//! The worker pool (`server::Pooled`): replies in request order, fairness
//! across connections, panics contained, a bounded queue, and a bound on
//! quick replies waiting behind a slow one (failure mode 33 in
//! docs/failure-modes.md). Each test that could deadlock runs under a
//! watchdog.
#![cfg(feature = "server")]

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use edgeloop::server::{Blocking, Pooled, ServerOptions, StreamServer, attach_pool};
use util::watchdog;

fn pooled_server(
    threads: usize,
    capacity: usize,
    delay: Duration,
) -> (
    String,
    std::thread::JoinHandle<()>,
    edgeloop::server::ShutdownHandle,
) {
    let slow = move |request: &[u8]| {
        // Later requests finish sooner: order must come from the loop.
        let n = request.first().copied().unwrap_or(0) as u64;
        std::thread::sleep(delay.saturating_sub(Duration::from_millis(n % 10)));
        request.to_vec()
    };
    pooled_server_with(slow, threads, capacity)
}

/// A server on its own thread whose requests run `blocking` on a pool.
fn pooled_server_with(
    blocking: impl Blocking,
    threads: usize,
    capacity: usize,
) -> (
    String,
    std::thread::JoinHandle<()>,
    edgeloop::server::ShutdownHandle,
) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut server = StreamServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Pooled::new(blocking, threads, capacity).unwrap(),
            ServerOptions::default(),
        )
        .unwrap();
        let conns = server.connections_id();
        attach_pool(server.reactor(), conns).unwrap();
        tx.send((server.local_addr().to_string(), server.shutdown_handle()))
            .unwrap();
        server.serve_forever().unwrap();
    });
    let (addr, shutdown) = rx.recv().unwrap();
    (addr, t, shutdown)
}

#[test]
fn pool_replies_come_back_in_request_order() {
    watchdog(Duration::from_secs(30), || {
        let (addr, t, shutdown) = pooled_server(4, 64, Duration::from_millis(50));
        let mut slow = TcpStream::connect(&addr).unwrap();
        slow.set_nodelay(true).unwrap();
        // Separate requests: one write each, spaced so each is its own read.
        for i in 0..8u8 {
            slow.write_all(&[i]).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut got = [0u8; 8];
        slow.read_exact(&mut got).unwrap();
        assert_eq!(got, [0, 1, 2, 3, 4, 5, 6, 7], "replies in request order");
        shutdown.shutdown();
        t.join().unwrap();
    });
}

/// F9 of the attack on the examples: the pool was first come, first
/// served, so a newcomer's request waited behind another client's 160
/// queued ones. Requests now wait per connection and a free worker takes
/// the next connection's oldest one, round-robin: with one worker, the
/// newcomer's reply comes after at most the request running when it
/// arrived and one more of the busy client's.
/// Counts, for the fairness test, the busy client's jobs started, and how
/// many had started when the newcomer's request was read and when it ran.
#[derive(Default)]
struct Counts {
    started: std::sync::atomic::AtomicUsize,
    at_arrival: std::sync::atomic::AtomicUsize,
    at_run: std::sync::atomic::AtomicUsize,
}

#[derive(Clone, Default)]
struct Fairness(std::sync::Arc<Counts>);

impl Blocking for Fairness {
    fn handle(&self, request: &[u8]) -> Vec<u8> {
        use std::sync::atomic::Ordering::SeqCst;
        if request == [200] {
            self.0.at_run.store(self.0.started.load(SeqCst), SeqCst);
        } else {
            self.0.started.fetch_add(1, SeqCst);
            std::thread::sleep(Duration::from_millis(20));
        }
        request.to_vec()
    }

    /// Runs on the loop as each request is read: the newcomer's arrival.
    fn quick(&self, request: &[u8]) -> Option<Vec<u8>> {
        use std::sync::atomic::Ordering::SeqCst;
        if request == [200] {
            self.0.at_arrival.store(self.0.started.load(SeqCst), SeqCst);
        }
        None
    }
}

/// Round robin across connections: a newcomer's request runs after at
/// most the busy client's job that was running when it arrived, not after
/// its whole backlog. Counted in jobs, not in time: it failed once in a
/// loaded run when it counted replies that came before the newcomer's
/// request was even read.
#[test]
fn a_newcomer_is_served_before_a_busy_clients_backlog() {
    watchdog(Duration::from_secs(60), || {
        use std::sync::atomic::Ordering::SeqCst;
        let fairness = Fairness::default();
        let (addr, t, shutdown) = pooled_server_with(fairness.clone(), 1, 64);
        let mut busy = TcpStream::connect(&addr).unwrap();
        busy.set_nodelay(true).unwrap();
        for i in 0..30u8 {
            busy.write_all(&[i]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut newcomer = TcpStream::connect(&addr).unwrap();
        newcomer.write_all(&[200]).unwrap();
        let mut b = [0u8; 1];
        newcomer.read_exact(&mut b).unwrap();
        assert_eq!(b[0], 200);
        let counts = &fairness.0;
        let (arrival, run) = (counts.at_arrival.load(SeqCst), counts.at_run.load(SeqCst));
        assert!(
            run <= arrival + 1,
            "the newcomer, read when {arrival} busy jobs had started, ran after {run} \
             (FIFO: after all 30)"
        );
        let mut rest = vec![0u8; 30];
        busy.read_exact(&mut rest).unwrap();
        drop((busy, newcomer));
        shutdown.shutdown();
        t.join().unwrap();
    });
}

/// F3 of the attack on the examples: a panicking pool job killed its worker
/// for good, its client got neither reply nor close, and after as many
/// panics as threads every request hung. Now the worker catches it, the
/// connection is closed and the panic counted, and the pool keeps serving.
#[test]
fn a_panicking_pool_job_closes_its_connection_and_the_pool_keeps_serving() {
    watchdog(Duration::from_secs(30), || {
        let (tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            let fragile = |request: &[u8]| {
                assert!(request != b"boom", "boom");
                request.to_ascii_uppercase()
            };
            let mut server = StreamServer::bind(
                "127.0.0.1:0".parse().unwrap(),
                Pooled::new(fragile, 2, 16).unwrap(),
                ServerOptions::default(),
            )
            .unwrap();
            let conns = server.connections_id();
            attach_pool(server.reactor(), conns).unwrap();
            tx.send((server.local_addr().to_string(), server.shutdown_handle()))
                .unwrap();
            server.serve_forever().unwrap();
            server.connections().handler().panics()
        });
        let (addr, shutdown) = rx.recv().unwrap();
        // More panics than threads.
        for _ in 0..5 {
            let mut c = TcpStream::connect(&addr).unwrap();
            c.write_all(b"boom").unwrap();
            let mut buf = [0u8; 8];
            match c.read(&mut buf) {
                Ok(0) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                other => panic!("expected the connection closed, got {other:?}"),
            }
        }
        let mut c = TcpStream::connect(&addr).unwrap();
        c.write_all(b"still there").unwrap();
        let mut reply = [0u8; 11];
        c.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"STILL THERE");
        drop(c);
        shutdown.shutdown();
        assert_eq!(t.join().unwrap(), 5, "every panic counted");
    });
}

#[test]
fn a_full_pool_stops_reading_the_connection_instead_of_queueing() {
    watchdog(Duration::from_secs(30), || {
        // One thread, room for 2 requests: the rest wait in the kernel.
        let (addr, t, shutdown) = pooled_server(1, 2, Duration::from_millis(30));
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_nodelay(true).unwrap();
        for i in 0..10u8 {
            c.write_all(&[i]).unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
        let mut got = Vec::new();
        let mut b = [0u8; 16];
        while got.len() < 10 {
            let n = c.read(&mut b).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, (0..10).collect::<Vec<u8>>(), "every byte, in order");
        shutdown.shutdown();
        t.join().unwrap();
    });
}

/// `slow` lines sleep on the pool; others are echoed on the loop.
struct SlowOrQuick;

impl Blocking for SlowOrQuick {
    fn handle(&self, line: &[u8]) -> Vec<u8> {
        std::thread::sleep(Duration::from_millis(600));
        line.to_ascii_uppercase()
    }

    fn quick(&self, line: &[u8]) -> Option<Vec<u8>> {
        (!line.starts_with(b"slow")).then(|| line.to_vec())
    }
}

#[test]
fn quick_replies_behind_a_slow_one_pause_reading_at_the_pools_capacity() {
    const QUICK: usize = 200_000; // 400 KB of "q\n": several reads' worth
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let pooled = Pooled::new(SlowOrQuick, 1, 4).unwrap().lines();
        let mut server = StreamServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            pooled,
            ServerOptions::default(),
        )
        .unwrap();
        let set = server.connections_id();
        attach_pool(server.reactor(), set).unwrap();
        tx.send((
            server.local_addr().to_string(),
            server.shutdown_handle(),
            server.reactor().core().handle(),
            set,
        ))
        .unwrap();
        server.serve_forever().unwrap();
    });
    let (addr, shutdown, handle, set) = rx.recv().unwrap();
    let stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut request = b"slow\n".to_vec();
        request.extend(b"q\n".repeat(QUICK));
        writer.write_all(&request).unwrap();
    });
    // While the slow line sleeps, the server must have stopped reading.
    std::thread::sleep(Duration::from_millis(300));
    let (tx, rx) = mpsc::channel();
    handle
        .post(move |r| tx.send(r.source(set).stats().bytes_in).unwrap())
        .unwrap();
    let read_while_slow = rx.recv().unwrap();
    assert!(
        read_while_slow < (5 + 2 * QUICK) as u64 / 2,
        "read {read_while_slow} of {} bytes while the slow reply ran",
        5 + 2 * QUICK
    );
    // Then everything, in order.
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "SLOW\n");
    for _ in 0..QUICK {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "q\n");
    }
    sender.join().unwrap();
    drop(reader);
    shutdown.shutdown();
    server.join().unwrap();
}

/// The pool's capacity holds within one read: one read of many lines
/// would otherwise become as many jobs at once (100 clients writing 64 KiB
/// of `slow` lines each: over a million), so the lines past the bound stay
/// unread in the session until a slot frees.
#[test]
fn one_read_of_many_lines_holds_no_more_than_the_pools_capacity() {
    watchdog(Duration::from_secs(60), || {
        let upper = |request: &[u8]| request.to_ascii_uppercase();
        let mut server = StreamServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Pooled::new(upper, 1, 8).unwrap().lines(),
            ServerOptions::default(),
        )
        .unwrap();
        let conns = server.connections_id();
        attach_pool(server.reactor(), conns).unwrap();
        let addr = server.local_addr().to_string();
        let lines = 3000;
        let client = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(&addr).unwrap();
            let request: String = (0..lines).map(|i| format!("slow {i}\n")).collect();
            stream.write_all(request.as_bytes()).unwrap();
            let mut reader = BufReader::new(stream);
            for i in 0..lines {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                assert_eq!(line, format!("SLOW {i}\n"));
            }
        });
        let mut most = 0;
        while !client.is_finished() {
            server
                .reactor()
                .run_once(Some(Duration::from_millis(10)))
                .unwrap();
            most = most.max(server.connections().handler().outstanding());
        }
        client.join().unwrap();
        assert!(most <= 8, "{most} requests held at once, capacity 8");
    });
}
