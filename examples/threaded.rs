//! Slow requests on a worker pool, fast ones on the loop. Line protocol: a
//! line starting with `slow` runs on a pool thread (it sleeps `--delay-ms`,
//! default 100, then comes back upper-cased); any other line is echoed
//! unchanged at once, from the loop. Replies keep request order per
//! connection.
//!
//! Run: `cargo run --example threaded -- --addr 127.0.0.1:7004 --threads 4`.
//! Same flags as `echo`, plus `--threads`, `--queue` and `--delay-ms`.
//!
//! What to look for: while one client's `slow` lines run, a second client's
//! lines come back at once: the slow part runs on the pool and the loop
//! never blocks. On one connection, a quick line sent after a slow one
//! waits for it (order is kept). When the pool's queue is full, the
//! connections that would overflow it stop being read until a slot frees:
//! memory stays bounded.

mod common;

use std::io;
use std::time::Duration;

use clap::Parser;
use edgeloop::server::{Blocking, Pooled, StreamServer, attach_pool};

/// Line echo server whose `slow` lines run on a thread pool.
///
/// A line starting with `slow` sleeps --delay-ms on the pool, then comes
/// back upper-cased; any other line is echoed at once from the loop;
/// replies keep request order per connection. Look for: another client
/// keeps getting instant echoes meanwhile, and SIGTERM delivers replies in
/// flight, then exits 0.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
    /// Pool threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Requests the pool holds at once (queued or running).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    queue: u32,
    /// Milliseconds each `slow` line takes.
    #[arg(long, default_value_t = 100)]
    delay_ms: u64,
}

/// `slow` lines: sleep, then upper-case, on the pool. Others: echoed as
/// they are, on the loop.
struct SlowUpper {
    delay: Duration,
}

impl Blocking for SlowUpper {
    fn handle(&self, line: &[u8]) -> Vec<u8> {
        std::thread::sleep(self.delay);
        line.to_ascii_uppercase()
    }

    fn quick(&self, line: &[u8]) -> Option<Vec<u8>> {
        (!line.starts_with(b"slow")).then(|| line.to_vec())
    }
}

fn main() {
    env_logger::init();
    let cli = Cli::parse();
    common::exit_on_error(run(&cli));
}

fn run(cli: &Cli) -> io::Result<()> {
    cli.server
        .one_reactor("threaded (it scales with --threads)")?;
    let slow = SlowUpper {
        delay: Duration::from_millis(cli.delay_ms),
    };
    let pooled = Pooled::new(slow, cli.threads as usize, cli.queue as usize)?.lines();
    let listener = edgeloop::conn::tcp_listener(cli.server.addr, None, false)?;
    let mut server = StreamServer::from_tcp(
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
