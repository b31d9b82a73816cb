//! The [`Connections`] set: a [`Source`] that owns its connections (and
//! listeners), routes their events to one [`Handler`], and does their I/O.
//! Its public face, entries and closes are here; an event's way to the
//! handler is `read`.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::accept::{AcceptOptions, ListenerId, Listeners};
use super::connect::{self, ConnectOptions, Outcome, Target};
use super::key::Key;
use super::others::Others;
use super::state::{Peer, Phase};
use super::table::{TIMER_ACCEPT, TIMER_BUDGET, TIMER_CONNECT, TIMER_SWEEP, Table};
use super::{CloseReason, Conn, ConnId, ConnOptions, ConnStats, Handler};
use crate::sys;
use crate::{Batch, Core, Interest, Ready, Source, Token, TokenFactory, Trigger};

mod read;

/// A set of buffered connections served by one [`Handler`]: a [`Source`]
/// to [`install`](crate::Reactor::install) on a reactor.
///
/// It owns its connections' sockets and, with [`listen`](Connections::listen),
/// listening sockets whose connections it accepts. From outside a handler,
/// reach it with [`Reactor::source_mut`](crate::Reactor::source_mut), which
/// hands over the core its methods take:
///
/// ```
/// use edgeloop::conn::{AcceptOptions, Conn, ConnOptions, Connections, Handler};
/// use edgeloop::Reactor;
/// use std::io::{Read, Write};
///
/// struct Echo;
/// impl Handler for Echo {
///     type Session = ();
///     fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
///         conn.write(data);
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let set = reactor.install(Connections::new(Echo, ConnOptions::default())?)?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?; // made non-blocking by listen
/// let addr = listener.local_addr()?;
/// let (connections, core) = reactor.source_mut(set);
/// connections.listen(core, listener.into(), AcceptOptions::default())?;
///
/// let mut client = std::net::TcpStream::connect(addr)?;
/// client.write_all(b"ping")?;
/// while reactor.source(set).stats().bytes_out < 4 {
///     reactor.run_once(None)?;
/// }
/// let mut reply = [0; 4];
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"ping");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Connections<H: Handler<D>, D: 'static = ()> {
    handler: H,
    pub(super) table: Table<H::Session>,
    listeners: Listeners,
    /// The fds a batch of accepts took, kept to reuse its allocation.
    accepted: Vec<OwnedFd>,
    /// Where every read lands: `read_chunk` bytes, shared by all the
    /// connections of the set (an idle connection owns no buffer).
    scratch: Box<[u8]>,
    _data: PhantomData<fn(&mut D)>,
}

impl<H: Handler<D>, D: 'static> fmt::Debug for Connections<H, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("len", &self.table.slots.len())
            .field("listeners", &self.listeners.len())
            .field("options", &self.table.options)
            .finish()
    }
}

