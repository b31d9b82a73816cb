//! How each trigger reports readiness, on every backend, pinned against the
//! kernel facts docs/kernel-facts.md lists (K1-K4, K7, K9, K10, K12). Edge-triggered cases are epoll-only: poll and select
//! refuse Edge (tested at the end).

mod util;

use std::cell::Cell;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::Duration;

use edgeloop::{Backend, Event, Interest, PostAction, Reactor, Ready, Trigger};
use util::{BACKENDS, Log, expect_events, expect_no_events, pair, reactor, read_some};

type Stream = std::os::unix::net::UnixStream;

/// A callback that reads `n` bytes per call and records the call.
fn reading(
    log: &Log,
    label: &'static str,
    n: usize,
) -> impl FnMut(&mut Reactor, &mut Stream, Event) -> PostAction + 'static {
    let log = log.clone();
    move |_, stream, event| {
        log.push(label, event);
        read_some(stream, n);
        PostAction::Continue
    }
}

/// Registers `io` for `interest`, runs one turn, and returns what the
/// callback saw (the registration removes itself after the first event).
fn first_event(backend: Backend, io: impl AsFd + 'static, interest: Interest) -> Ready {
    let mut reactor = reactor(backend);
    let seen = Rc::new(Cell::new(Ready::EMPTY));
    let s = seen.clone();
    reactor
        .core_mut()
        .register(io, interest, Trigger::Level, move |_, _, ev| {
            s.set(ev.ready);
            PostAction::Remove
        })
        .unwrap();
    reactor.run_once(Some(Duration::from_millis(500))).unwrap();
    seen.get()
}

#[test]
fn level_reports_an_undrained_fd_on_every_wait() {
    // K3: LT, partial read, event again.
    for backend in BACKENDS {
        let mut reactor = reactor(backend);
        let log = Log::new();
        let (ours, mut theirs) = pair();
        theirs.write_all(&[7; 10]).unwrap();
        reactor
            .core_mut()
            .register(
                ours,
                Interest::READABLE,
                Trigger::Level,
                reading(&log, "a", 3),
            )
            .unwrap();
        for _ in 0..4 {
            expect_events(&mut reactor, &log, &["a"]); // 7, 4, 1, 0 bytes left
        }
        expect_no_events(&mut reactor, &log);
    }
}

#[test]
fn edge_reports_once_per_arrival_and_stays_silent_after_a_partial_read() {
    // epoll only. K1: ET, 10 B arrive, read 3 B, wait again: nothing; one new
    // byte: one event. failure mode 12 in docs/failure-modes.md: the 7 bytes left are a lost
    // wakeup until new data comes.
    let mut reactor = reactor(Backend::Epoll);
    let log = Log::new();
    let (ours, mut theirs) = pair();
    theirs.write_all(&[7; 10]).unwrap();
    reactor
        .core_mut()
        .register(
            ours,
            Interest::READABLE,
            Trigger::Edge,
            reading(&log, "a", 3),
        )
        .unwrap();
    expect_events(&mut reactor, &log, &["a"]);
    expect_no_events(&mut reactor, &log);
    expect_no_events(&mut reactor, &log);
    theirs.write_all(&[1]).unwrap();
    expect_events(&mut reactor, &log, &["a"]);
    expect_no_events(&mut reactor, &log);
}

#[test]
fn oneshot_reports_once_until_modify_rearms_it() {
    // K4: ONESHOT: no second event without re-arm; an event after MOD. Poll
    // and select emulate it.
    for backend in BACKENDS {
        let mut reactor = reactor(backend);
        let log = Log::new();
        let (ours, mut theirs) = pair();
        theirs.write_all(b"x").unwrap();
        let token = reactor
            .core_mut()
            .register(
                ours,
                Interest::READABLE,
                Trigger::Oneshot,
                log.recorder("a"),
            )
            .unwrap();
        expect_events(&mut reactor, &log, &["a"]);
        expect_no_events(&mut reactor, &log);
        theirs.write_all(b"y").unwrap();
        expect_no_events(&mut reactor, &log);
        reactor
            .core_mut()
            .modify(token, Interest::READABLE, Trigger::Oneshot)
            .unwrap();
        expect_events(&mut reactor, &log, &["a"]);
        expect_no_events(&mut reactor, &log);
    }
}

