//! Readiness made visible: one scripted byte sequence run against real
//! epoll instances, one per trigger, side by side. The `lt_vs_et` program
//! prints it; `study/tests/study.rs` pins it, so the narration can never drift
//! from what the kernel does.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use edgeloop::{Interest, PostAction, Reactor, Ready, Token, Trigger};

/// What the script does at one step.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The peer writes this many bytes.
    PeerWrites(usize),
    /// We read at most this many bytes (once).
    Read(usize),
    /// We read until `EAGAIN` (or EOF).
    Drain,
    /// We wait (epoll_wait with a zero timeout) and record what it says.
    Wait,
    /// We re-arm with `EPOLL_CTL_MOD` (same mask).
    Rearm,
    /// The peer shuts down its write side.
    PeerShutsDown,
}

/// One step of the trace: the action, and per trigger (Level, Edge, Oneshot)
/// what it produced: for a wait, the readiness reported (`None`: nothing);
/// for a read, the bytes read.
#[derive(Clone, Debug)]
pub struct Step {
    /// What happened.
    pub action: Action,
    /// What each trigger saw, in the order of [`TRIGGERS`].
    pub seen: [Outcome; 3],
    /// Why, in a sentence.
    pub why: &'static str,
}

/// What one trigger saw at one step.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report (a write, a re-arm).
    Done,
    /// A wait returned this readiness.
    Event(Ready),
    /// A wait returned nothing.
    Nothing,
    /// A read returned this many bytes (0: EOF).
    Bytes(usize),
    /// A read found nothing (`EAGAIN`).
    WouldBlock,
}

/// The three triggers, in trace column order.
pub const TRIGGERS: [Trigger; 3] = [Trigger::Level, Trigger::Edge, Trigger::Oneshot];

/// The script: (action, why).
pub const SCRIPT: [(Action, &str); 13] = [
    (Action::PeerWrites(10), "10 bytes arrive"),
    (Action::Wait, "all three report the new data"),
    (Action::Read(3), "we read 3 of the 10"),
    (
        Action::Wait,
        "LT reports again (7 bytes left); ET stays silent: no new edge. A careless ET reader that stopped here HANGS: 7 bytes sit in the buffer and nothing will say so. Oneshot is disarmed",
    ),
    (Action::PeerWrites(5), "5 more bytes arrive"),
    (
        Action::Wait,
        "LT reports; ET reports (new data is a new edge); Oneshot is still disarmed",
    ),
    (
        Action::Rearm,
        "EPOLL_CTL_MOD re-arms Oneshot (and would re-check an ET fd)",
    ),
    (
        Action::Wait,
        "LT reports the 12 bytes waiting; ET: no new data, no new edge; the re-armed Oneshot reports",
    ),
    (Action::Drain, "we read until EAGAIN"),
    (Action::Wait, "drained: nobody reports"),
    (
        Action::PeerShutsDown,
        "the peer shuts down its write side (FIN)",
    ),
    (
        Action::Wait,
        "LT and ET report READABLE|READ_CLOSED (RDHUP); Oneshot fired at the last re-arm and stays silent",
    ),
    (Action::Drain, "read returns 0: EOF"),
];

/// Runs [`SCRIPT`] against three real epoll instances (one reactor per
/// trigger, each with one plain registration whose callback only records
/// what it was told) on three socket pairs.
///
/// # Errors
/// If a socket pair or an epoll instance cannot be created.
pub fn trace_triggers() -> io::Result<Vec<Step>> {
    struct Lane {
        /// The loop state: what the last wait reported, if anything.
        reactor: Reactor<Option<Ready>>,
        token: Token,
        /// Shared with the registration, which owns the other reference.
        ours: Rc<UnixStream>,
        theirs: UnixStream,
        trigger: Trigger,
    }
    let mut lanes = TRIGGERS
        .iter()
        .map(|&trigger| {
            let (ours, theirs) = UnixStream::pair()?;
            ours.set_nonblocking(true)?;
            let ours = Rc::new(ours);
            let mut reactor = Reactor::with_data(None)?;
            let token = reactor.core_mut().register(
                ours.clone(),
                Interest::READABLE,
                trigger,
                |r, _, event| {
                    *r.core_mut().data_mut() = Some(event.ready);
                    PostAction::Continue
                },
            )?;
            Ok(Lane {
                reactor,
                token,
                ours,
                theirs,
                trigger,
            })
        })
        .collect::<io::Result<Vec<Lane>>>()?;
    let mut steps = Vec::new();
    let mut buf = [0u8; 64];
    for (action, why) in SCRIPT {
        let mut seen = [Outcome::Done; 3];
        for (lane, out) in lanes.iter_mut().zip(seen.iter_mut()) {
            *out = match action {
                Action::PeerWrites(n) => {
                    lane.theirs.write_all(&vec![b'x'; n])?;
                    Outcome::Done
                }
                Action::PeerShutsDown => {
                    lane.theirs.shutdown(Shutdown::Write)?;
                    Outcome::Done
                }
                Action::Wait => {
                    *lane.reactor.core_mut().data_mut() = None;
                    lane.reactor.run_once(Some(Duration::ZERO))?;
                    lane.reactor
                        .core()
                        .data()
                        .map_or(Outcome::Nothing, Outcome::Event)
                }
                Action::Read(n) => read_once(&lane.ours, &mut buf[..n])?,
                Action::Drain => {
                    let mut total = 0;
                    loop {
                        match read_once(&lane.ours, &mut buf)? {
                            Outcome::Bytes(0) => break Outcome::Bytes(total),
                            Outcome::Bytes(n) => total += n,
                            _ if total > 0 => break Outcome::Bytes(total),
                            other => break other,
                        }
                    }
                }
                Action::Rearm => {
                    if lane.trigger == Trigger::Oneshot {
                        // EPOLL_CTL_MOD, even to the same mask.
                        let core = lane.reactor.core_mut();
                        core.modify(lane.token, Interest::READABLE, lane.trigger)?;
                    }
                    Outcome::Done
                }
            };
        }
        steps.push(Step { action, seen, why });
    }
    Ok(steps)
}

fn read_once(mut stream: &UnixStream, buf: &mut [u8]) -> io::Result<Outcome> {
    match stream.read(buf) {
        Ok(n) => Ok(Outcome::Bytes(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Outcome::WouldBlock),
        Err(e) => Err(e),
    }
}
