//! The registration lifecycle: deregistering, misuse errors, stale tokens and
//! re-entrant dispatch (RELIABILITY.md items 7, 9 and 11).

mod util;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use edgeloop::{Backend, Event, Interest, Reactor, Ready, Selector, Token, Trigger};
use util::{BACKENDS, Log, expect_events, expect_no_events, pair, reactor};

#[test]
fn deregister_stops_events_even_with_data_pending() {
    for backend in BACKENDS {
        let mut reactor = reactor(backend);
        let log = Log::new();
        let (ours, mut theirs) = pair();
        theirs.write_all(b"pending").unwrap();
        let token = reactor
            .register(
                ours.as_raw_fd(),
                Interest::READABLE,
                Trigger::Level,
                log.recorder("a"),
            )
            .unwrap();
        expect_events(&mut reactor, &log, &["a"]);
        reactor.deregister(token).unwrap();
        assert_eq!(reactor.registrations(), 0);
        expect_no_events(&mut reactor, &log);
        theirs.write_all(b"more").unwrap();
        expect_no_events(&mut reactor, &log);
        drop(ours);
    }
}

#[test]
fn misuse_returns_typed_errors_and_leaves_the_table_unchanged() {
    for backend in BACKENDS {
        // RELIABILITY.md item 9, table-driven.
        let mut reactor = reactor(backend);
        let (ours, _theirs) = pair();
        let fd = ours.as_raw_fd();
        let token = reactor
            .register(fd, Interest::READABLE, Trigger::Level, |_, _| {})
            .unwrap();

        // Registering the same fd twice (K11: EEXIST).
        let err = reactor
            .register(fd, Interest::READABLE, Trigger::Level, |_, _| {})
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(reactor.registrations(), 1);

        // A regular file (K11: EPERM). epoll only: poll and select report
        // regular files as always ready, as their man pages say.
        if backend == Backend::Epoll {
            let file = std::fs::File::open("/proc/self/exe").unwrap();
            let err = reactor
                .register(
                    file.as_raw_fd(),
                    Interest::READABLE,
                    Trigger::Level,
                    |_, _| {},
                )
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
            assert!(err.to_string().contains("regular files"), "{err}");
        }

        // A closed fd: a high number, so no other test thread reuses it
        // before the call (select refuses it as >= FD_SETSIZE first).
        let closed_fd =
            nix::fcntl::fcntl(&ours, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(15_000)).unwrap();
        nix::unistd::close(closed_fd).unwrap();
        let err = reactor
            .register(closed_fd, Interest::READABLE, Trigger::Level, |_, _| {})
            .unwrap_err();
        if backend == Backend::Select {
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        } else {
            assert!(err.to_string().contains("EBADF"), "{backend:?}: {err}");
        }
        assert_eq!(reactor.registrations(), 1);

        // Deregister twice; modify and deregister a token never issued.
        reactor.deregister(token).unwrap();
        let err = reactor.deregister(token).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let err = reactor
            .modify(token, Interest::WRITABLE, Trigger::Level)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let never = Token::new(40, 7);
        assert_eq!(
            reactor.deregister(never).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(reactor.registrations(), 0);

        // The fd can be registered again once deregistered.
        reactor
            .register(fd, Interest::READABLE, Trigger::Level, |_, _| {})
            .unwrap();
    }
}

#[test]
fn a_stale_token_does_not_reach_the_registration_that_reused_its_slot() {
    let mut reactor = Reactor::new().unwrap();
    let (a, _a_peer) = pair();
    let (b, _b_peer) = pair();
    let old = reactor
        .register(a.as_raw_fd(), Interest::READABLE, Trigger::Level, |_, _| {})
        .unwrap();
    reactor.deregister(old).unwrap();
    let new = reactor
        .register(b.as_raw_fd(), Interest::READABLE, Trigger::Level, |_, _| {})
        .unwrap();
    assert_eq!(old.key(), new.key(), "the slab reuses the freed slot");
    assert_ne!(old, new, "but the generation differs");
    assert_eq!(
        reactor.deregister(old).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        reactor
            .modify(old, Interest::WRITABLE, Trigger::Level)
            .unwrap_err()
            .kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(reactor.interest(new).unwrap(), Interest::READABLE);
}

/// A selector that hands out scripted batches, for deterministic dispatch
/// tests (RELIABILITY.md "fake selector").
#[derive(Default)]
struct ScriptedSelector {
    batches: Rc<RefCell<VecDeque<Vec<Event>>>>,
    registered: Rc<RefCell<Vec<(RawFd, Token)>>>,
}

impl Selector for ScriptedSelector {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn supports(&self, _: Trigger) -> bool {
        true
    }
    fn ctl_is_syscall(&self) -> bool {
        false
    }
    fn register(&mut self, fd: RawFd, token: Token, _: Interest, _: Trigger) -> io::Result<()> {
        self.registered.borrow_mut().push((fd, token));
        Ok(())
    }
    fn reregister(&mut self, _: RawFd, _: Token, _: Interest, _: Trigger) -> io::Result<()> {
        Ok(())
    }
    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.registered.borrow_mut().retain(|(f, _)| *f != fd);
        Ok(())
    }
    fn select(&mut self, events: &mut Vec<Event>, _: Option<Duration>) -> io::Result<()> {
        events.clear();
        events.extend(self.batches.borrow_mut().pop_front().unwrap_or_default());
        Ok(())
    }
}

#[test]
fn a_stale_event_in_the_same_batch_is_dropped_and_counted() {
    // RELIABILITY.md item 7, deterministic: the batch is [X:IN, L:IN, X:OUT].
    // X's callback deregisters X; L's callback registers Y, which reuses X's
    // slot. The third event, for X, must not reach Y.
    let selector = ScriptedSelector::default();
    let batches = selector.batches.clone();
    let mut reactor = Reactor::with_selector(Box::new(selector)).unwrap();
    let y_calls = Rc::new(Cell::new(0));
    let x_calls = Rc::new(Cell::new(0));

    let xc = x_calls.clone();
    let x = reactor
        .register(100, Interest::BOTH, Trigger::Level, move |r, ev| {
            xc.set(xc.get() + 1);
            r.deregister(ev.token).unwrap();
        })
        .unwrap();
    let y_token = Rc::new(Cell::new(None));
    let (yt, yc) = (y_token.clone(), y_calls.clone());
    let l = reactor
        .register(101, Interest::READABLE, Trigger::Level, move |r, _| {
            let yc = yc.clone();
            let token = r
                .register(102, Interest::BOTH, Trigger::Level, move |_, _| {
                    yc.set(yc.get() + 1)
                })
                .unwrap();
            yt.set(Some(token));
        })
        .unwrap();
    batches.borrow_mut().push_back(vec![
        Event {
            token: x,
            ready: Ready::READABLE,
        },
        Event {
            token: l,
            ready: Ready::READABLE,
        },
        Event {
            token: x,
            ready: Ready::WRITABLE,
        },
    ]);
    let stale_before = reactor.stats().stale;
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    let y = y_token.get().expect("L registered Y");
    assert_eq!(y.key(), x.key(), "Y reused X's slot");
    assert_eq!(x_calls.get(), 1);
    assert_eq!(y_calls.get(), 0, "the stale X:OUT must not reach Y");
    assert_eq!(reactor.stats().stale - stale_before, 1);

    // Y's own events do arrive.
    batches.borrow_mut().push_back(vec![Event {
        token: y,
        ready: Ready::WRITABLE,
    }]);
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(y_calls.get(), 1);
}

#[test]
fn an_event_for_an_interest_dropped_earlier_in_the_batch_is_masked() {
    let selector = ScriptedSelector::default();
    let batches = selector.batches.clone();
    let mut reactor = Reactor::with_selector(Box::new(selector)).unwrap();
    let log = Log::new();
    let b = reactor
        .register(11, Interest::BOTH, Trigger::Level, log.recorder("b"))
        .unwrap();
    let a = reactor
        .register(10, Interest::READABLE, Trigger::Level, move |r, _| {
            r.modify(b, Interest::READABLE, Trigger::Level).unwrap();
        })
        .unwrap();
    batches.borrow_mut().push_back(vec![
        Event {
            token: a,
            ready: Ready::READABLE,
        },
        Event {
            token: b,
            ready: Ready::WRITABLE,
        },
        Event {
            token: b,
            ready: Ready::READABLE | Ready::WRITABLE,
        },
    ]);
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    let seen = log.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1, Ready::READABLE, "WRITABLE masked off");
}

