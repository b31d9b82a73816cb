//! The scale sweep's building blocks: `bench serve --processes N` holds
//! more connections than one process may, and `bench scale-client`
//! processes (edgeloop's outbound connections, each under the fd cap)
//! open and echo them all.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The bench, built by cargo for this test run.
const BENCH: &str = env!("CARGO_BIN_EXE_bench");

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// A `bench serve` supervisor; killed on drop.
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

/// `bench serve ARGS`, its listening line read.
fn serve(args: &[&str]) -> Server {
    let mut child = Command::new(BENCH)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("bench serve printed {line:?}"))
        .to_string();
    Server { child, addr }
}

/// `bench serve edgeloop-et --processes N`, and its worker pids.
fn serve_processes(n: usize) -> (Server, Vec<u32>) {
    let server = serve(&["edgeloop-et", "--processes", &n.to_string()]);
    let workers = children(server.child.id());
    assert_eq!(workers.len(), n, "workers: {workers:?}");
    (server, workers)
}

/// SIGTERM to the supervisor: it exits 0, and none of `workers` is left.
fn stop(mut server: Server, workers: &[u32]) {
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "the supervisor exited with {status}");
    for &w in workers {
        assert!(
            !std::path::Path::new(&format!("/proc/{w}")).exists()
                || std::fs::read_to_string(format!("/proc/{w}/stat"))
                    .unwrap_or_default()
                    .contains(") Z "),
            "worker {w} outlived the supervisor"
        );
    }
}

struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn start(addr: &str, connections: usize, source: &str, tag: usize) -> Client {
        let mut child = Command::new(BENCH)
            .args(["scale-client", "--addr", addr, "--sources", source])
            .args(["--connections", &connections.to_string()])
            .args(["--tag", &tag.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Client {
            child,
            stdin,
            stdout,
        }
    }

    fn line(&mut self) -> Vec<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.split_whitespace().map(str::to_string).collect()
    }

    fn command(&mut self, command: &str) -> Vec<String> {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.line()
    }

    fn quit(mut self) {
        let _ = writeln!(self.stdin, "quit");
        drop(self.stdin);
        assert!(self.child.wait().unwrap().success());
    }
}

/// 20,500 connections open at once: more than one process may hold (the
/// fd cap is 20,000, and each would be one fd). Each echoes a distinct
/// message while all are open.
#[test]
fn more_connections_than_one_process_can_hold_each_echo() {
    const PER_CLIENT: usize = 10_250;
    let (server, workers) = serve_processes(2);
    let mut clients: Vec<Client> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .enumerate()
        .map(|(i, source)| Client::start(&server.addr, PER_CLIENT, source, i))
        .collect();
    for c in &mut clients {
        let connected = c.line();
        assert_eq!(connected[..3], ["connected", &PER_CLIENT.to_string(), "0"]);
    }
    for c in &mut clients {
        let echoed = c.command("echo");
        assert_eq!(
            echoed[..3],
            ["echoed", &PER_CLIENT.to_string(), "0"],
            "{echoed:?}"
        );
    }
    // Both workers hold a share: neither could have held them all.
    let sockets: Vec<usize> = workers
        .iter()
        .map(|w| {
            std::fs::read_dir(format!("/proc/{w}/fd"))
                .unwrap()
                .filter(|e| {
                    std::fs::read_link(e.as_ref().unwrap().path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .collect();
    assert!(
        sockets.iter().all(|&s| s > 1_000) && sockets.iter().sum::<usize>() > 20_000,
        "sockets per worker: {sockets:?}"
    );
    for c in clients {
        c.quit();
    }
    stop(server, &workers);
}

/// `bench serve --processes 2 --exit-after 2` ends: a worker that returns
/// from `serve` is done (not restarted, which would never end), and so is
/// the supervisor once both are.
#[test]
fn serve_with_processes_ends_after_exit_after() {
    let mut server = serve(&["edgeloop-lt", "--processes", "2", "--exit-after", "1"]);
    let addr = server.addr.clone();
    let started = std::time::Instant::now();
    // Connections until both workers have had one close (the kernel picks
    // the worker of each).
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the supervisor still runs after 30 s of connections"
        );
        if let Ok(mut c) = std::net::TcpStream::connect(&addr) {
            let _ = c.write_all(b"x");
            let mut b = [0u8; 1];
            let _ = std::io::Read::read(&mut c, &mut b);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

/// Against a server that closes each connection after one echo, every
/// message a dead connection cannot carry is an error (counting them as
/// nothing would let a sweep report 0 errors); bad arguments
/// (`trickle -1 10`) get an `error` line and the client goes on.
#[test]
fn scale_client_counts_dead_connections_as_errors_and_refuses_bad_commands() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Echoes one read on each connection, then closes it.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 256];
                if let Ok(n @ 1..) = stream.read(&mut buf) {
                    let _ = stream.write_all(&buf[..n]);
                }
            });
        }
    });
    let mut client = Client::start(&addr, 20, "127.0.0.1", 0);
    assert_eq!(client.line()[..3], ["connected", "20", "0"]);
    assert_eq!(client.command("echo")[..3], ["echoed", "20", "0"]);
    std::thread::sleep(std::time::Duration::from_millis(300)); // the server closed all
    let trickle = client.command("trickle 1 100");
    assert_eq!(trickle[0], "trickle");
    assert_eq!(trickle[1], "0", "{trickle:?}");
    let errors: u64 = trickle[2].parse().unwrap();
    assert!(
        errors >= 20,
        "20 dead connections, {errors} errors: {trickle:?}"
    );
    assert_eq!(client.command("echo")[..3], ["echoed", "0", "20"]);
    for bad in [
        "trickle -1 10",
        "trickle 1 -5",
        "trickle x 10",
        "trickle inf 10",
        "fly",
    ] {
        let reply = client.command(bad);
        assert_eq!(reply[0], "error", "{bad}: {reply:?}");
    }
    client.quit();
}
