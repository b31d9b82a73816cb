//! The connection table and the I/O it does on each event.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags};

use super::queue::{MAX_IOVECS, WriteQueue};
use super::{CloseReason, ConnId, ConnOptions, Handler, SCRATCH_SIZE};
use crate::event::{Event, Interest, Ready, Token, Trigger};
use crate::{Reactor, SharedCallback};

// Connection flags.
const PAUSED_BACKPRESSURE: u8 = 1;
const PAUSED_BY_USER: u8 = 2;
const READ_CLOSED: u8 = 4;
const CLOSE_AFTER_FLUSH: u8 = 8;
const SHUT_AFTER_FLUSH: u8 = 16;
const WRITE_SHUT: u8 = 32;
const DOOMED: u8 = 64;
/// The kernel reported the peer's half-close (RDHUP or HUP). Kept in the
/// connection, not in the event: an event carried over to the next turn
/// holds only READABLE, and the FIN's edge does not come again.
const PEER_CLOSE_SEEN: u8 = 128;

/// Flags under which the connection does not read.
/// (A closing connection keeps reading, and discards: see `Table::close`.)
const NOT_READING: u8 = PAUSED_BACKPRESSURE | PAUSED_BY_USER | READ_CLOSED | DOOMED;
/// Flags under which writes are dropped.
const NOT_WRITING: u8 = CLOSE_AFTER_FLUSH | SHUT_AFTER_FLUSH | WRITE_SHUT | DOOMED;

const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL.union(MsgFlags::MSG_DONTWAIT);

/// One connection: 24 bytes while idle (no queue, no buffer). Its slot in
/// the table is its reactor registration's slot, so its id is that
/// registration's token.
struct State<S> {
    fd: OwnedFd,
    /// The generation of the registration's token.
    generation: u32,
    /// Milliseconds since the table's epoch at the last data read (only
    /// kept with an idle timeout; it fits in what was padding).
    last_active: u32,
    interest: Interest,
    flags: u8,
    queue: Option<Box<WriteQueue>>,
    session: S,
}

impl<S> State<S> {
    fn token(&self, key: usize) -> Token {
        Token::new(key, self.generation)
    }

    fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }

    fn reading(&self) -> bool {
        self.flags & NOT_READING == 0
    }
}

/// What a connection timer does to the table when it fires.
type TimerAction<S> = fn(&mut Table<S>, &mut Reactor, ConnId);

/// Runs a [`TimerAction`] on the set, for one connection, from a timer (the
/// set is reached through a weak reference: a timer outliving the set does
/// nothing).
type TimerHook<S> = Rc<dyn Fn(&mut Reactor, ConnId, TimerAction<S>)>;

struct Table<S> {
    /// Indexed by the registration's slab key (the token's key); other
    /// registrations of the reactor leave holes.
    slots: Vec<Option<State<S>>>,
    len: usize,
    /// `on_data` calls so far.
    requests: u64,
    options: ConnOptions,
    /// How linger and idle timers reach the table.
    timer_hook: Option<TimerHook<S>>,
    /// The origin of `State::last_active`.
    epoch: std::time::Instant,
    /// Connections to close once the handler call in progress returns (the
    /// handler is borrowed while it runs, and `on_close` needs it).
    doomed: Vec<(usize, CloseReason)>,
}

struct Inner<H: Handler> {
    handler: H,
    table: Table<H::Session>,
    scratch: Box<[u8]>,
}

/// A set of buffered connections served by one [`Handler`].
///
/// Cloning gives another handle to the same set. The reactor's registrations
/// hold handles too, so the set lives as long as it has connections.
pub struct Connections<H: Handler> {
    inner: Rc<RefCell<Inner<H>>>,
    /// The one callback every connection of the set is registered with.
    callback: SharedCallback,
}

impl<H: Handler> Clone for Connections<H> {
    fn clone(&self) -> Self {
        Connections {
            inner: self.inner.clone(),
            callback: self.callback.clone(),
        }
    }
}

