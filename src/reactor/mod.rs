//! The loop: a [`Core`] (selector, plain registrations, timers, waker, loop
//! state) and the installed [`Source`]s.
//!
//! One turn ([`Reactor::run_once`]) is: wait (no longer than the nearest
//! timer or the caller's timeout; not at all if something was carried over),
//! read each event in place from the kernel's buffer and route it by its
//! token's owner byte — plain callbacks (owner 0), the waker (owner 1), or
//! an installed source — then what was carried over from the last turn,
//! then the timers that are due (none of this timer work when there are no
//! timers).

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::selector::{Backend, DefaultSelector, Events, Selector};
use crate::{Event, Ready, Token, TokenFactory};

mod callbacks;
mod core;
mod holders;
mod signal;
mod source;
mod stats;
mod timer;
mod waker;

pub use self::core::Core;
pub use signal::on_signals;
pub use source::{Batch, PostAction, Source, SourceId};
pub use stats::Stats;
pub use timer::TimerId;
pub use waker::Handle;

use timer::TimerAction;
use waker::Posted;

/// The owner byte of the waker's eventfd.
const WAKER: u8 = 1;
/// The first owner byte a source gets.
const FIRST_SOURCE: u8 = 2;
/// Events the buffer starts with.
const INITIAL_EVENTS: usize = 64;

/// What happens when a callback panics.
///
/// Either way the reactor stays consistent: the panicking registration (or
/// timer, or a source's entry) is removed and what it owned dropped, the
/// panic is counted in [`Stats::panics`] and logged at error level with its
/// payload, and the rest of the turn runs. (Compiled with
/// `panic = "abort"`, there is nothing to catch and the process aborts.)
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// Keep running: one misbehaving connection does not take the server
    /// down. The default, as in tokio (a panicking task) and asyncio (a
    /// failing callback).
    ///
    /// One exception: when a plain timer callback ([`Core::call_later`],
    /// [`Core::call_every`]) or a posted closure ([`Handle::post`]) panics,
    /// the turn ends and [`Reactor::run_once`] (so [`Reactor::run`])
    /// returns an error naming it and its payload. Such a closure is often
    /// the one that would have stopped the loop (a stop timer whose
    /// `println!` met a closed pipe), and a loop that can no longer stop is
    /// worse than one that stops with an error. Call `run` again to go on.
    #[default]
    Isolate,
    /// After the turn completes, re-raise the first panic out of
    /// [`Reactor::run_once`] / [`Reactor::run`]. The reactor can be used again
    /// afterwards. What tests want: a failed assert inside a callback fails
    /// the test.
    Propagate,
}

/// A single-threaded event loop with selectors-style callbacks, and loop
/// state `D` that every callback reaches by `&mut`.
///
/// A reactor is its [`Core`] (registering, timers, the clock, the loop
/// state: [`core`](Reactor::core), [`core_mut`](Reactor::core_mut)) plus
/// what only the loop's owner does: run it, install sources and reach
/// them. Callbacks get the whole reactor. See the [crate
/// documentation](crate) for the model and an example.
pub struct Reactor<D = ()> {
    core: Core<D>,
    /// Indexed by owner byte; the first two are the plain registrations
    /// and the waker, which the reactor handles itself.
    sources: Sources<D>,
    events: Events,
    /// Last turn's carried-over events while this turn dispatches them
    /// (swapped with the core's, to reuse both allocations).
    carried: Events,
    /// Posted closures being run; kept to reuse its allocation.
    /// Posted closures taken from the mailbox, not yet run.
    posted: VecDeque<Posted<D>>,
    in_turn: bool,
}

impl Reactor<()> {
    /// A reactor on the default selector, epoll, with no loop state.
    ///
    /// # Errors
    /// If the epoll instance or the eventfd cannot be created (usually
    /// `EMFILE`: the process is out of fds).
    pub fn new() -> io::Result<Reactor> {
        Reactor::with_data(())
    }

