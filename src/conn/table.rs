//! The connection table and the per-connection I/O: write, flush, close,
//! backpressure, interest. One slab of connection states, owned by its
//! [`Connections`](super::Connections) set and keyed by the tokens' slot.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::socket;
use slab::Slab;

use super::queue::{MAX_IOVECS, WriteQueue};
use super::{CloseReason, ConnId, ConnOptions, ConnStats};
use crate::sys;
use crate::{Core, Interest, Ready, Token, Trigger};

// Connection flags.
pub(super) const PAUSED_BACKPRESSURE: u16 = 1;
pub(super) const PAUSED_BY_USER: u16 = 2;
pub(super) const READ_CLOSED: u16 = 4;
pub(super) const CLOSE_AFTER_FLUSH: u16 = 8;
const SHUT_AFTER_FLUSH: u16 = 16;
const WRITE_SHUT: u16 = 32;
pub(super) const DOOMED: u16 = 64;
/// The kernel reported the peer's half-close (RDHUP or HUP). Kept in the
/// connection, not in the event: an event carried over to the next turn
/// holds only READABLE, and the FIN's edge does not come again.
pub(super) const PEER_CLOSE_SEEN: u16 = 128;
/// Paused because the set's queued output passed
/// [`ConnOptions::max_queued_total`] while this connection's handler was
/// adding to it. It resumes when its own queue drains to the low-water
/// mark, or (a broadcaster, whose own queue is empty) when the set's total
/// is back under half the cap.
pub(super) const PAUSED_BUDGET: u16 = 256;
/// An outbound connection whose `connect` has not completed: not read,
/// writes queued, registered for WRITABLE (the completion).
pub(super) const CONNECTING: u16 = 512;

/// Flags under which the connection does not read.
/// (A closing connection keeps reading, and discards: see `Table::close`.)
pub(super) const NOT_READING: u16 =
    PAUSED_BACKPRESSURE | PAUSED_BY_USER | PAUSED_BUDGET | READ_CLOSED | DOOMED | CONNECTING;
/// Flags under which writes are dropped.
pub(super) const NOT_WRITING: u16 = CLOSE_AFTER_FLUSH | SHUT_AFTER_FLUSH | WRITE_SHUT | DOOMED;
/// Flags under which a write cannot go out at once (it is queued, or
/// dropped if writing is over).
const NOT_SENDING_NOW: u16 = NOT_WRITING | CONNECTING;

/// What a connection's timer does when it fires (the timer's tag).
pub(super) const TIMER_LINGER: u32 = 0;
pub(super) const TIMER_IDLE: u32 = 1;
pub(super) const TIMER_CONNECT: u32 = 2;

/// One connection: 24 bytes while idle (no queue, no buffer).
pub(super) struct State<S> {
    pub(super) fd: OwnedFd,
    /// The generation of the connection's token.
    pub(super) generation: u32,
    /// Milliseconds since the table's epoch at the last data read (only
    /// kept with an idle timeout; it fits in what was padding).
    pub(super) last_active: u32,
    pub(super) interest: Interest,
    pub(super) flags: u16,
    pub(super) queue: Option<Box<WriteQueue>>,
    pub(super) session: S,
}

impl<S> State<S> {
    #[inline]
    pub(super) fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }

    #[inline]
    pub(super) fn reading(&self) -> bool {
        self.flags & NOT_READING == 0
    }
}

pub(super) struct Table<S> {
    pub(super) slots: Slab<State<S>>,
    pub(super) options: ConnOptions,
    /// What the read loop needs of `options`, worked out once.
    pub(super) plan: ReadPlan,
    /// The owner byte of this set's tokens.
    pub(super) owner: u8,
    next_generation: u32,
    /// `on_data` calls so far.
    pub(super) requests: u64,
    pub(super) stats: ConnStats,
    /// The origin of `State::last_active`.
    epoch: Instant,
    /// Connections to close once the handler call in progress returns (the
    /// handler is borrowed while it runs, and `on_close` needs it).
    pub(super) doomed: Vec<(usize, CloseReason)>,
    /// Bytes queued over every connection of the set.
    pub(super) queued_total: usize,
    /// Connections paused by the set's output budget.
    budget_paused: usize,
    /// The connection whose handler call is running ([`NONE`] between
    /// calls): what it writes to itself collects in `pending` and goes out
    /// in one `send` when the call returns.
    pub(super) corked: usize,
    /// The corked call made its first write: later ones are held.
    holding: bool,
    /// What the running handler call wrote to its own connection so far:
    /// `hold[..held]`.
    hold: Box<[u8]>,
    held: usize,
}