impl<H: Handler> fmt::Debug for Connections<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.try_borrow() {
            Ok(inner) => f
                .debug_struct("Connections")
                .field("len", &inner.table.len)
                .field("options", &inner.table.options)
                .finish(),
            Err(_) => f.write_str("Connections { <in use> }"),
        }
    }
}

impl<H: Handler> Connections<H> {
    /// An empty set served by `handler`.
    ///
    /// # Errors
    /// `InvalidInput` for inconsistent options.
    pub fn new(handler: H, options: ConnOptions) -> io::Result<Connections<H>> {
        options.validate()?;
        let inner = Rc::new(RefCell::new(Inner {
            handler,
            table: Table {
                slots: Vec::new(),
                len: 0,
                requests: 0,
                timer_hook: None,
                epoch: std::time::Instant::now(),
                options,
                doomed: Vec::new(),
            },
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
        }));
        let weak = Rc::downgrade(&inner);
        inner.borrow_mut().table.timer_hook = Some(Rc::new(
            move |r: &mut Reactor, id, action: TimerAction<H::Session>| {
                if let Some(set) = weak.upgrade() {
                    let mut inner = set.borrow_mut();
                    let Inner { handler, table, .. } = &mut *inner;
                    action(table, r, id);
                    finish_closes(handler, table, r);
                }
            },
        ));
        let set = inner.clone();
        let callback: SharedCallback =
            Rc::new(move |r: &mut Reactor, event: Event| on_event(&set, r, event));
        Ok(Connections { inner, callback })
    }

    /// Takes ownership of a connected, non-blocking stream socket, registers
    /// it and calls [`Handler::on_open`].
    ///
    /// Call it from outside this set's handler (from an accept callback, a
    /// timer, a posted closure): the set is in use while its handler runs.
    ///
    /// # Errors
    /// What registering the fd reports; the fd is closed then.
    pub fn attach(&self, reactor: &mut Reactor, fd: OwnedFd) -> io::Result<ConnId> {
        let mut inner = self.inner.borrow_mut();
        let Inner { handler, table, .. } = &mut *inner;
        let trigger = table.options.trigger;
        let interest = match trigger {
            // Registered for both once and never modified (DESIGN.md decision 6).
            Trigger::Edge => Interest::BOTH,
            _ => Interest::READABLE,
        };
        let token = reactor.register_shared(fd.as_raw_fd(), interest, trigger, &self.callback)?;
        let key = token.key();
        if key >= table.slots.len() {
            table.slots.resize_with(key + 1, || None);
        }
        let last_active = table.now_ms();
        table.slots[key] = Some(State {
            fd,
            generation: token.generation(),
            last_active,
            interest,
            flags: 0,
            queue: None,
            session: Default::default(),
        });
        table.len += 1;
        if let Some(timeout) = table.options.idle_timeout {
            table.schedule(reactor, timeout, ConnId(token.0), Table::check_idle);
        }
        handler.on_open(&mut Conn {
            reactor,
            table,
            key,
        });
        finish_closes(handler, table, reactor);
        Ok(ConnId(token.0))
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.inner.borrow().table.len
    }

    /// True if no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `on_data` calls so far, over all connections.
    pub fn requests(&self) -> u64 {
        self.inner.borrow().table.requests
    }

    /// Bytes queued for sending, over all connections.
    pub fn queued(&self) -> usize {
        self.inner
            .borrow()
            .table
            .states()
            .map(|(_, c)| c.queued())
            .sum()
    }

