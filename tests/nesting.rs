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
        .register(ours, Interest::READABLE, Trigger::Level, log.recorder("io"))
        .unwrap();
    let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    let f = fired.clone();
    reactor.call_later(Duration::from_millis(30), move |_| f.set(true));

    let host = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    let fd = reactor.pollable_fd().expect("epoll has a pollable fd");
    host.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 7))
        .unwrap();
    // (The host's registration lives on after this borrow; the reactor
    // outlives the host loop here.)

    // Nothing ready: the host sleeps until the timer, not forever.
    let timeout = reactor.next_timeout().expect("a timer is set");
    assert!(timeout <= Duration::from_millis(30));
    let mut events = [EpollEvent::empty(); 4];
    let ms = EpollTimeout::try_from(timeout + Duration::from_millis(1)).unwrap();
    assert_eq!(host.wait(&mut events, ms).unwrap(), 0, "nothing ready yet");
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert!(fired.get(), "the timer ran in the host's turn");
    assert_eq!(
        reactor.next_timeout(),
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
    assert!(util::reactor(Backend::Poll).pollable_fd().is_none());
}
