//! Buffered connections: a [`Handler`] sees bytes, replies through a
//! [`Conn`], and the [`Connections`] set does the non-blocking I/O.
//!
//! What the set does for every connection:
//! - **Reads follow the trigger.** Level: up to `read_budget` reads per event,
//!   stopping at the first short read (the kernel will report again). Edge:
//!   read until `EAGAIN`, or stop at a short read when no RDHUP was seen
//!   ([`ConnOptions::short_read`]: the kernel raises a new edge when more
//!   data arrives, so this saves the `EAGAIN` read); a connection that used
//!   its whole budget is [requeued](crate::Core::requeue) for the next
//!   turn, since no new edge will come for data already queued.
//! - **Fair by default.** One event reads at most one `read_chunk` of
//!   16 KiB (Redis reads 16 KiB per client per event), so a client that
//!   floods gets as much of a turn as one that sends a single request, and
//!   the work one event hands a handler is bounded. A handler bounds its
//!   own work further by handing input back with [`Conn::defer`]: it comes
//!   back on a later turn, once the connection's output has drained.
//! - **Reads land in one scratch buffer** owned by the set; an idle
//!   connection owns no buffer.
//! - **Writes** go out at once with `send(MSG_NOSIGNAL)` (no SIGPIPE, also in
//!   a host program that does not ignore it); what the socket would not take
//!   is queued and flushed with vectored `sendmsg` when writable. Level:
//!   WRITABLE interest is on only while the queue is non-empty. Edge: the
//!   connection is registered READABLE|WRITABLE once and never modified.
//! - **Backpressure**: above [`ConnOptions::high_water`] queued bytes the
//!   connection stops reading (a [paired](Conn::pair_with) connection's
//!   partner does: its reading fills the queue); below
//!   [`ConnOptions::low_water`] it resumes.
//!   Above [`ConnOptions::max_queued_total`] over the whole set, the
//!   connection whose handler adds to it stops reading, until its own queue
//!   drains or the total is back under half.
//! - **Graceful close** ([`Conn::close`]): what is queued is sent, the write
//!   side shut down, and input read and discarded until the peer's EOF (or
//!   [`ConnOptions::linger`]), so the peer gets our last byte and then EOF,
//!   never an RST. [`ConnOptions::idle_timeout`] closes quiet connections
//!   the same way.
//! - **Half-close**: on EOF from the peer the handler's
//!   [`on_eof`](Handler::on_eof) runs (by default: close once everything
//!   queued is sent), so a client that shuts down its write side gets every
//!   byte back, then EOF.
//! - **Resets** (`ECONNRESET`, `EPIPE`) close the connection exactly once,
//!   drop its queue, and are counted in [`ConnStats::resets`], not
//!   logged as errors.

use std::fmt;
use std::io;

use crate::{Token, Trigger};

mod accept;
mod connect;
mod connection;
mod cork;
mod deferred;
mod idle;
mod key;
mod listening;
mod others;
mod pair;
mod queue;
mod set;
mod shutdown;
mod state;
mod table;

pub use accept::{AcceptOptions, ListenerId};
pub use connect::ConnectOptions;
pub use connection::Conn;
pub use idle::MAX_TIMEOUT;
pub use listening::{somaxconn, tcp_listener};
pub use others::Others;
pub use set::Connections;
pub use shutdown::{ShutdownMode, drain, shut_down};

/// What a server calls for each connection: the setup / handle / finish
/// lifecycle of Python's `socketserver`.
///
/// One handler serves every connection of a [`Connections`] set (so it can
/// hold what they share, like a chat room); per-connection state lives in
/// [`Handler::Session`]; state shared with the rest of the program lives in
/// the reactor's loop state `D`, reached through [`Conn::data`] and
/// [`Conn::data_mut`].
///
/// ```
/// use edgeloop::conn::{Conn, Handler};
///
/// /// Replies with the bytes it got, upper-cased.
/// struct Upper;
///
/// impl Handler for Upper {
///     type Session = ();
///     fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
///         conn.write(&data.to_ascii_uppercase());
///     }
/// }
/// ```
pub trait Handler<D: 'static = ()>: Sized + 'static {
    /// Per-connection state, created with `Default` when the connection opens
    /// and handed back to [`on_close`](Handler::on_close).
    type Session: Default + 'static;

