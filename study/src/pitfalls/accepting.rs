//! One listening socket, several waiters. A new connection wakes every
//! wait queue entry on the listener's queue (net/core/sock.c
//! `sock_def_readable`), so N workers each with an epoll instance watching
//! one listener all wake for each connection, and N-1 find nothing to
//! accept: the thundering herd. `EPOLLEXCLUSIVE` (Linux 4.5) makes an
//! instance's entry exclusive, so a wakeup stops at the first exclusive
//! entry that takes it (kernel/sched/wait.c `__wake_up_common`); which
//! entry that is depends on the queue's order, not on how busy the worker
//! is. `SO_REUSEPORT` gives each worker a listener of its own, and the
//! kernel picks one per connection by hashing its addresses
//! (net/ipv4/inet_hashtables.c): no herd, an even spread.
//!
//! Edge triggering adds the other accept pitfall: one `accept` per wakeup
//! leaves the rest of a backlog unaccepted, with no new edge to say so.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edgeloop::conn::{AcceptOptions, Conn, ConnOptions, Connections, Handler};
use edgeloop::{Interest, PostAction, Reactor, Trigger};
use nix::sys::epoll::{Epoll, EpollFlags};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket,
    sockopt,
};

use super::{Finding, add, epoll, percentile, us, wait};

/// How the workers share the listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// One listener, registered (level-triggered) in each worker's own
    /// epoll instance: the herd.
    SeparateInstances,
    /// The same, with `EPOLLEXCLUSIVE`.
    Exclusive,
    /// One listener in one epoll instance that every worker waits on.
    OneInstance,
    /// A listener per worker, `SO_REUSEPORT` on one port.
    ReusePort,
}

impl Sharing {
    pub const ALL: [Sharing; 4] = [
        Sharing::SeparateInstances,
        Sharing::Exclusive,
        Sharing::OneInstance,
        Sharing::ReusePort,
    ];

    fn name(self) -> &'static str {
        match self {
            Sharing::SeparateInstances => "shared listener, epoll per worker",
            Sharing::Exclusive => "shared listener, EPOLLEXCLUSIVE",
            Sharing::OneInstance => "shared listener, one epoll for all",
            Sharing::ReusePort => "SO_REUSEPORT, listener per worker",
        }
    }
}

/// What the workers did for one [`Sharing`].
#[derive(Debug, Clone)]
pub struct AcceptRun {
    /// Connections each worker accepted.
    pub per_worker: Vec<usize>,
    /// Waits that returned an event, over all workers.
    pub wakeups: usize,
    /// The workers' voluntary context switches: each time a worker slept
    /// in its wait and was woken, whether or not the wait then returned.
    pub switches: usize,
    /// `accept` calls that found nothing (EAGAIN).
    pub empty_accepts: usize,
    /// Client-side connect-to-reply latency, p50 and p99.
    pub p50: Duration,
    pub p99: Duration,
}

impl AcceptRun {
    pub fn accepted(&self) -> usize {
        self.per_worker.iter().sum()
    }

    /// The busiest worker's share of the accepts, in percent.
    pub fn busiest_share(&self) -> f64 {
        let max = self.per_worker.iter().copied().max().unwrap_or(0);
        100.0 * max as f64 / self.accepted().max(1) as f64
    }
}

