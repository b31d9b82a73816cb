//! `bench scale`: concurrent connections swept up to 100,000 (or `--max`)
//! against the edgeloop echo server (LT and ET, in as many processes as the
//! fd cap asks) and mio (one process: it stops at the cap), driven by
//! `bench scale-client` processes on edgeloop's outbound connections from
//! source addresses 127.0.0.2, 127.0.0.3, ...
//!
//! Each step: connect all (setup rate), echo one verified message on every
//! connection while all are open, hold them idle (server CPU %), trickle
//! (each connection sends every few seconds: latency p50/p99 over every
//! round trip of every client), memory (server RSS growth, and the
//! kernel's: Slab plus TCP buffer pages).
//! Writes `scale.csv` and `scale.svg` to the output folder.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{plot, procfs};

/// Connections one process holds at most: the fd cap (20,000 here) less
/// room for the process's own fds.
fn per_process(hard_limit: u64) -> usize {
    (hard_limit.saturating_sub(1_000) as usize).clamp(100, 19_000)
}

/// Connections one source address carries: a quarter of the ephemeral
/// port range. The kernel picks a connect's port by probing the range for
/// one free for that destination, and the probing slows as the range
/// fills. Loopback source addresses cost nothing.
fn per_source() -> io::Result<usize> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    let mut it = range
        .split_whitespace()
        .map(|v| v.parse::<usize>().unwrap_or(0));
    let (low, high) = (it.next().unwrap_or(32768), it.next().unwrap_or(60999));
    Ok(((high.saturating_sub(low) + 1) / 4).max(1_000))
}

/// The CSV's columns, a contract: keep them.
const HEADER: &str = "server,connections,processes,errors,setup_per_s,idle_cpu_pct,p50_us,p99_us,user_bytes_per_conn,kernel_bytes_per_conn";

struct Row {
    server: String,
    connections: usize,
    processes: usize,
    errors: u64,
    setup_per_s: f64,
    idle_cpu_pct: f64,
    p50_us: u64,
    p99_us: u64,
    user_bytes_per_conn: f64,
    kernel_bytes_per_conn: f64,
    note: String,
}

impl Row {
    fn csv(&self) -> String {
        format!(
            "{},{},{},{},{:.0},{:.2},{},{},{:.0},{:.0}",
            self.server,
            self.connections,
            self.processes,
            self.errors,
            self.setup_per_s,
            self.idle_cpu_pct,
            self.p50_us,
            self.p99_us,
            self.user_bytes_per_conn,
            self.kernel_bytes_per_conn
        )
    }
}

/// The sweep's knobs.
pub struct Plan {
    pub steps: Vec<usize>,
    pub servers: Vec<String>,
    pub hold: Duration,
    pub trickle: Duration,
    pub trickle_interval: Duration,
    pub out: std::path::PathBuf,
}

/// Kernel memory now: Slab (socket structures and friends) plus TCP buffer
/// pages (/proc/net/sockstat `mem`), in bytes.
fn kernel_bytes() -> u64 {
    let slab = procfs::meminfo("Slab:") * 1024;
    let tcp_pages = std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?;
            let words: Vec<&str> = line.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "mem")?;
            words.get(i + 1)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    slab + tcp_pages * 4096
}

/// The server's pids: the process and its children (the worker processes).
fn server_pids(pid: u32) -> Vec<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    std::iter::once(pid)
        .chain(children.split_whitespace().filter_map(|c| c.parse().ok()))
        .collect()
}

struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn command(&mut self, command: &str) -> io::Result<Vec<String>> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.reply()
    }

    fn reply(&mut self) -> io::Result<Vec<String>> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.split_whitespace().map(str::to_string).collect())
    }
}

fn field<T: std::str::FromStr + Default>(words: &[String], i: usize) -> T {
    words
        .get(i)
        .and_then(|w| w.parse().ok())
        .unwrap_or_default()
}

