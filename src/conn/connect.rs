//! Outbound connections: a non-blocking `connect` whose completion is a
//! writable event with `SO_ERROR` checked, optionally from a chosen local
//! address, with a timeout. A connected socket becomes an ordinary
//! connection of the set (same handler, same buffers); a failed one is
//! reported once, through
//! [`Handler::on_connect_failed`](super::Handler::on_connect_failed). This
//! module opens the socket and reads the outcome; the set registers it and
//! the table keeps its phase.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::libc;

use crate::Ready;
use crate::sys::{self, errno_error};

/// How [`Connections::connect`](super::Connections::connect) opens a connection.
///
/// ```
/// use edgeloop::conn::ConnectOptions;
/// use std::time::Duration;
///
/// // From 127.0.0.2 (a second source address doubles the ephemeral
/// // ports), giving up after 3 s.
/// let options = ConnectOptions::default()
///     .with_local_ip(Some("127.0.0.2".parse().unwrap()))
///     .with_timeout(Some(Duration::from_secs(3)));
/// # let _ = options;
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The local address to connect from (TCP only); the port is still the
    /// kernel's pick. Bound with `IP_BIND_ADDRESS_NO_PORT`, so the port is
    /// chosen at connect time for the full 4-tuple, and many source
    /// addresses each get the whole ephemeral range.
    pub local_ip: Option<IpAddr>,
    /// Give up (with `TimedOut`) if the connection is not established by
    /// then. Default 10 s; `None`: wait for the kernel (about 2 minutes of
    /// SYN retries).
    pub timeout: Option<Duration>,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            local_ip: None,
            timeout: Some(Duration::from_secs(10)),
        }
    }
}

impl ConnectOptions {
    /// Sets [`local_ip`](ConnectOptions::local_ip).
    #[must_use]
    pub fn with_local_ip(mut self, ip: Option<IpAddr>) -> ConnectOptions {
        self.local_ip = ip;
        self
    }

    /// Sets [`timeout`](ConnectOptions::timeout).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> ConnectOptions {
        self.timeout = timeout;
        self
    }
}

/// How an outbound `connect` started.
pub(super) enum Started {
    /// Established at once (a Unix socket, usually).
    Connected,
    /// Under way: its completion is a writable event (or HUP/ERR).
    InProgress,
}

/// Where an outbound connection goes.
#[derive(Copy, Clone, Debug)]
pub(super) enum Target<'a> {
    Tcp(SocketAddr),
    Unix(&'a Path),
}

impl Target<'_> {
    /// A non-blocking socket with its `connect` to the target started;
    /// TCP from the options' source address.
    pub(super) fn open(self, options: &ConnectOptions) -> io::Result<(OwnedFd, Started)> {
        match self {
            Target::Tcp(addr) => {
                let family = if addr.is_ipv4() {
                    sys::Family::Ipv4
                } else {
                    sys::Family::Ipv6
                };
                let fd = sys::stream_socket(family)?;
                if let Some(ip) = options.local_ip {
                    sys::bind_source(fd.as_fd(), ip, addr)?;
                }
                let started = started(sys::connect(fd.as_fd(), addr), &addr)?;
                Ok((fd, started))
            }
            Target::Unix(path) => {
                let fd = sys::stream_socket(sys::Family::Unix)?;
                let started = started(sys::connect_unix(fd.as_fd(), path)?, &path.display())?;
                Ok((fd, started))
            }
        }
    }
}

fn started(result: sys::SysResult<()>, target: &dyn std::fmt::Display) -> io::Result<Started> {
    match result {
        Ok(()) => Ok(Started::Connected),
        Err(libc::EINPROGRESS | libc::EAGAIN | libc::EINTR) => Ok(Started::InProgress),
        Err(e) => Err(errno_error(e, format_args!("connect to {target}"))),
    }
}

/// What the event for a connecting socket says.
pub(super) fn outcome(fd: BorrowedFd<'_>, ready: Ready) -> Outcome {
    if !(ready.is_writable() || ready.is_error() || ready.is_hup()) {
        return Outcome::Pending;
    }
    match sys::take_error(fd) {
        Ok(0) if ready.is_hup() && !ready.is_writable() => {
            Outcome::Failed(io::Error::from(io::ErrorKind::ConnectionRefused))
        }
        Ok(0) => Outcome::Established,
        Ok(errno) => Outcome::Failed(io::Error::from_raw_os_error(errno)),
        Err(e) => Outcome::Failed(e),
    }
}

/// How a connect in progress stands after an event.
pub(super) enum Outcome {
    /// A spurious wakeup: still in progress.
    Pending,
    Established,
    Failed(io::Error),
}
