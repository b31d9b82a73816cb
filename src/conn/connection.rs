//! [`Conn`]: one connection as its handler sees it.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use super::connect::ConnectOptions;
use super::others::Others;
use super::state::Peer;
use super::table::Table;
use super::{CloseReason, ConnId, Handler};
use crate::Core;

/// A connection, as its handler sees it: write to it (or to others in the
/// set), close it, pause it, and reach the loop's core and state.
pub struct Conn<'a, H: Handler<D>, D: 'static = ()> {
    pub(super) core: &'a mut Core<D>,
    pub(super) table: &'a mut Table<H::Session>,
    pub(super) key: usize,
    pub(super) _handler: PhantomData<fn(&mut H)>,
}

impl<H: Handler<D>, D: 'static> fmt::Debug for Conn<'_, H, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn").field("key", &self.key).finish()
    }
}

impl<H: Handler<D>, D: 'static> Conn<'_, H, D> {
    /// The one way a handler is called for connection `key`: its writes to
    /// itself are corked for the call and go out together when it returns
    /// (see `Table::write`).
    #[inline(always)]
    pub(super) fn call<R>(
        handler: &mut H,
        core: &mut Core<D>,
        table: &mut Table<H::Session>,
        key: usize,
        f: impl FnOnce(&mut H, &mut Conn<'_, H, D>) -> R,
    ) -> R {
        table.cork(key);
        let result = f(
            handler,
            &mut Conn {
                core: &mut *core,
                table: &mut *table,
                key,
                _handler: PhantomData,
            },
        );
        table.uncork(core);
        result
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.table.id(self.key)
    }

    /// The socket (to query its address, set options).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.table.get(self.key).fd.as_fd()
    }

