//! Creating listening sockets the way a server needs them: non-blocking,
//! close-on-exec, `SO_REUSEADDR`, optionally `SO_REUSEPORT`, and a backlog
//! that defaults to the system's `somaxconn` rather than a hard-coded 128
//! (failure mode 5 in docs/failure-modes.md).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt,
    sockopt,
};

/// The kernel's cap on a listen backlog (`/proc/sys/net/core/somaxconn`), or
/// 4096 if it cannot be read.
pub fn somaxconn() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

/// A non-blocking, close-on-exec TCP listener on `addr`.
///
/// `backlog`: `None` means [`somaxconn`]. `reuse_port` sets `SO_REUSEPORT`,
/// so several listeners (one per reactor thread) can share the address and
/// the kernel spreads connections over them.
///
/// # Errors
/// `AddrInUse` and friends, with the address in the message.
///
/// ```
/// let listener = edgeloop::server::net::tcp_listener("127.0.0.1:0".parse().unwrap(), None, false)?;
/// assert_ne!(listener.local_addr()?.port(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn tcp_listener(
    addr: SocketAddr,
    backlog: Option<i32>,
    reuse_port: bool,
) -> io::Result<TcpListener> {
    let context = |what: &str, e: nix::Error| in_context(addr, what, e);
    let fd = socket_for(addr, SockFlag::SOCK_NONBLOCK, reuse_port)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| context("bind", e))?;
    let backlog =
        Backlog::new(backlog.unwrap_or_else(somaxconn).max(1)).unwrap_or(Backlog::MAXCONN);
    listen(&fd, backlog).map_err(|e| context("listen on", e))?;
    Ok(TcpListener::from(fd))
}

/// Refuses `addr` if a socket listens there already, before a group of
/// `SO_REUSEPORT` listeners binds it. `SO_REUSEPORT` lets any socket of the
/// same user that sets it join the group, and the kernel then splits the
/// connections between strangers; a probe without it fails with
/// `EADDRINUSE` against any listener, ours or not. Port 0 picks a free
/// port, so it is never taken. What this cannot stop: a program that binds
/// with `SO_REUSEPORT` after the group has started.
///
/// # Errors
/// `AddrInUse`, naming the address, if something listens there.
pub(crate) fn refuse_if_taken(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = socket_for(addr, SockFlag::empty(), false)?;
    match bind(probe.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EADDRINUSE) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "edgeloop: another socket listens on {addr}; a group of SO_REUSEPORT listeners \
                 would share its connections with it, so edgeloop refuses (stop it, or pick \
                 another port)"
            ),
        )),
        Err(e) => Err(in_context(addr, "bind (probe)", e)),
    }
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
    crate::sys::errno_error(e as i32, format_args!("{what} {addr}"))
}
