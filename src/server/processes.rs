//! Process workers: see [`Processes`].

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, SockFlag, SockaddrStorage};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::conn::tcp_listener;
use crate::sys;

/// How the supervisor runs its children.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProcessOptions {
    /// Listen backlog of each child's listener; `None` is somaxconn.
    pub backlog: Option<i32>,
    /// The first restart waits this long; each quick death doubles it (up
    /// to 5 s).
    pub restart_backoff: Duration,
    /// How long children get to exit after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// How long a child may take to start listening.
    pub start_timeout: Duration,
}

impl Default for ProcessOptions {
    fn default() -> ProcessOptions {
        ProcessOptions {
            backlog: None,
            restart_backoff: Duration::from_millis(100),
            stop_grace: Duration::from_secs(10),
            start_timeout: Duration::from_secs(10),
        }
    }
}

/// What the supervisor did, returned by [`Processes::run`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessStats {
    /// Children started, restarts included.
    pub started: u64,
    /// Children restarted after an unexpected exit.
    pub restarts: u64,
    /// Children killed because they outlived the stop grace.
    pub killed: u64,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Process workers, the nginx way: a supervisor forks N children, each with
/// its own `SO_REUSEPORT` listener on one address, its own reactor and its
/// own fd limit. Past one process's open-file cap (20,000 here), this is
/// how one host serves 100,000 connections.
///
/// - **The address is reserved once.** [`Processes::bind`] binds (and never
///   listens on) a socket with `SO_REUSEPORT`, so `127.0.0.1:0` picks a port
///   every child then binds; the kernel spreads new connections over the
///   children's listeners.
/// - **Ready means listening.** [`Processes::run`] calls its `ready`
///   callback (where a server prints `listening on HOST:PORT`) only once
///   every child has its listener.
/// - **Signals.** SIGTERM and SIGINT to the supervisor are relayed to every
///   child as SIGTERM; the supervisor reaps them and returns when all have
///   exited (no zombie, no orphan). Children still running after
///   [`ProcessOptions::stop_grace`] are killed.
/// - **Restarts.** A child that dies (killed, or an error from `serve`)
///   while the supervisor is not stopping is restarted after a backoff
///   (doubling from [`ProcessOptions::restart_backoff`] up to 5 s, reset
///   once a child has lived 10 s), and counted. One whose `serve` returned
///   `Ok` (exit 0) finished on purpose and is not restarted; the supervisor
///   returns once every child has finished.
/// - **Orphans.** Each child asks for SIGTERM when the supervisor dies
///   (`PR_SET_PDEATHSIG`), so a supervisor killed with SIGKILL leaves no
///   server behind.
/// - **fd limit.** Each child raises its soft `RLIMIT_NOFILE` to the hard
///   limit.
///
/// ## Fork safety
///
/// `run` forks, so it must be called while the process has one thread: a
/// child of a multi-threaded process inherits locks other threads held (the
/// allocator's, the logger's) and must not allocate. `run` checks and
/// refuses otherwise. Build reactors, pools and worker threads inside the
/// `serve` closure, in the child. A child inherits the supervisor's memory
/// and fds; the supervisor's own fds (the reserved socket, its signalfd, the
/// ready pipes) are closed in the child before `serve` runs, and every fd
/// edgeloop opens is close-on-exec. A reactor built before `run` would be
/// shared with the children: don't (a reactor refuses to run in a forked
/// child).
///
/// ```no_run
/// use edgeloop::server::{Processes, ServerOptions, StreamServer};
/// # use edgeloop::conn::{Conn, Handler};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type Session = ();
/// #     fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) { conn.write(data); }
/// # }
///
/// let processes = Processes::bind("127.0.0.1:0".parse().unwrap(), 4)?;
/// processes.run(
///     |_index, listener| {
///         // In the child: its own reactor and server.
///         let reactor = edgeloop::Reactor::new()?;
///         StreamServer::from_tcp(reactor, listener, Echo, ServerOptions::default())?
///             .serve_forever()
///     },
///     |addr| println!("listening on {addr}"),
/// )?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Processes {
    addr: SocketAddr,
    count: usize,
    reserved: OwnedFd,
    options: ProcessOptions,
}

