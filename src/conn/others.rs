//! [`Others`]: the connections of a set, reached by id from where no one
//! connection is "this" one: [`Handler::on_close`] and
//! [`Handler::on_connect_failed`] (the connection is gone), and any
//! handler call through [`Conn::others`](super::Conn::others).

use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::Path;

use super::connect::{ConnectOptions, Target};
use super::table::Table;
use super::{CloseReason, ConnId, Handler};
use crate::Core;

/// The connections of a set, by id, and the loop's core: what
/// [`Handler::on_close`] and [`Handler::on_connect_failed`] get, so a
/// handler that hears of one connection's end can act on the rest (close
/// a client whose upstream failed, tell a room that someone left). What
/// it does is carried out as from any handler call: closes are settled
/// once the callback returns.
///
/// ```
/// use edgeloop::conn::{CloseReason, Conn, ConnId, Handler, Others};
///
/// /// A room: when one member leaves, the others are told.
/// struct Room;
///
/// impl Handler for Room {
///     type Session = ();
///     fn on_data(&mut self, _: &mut Conn<'_, Self>, _: &[u8]) {}
///     fn on_close(&mut self, others: &mut Others<'_, Self>, id: ConnId, _: (), _: CloseReason) {
///         let note = format!("{} left\n", id.index());
///         for member in others.ids().collect::<Vec<_>>() {
///             others.write_to(member, note.as_bytes());
///         }
///     }
/// }
/// ```
pub struct Others<'a, H: Handler<D>, D: 'static = ()> {
    core: &'a mut Core<D>,
    table: &'a mut Table<H::Session>,
    _handler: PhantomData<fn(&mut H)>,
}

impl<H: Handler<D>, D: 'static> std::fmt::Debug for Others<'_, H, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Others")
            .field("open", &self.table.slots.len())
            .finish()
    }
}

impl<'a, H: Handler<D>, D: 'static> Others<'a, H, D> {
    pub(super) fn new(core: &'a mut Core<D>, table: &'a mut Table<H::Session>) -> Others<'a, H, D> {
        Others {
            core,
            table,
            _handler: PhantomData,
        }
    }

    /// Runs `act` on the open connection `id` names; false if it is gone.
    fn on(
        &mut self,
        id: ConnId,
        act: impl FnOnce(&mut Table<H::Session>, &mut Core<D>, usize),
    ) -> bool {
        let Some(key) = self.table.live(id) else {
            return false;
        };
        act(self.table, self.core, key);
        true
    }

    /// The loop's core: set timers, register other fds, stop the loop.
    pub fn core(&mut self) -> &mut Core<D> {
        self.core
    }

    /// The loop state, shared.
    pub fn data(&self) -> &D {
        self.core.data()
    }

    /// The loop state, to change it.
    pub fn data_mut(&mut self) -> &mut D {
        self.core.data_mut()
    }

    /// The ids of every open connection of the set.
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.table.ids()
    }

    /// Bytes queued on connection `id`, if it is open.
    pub fn queued_of(&self, id: ConnId) -> Option<usize> {
        self.table.live(id).map(|key| self.table.get(key).queued())
    }

    /// Sends `data` on connection `id` (what the socket does not take is
    /// queued, and counts against `id` itself for the set's budget).
    /// False if it is gone.
    pub fn write_to(&mut self, id: ConnId, data: &[u8]) -> bool {
        self.on(id, |table, core, key| table.write(core, key, data, key))
    }

    /// Closes connection `id` gracefully (its queue is sent first), as
    /// [`Conn::close`](super::Conn::close) does. False if it is gone.
    pub fn close(&mut self, id: ConnId) -> bool {
        self.on(id, |table, core, key| table.close(core, key))
    }

    /// Closes connection `id` now, with a reset, as
    /// [`Conn::abort`](super::Conn::abort) does. False if it is gone.
    pub fn abort(&mut self, id: ConnId) -> bool {
        self.on(id, |table, _, key| table.doom(key, CloseReason::Aborted))
    }

    /// Shuts down connection `id`'s write side once its queue is sent.
    /// False if it is gone.
    pub fn shutdown_write(&mut self, id: ConnId) -> bool {
        self.on(id, |table, core, key| table.shutdown_write(core, key))
    }

    /// Stops reading connection `id` until [`resume_reading`](Others::resume_reading).
    /// False if it is gone.
    pub fn pause_reading(&mut self, id: ConnId) -> bool {
        self.on(id, |table, core, key| table.pause_user(core, key))
    }

    /// Reads connection `id` again after [`pause_reading`](Others::pause_reading).
    /// False if it is gone.
    pub fn resume_reading(&mut self, id: ConnId) -> bool {
        self.on(id, |table, core, key| table.resume_user(core, key))
    }

    /// Opens an outbound TCP connection with `session`, as
    /// [`Connections::connect`](super::Connections::connect) does.
    ///
    /// # Errors
    /// As [`Connections::connect`](super::Connections::connect).
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        options: ConnectOptions,
        session: H::Session,
    ) -> io::Result<ConnId> {
        self.table
            .connect(self.core, Target::Tcp(addr), &options, session)
    }

    /// Opens an outbound Unix stream connection with `session`, as
    /// [`Connections::connect_unix`](super::Connections::connect_unix) does.
    ///
    /// # Errors
    /// As [`Connections::connect_unix`](super::Connections::connect_unix).
    pub fn connect_unix(
        &mut self,
        path: &Path,
        options: ConnectOptions,
        session: H::Session,
    ) -> io::Result<ConnId> {
        self.table
            .connect(self.core, Target::Unix(path), &options, session)
    }

    /// Joins connections `a` and `b` into one stream (see
    /// [`Conn::pair_with`](super::Conn::pair_with)).
    ///
    /// # Errors
    /// As [`Conn::pair_with`](super::Conn::pair_with).
    pub fn pair(&mut self, a: ConnId, b: ConnId) -> io::Result<()> {
        self.table.pair(a, b)
    }
}