/// Runs `workers` threads accepting with `sharing`; `clients` threads
/// connect `connections` times in all, one connection at a time each, and
/// time connect-to-reply. Each accepted connection costs its worker `work`
/// of busy time before the one-byte reply.
///
/// # Errors
/// Setup failures.
pub fn accept_workers(
    sharing: Sharing,
    workers: usize,
    clients: usize,
    connections: usize,
    work: Duration,
) -> io::Result<AcceptRun> {
    let first = reuseport_listener(0)?;
    let port = first.local_addr()?.port();
    let mut listeners = vec![first];
    if sharing == Sharing::ReusePort {
        for _ in 1..workers {
            listeners.push(reuseport_listener(port)?);
        }
    }
    let one = Arc::new(epoll()?);
    if sharing == Sharing::OneInstance {
        add(&one, &listeners[0], EpollFlags::EPOLLIN, 0)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for w in 0..workers {
        let listener = match sharing {
            Sharing::ReusePort => listeners[w].try_clone()?,
            _ => listeners[0].try_clone()?,
        };
        let epoll = match sharing {
            Sharing::OneInstance => one.clone(),
            _ => {
                let own = Arc::new(epoll()?);
                let mut flags = EpollFlags::EPOLLIN;
                if sharing == Sharing::Exclusive {
                    flags |= EpollFlags::EPOLLEXCLUSIVE;
                }
                add(&own, &listener, flags, 0)?;
                own
            }
        };
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            worker(&epoll, &listener, &stop, work)
        }));
        // Let each worker block in its wait before the next starts, so the
        // queue order is the start order.
        std::thread::sleep(Duration::from_millis(5));
    }
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let per_client = connections.div_ceil(clients);
    let client_threads: Vec<_> = (0..clients)
        .map(|_| std::thread::spawn(move || client(addr, per_client)))
        .collect();
    let mut latencies = Vec::new();
    for c in client_threads {
        latencies.extend(c.join().expect("client thread")?);
    }
    stop.store(true, Ordering::Relaxed);
    let mut run = AcceptRun {
        per_worker: Vec::new(),
        wakeups: 0,
        switches: 0,
        empty_accepts: 0,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
    };
    for h in handles {
        let (accepted, wakeups, switches, empty) = h.join().expect("worker thread")?;
        run.per_worker.push(accepted);
        run.wakeups += wakeups;
        run.switches += switches;
        run.empty_accepts += empty;
    }
    latencies.sort();
    run.p50 = percentile(&latencies, 50.0);
    run.p99 = percentile(&latencies, 99.0);
    Ok(run)
}

/// A non-blocking TCP listener on 127.0.0.1:`port` with `SO_REUSEPORT`
/// (port 0: a free one).
fn reuseport_listener(port: u16) -> io::Result<TcpListener> {
    let fd: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port))?;
    listen(&fd, Backlog::new(1024)?)?;
    Ok(TcpListener::from(fd))
}

/// This thread's voluntary context switches so far.
fn voluntary_switches() -> usize {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|status| {
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?;
            line.trim().parse().ok()
        })
        .unwrap_or(0)
}

/// A worker: wait, accept until EAGAIN, serve each connection. Returns
/// (accepted, wakeups, context switches, empty accepts).
fn worker(
    epoll: &Epoll,
    listener: &TcpListener,
    stop: &AtomicBool,
    work: Duration,
) -> io::Result<(usize, usize, usize, usize)> {
    let (mut accepted, mut wakeups, mut empty) = (0, 0, 0);
    let switches = voluntary_switches();
    while !stop.load(Ordering::Relaxed) {
        // Long waits, so that timeouts add few switches of their own.
        if wait(epoll, 200)?.is_empty() {
            continue;
        }
        wakeups += 1;
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    accepted += 1;
                    let until = Instant::now() + work;
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                    stream.set_nonblocking(false)?;
                    let _ = stream.write_all(b"x");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    empty += 1;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok((accepted, wakeups, voluntary_switches() - switches, empty))
}

/// Connects `n` times, one at a time; connect-to-reply latencies.
fn client(addr: SocketAddr, n: usize) -> io::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut byte = [0; 1];
        stream.read_exact(&mut byte)?;
        latencies.push(start.elapsed());
        // A gap, so the workers are back in their waits before the next.
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(latencies)
}

/// Pitfall 14: the thundering herd. Wakeups and empty accepts per
/// connection, per way of sharing, 4 workers.
///
/// # Errors
/// Setup failures.
pub fn thundering_herd() -> io::Result<Finding> {
    let mut raw = Vec::new();
    for sharing in Sharing::ALL {
        let run = accept_workers(sharing, 4, 1, 400, Duration::ZERO)?;
        let n = run.accepted().max(1) as f64;
        raw.push((
            sharing.name(),
            format!(
                "{:.2} workers woken, {:.2} waits returned, {:.2} empty accepts per connection",
                run.switches as f64 / n,
                run.wakeups as f64 / n,
                run.empty_accepts as f64 / n
            ),
        ));
    }
    Ok(Finding {
        pitfall: "14. the thundering herd: N workers blocked on one listener",
        raw,
        edgeloop: "AcceptOptions::with_exclusive for a shared listener (tests/exclusive.rs: \
                   one reactor woken per connection, not both); Workers and Processes give \
                   each worker its own SO_REUSEPORT listener"
            .into(),
    })
}

