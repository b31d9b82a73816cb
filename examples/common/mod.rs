//! The command line and the run loop the server examples share: `--addr`,
//! `--mode`, `--backend`, `--max-pending`, the `listening on HOST:PORT`
//! line, and SIGINT/SIGTERM for a graceful exit.
#![allow(dead_code)]

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use edgeloop::conn::Handler;
use edgeloop::server::{ServerOptions, StreamServer};

/// Replies a connection may hold (queued, or gathered in this handler
/// call) before a request-per-line server (kv, http) stops and defers the
/// rest of its input with `Conn::defer`: the connection layer's default
/// high-water mark, so a read of many requests for a large value queues
/// about one mark, not the replies of the whole read.
pub const OUTPUT_CAP: usize = 1 << 20;
use edgeloop::{Reactor, Trigger};
use nix::sys::signal::Signal;

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum Mode {
    /// Level-triggered.
    Lt,
    /// Edge-triggered.
    Et,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum Backend {
    Epoll,
    Poll,
    Select,
}

impl From<Backend> for edgeloop::Backend {
    fn from(b: Backend) -> edgeloop::Backend {
        match b {
            Backend::Epoll => edgeloop::Backend::Epoll,
            Backend::Poll => edgeloop::Backend::Poll,
            Backend::Select => edgeloop::Backend::Select,
        }
    }
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub addr: SocketAddr,
    /// Readiness mode of the connections [default: et; lt on poll and select].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Selector backend.
    #[arg(long, value_enum, default_value = "epoll")]
    pub backend: Backend,
    /// Queued output per connection above which it stops reading
    /// (backpressure), in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_pending: usize,
    /// Reactors, one per thread, each with its own SO_REUSEPORT listener.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: u32,
    /// Server processes, each with its own reactor, SO_REUSEPORT listener
    /// and fd limit (past one process's open-file cap). Not combined with
    /// --workers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "workers")]
    pub processes: u32,
    /// Close a connection that has sent nothing for this many seconds
    /// (0: never).
    #[arg(long, default_value_t = 60)]
    pub idle_timeout: u64,
    /// At most this many connections per reactor; past it new ones are
    /// closed at once (or see --evict-idle).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// At --max-connections, close the longest-idle connection to admit a
    /// new one, instead of turning the new one away.
    #[arg(long, requires = "max_connections")]
    pub evict_idle: bool,
    /// Test support: a SIGALRM every N µs, caught, so the loop's
    /// epoll_wait sees EINTR again and again (the soak test's signal
    /// storm).
    #[arg(long, hide = true)]
    pub sigalrm_us: Option<u64>,
}

/// A SIGALRM every `us` microseconds, caught by a handler that only sets
/// a flag (signal-hook's, which is safe to install): epoll_wait, which is
/// never restarted whatever SA_RESTART says, returns EINTR on each one
/// (failure mode 19 in docs/failure-modes.md). Keep the timer.
pub fn sigalrm_storm(us: u64) -> io::Result<nix::sys::timer::Timer> {
    use nix::sys::signal::{SigEvent, SigevNotify};
    use nix::sys::timer::{Expiration, Timer, TimerSetTimeFlags};
    let caught = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGALRM, caught)?;
    let mut timer = Timer::new(
        nix::time::ClockId::CLOCK_MONOTONIC,
        SigEvent::new(SigevNotify::SigevSignal {
            signal: Signal::SIGALRM,
            si_value: 0,
        }),
    )?;
    let period = nix::sys::time::TimeSpec::from(std::time::Duration::from_micros(us.max(1)));
    timer.set(Expiration::Interval(period), TimerSetTimeFlags::empty())?;
    Ok(timer)
}

impl ServerArgs {
    pub fn options(&self) -> ServerOptions {
        let mut options = ServerOptions::default();
        options.conn.trigger = match self.mode() {
            Mode::Lt => Trigger::Level,
            Mode::Et => Trigger::Edge,
        };
        options.conn = options.conn.water_marks(self.max_pending);
        options.conn.idle_timeout =
            (self.idle_timeout > 0).then(|| std::time::Duration::from_secs(self.idle_timeout));
        options.backend = self.backend.into();
        if let Some(max) = self.max_connections {
            options.accept.max_connections = max;
        }
        options.accept.evict_idle = self.evict_idle;
        options
    }