    /// The connection was accepted (or attached) and registered.
    fn on_open(&mut self, conn: &mut Conn<'_, Self, D>) {
        let _ = conn;
    }

    /// Bytes arrived. `data` borrows the set's scratch buffer: copy what
    /// you keep.
    ///
    /// The set calls this from one place only, so with the handler and
    /// the set in one codegen unit (`codegen-units = 1`, or LTO, in the
    /// release profile) the compiler inlines it there: a handler in a
    /// binary crate needs no `#[inline]`. One in a library crate does:
    /// the library exports its trait impls, and the compiler keeps an
    /// exported function out of line.
    fn on_data(&mut self, conn: &mut Conn<'_, Self, D>, data: &[u8]);

    /// The peer shut down its write side. The default closes the connection
    /// once everything queued is sent (a half-closing client gets its full
    /// reply, then EOF).
    fn on_eof(&mut self, conn: &mut Conn<'_, Self, D>) {
        conn.close();
    }

    /// The socket took the last of this connection's queued output: bytes
    /// it had refused earlier (the peer read slowly) are all sent, on a
    /// writable event, and the connection is open. Node's `'drain'`: a
    /// handler that paused a producer because this connection's
    /// [`queued`](Conn::queued) output grew (its own reading, or another
    /// connection's with [`Conn::pause_reading_other`]) resumes it here.
    /// Not called for output a handler call sent in full, nor for a queue
    /// the handler emptied itself with [`Conn::flush`]. The default does
    /// nothing.
    fn on_drain(&mut self, conn: &mut Conn<'_, Self, D>) {
        let _ = conn;
    }

    /// The connection is closed and its fd released. Called exactly once per
    /// connection. `others` reaches the rest of the set (and the loop's
    /// core), to act on other connections as any handler call can.
    fn on_close(
        &mut self,
        others: &mut Others<'_, Self, D>,
        id: ConnId,
        session: Self::Session,
        reason: CloseReason,
    ) {
        let _ = (others, id, session, reason);
    }

    /// An outbound connection ([`Connections::connect`]) failed after it
    /// was started: refused, unreachable, timed out (`TimedOut`). Called
    /// once, instead of [`on_open`](Handler::on_open); no
    /// [`on_close`](Handler::on_close) follows. `session` is the
    /// connection's: the one given to `connect` (or changed since, with
    /// [`Connections::with_conn`]), so what it was for is not lost, and
    /// `others` reaches the rest of the set: a handler that connected on a
    /// client's behalf can answer that client (an error reply) and close
    /// it. A [paired](Conn::pair_with) partner is aborted already. The
    /// default logs the failure.
    fn on_connect_failed(
        &mut self,
        others: &mut Others<'_, Self, D>,
        id: ConnId,
        session: Self::Session,
        error: io::Error,
    ) {
        let _ = (others, session);
        log::warn!("connect {id:?}: {error}");
    }

    /// True while the handler still owes replies it is working on elsewhere
    /// (a worker pool): a server's graceful shutdown keeps the loop running
    /// until this is false (within its grace period) before it closes the
    /// connections. The default is false.
    fn busy(&self) -> bool {
        false
    }

    /// True while this connection's reply is being worked on elsewhere (a
    /// worker pool computing it): work in flight is activity, so the idle
    /// timeout does not close the connection, and counts again from the
    /// last sweep that found it busy. Asked only of a connection already
    /// past its idle timeout. The default is false.
    fn in_flight(&self, session: &Self::Session) -> bool {
        let _ = session;
        false
    }
}

/// Identifies a connection: its registration's token (owner, slot and
/// generation), so an id kept after its connection closed matches nothing.
/// The token itself stays inside the set: only the set arms and times its
/// connections.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) Token);

impl ConnId {
    /// A small number, unique among the set's open connections (reused
    /// after a connection closes), for logs and names.
    pub fn index(self) -> usize {
        self.0.key()
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({}g{})", self.0.key(), self.0.generation())
    }
}

/// What a [`Connections`] set did, counted since it was created: the I/O
/// syscalls of its connections and what came of them. The loop's own
/// syscalls (waits, ctls) are in the reactor's [`Stats`](crate::Stats).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnStats {
    /// `recv` syscalls.
    pub reads: u64,
    /// Of those, the ones that returned `EAGAIN`.
    pub eagain_reads: u64,
    /// `send`/`sendmsg` syscalls.
    pub writes: u64,
    /// Of those, the ones that wrote less than asked (or `EAGAIN`).
    pub partial_writes: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
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
    /// Connections accepted and closed at once because the set was at its
    /// connection cap.
    pub refused: u64,
    /// Connections closed because they were idle past their timeout.
    pub idle_timeouts: u64,
    /// Times a connection stopped reading because the set's queued output
    /// passed [`ConnOptions::max_queued_total`].
    pub budget_pauses: u64,
    /// Connections aborted because the set's queued output passed twice
    /// [`ConnOptions::max_queued_total`].
    pub budget_aborts: u64,
    /// The most bytes the set ever had queued at once.
    pub peak_queued: usize,
    /// Connections closed at the cap to admit a new one
    /// ([`AcceptOptions::evict_idle`]).
    pub evicted: u64,
    /// Outbound connections established.
    pub connects: u64,
    /// Outbound connections that failed after they were started (reported
    /// through [`Handler::on_connect_failed`]).
    pub connect_failures: u64,
}

