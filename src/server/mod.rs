//! A `socketserver`-like layer: bind, serve forever, shut down from
//! anywhere, without Python's flaws (`shutdown()` here never blocks, so
//! calling it from a handler cannot deadlock, and `serve_forever` sleeps in
//! the kernel instead of polling a flag every 0.5 s).
//!
//! | Python `socketserver` | edgeloop |
//! |---|---|
//! | `TCPServer(addr, Handler)` | [`StreamServer::bind`] |
//! | `BaseRequestHandler.setup/handle/finish` | [`Handler::on_open`](crate::conn::Handler::on_open) / `on_data` / `on_close` |
//! | `serve_forever()` | [`StreamServer::serve_forever`] |
//! | `shutdown()` (blocks; deadlocks from a handler) | [`ShutdownHandle::shutdown`] (never blocks) + [`ShutdownHandle::wait`] |
//! | `server_close()` | dropping the server |

use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::conn::{AcceptOptions, ConnOptions, ShutdownMode};
use crate::selector::Backend;
use crate::{Handle, PanicPolicy, Reactor};

mod addr;
mod datagram;
mod net;
mod pool;
mod processes;
mod stream;
mod unix;
mod workers;

pub use addr::ServerAddr;
pub use datagram::{Datagram, DatagramHandler, DatagramOptions, DatagramServer, MAX_PACKET_SIZE};
pub use pool::{Blocking, Pooled, PooledSession, attach_pool};
pub use processes::{ProcessOptions, ProcessStats, Processes};
pub use stream::StreamServer;
pub use unix::UnixPath;
pub use workers::Workers;

/// Spawns a thread that has every signal blocked: process-directed signals
/// then go to a thread that wants them (the loop's, through its signalfd),
/// never to this one, whatever order the program set things up in.
pub(crate) fn spawn_with_signals_blocked<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<std::thread::JoinHandle<T>> {
    use nix::sys::signal::{SigSet, SigmaskHow};
    let previous = SigSet::all()
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(|e| crate::sys::errno_error(e as i32, "pthread_sigmask"))?;
    // The new thread inherits this thread's mask: everything blocked.
    let spawned = std::thread::Builder::new().name(name).spawn(f);
    let restored = previous.thread_set_mask();
    let handle = spawned?;
    restored.map_err(|e| crate::sys::errno_error(e as i32, "pthread_sigmask"))?;
    Ok(handle)
}

/// Runs `reactor` until `shutdown` is asked for, marking the serving thread
/// so that [`ShutdownHandle::wait`] knows who may not block.
fn serve_until_shutdown<D: 'static>(
    reactor: &mut Reactor<D>,
    shutdown: &ShutdownHandle,
) -> io::Result<()> {
    shutdown.started();
    let mut result = Ok(());
    while !shutdown.is_shutdown_requested() {
        if let Err(e) = reactor.run() {
            result = Err(e);
            break;
        }
    }
    result
}

/// Runs turns until `done()` or `timeout`; returns `done()`.
fn run_until<D: 'static>(
    reactor: &mut Reactor<D>,
    timeout: Duration,
    mut done: impl FnMut(&Reactor<D>) -> bool,
) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    while !done(reactor) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        reactor.run_once(Some(left))?;
    }
    Ok(true)
}

/// What a server is built with: start from the default and chain the
/// `with_*` setters (or assign fields).
///
/// ```
/// use edgeloop::server::ServerOptions;
/// use edgeloop::conn::ConnOptions;
/// use edgeloop::{Backend, Trigger};
///
/// let options = ServerOptions::default()
///     .with_backend(Backend::Poll)
///     .with_conn(ConnOptions::with_trigger(Trigger::Level))
///     .with_max_connections(10_000);
/// assert_eq!(options.backend, Backend::Poll);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerOptions {
    /// The selector backend of the server's reactor.
    pub backend: Backend,
    /// Listen backlog; `None` is the system's somaxconn.
    pub backlog: Option<i32>,
    /// The connections' trigger, buffers and water marks.
    pub conn: ConnOptions,
    /// The listener's trigger, accept batch and connection cap
    /// ([`AcceptOptions::max_connections`]: the one place the cap lives;
    /// [`with_max_connections`](ServerOptions::with_max_connections) sets
    /// it).
    pub accept: AcceptOptions,
    /// How long a graceful shutdown waits for queued output to drain before
    /// it aborts what is left.
    pub shutdown_grace: Duration,
    /// How a graceful shutdown ends the open connections: close each
    /// once its output is sent (the default), or let each end by itself
    /// (streams: a proxy).
    pub shutdown_mode: ShutdownMode,
    /// What the server's reactor does when a handler panics.
    pub panic_policy: PanicPolicy,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            backend: Backend::Epoll,
            backlog: None,
            conn: ConnOptions::default(),
            accept: AcceptOptions::default(),
            shutdown_grace: Duration::from_secs(5),
            shutdown_mode: ShutdownMode::Close,
            panic_policy: PanicPolicy::Isolate,
        }
    }
}

