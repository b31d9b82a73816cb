//! The smallest edgeloop program: one socket pair, one edge-triggered
//! registration, one timer, one post from another thread.
//!
//! Run: `cargo run --example hello` (add `RUST_LOG=trace` to see every
//! registration change and dispatch the reactor logs).
//!
//! What to look for: the callback drains the socket until WouldBlock (an
//! edge-triggered reader must), and the Stats line at the end counts the
//! loop's own syscalls.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use clap::Parser;
use edgeloop::{Interest, PostAction, Reactor, Trigger};

/// The smallest edgeloop program: one socket pair, one edge-triggered
/// registration, one timer, one post from another thread.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {}

fn main() -> std::io::Result<()> {
    Args::parse();
    env_logger::init();
    let mut reactor = Reactor::new()?;
    let (ours, mut theirs) = UnixStream::pair()?;
    ours.set_nonblocking(true)?;

    // The reactor owns `ours` from here on and lends it to the callback.
    reactor
        .core_mut()
        .register(ours, Interest::READABLE, Trigger::Edge, |_, ours, event| {
            let mut buf = [0u8; 4];
            loop {
                match ours.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => println!("{event:?}: {:?}", String::from_utf8_lossy(&buf[..n])),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
            PostAction::Continue
        })?;

    theirs.write_all(b"hello, edge")?;
    let handle = reactor.core().handle();
    std::thread::spawn(move || handle.post(|_| println!("posted from another thread")));
    reactor
        .core_mut()
        .call_later(Duration::from_millis(50), |reactor| {
            println!("timer fired; stopping");
            reactor.core_mut().stop();
        });
    reactor.run()?;
    println!("{:?}", reactor.core().stats());
    Ok(())
}
