//! Writes never raise SIGPIPE. This test binary
//! puts SIGPIPE back to its default action, "terminate", as a C or Python
//! host program would have it, so a single write without MSG_NOSIGNAL to a
//! dead peer kills the whole test process.
#![cfg(feature = "server")]

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use edgeloop::conn::{CloseReason, Conn, ConnId, ConnOptions, Connections, Handler, Others};
use edgeloop::server::ServerOptions;
use edgeloop::{Backend, Trigger};
use nix::sys::signal::{SigHandler, Signal, signal};
use util::server::{Echo, start};

fn sigpipe_kills() {
    // SAFETY: restoring the default disposition installs no handler code.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.unwrap();
}

/// Writes on open, then records how the connection closed.
struct Greeter {
    closed: Vec<String>,
}

impl Handler for Greeter {
    type Session = ();
    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        conn.write(b"hello, are you there?");
    }
    fn on_data(&mut self, _: &mut Conn<'_, Self>, _: &[u8]) {}
    fn on_close(&mut self, _: &mut Others<'_, Self>, _: ConnId, _: (), reason: CloseReason) {
        self.closed.push(format!("{reason:?}"));
    }
}

#[test]
fn writing_to_a_closed_unix_peer_is_a_counted_reset_not_a_signal() {
    sigpipe_kills();
    for trigger in [Trigger::Level, Trigger::Edge] {
        let mut reactor = util::reactor(Backend::Epoll);
        let greeter = Greeter { closed: vec![] };
        let set = Connections::new(greeter, ConnOptions::with_trigger(trigger)).unwrap();
        let set = reactor.install(set).unwrap();
        let (set, core) = reactor.source_mut(set);
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        drop(theirs); // send() on `ours` now fails with EPIPE, raising SIGPIPE without MSG_NOSIGNAL
        set.attach(core, OwnedFd::from(ours)).unwrap();
        assert_eq!(set.len(), 0);
        assert_eq!(set.stats().resets, 1);
        assert_eq!(set.handler().closed, ["Reset"]);
    }
}

#[test]
fn a_tcp_server_survives_peers_that_reset_with_output_pending() {
    sigpipe_kills();
    for trigger in [Trigger::Level, Trigger::Edge] {
        let options = ServerOptions::default()
            .with_conn(ConnOptions::with_trigger(trigger).water_marks(1 << 30));
        let server = start(|| Echo, options);
        for _ in 0..20 {
            let mut c = TcpStream::connect(server.addr).unwrap();
            // Enough that the echo queues up on the server, then a reset.
            let _ = c.write_all(&vec![1u8; 4 << 20]);
            util::set_linger_zero(&c);
            drop(c);
        }
        std::thread::sleep(Duration::from_millis(100));
        // Alive, and still serving.
        let mut c = TcpStream::connect(server.addr).unwrap();
        c.write_all(b"still there?").unwrap();
        let mut buf = [0u8; 12];
        std::io::Read::read_exact(&mut c, &mut buf).unwrap();
        assert_eq!(&buf, b"still there?");
        drop(c);
        let (stats, _) = server.stop();
        assert!(stats.resets > 0, "{stats:?}");
    }
}
