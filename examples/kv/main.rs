//! A key-value server that redis-cli and redis-benchmark talk to: RESP2
//! by default (`--protocol line` for a line protocol you can type into
//! `nc`). The store is the reactor's loop state, reached from every
//! handler call, a stats timer and a feeder thread.
//!
//! Run: `cargo run --release --example kv -- --addr 127.0.0.1:7001`, then
//! `redis-cli -p 7001 SET a 1`, `redis-cli -p 7001 GET a`, or
//! `redis-benchmark -p 7001 -t set,get -P 16`.
//!
//! RESP: PING, ECHO, SET (NX, XX, GET), GET, DEL, EXISTS, INCR, MGET, MSET,
//! DBSIZE, FLUSHALL, SELECT 0, QUIT, and what clients ask when they start
//! (COMMAND, CONFIG GET, HELLO, INFO). Replies are Redis 7.0's, byte for
//! byte, errors included (resp.rs and commands.rs say where this server
//! differs: no expiry, no RESP3, a request size limit). A protocol error
//! gets `-ERR Protocol error: ...` and the connection closes, as in Redis.
//!
//! A request must be finished within `--request-timeout` seconds of its
//! first byte: a client trickling a byte a second is answered with an error
//! and closed (`--idle-timeout` alone would count the trickle as activity).
//!
//! `--processes N` above 1 is refused unless `--separate-stores` says the
//! user knows what it gives: N processes on one port, each with its own
//! store, as N redis-servers would be, so a SET on one connection and a
//! GET on another may disagree (a benchmark's configuration, not a
//! key-value server). `--workers` above 1 is refused.
//!
//! Bounded work and memory: one handler call stops once the connection
//! holds [`OUTPUT_CAP`] of replies and hands the rest of its input back
//! to the set ([`Conn::defer`]), so a read of many GETs of a large value
//! never queues more than about one cap; unfinished requests over all
//! connections hold at most `--max-pending-total` bytes (past it, the
//! connection that would grow them is answered an error and closed).
//!
//! What to look for: no `RefCell`, no thread-local, no lock. Replies to
//! pipelined commands leave in one `send` per read (each read's replies go
//! out in one write), and SIGINT/SIGTERM deliver every reply owed before
//! the process exits 0.

mod commands;
#[path = "../common/mod.rs"]
mod common;
mod line;
mod resp;

use griddle::HashMap;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use edgeloop::conn::{CloseReason, Conn, ConnId, Handler, Others};

use commands::After;
use common::OUTPUT_CAP;
use resp::Parsed;

/// Replies gathered past this size go out before the next command runs,
/// so a read of many large GETs queues through the connection layer's
/// output budget, not in a buffer of its own.
const WRITE_AT: usize = 64 * 1024;

/// The loop state: what every callback of the reactor reaches.
#[derive(Default)]
struct Store {
    map: HashMap<Vec<u8>, Vec<u8>>,
    commands: u64,
    connections: usize,
    /// Bytes the connections' unfinished requests hold (their buffers'
    /// capacity), against `--max-pending-total`.
    pending: usize,
}

