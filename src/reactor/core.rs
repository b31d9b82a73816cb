//! [`Core`]: everything of a reactor but its sources — the selector, plain
//! registrations, timers, the loop clock, the loop state, counters and the
//! stop flag. What a source's handlers get; a [`Reactor`] lends it
//! ([`Reactor::core`], [`Reactor::core_mut`]).

use std::any::Any;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::callbacks::{Callbacks, Entry, Owned, Registered};
use super::holders::FdHolders;
use super::timer::Timers;
use super::waker::Mailbox;
use super::{Handle, PanicPolicy, PostAction, Reactor, Stats};
use crate::selector::{Events, Selector};
use crate::{Event, Interest, Ready, Token, Trigger};

/// The loop minus its sources: what every callback and source handler can
/// reach. A [`Reactor`] lends it through [`Reactor::core`] and
/// [`Reactor::core_mut`], as mio's `Poll` lends its `Registry`.
///
/// It holds the loop state `D` ([`data`](Core::data),
/// [`data_mut`](Core::data_mut)): one value of the user's choosing that
/// every kind of callback reaches by `&mut`, so application state needs no
/// `Rc<RefCell>` and no thread-local.
pub struct Core<D = ()> {
    pub(super) selector: Box<dyn Selector>,
    pub(super) callbacks: Callbacks<D>,
    /// Which token holds each fd: plain registrations' and sources'.
    holders: FdHolders,
    pub(super) timers: Timers<D>,
    pub(super) shared: Arc<Mailbox<D>>,
    /// Events to dispatch next turn without waiting for the kernel.
    pub(super) carried: Events,
    /// The loop clock: read at most once per turn, on first use.
    pub(super) clock: Option<Instant>,
    pub(super) stats: Stats,
    pub(super) stopped: bool,
    pub(super) panic_policy: PanicPolicy,
    pub(super) first_panic: Option<Box<dyn Any + Send>>,
    /// Under `Isolate`: a timer callback or posted closure panicked, and
    /// `run_once` reports it as an error (what panicked might have been
    /// what would have stopped the loop).
    pub(super) loop_panic: Option<String>,
    /// The fork generation this reactor was built in (see `sys`).
    pub(super) forks: u64,
    data: D,
}

