//! Timers on the monotonic clock: a binary heap of deadlines over a slab of
//! timers.
//!
//! Insert and expire are O(log n). Cancel is O(1): it frees the slab slot and
//! leaves a dead entry in the heap, which is skipped when it surfaces. When
//! dead entries outnumber live ones the heap is rebuilt, so cancelling a
//! million timers leaves no million dead entries behind (asyncio does the
//! same). Ties on the deadline are broken by a
//! sequence number, so timers with the same deadline fire in the order they
//! were set.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use slab::Slab;

use super::{Core, Reactor};
use crate::Token;

/// A timer's callback. It gets the reactor, so it can set and cancel timers
/// and touch registrations.
pub(crate) type TimerCallback<D> = Box<dyn FnMut(&mut Reactor<D>)>;

/// What a timer does when it fires.
pub(crate) enum TimerAction<D> {
    /// Calls a closure.
    Callback(TimerCallback<D>),
    /// Tells the source that owns `token` (through
    /// [`Source::on_timer`](super::Source::on_timer)), with `tag`: how a
    /// connection set arms a timer per connection without a closure.
    Source { token: Token, tag: u32 },
}

/// Names a timer, to [`cancel`](crate::Core::cancel) it. Stays valid for
/// the life of the timer (also across the repeats of a periodic one); a
/// cancelled or fired one-shot timer's id no longer matches anything.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct TimerId {
    key: usize,
    id: u64,
}

struct Timer<D> {
    id: u64,
    /// The sequence number of this timer's live heap entry.
    seq: u64,
    deadline: Instant,
    period: Option<Duration>,
    /// `None` while a periodic timer's callback runs.
    action: Option<TimerAction<D>>,
}

/// Rebuild the heap once more than this many entries are dead and they are
/// the majority.
const COMPACT_MIN_DEAD: usize = 64;

pub(crate) struct Timers<D> {
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    timers: Slab<Timer<D>>,
    next_seq: u64,
    dead: usize,
}

impl<D> Default for Timers<D> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            timers: Slab::new(),
            next_seq: 0,
            dead: 0,
        }
    }
}

/// What [`Timers::take_due`] hands to the reactor to run.
pub(crate) struct DueTimer<D> {
    pub(crate) key: usize,
    pub(crate) id: u64,
    pub(crate) action: TimerAction<D>,
}

impl<D> Timers<D> {
    pub(crate) fn insert(
        &mut self,
        deadline: Instant,
        period: Option<Duration>,
        action: TimerAction<D>,
    ) -> TimerId {
        let seq = self.bump_seq();
        let key = self.timers.insert(Timer {
            id: seq,
            seq,
            deadline,
            period,
            action: Some(action),
        });
        self.heap.push(Reverse((deadline, seq, key)));
        TimerId { key, id: seq }
    }

    fn bump_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub(crate) fn cancel(&mut self, timer: TimerId) -> bool {
        match self.timers.get(timer.key) {
            Some(t) if t.id == timer.id => {
                self.timers.remove(timer.key);
                self.dead += 1;
                self.compact_if_mostly_dead();
                true
            }
            _ => false,
        }
    }

    fn compact_if_mostly_dead(&mut self) {
        if self.dead > COMPACT_MIN_DEAD && self.dead * 2 > self.heap.len() {
            let timers = &self.timers;
            self.heap
                .retain(|Reverse((_, seq, key))| timers.get(*key).is_some_and(|t| t.seq == *seq));
            self.heap.shrink_to(self.heap.len() * 2);
            self.timers.shrink_to_fit();
            self.dead = 0;
        }
    }

    fn is_live(&self, seq: u64, key: usize) -> bool {
        self.timers.get(key).is_some_and(|t| t.seq == seq)
    }

    /// Drops dead entries from the top of the heap.
    fn skip_dead(&mut self) {
        while let Some(&Reverse((_, seq, key))) = self.heap.peek() {
            if self.is_live(seq, key) {
                break;
            }
            self.heap.pop();
            self.dead = self.dead.saturating_sub(1);
        }
    }

