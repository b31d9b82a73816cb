//! The main job: edgeloop against a raw epoll loop, mio and tokio, in one
//! run, fed by one load generator, with a table, a CSV, a report and plots.
//!
//! Run: `cargo run --release --example bench` (the default sweep, about 90
//! seconds); `--full` for the long sweep; `--help` for the knobs.
//!
//! What to look for: on a 2-core machine the load generator is often the
//! bottleneck, so messages/s alone cannot rank servers. **Server CPU per
//! message** (the server thread's own CPU clock over the window) can, and so
//! can **syscalls per message** (edgeloop's Stats and raw's own counters).
//! Every echoed byte is verified: the errors column must read 0. Results go
//! to `target/edgeloop-report/`: results.csv, report.md, and SVG plots of
//! throughput and CPU per message against connections.

mod field;
pub mod load;
pub mod plot;
pub mod procfs;
mod report;
mod scale;
mod scale_client;
mod servers;

use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::thread::JoinHandleExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use servers::{Kind, Syscalls};

/// edgeloop vs raw epoll vs mio vs tokio: echo throughput, latency, server
/// CPU and syscalls per message.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Connections per cell [default: 10,100,1000; --full: 10,100,1000,4000,8000].
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    connections: Vec<usize>,
    /// Message sizes in bytes [default: 64; --full: 64,1024,16384].
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    sizes: Vec<usize>,
    /// Seconds measured per cell (after the warm-up) [default: 2; --full: 5].
    #[arg(long, value_parser = positive_seconds)]
    duration: Option<f64>,
    /// Seconds of warm-up per cell.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pipeline: usize,
    /// Load generator threads; connections are split among them.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    client_threads: usize,
    /// Pin each server thread to this CPU (and keep the load threads off
    /// it), for a server-bound run on a machine with more cores.
    #[arg(long)]
    pin_server: Option<usize>,
    /// Servers to run (edgeloop-lt, edgeloop-et, edgeloop-et-drain,
    /// edgeloop-poll, edgeloop-select, raw, mio, tokio) [default: all].
    #[arg(long, value_delimiter = ',', value_parser = Kind::parse)]
    servers: Vec<Kind>,
    /// Idle connections for the bytes-per-idle-connection cell (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// The long sweep.
    #[arg(long)]
    full: bool,
    /// Where results.csv, report.md and the SVG plots go.
    #[arg(long, default_value = "target/edgeloop-report")]
    out: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Run one server in this process and print `listening on ADDR` (for the
    /// idle cell and for callgrind).
    Serve {
        #[arg(value_parser = Kind::parse)]
        server: Kind,
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        /// Exit after this many connections have closed.
        #[arg(long)]
        exit_after: Option<u64>,
        /// Server processes (edgeloop servers only), each with its own
        /// SO_REUSEPORT listener and fd limit.
        #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        processes: usize,
    },
    /// The scale sweep: concurrent connections up to 100,000 (`--max`)
    /// against edgeloop (LT and ET, in worker processes) and mio; writes
    /// scale.csv and scale.svg.
    Scale {
        /// The largest step; steps are 1k, 10k, 50k, 100k, then doubling.
        #[arg(long, default_value_t = 100_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        max: usize,
        /// Servers to sweep.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "edgeloop-lt,edgeloop-et,mio"
        )]
        servers: Vec<String>,
        /// Seconds the connections are held idle (server CPU is measured).
        #[arg(long, default_value_t = 3.0, value_parser = positive_seconds)]
        hold: f64,
        /// Seconds of the trickle phase.
        #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
        trickle: f64,
        /// Seconds between two messages of one connection in the trickle.
        #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
        trickle_interval: f64,
        /// Where scale.csv and scale.svg go.
        #[arg(long, default_value = "target/edgeloop-report")]
        out: PathBuf,
    },
    /// One load process of the scale sweep (driven through stdin).
    ScaleClient {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        connections: usize,
        /// Source addresses, used in turn.
        #[arg(long, value_delimiter = ',')]
        sources: Vec<std::net::IpAddr>,
        /// Marks this client's messages.
        #[arg(long, default_value_t = 0)]
        tag: u64,
    },
    /// The shipped kv and http examples against redis-server and nginx,
    /// driven by redis-benchmark, wrk and h2load; writes field.md,
    /// field.csv and field.svg.
    Field {
        /// Requests per redis-benchmark cell at -P 1 (16 times as many at
        /// -P 16 and for h2load).
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        requests: u64,
        /// Seconds per wrk cell.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
        /// Server processes: ours with --processes N, nginx with
        /// worker_processes N (the kv cells need 1: redis-server is one
        /// process).
        #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        processes: usize,
        /// Where field.md, field.csv and field.svg go.
        #[arg(long, default_value = "target/edgeloop-report")]
        out: PathBuf,
    },
    /// Run the load generator against a server for a fixed message count.
    Load {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        connections: usize,
        #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        size: usize,
        #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        pipeline: usize,
        /// Messages per connection.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        messages: u64,
    },
}

