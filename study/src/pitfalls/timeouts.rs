//! `epoll_wait` and `poll` take their timeout in whole milliseconds. A
//! loop that converts "0.7 ms until the next timer" by truncation asks for
//! 0 ms, returns at once, finds the timer not yet due, and asks again: it
//! spins until the deadline. Rounding up cures the spin at the price of up
//! to 1 ms of lateness; `epoll_pwait2` (Linux 5.11), `select`'s
//! microseconds and io_uring's timeouts take finer units.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use edgeloop::Reactor;
use nix::poll::{PollTimeout, poll};
use nix::sys::select::{FdSet, select};
use nix::sys::time::TimeVal;

use super::{Finding, epoll, percentile, us};

/// How far ahead each timer is due: under a millisecond, where truncation
/// bites.
pub const AHEAD: Duration = Duration::from_micros(700);
/// Timers per way of waiting.
pub const TIMERS: usize = 50;

/// The waits one way of waiting made per timer, and how late the timers
/// fired (p50, p99).
#[derive(Debug, Clone, Copy)]
pub struct TimerRun {
    pub waits_per_timer: f64,
    pub late_p50: Duration,
    pub late_p99: Duration,
}

impl TimerRun {
    fn cell(&self) -> String {
        format!(
            "{:.1} waits per timer, late p50 {} p99 {}",
            self.waits_per_timer,
            us(self.late_p50),
            us(self.late_p99)
        )
    }
}

/// Pitfall 6: millisecond truncation of a timeout.
///
/// # Errors
/// Setup failures.
pub fn millisecond_truncation() -> io::Result<Finding> {
    let epoll = epoll()?;
    let fd = epoll.0.as_raw_fd();
    let truncated = |d: Duration| d.as_millis() as i32;
    let rounded_up = |d: Duration| d.as_nanos().div_ceil(1_000_000) as i32;
    let mut raw = Vec::new();
    raw.push((
        "epoll_wait, ms truncated",
        run(|left| epoll_wait_ms(fd, truncated(left)))?.cell(),
    ));
    raw.push((
        "epoll_wait, ms rounded up",
        run(|left| epoll_wait_ms(fd, rounded_up(left)))?.cell(),
    ));
    raw.push((
        "epoll_pwait2, ns",
        run(|left| epoll_pwait2(fd, left))?.cell(),
    ));
    raw.push((
        "poll, ms truncated",
        run(|left| {
            let ms = PollTimeout::try_from(truncated(left)).map_err(io::Error::other)?;
            poll(&mut [], ms)?;
            Ok(())
        })?
        .cell(),
    ));
    raw.push((
        "select, µs",
        run(|left| {
            let micros = left.as_nanos().div_ceil(1000) as i64;
            let mut timeout = TimeVal::new(micros / 1_000_000, micros % 1_000_000);
            select(None, &mut FdSet::new(), None, None, &mut timeout)?;
            Ok(())
        })?
        .cell(),
    ));
    raw.push(("io_uring timeout, ns", uring_cell()));
    Ok(Finding {
        pitfall: "6. millisecond truncation of a timeout: a spin until the timer",
        raw,
        edgeloop: format!("call_later: {}", edgeloop_timers()?.cell()),
    })
}

/// Runs [`TIMERS`] timers [`AHEAD`] each, waiting with `wait(time left)`
/// until each is due.
fn run(mut wait: impl FnMut(Duration) -> io::Result<()>) -> io::Result<TimerRun> {
    let mut waits = 0;
    let mut late = Vec::with_capacity(TIMERS);
    for _ in 0..TIMERS {
        let deadline = Instant::now() + AHEAD;
        loop {
            let now = Instant::now();
            let Some(left) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                late.push(now - deadline);
                break;
            };
            wait(left)?;
            waits += 1;
        }
    }
    late.sort();
    Ok(TimerRun {
        waits_per_timer: waits as f64 / TIMERS as f64,
        late_p50: percentile(&late, 50.0),
        late_p99: percentile(&late, 99.0),
    })
}

fn epoll_wait_ms(epfd: i32, ms: i32) -> io::Result<()> {
    let mut events = [nix::libc::epoll_event { events: 0, u64: 0 }; 1];
    // SAFETY: the kernel writes at most 1 event into `events`, which lives
    // across the call.
    let rc = unsafe { nix::libc::epoll_wait(epfd, events.as_mut_ptr(), 1, ms) };
    nix::errno::Errno::result(rc)?;
    Ok(())
}

fn epoll_pwait2(epfd: i32, left: Duration) -> io::Result<()> {
    let mut events = [nix::libc::epoll_event { events: 0, u64: 0 }; 1];
    let timeout = nix::libc::timespec {
        tv_sec: left.as_secs() as nix::libc::time_t,
        tv_nsec: left.subsec_nanos().into(),
    };
    // SAFETY: the kernel writes at most 1 event into `events` and reads
    // `timeout`, both living across the call; a null sigmask means none.
    let rc = unsafe {
        nix::libc::epoll_pwait2(epfd, events.as_mut_ptr(), 1, &timeout, std::ptr::null())
    };
    nix::errno::Errno::result(rc)?;
    Ok(())
}

fn uring_cell() -> String {
    let ring = io_uring::IoUring::new(4);
    match ring {
        Err(e) => format!("io_uring refused: {e}"),
        Ok(mut ring) => {
            let timed = run(|left| {
                let ts = io_uring::types::Timespec::new()
                    .sec(left.as_secs())
                    .nsec(left.subsec_nanos());
                let entry = io_uring::opcode::Timeout::new(&ts).build();
                // SAFETY: `ts` outlives the submission: submit_and_wait
                // returns once the timeout completed, and the completion
                // is reaped before `ts` goes out of scope.
                unsafe { ring.submission().push(&entry) }.map_err(io::Error::other)?;
                ring.submit_and_wait(1)?;
                ring.completion().for_each(drop);
                Ok(())
            });
            match timed {
                Ok(timed) => timed.cell(),
                Err(e) => format!("io_uring failed: {e}"),
            }
        }
    }
}

/// On edgeloop: [`TIMERS`] `call_later` timers [`AHEAD`] each, one after
/// the other; the reactor's waits per timer and their lateness.
///
/// # Errors
/// Setup failures.
pub fn edgeloop_timers() -> io::Result<TimerRun> {
    let mut reactor = Reactor::with_data(None::<Instant>)?;
    let mut waits = 0;
    let mut late = Vec::with_capacity(TIMERS);
    for _ in 0..TIMERS {
        let due = Instant::now() + AHEAD;
        reactor.core_mut().call_later(AHEAD, |r| {
            *r.core_mut().data_mut() = Some(Instant::now());
        });
        let before = *reactor.core().stats();
        while reactor.core().data().is_none() {
            reactor.run_once(None)?;
        }
        waits += reactor.core().stats().since(&before).waits;
        let fired = reactor.core_mut().data_mut().take().expect("fired");
        late.push(fired.saturating_duration_since(due));
    }
    late.sort();
    Ok(TimerRun {
        waits_per_timer: waits as f64 / TIMERS as f64,
        late_p50: percentile(&late, 50.0),
        late_p99: percentile(&late, 99.0),
    })
}
