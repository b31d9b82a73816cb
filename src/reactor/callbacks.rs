//! Owner 0: plain registrations, an fd and a callback each
//! (selectors-style), in a generation-checked slab.
//!
//! The reactor owns what is registered: the callback and the fd-owning
//! value it was given travel together in one box. While a callback runs,
//! the box is taken out of its slot so that the callback can get the whole
//! `&mut Reactor`; changes to its own registration made meanwhile
//! (`modify`, `deregister` on its own token) are recorded and applied when
//! it returns, together with the [`PostAction`] it returns.

use std::io;
use std::os::fd::RawFd;
use std::os::fd::{AsFd, BorrowedFd};

use slab::Slab;

use super::{PostAction, Reactor};
use crate::{Event, Interest, Token, Trigger};

/// What a registration calls, with the value that owns its fd.
pub(super) trait Registered<D> {
    fn call(&mut self, reactor: &mut Reactor<D>, event: Event) -> PostAction;
    fn fd(&self) -> BorrowedFd<'_>;
}

/// A registered value and its callback.
pub(super) struct Owned<F, C> {
    pub(super) io: F,
    pub(super) callback: C,
}

impl<D, F, C> Registered<D> for Owned<F, C>
where
    F: AsFd,
    C: FnMut(&mut Reactor<D>, &mut F, Event) -> PostAction,
{
    fn call(&mut self, reactor: &mut Reactor<D>, event: Event) -> PostAction {
        (self.callback)(reactor, &mut self.io, event)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

pub(super) struct Entry<D> {
    pub(super) token: Token,
    /// The fd's number, while the registration is in the kernel's list
    /// (`None` once a deregister from its own callback took it out).
    pub(super) fd: Option<RawFd>,
    /// What the registration wants.
    pub(super) interest: Interest,
    pub(super) trigger: Trigger,
    /// What the kernel's interest list holds for it (differs from
    /// `interest` only while a change waits for the running callback).
    pub(super) armed: Interest,
    /// A modify asked for while the callback ran: an `EPOLL_CTL_MOD` is due
    /// when it returns even if the mask is unchanged (it re-arms).
    pub(super) rearm: bool,
    /// `None` while the callback runs.
    pub(super) callback: Option<Box<dyn Registered<D>>>,
    /// Deregistered while its callback ran: removed when it returns.
    pub(super) removed: bool,
}

pub(super) struct Callbacks<D> {
    pub(super) slab: Slab<Entry<D>>,
    next_generation: u32,
    /// Entries marked `removed`, still in the slab.
    removing: usize,
}

impl<D> Default for Callbacks<D> {
    fn default() -> Self {
        Callbacks {
            slab: Slab::new(),
            next_generation: 0,
            removing: 0,
        }
    }
}

/// The owner byte of plain registrations.
pub(super) const OWNER: u8 = 0;

impl<D> Callbacks<D> {
    /// Live registrations.
    pub(super) fn len(&self) -> usize {
        self.slab.len() - self.removing
    }

    /// The next token, for the slot `insert` will fill.
    pub(super) fn next_token(&mut self) -> io::Result<Token> {
        let key = self.slab.vacant_key();
        let key = u32::try_from(key)
            .map_err(|_| io::Error::other("edgeloop: more than 2^32 registrations"))?;
        // 1 to 2^24 - 1, never 0: with owner 0, generation 0 at key 0
        // would make the word 0, which means "no token" (see `Token::word`).
        self.next_generation = self.next_generation % 0xff_ffff + 1;
        Ok(Token::new(OWNER, key, self.next_generation))
    }

    /// The live entry `token` names.
    pub(super) fn get(&self, token: Token) -> io::Result<&Entry<D>> {
        match self.slab.get(token.key()) {
            Some(entry) if entry.token == token && !entry.removed => Ok(entry),
            _ => Err(not_registered(token)),
        }
    }

    /// The live entry `token` names, to change it.
    pub(super) fn get_mut(&mut self, token: Token) -> io::Result<&mut Entry<D>> {
        match self.slab.get_mut(token.key()) {
            Some(entry) if entry.token == token && !entry.removed => Ok(entry),
            _ => Err(not_registered(token)),
        }
    }

    /// Deregistered while its callback runs: taken out when it returns.
    /// Returns its fd, which is no longer held: the callback may register
    /// it again (see `Core::register`).
    pub(super) fn mark_removed(&mut self, token: Token) -> Option<RawFd> {
        let entry = self.get_mut(token).ok()?;
        entry.removed = true;
        let fd = entry.fd;
        self.removing += 1;
        fd
    }

    /// Takes a `removed` entry out.
    pub(super) fn take_removed(&mut self, key: usize) -> Entry<D> {
        self.removing -= 1;
        self.slab.remove(key)
    }

    /// Takes a live entry out (the caller releases its fd).
    pub(super) fn remove(&mut self, key: usize) -> Entry<D> {
        self.slab.remove(key)
    }

    /// A removed entry (its callback still running) whose fd `fd` is still
    /// in the kernel's list.
    pub(super) fn removed_in_kernel(&mut self, fd: RawFd) -> Option<&mut Entry<D>> {
        if self.removing == 0 {
            return None;
        }
        self.slab
            .iter_mut()
            .map(|(_, entry)| entry)
            .find(|entry| entry.removed && entry.fd == Some(fd))
    }
}

pub(super) fn not_registered(token: Token) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("edgeloop: {token:?} is not registered (deregistered already, or never was)"),
    )
}