    /// Runs `f` on the handler (to read what it counted, say).
    pub fn with_handler<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        f(&mut self.inner.borrow_mut().handler)
    }

    /// Runs `f` on one connection from outside its handler (a timer, a
    /// closure posted by a worker thread). Returns `None` if the connection
    /// is gone.
    pub fn with_conn<R>(
        &self,
        reactor: &mut Reactor,
        id: ConnId,
        f: impl FnOnce(&mut H, &mut Conn<'_, H>) -> R,
    ) -> Option<R> {
        let mut inner = self.inner.borrow_mut();
        let Inner { handler, table, .. } = &mut *inner;
        table.live(id)?;
        let result = f(
            handler,
            &mut Conn {
                reactor,
                table,
                key: id.key(),
            },
        );
        finish_closes(handler, table, reactor);
        Some(result)
    }

    /// Closes every connection once its queued output is sent (a graceful
    /// shutdown: stop reading, flush, close).
    pub fn close_all(&self, reactor: &mut Reactor) {
        let mut inner = self.inner.borrow_mut();
        let Inner { handler, table, .. } = &mut *inner;
        let keys: Vec<usize> = table.states().map(|(k, _)| k).collect();
        for key in keys {
            table.close(reactor, key);
        }
        finish_closes(handler, table, reactor);
    }

    /// Closes every connection now, dropping queued output.
    pub fn abort_all(&self, reactor: &mut Reactor) {
        let mut inner = self.inner.borrow_mut();
        let Inner { handler, table, .. } = &mut *inner;
        let keys: Vec<usize> = table.states().map(|(k, _)| k).collect();
        for key in keys {
            table.doom(key, CloseReason::Aborted);
        }
        finish_closes(handler, table, reactor);
    }
}

/// A connection, as its handler sees it: write to it (or to others in the
/// set), close it, pause it, and reach the reactor.
pub struct Conn<'a, H: Handler> {
    reactor: &'a mut Reactor,
    table: &'a mut Table<H::Session>,
    key: usize,
}

impl<H: Handler> fmt::Debug for Conn<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id())
            .field("queued", &self.queued())
            .finish()
    }
}

impl<H: Handler> Conn<'_, H> {
    fn state(&self) -> &State<H::Session> {
        self.table.get(self.key)
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        ConnId(self.state().token(self.key).0)
    }

    /// The socket's fd (to query its address, set options).
    pub fn fd(&self) -> RawFd {
        self.state().fd.as_raw_fd()
    }

    /// The reactor: set timers, register other fds, stop the loop.
    pub fn reactor(&mut self) -> &mut Reactor {
        self.reactor
    }

    /// This connection's session state.
    pub fn session(&mut self) -> &mut H::Session {
        &mut self.table.get_mut(self.key).session
    }

    /// Sends `data`: at once if the socket takes it, else queued. Dropped
    /// after [`close`](Conn::close), [`abort`](Conn::abort) or
    /// [`shutdown_write`](Conn::shutdown_write).
    pub fn write(&mut self, data: &[u8]) {
        self.table.write(self.reactor, self.key, data);
    }

    /// Sends `data` to another connection of the set. False if it is gone.
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool {
        if self.table.live(id).is_none() {
            return false;
        }
        self.table.write(self.reactor, id.key(), data);
        true
    }

    /// True once the peer shut down its write side (EOF was read).
    pub fn is_read_closed(&self) -> bool {
        self.state().flags & READ_CLOSED != 0
    }

    /// Bytes queued for sending on this connection.
    pub fn queued(&self) -> usize {
        self.state().queued()
    }

    /// Bytes queued on another connection of the set, if it is open.
    pub fn queued_of(&self, id: ConnId) -> Option<usize> {
        self.table.live(id).map(|c| c.queued())
    }

    /// The ids of every open connection of the set, this one included.
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.table
            .states()
            .filter(|(_, c)| c.flags & DOOMED == 0)
            .map(|(k, c)| ConnId(c.token(k).0))
    }

    /// Closes gracefully: the handler gets no more data, what is queued is
    /// sent, the write side is shut down, and input is read and discarded
    /// until the peer's EOF (at most [`ConnOptions::linger`]), so the peer
    /// reads our last byte and then EOF, never an RST.
    ///
    /// [`ConnOptions::linger`]: super::ConnOptions::linger
    pub fn close(&mut self) {
        self.table.close(self.reactor, self.key);
    }

    /// Closes now, dropping whatever is queued.
    pub fn abort(&mut self) {
        self.table.doom(self.key, CloseReason::Aborted);
    }

    /// Closes another connection of the set now (a chat server dropping a
    /// client that does not read). False if it is gone.
    pub fn abort_other(&mut self, id: ConnId) -> bool {
        if self.table.live(id).is_none() {
            return false;
        }
        self.table.doom(id.key(), CloseReason::Aborted);
        true
    }

    /// Shuts down the write side once everything queued is sent (the peer
    /// reads EOF); reading goes on.
    pub fn shutdown_write(&mut self) {
        let c = self.table.get_mut(self.key);
        if c.flags & NOT_WRITING != 0 {
            return;
        }
        c.flags |= SHUT_AFTER_FLUSH;
        if c.queued() == 0 {
            self.table.after_flush(self.reactor, self.key);
        }
    }

    /// Stops reading this connection until [`resume_reading`](Conn::resume_reading)
    /// (a worker pool whose queue is full does this).
    pub fn pause_reading(&mut self) {
        self.table.get_mut(self.key).flags |= PAUSED_BY_USER;
        self.table.update_interest(self.reactor, self.key);
    }

    /// Reads again after [`pause_reading`](Conn::pause_reading).
    pub fn resume_reading(&mut self) {
        let c = self.table.get_mut(self.key);
        if c.flags & PAUSED_BY_USER == 0 {
            return;
        }
        c.flags &= !PAUSED_BY_USER;
        self.table.resumed(self.reactor, self.key);
    }
}

