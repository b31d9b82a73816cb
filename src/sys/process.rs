//! Process-level calls only the server layer makes (it forks worker
//! processes): how many threads this process has, and a fork that refuses
//! a multi-threaded process.

use std::io;

use super::errno_error;

/// The number of threads of this process (`Threads:` in /proc/self/status).
pub(crate) fn threads() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

/// `fork(2)`, refused unless this process has exactly one thread: a child
/// of a multi-threaded process may only call async-signal-safe functions
/// (another thread may have held the allocator's lock), and a server child
/// allocates. Returns the child's pid in the parent, `None` in the child.
pub(crate) fn fork() -> io::Result<Option<nix::unistd::Pid>> {
    let n = threads()?;
    if n != 1 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "edgeloop: fork refused: this process has {n} threads, and a child of a \
                 multi-threaded process must not allocate; fork before starting any thread"
            ),
        ));
    }
    // SAFETY: the process has a single thread (checked just above, and no
    // thread can start in between: only this thread could start one), so
    // the child inherits no lock held by another thread and may run any
    // code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Some(child)),
        Ok(nix::unistd::ForkResult::Child) => Ok(None),
        Err(e) => Err(errno_error(e as i32, "fork")),
    }
}
