//! Datagram servers: UDP and Unix datagram sockets, one handler call per
//! datagram.
//!
//! - A datagram longer than the receive buffer is reported as truncated
//!   (`recvmsg` with `MSG_TRUNC` returns its real length), never silently cut.
//! - A send over the maximum size returns `EMSGSIZE` to the handler; the
//!   socket stays registered and usable.
//! - A 0-byte datagram is data, not EOF.
//! - An ICMP error on a connected UDP socket (the next recv fails with
//!   `ECONNREFUSED`) reaches [`DatagramHandler::on_error`] once; reading
//!   consumed it, so a level-triggered loop does not spin.

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::rc::Rc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockType, SockaddrStorage, recvmsg, sendto};

use super::unix::{UnixPath, UnlinkOnDrop, bind_unix};
use super::{ServerAddr, ShutdownHandle, serve_until_shutdown};
use crate::selector::Backend;
use crate::{Interest, PostAction, Reactor, Token, Trigger};

/// What a datagram server calls. `D` is the reactor's loop state, reached
/// through [`Datagram::data`] and [`Datagram::data_mut`] (as a stream
/// server's handler reaches it through its `Conn`).
pub trait DatagramHandler<D: 'static = ()>: 'static {
    /// One datagram arrived (possibly empty). Reply through `datagram`.
    fn on_datagram(&mut self, datagram: &mut Datagram<'_, D>, data: &[u8]);

    /// A receive failed: on a connected UDP socket, an ICMP error from an
    /// earlier send (`ConnectionRefused`). Reported once per error; the
    /// server keeps going. The default logs it.
    fn on_error(&mut self, error: io::Error) {
        log::warn!("datagram socket: {error}");
    }
}

/// Who sent a datagram. Unix senders go through std's `UnixDatagram`: nix
/// 0.31 neither decodes them into `SockaddrStorage` nor accepts an unnamed
/// sender's empty address (it asserts).
#[derive(Debug)]
enum Peer {
    Inet(SockaddrStorage),
    Unix(std::os::unix::net::SocketAddr),
}

/// The socket, by family.
#[derive(Debug)]
enum Kind {
    Inet(OwnedFd),
    Unix(UnixDatagram),
}

impl Kind {
    fn fd(&self) -> RawFd {
        match self {
            Kind::Inet(fd) => fd.as_raw_fd(),
            Kind::Unix(socket) => socket.as_raw_fd(),
        }
    }
}

/// One received datagram's context: who sent it, whether it was cut, and a
/// way to answer.
#[derive(Debug)]
pub struct Datagram<'a, D: 'static = ()> {
    socket: &'a Kind,
    peer: Option<&'a Peer>,
    truncated: Option<usize>,
    reactor: &'a mut Reactor<D>,
}

impl<D: 'static> Datagram<'_, D> {
    /// The sender's address: an IP address for UDP; `None` for an unnamed
    /// (unbound) Unix sender, which cannot be answered.
    pub fn peer(&self) -> Option<SocketAddr> {
        let Some(Peer::Inet(peer)) = self.peer else {
            return None;
        };
        if let Some(v4) = peer.as_sockaddr_in() {
            return Some(SocketAddr::V4((*v4).into()));
        }
        peer.as_sockaddr_in6()
            .map(|v6| SocketAddr::V6((*v6).into()))
    }

    /// The sender's Unix path (`@name` for abstract), if it has one.
    pub fn unix_peer(&self) -> Option<UnixPath> {
        let Some(Peer::Unix(unix)) = self.peer else {
            return None;
        };
        if let Some(path) = unix.as_pathname() {
            return Some(UnixPath::File(path.to_path_buf()));
        }
        use std::os::linux::net::SocketAddrExt;
        unix.as_abstract_name()
            .map(|name| UnixPath::Abstract(name.to_vec()))
    }

    /// The datagram's real length if it was longer than the receive buffer
    /// (and so cut to the buffer's size).
    pub fn truncated(&self) -> Option<usize> {
        self.truncated
    }

