//! A process-directed signal (kill, Ctrl-C) goes to one thread of the
//! process that does not block it (kernel/signal.c `complete_signal`: the
//! main thread if it can take it, else any other). A signalfd only reads
//! signals that are pending, and a signal is only left pending when every
//! thread blocks it. A loop that blocks its signals and opens a signalfd
//! after other threads exist (a logger, a runtime, a test harness) loses
//! them to those threads: to their handler, or to the default action,
//! which for SIGTERM ends the process without the loop's cleanup.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::getpid;

use super::Finding;

/// Signals sent per variant.
pub const SENT: usize = 20;

/// Where `SENT` process-directed SIGUSR2s went: (to the signalfd, to a
/// handler on another thread), the loop looking 10 ms after each is sent.
///
/// `block_first`: block the signal in this thread before the other thread
/// is spawned (it inherits the mask), or after (it does not).
///
/// Installs a flag-setting SIGUSR2 handler for the process (so a signal
/// taken by the other thread does not end it), and leaves SIGUSR2 blocked
/// in the calling thread.
///
/// # Errors
/// Setup failures.
pub fn deliveries(block_first: bool) -> io::Result<(usize, usize)> {
    let handled = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(Signal::SIGUSR2 as i32, handled.clone())?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGUSR2);
    if block_first {
        mask.thread_block()?;
    }
    let done = Arc::new(AtomicBool::new(false));
    let other_done = done.clone();
    // Busy (a worker, a logger at work): on a CPU, it takes a signal at
    // once (a sleeping one is woken for it, and races the signalfd).
    let other = std::thread::spawn(move || {
        while !other_done.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    });
    if !block_first {
        mask.thread_block()?;
    }
    let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    let (mut to_fd, mut to_handler) = (0, 0);
    for _ in 0..SENT {
        kill(getpid(), Signal::SIGUSR2)?;
        // The loop is busy with other events for a moment, as a loop is:
        // without it, whether the loop's read or the other thread's
        // handler takes the signal first is a race.
        std::thread::sleep(Duration::from_millis(10));
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(1u16))? > 0 && fd.read_signal()?.is_some() {
                to_fd += 1;
                break;
            }
            if handled.swap(false, Ordering::Relaxed) {
                to_handler += 1;
                break;
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    other.join().expect("the other thread");
    Ok((to_fd, to_handler))
}

/// Pitfall 13: signalfd with the signal not blocked in every thread.
///
/// # Errors
/// Setup failures.
pub fn signal_to_another_thread() -> io::Result<Finding> {
    let (late_fd, late_handler) = deliveries(false)?;
    let (early_fd, early_handler) = deliveries(true)?;
    let cell = |fd, handler| {
        format!("{fd} of {SENT} to the signalfd, {handler} to the other thread's handler")
    };
    Ok(Finding {
        pitfall: "13. signalfd in a process with threads that take the signal",
        raw: vec![
            (
                "blocked after spawning a thread",
                cell(late_fd, late_handler),
            ),
            ("blocked before spawning", cell(early_fd, early_handler)),
        ],
        edgeloop: "on_signals blocks in the calling thread and warns, naming the threads \
                   that can still take the signals (study/tests/pitfalls.rs)"
            .into(),
    })
}
