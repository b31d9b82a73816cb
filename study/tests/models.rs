//! The study's two newest IO models, as servers: signal-driven IO (its
//! overflow path included) and io_uring each echo correctly under a short
//! bounded load; POSIX AIO is served by helper threads; io_uring's rings
//! are shared memory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The `models` program, built by cargo for this test run.
const MODELS: &str = env!("CARGO_BIN_EXE_models");

/// A running model server; killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `models serve MODEL ARGS`, its stderr captured, and waits for its
/// `listening on ADDR` line; `None` if it printed none (a model the kernel
/// refused, such as io_uring where it is disabled).
fn start(model: &str, args: &[&str]) -> Option<Server> {
    let mut command = Command::new(MODELS);
    command.args(["serve", model]).args(args);
    start_command(command)
}

/// Like [`start`], with the server's soft fd limit lowered to `nofile`
/// (by the shell that execs it).
fn start_limited(model: &str, nofile: u32) -> Option<Server> {
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            &format!("ulimit -S -n {nofile} && exec \"$0\" serve {model}"),
        ])
        .arg(MODELS);
    start_command(command)
}

/// Runs `command` (stdout and stderr piped) and reads its `listening on`
/// line.
fn start_command(mut command: Command) -> Option<Server> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .map(str::to_string);
    let server = Server {
        child,
        addr: addr.clone().unwrap_or_default(),
    };
    addr.map(|_| server)
}

