//! The interest list poll and select keep in user space: one slot per fd
//! number, so register, reregister and deregister are O(1) and return the
//! same errors epoll does (EEXIST, ENOENT). A closed fd cannot reach them:
//! they take a `BorrowedFd`.

use std::io;
use std::os::fd::RawFd;

use super::{Interest, Token, Trigger};

#[derive(Copy, Clone, Debug)]
pub(super) struct Slot {
    pub(super) token: Token,
    pub(super) interest: Interest,
    pub(super) trigger: Trigger,
    /// False after a oneshot registration reported once, until reregistered.
    pub(super) armed: bool,
}

impl Slot {
    /// A registration that will report on the next wait.
    pub(super) fn armed(token: Token, interest: Interest, trigger: Trigger) -> Slot {
        Slot {
            token,
            interest,
            trigger,
            armed: true,
        }
    }
}

#[derive(Default, Debug)]
pub(super) struct FdTable {
    slots: Vec<Option<Slot>>,
    len: usize,
}

impl FdTable {
    pub(super) fn get(&self, fd: RawFd) -> Option<&Slot> {
        self.slots.get(fd as usize)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, fd: RawFd) -> Option<&mut Slot> {
        self.slots.get_mut(fd as usize)?.as_mut()
    }

    pub(super) fn insert(&mut self, backend: &str, fd: RawFd, slot: Slot) -> io::Result<()> {
        let index = fd as usize;
        if index >= self.slots.len() {
            self.slots.resize(index + 1, None);
        }
        if self.slots[index].is_some() {
            // What epoll says (EEXIST), with the errno kept.
            return Err(crate::sys::errno_error(
                nix::libc::EEXIST,
                format_args!("{backend}: register fd {fd}: the fd is registered already"),
            ));
        }
        self.slots[index] = Some(slot);
        self.len += 1;
        Ok(())
    }

    pub(super) fn remove(&mut self, backend: &str, fd: RawFd) -> io::Result<Slot> {
        let slot = self
            .slots
            .get_mut(fd as usize)
            .and_then(Option::take)
            .ok_or_else(|| not_registered(backend, fd))?;
        self.len -= 1;
        Ok(slot)
    }

    /// The highest fd with a slot, if any.
    pub(super) fn highest(&self) -> Option<RawFd> {
        self.slots
            .iter()
            .rposition(Option::is_some)
            .map(|i| i as RawFd)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (RawFd, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(fd, s)| s.as_ref().map(|s| (fd as RawFd, s)))
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

pub(super) fn not_registered(backend: &str, fd: RawFd) -> io::Error {
    // What epoll says (ENOENT), with the errno kept.
    crate::sys::errno_error(
        nix::libc::ENOENT,
        format_args!("{backend}: fd {fd} is not registered"),
    )
}
