//! The one check a group of `SO_REUSEPORT` listeners needs before it
//! binds (the listening sockets themselves are
//! [`conn::tcp_listener`](crate::conn::tcp_listener)'s).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{SockFlag, SockaddrStorage, bind};

use crate::sys::{in_context, socket_for};

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
