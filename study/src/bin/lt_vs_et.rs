//! Level vs edge vs oneshot, made visible.
//!
//! Run: `cargo run -p edgeloop-study --bin lt_vs_et` (`--help` explains the scenarios).
//!
//! Part 1, the trace: one scripted byte sequence on three socket pairs, each
//! watched by its own epoll instance with a different trigger. Every cell is
//! what a real `epoll_wait` (or `read`) returned, step by step, with the
//! reason. Look for the step marked HANGS: an edge-triggered reader that
//! stops before EAGAIN is never told again about the bytes it left behind.
//!
//! Part 2, the cost: the same echo workload (64-byte messages, one in
//! flight per connection) served in LT, ET with the short-read rule, and ET
//! draining to EAGAIN, with the server's own syscalls per message from its
//! Stats.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use clap::Parser;
use edgeloop::conn::{Conn, ConnOptions, ConnStats, Handler};
use edgeloop::server::{ServerOptions, StreamServer};

use edgeloop::{Stats, Trigger};
use edgeloop_study::trace::{Action, Outcome, TRIGGERS, trace_triggers};

/// Level- vs edge-triggered readiness, shown with real epoll calls.
///
/// Scenario 1 (trace): 10 bytes arrive; read 3; wait; 5 more arrive; wait;
/// re-arm; wait; read to EAGAIN; wait; the peer shuts down; wait; read EOF.
/// Scenario 2 (cost): an echo workload in LT, ET (short-read rule) and ET
/// (drain to EAGAIN), counting the server's syscalls per message.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    /// Only the trace (scenario 1).
    #[arg(long)]
    trace_only: bool,
    /// Connections for scenario 2.
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    connections: usize,
    /// Round trips per connection for scenario 2.
    #[arg(long, default_value_t = 2000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    messages: usize,
}

fn cell(outcome: Outcome) -> String {
    match outcome {
        Outcome::Done => "·".into(),
        Outcome::Event(ready) => format!("{ready:?}"),
        Outcome::Nothing => "(nothing)".into(),
        Outcome::Bytes(0) => "0 bytes: EOF".into(),
        Outcome::Bytes(n) => format!("{n} bytes"),
        Outcome::WouldBlock => "EAGAIN".into(),
    }
}

fn action(a: Action) -> String {
    match a {
        Action::PeerWrites(n) => format!("peer writes {n} B"),
        Action::Read(n) => format!("read {n} B"),
        Action::Drain => "read to EAGAIN".into(),
        Action::Wait => "epoll_wait".into(),
        Action::Rearm => "EPOLL_CTL_MOD".into(),
        Action::PeerShutsDown => "peer SHUT_WR".into(),
    }
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    println!("Scenario 1: one byte sequence, three triggers, real epoll_wait results\n");
    println!(
        "| # | action | {:?} | {:?} | {:?} | why |",
        TRIGGERS[0], TRIGGERS[1], TRIGGERS[2]
    );
    println!("|---|---|---|---|---|---|");
    for (i, step) in trace_triggers()?.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            i + 1,
            action(step.action),
            cell(step.seen[0]),
            cell(step.seen[1]),
            cell(step.seen[2]),
            step.why
        );
    }
    if cli.trace_only {
        return Ok(());
    }
    println!("\nScenario 2: the same echo workload, server syscalls per message (from Stats)\n");
    println!("| mode | messages | epoll_wait | epoll_ctl | read | EAGAIN read | write | total |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, conn) in [
        ("LT", ConnOptions::with_trigger(Trigger::Level)),
        (
            "ET, short-read rule",
            ConnOptions::with_trigger(Trigger::Edge),
        ),
        (
            "ET, drain to EAGAIN",
            ConnOptions::with_trigger(Trigger::Edge).with_short_read(false),
        ),
    ] {
        let (stats, io, messages) = echo_workload(conn, cli.connections, cli.messages)?;
        let per = |n: u64| n as f64 / messages as f64;
        println!(
            "| {name} | {messages} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            per(stats.waits),
            per(stats.ctls),
            per(io.reads),
            per(io.eagain_reads),
            per(io.writes),
            per(stats.syscalls() + io.syscalls())
        );
    }
    println!(
        "\nLT: one read per message, the kernel re-reports what is left. ET with the short-read \
         rule: one read, since a short read means the buffer was empty and new data raises a new \
         edge. ET draining: a second read per message, which returns EAGAIN unless the next \
         message already arrived. epoll_ctl: only each connection's ADD and DEL here (no write \
         had to wait); LT pays two more per stalled write."
    );
    Ok(())
}

struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(data);
    }
}

/// Serves `connections` clients doing `messages` 64-byte round trips each;
/// returns the server's loop and connection counters over the run and the
/// messages echoed.
fn echo_workload(
    conn: ConnOptions,
    connections: usize,
    messages: usize,
) -> io::Result<(Stats, ConnStats, u64)> {
    let options = ServerOptions::default().with_conn(conn);
    let mut server = StreamServer::bind("127.0.0.1:0".parse().unwrap(), Echo, options)?;
    let addr = server.local_addr().to_string();
    let shutdown = server.shutdown_handle();
    let clients = std::thread::spawn(move || -> io::Result<()> {
        let threads: Vec<_> = (0..connections)
            .map(|_| {
                let addr = addr.clone();
                std::thread::spawn(move || -> io::Result<()> {
                    let mut c = TcpStream::connect(addr)?;
                    c.set_nodelay(true)?;
                    c.set_read_timeout(Some(Duration::from_secs(10)))?;
                    let mut buf = [0u8; 64];
                    for i in 0..messages {
                        buf[0] = i as u8;
                        c.write_all(&buf)?;
                        c.read_exact(&mut buf)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for t in threads {
            t.join().expect("client thread")?;
        }
        shutdown.shutdown();
        Ok(())
    });
    server.serve_forever()?;
    clients.join().expect("clients")?;
    Ok((
        *server.reactor().core().stats(),
        *server.stats(),
        (connections * messages) as u64,
    ))
}