    /// A reactor on one of the three classic backends.
    ///
    /// # Errors
    /// As [`Reactor::new`].
    ///
    /// ```
    /// use edgeloop::{Backend, Reactor};
    /// for backend in Backend::ALL.iter().copied() {
    ///     let reactor = Reactor::with_backend(backend)?;
    ///     assert_eq!(reactor.core().backend(), backend.name());
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_backend(backend: Backend) -> io::Result<Reactor> {
        Reactor::with_selector(backend.selector()?, ())
    }
}

impl<D: 'static> Reactor<D> {
    /// A reactor on epoll holding `data`, the loop state every callback
    /// reaches through [`Core::data_mut`].
    ///
    /// # Errors
    /// As [`Reactor::new`].
    pub fn with_data(data: D) -> io::Result<Reactor<D>> {
        Reactor::with_selector(Box::new(DefaultSelector::new()?), data)
    }

    /// A reactor on the given selector, holding `data`.
    ///
    /// The selector sits behind a `Box<dyn Selector>`: one indirect call per
    /// wait or interest change, next to a syscall that costs a hundred times
    /// more, and it lets a test plug in a fake selector.
    ///
    /// # Errors
    /// If the waker's eventfd cannot be created or registered.
    pub fn with_selector(selector: Box<dyn Selector>, data: D) -> io::Result<Reactor<D>> {
        let mut core = Core::new(selector, data)?;
        core.watch_waker(Token::new(WAKER, 0, 0))?;
        Ok(Reactor {
            core,
            sources: Sources(Vec::new()),
            events: Events::with_capacity(INITIAL_EVENTS),
            carried: Events::default(),
            posted: VecDeque::new(),
            in_turn: false,
        })
    }

    // ---- sources ---------------------------------------------------------

    /// Installs a [`Source`]: from now on, events and timers for tokens
    /// carrying its owner byte go to it.
    ///
    /// # Errors
    /// `InvalidInput` once 254 sources are installed.
    ///
    /// ```
    /// use edgeloop::conn::{ConnOptions, Connections, Handler, Conn};
    /// struct Nothing;
    /// impl Handler for Nothing {
    ///     type Session = ();
    ///     fn on_data(&mut self, _: &mut Conn<'_, Self>, _: &[u8]) {}
    /// }
    /// let mut reactor = edgeloop::Reactor::new()?;
    /// let set = reactor.install(Connections::new(Nothing, ConnOptions::default())?)?;
    /// assert!(reactor.source(set).is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn install<S: Source<D>>(&mut self, mut source: S) -> io::Result<SourceId<S>> {
        let owner = u8::try_from(self.sources.0.len() + FIRST_SOURCE as usize).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "edgeloop: at most 254 sources per reactor (one Connections set holds any \
                 number of listeners and connections)",
            )
        })?;
        source.installed(TokenFactory::new(owner));
        self.sources.0.push(Box::new(source));
        Ok(SourceId::new(owner))
    }

    /// The core: registrations, timers, the clock, the loop state, stats.
    #[inline]
    pub fn core(&self) -> &Core<D> {
        &self.core
    }

    /// The core, mutably: register, set timers, stop, reach the loop state.
    #[inline]
    pub fn core_mut(&mut self) -> &mut Core<D> {
        &mut self.core
    }

    /// The source `id` names.
    ///
    /// # Panics
    /// If `id` came from another reactor's [`install`](Reactor::install)
    /// and names no source of type `S` here.
    pub fn source<S: Source<D>>(&self, id: SourceId<S>) -> &S {
        let source: &dyn Any = self.sources.get(id.owner).expect("an installed source");
        source
            .downcast_ref()
            .expect("a SourceId names its own type")
    }

    /// The source `id` names, and the core beside it (split borrows: the
    /// source's methods take the core).
    ///
    /// # Panics
    /// As [`source`](Reactor::source).
    pub fn source_mut<S: Source<D>>(&mut self, id: SourceId<S>) -> (&mut S, &mut Core<D>) {
        let source: &mut dyn Any =
            &mut **self.sources.get_mut(id.owner).expect("an installed source");
        let source = source
            .downcast_mut()
            .expect("a SourceId names its own type");
        (source, &mut self.core)
    }

    // ---- running -----------------------------------------------------------

    /// Runs turns until [`stop`](Core::stop) (from a callback) or
    /// [`Handle::stop`] (from anywhere). If a stop was requested before the
    /// call, runs one non-blocking turn (so closures posted before the stop
    /// run) and returns. The stop request is consumed on return.
    ///
    /// # Errors
    /// `ResourceBusy` if called from inside a callback (the reactor does
    /// not recurse), `Unsupported` in a child forked after the reactor was
    /// built; what the selector's wait reports.
    pub fn run(&mut self) -> io::Result<()> {
        self.refuse_recursion()?;
        let result = loop {
            if let Err(e) = self.run_once(None) {
                break Err(e);
            }
            if self.core.stopped || self.core.shared.stop_requested() {
                break Ok(());
            }
        };
        self.core.stopped = false;
        self.core.shared.clear_stop();
        result
    }

    /// Runs one turn: waits at most `timeout` (`None`: until something
    /// happens), then dispatches. Returns how many callbacks ran: IO
    /// callbacks, timer callbacks and posted closures, one each.
    ///
    /// # Errors
    /// `ResourceBusy` if called from inside a callback, `Unsupported` in a
    /// forked child; what the selector's wait reports. Under
    /// [`PanicPolicy::Propagate`] a callback's panic resumes here, after the
    /// turn completed.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut reactor = edgeloop::Reactor::new()?;
    /// // Nothing registered: waits the timeout out and ran nothing.
    /// assert_eq!(reactor.run_once(Some(Duration::from_millis(1)))?, 0);
    /// let handle = reactor.core().handle();
    /// for _ in 0..3 {
    ///     handle.post(|_| println!("posted"))?;
    /// }
    /// // Three posted closures: three callbacks.
    /// assert_eq!(reactor.run_once(Some(Duration::ZERO))?, 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn run_once(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        self.refuse_recursion()?;
        self.in_turn = true;
        let result = self.turn(timeout);
        self.in_turn = false;
        if let Some(payload) = self.core.first_panic.take() {
            panic::resume_unwind(payload);
        }
        if let Some(line) = self.core.loop_panic.take() {
            return Err(io::Error::other(format!(
                "edgeloop: {line}; the loop stops here, as what panicked may have been what \
                 would have stopped it"
            )));
        }
        result
    }

    fn refuse_recursion(&self) -> io::Result<()> {
        self.core.check_not_forked()?;
        if self.in_turn {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "edgeloop: run/run_once called from inside a callback; the reactor does not \
                 recurse (return from the callback instead, or call stop())",
            ));
        }
        Ok(())
    }

    fn turn(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let core = &mut self.core;
        // Last turn's carried-over events are dispatched this turn; what
        // this turn carries over collects in the core's (empty) buffer.
        std::mem::swap(&mut core.carried, &mut self.carried);
        let stop_pending = core.stopped || core.shared.stop_requested();
        let mut timeout = if self.carried.is_empty() && !stop_pending {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        if !core.timers.is_empty() {
            if let Some(deadline) = core.timers.next_deadline() {
                let until = deadline.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(until, |t| t.min(until)));
            }
        }
        core.stats.waits += 1;
        if let Err(e) = core.selector.select(&mut self.events, timeout) {
            std::mem::swap(&mut core.carried, &mut self.carried);
            return Err(e);
        }
        core.clock = None;
        let events = std::mem::take(&mut self.events);
        let mut ran = self.dispatch_all(&events);
        self.events = events;
        let mut carried = std::mem::take(&mut self.carried);
        ran += self.dispatch_all(&carried);
        carried.clear();
        self.carried = carried;
        if !self.core.timers.is_empty() {
            ran += self.run_timers();
        }
        Ok(ran)
    }

    /// Dispatches a batch of events: runs of one source's events in one
    /// call each, the others one by one. Returns how many were delivered.
    fn dispatch_all(&mut self, events: &Events) -> usize {
        let mut ran = 0;
        let mut i = 0;
        while let Some(event) = events.get(i) {
            let owner = event.token.owner();
            if owner >= FIRST_SOURCE {
                let (next, delivered) = self.dispatch_run(events, owner, i);
                ran += delivered;
                i = next;
            } else {
                ran += self.dispatch(event.token, event.ready);
                i += 1;
            }
        }
        ran
    }

    /// Routes one event for the reactor's own registrations (plain
    /// callbacks and the waker): how many callbacks it ran (posted
    /// closures count one each; a stale event none).
    #[inline]
    fn dispatch(&mut self, token: Token, ready: Ready) -> usize {
        match token.owner() {
            callbacks::OWNER => self.dispatch_callback(token, ready) as usize,
            WAKER => self.run_posted(),
            _ => {
                self.core.stats.stale += 1;
                0
            }
        }
    }

    /// Hands the run of events starting at `start` that belong to source
    /// `owner` to it in one call. Returns where the run ended and how many
    /// events were delivered. A panic in the middle retires the entry it
    /// was for, and the run goes on after it.
    fn dispatch_run(&mut self, events: &Events, owner: u8, start: usize) -> (usize, usize) {
        let Some(source) = self.sources.get_mut(owner) else {
            self.core.stats.stale += 1;
            return (start + 1, 0);
        };
        let core = &mut self.core;
        let mut batch = Batch::new(events, owner, start);
        loop {
            let attempt = batch.position();
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                source.dispatch(core, &mut batch);
            }));
            let Err(payload) = outcome else {
                break;
            };
            // The event handed out last is the one that panicked (none: the
            // source panicked before its first; the run ends there).
            let position = batch.position();
            let Some(Event { token, .. }) = events.get(position.max(attempt + 1) - 1) else {
                break;
            };
            batch.record(true);
            source.on_panic(core, token);
            core.record_panic(format_args!("the handler of {token:?}"), payload);
            if position == attempt {
                break;
            }
        }
        core.stats.dispatched += batch.delivered;
        core.stats.stale += batch.stale;
        (batch.position().max(start + 1), batch.delivered as usize)
    }

    fn dispatch_callback(&mut self, token: Token, ready: Ready) -> bool {
        let entry = match self.core.callbacks.get_mut(token) {
            Ok(entry) if !entry.interest.is_empty() => entry,
            _ => {
                self.core.stats.stale += 1;
                log::trace!("stale event for {token:?} ({ready:?}): dropped");
                return false;
            }
        };
        // Masked by the current interest, as libuv does: a registration
        // modified earlier in the batch is not told what it no longer wants.
        let ready = ready & Ready::allowed_by(entry.interest);
        if ready.is_empty() {
            self.core.stats.stale += 1;
            return false;
        }
        let Some(mut callback) = entry.callback.take() else {
            self.core.stats.stale += 1; // running: only a requeue can get here
            return false;
        };
        self.core.stats.dispatched += 1;
        let event = Event { token, ready };
        let action = match panic::catch_unwind(AssertUnwindSafe(|| callback.call(self, event))) {
            Ok(action) => action,
            Err(payload) => {
                let what = format_args!("the callback of {token:?}");
                let _ = self.core.record_panic(what, payload);
                PostAction::Remove
            }
        };
        self.core.finish_callback(token, callback, action);
        true
    }

    fn run_timers(&mut self) -> usize {
        let now = self.core.now();
        let limit = self.core.timers.pass_limit();
        let mut ran = 0;
        while let Some(mut due) = self.core.timers.take_due(now, limit) {
            ran += 1;
            self.core.stats.timers_fired += 1;
            let outcome = match &mut due.action {
                TimerAction::Callback(f) => {
                    panic::catch_unwind(AssertUnwindSafe(|| f(self))).map_err(|p| (p, None))
                }
                TimerAction::Source { token, tag } => {
                    let (token, tag) = (*token, *tag);
                    match self.sources.get_mut(token.owner()) {
                        Some(source) => {
                            let core = &mut self.core;
                            let fire = || source.on_timer(core, token, tag);
                            panic::catch_unwind(AssertUnwindSafe(fire))
                                .map_err(|p| (p, Some(token)))
                        }
                        _ => Ok(()),
                    }
                }
            };
            match outcome {
                Ok(()) => self.core.timers.restore(due),
                Err((payload, token)) => {
                    self.core.timers.remove(due.key, due.id);
                    drop(due);
                    if let Some(token) = token {
                        if let Some(source) = self.sources.get_mut(token.owner()) {
                            source.on_panic(&mut self.core, token);
                        }
                    }
                    match token {
                        Some(token) => {
                            let what = format_args!("the timer of {token:?}");
                            let _ = self.core.record_panic(what, payload);
                        }
                        None => self
                            .core
                            .record_loop_panic(format_args!("a timer callback"), payload),
                    };
                }
            }
        }
        ran
    }

    /// Runs closures posted from other threads, at most `POSTED_PER_TURN`
    /// of them: a flood of posts cannot hold the loop
    /// (and the IO, timers and signals behind it) for a whole mailbox. The
    /// rest run on the next turns, which the waker keeps coming. Returns
    /// how many ran.
    fn run_posted(&mut self) -> usize {
        self.core.stats.wakeups += 1;
        let mut posted = std::mem::take(&mut self.posted);
        self.core.shared.take_posted(&mut posted);
        let mut ran = 0;
        while ran < POSTED_PER_TURN {
            let Some(f) = posted.pop_front() else {
                break;
            };
            ran += 1;
            self.core.stats.posted += 1;
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(self))) {
                self.core
                    .record_loop_panic(format_args!("a posted closure"), payload);
            }
        }
        if !posted.is_empty() {
            // Taken from the mailbox but not run: wake the next turn.
            self.core.shared.wake();
        }
        self.posted = posted;
        ran
    }
}

