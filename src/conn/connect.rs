//! Outbound connections: a non-blocking `connect` whose completion is a
//! writable event with `SO_ERROR` checked, optionally from a chosen local
//! address, with a timeout. A connected socket becomes an ordinary
//! connection of the set (same handler, same buffers); a failed one is
//! reported once, through [`Handler::on_connect_failed`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::libc;

use super::set::Connections;
use super::state::Phase;
use super::table::TIMER_CONNECT;
use super::{CloseReason, ConnId, Handler};
use crate::sys::{self, errno_error};
use crate::{Core, Interest, Ready, Trigger};

/// How [`Connections::connect`] opens a connection.
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

impl<H: Handler<D>, D: 'static> Connections<H, D> {
    /// Opens a TCP connection to `addr` without blocking. Returns its id at
    /// once; when it is established the handler's
    /// [`on_open`](Handler::on_open) runs, as for an accepted connection,
    /// and if it fails later (refused, unreachable, timed out)
    /// [`on_connect_failed`](Handler::on_connect_failed) runs instead,
    /// once. Writes made before it is established are queued.
    ///
    /// # Errors
    /// What fails at once: the socket, the local bind (`AddrInUse` when
    /// the source address has no port left), a connect refused before it
    /// started, registering. No callback runs then.
    pub fn connect(
        &mut self,
        core: &mut Core<D>,
        addr: SocketAddr,
        options: ConnectOptions,
    ) -> io::Result<ConnId> {
        let family = if addr.is_ipv4() {
            sys::Family::Ipv4
        } else {
            sys::Family::Ipv6
        };
        let fd = sys::stream_socket(family)?;
        if let Some(ip) = options.local_ip {
            sys::bind_source(fd.as_fd(), ip, addr)?;
        }
        let result = sys::connect(fd.as_fd(), addr);
        self.connecting(core, fd, result, &addr, options.timeout)
    }

    /// Opens a Unix stream connection to `path`, as [`connect`](Connections::connect)
    /// does for TCP (`local_ip` does not apply).
    ///
    /// # Errors
    /// As [`connect`](Connections::connect); a path too long for
    /// `sun_path`; `ConnectionRefused` if nobody listens there.
    pub fn connect_unix(
        &mut self,
        core: &mut Core<D>,
        path: &Path,
        options: ConnectOptions,
    ) -> io::Result<ConnId> {
        let fd = sys::stream_socket(sys::Family::Unix)?;
        let result = sys::connect_unix(fd.as_fd(), path)?;
        self.connecting(core, fd, result, &path.display(), options.timeout)
    }

    /// Registers a socket whose `connect` returned `result`.
    fn connecting(
        &mut self,
        core: &mut Core<D>,
        fd: OwnedFd,
        result: sys::SysResult<()>,
        target: &dyn std::fmt::Display,
        timeout: Option<Duration>,
    ) -> io::Result<ConnId> {
        match result {
            // Established at once (a Unix socket, usually): an ordinary
            // connection.
            Ok(()) => {
                self.table.stats.connects += 1;
                self.attach_nonblocking(core, fd)
            }
            Err(libc::EINPROGRESS | libc::EAGAIN | libc::EINTR) => {
                // The completion is a writable event (or HUP/ERR).
                let interest = match self.table.options.trigger {
                    Trigger::Edge => Interest::BOTH,
                    _ => Interest::WRITABLE,
                };
                let key = self.table.insert(core, fd, interest, Phase::Connecting)?;
                let token = self.table.token(key);
                if let Some(timeout) = timeout {
                    core.source_timer(timeout, token, TIMER_CONNECT);
                }
                log::debug!("connecting {:?} to {target}", ConnId(token));
                Ok(ConnId(token))
            }
            Err(e) => Err(errno_error(e, format_args!("connect to {target}"))),
        }
    }

    /// An event for a connection still connecting: established, failed, or
    /// (a spurious wakeup) still in progress.
    #[cold]
    #[inline(never)]
    pub(super) fn finish_connect(&mut self, core: &mut Core<D>, key: usize, ready: Ready) {
        if !(ready.is_writable() || ready.is_error() || ready.is_hup()) {
            return;
        }
        let fd = self.table.get(key).fd.as_fd();
        let error = match sys::take_error(fd) {
            Ok(0) if ready.is_hup() && !ready.is_writable() => {
                Some(io::Error::from(io::ErrorKind::ConnectionRefused))
            }
            Ok(0) => None,
            Ok(errno) => Some(io::Error::from_raw_os_error(errno)),
            Err(e) => Some(e),
        };
        match error {
            Some(error) => self.table.doom(key, CloseReason::Error(error)),
            None => self.established(core, key),
        }
    }

    /// The connection is up: from here on it is like an accepted one.
    fn established(&mut self, core: &mut Core<D>, key: usize) {
        let state = &mut self.table.get_mut(key).state;
        state.phase = match state.phase {
            Phase::ConnectingThenShut => Phase::ShutAfterFlush,
            _ => Phase::Open,
        };
        self.table.stats.connects += 1;
        self.table.update_interest(core, key);
        let id = self.table.id(key);
        log::debug!("connected {id:?}");
        self.table.opened_stamp(core, key);
        self.opened(core, key);
        if let Some(key) = self.table.live(id) {
            if self.table.get(key).queued() > 0 {
                // Written while connecting.
                self.table.flush(core, key);
            } else {
                // A shutdown asked while connecting, with nothing to send.
                self.table.after_flush(key);
            }
            if self.table.options.trigger == Trigger::Edge {
                // Data that came with the connection raised its edge before
                // we read: look once.
                core.requeue(self.table.token(key), Ready::READABLE);
            }
        }
    }

    /// The connect timer fired: give up if it is still connecting.
    pub(super) fn connect_timed_out(&mut self, key: usize) {
        if self.table.get(key).state.phase.is_connecting() {
            let error = io::Error::new(io::ErrorKind::TimedOut, "edgeloop: connect timed out");
            self.table.doom(key, CloseReason::Error(error));
        }
    }
}
