//! The registration lifecycle: deregistering, misuse errors, stale tokens,
//! IO safety and re-entrant dispatch.

mod util;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use edgeloop::{
    Backend, Event, Events, Interest, PanicPolicy, PostAction, Reactor, Ready, Selector, Token,
    Trigger,
};
use util::{BACKENDS, Log, expect_events, expect_no_events, ignore, pair, reactor};

/// Held by the test that opens 2,000 fds and by the tests that run on
/// select, so that select never gets an fd past FD_SETSIZE from a
/// concurrently running test.
static MANY_FDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn many_fds() -> std::sync::MutexGuard<'static, ()> {
    MANY_FDS.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn deregister_stops_events_even_with_data_pending() {
    let _fds = many_fds();
    for backend in BACKENDS {
        let mut reactor = reactor(backend);
        let log = Log::new();
        let (ours, mut theirs) = pair();
        theirs.write_all(b"pending").unwrap();
        let token = reactor
            .core_mut()
            .register(ours, Interest::READABLE, Trigger::Level, log.recorder("a"))
            .unwrap();
        expect_events(&mut reactor, &log, &["a"]);
        reactor.core_mut().deregister(token).unwrap();
        assert_eq!(reactor.core().registrations(), 0);
        expect_no_events(&mut reactor, &log);
        // The reactor owned `ours` and closed it after the DEL: the peer
        // sees a broken pipe.
        assert!(theirs.write_all(b"more").is_err());
        expect_no_events(&mut reactor, &log);
    }
}

#[test]
fn misuse_returns_typed_errors_and_leaves_the_table_unchanged() {
    let _fds = many_fds();
    for backend in BACKENDS {
        let mut reactor = reactor(backend);
        let (ours, _theirs) = pair();
        let ours = Rc::new(ours); // two registrations of one fd need two owners
        let token = reactor
            .core_mut()
            .register(ours.clone(), Interest::READABLE, Trigger::Level, ignore())
            .unwrap();

        // Registering the same fd twice (K11: EEXIST), errno kept.
        let err = reactor
            .core_mut()
            .register(ours.clone(), Interest::READABLE, Trigger::Level, ignore())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(edgeloop::os_error(&err), Some(nix::libc::EEXIST), "{err}");
        assert_eq!(reactor.core().registrations(), 1);

        // A regular file (K11: EPERM), on every backend: poll and select
        // would report it ready on every wait, a spin.
        {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::File::options()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open("/proc/self/exe")
                .unwrap();
            let err = reactor
                .core_mut()
                .register(file, Interest::READABLE, Trigger::Level, ignore())
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
            assert_eq!(edgeloop::os_error(&err), Some(nix::libc::EPERM), "{err}");
            assert!(err.to_string().contains("regular file"), "{err}");
        }
        assert_eq!(reactor.core().registrations(), 1);

        // Deregister twice; modify a deregistered token.
        reactor.core_mut().deregister(token).unwrap();
        let err = reactor.core_mut().deregister(token).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let err = reactor
            .core_mut()
            .modify(token, Interest::WRITABLE, Trigger::Level)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert_eq!(reactor.core().registrations(), 0);

        // The fd can be registered again once deregistered.
        reactor
            .core_mut()
            .register(ours, Interest::READABLE, Trigger::Level, ignore())
            .unwrap();
    }
}

/// The IO-safety sequence: a registration's fd is closed, its number comes
/// back for a new socket that is registered too, and the first token is
/// deregistered again. Before the reactor owned what it registers, this
/// sent `EPOLL_CTL_DEL` for the *new* socket, which then never fired again.
/// Now the close only happens through the reactor (after its own DEL), and
/// a stale token is refused before any syscall.
#[test]
fn a_stale_deregister_never_touches_the_fd_that_reused_the_number() {
    let _fds = many_fds();
    for backend in BACKENDS {
        let mut reactor = reactor(backend);
        let (first, _first_peer) = pair();
        let number = first.as_raw_fd();
        let old = reactor
            .core_mut()
            .register(first, Interest::READABLE, Trigger::Level, ignore())
            .unwrap();
        reactor.core_mut().deregister(old).unwrap(); // DEL, then close: `number` is free
        // The lowest free number is reused (unless another test thread took
        // it first: the check below holds either way).
        let (second, mut second_peer) = pair();
        println!(
            "{backend:?}: fd {number} reused: {}",
            second.as_raw_fd() == number
        );
        let log = Log::new();
        reactor
            .core_mut()
            .register(
                second,
                Interest::READABLE,
                Trigger::Level,
                log.recorder("new"),
            )
            .unwrap();
        let err = reactor.core_mut().deregister(old).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{backend:?}: {err}");
        // The new socket still fires.
        second_peer.write_all(b"x").unwrap();
        expect_events(&mut reactor, &log, &["new"]);
    }
}