/// Pitfall 7: EPOLLEXCLUSIVE wakes in wait-queue order, so one worker takes
/// most connections; and `EPOLL_CTL_MOD` on an exclusive registration is
/// refused (fs/eventpoll.c: EINVAL).
///
/// # Errors
/// Setup failures.
pub fn exclusive_wakes_in_queue_order() -> io::Result<Finding> {
    let run = accept_workers(Sharing::Exclusive, 4, 1, 400, Duration::ZERO)?;
    let (modified, added_oneshot) = exclusive_refusals()?;
    let modify = edgeloop_modify_exclusive()?;
    Ok(Finding {
        pitfall: "7. EPOLLEXCLUSIVE: one worker takes most; MOD is refused",
        raw: vec![
            (
                "accepts per worker (started first to last)",
                format!(
                    "{:?}, the busiest {:.0} %",
                    run.per_worker,
                    run.busiest_share()
                ),
            ),
            ("MOD of an exclusive registration", modified),
            ("ADD with EXCLUSIVE | ONESHOT", added_oneshot),
        ],
        edgeloop: format!(
            "modify() of an exclusive registration: {} (delete and add again)",
            if modify { "works" } else { "fails" }
        ),
    })
}

/// What the kernel says to `EPOLL_CTL_MOD` on an exclusive registration,
/// and to an exclusive oneshot `EPOLL_CTL_ADD`.
///
/// # Errors
/// Setup failures.
pub fn exclusive_refusals() -> io::Result<(String, String)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let epoll = epoll()?;
    let exclusive = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
    add(&epoll, &listener, exclusive, 0)?;
    let mut event = nix::sys::epoll::EpollEvent::new(exclusive | EpollFlags::EPOLLET, 0);
    let modified = describe(epoll.modify(&listener, &mut event));
    let other = TcpListener::bind("127.0.0.1:0")?;
    let oneshot = nix::sys::epoll::EpollEvent::new(exclusive | EpollFlags::EPOLLONESHOT, 0);
    let added = describe(epoll.add(&other, oneshot));
    Ok((modified, added))
}

fn describe(result: nix::Result<()>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(errno) => format!("{errno:?}"),
    }
}

/// On edgeloop: a listener registered `READABLE | EXCLUSIVE`, modified to
/// edge-triggered, still reports a connection. True if it did.
///
/// # Errors
/// Setup failures (the modify's refusal included).
pub fn edgeloop_modify_exclusive() -> io::Result<bool> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let mut reactor = Reactor::with_data(false)?;
    let token = reactor.core_mut().register(
        listener,
        Interest::READABLE | Interest::EXCLUSIVE,
        Trigger::Level,
        |r, listener, _| {
            *r.core_mut().data_mut() = listener.accept().is_ok();
            PostAction::Continue
        },
    )?;
    reactor.core_mut().modify(
        token,
        Interest::READABLE | Interest::EXCLUSIVE,
        Trigger::Edge,
    )?;
    let _client = TcpStream::connect(addr)?;
    reactor.run_once(Some(Duration::from_secs(1)))?;
    Ok(*reactor.core().data())
}

