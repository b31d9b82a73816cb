//! Fair by default: one event reads a bounded amount, so a client that
//! floods cannot starve one that sends a single request; and
//! [`Conn::defer`] lets a handler bound its own work, handing input back
//! until its output has drained. Each test runs one reactor on this
//! thread over socket pairs, so what it counts is exact.

mod util;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use edgeloop::conn::{CloseReason, Conn, ConnId, ConnOptions, Connections, Handler, Others};
use edgeloop::{Reactor, SourceId, Trigger};

/// What the handlers saw, in order.
#[derive(Default)]
struct Seen {
    /// (connection index, bytes) per `on_data` call.
    calls: Vec<(usize, usize)>,
    /// The reasons connections closed for.
    closes: Vec<CloseReason>,
}

fn triggers() -> [Trigger; 2] {
    [Trigger::Level, Trigger::Edge]
}

/// A reactor with a set served by `handler`, and `n` attached pairs: the
/// clients' ends.
fn set_with<H: Handler<Seen>>(
    handler: H,
    options: ConnOptions,
    n: usize,
) -> (
    Reactor<Seen>,
    SourceId<Connections<H, Seen>>,
    Vec<UnixStream>,
) {
    let mut reactor = Reactor::with_data(Seen::default()).unwrap();
    let set = reactor
        .install(Connections::new(handler, options).unwrap())
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..n {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (connections, core) = reactor.source_mut(set);
        connections.attach(core, ours.into()).unwrap();
        theirs.set_nonblocking(true).unwrap();
        clients.push(theirs);
    }
    (reactor, set, clients)
}

/// Writes as much of `byte` as the socket takes without blocking.
fn flood(client: &mut UnixStream, byte: u8) -> usize {
    let chunk = [byte; 64 * 1024];
    let mut total = 0;
    while let Ok(n) = client.write(&chunk) {
        total += n;
    }
    total
}

/// Counts what it is handed, replies nothing.
struct Count;

impl Handler<Seen> for Count {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self, Seen>, data: &[u8]) {
        let index = conn.id().index();
        conn.data_mut().calls.push((index, data.len()));
    }
}

#[test]
fn a_flooding_client_gets_one_bounded_read_before_a_quiet_one_is_served() {
    for trigger in triggers() {
        let (mut reactor, _, mut clients) = set_with(Count, ConnOptions::with_trigger(trigger), 2);
        let flooded = flood(&mut clients[0], b'x');
        assert!(flooded > 100 * 1024, "{trigger:?}: the pair took {flooded}");
        clients[1].write_all(b"PING\r\n").unwrap();
        let mut turns = 0;
        while !reactor.core().data().calls.iter().any(|&(c, _)| c == 1) {
            reactor.run_once(Some(Duration::from_millis(10))).unwrap();
            turns += 1;
            assert!(turns < 10, "{trigger:?}: the quiet client was not served");
        }
        let calls = &reactor.core().data().calls;
        let before: usize = calls
            .iter()
            .take_while(|&&(c, _)| c == 0)
            .map(|&(_, n)| n)
            .sum();
        assert!(
            before <= 16 * 1024,
            "{trigger:?}: the flooder was handed {before} bytes before the quiet client's \
             request (calls {calls:?})"
        );
        // The flood is still all delivered, a bounded read per turn.
        while reactor
            .core()
            .data()
            .calls
            .iter()
            .map(|&(c, n)| (c == 0) as usize * n)
            .sum::<usize>()
            < flooded
        {
            reactor.run_once(Some(Duration::from_millis(10))).unwrap();
            turns += 1;
            assert!(turns < 1000, "{trigger:?}: the flood was not all read");
        }
    }
}

/// Answers one line per call and defers the rest.
struct OneLine;

impl Handler<Seen> for OneLine {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self, Seen>, data: &[u8]) {
        let index = conn.id().index();
        conn.data_mut().calls.push((index, data.len()));
        if let Some(end) = data.iter().position(|&b| b == b'\n') {
            conn.write(&data[..=end]);
            conn.defer(&data[end + 1..]);
        }
    }

    fn on_close(
        &mut self,
        others: &mut Others<'_, Self, Seen>,
        _: ConnId,
        _: (),
        reason: CloseReason,
    ) {
        others.data_mut().closes.push(reason);
    }
}

fn lines(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect()
}

