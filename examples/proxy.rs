//! A TCP forwarding proxy: every accepted connection is joined to a new
//! connection to the upstream, and bytes flow both ways until both sides
//! are done.
//!
//! Run: `cargo run --release --example proxy -- --listen 127.0.0.1:8000
//! --upstream 127.0.0.1:7000` (with `echo` on 7000), then `nc 127.0.0.1
//! 8000`. Flags: `--listen ADDR` (port 0 picks one), `--upstream ADDR`,
//! `--mode lt|et`, `--connect-timeout-ms MS`, `--idle-timeout SECONDS`
//! (0: never).
//!
//! What to look for: it prints exactly one line, `listening on HOST:PORT`,
//! once it accepts. The forwarding is the connection set's pairing
//! (`Conn::pair_with`): a slow reader pauses the side that feeds it and
//! nothing else, a half-close passes through, a reset on one side resets
//! the other, idle time counts traffic either way. SIGINT or SIGTERM
//! stops accepting and lets the open streams finish (up to 30 s; what is
//! left then is reset, never cut with a clean EOF), then exits 0.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use edgeloop::conn::{Conn, ConnId, ConnectOptions, Handler, Others, ShutdownMode, tcp_listener};
use edgeloop::server::{ServerOptions, StreamServer};
use edgeloop::{Reactor, Trigger};

/// TCP forwarding proxy on edgeloop.
///
/// Joins each accepted connection to a new connection to --upstream.
/// Prints `listening on HOST:PORT` once it accepts; SIGINT or SIGTERM
/// stops accepting, lets open streams finish, and exits 0.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long)]
    listen: SocketAddr,
    /// Address to forward each connection to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Readiness mode of the connections.
    #[arg(long, value_enum, default_value = "et")]
    mode: common::Mode,
    /// Give up on an upstream connect after this many milliseconds (the
    /// client is reset).
    #[arg(long, default_value_t = 5000)]
    connect_timeout_ms: u64,
    /// Close a pair with no traffic either way for this many seconds
    /// (0: never).
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
}

/// Which side of a pair a connection is.
#[derive(Default)]
enum Side {
    /// Accepted: its upstream is opened and paired with it in `on_open`.
    #[default]
    Client,
    Upstream,
}

struct Proxy {
    upstream: SocketAddr,
    connect: ConnectOptions,
}

impl Handler for Proxy {
    type Session = Side;

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        if let Side::Client = conn.session() {
            let upstream = conn.connect(self.upstream, self.connect, Side::Upstream);
            if let Err(e) = upstream.and_then(|id| conn.pair_with(id)) {
                log::warn!("{:?}: upstream {}: {e}", conn.id(), self.upstream);
                conn.abort();
            }
        }
    }

    /// Not called: a pair's bytes go straight to the other side.
    fn on_data(&mut self, _: &mut Conn<'_, Self>, _: &[u8]) {}

    /// The client was reset by the set already; this says why.
    fn on_connect_failed(
        &mut self,
        _: &mut Others<'_, Self>,
        id: ConnId,
        _: Side,
        error: std::io::Error,
    ) {
        log::info!("upstream {id:?} to {}: {error}", self.upstream);
    }
}

/// Queued bytes per side above which the side feeding it pauses: with the
/// kernel's socket buffers behind it, enough to keep a transfer moving.
/// A stalled side holds at most this plus one 64 KiB read, so about 500
/// stalled readers fit in the set's 64 MiB budget (`max_queued_total`)
/// before it starts pausing and, after its grace, resetting the longest.
const HIGH_WATER: usize = 64 * 1024;

fn main() {
    env_logger::init();
    let cli = Cli::parse();
    common::exit_on_error(serve(&cli));
}

fn serve(cli: &Cli) -> std::io::Result<()> {
    let mut options = ServerOptions::default()
        .with_shutdown_mode(ShutdownMode::Drain)
        .with_shutdown_grace(Duration::from_secs(30));
    options.conn = options
        .conn
        .water_marks(HIGH_WATER)
        .with_read_chunk(64 * 1024);
    options.conn.trigger = match cli.mode {
        common::Mode::Lt => Trigger::Level,
        common::Mode::Et => Trigger::Edge,
    };
    options.conn.idle_timeout =
        (cli.idle_timeout > 0).then(|| Duration::from_secs(cli.idle_timeout));
    let proxy = Proxy {
        upstream: cli.upstream,
        connect: ConnectOptions::default()
            .with_timeout(Some(Duration::from_millis(cli.connect_timeout_ms))),
    };
    let listener = tcp_listener(cli.listen, None, false)?;
    let mut server = StreamServer::from_tcp(Reactor::new()?, listener, proxy, options)?;
    let (shutdown, local) = (server.shutdown_handle(), server.local_addr().to_string());
    common::announce(server.reactor(), shutdown, &local)?;
    server.serve_forever()?;
    log::info!("loop: {:?}", server.reactor().core().stats());
    log::info!("connections: {:?}", server.stats());
    Ok(())
}
