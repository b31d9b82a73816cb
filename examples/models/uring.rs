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
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use slab::Slab;

/// Bytes of each connection's receive buffer: what an idle connection
/// keeps posted to the kernel.
pub const BUFFER: usize = 4096;

const ACCEPT: u64 = u64::MAX;
const SIGNAL: u64 = u64::MAX - 1;
const RECV: u64 = 0;
const SEND: u64 = 1;

struct Conn {
    fd: OwnedFd,
    buf: Box<[u8]>,
    /// Bytes received and being echoed, and how many of them are sent.
    len: usize,
    sent: usize,
}

/// Counts printed on exit.
#[derive(Default)]
struct Counts {
    enters: u64,
    completions: u64,
}

/// Pushes `entry`, handing the queue to the kernel first if it is full.
fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every buffer an entry points to (a connection's boxed
        // buffer, the signal buffer) stays allocated and unmoved until the
        // entry's completion is reaped: a connection is removed only on a
        // completion, when none of its operations is in flight.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

fn recv(ring: &mut IoUring, key: usize, conn: &mut Conn) -> io::Result<()> {
    let entry = opcode::Recv::new(
        types::Fd(conn.fd.as_raw_fd()),
        conn.buf.as_mut_ptr(),
        conn.buf.len() as u32,
    )
    .build()
    .user_data((key as u64) << 1 | RECV);
    push(ring, &entry)
}

fn send(ring: &mut IoUring, key: usize, conn: &Conn) -> io::Result<()> {
    let rest = &conn.buf[conn.sent..conn.len];
    let entry = opcode::Send::new(
        types::Fd(conn.fd.as_raw_fd()),
        rest.as_ptr(),
        rest.len() as u32,
    )
    .flags(nix::libc::MSG_NOSIGNAL)
    .build()
    .user_data((key as u64) << 1 | SEND);
    push(ring, &entry)
}

/// Serves echo on `listener` until SIGTERM or SIGINT. If the kernel
/// refuses io_uring, returns its error (with the errno).
pub fn serve(listener: TcpListener) -> io::Result<()> {
    let mut ring = IoUring::new(1024).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("io_uring_setup: {e} (errno {:?})", e.raw_os_error()),
        )
    })?;
    let stop = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT]);
    stop.thread_block()?;
    let signals = SignalFd::with_flags(&stop, SfdFlags::SFD_CLOEXEC)?;
    let mut siginfo = vec![0u8; std::mem::size_of::<nix::libc::signalfd_siginfo>()];
    let read_signal = opcode::Read::new(
        types::Fd(signals.as_fd().as_raw_fd()),
        siginfo.as_mut_ptr(),
        siginfo.len() as u32,
    )
    .build()
    .user_data(SIGNAL);
    push(&mut ring, &read_signal)?;
    let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
        .flags(nix::libc::SOCK_CLOEXEC)
        .build()
        .user_data(ACCEPT);
    push(&mut ring, &accept)?;

    let mut conns: Slab<Conn> = Slab::new();
    let mut counts = Counts::default();
    let mut done = Vec::new();
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        counts.enters += 1;
        done.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for (user_data, result, flags) in done.drain(..) {
            counts.completions += 1;
            match user_data {
                SIGNAL => {
                    eprintln!(
                        "uring: enters={} completions={} connections={}",
                        counts.enters,
                        counts.completions,
                        conns.len()
                    );
                    return Ok(());
                }
                ACCEPT => {
                    if result >= 0 {
                        // SAFETY: a successful accept completion's result is
                        // a new fd that nothing else owns.
                        let fd = unsafe { OwnedFd::from_raw_fd(result) };
                        let entry = conns.vacant_entry();
                        let key = entry.key();
                        let conn = entry.insert(Conn {
                            fd,
                            buf: vec![0; BUFFER].into_boxed_slice(),
                            len: 0,
                            sent: 0,
                        });
                        recv(&mut ring, key, conn)?;
                    }
                    if !cqueue::more(flags) {
                        // The multishot accept ended (an error, or the
                        // kernel's choice): arm it again.
                        push(&mut ring, &accept)?;
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
                            send(&mut ring, key, conn)?;
                        }
                        (SEND, n) if n > 0 => {
                            conn.sent += n as usize;
                            if conn.sent < conn.len {
                                send(&mut ring, key, conn)?;
                            } else {
                                recv(&mut ring, key, conn)?;
                            }
                        }
                        _ => {
                            // EOF or an error, with nothing else in flight
                            // for this connection: close it.
                            conns.remove(key);
                        }
                    }
                }
            }
        }
    }
}