impl Store {
    /// Sets `key` to `value`, reusing the old value's allocation.
    fn put(&mut self, key: &[u8], value: &[u8]) {
        match self.map.get_mut(key) {
            Some(old) => {
                old.clear();
                old.extend_from_slice(value);
            }
            None => {
                self.map.insert(key.to_vec(), value.to_vec());
            }
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// RESP2, as Redis speaks it.
    Resp,
    /// One command per line (SET k v, GET k, DEL k, STATS, QUIT).
    Line,
}

/// The handler: what all connections share.
struct Kv {
    protocol: Protocol,
    max_request: usize,
    max_pending_total: usize,
    request_timeout: Duration,
    /// The replies to one read, sent in one write.
    out: Vec<u8>,
}

/// A connection's unfinished request.
#[derive(Default)]
struct Session {
    /// Its bytes so far: empty between requests.
    partial: Vec<u8>,
    parser: resp::Parser,
    /// When its first byte came.
    started: common::RequestClock,
}

impl Handler<Store> for Kv {
    type Session = Session;

    fn on_open(&mut self, conn: &mut Conn<'_, Self, Store>) {
        conn.data_mut().connections += 1;
    }

    fn on_data(&mut self, conn: &mut Conn<'_, Self, Store>, data: &[u8]) {
        let mut session = std::mem::take(conn.session());
        let held = session.held();
        let served = match self.protocol {
            Protocol::Resp => self.resp(conn, &mut session, data),
            Protocol::Line => {
                let cap = OUTPUT_CAP.saturating_sub(conn.queued());
                let store = conn.data_mut();
                let before = store.commands;
                let fed = line::feed(store, &mut session.partial, data, &mut self.out, cap);
                let (after, used) = fed.unwrap_or((After::Close, data.len()));
                conn.defer(&data[used..]);
                (conn.data().commands > before, after)
            }
        };
        let (completed, mut after) = served;
        let unfinished = after == After::Continue && !session.partial.is_empty();
        if session
            .started
            .overdue(unfinished, completed, self.request_timeout)
        {
            self.refuse_overdue();
            after = After::Close;
        }
        if session.partial.is_empty() && session.partial.capacity() > WRITE_AT {
            session.partial = Vec::new(); // an idle connection holds no buffer
        }
        session.parser.release();
        let store = conn.data_mut();
        store.pending = store.pending - held + session.held();
        if after == After::Continue && store.pending > self.max_pending_total {
            let message = format!(
                "ERR unfinished requests over all connections past {} bytes \
                 (--max-pending-total)",
                self.max_pending_total
            );
            self.refuse(message.as_bytes());
            after = After::Close;
        }
        if after == After::Close {
            // What it held goes back to the total now, not at its close.
            conn.data_mut().pending -= session.held();
            session = Session::default();
        }
        if !self.out.is_empty() {
            conn.write(&self.out);
            self.out.clear();
        }
        *conn.session() = session;
        if after == After::Close {
            conn.close();
        }
    }

    fn on_close(
        &mut self,
        others: &mut Others<'_, Self, Store>,
        _: ConnId,
        session: Session,
        _: CloseReason,
    ) {
        let store = others.data_mut();
        store.connections -= 1;
        store.pending -= session.held();
    }
}

impl Session {
    /// Bytes its unfinished request holds: the buffer and the parser's
    /// bookkeeping.
    fn held(&self) -> usize {
        self.partial.capacity() + self.parser.held()
    }
}

impl Kv {
    /// Runs every whole request in `data` (after the session's unfinished
    /// one) and keeps the unfinished tail. Returns whether a request ran,
    /// and what to do next.
    fn resp(
        &mut self,
        conn: &mut Conn<'_, Self, Store>,
        session: &mut Session,
        data: &[u8],
    ) -> (bool, After) {
        let fresh = session.partial.is_empty();
        if !fresh {
            session.partial.extend_from_slice(data);
        }
        let buf: &[u8] = if fresh { data } else { &session.partial };
        let (client, mut ran, mut after) = (conn.id().index() as u64, false, After::Continue);
        loop {
            match session.parser.parse(buf, self.max_request) {
                Parsed::Request => {
                    let args = session.parser.args(buf);
                    after = commands::execute(conn.data_mut(), client, &args, &mut self.out);
                    session.parser.finish();
                    ran = true;
                    if after == After::Close {
                        break;
                    }
                    if self.out.len() < WRITE_AT {
                        continue;
                    }
                    conn.write(&self.out);
                    self.out.clear();
                    if conn.queued() + WRITE_AT >= OUTPUT_CAP {
                        // Enough replies for now: the rest of the input
                        // comes back once the client has read them.
                        let start = session.parser.start();
                        conn.defer(&buf[start..]);
                        session.partial.clear();
                        session.parser = resp::Parser::default();
                        return (ran, after);
                    }
                }
                Parsed::Incomplete => break,
                Parsed::Error(message) => {
                    self.refuse(format!("ERR Protocol error: {message}").as_bytes());
                    after = After::Close;
                    break;
                }
            }
        }
        if after == After::Close {
            session.partial.clear();
            return (ran, after);
        }
        let start = session.parser.start();
        if fresh {
            session.partial.extend_from_slice(&data[start..]);
        } else {
            session.partial.drain(..start);
        }
        session.parser.rebase(start);
        (ran, after)
    }

    /// The reply to a request not finished within `--request-timeout`.
    fn refuse_overdue(&mut self) {
        let seconds = self.request_timeout.as_secs();
        let message = match self.protocol {
            Protocol::Resp => {
                format!("ERR Protocol error: request not finished within {seconds} s")
            }
            Protocol::Line => format!("ERROR line not finished within {seconds} s"),
        };
        self.refuse(message.as_bytes());
    }

    /// An error reply before the connection closes, in the protocol spoken
    /// (`message` starts with its code).
    fn refuse(&mut self, message: &[u8]) {
        match self.protocol {
            Protocol::Resp => resp::reply::error(&mut self.out, message),
            Protocol::Line => {
                self.out.extend_from_slice(message);
                self.out.push(b'\n');
            }
        }
    }
}

/// A key-value server on edgeloop: RESP2 (redis-cli, redis-benchmark) or
/// a line protocol.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,
    /// The protocol spoken.
    #[arg(long, value_enum, default_value = "resp")]
    protocol: Protocol,
    /// The longest request accepted, in bytes (its whole RESP encoding; a
    /// longer bulk string is a protocol error). Redis' bound is 512 MB.
    #[arg(long, default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    max_request: u64,
    /// The most bytes unfinished requests may hold over all connections
    /// together (each within `--max-request`).
    #[arg(long, default_value_t = 256 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    max_pending_total: u64,
    /// With `--processes N` above 1: each process keeps a store of its
    /// own, so a SET on one connection and a GET on another may disagree.
    #[arg(long)]
    separate_stores: bool,
    /// Seconds a client has to finish a request once it started it.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout: u64,
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
    args.server.one_reactor_per_process("kv")?;
    if args.server.processes > 1 && !args.separate_stores {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "--processes {}: each process would keep a store of its own, and a SET on \
                 one connection could be missing from a GET on another; run one process, \
                 or add --separate-stores to ask for that",
                args.server.processes
            ),
        ));
    }
    if args.server.processes > 1 {
        return common::serve_processes_on(&args.server, || setup(args));
    }
    let (reactor, kv) = setup(args)?;
    common::serve_on(&args.server, reactor, kv)
}

/// One process's reactor, holding its store, with the stats timer and the
/// feeder; and the handler.
fn setup(args: &Args) -> std::io::Result<(edgeloop::Reactor<Store>, Kv)> {
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
                let posted = handle.post(move |r| {
                    let key = format!("fed:{i}");
                    r.core_mut()
                        .data_mut()
                        .put(key.as_bytes(), i.to_string().as_bytes());
                });
                if posted.is_err() {
                    return; // the loop is gone: the server is exiting
                }
            }
        });
    });
    let kv = Kv {
        protocol: args.protocol,
        max_request: args.max_request as usize,
        max_pending_total: args.max_pending_total as usize,
        request_timeout: Duration::from_secs(args.request_timeout),
        out: Vec::new(),
    };
    Ok((reactor, kv))
}