impl ConnStats {
    /// The counts accumulated since `earlier` was taken.
    pub fn since(&self, earlier: &ConnStats) -> ConnStats {
        ConnStats {
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
            budget_pauses: self.budget_pauses - earlier.budget_pauses,
            budget_aborts: self.budget_aborts - earlier.budget_aborts,
            peak_queued: self.peak_queued,
            evicted: self.evicted - earlier.evicted,
            connects: self.connects - earlier.connects,
            connect_failures: self.connect_failures - earlier.connect_failures,
        }
    }

    /// The I/O syscalls counted here: reads and writes (accepts not
    /// included).
    pub fn syscalls(&self) -> u64 {
        self.reads + self.writes
    }
}

/// Why a connection closed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// Closed by us, after everything queued was sent (or by the peer, after
    /// its EOF and our flush).
    Closed,
    /// Aborted by us: whatever was queued was dropped, and the connection
    /// was reset (`SO_LINGER` 0: a TCP peer gets an RST, not a FIN, so it
    /// cannot take the cut stream for a complete one).
    Aborted,
    /// The peer reset the connection (`ECONNRESET`) or stopped reading
    /// (`EPIPE`). Counted in [`ConnStats::resets`].
    Reset,
    /// Any other I/O error.
    Error(io::Error),
}