/// The registration callback of every connection.
fn on_event<H: Handler>(set: &RefCell<Inner<H>>, reactor: &mut Reactor, event: Event) {
    let key = event.token.key();
    let mut inner = set.borrow_mut();
    let Inner {
        handler,
        table,
        scratch,
    } = &mut *inner;
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        handle_event(handler, table, scratch, reactor, key, event.ready);
    }));
    if let Err(payload) = outcome {
        // The handler panicked: this one connection is closed, the loop goes
        // on (RELIABILITY.md item 24), and the reactor's policy decides
        // whether the panic propagates after the turn.
        if table.slots.get(key).is_some_and(Option::is_some) {
            table.doom(key, CloseReason::Aborted);
        }
        finish_closes(handler, table, reactor);
        reactor.record_panic("a connection handler", payload);
    }
}

fn handle_event<H: Handler>(
    handler: &mut H,
    table: &mut Table<H::Session>,
    scratch: &mut [u8],
    reactor: &mut Reactor,
    key: usize,
    ready: Ready,
) {
    // Writes first: flushing may end a backpressure pause (netty's order:
    // OUT, then IN, then RDHUP; RELIABILITY.md item 17).
    if ready.is_writable() && table.get(key).queued() > 0 {
        table.flush(reactor, key);
    }
    if ready.is_read_closed() {
        table.get_mut(key).flags |= PEER_CLOSE_SEEN;
    }
    let c = table.get(key);
    if c.flags & DOOMED == 0 {
        if c.reading() && (ready.is_readable() || ready.is_read_closed() || ready.is_error()) {
            read(handler, table, scratch, reactor, key, ready);
        } else if ready.is_hup() || ready.is_error() {
            // Not reading (paused, or EOF seen) and the socket is dead both
            // ways: nothing queued can be delivered. Close rather than let a
            // level-triggered HUP spin (RELIABILITY.md item 16).
            let reason = match socket::getsockopt(&c.fd, socket::sockopt::SocketError) {
                Ok(0) | Err(_) => CloseReason::Reset,
                Ok(errno) => CloseReason::Error(io::Error::from_raw_os_error(errno)),
            };
            table.doom(key, reason);
        }
    }
    finish_closes(handler, table, reactor);
}

