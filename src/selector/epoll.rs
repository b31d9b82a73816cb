//! The epoll backend: `epoll_create1(EPOLL_CLOEXEC)`, `epoll_ctl`,
//! `epoll_wait`, one syscall each, straight into the reactor's event buffer.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::libc;

use super::{Events, Interest, Selector, Token, Trigger, retry_eintr};
use crate::sys;

/// The event buffer holds at least as many events as there are registrations,
/// up to `SIZED_EVENTS` (Python sizes its buffer to the number of
/// registrations), so a turn with every fd ready is one wait; beyond that it
/// doubles whenever a wait fills it, up to `MAX_EVENTS`.
const INITIAL_EVENTS: usize = 64;
const SIZED_EVENTS: usize = 1024;
const MAX_EVENTS: usize = 65_536;

/// Selector on Linux epoll. Supports every [`Trigger`].
///
/// The epoll fd itself is pollable ([`AsFd`]): readable while any
/// registration is ready, so a reactor can sit inside another loop.
#[derive(Debug)]
pub struct Epoll {
    epoll: OwnedFd,
    registered: usize,
}

impl Epoll {
    /// Creates an epoll instance (close-on-exec).
    ///
    /// # Errors
    /// `EMFILE`/`ENFILE` when the process or system is out of fds.
    pub fn new() -> io::Result<Epoll> {
        Ok(Epoll {
            epoll: sys::epoll_create()?,
            registered: 0,
        })
    }

    fn flags(interest: Interest, trigger: Trigger) -> u32 {
        let mut flags = 0;
        if interest.is_readable() {
            // RDHUP tells a half-close apart from "more data" without a read
            // (not with EXCLUSIVE, which the kernel accepts only with IN,
            // OUT, WAKEUP and ET).
            flags |= libc::EPOLLIN;
            if !interest.is_exclusive() {
                flags |= libc::EPOLLRDHUP;
            }
        }
        if interest.is_writable() {
            flags |= libc::EPOLLOUT;
        }
        if interest.is_priority() && !interest.is_exclusive() {
            flags |= libc::EPOLLPRI;
        }
        if interest.is_exclusive() {
            flags |= libc::EPOLLEXCLUSIVE;
        }
        match trigger {
            Trigger::Level => {}
            Trigger::Edge => flags |= libc::EPOLLET,
            Trigger::Oneshot => flags |= libc::EPOLLONESHOT,
        }
        flags as u32
    }

    fn ctl(&self, op: libc::c_int, fd: BorrowedFd<'_>, token: Token, flags: u32) -> io::Result<()> {
        sys::epoll_ctl(self.epoll.as_fd(), op, fd, flags, token.word()).map_err(|errno| {
            let name = match op {
                libc::EPOLL_CTL_ADD => "ADD",
                libc::EPOLL_CTL_MOD => "MOD",
                _ => "DEL",
            };
            let hint = match errno {
                libc::EEXIST => "; the fd is registered already",
                libc::ENOENT => "; the fd is not registered",
                libc::EPERM => "; epoll cannot watch regular files or directories (always ready)",
                libc::ENOSPC => "; /proc/sys/fs/epoll/max_user_watches reached",
                _ => "",
            };
            let context = format_args!("epoll_ctl({name}, fd {})", fd.as_raw_fd());
            sys::errno_error_hint(errno, context, hint)
        })
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
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

    fn pollable_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.epoll.as_fd())
    }

    fn register(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        debug_assert!(
            !interest.is_empty(),
            "the reactor never registers an empty interest"
        );
        self.ctl(
            libc::EPOLL_CTL_ADD,
            fd,
            token,
            Self::flags(interest, trigger),
        )?;
        self.registered += 1;
        Ok(())
    }

    fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_MOD,
            fd,
            token,
            Self::flags(interest, trigger),
        )
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, Token::from_word(0), 0)?;
        self.registered = self.registered.saturating_sub(1);
        Ok(())
    }

    fn select(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let sized = self.registered.clamp(INITIAL_EVENTS, SIZED_EVENTS);
        let epoll = self.epoll.as_fd();
        let room = events.room(sized);
        let n = retry_eintr(timeout, |remaining| sys::epoll_wait(epoll, room, remaining)).map_err(
            |errno| {
                sys::errno_error(
                    errno,
                    format_args!("epoll_wait on fd {}", epoll.as_raw_fd()),
                )
            },
        )?;
        let full = n == room.len();
        events.set_len(n);
        if full && n < MAX_EVENTS {
            events.room(n * 2);
        }
        Ok(())
    }
}