    /// The set's connections by id (this one included), as
    /// [`Handler::on_close`] sees them: the `_other` methods here are
    /// shorthands for it.
    pub fn others(&mut self) -> Others<'_, H, D> {
        Others::new(self.core, self.table)
    }

    /// The loop's core: set timers, register other fds, stop the loop.
    pub fn core(&mut self) -> &mut Core<D> {
        self.core
    }

    /// The loop state, shared. The receiver rule is [`Core`]'s:
    /// `data()` lends `&D`, `data_mut()` lends `&mut D`.
    pub fn data(&self) -> &D {
        self.core.data()
    }

    /// The loop state, to change it.
    pub fn data_mut(&mut self) -> &mut D {
        self.core.data_mut()
    }

    /// This connection's session state.
    pub fn session(&mut self) -> &mut H::Session {
        &mut self.table.get_mut(self.key).session
    }

    /// Sends `data`. The first write of a handler call goes out at once (a
    /// lone reply waits for nothing); later writes of the same call are
    /// held and go out together in one `send` when the call returns (or at
    /// [`flush`](Conn::flush), [`close`](Conn::close) or
    /// [`shutdown_write`](Conn::shutdown_write)). So replies to pipelined
    /// requests read at once cost at most two sends per read, however many
    /// there are. What the socket does not take is queued. Dropped after
    /// [`close`](Conn::close), [`abort`](Conn::abort) or
    /// [`shutdown_write`](Conn::shutdown_write).
    ///
    /// If this queues output while the set's queued output is past
    /// [`ConnOptions::max_queued_total`](super::ConnOptions::max_queued_total),
    /// this connection stops being read until its queue drains.
    #[inline]
    pub fn write(&mut self, data: &[u8]) {
        self.table.write(self.core, self.key, data, self.key);
    }

    /// Sends `data` to another connection of the set, at once (only a
    /// connection's writes to itself are coalesced). False if it is gone.
    ///
    /// What this queues counts against *this* connection (the sender): past
    /// [`ConnOptions::max_queued_total`](super::ConnOptions::max_queued_total)
    /// it stops being read, so one sender cannot fill the server's memory
    /// by writing to many slow readers.
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool {
        let Some(key) = self.table.live(id) else {
            return false;
        };
        self.table.write(self.core, key, data, self.key);
        true
    }

    /// Sends what this handler call wrote so far now, rather than when it
    /// returns (a reply that must leave before slow work in the same call).
    /// What the socket does not take is queued, as always.
    pub fn flush(&mut self) {
        self.table.send_pending(self.core, self.key);
    }

    /// True once the peer shut down its write side (EOF was read).
    pub fn is_read_closed(&self) -> bool {
        self.table.get(self.key).state.peer == Peer::Eof
    }

    /// Bytes written and not sent yet on this connection: queued, or held
    /// until this handler call returns.
    pub fn queued(&self) -> usize {
        self.table.get(self.key).queued() + self.table.held(self.key)
    }

    /// Bytes queued on another connection of the set, if it is open.
    pub fn queued_of(&self, id: ConnId) -> Option<usize> {
        self.table.live(id).map(|key| self.table.get(key).queued())
    }

    /// The ids of every open connection of the set, this one included.
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.table.ids()
    }

    /// Closes gracefully: the handler gets no more data, what is queued is
    /// sent, the write side is shut down, and input is read and discarded
    /// until the peer's EOF (at most
    /// [`ConnOptions::linger`](super::ConnOptions::linger)), so the peer
    /// reads our last byte and then EOF, never an RST.
    pub fn close(&mut self) {
        self.table.close(self.core, self.key);
    }

    /// Closes now, dropping whatever is queued, with a reset: a TCP peer
    /// reads `ECONNRESET`, not an EOF that would look like the end of a
    /// complete stream ([`CloseReason::Aborted`](super::CloseReason::Aborted)).
    pub fn abort(&mut self) {
        self.table.doom(self.key, CloseReason::Aborted);
    }

    /// Closes another connection of the set gracefully, as
    /// [`close`](Conn::close) does for this one (its queue is sent first).
    /// With [`ids`](Conn::ids), a handler acts on the whole set: closing
    /// every connection on a `quit` command is
    /// `for id in conn.ids().collect::<Vec<_>>() { conn.close_other(id); }`.
    /// False if it is gone.
    pub fn close_other(&mut self, id: ConnId) -> bool {
        self.others().close(id)
    }

    /// Closes another connection of the set now (a chat server dropping a
    /// client that does not read). False if it is gone.
    pub fn abort_other(&mut self, id: ConnId) -> bool {
        self.others().abort(id)
    }

    /// Shuts down the write side once everything queued is sent (the peer
    /// reads EOF); reading goes on.
    pub fn shutdown_write(&mut self) {
        self.table.shutdown_write(self.core, self.key);
    }

    /// Shuts down another connection's write side once its queue is sent,
    /// as [`shutdown_write`](Conn::shutdown_write) does for this one: a
    /// proxy passes a half-close on to the other side. False if it is gone.
    pub fn shutdown_write_other(&mut self, id: ConnId) -> bool {
        self.others().shutdown_write(id)
    }

    /// Stops reading this connection until [`resume_reading`](Conn::resume_reading)
    /// (a worker pool whose queue is full does this).
    ///
    /// A closing connection ignores it: it reads and discards until the
    /// peer's EOF (see [`close`](Conn::close)).
    pub fn pause_reading(&mut self) {
        self.table.pause_user(self.core, self.key);
    }

    /// Stops reading another connection of the set, as
    /// [`pause_reading`](Conn::pause_reading) does for this one: a proxy
    /// pauses the side whose peer's output is not draining. False if it is
    /// gone.
    pub fn pause_reading_other(&mut self, id: ConnId) -> bool {
        self.others().pause_reading(id)
    }

    /// Hands `input` back unconsumed: the set keeps it and stops reading
    /// this connection's socket, and on a later turn calls
    /// [`on_data`](Handler::on_data) with it again (alone, before anything
    /// new is read), once nothing else pauses the connection and its
    /// queued output is at or below
    /// [`low_water`](super::ConnOptions::low_water).
    ///
    /// This is how a handler bounds the work of one call: it stops after
    /// so many requests, or once its replies pass a cap, and defers the
    /// rest of `data`, so the other connections get their turn and a
    /// read of many requests for a large value never holds more than
    /// about one cap of output. Typically `conn.defer(&data[used..])`.
    ///
    /// Calls in one handler call add up, in order. The handler must make
    /// progress with what it is handed back: a call that defers all of it
    /// again closes the connection with an `InvalidData` error (an
    /// unfinished request belongs in the session, not here). Dropped once
    /// the connection is closing.
    ///
    /// ```
    /// use edgeloop::conn::{Conn, Handler};
    ///
    /// /// Answers one line per call, and hands the rest back for later.
    /// struct OneLineAtATime;
    ///
    /// impl Handler for OneLineAtATime {
    ///     type Session = ();
    ///     fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
    ///         if let Some(end) = data.iter().position(|&b| b == b'\n') {
    ///             conn.write(&data[..=end]);
    ///             conn.defer(&data[end + 1..]);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn defer(&mut self, input: &[u8]) {
        if !input.is_empty() {
            self.table.defer(self.core, self.key, input);
        }
    }

    /// Reads again after [`pause_reading`](Conn::pause_reading).
    pub fn resume_reading(&mut self) {
        self.table.resume_user(self.core, self.key);
    }

    /// Reads another connection of the set again after
    /// [`pause_reading_other`](Conn::pause_reading_other). False if it is
    /// gone.
    pub fn resume_reading_other(&mut self, id: ConnId) -> bool {
        self.others().resume_reading(id)
    }

    /// Opens an outbound TCP connection to `addr` in this set, with
    /// `session` as its session, as
    /// [`Connections::connect`](super::Connections::connect) does: its id
    /// comes back at once, and its [`on_open`](Handler::on_open) (or
    /// [`on_connect_failed`](Handler::on_connect_failed)) runs on a later
    /// turn. A proxy opens its upstream side here, from the client's
    /// `on_open`, and [pairs](Conn::pair_with) the two.
    ///
    /// # Errors
    /// As [`Connections::connect`](super::Connections::connect).
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        options: ConnectOptions,
        session: H::Session,
    ) -> io::Result<ConnId> {
        self.others().connect(addr, options, session)
    }

    /// Opens an outbound Unix stream connection to `path`, as
    /// [`connect`](Conn::connect) does for TCP.
    ///
    /// # Errors
    /// As [`Connections::connect_unix`](super::Connections::connect_unix).
    pub fn connect_unix(
        &mut self,
        path: &Path,
        options: ConnectOptions,
        session: H::Session,
    ) -> io::Result<ConnId> {
        self.others().connect_unix(path, options, session)
    }

    /// Joins this connection and `other` into one stream, a proxy's two
    /// sides. From then on the set does the forwarding:
    /// - what either side reads is sent on the other (the handler's
    ///   [`on_data`](Handler::on_data) is not called for them), and bytes
    ///   written to a side still connecting wait in its queue;
    /// - backpressure is per direction: a side whose queue passes
    ///   [`high_water`](super::ConnOptions::high_water) pauses reading
    ///   the *other* side (which fills it), until it drains to
    ///   [`low_water`](super::ConnOptions::low_water);
    /// - a half-close passes through: one peer's EOF shuts down the other
    ///   side's write once its queue is sent ([`on_eof`](Handler::on_eof)
    ///   is not called), and a side whose write side is shut and whose
    ///   peer sent EOF is done and closes;
    /// - idle time ([`idle_timeout`](super::ConnOptions::idle_timeout))
    ///   counts the pair's traffic either way;
    /// - a [`close`](Conn::close) of one (or an idle timeout) closes both,
    ///   each after its queue is sent; a reset, an error, an
    ///   [`abort`](Conn::abort) or a failed connect on one aborts the
    ///   other, so its peer reads a reset, never an EOF that would look
    ///   like the end of a complete stream.
    ///
    /// Each side still gets its own [`on_open`](Handler::on_open),
    /// [`on_drain`](Handler::on_drain) and [`on_close`](Handler::on_close).
    ///
    /// ```
    /// use edgeloop::conn::{Conn, ConnectOptions, Handler};
    /// use std::net::SocketAddr;
    ///
    /// /// Forwards every accepted connection to `upstream`.
    /// struct Proxy {
    ///     upstream: SocketAddr,
    /// }
    ///
    /// #[derive(Default)]
    /// enum Side {
    ///     #[default]
    ///     Client,
    ///     Upstream,
    /// }
    ///
    /// impl Handler for Proxy {
    ///     type Session = Side;
    ///     fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
    ///         if let Side::Client = conn.session() {
    ///             let upstream = conn.connect(self.upstream, ConnectOptions::default(), Side::Upstream);
    ///             match upstream.and_then(|id| conn.pair_with(id)) {
    ///                 Ok(()) => {}
    ///                 Err(_) => conn.abort(),
    ///             }
    ///         }
    ///     }
    ///     // Paired connections' bytes go straight to the other side.
    ///     fn on_data(&mut self, _: &mut Conn<'_, Self>, _: &[u8]) {}
    /// }
    /// ```
    ///
    /// # Errors
    /// `NotFound` if `other` is gone; `InvalidInput` if it is this
    /// connection, if either is paired already, or if either is closing.
    pub fn pair_with(&mut self, other: ConnId) -> io::Result<()> {
        let id = self.id();
        self.table.pair(id, other)
    }

    /// The connection this one is [paired](Conn::pair_with) with, while
    /// it is.
    pub fn partner(&self) -> Option<ConnId> {
        self.table
            .links
            .partner(self.key)
            .map(|key| self.table.id(key))
    }
}
