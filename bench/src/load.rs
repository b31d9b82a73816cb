//! The load generator: N connections, `pipeline` messages in flight on each,
//! every echoed byte verified, one round-trip time per message.
//!
//! Written straight on nix epoll (level-triggered, on its own thread) so it
//! shares no code with any server it measures. Each connection's byte
//! stream is a table lookup at (offset + a per-connection shift), so loss,
//! duplication, reordering and cross-connection mix-ups all show as a byte
//! that does not match its offset.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrIn, bind, connect, recv, send,
    setsockopt, sockopt,
};

const PERIOD: usize = 65_521; // prime: no message size lines up with it

/// The stream's bytes: PERIOD pseudo-random bytes, stored twice so any run
/// of up to PERIOD bytes from any offset is one slice.
fn table() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut bytes: Vec<u8> = (0..PERIOD)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    bytes.extend_from_within(..);
    bytes
}

/// True if `data` is the stream shifted by `shift` from `offset` on.
fn matches(table: &[u8], shift: usize, offset: u64, data: &[u8]) -> bool {
    let mut at = ((offset % PERIOD as u64) as usize + shift) % PERIOD;
    data.chunks(PERIOD).all(|piece| {
        let ok = piece == &table[at..at + piece.len()];
        at = (at + piece.len()) % PERIOD;
        ok
    })
}

/// Source addresses cycle over 127.0.0.2 ..= 127.0.0.251 across the whole
/// run, so TIME_WAIT from earlier cells never exhausts ephemeral ports.
static NEXT_SOURCE: AtomicU32 = AtomicU32::new(0);

fn next_source() -> Ipv4Addr {
    let i = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % 250;
    Ipv4Addr::new(127, 0, 0, 2 + i as u8)
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages echoed in full during the measurement window.
    pub messages: u64,
    /// Round-trip times of those messages, in nanoseconds, sorted.
    pub rtts: Vec<u32>,
    /// Wrong bytes, connections closed or failed under load, and messages
    /// never echoed.
    pub errors: u64,
    pub window: Duration,
    /// The run ended because no echo came for [`STALL`].
    pub stalled: bool,
}

/// How long the load waits for any echoed byte before it gives up on the
/// messages in flight (counted as errors).
pub const STALL: Duration = Duration::from_secs(10);

impl Outcome {
    /// Adds another load thread's outcome to this one.
    pub fn merge(&mut self, other: Outcome) {
        self.messages += other.messages;
        self.errors += other.errors;
        self.stalled |= other.stalled;
        self.rtts.extend(other.rtts);
        self.rtts.sort_unstable();
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.rtts.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.rtts.len() as f64 * p) as usize).min(self.rtts.len() - 1);
        Duration::from_nanos(self.rtts[i] as u64)
    }
}

struct Conn {
    fd: OwnedFd,
    shift: usize,
    sent: u64,
    received: u64,
    /// Send time of each message in flight.
    in_flight: VecDeque<Instant>,
    messages_left: u64,
    writable_armed: bool,
}

/// The measurement window: `start` (shared by every load thread, so their
/// windows line up) plus `warmup`, lasting `duration`; the callbacks run when
/// it opens and closes (on one thread only).
pub struct Window<'a> {
    pub start: Instant,
    pub warmup: Duration,
    pub duration: Duration,
    pub on_open: Option<&'a mut dyn FnMut()>,
    pub on_close: Option<&'a mut dyn FnMut()>,
}