/// Runs the sweep and writes its files.
pub fn sweep(plan: &Plan) -> io::Result<()> {
    use nix::sys::resource::{Resource, getrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let per_proc = per_process(hard);
    let per_src = per_source()?;
    let max = plan.steps.iter().copied().max().unwrap_or(0);
    // Preflight: what the largest step needs, and whether this machine has it.
    let sources = max.div_ceil(per_src);
    let processes = max.div_ceil(per_proc);
    let available_kb = procfs::meminfo("MemAvailable:");
    // About 10 KB of kernel and user memory per connection pair, measured.
    let needed_kb = max as u64 * 10;
    println!(
        "preflight: {max} connections need {processes} server and {processes} client processes \
         (fd hard limit {hard}: {per_proc} each), {sources} source address(es) \
         127.0.0.2-127.0.0.{} ({per_src} ports each), about {} MiB (available: {} MiB)",
        1 + sources,
        needed_kb / 1024,
        available_kb / 1024
    );
    if sources > 250 {
        return Err(io::Error::other(
            "more source addresses than 127.0.0.2-127.0.0.251",
        ));
    }
    if needed_kb > available_kb {
        return Err(io::Error::other(format!(
            "{max} connections need about {} MiB and {} MiB are available: lower --max",
            needed_kb / 1024,
            available_kb / 1024
        )));
    }
    std::fs::create_dir_all(&plan.out)?;
    let mut rows: Vec<Row> = Vec::new();
    for server in &plan.servers {
        for &n in &plan.steps {
            let bar = ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]").unwrap(),
            );
            bar.set_prefix(format!("{server} × {n}"));
            bar.enable_steady_tick(Duration::from_millis(200));
            let row = step(server, n, per_proc, per_src, plan, &bar)?;
            bar.finish_and_clear();
            println!(
                "{} {:>6} conns: {} errors, setup {:.0}/s, idle CPU {:.2} %, p50 {} µs, p99 {} µs, {:.0} user B/conn, {:.0} kernel B/conn {}",
                row.server,
                row.connections,
                row.errors,
                row.setup_per_s,
                row.idle_cpu_pct,
                row.p50_us,
                row.p99_us,
                row.user_bytes_per_conn,
                row.kernel_bytes_per_conn,
                row.note
            );
            let stopped = row.errors > 0 && !server.starts_with("edgeloop");
            rows.push(row);
            if stopped {
                break; // a peer past its cap: shown stopping there
            }
        }
    }
    let csv: String = std::iter::once(HEADER.to_string())
        .chain(rows.iter().map(Row::csv))
        .map(|l| l + "\n")
        .collect();
    std::fs::write(plan.out.join("scale.csv"), csv)?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for row in rows.iter().filter(|r| r.errors == 0 && r.p99_us > 0) {
        let name = format!("{} p99", row.server);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push((row.connections as f64, row.p99_us as f64)),
            None => series.push((name, vec![(row.connections as f64, row.p99_us as f64)])),
        }
    }
    plot::lines(
        &plan.out.join("scale.svg"),
        "trickle latency (p99) vs concurrent connections",
        "concurrent connections",
        "p99 round trip (µs)",
        &series,
    )?;
    let out = std::path::absolute(&plan.out)?;
    println!("\nwrote {}/scale.csv and scale.svg", out.display());
    Ok(())
}

