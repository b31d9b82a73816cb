//! Graceful shutdown of a connection set embedded in a program's own
//! reactor, two ways: close (owed replies first, then every connection
//! closed after its queued output) or drain (every connection left to
//! end by itself); what is left at the deadline is aborted.

use std::io;
use std::time::{Duration, Instant};

use super::{Connections, Handler};
use crate::{Reactor, SourceId};

/// Shuts the connection set `set` down gracefully, running `reactor` until
/// it is done or `grace` has passed: replies its handler still owes
/// ([`Handler::busy`]) go out first, then every connection is closed
/// gracefully (its queued output sent, then EOF), and what is still open
/// when `grace` runs out is aborted. Returns how many were aborted. Stop
/// accepting first ([`Connections::unlisten`]) if the set has listeners.
///
/// This is what a server's `serve_forever` does after a shutdown; a
/// program that embeds a `Connections` set in its own reactor calls it
/// itself (no `server` feature needed).
///
/// ```
/// use edgeloop::conn::{AcceptOptions, Conn, ConnOptions, Connections, Handler, shut_down};
/// use std::time::Duration;
/// struct Echo;
/// impl Handler for Echo {
///     type Session = ();
///     fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
///         conn.write(data);
///     }
/// }
/// let mut reactor = edgeloop::Reactor::new()?;
/// let set = reactor.install(Connections::new(Echo, ConnOptions::default())?)?;
/// let listener = edgeloop::conn::tcp_listener("127.0.0.1:0".parse().unwrap(), None, false)?;
/// let addr = listener.local_addr()?;
/// let (connections, core) = reactor.source_mut(set);
/// let id = connections.listen(core, listener.into(), AcceptOptions::default())?;
/// let mut client = std::net::TcpStream::connect(addr)?;
/// // The client reads to our EOF, then closes: a graceful close's end.
/// let client = std::thread::spawn(move || {
///     std::io::Read::read_to_end(&mut client, &mut Vec::new())
/// });
/// while reactor.source(set).is_empty() {
///     reactor.run_once(Some(Duration::from_millis(10)))?;
/// }
/// let (connections, core) = reactor.source_mut(set);
/// connections.unlisten(core, id); // stop accepting first
/// let aborted = shut_down(&mut reactor, set, Duration::from_secs(1))?;
/// assert_eq!((aborted, reactor.source(set).len()), (0, 0)); // closed, none aborted
/// client.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// What the reactor's wait reports.
pub fn shut_down<H: Handler<D>, D: 'static>(
    reactor: &mut Reactor<D>,
    set: SourceId<Connections<H, D>>,
    grace: Duration,
) -> io::Result<usize> {
    let deadline = Instant::now() + grace;
    while reactor.source(set).handler().busy() && Instant::now() < deadline {
        turn(reactor, deadline)?;
    }
    let (connections, core) = reactor.source_mut(set);
    connections.close_all(core);
    empty_or_aborted(reactor, set, deadline)
}

/// One turn of `reactor`, waiting no later than `deadline` (and at most
/// 100 ms, so a condition the caller checks is seen soon).
fn turn<D: 'static>(reactor: &mut Reactor<D>, deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    reactor.run_once(Some(left.min(Duration::from_millis(100))))
}

/// Runs `reactor` until `set` is empty, or aborts what is left at
/// `deadline`: how many were aborted.
fn empty_or_aborted<H: Handler<D>, D: 'static>(
    reactor: &mut Reactor<D>,
    set: SourceId<Connections<H, D>>,
    deadline: Instant,
) -> io::Result<usize> {
    while !reactor.source(set).is_empty() {
        if Instant::now() >= deadline {
            let (connections, core) = reactor.source_mut(set);
            let aborted = connections.len();
            connections.abort_all(core);
            return Ok(aborted);
        }
        turn(reactor, deadline)?;
    }
    Ok(0)
}

/// How a graceful shutdown ends the connections still open.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum ShutdownMode {
    /// Close each once its queued output is sent ([`shut_down`]): right
    /// for request-reply servers, whose connections hold nothing in flight
    /// between requests.
    #[default]
    Close,
    /// Let each end by itself ([`drain`]): right for streams (a proxy's
    /// transfers, a long download), which a close would cut short with an
    /// EOF that looks like their end.
    Drain,
}

/// Drains the connection set `set`, running `reactor` until every
/// connection has ended by itself or `grace` has passed; what is still
/// open then is aborted (reset, so its peer cannot take the cut stream
/// for a complete one). Returns how many were aborted. Stop accepting
/// first ([`Connections::unlisten`]) if the set has listeners.
///
/// [`shut_down`] closes each connection once its queued output is sent,
/// which suits request-reply servers; a stream (a proxy's transfer, a
/// download) is only complete when its own end comes, and this waits for
/// it.
///
/// # Errors
/// What the reactor's wait reports.
pub fn drain<H: Handler<D>, D: 'static>(
    reactor: &mut Reactor<D>,
    set: SourceId<Connections<H, D>>,
    grace: Duration,
) -> io::Result<usize> {
    empty_or_aborted(reactor, set, Instant::now() + grace)
}