#[test]
fn a_stale_token_does_not_reach_the_registration_that_reused_its_slot() {
    let mut reactor = reactor(Backend::Epoll);
    let (a, _a_peer) = pair();
    let (b, _b_peer) = pair();
    let old = reactor
        .core_mut()
        .register(a, Interest::READABLE, Trigger::Level, ignore())
        .unwrap();
    reactor.core_mut().deregister(old).unwrap();
    let new = reactor
        .core_mut()
        .register(b, Interest::READABLE, Trigger::Level, ignore())
        .unwrap();
    assert_eq!(old.key(), new.key(), "the slab reuses the freed slot");
    assert_ne!(old, new, "but the generation differs");
    assert_eq!(
        reactor.core_mut().deregister(old).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        reactor
            .core_mut()
            .modify(old, Interest::WRITABLE, Trigger::Level)
            .unwrap_err()
            .kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(reactor.core().interest(new).unwrap(), Interest::READABLE);
}

/// A selector that hands out scripted batches, for deterministic dispatch
/// tests.
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
    fn register(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        _: Interest,
        _: Trigger,
    ) -> io::Result<()> {
        self.registered.borrow_mut().push((fd.as_raw_fd(), token));
        Ok(())
    }
    fn reregister(
        &mut self,
        _: BorrowedFd<'_>,
        _: Token,
        _: Interest,
        _: Trigger,
    ) -> io::Result<()> {
        Ok(())
    }
    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        self.registered.borrow_mut().retain(|(f, _)| *f != fd);
        Ok(())
    }
    fn select(&mut self, events: &mut Events, _: Option<Duration>) -> io::Result<()> {
        events.clear();
        for event in self.batches.borrow_mut().pop_front().unwrap_or_default() {
            events.push(event);
        }
        Ok(())
    }
}

/// A reactor on the scripted selector, propagating panics.
fn scripted(selector: ScriptedSelector) -> Reactor {
    let mut reactor = Reactor::with_selector(Box::new(selector), ()).unwrap();
    reactor.core_mut().set_panic_policy(PanicPolicy::Propagate);
    reactor
}

/// A socket for the scripted selector to stand for (its readiness is never
/// asked of the kernel).
fn socket() -> UnixStream {
    pair().0
}

