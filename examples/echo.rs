//! The classic echo server: every byte a client sends comes back.
//!
//! Run: `cargo run --release --example echo -- --addr 127.0.0.1:7000 --mode et`
//! then `nc 127.0.0.1 7000`. Flags: `--addr HOST:PORT` (port 0 picks one),
//! `--mode lt|et`, `--backend epoll|poll|select`, `--max-pending BYTES`,
//! `--workers N` (N reactors on N threads sharing the port through
//! SO_REUSEPORT).
//!
//! What to look for: it prints exactly one line, `listening on HOST:PORT`,
//! once it accepts connections. SIGINT or SIGTERM stops accepting, flushes
//! what is queued, and exits 0. `RUST_LOG=info` prints the loop's Stats at
//! exit: syscalls per echoed message are `(waits + ctls + reads + writes) /
//! messages`.

mod common;

use clap::Parser;
use edgeloop::conn::{Conn, Handler};

/// Echo server on edgeloop.
///
/// Every byte a client sends comes back. Prints `listening on HOST:PORT`
/// once it accepts; SIGINT or SIGTERM stops accepting, flushes what is
/// queued and exits 0. Look for: `RUST_LOG=info` prints the loop's and the
/// connections' counters at exit (syscalls per message).
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
}

struct Echo;

impl Handler for Echo {
    type Session = ();

    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(data);
    }
}

fn main() {
    env_logger::init();
    let cli = Cli::parse();
    common::exit_on_error(common::serve_workers(&cli.server, || Echo));
}