#[test]
fn modify_rearms_an_edge_registration_with_pending_data() {
    // epoll only. K2: ET with data pending, EPOLL_CTL_MOD with the same
    // mask: immediate event.
    let mut reactor = reactor(Backend::Epoll);
    let log = Log::new();
    let (ours, mut theirs) = pair();
    theirs.write_all(&[1; 10]).unwrap();
    let token = reactor
        .core_mut()
        .register(
            ours,
            Interest::READABLE,
            Trigger::Edge,
            reading(&log, "a", 3),
        )
        .unwrap();
    expect_events(&mut reactor, &log, &["a"]);
    expect_no_events(&mut reactor, &log);
    let ctls = reactor.core().stats().ctls;
    reactor
        .core_mut()
        .modify(token, Interest::READABLE, Trigger::Edge)
        .unwrap();
    assert_eq!(
        reactor.core().stats().ctls,
        ctls + 1,
        "an edge modify is always a MOD"
    );
    expect_events(&mut reactor, &log, &["a"]);
}

#[test]
fn peer_shutdown_reports_read_closed_and_data_stays_readable() {
    // K7: peer SHUT_WR gives IN|RDHUP; failure mode 15 in docs/failure-modes.md: the data sent
    // before the FIN is still there to read. select has no RDHUP: readable.
    for backend in BACKENDS {
        let (ours, mut theirs) = pair();
        theirs.write_all(b"last words").unwrap();
        theirs.shutdown(Shutdown::Write).unwrap();
        let ours = Rc::new(ours);
        let ready = first_event(backend, ours.clone(), Interest::READABLE);
        assert!(ready.is_readable(), "{backend:?}: {ready:?}");
        if backend != Backend::Select {
            assert!(
                ready.contains(Ready::READ_CLOSED) && ready.is_read_closed(),
                "{backend:?}: {ready:?}"
            );
        }
        assert!(
            !ready.is_hup(),
            "{backend:?}: only one side is shut: no HUP yet (K7)"
        );
        assert_eq!(read_some(&mut &*ours, 64).unwrap(), b"last words");
        assert_eq!(read_some(&mut &*ours, 64).unwrap(), b"", "then EOF");
    }
}

#[test]
fn peer_reset_reports_error_and_hup_even_to_a_write_only_registration() {
    // K9: peer reset gives IN|OUT|ERR|HUP|RDHUP; failure mode 16 in docs/failure-modes.md: HUP
    // and ERR reach a registration that asked only for one direction. select
    // has neither: it reports the socket writable, and the write fails.
    for backend in BACKENDS {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let server = Rc::new(server);
        util::set_linger_zero(&client);
        drop(client); // RST
        std::thread::sleep(Duration::from_millis(20));
        let ready = first_event(backend, server.clone(), Interest::WRITABLE);
        if backend == Backend::Select {
            assert!(ready.is_writable(), "{ready:?}");
        } else {
            assert!(ready.is_error() && ready.is_hup(), "{backend:?}: {ready:?}");
            assert!(
                !ready.is_readable(),
                "{backend:?}: readable was not asked for: {ready:?}"
            );
        }
        let err = (&*server).write(b"x").unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ),
            "{err}"
        );
    }
}

#[test]
fn a_pipe_whose_writer_closed_reports_hup() {
    // K10: writer closed, empty reader sees HUP only (select: readable, and
    // the read returns 0).
    for backend in BACKENDS {
        let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        drop(writer);
        let ready = first_event(backend, reader, Interest::READABLE);
        if backend == Backend::Select {
            assert!(ready.is_readable(), "{ready:?}");
        } else {
            assert!(
                ready.is_hup() && ready.is_read_closed(),
                "{backend:?}: {ready:?}"
            );
            assert!(
                !ready.is_readable(),
                "{backend:?}: nothing to read: {ready:?}"
            );
        }
    }
}

