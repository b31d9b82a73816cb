//! The select backend: `select(2)` over fd_sets rebuilt on every wait, as
//! the call requires (it overwrites its sets with the result).
//!
//! `select` cannot hold an fd at or above `FD_SETSIZE` (1024): such an fd is
//! refused at registration with `InvalidInput`, never handed to `FD_SET`
//! (which would write past the set: undefined behaviour in C, a panic in
//! nix). select also has no HUP or ERR of its own: a hang-up shows as
//! readable (the read returns 0) and an error as readable and writable (the
//! next I/O call returns it), which is what the callbacks then see.
//! Level-triggered by nature: Oneshot is emulated, Edge refused.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use nix::sys::select::{FD_SETSIZE, FdSet};
use nix::sys::time::TimeVal;

use super::fd_table::{FdTable, Slot, not_registered};
use super::{Selector, retry_eintr};
use crate::event::{Event, Interest, Ready, Token, Trigger};
use crate::sys::borrow_fd;

/// Selector on `select(2)`. Level and Oneshot; no Edge; fds below 1024.
#[derive(Debug, Default)]
pub struct Select {
    table: FdTable,
}

impl Select {
    /// An empty select selector.
    pub fn new() -> Select {
        Select::default()
    }

    /// The largest fd number select can watch, plus one.
    pub const FD_SETSIZE: usize = FD_SETSIZE;
}

/// A timeout as select's `timeval`, rounded up to the microsecond.
fn timeval(timeout: Duration) -> TimeVal {
    let micros = timeout.as_nanos().div_ceil(1_000);
    let secs = (micros / 1_000_000).min(i32::MAX as u128) as i64;
    TimeVal::new(secs as _, (micros % 1_000_000) as _)
}

impl Selector for Select {
    fn name(&self) -> &'static str {
        "select"
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
        if fd < 0 || fd as usize >= FD_SETSIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "select: fd {fd} is at or above FD_SETSIZE ({FD_SETSIZE}); select cannot watch it \
                     (use the poll or epoll backend for more connections)"
                ),
            ));
        }
        let slot = Slot::armed(token, interest, trigger);
        self.table.insert("select", fd, slot)
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
            .ok_or_else(|| not_registered("select", fd))?;
        *slot = Slot::armed(token, interest, trigger);
        Ok(())
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.table.remove("select", fd).map(drop)
    }

    fn select(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let nfds = self.table.highest().map_or(0, |fd| fd + 1);
        let table = &self.table;
        // Rebuilt on every call (and every EINTR retry): select overwrites
        // its sets with the result.
        let (read, write) = retry_eintr(timeout, |remaining| {
            let mut read = FdSet::new();
            let mut write = FdSet::new();
            for (fd, slot) in table.iter().filter(|(_, s)| s.armed) {
                if slot.interest.is_readable() {
                    read.insert(borrow_fd(fd));
                }
                if slot.interest.is_writable() {
                    write.insert(borrow_fd(fd));
                }
            }
            let mut tv = remaining.map(timeval);
            nix::sys::select::select(nfds, &mut read, &mut write, None, tv.as_mut())
                .map(|_| (read, write))
                .map_err(io::Error::from)
        })
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("select over {} fds: {e}", self.table.len()),
            )
        })?;
        let mut fired = Vec::new();
        for fd in 0..nfds {
            let readable = read.contains(borrow_fd(fd));
            let writable = write.contains(borrow_fd(fd));
            if !readable && !writable {
                continue;
            }
            let slot = self.table.get(fd).expect("a ready fd has a slot");
            let mut ready = Ready::EMPTY;
            if readable {
                ready |= Ready::READABLE;
            }
            if writable {
                ready |= Ready::WRITABLE;
            }
            events.push(Event {
                token: slot.token,
                ready,
            });
            if slot.trigger == Trigger::Oneshot {
                fired.push(fd);
            }
        }
        for fd in fired {
            if let Some(slot) = self.table.get_mut(fd) {
                slot.armed = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeval_rounds_up_to_the_microsecond() {
        assert_eq!(timeval(Duration::from_nanos(1)), TimeVal::new(0, 1));
        assert_eq!(
            timeval(Duration::from_micros(1_500_000)),
            TimeVal::new(1, 500_000)
        );
    }
}
