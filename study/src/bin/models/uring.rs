//! Asynchronous IO with io_uring: a completion-based echo. One multishot
//! accept; per connection one `recv` in flight (into the connection's own
//! buffer), then one `send` of what came, then the next `recv`. Every
//! submission of a loop turn goes to the kernel in the one `io_uring_enter`
//! that also waits for the next completion.
//!
//! SIGTERM and SIGINT arrive as the completion of a `read` on a signalfd,
//! and the server prints `uring: ...` counts and exits.

use std::io::{self, ErrorKind};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use slab::Slab;

/// Bytes of each connection's receive buffer: what an idle connection
/// keeps posted to the kernel.
pub const BUFFER: usize = 4096;

/// User data: the accept, the stop signal's read, and (in the low bit of
/// a connection's key shifted left) a connection's recv or send.
pub const ACCEPT: u64 = u64::MAX;
pub const SIGNAL: u64 = u64::MAX - 1;
/// A cancel's own completion (ignored).
pub const CANCEL: u64 = u64::MAX - 2;
pub const RECV: u64 = 0;
pub const SEND: u64 = 1;

struct Conn {
    fd: OwnedFd,
    buf: Box<[u8]>,
    /// Bytes received and being echoed, and how many of them are sent.
    len: usize,
    sent: usize,
}

/// What both io_uring servers (this one and `uring_pbuf.rs`) share: the
/// ring, SIGTERM/SIGINT read from a signalfd as a completion, the
/// multishot accept, sends, and the loop's turn.
pub struct Loop {
    pub ring: IoUring,
    accept: squeue::Entry,
    /// The accept ended at the fd limit and is not armed: a closed
    /// connection frees an fd, and arms it again ([`Loop::fd_freed`]).
    accept_paused: bool,
    /// The signalfd and the buffer its read fills: both outlive the read.
    _signals: SignalFd,
    _siginfo: Box<[u8]>,
    pub enters: u64,
    pub completions: u64,
}

impl Loop {
    /// A ring (its error, with the errno, if the kernel refuses io_uring),
    /// the stop signals' read and the multishot accept on `listener`.
    ///
    /// `defer_taskrun`: `IORING_SETUP_DEFER_TASKRUN` (with
    /// `SINGLE_ISSUER`, Linux 6.1): completions' task work (a recv that
    /// became possible, say) runs when the loop next waits, not as soon
    /// as the wakeup arrives.
    pub fn start(listener: &TcpListener, defer_taskrun: bool) -> io::Result<Loop> {
        let mut builder = IoUring::builder();
        if defer_taskrun {
            builder.setup_single_issuer().setup_defer_taskrun();
        }
        let ring = builder.build(1024).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("io_uring_setup: {e} (errno {:?})", e.raw_os_error()),
            )
        })?;
        let stop = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT]);
        stop.thread_block()?;
        let signals = SignalFd::with_flags(&stop, SfdFlags::SFD_CLOEXEC)?;
        let mut siginfo =
            vec![0u8; std::mem::size_of::<nix::libc::signalfd_siginfo>()].into_boxed_slice();
        let read_signal = opcode::Read::new(
            types::Fd(signals.as_fd().as_raw_fd()),
            siginfo.as_mut_ptr(),
            siginfo.len() as u32,
        )
        .build()
        .user_data(SIGNAL);
        let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .flags(nix::libc::SOCK_CLOEXEC)
            .build()
            .user_data(ACCEPT);
        let mut lp = Loop {
            ring,
            accept: accept.clone(),
            accept_paused: false,
            _signals: signals,
            _siginfo: siginfo,
            enters: 0,
            completions: 0,
        };
        lp.push(&read_signal)?;
        lp.push(&accept)?;
        Ok(lp)
    }

    /// Pushes `entry`, handing the queue to the kernel first if it is full.
    pub fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every buffer an entry of these servers points to (a
            // connection's buffer, a provided buffer, the signal buffer)
            // stays allocated and unmoved until the entry's completion is
            // reaped: a connection is removed only on a completion, when
            // none of its operations is in flight.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// A connection closed: if the accept waits for an fd, arm it again.
    pub fn fd_freed(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.accept_paused) {
            let accept = self.accept.clone();
            self.push(&accept)?;
        }
        Ok(())
    }

    /// Sends `rest` on `fd` for connection `key`.
    pub fn send(&mut self, key: usize, fd: RawFd, rest: &[u8]) -> io::Result<()> {
        let entry = opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32)
            .flags(nix::libc::MSG_NOSIGNAL)
            .build()
            .user_data((key as u64) << 1 | SEND);
        self.push(&entry)
    }

    /// One turn: what is queued goes to the kernel in the one
    /// `io_uring_enter` that waits for a completion; the completions land
    /// in `done` as (user data, result, flags).
    pub fn turn(&mut self, done: &mut Vec<(u64, i32, u32)>) -> io::Result<()> {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.enters += 1;
        done.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        self.completions += done.len() as u64;
        Ok(())
    }

    /// An accept completion: the new connection, if there is one; the
    /// multishot accept is armed again if it ended, except at the fd limit
    /// (EMFILE, ENFILE): armed again at once, it would end again at once,
    /// a busy loop. It waits for a connection to close instead.
    pub fn accepted(&mut self, result: i32, flags: u32) -> io::Result<Option<OwnedFd>> {
        if !cqueue::more(flags) {
            if result == -nix::libc::EMFILE || result == -nix::libc::ENFILE {
                self.accept_paused = true;
            } else {
                let accept = self.accept.clone();
                self.push(&accept)?;
            }
        }
        // SAFETY: a successful accept completion's result is a new fd that
        // nothing else owns.
        Ok((result >= 0).then(|| unsafe { OwnedFd::from_raw_fd(result) }))
    }
}

