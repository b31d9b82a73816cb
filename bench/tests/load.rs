//! The load generator never hangs or lies: against a server that goes
//! silent it gives up after `load::STALL` and counts the messages in
//! flight as errors; against one that echoes twice it counts an error.
//! Both exit non-zero.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

/// A server on its own thread: each connection is handed to `serve`.
fn server(serve: fn(std::net::TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// `bench load` against `addr`, bounded by a watchdog: its status and
/// stdout, and how long it ran.
fn load(addr: &str) -> (std::process::ExitStatus, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BENCH)
        .args([
            "load",
            "--addr",
            addr,
            "--connections",
            "2",
            "--messages",
            "50",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench load still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status, out, started.elapsed())
}

#[test]
fn a_silent_server_is_errors_not_a_hang() {
    let addr = server(|mut s| {
        let mut buf = [0u8; 4096];
        while let Ok(1..) = s.read(&mut buf) {} // reads, never answers
    });
    let (status, out, took) = load(&addr);
    println!("{out} ({took:?})");
    assert!(!status.success(), "{status}: {out}");
    assert_eq!(
        status.code(),
        Some(1),
        "an error exit, not a panic: {status}"
    );
    assert!(out.contains("no echo for"), "{out}");
}

#[test]
fn an_echo_twice_is_an_error_not_a_panic() {
    let addr = server(|mut s| {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut buf) {
            if s.write_all(&buf[..n]).is_err() || s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let (status, out, took) = load(&addr);
    println!("{out} ({took:?})");
    assert_eq!(
        status.code(),
        Some(1),
        "an error exit, not a panic: {status}"
    );
    assert!(!out.contains(" 0 errors"), "{out}");
}
