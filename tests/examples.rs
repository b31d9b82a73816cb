//! The server examples' command-line contract (other tools rely on it):
//! flags, exactly one `listening on HOST:PORT` line, graceful exit on
//! SIGINT and SIGTERM; and what upper and chat promise. (The examples that
//! need no server layer are tested in tests/embedding.rs.)
#![cfg(feature = "server")]

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::process::{example, exited_within, spawn_example, spawn_example_with};

fn connect(addr: &str) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

#[test]
fn echo_prints_one_listening_line_and_exits_0_on_sigint_and_sigterm() {
    for (signal, mode) in [(Signal::SIGINT, "et"), (Signal::SIGTERM, "lt")] {
        let mut child = Command::new(example("echo"))
            .args([
                "--addr",
                "127.0.0.1:0",
                "--mode",
                mode,
                "--max-pending",
                "65536",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect(&line)
            .to_string();
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0, "the real port is printed");
        let mut c = connect(&addr);
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{signal}: exit {status}");
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "", "exactly one line on stdout");
        // The open connection was closed with EOF, not a reset.
        assert_eq!(c.read(&mut b).unwrap(), 0);
    }
}

#[test]
fn a_signal_during_a_transfer_flushes_the_queued_reply_first() {
    let server = spawn_example("echo", &["--addr", "127.0.0.1:0"]);
    let mut c = connect(&server.addr);
    // 4 MiB in flight, not read yet: most of the reply sits in the server's queue.
    let data = vec![42u8; 4 << 20];
    let mut w = c.try_clone().unwrap();
    // The server may close while this is still writing: EPIPE is expected then.
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&data);
    });
    std::thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    writer.join().unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert!(!back.is_empty() && back.iter().all(|&b| b == 42));
    // What the server had read before the signal came back whole; reading
    // stopped at the signal, so the echo may be shorter than what was sent.
    assert!(back.len() <= 4 << 20);
}

