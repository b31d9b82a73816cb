//! The poll backend: one `poll(2)` call over an array of `pollfd`s.
//!
//! The array is kept between waits: register pushes, deregister
//! swap-removes (a position index per fd makes both O(1)), so the only
//! per-wait cost is the one the classic texts describe, the kernel and this
//! code scanning all N entries. Level-triggered by nature: Oneshot is
//! emulated (an entry leaves the array after it reports, and a reregister
//! puts it back); Edge is refused with `Unsupported`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use nix::libc::{self, pollfd};

use super::fd_table::{FdTable, Slot, not_registered};
use super::{Event, Events, Interest, Ready, Selector, Token, Trigger, retry_eintr, timeout_ms};
use crate::sys;

// The array is plain `libc::pollfd`s: nix's `PollFd::revents` returns None
// when the kernel sets a bit nix does not know (POLLRDHUP), so a half-closed
// fd would look idle.

/// Selector on `poll(2)`. Level and Oneshot; no Edge.
#[derive(Debug, Default)]
pub struct Poll {
    table: FdTable,
    /// Armed registrations, in no particular order.
    pollfds: Vec<pollfd>,
    /// Where each fd's entry sits in `pollfds`.
    position: Vec<u32>,
    /// Oneshot entries that reported in this wait, to disarm after the scan.
    fired: Vec<RawFd>,
}

impl Poll {
    /// An empty poll selector.
    pub fn new() -> Poll {
        Poll::default()
    }

    fn flags(interest: Interest) -> libc::c_short {
        let mut flags = 0;
        if interest.is_readable() {
            flags |= libc::POLLIN | libc::POLLRDHUP;
        }
        if interest.is_writable() {
            flags |= libc::POLLOUT;
        }
        if interest.is_priority() {
            flags |= libc::POLLPRI;
        }
        flags
    }

    fn ready(revents: libc::c_short) -> Ready {
        // POLLNVAL (the fd was closed while registered) reads as an error.
        let nval = if revents & libc::POLLNVAL != 0 {
            Ready::ERROR
        } else {
            Ready::EMPTY
        };
        Ready::from_kernel(revents as u16 as u32) | nval
    }

    fn arm(&mut self, fd: RawFd, interest: Interest) {
        let index = fd as usize;
        if index >= self.position.len() {
            self.position.resize(index + 1, u32::MAX);
        }
        self.position[index] = self.pollfds.len() as u32;
        self.pollfds.push(pollfd {
            fd,
            events: Self::flags(interest),
            revents: 0,
        });
    }

    fn disarm(&mut self, fd: RawFd) {
        let at = self.position[fd as usize] as usize;
        self.pollfds.swap_remove(at);
        if let Some(moved) = self.pollfds.get(at) {
            self.position[moved.fd as usize] = at as u32;
        }
        self.position[fd as usize] = u32::MAX;
    }
}

impl Selector for Poll {
    fn name(&self) -> &'static str {
        "poll"
    }

    fn supports(&self, trigger: Trigger) -> bool {
        trigger != Trigger::Edge
    }

    fn ctl_is_syscall(&self) -> bool {
        false
    }

    fn register(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        super::refuse_exclusive("poll", interest)?;
        let fd = fd.as_raw_fd();
        let slot = Slot::armed(token, interest, trigger);
        self.table.insert("poll", fd, slot)?;
        self.arm(fd, interest);
        Ok(())
    }

    fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        super::refuse_exclusive("poll", interest)?;
        let fd = fd.as_raw_fd();
        let slot = self
            .table
            .get_mut(fd)
            .ok_or_else(|| not_registered("poll", fd))?;
        let was_armed = slot.armed;
        *slot = Slot::armed(token, interest, trigger);
        if was_armed {
            let at = self.position[fd as usize] as usize;
            self.pollfds[at].events = Self::flags(interest);
        } else {
            self.arm(fd, interest);
        }
        Ok(())
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let slot = self.table.remove("poll", fd)?;
        if slot.armed {
            self.disarm(fd);
        }
        Ok(())
    }

    fn select(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let pollfds = &mut self.pollfds;
        let ready = retry_eintr(timeout, |remaining| {
            sys::poll(pollfds, timeout_ms(remaining))
        })
        .map_err(|errno| {
            sys::errno_error(errno, format_args!("poll over {} fds", pollfds.len()))
        })?;
        if ready == 0 {
            return Ok(());
        }
        // The linear scan the classic texts talk about.
        for entry in &self.pollfds {
            if entry.revents == 0 {
                continue;
            }
            let fd = entry.fd;
            let slot = self.table.get(fd).expect("an armed pollfd has a slot");
            events.push(Event {
                token: slot.token,
                ready: Self::ready(entry.revents),
            });
            if slot.trigger == Trigger::Oneshot {
                self.fired.push(fd);
            }
        }
        while let Some(fd) = self.fired.pop() {
            self.table.get_mut(fd).expect("fired fd has a slot").armed = false;
            self.disarm(fd);
        }
        Ok(())
    }
}