#[test]
fn a_stale_event_in_the_same_batch_is_dropped_and_counted() {
    // Deterministic: the batch is [X:IN, L:IN, X:OUT].
    // X's callback deregisters X; L's callback registers Y, which reuses X's
    // slot. The third event, for X, must not reach Y.
    let selector = ScriptedSelector::default();
    let batches = selector.batches.clone();
    let mut reactor = scripted(selector);
    let y_calls = Rc::new(Cell::new(0));
    let x_calls = Rc::new(Cell::new(0));

    let xc = x_calls.clone();
    let x = reactor
        .core_mut()
        .register(socket(), Interest::BOTH, Trigger::Level, move |r, _, ev| {
            xc.set(xc.get() + 1);
            r.core_mut().deregister(ev.token).unwrap();
            PostAction::Continue
        })
        .unwrap();
    let y_token = Rc::new(Cell::new(None));
    let (yt, yc) = (y_token.clone(), y_calls.clone());
    let l = reactor
        .core_mut()
        .register(
            socket(),
            Interest::READABLE,
            Trigger::Level,
            move |r, _, _| {
                let yc = yc.clone();
                let token = r
                    .core_mut()
                    .register(socket(), Interest::BOTH, Trigger::Level, move |_, _, _| {
                        yc.set(yc.get() + 1);
                        PostAction::Continue
                    })
                    .unwrap();
                yt.set(Some(token));
                PostAction::Continue
            },
        )
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
    let stale_before = reactor.core().stats().stale;
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    let y = y_token.get().expect("L registered Y");
    assert_eq!(y.key(), x.key(), "Y reused X's slot");
    assert_eq!(x_calls.get(), 1);
    assert_eq!(y_calls.get(), 0, "the stale X:OUT must not reach Y");
    assert_eq!(reactor.core().stats().stale - stale_before, 1);

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
    let mut reactor = scripted(selector);
    let log = Log::new();
    let b = reactor
        .core_mut()
        .register(socket(), Interest::BOTH, Trigger::Level, log.recorder("b"))
        .unwrap();
    let a = reactor
        .core_mut()
        .register(
            socket(),
            Interest::READABLE,
            Trigger::Level,
            move |r, _, _| {
                r.core_mut()
                    .modify(b, Interest::READABLE, Trigger::Level)
                    .unwrap();
                PostAction::Continue
            },
        )
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
    let _fds = many_fds();
    for backend in BACKENDS {
        // In one batch, callbacks (i) deregister another
        // ready registration, (ii) deregister themselves and register a new fd,
        // (iii) change their own interest, (iv) call run_once recursively.
        let mut reactor = reactor(backend);
        let log = Log::new();
        let mut keep = Vec::new();
        let mut ready_pair = || {
            let (ours, mut theirs) = pair();
            theirs.write_all(b"x").unwrap();
            keep.push(theirs);
            ours
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
            .core_mut()
            .register(fd_a, Interest::READABLE, Trigger::Level, move |r, _, ev| {
                l.push("a", ev);
                if let Some(t) = o.take() {
                    let _ = r.core_mut().deregister(t);
                }
                PostAction::Continue
            })
            .unwrap();
        let (m, l) = (me.clone(), log.clone());
        let b = reactor
            .core_mut()
            .register(fd_b, Interest::READABLE, Trigger::Level, move |r, _, ev| {
                l.push("b", ev);
                if let Some(t) = m.take() {
                    let _ = r.core_mut().deregister(t);
                }
                PostAction::Continue
            })
            .unwrap();
        other.set(Some(b));
        me.set(Some(a));

        // (ii) deregisters itself and registers a new, ready fd.
        let l = log.clone();
        let mut fd_new = Some(fd_new);
        reactor
            .core_mut()
            .register(fd_c, Interest::READABLE, Trigger::Level, move |r, _, ev| {
                l.push("c", ev);
                r.core_mut().deregister(ev.token).unwrap();
                let new = fd_new.take().expect("called once");
                r.core_mut()
                    .register(new, Interest::READABLE, Trigger::Level, l.recorder("new"))
                    .unwrap();
                PostAction::Continue
            })
            .unwrap();

        // (iii) changes its own interest; (iv) tries to recurse.
        let l = log.clone();
        let recursion_refused = Rc::new(Cell::new(false));
        let rr = recursion_refused.clone();
        reactor
            .core_mut()
            .register(fd_d, Interest::READABLE, Trigger::Level, move |r, _, ev| {
                l.push("d", ev);
                r.core_mut()
                    .modify(ev.token, Interest::NONE, Trigger::Level)
                    .unwrap();
                // ResourceBusy: the reactor is in a turn already.
                let busy = |e: io::Error| e.kind() == io::ErrorKind::ResourceBusy;
                rr.set(
                    r.run_once(Some(Duration::ZERO)).is_err_and(busy) && r.run().is_err_and(busy),
                );
                PostAction::Continue
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
            "run_once and run from a callback are ResourceBusy errors"
        );
        assert_eq!(
            reactor.core().registrations(),
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
    let mut reactor = reactor(Backend::Epoll);
    let (ours, _theirs) = pair();
    let token = reactor
        .core_mut()
        .register(ours, Interest::READABLE, Trigger::Level, ignore())
        .unwrap();
    let ctls = reactor.core().stats().ctls;
    reactor
        .core_mut()
        .modify(token, Interest::READABLE, Trigger::Level)
        .unwrap();
    assert_eq!(reactor.core().stats().ctls, ctls);
    reactor
        .core_mut()
        .modify(token, Interest::BOTH, Trigger::Level)
        .unwrap();
    assert_eq!(reactor.core().stats().ctls, ctls + 1);
}

#[test]
fn one_turn_dispatches_a_thousand_ready_fds_in_one_wait() {
    let _fds = many_fds();
    for backend in [Backend::Epoll, Backend::Poll] {
        let mut reactor = reactor(backend);
        let mut keep = Vec::new();
        for _ in 0..1000 {
            let (ours, mut theirs) = pair();
            theirs.write_all(b"x").unwrap();
            reactor
                .core_mut()
                .register(ours, Interest::READABLE, Trigger::Level, ignore())
                .unwrap();
            keep.push(theirs);
        }
        let before = *reactor.core().stats();
        let ran = reactor.run_once(Some(Duration::from_millis(200))).unwrap();
        let turn = reactor.core().stats().since(&before);
        println!("{backend:?}: one run_once with 1000 ready fds: {turn:?}");
        assert_eq!(ran, 1000);
        assert_eq!(turn.waits, 1);
        assert_eq!(turn.dispatched, 1000);
        assert_eq!(turn.ctls, 0, "{backend:?}");
        assert_eq!(turn.stale, 0);
    }
}

#[test]
fn a_registration_whose_fd_has_a_dup_leaves_the_kernel_list_on_deregister() {
    // K6: epoll watches the open file description, so a registered fd
    // closed without EPOLL_CTL_DEL while a dup lives keeps reporting, and
    // no DEL can reach it any more. The reactor owns what it registers and
    // always deletes before it closes: deregistering here removes the
    // kernel's entry even though the dup keeps the socket open, and no
    // stale event ever follows.
    let mut reactor = reactor(Backend::Epoll);
    let (ours, mut theirs) = pair();
    let dup = ours.try_clone().unwrap();
    let old = reactor
        .core_mut()
        .register(ours, Interest::READABLE, Trigger::Level, ignore())
        .unwrap();
    reactor.core_mut().deregister(old).unwrap();
    assert_eq!(reactor.core().registrations(), 0);
    let (fresh, _fresh_peer) = pair();
    let log = Log::new();
    let new = reactor
        .core_mut()
        .register(
            fresh,
            Interest::READABLE,
            Trigger::Level,
            log.recorder("new"),
        )
        .unwrap();
    assert_eq!(new.key(), old.key(), "the slot is reused");
    theirs.write_all(b"for the deregistered socket").unwrap();
    let stale = reactor.core().stats().stale;
    for _ in 0..3 {
        expect_no_events(&mut reactor, &log);
    }
    assert_eq!(
        reactor.core().stats().stale,
        stale,
        "the kernel forgot the old entry"
    );
    drop(dup);
}

/// A second registration of a live fd is AlreadyExists whatever the
/// interests, on every backend: the reactor knows its own fds, so an
/// `Interest::NONE` on either side (which makes no `EPOLL_CTL_ADD` to
/// fail) does not slip through.
#[test]
fn a_second_registration_of_a_live_fd_is_refused_whatever_the_interests() {
    let _fds = many_fds();
    for backend in BACKENDS {
        for (first, second) in [
            (Interest::NONE, Interest::READABLE),
            (Interest::READABLE, Interest::NONE),
            (Interest::NONE, Interest::NONE),
        ] {
            let mut reactor = reactor(backend);
            let (ours, _theirs) = pair();
            let ours = Rc::new(ours);
            let token = reactor
                .core_mut()
                .register(ours.clone(), first, Trigger::Level, ignore())
                .unwrap();
            let err = reactor
                .core_mut()
                .register(ours.clone(), second, Trigger::Level, ignore())
                .unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::AlreadyExists,
                "{backend:?} {first:?} {second:?}"
            );
            assert_eq!(reactor.core().registrations(), 1);
            reactor.core_mut().deregister(token).unwrap();
            reactor
                .core_mut()
                .register(ours, second, Trigger::Level, ignore())
                .unwrap();
        }
    }
}

/// A callback that deregisters itself may register the same socket again
/// at once: its registration leaves the kernel's list when it is
/// deregistered, not when the callback returns, and the new registration
/// gets the next event.
#[test]
fn a_callback_can_deregister_itself_and_register_its_fd_again() {
    let _fds = many_fds();
    for backend in BACKENDS {
        let mut reactor = reactor(backend);
        let (ours, mut theirs) = pair();
        let ours = Rc::new(ours);
        let again = ours.clone();
        let second_ran = Rc::new(Cell::new(0));
        let counter = second_ran.clone();
        let first = Rc::new(Cell::new(None::<Token>));
        let me = first.clone();
        let token = reactor
            .core_mut()
            .register(ours, Interest::READABLE, Trigger::Level, move |r, _, _| {
                r.core_mut().deregister(me.get().unwrap()).unwrap();
                let counter = counter.clone();
                let again = again.clone();
                r.core_mut()
                    .register(
                        again,
                        Interest::READABLE,
                        Trigger::Level,
                        move |_, fd, _| {
                            let mut buf = [0u8; 16];
                            let _ = io::Read::read(&mut &**fd, &mut buf);
                            counter.set(counter.get() + 1);
                            PostAction::Continue
                        },
                    )
                    .expect("registering the fd again from the callback that deregistered it");
                PostAction::Continue
            })
            .unwrap();
        first.set(Some(token));
        theirs.write_all(b"1").unwrap();
        reactor.run_once(Some(Duration::from_secs(5))).unwrap();
        theirs.write_all(b"2").unwrap();
        for _ in 0..3 {
            reactor.run_once(Some(Duration::from_millis(200))).unwrap();
        }
        assert!(
            second_ran.get() >= 1,
            "{backend:?}: the new registration never ran"
        );
        assert_eq!(reactor.core().registrations(), 1, "{backend:?}");
    }
}

/// `PostAction::Modify` with a trigger the backend cannot deliver (Edge on
/// poll or select) is applied as Level, the documented closest trigger
/// (it reports at least every edge): here the new interest, WRITABLE,
/// takes effect.
#[test]
fn a_modify_to_edge_on_a_level_only_backend_applies_as_level() {
    let _fds = many_fds();
    for backend in [Backend::Poll, Backend::Select] {
        let mut reactor = reactor(backend);
        let (ours, mut theirs) = pair();
        let writable = Rc::new(Cell::new(0));
        let seen = writable.clone();
        let token = reactor
            .core_mut()
            .register(
                ours,
                Interest::READABLE,
                Trigger::Level,
                move |_, _, event| {
                    if event.ready.is_writable() {
                        seen.set(seen.get() + 1);
                        return PostAction::Disable;
                    }
                    PostAction::Modify(Interest::WRITABLE, Trigger::Edge)
                },
            )
            .unwrap();
        theirs.write_all(b"x").unwrap();
        for _ in 0..3 {
            reactor.run_once(Some(Duration::from_millis(100))).unwrap();
        }
        assert_eq!(writable.get(), 1, "{backend:?}: the modify was dropped");
        let _ = token;
    }
}

/// `register` refuses a blocking fd with an
/// error naming the fix (a callback's read past the data would stall the
/// loop for good); made non-blocking, the same fd registers.
#[test]
fn register_refuses_a_blocking_fd_and_names_the_fix() {
    let _fds = many_fds();
    for backend in BACKENDS {
        let mut reactor = reactor(backend);
        let (ours, _theirs) = UnixStream::pair().unwrap(); // blocking
        let ours = Rc::new(ours);
        let err = reactor
            .core_mut()
            .register(ours.clone(), Interest::READABLE, Trigger::Level, ignore())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("set_nonblocking"), "{err}");
        assert_eq!(reactor.core().registrations(), 0);
        ours.set_nonblocking(true).unwrap();
        reactor
            .core_mut()
            .register(ours, Interest::READABLE, Trigger::Level, ignore())
            .unwrap();
    }
}
