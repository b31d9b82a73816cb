//! Every fd the library creates is non-blocking and close-on-exec (failure
//! mode 4 in docs/failure-modes.md): the epoll fd, the waker's eventfd, a
//! signalfd, listening and accepted sockets, the accept path's reserve fd,
//! a worker pool's eventfd, Unix and UDP server sockets. Its own binary:
//! it scans the process's fd table.
#![cfg(feature = "server")]

mod util;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use edgeloop::server::{
    Datagram, DatagramHandler, DatagramOptions, DatagramServer, Pooled, ServerOptions,
    StreamServer, UnixPath, attach_pool,
};
use edgeloop::{Reactor, Signal};
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use util::server::Echo;

fn open_fds() -> BTreeSet<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

struct Nothing;
impl DatagramHandler for Nothing {
    fn on_datagram(&mut self, _: &mut Datagram<'_>, _: &[u8]) {}
}

#[test]
fn every_fd_the_library_creates_is_nonblocking_and_close_on_exec() {
    let before = open_fds();
    let mut reactor = Reactor::new().unwrap();
    edgeloop::on_signals(&mut reactor, &[Signal::SIGUSR2], |_, _| {}).unwrap();
    let mut tcp = StreamServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Pooled::new(|r: &[u8]| r.to_vec(), 1, 4).unwrap(),
        ServerOptions::default(),
    )
    .unwrap();
    let set = tcp.connections_id();
    attach_pool(tcp.reactor(), set).unwrap();
    let path = std::env::temp_dir().join(format!("edgeloop-flags-{}.sock", std::process::id()));
    let unix = StreamServer::bind_unix(
        &UnixPath::File(path.clone()),
        None,
        Echo,
        ServerOptions::default(),
    )
    .unwrap();
    let udp = DatagramServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Nothing,
        DatagramOptions::default(),
    )
    .unwrap();
    // An accepted connection too.
    let mut client = TcpStream::connect(tcp.local_addr()).unwrap();
    client.write_all(b"x").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    while tcp.connections().is_empty() || tcp.connections().requests() == 0 {
        tcp.reactor()
            .run_once(Some(Duration::from_millis(50)))
            .unwrap();
    }
    let client_fd = std::os::fd::AsRawFd::as_raw_fd(&client);
    let created: Vec<i32> = open_fds()
        .difference(&before)
        .copied()
        .filter(|&fd| fd != client_fd)
        .collect();
    assert!(created.len() >= 12, "saw only {created:?}");
    for fd in &created {
        // SAFETY: the fd is open for this scan (the objects owning it live).
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
        let Ok(fd_flags) = fcntl(borrowed, FcntlArg::F_GETFD) else {
            continue; // the read_dir fd of open_fds itself, closed by now
        };
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
        assert!(
            FdFlag::from_bits_truncate(fd_flags).contains(FdFlag::FD_CLOEXEC),
            "fd {fd} ({target:?}) is inheritable"
        );
        let fl = fcntl(borrowed, FcntlArg::F_GETFL).unwrap();
        assert!(
            OFlag::from_bits_truncate(fl).contains(OFlag::O_NONBLOCK),
            "fd {fd} ({target:?}) is blocking"
        );
    }
    drop((reactor, tcp, unix, udp, client));
}
