//! `bench scale-client`: one load process of the scale sweep, built on
//! edgeloop's own outbound connections. It opens its share of the
//! connections from the given source addresses, then takes commands on
//! stdin and answers each with one line on stdout:
//!
//! - (at start) → `connected OPENED FAILED SECONDS`
//! - `echo` → every connection sends one distinct message and checks its
//!   echo → `echoed ECHOED ERRORS SECONDS`
//! - `trickle SECONDS INTERVAL_MS` → each connection sends a message every
//!   interval, spread evenly → `trickle MESSAGES ERRORS P50_US P99_US
//!   RTT_US,RTT_US,...` (every round trip, in µs)
//! - `quit` (or EOF) → exits.
//!
//! A message for a connection that has closed is an error (the server is
//! meant to keep every connection open), and so is one whose echo does not
//! come back within the phase's deadline. A command it cannot parse gets
//! `error ...` and changes nothing.

use std::io::{self, BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use edgeloop::conn::{
    CloseReason, Conn, ConnId, ConnOptions, ConnectOptions, Connections, Handler, Others,
};
use edgeloop::{Reactor, SourceId, Trigger};

/// Connections kept connecting at once: more only fills the server's
/// backlog, and dropped SYNs cost a second each.
const IN_FLIGHT: usize = 2_000;
/// Trickle timer granularity.
const TICK: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Probe {
    ids: Vec<ConnId>,
    opened: usize,
    failed: usize,
    sent: u64,
    echoed: u64,
    errors: u64,
    rtts_us: Vec<u32>,
    /// Trickle: the bucket the next tick sends on, and how many there are.
    bucket: usize,
    buckets: usize,
}

#[derive(Default)]
struct Waiting {
    expect: Vec<u8>,
    got: usize,
    sent_at: Option<Instant>,
}

impl Handler for Probe {
    type Session = Waiting;

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        self.opened += 1;
        self.ids.push(conn.id());
    }

    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        let w = conn.session();
        let want = &w.expect[w.got.min(w.expect.len())..];
        if data.len() > want.len() || &want[..data.len()] != data {
            self.errors += 1;
            return conn.abort();
        }
        w.got += data.len();
        if w.got == w.expect.len() {
            if let Some(t) = w.sent_at.take() {
                self.rtts_us
                    .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            w.got = 0;
            w.expect.clear();
            self.echoed += 1;
        }
    }

    fn on_connect_failed(
        &mut self,
        _: &mut Others<'_, Self>,
        _: ConnId,
        _: Self::Session,
        _: io::Error,
    ) {
        self.failed += 1;
    }

    fn on_close(&mut self, _: &mut Others<'_, Self>, _: ConnId, w: Waiting, _: CloseReason) {
        // A connection that closes while a message is out lost it.
        if !w.expect.is_empty() {
            self.errors += 1;
        }
    }
}

type Set = SourceId<Connections<Probe>>;

/// Sends one message on connection `index` of the set (if not still
/// waiting for the last one); one for a closed connection is an error.
fn send(reactor: &mut Reactor, set: Set, index: usize, tag: u64) {
    let (connections, core) = reactor.source_mut(set);
    let id = connections.handler().ids[index];
    let open = connections.with_conn(core, id, |probe, conn| {
        let w = conn.session();
        if !w.expect.is_empty() {
            return;
        }
        probe.sent += 1;
        w.expect = format!("{tag}:{index}:{}\n", w.got).into_bytes();
        w.sent_at = Some(Instant::now());
        let message = w.expect.clone();
        conn.write(&message);
    });
    if open.is_none() {
        let probe = connections.handler_mut();
        probe.sent += 1;
        probe.errors += 1;
    }
}

/// `trickle SECONDS INTERVAL_MS`'s arguments: a positive, finite number of
/// seconds and a positive whole number of milliseconds.
fn trickle_args(seconds: &str, interval_ms: &str) -> Option<(f64, Duration)> {
    let seconds: f64 = seconds
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0)?;
    let interval_ms: u64 = interval_ms.parse().ok().filter(|&ms| ms > 0)?;
    Some((seconds.min(1e6), Duration::from_millis(interval_ms)))
}

