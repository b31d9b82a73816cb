//! The selector layer: one trait, one backend per kernel interface.
//!
//! A [`Selector`] keeps the kernel's interest list and turns one wait into a
//! batch of [`Event`]s. It knows nothing about callbacks; that is the
//! reactor's job. [`Epoll`] is the default backend, as `DefaultSelector` is in
//! Python's `selectors`.
//!
//! The selectors are the reactor's backends: [`Reactor::with_selector`]
//! takes one (a test can plug in a fake that wraps a real one), and the
//! [`Token`]s they store come from the reactor, which alone makes them. A
//! program that wants a bare epoll instance without a reactor uses
//! [`edgeloop::nix`](crate::nix)'s.
//!
//! [`Reactor::with_selector`]: crate::Reactor::with_selector

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::libc;

mod epoll;
mod event;
mod fd_table;
mod poll;
mod select;

pub use epoll::Epoll;
pub use event::{Event, Interest, Ready, Token, TokenFactory, Trigger};
pub use poll::Poll;
pub use select::Select;

/// The backend a reactor uses unless told otherwise.
pub type DefaultSelector = Epoll;

/// The three classic backends, by name: what a command line's `--backend`
/// picks.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// [`Epoll`]: cost follows the ready fds; every trigger.
    Epoll,
    /// [`Poll`]: cost follows the watched fds; Level and Oneshot.
    Poll,
    /// [`Select`]: like poll, and fds below 1024 only.
    Select,
}

impl Backend {
    /// All three, in the classic texts' order of appearance reversed.
    pub const ALL: &'static [Backend] = &[Backend::Epoll, Backend::Poll, Backend::Select];

    /// A fresh selector of this kind.
    ///
    /// # Errors
    /// What creating the kernel object reports (epoll only).
    pub fn selector(self) -> io::Result<Box<dyn Selector>> {
        Ok(match self {
            Backend::Epoll => Box::new(Epoll::new()?),
            Backend::Poll => Box::new(Poll::new()),
            Backend::Select => Box::new(Select::new()),
        })
    }

    /// `"epoll"`, `"poll"` or `"select"`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Epoll => "epoll",
            Backend::Poll => "poll",
            Backend::Select => "select",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<Backend> {
        Backend::ALL
            .iter()
            .copied()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unknown backend {s:?}: epoll, poll or select"),
                )
            })
    }
}

