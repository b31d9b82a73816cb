//! The IO models of the classic texts, each a small echo server in its own
//! child process, measured by the benchmark's load generator and printed as
//! one table.
//!
//! Run: `cargo run --release -p edgeloop-study --bin models` (about 4 minutes).
//!
//! What to look for: what each model costs, and what fails first as
//! connections grow. Blocking one-at-a-time: a second client waits for the
//! first to leave. Thread per connection: a thread (and its stack) per
//! client. Busy polling: a whole core burned while nothing happens.
//! select: the 1024-fd wall. poll: cost that follows the watched fds.
//! epoll: none of these. Signal-driven IO: a real-time signal per
//! readiness report, until its queue overflows. io_uring: completions, not
//! readiness, and well under one syscall per message. POSIX AIO: helper
//! threads, counted.
//!
//! The syscalls-per-message column comes from `strace -f -c` attached to
//! each server for a separate run of 100 connections × 100 messages (it is
//! skipped, with a dash, where strace cannot attach).

mod aio;
mod sigio;
mod uring;
mod uring_pbuf;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use edgeloop::conn::{Conn, ConnOptions, Handler};
use edgeloop::server::{ServerOptions, StreamServer};
use edgeloop::{Backend, Trigger};
use edgeloop_bench::{load, procfs};

/// The five IO models, measured side by side.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Connection counts for the throughput columns.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    connections: Vec<usize>,
    /// Idle connections for the idle columns.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// Seconds measured per cell.
    #[arg(long, default_value_t = 1.5)]
    duration: f64,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Run one model's server (used by the table; prints `listening on ADDR`).
    Serve {
        model: String,
        /// sigio: lower RLIMIT_SIGPENDING to this, so the real-time signal
        /// queue overflows and the fallback path runs.
        #[arg(long)]
        sigpending: Option<u64>,
    },
    /// Print this process's thread count before and while one aio_read
    /// waits on a socket (the POSIX AIO row's probe).
    AioThreads,
}

const MODELS: [&str; 10] = [
    "blocking",
    "thread-per-conn",
    "busy-poll",
    "select",
    "poll",
    "epoll-lt",
    "epoll-et",
    "sigio",
    "io_uring",
    "io_uring-pbuf",
];

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Sub::Serve { model, sigpending }) => return serve(&model, sigpending),
        Some(Sub::AioThreads) => {
            let (before, during) = aio::threads_during_aio_read()?;
            println!("{before} {during}");
            return Ok(());
        }
        None => {}
    }
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    print!("| model |");
    for n in &cli.connections {
        print!(" msgs/s at {n} |");
    }
    println!(
        " server CPU µs/msg (100 conns) | syscalls/msg (strace, 100 conns) | CPU with {} idle | bytes per idle conn | threads | what fails first |",
        cli.idle
    );
    print!("|---|");
    for _ in &cli.connections {
        print!("---:|");
    }
    println!("---:|---:|---:|---:|---:|---|");
    let mut maps = Vec::new();
    for model in MODELS {
        match row(model, &cli) {
            Ok((line, mapped)) => {
                println!("{line}");
                maps.push((model, mapped));
            }
            Err(e) => {
                let dashes = "- | ".repeat(cli.connections.len() + 5);
                println!("| {model} | {dashes}refused here: {e} |");
            }
        }
    }
    let aio = match aio::threads_during_aio_read() {
        Ok((before, during)) => format!(
            "glibc serves aio_read with helper threads, not kernel async IO: this process had {before} thread(s), {during} while one aio_read waited on a socket"
        ),
        Err(e) => format!("aio_read failed: {e}"),
    };
    let dashes = "- | ".repeat(cli.connections.len() + 5);
    println!("| POSIX AIO (probe) | {dashes}{aio} |");
    println!();
    for (model, mapped) in maps {
        if !mapped.is_empty() {
            println!(
                "{model}: shared mappings in /proc/PID/maps: {}",
                mapped.join("; ")
            );
        }
    }
    Ok(())
}

/// One model's row, and its `/proc/PID/maps` lines that name an
/// io_uring or eventpoll mapping.
fn row(model: &str, cli: &Cli) -> io::Result<(String, Vec<String>)> {
    let mut row = format!("| {model} |");
    let mut cpu_per_msg = String::from("-");
    for &n in &cli.connections {
        let mut server = Server::start(model)?;
        let (rate, cpu) = server.throughput(n, Duration::from_secs_f64(cli.duration))?;
        row.push_str(&format!(" {rate:.0} |"));
        if n == 100 {
            cpu_per_msg = cpu.map_or("-".into(), |c| format!("{c:.2}"));
        }
    }
    // The blocking server serves one connection until it closes, and the
    // load generator closes none before all are done: it gets one.
    let connections = if model == "blocking" { 1 } else { 100 };
    let syscalls = Server::start(model)?
        .syscalls_per_message(connections, 100)
        .map_or("-".into(), |s| format!("{s:.2}"));
    let mut server = Server::start(model)?;
    let idle = server.idle(cli.idle)?;
    let mapped = server.shared_mappings();
    let line = format!(
        "{row} {cpu_per_msg} | {syscalls} | {:.0} % | {} | {} | {} |",
        idle.cpu_percent,
        idle.bytes_per_conn
            .map_or("-".into(), |b| format!("{b:.0}")),
        idle.threads,
        fails_first(model, &idle)
    );
    Ok((line, mapped))
}