/// One child slot.
struct Child {
    pid: Option<Pid>,
    started_at: Instant,
    backoff: Duration,
    restart_at: Option<Instant>,
}

impl Processes {
    /// Reserves `addr` for `count` children (port 0 picks a port): a
    /// `SO_REUSEPORT` socket bound to it, never listening.
    ///
    /// # Errors
    /// `InvalidInput` for `count` 0; `AddrInUse` if another socket listens
    /// on `addr` (the workers' `SO_REUSEPORT` group would share connections
    /// with it); binding errors, with the address.
    pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Processes> {
        if count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "edgeloop: Processes needs at least one child",
            ));
        }
        super::net::refuse_if_taken(addr)?;
        let context = |what: &str, e: nix::Error| sys::in_context(addr, what, e);
        let fd = sys::socket_for(addr, SockFlag::empty(), true)?;
        socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))
            .map_err(|e| context("bind", e))?;
        let bound: SockaddrStorage =
            socket::getsockname(fd.as_raw_fd()).map_err(|e| context("getsockname", e))?;
        let addr = match (bound.as_sockaddr_in(), bound.as_sockaddr_in6()) {
            (Some(v4), _) => SocketAddr::V4((*v4).into()),
            (_, Some(v6)) => SocketAddr::V6((*v6).into()),
            _ => addr,
        };
        Ok(Processes {
            addr,
            count,
            reserved: fd,
            options: ProcessOptions::default(),
        })
    }

    /// Sets the options.
    #[must_use]
    pub fn with_options(mut self, options: ProcessOptions) -> Processes {
        self.options = options;
        self
    }

    /// The reserved address (with the port picked, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forks the children; in each, `serve(index, listener)` runs on its own
    /// `SO_REUSEPORT` listener (the child exits 0 when it returns `Ok`, 1
    /// otherwise). Once every child listens, `ready(addr)` runs here. Then
    /// supervises until SIGTERM or SIGINT: relays it, reaps every child,
    /// returns.
    ///
    /// # Errors
    /// `Unsupported` if this process has more than one thread (see fork
    /// safety in the [`Processes`] docs); a child that exits before it
    /// listens; signal setup errors.
    pub fn run<S, R>(self, serve: S, ready: R) -> io::Result<ProcessStats>
    where
        S: Fn(usize, TcpListener) -> io::Result<()>,
        R: FnOnce(SocketAddr),
    {
        // (`sys::fork` refuses a multi-threaded process, at the first fork
        // and at every restart.)
        // Blocked before the first fork, so none is lost in between; the
        // children get the original mask back.
        let signals = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD]);
        let original = signals
            .thread_swap_mask(SigmaskHow::SIG_BLOCK)
            .map_err(|e| sys::errno_error(e as i32, "pthread_sigmask"))?;
        let result = (|| {
            let signalfd =
                SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
                    .map_err(|e| sys::errno_error(e as i32, "signalfd"))?;
            let mut supervisor = Supervisor {
                processes: &self,
                signalfd,
                ready_pipes: Vec::new(),
                original: &original,
                children: Vec::new(),
                stats: ProcessStats::default(),
            };
            supervisor.start_all(&serve)?;
            ready(self.addr);
            supervisor.supervise(&serve)
        })();
        let _ = original.thread_set_mask();
        result
    }
}

struct Supervisor<'a> {
    processes: &'a Processes,
    signalfd: SignalFd,
    /// Read ends of the start pipes (closed in every child).
    ready_pipes: Vec<OwnedFd>,
    original: &'a SigSet,
    children: Vec<Child>,
    stats: ProcessStats,
}