#[test]
fn callbacks_change_registrations_during_dispatch_with_exact_call_counts() {
    for backend in BACKENDS {
        // RELIABILITY.md item 11: in one batch, callbacks (i) deregister another
        // ready registration, (ii) deregister themselves and register a new fd,
        // (iii) change their own interest, (iv) call run_once recursively.
        let mut reactor = reactor(backend);
        let log = Log::new();
        let mut keep = Vec::new();
        let mut ready_pair = || {
            let (ours, mut theirs) = pair();
            theirs.write_all(b"x").unwrap();
            let fd = ours.as_raw_fd();
            keep.push((ours, theirs));
            fd
        };
        let (fd_a, fd_b, fd_c, fd_d, fd_new) = (
            ready_pair(),
            ready_pair(),
            ready_pair(),
            ready_pair(),
            ready_pair(),
        );

        // Two registrations that each deregister the other: whichever runs first
        // wins, and the loser gets no callback.
        let other: Rc<Cell<Option<Token>>> = Rc::new(Cell::new(None));
        let me: Rc<Cell<Option<Token>>> = Rc::new(Cell::new(None));
        let (o, l) = (other.clone(), log.clone());
        let a = reactor
            .register(fd_a, Interest::READABLE, Trigger::Level, move |r, ev| {
                l.push("a", ev);
                if let Some(t) = o.take() {
                    let _ = r.deregister(t);
                }
            })
            .unwrap();
        let (m, l) = (me.clone(), log.clone());
        let b = reactor
            .register(fd_b, Interest::READABLE, Trigger::Level, move |r, ev| {
                l.push("b", ev);
                if let Some(t) = m.take() {
                    let _ = r.deregister(t);
                }
            })
            .unwrap();
        other.set(Some(b));
        me.set(Some(a));

        // (ii) deregisters itself and registers a new, ready fd.
        let l = log.clone();
        reactor
            .register(fd_c, Interest::READABLE, Trigger::Level, move |r, ev| {
                l.push("c", ev);
                r.deregister(ev.token).unwrap();
                r.register(
                    fd_new,
                    Interest::READABLE,
                    Trigger::Level,
                    l.recorder("new"),
                )
                .unwrap();
            })
            .unwrap();

        // (iii) changes its own interest; (iv) tries to recurse.
        let l = log.clone();
        let recursion_refused = Rc::new(Cell::new(false));
        let rr = recursion_refused.clone();
        reactor
            .register(fd_d, Interest::READABLE, Trigger::Level, move |r, ev| {
                l.push("d", ev);
                r.modify(ev.token, Interest::NONE, Trigger::Level).unwrap();
                rr.set(r.run_once(Some(Duration::ZERO)).is_err() && r.run().is_err());
            })
            .unwrap();

        reactor.run_once(Some(Duration::from_millis(200))).unwrap();
        let first = log.take();
        let labels: Vec<_> = first.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            labels.iter().filter(|l| **l == "a" || **l == "b").count(),
            1,
            "{labels:?}"
        );
        assert_eq!(labels.iter().filter(|l| **l == "c").count(), 1);
        assert_eq!(labels.iter().filter(|l| **l == "d").count(), 1);
        assert_eq!(
            labels.iter().filter(|l| **l == "new").count(),
            0,
            "registered mid-batch"
        );
        assert!(
            recursion_refused.get(),
            "run_once and run from a callback are errors"
        );
        assert_eq!(
            reactor.registrations(),
            3,
            "survivor of a/b, d (paused) and new"
        );

        // Next turn: the survivor of a/b is still ready (LT), "new" gets its first
        // event, "c" is gone and "d" is paused.
        reactor.run_once(Some(Duration::from_millis(200))).unwrap();
        let mut second: Vec<_> = log.take().into_iter().map(|(l, _)| l).collect();
        second.sort();
        assert_eq!(second.len(), 2, "{second:?}");
        assert!(second.contains(&"new"));
        assert!(second[0] == "a" || second[0] == "b");
    }
}