fn fails_first(model: &str, idle: &Idle) -> String {
    match model {
        "blocking" => format!(
            "a second client waits for the first: its first echo came after {:.0} ms (the first held on for 300 ms)",
            idle.second_client_wait.as_secs_f64() * 1e3
        ),
        "thread-per-conn" => format!(
            "memory and threads: {} threads, {:.0} KiB resident per connection",
            idle.threads,
            idle.bytes_per_conn.unwrap_or(0.0) / 1024.0
        ),
        "busy-poll" => format!(
            "CPU: {:.0} % of a core with nothing to do",
            idle.cpu_percent
        ),
        "select" => "fd 1024: clients past FD_SETSIZE are closed (see tests/examples.rs)".into(),
        "poll" => "cost per wait grows with the watched fds (the backends program)".into(),
        "sigio" => "the real-time signal queue (RLIMIT_SIGPENDING): past it the kernel raises plain SIGIO, which names no fd, and every socket must be tried (`models serve sigio --sigpending 8`; study/tests/models.rs)".into(),
        "io_uring-pbuf" => "nothing up to these counts: a provided-buffer ring lends a buffer only while data is in hand (4,096 × 2 KiB, shared by all connections)".into(),
        "io_uring" => format!(
            "memory: a {} B receive buffer stays posted per idle connection (a provided-buffer ring would lend buffers only to connections with data)",
            uring::BUFFER
        ),
        _ => "nothing up to these counts".into(),
    }
}

struct Idle {
    cpu_percent: f64,
    bytes_per_conn: Option<f64>,
    threads: u64,
    second_client_wait: Duration,
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_field(pid: u32, key: &str) -> u64 {
    procfs::status_field(pid, key)
}

fn cpu(pid: u32) -> Duration {
    Duration::from_millis(procfs::cpu_ticks(pid) * 10)
}

impl Server {
    fn start(model: &str) -> io::Result<Server> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", model])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
        let Some(addr) = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
        else {
            // It did not start (io_uring refused, say): its error is the
            // row's cell.
            let mut stderr = String::new();
            let _ = child.wait();
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            return Err(io::Error::other(stderr.trim().replace('\n', " ")));
        };
        std::thread::sleep(Duration::from_millis(100));
        Ok(Server { child, addr })
    }

    /// Messages/s over the window, and the server's CPU µs per message.
    fn throughput(
        &mut self,
        connections: usize,
        duration: Duration,
    ) -> io::Result<(f64, Option<f64>)> {
        let pid = self.child.id();
        let marks = std::cell::RefCell::new(Vec::new());
        let mut mark = || marks.borrow_mut().push(cpu(pid));
        let mut mark2 = mark;
        let outcome = load::run(
            self.addr,
            connections,
            64,
            1,
            0,
            Some(load::Window {
                start: Instant::now(),
                warmup: Duration::from_millis(300),
                duration,
                on_open: Some(&mut mark),
                on_close: Some(&mut mark2),
            }),
        )?;
        let m = marks.into_inner();
        let rate = outcome.messages as f64 / outcome.window.as_secs_f64();
        let cpu = (outcome.messages > 0)
            .then(|| (m[1] - m[0]).as_secs_f64() * 1e6 / outcome.messages as f64);
        Ok((rate, cpu))
    }