impl<D: 'static> Core<D> {
    pub(super) fn new(selector: Box<dyn Selector>, data: D) -> io::Result<Core<D>> {
        Ok(Core {
            selector,
            callbacks: Callbacks::default(),
            holders: FdHolders::default(),
            timers: Timers::default(),
            shared: Mailbox::new()?,
            carried: Events::default(),
            clock: None,
            stats: Stats::default(),
            stopped: false,
            panic_policy: PanicPolicy::default(),
            first_panic: None,
            loop_panic: None,
            forks: crate::sys::fork_generation(),
            data,
        })
    }

    /// The loop state.
    pub fn data(&self) -> &D {
        &self.data
    }

    /// The loop state, to change it.
    pub fn data_mut(&mut self) -> &mut D {
        &mut self.data
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
    pub fn handle(&self) -> Handle<D> {
        Handle::new(self.shared.clone())
    }

    /// The loop's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Live plain registrations ([`register`](Core::register)); a source's
    /// own are counted by the source.
    pub fn registrations(&self) -> usize {
        self.callbacks.len()
    }

    /// Live timers.
    pub fn timers(&self) -> usize {
        self.timers.len()
    }

    /// The loop clock: the monotonic time, read once per turn on first use
    /// and then cached for the rest of the turn (libev's `ev_now`). Cheap
    /// enough to stamp every read with; never ahead of the real time.
    pub fn now(&mut self) -> Instant {
        *self.clock.get_or_insert_with(Instant::now)
    }

    /// Makes [`run`](Reactor::run) return after the current turn.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    // ---- nesting in a host loop -----------------------------------------

    /// The fd a host loop can watch for this reactor: readable whenever a
    /// turn has something to dispatch (epoll's own fd, watched like any
    /// other). `None` on poll and select, which have no such fd.
    ///
    /// The host loop waits on this fd with [`next_timeout`](Core::next_timeout)
    /// as its timeout, then runs one non-blocking turn,
    /// `run_once(Some(Duration::ZERO))`.
    pub fn pollable_fd(&self) -> Option<BorrowedFd<'_>> {
        self.selector.pollable_fd()
    }

    /// How long a host loop may sleep before this reactor needs a turn:
    /// zero if work was carried over or a stop is pending, the time to the
    /// nearest timer, or `None` (until its fd is readable).
    ///
    /// Rounded up to a whole millisecond, so a host that converts it to
    /// milliseconds by truncating (as `epoll_wait` and `poll` take it)
    /// never wakes before the timer and spins until it is due.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut reactor = edgeloop::Reactor::new()?;
    /// assert_eq!(reactor.core_mut().next_timeout(), None); // nothing to wake up for
    /// reactor.core_mut().call_later(Duration::from_secs(60), |_| {});
    /// assert!(reactor.core_mut().next_timeout().unwrap() <= Duration::from_secs(60));
    /// assert!(reactor.core().pollable_fd().is_some()); // epoll: nestable
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn next_timeout(&mut self) -> Option<Duration> {
        if !self.carried.is_empty() || self.stopped || self.shared.stop_requested() {
            return Some(Duration::ZERO);
        }
        let deadline = self.timers.next_deadline()?;
        let until = deadline.saturating_duration_since(Instant::now());
        let ms = until.as_nanos().div_ceil(1_000_000).min(u64::MAX as u128) as u64;
        Some(Duration::from_millis(ms))
    }

    /// True once [`stop`](Core::stop) or [`Handle::stop`] asked the loop
    /// to stop and [`run`](Reactor::run) has not consumed the request yet:
    /// a host loop driving [`run_once`](Reactor::run_once) checks this to
    /// leave its own loop (while it is true, [`next_timeout`](Core::next_timeout)
    /// is zero).
    pub fn stop_requested(&self) -> bool {
        self.stopped || self.shared.stop_requested()
    }

    // ---- plain registrations -------------------------------------------

    /// Watches `io` (anything that owns an fd: a socket, a pipe, an
    /// `OwnedFd`, an eventfd) for `interest`, reported as `trigger`;
    /// `callback` gets the reactor, `&mut io` and each event, and returns
    /// what to do with the registration next ([`PostAction`]).
    ///
    /// The reactor owns `io` from here on: the fd stays open exactly as
    /// long as the registration, and deregistering removes it from the
    /// kernel's interest list *before* dropping `io` (epoll watches the open
    /// file description, not the number; a closed fd with a live `dup`
    /// keeps reporting, and a reused number must never be deregistered by
    /// mistake). No fd can be closed behind the reactor's back.
    ///
    /// [`Interest::NONE`] registers without putting the fd in the kernel's
    /// interest list; [`modify`](Core::modify) adds it later.
    ///
    /// ```
    /// use edgeloop::{Interest, PostAction, Reactor, Trigger};
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    ///
    /// let mut reactor = Reactor::with_data(Vec::<u8>::new())?;
    /// let (ours, mut theirs) = UnixStream::pair()?;
    /// ours.set_nonblocking(true)?;
    /// reactor.core_mut().register(ours, Interest::READABLE, Trigger::Level, |r, stream, _event| {
    ///     let mut buf = [0; 64];
    ///     let n = stream.read(&mut buf).unwrap_or(0);
    ///     r.core_mut().data_mut().extend_from_slice(&buf[..n]); // the loop state, by &mut
    ///     r.core_mut().stop();
    ///     PostAction::Remove // done: deregister, then close the stream
    /// })?;
    /// theirs.write_all(b"hi")?;
    /// reactor.run()?;
    /// assert_eq!(reactor.core().data(), b"hi");
    /// assert_eq!(reactor.core().registrations(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// A registration deregistered from its own callback may have its fd
    /// registered again from that callback: the old registration leaves
    /// the kernel's list at once, and gets no further event.
    ///
    /// The fd must be non-blocking: a blocking one is refused (edgeloop's
    /// connection layer sets `O_NONBLOCK` on the sockets it is handed, but
    /// `register` takes any fd, whose flag may be shared with other
    /// processes: stdin's is the terminal's).
    ///
    /// # Errors
    /// `InvalidInput` for a blocking fd, naming the fix; `AlreadyExists`
    /// if the fd is registered already (whatever either interest,
    /// [`Interest::NONE`] included), `PermissionDenied` (EPERM) for a
    /// regular file or a directory (on every backend: they are always
    /// ready), `Unsupported` for a trigger the backend
    /// cannot deliver, `InvalidInput` for an fd the backend cannot hold. On
    /// error nothing is registered and `io` and `callback` are dropped.
    pub fn register<F, C>(
        &mut self,
        io: F,
        interest: Interest,
        trigger: Trigger,
        callback: C,
    ) -> io::Result<Token>
    where
        F: AsFd + 'static,
        C: FnMut(&mut Reactor<D>, &mut F, Event) -> PostAction + 'static,
    {
        self.check_not_forked()?;
        self.check_trigger(trigger)?;
        let token = self.callbacks.next_token()?;
        let callback: Box<dyn Registered<D>> = Box::new(Owned { io, callback });
        let fd = callback.fd().as_raw_fd();
        let blocking = !crate::sys::is_nonblocking(callback.fd())?;
        // The file-type check costs an fstat, so only where the kernel will
        // not refuse the fd itself: before the blocking refusal (which would
        // send the user the wrong way), and on poll and select (which would
        // report it on every wait). Epoll refuses it with EPERM anyway.
        if (blocking || !self.selector.ctl_is_syscall())
            && crate::sys::is_always_ready(callback.fd())
        {
            return Err(crate::sys::errno_error_hint(
                nix::libc::EPERM,
                format_args!("edgeloop: fd {fd} is a regular file or a directory"),
                "; it is always ready (epoll refuses it, poll and select would report it \
                 on every wait): read it directly",
            ));
        }
        if blocking {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "edgeloop: fd {fd} is blocking: a read or write past what is ready would \
                     stall the loop; make it non-blocking first (set_nonblocking(true), or \
                     fcntl O_NONBLOCK; the reactor does not, since the flag is shared with \
                     every copy of the fd, a terminal's included)"
                ),
            ));
        }
        if let Some(holder) = self.holders.holder(fd) {
            return Err(crate::sys::errno_error(
                nix::libc::EEXIST,
                format_args!(
                    "edgeloop: fd {fd} is registered already, as {holder:?} (deregister it first)"
                ),
            ));
        }
        if let Some(old) = self.callbacks.removed_in_kernel(fd) {
            // Deregistered from its own running callback, which registers
            // the fd again: the old registration leaves the kernel's list
            // now (through the new owner of the same fd), not when the
            // callback returns.
            let armed = std::mem::replace(&mut old.armed, Interest::NONE);
            old.fd = None;
            self.sync(callback.fd(), token, armed, Interest::NONE, trigger)?;
        }
        self.sync(callback.fd(), token, Interest::NONE, interest, trigger)?;
        log::debug!("register fd {fd} as {token:?}: {interest:?} {trigger:?}");
        self.holders.hold(fd, token);
        let key = self.callbacks.slab.insert(Entry {
            token,
            fd: Some(fd),
            interest,
            trigger,
            armed: interest,
            rearm: false,
            callback: Some(callback),
            removed: false,
        });
        debug_assert_eq!(key, token.key());
        Ok(token)
    }

    /// Changes what a plain registration watches for, or how. On epoll this
    /// is `EPOLL_CTL_MOD`, which also re-arms a [`Trigger::Oneshot`]
    /// registration and makes a [`Trigger::Edge`] one report pending
    /// readiness again. A level-triggered registration modified to what it
    /// already has makes no syscall. Called for the registration whose
    /// callback is running, the change is applied when it returns.
    ///
    /// [`Interest::NONE`] takes the fd out of the kernel's interest list
    /// (the token stays valid); a later non-empty interest puts it back.
    ///
    /// # Errors
    /// `NotFound` for a token that is not (or no longer) registered, or
    /// belongs to a source; `Unsupported` for a trigger the backend cannot
    /// deliver; what the selector reports.
    ///
    /// ```
    /// use edgeloop::{Interest, PostAction, Reactor, Trigger};
    /// let mut reactor = Reactor::new()?;
    /// let (ours, _theirs) = std::os::unix::net::UnixStream::pair()?;
    /// ours.set_nonblocking(true)?;
    /// let token = reactor.core_mut().register(ours, Interest::READABLE, Trigger::Level, |_, _, _| {
    ///     PostAction::Continue
    /// })?;
    /// reactor.core_mut().modify(token, Interest::BOTH, Trigger::Edge)?;
    /// assert_eq!(reactor.core().interest(token)?, Interest::BOTH);
    /// reactor.core_mut().deregister(token)?; // out of the kernel's list, then closed
    /// assert!(reactor.core_mut().modify(token, Interest::READABLE, Trigger::Level).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn modify(&mut self, token: Token, interest: Interest, trigger: Trigger) -> io::Result<()> {
        self.check_not_forked()?;
        self.check_trigger(trigger)?;
        let entry = self.callbacks.get_mut(token)?;
        let unchanged = entry.interest == interest && entry.trigger == trigger;
        if unchanged && trigger == Trigger::Level && entry.armed == interest {
            return Ok(());
        }
        entry.interest = interest;
        entry.trigger = trigger;
        let Some(callback) = &entry.callback else {
            entry.rearm = true; // running: `finish_callback` applies it
            return Ok(());
        };
        let fields = (&mut entry.armed, &mut entry.interest, entry.trigger);
        sync_entry(
            &mut *self.selector,
            &mut self.stats,
            callback.fd(),
            token,
            fields,
        )
    }

    /// The interest a plain registration currently has.
    ///
    /// # Errors
    /// `NotFound` for a token that is not (or no longer) registered.
    pub fn interest(&self, token: Token) -> io::Result<Interest> {
        self.callbacks.get(token).map(|e| e.interest)
    }

    /// Removes a plain registration: the fd leaves the kernel's interest
    /// list, then the callback and the fd it owns are dropped. May be called
    /// from any callback, the registration's own included (it is then
    /// removed when that callback returns); no event for `token` is
    /// delivered afterwards, even one already in the current batch.
    ///
    /// A stale token (deregistered already, its slot maybe reused) is
    /// `NotFound` and touches nothing: the generation check runs before any
    /// syscall, so it can never remove another registration's fd.
    ///
    /// # Errors
    /// `NotFound` for a token that is not (or no longer) registered.
    pub fn deregister(&mut self, token: Token) -> io::Result<()> {
        self.check_not_forked()?;
        let entry = self.callbacks.get_mut(token)?;
        if entry.callback.is_none() {
            if let Some(fd) = self.callbacks.mark_removed(token) {
                self.holders.release(fd, token);
            }
            return Ok(());
        }
        let entry = self.callbacks.remove(token.key());
        self.release(entry, None);
        Ok(())
    }

    /// Takes a removed entry's fd out of the kernel's list, then drops it
    /// (and the fd) — in that order.
    fn release(&mut self, entry: Entry<D>, running: Option<Box<dyn Registered<D>>>) {
        if let Some(fd) = entry.fd {
            self.holders.release(fd, entry.token);
        }
        let Some(callback) = entry.callback.or(running) else {
            return;
        };
        let (token, armed) = (entry.token, entry.armed);
        let result = self.sync(callback.fd(), token, armed, Interest::NONE, entry.trigger);
        if let Err(e) = result {
            log::debug!("deregister {:?}: {e} (ignored: it is gone)", entry.token);
        }
        log::debug!("deregister {:?}", entry.token);
        drop(callback);
    }

    /// Puts a callback back after it ran, applying what it asked for.
    pub(super) fn finish_callback(
        &mut self,
        token: Token,
        callback: Box<dyn Registered<D>>,
        action: PostAction,
    ) {
        let key = token.key();
        match self.callbacks.slab.get(key) {
            Some(entry) if entry.token == token => {}
            _ => return, // cannot happen: a running entry's slot is kept
        }
        if self.callbacks.slab[key].removed || action == PostAction::Remove {
            let entry = if self.callbacks.slab[key].removed {
                self.callbacks.take_removed(key)
            } else {
                self.callbacks.remove(key)
            };
            return self.release(entry, Some(callback));
        }
        let entry = &mut self.callbacks.slab[key];
        match action {
            PostAction::Modify(interest, trigger) => {
                entry.interest = interest;
                entry.trigger = if self.selector.supports(trigger) {
                    trigger
                } else {
                    // Edge on a level-only backend: Level reports at least
                    // every edge (an edge callback reads to WouldBlock
                    // anyway), so nothing is lost; see PostAction::Modify.
                    log::warn!(
                        "{token:?}: PostAction::Modify with {trigger:?}, which the {} backend \
                         cannot deliver: applied as Level",
                        self.selector.name()
                    );
                    Trigger::Level
                };
                // A MOD even to the same mask: it re-arms.
                entry.rearm = true;
            }
            PostAction::Disable => entry.interest = Interest::NONE,
            PostAction::Continue | PostAction::Remove => {}
        }
        if entry.rearm || entry.armed != entry.interest {
            entry.rearm = false;
            let fields = (&mut entry.armed, &mut entry.interest, entry.trigger);
            let result = sync_entry(
                &mut *self.selector,
                &mut self.stats,
                callback.fd(),
                token,
                fields,
            );
            if let Err(e) = result {
                log::error!("{token:?}: changing interest after its callback: {e}");
            }
        }
        entry.callback = Some(callback);
    }

    /// Dispatches `ready` to `token` on the next turn, without waiting for
    /// the kernel, and makes that turn's wait non-blocking.
    ///
    /// This is how an edge-triggered reader that stopped at its read budget
    /// keeps its place: no new edge will come for data already queued, so it
    /// carries itself over (netty does the same). A token that is gone by
    /// then is dropped as stale.
    ///
    /// ```
    /// use edgeloop::{Interest, PostAction, Reactor, Ready, Trigger};
    /// use std::io::{Read, Write};
    /// // An edge-triggered reader that reads one byte per turn and requeues
    /// // itself: the rest raises no new edge.
    /// let mut reactor = Reactor::with_data(Vec::new())?;
    /// let (ours, mut theirs) = std::os::unix::net::UnixStream::pair()?;
    /// ours.set_nonblocking(true)?;
    /// reactor.core_mut().register(ours, Interest::READABLE, Trigger::Edge, |r, s, event| {
    ///     let mut byte = [0; 1];
    ///     if let Ok(1) = s.read(&mut byte) {
    ///         r.core_mut().data_mut().push(byte[0]);
    ///         r.core_mut().requeue(event.token, Ready::READABLE);
    ///     }
    ///     PostAction::Continue
    /// })?;
    /// theirs.write_all(b"abc")?;
    /// for _ in 0..4 {
    ///     reactor.run_once(Some(std::time::Duration::from_secs(1)))?;
    /// }
    /// assert_eq!(reactor.core().data(), b"abc");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn requeue(&mut self, token: Token, ready: Ready) {
        self.carried.push(Event { token, ready });
    }

    // ---- for sources -----------------------------------------------------

    /// Moves `fd` in the kernel's interest list from `from` to `to` under
    /// `token`: an add, a modify, a delete or nothing, and counts the
    /// syscall. What a [`Source`](super::Source) calls for its own
    /// registrations, with tokens from its [`TokenFactory`](crate::TokenFactory).
    ///
    /// The reactor keeps which token holds each fd it watches, and this
    /// keeps to it: an add (`from` empty) is refused for an fd another
    /// registration holds, and a change or delete (`from` not empty) only
    /// for the token that added the fd. So no safe code can re-arm or
    /// remove another registration's fd, or route an fd's events to a
    /// registration that never had it. The source keeps the fd open until
    /// it takes it out again (`to` = [`Interest::NONE`]): until then its
    /// number stays held, and is refused to everyone else.
    ///
    /// # Errors
    /// - `InvalidInput` for a token that is not a source's (a plain
    ///   registration changes through [`modify`](Core::modify)), or for an
    ///   fd held under another token;
    /// - `AlreadyExists` for an add of an fd held already (by any token,
    ///   this one included);
    /// - `NotFound` (with `ENOENT`) for a change or delete of an fd that no
    ///   token holds;
    /// - `Unsupported` for a trigger the backend cannot deliver, or in a
    ///   child after `fork()` (the child shares the parent's epoll
    ///   instance: build a new reactor there);
    /// - what the selector reports.
    pub fn set_interest(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        from: Interest,
        to: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        self.check_not_forked()?;
        if token.owner() < super::FIRST_SOURCE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "edgeloop: {token:?} is not a source's token: a source arms only tokens \
                     from its TokenFactory, so install it first (Reactor::install); a plain \
                     registration changes through Core::modify"
                ),
            ));
        }
        if !to.is_empty() {
            self.check_trigger(trigger)?;
        }
        let number = fd.as_raw_fd();
        self.holders
            .check_change(number, token, from.is_empty(), to.is_empty())?;
        let result = self.sync(fd, token, from, to, trigger);
        match (from.is_empty(), to.is_empty()) {
            (true, false) if result.is_ok() => self.holders.hold(number, token),
            // Taken out, or gone: the kernel drops a closed fd by itself.
            (false, true) => self.holders.release(number, token),
            _ => {}
        }
        result
    }

    /// Puts the waker's eventfd in the kernel's list under `token` (its
    /// own owner byte, which `set_interest` refuses).
    pub(super) fn watch_waker(&mut self, token: Token) -> io::Result<()> {
        let shared = self.shared.clone();
        let fd = shared.eventfd().as_fd();
        self.sync(
            fd,
            token,
            Interest::NONE,
            Interest::READABLE,
            Trigger::Level,
        )?;
        self.holders.hold(fd.as_raw_fd(), token);
        Ok(())
    }

    /// [`sync_interest`] on this core's selector and counters.
    fn sync(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        from: Interest,
        to: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        let (selector, stats) = (&mut *self.selector, &mut self.stats);
        sync_interest(selector, stats, fd, token, from, to, trigger)
    }

    /// `Ok` unless the process forked since this reactor was built: a
    /// child shares the parent's epoll instance, so running it or changing
    /// its interest list there would steal or remove the parent's events.
    ///
    /// # Errors
    /// `Unsupported`, saying to build a new reactor in the child.
    pub(crate) fn check_not_forked(&self) -> io::Result<()> {
        if crate::sys::forked_since(self.forks) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "edgeloop: this reactor was built before fork(); the child shares its epoll \
                 instance with the parent and must not use it (build a new reactor in the child)",
            ));
        }
        Ok(())
    }

    /// `Ok` if the backend can deliver `trigger` faithfully.
    ///
    /// # Errors
    /// `Unsupported`, naming the backend and the trigger.
    pub(crate) fn check_trigger(&self, trigger: Trigger) -> io::Result<()> {
        if self.selector.supports(trigger) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the {} backend cannot deliver faithfully (it is level-triggered by \
                     nature): use Trigger::Level, or the epoll backend",
                    self.selector.name()
                ),
            ))
        }
    }

    /// Counts and logs a caught panic; under `Propagate` keeps the first
    /// payload for `run_once` to re-raise. Returns the log line.
    pub(super) fn record_panic(
        &mut self,
        what: fmt::Arguments<'_>,
        payload: Box<dyn Any + Send>,
    ) -> String {
        self.stats.panics += 1;
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".to_string());
        let line = format!("{what} panicked: {message}");
        log::error!("edgeloop: {line}; it was removed");
        if self.panic_policy == PanicPolicy::Propagate && self.first_panic.is_none() {
            self.first_panic = Some(payload);
        }
        line
    }

    /// Like `record_panic`, for a timer callback or a posted closure: under
    /// `Isolate` the turn ends in an error from `run_once`, so `run` cannot
    /// go on forever when what panicked was what would have stopped it.
    pub(super) fn record_loop_panic(
        &mut self,
        what: fmt::Arguments<'_>,
        payload: Box<dyn Any + Send>,
    ) {
        let line = self.record_panic(what, payload);
        if self.panic_policy == PanicPolicy::Isolate && self.loop_panic.is_none() {
            self.loop_panic = Some(line);
        }
    }
}

