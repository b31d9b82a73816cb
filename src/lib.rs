//! # edgeloop
//!
//! A hand-rolled, single-threaded epoll reactor with selectors-style
//! callbacks, built directly on `nix`.
//!
//! ## The model, in one page
//!
//! You **register** something that owns an fd (a socket, a pipe, an
//! `OwnedFd`) with an [`Interest`] (readable, writable), a [`Trigger`]
//! (level, edge, oneshot) and a callback. The [`Reactor`] waits on its
//! [`Selector`] (epoll by default) and calls the callback of each
//! registration the kernel reports, with an [`Event`]: its [`Token`] and
//! what is [`Ready`]. That is all a turn does, plus timers and closures
//! posted from other threads.
//!
//! - **The reactor owns what it registers.** The callback borrows it (`&mut`)
//!   on each event; deregistering takes the fd out of the kernel's interest
//!   list *and then* closes it. No fd can be closed behind the reactor's
//!   back, and a stale token can never deregister an fd number that was
//!   reused (IO safety).
//! - **Callbacks return a [`PostAction`]**: continue, modify, disable or
//!   remove their registration, applied after they return. They also get
//!   `&mut Reactor`, so they may register, modify and deregister anything
//!   else, set and cancel timers, and stop the loop.
//! - **Loop state.** `Reactor<D>` holds one value of the user's choosing
//!   that every callback (I/O, timer, posted closure, signal, connection
//!   handler) reaches by `&mut` through [`Core::data_mut`]: no
//!   `Rc<RefCell>`, no thread-locals.
//! - **Tokens carry an owner and a generation.** The owner byte routes an
//!   event to the table that holds its registration: the plain callbacks,
//!   the waker, or an installed [`Source`] such as a set of
//!   [`conn::Connections`]. The generation makes an event for a
//!   registration removed earlier in the same batch miss, even if its slot
//!   was reused; it is counted in [`Stats::stale`]. Only the reactor
//!   makes tokens (a source gets a [`TokenFactory`] for its owner byte),
//!   and it keeps which token holds each fd it watches: no safe code can
//!   forge a token, or arm, change or remove an fd under a token that does
//!   not hold it.
//! - **Level vs edge is per registration.** Level-triggered: read once and
//!   return, you will be told again. Edge-triggered: read until `EAGAIN`, or
//!   [`requeue`](Core::requeue) yourself, or the wakeup is lost for good.
//! - **Timers** ([`Core::call_later`], [`Core::call_every`]) use the
//!   monotonic clock, never fire early, and fire in insertion order on ties.
//!   A loop with no timers does no timer work.
//! - **Other threads** get a [`Handle`]: `wake`, `stop`, `post(closure)`,
//!   through one eventfd.
//! - **Panics** in a callback are caught once per dispatch: that
//!   registration (or that one connection) is removed and the loop goes on,
//!   or the panic resumes after the turn ([`PanicPolicy`]).
//! - **[`Stats`]** counts the loop's own syscalls and dispatches, always on;
//!   the connection layer keeps its own ([`conn::ConnStats`]).
//! - **Errors** are `std::io::Result`: the kind is the errno's kind, the
//!   message names the call and the fd, and [`os_error`] gives the errno
//!   back.
//!
//! ## Example
//!
//! ```
//! use edgeloop::{Interest, PostAction, Reactor, Trigger};
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//!
//! // The loop state: what the callbacks received, reachable from each.
//! let mut reactor = Reactor::with_data(Vec::<u8>::new())?;
//! let (ours, mut theirs) = UnixStream::pair()?;
//! ours.set_nonblocking(true)?;
//!
//! reactor.core_mut().register(ours, Interest::READABLE, Trigger::Edge, |r, stream, _event| {
//!     // Edge-triggered: drain until WouldBlock, or the next edge never comes.
//!     let mut buf = [0u8; 64];
//!     loop {
//!         match stream.read(&mut buf) {
//!             Ok(0) => return PostAction::Remove, // EOF: deregister, then close
//!             Ok(n) => r.core_mut().data_mut().extend_from_slice(&buf[..n]),
//!             Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
//!             Err(e) => panic!("{e}"),
//!         }
//!     }
//!     r.core_mut().stop();
//!     PostAction::Continue
//! })?;
//!
//! theirs.write_all(b"hello")?;
//! reactor.run()?; // one turn: the callback reads "hello" and stops the loop
//! assert_eq!(reactor.core().data(), b"hello");
//! assert_eq!(reactor.core().stats().dispatched, 1);
//!
//! // A timer reaches the same state.
//! reactor.core_mut().call_later(Duration::from_millis(1), |r| {
//!     r.core_mut().data_mut().push(b'!');
//!     r.core_mut().stop();
//! });
//! reactor.run()?;
//! assert_eq!(reactor.core().data(), b"hello!");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Layers
//!
//! Each layer knows only the ones below it (`src/` has a folder each):
//!
//! - `sys`: the one syscall door; every `unsafe` block of the crate is in it.
//! - [`selector`]: the [`Selector`] trait and its backends, [`Epoll`] (the
//!   default), [`Poll`] and [`Select`]; [`Token`] and [`TokenFactory`],
//!   [`Interest`], [`Trigger`], [`Ready`], [`Events`].
//! - [`Reactor`] and its [`Core`]: plain registrations, [`Source`] owners,
//!   timers, the waker and [`Handle`], signals ([`on_signals`]), [`Stats`].
//! - [`conn`]: buffered connections served by a [`conn::Handler`], the
//!   listener's accept path and listening sockets ([`conn::tcp_listener`]),
//!   graceful shutdown of a set ([`conn::shut_down`]), [`conn::ConnStats`].
//! - `server` (the `server` feature, on by default): TCP, UDP, Unix
//!   stream and datagram servers, `serve_forever` / `shutdown`, a worker
//!   pool, `server::Workers` (one reactor per core), `server::Processes`
//!   (worker processes).

#![deny(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod conn;
mod reactor;
pub mod selector;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
mod sys;

/// The `nix` edgeloop is built on, re-exported: [`Signal`] (in
/// [`on_signals`]) and the fds and errors that cross the API are nix's
/// types, so a program names them through `edgeloop::nix` and always gets
/// the matching version. Version policy: edgeloop follows nix's minor
/// releases (0.31 now); moving to a nix release that breaks these types is
/// a breaking release of edgeloop.
pub use nix;
/// The signals [`on_signals`] takes: `nix`'s, re-exported (see
/// [`nix`] for the version policy).
pub use nix::sys::signal::Signal;
pub use reactor::{
    Batch, Core, Handle, PanicPolicy, PostAction, Reactor, Source, SourceId, Stats, TimerId,
    on_signals,
};
pub use selector::{
    Backend, DefaultSelector, Epoll, Event, Events, Interest, Poll, Ready, Select, Selector, Token,
    TokenFactory, Trigger,
};
pub use sys::os_error;

/// The README's example runs as a doctest, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
