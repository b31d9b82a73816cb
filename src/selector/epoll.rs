//! The epoll backend: `epoll_create1(EPOLL_CLOEXEC)`, `epoll_ctl`,
//! `epoll_wait`, one syscall each.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll as EpollFd, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::{Selector, retry_eintr, timeout_ms};
use crate::event::{Event, Interest, Ready, Token, Trigger};
use crate::sys::borrow_fd;

/// The event buffer holds at least as many events as there are registrations,
/// up to `SIZED_EVENTS` (Python sizes its buffer to the number of
/// registrations), so a turn with every fd ready is one wait; beyond that it
/// doubles whenever a wait fills it, up to `MAX_EVENTS`.
const INITIAL_EVENTS: usize = 64;
const SIZED_EVENTS: usize = 1024;
const MAX_EVENTS: usize = 65_536;

/// Selector on Linux epoll. Supports every [`Trigger`].
#[derive(Debug)]
pub struct Epoll {
    epoll: EpollFd,
    buffer: Vec<EpollEvent>,
    registered: usize,
}

impl Epoll {
    /// Creates an epoll instance (close-on-exec).
    ///
    /// # Errors
    /// `EMFILE`/`ENFILE` when the process or system is out of fds.
    pub fn new() -> io::Result<Epoll> {
        let epoll = EpollFd::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("epoll_create1: {e}"))
        })?;
        Ok(Epoll {
            epoll,
            buffer: vec![EpollEvent::empty(); INITIAL_EVENTS],
            registered: 0,
        })
    }

    fn flags(interest: Interest, trigger: Trigger) -> EpollFlags {
        let mut flags = EpollFlags::empty();
        if interest.is_readable() {
            // RDHUP tells a half-close apart from "more data" without a read.
            flags |= EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        }
        if interest.is_writable() {
            flags |= EpollFlags::EPOLLOUT;
        }
        match trigger {
            Trigger::Level => {}
            Trigger::Edge => flags |= EpollFlags::EPOLLET,
            Trigger::Oneshot => flags |= EpollFlags::EPOLLONESHOT,
        }
        flags
    }

    fn ready(flags: EpollFlags) -> Ready {
        let mut ready = Ready::EMPTY;
        // EPOLLPRI is never subscribed and never folded into readable: urgent
        // data is not data a read() returns.
        if flags.contains(EpollFlags::EPOLLIN) {
            ready |= Ready::READABLE;
        }
        if flags.contains(EpollFlags::EPOLLOUT) {
            ready |= Ready::WRITABLE;
        }
        if flags.contains(EpollFlags::EPOLLRDHUP) {
            ready |= Ready::READ_CLOSED;
        }
        if flags.contains(EpollFlags::EPOLLHUP) {
            ready |= Ready::HUP;
        }
        if flags.contains(EpollFlags::EPOLLERR) {
            ready |= Ready::ERROR;
        }
        ready
    }

    fn ctl_error(op: &str, fd: RawFd, errno: Errno) -> io::Error {
        let hint = match errno {
            Errno::EEXIST => "; the fd is registered already",
            Errno::ENOENT => "; the fd is not registered",
            Errno::EPERM => "; epoll cannot watch regular files or directories (always ready)",
            Errno::EBADF => "; the fd is closed (deregister before close)",
            Errno::ENOSPC => "; /proc/sys/fs/epoll/max_user_watches reached",
            _ => "",
        };
        io::Error::new(
            io::Error::from(errno).kind(),
            format!("epoll_ctl({op}, fd {fd}): {errno}{hint}"),
        )
    }
}

impl Selector for Epoll {
    fn name(&self) -> &'static str {
        "epoll"
    }

    fn supports(&self, _trigger: Trigger) -> bool {
        true
    }

    fn ctl_is_syscall(&self) -> bool {
        true
    }

    fn register(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        debug_assert!(
            !interest.is_empty(),
            "the reactor never registers an empty interest"
        );
        let event = EpollEvent::new(Self::flags(interest, trigger), token.0);
        self.epoll
            .add(borrow_fd(fd), event)
            .map_err(|e| Self::ctl_error("ADD", fd, e))?;
        self.registered += 1;
        Ok(())
    }

    fn reregister(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        let mut event = EpollEvent::new(Self::flags(interest, trigger), token.0);
        self.epoll
            .modify(borrow_fd(fd), &mut event)
            .map_err(|e| Self::ctl_error("MOD", fd, e))
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let result = self.epoll.delete(borrow_fd(fd));
        // EBADF: the fd was closed first, and the kernel forgot it with it
        // (unless a dup lives on, which is the caller's bug): count it gone.
        if matches!(result, Ok(()) | Err(Errno::EBADF)) {
            self.registered = self.registered.saturating_sub(1);
        }
        result.map_err(|e| Self::ctl_error("DEL", fd, e))
    }

    fn select(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let sized = self.registered.clamp(INITIAL_EVENTS, SIZED_EVENTS);
        if self.buffer.len() < sized {
            self.buffer.resize(sized, EpollEvent::empty());
        }
        let buffer = &mut self.buffer;
        let epoll = &self.epoll;
        let n = retry_eintr(timeout, |remaining| {
            let ms = EpollTimeout::try_from(timeout_ms(remaining)).unwrap_or(EpollTimeout::NONE);
            epoll.wait(buffer, ms).map_err(io::Error::from)
        })
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("epoll_wait on fd {}: {e}", self.epoll.0.as_raw_fd()),
            )
        })?;
        events.extend(self.buffer[..n].iter().map(|ev| Event {
            token: Token(ev.data()),
            ready: Self::ready(ev.events()),
        }));
        if n == self.buffer.len() && n < MAX_EVENTS {
            self.buffer.resize(n * 2, EpollEvent::empty());
        }
        Ok(())
    }
}