fn read<H: Handler>(
    handler: &mut H,
    table: &mut Table<H::Session>,
    scratch: &mut [u8],
    reactor: &mut Reactor,
    key: usize,
    ready: Ready,
) {
    let options = &table.options;
    let (chunk, budget) = (options.read_chunk, options.read_budget);
    let edge = options.trigger == Trigger::Edge;
    // Level re-reports, so it may stop at any short read; Edge only with the
    // short-read rule. Neither may stop short once RDHUP was seen, in this
    // event or an earlier one: the EOF behind the data raises no new edge.
    let stop_at_short_read = (!edge || options.short_read)
        && !ready.is_read_closed()
        && table.get(key).flags & PEER_CLOSE_SEEN == 0;
    for _ in 0..budget {
        let c = table.get(key);
        if !c.reading() {
            return;
        }
        let result = socket::recv(c.fd.as_raw_fd(), &mut scratch[..chunk], MsgFlags::empty());
        let stats = reactor.stats_mut();
        stats.reads += 1;
        match result {
            Ok(0) => {
                let c = table.get_mut(key);
                c.flags |= READ_CLOSED;
                if c.flags & CLOSE_AFTER_FLUSH != 0 {
                    // Lingering, or closing with output queued: the close
                    // completes once the queue is empty.
                    if c.queued() == 0 {
                        table.doom(key, CloseReason::Closed);
                    }
                } else {
                    handler.on_eof(&mut Conn {
                        reactor,
                        table,
                        key,
                    });
                }
                table.update_interest(reactor, key);
                return;
            }
            Ok(n) if table.get(key).flags & CLOSE_AFTER_FLUSH != 0 => {
                // Closing: what the peer still sends is read and dropped, so
                // the final close finds nothing unread (which would send an
                // RST and could destroy our last reply in flight).
                stats.bytes_in += n as u64;
            }
            Ok(n) => {
                stats.bytes_in += n as u64;
                table.requests += 1;
                if table.options.idle_timeout.is_some() {
                    let now = table.now_ms();
                    table.get_mut(key).last_active = now;
                }
                handler.on_data(
                    &mut Conn {
                        reactor,
                        table,
                        key,
                    },
                    &scratch[..n],
                );
                if n < chunk && stop_at_short_read {
                    return;
                }
            }
            Err(Errno::EAGAIN) => {
                stats.eagain_reads += 1;
                return;
            }
            Err(Errno::EINTR) => {}
            Err(Errno::ECONNRESET) => return table.doom(key, CloseReason::Reset),
            Err(e) => return table.doom(key, CloseReason::Error(e.into())),
        }
    }
    // Budget spent with data maybe left: under Edge no new edge will come
    // for it, so carry the connection over to the next turn.
    let c = table.get(key);
    if edge && c.reading() {
        reactor.requeue(c.token(key), Ready::READABLE);
    }
}

/// Closes the doomed connections: deregister (before the fd closes:
/// DESIGN.md decision 11), drop the state (closing the fd), tell the handler.
fn finish_closes<H: Handler>(
    handler: &mut H,
    table: &mut Table<H::Session>,
    reactor: &mut Reactor,
) {
    while let Some((key, reason)) = table.doomed.pop() {
        let state = table.slots[key]
            .take()
            .expect("a doomed connection is in the table");
        table.len -= 1;
        let token = state.token(key);
        if let Err(e) = reactor.deregister(token) {
            log::debug!("closing {key}: {e}");
        }
        if matches!(reason, CloseReason::Reset) {
            reactor.stats_mut().resets += 1;
        }
        let id = ConnId(token.0);
        log::debug!("close {id:?} (fd {}): {reason:?}", state.fd.as_raw_fd());
        let State { fd, session, .. } = state;
        drop(fd);
        handler.on_close(id, session, reason);
    }
}

