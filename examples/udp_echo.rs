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
use edgeloop::server::{Datagram, DatagramHandler, DatagramOptions, UdpServer};

/// UDP echo server on edgeloop.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Address to bind (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7003")]
    addr: SocketAddr,
    /// Receive buffer in bytes: longer datagrams are reported truncated.
    #[arg(long, default_value_t = 65_536)]
    max_packet: usize,
    /// Selector backend: epoll, poll or select.
    #[arg(long, default_value = "epoll")]
    backend: edgeloop::Backend,
}

struct Echo;

impl DatagramHandler for Echo {
    fn on_datagram(&mut self, datagram: &mut Datagram<'_>, data: &[u8]) {
        if let Some(len) = datagram.truncated() {
            log::warn!(
                "datagram of {len} bytes from {:?} truncated to {}",
                datagram.peer(),
                data.len()
            );
        }
        if let Err(e) = datagram.reply(data) {
            log::warn!("reply to {:?}: {e}", datagram.peer());
        }
    }
}

fn main() {
    env_logger::init();
    let cli = Cli::parse();
    common::exit_on_error(run(&cli));
}

fn run(cli: &Cli) -> io::Result<()> {
    let options = DatagramOptions {
        backend: cli.backend,
        max_packet_size: cli.max_packet,
        ..DatagramOptions::default()
    };
    let mut server = UdpServer::bind(cli.addr, Echo, options)?;
    let (shutdown, local) = (server.shutdown_handle(), server.local_addr().to_string());
    common::announce(server.reactor(), shutdown, &local)?;
    server.serve_forever()
}