#[test]
fn deferred_input_comes_back_in_order_one_turn_at_a_time() {
    for trigger in triggers() {
        let (mut reactor, set, mut clients) =
            set_with(OneLine, ConnOptions::with_trigger(trigger), 2);
        let sent = lines(300);
        clients[0].write_all(&sent).unwrap();
        let mut back = Vec::new();
        let mut turns = 0;
        while back.len() < sent.len() {
            reactor.run_once(Some(Duration::from_millis(10))).unwrap();
            turns += 1;
            assert!(
                turns < 2000,
                "{trigger:?}: {} of {} back",
                back.len(),
                sent.len()
            );
            let mut buf = [0; 64 * 1024];
            while let Ok(n) = clients[0].read(&mut buf) {
                back.extend_from_slice(&buf[..n]);
            }
            if turns == 5 {
                // Another client is served between the deferred lines.
                clients[1].write_all(b"hello\n").unwrap();
            }
        }
        assert_eq!(back, sent, "{trigger:?}");
        assert!(
            turns >= 300,
            "{trigger:?}: one line per turn, {turns} turns"
        );
        let calls = &reactor.core().data().calls;
        let hello = calls.iter().position(|&(c, _)| c == 1).unwrap();
        assert!(
            hello < 20,
            "{trigger:?}: the other client waited {hello} calls"
        );
        assert_eq!(reactor.source(set).len(), 2, "{trigger:?}");
    }
}

/// Writes 64 KiB per line and defers the rest: its output, not its input,
/// is what grows.
struct BigReplies;

impl Handler<Seen> for BigReplies {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self, Seen>, data: &[u8]) {
        if let Some(end) = data.iter().position(|&b| b == b'\n') {
            conn.write(&[b'r'; 64 * 1024]);
            conn.defer(&data[end + 1..]);
        }
    }
}

#[test]
fn deferred_input_waits_for_the_output_to_drain() {
    for trigger in triggers() {
        let options = ConnOptions::with_trigger(trigger);
        let low = options.low_water;
        let (mut reactor, set, mut clients) = set_with(BigReplies, options, 1);
        clients[0].write_all(&lines(100)).unwrap();
        let mut peak = 0;
        for _ in 0..200 {
            reactor.run_once(Some(Duration::from_millis(1))).unwrap();
            peak = peak.max(reactor.source(set).queued());
        }
        assert!(
            peak <= low + 64 * 1024,
            "{trigger:?}: {peak} bytes queued for a client that does not read"
        );
        // The client reads: every reply comes.
        let mut got = 0;
        let mut turns = 0;
        while got < 100 * 64 * 1024 {
            reactor.run_once(Some(Duration::from_millis(10))).unwrap();
            let mut buf = [0; 64 * 1024];
            while let Ok(n) = clients[0].read(&mut buf) {
                got += n;
            }
            turns += 1;
            assert!(turns < 5000, "{trigger:?}: {got} bytes back");
        }
        assert_eq!(got, 100 * 64 * 1024, "{trigger:?}");
    }
}

/// Defers everything it is handed: it never progresses.
struct Stuck;

impl Handler<Seen> for Stuck {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self, Seen>, data: &[u8]) {
        let index = conn.id().index();
        conn.data_mut().calls.push((index, data.len()));
        conn.defer(data);
    }

    fn on_close(
        &mut self,
        others: &mut Others<'_, Self, Seen>,
        _: ConnId,
        _: (),
        reason: CloseReason,
    ) {
        others.data_mut().closes.push(reason);
    }
}

#[test]
fn a_handler_that_defers_all_it_is_handed_back_is_closed_not_spun() {
    for trigger in triggers() {
        let (mut reactor, set, mut clients) =
            set_with(Stuck, ConnOptions::with_trigger(trigger), 1);
        clients[0].write_all(b"never consumed").unwrap();
        for _ in 0..10 {
            reactor.run_once(Some(Duration::from_millis(10))).unwrap();
        }
        let seen = reactor.core().data();
        assert_eq!(seen.calls.len(), 2, "{trigger:?}: {:?}", seen.calls);
        assert!(
            matches!(&seen.closes[..], [CloseReason::Error(e)] if e.kind() == std::io::ErrorKind::InvalidData),
            "{trigger:?}: {:?}",
            seen.closes
        );
        assert_eq!(reactor.source(set).len(), 0, "{trigger:?}");
    }
}
