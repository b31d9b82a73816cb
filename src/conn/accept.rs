//! The listener's accept path: `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)` in
//! bounded batches, transient errors survived, and no spin at the fd limit.
//!
//! At `EMFILE`/`ENFILE` a level-triggered listener stays readable forever:
//! every wakeup fails the same accept, at 100 % CPU, and nothing is served.
//! The answer here is libuv's and nginx's reserve fd: one spare fd is held
//! open; at the limit it is closed, the waiting clients are accepted and
//! closed at once (they read EOF rather than hang in the backlog), and the
//! spare is reopened. If even that fails (another thread took the slot),
//! accept interest is paused for `PAUSE_ON_EXHAUSTION`, as nginx and
//! asyncio do.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::libc;

use slab::Slab;

use super::ConnStats;
use super::key::Key;
use super::table::TIMER_ACCEPT;
use crate::sys;
use crate::{Core, Interest, Ready, Token, TokenFactory, Trigger};

/// How long accept interest is paused when the reserve fd cannot be
/// reopened.
const PAUSE_ON_EXHAUSTION: Duration = Duration::from_millis(100);
/// Accept errors are logged at most this often.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Shared by every listener in the process (one per worker thread): a batch
/// of accepts holds it for reading, shedding at the fd limit for writing.
/// The fd limit is the process's, so without it the slot one worker frees
/// by closing its reserve can be taken by another worker's accept before
/// the reserve is reopened; that worker then has no reserve, and clients in
/// its backlog wait unanswered for as long as the process stays at the
/// limit.
static FD_SLOTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Options for [`Connections::listen`](super::Connections::listen): start from the default and assign
/// fields, or chain the `with_*` setters.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct AcceptOptions {
    /// Level or Edge for the listener.
    pub trigger: Trigger,
    /// Connections accepted per event at most, so a connect storm cannot
    /// starve established connections. Under Edge a batch that ends before
    /// `EAGAIN` carries the listener over to the next turn.
    pub batch: usize,
    /// Connections beyond this many in the set are accepted and closed at
    /// once (counted in [`ConnStats::refused`](super::ConnStats::refused)),
    /// unless `evict_idle` makes room.
    pub max_connections: usize,
    /// At the cap, close the connection that has been quiet longest to
    /// admit the new one, instead of turning the new one away (nginx reuses
    /// idle keep-alive connections the same way). Counted in
    /// [`ConnStats::evicted`](super::ConnStats::evicted). Off by default.
    pub evict_idle: bool,
    /// Register the listener with `EPOLLEXCLUSIVE`: for one listening
    /// socket shared by several reactors (each on its own thread), so a new
    /// connection wakes one of them, not all (see
    /// [`Interest::EXCLUSIVE`]). Epoll only. Off by default; a listener per
    /// reactor with `SO_REUSEPORT` needs no such thing.
    pub exclusive: bool,
}

impl Default for AcceptOptions {
    fn default() -> AcceptOptions {
        AcceptOptions {
            trigger: Trigger::Level,
            batch: 64,
            max_connections: usize::MAX,
            evict_idle: false,
            exclusive: false,
        }
    }
}

impl AcceptOptions {
    /// Sets [`trigger`](AcceptOptions::trigger).
    #[must_use]
    pub fn with_trigger(mut self, trigger: Trigger) -> AcceptOptions {
        self.trigger = trigger;
        self
    }

    /// Sets [`batch`](AcceptOptions::batch).
    #[must_use]
    pub fn with_batch(mut self, batch: usize) -> AcceptOptions {
        self.batch = batch;
        self
    }

    /// Sets [`max_connections`](AcceptOptions::max_connections).
    #[must_use]
    pub fn with_max_connections(mut self, max: usize) -> AcceptOptions {
        self.max_connections = max;
        self
    }

    /// Sets [`exclusive`](AcceptOptions::exclusive).
    #[must_use]
    pub fn with_exclusive(mut self, on: bool) -> AcceptOptions {
        self.exclusive = on;
        self
    }

    /// The listener's interest: readable, exclusively if asked.
    pub(super) fn interest(&self) -> Interest {
        if self.exclusive {
            Interest::READABLE | Interest::EXCLUSIVE
        } else {
            Interest::READABLE
        }
    }

    /// Sets [`evict_idle`](AcceptOptions::evict_idle).
    #[must_use]
    pub fn with_evict_idle(mut self, on: bool) -> AcceptOptions {
        self.evict_idle = on;
        self
    }
}

