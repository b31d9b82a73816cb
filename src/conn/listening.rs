//! Listening sockets the way a connection set needs them: non-blocking,
//! close-on-exec, `SO_REUSEADDR`, optionally `SO_REUSEPORT`, and a backlog
//! that defaults to the system's `somaxconn` rather than a hard-coded 128
//! (the kernel caps the accept queue at the smaller of the two; a full
//! queue drops the handshake's last ACK and clients wait out a
//! retransmission).

use std::io;
use std::net::{SocketAddr, TcpListener};

use crate::sys;

/// The kernel's cap on a listen backlog (`/proc/sys/net/core/somaxconn`), or
/// 4096 if it cannot be read.
pub fn somaxconn() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

/// A non-blocking, close-on-exec TCP listener on `addr`, ready for
/// [`Connections::listen`](super::Connections::listen).
///
/// `backlog`: `None` means [`somaxconn`]. `reuse_port` sets `SO_REUSEPORT`,
/// so several listeners (one per reactor thread) can share the address and
/// the kernel spreads connections over them.
///
/// # Errors
/// `AddrInUse` and friends, with the address in the message.
///
/// ```
/// let listener = edgeloop::conn::tcp_listener("127.0.0.1:0".parse().unwrap(), None, false)?;
/// assert_ne!(listener.local_addr()?.port(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn tcp_listener(
    addr: SocketAddr,
    backlog: Option<i32>,
    reuse_port: bool,
) -> io::Result<TcpListener> {
    let backlog = backlog.unwrap_or_else(somaxconn);
    sys::tcp_listener(addr, backlog, reuse_port).map(TcpListener::from)
}
