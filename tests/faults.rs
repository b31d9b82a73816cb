//! Fault injection in-process, without strace: this test binary defines its
//! own `recv`, `send`, `sendmsg`, `accept4` and `epoll_wait`, which the
//! linker binds the library's calls to (an executable's own symbols take
//! precedence over libc's). Each forwards to libc's (found with
//! `dlsym(RTLD_NEXT)`) unless the fault plan says to fail that call: EINTR,
//! EAGAIN, ENOBUFS, ECONNRESET, EMFILE, or a short write, at a chosen
//! call. The client side of each test uses `read`/`write` (a `File` over
//! its socket), which are not interposed, so every interposed call is the
//! server's.
//!
//! Zero cost outside this binary: nothing in the library changes.
#![cfg(feature = "server")]

mod util;

use std::ffi::{CStr, c_int, c_void};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

use edgeloop::conn::{
    AcceptOptions, CloseReason, Conn, ConnId, ConnOptions, Connections, Handler, Others,
};
use edgeloop::{Backend, Reactor, Trigger};
use nix::libc;

/// What to do to the `nth` call (counting from 1) of `call`.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Errno(c_int),
    /// Pass at most this many bytes to the real call (send/sendmsg).
    Short(usize),
}

#[derive(Debug)]
struct Plan {
    call: &'static str,
    nth: Vec<usize>,
    fault: Fault,
    seen: usize,
    injected: usize,
}

static PLAN: Mutex<Option<Plan>> = Mutex::new(None);
/// One test at a time: the plan is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

/// The fault for this call of `call`, if the plan has one.
fn fault_for(call: &str) -> Option<Fault> {
    let mut plan = PLAN.lock().unwrap_or_else(|p| p.into_inner());
    let plan = plan.as_mut().filter(|p| p.call == call)?;
    plan.seen += 1;
    if plan.nth.contains(&plan.seen) {
        plan.injected += 1;
        Some(plan.fault)
    } else {
        None
    }
}

fn real(name: &CStr) -> *mut c_void {
    const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;
    // SAFETY: a NUL-terminated name; RTLD_NEXT finds libc's definition.
    let f = unsafe { libc::dlsym(RTLD_NEXT, name.as_ptr()) };
    assert!(!f.is_null(), "dlsym({name:?})");
    f
}

fn fail(errno: c_int) -> isize {
    nix::errno::Errno::set_raw(errno);
    -1
}

/// # Safety
/// As libc's `recv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: usize, flags: c_int) -> isize {
    if let Some(Fault::Errno(e)) = fault_for("recv") {
        return fail(e);
    }
    type Recv = unsafe extern "C" fn(c_int, *mut c_void, usize, c_int) -> isize;
    // SAFETY: libc's recv has this signature; the arguments are the caller's.
    unsafe { std::mem::transmute::<*mut c_void, Recv>(real(c"recv"))(fd, buf, len, flags) }
}

/// # Safety
/// As libc's `send`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: usize, flags: c_int) -> isize {
    let len = match fault_for("send") {
        Some(Fault::Errno(e)) => return fail(e),
        Some(Fault::Short(n)) => len.min(n),
        None => len,
    };
    type Send = unsafe extern "C" fn(c_int, *const c_void, usize, c_int) -> isize;
    // SAFETY: libc's send has this signature; `len` is at most the caller's.
    unsafe { std::mem::transmute::<*mut c_void, Send>(real(c"send"))(fd, buf, len, flags) }
}

/// # Safety
/// As libc's `sendmsg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> isize {
    if let Some(Fault::Errno(e)) = fault_for("sendmsg") {
        return fail(e);
    }
    type SendMsg = unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> isize;
    // SAFETY: libc's sendmsg has this signature; the arguments are the caller's.
    unsafe { std::mem::transmute::<*mut c_void, SendMsg>(real(c"sendmsg"))(fd, msg, flags) }
}