impl ServerOptions {
    /// Sets [`backend`](ServerOptions::backend).
    #[must_use]
    pub fn with_backend(mut self, backend: Backend) -> ServerOptions {
        self.backend = backend;
        self
    }

    /// Sets [`backlog`](ServerOptions::backlog).
    #[must_use]
    pub fn with_backlog(mut self, backlog: Option<i32>) -> ServerOptions {
        self.backlog = backlog;
        self
    }

    /// Sets [`conn`](ServerOptions::conn).
    #[must_use]
    pub fn with_conn(mut self, conn: ConnOptions) -> ServerOptions {
        self.conn = conn;
        self
    }

    /// Sets [`accept`](ServerOptions::accept).
    #[must_use]
    pub fn with_accept(mut self, accept: AcceptOptions) -> ServerOptions {
        self.accept = accept;
        self
    }

    /// Sets the accept options' [`max_connections`](AcceptOptions::max_connections):
    /// connections beyond it are accepted and closed at once (or, with
    /// `accept.evict_idle`, let in in place of the longest-idle one).
    #[must_use]
    pub fn with_max_connections(mut self, max: usize) -> ServerOptions {
        self.accept.max_connections = max;
        self
    }

    /// Sets [`shutdown_grace`](ServerOptions::shutdown_grace).
    #[must_use]
    pub fn with_shutdown_grace(mut self, grace: Duration) -> ServerOptions {
        self.shutdown_grace = grace;
        self
    }

    /// Sets [`shutdown_mode`](ServerOptions::shutdown_mode).
    #[must_use]
    pub fn with_shutdown_mode(mut self, mode: ShutdownMode) -> ServerOptions {
        self.shutdown_mode = mode;
        self
    }

    /// Sets [`panic_policy`](ServerOptions::panic_policy).
    #[must_use]
    pub fn with_panic_policy(mut self, policy: PanicPolicy) -> ServerOptions {
        self.panic_policy = policy;
        self
    }
}

#[derive(Default)]
struct Lifecycle {
    requested: bool,
    serving_thread: Option<ThreadId>,
    finished: bool,
}

/// Stops a server from any thread, its own handlers included. `Send + Clone`.
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<dyn Fn() + Send + Sync>,
    state: Arc<(Mutex<Lifecycle>, Condvar)>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("requested", &self.requested)
            .field("finished", &self.finished)
            .finish()
    }
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("state", &self.lock())
            .finish()
    }
}

impl ShutdownHandle {
    pub(crate) fn new<D: 'static>(handle: Handle<D>) -> ShutdownHandle {
        ShutdownHandle {
            stop: Arc::new(move || handle.stop()),
            state: Arc::default(),
        }
    }

    /// Asks the server to stop: it stops accepting, flushes what is queued
    /// (bounded by `shutdown_grace`), closes, and `serve_forever` returns.
    /// Never blocks; idempotent; works before `serve_forever` starts (which
    /// then returns at once).
    pub fn shutdown(&self) {
        self.lock().requested = true;
        (self.stop)();
    }

    /// True once shutdown was asked for.
    pub fn is_shutdown_requested(&self) -> bool {
        self.lock().requested
    }

    /// Blocks until `serve_forever` has returned, or `timeout` passes.
    /// Returns true if it has.
    ///
    /// # Errors
    /// `WouldBlock` when called from the serving thread itself, where
    /// waiting would deadlock (the bug Python's `shutdown()` has).
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let (lock, finished) = &*self.state;
        let state = lock.lock().unwrap_or_else(|p| p.into_inner());
        if state.serving_thread == Some(std::thread::current().id()) && !state.finished {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "edgeloop: ShutdownHandle::wait called from the serving thread would deadlock; \
                 call shutdown() and return from the handler instead",
            ));
        }
        let deadline = Instant::now() + timeout;
        let mut state = state;
        while !state.finished {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            state = finished
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lifecycle> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn started(&self) {
        let mut state = self.lock();
        state.serving_thread = Some(std::thread::current().id());
        state.finished = false;
    }

    pub(crate) fn finished(&self) {
        let mut state = self.lock();
        state.finished = true;
        state.serving_thread = None;
        self.state.1.notify_all();
    }
}