/// Posted closures run per turn at most (calloop caps channel draining
/// the same way): the rest wait for the next turns, behind the IO, timers
/// and signals that came meanwhile.
const POSTED_PER_TURN: usize = 1024;

/// The installed sources: the one with owner byte `FIRST_SOURCE + i` at
/// `i`. A source is never uninstalled, so every slot holds one.
struct Sources<D>(Vec<Box<dyn Source<D>>>);

impl<D> Sources<D> {
    /// The source whose tokens carry `owner`, if one is installed.
    #[inline(always)]
    fn get_mut(&mut self, owner: u8) -> Option<&mut Box<dyn Source<D>>> {
        let index = (owner as usize).wrapping_sub(FIRST_SOURCE as usize);
        self.0.get_mut(index)
    }

    fn get(&self, owner: u8) -> Option<&dyn Source<D>> {
        let index = (owner as usize).wrapping_sub(FIRST_SOURCE as usize);
        self.0.get(index).map(|s| &**s)
    }
}

/// The fd a host loop waits on to nest this reactor (see
/// [`Core::pollable_fd`]): on epoll, the epoll instance, readable whenever
/// a registered fd is ready or the loop is woken. Poll and select have no
/// such fd; for them this is the waker's eventfd, readable only when
/// another thread wakes the loop, so check [`Core::pollable_fd`] before
/// nesting one.
///
/// ```
/// use std::os::fd::AsFd;
/// let reactor = edgeloop::Reactor::new()?;
/// let fd = reactor.as_fd(); // register it, readable, in the host loop
/// # let _ = fd;
/// # Ok::<(), std::io::Error>(())
/// ```
impl<D> AsFd for Reactor<D> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self.core.selector.pollable_fd() {
            Some(fd) => fd,
            None => self.core.shared.eventfd().as_fd(),
        }
    }
}

impl<D> fmt::Debug for Reactor<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("core", &self.core)
            .field("sources", &self.sources.0.len())
            .finish()
    }
}
