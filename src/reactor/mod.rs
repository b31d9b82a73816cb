//! The loop: a selector, a slab of registrations, the timers and the waker.
//!
//! One turn ([`Reactor::run_once`]) is: wait (no longer than the nearest timer
//! or the caller's timeout; not at all if something was carried over), call
//! the callback of each ready registration, call back what was carried over
//! from the last turn, then fire the timers that are due. Posted closures run
//! when the waker's eventfd is reported, like any other registration.

use std::any::Any;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::event::{Event, Interest, Ready, Token, Trigger};
use crate::selector::{DefaultSelector, Selector};
use crate::stats::Stats;
use crate::timer::{TimerId, Timers, deadline_after};
use crate::waker::{Handle, Posted, Shared};

mod registration;

use registration::{Handler, Registration};

/// A registration's callback: it gets the reactor (to register, modify,
/// deregister, set timers, stop) and the event. Boxed once, at registration.
pub type Callback = Box<dyn FnMut(&mut Reactor, Event)>;

/// A callback shared by many registrations, told apart by the event's
/// [`Token`]: what a server with thousands of connections registers, so that
/// a connection costs a slot in the table and no allocation of its own. See
/// [`Reactor::register_shared`].
pub type SharedCallback = Rc<dyn Fn(&mut Reactor, Event)>;

/// What happens when a callback panics.
///
/// Either way the reactor stays consistent: the panicking registration (or
/// timer) is deregistered and its callback dropped, which closes whatever fds
/// it owned, the panic is counted in [`Stats::panics`] and logged, and the
/// rest of the turn runs. (Compiled with `panic = "abort"`, there is nothing
/// to catch and the process aborts.)
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum PanicPolicy {
    /// Keep running: one misbehaving connection does not take the server
    /// down. The default, as in tokio (a panicking task) and asyncio (a
    /// failing callback).
    #[default]
    Isolate,
    /// After the turn completes, re-raise the first panic out of
    /// [`Reactor::run_once`] / [`Reactor::run`]. The reactor can be used again
    /// afterwards.
    Propagate,
}

/// A single-threaded event loop with selectors-style callbacks.
///
/// See the [crate documentation](crate) for the model and an example.
pub struct Reactor {
    selector: Box<dyn Selector>,
    registrations: Slab<Registration>,
    next_generation: u32,
    timers: Timers,
    shared: Arc<Shared>,
    /// The batch being dispatched; kept to reuse its allocation.
    events: Vec<Event>,
    /// Events to dispatch next turn without waiting for the kernel.
    carried: Vec<Event>,
    /// Posted closures being run; kept to reuse its allocation.
    posted: Vec<Posted>,
    stats: Stats,
    stopped: bool,
    in_turn: bool,
    panic_policy: PanicPolicy,
    first_panic: Option<Box<dyn Any + Send>>,
}

impl Reactor {
    /// A reactor on the default selector, epoll.
    ///
    /// # Errors
    /// If the epoll instance or the eventfd cannot be created (usually
    /// `EMFILE`: the process is out of fds).
    pub fn new() -> io::Result<Reactor> {
        Reactor::with_selector(Box::new(DefaultSelector::new()?))
    }

    /// A reactor on one of the three classic backends.
    ///
    /// # Errors
    /// As [`Reactor::new`].
    pub fn with_backend(backend: crate::selector::Backend) -> io::Result<Reactor> {
        Reactor::with_selector(backend.selector()?)
    }

    /// A reactor on the given selector.
    ///
    /// The selector sits behind a `Box<dyn Selector>`: one indirect call per
    /// wait or interest change, next to a syscall that costs a hundred times
    /// more, and it lets a test plug in a fake selector.
    ///
    /// # Errors
    /// If the waker's eventfd cannot be created or registered.
    pub fn with_selector(selector: Box<dyn Selector>) -> io::Result<Reactor> {
        let shared = Shared::new()?;
        let mut reactor = Reactor {
            selector,
            registrations: Slab::new(),
            next_generation: 0,
            timers: Timers::default(),
            shared: shared.clone(),
            events: Vec::new(),
            carried: Vec::new(),
            posted: Vec::new(),
            stats: Stats::default(),
            stopped: false,
            in_turn: false,
            panic_policy: PanicPolicy::default(),
            first_panic: None,
        };
        let waker_fd = shared.eventfd().as_raw_fd();
        reactor.register(waker_fd, Interest::READABLE, Trigger::Level, move |r, _| {
            r.run_posted(&shared)
        })?;
        Ok(reactor)
    }

