//! Stream servers: a listener, an acceptor and a set of connections on one
//! reactor.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::unix::{UnixPath, UnlinkOnDrop, bind_unix};
use super::{ServerOptions, ShutdownHandle, run_until, serve_until_shutdown};
use crate::accept::listen;
use crate::conn::{Connections, Handler};
use crate::net::tcp_listener;
use crate::{Reactor, Token};

/// A TCP server: [`StreamServer`] on a TCP listener.
pub type TcpServer<H> = StreamServer<H>;
/// A Unix stream server: [`StreamServer`] on a Unix listener
/// ([`StreamServer::bind_unix`]).
pub type UnixStreamServer<H> = StreamServer<H>;

/// A server for stream sockets: accepts connections and hands them to a
/// [`Handler`] through a [`Connections`] set, on its own [`Reactor`].
///
/// ```no_run
/// use edgeloop::conn::{Conn, Handler};
/// use edgeloop::server::{ServerOptions, TcpServer};
///
/// struct Echo;
/// impl Handler for Echo {
///     type Session = ();
///     fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
///         conn.write(data);
///     }
/// }
///
/// let mut server = TcpServer::bind("127.0.0.1:7000".parse().unwrap(), Echo, ServerOptions::default())?;
/// println!("listening on {}", server.local_addr());
/// server.serve_forever()?; // until server.shutdown_handle().shutdown()
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct StreamServer<H: Handler> {
    reactor: Reactor,
    connections: Connections<H>,
    listener: Option<Token>,
    local_addr: String,
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
            StreamServer::from_listener(reactor, fd, path.to_string(), handler, options)?;
        server.unlink = Some(unlink);
        Ok(server)
    }

    /// Serves an already-bound, non-blocking TCP listener on `reactor`.
    ///
    /// # Errors
    /// If the listener cannot be registered.
    pub fn from_tcp(
        reactor: Reactor,
        listener: TcpListener,
        handler: H,
        options: ServerOptions,
    ) -> io::Result<StreamServer<H>> {
        let local_addr = listener.local_addr()?.to_string();
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
        mut reactor: Reactor,
        listener: OwnedFd,
        local_addr: String,
        handler: H,
        options: ServerOptions,
    ) -> io::Result<StreamServer<H>> {
        let connections = Connections::new(handler, options.conn.clone())?;
        let set = connections.clone();
        let max = options.max_connections;
        let token = listen(&mut reactor, listener, options.accept, move |r, fd| {
            if set.len() >= max {
                // Over the cap: accepted and closed at once, counted.
                r.stats_mut().refused += 1;
                return;
            }
            if let Err(e) = set.attach(r, fd) {
                log::warn!("attaching a connection failed: {e}");
            }
        })?;
        let shutdown = ShutdownHandle::new(reactor.handle());
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
    pub fn local_addr(&self) -> &str {
        &self.local_addr
    }

    /// A `Send + Clone` handle that stops this server from anywhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The server's reactor: add timers, signals, other registrations.
    pub fn reactor(&mut self) -> &mut Reactor {
        &mut self.reactor
    }

    /// The server's connections.
    pub fn connections(&self) -> &Connections<H> {
        &self.connections
    }

    /// Serves until [`ShutdownHandle::shutdown`], then shuts down
    /// gracefully: the listener closes (new connects are refused), queued
    /// output is flushed for up to `shutdown_grace`, connections close with
    /// EOF, and what is left after the grace period is aborted.
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
        let before = self.connections.requests();
        let connections = self.connections.clone();
        run_until(&mut self.reactor, timeout, || {
            connections.requests() > before
        })
    }

    fn close_gracefully(&mut self) -> io::Result<()> {
        if let Some(token) = self.listener.take() {
            let _ = self.reactor.deregister(token);
        }
        self.connections.close_all(&mut self.reactor);
        let deadline = Instant::now() + self.options.shutdown_grace;
        while !self.connections.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "shutdown: {} connection(s) still had output queued after {:?}; aborted",
                    self.connections.len(),
                    self.options.shutdown_grace
                );
                self.connections.abort_all(&mut self.reactor);
                break;
            }
            self.reactor
                .run_once(Some(left.min(Duration::from_millis(100))))?;
        }
        Ok(())
    }
}