    /// Sends `data` back to the sender.
    ///
    /// # Errors
    /// `EMSGSIZE` for a datagram over the maximum size; `WouldBlock` if the
    /// socket's send buffer is full (UDP drops, a Unix receiver that does not
    /// read pushes back); `NotConnected` for an unnamed Unix sender.
    pub fn reply(&mut self, data: &[u8]) -> io::Result<usize> {
        let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
        match (self.socket, self.peer) {
            (Kind::Inet(fd), Some(Peer::Inet(addr))) => {
                sendto(fd.as_raw_fd(), data, addr, flags).map_err(io::Error::from)
            }
            (Kind::Unix(socket), Some(Peer::Unix(addr))) if !addr.is_unnamed() => {
                socket.send_to_addr(data, addr)
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the sender is an unbound Unix datagram socket: it has no address to reply to",
                ));
            }
        }
        .map_err(|e| crate::sys::context(e, format_args!("sendto, {} bytes", data.len())))
    }

    /// The reactor.
    pub fn reactor(&mut self) -> &mut Reactor<D> {
        self.reactor
    }

    /// The loop state, shared. The receiver rule is
    /// [`Core`](crate::Core)'s: `data()` lends `&D`, `data_mut()` lends
    /// `&mut D`.
    pub fn data(&self) -> &D {
        self.reactor.core().data()
    }

    /// The loop state, to change it.
    pub fn data_mut(&mut self) -> &mut D {
        self.reactor.core_mut().data_mut()
    }
}

/// The largest [`DatagramOptions::max_packet_size`]: 16 MiB, well past the
/// 64 KiB a UDP datagram can carry and the socket buffers that bound a
/// Unix datagram.
pub const MAX_PACKET_SIZE: usize = 16 << 20;

/// Options of a datagram server: start from the default and assign fields,
/// or chain the `with_*` setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DatagramOptions {
    /// The selector backend.
    pub backend: Backend,
    /// Level or Edge for the socket (Edge drains to EAGAIN or the budget and
    /// requeues).
    pub trigger: Trigger,
    /// The receive buffer: longer datagrams are reported truncated. At
    /// most [`MAX_PACKET_SIZE`]; more is refused at bind (it is allocated
    /// up front).
    pub max_packet_size: usize,
    /// Datagrams read per event before yielding.
    pub read_budget: usize,
}

impl Default for DatagramOptions {
    fn default() -> DatagramOptions {
        DatagramOptions {
            backend: Backend::Epoll,
            trigger: Trigger::Level,
            max_packet_size: 65_536,
            read_budget: 64,
        }
    }
}

impl DatagramOptions {
    /// Sets [`backend`](DatagramOptions::backend).
    #[must_use]
    pub fn with_backend(mut self, backend: Backend) -> DatagramOptions {
        self.backend = backend;
        self
    }

    /// Sets [`trigger`](DatagramOptions::trigger).
    #[must_use]
    pub fn with_trigger(mut self, trigger: Trigger) -> DatagramOptions {
        self.trigger = trigger;
        self
    }

    /// Sets [`max_packet_size`](DatagramOptions::max_packet_size).
    #[must_use]
    pub fn with_max_packet_size(mut self, bytes: usize) -> DatagramOptions {
        self.max_packet_size = bytes;
        self
    }
}

struct Socket<H> {
    socket: Kind,
    handler: Rc<RefCell<H>>,
    buffer: Vec<u8>,
    options: DatagramOptions,
    handled: Rc<std::cell::Cell<u64>>,
}

impl<H> AsFd for Socket<H> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            Kind::Inet(fd) => fd.as_fd(),
            Kind::Unix(socket) => socket.as_fd(),
        }
    }
}