/// # Safety
/// As libc's `accept4`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: c_int,
) -> c_int {
    if let Some(Fault::Errno(e)) = fault_for("accept4") {
        return fail(e) as c_int;
    }
    type Accept4 =
        unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t, c_int) -> c_int;
    // SAFETY: libc's accept4 has this signature; the arguments are the caller's.
    unsafe { std::mem::transmute::<*mut c_void, Accept4>(real(c"accept4"))(fd, addr, len, flags) }
}

/// # Safety
/// As libc's `epoll_wait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    if let Some(Fault::Errno(e)) = fault_for("epoll_wait") {
        return fail(e) as c_int;
    }
    type Wait = unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, c_int) -> c_int;
    // SAFETY: libc's epoll_wait has this signature; the arguments are the caller's.
    unsafe {
        std::mem::transmute::<*mut c_void, Wait>(real(c"epoll_wait"))(epfd, events, max, timeout)
    }
}

/// Arms the plan for the duration of `test`, and returns how many faults
/// were injected.
fn with_plan(call: &'static str, nth: &[usize], fault: Fault, test: impl FnOnce()) -> usize {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    *PLAN.lock().unwrap() = Some(Plan {
        call,
        nth: nth.to_vec(),
        fault,
        seen: 0,
        injected: 0,
    });
    test();
    PLAN.lock().unwrap().take().unwrap().injected
}

/// Echoes, and records how each connection closed.
#[derive(Default)]
struct Echo {
    closed: Vec<String>,
}

impl Handler for Echo {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(data);
    }
    fn on_close(&mut self, _: &mut Others<'_, Self>, _: ConnId, _: (), reason: CloseReason) {
        self.closed.push(format!("{reason:?}"));
    }
}

/// A reactor with an echo set and one attached connection; the client end
/// as a `File` (read/write, not interposed).
fn echo_pair(trigger: Trigger) -> (Reactor, edgeloop::SourceId<Connections<Echo>>, File) {
    let mut reactor = util::reactor(Backend::Epoll);
    let set = Connections::new(Echo::default(), ConnOptions::with_trigger(trigger)).unwrap();
    let set = reactor.install(set).unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    // A broken case fails instead of hanging (SO_RCVTIMEO applies to read).
    theirs
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (connections, core) = reactor.source_mut(set);
    connections.attach(core, OwnedFd::from(ours)).unwrap();
    (reactor, set, File::from(OwnedFd::from(theirs)))
}

fn turns(reactor: &mut Reactor, n: usize) {
    for _ in 0..n {
        reactor.run_once(Some(Duration::from_millis(20))).unwrap();
    }
}