#[test]
fn echo_refuses_unknown_flags_clearly() {
    let out = Command::new(example("echo"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(example("echo"))
        .args(["--addr", "127.0.0.1:0", "--mode", "sideways"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sideways"));
}

#[test]
fn upper_replies_upper_case_to_a_half_closing_client() {
    for mode in ["lt", "et"] {
        let server = spawn_example("upper", &["--addr", "127.0.0.1:0", "--mode", mode]);
        let mut c = connect(&server.addr);
        c.write_all(b"hello, selectors\n").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = String::new();
        c.read_to_string(&mut back).unwrap();
        assert_eq!(back, "HELLO, SELECTORS\n");
    }
}

fn read_line(c: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while c.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8(line).unwrap()
}

#[test]
fn chat_broadcasts_lines_and_drops_overlong_lines_and_slow_readers() {
    for mode in ["lt", "et"] {
        let server = spawn_example(
            "chat",
            &[
                "--addr",
                "127.0.0.1:0",
                "--mode",
                mode,
                "--max-line",
                "100",
                "--max-pending",
                "100000",
            ],
        );
        let mut a = connect(&server.addr);
        let mut b = connect(&server.addr);
        let mut c = connect(&server.addr);
        std::thread::sleep(Duration::from_millis(100));
        // Split across writes: framing is by line, not by read.
        a.write_all(b"hel").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        a.write_all(b"lo\nsecond line\n").unwrap();
        for other in [&mut b, &mut c] {
            assert!(read_line(other).ends_with("] hello"));
            assert!(read_line(other).ends_with("] second line"));
        }
        // An overlong line: an error line, then EOF.
        b.write_all(&[b'x'; 150]).unwrap();
        assert!(read_line(&mut b).starts_with("error: line too long"));
        let mut rest = Vec::new();
        let _ = b.read_to_end(&mut rest);
        // c stops reading; a floods; c is dropped, a is still served.
        let line = vec![b'y'; 99];
        let mut flood = line.clone();
        flood.push(b'\n');
        let mut d = connect(&server.addr);
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..20_000 {
            a.write_all(&flood).unwrap();
            // d keeps up; c does not read at all.
            if d.peek(&mut [0u8; 1]).is_ok() {
                let mut sink = vec![0u8; 1 << 16];
                d.set_nonblocking(true).unwrap();
                while d.read(&mut sink).is_ok_and(|n| n > 0) {}
                d.set_nonblocking(false).unwrap();
            }
        }
        // c was disconnected: after its buffered lines, EOF or a reset.
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut sink = vec![0u8; 1 << 16];
        let mut ended = false;
        for _ in 0..100_000 {
            match c.read(&mut sink) {
                Ok(0) | Err(_) => {
                    ended = true;
                    break;
                }
                Ok(_) => {}
            }
        }
        assert!(ended, "{mode}: the slow reader was not disconnected");
        a.write_all(b"bye\n").unwrap();
    }
}

#[test]
fn echo_on_select_closes_only_the_clients_past_fd_setsize() {
    // The select backend cannot watch fd >= 1024: those clients are closed
    // at accept, everyone else keeps being served, nothing panics.
    let server = spawn_example("echo", &["--addr", "127.0.0.1:0", "--backend", "select"]);
    let mut clients: Vec<TcpStream> = (0..1100).map(|_| connect(&server.addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut served = 0;
    let mut refused = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = format!("{i:04}");
        let _ = c.write_all(msg.as_bytes());
        let mut buf = [0u8; 4];
        match c.read(&mut buf) {
            Ok(4) => {
                assert_eq!(&buf, msg.as_bytes());
                served += 1;
            }
            Ok(0) | Err(_) => refused += 1,
            Ok(n) => panic!("short echo of {n} bytes"),
        }
    }
    println!("select: {served} served, {refused} closed at FD_SETSIZE");
    assert!(served > 1000 && served < 1024, "{served} served");
    assert_eq!(served + refused, 1100);
    // Those that were served still are.
    clients[0].write_all(b"more").unwrap();
    let mut buf = [0u8; 4];
    clients[0].read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"more");
}

/// F2 of the attack on the examples: `threaded` died of SIGTERM and SIGINT
/// (status -15/-2) and lost the reply still in its pool: the pool threads
/// started before the signals were blocked, so the kernel delivered the
/// signal to one of them. Now every pool thread starts with all signals
/// blocked and the shutdown waits for replies in flight.
#[test]
fn threaded_exits_0_on_sigterm_and_sigint_after_delivering_replies_in_flight() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut server = spawn_example(
            "threaded",
            &[
                "--addr",
                "127.0.0.1:0",
                "--threads",
                "2",
                "--delay-ms",
                "300",
            ],
        );
        let mut c = connect(&server.addr);
        c.write_all(b"slow in flight\n").unwrap();
        std::thread::sleep(Duration::from_millis(100)); // running on the pool now
        kill(Pid::from_raw(server.child.id() as i32), signal).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"SLOW IN FLIGHT\n", "{signal}: the reply in flight");
        drop(c); // our EOF ends the server's lingering close
        let status = server.child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{signal}: {status}");
    }
}

/// F6 of the attack on the examples: 1,000 connections sending a byte a
/// second were held forever. The examples now close a silent client after
/// `--idle-timeout` (default 60 s), and chat disconnects a line not
/// finished within `--line-timeout` of its first byte.
#[test]
fn the_examples_close_idle_clients_and_chat_closes_a_line_that_never_ends() {
    let server = spawn_example("echo", &["--addr", "127.0.0.1:0", "--idle-timeout", "1"]);
    let mut silent = connect(&server.addr);
    let mut buf = [0u8; 16];
    assert_eq!(silent.read(&mut buf).unwrap(), 0, "closed for idleness");

    let server = spawn_example(
        "chat",
        &[
            "--addr",
            "127.0.0.1:0",
            "--line-timeout",
            "1",
            "--idle-timeout",
            "30",
        ],
    );
    let mut slowloris = connect(&server.addr);
    let mut reply = Vec::new();
    for _ in 0..30 {
        // A byte every 100 ms, never a newline: not idle, never finished.
        if slowloris.write_all(b"x").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        slowloris.set_nonblocking(true).unwrap();
        let mut chunk = [0u8; 128];
        match slowloris.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        slowloris.set_nonblocking(false).unwrap();
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("not finished within 1 s"), "{reply:?}");
}

#[test]
fn chat_kv_and_threaded_refuse_workers_and_every_example_refuses_zero_counts() {
    for (name, args, says) in [
        (
            "chat",
            &["--addr", "127.0.0.1:0", "--workers", "2"][..],
            "workers",
        ),
        (
            "threaded",
            &["--addr", "127.0.0.1:0", "--workers", "2"][..],
            "workers",
        ),
        (
            "echo",
            &["--addr", "127.0.0.1:0", "--workers", "0"][..],
            "workers",
        ),
        ("threaded", &["--threads", "0"][..], "threads"),
        ("kv", &["--stats-every", "0"][..], "stats-every"),
        ("udp_echo", &["--max-packet", "0"][..], "max-packet"),
        (
            "udp_echo",
            &["--addr", "127.0.0.1:0", "--max-packet", "100000000000"][..],
            "max_packet_size",
        ),
        (
            "udp_echo",
            &[
                "--addr",
                "127.0.0.1:0",
                "--max-packet",
                "18446744073709551615",
            ][..],
            "max_packet_size",
        ),
        ("unix_echo", &["--path", ""][..], "empty unix socket path"),
        ("unix_echo", &["--path", "@"][..], "empty unix socket path"),
        ("bench", &["--connections", "100,0"][..], "connections"),
        ("bench", &["--duration", "0"][..], "duration"),
        (
            "kv",
            &["--addr", "127.0.0.1:0", "--workers", "3"][..],
            "one reactor per process",
        ),
        ("kv", &["--request-timeout", "0"][..], "request-timeout"),
        ("kv", &["--max-request", "0"][..], "max-request"),
        ("kv", &["--protocol", "memcache"][..], "protocol"),
    ] {
        let out = Command::new(example(name)).args(args).output().unwrap();
        assert!(!out.status.success(), "{name} {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
}

/// A flood of oversized datagrams made 75,000 WARN lines in 1.3 s; the
/// warning is now rate-limited (at most one a second, with the count of
/// those not logged).
#[test]
fn udp_echo_rate_limits_its_truncation_warning() {
    let log = std::env::temp_dir().join(format!("edgeloop-udp-{}.log", std::process::id()));
    let mut server = spawn_example_with(
        "udp_echo",
        &["--addr", "127.0.0.1:0", "--max-packet", "16"],
        Command::new(example("udp_echo"))
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let addr = server.addr.clone();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(&addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..2_000 {
        socket.send(&[7u8; 100]).unwrap();
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(n, 16, "truncated to --max-packet");
    }
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(server.child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let warnings = text.lines().filter(|l| l.contains("truncated")).count();
    assert!(
        (1..=5).contains(&warnings),
        "{warnings} truncation warnings for 2,000 datagrams"
    );
}

/// Failure mode 32 for the other servers: unix_echo and udp_echo stop on
/// SIGTERM with status 0 (unix_echo removing its socket file), after
/// serving what they were serving.
#[test]
fn unix_echo_and_udp_echo_exit_0_on_sigterm() {
    let path = std::env::temp_dir().join(format!("edgeloop-ex-{}.sock", std::process::id()));
    let path_arg = path.to_str().unwrap().to_string();
    let mut server = spawn_example("unix_echo", &["--path", &path_arg]);
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.write_all(b"hi").unwrap();
    let mut b = [0u8; 2];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hi");
    drop(c);
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(server.child.wait().unwrap().code(), Some(0));
    assert!(!path.exists(), "the socket file is removed");

    let mut server = spawn_example("udp_echo", &["--addr", "127.0.0.1:0"]);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(b"ping", &server.addr).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(socket.recv(&mut buf).unwrap(), 4);
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(server.child.wait().unwrap().code(), Some(0));
}

/// Each example's `--help` says what it does, not the crate's description.
#[test]
fn every_example_help_says_what_it_does() {
    for (name, says) in [
        ("echo", "Echo server"),
        ("upper", "Upper-casing"),
        ("chat", "Broadcast chat"),
        ("threaded", "thread pool"),
        ("udp_echo", "UDP echo"),
        ("unix_echo", "Unix-socket echo"),
        ("hello", "smallest edgeloop program"),
        ("kv", "key-value server"),
    ] {
        let out = Command::new(example(name)).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains(says), "{name} --help: {help}");
        assert!(
            !help.contains("hand-rolled"),
            "{name} --help is the crate's description"
        );
    }
}

/// The threaded contract: `slow` lines run on the pool and come back
/// upper-cased; other lines are echoed at once from the loop, so another
/// client is not kept waiting; one connection's replies keep its order.
#[test]
fn threaded_answers_quick_lines_at_once_and_keeps_order_per_connection() {
    let server = spawn_example(
        "threaded",
        &[
            "--addr",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--delay-ms",
            "3000",
        ],
    );
    let mut busy = connect(&server.addr);
    busy.write_all(b"slow one\nquick after\n").unwrap();
    std::thread::sleep(Duration::from_millis(100)); // on the pool now
    // Another client's quick lines come back while the pool sleeps.
    let mut other = connect(&server.addr);
    other.write_all(b"hello\nworld\n").unwrap();
    let mut reply = [0; 12];
    other.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"hello\nworld\n");
    // Nothing for the busy client yet: its quick line waits behind its
    // slow one.
    busy.set_nonblocking(true).unwrap();
    let mut buf = [0; 64];
    let early = busy.read(&mut buf).map_err(|e| e.kind());
    assert_eq!(
        early,
        Err(std::io::ErrorKind::WouldBlock),
        "a reply out of order"
    );
    busy.set_nonblocking(false).unwrap();
    let mut reply = [0; 21];
    busy.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"SLOW ONE\nquick after\n");
}

/// A job still running at shutdown cannot hold the process: the graceful
/// shutdown gives replies in flight its grace (5 s by default), then the
/// process exits 0, leaving the job behind (joining every worker would
/// wait for a job that may never return).
#[test]
fn threaded_exits_after_the_grace_period_with_a_job_still_running() {
    let mut server = spawn_example(
        "threaded",
        &["--addr", "127.0.0.1:0", "--delay-ms", "600000"],
    );
    let mut client = TcpStream::connect(&server.addr).unwrap();
    client.write_all(b"slow forever\n").unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the job is running
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    let started = std::time::Instant::now();
    let status = exited_within(&mut server.child, Duration::from_secs(60))
        .expect("threaded still running 60 s after SIGTERM");
    println!("exited {status} {:?} after SIGTERM", started.elapsed());
    assert!(status.success(), "{status}");
}

/// Work in flight on the pool is activity: with `threaded --delay-ms 3000
/// --idle-timeout 2` the reply comes (the idle timeout does not close a
/// connection whose reply is being computed), and the timeout counts from
/// the last of it.
#[test]
fn threaded_keeps_a_connection_whose_reply_is_on_the_pool_past_the_idle_timeout() {
    let server = spawn_example(
        "threaded",
        &[
            "--addr",
            "127.0.0.1:0",
            "--idle-timeout",
            "1",
            "--delay-ms",
            "2500",
            "--threads",
            "1",
        ],
    );
    let mut clients: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        // One pool thread: the third reply waits 7.5 s in the queue.
        client.write_all(format!("slow {i}\n").as_bytes()).unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap(); // the reply, then the idle close
        assert_eq!(reply, format!("SLOW {i}\n"), "client {i}");
    }
}
