//! The panic policy: a panicking callback is removed
//! and the loop goes on (Isolate, the default), or the panic resumes out of
//! run_once after the turn (Propagate). Either way the reactor stays usable.

mod util;

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use edgeloop::{Interest, PanicPolicy, PostAction, Reactor, Trigger};
use util::{Log, pair, read_some};

#[test]
fn a_panicking_callback_is_removed_its_socket_closed_and_the_loop_goes_on() {
    let mut reactor = Reactor::new().unwrap();
    let log = Log::new();
    let (bad, mut bad_peer) = pair();
    let (good, mut good_peer) = pair();
    bad_peer.write_all(b"BOOM").unwrap();
    good_peer.write_all(b"fine").unwrap();
    reactor
        .core_mut()
        .register(bad, Interest::READABLE, Trigger::Level, |_, _, _| {
            panic!("BOOM"); // the reactor owns the socket
        })
        .unwrap();
    reactor
        .core_mut()
        .register(good, Interest::READABLE, Trigger::Level, {
            let log = log.clone();
            move |_, good, ev| {
                log.push("good", ev);
                read_some(good, 64);
                PostAction::Continue
            }
        })
        .unwrap();
    reactor.run_once(Some(Duration::from_millis(200))).unwrap();
    assert_eq!(reactor.core().stats().panics, 1);
    assert_eq!(
        reactor.core().registrations(),
        1,
        "the panicking registration is gone"
    );
    assert_eq!(log.count("good"), 1);
    // Its socket was closed: the peer reads EOF, or a reset since "BOOM" was
    // never read.
    bad_peer.set_nonblocking(false).unwrap();
    let mut buf = [0u8; 8];
    match std::io::Read::read(&mut bad_peer, &mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected EOF or reset, got {other:?}"),
    }
    // The loop still serves the other one.
    good_peer.write_all(b"again").unwrap();
    reactor.run_once(Some(Duration::from_millis(200))).unwrap();
    assert_eq!(log.count("good"), 2);
}

#[test]
fn propagate_resumes_the_panic_after_the_turn_and_the_reactor_stays_usable() {
    let mut reactor = Reactor::new().unwrap();
    reactor.core_mut().set_panic_policy(PanicPolicy::Propagate);
    let log = Log::new();
    let (a, mut a_peer) = pair();
    let (b, mut b_peer) = pair();
    a_peer.write_all(b"x").unwrap();
    b_peer.write_all(b"x").unwrap();
    reactor
        .core_mut()
        .register(a, Interest::READABLE, Trigger::Edge, |_, _, _| panic!("a"))
        .unwrap();
    reactor
        .core_mut()
        .register(b, Interest::READABLE, Trigger::Edge, log.recorder("b"))
        .unwrap();
    let result = catch_unwind(AssertUnwindSafe(|| {
        reactor.run_once(Some(Duration::from_millis(200)))
    }));
    assert!(result.is_err(), "the panic came out of run_once");
    assert_eq!(log.count("b"), 1, "the rest of the batch ran first");
    assert_eq!(reactor.core().registrations(), 1);
    // Usable again: not stuck "inside a callback".
    b_peer.write_all(b"y").unwrap();
    reactor.run_once(Some(Duration::from_millis(200))).unwrap();
    assert_eq!(log.count("b"), 2);
}

#[test]
fn a_panicking_timer_or_posted_closure_is_counted_removed_and_reported_and_the_loop_can_go_on() {
    let mut reactor = Reactor::new().unwrap();
    reactor
        .core_mut()
        .call_every(Duration::from_millis(1), |_| panic!("periodic"));
    reactor.core().handle().post(|_| panic!("posted")).unwrap();
    let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    let f = fired.clone();
    reactor
        .core_mut()
        .call_later(Duration::from_millis(3), move |_| f.set(true));
    let mut errors = 0;
    while !fired.get() {
        errors += reactor.run_once(None).is_err() as usize;
    }
    assert!(
        (1..=2).contains(&errors),
        "a turn with a panic ends in an error"
    );
    assert_eq!(
        reactor.core().stats().panics,
        2,
        "the periodic timer was removed after one panic"
    );
    assert_eq!(reactor.core().timers(), 0);
}

/// Under Isolate, a panicking stop timer or posted closure ends `run` with
/// an error naming it, instead of leaving a loop that nothing stops.
#[test]
fn a_panicking_timer_or_posted_closure_stops_run_with_an_error() {
    let mut reactor = Reactor::new().unwrap();
    // A stop timer that panics before it can stop the loop.
    reactor
        .core_mut()
        .call_later(Duration::from_millis(10), |_| panic!("stdout is closed"));
    // A backstop, so that a broken guarantee fails the test, not hangs it.
    let backstop = reactor
        .core_mut()
        .call_later(Duration::from_secs(10), |r| r.core_mut().stop());
    let e = reactor.run().unwrap_err();
    assert!(
        e.to_string()
            .contains("a timer callback panicked: stdout is closed"),
        "{e}"
    );
    assert_eq!(reactor.core().stats().panics, 1);

    reactor.core().handle().post(|_| panic!("posted")).unwrap();
    let e = reactor.run().unwrap_err();
    assert!(
        e.to_string().contains("a posted closure panicked: posted"),
        "{e}"
    );
    // Nothing left that panics: the reactor runs and stops as usual.
    reactor.core_mut().cancel(backstop);
    reactor
        .core()
        .handle()
        .post(|r| r.core_mut().stop())
        .unwrap();
    reactor.run().unwrap();
}