/// One cell's figures.
struct Row {
    server: Kind,
    connections: usize,
    size: usize,
    msgs_per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
    cpu_us_per_msg: f64,
    syscalls: Option<Syscalls>,
    messages: u64,
}

impl Row {
    fn per_msg(&self, count: u64) -> f64 {
        count as f64 / self.messages.max(1) as f64
    }

    /// Syscalls per message: total, wait, ctl, read, EAGAIN read, write.
    fn syscall_figures(&self) -> Option<[f64; 6]> {
        self.syscalls.map(|s| {
            [
                s.total(),
                s.waits,
                s.ctls,
                s.reads,
                s.eagain_reads,
                s.writes,
            ]
            .map(|n| self.per_msg(n))
        })
    }

    /// The syscall figures joined by `sep` with `decimals`, or `missing`.
    fn syscall_cells(&self, sep: &str, decimals: usize, missing: &str) -> String {
        self.syscall_figures().map_or_else(
            || [missing; 6].join(sep),
            |f| f.map(|v| format!("{v:.decimals$}")).join(sep),
        )
    }
}

/// A duration in seconds that is a positive, finite number.
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// The bench's command line: parses the arguments and runs what they ask
/// for (the default sweep, `serve`, `load`, `scale`, `scale-client`, `field`).
pub fn main() -> io::Result<()> {
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Sub::Serve {
            server,
            addr,
            exit_after,
            processes,
        }) => return serve(server, addr, exit_after, processes),
        Some(Sub::Scale {
            max,
            servers,
            hold,
            trickle,
            trickle_interval,
            out,
        }) => {
            let mut steps: Vec<usize> = vec![1_000, 10_000, 50_000, 100_000];
            while steps.last().is_some_and(|&s| s < max) {
                steps.push(steps.last().unwrap() * 2);
            }
            steps.retain(|&s| s < max);
            steps.push(max);
            return scale::sweep(&scale::Plan {
                steps,
                servers,
                hold: Duration::from_secs_f64(hold),
                trickle: Duration::from_secs_f64(trickle),
                trickle_interval: Duration::from_secs_f64(trickle_interval),
                out,
            });
        }
        Some(Sub::ScaleClient {
            addr,
            connections,
            sources,
            tag,
        }) => return scale_client::run(addr, connections, &sources, tag),
        Some(Sub::Field {
            requests,
            seconds,
            processes,
            out,
        }) => {
            return field::run(&field::Plan {
                requests,
                seconds,
                processes,
                out,
            });
        }
        Some(Sub::Load {
            addr,
            connections,
            size,
            pipeline,
            messages,
        }) => {
            let outcome = load::run(addr, connections, size, pipeline, messages, None)?;
            println!(
                "{} of {} messages echoed in {:?}, {} errors{}",
                outcome.messages,
                connections as u64 * messages,
                outcome.window,
                outcome.errors,
                if outcome.stalled {
                    format!(
                        " (no echo for {:?}: the rest counted as errors)",
                        load::STALL
                    )
                } else {
                    String::new()
                }
            );
            return if outcome.errors == 0 {
                Ok(())
            } else {
                Err(io::Error::other("echo errors"))
            };
        }
        None => {}
    }
    if cli.connections.is_empty() {
        cli.connections = if cli.full {
            vec![10, 100, 1000, 4000, 8000]
        } else {
            vec![10, 100, 1000]
        };
    }
    if cli.sizes.is_empty() {
        cli.sizes = if cli.full {
            vec![64, 1024, 16384]
        } else {
            vec![64]
        };
    }
    let duration =
        Duration::from_secs_f64(cli.duration.unwrap_or(if cli.full { 5.0 } else { 2.0 }));
    let warmup = Duration::from_secs_f64(cli.warmup);
    if cli.servers.is_empty() {
        cli.servers = Kind::ALL.to_vec();
    }
    let _ = raise_fd_limit();

    let mut cells = Vec::new();
    for &size in &cli.sizes {
        for &connections in &cli.connections {
            for &server in &cli.servers {
                if connections <= server.max_connections() {
                    cells.push((server, connections, size));
                }
            }
        }
    }
    let idle_servers = [
        Kind::EdgeloopEt,
        Kind::EdgeloopLt,
        Kind::Raw,
        Kind::Mio,
        Kind::Tokio,
    ];
    let idle_cells = if cli.idle_connections > 0 {
        idle_servers.len()
    } else {
        0
    };
    let bar = ProgressBar::new((cells.len() + idle_cells) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}").unwrap(),
    );
    let mut rows = Vec::new();
    for (server, connections, size) in cells {
        bar.set_message(format!(
            "{} × {connections} conns × {size} B",
            server.name()
        ));
        let load = Load {
            connections,
            size,
            pipeline: cli.pipeline,
            threads: cli.client_threads.clamp(1, connections),
            warmup,
            duration,
            pin_server: cli.pin_server,
        };
        rows.push(run_cell(server, &load)?);
        bar.inc(1);
    }
    let mut idle = Vec::new();
    if cli.idle_connections > 0 {
        for server in idle_servers {
            bar.set_message(format!(
                "{}: {} idle connections",
                server.name(),
                cli.idle_connections
            ));
            idle.push((
                server,
                idle_bytes_per_connection(server, cli.idle_connections)?,
            ));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let report = report::report(&cli, &rows, &idle, duration);
    print!("{report}");
    std::fs::create_dir_all(&cli.out)?;
    std::fs::write(cli.out.join("report.md"), &report)?;
    std::fs::write(cli.out.join("results.csv"), report::csv(&rows, &idle))?;
    report::plots(&cli.out, &rows)?;
    println!(
        "\nwrote {}/results.csv, report.md, throughput.svg, cpu_per_message.svg",
        std::path::absolute(&cli.out)?.display()
    );
    Ok(())
}

/// Both ends of every connection live in this process: lift the soft fd
/// limit to the hard one.
fn raise_fd_limit() -> io::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(())
}

