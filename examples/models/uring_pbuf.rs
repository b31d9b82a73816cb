//! io_uring with a provided-buffer ring: the variant of `uring.rs` that
//! posts no buffer per connection. One ring of `BUFFERS` buffers is
//! registered with the kernel; each connection has one multishot `recv`
//! that asks for a buffer from the ring only when data arrives. The buffer
//! goes back to the ring once its echo is sent. An idle connection holds a
//! pending operation, not memory.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use slab::Slab;

/// Buffers in the ring (a power of two) and the size of each.
const BUFFERS: u16 = 4096;
const BUFFER_SIZE: usize = 2048;
/// The buffer group id.
const GROUP: u16 = 7;

const ACCEPT: u64 = u64::MAX;
const SIGNAL: u64 = u64::MAX - 1;
const RECV: u64 = 0;
const SEND: u64 = 1;

/// The ring of buffer descriptors (shared with the kernel) and the
/// buffers themselves.
struct Buffers {
    ring: *mut BufRingEntry,
    layout: std::alloc::Layout,
    memory: Vec<u8>,
    tail: u16,
}

impl Buffers {
    fn new(uring: &IoUring) -> io::Result<Buffers> {
        let layout = std::alloc::Layout::from_size_align(
            BUFFERS as usize * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size.
        let ring = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if ring.is_null() {
            return Err(io::Error::from(ErrorKind::OutOfMemory));
        }
        let mut buffers = Buffers {
            ring,
            layout,
            memory: vec![0; BUFFERS as usize * BUFFER_SIZE],
            tail: 0,
        };
        // SAFETY: `ring` is page-aligned, zeroed, and lives (with `memory`)
        // until this struct is dropped, after the ring that uses it.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, BUFFERS, GROUP, 0)
        }?;
        for bid in 0..BUFFERS {
            buffers.give_back(bid);
        }
        Ok(buffers)
    }

    /// The bytes of buffer `bid`.
    fn buffer(&self, bid: u16) -> &[u8] {
        let start = bid as usize * BUFFER_SIZE;
        &self.memory[start..start + BUFFER_SIZE]
    }

    /// Hands buffer `bid` back to the kernel.
    fn give_back(&mut self, bid: u16) {
        let index = (self.tail & (BUFFERS - 1)) as usize;
        let addr = self.memory[bid as usize * BUFFER_SIZE..].as_ptr() as u64;
        // SAFETY: `index` < BUFFERS, inside the ring's allocation; the
        // kernel reads only entries below the tail we publish next.
        let entry = unsafe { &mut *self.ring.add(index) };
        entry.set_addr(addr);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the ring's first entry holds the tail (the kernel's
        // layout); a u16 there is aligned, and the kernel reads it
        // concurrently, hence the atomic release store.
        let tail = unsafe { &*(BufRingEntry::tail(self.ring) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ring.cast(), self.layout) };
    }
}

struct Conn {
    fd: OwnedFd,
    /// Received buffers waiting to be echoed (bid, length), oldest first;
    /// the first is being sent, `sent` bytes of it so far.
    out: VecDeque<(u16, usize)>,
    sent: usize,
    /// The multishot recv ended (EOF or error): close once `out` drains.
    done: bool,
}

fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every buffer an entry points to (the provided buffers, the
        // signal buffer) stays allocated and unmoved until its completion
        // is reaped.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

fn recv(ring: &mut IoUring, key: usize, conn: &Conn) -> io::Result<()> {
    let entry = opcode::RecvMulti::new(types::Fd(conn.fd.as_raw_fd()), GROUP)
        .build()
        .user_data((key as u64) << 1 | RECV);
    push(ring, &entry)
}

fn send(ring: &mut IoUring, key: usize, conn: &Conn, buffers: &Buffers) -> io::Result<()> {
    let (bid, len) = conn.out[0];
    let rest = &buffers.buffer(bid)[conn.sent..len];
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

/// Serves echo on `listener` until SIGTERM or SIGINT.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    let mut ring = IoUring::new(1024).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("io_uring_setup: {e} (errno {:?})", e.raw_os_error()),
        )
    })?;
    let mut buffers = Buffers::new(&ring)
        .map_err(|e| io::Error::new(e.kind(), format!("IORING_REGISTER_PBUF_RING: {e}")))?;
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
    let (mut enters, mut completions, mut no_buffers) = (0u64, 0u64, 0u64);
    let mut done = Vec::new();
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        enters += 1;
        done.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for (user_data, result, flags) in done.drain(..) {
            completions += 1;
            match user_data {
                SIGNAL => {
                    eprintln!(
                        "uring-pbuf: enters={enters} completions={completions} \
                         connections={} no_buffers={no_buffers}",
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
                            out: VecDeque::new(),
                            sent: 0,
                            done: false,
                        });
                        recv(&mut ring, key, conn)?;
                    }
                    if !cqueue::more(flags) {
                        push(&mut ring, &accept)?;
                    }
                }
                _ => {
                    let key = (user_data >> 1) as usize;
                    let Some(conn) = conns.get_mut(key) else {
                        continue;
                    };
                    if user_data & 1 == RECV {
                        match (result, cqueue::buffer_select(flags)) {
                            (n, Some(bid)) if n > 0 => {
                                conn.out.push_back((bid, n as usize));
                                if conn.out.len() == 1 {
                                    conn.sent = 0;
                                    send(&mut ring, key, conn, &buffers)?;
                                }
                            }
                            (e, _) if e == -nix::libc::ENOBUFS => {
                                // The ring ran dry: the multishot recv
                                // ended; ask again (buffers come back as
                                // sends complete).
                                no_buffers += 1;
                            }
                            _ => conn.done = true, // EOF or an error
                        }
                        if !cqueue::more(flags) && !conn.done {
                            recv(&mut ring, key, conn)?;
                        }
                    } else if result > 0 {
                        conn.sent += result as usize;
                        let (bid, len) = conn.out[0];
                        if conn.sent < len {
                            send(&mut ring, key, conn, &buffers)?;
                            continue;
                        }
                        conn.out.pop_front();
                        buffers.give_back(bid);
                        conn.sent = 0;
                        if !conn.out.is_empty() {
                            send(&mut ring, key, conn, &buffers)?;
                        }
                    } else {
                        // The send failed (the peer is gone): drop what was
                        // queued. The recv ends with the connection's error,
                        // and the connection is removed then: never while an
                        // operation of it may still complete.
                        for (bid, _) in conn.out.drain(..) {
                            buffers.give_back(bid);
                        }
                    }
                    let conn = &conns[key];
                    if conn.done && conn.out.is_empty() {
                        conns.remove(key);
                    }
                }
            }
        }
    }
}
