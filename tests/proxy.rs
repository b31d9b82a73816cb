//! The `proxy` example from outside, as other tools drive it: its command
//! line (`--listen`, `--upstream`, `--mode`, `--connect-timeout-ms`,
//! `--idle-timeout`, one `listening on HOST:PORT` line), and a SIGTERM in
//! the middle of a transfer, which stops accepting and lets the stream
//! finish. (What the pairing does is tests/pairs.rs.)
#![cfg(feature = "server")]

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::process::{exited_within, spawn_example};

#[test]
fn a_sigterm_mid_transfer_lets_the_stream_finish_then_exits_0() {
    for mode in ["et", "lt"] {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let up_addr = upstream.local_addr().unwrap().to_string();
        let mut proxy = spawn_example(
            "proxy",
            &[
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &up_addr,
                "--mode",
                mode,
                "--connect-timeout-ms",
                "2000",
                "--idle-timeout",
                "30",
            ],
        );
        let mut client = util::connect(proxy.addr.as_str());
        let (mut accepted, _) = upstream.accept().unwrap();
        // The upstream sends 8 MiB over about a second, then its EOF.
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let sender = {
            let chunk = chunk.clone();
            let mut w = accepted.try_clone().unwrap();
            std::thread::spawn(move || {
                for _ in 0..128 {
                    w.write_all(&chunk).unwrap();
                    std::thread::sleep(Duration::from_millis(8));
                }
                w.shutdown(Shutdown::Write).unwrap();
            })
        };
        std::thread::sleep(Duration::from_millis(150));
        let pid = Pid::from_raw(proxy.child.id() as i32);
        kill(pid, Signal::SIGTERM).unwrap();
        // Accepting stops: a new client is refused once the signal is in.
        // (One connect only: one accepted would open a pair of its own,
        // which the drain would rightly wait for.)
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            TcpStream::connect(proxy.addr.as_str()).is_err(),
            "{mode}: still accepting after SIGTERM"
        );
        // The stream in flight finishes, every byte, then EOF.
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 128 * chunk.len(), "{mode}: the whole stream");
        assert!(got.chunks(chunk.len()).all(|c| c == chunk), "{mode}");
        sender.join().unwrap();
        // The client is done too: the pair ends, and so does the proxy.
        client.write_all(b"bye").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        accepted.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"bye", "{mode}");
        let status = exited_within(&mut proxy.child, Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{mode}: {status:?}");
    }
}
