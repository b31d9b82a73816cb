//! The epoll pitfalls that bit real event loops, each reproduced on raw
//! syscalls (nix) and then run on edgeloop. `cargo run --release -p
//! edgeloop-study --bin pitfalls` prints every [`Finding`];
//! `study/tests/pitfalls.rs` pins edgeloop's answer to each, and
//! `docs/study.md` ("Where epoll bites") explains them.
//!
//! The modules follow the kernel idea behind the pitfalls:
//! - [`description`]: epoll watches an open file description, not an fd
//!   number (dup, close before delete, fork);
//! - [`reuse`]: fd numbers are reused at once (a stale event in a batch,
//!   oneshot re-armed from another thread);
//! - [`hangup`]: EPOLLRDHUP stays ready after a half-close;
//! - [`timeouts`]: millisecond timeouts;
//! - [`accepting`]: one listener, many waiters (the herd, EPOLLEXCLUSIVE,
//!   SO_REUSEPORT) and an edge-triggered accept backlog;
//! - [`starvation`]: one endless reader under edge triggering;
//! - [`files`]: fds epoll refuses;
//! - [`signals`]: signalfd in a process with threads.

pub mod accepting;
pub mod description;
pub mod files;
pub mod hangup;
pub mod reuse;
pub mod signals;
pub mod starvation;
pub mod timeouts;

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// One pitfall, measured: what happened per mode on raw syscalls, and what
/// edgeloop did in the same situation.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The pitfall, in a few words.
    pub pitfall: &'static str,
    /// (mode or variant, what was measured), one per column of the table.
    pub raw: Vec<(&'static str, String)>,
    /// What edgeloop did in the same situation.
    pub edgeloop: String,
}

/// An experiment: its pitfall's number and the function that runs it.
pub type Experiment = (u32, fn() -> io::Result<Finding>);

/// Every experiment, in the order they must run: pitfall 13 first and
/// pitfall 2 second. The one counts where signals go, which threads left
/// over from other experiments would change; the other forks, which wants
/// a single-threaded process.
pub const EXPERIMENTS: [Experiment; 14] = [
    (13, signals::signal_to_another_thread),
    (2, description::forked_child_shares_the_instance),
    (1, description::dup_keeps_the_registration),
    (3, reuse::stale_event_in_the_batch),
    (4, reuse::oneshot_rearmed_from_another_thread),
    (5, hangup::rdhup_stays_ready),
    (6, timeouts::millisecond_truncation),
    (7, accepting::exclusive_wakes_in_queue_order),
    (8, accepting::balance_across_workers),
    (9, accepting::edge_triggered_accept_backlog),
    (10, starvation::endless_reader),
    (11, files::regular_files_and_directories),
    (12, description::closed_before_deleted),
    (14, accepting::thundering_herd),
];

/// Runs the experiments `wanted` selects (all, if it is empty), and
/// returns their findings in the order of `docs/study.md`.
///
/// # Errors
/// The first experiment whose setup failed (out of fds, a refused syscall).
pub fn run(wanted: &[u32]) -> io::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for (number, experiment) in EXPERIMENTS {
        if wanted.is_empty() || wanted.contains(&number) {
            findings.push((number, experiment()?));
        }
    }
    findings.sort_by_key(|(number, _)| *number);
    Ok(findings.into_iter().map(|(_, finding)| finding).collect())
}

/// An epoll instance (close-on-exec).
pub(crate) fn epoll() -> io::Result<Epoll> {
    Ok(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?)
}

/// A non-blocking Unix stream pair.
pub(crate) fn pair() -> io::Result<(UnixStream, UnixStream)> {
    let (a, b) = UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    Ok((a, b))
}

/// The flags of a read registration in each trigger mode.
pub(crate) const TRIGGERS: [(&str, EpollFlags); 3] = [
    ("LT", EpollFlags::EPOLLIN),
    ("ET", EpollFlags::EPOLLIN.union(EpollFlags::EPOLLET)),
    (
        "oneshot",
        EpollFlags::EPOLLIN.union(EpollFlags::EPOLLONESHOT),
    ),
];

/// Registers `fd` with `flags` and `data`.
pub(crate) fn add(epoll: &Epoll, fd: impl AsFd, flags: EpollFlags, data: u64) -> io::Result<()> {
    Ok(epoll.add(fd, EpollEvent::new(flags, data))?)
}

/// The events of one wait of at most `timeout_ms` (0: a poll).
pub(crate) fn wait(epoll: &Epoll, timeout_ms: u16) -> io::Result<Vec<EpollEvent>> {
    let mut events = [EpollEvent::empty(); 64];
    let n = epoll.wait(&mut events, EpollTimeout::from(timeout_ms))?;
    Ok(events[..n].to_vec())
}

/// `EPOLL_CTL_DEL` by number, for an fd number the program may have closed
/// (nix's `Epoll::delete` needs a live fd). The errno, if refused.
pub(crate) fn delete_number(epoll: &Epoll, fd: RawFd) -> Result<(), Errno> {
    ctl_number(epoll, nix::libc::EPOLL_CTL_DEL, fd, EpollFlags::empty(), 0)
}

/// `epoll_ctl(op)` by fd number, as a loop that keeps numbers (not owned
/// fds) calls it. The errno, if refused.
pub(crate) fn ctl_number(
    epoll: &Epoll,
    op: nix::libc::c_int,
    fd: RawFd,
    flags: EpollFlags,
    data: u64,
) -> Result<(), Errno> {
    let mut event = EpollEvent::new(flags, data);
    // SAFETY: epoll_ctl reads its integer arguments and the one event it
    // is pointed at, which lives across the call; an fd number that is
    // closed or reused is the experiment, and the kernel checks it.
    let rc = unsafe {
        nix::libc::epoll_ctl(
            epoll.0.as_raw_fd(),
            op,
            fd,
            std::ptr::from_mut(&mut event).cast(),
        )
    };
    Errno::result(rc).map(drop)
}

/// Nearest-rank percentile of sorted `values`.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds, for a table cell.
pub(crate) fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}
