//! Stream servers: a listener, an acceptor and a set of connections on one
//! reactor.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::unix::{UnixPath, UnlinkOnDrop, bind_unix};
use super::{ServerAddr, ServerOptions, ShutdownHandle, run_until, serve_until_shutdown};
use crate::conn::{
    ConnStats, Connections, Handler, ListenerId, ShutdownMode, drain, shut_down, tcp_listener,
};
use crate::{Reactor, SourceId};

/// A server for stream sockets: accepts connections and hands them to a
/// [`Handler`] through a [`Connections`] set, on its own [`Reactor`].
///
/// ```no_run
/// use edgeloop::conn::{Conn, Handler};
/// use edgeloop::server::{ServerOptions, StreamServer};
///
/// struct Echo;
/// impl Handler for Echo {
///     type Session = ();
///     fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
///         conn.write(data);
///     }
/// }
///
/// let mut server = StreamServer::bind("127.0.0.1:7000".parse().unwrap(), Echo, ServerOptions::default())?;
/// println!("listening on {}", server.local_addr());
/// server.serve_forever()?; // until server.shutdown_handle().shutdown()
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct StreamServer<H: Handler<D>, D: 'static = ()> {
    reactor: Reactor<D>,
    connections: SourceId<Connections<H, D>>,
    listener: Option<ListenerId>,
    local_addr: ServerAddr,
    shutdown: ShutdownHandle,
    options: ServerOptions,
    unlink: Option<UnlinkOnDrop>,
}

impl<H: Handler> StreamServer<H> {
    /// Binds a TCP listener on `addr` (port 0 picks a free port) with the
    /// backlog from `options`, on a reactor with `options.backend`.
    ///
    /// # Errors
    /// Binding errors (`AddrInUse`, ...) with the address in the message.
    pub fn bind(
        addr: SocketAddr,
        handler: H,
        options: ServerOptions,
    ) -> io::Result<StreamServer<H>> {
        let listener = tcp_listener(addr, options.backlog, false)?;
        StreamServer::from_tcp(
            Reactor::with_backend(options.backend)?,
            listener,
            handler,
            options,
        )
    }

    /// Binds a Unix stream listener at `path` (`@name`: abstract namespace),
    /// replacing a stale socket file but never a live server's, and applies
    /// `mode` to the file, which is removed when the server is dropped.
    ///
    /// # Errors
    /// `AddrInUse` if a live server holds the path; a path too long for
    /// `sun_path`; other binding errors.
    pub fn bind_unix(
        path: &UnixPath,
        mode: Option<u32>,
        handler: H,
        options: ServerOptions,
    ) -> io::Result<StreamServer<H>> {
        let (fd, unlink) = bind_unix(
            path,
            nix::sys::socket::SockType::Stream,
            options.backlog,
            mode,
        )?;
        let reactor = Reactor::with_backend(options.backend)?;
        let mut server =
            StreamServer::from_listener(reactor, fd, path.clone().into(), handler, options)?;
        server.unlink = Some(unlink);
        Ok(server)
    }
}