/// Names a listener of a [`Connections`](super::Connections) set, as
/// [`ConnId`](super::ConnId) names a connection: its token (owner, slot and
/// generation), so an id kept after its listener was closed names nothing.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct ListenerId(pub(super) Token);

impl ListenerId {
    /// A small number, unique among the set's open listeners (reused
    /// after a listener closes), for logs and names.
    pub fn index(self) -> usize {
        match Key::of(self.0) {
            Key::Listener(key) | Key::Conn(key) => key,
        }
    }
}

struct Listener {
    fd: OwnedFd,
    /// The listener's token: its set's owner byte, its slot, its
    /// generation. An id names this listener only if it carries all three.
    token: Token,
    reserve: Option<File>,
    options: AcceptOptions,
    last_log: Option<Instant>,
    /// Out of the kernel's interest list until the pause timer fires.
    paused: bool,
    /// Accepted connections get `TCP_NODELAY` (a TCP listener, and the
    /// set's [`nodelay`](super::ConnOptions::nodelay) on).
    nodelay: bool,
}

impl Listener {
    fn new(
        fd: OwnedFd,
        options: AcceptOptions,
        token: Token,
        nodelay: bool,
    ) -> io::Result<Listener> {
        let nodelay = nodelay && sys::is_tcp(fd.as_fd());
        Ok(Listener {
            fd,
            token,
            reserve: Some(open_reserve()?),
            options,
            last_log: None,
            paused: false,
            nodelay,
        })
    }

    /// Out of fds: give the reserve back, accept and close what is waiting,
    /// take the reserve again. Returns how many clients were turned away.
    fn shed(&mut self) -> usize {
        self.reserve = None;
        let mut shed = 0;
        while let Ok(conn) = sys::accept(self.fd.as_fd()) {
            drop(conn);
            shed += 1;
        }
        self.reserve = open_reserve().ok();
        shed
    }

    fn log(&mut self, message: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self.last_log.is_none_or(|t| now - t >= LOG_INTERVAL) {
            self.last_log = Some(now);
            log::warn!("{message}");
        }
    }
}

fn open_reserve() -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Close-on-exec (std's default) and non-blocking, like every fd the
    // library opens.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/null")
        .map_err(|e| sys::context(e, "opening the reserve fd"))
}

/// A set's listeners, each named by a [`ListenerId`] with a generation,
/// and their accept path.
#[derive(Default)]
pub(super) struct Listeners {
    slots: Slab<Listener>,
    /// The generation of the latest listener (24 bits, as a token holds).
    generation: u32,
}

impl Listeners {
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The slot of the listener `token` names, if it is still there.
    fn key(&self, token: Token) -> Option<usize> {
        let Key::Listener(key) = Key::of(token) else {
            return None;
        };
        (self.slots.get(key)?.token == token).then_some(key)
    }

