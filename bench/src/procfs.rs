//! What /proc says: a process's `status` fields and CPU time, the
//! machine's `meminfo`.

/// A `kB` (or count) field of /proc/PID/status (`VmRSS:`, `Threads:`); 0
/// if the process or the field is gone.
pub fn status_field(pid: u32, key: &str) -> u64 {
    field(&format!("/proc/{pid}/status"), key)
}

/// A field of /proc/meminfo (`Slab:`, `MemAvailable:`), in kB; 0 if absent.
pub fn meminfo(key: &str) -> u64 {
    field("/proc/meminfo", key)
}

/// The number after `key` in a `Key: value [kB]` file of /proc.
fn field(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process, in clock ticks (10 ms: USER_HZ is
/// 100 on every Linux ABI).
pub fn cpu_ticks(pid: u32) -> u64 {
    let [user, system] = user_system_ticks(pid);
    user + system
}

/// User and system CPU time of a process (all its threads, the exited
/// ones included), in clock ticks.
pub fn user_system_ticks(pid: u32) -> [u64; 2] {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name: utime is the 12th,
    // stime the 13th.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    [*f.get(11).unwrap_or(&0), *f.get(12).unwrap_or(&0)]
}

/// The parent of a process (field 4 of /proc/PID/stat), if it is alive.
pub fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of every thread of a live process so far: the sum of
/// /proc/PID/task/TID/schedstat's first field (nanoseconds on a CPU, what
/// utime + stime are sampled from, without their 10 ms ticks).
pub fn run_time(pid: u32) -> std::time::Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return std::time::Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    std::time::Duration::from_nanos(nanos)
}