impl<H> Socket<H> {
    fn on_readable<D: 'static>(&mut self, reactor: &mut Reactor<D>, token: Token)
    where
        H: DatagramHandler<D>,
    {
        let fd = self.socket.fd();
        let mut handler = self.handler.borrow_mut();
        for _ in 0..self.options.read_budget {
            let received = match &self.socket {
                Kind::Inet(_) => {
                    let mut iov = [IoSliceMut::new(&mut self.buffer)];
                    // MSG_TRUNC: the return value is the datagram's real length.
                    recvmsg::<SockaddrStorage>(fd, &mut iov, None, MsgFlags::MSG_TRUNC)
                        .map(|msg| (msg.bytes, msg.address.map(Peer::Inet)))
                }
                Kind::Unix(socket) => {
                    // A peek with MSG_TRUNC gives the real length; then std
                    // reads it with the sender's address.
                    nix::sys::socket::recv(fd, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)
                        .and_then(|len| {
                            socket
                                .recv_from(&mut self.buffer)
                                .map(|(_, addr)| (len, Some(Peer::Unix(addr))))
                                .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))
                        })
                }
            };
            match received {
                Ok((len, address)) => {
                    let kept = len.min(self.buffer.len());
                    let mut datagram = Datagram {
                        socket: &self.socket,
                        peer: address.as_ref(),
                        truncated: (len > kept).then_some(len),
                        reactor,
                    };
                    handler.on_datagram(&mut datagram, &self.buffer[..kept]);
                    self.handled.set(self.handled.get() + 1);
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                Err(e) => handler.on_error(io::Error::from(e)),
            }
        }
        if self.options.trigger == Trigger::Edge {
            reactor.core_mut().requeue(token, crate::Ready::READABLE);
        }
    }
}

/// A server for datagram sockets (UDP or Unix) on its own reactor, whose
/// loop state is `D` (see [`from_udp`](DatagramServer::from_udp)).
#[derive(Debug)]
pub struct DatagramServer<H: DatagramHandler<D>, D: 'static = ()> {
    reactor: Reactor<D>,
    handler: Rc<RefCell<H>>,
    handled: Rc<std::cell::Cell<u64>>,
    local_addr: ServerAddr,
    shutdown: ShutdownHandle,
    _unlink: Option<UnlinkOnDrop>,
}

/// ```
/// use edgeloop::server::{Datagram, DatagramHandler, DatagramOptions, DatagramServer};
/// use std::time::Duration;
///
/// struct Echo;
/// impl DatagramHandler for Echo {
///     fn on_datagram(&mut self, datagram: &mut Datagram<'_>, data: &[u8]) {
///         let _ = datagram.reply(data);
///     }
/// }
///
/// let mut server = DatagramServer::bind("127.0.0.1:0".parse().unwrap(), Echo, DatagramOptions::default())?;
/// let client = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"ping", server.local_addr())?;
/// assert!(server.handle_request(Duration::from_secs(5))?);
/// let mut reply = [0; 4];
/// client.recv(&mut reply)?;
/// assert_eq!(&reply, b"ping");
/// # Ok::<(), std::io::Error>(())
/// ```
impl<H: DatagramHandler> DatagramServer<H> {
    /// Binds a UDP socket on `addr` (port 0 picks one), on a reactor of its
    /// own with no loop state.
    ///
    /// # Errors
    /// Binding errors, with the address.
    pub fn bind(
        addr: SocketAddr,
        handler: H,
        options: DatagramOptions,
    ) -> io::Result<DatagramServer<H>> {
        let socket = UdpSocket::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("bind udp {addr}: {e}")))?;
        socket.set_nonblocking(true)?;
        let reactor = Reactor::with_backend(options.backend)?;
        DatagramServer::from_udp(reactor, socket, handler, options)
    }

    /// Binds a Unix datagram socket at `path` (stale files replaced, live
    /// servers left alone; `@name` is abstract), with the file's `mode`.
    ///
    /// # Errors
    /// `AddrInUse` if a live server holds the path; a path too long for
    /// `sun_path`; other binding errors.
    pub fn bind_unix(
        path: &UnixPath,
        mode: Option<u32>,
        handler: H,
        options: DatagramOptions,
    ) -> io::Result<DatagramServer<H>> {
        let (fd, unlink) = bind_unix(path, SockType::Datagram, None, mode)?;
        let socket = Kind::Unix(UnixDatagram::from(fd));
        let reactor = Reactor::with_backend(options.backend)?;
        let local_addr = path.clone().into();
        DatagramServer::serve_socket(reactor, socket, local_addr, Some(unlink), handler, options)
    }
}

