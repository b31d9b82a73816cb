//! After the peer half-closes, the read side is at EOF for good, and
//! level-triggered readiness says so on every wait: `EPOLLIN|EPOLLRDHUP`
//! (net/unix/af_unix.c and net/ipv4/tcp.c `tcp_poll` set both once
//! `RCV_SHUTDOWN` is set). A loop that keeps watching for reads after the
//! EOF, say because it treats RDHUP as "tell me when it hangs up" while it
//! still writes the reply, wakes at once on every wait: a spin that lasts
//! as long as the reply does.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use edgeloop::conn::{Conn, ConnOptions, Connections, Handler};
use edgeloop::{Reactor, Trigger};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::EpollFlags;
use nix::sys::select::{FdSet, select};
use nix::sys::time::TimeVal;

use super::{Finding, add, epoll, pair, wait};

const SPAN: Duration = Duration::from_millis(100);

/// Pitfall 5: RDHUP treated as a hang-up signal to keep watching. A
/// request arrives and the peer shuts its write side; the loop reads it
/// and the EOF, writes a reply that fills the socket, and waits to write
/// the rest while the peer is not reading yet. Wakeups in 100 ms per way
/// of waiting.
///
/// # Errors
/// Setup failures.
pub fn rdhup_stays_ready() -> io::Result<Finding> {
    let mut raw = Vec::new();
    let keep = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP;
    for (mode, flags) in [
        ("LT, read interest kept", keep),
        ("ET, read interest kept", keep | EpollFlags::EPOLLET),
        ("LT, OUT only after EOF", EpollFlags::EPOLLOUT),
    ] {
        let (ours, _theirs) = replying()?;
        let epoll = epoll()?;
        add(&epoll, &ours, flags, 1)?;
        let start = Instant::now();
        let mut wakeups = 0;
        while start.elapsed() < SPAN {
            if !wait(&epoll, 10)?.is_empty() {
                wakeups += 1;
            }
        }
        raw.push((mode, format!("{wakeups} wakeups")));
    }
    let (ours, _theirs) = replying()?;
    raw.push((
        "poll, POLLIN kept",
        format!("{} wakeups", poll_wakeups(&ours)?),
    ));
    let (ours, _theirs) = replying()?;
    raw.push((
        "select, read set kept",
        format!("{} wakeups", select_wakeups(&ours)?),
    ));
    let (waits, received, sent) = edgeloop_half_closed_reply(1 << 20)?;
    Ok(Finding {
        pitfall: "5. EPOLLRDHUP stays ready after a half-close: a writer that spins",
        raw,
        edgeloop: format!(
            "{waits} waits in 100 ms while the reply waits for the reader; the peer then got \
             {received} of {sent} bytes and EOF"
        ),
    })
}

/// A pair where our side got a request and the peer's EOF, read both, and
/// has written a reply until the socket took no more.
fn replying() -> io::Result<(UnixStream, UnixStream)> {
    let (mut ours, mut theirs) = pair()?;
    theirs.write_all(b"GET /")?;
    theirs.shutdown(Shutdown::Write)?;
    let mut buf = [0; 64];
    while ours.read(&mut buf)? > 0 {}
    let chunk = [b'r'; 16 * 1024];
    while ours.write(&chunk).is_ok() {}
    Ok((ours, theirs))
}

fn poll_wakeups(ours: &UnixStream) -> io::Result<usize> {
    let start = Instant::now();
    let mut wakeups = 0;
    while start.elapsed() < SPAN {
        // POLLIN (nix has no POLLRDHUP): ready at EOF, as RDHUP is.
        let flags = PollFlags::POLLIN | PollFlags::POLLOUT;
        let mut fds = [PollFd::new(ours.as_fd(), flags)];
        if poll(&mut fds, PollTimeout::from(10u16))? > 0 {
            wakeups += 1;
        }
    }
    Ok(wakeups)
}

fn select_wakeups(ours: &UnixStream) -> io::Result<usize> {
    let start = Instant::now();
    let mut wakeups = 0;
    while start.elapsed() < SPAN {
        let mut reads = FdSet::new();
        reads.insert(ours.as_fd());
        let mut writes = FdSet::new();
        writes.insert(ours.as_fd());
        let mut timeout = TimeVal::new(0, 10_000);
        if select(None, &mut reads, &mut writes, None, &mut timeout)? > 0 {
            wakeups += 1;
        }
    }
    Ok(wakeups)
}

/// Replies `reply` bytes once the peer has half-closed, then closes.
struct ReplyOnEof(usize);

impl Handler for ReplyOnEof {
    type Session = ();
    fn on_data(&mut self, _conn: &mut Conn<'_, Self>, _data: &[u8]) {}
    fn on_eof(&mut self, conn: &mut Conn<'_, Self>) {
        conn.write(&vec![b'r'; self.0]);
        conn.close(); // once the reply is sent
    }
}

/// On edgeloop: the peer sends a request and half-closes; the handler
/// replies `reply` bytes from `on_eof`; the peer reads nothing for 100 ms,
/// then everything. Returns (the reactor's waits in those 100 ms, bytes
/// the peer received, bytes sent).
///
/// # Errors
/// Setup failures.
pub fn edgeloop_half_closed_reply(reply: usize) -> io::Result<(u64, usize, usize)> {
    let mut reactor = Reactor::new()?;
    let set = reactor.install(Connections::new(
        ReplyOnEof(reply),
        ConnOptions::with_trigger(Trigger::Level),
    )?)?;
    let (ours, mut theirs) = UnixStream::pair()?;
    {
        let (connections, core) = reactor.source_mut(set);
        connections.attach(core, ours.into())?;
    }
    theirs.write_all(b"GET /")?;
    theirs.shutdown(Shutdown::Write)?;
    // Let it read the request and the EOF, and fill the socket.
    for _ in 0..3 {
        reactor.run_once(Some(Duration::from_millis(10)))?;
    }
    let before = *reactor.core().stats();
    let start = Instant::now();
    while let Some(left) = SPAN.checked_sub(start.elapsed()) {
        reactor.run_once(Some(left))?;
    }
    let waits = reactor.core().stats().since(&before).waits;
    theirs.set_nonblocking(true)?;
    let mut received = 0;
    let mut buf = vec![0; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match theirs.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                reactor.run_once(Some(Duration::from_millis(10)))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((waits, received, reply))
}
