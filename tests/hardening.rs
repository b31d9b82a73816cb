//! Syscall fault injection without code changes: the echo example under
//! `strace -e inject=...`. Skipped, visibly (a `SKIPPED` line in the test
//! output), where strace is missing or may not trace.
#![cfg(feature = "server")]

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the echo example under `strace -e inject=...`, echoes through it,
/// and returns strace's report. None if strace is not installed.
fn echo_under_strace(inject: &[&str], clients: usize) -> Option<String> {
    // Skipped where strace is missing or may not trace (ptrace restricted).
    if !Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        util::skip(
            "strace fault injection",
            "strace is missing or cannot trace here (ptrace restricted)",
        );
        return None;
    }
    let echo = util::process::example("echo");
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let log =
        std::env::temp_dir().join(format!("edgeloop-strace-{}-{run}.log", std::process::id()));
    let mut args = vec!["-f", "-qq", "-o", log.to_str().unwrap()];
    for i in inject {
        args.push("-e");
        args.push(i);
    }
    let mut child = Command::new("strace")
        .args(&args)
        .arg(&echo)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    // An injected accept or read failure costs exactly that one client.
    let allowed = usize::from(
        inject
            .iter()
            .any(|i| i.contains("accept4") || i.contains("recvfrom")),
    );
    let mut unserved = 0;
    for i in 0..clients {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let msg = format!("client {i}");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        match c.read_exact(&mut back) {
            Ok(()) => assert_eq!(back, msg.as_bytes()),
            Err(_) => unserved += 1,
        }
    }
    assert!(
        unserved <= allowed,
        "{unserved} clients not served under {inject:?}"
    );
    // SIGTERM goes to the traced echo server (strace's child), not to strace.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .unwrap_or_default();
    for pid in children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "echo exited with {status}");
    let report = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    Some(report)
}

#[test]
fn epoll_wait_interrupted_by_signals_is_retried() {
    // failure mode 19 in docs/failure-modes.md: EINTR from epoll_wait on the 2nd, 5th, 8th...
    // call. Every client is still served and the server exits cleanly.
    if let Some(report) = echo_under_strace(
        &["inject=epoll_wait:error=EINTR:when=2+3", "trace=epoll_wait"],
        20,
    ) {
        assert!(
            report.contains("EINTR"),
            "strace injected nothing:\n{report}"
        );
    }
}

#[test]
fn a_transient_accept_error_does_not_kill_the_listener() {
    // Failure mode 2 (docs/failure-modes.md): the 2nd accept4 fails with ECONNABORTED; the
    // 1st and 3rd clients are served.
    if let Some(report) = echo_under_strace(
        &["inject=accept4:error=ECONNABORTED:when=2", "trace=accept4"],
        5,
    ) {
        assert!(
            report.contains("ECONNABORTED"),
            "strace injected nothing:\n{report}"
        );
    }
}

#[test]
fn a_read_failing_with_econnreset_closes_only_that_connection() {
    // recvfrom fails once with ECONNRESET (an injected reset): that client
    // is closed, counted as a reset, and the others are served.
    if let Some(report) = echo_under_strace(
        &["inject=recvfrom:error=ECONNRESET:when=3", "trace=recvfrom"],
        6,
    ) {
        assert!(
            report.contains("ECONNRESET"),
            "strace injected nothing:\n{report}"
        );
    }
}