    /// Registers `fd` (made non-blocking) as a listener of the set whose
    /// tokens `tokens` makes.
    pub(super) fn add<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        tokens: TokenFactory,
        fd: OwnedFd,
        options: AcceptOptions,
        nodelay: bool,
    ) -> io::Result<ListenerId> {
        let key = self.slots.vacant_key();
        self.generation = (self.generation + 1) & 0xff_ffff;
        let token = Key::Listener(key).token(tokens, self.generation);
        sys::set_nonblocking(fd.as_fd(), "the listener")?;
        let entry = Listener::new(fd, options, token, nodelay)?;
        core.set_interest(
            entry.fd.as_fd(),
            token,
            Interest::NONE,
            options.interest(),
            options.trigger,
        )?;
        self.slots.insert(entry);
        Ok(ListenerId(token))
    }

    /// Takes the listener `id` out of the kernel's interest list and closes
    /// it; false if it is gone.
    pub(super) fn remove<D: 'static>(&mut self, core: &mut Core<D>, id: ListenerId) -> bool {
        let Some(key) = self.key(id.0) else {
            return false;
        };
        let listener = self.slots.remove(key);
        let interest = if listener.paused {
            Interest::NONE
        } else {
            listener.options.interest()
        };
        let trigger = listener.options.trigger;
        if let Err(e) =
            core.set_interest(listener.fd.as_fd(), id.0, interest, Interest::NONE, trigger)
        {
            log::debug!("unlisten {:?}: {e}", id.0);
        }
        true
    }

    /// The listener's fd (to learn its address).
    pub(super) fn fd(&self, id: ListenerId) -> Option<BorrowedFd<'_>> {
        let key = self.key(id.0)?;
        Some(self.slots[key].fd.as_fd())
    }

    /// The listener `token` names is readable: accepts a batch into
    /// `accepted`, and returns the listener's options for them (`None`
    /// for a stale token). Cold: one accept per connection, against many
    /// messages.
    #[cold]
    #[inline(never)]
    pub(super) fn accept<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        token: Token,
        stats: &mut ConnStats,
        accepted: &mut Vec<OwnedFd>,
    ) -> Option<AcceptOptions> {
        let key = self.key(token)?; // none: an event for a listener since closed
        let listener = &mut self.slots[key];
        if listener.reserve.is_none() {
            // Lost at the fd limit (another thread took the slot it freed):
            // take it back as soon as there is room, or it is gone for good.
            listener.reserve = open_reserve().ok();
        }
        let options = listener.options;
        match self.accept_batch(key, stats, accepted) {
            BatchEnd::Drained => {}
            BatchEnd::Full => {
                if options.trigger == Trigger::Edge {
                    core.requeue(token, Ready::READABLE);
                }
            }
            BatchEnd::OutOfFds(e) => {
                stats.accept_errors += 1;
                let listener = &mut self.slots[key];
                let shed = {
                    let _shedding = FD_SLOTS.write().unwrap_or_else(|p| p.into_inner());
                    listener.shed()
                };
                let fd = listener.fd.as_raw_fd();
                listener.log(format_args!(
                    "accept on fd {fd}: {}; closed {shed} waiting connection(s) to stay responsive",
                    io::Error::from_raw_os_error(e)
                ));
                if listener.reserve.is_none() {
                    self.pause(core, token);
                }
            }
        }
        Some(options)
    }

    /// Up to a batch of `accept4` calls on the listener in slot `key`, the
    /// connections into `into`.
    fn accept_batch(
        &mut self,
        key: usize,
        stats: &mut ConnStats,
        into: &mut Vec<OwnedFd>,
    ) -> BatchEnd {
        let listener = &mut self.slots[key];
        let _accepting = FD_SLOTS.read().unwrap_or_else(|p| p.into_inner());
        let mut taken = 0;
        while taken < listener.options.batch {
            match sys::accept(listener.fd.as_fd()) {
                Ok(conn) => {
                    taken += 1;
                    if listener.nodelay {
                        sys::set_nodelay(conn.as_fd());
                    }
                    into.push(conn);
                }
                Err(libc::EAGAIN) => return BatchEnd::Drained,
                Err(libc::EINTR) => {}
                Err(e @ (libc::EMFILE | libc::ENFILE)) => return BatchEnd::OutOfFds(e),
                Err(e) => {
                    // ECONNABORTED, EPROTO, EPERM (firewall), ENOBUFS, ENOMEM:
                    // about one connection or a passing shortage, never a
                    // reason to stop listening.
                    stats.accept_errors += 1;
                    let fd = listener.fd.as_raw_fd();
                    listener.log(format_args!(
                        "accept on fd {fd}: {} (the listener keeps going)",
                        io::Error::from_raw_os_error(e)
                    ));
                    taken += 1;
                }
            }
        }
        BatchEnd::Full
    }

    /// The reserve could not be reopened: stop accepting for a while.
    fn pause<D: 'static>(&mut self, core: &mut Core<D>, token: Token) {
        let Some(key) = self.key(token) else {
            return;
        };
        let listener = &mut self.slots[key];
        let options = listener.options;
        let fd = listener.fd.as_fd();
        if core
            .set_interest(
                fd,
                token,
                options.interest(),
                Interest::NONE,
                options.trigger,
            )
            .is_ok()
        {
            listener.paused = true;
            core.source_timer(PAUSE_ON_EXHAUSTION, token, TIMER_ACCEPT);
        }
        listener.reserve = open_reserve().ok();
    }

    /// The pause timer of the listener `token` names fired.
    pub(super) fn resume<D: 'static>(&mut self, core: &mut Core<D>, token: Token) {
        let Some(key) = self.key(token) else {
            return;
        };
        let listener = &mut self.slots[key];
        if listener.paused {
            let options = listener.options;
            let fd = listener.fd.as_fd();
            if core
                .set_interest(
                    fd,
                    token,
                    Interest::NONE,
                    options.interest(),
                    options.trigger,
                )
                .is_ok()
            {
                listener.paused = false;
            }
        }
    }
}

/// How a batch of accepts ended.
enum BatchEnd {
    /// `EAGAIN`: nobody is waiting.
    Drained,
    /// The batch is full; more may be waiting.
    Full,
    /// `EMFILE` or `ENFILE`.
    OutOfFds(i32),
}
