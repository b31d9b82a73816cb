//! `bench field`: the shipped `kv` and `http` examples against the servers
//! the field knows, measured by the field's own clients, in one run.
//!
//! - `kv` (RESP, default flags) against redis-server, both driven by
//!   redis-benchmark: SET and GET at `-c 50 -P 1`, `-c 50 -P 16` and
//!   `-c 1000 -P 1`.
//! - `http` (default flags) against nginx with one worker process
//!   (`return 200 "Hello, World!"`, access log off), driven by wrk at 100
//!   and 1,000 connections and by h2load (HTTP/1.1, 50 connections, 16
//!   requests in flight on each).
//!
//! For each cell: requests/s as the client reports it, **server CPU per
//! request** (the run time of every thread of the server's processes,
//! from /proc/PID/task/TID/schedstat, over the cell: the client's share
//! does not count), errors, and ours/peer ratios. The peers start from a
//! config in a temporary directory, on loopback, and are stopped by pid.
//! A missing tool is named with the Debian package that has it, and the
//! cells that can still run do. A cell that counted an error makes the
//! run exit 1, after the table is written.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `bench field` runs.
pub struct Plan {
    /// Requests per redis-benchmark cell at `-P 1` (16 times as many at
    /// `-P 16`).
    pub requests: u64,
    /// Seconds per wrk cell.
    pub seconds: u64,
    /// Server processes: ours with `--processes N`, nginx with
    /// `worker_processes N` (kv runs only at 1: one redis-server is one
    /// process and two cannot share a port).
    pub processes: usize,
    pub out: PathBuf,
}

/// One server in one cell.
struct Figure {
    requests: u64,
    seconds: f64,
    /// Server CPU over the cell, user and kernel.
    cpu: Duration,
    /// The user-space part of it (10 ms ticks): what the server's own code
    /// costs, the kernel's network stack left out.
    user: Duration,
    errors: u64,
}

