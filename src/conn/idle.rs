//! Deadlines without a timer per connection: idle timeouts and lingering
//! closes, kept as one activity stamp in each connection's slot and
//! checked by one sweep timer per set.
//!
//! - **The stamp.** A read stores the set's cached loop time into the
//!   connection's slot: one load and one store per message, no clock read
//!   (the loop time is converted once per batch of events, not per read).
//!   A closing connection's stamp is the time of its last progress (the
//!   close itself, or bytes of its queue sent).
//! - **The sweep.** One [`Core::source_timer`](crate::Core::source_timer)
//!   per set, armed for the earliest deadline any connection could reach.
//!   It visits every connection once, closes those past their deadline and
//!   re-arms for the next. Activity only moves deadlines later, so the
//!   armed sweep is never late; a sweep that finds an active connection
//!   just re-arms. Each deadline gets a slack of 1/64 of its timeout
//!   (at least 1 ms, at most 1 s) so that connections whose deadlines fall
//!   close together are swept together: the loop wakes at most once per
//!   slack, and 10,000 connections that went quiet together cost one
//!   wakeup.
//! - **The bound.** A connection is closed no earlier than its timeout
//!   after its last activity and, on a loop that is not busy, no later than
//!   its timeout plus its slack plus 2 ms (the stamps' millisecond
//!   rounding).
//! - **The clock.** Stamps are milliseconds on a `u32` compared with
//!   wrapping arithmetic, so a stamp never saturates (a server up for 49.7
//!   days keeps its timeouts). Ages are exact below 2^31 ms (24.8 days):
//!   timeouts are limited to [`MAX_TIMEOUT`], and a sweep clamps older
//!   stamps to that age, so an ancient connection stays ancient. The clock
//!   starts one second before its wrap (Linux's jiffies do the same), so
//!   every test that runs an idle timeout past its first second crosses
//!   the wrap.
//!
//! The designs weighed, and why not them: a timer per connection (the
//! previous design: ~100 bytes and a heap entry per idle connection, and a
//! clock conversion per read); libev's least-recently-active list (exact,
//! but two links per slot moved on every read); a hashed timing wheel
//! (Netty, Kafka: a bucket move on every read, or lazy re-insertion, and a
//! tick that wakes the loop even when nothing is due); Redis's periodic
//! `clientsCron` (a wakeup every 100 ms whether or not anything is due).
//! The sweep costs one visit per connection per sweep, and sweeps happen
//! only when a deadline may be due.

use std::time::{Duration, Instant};

/// The longest idle timeout or linger a set accepts (2^30 ms, about 12.4
/// days): ages up to twice that are exact on the wrapping stamp clock.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(1 << 30);

/// Ages past this are clamped by a sweep, so they never wrap.
const CLAMP_AGE: u32 = 1 << 30;

/// The stamp clock's first reading: one second before it wraps.
const START: u32 = 0u32.wrapping_sub(1000);

/// A reading of a set's stamp clock: milliseconds, wrapping.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub(super) struct Stamp(pub(super) u32);

impl Stamp {
    /// Milliseconds from `earlier` to `self` (exact below 2^31); zero if
    /// `earlier` is later (a stamp taken from the live clock after the
    /// turn's cached one).
    #[inline]
    pub(super) fn since(self, earlier: Stamp) -> u32 {
        let age = self.0.wrapping_sub(earlier.0);
        if age > 1 << 31 { 0 } else { age }
    }
}

/// Converts the loop's [`Instant`]s into [`Stamp`]s.
#[derive(Copy, Clone, Debug)]
pub(super) struct StampClock {
    origin: Instant,
}

impl StampClock {
    pub(super) fn new(origin: Instant) -> StampClock {
        StampClock { origin }
    }

    /// The live clock: for what happens outside a batch of events (a
    /// connection opened or closed from anywhere, a sweep).
    pub(super) fn now(&self) -> Stamp {
        self.stamp(Instant::now())
    }

    /// `now` (the turn's cached loop clock, for reads) as a stamp.
    pub(super) fn stamp(&self, now: Instant) -> Stamp {
        let ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        Stamp(START.wrapping_add(ms as u32))
    }
}