fn listener() -> io::Result<std::net::TcpListener> {
    edgeloop::conn::tcp_listener("127.0.0.1:0".parse().unwrap(), None, false)
}

/// CPU time of another thread of this process, from its CPU-time clock: the
/// same counter RUSAGE_THREAD reads, with nanosecond resolution, readable
/// without instrumenting each server's loop.
fn thread_cpu(thread: &std::thread::JoinHandle<()>) -> Duration {
    let mut clock: nix::libc::clockid_t = 0;
    // SAFETY: the pthread_t belongs to a thread that has not been joined
    // (its JoinHandle is borrowed), and `clock` is a valid out-pointer.
    let rc = unsafe { nix::libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
    assert_eq!(rc, 0, "pthread_getcpuclockid");
    let ts = nix::time::clock_gettime(nix::time::ClockId::from_raw(clock)).unwrap();
    Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32)
}

/// How one cell loads its server.
struct Load {
    connections: usize,
    size: usize,
    pipeline: usize,
    threads: usize,
    warmup: Duration,
    duration: Duration,
    pin_server: Option<usize>,
}

/// Pins the calling thread to `cpus`.
fn pin(cpus: impl IntoIterator<Item = usize>) {
    let mut set = nix::sched::CpuSet::new();
    for cpu in cpus {
        let _ = set.set(cpu);
    }
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
}

