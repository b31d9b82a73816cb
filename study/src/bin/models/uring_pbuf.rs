//! io_uring with a provided-buffer ring: the variant of `uring.rs` that
//! posts no buffer per connection. One ring of `BUFFERS` buffers is
//! registered with the kernel; each connection has one multishot `recv`
//! that asks for a buffer from the ring only when data arrives. The buffer
//! goes back to the ring once its echo is sent. An idle connection holds a
//! pending operation, not memory.
//!
//! Backpressure: a connection holds at most `MAX_OUT` buffers waiting to
//! be echoed. At that, its multishot recv is cancelled (a peer that never
//! reads cannot take the ring), and armed again once the queue is down to
//! half. When the ring runs dry (ENOBUFS ends a recv), the connection waits
//! for a buffer to come back, one connection per returned buffer: re-armed
//! at once, the recv would end again at once, a busy loop.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue, opcode, types};
use slab::Slab;

use super::uring::{ACCEPT, CANCEL, Loop, RECV, SIGNAL};

/// Buffers in the ring (a power of two) and the size of each.
const BUFFERS: u16 = 4096;
const BUFFER_SIZE: usize = 2048;
/// The buffer group id.
const GROUP: u16 = 7;
/// Buffers one connection may hold waiting to be echoed.
const MAX_OUT: usize = 8;

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
    /// The multishot recv is in flight.
    armed: bool,
    /// Its cancel (at `MAX_OUT`) is in flight.
    cancelling: bool,
}

/// Arms the connection's multishot recv, if it is not armed, not done, and
/// its queue has room.
fn recv(lp: &mut Loop, key: usize, conn: &mut Conn) -> io::Result<()> {
    if conn.armed || conn.done || conn.out.len() >= MAX_OUT / 2 {
        return Ok(());
    }
    conn.armed = true;
    let entry = opcode::RecvMulti::new(types::Fd(conn.fd.as_raw_fd()), GROUP)
        .build()
        .user_data((key as u64) << 1 | RECV);
    lp.push(&entry)
}

fn send(lp: &mut Loop, key: usize, conn: &Conn, buffers: &Buffers) -> io::Result<()> {
    let (bid, len) = conn.out[0];
    lp.send(
        key,
        conn.fd.as_raw_fd(),
        &buffers.buffer(bid)[conn.sent..len],
    )
}

/// Serves echo on `listener` until SIGTERM or SIGINT.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    let mut lp = Loop::start(&listener, false)?;
    let mut buffers = Buffers::new(&lp.ring)
        .map_err(|e| io::Error::new(e.kind(), format!("IORING_REGISTER_PBUF_RING: {e}")))?;
    let mut conns: Slab<Conn> = Slab::new();
    let mut no_buffers = 0u64;
    // Connections whose recv ended for want of a buffer, oldest first.
    let mut starved: VecDeque<usize> = VecDeque::new();
    let mut done = Vec::new();
    loop {
        lp.turn(&mut done)?;
        for (user_data, result, flags) in done.drain(..) {
            match user_data {
                SIGNAL => {
                    eprintln!(
                        "uring-pbuf: enters={} completions={} connections={} \
                         no_buffers={no_buffers}",
                        lp.enters,
                        lp.completions,
                        conns.len()
                    );
                    return Ok(());
                }
                CANCEL => {}
                ACCEPT => {
                    if let Some(fd) = lp.accepted(result, flags)? {
                        let entry = conns.vacant_entry();
                        let key = entry.key();
                        let conn = entry.insert(Conn {
                            fd,
                            out: VecDeque::new(),
                            sent: 0,
                            done: false,
                            armed: false,
                            cancelling: false,
                        });
                        recv(&mut lp, key, conn)?;
                    }
                }
                _ => {
                    let key = (user_data >> 1) as usize;
                    let Some(conn) = conns.get_mut(key) else {
                        continue;
                    };
                    if user_data & 1 == RECV {
                        if !cqueue::more(flags) {
                            conn.armed = false;
                            conn.cancelling = false;
                        }
                        match (result, cqueue::buffer_select(flags)) {
                            (n, Some(bid)) if n > 0 => {
                                conn.out.push_back((bid, n as usize));
                                if conn.out.len() == 1 {
                                    conn.sent = 0;
                                    send(&mut lp, key, conn, &buffers)?;
                                }
                                if conn.out.len() >= MAX_OUT && conn.armed && !conn.cancelling {
                                    // A peer that sends and does not read
                                    // must not take the ring.
                                    conn.cancelling = true;
                                    let cancel = opcode::AsyncCancel::new(user_data)
                                        .build()
                                        .user_data(CANCEL);
                                    lp.push(&cancel)?;
                                }
                            }
                            (e, _) if e == -nix::libc::ENOBUFS => {
                                // The ring ran dry: wait for a buffer to
                                // come back (a send completing).
                                no_buffers += 1;
                                starved.push_back(key);
                                continue;
                            }
                            (e, _) if e == -nix::libc::ECANCELED => {}
                            _ => conn.done = true, // EOF or an error
                        }
                        recv(&mut lp, key, conn)?;
                    } else if result > 0 {
                        conn.sent += result as usize;
                        let (bid, len) = conn.out[0];
                        if conn.sent < len {
                            send(&mut lp, key, conn, &buffers)?;
                            continue;
                        }
                        conn.out.pop_front();
                        buffers.give_back(bid);
                        conn.sent = 0;
                        if !conn.out.is_empty() {
                            send(&mut lp, key, conn, &buffers)?;
                        }
                        recv(&mut lp, key, conn)?;
                        // A buffer came back: one starved connection may
                        // read again.
                        while let Some(waiting) = starved.pop_front() {
                            if let Some(other) = conns.get_mut(waiting) {
                                if !other.armed && !other.done {
                                    recv(&mut lp, waiting, other)?;
                                    break;
                                }
                            }
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
                    if conn.done && conn.out.is_empty() && !conn.armed {
                        conns.remove(key);
                        lp.fd_freed()?;
                    }
                }
            }
        }
    }
}