/// A server whose reactor carries loop state `D` (what
/// [`Datagram::data`] reaches): build the reactor with
/// [`Reactor::with_data`], then
/// [`from_udp`](DatagramServer::from_udp), as a stream server's
/// [`from_tcp`](super::StreamServer::from_tcp).
impl<H: DatagramHandler<D>, D: 'static> DatagramServer<H, D> {
    /// Serves an already-bound UDP socket (made non-blocking here) on
    /// `reactor` (`options.backend` does not apply: the reactor is built).
    ///
    /// # Errors
    /// Setting `O_NONBLOCK`, reading the socket's address, registering it;
    /// a `max_packet_size` over [`MAX_PACKET_SIZE`].
    pub fn from_udp(
        reactor: Reactor<D>,
        socket: UdpSocket,
        handler: H,
        options: DatagramOptions,
    ) -> io::Result<DatagramServer<H, D>> {
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?.into();
        let socket = Kind::Inet(OwnedFd::from(socket));
        DatagramServer::serve_socket(reactor, socket, local_addr, None, handler, options)
    }

    fn serve_socket(
        mut reactor: Reactor<D>,
        socket: Kind,
        local_addr: ServerAddr,
        unlink: Option<UnlinkOnDrop>,
        handler: H,
        options: DatagramOptions,
    ) -> io::Result<DatagramServer<H, D>> {
        if options.max_packet_size > MAX_PACKET_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "edgeloop: max_packet_size {} is over {MAX_PACKET_SIZE} bytes (the buffer \
                     is allocated up front; a UDP datagram carries at most 65,507)",
                    options.max_packet_size
                ),
            ));
        }
        let handler = Rc::new(RefCell::new(handler));
        let handled = Rc::new(std::cell::Cell::new(0));
        let trigger = options.trigger;
        let socket = Socket {
            socket,
            handler: handler.clone(),
            buffer: vec![0; options.max_packet_size.max(1)],
            options,
            handled: handled.clone(),
        };
        reactor
            .core_mut()
            .register(socket, Interest::READABLE, trigger, |r, socket, event| {
                socket.on_readable(r, event.token);
                PostAction::Continue
            })?;
        let shutdown = ShutdownHandle::new(reactor.core().handle());
        Ok(DatagramServer {
            reactor,
            handler,
            handled,
            local_addr,
            shutdown,
            _unlink: unlink,
        })
    }

    /// The bound address (`127.0.0.1:5353`, a path, or `@name`).
    pub fn local_addr(&self) -> &ServerAddr {
        &self.local_addr
    }

    /// A `Send + Clone` handle that stops this server from anywhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The server's reactor.
    pub fn reactor(&mut self) -> &mut Reactor<D> {
        &mut self.reactor
    }

    /// Runs `f` on the handler.
    pub fn with_handler<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        f(&mut self.handler.borrow_mut())
    }

    /// Serves until [`ShutdownHandle::shutdown`].
    ///
    /// # Errors
    /// What the reactor's wait reports.
    pub fn serve_forever(&mut self) -> io::Result<()> {
        let result = serve_until_shutdown(&mut self.reactor, &self.shutdown);
        self.shutdown.finished();
        result
    }

    /// Serves until one datagram was handled or `timeout` passed; true if
    /// one was.
    ///
    /// # Errors
    /// What the reactor's wait reports.
    pub fn handle_request(&mut self, timeout: Duration) -> io::Result<bool> {
        let before = self.handled.get();
        let handled = &self.handled;
        super::run_until(&mut self.reactor, timeout, |_| handled.get() > before)
    }
}