/// Runs turns until `done` or `limit`.
fn run_until(reactor: &mut Reactor, limit: Duration, mut done: impl FnMut(&Reactor) -> bool) {
    let deadline = Instant::now() + limit;
    while !done(reactor) && Instant::now() < deadline {
        let _ = reactor.run_once(Some(Duration::from_millis(50)));
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The client process's life.
pub fn run(addr: SocketAddr, connections: usize, sources: &[IpAddr], tag: u64) -> io::Result<()> {
    super::raise_fd_limit()?;
    let mut reactor = Reactor::new()?;
    let options = ConnOptions::with_trigger(Trigger::Edge);
    let set = reactor.install(Connections::new(Probe::default(), options)?)?;
    let mut out = io::stdout().lock();

    let start = Instant::now();
    let mut issued = 0;
    let connect = ConnectOptions::default().with_timeout(Some(Duration::from_secs(20)));
    let settled = |r: &Reactor| {
        let p = r.source(set).handler();
        p.opened + p.failed
    };
    while issued < connections {
        while issued < connections && issued - settled(&reactor) < IN_FLIGHT {
            let ip = sources.get(issued % sources.len().max(1)).copied();
            let (set_ref, core) = reactor.source_mut(set);
            if set_ref
                .connect(core, addr, connect.with_local_ip(ip), Waiting::default())
                .is_err()
            {
                set_ref.handler_mut().failed += 1;
            }
            issued += 1;
        }
        let _ = reactor.run_once(Some(Duration::from_millis(10)));
    }
    run_until(&mut reactor, Duration::from_secs(30), |r| {
        settled(r) == connections
    });
    let p = reactor.source(set).handler();
    writeln!(
        out,
        "connected {} {} {:.3}",
        p.opened,
        p.failed,
        start.elapsed().as_secs_f64()
    )?;
    out.flush()?;

    let mut lines = io::stdin().lock().lines();
    while let Some(Ok(line)) = lines.next() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["echo"] => {
                let start = Instant::now();
                let p = reactor.source(set).handler();
                let (n, echoed0, errors0) = (p.ids.len(), p.echoed, p.errors);
                for index in 0..n {
                    send(&mut reactor, set, index, tag);
                }
                let goal = n as u64;
                run_until(&mut reactor, Duration::from_secs(30), |r| {
                    let p = r.source(set).handler();
                    (p.echoed - echoed0) + (p.errors - errors0) >= goal
                });
                let p = reactor.source(set).handler();
                let (echoed, errors) = (p.echoed - echoed0, p.errors - errors0);
                // What never came back within the limit counts as an error.
                let errors = errors + goal.saturating_sub(echoed + errors);
                writeln!(
                    out,
                    "echoed {echoed} {errors} {:.3}",
                    start.elapsed().as_secs_f64()
                )?;
            }
            ["trickle", seconds, interval_ms] => {
                let Some((seconds, interval)) = trickle_args(seconds, interval_ms) else {
                    writeln!(
                        out,
                        "error trickle takes SECONDS (positive) and INTERVAL_MS (a positive \
                         integer): {line:?}"
                    )?;
                    out.flush()?;
                    continue;
                };
                let (set_ref, _) = reactor.source_mut(set);
                let probe = set_ref.handler_mut();
                let (sent0, echoed0, errors0) = (probe.sent, probe.echoed, probe.errors);
                probe.rtts_us.clear();
                probe.buckets = (interval.as_millis() / TICK.as_millis()).max(1) as usize;
                let timer = reactor.core_mut().call_every(TICK, move |r| {
                    let (set_ref, _) = r.source_mut(set);
                    let probe = set_ref.handler_mut();
                    let (bucket, buckets, n) = (probe.bucket, probe.buckets, probe.ids.len());
                    probe.bucket = (bucket + 1) % buckets;
                    for index in (bucket..n).step_by(buckets) {
                        send(r, set, index, tag);
                    }
                });
                let end = Instant::now() + Duration::from_secs_f64(seconds);
                run_until(&mut reactor, Duration::from_secs_f64(seconds), |_| {
                    Instant::now() >= end
                });
                reactor.core_mut().cancel(timer);
                // Let the last messages come back; what does not within
                // 5 s counts as an error.
                run_until(&mut reactor, Duration::from_secs(5), |r| {
                    let p = r.source(set).handler();
                    p.echoed + p.errors >= p.sent
                });
                let (set_ref, _) = reactor.source_mut(set);
                let probe = set_ref.handler_mut();
                probe.rtts_us.sort_unstable();
                let sent = probe.sent - sent0;
                let echoed = probe.echoed - echoed0;
                writeln!(
                    out,
                    "trickle {echoed} {} {} {} {}",
                    probe.errors - errors0 + sent.saturating_sub(echoed + probe.errors - errors0),
                    percentile(&probe.rtts_us, 0.5),
                    percentile(&probe.rtts_us, 0.99),
                    // Every sample, so the sweep takes percentiles over all
                    // the clients at once.
                    probe
                        .rtts_us
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )?;
            }
            ["quit"] => break,
            _ => writeln!(out, "error unknown command {line:?}")?,
        }
        out.flush()?;
    }
    Ok(())
}