fn run_cell(server: Kind, load: &Load) -> io::Result<Row> {
    let listener = listener()?;
    let addr = listener.local_addr()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let running = servers::start(server, listener, None, load.pin_server)?;
    let marks: RefCell<Vec<(Duration, Option<Syscalls>)>> = RefCell::new(Vec::new());
    let mut mark = || {
        marks
            .borrow_mut()
            .push((thread_cpu(&running.thread), running.syscalls()));
    };
    let mut mark2 = mark; // the closure only borrows: a copy marks the same state
    let start = std::time::Instant::now();
    let window = |on_open, on_close| load::Window {
        start,
        warmup: load.warmup,
        duration: load.duration,
        on_open,
        on_close,
    };
    let share = |t: usize| {
        load.connections / load.threads + usize::from(t < load.connections % load.threads)
    };
    let others = |cpu: usize| {
        (0..cores)
            .filter(move |c| Some(*c) != load.pin_server || cores == 1)
            .nth(cpu % cores.max(1))
    };
    let mut outcome = std::thread::scope(|scope| -> io::Result<load::Outcome> {
        let helpers: Vec<_> = (1..load.threads)
            .map(|t| {
                let pinned = load.pin_server.map(|_| others(t));
                scope.spawn(move || {
                    if let Some(Some(cpu)) = pinned {
                        pin([cpu]);
                    }
                    load::run(
                        addr,
                        share(t),
                        load.size,
                        load.pipeline,
                        0,
                        Some(window(None, None)),
                    )
                })
            })
            .collect();
        if load.pin_server.is_some() {
            pin((0..cores).filter(|c| Some(*c) != load.pin_server));
        }
        let mut outcome = load::run(
            addr,
            share(0),
            load.size,
            load.pipeline,
            0,
            Some(window(Some(&mut mark), Some(&mut mark2))),
        )?;
        for h in helpers {
            outcome.merge(h.join().expect("a load thread panicked")?);
        }
        Ok(outcome)
    })?;
    running.stop();
    outcome.rtts.sort_unstable();
    let marks = marks.into_inner();
    let (cpu0, sys0) = marks[0];
    let (cpu1, sys1) = marks[1];
    let messages = outcome.messages.max(1);
    Ok(Row {
        server,
        connections: load.connections,
        size: load.size,
        msgs_per_sec: outcome.messages as f64 / outcome.window.as_secs_f64(),
        p50: outcome.percentile(0.50),
        p99: outcome.percentile(0.99),
        errors: outcome.errors,
        cpu_us_per_msg: (cpu1 - cpu0).as_secs_f64() * 1e6 / messages as f64,
        syscalls: sys0.zip(sys1).map(|(a, b)| b.since(&a)),
        messages: outcome.messages,
    })
}

/// `bench serve`: one server on this (only) thread, its listening line,
/// until killed (or until `exit_after` connections closed).
fn serve(
    server: Kind,
    addr: SocketAddr,
    exit_after: Option<u64>,
    processes: usize,
) -> io::Result<()> {
    raise_fd_limit()?;
    if processes > 1 && server.edgeloop_options().is_some() {
        edgeloop::server::Processes::bind(addr, processes)?.run(
            |_, listener| servers::run_here(server, listener, exit_after),
            |local| {
                println!("listening on {local}");
                let _ = io::stdout().flush();
            },
        )?;
        return Ok(());
    }
    let listener = edgeloop::conn::tcp_listener(addr, None, false)?;
    let local = listener.local_addr()?;
    println!("listening on {local}");
    io::stdout().flush()?;
    servers::run_here(server, listener, exit_after)
}

fn rss(pid: u32) -> io::Result<u64> {
    match procfs::status_field(pid, "VmRSS:") {
        0 => Err(io::Error::other("no VmRSS")),
        kb => Ok(kb * 1024),
    }
}

/// Starts `bench serve ARGS` as a child process (stdout piped, stderr as
/// given) and reads its `listening on ADDR` line.
fn spawn_serve(args: &[&str], stderr: Stdio) -> io::Result<(Child, SocketAddr)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| io::Error::other(format!("serve {args:?} printed {line:?}")))?;
    Ok((child, addr))
}

/// User-space bytes per idle connection: the RSS growth of a server child
/// process once `n` connections have each echoed one byte and gone quiet.
fn idle_bytes_per_connection(server: Kind, n: usize) -> io::Result<f64> {
    let (mut child, addr) = spawn_serve(&[server.name()], Stdio::inherit())?;
    std::thread::sleep(Duration::from_millis(200));
    let before = rss(child.id())?;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % 250) as u8);
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        use std::os::fd::AsRawFd;
        nix::sys::socket::bind(
            fd.as_raw_fd(),
            &nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(source, 0)),
        )?;
        let SocketAddr::V4(v4) = addr else {
            unreachable!()
        };
        nix::sys::socket::connect(fd.as_raw_fd(), &nix::sys::socket::SockaddrIn::from(v4))?;
        let mut s = TcpStream::from(fd);
        s.write_all(b"x")?;
        clients.push(s);
    }
    for s in clients.iter_mut() {
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss(child.id())?;
    drop(clients);
    child.kill()?;
    child.wait()?;
    Ok(after.saturating_sub(before) as f64 / n as f64)
}