impl Figure {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }

    fn user_us(&self) -> f64 {
        self.user.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

/// A cell: the client's command, and each server's figure.
struct Cell {
    name: String,
    ours: &'static str,
    peer: &'static str,
    figures: [Option<Figure>; 2],
}

/// The tools, and the Debian package of each.
const TOOLS: &[(&str, &str)] = &[
    ("redis-server", "redis-server"),
    ("redis-benchmark", "redis-tools"),
    ("nginx", "nginx-light"),
    ("wrk", "wrk"),
    ("h2load", "nghttp2-client"),
];

pub fn run(plan: &Plan) -> io::Result<()> {
    let examples = build_examples()?;
    let mut missing = Vec::new();
    let found = |tool: &str, missing: &mut Vec<String>| {
        let path = which(tool);
        if path.is_none() {
            let package = TOOLS.iter().find(|(t, _)| *t == tool).map_or(tool, |t| t.1);
            missing.push(format!("{tool} (apt-get install {package})"));
        }
        path
    };
    let redis_benchmark = found("redis-benchmark", &mut missing);
    let redis_server = found("redis-server", &mut missing);
    let nginx = found("nginx", &mut missing);
    let wrk = found("wrk", &mut missing);
    let h2load = found("h2load", &mut missing);
    for tool in &missing {
        eprintln!("field: not found: {tool}; the cells that need it are skipped");
    }
    let dir = tempfile::Builder::new()
        .prefix("edgeloop-field-")
        .tempdir()?;
    let mut cells = Vec::new();

    if let Some(client) = &redis_benchmark {
        let kv = examples.join("kv");
        let servers = [
            // kv keeps a store per process: above one, it asks for that
            // by name (a benchmark's configuration).
            Some(Server::start_ours(
                &kv,
                plan.processes,
                &["--separate-stores"],
            )?),
            match (&redis_server, plan.processes) {
                (Some(path), 1) => Some(Server::redis(path, dir.path())?),
                _ => None,
            },
        ];
        for (clients, pipeline, scale) in [(50, 1, 1), (50, 16, 16), (1000, 1, 1)] {
            for test in ["set", "get"] {
                let requests = plan.requests * scale;
                let name = format!("redis-benchmark -t {test} -c {clients} -P {pipeline}");
                cells.push(Cell::run(
                    name,
                    ["kv", "redis-server"],
                    &servers,
                    |server| {
                        redis_benchmark_cell(client, server, test, clients, pipeline, requests)
                    },
                )?);
            }
        }
        for server in servers.into_iter().flatten() {
            server.stop()?;
        }
    }

    if wrk.is_some() || h2load.is_some() {
        let http = examples.join("http");
        let servers = [
            Some(Server::start_ours(&http, plan.processes, &[])?),
            match &nginx {
                Some(path) => Some(Server::nginx(path, dir.path(), plan.processes)?),
                None => None,
            },
        ];
        if let Some(wrk) = &wrk {
            for connections in [100, 1000] {
                let name = format!("wrk -t 1 -c {connections} -d {}s", plan.seconds);
                cells.push(Cell::run(name, ["http", "nginx"], &servers, |server| {
                    wrk_cell(wrk, server, connections, plan.seconds)
                })?);
            }
        }
        if let Some(h2load) = &h2load {
            let requests = plan.requests * 16;
            let name = format!("h2load --h1 -c 50 -m 16 -n {requests}");
            cells.push(Cell::run(name, ["http", "nginx"], &servers, |server| {
                h2load_cell(h2load, server, requests)
            })?);
        }
        for server in servers.into_iter().flatten() {
            server.stop()?;
        }
    }

    std::fs::create_dir_all(&plan.out)?;
    let table = table(&cells, plan, &missing);
    print!("\n{table}");
    std::fs::write(plan.out.join("field.md"), &table)?;
    std::fs::write(plan.out.join("field.csv"), csv(&cells))?;
    plot(&plan.out.join("field.svg"), &cells)?;
    println!(
        "field: wrote field.md, field.csv and field.svg in {}",
        plan.out.display()
    );
    let failing: Vec<&str> = cells
        .iter()
        .filter(|c| c.figures.iter().flatten().any(|f| f.errors > 0))
        .map(|c| c.name.as_str())
        .collect();
    if !failing.is_empty() {
        return Err(io::Error::other(format!(
            "errors in {} cells: {}",
            failing.len(),
            failing.join("; ")
        )));
    }
    Ok(())
}

impl Cell {
    /// Runs `cell` on each server present (ours, then the peer), prints
    /// the cell's line, and returns it.
    fn run(
        name: String,
        [ours, peer]: [&'static str; 2],
        servers: &[Option<Server>; 2],
        mut cell: impl FnMut(&Server) -> io::Result<Figure>,
    ) -> io::Result<Cell> {
        let mut figures = [None, None];
        for (figure, server) in figures.iter_mut().zip(servers) {
            if let Some(server) = server {
                *figure = Some(cell(server)?);
            }
        }
        print_cell(&name, &figures);
        Ok(Cell {
            name,
            ours,
            peer,
            figures,
        })
    }
}

/// A server under test: its process (a supervisor, for several), its
/// address, and the temporary files it runs from.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// One of our examples, with its default flags on a free port;
    /// `multi` are the flags it needs with `--processes` above 1.
    fn start_ours(path: &Path, processes: usize, multi: &[&str]) -> io::Result<Server> {
        let mut child = Command::new(path)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--processes",
                &processes.to_string(),
            ])
            .args(if processes > 1 { multi } else { &[] })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| in_context(e, &format!("starting {}", path.display())))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            return Err(io::Error::other(format!(
                "{} printed {line:?}, not `listening on HOST:PORT`",
                path.display()
            )));
        };
        Ok(Server { child, addr })
    }

    fn redis(path: &Path, dir: &Path) -> io::Result<Server> {
        let port = free_port()?;
        let config = dir.join("redis.conf");
        std::fs::write(
            &config,
            format!(
                "bind 127.0.0.1\nport {port}\nsave \"\"\nappendonly no\ndaemonize no\n\
                 protected-mode no\ndir {}\nlogfile {}\n",
                dir.display(),
                dir.join("redis.log").display()
            ),
        )?;
        let child = Command::new(path)
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()?;
        Server::ready(child, port, "redis-server", &dir.join("redis.log"))
    }

    fn nginx(path: &Path, dir: &Path, workers: usize) -> io::Result<Server> {
        let port = free_port()?;
        let config = dir.join("nginx.conf");
        let d = dir.display();
        std::fs::write(
            &config,
            format!(
                "worker_processes {workers};\ndaemon off;\npid {d}/nginx.pid;\n\
                 error_log {d}/nginx-error.log warn;\nevents {{ worker_connections 8192; }}\n\
                 http {{\n  access_log off;\n  keepalive_requests 100000000;\n\
                 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n\
                 server {{\n    listen 127.0.0.1:{port};\n\
                 location = / {{ default_type text/plain; return 200 \"Hello, World!\"; }}\n\
                 location = /json {{ default_type application/json; \
                 return 200 '{{\"message\":\"Hello, World!\"}}'; }}\n  }}\n}}\n"
            ),
        )?;
        let child = Command::new(path)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&config)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .stdout(Stdio::null())
            .spawn()?;
        Server::ready(child, port, "nginx", &dir.join("nginx-error.log"))
    }

    /// Waits (up to 10 s) until the peer accepts connections.
    fn ready(mut child: Child, port: u16, name: &str, log: &Path) -> io::Result<Server> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "{name} exited with {status}: {log}"
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(io::Error::other(format!(
                    "{name} did not listen within 10 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Server { child, addr })
    }

    /// CPU time so far of every thread of the server and its children,
    /// and the user-space part of it.
    fn cpu(&self) -> (Duration, Duration) {
        let root = self.child.id();
        let mut pids = vec![root];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|p| p.parse::<u32>().ok())
                else {
                    continue;
                };
                if pid != root && crate::procfs::parent(pid) == Some(root) {
                    pids.push(pid);
                }
            }
        }
        let run_time = pids.iter().map(|&pid| crate::procfs::run_time(pid)).sum();
        let ticks: u64 = pids
            .iter()
            .map(|&pid| crate::procfs::user_system_ticks(pid)[0])
            .sum();
        (run_time, Duration::from_millis(ticks * 10))
    }

    /// SIGTERM, then (after 10 s) SIGKILL.
    fn stop(mut self) -> io::Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.wait()?;
        Ok(())
    }
}

