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
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::libc::{self, FD_SETSIZE};

use super::fd_table::{FdTable, Slot, not_registered};
use super::{Event, Events, Interest, Ready, Selector, Token, Trigger, retry_eintr};
use crate::sys::{self, FdSet};

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
/// Select's third set (exceptional conditions) is not watched, so a
/// priority interest would never be reported: refused rather than ignored.
fn refuse_priority(interest: Interest) -> io::Result<()> {
    super::refuse_exclusive("select", interest)?;
    if interest.is_priority() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "select: Interest::PRIORITY (EPOLLPRI) is not supported by the select backend; \
             use epoll or poll",
        ));
    }
    Ok(())
}

fn timeval(timeout: Duration) -> libc::timeval {
    let micros = timeout.as_nanos().div_ceil(1_000);
    libc::timeval {
        tv_sec: (micros / 1_000_000).min(i32::MAX as u128) as _,
        tv_usec: (micros % 1_000_000) as _,
    }
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
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        refuse_priority(interest)?;
        let fd = fd.as_raw_fd();
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
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        refuse_priority(interest)?;
        let fd = fd.as_raw_fd();
        let slot = self
            .table
            .get_mut(fd)
            .ok_or_else(|| not_registered("select", fd))?;
        *slot = Slot::armed(token, interest, trigger);
        Ok(())
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.table.remove("select", fd.as_raw_fd()).map(drop)
    }

    fn select(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let nfds = self.table.highest().map_or(0, |fd| fd + 1);
        let table = &self.table;
        // Rebuilt on every call (and every EINTR retry): select overwrites
        // its sets with the result.
        let (read, write) = retry_eintr(timeout, |remaining| {
            let mut read = FdSet::new();
            let mut write = FdSet::new();
            for (fd, slot) in table.iter().filter(|(_, s)| s.armed) {
                // Registration refused fds select cannot hold.
                if slot.interest.is_readable() {
                    read.insert(fd);
                }
                if slot.interest.is_writable() {
                    write.insert(fd);
                }
            }
            let mut tv = remaining.map(timeval);
            sys::select(nfds, &mut read, &mut write, tv.as_mut()).map(|_| (read, write))
        })
        .map_err(|errno| {
            sys::errno_error(errno, format_args!("select over {} fds", table.len()))
        })?;
        let mut fired = Vec::new();
        for fd in 0..nfds {
            let readable = read.contains(fd);
            let writable = write.contains(fd);
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
        let t = timeval(Duration::from_nanos(1));
        assert_eq!((t.tv_sec, t.tv_usec), (0, 1));
        let t = timeval(Duration::from_micros(1_500_000));
        assert_eq!((t.tv_sec, t.tv_usec), (1, 500_000));
    }
}
