//! The way in from other threads: a [`Handle`] that can wake the loop, stop
//! it, and post closures to run on it, all through one eventfd.
//!
//! The protocol: a producer pushes its closure, then
//! wakes. `wake` writes the eventfd only if the `pending` flag was clear, so a
//! burst of wakes costs one write. The loop, on the eventfd's readiness, first
//! reads the eventfd (draining its counter), then clears `pending`, then takes
//! the queue. A producer that pushes after the take sees `pending` clear and
//! writes again; one that pushed before it is served by the take. The eventfd
//! is level-triggered and always drained, so it can neither spin nor
//! overflow.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::Reactor;
use crate::sys;

/// A closure posted from another thread to run on the loop.
pub(crate) type Posted<D> = Box<dyn FnOnce(&mut Reactor<D>) + Send>;

/// What a reactor and its handles share: the eventfd, the stop flag and the
/// posted closures.
pub(crate) struct Mailbox<D> {
    eventfd: sys::Counter,
    pending: AtomicBool,
    stop: AtomicBool,
    /// The posted closures; `None` once the reactor is dropped.
    queue: Mutex<Option<Vec<Posted<D>>>>,
}

impl<D> Mailbox<D> {
    pub(crate) fn new() -> io::Result<Arc<Mailbox<D>>> {
        let eventfd = sys::Counter::new("the reactor's waker")?;
        Ok(Arc::new(Mailbox {
            eventfd,
            pending: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            queue: Mutex::new(Some(Vec::new())),
        }))
    }

    pub(crate) fn eventfd(&self) -> &sys::Counter {
        &self.eventfd
    }

    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // EAGAIN means the counter is about to overflow: the loop has a
            // wakeup waiting already, which is all we need.
            if let Err(e) = self.eventfd.add_one() {
                log::error!("edgeloop: waking the loop failed: {e}");
            }
        }
    }

    /// Called by the loop when the eventfd is readable: drains the counter,
    /// re-opens the gate for the next wake, and swaps the posted closures
    /// behind what `into` holds (both keep their allocations, so a quiet
    /// loop does not allocate).
    pub(crate) fn take_posted(&self, into: &mut VecDeque<Posted<D>>) {
        // Order matters: drain, then clear `pending`, then take the queue.
        self.eventfd.drain();
        self.pending.store(false, Ordering::Release);
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = queue.as_mut() {
            into.extend(queue.drain(..));
        }
    }

    /// The reactor is gone: later posts are refused, and what was posted
    /// and never run is dropped.
    pub(crate) fn close(&self) {
        let queued = self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(queued); // outside the lock: a closure's drop may post
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub(crate) fn clear_stop(&self) {
        self.stop.store(false, Ordering::Release);
    }
}

/// A `Send + Clone` way into a [`Reactor`] from other threads.
///
/// Get one with [`Core::handle`](crate::Core::handle). It keeps working (doing nothing useful)
/// after the reactor is dropped; closures posted then are never run.
///
/// ```
/// use edgeloop::Reactor;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let mut reactor = Reactor::new()?;
/// let handle = reactor.core().handle();
/// let ran = Arc::new(AtomicUsize::new(0));
/// let counter = ran.clone();
/// let worker = std::thread::spawn(move || {
///     handle.post(move |_reactor| {
///         counter.fetch_add(1, Ordering::SeqCst);
///     })?; // Err once the reactor is gone
///     handle.stop();
///     Ok::<_, std::io::Error>(handle)
/// });
/// reactor.run()?; // returns once the stop arrives
/// let handle = worker.join().unwrap()?;
/// assert_eq!(ran.load(Ordering::SeqCst), 1);
/// drop(reactor);
/// assert!(handle.post(|_| {}).is_err()); // the loop is gone
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Handle<D = ()> {
    shared: Arc<Mailbox<D>>,
}

impl<D> Clone for Handle<D> {
    fn clone(&self) -> Self {
        Handle {
            shared: self.shared.clone(),
        }
    }
}

impl<D> Handle<D> {
    pub(crate) fn new(shared: Arc<Mailbox<D>>) -> Handle<D> {
        Handle { shared }
    }

    /// Makes a blocked wait return. A burst of calls before the loop wakes
    /// costs one eventfd write.
    pub fn wake(&self) {
        self.shared.wake();
    }

    /// Asks [`Reactor::run`] to return after the current turn. Works before
    /// `run` starts (it then returns at once) and from any thread; calling it
    /// twice is harmless.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake();
    }

    /// Runs `f` on the loop's thread, with the reactor and through it the
    /// loop state. Every posted closure runs exactly once, in the order
    /// posted by any one thread. A turn runs at most 1,024 of them, so a
    /// flood of posts cannot hold up the loop's IO, timers and signals; the
    /// rest run on the turns after. The mailbox itself is not bounded: a
    /// thread that posts faster than the loop runs them grows it.
    ///
    /// # Errors
    /// `BrokenPipe` once the reactor is dropped: `f` will never run (it is
    /// dropped). Closures posted before the drop that had not run are
    /// dropped with the reactor.
    pub fn post(&self, f: impl FnOnce(&mut Reactor<D>) + Send + 'static) -> io::Result<()> {
        let mut guard = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = guard.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "edgeloop: Handle::post: the reactor is gone; the closure will not run",
            ));
        };
        queue.push(Box::new(f));
        drop(guard);
        self.shared.wake();
        Ok(())
    }
}

impl<D> fmt::Debug for Handle<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("pending", &self.shared.pending.load(Ordering::Relaxed))
            .field("stop", &self.shared.stop.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_wakes_costs_one_eventfd_write() {
        let shared = Mailbox::<()>::new().unwrap();
        for _ in 0..1000 {
            shared.wake();
        }
        // The counter holds the number of writes: one.
        assert_eq!(shared.eventfd.drain(), 1);
        let mut posted = VecDeque::new();
        shared.take_posted(&mut posted);
        shared.wake();
        assert_eq!(
            shared.eventfd.drain(),
            1,
            "the gate reopens after the loop drains"
        );
    }
}
