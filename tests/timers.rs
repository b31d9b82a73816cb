//! Timers: order, cancel during dispatch, re-arm at 0, never early, rounding
//! (failure modes 26, 27, 28 and 29 in docs/failure-modes.md).

mod util;

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use edgeloop::{Backend, Interest, PostAction, Reactor, TimerId, Trigger};
use util::{BACKENDS, pair, reactor};

type Trace = Rc<RefCell<Vec<&'static str>>>;

fn push(trace: &Trace, what: &'static str) -> impl FnMut(&mut Reactor) + 'static {
    let trace = trace.clone();
    move |_| trace.borrow_mut().push(what)
}

#[test]
fn timers_with_the_same_deadline_fire_in_insertion_order() {
    let mut reactor = reactor(Backend::Epoll);
    let trace: Trace = Default::default();
    let at = Instant::now() + Duration::from_millis(5);
    for name in ["first", "second", "third", "fourth"] {
        reactor.core_mut().call_at(at, push(&trace, name));
    }
    reactor
        .core_mut()
        .call_at(at - Duration::from_millis(1), push(&trace, "earlier"));
    while reactor.core().timers() > 0 {
        reactor.run_once(None).unwrap();
    }
    assert_eq!(
        *trace.borrow(),
        ["earlier", "first", "second", "third", "fourth"]
    );
}

#[test]
fn a_timer_cancelled_by_an_earlier_callback_of_the_same_pass_never_fires() {
    let mut reactor = reactor(Backend::Epoll);
    let trace: Trace = Default::default();
    let at = Instant::now() + Duration::from_millis(2);
    let victim: Rc<Cell<Option<TimerId>>> = Rc::new(Cell::new(None));
    let (t, v) = (trace.clone(), victim.clone());
    reactor.core_mut().call_at(at, move |r| {
        t.borrow_mut().push("a");
        assert!(r.core_mut().cancel(v.get().unwrap()), "B was still pending");
    });
    victim.set(Some(reactor.core_mut().call_at(at, push(&trace, "b"))));
    reactor.core_mut().call_at(at, push(&trace, "c"));
    std::thread::sleep(Duration::from_millis(3)); // all three due in one pass
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*trace.borrow(), ["a", "c"]);
    assert_eq!(reactor.core().timers(), 0);
}

#[test]
fn a_timer_rearmed_at_zero_from_its_callback_runs_next_turn_after_io() {
    let mut reactor = reactor(Backend::Epoll);
    let trace: Trace = Default::default();
    fn rearm(trace: Trace, left: u32) -> impl FnMut(&mut Reactor) + 'static {
        move |r| {
            trace.borrow_mut().push("timer");
            if left > 0 {
                r.core_mut()
                    .call_later(Duration::ZERO, rearm(trace.clone(), left - 1));
            }
        }
    }
    let (ours, mut theirs) = pair();
    theirs.write_all(b"x").unwrap();
    let t = trace.clone();
    reactor
        .core_mut()
        .register(ours, Interest::READABLE, Trigger::Level, move |_, _, _| {
            t.borrow_mut().push("io");
            PostAction::Continue
        })
        .unwrap();
    reactor
        .core_mut()
        .call_later(Duration::ZERO, rearm(trace.clone(), 2));
    for _ in 0..3 {
        reactor.run_once(Some(Duration::from_millis(100))).unwrap();
    }
    // Each turn: I/O first, then at most one generation of the timer.
    assert_eq!(
        *trace.borrow(),
        ["io", "timer", "io", "timer", "io", "timer"]
    );
}

#[test]
fn timers_never_fire_early() {
    for backend in BACKENDS {
        let mut reactor = reactor(backend);
        let late: Rc<RefCell<Vec<Duration>>> = Default::default();
        let start = Instant::now();
        for micros in [0u64, 100, 300, 700, 1_000, 1_500, 2_300, 5_000, 9_999] {
            let deadline = start + Duration::from_micros(micros);
            let l = late.clone();
            reactor.core_mut().call_at(deadline, move |_| {
                let now = Instant::now();
                assert!(now >= deadline, "fired {:?} early", deadline - now);
                l.borrow_mut().push(now - deadline);
            });
        }
        while reactor.core().timers() > 0 {
            reactor.run_once(None).unwrap();
        }
        assert_eq!(late.borrow().len(), 9);
    }
}

