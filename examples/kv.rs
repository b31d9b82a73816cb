//! A line-based key-value server: the store is the reactor's loop state,
//! reached from every handler call, a stats timer and a feeder thread.
//!
//! Run: `cargo run --example kv -- --addr 127.0.0.1:7001 [--feed 1000]`,
//! then `printf 'SET a 1\nGET a\nSTATS\nQUIT\n' | nc 127.0.0.1 7001`.
//!
//! Protocol, one command per line, one reply line each, in order:
//! `SET <key> <value>` → `OK`; `GET <key>` → `VALUE <value>` or
//! `NOT_FOUND`; `DEL <key>` → `DELETED` or `NOT_FOUND`; `STATS` →
//! `STATS keys=<n> connections=<n> commands=<n>`; `QUIT` → `BYE`, then the
//! connection closes; anything else → `ERROR <reason>`; a line over 64 KiB
//! → `ERROR line too long`, then the connection closes. Keys and values
//! are bytes (anything but space and newline in a key, anything but
//! newline in a value), stored and returned as sent.
//!
//! One reactor holds the store: `--workers` and `--processes` above 1 are
//! refused.
//!
//! What to look for: no `RefCell`, no thread-local, no lock. Replies to
//! pipelined commands leave in one `send` per read (the connection layer
//! coalesces a handler call's writes), and SIGINT/SIGTERM deliver every
//! reply owed before the process exits 0.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use clap::Parser;
use edgeloop::Core;
use edgeloop::conn::{CloseReason, Conn, ConnId, Handler};

/// The longest command line accepted.
const MAX_LINE: usize = 64 * 1024;

/// The loop state: what every callback of the reactor reaches.
#[derive(Default)]
struct Store {
    map: HashMap<Vec<u8>, Vec<u8>>,
    commands: u64,
    connections: usize,
}

/// The handler; each connection's session is its unfinished line.
struct Kv;

impl Handler<Store> for Kv {
    type Session = Vec<u8>;

    fn on_open(&mut self, conn: &mut Conn<'_, Self, Store>) {
        conn.data().connections += 1;
    }

    fn on_data(&mut self, conn: &mut Conn<'_, Self, Store>, data: &[u8]) {
        let mut line = std::mem::take(conn.session());
        for chunk in data.split_inclusive(|&b| b == b'\n') {
            line.extend_from_slice(chunk);
            if line.len() > MAX_LINE + 1 {
                conn.write(b"ERROR line too long\n");
                return conn.close();
            }
            if line.last() != Some(&b'\n') {
                break; // the rest of this line comes in a later read
            }
            let command = &line[..line.len() - 1];
            let command = command.strip_suffix(b"\r").unwrap_or(command);
            let quit = execute(conn, command);
            line.clear();
            if quit {
                return conn.close();
            }
        }
        *conn.session() = line;
    }

    fn on_close(&mut self, core: &mut Core<Store>, _: ConnId, _: Vec<u8>, _: CloseReason) {
        core.data_mut().connections -= 1;
    }
}

/// Runs one command and writes its reply; true for QUIT.
fn execute(conn: &mut Conn<'_, Kv, Store>, line: &[u8]) -> bool {
    let store = conn.data();
    store.commands += 1;
    let mut words = line.splitn(3, |&b| b == b' ');
    match (words.next(), words.next(), words.next()) {
        (Some(b"SET"), Some(key), Some(value)) => {
            store.map.insert(key.to_vec(), value.to_vec());
            conn.write(b"OK\n");
        }
        (Some(b"GET"), Some(key), None) => match store.map.get(key) {
            Some(value) => {
                let mut reply = Vec::with_capacity(value.len() + 7);
                reply.extend_from_slice(b"VALUE ");
                reply.extend_from_slice(value);
                reply.push(b'\n');
                conn.write(&reply);
            }
            None => conn.write(b"NOT_FOUND\n"),
        },
        (Some(b"DEL"), Some(key), None) => match store.map.remove(key) {
            Some(_) => conn.write(b"DELETED\n"),
            None => conn.write(b"NOT_FOUND\n"),
        },
        (Some(b"STATS"), None, None) => {
            let reply = format!(
                "STATS keys={} connections={} commands={}\n",
                store.map.len(),
                store.connections,
                store.commands
            );
            conn.write(reply.as_bytes());
        }
        (Some(b"QUIT"), None, None) => {
            conn.write(b"BYE\n");
            return true;
        }
        (Some(command @ (b"SET" | b"GET" | b"DEL" | b"STATS" | b"QUIT")), ..) => {
            let reply = format!(
                "ERROR wrong arguments for {}\n",
                String::from_utf8_lossy(command)
            );
            conn.write(reply.as_bytes());
        }
        _ => conn.write(b"ERROR unknown command\n"),
    }
    false
}

/// A line-based key-value server on edgeloop.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,
    /// A feeder thread puts keys fed:0 .. fed:N-1 through the loop's handle.
    #[arg(long, default_value_t = 0)]
    feed: u64,
    /// Seconds between stats lines in the log.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    stats_every: u64,
}

fn main() {
    env_logger::init();
    let args = Args::parse();
    common::exit_on_error(run(&args));
}

fn run(args: &Args) -> std::io::Result<()> {
    args.server.one_reactor("kv")?;
    let mut reactor = args.server.reactor_with(Store::default())?;
    reactor
        .core_mut()
        .call_every(Duration::from_secs(args.stats_every), |r| {
            let store = r.core().data();
            log::info!(
                "keys={} connections={} commands={}",
                store.map.len(),
                store.connections,
                store.commands
            );
        });
    let (mut handle, feed) = (Some(reactor.core().handle()), args.feed);
    // The feeder starts from the loop's first turn: by then serve_on has
    // blocked SIGINT and SIGTERM in this thread (they go to the loop's
    // signalfd), and a thread inherits the mask it is started with. One
    // started before would take a SIGTERM itself, and die of it.
    reactor.core_mut().call_later(Duration::ZERO, move |_| {
        let Some(handle) = handle.take() else {
            return;
        };
        std::thread::spawn(move || {
            for i in 0..feed {
                handle.post(move |r| {
                    r.core_mut()
                        .data_mut()
                        .map
                        .insert(format!("fed:{i}").into_bytes(), i.to_string().into_bytes());
                });
            }
        });
    });
    common::serve_on(&args.server, reactor, Kv)
}
