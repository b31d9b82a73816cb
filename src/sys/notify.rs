//! The two fds a loop wakes on besides its IO: an eventfd counter (the
//! reactor's waker, the pool's finished jobs) and a signalfd.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::errno_error;

/// A non-blocking, close-on-exec eventfd: other threads add to its
/// counter, the loop drains it.
#[derive(Debug)]
pub(crate) struct Counter(EventFd);

impl Counter {
    /// `what` names the eventfd in the error.
    pub(crate) fn new(what: &str) -> io::Result<Counter> {
        EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map(Counter)
            .map_err(|e| errno_error(e as i32, format_args!("eventfd for {what}")))
    }

    /// Adds one, making the fd readable. A counter at its maximum is
    /// readable already, so its `EAGAIN` is no failure.
    pub(crate) fn add_one(&self) -> io::Result<()> {
        match self.0.write(1) {
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => Ok(()),
            Err(e) => Err(errno_error(e as i32, "write to an eventfd")),
        }
    }

    /// Reads and resets the counter: what was added since the last drain
    /// (0 if nothing was).
    pub(crate) fn drain(&self) -> u64 {
        self.0.read().unwrap_or(0)
    }
}

impl AsFd for Counter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A non-blocking signalfd for `signals`, which are blocked for the
/// calling thread first (so they are queued for the fd, not delivered).
#[derive(Debug)]
pub(crate) struct Signals(SignalFd);

impl Signals {
    pub(crate) fn new(signals: &[Signal]) -> io::Result<Signals> {
        let mut mask = SigSet::empty();
        for signal in signals {
            mask.add(*signal);
        }
        mask.thread_block()
            .map_err(|e| errno_error(e as i32, format_args!("blocking {signals:?}")))?;
        let elsewhere = threads_taking(signals);
        if !elsewhere.is_empty() {
            log::warn!(
                "edgeloop: {signals:?} are blocked in this thread, but threads {elsewhere:?} \
                 can still take them when they are sent to the process (kill, Ctrl-C), and \
                 then the signalfd never sees them: block them before spawning threads"
            );
        }
        SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map(Signals)
            .map_err(|e| errno_error(e as i32, "signalfd"))
    }

    /// The next pending signal, or `None` when none is left.
    pub(crate) fn next(&mut self) -> Option<Signal> {
        loop {
            let info = self.0.read_signal().ok()??;
            if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                return Some(signal);
            }
        }
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The other threads of this process in which one of `signals` is not
/// blocked (`SigBlk` in /proc/self/task/*/status): a signal sent to the
/// process goes to such a thread rather than staying pending for a
/// signalfd. Empty if /proc cannot be read.
pub(crate) fn threads_taking(signals: &[Signal]) -> Vec<i32> {
    let own = nix::unistd::gettid().as_raw();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut tids: Vec<i32> = tasks
        .flatten()
        .filter_map(|task| {
            let tid: i32 = task.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            let blocked = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
            let blocked = u64::from_str_radix(blocked.trim(), 16).ok()?;
            let takes = signals
                .iter()
                .any(|s| blocked & (1 << (*s as i32 - 1)) == 0);
            (tid != own && takes).then_some(tid)
        })
        .collect();
    tids.sort_unstable();
    tids
}
