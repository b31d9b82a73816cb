//! Unix signals as events: `signalfd`, registered like any other fd, so a
//! server's SIGINT/SIGTERM handling runs on the loop's thread with the
//! reactor in hand (no async-signal-safety puzzles, no self-pipe).

use std::io;

use nix::sys::signal::Signal;

use super::{PostAction, Reactor};
use crate::sys;
use crate::{Interest, Token, Trigger};

/// Delivers `signals` to `callback` on the loop's thread.
///
/// The signals are blocked in the calling thread (and so in threads it
/// spawns afterwards), which is what makes them queue on the signalfd
/// instead of running their default action: call this before spawning
/// threads. A signal sent to the process (`kill`, Ctrl-C) goes to a
/// thread that does not block it, if there is one, and never reaches the
/// signalfd: threads spawned before this call keep the signals unblocked,
/// and it logs a warning naming them. Deregister the returned token to
/// stop listening (the signals stay blocked).
///
/// ```
/// use edgeloop::{Reactor, Signal, on_signals};
/// let mut reactor = Reactor::with_data(None)?;
/// on_signals(&mut reactor, &[Signal::SIGUSR1], |r, signal| {
///     *r.core_mut().data_mut() = Some(signal);
///     r.core_mut().stop();
/// })?;
/// edgeloop::nix::sys::signal::raise(Signal::SIGUSR1)?; // queued on the signalfd
/// reactor.run()?;
/// assert_eq!(*reactor.core().data(), Some(Signal::SIGUSR1));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// If the signals cannot be blocked or the signalfd created.
pub fn on_signals<D: 'static, F>(
    reactor: &mut Reactor<D>,
    signals: &[Signal],
    mut callback: F,
) -> io::Result<Token>
where
    F: FnMut(&mut Reactor<D>, Signal) + 'static,
{
    let fd = sys::Signals::new(signals)?;
    reactor
        .core_mut()
        .register(fd, Interest::READABLE, Trigger::Level, move |r, fd, _| {
            // Level-triggered: drain every pending signal, or the fd spins.
            while let Some(signal) = fd.next() {
                callback(r, signal);
            }
            PostAction::Continue
        })
}
