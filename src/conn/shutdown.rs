//! Graceful shutdown of a connection set embedded in a program's own
//! reactor: owed replies first, then every connection closed after its
//! queued output, then what is left aborted at the deadline.

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
    let turn = |reactor: &mut Reactor<D>| {
        let left = deadline.saturating_duration_since(Instant::now());
        reactor.run_once(Some(left.min(Duration::from_millis(100))))
    };
    while reactor.source(set).handler().busy() && Instant::now() < deadline {
        turn(reactor)?;
    }
    let (connections, core) = reactor.source_mut(set);
    connections.close_all(core);
    while !reactor.source(set).is_empty() {
        if Instant::now() >= deadline {
            let (connections, core) = reactor.source_mut(set);
            let aborted = connections.len();
            connections.abort_all(core);
            return Ok(aborted);
        }
        turn(reactor)?;
    }
    Ok(0)
}
