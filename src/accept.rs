//! The listener's accept path: `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)` in
//! bounded batches, transient errors survived, and no spin at the fd limit.
//!
//! At `EMFILE`/`ENFILE` a level-triggered listener stays readable forever
//! (DESIGN.md K14): every wakeup fails the same accept, at 100 % CPU, and
//! nothing is served (RELIABILITY.md item 1). The answer here is libuv's and
//! nginx's reserve fd: one spare fd is held open; at the limit it is closed,
//! the waiting clients are accepted and closed at once (they read EOF rather
//! than hang in the backlog), and the spare is reopened. If even that fails
//! (another thread took the slot), accept interest is paused for
//! `PAUSE_ON_EXHAUSTION`, as nginx and asyncio do.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{SockFlag, accept4};

use crate::Reactor;
use crate::event::{Interest, Ready, Token, Trigger};

/// How long accept interest is paused when the reserve fd cannot be
/// reopened.
const PAUSE_ON_EXHAUSTION: Duration = Duration::from_millis(100);
/// Accept errors are logged at most this often.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Options for [`listen`].
#[derive(Clone, Copy, Debug)]
pub struct AcceptOptions {
    /// Level or Edge for the listener.
    pub trigger: Trigger,
    /// Connections accepted per event at most, so a connect storm cannot
    /// starve established connections (RELIABILITY.md item 3). Under Edge a
    /// batch that ends before `EAGAIN` requeues the listener.
    pub batch: usize,
}

impl Default for AcceptOptions {
    fn default() -> AcceptOptions {
        AcceptOptions {
            trigger: Trigger::Level,
            batch: 64,
        }
    }
}

struct Acceptor<F> {
    listener: OwnedFd,
    reserve: Option<File>,
    options: AcceptOptions,
    last_log: Option<Instant>,
    on_accept: F,
}

/// Registers a listening socket; `on_accept` gets each accepted connection,
/// non-blocking and close-on-exec. Returns the listener's token: deregister
/// it to stop accepting (which also closes the listener).
///
/// # Errors
/// What registering the listener reports, or `EMFILE` if the reserve fd
/// cannot be opened.
pub fn listen<F>(
    reactor: &mut Reactor,
    listener: OwnedFd,
    options: AcceptOptions,
    on_accept: F,
) -> io::Result<Token>
where
    F: FnMut(&mut Reactor, OwnedFd) + 'static,
{
    let fd = listener.as_raw_fd();
    let mut acceptor = Acceptor {
        listener,
        reserve: Some(open_reserve()?),
        options,
        last_log: None,
        on_accept,
    };
    reactor.register(fd, Interest::READABLE, options.trigger, move |r, event| {
        acceptor.accept_batch(r, event.token)
    })
}

fn open_reserve() -> io::Result<File> {
    File::open("/dev/null")
        .map_err(|e| io::Error::new(e.kind(), format!("opening the reserve fd: {e}")))
}

impl<F: FnMut(&mut Reactor, OwnedFd)> Acceptor<F> {
    fn accept_batch(&mut self, reactor: &mut Reactor, token: Token) {
        let fd = self.listener.as_raw_fd();
        let mut accepted = 0;
        while accepted < self.options.batch {
            match accept(fd) {
                Ok(conn) => {
                    accepted += 1;
                    reactor.stats_mut().accepts += 1;
                    (self.on_accept)(reactor, conn);
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                Err(e @ (Errno::EMFILE | Errno::ENFILE)) => {
                    reactor.stats_mut().accept_errors += 1;
                    let shed = self.shed(fd);
                    self.log(&format!(
                        "accept on fd {fd}: {e}; closed {shed} waiting connection(s) to stay responsive"
                    ));
                    if self.reserve.is_none() {
                        self.pause(reactor, token);
                    }
                    return;
                }
                Err(e) => {
                    // ECONNABORTED, EPROTO, EPERM (firewall), ENOBUFS, ENOMEM:
                    // about one connection or a passing shortage, never a
                    // reason to stop listening (RELIABILITY.md item 2).
                    reactor.stats_mut().accept_errors += 1;
                    self.log(&format!(
                        "accept on fd {fd}: {e} (the listener keeps going)"
                    ));
                    accepted += 1;
                }
            }
        }
        if self.options.trigger == Trigger::Edge {
            reactor.requeue(token, Ready::READABLE);
        }
    }

    /// Out of fds: give the reserve back, accept and close what is waiting,
    /// take the reserve again. Returns how many clients were turned away.
    fn shed(&mut self, fd: RawFd) -> usize {
        self.reserve = None;
        let mut shed = 0;
        while let Ok(conn) = accept(fd) {
            drop(conn);
            shed += 1;
        }
        self.reserve = open_reserve().ok();
        shed
    }

    /// The reserve could not be reopened: stop accepting for a while.
    fn pause(&mut self, reactor: &mut Reactor, token: Token) {
        let trigger = self.options.trigger;
        if reactor.modify(token, Interest::NONE, trigger).is_ok() {
            reactor.call_later(PAUSE_ON_EXHAUSTION, move |r| {
                let _ = r.modify(token, Interest::READABLE, trigger);
            });
        }
        self.reserve = open_reserve().ok();
    }

    fn log(&mut self, message: &str) {
        let now = Instant::now();
        if self.last_log.is_none_or(|t| now - t >= LOG_INTERVAL) {
            self.last_log = Some(now);
            log::warn!("{message}");
        }
    }
}

fn accept(listener: RawFd) -> Result<OwnedFd, Errno> {
    let fd = accept4(listener, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC)?;
    // SAFETY: accept4 just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
