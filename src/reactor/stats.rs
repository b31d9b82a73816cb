//! Counters the loop keeps about its own work. Plain integers bumped on a
//! `&mut` path: always on, no atomics, no measurable cost.

/// What the reactor did, counted since it was created: its own syscalls and
/// dispatches. Counters of the I/O done by the layers above live with those
/// layers ([`ConnStats`](crate::conn::ConnStats)). Read it with
/// [`Core::stats`](crate::Core::stats); take a copy before and after a run
/// and subtract ([`Stats::since`]) to measure a workload.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Waits on the selector (epoll_wait, poll or select calls).
    pub waits: u64,
    /// Interest-list syscalls (epoll_ctl). Always 0 on poll and select, which
    /// keep their interest list in user space.
    pub ctls: u64,
    /// Events handed to callbacks and sources (carried-over events
    /// included).
    pub dispatched: u64,
    /// Events dropped because their token's generation no longer matched its
    /// slot (the registration was removed, maybe replaced, earlier in the
    /// batch), or because the registration no longer wants that readiness.
    pub stale: u64,
    /// Times the cross-thread waker woke the loop.
    pub wakeups: u64,
    /// Closures posted through a [`Handle`](crate::Handle) that ran.
    pub posted: u64,
    /// Timers that fired.
    pub timers_fired: u64,
    /// Callbacks (I/O, timer, posted, or a source's handler) that panicked.
    pub panics: u64,
}

impl Stats {
    /// The counts accumulated since `earlier` was taken.
    ///
    /// ```
    /// let mut reactor = edgeloop::Reactor::new()?;
    /// let before = *reactor.core().stats();
    /// reactor.run_once(Some(std::time::Duration::ZERO))?;
    /// let turn = reactor.core().stats().since(&before);
    /// assert_eq!((turn.waits, turn.dispatched), (1, 0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            waits: self.waits - earlier.waits,
            ctls: self.ctls - earlier.ctls,
            dispatched: self.dispatched - earlier.dispatched,
            stale: self.stale - earlier.stale,
            wakeups: self.wakeups - earlier.wakeups,
            posted: self.posted - earlier.posted,
            timers_fired: self.timers_fired - earlier.timers_fired,
            panics: self.panics - earlier.panics,
        }
    }

    /// Syscalls the loop itself made: waits and ctls.
    pub fn syscalls(&self) -> u64 {
        self.waits + self.ctls
    }
}
