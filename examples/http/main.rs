//! An HTTP/1.1 server that wrk, h2load, ab and curl talk to: `GET` and
//! `HEAD` on `/` (`Hello, World!`, text/plain) and `/json`, 404 elsewhere.
//!
//! Run: `cargo run --release --example http -- --addr 127.0.0.1:8080`, then
//! `curl -i http://127.0.0.1:8080/` or `wrk -c 100 http://127.0.0.1:8080/`.
//!
//! HTTP/1.1 connections stay open (keep-alive) unless the request says
//! `Connection: close`; HTTP/1.0 ones close unless it says `keep-alive`.
//! Pipelined requests are answered in order, each read's responses in one
//! write. Bodies are read by Content-Length or chunked and discarded.
//! Refused, with the connection closed after the response: malformed
//! requests, HTTP/1.1 without Host, a repeated or malformed Host (400),
//! Content-Length beside Transfer-Encoding, an empty Transfer-Encoding,
//! a chunk-size line that is not strictly `HEXDIG [extensions] CRLF`, and
//! trailers that are not header fields (400: the request-smuggling
//! shapes; every framing decision is the strict one), transfer codings
//! other than chunked (501), a request line or head over `--max-head`
//! (414, 431), a body over `--max-body` (413), and a head not finished
//! within `--header-timeout` seconds of its first byte (408: slowloris).
//! Other methods on `/` and `/json` get 405. A target in absolute form
//! (`GET http://host/json`) is served by its path; `Expect: 100-continue`
//! gets `100 Continue` before the body is read. One handler call stops
//! once 1 MiB of responses wait and defers the rest of its input
//! (`Conn::defer`). The `Date` header is formatted once a second, by a
//! timer, not per response.
//!
//! `--processes N` runs N processes on one port; `--workers` above 1 is
//! refused. Same start and stop contract as every example: it prints
//! `listening on HOST:PORT` and exits 0 on SIGINT/SIGTERM.

#[path = "../common/mod.rs"]
mod common;
mod request;

use std::time::{Duration, SystemTime};

use clap::Parser;
use common::OUTPUT_CAP;
use edgeloop::conn::{Conn, Handler};
use request::{Head, Parsed, Refusal};

/// Responses gathered past this size go out before the next request is
/// parsed.
const WRITE_AT: usize = 64 * 1024;

/// The loop state: the `Date` header's value, renewed once a second.
struct Clock {
    date: String,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            date: httpdate::fmt_http_date(SystemTime::now()),
        }
    }
}

/// The handler: what all connections share.
struct Http {
    max_head: usize,
    max_body: u64,
    header_timeout: Duration,
    /// The responses to one read, sent in one write.
    out: Vec<u8>,
}

/// A connection between reads.
#[derive(Default)]
struct Session {
    /// Bytes of an unfinished head (or chunk-size line).
    partial: Vec<u8>,
    /// The request whose body is being read: answered once it is whole.
    in_body: Option<Head>,
    /// When the unfinished request's first byte came.
    started: common::RequestClock,
    /// The Host its last request gave, found valid.
    host: request::KnownHost,
}

/// What a read left the connection to do.
#[derive(PartialEq, Eq)]
enum After {
    Continue,
    /// Stop here: enough responses are waiting; the rest of the input is
    /// deferred until the client has read them.
    Defer,
    Close,
}

impl Handler<Clock> for Http {
    type Session = Session;

    fn on_data(&mut self, conn: &mut Conn<'_, Self, Clock>, data: &[u8]) {
        let mut session = std::mem::take(conn.session());
        let fresh = session.partial.is_empty();
        if !fresh {
            session.partial.extend_from_slice(data);
        }
        let buf: &[u8] = if fresh { data } else { &session.partial };
        let (mut consumed, answered, mut after) =
            self.serve(conn, &mut session.in_body, &mut session.host, buf);
        if after == After::Defer {
            // The rest waits in the set, not in the session.
            conn.defer(&buf[consumed..]);
            consumed = buf.len();
            after = After::Continue;
        }
        let unfinished =
            after == After::Continue && (consumed < buf.len() || session.in_body.is_some());
        if fresh {
            session.partial.extend_from_slice(&data[consumed..]);
        } else {
            session.partial.drain(..consumed);
        }
        if session
            .started
            .overdue(unfinished, answered, self.header_timeout)
        {
            self.refuse(conn.data(), Refusal::Timeout);
            after = After::Close;
        }
        if !self.out.is_empty() {
            conn.write(&self.out);
            self.out.clear();
        }
        if session.partial.is_empty() && session.partial.capacity() > WRITE_AT {
            session.partial = Vec::new();
        }
        *conn.session() = session;
        if after == After::Close {
            conn.close();
        }
    }
}