impl<H: Handler<D>, D: 'static> Connections<H, D> {
    /// An empty set served by `handler`.
    ///
    /// # Errors
    /// `InvalidInput` for inconsistent options.
    pub fn new(handler: H, options: ConnOptions) -> io::Result<Connections<H, D>> {
        options.validate()?;
        let scratch = vec![0; options.read_chunk].into_boxed_slice();
        Ok(Connections {
            handler,
            table: Table::new(options),
            listeners: Listeners::default(),
            accepted: Vec::new(),
            scratch,
            _data: PhantomData,
        })
    }

    /// Takes ownership of a connected stream socket, makes it non-blocking
    /// (the set reads and writes it itself), registers it and calls
    /// [`Handler::on_open`].
    ///
    /// # Errors
    /// What setting `O_NONBLOCK` or registering the fd reports; the fd is
    /// closed then.
    pub fn attach(&mut self, core: &mut Core<D>, fd: OwnedFd) -> io::Result<ConnId> {
        sys::set_nonblocking(fd.as_fd(), "a connection to attach")?;
        self.entered(core, |set, core| set.attach_nonblocking(core, fd))
    }

    /// [`attach`](Connections::attach) for a socket known to be
    /// non-blocking (accepted with `SOCK_NONBLOCK`, or opened so).
    pub(super) fn attach_nonblocking(
        &mut self,
        core: &mut Core<D>,
        fd: OwnedFd,
    ) -> io::Result<ConnId> {
        let interest = match self.table.options.trigger {
            // Registered for both once and never modified: a writable edge
            // is cheap to ignore, an epoll_ctl per write is not.
            Trigger::Edge => Interest::BOTH,
            _ => Interest::READABLE,
        };
        let key = self.table.insert(core, fd, interest, Phase::Open)?;
        let id = self.table.id(key);
        log::debug!("open {id:?}");
        self.table.opened_stamp(core, key);
        self.opened(core, key);
        Ok(id)
    }

    /// Tells the handler that connection `key` is open.
    pub(super) fn opened(&mut self, core: &mut Core<D>, key: usize) {
        Conn::call(&mut self.handler, core, &mut self.table, key, |h, conn| {
            h.on_open(conn)
        });
    }

    /// Connections open (closing ones included, until they are gone).
    pub fn len(&self) -> usize {
        self.table.slots.len()
    }

    /// True if no connection is open.
    pub fn is_empty(&self) -> bool {
        self.table.slots.is_empty()
    }

    /// `on_data` calls so far: requests, for a request-per-read protocol.
    pub fn requests(&self) -> u64 {
        self.table.requests
    }

    /// What the set's connections did.
    pub fn stats(&self) -> &ConnStats {
        &self.table.stats
    }

    /// Bytes queued for sending, over all connections.
    pub fn queued(&self) -> usize {
        self.table.slots.iter().map(|(_, c)| c.queued()).sum()
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, to change it.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The ids of every open connection.
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.table.ids()
    }

    /// Runs `f` on one connection from outside its handler (a timer, a
    /// closure posted by a worker thread). Returns `None` if the connection
    /// is gone.
    pub fn with_conn<R>(
        &mut self,
        core: &mut Core<D>,
        id: ConnId,
        f: impl FnOnce(&mut H, &mut Conn<'_, H, D>) -> R,
    ) -> Option<R> {
        let key = self.table.live(id)?;
        Some(self.entered(core, |set, core| {
            Conn::call(&mut set.handler, core, &mut set.table, key, f)
        }))
    }

    /// Closes every connection once its queued output is sent (a graceful
    /// shutdown: stop reading, flush, close).
    pub fn close_all(&mut self, core: &mut Core<D>) {
        let keys: Vec<usize> = self.table.slots.iter().map(|(k, _)| k).collect();
        self.entered(core, |set, core| {
            for key in keys {
                set.table.close(core, key);
            }
        });
    }

    /// Closes every connection now, dropping queued output.
    pub fn abort_all(&mut self, core: &mut Core<D>) {
        let keys: Vec<usize> = self.table.slots.iter().map(|(k, _)| k).collect();
        self.entered(core, |set, _| {
            for key in keys {
                set.table.doom(key, CloseReason::Aborted);
            }
        });
    }

    /// Closes the doomed connections: deregister (before the fd closes),
    /// drop the state (closing the fd), tell the handler.
    #[cold]
    fn close_doomed(&mut self, core: &mut Core<D>) {
        while let Some((key, reason, connecting)) = self.table.doomed.pop() {
            if let Some(partner) = self.table.links.unlink(key) {
                self.table.partner_closed(core, partner, &reason);
            }
            let token = self.table.token(key);
            let state = self.table.slots.remove(key);
            if let Err(e) = core.set_interest(
                state.fd.as_fd(),
                token,
                state.interest,
                Interest::NONE,
                self.table.options.trigger,
            ) {
                log::debug!("closing {token:?}: {e}");
            }
            match reason {
                CloseReason::Reset => self.table.stats.resets += 1,
                // Cut short: the peer must see a reset, not an end.
                CloseReason::Aborted => sys::set_linger_zero(state.fd.as_fd()),
                _ => {}
            }
            let id = ConnId(token);
            drop(state.fd);
            if connecting {
                self.table.cancel_connect_timer(core, key);
                // Never opened: the handler hears of the failure instead.
                self.table.stats.connect_failures += 1;
                let error = match reason {
                    CloseReason::Error(e) => e,
                    CloseReason::Reset => io::Error::from(io::ErrorKind::ConnectionReset),
                    _ => io::Error::from(io::ErrorKind::ConnectionAborted),
                };
                log::debug!("connect {id:?} failed: {error}");
                let others = &mut Others::new(core, &mut self.table);
                self.handler
                    .on_connect_failed(others, id, state.session, error);
                continue;
            }
            log::debug!("close {id:?}: {reason:?}");
            let others = &mut Others::new(core, &mut self.table);
            self.handler.on_close(others, id, state.session, reason);
        }
    }

    /// One entry into the set: every public method that may close a
    /// connection, and each call the reactor makes (a batch of events, a
    /// timer, a panic), runs through here. What `f` dooms is closed when
    /// it returns, here and nowhere else: until then a doomed connection
    /// keeps its slot and fd, and its events are stale.
    #[inline(always)]
    fn entered<R>(
        &mut self,
        core: &mut Core<D>,
        f: impl FnOnce(&mut Self, &mut Core<D>) -> R,
    ) -> R {
        let result = f(self, core);
        self.settle(core);
        result
    }

    /// Closes what the entry that is ending doomed: the one place
    /// connections are closed.
    #[inline(always)]
    fn settle(&mut self, core: &mut Core<D>) {
        if !self.table.doomed.is_empty() {
            self.close_doomed(core);
        }
    }
}

