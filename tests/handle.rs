//! The cross-thread Handle: stop, wake and post (failure modes 30, 31 in docs/failure-modes.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edgeloop::{Backend, Interest, PostAction, Reactor, Trigger};

#[test]
fn stop_from_another_thread_returns_a_blocked_run_promptly() {
    for backend in Backend::ALL.iter().copied() {
        let mut reactor = Reactor::with_backend(backend).unwrap();
        let handle = reactor.core().handle();
        let stopped_at = Arc::new(std::sync::Mutex::new(None));
        let s = stopped_at.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100)); // run() is in epoll_wait(-1) by now
            *s.lock().unwrap() = Some(Instant::now());
            handle.stop();
        });
        reactor.run().unwrap();
        let returned = Instant::now();
        stopper.join().unwrap();
        let stopped = stopped_at.lock().unwrap().unwrap();
        assert!(returned >= stopped, "run() returned before stop()");
        // Woken by the stop's eventfd write, in one wait: not by a timeout
        // or a polling loop. (How fast is a benchmark figure, printed.)
        println!(
            "{backend:?}: run() returned {:?} after stop()",
            returned - stopped
        );
        assert_eq!(reactor.core().stats().wakeups, 1, "{backend:?}");
        assert_eq!(
            reactor.core().stats().waits,
            1,
            "{backend:?}: {:?}",
            reactor.core().stats()
        );
    }
}

#[test]
fn stop_before_run_returns_at_once_and_twice_is_harmless() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.core().handle();
    handle.stop();
    handle.stop();
    reactor.run().unwrap();
    // The request was consumed: a later run blocks until the next stop.
    let h = handle.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        h.stop();
    });
    let start = Instant::now();
    reactor.run().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(25));
    t.join().unwrap();
}

#[test]
fn eight_threads_posting_100_000_closures_each_run_exactly_once() {
    // failure mode 30 in docs/failure-modes.md.
    const THREADS: usize = 8;
    const TOTAL: usize = 100_000;
    let mut reactor = Reactor::new().unwrap();
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..TOTAL).map(|_| AtomicU8::new(0)).collect());
    let done = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..THREADS {
        let handle = reactor.core().handle();
        let runs = runs.clone();
        let done = done.clone();
        threads.push(std::thread::spawn(move || {
            for i in (t..TOTAL).step_by(THREADS) {
                let runs = runs.clone();
                handle
                    .post(move |_| {
                        runs[i].fetch_add(1, Ordering::Relaxed);
                    })
                    .unwrap();
                if i % 97 == 0 {
                    std::thread::yield_now();
                }
            }
            if done.fetch_add(1, Ordering::SeqCst) + 1 == THREADS {
                // Posted after every closure of every thread: runs last.
                handle.post(|r| r.core_mut().stop()).unwrap();
            }
        }));
    }
    reactor.run().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    let wrong: Vec<_> = (0..TOTAL)
        .filter(|&i| runs[i].load(Ordering::Relaxed) != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} closures ran other than once",
        wrong.len()
    );
    assert_eq!(reactor.core().stats().posted, TOTAL as u64 + 1);
    // Quiescent: at most one leftover wakeup (a producer's write that raced
    // the last drain), then the loop sleeps with nothing pending.
    reactor.run_once(Some(Duration::from_millis(20))).unwrap();
    let wakeups = reactor.core().stats().wakeups;
    let start = Instant::now();
    reactor.run_once(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(
        reactor.core().stats().wakeups,
        wakeups,
        "no wakeup left pending"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(15),
        "the wait slept"
    );
}

#[test]
fn a_burst_of_wakes_wakes_the_loop_once() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.core().handle();
    for _ in 0..1000 {
        handle.wake();
    }
    reactor.run_once(Some(Duration::from_millis(100))).unwrap();
    assert_eq!(reactor.core().stats().wakeups, 1);
    let start = Instant::now();
    reactor.run_once(Some(Duration::from_millis(30))).unwrap();
    assert_eq!(
        reactor.core().stats().wakeups,
        1,
        "the eventfd was drained: no second wakeup"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(25),
        "the next wait slept"
    );
}

#[test]
fn a_closure_posted_just_before_stop_still_runs() {
    // run() must take one turn before it checks the stop flag: a post
    // followed by stop() from another thread is run, not skipped.
    for _ in 0..200 {
        let mut reactor = Reactor::new().unwrap();
        let handle = reactor.core().handle();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let t = std::thread::spawn(move || {
            handle
                .post(move |_| {
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            handle.stop();
        });
        t.join().unwrap(); // both happened before run() starts
        reactor.run().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}

/// A turn runs at most 1,024 posted closures, and the rest follow on the
/// next turns, with IO served in between: a thread posting millions
/// (`kv --feed 5000000`) cannot make one turn run the whole mailbox while
/// a STATS round trip or a SIGTERM waits.
#[test]
fn a_turn_runs_at_most_1024_posted_closures() {
    let mut reactor = Reactor::with_data(0usize).unwrap();
    let handle = reactor.core().handle();
    for _ in 0..3_000 {
        handle.post(|r| *r.core_mut().data_mut() += 1).unwrap();
    }
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*reactor.core().data(), 1_024, "the first turn");
    // IO that arrives now is served before the rest of the mailbox.
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let seen_at = std::rc::Rc::new(std::cell::Cell::new(None));
    let seen = seen_at.clone();
    reactor
        .core_mut()
        .register(ours, Interest::READABLE, Trigger::Level, move |r, s, _| {
            let _ = std::io::Read::read(s, &mut [0u8; 8]);
            seen.set(Some(*r.core().data()));
            PostAction::Remove
        })
        .unwrap();
    std::io::Write::write_all(&mut theirs, b"x").unwrap();
    while *reactor.core().data() < 3_000 {
        reactor.run_once(Some(Duration::from_secs(1))).unwrap();
    }
    let seen = seen_at.get().expect("the IO callback ran");
    assert!(seen < 3_000, "the IO waited for the whole mailbox ({seen})");
    assert_eq!(reactor.core().stats().posted, 3_000);
}
