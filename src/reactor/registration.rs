//! One slot of the registration table.

use std::os::fd::RawFd;

use super::Callback;
use crate::event::{Interest, Token, Trigger};

pub(super) struct Registration {
    pub(super) fd: RawFd,
    pub(super) interest: Interest,
    pub(super) trigger: Trigger,
    /// The full token, generation included: an event or a call whose token
    /// differs is for an earlier occupant of this slot.
    pub(super) token: Token,
    /// `None` while the callback runs: it is taken out of its slot so that it
    /// can get `&mut Reactor` (DESIGN.md decision 2), and goes back only if
    /// the slot still holds the same registration afterwards.
    pub(super) callback: Option<Callback>,
}

impl Registration {
    pub(super) fn new(
        fd: RawFd,
        interest: Interest,
        trigger: Trigger,
        token: Token,
        callback: Callback,
    ) -> Registration {
        Registration {
            fd,
            interest,
            trigger,
            token,
            callback: Some(callback),
        }
    }
}
