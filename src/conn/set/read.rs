//! The read path of a [`Connections`] set: one event for a connection,
//! from the readiness the kernel reported to the handler's `on_data` (or
//! `on_eof`, or a hand-back of deferred input), what a hangup means, and
//! where a connect's completion turns off (to `finish_connect`). The
//! write path is the table's (`conn/table/write.rs`).

use std::io;
use std::os::fd::AsFd;

use nix::libc;

use super::super::state::{Pause, Peer, Phase, State};
use super::super::{CloseReason, Conn, Handler};
use super::Connections;
use crate::sys;
use crate::{Core, Ready, Token};

impl<H: Handler<D>, D: 'static> Connections<H, D> {
    /// One event for connection `token`.
    #[inline(always)]
    pub(super) fn on_event(&mut self, core: &mut Core<D>, token: Token, ready: Ready) -> bool {
        let key = token.key();
        // The one lookup of the event; the token's generation must match.
        let Some(c) = self.table.slots.get_mut(key) else {
            return false;
        };
        if c.generation != token.generation() || !c.state.phase.is_established() {
            return self.stale_or_connecting(core, key, token, ready);
        }
        if ready.is_read_closed() {
            c.state.peer = c.state.peer.max(Peer::CloseSeen);
        }
        let mut state = c.state;
        // Writes first: flushing may end a backpressure pause (netty's order:
        // OUT, then IN, then RDHUP).
        if ready.is_writable() && c.queue.is_some() {
            self.table.flush(core, key);
            state = self.table.slots[key].state;
            if state.phase == Phase::Open && self.table.slots[key].queue.is_none() {
                self.drained(core, key);
                state = self.table.slots[key].state;
            }
        }
        let doomed = state.phase == Phase::Doomed;
        if !doomed
            && ((state.reading()
                && (ready.is_readable() || ready.is_read_closed() || ready.is_error()))
                || (state.pauses.contains(Pause::Deferred) && ready.is_readable()))
        {
            self.read(core, key, state);
        } else if !doomed
            && (ready.is_error() || (ready.is_hup() && !state.may_hold_unread_input()))
        {
            // Not reading (paused, or EOF seen) and the socket is dead both
            // ways: nothing queued can be delivered. Close rather than let a
            // level-triggered HUP spin.
            let reason = self.table.socket_error(key);
            self.table.doom(key, reason);
        }
        true
    }

    /// An event the fast path does not take: stale (another generation, or
    /// closing by abort: false), or the completion of a connect.
    #[cold]
    #[inline(never)]
    fn stale_or_connecting(
        &mut self,
        core: &mut Core<D>,
        key: usize,
        token: Token,
        ready: Ready,
    ) -> bool {
        let c = &self.table.slots[key];
        if c.generation != token.generation() || c.state.phase == Phase::Doomed {
            return false;
        }
        self.finish_connect(core, key, ready);
        true
    }

    /// Reads connection `key` (whose state is `state`) up to its budget;
    /// or, if its handler deferred input, hands that back first, alone.
    /// The one place the handler's `on_data` is called, so the compiler
    /// inlines it here.
    #[inline(always)]
    fn read(&mut self, core: &mut Core<D>, key: usize, state: State) {
        // The plan's fields are read where they are used, not copied out
        // first: a copy is spilled across the handler call.
        // Level re-reports, so it may stop at any short read; Edge only with
        // the short-read rule. Neither may stop short once RDHUP was seen,
        // in this event or an earlier one: the EOF behind the data raises no
        // new edge.
        let stop_at_short_read = self.table.plan.stop_at_short_read && state.peer == Peer::Sending;
        let mut handed_back = None;
        if state.pauses.contains(Pause::Deferred) {
            // Not due yet: its queue or a pause wakes it.
            let Some(input) = self.table.take_due_deferred(key) else {
                return;
            };
            handed_back = Some(input);
        }
        // The caller saw it reading; after a handler call it may not be.
        for _ in 0..self.table.plan.budget {
            let n = match &handed_back {
                Some(input) => input.len(),
                None => {
                    let c = &mut self.table.slots[key];
                    let result = sys::recv(c.fd.as_fd(), &mut self.scratch);
                    self.table.stats.reads += 1;
                    match result {
                        Ok(0) => return self.on_read_eof(core, key),
                        Ok(n) if c.state.phase.is_closing() => {
                            // Closing: what the peer still sends is read and
                            // dropped, so the final close finds nothing unread
                            // (which would send an RST and could destroy our
                            // last reply in flight).
                            self.table.stats.bytes_in += n as u64;
                            continue;
                        }
                        Ok(n) => {
                            // The read's stamp: the loop time, one store,
                            // made whether or not idle time is tracked
                            // (cheaper than asking; without tracking the
                            // stamp of an open connection is never read).
                            c.stamp = self.table.now;
                            self.table.stats.bytes_in += n as u64;
                            n
                        }
                        Err(libc::EAGAIN) => {
                            self.table.stats.eagain_reads += 1;
                            return;
                        }
                        Err(libc::EINTR) => continue,
                        Err(e) => return self.table.doom(key, CloseReason::from_errno(e)),
                    }
                }
            };
            if handed_back.is_none() {
                if let Some(to) = self.table.links.partner(key) {
                    // Paired: the bytes go to the other side. The loop's end
                    // check is written out here again, not shared after a
                    // `match` with the handler's branch: shared, it cost the
                    // echo path about 8 instructions per message (callgrind).
                    self.table.forward(core, key, to, &self.scratch[..n]);
                    if (n < self.table.plan.chunk && stop_at_short_read)
                        || !self.table.slots[key].reading()
                    {
                        return;
                    }
                    continue;
                }
            }
            self.table.requests += 1;
            let data = match &handed_back {
                Some(input) => &input[..],
                None => &self.scratch[..n],
            };
            Conn::call(&mut self.handler, core, &mut self.table, key, |h, conn| {
                h.on_data(conn, data)
            });
            if handed_back.take().is_some() {
                return self.handed_back(core, key, n);
            }
            if (n < self.table.plan.chunk && stop_at_short_read) || !self.table.slots[key].reading()
            {
                return;
            }
        }
        // Budget spent with data maybe left: under Edge no new edge will come
        // for it, so carry the connection over to the next turn.
        if self.table.plan.edge {
            self.carry_over(core, key);
        }
    }

    /// After `given` deferred bytes were handed back to `key`'s handler:
    /// reading the socket goes on, unless the handler deferred part of
    /// them again (all of them: it would never progress, and is closed).
    #[cold]
    #[inline(never)]
    fn handed_back(&mut self, core: &mut Core<D>, key: usize, given: usize) {
        match self.table.deferred.len_of(key) {
            Some(again) if again >= given => {
                let error = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "edgeloop: the handler deferred all {again} bytes handed back to it \
                         (Conn::defer), so it would never progress; keep an unfinished \
                         request in the session"
                    ),
                );
                log::warn!("{:?}: {error}", self.table.id(key));
                self.table.doom(key, CloseReason::Error(error));
            }
            Some(_) => {}
            None if self.table.get(key).state.phase == Phase::Doomed => {}
            None => self.table.resumed(core, key),
        }
    }

    /// A writable event sent the last of `key`'s queue: its handler hears.
    #[cold]
    #[inline(never)]
    fn drained(&mut self, core: &mut Core<D>, key: usize) {
        Conn::call(&mut self.handler, core, &mut self.table, key, |h, conn| {
            h.on_drain(conn)
        });
    }

    #[cold]
    #[inline(never)]
    fn carry_over(&mut self, core: &mut Core<D>, key: usize) {
        if self.table.slots[key].reading() {
            core.requeue(self.table.token(key), Ready::READABLE);
        }
    }

    #[cold]
    fn on_read_eof(&mut self, core: &mut Core<D>, key: usize) {
        let c = self.table.get_mut(key);
        c.state.peer = Peer::Eof;
        if c.state.phase.is_closing() {
            // Lingering, or closing with output queued: the close completes
            // once the queue is empty.
            if c.queued() == 0 {
                self.table.doom(key, CloseReason::Closed);
            }
        } else if let Some(to) = self.table.links.partner(key) {
            self.table.pass_eof(core, key, to);
        } else {
            Conn::call(&mut self.handler, core, &mut self.table, key, |h, conn| {
                h.on_eof(conn)
            });
        }
        self.table.update_interest(core, key);
    }
}