/// One deadline rule: a timeout after the last activity, in stamp
/// milliseconds, with its slack.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct Limit {
    /// Expired once the age exceeds this (so at least the timeout passed,
    /// whatever the rounding of the two stamps).
    timeout_ms: u32,
    slack_ms: u32,
}

/// What a sweep decides for one connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Past its deadline.
    Expired,
    /// Check again in this many milliseconds (its deadline plus its
    /// slack, from now).
    Recheck(u32),
}

impl Limit {
    /// The rule for `timeout` (at most [`MAX_TIMEOUT`]).
    pub(super) fn new(timeout: Duration) -> Limit {
        let timeout = timeout.min(MAX_TIMEOUT);
        // Rounded up to whole milliseconds: never early.
        let ms = timeout.as_millis() as u32 + u32::from(timeout.subsec_nanos() % 1_000_000 != 0);
        Limit {
            timeout_ms: ms,
            slack_ms: (ms / 64).clamp(1, 1000),
        }
    }

    /// The rule that only keeps ages from wrapping (stamps kept for
    /// eviction with no timeout).
    pub(super) fn clamp_only() -> Limit {
        Limit {
            timeout_ms: CLAMP_AGE,
            slack_ms: 1000,
        }
    }

    /// The verdict at `now` for a connection stamped `stamp`.
    ///
    /// With stamps rounded down to the millisecond, an age of `a` means
    /// more than `a - 1` ms really passed: expiring once the age reaches
    /// `timeout_ms + 1` never expires early.
    #[inline]
    pub(super) fn verdict(&self, now: Stamp, stamp: Stamp) -> Verdict {
        let age = now.since(stamp);
        if age > self.timeout_ms {
            Verdict::Expired
        } else {
            Verdict::Recheck(self.timeout_ms + 1 - age + self.slack_ms)
        }
    }

    /// The delay from a fresh stamp to the sweep that checks it.
    pub(super) fn first_check(&self) -> u32 {
        self.timeout_ms + 1 + self.slack_ms
    }
}