#[test]
fn a_level_modify_to_the_same_interest_makes_no_syscall() {
    let mut reactor = Reactor::new().unwrap();
    let (ours, _theirs) = pair();
    let token = reactor
        .register(
            ours.as_raw_fd(),
            Interest::READABLE,
            Trigger::Level,
            |_, _| {},
        )
        .unwrap();
    let ctls = reactor.stats().ctls;
    reactor
        .modify(token, Interest::READABLE, Trigger::Level)
        .unwrap();
    assert_eq!(reactor.stats().ctls, ctls);
    reactor
        .modify(token, Interest::BOTH, Trigger::Level)
        .unwrap();
    assert_eq!(reactor.stats().ctls, ctls + 1);
}

#[test]
fn the_waker_registration_cannot_be_removed() {
    let mut reactor = Reactor::new().unwrap();
    let err = reactor.deregister(Token::new(0, 1)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(reactor.registrations(), 0);
}

#[test]
fn one_turn_dispatches_a_thousand_ready_fds_in_one_wait() {
    for backend in [Backend::Epoll, Backend::Poll] {
        let mut reactor = reactor(backend);
        let mut keep = Vec::new();
        for _ in 0..1000 {
            let (ours, mut theirs) = pair();
            theirs.write_all(b"x").unwrap();
            reactor
                .register(
                    ours.as_raw_fd(),
                    Interest::READABLE,
                    Trigger::Level,
                    |_, _| {},
                )
                .unwrap();
            keep.push((ours, theirs));
        }
        let before = *reactor.stats();
        let ran = reactor.run_once(Some(Duration::from_millis(200))).unwrap();
        let turn = reactor.stats().since(&before);
        println!("{backend:?}: one run_once with 1000 ready fds: {turn:?}");
        assert_eq!(ran, 1000);
        assert_eq!(turn.waits, 1);
        assert_eq!(turn.dispatched, 1000);
        assert_eq!(turn.ctls, 0, "{backend:?}");
        assert_eq!(turn.stale, 0);
    }
}

#[test]
fn a_closed_fd_kept_alive_by_a_dup_never_reaches_the_slot_new_owner() {
    // RELIABILITY.md item 8 and DESIGN.md K6: epoll watches the open file
    // description, so closing a registered fd while a dup lives keeps its
    // registration in the kernel, and no DEL can reach it any more (the fd
    // number is gone: EBADF). The reactor swallows the failed DEL, drops
    // what the kernel keeps reporting as stale, and never hands it to the
    // registration that reuses the slot.
    let mut reactor = Reactor::new().unwrap();
    let (ours, mut theirs) = pair();
    let dup = nix::unistd::dup(&ours).unwrap();
    let old = reactor
        .register(
            ours.as_raw_fd(),
            Interest::READABLE,
            Trigger::Level,
            |_, _| {},
        )
        .unwrap();
    drop(ours); // closed without deregistering: the bug this test is about
    reactor.deregister(old).unwrap(); // DEL fails with EBADF, swallowed
    assert_eq!(reactor.registrations(), 0);
    let (fresh, _fresh_peer) = pair();
    let log = Log::new();
    let new = reactor
        .register(
            fresh.as_raw_fd(),
            Interest::READABLE,
            Trigger::Level,
            log.recorder("new"),
        )
        .unwrap();
    assert_eq!(new.key(), old.key(), "the slot is reused");
    theirs.write_all(b"for the closed fd").unwrap();
    let stale = reactor.stats().stale;
    for _ in 0..3 {
        expect_no_events(&mut reactor, &log);
    }
    assert!(
        reactor.stats().stale > stale,
        "the kernel still reports the old token; it is dropped as stale"
    );
    // Closing the last dup ends it.
    drop(dup);
    let stale = reactor.stats().stale;
    expect_no_events(&mut reactor, &log);
    assert_eq!(reactor.stats().stale, stale);
}