fn step(
    server: &str,
    n: usize,
    per_proc: usize,
    per_src: usize,
    plan: &Plan,
    bar: &ProgressBar,
) -> io::Result<Row> {
    let exe = std::env::current_exe()?;
    let edgeloop = server.starts_with("edgeloop");
    let processes = if edgeloop { n.div_ceil(per_proc) } else { 1 };
    bar.set_message(format!("starting the server ({processes} processes)"));
    let (mut srv, addr) = super::spawn_serve(
        &[server, "--processes", &processes.to_string()],
        Stdio::piped(),
    )?;
    let pids = server_pids(srv.id());
    let rss0: u64 = pids
        .iter()
        .map(|&p| procfs::status_field(p, "VmRSS:"))
        .sum();
    let kernel0 = kernel_bytes();

    let clients_n = n.div_ceil(per_proc);
    let sources: Vec<String> = (0..n.div_ceil(per_src))
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)).to_string())
        .collect();
    bar.set_message(format!(
        "connecting from {clients_n} client processes, sources {}",
        sources.join(",")
    ));
    let start = Instant::now();
    let mut clients = Vec::new();
    for i in 0..clients_n {
        let share = n / clients_n + usize::from(i < n % clients_n);
        let mut child = Command::new(&exe)
            .args(["scale-client", "--addr", &addr.to_string()])
            .args(["--connections", &share.to_string()])
            .args(["--sources", &sources.join(",")])
            .args(["--tag", &i.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        clients.push(Client {
            child,
            stdin,
            stdout,
        });
    }
    let (mut opened, mut errors) = (0usize, 0u64);
    for c in &mut clients {
        let words = c.reply()?;
        opened += field::<usize>(&words, 1);
        errors += field::<u64>(&words, 2);
    }
    let setup_per_s = opened as f64 / start.elapsed().as_secs_f64();

    bar.set_message(format!("{opened} open: one verified echo each"));
    for c in &mut clients {
        let words = c.command("echo")?;
        errors += field::<u64>(&words, 2);
    }
    let rss1: u64 = server_pids(srv.id())
        .iter()
        .map(|&p| procfs::status_field(p, "VmRSS:"))
        .sum();
    let kernel1 = kernel_bytes();

    bar.set_message(format!("holding {opened} idle for {:?}", plan.hold));
    let pids = server_pids(srv.id());
    let cpu0: u64 = pids.iter().map(|&p| procfs::cpu_ticks(p)).sum();
    let t0 = Instant::now();
    std::thread::sleep(plan.hold);
    let cpu1: u64 = pids.iter().map(|&p| procfs::cpu_ticks(p)).sum();
    let idle_cpu_pct = (cpu1 - cpu0) as f64 * 10.0 / t0.elapsed().as_millis() as f64 * 100.0;

    bar.set_message(format!(
        "trickle: every connection every {:?} for {:?}",
        plan.trickle_interval, plan.trickle
    ));
    let command = format!(
        "trickle {} {}",
        plan.trickle.as_secs_f64(),
        plan.trickle_interval.as_millis()
    );
    for c in &mut clients {
        writeln!(c.stdin, "{command}")?;
        c.stdin.flush()?;
    }
    // Every client's round trips, merged: the percentiles are over all.
    let mut rtts: Vec<u64> = Vec::new();
    for c in &mut clients {
        let words = c.reply()?;
        errors += field::<u64>(&words, 2);
        if let Some(samples) = words.get(5) {
            rtts.extend(samples.split(',').filter_map(|v| v.parse::<u64>().ok()));
        }
    }
    rtts.sort_unstable();
    let percentile = |p: f64| {
        rtts.get(((rtts.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    for mut c in clients {
        let _ = writeln!(c.stdin, "quit");
        drop(c.stdin);
        let _ = c.child.wait();
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(srv.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    // mio's server dies at the fd cap: keep its error for the note.
    let mut note = String::new();
    if let Ok(Some(status)) = srv.try_wait() {
        let mut stderr = String::new();
        let _ = io::Read::read_to_string(&mut srv.stderr.take().unwrap(), &mut stderr);
        note = format!(
            "(server exited early, {status}: {})",
            stderr.lines().last().unwrap_or("").trim()
        );
    }
    let _ = srv.wait();
    let shown = n.max(1) as f64;
    Ok(Row {
        server: server.to_string(),
        connections: n,
        processes,
        errors: errors + (n - opened.min(n)) as u64,
        setup_per_s,
        idle_cpu_pct,
        p50_us: percentile(0.5),
        p99_us: percentile(0.99),
        user_bytes_per_conn: rss1.saturating_sub(rss0) as f64 * 1024.0 / shown,
        kernel_bytes_per_conn: kernel1.saturating_sub(kernel0) as f64 / shown,
        note,
    })
}
