//! At the fd limit the server neither spins nor stops serving
//! (failure mode 1 in docs/failure-modes.md, docs/kernel-facts.md K14). The server runs as a child
//! process with a soft RLIMIT_NOFILE of 128, set in the child alone, so its
//! CPU time is its own and this process keeps its limit.
#![cfg(feature = "server")]

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::process::{Server, cpu_time, spawn_example_with_fd_limit};

fn spawn_limited(mode: &str) -> Server {
    spawn_example_with_fd_limit("echo", &["--addr", "127.0.0.1:0", "--mode", mode], 128)
}

fn echo_once(c: &mut TcpStream, msg: &[u8]) -> bool {
    let mut buf = vec![0; msg.len()];
    c.write_all(msg).is_ok() && c.read_exact(&mut buf).is_ok() && buf == msg
}

#[test]
fn a_server_out_of_fds_stays_idle_keeps_serving_and_recovers() {
    for mode in ["lt", "et"] {
        let server = spawn_limited(mode);
        let pid = server.child.id();
        let mut clients = Vec::new();
        for _ in 0..300 {
            let c = TcpStream::connect(&server.addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            clients.push(c);
        }
        // The first clients were accepted before the limit hit; they echo.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            echo_once(&mut clients[0], b"first"),
            "{mode}: an open connection stopped echoing"
        );
        // No spin: with the backlog full of clients it cannot take, the
        // server burns (almost) no CPU.
        let cpu_before = cpu_time(pid);
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let burned = cpu_time(pid) - cpu_before;
        println!(
            "{mode}: {burned:?} CPU over {:?} at the fd limit",
            t.elapsed()
        );
        assert!(
            burned < Duration::from_millis(300),
            "{mode}: {burned:?} CPU in 2 s: spinning"
        );
        assert!(echo_once(&mut clients[1], b"second"), "{mode}");
        // Others leave; a new client is served.
        clients.truncate(2);
        std::thread::sleep(Duration::from_millis(200));
        let mut fresh = TcpStream::connect(&server.addr).unwrap();
        fresh
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(
            echo_once(&mut fresh, b"fresh"),
            "{mode}: no recovery after clients left"
        );
    }
}

/// F7 of the attack on the examples: with `--workers 2` at the fd limit,
/// after a connect storm a fresh client could get no answer at all: the fd
/// slot one worker freed by closing its reserve was taken by the other
/// worker's accept, so the first had no reserve left and nothing shed its
/// backlog (this test failed 3 runs in 4). Shedding now excludes every
/// accept in the process while the reserve is out: a client past the limit
/// gets an answer (its echo, or EOF) instead of silence, and once the storm
/// is gone clients are served again.
#[test]
fn two_workers_at_the_fd_limit_answer_every_client_through_repeated_storms() {
    let server =
        spawn_example_with_fd_limit("echo", &["--addr", "127.0.0.1:0", "--workers", "2"], 128);
    for storm in 0..2 {
        let storm_clients: Vec<TcpStream> = (0..300)
            .map(|_| TcpStream::connect(&server.addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // A client past the limit: answered, one way or the other.
        let mut late = TcpStream::connect(&server.addr).unwrap();
        late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = late.write_all(b"late");
        let mut buf = [0u8; 4];
        match late.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("storm {storm}: a client past the limit got no answer: {e}"),
        }
        drop((storm_clients, late));
        std::thread::sleep(Duration::from_millis(300));
        let mut fresh = TcpStream::connect(&server.addr).unwrap();
        fresh
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(
            echo_once(&mut fresh, b"fresh"),
            "storm {storm}: no recovery after the storm"
        );
    }
}
