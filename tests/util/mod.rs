//! Helpers shared by the integration tests, in the spirit of mio's
//! `tests/util`: record what callbacks saw, assert on it, count fds.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use edgeloop::{Backend, Event, PanicPolicy, PostAction, Reactor, Ready};

/// Every backend: the conformance tests run one body against each, as
/// CPython's BaseSelectorTestCase does.
pub const BACKENDS: [Backend; 3] = [Backend::Epoll, Backend::Poll, Backend::Select];

/// A reactor on `backend` that re-raises a callback's panic after the turn:
/// a failed assert inside a callback fails the test instead of quietly
/// removing the registration (the default `Isolate` policy's job).
pub fn reactor(backend: Backend) -> Reactor {
    let mut reactor = Reactor::with_backend(backend).unwrap();
    reactor.core_mut().set_panic_policy(PanicPolicy::Propagate);
    reactor
}

/// A [`reactor`] (epoll) with a connection set served by `handler`,
/// listening on a fresh loopback TCP port: the set, and the port's address.
pub fn listening_set<H: edgeloop::conn::Handler>(
    handler: H,
    options: edgeloop::conn::ConnOptions,
) -> (
    Reactor,
    edgeloop::SourceId<edgeloop::conn::Connections<H>>,
    std::net::SocketAddr,
) {
    use edgeloop::conn::{AcceptOptions, Connections, tcp_listener};
    let mut reactor = reactor(Backend::Epoll);
    let set = reactor
        .install(Connections::new(handler, options).unwrap())
        .unwrap();
    let listener = tcp_listener("127.0.0.1:0".parse().unwrap(), None, false).unwrap();
    let addr = listener.local_addr().unwrap();
    let (connections, core) = reactor.source_mut(set);
    connections
        .listen(core, listener.into(), AcceptOptions::default())
        .unwrap();
    (reactor, set, addr)
}

/// What the callbacks saw, in order: (label, readiness).
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<(&'static str, Ready)>>>);

impl Log {
    pub fn new() -> Log {
        Log::default()
    }

    pub fn push(&self, label: &'static str, event: Event) {
        self.0.borrow_mut().push((label, event.ready));
    }

    /// A callback that only records.
    pub fn recorder<F>(
        &self,
        label: &'static str,
    ) -> impl FnMut(&mut Reactor, &mut F, Event) -> PostAction + 'static {
        let log = self.clone();
        move |_, _, event| {
            log.push(label, event);
            PostAction::Continue
        }
    }

    pub fn labels(&self) -> Vec<&'static str> {
        self.0.borrow().iter().map(|(l, _)| *l).collect()
    }

    pub fn count(&self, label: &str) -> usize {
        self.0.borrow().iter().filter(|(l, _)| *l == label).count()
    }

    pub fn last(&self, label: &str) -> Option<Ready> {
        self.0
            .borrow()
            .iter()
            .rev()
            .find(|(l, _)| *l == label)
            .map(|(_, r)| *r)
    }

    pub fn take(&self) -> Vec<(&'static str, Ready)> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// A callback that does nothing and keeps its registration.
pub fn ignore<F>() -> impl FnMut(&mut Reactor, &mut F, Event) -> PostAction + 'static {
    |_, _, _| PostAction::Continue
}

/// Runs one turn of at most `timeout` and asserts the callbacks recorded
/// exactly `expected` labels, in any order.
pub fn expect_events(reactor: &mut Reactor, log: &Log, expected: &[&'static str]) {
    reactor.run_once(Some(Duration::from_millis(200))).unwrap();
    let mut got = log.take().into_iter().map(|(l, _)| l).collect::<Vec<_>>();
    let mut want = expected.to_vec();
    got.sort();
    want.sort();
    assert_eq!(got, want, "events of one turn");
}

/// Runs one short turn and asserts no callback recorded anything.
pub fn expect_no_events(reactor: &mut Reactor, log: &Log) {
    reactor.run_once(Some(Duration::from_millis(20))).unwrap();
    let got = log.take();
    assert!(got.is_empty(), "expected no events, got {got:?}");
}

/// A connected, non-blocking Unix stream pair.
pub fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// Reads what is there without blocking; `None` on WouldBlock.
pub fn read_some(stream: &mut impl Read, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0; n];
    match stream.read(&mut buf) {
        Ok(k) => Some(buf[..k].to_vec()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(e) => panic!("read: {e}"),
    }
}

pub fn write_all(stream: &mut impl Write, data: &[u8]) {
    stream.write_all(data).unwrap();
}

/// Makes the next close send an RST instead of a FIN (SO_LINGER {1, 0}), as
/// mio's test helper `set_linger_zero` does.
pub fn set_linger_zero(socket: &impl std::os::fd::AsFd) {
    nix::sys::socket::setsockopt(
        socket,
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .unwrap();
}

/// Says, visibly, that a check could not run here and why. Written to the
/// process's stderr directly, which the test harness does not capture, so
/// the line shows in a plain `cargo test` run even though the test passes.
pub fn skip(test: &str, reason: &str) {
    let _ = writeln!(io::stderr(), "SKIPPED {test}: {reason}");
}

/// The number of fds this process has open.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

pub mod process;
pub mod resp;
#[cfg(feature = "server")]
pub mod server;
pub mod stream;

/// A TCP connection to `addr` whose reads give up after 20 s (a hung test
/// fails instead of waiting forever).
pub fn connect(addr: impl std::net::ToSocketAddrs) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// A TCP connection to `addr` whose receive buffer is about `bytes`, set
/// before the connect so the window never grows past it: a reader that
/// never reads absorbs little, and what the server sends it must queue.
pub fn connect_small_rcvbuf(addr: std::net::SocketAddr, bytes: usize) -> std::net::TcpStream {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    socket::setsockopt(&fd, sockopt::RcvBuf, &bytes).unwrap();
    socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )
    .unwrap();
    let s = std::net::TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Fails the test if `f` does not finish within `limit` (a deadlock).
pub fn watchdog<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("deadlock: the watchdog fired")
}