    /// The nearest deadline of a live timer.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_dead();
        self.heap.peek().map(|Reverse((deadline, _, _))| *deadline)
    }

    /// The sequence number the next timer will get. A pass fires only timers
    /// below the value read at its start, so a timer set (or a periodic one
    /// re-armed) during the pass waits for the next turn.
    pub(crate) fn pass_limit(&self) -> u64 {
        self.next_seq
    }

    /// Takes the next timer due at `now` that was set before the pass began.
    /// A one-shot timer leaves the table; a periodic one is re-armed first
    /// (from its previous deadline, skipping missed ticks), so its callback
    /// may cancel it.
    pub(crate) fn take_due(&mut self, now: Instant, limit: u64) -> Option<DueTimer<D>> {
        loop {
            self.skip_dead();
            let &Reverse((deadline, seq, key)) = self.heap.peek()?;
            if deadline > now || seq >= limit {
                return None;
            }
            self.heap.pop();
            let timer = &mut self.timers[key];
            let Some(action) = timer.action.take() else {
                // Its callback is running (a nested pass cannot happen, but a
                // missing callback must never panic the loop).
                continue;
            };
            let id = timer.id;
            match timer.period {
                Some(period) => {
                    let next = next_tick(timer.deadline, period, now);
                    let seq = self.bump_seq();
                    let timer = &mut self.timers[key];
                    timer.deadline = next;
                    timer.seq = seq;
                    self.heap.push(Reverse((next, seq, key)));
                }
                None => {
                    self.timers.remove(key);
                }
            }
            return Some(DueTimer { key, id, action });
        }
    }

    /// Puts a periodic timer's callback back after it ran, if the timer still
    /// exists.
    pub(crate) fn restore(&mut self, due: DueTimer<D>) {
        if let Some(t) = self.timers.get_mut(due.key) {
            if t.id == due.id && t.action.is_none() {
                t.action = Some(due.action);
            }
        }
    }

    /// Removes a timer whose callback panicked.
    pub(crate) fn remove(&mut self, key: usize, id: u64) {
        if self.timers.get(key).is_some_and(|t| t.id == id) {
            self.timers.remove(key);
            self.dead += 1;
        }
    }

    /// Live timers.
    pub(crate) fn len(&self) -> usize {
        self.timers.len()
    }

    /// True if no timer is live: the loop then does no timer work at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// Entries in the heap, dead ones included.
    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

/// The first tick of a periodic timer after `now`, on the grid
/// `deadline + k * period`: no drift, and ticks missed during a stall are
/// skipped rather than fired in a burst.
fn next_tick(deadline: Instant, period: Duration, now: Instant) -> Instant {
    if period.is_zero() {
        return now;
    }
    let behind = now.saturating_duration_since(deadline).as_nanos();
    let ticks = behind / period.as_nanos() + 1;
    let offset = period.as_nanos().saturating_mul(ticks);
    deadline
        .checked_add(Duration::from_nanos(offset.min(u64::MAX as u128) as u64))
        .unwrap_or_else(|| far_future(now))
}

/// A deadline `delay` from `now`, saturating to a far future instead of
/// panicking on `Duration::MAX`.
pub(crate) fn deadline_after(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay).unwrap_or_else(|| far_future(now))
}

fn far_future(now: Instant) -> Instant {
    // About 30 years: later than any wait this process will do.
    now + Duration::from_secs(1 << 30)
}