/// Runs `client` against `server`, timing it and reading the server's CPU
/// before and after; `parse` reads (requests, seconds, errors) from what
/// the client printed.
fn measure(
    server: &Server,
    client: &mut Command,
    parse: impl Fn(&str) -> Option<(u64, f64, u64)>,
) -> io::Result<Figure> {
    let before = server.cpu();
    let output = client.stdin(Stdio::null()).output()?;
    let after = server.cpu();
    let (cpu, user) = (
        after.0.saturating_sub(before.0),
        after.1.saturating_sub(before.1),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let Some((requests, seconds, mut errors)) = parse(&text) else {
        return Err(io::Error::other(format!(
            "{client:?} ({}): could not read its figures from:\n{text}",
            output.status
        )));
    };
    if !output.status.success() {
        errors += 1;
    }
    Ok(Figure {
        requests,
        seconds,
        cpu,
        user,
        errors,
    })
}

fn redis_benchmark_cell(
    client: &Path,
    server: &Server,
    test: &str,
    clients: u32,
    pipeline: u32,
    requests: u64,
) -> io::Result<Figure> {
    let mut command = Command::new(client);
    command.args(["-h", "127.0.0.1", "-p", &server.addr.port().to_string()]);
    command.args([
        "-t",
        test,
        "-c",
        &clients.to_string(),
        "-P",
        &pipeline.to_string(),
    ]);
    command.args(["-n", &requests.to_string(), "-r", "100000", "--csv"]);
    measure(server, &mut command, |text| {
        // --csv: `"SET","264550.27",...`; at an error reply redis-benchmark
        // prints it and exits 1 (counted by `measure`).
        let rps: f64 = text
            .lines()
            .find(|l| l.starts_with(&format!("\"{}\"", test.to_uppercase())))?
            .split(',')
            .nth(1)?
            .trim_matches('"')
            .parse()
            .ok()?;
        let errors = text
            .lines()
            .filter(|l| l.contains("Error from server"))
            .count();
        Some((requests, requests as f64 / rps, errors as u64))
    })
}

fn wrk_cell(client: &Path, server: &Server, connections: u32, seconds: u64) -> io::Result<Figure> {
    let mut command = Command::new(client);
    command.args(["-t", "1", "-c", &connections.to_string()]);
    command.args(["-d", &format!("{seconds}s"), "--timeout", "5s"]);
    command.arg(format!("http://{}/", server.addr));
    measure(server, &mut command, |text| {
        // `1234 requests in 5.00s, ...`, `Socket errors: connect 0, read 0,
        // write 0, timeout 0`, `Non-2xx or 3xx responses: 5`.
        let line = text.lines().find(|l| l.contains(" requests in "))?;
        let mut words = line.split_whitespace();
        let requests: u64 = words.next()?.parse().ok()?;
        let seconds = words.nth(2)?.trim_end_matches(',');
        let seconds = parse_duration(seconds)?;
        let mut errors = 0;
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("Socket errors:") {
                errors += rest
                    .split(',')
                    .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>();
            }
            if let Some(rest) = line.trim().strip_prefix("Non-2xx or 3xx responses:") {
                errors += rest.trim().parse::<u64>().ok()?;
            }
        }
        Some((requests, seconds, errors))
    })
}