/// A server whose reactor carries loop state `D` (what
/// [`Conn::data`](crate::conn::Conn::data) reaches from every handler
/// call): build the reactor with [`Reactor::with_data`] and hand it to
/// [`from_tcp`](StreamServer::from_tcp) or
/// [`from_listener`](StreamServer::from_listener).
impl<H: Handler<D>, D: 'static> StreamServer<H, D> {
    /// Serves an already-bound, non-blocking TCP listener on `reactor`.
    ///
    /// # Errors
    /// If the listener cannot be registered.
    pub fn from_tcp(
        reactor: Reactor<D>,
        listener: TcpListener,
        handler: H,
        options: ServerOptions,
    ) -> io::Result<StreamServer<H, D>> {
        let local_addr = listener.local_addr()?.into();
        StreamServer::from_listener(
            reactor,
            OwnedFd::from(listener),
            local_addr,
            handler,
            options,
        )
    }

    /// Serves any listening stream socket (TCP or Unix), non-blocking.
    /// `local_addr` is what [`local_addr`](StreamServer::local_addr) reports.
    ///
    /// # Errors
    /// If the listener cannot be registered.
    pub fn from_listener(
        mut reactor: Reactor<D>,
        listener: OwnedFd,
        local_addr: ServerAddr,
        handler: H,
        options: ServerOptions,
    ) -> io::Result<StreamServer<H, D>> {
        reactor.core_mut().set_panic_policy(options.panic_policy);
        // A trigger the backend cannot deliver is refused here, naming the
        // option, rather than found out connection by connection.
        for (option, trigger) in [
            ("conn.trigger", options.conn.trigger),
            ("accept.trigger", options.accept.trigger),
        ] {
            reactor.core().check_trigger(trigger).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("ServerOptions.{option} is {trigger:?}, which {e}"),
                )
            })?;
        }
        let connections = reactor.install(Connections::new(handler, options.conn.clone())?)?;
        let (set, core) = reactor.source_mut(connections);
        let token = set.listen(core, listener, options.accept)?;
        let shutdown = ShutdownHandle::new(reactor.core().handle());
        Ok(StreamServer {
            reactor,
            connections,
            listener: Some(token),
            local_addr,
            shutdown,
            options,
            unlink: None,
        })
    }

    /// The address the listener is bound to (`127.0.0.1:43517`, or a Unix
    /// socket path).
    pub fn local_addr(&self) -> &ServerAddr {
        &self.local_addr
    }

    /// A `Send + Clone` handle that stops this server from anywhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The server's reactor: add timers, signals, other registrations.
    pub fn reactor(&mut self) -> &mut Reactor<D> {
        &mut self.reactor
    }

    /// The server's connections.
    pub fn connections(&self) -> &Connections<H, D> {
        self.reactor.source(self.connections)
    }

    /// The server's connections and the reactor's core, to act on them
    /// (attach a connection, write to one from outside its handler).
    pub fn connections_mut(&mut self) -> (&mut Connections<H, D>, &mut crate::Core<D>) {
        self.reactor.source_mut(self.connections)
    }

    /// Which source of the reactor the connections are, for callbacks that
    /// reach them through [`Reactor::source_mut`].
    pub fn connections_id(&self) -> SourceId<Connections<H, D>> {
        self.connections
    }

    /// What the server's connections did (the reactor's own counters are
    /// [`reactor().stats()`](crate::Core::stats)).
    pub fn stats(&self) -> &ConnStats {
        self.connections().stats()
    }

    /// Serves until [`ShutdownHandle::shutdown`], then shuts down
    /// gracefully: the listener closes (new connects are refused), and
    /// for up to `shutdown_grace` the connections either close with EOF
    /// once their queued output is flushed ([`ShutdownMode::Close`]) or
    /// are left to end by themselves ([`ShutdownMode::Drain`]); what is
    /// left after the grace period is aborted.
    ///
    /// # Errors
    /// What the reactor's wait reports.
    pub fn serve_forever(&mut self) -> io::Result<()> {
        let result = serve_until_shutdown(&mut self.reactor, &self.shutdown);
        let closed = self.close_gracefully();
        self.shutdown.finished();
        result.and(closed)
    }

    /// Serves until one request (one `on_data` call) was handled or
    /// `timeout` passed; true if one was. Connections stay open.
    ///
    /// # Errors
    /// What the reactor's wait reports.
    pub fn handle_request(&mut self, timeout: Duration) -> io::Result<bool> {
        let set = self.connections;
        let before = self.reactor.source(set).requests();
        run_until(&mut self.reactor, timeout, |r| {
            r.source(set).requests() > before
        })
    }

    fn close_gracefully(&mut self) -> io::Result<()> {
        let set = self.connections;
        let (connections, core) = self.reactor.source_mut(set);
        if let Some(token) = self.listener.take() {
            connections.unlisten(core, token);
        }
        let grace = self.options.shutdown_grace;
        let aborted = match self.options.shutdown_mode {
            ShutdownMode::Close => shut_down(&mut self.reactor, set, grace)?,
            ShutdownMode::Drain => drain(&mut self.reactor, set, grace)?,
        };
        if aborted > 0 {
            log::warn!(
                "shutdown: {aborted} connection(s) still open after {:?} (output queued, or the \
                 peer's close not seen); aborted",
                self.options.shutdown_grace
            );
        }
        Ok(())
    }
}