/// The timer half of the [`Core`] API.
impl<D: 'static> Core<D> {
    /// Sets a timer that tells the source owning `token` (its
    /// [`on_timer`](super::Source::on_timer), with `tag`) after `delay`:
    /// a per-entry timer with no closure and no allocation beyond the
    /// timer's slot.
    pub fn source_timer(&mut self, delay: Duration, token: Token, tag: u32) -> TimerId {
        let deadline = deadline_after(Instant::now(), delay);
        self.timers
            .insert(deadline, None, TimerAction::Source { token, tag })
    }

    /// Calls `f` once at `deadline` (monotonic clock), or on the first turn
    /// after it. Never early.
    pub fn call_at(
        &mut self,
        deadline: Instant,
        f: impl FnMut(&mut Reactor<D>) + 'static,
    ) -> TimerId {
        self.timers
            .insert(deadline, None, TimerAction::Callback(Box::new(f)))
    }

    /// Calls `f` once, `delay` from now. `Duration::ZERO` means "on the next
    /// turn, after I/O"; `Duration::MAX` means never (no overflow).
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut reactor = edgeloop::Reactor::with_data(0)?;
    /// reactor.core_mut().call_later(Duration::from_millis(5), |r| {
    ///     *r.core_mut().data_mut() += 1;
    ///     r.core_mut().stop();
    /// });
    /// reactor.run()?;
    /// assert_eq!(*reactor.core().data(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn call_later(
        &mut self,
        delay: Duration,
        f: impl FnMut(&mut Reactor<D>) + 'static,
    ) -> TimerId {
        self.call_at(deadline_after(Instant::now(), delay), f)
    }

    /// Calls `f` every `period`, first `period` from now, until cancelled.
    /// Ticks stay on the grid `start + k * period` (no drift); ticks missed
    /// while the loop was busy are skipped, not fired in a burst.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut reactor = edgeloop::Reactor::with_data(0)?;
    /// let tick = reactor.core_mut().call_every(Duration::from_millis(1), |r| {
    ///     *r.core_mut().data_mut() += 1;
    ///     if *r.core().data() == 3 {
    ///         r.core_mut().stop();
    ///     }
    /// });
    /// reactor.run()?;
    /// assert!(reactor.core_mut().cancel(tick));
    /// assert_eq!((*reactor.core().data(), reactor.core().timers()), (3, 0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn call_every(
        &mut self,
        period: Duration,
        f: impl FnMut(&mut Reactor<D>) + 'static,
    ) -> TimerId {
        let deadline = deadline_after(Instant::now(), period);
        self.timers
            .insert(deadline, Some(period), TimerAction::Callback(Box::new(f)))
    }

    /// Cancels a timer. Returns false if it had already fired (one-shot) or
    /// was cancelled. A timer cancelled by an earlier callback of the same
    /// turn does not fire, even if it was due.
    pub fn cancel(&mut self, timer: TimerId) -> bool {
        self.timers.cancel(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_tick_stays_on_grid_and_skips_missed_ticks() {
        let t0 = Instant::now();
        let p = Duration::from_millis(10);
        assert_eq!(next_tick(t0, p, t0), t0 + p);
        assert_eq!(next_tick(t0, p, t0 + Duration::from_millis(35)), t0 + 4 * p);
        assert_eq!(next_tick(t0, Duration::ZERO, t0 + p), t0 + p);
    }

    /// Failure mode 27: a periodic timer served late by a busy loop stays
    /// on its grid over many ticks (no drift), and after a stall fires once
    /// and skips what it missed (no burst).
    #[test]
    fn a_periodic_timer_neither_drifts_nor_bursts_after_a_stall() {
        let mut timers = Timers::<()>::default();
        let t0 = Instant::now();
        let period = Duration::from_millis(10);
        let action = TimerAction::Callback(Box::new(|_| {}));
        timers.insert(t0 + period, Some(period), action);
        // 1,000 ticks, each served up to 9 ms late.
        let mut now = t0;
        for k in 1..=1000u32 {
            let due = t0 + period * k;
            assert_eq!(timers.next_deadline(), Some(due), "tick {k} is on the grid");
            now = due + Duration::from_millis((k as u64 * 7) % 10);
            let fired = timers.take_due(now, timers.pass_limit()).expect("due");
            timers.restore(fired);
            assert!(
                timers.take_due(now, timers.pass_limit()).is_none(),
                "once per pass"
            );
        }
        // A stall of 10 periods: one fire, then the next tick after now.
        let stalled = now + period * 10;
        let fired = timers.take_due(stalled, timers.pass_limit()).expect("due");
        timers.restore(fired);
        assert!(
            timers.take_due(stalled, timers.pass_limit()).is_none(),
            "the missed ticks are skipped, not fired in a burst"
        );
        let next = timers.next_deadline().unwrap();
        assert!(next > stalled && next <= stalled + period);
        assert_eq!(
            (next - t0).as_nanos() % period.as_nanos(),
            0,
            "still on the grid"
        );
    }

    #[test]
    fn cancelling_most_timers_compacts_the_heap() {
        let mut timers = Timers::<()>::default();
        let now = Instant::now();
        let ids: Vec<_> = (0..10_000)
            .map(|i| {
                let action = TimerAction::Callback(Box::new(|_| {}));
                timers.insert(now + Duration::from_secs(i), None, action)
            })
            .collect();
        for id in &ids[..9_900] {
            assert!(timers.cancel(*id));
        }
        assert_eq!(timers.len(), 100);
        assert!(
            timers.heap_len() < 300,
            "heap kept {} entries",
            timers.heap_len()
        );
        assert_eq!(
            timers.next_deadline(),
            Some(now + Duration::from_secs(9_900))
        );
        assert!(!timers.cancel(ids[0]), "a cancelled id no longer matches");
    }
}
