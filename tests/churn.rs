//! Connection churn leaks nothing: after thousands of connect / echo / close
//! cycles the process's fd count and the server's tables are back to
//! baseline (failure mode 36 in docs/failure-modes.md). One test per binary: fd counts are
//! process-wide. The 100,000-cycle version is `#[ignore]`d:
//! `cargo test --release --test churn -- --ignored`.
#![cfg(feature = "server")]

mod util;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::OwnedFd;

use edgeloop::Trigger;
use edgeloop::conn::{Conn, ConnOptions, Handler};
use edgeloop::server::ServerOptions;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
use util::fd_count;
use util::server::start;

/// Echoes one message, then closes: the server closes first, so TIME_WAIT
/// lands on the server side, not on the client's ephemeral ports.
struct EchoOnce;

impl Handler for EchoOnce {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(data);
        conn.close();
    }
}

/// Connects from 127.0.0.x, spreading the cycles over source addresses so
/// ephemeral ports never run out.
fn connect_from(source: u8, to: SocketAddr) -> TcpStream {
    let fd: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let from = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, source), 0));
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &from).unwrap();
    let SocketAddr::V4(to) = to else {
        unreachable!()
    };
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(to)).unwrap();
    TcpStream::from(fd)
}

fn churn(cycles: usize) {
    let baseline = fd_count();
    for trigger in [Trigger::Level, Trigger::Edge] {
        let options = ServerOptions::default().with_conn(ConnOptions::with_trigger(trigger));
        let server = start(|| EchoOnce, options);
        for i in 0..cycles {
            let mut c = connect_from(2 + (i % 250) as u8, server.addr);
            let msg = (i as u64).to_le_bytes();
            c.write_all(&msg).unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap();
            assert_eq!(back, msg, "{trigger:?} cycle {i}");
        }
        let (stats, open) = server.stop();
        assert_eq!(open, 0, "{trigger:?}: connections left in the table");
        assert_eq!(stats.accepts, cycles as u64);
    }
    assert_eq!(fd_count(), baseline, "fds leaked");
}

#[test]
fn two_thousand_cycles_leak_nothing() {
    churn(2_000);
}

#[test]
#[ignore = "long: 100,000 cycles per mode; run with --release -- --ignored"]
fn a_hundred_thousand_cycles_leak_nothing() {
    churn(100_000);
}
