//! Running an example as a child process and reading its CPU time and RSS
//! from /proc.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The path of a built, up-to-date example. `cargo test` builds the
/// examples, but a filtered or `--release` run may find none or a stale one,
/// so each example is built once per test process (a no-op when current).
pub fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join(name);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        built.push(name.to_string());
        let release = profile_dir.ends_with("release");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "--example", name]);
        if release {
            cargo.arg("--release");
        }
        assert!(cargo.status().unwrap().success(), "building example {name}");
    }
    path
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
