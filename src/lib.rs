//! # edgeloop
//!
//! A hand-rolled, single-threaded epoll reactor with selectors-style
//! callbacks, built directly on `nix`.
//!
//! ## The model, in one page
//!
//! You **register** a file descriptor with an [`Interest`] (readable,
//! writable), a [`Trigger`] (level, edge, oneshot) and a callback. The
//! [`Reactor`] waits on its [`Selector`] (epoll by default) and calls the
//! callback of each registration the kernel reports, with an [`Event`]: its
//! [`Token`] and what is [`Ready`]. That is all a turn does, plus timers and
//! closures posted from other threads.
//!
//! - **Callbacks get `&mut Reactor`**, so they may register, modify and
//!   deregister anything (themselves included), set and cancel timers, and
//!   stop the loop. While a callback runs it is taken out of its slot; it goes
//!   back only if the slot still holds the same registration.
//! - **Tokens carry a generation.** A batch from `epoll_wait` can hold an
//!   event for a registration that an earlier callback in the same batch
//!   removed, and whose slot a new registration then reused. The generation
//!   makes that event miss; it is counted in [`Stats::stale`].
//! - **Level vs edge is per registration.** Level-triggered: read once and
//!   return, you will be told again. Edge-triggered: read until `EAGAIN`, or
//!   [`requeue`](Reactor::requeue) yourself, or the wakeup is lost for good.
//! - **Timers** ([`Reactor::call_later`], [`Reactor::call_every`]) use the
//!   monotonic clock, never fire early, and fire in insertion order on ties.
//! - **Other threads** get a [`Handle`]: `wake`, `stop`, `post(closure)`,
//!   through one eventfd.
//! - **Panics** in a callback are caught: that registration is removed and the
//!   loop goes on ([`PanicPolicy`]).
//! - **[`Stats`]** counts the loop's own syscalls and dispatches, always on.
//!
//! The reactor does not own the fds it watches. Move the socket into its
//! callback: deregistering drops the callback after the kernel forgot the fd,
//! which closes the socket in the right order.
//!
//! ## Example
//!
//! ```
//! use edgeloop::{Interest, Reactor, Trigger};
//! use std::io::{Read, Write};
//! use std::os::fd::AsRawFd;
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//!
//! let mut reactor = Reactor::new()?;
//! let (mut ours, mut theirs) = UnixStream::pair()?;
//! ours.set_nonblocking(true)?;
//!
//! let fd = ours.as_raw_fd();
//! reactor.register(fd, Interest::READABLE, Trigger::Edge, move |reactor, event| {
//!     // Edge-triggered: drain until WouldBlock, or the next edge never comes.
//!     let mut buf = [0u8; 64];
//!     loop {
//!         match ours.read(&mut buf) {
//!             Ok(0) => break,
//!             Ok(n) => println!("{event:?}: got {:?}", &buf[..n]),
//!             Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
//!             Err(e) => panic!("{e}"),
//!         }
//!     }
//!     reactor.stop();
//! })?;
//!
//! theirs.write_all(b"hello")?;
//! reactor.run()?; // one turn: the callback reads "hello" and stops the loop
//! assert_eq!(reactor.stats().dispatched, 1);
//!
//! // A timer, for good measure.
//! reactor.call_later(Duration::from_millis(1), |reactor| reactor.stop());
//! reactor.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Layers
//!
//! Each layer knows only the ones below it:
//!
//! - [`selector`]: the [`Selector`] trait and its backends, [`Epoll`] (the
//!   default), [`Poll`] and [`Select`].
//! - [`Reactor`]: registrations, timers, the waker and [`Handle`], [`Stats`].
//! - [`accept`] and [`conn`]: the listener's accept path, and buffered
//!   connections served by a [`conn::Handler`].
//! - [`server`]: TCP, UDP, Unix stream and datagram servers,
//!   `serve_forever` / `shutdown`, a worker pool, and [`server::Workers`]
//!   (one reactor per core).
//! - [`study`]: the readiness trace behind the `lt_vs_et` example.
//!
//! [`net`] makes listening sockets and [`signal`] turns Unix signals into
//! events.

#![deny(missing_docs, missing_debug_implementations)]

pub mod accept;
pub mod conn;
mod event;
pub mod net;
mod reactor;
pub mod selector;
pub mod server;
pub mod signal;
mod stats;
pub mod study;
mod sys;
mod timer;
mod waker;

pub use event::{Event, Interest, Ready, Token, Trigger};
pub use reactor::{Callback, PanicPolicy, Reactor, SharedCallback};
pub use selector::{Backend, DefaultSelector, Epoll, Poll, Select, Selector};
pub use stats::Stats;
pub use timer::TimerId;
pub use waker::Handle;