fn h2load_cell(client: &Path, server: &Server, requests: u64) -> io::Result<Figure> {
    let mut command = Command::new(client);
    command.args(["--h1", "-c", "50", "-m", "16", "-n", &requests.to_string()]);
    command.arg(format!("http://{}/", server.addr));
    measure(server, &mut command, |text| {
        // `finished in 112.86ms, 886077.07 req/s, ...` and `requests: N
        // total, N started, N done, N succeeded, N failed, N errored, N
        // timeout`, `status codes: N 2xx, ...`.
        let finished = text.lines().find_map(|l| l.strip_prefix("finished in "))?;
        let seconds = parse_duration(finished.split(',').next()?.trim())?;
        let counts = text.lines().find_map(|l| l.strip_prefix("requests: "))?;
        let count = |what: &str| -> Option<u64> {
            let part = counts.split(',').find(|p| p.trim().ends_with(what))?;
            part.split_whitespace().next()?.parse().ok()
        };
        let succeeded = count("succeeded")?;
        let errors = count("failed")? + count("errored")? + count("timeout")?;
        let non_2xx = text
            .lines()
            .find_map(|l| l.strip_prefix("status codes: "))
            .and_then(|codes| {
                let ok: u64 = codes.split_whitespace().next()?.parse().ok()?;
                Some(succeeded.saturating_sub(ok))
            })
            .unwrap_or(0);
        Some((succeeded, seconds, errors + non_2xx))
    })
}

/// `5.00s`, `112.86ms`, `1.2m`, `350us`: seconds.
fn parse_duration(text: &str) -> Option<f64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let value: f64 = digits.parse().ok()?;
    let scale = match &text[digits.len()..] {
        "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" => 60.0,
        _ => return None,
    };
    Some(value * scale)
}

fn print_cell(name: &str, figures: &[Option<Figure>; 2]) {
    let mut line = format!("{name:<44}");
    for figure in figures.iter().flatten() {
        let _ = write!(
            line,
            " | {:>9.0} req/s {:>6.2} us/req ({:.2} user) {} err",
            figure.per_second(),
            figure.cpu_us(),
            figure.user_us(),
            figure.errors
        );
    }
    println!("{line}");
}