/// Pitfall 8: SO_REUSEPORT vs one shared listener vs EPOLLEXCLUSIVE: the
/// busiest worker's share and the clients' connect-to-reply latency, with
/// 4 workers, 2 clients and 100 µs of work per connection.
///
/// # Errors
/// Setup failures.
pub fn balance_across_workers() -> io::Result<Finding> {
    let mut raw = Vec::new();
    for sharing in Sharing::ALL {
        let run = accept_workers(sharing, 4, 2, 400, Duration::from_micros(100))?;
        raw.push((
            sharing.name(),
            format!(
                "accepts {:?} (busiest {:.0} %); latency p50 {} p99 {}",
                run.per_worker,
                run.busiest_share(),
                us(run.p50),
                us(run.p99)
            ),
        ));
    }
    Ok(Finding {
        pitfall: "8. SO_REUSEPORT vs a shared listener vs EPOLLEXCLUSIVE",
        raw,
        edgeloop: "Workers and Processes: a SO_REUSEPORT listener per worker (the even row)".into(),
    })
}

/// Pitfall 9: an edge-triggered listener with a backlog. 20 clients
/// connect before the loop's first wait; the loop accepts once per wakeup
/// (or until EAGAIN) and waits up to 50 ms for the next event.
///
/// # Errors
/// Setup failures.
pub fn edge_triggered_accept_backlog() -> io::Result<Finding> {
    const QUEUED: usize = 20;
    let mut raw = Vec::new();
    for (mode, flags, drain) in [
        ("LT, one accept per wakeup", EpollFlags::EPOLLIN, false),
        (
            "ET, one accept per wakeup",
            EpollFlags::EPOLLIN | EpollFlags::EPOLLET,
            false,
        ),
        (
            "ET, accept until EAGAIN",
            EpollFlags::EPOLLIN | EpollFlags::EPOLLET,
            true,
        ),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let clients: Vec<TcpStream> = (0..QUEUED)
            .map(|_| TcpStream::connect(addr))
            .collect::<io::Result<_>>()?;
        let epoll = epoll()?;
        add(&epoll, &listener, flags, 0)?;
        let (mut accepted, mut wakeups) = (0, 0);
        while !wait(&epoll, 50)?.is_empty() {
            wakeups += 1;
            while listener.accept().is_ok() {
                accepted += 1;
                if !drain {
                    break;
                }
            }
        }
        drop(clients);
        raw.push((
            mode,
            format!(
                "{accepted} accepted in {wakeups} wakeups, {} left in the backlog",
                QUEUED - accepted
            ),
        ));
    }
    let opened = edgeloop_edge_backlog(QUEUED, 1)?;
    Ok(Finding {
        pitfall: "9. ET with an accept backlog: one accept per wakeup strands the rest",
        raw,
        edgeloop: format!(
            "Edge, batch of 1 accept per turn: {opened} of {QUEUED} opened with no new arrival \
             (a batch that ends early is requeued)"
        ),
    })
}

/// Counts opened connections.
struct CountOpens;

impl Handler<usize> for CountOpens {
    type Session = ();
    fn on_open(&mut self, conn: &mut Conn<'_, Self, usize>) {
        *conn.data_mut() += 1;
    }
    fn on_data(&mut self, _conn: &mut Conn<'_, Self, usize>, _data: &[u8]) {}
}

/// On edgeloop: `queued` clients connect before the first turn to an
/// edge-triggered listener that accepts `batch` per turn; the connections
/// opened after turns of up to 50 ms, run until one opens nothing.
///
/// # Errors
/// Setup failures.
pub fn edgeloop_edge_backlog(queued: usize, batch: usize) -> io::Result<usize> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let clients: Vec<TcpStream> = (0..queued)
        .map(|_| TcpStream::connect(addr))
        .collect::<io::Result<_>>()?;
    let mut reactor = Reactor::with_data(0usize)?;
    let set = reactor.install(Connections::new(
        CountOpens,
        ConnOptions::with_trigger(Trigger::Edge),
    )?)?;
    let (connections, core) = reactor.source_mut(set);
    connections.listen(
        core,
        OwnedFd::from(listener),
        AcceptOptions::default()
            .with_trigger(Trigger::Edge)
            .with_batch(batch),
    )?;
    loop {
        let before = *reactor.core().data();
        reactor.run_once(Some(Duration::from_millis(50)))?;
        if *reactor.core().data() == before {
            break;
        }
    }
    drop(clients);
    Ok(*reactor.core().data())
}