    /// Sets what happens when a callback panics (default
    /// [`PanicPolicy::Isolate`]).
    pub fn set_panic_policy(&mut self, policy: PanicPolicy) {
        self.panic_policy = policy;
    }

    /// The selector backend's name: `"epoll"`, `"poll"` or `"select"`.
    pub fn backend(&self) -> &'static str {
        self.selector.name()
    }

    /// A `Send + Clone` handle for other threads: wake, stop, post.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }

    /// The loop's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The loop's counters, for the layers above the reactor (connections
    /// count their reads and writes here).
    pub(crate) fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// Live registrations made by the user (the waker's own is not counted).
    pub fn registrations(&self) -> usize {
        self.registrations.len() - 1
    }

    /// Live timers.
    pub fn timers(&self) -> usize {
        self.timers.len()
    }

    // ---- registrations -------------------------------------------------

    /// Watches `fd` for `interest`, reported as `trigger`; `callback` is
    /// called with each event until the registration is removed.
    ///
    /// The reactor does not own `fd`: keep it open until you
    /// [`deregister`](Reactor::deregister) it, then close it
    /// (DESIGN.md decision 11: epoll watches the open file description, so a
    /// closed fd with a live `dup` keeps reporting). The usual shape is to
    /// move the socket into the callback; deregistering drops the callback,
    /// after the kernel forgot the fd, and that closes the socket.
    ///
    /// [`Interest::NONE`] registers the callback without putting the fd in
    /// the kernel's interest list; [`modify`](Reactor::modify) adds it later.
    ///
    /// # Errors
    /// `AlreadyExists` if `fd` is registered already (epoll), `PermissionDenied`
    /// for a regular file (epoll), `Unsupported` for a trigger the backend
    /// cannot deliver, `InvalidInput` for an fd the backend cannot hold. On
    /// error nothing is registered and `callback` is dropped.
    pub fn register<F>(
        &mut self,
        fd: RawFd,
        interest: Interest,
        trigger: Trigger,
        callback: F,
    ) -> io::Result<Token>
    where
        F: FnMut(&mut Reactor, Event) + 'static,
    {
        self.insert(
            fd,
            interest,
            trigger,
            Handler::Unique(Some(Box::new(callback))),
        )
    }

    /// Like [`register`](Reactor::register), with a callback shared by many
    /// registrations: each one holds a clone of the `Rc` (no allocation),
    /// and the callback tells them apart by `event.token`. Sets of
    /// connections use this; so can any caller with many similar fds.
    ///
    /// # Errors
    /// As [`register`](Reactor::register).
    pub fn register_shared(
        &mut self,
        fd: RawFd,
        interest: Interest,
        trigger: Trigger,
        callback: &SharedCallback,
    ) -> io::Result<Token> {
        self.insert(fd, interest, trigger, Handler::Shared(callback.clone()))
    }

    fn insert(
        &mut self,
        fd: RawFd,
        interest: Interest,
        trigger: Trigger,
        handler: Handler,
    ) -> io::Result<Token> {
        self.check_trigger(trigger)?;
        let entry = self.registrations.vacant_entry();
        let key = entry.key();
        if key > u32::MAX as usize {
            return Err(io::Error::other("edgeloop: more than 2^32 registrations"));
        }
        self.next_generation = self.next_generation.wrapping_add(1);
        let token = Token::new(key, self.next_generation);
        if !interest.is_empty() {
            self.stats.ctls += self.selector.ctl_is_syscall() as u64;
            self.selector.register(fd, token, interest, trigger)?;
        }
        entry.insert(Registration {
            fd,
            interest,
            trigger,
            token,
            handler,
        });
        log::debug!("register fd {fd} as {token:?}: {interest:?} {trigger:?}");
        Ok(token)
    }

    /// Changes what a registration watches for, or how. On epoll this is
    /// `EPOLL_CTL_MOD`, which also re-arms a [`Trigger::Oneshot`]
    /// registration and makes an [`Trigger::Edge`] one report pending
    /// readiness again (DESIGN.md K2). A level-triggered registration
    /// modified to what it already has makes no syscall.
    ///
    /// [`Interest::NONE`] takes the fd out of the kernel's interest list
    /// (the token stays valid); a later non-empty interest puts it back.
    ///
    /// # Errors
    /// `NotFound` for a token that is not (or no longer) registered;
    /// `Unsupported` for a trigger the backend cannot deliver; what the
    /// selector reports.
    pub fn modify(&mut self, token: Token, interest: Interest, trigger: Trigger) -> io::Result<()> {
        self.check_trigger(trigger)?;
        let reg = lookup_mut(&mut self.registrations, token)?;
        if reg.interest == interest && reg.trigger == trigger && trigger == Trigger::Level {
            return Ok(());
        }
        let fd = reg.fd;
        let syscall = self.selector.ctl_is_syscall() as u64;
        match (reg.interest.is_empty(), interest.is_empty()) {
            (true, true) => {}
            (true, false) => {
                self.stats.ctls += syscall;
                self.selector.register(fd, token, interest, trigger)?;
            }
            (false, true) => {
                self.stats.ctls += syscall;
                self.selector.deregister(fd)?;
            }
            (false, false) => {
                self.stats.ctls += syscall;
                self.selector.reregister(fd, token, interest, trigger)?;
            }
        }
        reg.interest = interest;
        reg.trigger = trigger;
        log::debug!("modify fd {fd} {token:?}: {interest:?} {trigger:?}");
        Ok(())
    }

    /// The interest a registration currently has.
    ///
    /// # Errors
    /// `NotFound` for a token that is not (or no longer) registered.
    pub fn interest(&self, token: Token) -> io::Result<Interest> {
        match self.registrations.get(token.key()) {
            Some(reg) if reg.token == token => Ok(reg.interest),
            _ => Err(not_registered(token)),
        }
    }

    /// Removes a registration: the fd leaves the kernel's interest list and
    /// the callback is dropped (after the kernel forgot the fd, so a socket
    /// the callback owned is closed in the right order). May be called from
    /// any callback, the registration's own included; no event for `token`
    /// is delivered afterwards, even one already in the current batch.
    ///
    /// A failed `EPOLL_CTL_DEL` (the fd was closed first: `EBADF`) is logged
    /// and swallowed; the registration is removed regardless
    /// (RELIABILITY.md item 8).
    ///
    /// # Errors
    /// `NotFound` for a token that is not (or no longer) registered.
    pub fn deregister(&mut self, token: Token) -> io::Result<()> {
        lookup_mut(&mut self.registrations, token)?;
        if token == self.waker_token() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "edgeloop: the waker's registration belongs to the reactor",
            ));
        }
        self.remove(token);
        Ok(())
    }

    fn remove(&mut self, token: Token) {
        let reg = self.registrations.remove(token.key());
        if !reg.interest.is_empty() {
            self.stats.ctls += self.selector.ctl_is_syscall() as u64;
            if let Err(e) = self.selector.deregister(reg.fd) {
                log::debug!("deregister {token:?}: {e} (ignored: the registration is gone)");
            }
        }
        log::debug!("deregister fd {} {token:?}", reg.fd);
        drop(reg);
    }

    fn waker_token(&self) -> Token {
        // The waker is registered first, in slot 0, with generation 1.
        Token::new(0, 1)
    }

    fn check_trigger(&self, trigger: Trigger) -> io::Result<()> {
        if self.selector.supports(trigger) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "edgeloop: the {} selector cannot deliver {trigger:?} readiness faithfully \
                     (it is level-triggered by nature); use the epoll backend",
                    self.selector.name()
                ),
            ))
        }
    }

    /// Dispatches `ready` to `token`'s callback on the next turn, without
    /// waiting for the kernel, and makes that turn's wait non-blocking.
    ///
    /// This is how an edge-triggered reader that stopped at its read budget
    /// keeps its place: no new edge will come for data already queued, so it
    /// carries itself over (DESIGN.md decision 5; netty does the same). A
    /// token that is gone by then is dropped as stale.
    pub fn requeue(&mut self, token: Token, ready: Ready) {
        self.carried.push(Event { token, ready });
    }

    // ---- timers ----------------------------------------------------------

    /// Calls `f` once at `deadline` (monotonic clock), or on the first turn
    /// after it. Never early.
    pub fn call_at(&mut self, deadline: Instant, f: impl FnMut(&mut Reactor) + 'static) -> TimerId {
        self.timers.insert(deadline, None, Box::new(f))
    }

    /// Calls `f` once, `delay` from now. `Duration::ZERO` means "on the next
    /// turn, after I/O"; `Duration::MAX` means never (no overflow).
    pub fn call_later(
        &mut self,
        delay: Duration,
        f: impl FnMut(&mut Reactor) + 'static,
    ) -> TimerId {
        self.call_at(deadline_after(Instant::now(), delay), f)
    }

    /// Calls `f` every `period`, first `period` from now, until cancelled.
    /// Ticks stay on the grid `start + k * period` (no drift); ticks missed
    /// while the loop was busy are skipped, not fired in a burst.
    pub fn call_every(
        &mut self,
        period: Duration,
        f: impl FnMut(&mut Reactor) + 'static,
    ) -> TimerId {
        let deadline = deadline_after(Instant::now(), period);
        self.timers.insert(deadline, Some(period), Box::new(f))
    }

    /// Cancels a timer. Returns false if it had already fired (one-shot) or
    /// was cancelled. A timer cancelled by an earlier callback of the same
    /// turn does not fire, even if it was due.
    pub fn cancel(&mut self, timer: TimerId) -> bool {
        self.timers.cancel(timer)
    }

    // ---- running -----------------------------------------------------------

    /// Runs turns until [`stop`](Reactor::stop) (from a callback) or
    /// [`Handle::stop`] (from anywhere). If a stop was requested before the
    /// call, runs one non-blocking turn (so closures posted before the stop
    /// run) and returns. The stop request is consumed on return.
    ///
    /// # Errors
    /// `Other` if called from inside a callback (the reactor does not
    /// recurse); what the selector's wait reports.
    pub fn run(&mut self) -> io::Result<()> {
        self.refuse_recursion()?;
        // A stop makes the turn's wait non-blocking; the turn still runs, so
        // closures posted before the stop are not left behind.
        let result = loop {
            if let Err(e) = self.run_once(None) {
                break Err(e);
            }
            if self.stopped || self.shared.stop_requested() {
                break Ok(());
            }
        };
        self.stopped = false;
        self.shared.clear_stop();
        result
    }

    /// Runs one turn: waits at most `timeout` (`None`: until something
    /// happens), then dispatches. Returns how many callbacks ran.
    ///
    /// # Errors
    /// `Other` if called from inside a callback; what the selector's wait
    /// reports. Under [`PanicPolicy::Propagate`] a callback's panic resumes
    /// here, after the turn completed.
    pub fn run_once(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        self.refuse_recursion()?;
        self.in_turn = true;
        let result = self.turn(timeout);
        self.in_turn = false;
        if let Some(payload) = self.first_panic.take() {
            panic::resume_unwind(payload);
        }
        result
    }

    /// Makes [`run`](Reactor::run) return after the current turn.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    fn refuse_recursion(&self) -> io::Result<()> {
        if self.in_turn {
            return Err(io::Error::other(
                "edgeloop: run/run_once called from inside a callback; the reactor does not \
                 recurse (return from the callback instead, or call stop())",
            ));
        }
        Ok(())
    }

    fn turn(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let carried = std::mem::take(&mut self.carried);
        let stop_pending = self.stopped || self.shared.stop_requested();
        let mut timeout = if carried.is_empty() && !stop_pending {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        if let Some(deadline) = self.timers.next_deadline() {
            let until = deadline.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(until, |t| t.min(until)));
        }

        let mut events = std::mem::take(&mut self.events);
        self.stats.waits += 1;
        if let Err(e) = self.selector.select(&mut events, timeout) {
            self.events = events;
            self.carried = carried;
            return Err(e);
        }
        let mut ran = 0;
        for event in events.drain(..) {
            ran += self.dispatch(event) as usize;
        }
        self.events = events;
        let mut carried = carried;
        for event in carried.drain(..) {
            ran += self.dispatch(event) as usize;
        }
        if self.carried.is_empty() {
            // Hand the (empty) allocation back for the next carry-over.
            self.carried = carried;
        }
        ran += self.run_timers();
        Ok(ran)
    }

    /// Calls the callback for one event; false if the event was stale.
    fn dispatch(&mut self, event: Event) -> bool {
        let token = event.token;
        let Some(reg) = self.registrations.get_mut(token.key()) else {
            self.stats.stale += 1;
            log::trace!("stale event for {token:?} (slot empty): dropped");
            return false;
        };
        // Masked by the current interest, as libuv does: a registration
        // modified earlier in the batch is not told what it no longer wants.
        let ready = event.ready & Ready::allowed_by(reg.interest);
        if reg.token != token || reg.interest.is_empty() || ready.is_empty() {
            self.stats.stale += 1;
            log::trace!("stale event for {token:?} ({:?}): dropped", event.ready);
            return false;
        }
        self.stats.dispatched += 1;
        log::trace!("dispatch fd {} {token:?}: {ready:?}", reg.fd);
        let event = Event { token, ready };
        let outcome = match &mut reg.handler {
            Handler::Shared(shared) => {
                let callback = shared.clone();
                panic::catch_unwind(AssertUnwindSafe(|| callback(self, event)))
            }
            Handler::Unique(slot) => {
                let Some(mut callback) = slot.take() else {
                    return false;
                };
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| callback(self, event)));
                if let Some(reg) = self.registrations.get_mut(token.key()) {
                    if let (true, Handler::Unique(slot @ None)) =
                        (reg.token == token, &mut reg.handler)
                    {
                        *slot = Some(callback);
                    }
                }
                outcome
            }
        };
        if let Err(payload) = outcome {
            if lookup_mut(&mut self.registrations, token).is_ok() {
                self.remove(token);
            }
            self.record_panic(&format!("the callback of {token:?}"), payload);
        }
        true
    }

    fn run_timers(&mut self) -> usize {
        let now = Instant::now();
        let limit = self.timers.pass_limit();
        let mut ran = 0;
        while let Some(mut due) = self.timers.take_due(now, limit) {
            ran += 1;
            self.stats.timers_fired += 1;
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| (due.callback)(self)));
            match outcome {
                Ok(()) => self.timers.restore(due),
                Err(payload) => {
                    self.timers.remove(due.key, due.id);
                    drop(due);
                    self.record_panic("a timer callback", payload);
                }
            }
        }
        ran
    }

    fn run_posted(&mut self, shared: &Shared) {
        self.stats.wakeups += 1;
        let mut posted = std::mem::take(&mut self.posted);
        shared.take_posted(&mut posted);
        for f in posted.drain(..) {
            self.stats.posted += 1;
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(self))) {
                self.record_panic("a posted closure", payload);
            }
        }
        self.posted = posted;
    }

    pub(crate) fn record_panic(&mut self, what: &str, payload: Box<dyn Any + Send>) {
        self.stats.panics += 1;
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".to_string());
        log::error!("edgeloop: {what} panicked: {message}; it was removed");
        if self.panic_policy == PanicPolicy::Propagate && self.first_panic.is_none() {
            self.first_panic = Some(payload);
        }
    }
}

fn lookup_mut(
    registrations: &mut Slab<Registration>,
    token: Token,
) -> io::Result<&mut Registration> {
    match registrations.get_mut(token.key()) {
        Some(reg) if reg.token == token => Ok(reg),
        _ => Err(not_registered(token)),
    }
}

fn not_registered(token: Token) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("edgeloop: {token:?} is not registered (deregistered already, or never was)"),
    )
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("backend", &self.selector.name())
            .field("registrations", &self.registrations())
            .field("timers", &self.timers.len())
            .field("stats", &self.stats)
            .finish()
    }
}