impl<H: Handler<D>, D: 'static> Source<D> for Connections<H, D> {
    fn installed(&mut self, tokens: TokenFactory) {
        self.table.tokens = tokens;
    }

    /// The handler is called from this one place only (through
    /// `dispatch_one`), so the compiler can inline it here: a handler with
    /// one call site inlines without an `#[inline]` of its own.
    fn dispatch(&mut self, core: &mut Core<D>, batch: &mut Batch<'_>) {
        if self.table.plan.track_idle {
            // Every read of the batch is stamped with this turn's time.
            self.table.tick(core);
        }
        while let Some(event) = batch.next_event() {
            let fresh = self.dispatch_one(core, event.token, event.ready);
            batch.record(fresh);
        }
        // An entry like `entered`'s, written out: the loop stays out of a
        // closure, which costs the hot path a few instructions.
        self.settle(core);
    }

    fn on_timer(&mut self, core: &mut Core<D>, token: Token, tag: u32) {
        self.entered(core, |set, core| set.timer_fired(core, token, tag));
    }

    fn on_panic(&mut self, core: &mut Core<D>, token: Token) {
        // The handler panicked: this one connection is closed, the loop goes
        // on, and the reactor's policy decides whether the panic propagates
        // after the turn. What the call wrote and held is dropped with it.
        self.entered(core, |set, _| {
            set.table.drop_held();
            if let Some(key) = set.table.live(ConnId(token)) {
                set.table.doom(key, CloseReason::Aborted);
            }
        });
    }
}

