//! The write path of a connection table: coalescing a handler call's
//! writes (through the `cork`), sending at once when the socket takes
//! it, queueing the rest, flushing the queue, and the set's output budget.

use std::io::IoSlice;
use std::os::fd::AsFd;

use nix::libc;

use super::super::CloseReason;
use super::super::cork::Hold;
use super::super::queue::MAX_IOVECS;
use super::super::state::{Pause, Phase};
use super::{TIMER_BUDGET, Table};
use crate::Core;
use crate::sys;

impl<S: Default + 'static> Table<S> {
    /// Writes `data` on `key` for `sender`'s handler: held if it is the
    /// corked call's write to itself (see `cork`), else sent at once.
    #[inline(always)]
    pub(in crate::conn) fn write<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        key: usize,
        data: &[u8],
        sender: usize,
    ) {
        if self.cork.is_for(key) {
            match self.cork.hold(data) {
                Hold::Held => return,
                Hold::Full => return self.write_past_hold(core, key, data),
                Hold::First => {}
            }
        }
        self.send(core, key, data, sender);
    }

    /// A write to the corked connection that does not fit in the hold:
    /// what is held goes first, then this; later writes are held again.
    #[cold]
    #[inline(never)]
    fn write_past_hold<D: 'static>(&mut self, core: &mut Core<D>, key: usize, data: &[u8]) {
        self.release(core, key);
        self.send(core, key, data, key);
        self.recork(key);
    }

    /// A handler call on `key` begins: its first write to itself is sent
    /// at once, later ones are held.
    #[inline(always)]
    pub(in crate::conn) fn cork(&mut self, key: usize) {
        self.cork.begin(key);
    }

    /// The handler call ended: what it held goes out.
    #[inline(always)]
    pub(in crate::conn) fn uncork<D: 'static>(&mut self, core: &mut Core<D>) {
        if self.cork.len() != 0 {
            self.send_held(core, self.cork.corked());
        }
        self.cork.end();
    }

    /// Sends what `key`'s running handler call holds and ends its cork:
    /// what it writes from now on is sent (or dropped) at once. Before a
    /// close or a shutdown changes what writing means.
    pub(super) fn release<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        if self.cork.is_for(key) {
            if self.cork.len() != 0 {
                self.send_held(core, key);
            }
            self.cork.end();
        }
    }

    /// After an early send: hold `key`'s later writes again if it may
    /// write and nothing got queued.
    fn recork(&mut self, key: usize) {
        if let Some(c) = self.slots.get(key) {
            if c.state.phase.takes_writes() && c.queue.is_none() {
                self.cork.resume(key);
            }
        }
    }

    /// Sends what `key`'s running handler call wrote so far, now (on
    /// [`Conn::flush`](super::Conn::flush)); its later writes are held
    /// again.
    #[cold]
    pub(in crate::conn) fn send_pending<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        if self.cork.is_for(key) && self.cork.is_holding() {
            self.release(core, key);
            self.recork(key);
        }
    }

    /// One `send` of what is held (by the cork's invariant nothing is
    /// queued); what the socket does not take is queued.
    #[inline(always)]
    fn send_held<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let held = self.cork.take();
        let sent = sys::send(self.slots[key].fd.as_fd(), self.cork.bytes(held));
        self.stats.writes += 1;
        if let Ok(n) = sent {
            self.stats.bytes_out += n as u64;
            if n == held {
                return;
            }
        }
        self.held_rest(core, key, held, sent);
    }

    #[cold]
    #[inline(never)]
    fn held_rest<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        key: usize,
        held: usize,
        sent: sys::SysResult<usize>,
    ) {
        // The rest goes from the cork's buffer to the queue: one copy.
        let buf = self.cork.lend();
        self.write_rest(core, key, &buf[..held], sent, key);
        self.cork.give_back(buf);
    }

    /// Bytes the running handler call on `key` wrote and still holds.
    pub(in crate::conn) fn held(&self, key: usize) -> usize {
        if self.cork.is_for(key) {
            self.cork.len()
        } else {
            0
        }
    }

    /// A handler call ended by a panic: what it held is dropped.
    #[cold]
    pub(in crate::conn) fn drop_held(&mut self) {
        self.cork.discard();
    }

    /// Sends `data` on `key`: at once if nothing is queued and the socket
    /// takes it, else queued, counting against `sender` (the connection
    /// whose handler is writing; `key` itself, or another for a broadcast)
    /// if the set is over its output cap. The fast path (one `send` that
    /// takes everything) is small enough to inline into a handler; the rest
    /// is out of line.
    #[inline(always)]
    fn send<D: 'static>(&mut self, core: &mut Core<D>, key: usize, data: &[u8], sender: usize) {
        let c = &self.slots[key];
        if c.state.phase == Phase::Open && c.queue.is_none() && !data.is_empty() {
            let sent = sys::send(c.fd.as_fd(), data);
            self.stats.writes += 1;
            if let Ok(n) = sent {
                self.stats.bytes_out += n as u64;
                if n == data.len() {
                    return;
                }
            }
            self.write_rest(core, key, data, sent, sender);
        } else {
            self.write_queued(core, key, data, sender);
        }
    }

    /// What the first `send` of `data` (which returned `sent`) left over.
    #[cold]
    #[inline(never)]
    fn write_rest<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        key: usize,
        data: &[u8],
        mut sent: sys::SysResult<usize>,
        sender: usize,
    ) {
        let mut rest = data;
        loop {
            match sent {
                Ok(n) if n == rest.len() => return,
                Ok(n) => {
                    self.stats.partial_writes += 1;
                    rest = &rest[n..];
                    break;
                }
                Err(libc::EAGAIN) => {
                    self.stats.partial_writes += 1;
                    break;
                }
                Err(libc::EINTR) => {
                    sent = sys::send(self.slots[key].fd.as_fd(), rest);
                    self.stats.writes += 1;
                    if let Ok(n) = sent {
                        self.stats.bytes_out += n as u64;
                    }
                }
                Err(e) => return self.write_failed(key, e),
            }
        }
        self.write_queued(core, key, rest, sender);
    }

    /// Queues `data` behind what is queued already (or drops it after a
    /// close or shutdown). Past the set's output cap, `sender` stops
    /// reading.
    #[cold]
    #[inline(never)]
    fn write_queued<D: 'static>(
        &mut self,
        core: &mut Core<D>,
        key: usize,
        data: &[u8],
        sender: usize,
    ) {
        if self.cork.is_for(key) {
            // Queued (or dropped): what the call writes next must queue
            // behind it, not be held.
            self.cork.end();
        }
        let c = &mut self.slots[key];
        if !c.state.phase.takes_writes() || data.is_empty() {
            return;
        }
        c.queue.get_or_insert_with(Default::default).push(data);
        self.queued_total += data.len();
        if self.queued_total > self.stats.peak_queued {
            self.stats.peak_queued = self.queued_total;
        }
        self.queue_changed(core, key);
        if self.queued_total > self.options.max_queued_total {
            self.pause_for_budget(core, sender);
            if self.queued_total / 2 > self.options.max_queued_total {
                self.abort_longest_queues(self.options.max_queued_total);
            }
        }
    }

    /// Past the hard ceiling (twice the cap), or at the end of the budget's
    /// grace: aborts connections, longest queue first, until the total is
    /// at most `target`.
    #[cold]
    #[inline(never)]
    fn abort_longest_queues(&mut self, target: usize) {
        let mut queues: Vec<(usize, usize)> = self
            .slots
            .iter()
            .filter(|(_, c)| c.queued() > 0)
            .map(|(key, c)| (c.queued(), key))
            .collect();
        queues.sort_unstable_by(|a, b| b.cmp(a));
        for (queued, key) in queues {
            if self.queued_total <= target {
                break;
            }
            log::warn!(
                "edgeloop: the set's queued output ({} bytes) is over its budget ({} bytes): \
                 aborting {:?}, which held {queued}",
                self.queued_total,
                self.options.max_queued_total,
                self.id(key)
            );
            self.stats.budget_aborts += 1;
            self.doom(key, CloseReason::Aborted);
        }
    }

    #[cold]
    fn write_failed(&mut self, key: usize, errno: i32) {
        self.doom(key, CloseReason::from_errno(errno));
    }

    /// Sends what is queued, as far as the socket takes it.
    #[inline(never)]
    pub(in crate::conn) fn flush<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let c = &mut self.slots[key];
        let Some(queue) = c.queue.as_mut() else {
            return;
        };
        let fd = c.fd.as_fd();
        let closing = c.state.phase.is_closing();
        let mut progressed = false;
        while !queue.is_empty() {
            let (result, offered) = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = queue.slices(&mut slices);
                let offered: usize = slices[..n].iter().map(|s| s.len()).sum();
                (sys::send_vectored(fd, &slices[..n]), offered)
            };
            self.stats.writes += 1;
            match result {
                Ok(n) => {
                    self.stats.bytes_out += n as u64;
                    progressed |= n > 0;
                    queue.advance(n);
                    self.queued_total -= n;
                    if n < offered {
                        self.stats.partial_writes += 1;
                        break;
                    }
                }
                Err(libc::EAGAIN) => {
                    self.stats.partial_writes += 1;
                    break;
                }
                Err(libc::EINTR) => {}
                Err(e) => return self.write_failed(key, e),
            }
        }
        let emptied = queue.is_empty();
        if emptied {
            c.queue = None;
        }
        if progressed && (closing || self.plan.track_idle) {
            // Output moving is activity: it restarts a closing
            // connection's linger clock and an open one's idle clock (a
            // download to a client that sends nothing is not idle).
            self.progressed(key);
        }
        if emptied {
            self.after_flush(key);
        }
        if self.budget_paused > 0 && self.queued_total <= self.options.max_queued_total / 2 {
            self.resume_budget_paused(core);
        }
        self.queue_changed(core, key);
    }

    /// The set is over its output budget while `key`'s handler adds to it
    /// (to its own queue, or to others': a broadcast): stop reading `key`.
    #[cold]
    #[inline(never)]
    fn pause_for_budget<D: 'static>(&mut self, core: &mut Core<D>, key: usize) {
        let c = &mut self.slots[key];
        let phase = c.state.phase;
        if !c.state.pauses.contains(Pause::Budget) && phase != Phase::Doomed && !phase.is_closing()
        {
            c.state.pauses.insert(Pause::Budget);
            self.budget_paused += 1;
            self.stats.budget_pauses += 1;
            self.update_interest(core, key);
            if self.budget_timer.is_none() {
                let token = self.tokens.token(0, 0);
                let grace = self.options.budget_grace;
                self.budget_timer = Some(core.source_timer(grace, token, TIMER_BUDGET));
            }
        }
    }

    /// The budget's grace is over. Connections still paused by it wait on
    /// queues that did not drain: the longest are aborted until the total
    /// is under half the cap, and the paused connections read again.
    #[cold]
    #[inline(never)]
    pub(in crate::conn) fn budget_grace_over<D: 'static>(&mut self, core: &mut Core<D>) {
        self.budget_timer = None;
        if self.budget_paused == 0 {
            return;
        }
        self.abort_longest_queues(self.options.max_queued_total / 2);
        self.resume_budget_paused(core);
    }

    /// The total is back under half the cap: every connection the budget
    /// paused reads again.
    #[cold]
    #[inline(never)]
    fn resume_budget_paused<D: 'static>(&mut self, core: &mut Core<D>) {
        let keys: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, c)| c.state.pauses.contains(Pause::Budget))
            .map(|(k, _)| k)
            .collect();
        self.budget_paused = 0;
        if let Some(timer) = self.budget_timer.take() {
            core.cancel(timer);
        }
        for key in keys {
            self.slots[key].state.pauses.remove(Pause::Budget);
            self.resumed(core, key);
        }
    }
}