fn table(cells: &[Cell], plan: &Plan, missing: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| client and cell | ours | peer | ours req/s | peer req/s | req/s ours/peer | \
         ours CPU µs/req | peer CPU µs/req | CPU ours/peer | user µs/req ours, peer | \
         errors ours, peer |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for cell in cells {
        let [ours, peer] = &cell.figures;
        let cols = |f: &Option<Figure>| match f {
            Some(f) => (
                format!("{:.0}", f.per_second()),
                format!("{:.2}", f.cpu_us()),
            ),
            None => ("-".into(), "-".into()),
        };
        let ((our_rps, our_cpu), (peer_rps, peer_cpu)) = (cols(ours), cols(peer));
        let ratio = |f: fn(&Figure) -> f64| match (ours, peer) {
            (Some(o), Some(p)) => format!("{:.2}", f(o) / f(p)),
            _ => "-".into(),
        };
        let errors = |f: &Option<Figure>| f.as_ref().map_or("-".into(), |f| f.errors.to_string());
        let user = |f: &Option<Figure>| {
            f.as_ref()
                .map_or("-".into(), |f| format!("{:.2}", f.user_us()))
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {our_rps} | {peer_rps} | {} | {our_cpu} | {peer_cpu} | {} | {}, {} | {}, {} |",
            cell.name,
            cell.ours,
            cell.peer,
            ratio(Figure::per_second),
            ratio(Figure::cpu_us),
            user(ours),
            user(peer),
            errors(ours),
            errors(peer),
        );
    }
    let _ = writeln!(
        out,
        "\nServers: the shipped `kv` and `http` examples with default flags (`--processes {}`), \
         redis-server with persistence off, nginx with `worker_processes {}` and access_log off. \
         CPU: every thread of the server's processes over the cell (schedstat), the client's \
         excluded; user: its user-space part (utime, 10 ms ticks).",
        plan.processes, plan.processes
    );
    if !missing.is_empty() {
        let _ = writeln!(out, "\nSkipped, not installed: {}.", missing.join(", "));
    }
    out
}

fn csv(cells: &[Cell]) -> String {
    let mut out = String::from(
        "cell,server,requests,seconds,requests_per_s,server_cpu_us_per_request,\
         server_user_us_per_request,errors\n",
    );
    for cell in cells {
        for (server, figure) in [cell.ours, cell.peer].iter().zip(&cell.figures) {
            if let Some(f) = figure {
                let _ = writeln!(
                    out,
                    "\"{}\",{server},{},{:.3},{:.0},{:.3},{:.3},{}",
                    cell.name,
                    f.requests,
                    f.seconds,
                    f.per_second(),
                    f.cpu_us(),
                    f.user_us(),
                    f.errors
                );
            }
        }
    }
    out
}

/// Server CPU per request, ours and the peer's, one pair of bars per cell.
fn plot(path: &Path, cells: &[Cell]) -> io::Result<()> {
    let bars: Vec<(String, [Option<f64>; 2])> = cells
        .iter()
        .map(|c| {
            let cpu = |f: &Option<Figure>| f.as_ref().map(Figure::cpu_us);
            (c.name.clone(), [cpu(&c.figures[0]), cpu(&c.figures[1])])
        })
        .collect();
    crate::plot::bars(
        path,
        "Server CPU per request (lower is better)",
        "µs per request",
        ["ours (kv, http)", "peer (redis-server, nginx)"],
        &bars,
    )
}

/// Builds the `kv` and `http` examples (release) when run through cargo,
/// and returns the folder they are in.
fn build_examples() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/release/examples/bench or target/release/bench.
    let mut dir = exe.parent().expect("a folder").to_path_buf();
    if dir.file_name() != Some("examples".as_ref()) {
        dir.push("examples");
    }
    if let Ok(cargo) = std::env::var("CARGO") {
        let status = Command::new(cargo)
            .args(["build", "--release", "--example", "kv", "--example", "http"])
            .status()?;
        if !status.success() {
            return Err(io::Error::other("building the kv and http examples failed"));
        }
    }
    for name in ["kv", "http"] {
        if !dir.join(name).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not built: run `cargo build --release --examples`",
                    dir.join(name).display()
                ),
            ));
        }
    }
    Ok(dir)
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn in_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