impl CloseReason {
    /// The reason for an errno from a read, a write or the socket's pending
    /// error (SO_ERROR): one mapping for all three, so a peer's reset reads
    /// `Reset` whichever call saw it first.
    pub(crate) fn from_errno(errno: i32) -> CloseReason {
        match errno {
            nix::libc::ECONNRESET | nix::libc::EPIPE => CloseReason::Reset,
            errno => CloseReason::Error(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Tuning for the connections of one [`Connections`] set. Start from
/// [`ConnOptions::default`] or [`ConnOptions::with_trigger`] and chain the
/// `with_*` setters (or assign fields):
///
/// ```
/// use edgeloop::conn::ConnOptions;
/// use edgeloop::Trigger;
/// use std::time::Duration;
///
/// let options = ConnOptions::with_trigger(Trigger::Level)
///     .with_read_budget(4)
///     .with_idle_timeout(Some(Duration::from_secs(30)))
///     .water_marks(256 * 1024);
/// assert_eq!(options.low_water, 64 * 1024);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnOptions {
    /// Level or Edge (Oneshot is refused: a connection needs every event).
    pub trigger: Trigger,
    /// Bytes asked for per read (default 16 KiB, as Redis reads; at most
    /// [`SCRATCH_SIZE`]).
    pub read_chunk: usize,
    /// Reads per event before the connection yields to the others
    /// (default 1: fairness under a fire-hose client; an edge-triggered
    /// connection that used its budget is carried over to the next turn).
    /// A connection's turn reads at most `read_chunk * read_budget` bytes:
    /// with 200 clients pipelining requests at full speed, a client that
    /// sends one request waits for about 200 such turns.
    pub read_budget: usize,
    /// Edge only: stop reading at a short read when no RDHUP was reported
    /// (in this event or an earlier one).
    /// Safe on stream sockets (a short read means the receive queue was
    /// empty, and new data raises a new edge); saves one `EAGAIN` read per
    /// message. On by default.
    pub short_read: bool,
    /// Queued output above which the connection stops reading (default
    /// 1 MiB); for a [paired](Conn::pair_with) connection, its partner
    /// stops, since the partner's reading fills the queue. A program that
    /// may hold many stalled connections at once (a proxy) sets it lower,
    /// so that they fit in [`max_queued_total`](ConnOptions::max_queued_total).
    pub high_water: usize,
    /// Queued output at or below which a paused connection reads again
    /// (default a quarter of `high_water`).
    pub low_water: usize,
    /// Queued output over *all* the set's connections above which the
    /// connection whose handler is adding to it stops reading (default
    /// 64 MiB): many clients that send and never read, or one sender
    /// broadcasting to many slow readers, cannot grow the server without
    /// bound. A paused connection reads again once its own queue drains to
    /// `low_water`, or once the total is back under half of this.
    ///
    /// Pausing stops reads, not the writes of a handler call already
    /// running, so one call could still queue without bound (a reply to a
    /// pipelined flood of reads of a large value). Twice this is a hard
    /// ceiling: a write that takes the total past it aborts connections,
    /// longest queue first, until the total is back under this cap. Their
    /// queues are dropped, their handlers see [`CloseReason::Aborted`],
    /// later writes to them are dropped, and each is counted in
    /// [`ConnStats::budget_aborts`].
    pub max_queued_total: usize,
    /// How long the connections paused by the set's budget wait for it to
    /// fall back under half (default 10 s). Past it, the longest queues
    /// are aborted, as at the hard ceiling, until the total is under half,
    /// and the paused connections read again: clients that never read,
    /// each under its own `high_water`, cannot hold the budget and pause
    /// every sender for good. A queue that drains within the grace (a slow
    /// reader that reads) is never touched. At most [`MAX_TIMEOUT`].
    pub budget_grace: std::time::Duration,
    /// How long a closing connection may go without progress (bytes of
    /// its queue sent, or the peer's EOF after our SHUT_WR) before it is
    /// aborted (default 5 s, as nginx's `lingering_timeout`). A peer that
    /// never reads cannot hold a closing connection open: its queue makes
    /// no progress. At most [`MAX_TIMEOUT`].
    pub linger: std::time::Duration,
    /// Close a connection (gracefully) that has had no traffic for this
    /// long (default: never): nothing read, and none of its queued output
    /// taken by the socket (a long download to a client that sends
    /// nothing is not idle; a [paired](Conn::pair_with) connection counts
    /// its partner's traffic too). At most [`MAX_TIMEOUT`].
    ///
    /// The bound: a connection is closed no earlier than this after its
    /// last activity, and on a loop that is not busy no later than this
    /// plus 1/64 of it (at least 1 ms, at most 1 s) plus 2 ms. The cost:
    /// each read stores the loop time (cached once per batch of events)
    /// in the connection's slot, and one timer per set sweeps the
    /// connections when the earliest deadline may be due. No timer and no
    /// memory per connection.
    pub idle_timeout: Option<std::time::Duration>,
    /// Set `TCP_NODELAY` on the TCP connections the set accepts or opens
    /// (default: on, as nginx, Redis and HAProxy do). The set already
    /// gathers a handler call's writes into at most two sends (see
    /// [`Conn::write`]); with Nagle's algorithm on, the second of them
    /// could wait for the peer's ACK of the first, and a peer that delays
    /// its ACKs makes that up to 40 ms. Sockets handed to
    /// [`Connections::attach`] keep what they have.
    pub nodelay: bool,
}

/// The largest [`ConnOptions::read_chunk`]: the most one read may take.
pub const SCRATCH_SIZE: usize = 64 * 1024;

impl Default for ConnOptions {
    fn default() -> ConnOptions {
        ConnOptions {
            trigger: Trigger::Edge,
            read_chunk: 16 * 1024,
            read_budget: 1,
            short_read: true,
            high_water: 1 << 20,
            low_water: 1 << 18,
            max_queued_total: 64 << 20,
            budget_grace: std::time::Duration::from_secs(10),
            linger: std::time::Duration::from_secs(5),
            idle_timeout: None,
            nodelay: true,
        }
    }
}

impl ConnOptions {
    /// Defaults with the given trigger.
    pub fn with_trigger(trigger: Trigger) -> ConnOptions {
        ConnOptions {
            trigger,
            ..ConnOptions::default()
        }
    }

    /// Sets `high_water` and `low_water` (a quarter of it).
    #[must_use]
    pub fn water_marks(mut self, high: usize) -> ConnOptions {
        self.high_water = high;
        self.low_water = high / 4;
        self
    }

    /// Sets [`read_chunk`](ConnOptions::read_chunk).
    #[must_use]
    pub fn with_read_chunk(mut self, bytes: usize) -> ConnOptions {
        self.read_chunk = bytes;
        self
    }

    /// Sets [`read_budget`](ConnOptions::read_budget).
    #[must_use]
    pub fn with_read_budget(mut self, reads: usize) -> ConnOptions {
        self.read_budget = reads;
        self
    }

    /// Sets [`short_read`](ConnOptions::short_read).
    #[must_use]
    pub fn with_short_read(mut self, on: bool) -> ConnOptions {
        self.short_read = on;
        self
    }

    /// Sets [`max_queued_total`](ConnOptions::max_queued_total).
    #[must_use]
    pub fn with_max_queued_total(mut self, bytes: usize) -> ConnOptions {
        self.max_queued_total = bytes;
        self
    }

    /// Sets [`budget_grace`](ConnOptions::budget_grace).
    pub fn with_budget_grace(mut self, grace: std::time::Duration) -> ConnOptions {
        self.budget_grace = grace;
        self
    }

    /// Sets [`linger`](ConnOptions::linger).
    #[must_use]
    pub fn with_linger(mut self, linger: std::time::Duration) -> ConnOptions {
        self.linger = linger;
        self
    }

    /// Sets [`nodelay`](ConnOptions::nodelay).
    #[must_use]
    pub fn with_nodelay(mut self, on: bool) -> ConnOptions {
        self.nodelay = on;
        self
    }

    /// Sets [`idle_timeout`](ConnOptions::idle_timeout).
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Option<std::time::Duration>) -> ConnOptions {
        self.idle_timeout = timeout;
        self
    }

    fn validate(&self) -> io::Result<()> {
        let invalid = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg.to_string()));
        if self.trigger == Trigger::Oneshot {
            return invalid("edgeloop: connections need Level or Edge, not Oneshot");
        }
        if self.read_chunk == 0 || self.read_chunk > SCRATCH_SIZE {
            return invalid("edgeloop: read_chunk must be 1..=64 KiB");
        }
        if self.read_budget == 0 {
            return invalid("edgeloop: read_budget must be at least 1");
        }
        if self.low_water > self.high_water {
            return invalid("edgeloop: low_water must not exceed high_water");
        }
        if self.linger > MAX_TIMEOUT
            || self.budget_grace > MAX_TIMEOUT
            || self.idle_timeout.is_some_and(|t| t > MAX_TIMEOUT)
        {
            return invalid(
                "edgeloop: idle_timeout, linger and budget_grace must be at most \
                 edgeloop::conn::MAX_TIMEOUT (about 12 days); use None for no idle timeout",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::CloseReason;

    /// A peer's reset reads `Reset` whether a read, a write or the
    /// socket's pending error (SO_ERROR, after EPOLLERR) sees it first:
    /// one mapping for all three, so which call wins a race does not
    /// change the reason a handler is told.
    #[test]
    fn a_reset_is_reset_whichever_call_sees_it() {
        for errno in [nix::libc::ECONNRESET, nix::libc::EPIPE] {
            assert!(matches!(CloseReason::from_errno(errno), CloseReason::Reset));
        }
        assert!(matches!(
            CloseReason::from_errno(nix::libc::ETIMEDOUT),
            CloseReason::Error(e) if e.raw_os_error() == Some(nix::libc::ETIMEDOUT)
        ));
    }
}
