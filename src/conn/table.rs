//! The connection table and the per-connection I/O: write, flush, close,
//! backpressure, interest. One slab of connection states, owned by its
//! [`Connections`](super::Connections) set and keyed by the tokens' slot.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use slab::Slab;

use super::connect::{ConnectOptions, Started, Target};
use super::cork::Cork;
use super::deferred::Deferred;
use super::idle::{Limit, Stamp, StampClock, Verdict, clamped};
use super::key::{Key, MAX_CONNECTIONS};
use super::pair::Links;
use super::queue::WriteQueue;
use super::state::{Pause, Pauses, Peer, Phase, State, Step, Then};
use super::{CloseReason, ConnId, ConnOptions, ConnStats};
use crate::sys;
use crate::{Core, Interest, Ready, TimerId, Token, TokenFactory, Trigger};

mod write;

/// What a set's timer does when it fires (the timer's tag).
/// The set's one deadline sweep (see `idle`).
pub(super) const TIMER_SWEEP: u32 = 0;
/// A connection's connect timeout.
pub(super) const TIMER_CONNECT: u32 = 1;
/// A listener's pause at the fd limit is over.
pub(super) const TIMER_ACCEPT: u32 = 2;
/// The budget's grace is over (see `ConnOptions::budget_grace`).
pub(super) const TIMER_BUDGET: u32 = 3;

/// One connection: 24 bytes while idle (no queue, no buffer).
pub(super) struct Slot<S> {
    pub(super) fd: OwnedFd,
    /// The generation of the connection's token.
    pub(super) generation: u32,
    /// The last activity: a data read (or output sent) while open, read
    /// only when idle time matters; progress while closing (see `idle`).
    /// It fits in what was padding.
    pub(super) stamp: Stamp,
    pub(super) interest: Interest,
    /// Its phase, its peer's, and its pauses (see `state`).
    pub(super) state: State,
    pub(super) queue: Option<Box<WriteQueue>>,
    pub(super) session: S,
}

impl<S> Slot<S> {
    #[inline]
    pub(super) fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }

    #[inline]
    pub(super) fn reading(&self) -> bool {
        self.state.reading()
    }
}