/// Runs the load against `addr`. With `window`, sends until it closes and
/// counts only messages completed inside it; without, each connection sends
/// `messages_per_conn` messages.
pub fn run(
    addr: SocketAddr,
    connections: usize,
    size: usize,
    pipeline: usize,
    messages_per_conn: u64,
    mut window: Option<Window<'_>>,
) -> io::Result<Outcome> {
    let table = table();
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let SocketAddr::V4(target) = addr else {
        return Err(io::Error::other("the load generator speaks IPv4"));
    };
    let mut conns = Vec::with_capacity(connections);
    for i in 0..connections {
        let fd = socket::socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(next_source(), 0)),
        )?;
        connect(fd.as_raw_fd(), &SockaddrIn::from(target))?;
        setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        epoll.add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
        conns.push(Conn {
            fd,
            shift: (i * 7919) % PERIOD,
            sent: 0,
            received: 0,
            in_flight: VecDeque::with_capacity(pipeline),
            messages_left: if window.is_some() {
                u64::MAX
            } else {
                messages_per_conn
            },
            writable_armed: false,
        });
    }
    let mut outcome = Outcome::default();
    let size64 = size as u64;
    let start = window.as_ref().map_or_else(Instant::now, |w| w.start);
    let (open_at, close_at) = match &window {
        Some(w) => (start + w.warmup, start + w.warmup + w.duration),
        None => (start, start + Duration::from_secs(3600)),
    };
    let mut measuring = window.is_none();
    let mut sending = true;
    let mut buf = vec![0u8; 256 * 1024];
    let mut events = vec![EpollEvent::empty(); 1024];

    // Fill every pipeline.
    for (i, c) in conns.iter_mut().enumerate() {
        top_up(c, i, &epoll, &table, size, pipeline, &mut outcome)?;
    }
    let mut live = conns.len();
    // The last time an echoed byte arrived: a server that goes silent, or
    // drops bytes, leaves messages in flight forever; past STALL without
    // progress they are counted as errors and the run ends.
    let mut last_progress = Instant::now();
    while live > 0 {
        let now = Instant::now();
        if now - last_progress > STALL {
            outcome.errors += conns.iter().map(|c| c.in_flight.len() as u64).sum::<u64>();
            outcome.stalled = true;
            break;
        }
        if !measuring && now >= open_at {
            measuring = true;
            if let Some(on_open) = window.as_mut().and_then(|w| w.on_open.as_mut()) {
                on_open();
            }
        }
        if sending && now >= close_at {
            sending = false;
            outcome.window = now - open_at;
            if let Some(on_close) = window.as_mut().and_then(|w| w.on_close.as_mut()) {
                on_close();
            }
            for c in conns.iter_mut() {
                c.messages_left = 0;
            }
        }
        let timeout = if sending {
            EpollTimeout::from(10u16)
        } else {
            EpollTimeout::from(1000u16)
        };
        let n = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 && !sending {
            // Outstanding echoes stopped coming: count them as errors.
            outcome.errors += conns.iter().map(|c| c.in_flight.len() as u64).sum::<u64>();
            break;
        }
        let now = Instant::now();
        for ev in &events[..n] {
            let i = ev.data() as usize;
            let c = &mut conns[i];
            if ev.events().contains(EpollFlags::EPOLLOUT) {
                c.writable_armed = false;
                epoll.modify(&c.fd, &mut EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
            }
            loop {
                match recv(c.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                    Ok(0) => {
                        outcome.errors += 1; // the server closed on us
                        retire(c, &epoll)?;
                        break;
                    }
                    Ok(k) => {
                        last_progress = now;
                        if !matches(&table, c.shift, c.received, &buf[..k]) {
                            outcome.errors += 1;
                        }
                        if c.received + k as u64 > c.sent {
                            // More came back than was sent (an echo twice):
                            // this stream can no longer be checked.
                            outcome.errors += 1;
                            retire(c, &epoll)?;
                            break;
                        }
                        let before = c.received / size64;
                        c.received += k as u64;
                        for _ in before..c.received / size64 {
                            let Some(sent_at) = c.in_flight.pop_front() else {
                                break; // unreachable: received <= sent
                            };
                            if measuring && sending {
                                outcome.messages += 1;
                                outcome
                                    .rtts
                                    .push((now - sent_at).as_nanos().min(u32::MAX as u128) as u32);
                            }
                        }
                        if k < buf.len() {
                            break;
                        }
                    }
                    Err(Errno::EAGAIN) => break,
                    Err(Errno::EINTR) => {}
                    Err(_) => {
                        outcome.errors += 1;
                        retire(c, &epoll)?;
                        break;
                    }
                }
            }
            top_up(c, i, &epoll, &table, size, pipeline, &mut outcome)?;
        }
        live = conns
            .iter()
            .filter(|c| c.messages_left > 0 || !c.in_flight.is_empty())
            .count();
    }
    if window.is_none() {
        outcome.window = start.elapsed();
    }
    outcome.rtts.sort_unstable();
    Ok(outcome)
}

/// Stops using a connection the server closed or reset: out of epoll (a
/// level-triggered EOF would be reported on every wait) and out of the count.
fn retire(c: &mut Conn, epoll: &Epoll) -> io::Result<()> {
    c.in_flight.clear();
    c.messages_left = 0;
    c.writable_armed = true; // top_up sends nothing more
    epoll.delete(&c.fd).map_err(io::Error::from)
}

/// Sends messages until `pipeline` are in flight (or none are left to send).
fn top_up(
    c: &mut Conn,
    i: usize,
    epoll: &Epoll,
    table: &[u8],
    size: usize,
    pipeline: usize,
    outcome: &mut Outcome,
) -> io::Result<()> {
    if c.writable_armed {
        return Ok(());
    }
    let size64 = size as u64;
    loop {
        // Finish a partly sent message first.
        let partial = c.sent % size64;
        if partial == 0 {
            if c.in_flight.len() >= pipeline || c.messages_left == 0 {
                return Ok(());
            }
            c.in_flight.push_back(Instant::now());
            c.messages_left -= 1;
        }
        let left = (size64 - partial) as usize;
        let mut chunk = [0u8; 16 * 1024];
        let want = left.min(chunk.len());
        let at = ((c.sent % PERIOD as u64) as usize + c.shift) % PERIOD;
        chunk[..want].copy_from_slice(&table[at..at + want]);
        match send(c.fd.as_raw_fd(), &chunk[..want], MsgFlags::MSG_NOSIGNAL) {
            Ok(k) => c.sent += k as u64,
            Err(Errno::EAGAIN) => {
                c.writable_armed = true;
                epoll.modify(
                    &c.fd,
                    &mut EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT, i as u64),
                )?;
                return Ok(());
            }
            Err(Errno::EINTR) => {}
            Err(_) => {
                outcome.errors += 1;
                return retire(c, epoll);
            }
        }
    }
}