    /// Syscalls per echoed message: `strace -f -c` attached to the server
    /// while `connections` × `messages` messages go through. None if strace
    /// cannot attach.
    fn syscalls_per_message(&mut self, connections: usize, messages: u64) -> Option<f64> {
        let out = std::env::temp_dir().join(format!("edgeloop-models-{}.strace", self.child.id()));
        let mut strace = Command::new("strace")
            .args(["-f", "-c", "-o"])
            .arg(&out)
            .args(["-p", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(500)); // attached by now
        let outcome = load::run(self.addr, connections, 64, 1, messages, None);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(strace.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = strace.wait();
        let summary = std::fs::read_to_string(&out).ok()?;
        let _ = std::fs::remove_file(&out);
        let outcome = outcome.ok()?;
        // The last line: "100.00  secs  usecs/call  calls  [errors]  total".
        let calls: f64 = summary
            .lines()
            .rev()
            .find(|l| l.trim_end().ends_with("total"))?
            .split_whitespace()
            .nth(3)?
            .parse()
            .ok()?;
        (outcome.messages > 0).then(|| calls / outcome.messages as f64)
    }

    /// Lines of `/proc/PID/maps` that map an io_uring or an eventpoll
    /// instance (study claim 6: which interface shares memory with the
    /// kernel).
    fn shared_mappings(&self) -> Vec<String> {
        std::fs::read_to_string(format!("/proc/{}/maps", self.child.id()))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("io_uring") || l.contains("eventpoll"))
            .map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                let (range, perms, name) = (fields[0], fields[1], fields[fields.len() - 1]);
                let (a, b) = range.split_once('-').unwrap_or(("0", "0"));
                let size = u64::from_str_radix(b, 16)
                    .unwrap_or(0)
                    .saturating_sub(u64::from_str_radix(a, 16).unwrap_or(0));
                format!("{name} {perms} {} KiB", size / 1024)
            })
            .collect()
    }

    fn idle(&mut self, n: usize) -> io::Result<Idle> {
        let pid = self.child.id();
        // How long a second client waits while a first one holds on.
        let first = TcpStream::connect(self.addr)?;
        let second_client_wait = {
            let addr = self.addr;
            let waiter = std::thread::spawn(move || -> io::Result<Duration> {
                let mut c = TcpStream::connect(addr)?;
                c.set_read_timeout(Some(Duration::from_secs(5)))?;
                let t = Instant::now();
                c.write_all(b"x")?;
                let mut b = [0u8; 1];
                c.read_exact(&mut b)?;
                Ok(t.elapsed())
            });
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
            waiter.join().unwrap().unwrap_or(Duration::from_secs(5))
        };
        let rss0 = proc_field(pid, "VmRSS:") * 1024;
        let mut clients = Vec::new();
        for _ in 0..n {
            match TcpStream::connect(self.addr) {
                Ok(c) => clients.push(c),
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        let rss1 = proc_field(pid, "VmRSS:") * 1024;
        let threads = proc_field(pid, "Threads:");
        let c0 = cpu(pid);
        std::thread::sleep(Duration::from_secs(1));
        let cpu_percent = (cpu(pid) - c0).as_secs_f64() * 100.0;
        let accepted = rss1 > rss0 || threads > 1;
        Ok(Idle {
            cpu_percent,
            bytes_per_conn: accepted
                .then(|| rss1.saturating_sub(rss0) as f64 / clients.len().max(1) as f64),
            threads,
            second_client_wait,
        })
    }
}

// ---- the servers -------------------------------------------------------------------

fn serve(model: &str, sigpending: Option<u64>) -> io::Result<()> {
    let listener = edgeloop::conn::tcp_listener("127.0.0.1:0".parse().unwrap(), None, false)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    match model {
        "blocking" => blocking(listener),
        "thread-per-conn" => thread_per_connection(listener),
        "busy-poll" => busy_poll(listener),
        "sigio" => sigio::serve(listener, sigpending),
        "io_uring" => uring::serve(listener, uring::Variant::Default),
        // Not rows of the table: scripts/uring_profile.sh compares them.
        "io_uring-pollfirst" => uring::serve(listener, uring::Variant::PollFirst),
        "io_uring-defer" => uring::serve(listener, uring::Variant::DeferTaskrun),
        "io_uring-pbuf" => uring_pbuf::serve(listener),
        other => {
            let (backend, trigger) = match other {
                "select" => (Backend::Select, Trigger::Level),
                "poll" => (Backend::Poll, Trigger::Level),
                "epoll-lt" => (Backend::Epoll, Trigger::Level),
                "epoll-et" => (Backend::Epoll, Trigger::Edge),
                _ => return Err(io::Error::other(format!("unknown model {other}"))),
            };
            let options = ServerOptions::default()
                .with_backend(backend)
                .with_conn(ConnOptions::with_trigger(trigger));
            StreamServer::from_tcp(
                edgeloop::Reactor::with_backend(backend)?,
                listener,
                Echo,
                options,
            )?
            .serve_forever()
        }
    }
}

struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(data);
    }
}

fn echo_blocking(mut c: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 || c.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// One client at a time: the next waits in the backlog.
fn blocking(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(false)?;
    loop {
        let (c, _) = listener.accept()?;
        echo_blocking(c);
    }
}

/// socketserver's ThreadingTCPServer: a thread per connection.
fn thread_per_connection(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(false)?;
    loop {
        let (c, _) = listener.accept()?;
        std::thread::spawn(move || echo_blocking(c));
    }
}

/// The tutorial's loop: try recv on every socket, forever, never sleeping.
fn busy_poll(listener: TcpListener) -> io::Result<()> {
    let mut clients: Vec<TcpStream> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match listener.accept() {
            Ok((c, _)) => {
                c.set_nonblocking(true)?;
                clients.push(c);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        clients.retain_mut(|c| match c.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => c.write_all(&buf[..n]).is_ok(),
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        });
    }
}
