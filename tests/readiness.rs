//! How each trigger reports readiness, pinned against the kernel facts in
//! DESIGN.md (K1-K4, K7, K9, K10) and RELIABILITY.md items 12, 15 and 16.

mod util;

use std::cell::Cell;
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use edgeloop::{Interest, Reactor, Ready, Trigger};
use util::{Log, expect_events, expect_no_events, pair, read_some};

/// A callback that reads `n` bytes per call and records the call.
fn reading(
    log: &Log,
    label: &'static str,
    mut stream: std::os::unix::net::UnixStream,
    n: usize,
) -> impl FnMut(&mut Reactor, edgeloop::Event) + 'static {
    let log = log.clone();
    move |_, event| {
        log.push(label, event);
        read_some(&mut stream, n);
    }
}

#[test]
fn level_reports_an_undrained_fd_on_every_wait() {
    // K3: LT, partial read, event again.
    let mut reactor = Reactor::new().unwrap();
    let log = Log::new();
    let (ours, mut theirs) = pair();
    theirs.write_all(&[7; 10]).unwrap();
    let fd = ours.as_raw_fd();
    reactor
        .register(
            fd,
            Interest::READABLE,
            Trigger::Level,
            reading(&log, "a", ours, 3),
        )
        .unwrap();
    expect_events(&mut reactor, &log, &["a"]); // 7 left
    expect_events(&mut reactor, &log, &["a"]); // 4 left
    expect_events(&mut reactor, &log, &["a"]); // 1 left
    expect_events(&mut reactor, &log, &["a"]); // 0 left
    expect_no_events(&mut reactor, &log);
}