/// `clients` connections, each sending `messages` distinct messages
/// (`pipeline` in flight at once) and checking every echoed byte.
fn load(addr: &str, clients: usize, messages: usize, pipeline: usize) {
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                for batch in (0..messages).collect::<Vec<_>>().chunks(pipeline) {
                    let sent: Vec<u8> = batch
                        .iter()
                        .flat_map(|i| format!("<{c}:{i}:{}>", "x".repeat(40)).into_bytes())
                        .collect();
                    s.write_all(&sent).unwrap();
                    let mut back = vec![0; sent.len()];
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, sent, "client {c}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// SIGTERM, exit 0, and the server's counts line from stderr.
fn stop(mut server: Server) -> String {
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut stderr = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

/// A test that cannot run here says so on stderr, visibly.
fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
}

/// `name=<n>` in a counts line.
fn count(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

#[test]
fn the_signal_driven_server_echoes_every_byte() {
    let server = start("sigio", &[]).expect("the sigio server starts");
    load(&server.addr, 20, 200, 1);
    let counts = stop(server);
    assert!(count(&counts, "rt_signals") > 0, "{counts}");
}

/// RLIMIT_SIGPENDING at 4: the real-time signal queue overflows, the
/// kernel raises plain SIGIO, and the server's fall back to trying every
/// socket loses no readiness: every byte still comes back.
#[test]
fn the_signal_queue_overflows_and_the_fallback_loses_nothing() {
    let server = start("sigio", &["--sigpending", "4"]).expect("the sigio server starts");
    load(&server.addr, 40, 100, 4);
    let counts = stop(server);
    assert!(
        count(&counts, "overflows") > 0,
        "the overflow path never ran: {counts}"
    );
}

#[test]
fn the_io_uring_server_echoes_every_byte_with_few_syscalls() {
    let Some(server) = start("io_uring", &[]) else {
        return skip(
            "the_io_uring_server_echoes_every_byte",
            "the kernel refused io_uring (see the models table for the errno)",
        );
    };
    load(&server.addr, 20, 200, 1);
    // io_uring's rings are mapped into the process: shared memory with the
    // kernel, which an epoll fd never is (study/tests/study.rs).
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", server.child.id())).unwrap();
    let rings = maps
        .lines()
        .filter(|l| l.contains("io_uring") && l.split_whitespace().nth(1) == Some("rw-s"))
        .count();
    assert!(rings >= 2, "no shared io_uring mapping:\n{maps}");
    let counts = stop(server);
    // 4,000 messages, each a recv and a send completion.
    assert!(count(&counts, "completions") >= 8_000, "{counts}");
    assert!(
        count(&counts, "enters") < count(&counts, "completions"),
        "one io_uring_enter per completion or worse: {counts}"
    );
}

/// In a process of its own (this one's thread count moves with the other
/// tests).
#[test]
fn posix_aio_on_a_socket_runs_on_a_helper_thread() {
    let out = Command::new(MODELS).arg("aio-threads").output().unwrap();
    assert!(out.status.success());
    let out = String::from_utf8(out.stdout).unwrap();
    let (before, during) = out.trim().split_once(' ').unwrap();
    let (before, during): (u64, u64) = (before.parse().unwrap(), during.parse().unwrap());
    assert!(
        during > before,
        "threads {before} -> {during}: no helper thread while aio_read waited"
    );
}

/// The provided-buffer-ring variant: one multishot recv per connection,
/// buffers lent from one shared ring only while data is in hand.
#[test]
fn the_io_uring_buffer_ring_server_echoes_every_byte() {
    let Some(server) = start("io_uring-pbuf", &[]) else {
        return skip(
            "the_io_uring_buffer_ring_server_echoes_every_byte",
            "the kernel refused io_uring or its buffer rings",
        );
    };
    load(&server.addr, 20, 200, 2);
    let counts = stop(server);
    // 2,000 pipelined pairs: at least a recv and a send completion each.
    assert!(count(&counts, "completions") >= 4_000, "{counts}");
    assert_eq!(count(&counts, "no_buffers"), 0, "{counts}");
}

/// One message and its echo on `stream`.
fn echoes(stream: &mut TcpStream, message: &[u8]) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(message).unwrap();
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, message);
}

/// Sends without reading until the server stops taking bytes (ten stalls
/// in a row); returns the bytes sent.
fn flood_without_reading(stream: &mut TcpStream, limit: u64) -> u64 {
    stream.set_nonblocking(true).unwrap();
    let chunk = vec![b'f'; 64 * 1024];
    let (mut sent, mut stalls) = (0u64, 0);
    while stalls < 10 && sent < limit {
        match stream.write(&chunk) {
            Ok(n) => {
                sent += n as u64;
                stalls = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stalls += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
    sent
}

/// At the fd limit each model waits for a connection to close (re-arming
/// a multishot accept that EMFILE just ended would be a busy loop):
/// past the limit the clients wait in the backlog, and are served once
/// others leave.
#[test]
fn at_the_fd_limit_the_models_wait_for_a_close_instead_of_spinning_or_exiting() {
    for model in ["io_uring", "io_uring-pbuf", "sigio"] {
        let Some(server) = start_limited(model, 32) else {
            skip(model, "the kernel refused it");
            continue;
        };
        let mut clients: Vec<TcpStream> = (0..48)
            .map(|_| TcpStream::connect(&server.addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(500)); // at the limit
        echoes(&mut clients[0], b"first");
        // 16 left: well within the ~24 connections 32 fds hold beside the
        // server's own (closing only 24 left 24, at the very edge).
        clients.drain(1..33); // closed: fds free up
        for client in clients.iter_mut() {
            echoes(client, b"after the limit"); // the waiting ones too
        }
        let counts = stop(server);
        println!("{model}: {counts}");
        if model != "sigio" {
            // A spin makes millions of io_uring_enter calls in 500 ms.
            assert!(count(&counts, "enters") < 10_000, "{model}: {counts}");
        }
    }
}

/// One client that sends and never reads is not read past a bound (an
/// ENOBUFS-ended recv re-armed at once spins a buffer-ring server; a
/// reader without a bound grows without one), and another client is
/// served meanwhile.
#[test]
fn a_client_that_never_reads_is_bounded_and_starves_nobody() {
    for model in ["io_uring-pbuf", "sigio"] {
        let Some(server) = start(model, &[]) else {
            skip(model, "the kernel refused it");
            continue;
        };
        let mut hog = TcpStream::connect(&server.addr).unwrap();
        let sent = flood_without_reading(&mut hog, 1 << 30);
        let mut other = TcpStream::connect(&server.addr).unwrap();
        echoes(&mut other, b"still served");
        std::thread::sleep(Duration::from_millis(500));
        echoes(&mut other, b"still served, later");
        drop(hog);
        let counts = stop(server);
        println!("{model}: sent {sent} without reading; {counts}");
        assert!(
            sent < 256 << 20,
            "{model} took {sent} bytes from a non-reader"
        );
        if model == "io_uring-pbuf" {
            assert!(count(&counts, "completions") < 100_000, "{counts}");
        }
    }
}