/// `IORING_RECVSEND_POLL_FIRST` (Linux 5.19): arm the poll at once instead
/// of trying the recv first.
const RECVSEND_POLL_FIRST: u16 = 1;

/// Variants of this server, compared by `scripts/uring_profile.sh`
/// (docs/study.md, "Why io_uring cost more CPU here").
#[derive(Copy, Clone, PartialEq, Eq)]
pub enum Variant {
    /// A recv tries at once and, on EAGAIN, arms an internal poll; the
    /// poll's wakeup runs the recv as task work at once.
    Default,
    /// Each recv arms its poll first (`IORING_RECVSEND_POLL_FIRST`): no
    /// failed attempt when the next message is not there yet.
    PollFirst,
    /// Task work deferred to the loop's next wait
    /// (`IORING_SETUP_DEFER_TASKRUN`).
    DeferTaskrun,
}

fn recv(lp: &mut Loop, variant: Variant, key: usize, conn: &mut Conn) -> io::Result<()> {
    let entry = opcode::Recv::new(
        types::Fd(conn.fd.as_raw_fd()),
        conn.buf.as_mut_ptr(),
        conn.buf.len() as u32,
    )
    .ioprio(if variant == Variant::PollFirst {
        RECVSEND_POLL_FIRST
    } else {
        0
    })
    .build()
    .user_data((key as u64) << 1 | RECV);
    lp.push(&entry)
}

fn send(lp: &mut Loop, key: usize, conn: &Conn) -> io::Result<()> {
    lp.send(key, conn.fd.as_raw_fd(), &conn.buf[conn.sent..conn.len])
}

/// Serves echo on `listener` until SIGTERM or SIGINT. If the kernel
/// refuses io_uring (or the variant's setup), returns its error (with the
/// errno).
pub fn serve(listener: TcpListener, variant: Variant) -> io::Result<()> {
    let mut lp = Loop::start(&listener, variant == Variant::DeferTaskrun)?;
    let mut conns: Slab<Conn> = Slab::new();
    let mut done = Vec::new();
    loop {
        lp.turn(&mut done)?;
        for (user_data, result, flags) in done.drain(..) {
            match user_data {
                SIGNAL => {
                    eprintln!(
                        "uring: enters={} completions={} connections={}",
                        lp.enters,
                        lp.completions,
                        conns.len()
                    );
                    return Ok(());
                }
                ACCEPT => {
                    if let Some(fd) = lp.accepted(result, flags)? {
                        let entry = conns.vacant_entry();
                        let key = entry.key();
                        let conn = entry.insert(Conn {
                            fd,
                            buf: vec![0; BUFFER].into_boxed_slice(),
                            len: 0,
                            sent: 0,
                        });
                        recv(&mut lp, variant, key, conn)?;
                    }
                }
                _ => {
                    let key = (user_data >> 1) as usize;
                    let Some(conn) = conns.get_mut(key) else {
                        continue;
                    };
                    match (user_data & 1, result) {
                        (RECV, n) if n > 0 => {
                            conn.len = n as usize;
                            conn.sent = 0;
                            send(&mut lp, key, conn)?;
                        }
                        (SEND, n) if n > 0 => {
                            conn.sent += n as usize;
                            if conn.sent < conn.len {
                                send(&mut lp, key, conn)?;
                            } else {
                                recv(&mut lp, variant, key, conn)?;
                            }
                        }
                        _ => {
                            // EOF or an error, with nothing else in flight
                            // for this connection: close it.
                            conns.remove(key);
                            lp.fd_freed()?;
                        }
                    }
                }
            }
        }
    }
}
