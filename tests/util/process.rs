//! Running an example as a child process and reading its CPU time and RSS
//! from /proc.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The path of an example that cargo built for this test run: `cargo test`
/// builds every example before it runs a test. A run filtered to one test
/// target (`cargo test --test examples`) builds none, so it needs
/// `cargo build --examples` (with `--release` for a release run) first;
/// without it this panics with that advice rather than run a stale binary
/// unknowingly or start a nested cargo.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join(name);
    let built = std::fs::metadata(&path).and_then(|m| m.modified());
    let advice = "run the whole `cargo test`, or `cargo build --examples` before a filtered run";
    let Ok(built) = built else {
        panic!("{} is not built: {advice}", path.display());
    };
    // Cargo's dep-info file beside the binary lists every source it was
    // built from, the library's included: one edited since is stale.
    let sources = std::fs::read_to_string(path.with_extension("d")).unwrap_or_default();
    let sources = sources.lines().next().and_then(|l| l.split_once(": "));
    for source in sources.map_or("", |(_, s)| s).split_whitespace() {
        let edited = std::fs::metadata(source).and_then(|m| m.modified());
        assert!(
            edited.is_ok_and(|edited| edited <= built),
            "{} is older than {source}: {advice}",
            path.display()
        );
    }
    path
}

/// Waits up to `limit` for `child` to exit: its status, or `None` if it
/// still ran then (it is killed and reaped, so nothing outlives the test).
pub fn exited_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running example server; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `name` with `args` and waits for its `listening on ADDR` line.
pub fn spawn_example(name: &str, args: &[&str]) -> Server {
    spawn_example_with(
        name,
        args,
        Command::new(example(name)).stderr(Stdio::inherit()),
    )
}

/// Like [`spawn_example`], with the child's soft RLIMIT_NOFILE lowered to
/// `nofile` (by the shell that execs it, so this process keeps its own).
pub fn spawn_example_with_fd_limit(name: &str, args: &[&str], nofile: u32) -> Server {
    let script = format!("ulimit -S -n {nofile} && exec \"$0\" \"$@\"");
    let mut command = Command::new("sh");
    command
        .args(["-c", &script])
        .arg(example(name))
        .stderr(Stdio::inherit());
    spawn_example_with(name, args, &mut command)
}

/// Like [`spawn_example`], with what `command` sets (an environment, where
/// stderr goes).
pub fn spawn_example_with(name: &str, args: &[&str], command: &mut Command) -> Server {
    let mut child = command.args(args).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{name} printed {line:?}, not `listening on ADDR`"))
        .to_string();
    Server { child, addr }
}

/// User + system CPU time of a process.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" that ends the command name: utime is the 12th,
    // stime the 13th (fields 14 and 15 of proc(5)).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux ABI.
    Duration::from_millis(ticks * 10)
}

/// Resident set size of a process, in bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}
