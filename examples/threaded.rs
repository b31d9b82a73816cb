//! Slow requests on a worker pool, fast I/O on the loop: each request (what
//! one read returns) sleeps 100 ms on a pool thread, then is echoed back in
//! upper case, in order per connection.
//!
//! Run: `cargo run --example threaded -- --addr 127.0.0.1:7004 --threads 4`.
//! Same flags as `echo`, plus `--threads` and `--queue`.
//!
//! What to look for: a second client keeps getting its replies after 100 ms
//! while the first one is busy, because the slow part runs on the pool and
//! the loop never blocks. When the pool's queue is full, the connections
//! that would overflow it stop being read until a slot frees: memory stays
//! bounded.

mod common;

use std::io;
use std::time::Duration;

use clap::Parser;
use edgeloop::server::{Pooled, TcpServer, attach_pool};

/// Echo server whose handler is slow, served by a thread pool.
///
/// Each request sleeps --delay-ms on the pool, then comes back in upper
/// case, in order per connection. Look for: another client keeps being
/// served meanwhile (round-robin), and SIGTERM delivers replies in flight,
/// then exits 0.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
    /// Pool threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Requests the pool holds at once (queued or running).
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Milliseconds each request takes.
    #[arg(long, default_value_t = 100)]
    delay_ms: u64,
}

fn main() {
    env_logger::init();
    let cli = Cli::parse();
    common::exit_on_error(run(&cli));
}

fn run(cli: &Cli) -> io::Result<()> {
    if cli.server.workers > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--workers: threaded runs one reactor and scales with --threads",
        ));
    }
    let delay = Duration::from_millis(cli.delay_ms);
    let slow = move |request: &[u8]| {
        std::thread::sleep(delay);
        request.to_ascii_uppercase()
    };
    let pooled = Pooled::new(slow, cli.threads, cli.queue)?;
    let listener = edgeloop::server::net::tcp_listener(cli.server.addr, None, false)?;
    let mut server = TcpServer::from_tcp(
        cli.server.reactor()?,
        listener,
        pooled,
        cli.server.options(),
    )?;
    let connections = server.connections_id();
    attach_pool(server.reactor(), connections)?;
    let (shutdown, local) = (server.shutdown_handle(), server.local_addr().to_string());
    common::announce(server.reactor(), shutdown, &local)?;
    server.serve_forever()
}
