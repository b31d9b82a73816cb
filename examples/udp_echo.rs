//! A UDP echo server: every datagram comes back to its sender.
//!
//! Run: `cargo run --example udp_echo -- --addr 127.0.0.1:7003`, then
//! `nc -u 127.0.0.1 7003`. Flags: `--addr HOST:PORT` (port 0 picks one),
//! `--max-packet BYTES` (the receive buffer), `--backend epoll|poll|select`.
//!
//! What to look for: it prints `listening on HOST:PORT` once bound. A
//! datagram longer than `--max-packet` is logged as truncated (with its real
//! length) and echoed cut, never silently; an empty datagram is echoed
//! empty. SIGINT/SIGTERM exit 0.

mod common;

use std::io;
use std::net::SocketAddr;

use clap::Parser;
use edgeloop::server::{Datagram, DatagramHandler, DatagramOptions, DatagramServer};

/// UDP echo server on edgeloop.
///
/// Every datagram comes back. Look for: a datagram longer than
/// --max-packet is reported truncated (at most one warning a second).
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Address to bind (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7003")]
    addr: SocketAddr,
    /// Receive buffer in bytes: longer datagrams are reported truncated.
    #[arg(long, default_value_t = 65_536, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_packet: usize,
    /// Selector backend: epoll, poll or select.
    #[arg(long, default_value = "epoll")]
    backend: edgeloop::Backend,
}

/// Echoes; warns about truncated datagrams and failed replies at most once
/// a second each, with how many were not logged (a flood of oversized
/// datagrams must not become a flood of log lines).
#[derive(Default)]
struct Echo {
    truncated: RateLimited,
    failed: RateLimited,
}

/// Counts events and says when one may be logged: at most once a second.
#[derive(Default)]
struct RateLimited {
    last: Option<std::time::Instant>,
    unlogged: u64,
}

impl RateLimited {
    /// `Some(events not logged since the last line)` when this one may be.
    fn hit(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1))
        {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

impl DatagramHandler for Echo {
    fn on_datagram(&mut self, datagram: &mut Datagram<'_>, data: &[u8]) {
        if let Some(len) = datagram.truncated() {
            if let Some(more) = self.truncated.hit() {
                log::warn!(
                    "datagram of {len} bytes from {:?} truncated to {} ({more} more since the \
                     last warning)",
                    datagram.peer(),
                    data.len()
                );
            }
        }
        if let Err(e) = datagram.reply(data) {
            if let Some(more) = self.failed.hit() {
                log::warn!(
                    "reply to {:?}: {e} ({more} more since the last warning)",
                    datagram.peer()
                );
            }
        }
    }
}

fn main() {
    env_logger::init();
    let cli = Cli::parse();
    common::exit_on_error(run(&cli));
}

fn run(cli: &Cli) -> io::Result<()> {
    let options = DatagramOptions::default()
        .with_backend(cli.backend)
        .with_max_packet_size(cli.max_packet);
    let mut server = DatagramServer::bind(cli.addr, Echo::default(), options)?;
    let (shutdown, local) = (server.shutdown_handle(), server.local_addr().to_string());
    common::announce(server.reactor(), shutdown, &local)?;
    server.serve_forever()
}