#[test]
fn an_empty_interest_keeps_the_fd_out_of_the_selector_so_hup_cannot_spin() {
    // K12: a registration with events = 0 still gets HUP, and an LT loop
    // spins. An empty Interest removes the fd instead. failure mode 16 in docs/failure-modes.md.
    for backend in BACKENDS {
        let mut reactor = reactor(backend);
        let log = Log::new();
        let (ours, theirs) = pair();
        let token = reactor
            .core_mut()
            .register(ours, Interest::READABLE, Trigger::Level, log.recorder("a"))
            .unwrap();
        reactor
            .core_mut()
            .modify(token, Interest::NONE, Trigger::Level)
            .unwrap();
        drop(theirs); // HUP
        let waits = reactor.core().stats().waits;
        for _ in 0..3 {
            expect_no_events(&mut reactor, &log);
        }
        assert_eq!(
            reactor.core().stats().waits - waits,
            3,
            "{backend:?}: each wait slept its full timeout"
        );
        reactor
            .core_mut()
            .modify(token, Interest::READABLE, Trigger::Level)
            .unwrap();
        expect_events(&mut reactor, &log, &["a"]);
    }
}

#[test]
fn writable_interest_on_an_idle_socket_reports_writable() {
    for backend in BACKENDS {
        let (ours, _theirs) = pair();
        let ready = first_event(backend, ours, Interest::WRITABLE);
        assert!(
            ready.is_writable() && !ready.is_readable(),
            "{backend:?}: {ready:?}"
        );
    }
    // Edge: once.
    let mut reactor = reactor(Backend::Epoll);
    let log = Log::new();
    let (ours, _theirs) = pair();
    reactor
        .core_mut()
        .register(ours, Interest::WRITABLE, Trigger::Edge, log.recorder("w"))
        .unwrap();
    expect_events(&mut reactor, &log, &["w"]);
    expect_no_events(&mut reactor, &log);
}

#[test]
fn poll_and_select_refuse_edge_rather_than_degrade_it() {
    for backend in [Backend::Poll, Backend::Select] {
        let mut reactor = reactor(backend);
        let (ours, _theirs) = pair();
        let ours = Rc::new(ours);
        let err = reactor
            .core_mut()
            .register(
                ours.clone(),
                Interest::READABLE,
                Trigger::Edge,
                util::ignore(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{backend:?}");
        assert!(err.to_string().contains("epoll"), "{err}");
        assert_eq!(reactor.core().registrations(), 0);
        // And modify to Edge is refused the same way.
        let token = reactor
            .core_mut()
            .register(
                ours.clone(),
                Interest::READABLE,
                Trigger::Level,
                util::ignore(),
            )
            .unwrap();
        let err = reactor
            .core_mut()
            .modify(token, Interest::READABLE, Trigger::Edge)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }
}

#[test]
fn select_refuses_fds_at_or_above_fd_setsize_with_a_clear_error() {
    let mut reactor = reactor(Backend::Select);
    let (ours, _theirs) = pair();
    // Put a socket at fd 1500, above FD_SETSIZE (1024).
    let high = nix::fcntl::fcntl(&ours, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(1500)).unwrap();
    // SAFETY: F_DUPFD_CLOEXEC just returned this fd; nothing else owns it.
    let high = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(high) };
    assert!(high.as_raw_fd() >= 1024);
    let high = Rc::new(high);
    let err = reactor
        .core_mut()
        .register(
            high.clone(),
            Interest::READABLE,
            Trigger::Level,
            util::ignore(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("FD_SETSIZE"), "{err}");
    assert_eq!(reactor.core().registrations(), 0);
    // The same fd is fine on poll and epoll.
    for backend in [Backend::Poll, Backend::Epoll] {
        let mut reactor = util::reactor(backend);
        reactor
            .core_mut()
            .register(
                high.clone(),
                Interest::READABLE,
                Trigger::Level,
                util::ignore(),
            )
            .unwrap();
    }
}