pub(super) struct Table<S> {
    pub(super) slots: Slab<Slot<S>>,
    pub(super) options: ConnOptions,
    /// What the read loop needs of `options`, worked out once.
    pub(super) plan: ReadPlan,
    /// Makes this set's tokens (owner 0 until the set is installed, which
    /// `Core::set_interest` refuses).
    pub(super) tokens: TokenFactory,
    next_generation: u32,
    /// `on_data` calls so far.
    pub(super) requests: u64,
    pub(super) stats: ConnStats,
    /// Converts the loop clock into stamps.
    clock: StampClock,
    /// The loop clock as a stamp, converted at most once per turn (the
    /// turn is the reactor's count of waits, `now_turn`).
    pub(super) now: Stamp,
    now_turn: u64,
    /// The idle timeout's rule, if there is one.
    idle: Option<Limit>,
    /// How long a closing connection may go without progress.
    linger: Limit,
    /// The set's deadline sweep, if armed, and when it fires.
    sweep: Option<(TimerId, Instant)>,
    /// Armed while connections are paused by the budget: its grace.
    budget_timer: Option<TimerId>,
    /// Connections to close once the handler call in progress returns (the
    /// handler is borrowed while it runs, and `on_close` needs it), and
    /// whether each was still connecting (its handler hears of a failed
    /// connect instead).
    pub(super) doomed: Vec<(usize, CloseReason, bool)>,
    /// Bytes queued over every connection of the set.
    queued_total: usize,
    /// Connections paused by the set's output budget.
    budget_paused: usize,
    /// What the running handler call writes to its own connection, held
    /// until it returns.
    cork: Cork,
    /// Input handlers handed back, by connection.
    pub(super) deferred: Deferred,
    /// The connect timers of the connections still connecting, by slot:
    /// cancelled once the connect ends either way, so an established
    /// connection leaves no timer behind.
    connect_timers: HashMap<usize, TimerId>,
    /// Which connections are paired, and with whom (see `pair`).
    pub(super) links: Links,
}

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
        let idle = options.idle_timeout.map(Limit::new);
        let linger = Limit::new(options.linger);
        Table {
            slots: Slab::new(),
            plan,
            options,
            tokens: TokenFactory::new(0),
            next_generation: 0,
            requests: 0,
            stats: ConnStats::default(),
            clock: StampClock::new(Instant::now()),
            now: Stamp::default(),
            now_turn: u64::MAX,
            idle,
            linger,
            sweep: None,
            doomed: Vec::new(),
            queued_total: 0,
            budget_paused: 0,
            budget_timer: None,
            cork: Cork::new(),
            deferred: Deferred::default(),
            connect_timers: HashMap::new(),
            links: Links::default(),
        }
    }

    pub(super) fn token(&self, key: usize) -> Token {
        Key::Conn(key).token(self.tokens, self.slots[key].generation)
    }

    pub(super) fn id(&self, key: usize) -> ConnId {
        ConnId(self.token(key))
    }

    /// The ids of every open connection (not those closing by abort).
    pub(super) fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.slots
            .iter()
            .filter(|(_, c)| c.state.phase != Phase::Doomed)
            .map(|(k, _)| self.id(k))
    }

    /// Adds a connection; its key.
    pub(super) fn insert<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        fd: OwnedFd,
        interest: Interest,
        phase: Phase,
    ) -> io::Result<usize> {
        let key = self.slots.vacant_key();
        if key >= MAX_CONNECTIONS {
            return Err(io::Error::other(
                "edgeloop: too many connections in one set",
            ));
        }
        self.next_generation = (self.next_generation + 1) & 0xff_ffff;
        let token = Key::Conn(key).token(self.tokens, self.next_generation);
        core.set_interest(
            fd.as_fd(),
            token,
            Interest::NONE,
            interest,
            self.options.trigger,
        )?;
        let stamp = self.clock.now();
        self.slots.insert(Slot {
            fd,
            generation: self.next_generation,
            stamp,
            interest,
            state: State::new(phase),
            queue: None,
            session: Default::default(),
        });
        Ok(key)
    }

    /// Brings the cached stamp of the loop clock up to this turn.
    #[inline(always)]
    pub(super) fn tick<D: 'static>(&mut self, core: &mut Core<D>) {
        if core.stats().waits != self.now_turn {
            self.refresh_now(core);
        }
    }

    #[cold]
    #[inline(never)]
    fn refresh_now<D: 'static>(&mut self, core: &mut Core<D>) {
        self.now_turn = core.stats().waits;
        self.now = self.clock.stamp(core.now());
    }

    #[inline(always)]
    pub(super) fn get(&self, key: usize) -> &Slot<S> {
        &self.slots[key]
    }

    #[inline(always)]
    pub(super) fn get_mut(&mut self, key: usize) -> &mut Slot<S> {
        &mut self.slots[key]
    }

    /// The key of `id`'s connection, if it is open and not closing by abort.
    pub(super) fn live(&self, id: ConnId) -> Option<usize> {
        let token = id.0;
        let Key::Conn(key) = Key::of(token) else {
            return None;
        };
        let c = self.slots.get(key)?;
        (token.owner() == self.tokens.owner()
            && c.generation == token.generation()
            && c.state.phase != Phase::Doomed)
            .then_some(key)
    }

    #[cold]
    #[inline(never)]
    pub(super) fn doom(&mut self, key: usize, reason: CloseReason) {
        if self.cork.is_for(key) {
            self.cork.discard();
        }
        let c = &mut self.slots[key];
        if c.state.phase != Phase::Doomed {
            let connecting = c.state.phase.is_connecting();
            c.state.phase = Phase::Doomed;
            let dropped = c.queued();
            c.queue = None;
            self.deferred.take(key);
            if c.state.pauses.remove(Pause::Budget) {
                self.budget_paused -= 1;
            }
            self.doomed.push((key, reason, connecting));
            self.queued_total -= dropped;
        }
    }

    /// Opens an outbound connection to `target` with `session`: its
    /// socket's `connect` started, registered as connecting (its
    /// completion is a writable event, or HUP/ERR), its timer armed. A
    /// connect that completed at once (a Unix socket's, usually) opens
    /// on a later turn too, through its writable event: the caller always
    /// has the id before `on_open` runs.
    pub(super) fn connect<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        target: Target<'_>,
        options: &ConnectOptions,
        session: S,
    ) -> io::Result<ConnId> {
        let (fd, started) = target.open(options)?;
        if self.options.nodelay && matches!(target, Target::Tcp(_)) {
            sys::set_nodelay(fd.as_fd());
        }
        let interest = match self.options.trigger {
            Trigger::Edge => Interest::BOTH,
            _ => Interest::WRITABLE,
        };
        let key = self.insert(core, fd, interest, Phase::Connecting)?;
        self.slots[key].session = session;
        let token = self.token(key);
        if let Some(timeout) = options.timeout {
            let timer = core.source_timer(timeout, token, TIMER_CONNECT);
            self.connect_timers.insert(key, timer);
        }
        let how = match started {
            Started::Connected => "connected at once",
            Started::InProgress => "in progress",
        };
        log::debug!("connecting {:?} to {target:?} ({how})", ConnId(token));
        Ok(ConnId(token))
    }

    /// Joins connections `a` and `b` into one stream (see `pair`).
    pub(super) fn pair(&mut self, a: ConnId, b: ConnId) -> io::Result<()> {
        let (Some(ka), Some(kb)) = (self.live(a), self.live(b)) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("edgeloop: pairing {a:?} with {b:?}: a connection is gone"),
            ));
        };
        let closing = |k: usize| self.slots[k].state.phase.is_closing();
        if ka == kb || self.links.partner(ka).is_some() || self.links.partner(kb).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "edgeloop: pairing {a:?} with {b:?}: a connection pairs with one other, once"
                ),
            ));
        }
        if closing(ka) || closing(kb) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("edgeloop: pairing {a:?} with {b:?}: a connection is closing"),
            ));
        }
        self.links.link(ka, kb);
        Ok(())
    }

    /// Sends what `from` read to its partner `to`: idle time counts the
    /// pair's traffic either way, and what `to`'s queue holds pauses
    /// `from` (see `queue_changed`).
    #[inline]
    pub(super) fn forward<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        from: usize,
        to: usize,
        data: &[u8],
    ) {
        // As the read stamps `from`: one store, whether or not idle time
        // is tracked.
        self.slots[to].stamp = self.now;
        self.write(core, to, data, from);
    }

    /// `key`'s peer sent EOF and `key` is paired with `to`: the half-close
    /// passes through (`to`'s write side shuts once its queue is sent),
    /// and `key` is done if its own write side is shut already.
    pub(super) fn pass_eof<D: 'static>(&mut self, core: &mut Core<D>, key: usize, to: usize) {
        self.shutdown_write(core, to);
        self.end_if_done(key);
    }

    /// A paired side whose write side is shut (its last byte sent) and
    /// whose peer's EOF is read: the stream is over both ways, and it
    /// closes. (An unpaired connection leaves that to its handler's
    /// `on_eof`.)
    fn end_if_done(&mut self, key: usize) {
        let c = &self.slots[key];
        if c.state.phase == Phase::WriteShut
            && c.state.peer == Peer::Eof
            && self.links.partner(key).is_some()
        {
            self.doom(key, CloseReason::Closed);
        }
    }

    /// `key`'s paired partner closed for `reason`: a graceful end closes
    /// `key` gracefully too; any other (a reset, an error, an abort, a
    /// failed connect) aborts it, so its peer reads a reset rather than
    /// an EOF that would look like the end of a complete stream.
    pub(super) fn partner_closed<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        key: usize,
        reason: &CloseReason,
    ) {
        match reason {
            CloseReason::Closed => self.close(core, key),
            _ => self.doom(key, CloseReason::Aborted),
        }
    }

    /// The handler paused reading `key` (`Conn::pause_reading`); a closing
    /// connection ignores it, reading and discarding until the peer's EOF.
    pub(super) fn pause_user<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let c = self.get_mut(key);
        if c.state.phase.is_closing() {
            return;
        }
        c.state.pauses.insert(Pause::User);
        self.update_interest(core, key);
    }

    /// The handler's pause of `key` ends (`Conn::resume_reading`).
    pub(super) fn resume_user<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        if self.get_mut(key).state.pauses.remove(Pause::User) {
            self.resumed(core, key);
        }
    }

    /// The connect of `key` ended (established, failed, or closed while
    /// under way): its timer, if it has one, is cancelled.
    pub(super) fn cancel_connect_timer<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        if let Some(timer) = self.connect_timers.remove(&key) {
            core.cancel(timer);
        }
    }

    /// The connect of `key` completed: from here on it is like an accepted
    /// connection (its handler's `on_open` comes next).
    pub(super) fn established<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        self.cancel_connect_timer(core, key);
        let state = &mut self.get_mut(key).state;
        (state.phase, _) = state.phase.step(Step::Connected, false);
        self.stats.connects += 1;
        self.update_interest(core, key);
        self.opened_stamp(core, key);
    }

    /// After `on_open` of a connection that was connecting: send what was
    /// written while connecting, or carry out a shutdown asked meanwhile;
    /// under Edge, look once for data that came with the connection (it
    /// raised its edge before we read).
    pub(super) fn after_connected<D: 'static>(&mut self, core: &mut Core<D>, id: ConnId) {
        let Some(key) = self.live(id) else {
            return;
        };
        if self.get(key).queued() > 0 {
            self.flush(core, key);
        } else {
            self.after_flush(key);
        }
        if self.options.trigger == Trigger::Edge {
            core.requeue(self.token(key), Ready::READABLE);
        }
    }

    /// The connect timer of `key` fired: give up if it is still connecting.
    pub(super) fn connect_timed_out(&mut self, key: usize) {
        self.connect_timers.remove(&key); // it fired
        if self.get(key).state.phase.is_connecting() {
            let error = io::Error::new(io::ErrorKind::TimedOut, "edgeloop: connect timed out");
            self.doom(key, CloseReason::Error(error));
        }
    }

    /// Dooms the connection quiet for longest (at the cap, to let a new
    /// one in); false if there is none.
    pub(super) fn evict_longest_idle<D: 'static>(&mut self, core: &mut Core<D>) -> bool {
        self.tick(core);
        let now = self.now;
        let oldest = self
            .slots
            .iter()
            .filter(|(_, c)| c.state.phase != Phase::Doomed)
            .max_by_key(|(_, c)| now.since(c.stamp))
            .map(|(key, _)| key);
        let Some(key) = oldest else {
            return false;
        };
        log::debug!("at the cap: evicting {:?}, idle longest", self.id(key));
        self.stats.evicted += 1;
        self.doom(key, CloseReason::Aborted);
        true
    }

    /// The socket's pending error as a close reason (after HUP or ERR).
    /// Why a connection that hung up while not reading is closed: the
    /// pending socket error if there is one; else a plain close if nothing
    /// was left to deliver and the close was under way (ours or the
    /// peer's); else a reset (queued output could not be delivered).
    pub(super) fn socket_error(&self, key: usize) -> CloseReason {
        let c = self.get(key);
        match sys::take_error(c.fd.as_fd()) {
            Ok(errno) if errno != 0 => CloseReason::from_errno(errno),
            _ if c.queue.is_none() && (c.state.phase.is_closing() || c.state.peer == Peer::Eof) => {
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
        if let Some(partner) = self.links.unlink(key) {
            // A pair's stream ends on both sides, each after its queue is
            // sent.
            self.close(core, partner);
        }
        self.release(core, key);
        let c = self.get_mut(key);
        let (phase, then) = c.state.phase.step(Step::Close, c.state.peer == Peer::Eof);
        if phase == c.state.phase {
            // Closing already, or not established (then there is nothing to
            // close gracefully, and its handler hears of an aborted connect).
            return self.carry_out(key, then);
        }
        c.state.phase = phase;
        // A closing connection reads (and discards) until the peer's EOF,
        // whatever paused it: unread input at the final close would send an
        // RST, and a paused reader never sees the EOF that ends the linger.
        if c.state.pauses.contains(Pause::Budget) {
            self.budget_paused -= 1;
        }
        let stamp = self.clock.now();
        let c = &mut self.slots[key];
        c.state.pauses = Pauses::default();
        // Closing: the handler gets no more data, deferred input included.
        self.deferred.take(key);
        // The linger clock starts now, and each bit of progress restarts
        // it: a closing connection whose peer reads nothing is aborted
        // after `linger`, flushed or not.
        c.stamp = stamp;
        let first_check = self.linger.first_check();
        self.arm_sweep(core, first_check);
        if self.slots[key].queued() == 0 {
            self.after_flush(key);
        }
        self.update_interest(core, key);
    }

    /// The queue just emptied: carry out a pending shutdown or close.
    pub(super) fn after_flush(&mut self, key: usize) {
        let c = self.get_mut(key);
        let then;
        (c.state.phase, then) = c.state.phase.step(Step::Flushed, c.state.peer == Peer::Eof);
        self.carry_out(key, then);
        // A closing connection now lingers until the peer's EOF, but not
        // forever: the sweep aborts it `linger` after its last progress.
    }

    /// Does what a step of `key`'s life said to (see `Phase::step`).
    fn carry_out(&mut self, key: usize, then: Then) {
        match then {
            Then::Nothing => {}
            Then::End { graceful: true } => self.doom(key, CloseReason::Closed),
            Then::End { graceful: false } => self.doom(key, CloseReason::Aborted),
            Then::ShutWrite => {
                if let Err(e) = sys::shutdown_write(self.slots[key].fd.as_fd()) {
                    log::debug!("{e}");
                }
                self.end_if_done(key);
            }
        }
    }

    /// Shuts the write side down once everything queued is sent.
    pub(super) fn shutdown_write<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        self.release(core, key);
        let c = self.get_mut(key);
        let (phase, _) = c
            .state
            .phase
            .step(Step::ShutdownWrite, c.state.peer == Peer::Eof);
        if phase != c.state.phase {
            c.state.phase = phase;
            if phase == Phase::ShutAfterFlush && c.queued() == 0 {
                self.after_flush(key);
            }
        }
    }

    /// Backpressure and interest after the queue grew or shrank. The
    /// connection paused (and resumed) is the one whose reading fills the
    /// queue: the connection itself, or its partner if it is paired.
    pub(super) fn queue_changed<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let (high, low) = (self.options.high_water, self.options.low_water);
        let queued = self.slots[key].queued();
        let reader = self.links.partner(key).unwrap_or(key);
        let r = &mut self.slots[reader];
        let pauses = &mut r.state.pauses;
        if !pauses.contains(Pause::Backpressure) && queued > high && !r.state.phase.is_closing() {
            pauses.insert(Pause::Backpressure);
            self.stats.backpressure_pauses += 1;
            if reader != key {
                self.update_interest(core, reader);
            }
        } else if (pauses.contains(Pause::Backpressure) || pauses.contains(Pause::Budget))
            && queued <= low
        {
            // Its output drained: it reads again, whatever the others
            // hold (waiting for the set's total could wait on clients that
            // never read). If it adds past the cap again, it pauses again.
            if pauses.remove(Pause::Budget) {
                self.budget_paused -= 1;
            }
            pauses.remove(Pause::Backpressure);
            self.resumed(core, reader);
            if reader == key {
                return;
            }
        }
        if self.slots[key].state.pauses.contains(Pause::Deferred) {
            self.wake_deferred(core, key);
        }
        self.update_interest(core, key);
    }

    /// Reading may go on after a pause.
    pub(super) fn resumed<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let state = self.get(key).state;
        if self.options.trigger == Trigger::Edge && state.reading() {
            // Data that arrived while paused raised its edge already.
            core.requeue(self.token(key), Ready::READABLE);
        } else if state.pauses.contains(Pause::Deferred) {
            self.wake_deferred(core, key);
        }
        self.update_interest(core, key);
    }

    /// Keeps input `key`'s handler handed back, and stops reading the
    /// socket until it is handed to the handler again.
    pub(super) fn defer<D: 'static>(&mut self, core: &mut Core<D>, key: usize, input: &[u8]) {
        let c = &mut self.slots[key];
        if !c.state.phase.is_established() || c.state.phase.is_closing() {
            return; // the handler gets no more data
        }
        c.state.pauses.insert(Pause::Deferred);
        self.deferred.push(key, input);
        self.wake_deferred(core, key);
        self.update_interest(core, key);
    }

    /// True if `key`'s deferred input may be handed back now: nothing else
    /// pauses it, and its queued output is at or below the low-water mark
    /// (so a handler that deferred because its output grew waits for the
    /// peer to read).
    fn deferred_due(&self, key: usize) -> bool {
        let c = &self.slots[key];
        c.state.pauses.only(Pause::Deferred) && c.queued() <= self.options.low_water
    }

    /// Requeues `key` for its deferred input if it is due (once, however
    /// often it is woken before the turn hands it back).
    pub(super) fn wake_deferred<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        if self.deferred_due(key) && self.deferred.wake(key) {
            core.requeue(self.token(key), Ready::READABLE);
        }
    }

    /// The deferred input of `key` if it is due, taken out and the pause
    /// lifted; else `None`, and a later change of its queue or pauses
    /// wakes it.
    pub(super) fn take_due_deferred(&mut self, key: usize) -> Option<Vec<u8>> {
        if !self.deferred_due(key) {
            self.deferred.unwake(key);
            return None;
        }
        self.slots[key].state.pauses.remove(Pause::Deferred);
        self.deferred.take(key)
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
        if c.state.phase == Phase::Doomed {
            return;
        }
        let mut want = Interest::NONE;
        if c.reading() {
            want |= Interest::READABLE;
        }
        if c.queue.is_some() || c.state.phase.is_connecting() {
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

    /// A connection's deadline may come `delay_ms` from now: make sure
    /// the sweep runs by then (a sweep armed earlier stays).
    pub(super) fn arm_sweep<D: 'static>(&mut self, core: &mut Core<D>, delay_ms: u32) {
        let at = Instant::now() + Duration::from_millis(delay_ms as u64);
        if let Some((timer, armed)) = self.sweep {
            if armed <= at {
                return;
            }
            core.cancel(timer);
        }
        let timer = core.source_timer(
            Duration::from_millis(delay_ms as u64),
            self.tokens.token(0, 0),
            TIMER_SWEEP,
        );
        self.sweep = Some((timer, at));
    }

    /// Arms the sweep for a connection just opened (or connected), if an
    /// idle timeout or eviction keeps its stamp.
    pub(super) fn opened_stamp<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let Some(limit) = self.open_limit() else {
            return;
        };
        self.slots[key].stamp = self.clock.now();
        self.arm_sweep(core, limit.first_check());
    }

    /// The deadline sweep: every open connection quiet past its idle
    /// timeout is closed (gracefully) unless `in_flight` says its reply is
    /// being worked on (then that is its activity), every closing one
    /// without progress for `linger` is aborted, and the sweep re-arms for
    /// the earliest deadline left.
    pub(super) fn sweep<D: 'static>(&mut self, core: &mut Core<D>, in_flight: impl Fn(&S) -> bool) {
        self.sweep = None;
        let now = self.clock.now();
        let open_limit = self.open_limit();
        let mut recheck: Option<u32> = None;
        let mut idle = Vec::new();
        let mut lingered = Vec::new();
        for (key, c) in self.slots.iter_mut() {
            if !c.state.phase.is_established() {
                continue;
            }
            let closing = c.state.phase.is_closing();
            let limit = if closing {
                self.linger
            } else {
                match open_limit {
                    Some(limit) => limit,
                    None => continue,
                }
            };
            c.stamp = clamped(now, c.stamp);
            match limit.verdict(now, c.stamp) {
                Verdict::Expired if closing => lingered.push(key),
                Verdict::Expired if self.idle.is_some() && in_flight(&c.session) => {
                    c.stamp = now;
                    let ms = limit.first_check();
                    recheck = Some(recheck.map_or(ms, |r| r.min(ms)));
                }
                Verdict::Expired if self.idle.is_some() => idle.push(key),
                Verdict::Expired => {}
                Verdict::Recheck(ms) => recheck = Some(recheck.map_or(ms, |r| r.min(ms))),
            }
        }
        for key in lingered {
            log::debug!(
                "{:?}: no progress for the linger time, aborting",
                self.id(key)
            );
            self.doom(key, CloseReason::Aborted);
        }
        for key in idle {
            log::debug!("{:?}: idle past its timeout, closing", self.id(key));
            self.stats.idle_timeouts += 1;
            self.close(core, key);
        }
        if let Some(ms) = recheck {
            self.arm_sweep(core, ms);
        }
    }

    /// The deadline rule of an open connection: its idle timeout, or (with
    /// stamps kept for eviction only) the rule that keeps ages from
    /// wrapping; none if open connections have no deadline.
    fn open_limit(&self) -> Option<Limit> {
        match self.idle {
            Some(limit) => Some(limit),
            None if self.plan.track_idle => Some(Limit::clamp_only()),
            None => None,
        }
    }

    /// `key`'s queue moved: its linger clock (closing) or idle clock
    /// (open) restarts.
    #[cold]
    pub(super) fn progressed(&mut self, key: usize) {
        self.slots[key].stamp = self.clock.now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection is one table slot: the README's figure.
    #[test]
    fn an_idle_connection_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Slot<()>>(), 24);
        assert_eq!(std::mem::size_of::<slab::Slab<Slot<()>>>() % 8, 0);
    }
}
