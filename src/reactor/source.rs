//! Source owners: the seam between the reactor and the layers above it.
//!
//! A [`Source`] owns a set of registrations and keeps its own table of
//! them. It is installed on a reactor once and gets a [`TokenFactory`]
//! for its owner byte; every token it makes carries that byte, and the
//! reactor routes each ready event to its owner with one indexed load and
//! one dynamic call. The owner looks its entry up once, checks the token's
//! generation, and does the work with the loop's [`Core`] in hand: split
//! borrows, so no `Rc`, no `RefCell`, no callback taken out of a slot.
//!
//! [`Connections`](crate::conn::Connections) is a source; so can a user's
//! own layer be: nothing here is private to the crate.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;

use super::Core;
use crate::selector::Events;
use crate::{Event, Interest, Token, TokenFactory, Trigger};

/// What a callback wants done with its own registration once it returns
/// (calloop's `PostAction`). Applied after the callback, so a callback never
/// changes the registration it is running for under its own feet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[must_use = "a PostAction decides whether the registration stays"]
#[non_exhaustive]
pub enum PostAction {
    /// Keep the registration as it is.
    Continue,
    /// Change its interest and trigger (`EPOLL_CTL_MOD`: this also re-arms
    /// a oneshot registration and makes an edge-triggered one report
    /// pending readiness again). A trigger the backend cannot deliver
    /// (Edge on poll or select) is applied as [`Trigger::Level`], the
    /// closest: it reports at least every edge, so nothing is lost (a
    /// warning is logged). [`Core::modify`] refuses it instead, with
    /// `Unsupported`: there is a caller to tell.
    Modify(Interest, Trigger),
    /// Take the fd out of the kernel's interest list; the token stays
    /// valid and a later [`modify`](Core::modify) puts it back.
    Disable,
    /// Deregister and drop the callback, and with it the fd it owns.
    Remove,
}

/// An owner of registrations, installed on a [`Reactor`](super::Reactor)
/// with [`install`](super::Reactor::install).
///
/// One method is required, [`dispatch`](Source::dispatch): the reactor
/// calls it once per run of consecutive events for this source, so that
/// one dynamic call and one `catch_unwind` serve many events. The others
/// have defaults. Its methods get the [`Core`] (timers, the loop state,
/// registering plain callbacks, the kernel interest list) but not the
/// other sources.
///
/// ```
/// use edgeloop::{Batch, Core, Source};
/// /// Counts the events for its registrations.
/// struct Counter(u64);
/// impl Source<()> for Counter {
///     fn dispatch(&mut self, _: &mut Core<()>, batch: &mut Batch<'_>) {
///         while let Some(_event) = batch.next_event() {
///             self.0 += 1;
///             batch.record(true); // false for a stale token
///         }
///     }
/// }
/// let mut reactor = edgeloop::Reactor::new()?;
/// let id = reactor.install(Counter(0))?;
/// assert_eq!(reactor.source(id).0, 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Source<D>: Any {
    /// A run of consecutive events of one batch, all for this source:
    /// walk it with [`Batch::next_event`], and [`record`](Batch::record)
    /// each as delivered or stale (its token's generation no longer
    /// matches; the reactor counts those in
    /// [`Stats::stale`](crate::Stats::stale)).
    fn dispatch(&mut self, core: &mut Core<D>, batch: &mut Batch<'_>);

    /// The reactor installed this source: `tokens` makes the tokens of its
    /// registrations and timers, each carrying the source's owner byte (no
    /// other code can make them). Called once, by `install`. The default
    /// drops it: a source that registers fds or sets timers keeps it.
    fn installed(&mut self, tokens: TokenFactory) {
        let _ = tokens;
    }

    /// A timer set with [`Core::source_timer`] for `token` fired.
    fn on_timer(&mut self, core: &mut Core<D>, token: Token, tag: u32) {
        let _ = (core, token, tag);
    }

    /// The dispatch (or timer) for `token` panicked: retire that entry, and
    /// only that one. The reactor then records the panic under its
    /// [`PanicPolicy`](crate::PanicPolicy). The default retires nothing, so
    /// the entry's next event may panic again.
    fn on_panic(&mut self, core: &mut Core<D>, token: Token) {
        let _ = (core, token);
    }
}

/// A run of events for one source: the consecutive events of a wait whose
/// tokens carry the same owner byte. [`next_event`](Batch::next_event)
/// walks it; [`record`](Batch::record) counts each as delivered or stale.
#[derive(Debug)]
pub struct Batch<'a> {
    events: &'a Events,
    owner: u8,
    /// The next event to hand out.
    next: usize,
    pub(crate) delivered: u64,
    pub(super) stale: u64,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(events: &'a Events, owner: u8, start: usize) -> Batch<'a> {
        Batch {
            events,
            owner,
            next: start,
            delivered: 0,
            stale: 0,
        }
    }

    /// The next event of the run, or `None` at its end.
    #[inline(always)]
    pub fn next_event(&mut self) -> Option<Event> {
        let event = self.events.get(self.next)?;
        if event.token.owner() != self.owner {
            return None;
        }
        self.next += 1;
        Some(event)
    }

    /// Counts the event last handed out: delivered, or stale (its token's
    /// generation no longer matched).
    #[inline(always)]
    pub fn record(&mut self, delivered: bool) {
        if delivered {
            self.delivered += 1;
        } else {
            self.stale += 1;
        }
    }

    /// Where the run stopped: the index of the first event not handed out.
    pub(crate) fn position(&self) -> usize {
        self.next
    }
}

/// Names an installed source of type `S`: what
/// [`Reactor::source`](super::Reactor::source) and
/// [`Reactor::source_mut`](super::Reactor::source_mut) take.
pub struct SourceId<S> {
    pub(super) owner: u8,
    _source: PhantomData<fn() -> S>,
}

impl<S> SourceId<S> {
    pub(super) fn new(owner: u8) -> SourceId<S> {
        SourceId {
            owner,
            _source: PhantomData,
        }
    }

    /// The owner byte the source's tokens carry.
    pub fn owner(&self) -> u8 {
        self.owner
    }
}

impl<S> Clone for SourceId<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for SourceId<S> {}

impl<S> PartialEq for SourceId<S> {
    fn eq(&self, other: &Self) -> bool {
        self.owner == other.owner
    }
}

impl<S> Eq for SourceId<S> {}

impl<S> fmt::Debug for SourceId<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceId({})", self.owner)
    }
}