/// Moves a plain registration's kernel interest from what is armed to what
/// it wants; on failure it keeps what was armed (and wants that again).
fn sync_entry(
    selector: &mut dyn Selector,
    stats: &mut Stats,
    fd: BorrowedFd<'_>,
    token: Token,
    (armed, interest, trigger): (&mut Interest, &mut Interest, Trigger),
) -> io::Result<()> {
    let result = sync_interest(selector, stats, fd, token, *armed, *interest, trigger);
    match result {
        Ok(()) => *armed = *interest,
        Err(_) => *interest = *armed,
    }
    result
}

/// The one place an interest change becomes a selector call.
fn sync_interest(
    selector: &mut dyn Selector,
    stats: &mut Stats,
    fd: BorrowedFd<'_>,
    token: Token,
    from: Interest,
    to: Interest,
    trigger: Trigger,
) -> io::Result<()> {
    let syscall = selector.ctl_is_syscall() as u64;
    if to.is_exclusive() && trigger == Trigger::Oneshot {
        return Err(crate::sys::errno_error_hint(
            nix::libc::EINVAL,
            format_args!(
                "fd {}: Interest::EXCLUSIVE with Trigger::Oneshot",
                fd.as_raw_fd()
            ),
            "; the kernel accepts EPOLLEXCLUSIVE only with IN, OUT, WAKEUP and ET",
        ));
    }
    match (from.is_empty(), to.is_empty()) {
        (true, true) => Ok(()),
        (true, false) => {
            stats.ctls += syscall;
            selector.register(fd, token, to, trigger)
        }
        (false, true) => {
            stats.ctls += syscall;
            selector.deregister(fd)
        }
        (false, false) if from.is_exclusive() || to.is_exclusive() => {
            // EPOLL_CTL_MOD of an exclusive registration is EINVAL
            // (fs/eventpoll.c): the change is a delete and an add. The add
            // cannot run out of watches, the delete having freed one.
            stats.ctls += 2 * syscall;
            selector.deregister(fd)?;
            selector.register(fd, token, to, trigger)
        }
        (false, false) => {
            stats.ctls += syscall;
            selector.reregister(fd, token, to, trigger)
        }
    }
}

impl<D> fmt::Debug for Core<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("backend", &self.selector.name())
            .field("registrations", &self.callbacks.len())
            .field("timers", &self.timers.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl<D> Drop for Core<D> {
    /// Handles outlive the reactor: their posts are refused from now on.
    fn drop(&mut self) {
        self.shared.close();
    }
}
