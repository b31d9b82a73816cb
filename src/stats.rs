//! Counters the loop keeps about its own work. Plain integers bumped on a
//! `&mut` path: always on, no atomics, no measurable cost.

/// What the reactor (and the connections on it) did, counted since it was
/// created. Read it with [`Reactor::stats`](crate::Reactor::stats); take a
/// copy before and after a run and subtract ([`Stats::since`]) to measure a
/// workload.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Waits on the selector (epoll_wait, poll or select calls).
    pub waits: u64,
    /// Interest-list syscalls (epoll_ctl). Always 0 on poll and select, which
    /// keep their interest list in user space.
    pub ctls: u64,
    /// Events handed to callbacks (carried-over events included).
    pub dispatched: u64,
    /// Events dropped because their token's generation no longer matched its
    /// slot (the registration was removed, maybe replaced, earlier in the
    /// batch), or because the registration no longer wants that readiness.
    pub stale: u64,
    /// Times the cross-thread waker woke the loop.
    pub wakeups: u64,
    /// Closures posted through a [`Handle`](crate::Handle) that ran.
    pub posted: u64,
    /// Timer callbacks run.
    pub timers_fired: u64,
    /// Callbacks (I/O, timer or posted) that panicked.
    pub panics: u64,
    /// `read`/`recv` syscalls made by connections.
    pub reads: u64,
    /// Of those, the ones that returned `EAGAIN`.
    pub eagain_reads: u64,
    /// `send`/`writev` syscalls made by connections.
    pub writes: u64,
    /// Of those, the ones that wrote less than asked (or `EAGAIN`).
    pub partial_writes: u64,
    /// Bytes read by connections.
    pub bytes_in: u64,
    /// Bytes written by connections.
    pub bytes_out: u64,
    /// Connections accepted.
    pub accepts: u64,
    /// Failed `accept4` calls other than `EAGAIN`.
    pub accept_errors: u64,
    /// Times a connection stopped reading because its queued output passed
    /// the high-water mark.
    pub backpressure_pauses: u64,
    /// Connections closed by the peer with a reset or broken pipe.
    pub resets: u64,
    /// Connections accepted and closed at once because the server was at
    /// its connection cap.
    pub refused: u64,
    /// Connections closed because they were idle past their timeout.
    pub idle_timeouts: u64,
}

impl Stats {
    /// The counts accumulated since `earlier` was taken.
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
            reads: self.reads - earlier.reads,
            eagain_reads: self.eagain_reads - earlier.eagain_reads,
            writes: self.writes - earlier.writes,
            partial_writes: self.partial_writes - earlier.partial_writes,
            bytes_in: self.bytes_in - earlier.bytes_in,
            bytes_out: self.bytes_out - earlier.bytes_out,
            accepts: self.accepts - earlier.accepts,
            accept_errors: self.accept_errors - earlier.accept_errors,
            backpressure_pauses: self.backpressure_pauses - earlier.backpressure_pauses,
            resets: self.resets - earlier.resets,
            refused: self.refused - earlier.refused,
            idle_timeouts: self.idle_timeouts - earlier.idle_timeouts,
        }
    }

    /// Syscalls the loop and its connections made: waits, ctls, reads and
    /// writes (accepts not included).
    pub fn syscalls(&self) -> u64 {
        self.waits + self.ctls + self.reads + self.writes
    }
}