impl<S: 'static> Table<S> {
    fn now_ms(&self) -> u32 {
        self.epoch.elapsed().as_millis().min(u32::MAX as u128) as u32
    }

    /// An idle timer fired: close the connection if it has been quiet for
    /// the whole timeout, else re-arm for what is left.
    fn check_idle(&mut self, reactor: &mut Reactor, id: ConnId) {
        let (Some(timeout), Some(c)) = (self.options.idle_timeout, self.live(id)) else {
            return;
        };
        if c.flags & CLOSE_AFTER_FLUSH != 0 {
            return; // closing already: not idle, and its linger timer rules
        }
        let idle =
            std::time::Duration::from_millis(self.now_ms().saturating_sub(c.last_active) as u64);
        if idle >= timeout {
            log::debug!("{id:?}: idle for {idle:?}, closing");
            reactor.stats_mut().idle_timeouts += 1;
            self.close(reactor, id.key());
        } else {
            self.schedule(reactor, timeout - idle, id, Table::check_idle);
        }
    }

    /// A closing connection's linger ran out before the peer's EOF.
    fn linger_expired(&mut self, _: &mut Reactor, id: ConnId) {
        if self.live(id).is_some() {
            log::debug!("{id:?}: linger timeout, aborting");
            self.doom(id.key(), CloseReason::Aborted);
        }
    }

    /// Runs `action` for `id` after `delay`, if the set still exists then.
    fn schedule(
        &self,
        reactor: &mut Reactor,
        delay: std::time::Duration,
        id: ConnId,
        action: TimerAction<S>,
    ) {
        if let Some(hook) = self.timer_hook.clone() {
            reactor.call_later(delay, move |r| hook(r, id, action));
        }
    }

    #[inline(always)]
    fn get(&self, key: usize) -> &State<S> {
        self.slots[key].as_ref().expect("a live connection")
    }

    #[inline(always)]
    fn get_mut(&mut self, key: usize) -> &mut State<S> {
        self.slots[key].as_mut().expect("a live connection")
    }

    fn states(&self) -> impl Iterator<Item = (usize, &State<S>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(k, c)| Some((k, c.as_ref()?)))
    }

    fn live(&self, id: ConnId) -> Option<&State<S>> {
        self.slots
            .get(id.key())?
            .as_ref()
            .filter(|c| c.generation == (id.0 >> 32) as u32 && c.flags & DOOMED == 0)
    }

    fn doom(&mut self, key: usize, reason: CloseReason) {
        let c = self.get_mut(key);
        if c.flags & DOOMED == 0 {
            c.flags |= DOOMED;
            c.queue = None;
            self.doomed.push((key, reason));
        }
    }

    /// A graceful close, nginx's "lingering close": stop handing data to
    /// the handler, send what is queued, shut down our write side, then read
    /// and discard until the peer's EOF (or `linger` passes), and only then
    /// close. Closing with unread input would send an RST, and an RST can
    /// make the peer drop our last reply (RELIABILITY.md item 32).
    fn close(&mut self, reactor: &mut Reactor, key: usize) {
        let c = self.get_mut(key);
        if c.flags & (DOOMED | CLOSE_AFTER_FLUSH) != 0 {
            return;
        }
        c.flags |= CLOSE_AFTER_FLUSH;
        if c.queued() == 0 {
            self.after_flush(reactor, key);
        }
        self.update_interest(reactor, key);
    }

    fn write(&mut self, reactor: &mut Reactor, key: usize, data: &[u8]) {
        let c = self.get_mut(key);
        if c.flags & NOT_WRITING != 0 || data.is_empty() {
            return;
        }
        let mut rest = data;
        if c.queued() == 0 {
            let stats = reactor.stats_mut();
            loop {
                let result = socket::send(c.fd.as_raw_fd(), rest, SEND_FLAGS);
                stats.writes += 1;
                match result {
                    Ok(n) => {
                        stats.bytes_out += n as u64;
                        if n == rest.len() {
                            return;
                        }
                        stats.partial_writes += 1;
                        rest = &rest[n..];
                        break;
                    }
                    Err(Errno::EAGAIN) => {
                        stats.partial_writes += 1;
                        break;
                    }
                    Err(Errno::EINTR) => {}
                    Err(Errno::EPIPE | Errno::ECONNRESET) => {
                        return self.doom(key, CloseReason::Reset);
                    }
                    Err(e) => return self.doom(key, CloseReason::Error(e.into())),
                }
            }
        }
        c.queue.get_or_insert_with(Default::default).push(rest);
        self.queue_changed(reactor, key);
    }

    /// Sends what is queued, as far as the socket takes it.
    fn flush(&mut self, reactor: &mut Reactor, key: usize) {
        let c = self.get_mut(key);
        let Some(queue) = c.queue.as_mut() else {
            return;
        };
        let fd = c.fd.as_raw_fd();
        let stats = reactor.stats_mut();
        while !queue.is_empty() {
            let (result, offered) = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = queue.slices(&mut slices);
                let offered: usize = slices[..n].iter().map(|s| s.len()).sum();
                (
                    socket::sendmsg::<()>(fd, &slices[..n], &[], SEND_FLAGS, None),
                    offered,
                )
            };
            stats.writes += 1;
            match result {
                Ok(n) => {
                    stats.bytes_out += n as u64;
                    queue.advance(n);
                    if n < offered {
                        stats.partial_writes += 1;
                        break;
                    }
                }
                Err(Errno::EAGAIN) => {
                    stats.partial_writes += 1;
                    break;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EPIPE | Errno::ECONNRESET) => return self.doom(key, CloseReason::Reset),
                Err(e) => return self.doom(key, CloseReason::Error(e.into())),
            }
        }
        if queue.is_empty() {
            c.queue = None;
            self.after_flush(reactor, key);
        }
        self.queue_changed(reactor, key);
    }

    /// The queue just emptied: carry out a pending shutdown or close.
    fn after_flush(&mut self, reactor: &mut Reactor, key: usize) {
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
                let id = ConnId(c.token(key).0);
                self.schedule(reactor, self.options.linger, id, Table::linger_expired);
            }
        }
    }

    /// Backpressure and interest after the queue grew or shrank.
    fn queue_changed(&mut self, reactor: &mut Reactor, key: usize) {
        let (high, low) = (self.options.high_water, self.options.low_water);
        let c = self.get_mut(key);
        let queued = c.queued();
        if c.flags & PAUSED_BACKPRESSURE == 0 && queued > high {
            c.flags |= PAUSED_BACKPRESSURE;
            reactor.stats_mut().backpressure_pauses += 1;
        } else if c.flags & PAUSED_BACKPRESSURE != 0 && queued <= low {
            c.flags &= !PAUSED_BACKPRESSURE;
            return self.resumed(reactor, key);
        }
        self.update_interest(reactor, key);
    }

    /// Reading may go on after a pause.
    fn resumed(&mut self, reactor: &mut Reactor, key: usize) {
        let c = self.get(key);
        if self.options.trigger == Trigger::Edge && c.reading() {
            // Data that arrived while paused raised its edge already.
            reactor.requeue(c.token(key), Ready::READABLE);
        }
        self.update_interest(reactor, key);
    }

    /// Level only: READABLE while reading, WRITABLE while output is queued,
    /// nothing else (an always-on WRITABLE spins; RELIABILITY.md item 14).
    /// Edge registrations are never modified.
    fn update_interest(&mut self, reactor: &mut Reactor, key: usize) {
        if self.options.trigger == Trigger::Edge {
            return;
        }
        let c = self.get_mut(key);
        if c.flags & DOOMED != 0 {
            return;
        }
        let mut want = Interest::NONE;
        if c.reading() {
            want |= Interest::READABLE;
        }
        if c.queued() > 0 {
            want |= Interest::WRITABLE;
        }
        if want != c.interest {
            match reactor.modify(c.token(key), want, Trigger::Level) {
                Ok(()) => c.interest = want,
                Err(e) => {
                    let fd = c.fd.as_raw_fd();
                    log::warn!("fd {fd}: changing interest failed: {e}");
                    self.doom(key, CloseReason::Error(e));
                }
            }
        }
    }
}