/// A batch of readiness events, in the kernel's own layout.
///
/// The epoll backend has `epoll_wait` write straight into this buffer and
/// the reactor reads each event where it lies: no copy, no re-encoding (the
/// poll and select backends append in the same layout). [`Event`]s are
/// decoded on access, which is two loads.
pub struct Events {
    buffer: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    /// An empty batch with room for `capacity` events.
    pub fn with_capacity(capacity: usize) -> Events {
        Events {
            buffer: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            len: 0,
        }
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the wait returned nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`th event, or `None` past [`len`](Events::len).
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<Event> {
        // `len` never exceeds the buffer (`set_len` clamps), so the slice
        // bound check is the only one.
        let raw = *self.buffer.get(..self.len)?.get(i)?;
        Some(Event {
            token: Token::from_word(raw.u64),
            ready: Ready::from_kernel(raw.events),
        })
    }

    /// The events, in the order the kernel reported them.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        (0..self.len).map_while(|i| self.get(i))
    }

    /// Empties the batch (its room is kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends an event (the user-space backends, and fake selectors in
    /// tests), growing the room if it is full.
    pub fn push(&mut self, event: Event) {
        if self.len == self.buffer.len() {
            self.buffer.resize(
                (self.len * 2).max(8),
                libc::epoll_event { events: 0, u64: 0 },
            );
        }
        self.buffer[self.len] = libc::epoll_event {
            events: event.ready.bits(),
            u64: event.token.word(),
        };
        self.len += 1;
    }

    /// Room for the kernel to fill: at least `min` entries.
    pub(crate) fn room(&mut self, min: usize) -> &mut [libc::epoll_event] {
        if self.buffer.len() < min {
            self.buffer
                .resize(min, libc::epoll_event { events: 0, u64: 0 });
        }
        &mut self.buffer
    }

    /// The kernel filled the first `len` entries of [`room`](Events::room).
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len.min(self.buffer.len());
    }

    /// How many events fit before the buffer grows.
    pub fn capacity(&self) -> usize {
        self.buffer.len()
    }
}

/// An empty batch with no room yet (it grows on the first push or wait).
impl Default for Events {
    fn default() -> Events {
        Events {
            buffer: Vec::new(),
            len: 0,
        }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A kernel readiness interface: epoll, poll or select.
///
/// Contract shared by every backend (the conformance tests run against each):
/// - `interest` is never empty here: the reactor keeps an fd with no interest
///   out of the selector entirely.
/// - HUP and ERROR are reported whatever the interest.
/// - `select` clears `events`, then appends what is ready; it returns after
///   at most `timeout` (rounded *up* to the backend's resolution, so a short
///   deadline never turns into a busy loop) and retries `EINTR` against the
///   original deadline.
/// - The fds are borrowed for each call only: a selector keeps fd numbers,
///   and whoever registers an fd keeps it open until it is deregistered
///   (the [`Reactor`](crate::Reactor) does this by owning what it
///   registers).
pub trait Selector {
    /// A short name for logs and reports (`"epoll"`, `"poll"`, `"select"`).
    fn name(&self) -> &'static str;

    /// Whether this backend can deliver `trigger` faithfully.
    fn supports(&self, trigger: Trigger) -> bool;

    /// Whether `register`, `reregister` and `deregister` each cost a syscall
    /// (true for epoll; poll and select only edit user-space tables).
    fn ctl_is_syscall(&self) -> bool;

    /// Adds `fd` to the interest list.
    ///
    /// # Errors
    /// `AlreadyExists` if `fd` is registered already, `PermissionDenied` for
    /// fds the backend cannot watch (regular files under epoll), `Unsupported`
    /// for a trigger the backend cannot deliver, `InvalidInput` for an fd the
    /// backend cannot hold (select: fd >= FD_SETSIZE).
    fn register(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()>;

    /// Changes what `fd` is watched for; re-arms a oneshot registration.
    ///
    /// # Errors
    /// `NotFound` if `fd` is not registered.
    fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()>;

    /// Removes `fd` from the interest list.
    ///
    /// # Errors
    /// `NotFound` if `fd` is not registered.
    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()>;

    /// An fd that is readable whenever a wait would report something, for a
    /// host loop to watch (epoll's own fd); `None` for backends that have
    /// none (poll and select keep their interest list in user space).
    fn pollable_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Waits until something is ready or `timeout` passes (`None`: forever).
    ///
    /// # Errors
    /// Whatever the wait syscall reports other than `EINTR`.
    fn select(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()>;
}

/// Converts a timeout to the whole milliseconds that epoll_wait and poll take,
/// rounding *up*: nix's `Duration` conversion truncates, which turns a 0.5 ms
/// deadline into a zero timeout and a busy loop until the deadline
/// (nix's `EpollTimeout` from a `Duration` truncates too; mio adds
/// 999,999 ns for the same reason). Clamped to
/// `i32::MAX`; `None` is -1, "forever".
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(i32::MAX as u128) as i32
        }
    }
}

/// Runs `wait` until it returns something other than `EINTR`, shrinking the
/// timeout each time so that a signal storm cannot stretch the deadline
/// (signal(7): epoll_wait is never restarted, whatever SA_RESTART says).
pub(crate) fn retry_eintr<T>(
    timeout: Option<Duration>,
    mut wait: impl FnMut(Option<Duration>) -> Result<T, i32>,
) -> Result<T, i32> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut remaining = timeout;
    loop {
        match wait(remaining) {
            Err(libc::EINTR) => {
                if let Some(deadline) = deadline {
                    remaining = Some(deadline.saturating_duration_since(Instant::now()));
                }
            }
            other => return other,
        }
    }
}

/// Poll and select have no exclusive wakeup: refused rather than ignored.
fn refuse_exclusive(backend: &str, interest: Interest) -> io::Result<()> {
    if interest.is_exclusive() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{backend}: Interest::EXCLUSIVE (EPOLLEXCLUSIVE) needs the epoll backend"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_rounds_up_and_clamps() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_micros(300))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1_000_001))), 2);
        assert_eq!(timeout_ms(Some(Duration::from_millis(7))), 7);
        assert_eq!(timeout_ms(Some(Duration::MAX)), i32::MAX);
    }
}
