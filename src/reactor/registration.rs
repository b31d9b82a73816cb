//! One slot of the registration table.

use std::os::fd::RawFd;

use super::{Callback, SharedCallback};
use crate::event::{Interest, Token, Trigger};

/// What a registration calls.
pub(super) enum Handler {
    /// Its own callback. Taken out of the slot while it runs, so that it can
    /// get `&mut Reactor` (DESIGN.md decision 2), and put back only if the
    /// slot still holds the same registration afterwards. `None` while taken.
    Unique(Option<Callback>),
    /// A callback shared by many registrations (every connection of a set):
    /// cloned, not taken, while it runs; no allocation per registration.
    Shared(SharedCallback),
}

pub(super) struct Registration {
    pub(super) fd: RawFd,
    pub(super) interest: Interest,
    pub(super) trigger: Trigger,
    /// The full token, generation included: an event or a call whose token
    /// differs is for an earlier occupant of this slot.
    pub(super) token: Token,
    pub(super) handler: Handler,
}