fn read_exactly(client: &mut File, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    client.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn eintr_and_spurious_eagain_on_recv_lose_nothing() {
    for trigger in [Trigger::Level, Trigger::Edge] {
        // A spurious EAGAIN is injected once: under Edge a real EAGAIN means
        // an empty buffer, so the next data raises a new edge; faking it on
        // every edge would fake a kernel that never existed.
        for (errno, nth) in [(libc::EINTR, &[1, 2][..]), (libc::EAGAIN, &[1][..])] {
            let injected = with_plan("recv", nth, Fault::Errno(errno), || {
                let (mut reactor, set, mut client) = echo_pair(trigger);
                client.write_all(b"hello").unwrap();
                turns(&mut reactor, 3);
                client.write_all(b" again").unwrap();
                turns(&mut reactor, 3);
                assert_eq!(read_exactly(&mut client, 11), b"hello again");
                assert!(reactor.source(set).handler().closed.is_empty());
            });
            assert!(injected > 0, "{trigger:?} errno {errno}: nothing injected");
        }
    }
}

#[test]
fn econnreset_on_recv_closes_as_a_reset_once() {
    let injected = with_plan("recv", &[1], Fault::Errno(libc::ECONNRESET), || {
        let (mut reactor, set, mut client) = echo_pair(Trigger::Level);
        client.write_all(b"x").unwrap();
        turns(&mut reactor, 2);
        let connections = reactor.source(set);
        assert_eq!(connections.handler().closed, ["Reset"]);
        assert_eq!(connections.stats().resets, 1);
        assert!(connections.is_empty());
    });
    assert_eq!(injected, 1);
}

#[test]
fn short_writes_and_eagain_on_send_queue_the_rest_and_deliver_every_byte() {
    // Under Edge, a short write or EAGAIN means the buffer filled, and the
    // kernel raises a writable edge when it drains; a fake one on a buffer
    // that did not fill would be followed by no edge, a state no kernel
    // produces. So Edge gets the EINTR case; Level gets all three.
    let cases = [
        (Fault::Short(3), Trigger::Level),
        (Fault::Errno(libc::EAGAIN), Trigger::Level),
        (Fault::Errno(libc::EINTR), Trigger::Level),
        (Fault::Errno(libc::EINTR), Trigger::Edge),
    ];
    for (fault, trigger) in cases {
        let injected = with_plan("send", &[1, 2, 3], fault, || {
            let (mut reactor, set, mut client) = echo_pair(trigger);
            let message: Vec<u8> = (0..200u8).collect();
            client.write_all(&message).unwrap();
            turns(&mut reactor, 4);
            assert_eq!(
                read_exactly(&mut client, 200),
                message,
                "{fault:?} {trigger:?}"
            );
            assert!(reactor.source(set).handler().closed.is_empty());
        });
        assert!(injected > 0, "{fault:?}");
    }
}

#[test]
fn enobufs_on_send_closes_the_connection_with_the_error() {
    let injected = with_plan("send", &[1], Fault::Errno(libc::ENOBUFS), || {
        let (mut reactor, set, mut client) = echo_pair(Trigger::Level);
        client.write_all(b"x").unwrap();
        turns(&mut reactor, 2);
        let closed = &reactor.source(set).handler().closed;
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert!(
            closed[0].contains("105") || closed[0].contains("NoBuf"),
            "{closed:?}"
        );
    });
    assert_eq!(injected, 1);
}

#[test]
fn emfile_on_accept_sheds_and_the_listener_keeps_going() {
    let injected = with_plan("accept4", &[1], Fault::Errno(libc::EMFILE), || {
        let mut reactor = util::reactor(Backend::Epoll);
        let set = Connections::new(Echo::default(), ConnOptions::default()).unwrap();
        let set = reactor.install(set).unwrap();
        let listener =
            edgeloop::conn::tcp_listener("127.0.0.1:0".parse().unwrap(), None, false).unwrap();
        let addr = listener.local_addr().unwrap();
        let (connections, core) = reactor.source_mut(set);
        connections
            .listen(core, listener.into(), AcceptOptions::default())
            .unwrap();
        let client = |msg: &[u8]| {
            let c = std::net::TcpStream::connect(addr).unwrap();
            let mut f = File::from(OwnedFd::from(c));
            f.write_all(msg).unwrap();
            f
        };
        // The first accept fails with EMFILE: the waiting client is
        // accepted and closed at once (EOF), not left hanging.
        let mut first = client(b"1");
        turns(&mut reactor, 2);
        let mut buf = [0u8; 1];
        match first.read(&mut buf) {
            Ok(0) => {}
            // "1" was never read, so the close sent an RST.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("the shed client was left hanging: {other:?}"),
        }
        // The next one is served.
        let mut second = client(b"2");
        turns(&mut reactor, 3);
        assert_eq!(read_exactly(&mut second, 1), b"2");
        assert_eq!(reactor.source(set).stats().accept_errors, 1);
    });
    assert_eq!(injected, 1);
}

#[test]
fn eintr_on_epoll_wait_is_retried() {
    let injected = with_plan("epoll_wait", &[1, 2, 3], Fault::Errno(libc::EINTR), || {
        let (mut reactor, set, mut client) = echo_pair(Trigger::Edge);
        client.write_all(b"through").unwrap();
        turns(&mut reactor, 2);
        assert_eq!(read_exactly(&mut client, 7), b"through");
        assert!(reactor.source(set).handler().closed.is_empty());
    });
    assert_eq!(injected, 3);
}
