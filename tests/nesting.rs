//! A reactor inside another loop: the host watches the reactor's pollable
//! fd with the reactor's next timeout, and runs one non-blocking turn when
//! either says so. Here the host is a plain epoll loop of its own (nix).

mod util;

use std::io::Write;
use std::time::Duration;

use edgeloop::{Backend, Interest, Trigger};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use util::{Log, pair};

#[test]
fn a_host_epoll_loop_drives_a_reactor_through_its_fd_and_timeout() {
    let mut reactor = util::reactor(Backend::Epoll);
    let log = Log::new();
    let (ours, mut theirs) = pair();
    reactor
        .core_mut()
        .register(ours, Interest::READABLE, Trigger::Level, log.recorder("io"))
        .unwrap();
    let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    let f = fired.clone();
    reactor
        .core_mut()
        .call_later(Duration::from_millis(30), move |_| f.set(true));

    let host = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    let fd = reactor
        .core()
        .pollable_fd()
        .expect("epoll has a pollable fd");
    host.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 7))
        .unwrap();
    // (The host's registration lives on after this borrow; the reactor
    // outlives the host loop here.)

    // Nothing ready: the host sleeps until the timer, not forever.
    let timeout = reactor.core_mut().next_timeout().expect("a timer is set");
    assert!(timeout <= Duration::from_millis(30));
    let mut events = [EpollEvent::empty(); 4];
    let ms = EpollTimeout::try_from(timeout + Duration::from_millis(1)).unwrap();
    assert_eq!(host.wait(&mut events, ms).unwrap(), 0, "nothing ready yet");
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert!(fired.get(), "the timer ran in the host's turn");
    assert_eq!(
        reactor.core_mut().next_timeout(),
        None,
        "no timer left: wait on the fd alone"
    );

    // Data for the reactor makes its fd readable in the host loop.
    theirs.write_all(b"x").unwrap();
    let n = host.wait(&mut events, EpollTimeout::from(1000u16)).unwrap();
    assert_eq!(
        (n, events[0].data()),
        (1, 7),
        "the reactor's fd is readable"
    );
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(log.count("io"), 1);

    // Poll and select have no such fd.
    assert!(util::reactor(Backend::Poll).core().pollable_fd().is_none());
}

/// A tokio task drives the reactor: `AsyncFd` on the reactor's fd, tokio's
/// timer for the reactor's next timeout, one non-blocking turn per wakeup.
#[test]
fn a_tokio_task_drives_a_reactor_through_async_fd() {
    use std::os::fd::AsFd;
    use tokio::io::unix::AsyncFd;

    let mut reactor = util::reactor(Backend::Epoll);
    let (ours, mut theirs) = pair();
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let g = got.clone();
    reactor
        .core_mut()
        .register(ours, Interest::READABLE, Trigger::Edge, move |r, s, _| {
            let mut buf = [0; 64];
            while let Ok(n) = std::io::Read::read(s, &mut buf) {
                if n == 0 {
                    break;
                }
                g.borrow_mut().extend_from_slice(&buf[..n]);
            }
            if g.borrow().len() >= 3 {
                r.core_mut().stop();
            }
            edgeloop::PostAction::Continue
        })
        .unwrap();
    let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    let f = fired.clone();
    reactor
        .core_mut()
        .call_later(Duration::from_millis(20), move |_| f.set(true));
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        theirs.write_all(b"abc").unwrap();
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        // tokio gets its own descriptor of the reactor's epoll instance (a
        // dup: the same instance, the same readiness).
        let dup = reactor.as_fd().try_clone_to_owned().unwrap();
        // SAFETY: `dup` is an OwnedFd, valid until the AsyncFd that owns it
        // drops it, and nothing else closes or replaces it.
        let fd = unsafe { AsyncFd::register(dup) }.unwrap();
        while got.borrow().len() < 3 {
            // With no timer left, only the fd can wake this in time.
            let wait = reactor
                .core_mut()
                .next_timeout()
                .unwrap_or(Duration::from_secs(30));
            let by_fd = tokio::select! {
                guard = fd.readable() => {
                    guard.unwrap().clear_ready();
                    true
                }
                _ = tokio::time::sleep(wait) => false,
            };
            // Cleared before the turn: whatever the turn leaves ready (or
            // makes ready) raises a new edge for tokio's next wait.
            reactor.run_once(Some(Duration::ZERO)).unwrap();
            if got.borrow().len() >= 3 {
                assert!(by_fd, "the data was read, but the fd never woke tokio");
            }
        }
    });
    assert!(fired.get(), "the reactor's timer ran under tokio");
    assert_eq!(&*got.borrow(), b"abc");
}

/// A host that truncates the timeout to whole milliseconds (as nix's
/// `EpollTimeout` conversion does) sleeps until the timer, not in a spin
/// of zero-millisecond waits before it; and it sees the stop a timer asks
/// for, so its loop ends.
#[test]
fn a_host_that_truncates_to_milliseconds_does_not_spin_and_sees_the_stop() {
    let mut reactor = util::reactor(Backend::Epoll);
    let start = std::time::Instant::now(); // the timer is due after this
    reactor
        .core_mut()
        .call_later(Duration::from_millis(100), |r| r.core_mut().stop());
    let host = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    let fd = reactor.core().pollable_fd().unwrap();
    host.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 7))
        .unwrap();
    let mut events = [EpollEvent::empty(); 4];
    let mut host_turns = 0;
    while !reactor.core().stop_requested() && start.elapsed() < Duration::from_secs(10) {
        host_turns += 1;
        let timeout = match reactor.core_mut().next_timeout() {
            // Truncated, as a host in milliseconds does.
            Some(t) => EpollTimeout::try_from(t.as_millis() as u16 as i32).unwrap(),
            None => EpollTimeout::NONE,
        };
        host.wait(&mut events, timeout).unwrap();
        reactor.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert!(reactor.core().stop_requested(), "the host saw the stop");
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(
        host_turns <= 5,
        "{host_turns} host turns for one 100 ms timer: the host spun"
    );
}