impl Http {
    /// Answers every whole request at the start of `buf`: the bytes
    /// consumed, whether any request was answered, and what next.
    fn serve(
        &mut self,
        conn: &mut Conn<'_, Self, Clock>,
        in_body: &mut Option<Head>,
        host: &mut request::KnownHost,
        buf: &[u8],
    ) -> (usize, bool, After) {
        let (mut at, mut answered) = (0, false);
        loop {
            if let Some(head) = in_body {
                match request::skip_body(&mut head.body, &buf[at..], self.max_head, self.max_body) {
                    Ok((took, done)) => {
                        at += took;
                        if !done {
                            return (at, answered, After::Continue);
                        }
                    }
                    Err(refusal) => {
                        self.refuse(conn.data(), refusal);
                        return (at, answered, After::Close);
                    }
                }
                let head = in_body.take().expect("in a body");
                answered = true;
                if self.respond(conn.data(), &head) == After::Close {
                    return (at, answered, After::Close);
                }
                if at < buf.len() && conn.queued() + self.out.len() >= OUTPUT_CAP {
                    return (at, answered, After::Defer);
                }
                continue;
            }
            if at == buf.len() {
                return (at, answered, After::Continue);
            }
            match request::parse_head(&buf[at..], self.max_head, self.max_body, host) {
                Parsed::Head(head, length) => {
                    at += length;
                    if head.expect_continue && at == buf.len() {
                        // The client waits for this before its body.
                        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    *in_body = Some(head); // answered once its body is skipped
                }
                Parsed::Incomplete => return (at, answered, After::Continue),
                Parsed::Refused(refusal) => {
                    self.refuse(conn.data(), refusal);
                    return (at, answered, After::Close);
                }
            }
            if self.out.len() >= WRITE_AT {
                conn.write(&self.out);
                self.out.clear();
            }
        }
    }

    /// The response to a whole request.
    fn respond(&mut self, clock: &Clock, head: &Head) -> After {
        const HELLO: &[u8] = b"Hello, World!";
        const JSON: &[u8] = br#"{"message":"Hello, World!"}"#;
        let known = match head.path.as_str() {
            "/" => Some(("text/plain", HELLO)),
            "/json" => Some(("application/json", JSON)),
            _ => None,
        };
        let (status, content_type, body, allow) = match known {
            Some((content_type, body)) if head.get || head.head => {
                ((200, "OK"), content_type, body, false)
            }
            Some(_) => (
                (405, "Method Not Allowed"),
                "text/plain",
                &b"Method Not Allowed\n"[..],
                true,
            ),
            None => ((404, "Not Found"), "text/plain", &b"Not Found\n"[..], false),
        };
        let connection = match (head.keep_alive, head.http10) {
            (false, _) => Some("close"),
            (true, true) => Some("keep-alive"),
            (true, false) => None,
        };
        self.head(clock, status, content_type, body.len(), connection);
        if allow {
            self.out.extend_from_slice(b"Allow: GET, HEAD\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        if !head.head {
            self.out.extend_from_slice(body);
        }
        match head.keep_alive {
            true => After::Continue,
            false => After::Close,
        }
    }

    /// A refusal's response; the connection closes after it.
    fn refuse(&mut self, clock: &Clock, refusal: Refusal) {
        let (code, reason) = refusal.status();
        let body = format!("{code} {reason}\n");
        self.head(
            clock,
            (code, reason),
            "text/plain",
            body.len(),
            Some("close"),
        );
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body.as_bytes());
    }

    /// The status line and the headers every response has (the blank line
    /// that ends them is the caller's).
    fn head(
        &mut self,
        clock: &Clock,
        (code, reason): (u16, &str),
        content_type: &str,
        length: usize,
        connection: Option<&str>,
    ) {
        let out = &mut self.out;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(code).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\nServer: edgeloop\r\nDate: ");
        out.extend_from_slice(clock.date.as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(connection) = connection {
            out.extend_from_slice(b"Connection: ");
            out.extend_from_slice(connection.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// An HTTP/1.1 server on edgeloop (keep-alive, pipelining, the field's
/// load generators).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,
    /// The longest request head (request line and headers), in bytes.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(64..=1 << 20))]
    max_head: u64,
    /// The longest request body accepted, in bytes (it is read and
    /// discarded).
    #[arg(long, default_value_t = 1 << 20)]
    max_body: u64,
    /// Seconds a client has to finish a request (head and body) once it
    /// started it.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
}

fn main() {
    env_logger::init();
    let args = Args::parse();
    common::exit_on_error(run(&args));
}

fn run(args: &Args) -> std::io::Result<()> {
    args.server.one_reactor_per_process("http")?;
    if args.server.processes > 1 {
        return common::serve_processes_on(&args.server, || setup(args));
    }
    let (reactor, http) = setup(args)?;
    common::serve_on(&args.server, reactor, http)
}

/// One process's reactor, holding the clock and its timer; and the handler.
fn setup(args: &Args) -> std::io::Result<(edgeloop::Reactor<Clock>, Http)> {
    let mut reactor = args.server.reactor_with(Clock::now())?;
    reactor.core_mut().call_every(Duration::from_secs(1), |r| {
        *r.core_mut().data_mut() = Clock::now()
    });
    let http = Http {
        max_head: args.max_head as usize,
        max_body: args.max_body,
        header_timeout: Duration::from_secs(args.header_timeout),
        out: Vec::new(),
    };
    Ok((reactor, http))
}
