//! Signal-driven IO, done the Linux way: every socket is `O_ASYNC`, owned by
//! this process (`F_SETOWN`) and set to raise a real-time signal
//! (`F_SETSIG`) whose siginfo names the fd and the poll band. The signals
//! are blocked and taken synchronously from a signalfd, many per `read`.
//!
//! Real-time signals queue, up to `RLIMIT_SIGPENDING` per user. When the
//! queue is full the kernel raises plain `SIGIO` instead, which names no
//! fd: the server then cannot know who is ready and falls back to trying
//! every socket (the overflow path). `--sigpending N` lowers the limit so
//! that path is taken; the count of overflows is printed on SIGTERM.
//!
//! The failure modes the library answers, answered here too: a client
//! that sends and never reads holds at most `MAX_PENDING` bytes of echo
//! (past it the server stops reading it; the signal for write space, once
//! it reads, resumes it), and at the fd limit (EMFILE, ENFILE) the server
//! stops accepting until a connection closes, instead of exiting.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::libc;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// What a run did, printed on SIGTERM as `sigio: ...`.
#[derive(Default, Debug)]
struct Counts {
    /// Real-time signals taken (one per readiness report).
    rt_signals: u64,
    /// Plain SIGIOs: the queue overflowed and every socket was tried.
    overflows: u64,
    /// `read`s of the signalfd.
    signalfd_reads: u64,
}

/// `F_SETSIG` (Linux, every architecture: `__F_SETSIG` in
/// <bits/fcntl-linux.h>); the libc crate does not export it.
const F_SETSIG: libc::c_int = 10;

/// The real-time signal the sockets raise.
fn rt_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

/// Makes `fd` raise `rt_signal()` at this process on every readiness change.
fn make_async(fd: RawFd) -> io::Result<()> {
    let check = |r: libc::c_int, what: &str| {
        if r < 0 {
            let e = io::Error::last_os_error();
            Err(io::Error::new(e.kind(), format!("{what} on fd {fd}: {e}")))
        } else {
            Ok(())
        }
    };
    // SAFETY: fcntl on an fd this process owns, with integer arguments;
    // no memory is passed.
    unsafe {
        check(libc::fcntl(fd, libc::F_SETOWN, libc::getpid()), "F_SETOWN")?;
        check(libc::fcntl(fd, F_SETSIG, rt_signal()), "F_SETSIG")?;
        let flags = libc::fcntl(fd, libc::F_GETFL);
        check(flags, "F_GETFL")?;
        check(
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_ASYNC | libc::O_NONBLOCK),
            "F_SETFL O_ASYNC",
        )
    }
}

/// The signals taken from the signalfd: the real-time one, SIGIO (the
/// overflow), SIGTERM and SIGINT (stop).
fn signal_set() -> SigSet {
    let mut raw = *SigSet::from_iter([Signal::SIGIO, Signal::SIGTERM, Signal::SIGINT]).as_ref();
    // SAFETY: `raw` is an initialised sigset_t and the signal number is
    // valid (SIGRTMIN + 1 <= SIGRTMAX).
    unsafe { libc::sigaddset(&mut raw, rt_signal()) };
    // SAFETY: `raw` came from a valid SigSet and sigaddset kept it valid.
    unsafe { SigSet::from_sigset_t_unchecked(raw) }
}

struct Client {
    stream: TcpStream,
    /// Echo bytes the socket did not take yet.
    pending: Vec<u8>,
}

/// Echo bytes one client may have waiting before it is no longer read.
const MAX_PENDING: usize = 1 << 20;

/// Reads `client` until EAGAIN (or until its echo backs up past
/// `MAX_PENDING`), echoing; false once it is closed.
fn service(client: &mut Client, buf: &mut [u8]) -> bool {
    if !flush(client) {
        return false;
    }
    // Reading stops once the echo backs up past MAX_PENDING: the socket
    // had no room then, so the kernel signals again when it has.
    while client.pending.len() < MAX_PENDING {
        match client.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                client.pending.extend_from_slice(&buf[..n]);
                if !flush(client) {
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Writes what is pending; false if the connection failed.
fn flush(client: &mut Client) -> bool {
    while !client.pending.is_empty() {
        match client.stream.write(&client.pending) {
            Ok(n) => {
                client.pending.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Accepts until EAGAIN, or until the fd limit (then the connections wait
/// in the backlog: accept_all runs again when a client closes). A new
/// connection is serviced at once: what it sent before O_ASYNC was set
/// raised no signal.
fn accept_all(
    listener: &TcpListener,
    clients: &mut HashMap<RawFd, Client>,
    buf: &mut [u8],
) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                make_async(stream.as_raw_fd())?;
                let mut client = Client {
                    stream,
                    pending: Vec::new(),
                };
                if service(&mut client, buf) {
                    clients.insert(client.stream.as_raw_fd(), client);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Serves echo on `listener` until SIGTERM or SIGINT.
pub fn serve(listener: TcpListener, sigpending: Option<u64>) -> io::Result<()> {
    if let Some(limit) = sigpending {
        use nix::sys::resource::{Resource, setrlimit};
        setrlimit(Resource::RLIMIT_SIGPENDING, limit, limit)?;
    }
    let set = signal_set();
    set.thread_block()?;
    let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)?;
    make_async(listener.as_raw_fd())?;
    let mut clients: HashMap<RawFd, Client> = HashMap::new();
    let mut counts = Counts::default();
    let mut buf = vec![0u8; 16 * 1024];
    // 64 siginfos per read: one syscall takes a whole batch of reports.
    const SIGINFO: usize = std::mem::size_of::<libc::signalfd_siginfo>();
    let mut infos = vec![0u8; 64 * SIGINFO];
    // Connections that arrived before O_ASYNC was set raised no signal.
    accept_all(&listener, &mut clients, &mut buf)?;
    loop {
        let n = match nix::unistd::read(signals.as_fd(), &mut infos) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        counts.signalfd_reads += 1;
        for info in infos[..n].chunks_exact(SIGINFO) {
            // struct signalfd_siginfo: ssi_signo at 0, ssi_fd at 20.
            let signo = u32::from_ne_bytes(info[0..4].try_into().unwrap()) as libc::c_int;
            let fd = i32::from_ne_bytes(info[20..24].try_into().unwrap());
            if signo == rt_signal() {
                counts.rt_signals += 1;
                if fd == listener.as_raw_fd() {
                    accept_all(&listener, &mut clients, &mut buf)?;
                } else if let Some(client) = clients.get_mut(&fd) {
                    if !service(client, &mut buf) {
                        clients.remove(&fd);
                        // An fd is free: a connection waiting at the limit
                        // may come in.
                        accept_all(&listener, &mut clients, &mut buf)?;
                    }
                }
            } else if signo == libc::SIGIO {
                // The queue overflowed: reports were lost, and this one
                // names nothing. Try everyone (what a poll would tell).
                counts.overflows += 1;
                accept_all(&listener, &mut clients, &mut buf)?;
                clients.retain(|_, client| service(client, &mut buf));
                accept_all(&listener, &mut clients, &mut buf)?;
            } else {
                eprintln!(
                    "sigio: rt_signals={} overflows={} signalfd_reads={} clients={}",
                    counts.rt_signals,
                    counts.overflows,
                    counts.signalfd_reads,
                    clients.len()
                );
                return Ok(());
            }
        }
    }
}
