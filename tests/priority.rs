//! Interest::PRIORITY: TCP urgent data raises EPOLLPRI / POLLPRI, reported
//! only to a registration that asked for it; select refuses the interest.

mod util;

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use edgeloop::{Backend, Interest, Trigger};
use nix::sys::socket::{MsgFlags, send};
use util::Log;

/// A connected TCP pair: (ours, theirs).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let theirs = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    (ours, theirs)
}

#[test]
fn urgent_data_is_reported_as_priority_on_epoll_and_poll() {
    for backend in [Backend::Epoll, Backend::Poll] {
        let mut reactor = util::reactor(backend);
        let log = Log::new();
        let (ours, theirs) = tcp_pair();
        let (plain, plain_theirs) = tcp_pair();
        reactor
            .core_mut()
            .register(
                ours,
                Interest::READABLE | Interest::PRIORITY,
                Trigger::Level,
                log.recorder("pri"),
            )
            .unwrap();
        reactor
            .core_mut()
            .register(
                plain,
                Interest::READABLE,
                Trigger::Level,
                log.recorder("plain"),
            )
            .unwrap();
        send(theirs.as_raw_fd(), b"!", MsgFlags::MSG_OOB).unwrap();
        send(plain_theirs.as_raw_fd(), b"!", MsgFlags::MSG_OOB).unwrap();
        reactor.run_once(Some(Duration::from_secs(5))).unwrap();
        reactor.run_once(Some(Duration::from_millis(50))).unwrap();
        let pri = log.last("pri").expect("the priority registration ran");
        assert!(pri.is_priority(), "{backend:?}: {pri:?}");
        if let Some(plain) = log.last("plain") {
            assert!(
                !plain.is_priority(),
                "{backend:?}: told what it did not ask for"
            );
        }
    }
}

#[test]
fn select_refuses_a_priority_interest_clearly() {
    let mut reactor = util::reactor(Backend::Select);
    let (ours, _theirs) = tcp_pair();
    let e = reactor
        .core_mut()
        .register(
            ours,
            Interest::READABLE | Interest::PRIORITY,
            Trigger::Level,
            util::ignore(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
    assert!(e.to_string().contains("PRIORITY"), "{e}");
}