impl Supervisor<'_> {
    /// Forks every child and waits until each listens.
    fn start_all<S: Fn(usize, TcpListener) -> io::Result<()>>(
        &mut self,
        serve: &S,
    ) -> io::Result<()> {
        for index in 0..self.processes.count {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| sys::errno_error(e as i32, "pipe2"))?;
            // The child must not hold its own pipe's read end.
            self.ready_pipes.push(read);
            let pid = self.fork(index, serve, Some(write))?;
            self.children.push(Child {
                pid: Some(pid),
                started_at: Instant::now(),
                backoff: self.processes.options.restart_backoff,
                restart_at: None,
            });
        }
        let deadline = Instant::now() + self.processes.options.start_timeout;
        for (index, read) in std::mem::take(&mut self.ready_pipes)
            .into_iter()
            .enumerate()
        {
            if let Err(e) = wait_ready(&read, deadline) {
                self.stop_all();
                return Err(io::Error::new(
                    e.kind(),
                    format!("edgeloop: worker process {index} did not start listening: {e}"),
                ));
            }
        }
        Ok(())
    }

    /// Forks child `index`; in the child, never returns.
    fn fork<S: Fn(usize, TcpListener) -> io::Result<()>>(
        &self,
        index: usize,
        serve: &S,
        ready: Option<OwnedFd>,
    ) -> io::Result<Pid> {
        let parent = nix::unistd::getpid();
        match sys::fork()? {
            Some(pid) => Ok(pid),
            None => {
                let code = match self.child(index, serve, ready, parent) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("edgeloop worker process {index}: {e}");
                        1
                    }
                };
                std::process::exit(code);
            }
        }
    }

    /// The child's life: its own listener, then `serve`.
    fn child<S: Fn(usize, TcpListener) -> io::Result<()>>(
        &self,
        index: usize,
        serve: &S,
        ready: Option<OwnedFd>,
        parent: Pid,
    ) -> io::Result<()> {
        // The supervisor's fds are not the child's. (Closed by number: the
        // owners live on in the supervisor's half of the fork, and this
        // process ends with exit(), which runs no destructors.)
        let ours = [
            self.processes.reserved.as_raw_fd(),
            self.signalfd.as_fd().as_raw_fd(),
        ];
        for fd in ours
            .into_iter()
            .chain(self.ready_pipes.iter().map(|p| p.as_raw_fd()))
        {
            let _ = nix::unistd::close(fd);
        }
        self.original
            .thread_set_mask()
            .map_err(|e| sys::errno_error(e as i32, "pthread_sigmask"))?;
        nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)
            .map_err(|e| sys::errno_error(e as i32, "PR_SET_PDEATHSIG"))?;
        if nix::unistd::getppid() != parent {
            return Err(io::Error::other(
                "the supervisor died while this child started",
            ));
        }
        raise_fd_limit();
        let listener = tcp_listener(self.processes.addr, self.processes.options.backlog, true)?;
        if let Some(ready) = ready {
            nix::unistd::write(&ready, b"r").map_err(|e| sys::errno_error(e as i32, "write"))?;
            // Dropped here: the supervisor's read sees this byte, never a
            // pipe this child holds open.
        }
        serve(index, listener)
    }

    /// Waits for signals and restarts until a stop is asked for and every
    /// child is gone.
    fn supervise<S: Fn(usize, TcpListener) -> io::Result<()>>(
        &mut self,
        serve: &S,
    ) -> io::Result<ProcessStats> {
        let mut stop_deadline: Option<Instant> = None;
        loop {
            // Done once every child is gone for good: after a stop, or when
            // each finished on its own (exit 0: it returned from `serve`).
            if self
                .children
                .iter()
                .all(|c| c.pid.is_none() && c.restart_at.is_none())
            {
                return Ok(self.stats);
            }
            let next = self
                .children
                .iter()
                .filter_map(|c| c.restart_at)
                .chain(stop_deadline)
                .min();
            let stop = self.wait_signals(next)?;
            self.reap(stop_deadline.is_some());
            if stop && stop_deadline.is_none() {
                stop_deadline = Some(Instant::now() + self.processes.options.stop_grace);
                for child in &mut self.children {
                    child.restart_at = None;
                }
                self.signal_all(Signal::SIGTERM);
            }
            let now = Instant::now();
            if let Some(deadline) = stop_deadline {
                if now >= deadline {
                    let alive = self.children.iter().filter(|c| c.pid.is_some()).count();
                    self.stats.killed += alive as u64;
                    self.signal_all(Signal::SIGKILL);
                    stop_deadline = Some(now + Duration::from_secs(3600));
                }
                continue;
            }
            for index in 0..self.children.len() {
                if self.children[index].restart_at.is_some_and(|t| t <= now) {
                    let pid = self.fork(index, serve, None)?;
                    let child = &mut self.children[index];
                    log::info!("worker process {index} restarted as pid {pid}");
                    child.pid = Some(pid);
                    child.started_at = Instant::now();
                    child.restart_at = None;
                    self.stats.started += 1;
                    self.stats.restarts += 1;
                }
            }
        }
    }

    /// Waits for signals until `until` (`None`: until one comes); true if
    /// SIGTERM or SIGINT was among them.
    fn wait_signals(&mut self, until: Option<Instant>) -> io::Result<bool> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let timeout = match until {
            None => PollTimeout::NONE,
            Some(t) => {
                let ms = t.saturating_duration_since(Instant::now()).as_millis() + 1;
                PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(self.signalfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(false),
            Ok(_) => {}
            Err(e) => return Err(sys::errno_error(e as i32, "poll on the signalfd")),
        }
        let mut stop = false;
        while let Ok(Some(info)) = self.signalfd.read_signal() {
            let signo = info.ssi_signo as i32;
            if signo == Signal::SIGTERM as i32 || signo == Signal::SIGINT as i32 {
                stop = true;
            }
        }
        Ok(stop)
    }

    /// Collects every exited child; schedules a restart unless stopping.
    fn reap(&mut self, stopping: bool) {
        loop {
            let (pid, finished) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code == 0),
                Ok(WaitStatus::Signaled(pid, _, _)) => (pid, false),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            let Some(index) = self.children.iter().position(|c| c.pid == Some(pid)) else {
                continue;
            };
            let child = &mut self.children[index];
            child.pid = None;
            if stopping {
                continue;
            }
            if finished {
                // `serve` returned Ok: the worker ended on purpose (an
                // `--exit-after`, say), so it is not restarted.
                log::info!("worker process {index} (pid {pid}) finished");
                continue;
            }
            if child.started_at.elapsed() >= STABLE_AFTER {
                child.backoff = self.processes.options.restart_backoff;
            }
            log::warn!(
                "worker process {index} (pid {pid}) exited unexpectedly; restarting in {:?}",
                child.backoff
            );
            child.restart_at = Some(Instant::now() + child.backoff);
            child.backoff = (child.backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn signal_all(&self, signal: Signal) {
        for pid in self.children.iter().filter_map(|c| c.pid) {
            let _ = kill(pid, signal);
        }
    }

    /// A failed start: stop and reap whatever was started.
    fn stop_all(&mut self) {
        self.signal_all(Signal::SIGKILL);
        for child in &mut self.children {
            if let Some(pid) = child.pid.take() {
                let _ = waitpid(pid, None);
            }
        }
    }
}

/// Waits for the child's "listening" byte on `pipe`.
fn wait_ready(pipe: &OwnedFd, deadline: Instant) -> io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no word before the start timeout",
            ));
        }
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(sys::errno_error(e as i32, "poll on a ready pipe")),
        }
        let mut byte = [0u8; 1];
        return match nix::unistd::read(pipe.as_fd(), &mut byte) {
            Ok(1) => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "it exited first (its error is on stderr)",
            )),
            Err(e) => Err(sys::errno_error(e as i32, "read a ready pipe")),
        };
    }
}

/// Lifts the soft open-file limit to the hard one.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
