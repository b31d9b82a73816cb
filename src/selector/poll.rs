//! The poll backend: one `poll(2)` call over an array of `pollfd`s.
//!
//! The array is kept between waits: register pushes, deregister
//! swap-removes (a position index per fd makes both O(1)), so the only
//! per-wait cost is the one the classic texts describe, the kernel and this
//! code scanning all N entries. Level-triggered by nature: Oneshot is
//! emulated (an entry leaves the array after it reports, and a reregister
//! puts it back); Edge is refused with `Unsupported`.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::libc::{self, pollfd};
use nix::poll::PollFlags;

use super::fd_table::{FdTable, Slot, not_registered};
use super::{Selector, retry_eintr, timeout_ms};
use crate::event::{Event, Interest, Ready, Token, Trigger};

// nix's PollFlags has no POLLRDHUP, and its `PollFd::revents` returns None
// when the kernel sets a bit it does not know, so a half-closed fd would
// look idle. The array is therefore plain `libc::pollfd`s.
const POLLRDHUP: PollFlags = PollFlags::from_bits_retain(libc::POLLRDHUP);

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

    fn flags(interest: Interest) -> PollFlags {
        let mut flags = PollFlags::empty();
        if interest.is_readable() {
            flags |= PollFlags::POLLIN | POLLRDHUP;
        }
        if interest.is_writable() {
            flags |= PollFlags::POLLOUT;
        }
        flags
    }

    fn ready(flags: PollFlags) -> Ready {
        let mut ready = Ready::EMPTY;
        if flags.contains(PollFlags::POLLIN) {
            ready |= Ready::READABLE;
        }
        if flags.contains(PollFlags::POLLOUT) {
            ready |= Ready::WRITABLE;
        }
        if flags.contains(POLLRDHUP) {
            ready |= Ready::READ_CLOSED;
        }
        if flags.contains(PollFlags::POLLHUP) {
            ready |= Ready::HUP;
        }
        // POLLNVAL: the fd was closed while registered (deregister first!).
        if flags.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL) {
            ready |= Ready::ERROR;
        }
        ready
    }

    fn arm(&mut self, fd: RawFd, interest: Interest) {
        let index = fd as usize;
        if index >= self.position.len() {
            self.position.resize(index + 1, u32::MAX);
        }
        self.position[index] = self.pollfds.len() as u32;
        self.pollfds.push(pollfd {
            fd,
            events: Self::flags(interest).bits(),
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
        fd: RawFd,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        let slot = Slot::armed(token, interest, trigger);
        self.table.insert("poll", fd, slot)?;
        self.arm(fd, interest);
        Ok(())
    }

    fn reregister(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        let slot = self
            .table
            .get_mut(fd)
            .ok_or_else(|| not_registered("poll", fd))?;
        let was_armed = slot.armed;
        *slot = Slot::armed(token, interest, trigger);
        if was_armed {
            let at = self.position[fd as usize] as usize;
            self.pollfds[at].events = Self::flags(interest).bits();
        } else {
            self.arm(fd, interest);
        }
        Ok(())
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let slot = self.table.remove("poll", fd)?;
        if slot.armed {
            self.disarm(fd);
        }
        Ok(())
    }

    fn select(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let pollfds = &mut self.pollfds;
        let ready = retry_eintr(timeout, |remaining| {
            // SAFETY: `pollfds` is a live, exclusively borrowed array of
            // `pollfd`s and the length passed is its length; poll(2) writes
            // only the `revents` fields within it.
            let n = unsafe {
                libc::poll(
                    pollfds.as_mut_ptr(),
                    pollfds.len() as libc::nfds_t,
                    timeout_ms(remaining),
                )
            };
            Errno::result(n).map_err(io::Error::from)
        })
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("poll over {} fds: {e}", self.pollfds.len()),
            )
        })?;
        if ready == 0 {
            return Ok(());
        }
        // The linear scan the classic texts talk about.
        for entry in &self.pollfds {
            if entry.revents == 0 {
                continue;
            }
            let revents = PollFlags::from_bits_retain(entry.revents);
            let fd = entry.fd;
            let slot = self.table.get(fd).expect("an armed pollfd has a slot");
            events.push(Event {
                token: slot.token,
                ready: Self::ready(revents),
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