    pub fn mode(&self) -> Mode {
        match (self.mode, self.backend) {
            (Some(mode), _) => mode,
            (None, Backend::Epoll) => Mode::Et,
            (None, _) => Mode::Lt,
        }
    }

    /// Refuses `--workers` or `--processes` above 1, naming `what` (a
    /// server whose state is shared by all its connections, in one
    /// reactor).
    pub fn one_reactor(&self, what: &str) -> io::Result<()> {
        if self.workers > 1 || self.processes > 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--workers {} --processes {}: {what} keeps its state in one reactor; run \
                     it with --workers 1 --processes 1",
                    self.workers, self.processes
                ),
            ));
        }
        Ok(())
    }

    /// Refuses `--workers` above 1, naming `what` (a server whose state is
    /// one per process: `--processes N` gives each process its own).
    pub fn one_reactor_per_process(&self, what: &str) -> io::Result<()> {
        if self.workers > 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--workers {}: {what} keeps its state in one reactor per process; use \
                     --processes N for N of them",
                    self.workers
                ),
            ));
        }
        Ok(())
    }

    /// The reactor for `--backend`. Edge mode on poll or select is refused
    /// with a clear message rather than degraded to level.
    pub fn reactor(&self) -> io::Result<Reactor> {
        self.reactor_with(())
    }

    /// Like [`reactor`](ServerArgs::reactor), holding the loop state `data`.
    pub fn reactor_with<D: 'static>(&self, data: D) -> io::Result<Reactor<D>> {
        if matches!(self.mode, Some(Mode::Et)) && !matches!(self.backend, Backend::Epoll) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "--mode et needs --backend epoll: {:?} is level-triggered by nature",
                    self.backend
                ),
            ));
        }
        Reactor::with_selector(edgeloop::Backend::from(self.backend).selector()?, data)
    }
}

/// Like [`serve`], on `--workers` reactors (one per thread, SO_REUSEPORT),
/// each with a handler from `make`.
pub fn serve_workers<H: Handler>(
    args: &ServerArgs,
    make: impl Fn() -> H + Send + Sync + Clone + 'static,
) -> io::Result<()> {
    if args.processes > 1 {
        return serve_processes(args, make);
    }
    if args.workers <= 1 {
        return serve(args, make());
    }
    args.reactor()?; // the same checks as one reactor
    // Signals first: they are blocked in this thread and so in the workers
    // it spawns, and delivered to this thread's reactor.
    let mut signals = Reactor::with_data(false)?; // the loop state: "stop"
    edgeloop::on_signals(
        &mut signals,
        &[Signal::SIGINT, Signal::SIGTERM],
        |r, signal| {
            log::info!("{signal}: shutting down");
            *r.core_mut().data_mut() = true;
            r.core_mut().stop();
        },
    )?;
    let workers =
        edgeloop::server::Workers::bind(args.addr, args.workers as usize, make, args.options())?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {}", workers.local_addr())?;
    stdout.flush()?;
    drop(stdout);
    while !*signals.core().data() {
        signals.run()?;
    }
    workers.shutdown();
    for (i, stats) in workers.join()?.iter().enumerate() {
        log::info!("worker {i}: {} connections accepted", stats.accepts);
    }
    Ok(())
}

/// `--processes N`: N child processes, each one reactor on its own
/// SO_REUSEPORT listener; the parent prints `listening on HOST:PORT` once
/// all listen, relays SIGINT/SIGTERM, restarts a child that dies, and
/// returns when all have exited.
fn serve_processes<H: Handler>(args: &ServerArgs, make: impl Fn() -> H) -> io::Result<()> {
    serve_processes_on(args, || Ok((args.reactor()?, make())))
}

/// Like `--processes N` for a server with loop state: `setup` makes each
/// child's reactor (its loop state, timers) and handler.
pub fn serve_processes_on<H: Handler<D>, D: 'static>(
    args: &ServerArgs,
    setup: impl Fn() -> io::Result<(Reactor<D>, H)>,
) -> io::Result<()> {
    args.reactor()?; // the same checks as one reactor, before forking
    let processes = edgeloop::server::Processes::bind(args.addr, args.processes as usize)?;
    let stats = processes.run(
        |_, listener| {
            let (reactor, handler) = setup()?;
            let mut server = StreamServer::from_tcp(reactor, listener, handler, args.options())?;
            let shutdown = server.shutdown_handle();
            stop_on_signals(server.reactor(), shutdown)?;
            server.serve_forever()
        },
        |addr| {
            let mut stdout = io::stdout().lock();
            let _ = writeln!(stdout, "listening on {addr}");
            let _ = stdout.flush();
        },
    )?;
    log::info!("processes: {stats:?}");
    Ok(())
}