impl<H: Handler<D>, D: 'static> Connections<H, D> {
    /// One of the set's timers fired (its tag says which).
    fn timer_fired(&mut self, core: &mut Core<D>, token: Token, tag: u32) {
        match tag {
            TIMER_SWEEP => {
                let handler = &self.handler;
                self.table.sweep(core, |session| handler.in_flight(session));
            }
            TIMER_ACCEPT => self.listeners.resume(core, token),
            TIMER_BUDGET => self.table.budget_grace_over(core),
            TIMER_CONNECT => {
                if let Some(key) = self.table.live(ConnId(token)) {
                    self.table.connect_timed_out(key);
                }
            }
            _ => {}
        }
    }

    #[inline(always)]
    fn dispatch_one(&mut self, core: &mut Core<D>, token: Token, ready: Ready) -> bool {
        match Key::of(token) {
            Key::Conn(_) => self.on_event(core, token, ready),
            Key::Listener(_) => self.accept(core, token),
        }
    }

    /// A listener is readable: accept a batch into the set.
    #[cold]
    #[inline(never)]
    fn accept(&mut self, core: &mut Core<D>, token: Token) -> bool {
        let mut accepted = std::mem::take(&mut self.accepted);
        let options = self
            .listeners
            .accept(core, token, &mut self.table.stats, &mut accepted);
        if let Some(options) = &options {
            for fd in accepted.drain(..) {
                self.accepted(core, fd, options);
            }
        }
        self.accepted = accepted;
        options.is_some()
    }

    /// An accepted connection: attached, turned away at the cap, or let in
    /// in place of the longest-idle one.
    fn accepted(&mut self, core: &mut Core<D>, fd: OwnedFd, options: &AcceptOptions) {
        self.table.stats.accepts += 1;
        // Connections doomed in this batch are still in the table (they
        // are closed when it ends) but no longer count.
        let at_cap = self.len() - self.table.doomed.len() >= options.max_connections;
        if at_cap && !(options.evict_idle && self.table.evict_longest_idle(core)) {
            // Over the cap: accepted and closed at once, counted.
            self.table.stats.refused += 1;
            return;
        }
        if let Err(e) = self.attach_nonblocking(core, fd) {
            log::warn!("attaching a connection failed: {e}");
        }
    }

    /// Opens a TCP connection to `addr` without blocking, with `session`
    /// as its session from the start. Returns its id at once; when it is
    /// established the handler's [`on_open`](Handler::on_open) runs, as
    /// for an accepted connection, on a later turn (never inside this
    /// call, even for a connect that completes at once, so the caller
    /// holds the id first), and if it fails later (refused, unreachable,
    /// timed out) [`on_connect_failed`](Handler::on_connect_failed) runs
    /// instead, once, with the session back. Writes made before it is
    /// established are queued. A handler opens one with
    /// [`Conn::connect`].
    ///
    /// # Errors
    /// What fails at once: the socket, the local bind (`AddrInUse` when
    /// the source address has no port left), a connect refused before it
    /// started, registering. No callback runs then.
    pub fn connect(
        &mut self,
        core: &mut Core<D>,
        addr: SocketAddr,
        options: ConnectOptions,
        session: H::Session,
    ) -> io::Result<ConnId> {
        self.table
            .connect(core, Target::Tcp(addr), &options, session)
    }

    /// Opens a Unix stream connection to `path`, as [`connect`](Connections::connect)
    /// does for TCP (`local_ip` does not apply).
    ///
    /// # Errors
    /// As [`connect`](Connections::connect); a path too long for
    /// `sun_path`; `ConnectionRefused` if nobody listens there.
    pub fn connect_unix(
        &mut self,
        core: &mut Core<D>,
        path: &Path,
        options: ConnectOptions,
        session: H::Session,
    ) -> io::Result<ConnId> {
        self.table
            .connect(core, Target::Unix(path), &options, session)
    }

    /// Joins connections `a` and `b` into one stream, as
    /// [`Conn::pair_with`] does from a handler.
    ///
    /// # Errors
    /// As [`Conn::pair_with`].
    pub fn pair(&mut self, a: ConnId, b: ConnId) -> io::Result<()> {
        self.table.pair(a, b)
    }

    /// An event for a connection still connecting: established, failed, or
    /// (a spurious wakeup) still in progress.
    #[cold]
    #[inline(never)]
    fn finish_connect(&mut self, core: &mut Core<D>, key: usize, ready: Ready) {
        match connect::outcome(self.table.get(key).fd.as_fd(), ready) {
            Outcome::Pending => {}
            Outcome::Failed(error) => self.table.doom(key, CloseReason::Error(error)),
            Outcome::Established => {
                if ready.is_read_closed() {
                    // The peer answered and shut down before we saw the
                    // connect complete: its FIN's edge is this event, and
                    // the read that follows must not stop short of it.
                    self.table.get_mut(key).state.peer = Peer::CloseSeen;
                }
                self.table.established(core, key);
                let id = self.table.id(key);
                log::debug!("connected {id:?}");
                self.opened(core, key);
                self.table.after_connected(core, id);
            }
        }
    }

    /// Starts accepting connections on `listener` (a listening socket; it
    /// is made non-blocking here, so a blocking one cannot stall the loop
    /// in `accept4`) into this set. Returns the listener's id; pass it to
    /// [`unlisten`](Connections::unlisten) to stop (which closes the
    /// listener). Like a [`ConnId`], it carries a generation: once its
    /// listener is gone it names nothing, whatever listens in its slot
    /// later.
    ///
    /// # Errors
    /// What registering the listener reports, or `EMFILE` if the reserve fd
    /// cannot be opened.
    pub fn listen(
        &mut self,
        core: &mut Core<D>,
        listener: OwnedFd,
        options: AcceptOptions,
    ) -> io::Result<ListenerId> {
        if options.evict_idle {
            // Eviction picks by the last read: keep the stamp.
            self.table.plan.track_idle = true;
        }
        let nodelay = self.table.options.nodelay;
        self.listeners
            .add(core, self.table.tokens, listener, options, nodelay)
    }

    /// Stops accepting on the listener `id` names and closes it; false if
    /// it is gone.
    pub fn unlisten(&mut self, core: &mut Core<D>, id: ListenerId) -> bool {
        self.listeners.remove(core, id)
    }

    /// The listener's fd (to learn its address).
    pub fn listener_fd(&self, id: ListenerId) -> Option<BorrowedFd<'_>> {
        self.listeners.fd(id)
    }
}
