//! The socket calls of the connection layer beyond the hot path: a
//! listening TCP socket, a non-blocking stream socket for an outbound
//! connection, binding it to a source address, connecting, the pending
//! error, and shutting the write side down.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, UnixAddr, setsockopt,
    sockopt,
};

use super::{SysResult, errno_error};

/// The address families of an outbound stream connection.
#[derive(Copy, Clone, Debug)]
pub(crate) enum Family {
    Ipv4,
    Ipv6,
    Unix,
}

/// `socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC)`.
pub(crate) fn stream_socket(family: Family) -> io::Result<OwnedFd> {
    let family = match family {
        Family::Ipv4 => AddressFamily::Inet,
        Family::Ipv6 => AddressFamily::Inet6,
        Family::Unix => AddressFamily::Unix,
    };
    socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| errno_error(e as i32, "socket for an outbound connection"))
}

/// A non-blocking, close-on-exec TCP socket listening on `addr` with
/// `backlog`, `SO_REUSEADDR` set (and `SO_REUSEPORT` if asked).
pub(crate) fn tcp_listener(
    addr: SocketAddr,
    backlog: i32,
    reuse_port: bool,
) -> io::Result<OwnedFd> {
    let context = |what: &str, e: nix::Error| in_context(addr, what, e);
    let fd = socket_for(addr, SockFlag::SOCK_NONBLOCK, reuse_port)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| context("bind", e))?;
    let backlog = Backlog::new(backlog.max(1)).unwrap_or(Backlog::MAXCONN);
    socket::listen(&fd, backlog).map_err(|e| context("listen on", e))?;
    Ok(fd)
}

/// A close-on-exec TCP socket (plus `flags`) for `addr`'s family, with
/// `SO_REUSEADDR`, and `SO_REUSEPORT` if asked; not bound yet.
pub(crate) fn socket_for(
    addr: SocketAddr,
    flags: SockFlag,
    reuse_port: bool,
) -> io::Result<OwnedFd> {
    let context = |what: &str, e: nix::Error| in_context(addr, what, e);
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(
        family,
        SockType::Stream,
        flags | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| context("socket for", e))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| context("SO_REUSEADDR on", e))?;
    if reuse_port {
        setsockopt(&fd, sockopt::ReusePort, &true).map_err(|e| context("SO_REUSEPORT on", e))?;
    }
    Ok(fd)
}

/// `e` from `what` on `addr`, as an error that names both.
pub(crate) fn in_context(addr: SocketAddr, what: &str, e: nix::Error) -> io::Error {
    errno_error(e as i32, format_args!("{what} {addr}"))
}

/// Binds `fd` to `ip` with the port left to `connect`
/// (`IP_BIND_ADDRESS_NO_PORT`: the port is chosen per destination, so one
/// source address serves the whole ephemeral range to each).
pub(crate) fn bind_source(fd: BorrowedFd<'_>, ip: IpAddr, target: SocketAddr) -> io::Result<()> {
    setsockopt(&fd, sockopt::IpBindAddressNoPort, &true)
        .map_err(|e| errno_error(e as i32, format_args!("IP_BIND_ADDRESS_NO_PORT for {ip}")))?;
    let local = SockaddrStorage::from(SocketAddr::new(ip, 0));
    socket::bind(fd.as_raw_fd(), &local)
        .map_err(|e| errno_error(e as i32, format_args!("bind {ip} to connect to {target}")))
}

/// `connect(fd, addr)`; the errno on failure (`EINPROGRESS` for a
/// non-blocking socket on its way).
pub(crate) fn connect(fd: BorrowedFd<'_>, addr: SocketAddr) -> SysResult<()> {
    socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| e as i32)
}

/// `connect(fd, path)` for a Unix stream socket; the errno on failure.
///
/// # Errors
/// A path too long for `sun_path` is refused before any call.
pub(crate) fn connect_unix(fd: BorrowedFd<'_>, path: &Path) -> io::Result<SysResult<()>> {
    let addr = UnixAddr::new(path)
        .map_err(|e| errno_error(e as i32, format_args!("unix address {}", path.display())))?;
    Ok(socket::connect(fd.as_raw_fd(), &addr).map_err(|e| e as i32))
}

/// The socket's pending error (`SO_ERROR`, which reading clears): 0 if
/// none.
pub(crate) fn take_error(fd: BorrowedFd<'_>) -> io::Result<i32> {
    socket::getsockopt(&fd, sockopt::SocketError).map_err(|e| {
        errno_error(
            e as i32,
            format_args!("getsockopt(SO_ERROR) on fd {}", fd.as_raw_fd()),
        )
    })
}

/// `shutdown(fd, SHUT_WR)`: our FIN goes out after what the socket holds.
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    socket::shutdown(fd.as_raw_fd(), socket::Shutdown::Write).map_err(|e| {
        errno_error(
            e as i32,
            format_args!("shutdown(SHUT_WR) on fd {}", fd.as_raw_fd()),
        )
    })
}

/// True if `fd` is a TCP socket (IPv4 or IPv6).
pub(crate) fn is_tcp(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::socket::SockaddrLike;
    socket::getsockname::<SockaddrStorage>(fd.as_raw_fd()).is_ok_and(|addr| {
        matches!(
            addr.family(),
            Some(AddressFamily::Inet | AddressFamily::Inet6)
        )
    })
}

/// `setsockopt(TCP_NODELAY, 1)`: small writes go out at once, not held
/// for the peer's ACK of earlier ones (Nagle's algorithm). A refusal is
/// logged, not returned: the connection works either way.
pub(crate) fn set_nodelay(fd: BorrowedFd<'_>) {
    if let Err(e) = setsockopt(&fd, sockopt::TcpNoDelay, &true) {
        log::debug!("TCP_NODELAY on fd {}: {e}", fd.as_raw_fd());
    }
}

/// `SO_LINGER {on, 0}`: the close that follows resets the connection (a
/// TCP peer gets an RST, not a FIN), so a stream cut short cannot be
/// mistaken for a complete one. A refusal is logged: the close goes on.
pub(crate) fn set_linger_zero(fd: BorrowedFd<'_>) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    if let Err(e) = setsockopt(&fd, sockopt::Linger, &linger) {
        log::debug!("SO_LINGER 0 on fd {}: {e}", fd.as_raw_fd());
    }
}