#[test]
fn edge_reports_once_per_arrival_and_stays_silent_after_a_partial_read() {
    // K1: ET, 10 B arrive, read 3 B, wait again: nothing; one new byte: one event.
    // RELIABILITY.md item 12: the 7 bytes left are a lost wakeup until new data.
    let mut reactor = Reactor::new().unwrap();
    let log = Log::new();
    let (ours, mut theirs) = pair();
    theirs.write_all(&[7; 10]).unwrap();
    let fd = ours.as_raw_fd();
    reactor
        .register(
            fd,
            Interest::READABLE,
            Trigger::Edge,
            reading(&log, "a", ours, 3),
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
    // K4: ONESHOT: no second event without re-arm; an event after MOD.
    let mut reactor = Reactor::new().unwrap();
    let log = Log::new();
    let (ours, mut theirs) = pair();
    theirs.write_all(b"x").unwrap();
    let token = reactor
        .register(
            ours.as_raw_fd(),
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
        .modify(token, Interest::READABLE, Trigger::Oneshot)
        .unwrap();
    expect_events(&mut reactor, &log, &["a"]);
    expect_no_events(&mut reactor, &log);
    drop(ours);
}

#[test]
fn modify_rearms_an_edge_registration_with_pending_data() {
    // K2: ET with data pending, EPOLL_CTL_MOD with the same mask: immediate event.
    let mut reactor = Reactor::new().unwrap();
    let log = Log::new();
    let (ours, mut theirs) = pair();
    theirs.write_all(&[1; 10]).unwrap();
    let fd = ours.as_raw_fd();
    let token = reactor
        .register(
            fd,
            Interest::READABLE,
            Trigger::Edge,
            reading(&log, "a", ours, 3),
        )
        .unwrap();
    expect_events(&mut reactor, &log, &["a"]);
    expect_no_events(&mut reactor, &log);
    let ctls = reactor.stats().ctls;
    reactor
        .modify(token, Interest::READABLE, Trigger::Edge)
        .unwrap();
    assert_eq!(
        reactor.stats().ctls,
        ctls + 1,
        "an edge modify is always a MOD"
    );
    expect_events(&mut reactor, &log, &["a"]);
}

#[test]
fn peer_shutdown_reports_read_closed_and_data_stays_readable() {
    // K7: peer SHUT_WR gives IN|RDHUP; RELIABILITY.md item 15: the data sent
    // before the FIN is still there to read.
    let mut reactor = Reactor::new().unwrap();
    let (mut ours, mut theirs) = pair();
    theirs.write_all(b"last words").unwrap();
    theirs.shutdown(Shutdown::Write).unwrap();
    let seen = Rc::new(Cell::new(Ready::EMPTY));
    let got = Rc::new(Cell::new(0usize));
    let (s, g) = (seen.clone(), got.clone());
    reactor
        .register(
            ours.as_raw_fd(),
            Interest::READABLE,
            Trigger::Level,
            move |r, ev| {
                s.set(ev.ready);
                g.set(read_some(&mut ours, 64).unwrap().len());
                r.deregister(ev.token).unwrap();
            },
        )
        .unwrap();
    reactor
        .run_once(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let ready = seen.get();
    assert!(
        ready.is_readable() && ready.contains(Ready::READ_CLOSED),
        "{ready:?}"
    );
    assert!(ready.is_read_closed());
    assert!(!ready.is_hup(), "only one side is shut: no HUP yet (K7)");
    assert_eq!(got.get(), 10, "the bytes before the FIN are readable");
}

#[test]
fn peer_reset_reports_error_and_hup_even_to_a_write_only_registration() {
    // K9: peer reset gives IN|OUT|ERR|HUP|RDHUP; RELIABILITY.md item 16: HUP
    // and ERR reach a registration that asked only for one direction.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    nix::sys::socket::setsockopt(
        &client,
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .unwrap();
    drop(client); // RST

    let mut reactor = Reactor::new().unwrap();
    let seen = Rc::new(Cell::new(Ready::EMPTY));
    let s = seen.clone();
    reactor
        .register(
            server.as_raw_fd(),
            Interest::WRITABLE,
            Trigger::Level,
            move |r, ev| {
                s.set(ev.ready);
                r.deregister(ev.token).unwrap();
            },
        )
        .unwrap();
    reactor
        .run_once(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let ready = seen.get();
    assert!(ready.is_error() && ready.is_hup(), "{ready:?}");
    assert!(
        !ready.is_readable(),
        "readable was not asked for: {ready:?}"
    );
}

#[test]
fn a_pipe_whose_writer_closed_reports_hup() {
    // K10: writer closed, empty reader sees HUP only.
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(writer);
    let mut reactor = Reactor::new().unwrap();
    let seen = Rc::new(Cell::new(Ready::EMPTY));
    let s = seen.clone();
    reactor
        .register(
            reader.as_raw_fd(),
            Interest::READABLE,
            Trigger::Level,
            move |r, ev| {
                s.set(ev.ready);
                r.deregister(ev.token).unwrap();
            },
        )
        .unwrap();
    reactor
        .run_once(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let ready = seen.get();
    assert!(ready.is_hup() && ready.is_read_closed(), "{ready:?}");
    assert!(!ready.is_readable(), "nothing to read: {ready:?}");
}

#[test]
fn an_empty_interest_keeps_the_fd_out_of_the_kernel_so_hup_cannot_spin() {
    // K12: a registration with events = 0 still gets HUP, and an LT loop spins.
    // An empty Interest removes the fd instead. RELIABILITY.md item 16.
    let mut reactor = Reactor::new().unwrap();
    let log = Log::new();
    let (ours, theirs) = pair();
    let token = reactor
        .register(
            ours.as_raw_fd(),
            Interest::READABLE,
            Trigger::Level,
            log.recorder("a"),
        )
        .unwrap();
    reactor
        .modify(token, Interest::NONE, Trigger::Level)
        .unwrap();
    drop(theirs); // HUP
    let waits = reactor.stats().waits;
    for _ in 0..3 {
        expect_no_events(&mut reactor, &log);
    }
    assert_eq!(
        reactor.stats().waits - waits,
        3,
        "each wait slept its full timeout"
    );
    reactor
        .modify(token, Interest::READABLE, Trigger::Level)
        .unwrap();
    expect_events(&mut reactor, &log, &["a"]);
    drop(ours);
}

#[test]
fn writable_interest_on_an_idle_socket_reports_writable() {
    let mut reactor = Reactor::new().unwrap();
    let log = Log::new();
    let (ours, _theirs) = pair();
    reactor
        .register(
            ours.as_raw_fd(),
            Interest::WRITABLE,
            Trigger::Edge,
            log.recorder("w"),
        )
        .unwrap();
    reactor
        .run_once(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let events = log.take();
    assert_eq!(events.len(), 1);
    assert!(events[0].1.is_writable() && !events[0].1.is_readable());
    expect_no_events(&mut reactor, &log); // ET: once
    drop(ours);
}