/// A stamp older than [`CLAMP_AGE`] at `now`, moved up to that age (the
/// sweep does this so that ages never wrap).
#[inline]
pub(super) fn clamped(now: Stamp, stamp: Stamp) -> Stamp {
    if now.since(stamp) > CLAMP_AGE {
        Stamp(now.0.wrapping_sub(CLAMP_AGE))
    } else {
        stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limits_round_up_and_slack_is_a_64th_within_1ms_and_1s() {
        assert_eq!(Limit::new(Duration::from_millis(100)).timeout_ms, 100);
        assert_eq!(Limit::new(Duration::from_micros(100_001)).timeout_ms, 101);
        assert_eq!(Limit::new(Duration::from_millis(100)).slack_ms, 1);
        assert_eq!(Limit::new(Duration::from_secs(60)).slack_ms, 937);
        assert_eq!(Limit::new(Duration::from_secs(600)).slack_ms, 1000);
        assert_eq!(
            Limit::new(Duration::MAX).timeout_ms,
            MAX_TIMEOUT.as_millis() as u32
        );
    }

    #[test]
    fn ages_are_right_across_the_wrap() {
        let before = Stamp(u32::MAX - 5);
        let after = Stamp(4);
        assert_eq!(after.since(before), 10);
        assert_eq!(before.since(after), 0, "a later stamp is no age");
        let limit = Limit::new(Duration::from_millis(9));
        assert_eq!(limit.verdict(after, before), Verdict::Expired);
        assert_eq!(
            limit.verdict(Stamp(3), before),
            Verdict::Recheck(1 + limit.slack_ms)
        );
        // A stamp older than the clamp age is moved up, not wrapped.
        let now = Stamp(7);
        let ancient = Stamp(now.0.wrapping_sub(CLAMP_AGE + 5));
        assert_eq!(now.since(clamped(now, ancient)), CLAMP_AGE);
        assert_eq!(clamped(now, after), after);
    }

    /// One simulated connection: its true last activity in real
    /// milliseconds (u64, never wraps; the reference) and its stamp.
    #[derive(Clone, Debug)]
    struct Sim {
        active_at: u64,
        stamp: Stamp,
        closed_at: Option<u64>,
    }

    /// The model test: connections active at arbitrary times, swept only
    /// when the structure says to (the earliest recheck), on a fake clock
    /// that starts near the wrap and runs past it. Against the naive
    /// reference (true idle time in u64 milliseconds): nothing closes
    /// before its timeout, and everything closes within timeout + slack +
    /// 2 ms of its last activity.
    fn run_model(timeout_ms: u64, offset: u32, activity: &[(u64, usize)]) {
        let limit = Limit::new(Duration::from_millis(timeout_ms));
        let n = 1 + activity.iter().map(|&(_, c)| c).max().unwrap_or(0);
        // The clock reads real time `t` (in µs, to model rounding) as
        // floor(t / 1000) + offset.
        let read = |t_us: u64| Stamp(offset.wrapping_add((t_us / 1000) as u32));
        let mut conns = vec![
            Sim {
                active_at: 0,
                stamp: read(0),
                closed_at: None
            };
            n
        ];
        let mut sweep_at_us = Some(limit.first_check() as u64 * 1000);
        let mut events = activity.to_vec();
        events.sort();
        let mut events = events.into_iter().peekable();
        let end_us =
            (activity.iter().map(|a| a.0).max().unwrap_or(0) + 3 * timeout_ms + 3000) * 1000;
        let mut now_us = 0;
        while now_us < end_us {
            // The next thing to happen: an activity or the sweep.
            let next_event = events.peek().map(|&(t, _)| t * 1000 + 137);
            let next = match (next_event, sweep_at_us) {
                (Some(e), Some(s)) => e.min(s),
                (Some(e), None) => e,
                (None, Some(s)) => s,
                (None, None) => break,
            };
            now_us = next;
            if next_event == Some(next) {
                let (_, c) = events.next().unwrap();
                let conn = &mut conns[c];
                if conn.closed_at.is_none() {
                    conn.active_at = now_us;
                    conn.stamp = read(now_us);
                    // A new activity never needs an earlier sweep.
                    assert!(sweep_at_us.is_some());
                }
                continue;
            }
            // The sweep, fired at (or after) its time.
            let now = read(now_us);
            let mut next_check: Option<u64> = None;
            for conn in conns.iter_mut().filter(|c| c.closed_at.is_none()) {
                match limit.verdict(now, conn.stamp) {
                    Verdict::Expired => conn.closed_at = Some(now_us),
                    Verdict::Recheck(ms) => {
                        let at = now_us + ms as u64 * 1000;
                        next_check = Some(next_check.map_or(at, |n| n.min(at)));
                    }
                }
            }
            sweep_at_us = next_check;
        }
        for (i, c) in conns.iter().enumerate() {
            let closed = c
                .closed_at
                .unwrap_or_else(|| panic!("conn {i} never closed: {c:?}"));
            let idle_us = closed - c.active_at;
            assert!(
                idle_us >= timeout_ms * 1000,
                "conn {i} closed early: {idle_us} µs idle"
            );
            let bound_us = (timeout_ms + limit.slack_ms as u64 + 2) * 1000;
            assert!(
                idle_us <= bound_us,
                "conn {i} closed late: {idle_us} µs > {bound_us}"
            );
        }
    }

    #[test]
    fn the_model_closes_every_connection_within_its_bound() {
        run_model(
            100,
            START,
            &[(0, 0), (50, 1), (99, 0), (101, 2), (250, 1), (900, 3)],
        );
    }

    proptest! {
        #[test]
        fn the_sweep_matches_the_reference(
            timeout_ms in 1u64..3000,
            offset in prop_oneof![Just(START), Just(u32::MAX), any::<u32>()],
            activity in proptest::collection::vec((0u64..5000, 0usize..20), 0..60),
        ) {
            run_model(timeout_ms, offset, &activity);
        }
    }
}