/// Binds, prints `listening on HOST:PORT`, serves until SIGINT or SIGTERM,
/// then shuts down gracefully (stop accepting, flush, close) and returns.
/// One reactor: `--workers` above 1 is refused, naming `what` (a server
/// whose state is shared by all its connections, like a chat room).
pub fn serve_one<H: Handler>(args: &ServerArgs, what: &str, handler: H) -> io::Result<()> {
    args.one_reactor(what)?;
    serve(args, handler)
}

/// Binds, prints `listening on HOST:PORT`, serves until SIGINT or SIGTERM,
/// then shuts down gracefully (stop accepting, flush, close) and returns.
pub fn serve<H: Handler>(args: &ServerArgs, handler: H) -> io::Result<()> {
    serve_on(args, args.reactor()?, handler)
}

/// Like [`serve`], on `reactor` (built with [`ServerArgs::reactor_with`]:
/// the loop state its handlers, timers and posted closures share).
pub fn serve_on<H: Handler<D>, D: 'static>(
    args: &ServerArgs,
    reactor: Reactor<D>,
    handler: H,
) -> io::Result<()> {
    let _storm = args.sigalrm_us.map(sigalrm_storm).transpose()?;
    let listener = edgeloop::conn::tcp_listener(args.addr, None, false)?;
    let mut server = StreamServer::from_tcp(reactor, listener, handler, args.options())?;
    let (shutdown, local) = (server.shutdown_handle(), server.local_addr().to_string());
    announce(server.reactor(), shutdown, &local)?;
    server.serve_forever()?;
    log::info!("loop: {:?}", server.reactor().core().stats());
    log::info!("connections: {:?}", server.stats());
    Ok(())
}

/// What every server example does before it serves: SIGINT and SIGTERM on
/// `reactor` ask for a graceful shutdown, and the `listening on ADDR` line
/// (the contract other tools read) goes out, flushed.
pub fn announce<D: 'static>(
    reactor: &mut Reactor<D>,
    shutdown: edgeloop::server::ShutdownHandle,
    local_addr: &str,
) -> io::Result<()> {
    stop_on_signals(reactor, shutdown)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {local_addr}")?;
    stdout.flush()
}

/// SIGINT and SIGTERM on `reactor` ask `shutdown` for a graceful stop.
pub fn stop_on_signals<D: 'static>(
    reactor: &mut Reactor<D>,
    shutdown: edgeloop::server::ShutdownHandle,
) -> io::Result<()> {
    edgeloop::on_signals(
        reactor,
        &[Signal::SIGINT, Signal::SIGTERM],
        move |_, signal| {
            log::info!("{signal}: shutting down");
            shutdown.shutdown();
        },
    )?;
    Ok(())
}

/// Runs `serve` and turns an error into a message and exit status 1.
pub fn exit_on_error(result: io::Result<()>) {
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// When a client's unfinished request (a chat line, a RESP command, an
/// HTTP head and body) started. A request must end within a timeout of its
/// first byte: a slowloris trickling a byte at a time keeps the idle
/// timeout happy but not this. Checked as bytes arrive; a client that goes
/// silent mid-request is the idle timeout's.
#[derive(Default)]
pub struct RequestClock(Option<Instant>);

impl RequestClock {
    /// After a read: `unfinished`, whether a request is still incomplete;
    /// `completed`, whether one ended in this read (so the unfinished one
    /// began in it). True when the unfinished request is older than
    /// `timeout`.
    pub fn overdue(&mut self, unfinished: bool, completed: bool, timeout: Duration) -> bool {
        if !unfinished {
            self.0 = None;
            return false;
        }
        let now = Instant::now();
        if completed || self.0.is_none() {
            self.0 = Some(now);
        }
        self.0.is_some_and(|t| now.duration_since(t) > timeout)
    }
}