/// Bytes one handler call's writes to itself may collect before they are
/// sent (a larger write sends what is held, then itself).
const HOLD_CAPACITY: usize = 64 * 1024;

/// No handler call is running.
pub(super) const NONE: usize = usize::MAX;

/// The read loop's view of [`ConnOptions`], derived once (the options do
/// not change after the set is built).
#[derive(Copy, Clone, Debug)]
pub(super) struct ReadPlan {
    pub(super) chunk: usize,
    pub(super) budget: usize,
    pub(super) edge: bool,
    /// A short read may end the loop (Level always; Edge with the short-read
    /// rule), unless the peer's half-close was seen.
    pub(super) stop_at_short_read: bool,
    pub(super) track_idle: bool,
}

impl<S: Default + 'static> Table<S> {
    pub(super) fn new(options: ConnOptions) -> Table<S> {
        let edge = options.trigger == Trigger::Edge;
        let plan = ReadPlan {
            chunk: options.read_chunk,
            budget: options.read_budget,
            edge,
            stop_at_short_read: !edge || options.short_read,
            track_idle: options.idle_timeout.is_some(),
        };
        Table {
            slots: Slab::new(),
            plan,
            options,
            owner: 0,
            next_generation: 0,
            requests: 0,
            stats: ConnStats::default(),
            epoch: Instant::now(),
            doomed: Vec::new(),
            queued_total: 0,
            budget_paused: 0,
            corked: NONE,
            holding: false,
            hold: vec![0; HOLD_CAPACITY].into_boxed_slice(),
            held: 0,
        }
    }

    pub(super) fn token(&self, key: usize) -> Token {
        Token::new(self.owner, key as u32, self.slots[key].generation)
    }

    pub(super) fn id(&self, key: usize) -> ConnId {
        ConnId(self.token(key))
    }

    /// The ids of every open connection (not those closing by abort).
    pub(super) fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.slots
            .iter()
            .filter(|(_, c)| c.flags & DOOMED == 0)
            .map(|(k, _)| self.id(k))
    }

    /// Adds a connection; its key.
    pub(super) fn insert<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        fd: OwnedFd,
        interest: Interest,
    ) -> io::Result<usize> {
        let key = self.slots.vacant_key();
        if key >= super::set::LISTENER_BIT {
            return Err(io::Error::other(
                "edgeloop: too many connections in one set",
            ));
        }
        self.next_generation = (self.next_generation + 1) & 0xff_ffff;
        let token = Token::new(self.owner, key as u32, self.next_generation);
        core.set_interest(
            fd.as_fd(),
            token,
            Interest::NONE,
            interest,
            self.options.trigger,
        )?;
        let last_active = self.now_ms(core);
        self.slots.insert(State {
            fd,
            generation: self.next_generation,
            last_active,
            interest,
            flags: 0,
            queue: None,
            session: Default::default(),
        });
        Ok(key)
    }

    pub(super) fn now_ms<D: 'static>(&self, core: &mut Core<D>) -> u32 {
        let since = core.now().saturating_duration_since(self.epoch);
        since.as_millis().min(u32::MAX as u128) as u32
    }

    #[inline(always)]
    pub(super) fn get(&self, key: usize) -> &State<S> {
        &self.slots[key]
    }

    #[inline(always)]
    pub(super) fn get_mut(&mut self, key: usize) -> &mut State<S> {
        &mut self.slots[key]
    }

    /// The key of `id`'s connection, if it is open and not closing by abort.
    pub(super) fn live(&self, id: ConnId) -> Option<usize> {
        let token = id.0;
        let c = self.slots.get(token.key())?;
        (token.owner() == self.owner && c.generation == token.generation() && c.flags & DOOMED == 0)
            .then_some(token.key())
    }

    #[cold]
    #[inline(never)]
    pub(super) fn doom(&mut self, key: usize, reason: CloseReason) {
        if key == self.corked {
            self.held = 0;
            self.corked = NONE;
        }
        let c = &mut self.slots[key];
        if c.flags & DOOMED == 0 {
            c.flags |= DOOMED;
            let dropped = c.queued();
            c.queue = None;
            if c.flags & PAUSED_BUDGET != 0 {
                self.budget_paused -= 1;
            }
            self.doomed.push((key, reason));
            self.queued_total -= dropped;
        }
    }

    /// The socket's pending error as a close reason (after HUP or ERR).
    /// Why a connection that hung up while not reading is closed: the
    /// pending socket error if there is one; else a plain close if nothing
    /// was left to deliver and the close was under way (ours or the
    /// peer's); else a reset (queued output could not be delivered).
    pub(super) fn socket_error(&self, key: usize) -> CloseReason {
        let c = self.get(key);
        match socket::getsockopt(&c.fd, socket::sockopt::SocketError) {
            Ok(errno) if errno != 0 => CloseReason::Error(io::Error::from_raw_os_error(errno)),
            _ if c.queue.is_none() && c.flags & (CLOSE_AFTER_FLUSH | READ_CLOSED) != 0 => {
                CloseReason::Closed
            }
            _ => CloseReason::Reset,
        }
    }

    /// A graceful close, nginx's "lingering close": stop handing data to
    /// the handler, send what is queued, shut down our write side, then read
    /// and discard until the peer's EOF (or `linger` passes), and only then
    /// close. Closing with unread input would send an RST, and an RST can
    /// make the peer drop our last reply.
    pub(super) fn close<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        self.release(core, key);
        let c = self.get_mut(key);
        if c.flags & (DOOMED | CLOSE_AFTER_FLUSH) != 0 {
            return;
        }
        c.flags |= CLOSE_AFTER_FLUSH;
        // A closing connection reads (and discards) until the peer's EOF,
        // whatever paused it: unread input at the final close would send an
        // RST, and a paused reader never sees the EOF that ends the linger.
        if c.flags & PAUSED_BUDGET != 0 {
            self.budget_paused -= 1;
        }
        let c = &mut self.slots[key];
        c.flags &= !(PAUSED_BACKPRESSURE | PAUSED_BY_USER | PAUSED_BUDGET);
        if c.queued() == 0 {
            self.after_flush(core, key);
        }
        self.update_interest(core, key);
    }

    /// Writes `data` on `key` for `sender`'s handler.
    ///
    /// The first write a handler call makes to its own connection is sent
    /// at once (a lone reply leaves with no delay and no copy); later ones
    /// are held and go out together when the call returns, so a thousand
    /// replies to a thousand pipelined requests read at once cost two
    /// `send`s, not a thousand. Writes to other connections are sent at
    /// once.
    #[inline(always)]
    pub(super) fn write<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        key: usize,
        data: &[u8],
        sender: usize,
    ) {
        if key == self.corked {
            if self.holding {
                let end = self.held + data.len();
                if let Some(room) = self.hold.get_mut(self.held..end) {
                    room.copy_from_slice(data);
                    self.held = end;
                    return;
                }
                return self.write_past_hold(core, key, data);
            }
            self.holding = true;
        }
        self.send(core, key, data, sender);
    }

    /// A write to the corked connection that does not fit in the hold:
    /// what is held goes first, then this; later writes are held again.
    #[cold]
    #[inline(never)]
    fn write_past_hold<D: 'static>(&mut self, core: &mut Core<D>, key: usize, data: &[u8]) {
        self.release(core, key);
        self.send(core, key, data, key);
        self.recork(key);
    }

    /// A handler call on `key` begins: its first write to itself is sent
    /// at once, later ones are held.
    ///
    /// The invariant: while `holding`, the corked connection may write and
    /// nothing is queued on it (its first write was sent whole). Whatever
    /// ends that (a close, a shutdown, an abort, a send that queues) sends
    /// or drops what is held first and uncorks.
    #[inline(always)]
    pub(super) fn cork(&mut self, key: usize) {
        self.corked = key;
        self.holding = false;
    }

    /// The handler call ended: what it held goes out.
    #[inline(always)]
    pub(super) fn uncork<D: 'static>(&mut self, core: &mut Core<D>) {
        if self.held != 0 {
            self.send_held(core, self.corked);
        }
        self.corked = NONE;
    }

    /// Sends what `key`'s running handler call holds and ends its cork:
    /// what it writes from now on is sent (or dropped) at once. Before a
    /// close or a shutdown changes what writing means.
    fn release<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        if key == self.corked {
            if self.held != 0 {
                self.send_held(core, key);
            }
            self.corked = NONE;
        }
    }

    /// After an early send: hold `key`'s later writes again if it may
    /// write and nothing got queued.
    fn recork(&mut self, key: usize) {
        if let Some(c) = self.slots.get(key) {
            if c.flags & NOT_WRITING == 0 && c.queue.is_none() {
                self.corked = key;
                self.holding = true;
            }
        }
    }

    /// Sends what `key`'s running handler call wrote so far, now (on
    /// [`Conn::flush`](super::Conn::flush)); its later writes are held
    /// again.
    #[cold]
    pub(super) fn send_pending<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        if key == self.corked && self.holding {
            self.release(core, key);
            self.recork(key);
        }
    }

    /// One `send` of what is held (by the cork's invariant nothing is
    /// queued); what the socket does not take is queued.
    #[inline(always)]
    fn send_held<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let held = std::mem::take(&mut self.held);
        let sent = sys::send(self.slots[key].fd.as_fd(), &self.hold[..held]);
        self.stats.writes += 1;
        if let Ok(n) = sent {
            self.stats.bytes_out += n as u64;
            if n == held {
                return;
            }
        }
        self.held_rest(core, key, held, sent);
    }

    #[cold]
    #[inline(never)]
    fn held_rest<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        key: usize,
        held: usize,
        sent: sys::SysResult<usize>,
    ) {
        let data = self.hold[..held].to_vec();
        self.write_rest(core, key, &data, sent, key);
    }

    /// Bytes the running handler call on `key` wrote and still holds.
    pub(super) fn held(&self, key: usize) -> usize {
        if key == self.corked { self.held } else { 0 }
    }

    /// A handler call ended by a panic: what it held is dropped.
    #[cold]
    pub(super) fn drop_held(&mut self) {
        self.corked = NONE;
        self.held = 0;
    }

    /// Sends `data` on `key`: at once if nothing is queued and the socket
    /// takes it, else queued, counting against `sender` (the connection
    /// whose handler is writing; `key` itself, or another for a broadcast)
    /// if the set is over its output cap. The fast path (one `send` that
    /// takes everything) is small enough to inline into a handler; the rest
    /// is out of line.
    #[inline(always)]
    fn send<D: 'static>(&mut self, core: &mut Core<D>, key: usize, data: &[u8], sender: usize) {
        let c = &self.slots[key];
        if c.flags & NOT_SENDING_NOW == 0 && c.queue.is_none() && !data.is_empty() {
            let sent = sys::send(c.fd.as_fd(), data);
            self.stats.writes += 1;
            if let Ok(n) = sent {
                self.stats.bytes_out += n as u64;
                if n == data.len() {
                    return;
                }
            }
            self.write_rest(core, key, data, sent, sender);
        } else {
            self.write_queued(core, key, data, sender);
        }
    }

    /// What the first `send` of `data` (which returned `sent`) left over.
    #[cold]
    #[inline(never)]
    fn write_rest<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        key: usize,
        data: &[u8],
        mut sent: sys::SysResult<usize>,
        sender: usize,
    ) {
        let mut rest = data;
        loop {
            match sent {
                Ok(n) if n == rest.len() => return,
                Ok(n) => {
                    self.stats.partial_writes += 1;
                    rest = &rest[n..];
                    break;
                }
                Err(libc::EAGAIN) => {
                    self.stats.partial_writes += 1;
                    break;
                }
                Err(libc::EINTR) => {
                    sent = sys::send(self.slots[key].fd.as_fd(), rest);
                    self.stats.writes += 1;
                    if let Ok(n) = sent {
                        self.stats.bytes_out += n as u64;
                    }
                }
                Err(e) => return self.write_failed(key, e),
            }
        }
        self.write_queued(core, key, rest, sender);
    }

    /// Queues `data` behind what is queued already (or drops it after a
    /// close or shutdown). Past the set's output cap, `sender` stops
    /// reading.
    #[cold]
    #[inline(never)]
    fn write_queued<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        key: usize,
        data: &[u8],
        sender: usize,
    ) {
        if key == self.corked {
            // Queued (or dropped): what the call writes next must queue
            // behind it, not be held.
            self.corked = NONE;
        }
        let c = &mut self.slots[key];
        if c.flags & NOT_WRITING != 0 || data.is_empty() {
            return;
        }
        c.queue.get_or_insert_with(Default::default).push(data);
        self.queued_total += data.len();
        if self.queued_total > self.stats.peak_queued {
            self.stats.peak_queued = self.queued_total;
        }
        self.queue_changed(core, key);
        if self.queued_total > self.options.max_queued_total {
            self.pause_for_budget(core, sender);
        }
    }

    #[cold]
    fn write_failed(&mut self, key: usize, errno: i32) {
        let reason = match errno {
            libc::EPIPE | libc::ECONNRESET => CloseReason::Reset,
            e => CloseReason::Error(io::Error::from_raw_os_error(e)),
        };
        self.doom(key, reason);
    }

    /// Sends what is queued, as far as the socket takes it.
    #[inline(never)]
    pub(super) fn flush<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let c = &mut self.slots[key];
        let Some(queue) = c.queue.as_mut() else {
            return;
        };
        let fd = c.fd.as_fd();
        while !queue.is_empty() {
            let (result, offered) = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = queue.slices(&mut slices);
                let offered: usize = slices[..n].iter().map(|s| s.len()).sum();
                (sys::send_vectored(fd, &slices[..n]), offered)
            };
            self.stats.writes += 1;
            match result {
                Ok(n) => {
                    self.stats.bytes_out += n as u64;
                    queue.advance(n);
                    self.queued_total -= n;
                    if n < offered {
                        self.stats.partial_writes += 1;
                        break;
                    }
                }
                Err(libc::EAGAIN) => {
                    self.stats.partial_writes += 1;
                    break;
                }
                Err(libc::EINTR) => {}
                Err(e) => return self.write_failed(key, e),
            }
        }
        if queue.is_empty() {
            c.queue = None;
            self.after_flush(core, key);
        }
        if self.budget_paused > 0 && self.queued_total <= self.options.max_queued_total / 2 {
            self.resume_budget_paused(core);
        }
        self.queue_changed(core, key);
    }

    /// The set is over its output budget while `key`'s handler adds to it
    /// (to its own queue, or to others': a broadcast): stop reading `key`.
    #[cold]
    #[inline(never)]
    pub(super) fn pause_for_budget<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let c = &mut self.slots[key];
        if c.flags & (PAUSED_BUDGET | DOOMED | CLOSE_AFTER_FLUSH) == 0 {
            c.flags |= PAUSED_BUDGET;
            self.budget_paused += 1;
            self.stats.budget_pauses += 1;
            self.update_interest(core, key);
        }
    }

    /// The total is back under half the cap: every connection the budget
    /// paused reads again.
    #[cold]
    #[inline(never)]
    fn resume_budget_paused<D: 'static>(&mut self, core: &mut Core<D>) {
        let keys: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, c)| c.flags & PAUSED_BUDGET != 0)
            .map(|(k, _)| k)
            .collect();
        self.budget_paused = 0;
        for key in keys {
            self.slots[key].flags &= !PAUSED_BUDGET;
            self.resumed(core, key);
        }
    }

    /// The queue just emptied: carry out a pending shutdown or close.
    fn after_flush<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let token = self.token(key);
        let linger = self.options.linger;
        let c = self.get_mut(key);
        let closing = c.flags & CLOSE_AFTER_FLUSH != 0;
        if closing && c.flags & READ_CLOSED != 0 {
            // The peer is done too: nothing can arrive unread.
            return self.doom(key, CloseReason::Closed);
        }
        if c.flags & WRITE_SHUT == 0 && (closing || c.flags & SHUT_AFTER_FLUSH != 0) {
            c.flags = (c.flags & !SHUT_AFTER_FLUSH) | WRITE_SHUT;
            if let Err(e) = socket::shutdown(c.fd.as_raw_fd(), socket::Shutdown::Write) {
                log::debug!("shutdown(SHUT_WR) on fd {}: {e}", c.fd.as_raw_fd());
            }
            if closing {
                // Linger until the peer's EOF, but not forever.
                core.source_timer(linger, token, TIMER_LINGER);
            }
        }
    }

    /// Shuts the write side down once everything queued is sent.
    pub(super) fn shutdown_write<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        self.release(core, key);
        let c = self.get_mut(key);
        if c.flags & NOT_WRITING != 0 {
            return;
        }
        c.flags |= SHUT_AFTER_FLUSH;
        if c.queued() == 0 {
            self.after_flush(core, key);
        }
    }

    /// Backpressure and interest after the queue grew or shrank.
    fn queue_changed<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let (high, low) = (self.options.high_water, self.options.low_water);
        let c = &mut self.slots[key];
        let queued = c.queued();
        let closing = c.flags & CLOSE_AFTER_FLUSH != 0;
        if c.flags & PAUSED_BACKPRESSURE == 0 && queued > high && !closing {
            c.flags |= PAUSED_BACKPRESSURE;
            self.stats.backpressure_pauses += 1;
        } else if c.flags & (PAUSED_BACKPRESSURE | PAUSED_BUDGET) != 0 && queued <= low {
            // Its own output drained: it reads again, whatever the others
            // hold (waiting for the set's total could wait on clients that
            // never read). If it adds past the cap again, it pauses again.
            if c.flags & PAUSED_BUDGET != 0 {
                self.budget_paused -= 1;
            }
            c.flags &= !(PAUSED_BACKPRESSURE | PAUSED_BUDGET);
            return self.resumed(core, key);
        }
        self.update_interest(core, key);
    }

    /// Reading may go on after a pause.
    pub(super) fn resumed<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        if self.options.trigger == Trigger::Edge && self.get(key).reading() {
            // Data that arrived while paused raised its edge already.
            core.requeue(self.token(key), Ready::READABLE);
        }
        self.update_interest(core, key);
    }

    /// Level only: READABLE while reading, WRITABLE while output is queued,
    /// nothing else (an always-on WRITABLE spins). Edge registrations are
    /// never modified.
    #[inline]
    pub(super) fn update_interest<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        if self.options.trigger == Trigger::Edge {
            return;
        }
        let c = &self.slots[key];
        if c.flags & DOOMED != 0 {
            return;
        }
        let mut want = Interest::NONE;
        if c.reading() {
            want |= Interest::READABLE;
        }
        if c.queue.is_some() || c.flags & CONNECTING != 0 {
            want |= Interest::WRITABLE;
        }
        if want != c.interest {
            self.change_interest(core, key, want);
        }
    }

    #[cold]
    fn change_interest<D: 'static>(&mut self, core: &mut Core<D>, key: usize, want: Interest) {
        let token = self.token(key);
        let c = &mut self.slots[key];
        match core.set_interest(c.fd.as_fd(), token, c.interest, want, Trigger::Level) {
            Ok(()) => c.interest = want,
            Err(e) => {
                log::warn!("fd {}: changing interest failed: {e}", c.fd.as_raw_fd());
                self.doom(key, CloseReason::Error(e));
            }
        }
    }

    /// An idle timer fired: close the connection if it has been quiet for
    /// the whole timeout, else re-arm for what is left.
    pub(super) fn check_idle<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let Some(timeout) = self.options.idle_timeout else {
            return;
        };
        let c = self.get(key);
        if c.flags & CLOSE_AFTER_FLUSH != 0 {
            return; // closing already: not idle, and its linger timer rules
        }
        let last_active = c.last_active;
        let idle = Duration::from_millis(self.now_ms(core).saturating_sub(last_active) as u64);
        let token = self.token(key);
        if idle >= timeout {
            log::debug!("{token:?}: idle for {idle:?}, closing");
            self.stats.idle_timeouts += 1;
            self.close(core, key);
        } else {
            core.source_timer(timeout - idle, token, TIMER_IDLE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection is one table slot: the README's figure.
    #[test]
    fn an_idle_connection_is_24_bytes() {
        assert_eq!(std::mem::size_of::<State<()>>(), 24);
        assert_eq!(std::mem::size_of::<slab::Slab<State<()>>>() % 8, 0);
    }
}