#[test]
fn sub_millisecond_timers_neither_busy_loop_nor_fire_early() {
    for backend in BACKENDS {
        // failure mode 26 in docs/failure-modes.md: a 0.3 ms timer must not turn into epoll_wait(0)
        // in a loop (nix truncates 0.3 ms to 0).
        for delay in [Duration::from_micros(300), Duration::from_micros(1_500)] {
            let mut reactor = reactor(backend);
            let fired = Rc::new(Cell::new(None));
            let f = fired.clone();
            let start = Instant::now();
            reactor
                .core_mut()
                .call_later(delay, move |_| f.set(Some(Instant::now())));
            let waits = reactor.core().stats().waits;
            while fired.get().is_none() {
                reactor.run_once(None).unwrap();
            }
            let waited = reactor.core().stats().waits - waits;
            assert!(waited <= 2, "{delay:?} timer took {waited} waits");
            assert!(fired.get().unwrap() - start >= delay);
        }
    }
}

#[test]
fn periodic_timers_tick_and_can_cancel_themselves() {
    let mut reactor = reactor(Backend::Epoll);
    let ticks = Rc::new(Cell::new(0));
    let id: Rc<Cell<Option<TimerId>>> = Rc::new(Cell::new(None));
    let (t, i) = (ticks.clone(), id.clone());
    id.set(Some(reactor.core_mut().call_every(
        Duration::from_millis(2),
        move |r| {
            t.set(t.get() + 1);
            if t.get() == 5 {
                assert!(r.core_mut().cancel(i.get().unwrap()));
            }
        },
    )));
    let deadline = Instant::now() + Duration::from_secs(5);
    while reactor.core().timers() > 0 && Instant::now() < deadline {
        reactor.run_once(None).unwrap();
    }
    assert_eq!(ticks.get(), 5);
    assert!(!reactor.core_mut().cancel(id.get().unwrap()));
}

#[test]
fn huge_delays_do_not_overflow() {
    let mut reactor = reactor(Backend::Epoll);
    let id = reactor
        .core_mut()
        .call_later(Duration::MAX, |_| panic!("never"));
    reactor
        .core_mut()
        .call_every(Duration::MAX, |_| panic!("never"));
    reactor.run_once(Some(Duration::from_millis(1))).unwrap();
    assert_eq!(reactor.core().timers(), 2);
    assert!(reactor.core_mut().cancel(id));
}

#[test]
fn a_million_cancelled_timers_leave_nothing_behind() {
    // failure mode 28 in docs/failure-modes.md.
    let mut reactor = reactor(Backend::Epoll);
    let base = Instant::now() + Duration::from_secs(3600);
    let ids: Vec<TimerId> = (0..1_000_000u64)
        .map(|i| {
            reactor
                .core_mut()
                .call_at(base + Duration::from_micros(i), |_| {})
        })
        .collect();
    for id in &ids[..999_990] {
        assert!(reactor.core_mut().cancel(*id));
    }
    assert_eq!(reactor.core().timers(), 10);
    // The loop still computes its timeout from a live timer: a short turn
    // returns without firing anything.
    assert_eq!(reactor.run_once(Some(Duration::from_millis(1))).unwrap(), 0);
}

/// Failure mode 25: timers run on the monotonic clock only, so a wall-clock
/// step (NTP, an operator) can make none fire early or never. Changing the
/// system's clock in a test would disturb the machine, so this pins the
/// cause instead: no source file of the library reads the wall clock.
#[test]
fn the_library_never_reads_the_wall_clock() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files += 1;
                let text = std::fs::read_to_string(&path).unwrap();
                for needle in ["SystemTime", "CLOCK_REALTIME", "gettimeofday"] {
                    assert!(!text.contains(needle), "{} uses {needle}", path.display());
                }
            }
        }
    }
    assert!(files > 20, "read only {files} files");
}
