//! A connection's state as types: where it is in its life ([`Phase`]),
//! what the peer has done ([`Peer`]), and why it is not being read
//! ([`Pauses`]). Three bytes of the connection's 24-byte slot.
//!
//! The life of a connection:
//!
//! ```text
//! Connecting ──connected──▶ Open ──shutdown_write──▶ ShutAfterFlush ──flushed──▶ WriteShut
//!     │                      │                            │                         │
//!     │ close: abandoned     └──────── close ─────────────┴──▶ Closing ──flushed──▶ Lingering
//!     ▼                                                                    (SHUT_WR sent)
//!   Doomed ◀──── abort, reset, error, linger passed, or both sides done ──────────┘
//! ```
//!
//! A `Doomed` connection is closed (deregistered, its fd closed, its
//! handler told) once the handler call in progress returns.

/// Where a connection is in its life.
///
/// The order matters to the fast path: every phase before `Connecting`
/// reads (closing ones read and discard), the last two do not.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub(super) enum Phase {
    /// Reading and writing.
    Open,
    /// [`shutdown_write`](super::Conn::shutdown_write) was asked: SHUT_WR
    /// once the queue drains. Reads go on; new writes are dropped.
    ShutAfterFlush,
    /// Our write side is shut down; reads go on.
    WriteShut,
    /// [`close`](super::Conn::close) was asked: the queue drains, then
    /// SHUT_WR; the handler gets no more data (input is read and
    /// discarded).
    Closing,
    /// Closing, with our write side shut: reading and discarding until the
    /// peer's EOF, or until the linger passes without progress.
    Lingering,
    /// An outbound connection whose `connect` has not completed: not read,
    /// writes queued, registered for WRITABLE (the completion).
    Connecting,
    /// Connecting, and `shutdown_write` was asked: `ShutAfterFlush` once
    /// connected.
    ConnectingThenShut,
    /// To be closed once the handler call in progress returns.
    Doomed,
}

impl Phase {
    /// Established and not doomed: what the fast path serves.
    #[inline(always)]
    pub(super) fn is_established(self) -> bool {
        self < Phase::Connecting
    }

    pub(super) fn is_connecting(self) -> bool {
        matches!(self, Phase::Connecting | Phase::ConnectingThenShut)
    }

    /// `close` was asked (the queue drains, then it lingers).
    #[inline]
    pub(super) fn is_closing(self) -> bool {
        matches!(self, Phase::Closing | Phase::Lingering)
    }

    /// New writes are taken (sent, or queued while connecting).
    #[inline(always)]
    pub(super) fn takes_writes(self) -> bool {
        matches!(
            self,
            Phase::Open | Phase::Connecting | Phase::ConnectingThenShut
        )
    }
}

/// What happens in a connection's life that its phase answers.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(super) enum Step {
    /// [`close`](super::Conn::close) (or an idle timeout, or a partner's
    /// graceful close).
    Close,
    /// [`shutdown_write`](super::Conn::shutdown_write) (or a partner's EOF).
    ShutdownWrite,
    /// The queue is empty: what was written is all sent.
    Flushed,
    /// An outbound connect completed.
    Connected,
}

/// What the table does after a step, besides keeping the new phase.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(super) enum Then {
    Nothing,
    /// Shut the write side down now (`SHUT_WR`): the last queued byte is
    /// sent.
    ShutWrite,
    /// Close the connection: gracefully done (the queue is sent and the
    /// peer's EOF read), or abandoned (a connect closed before it
    /// completed: its handler hears of an aborted connect).
    End {
        graceful: bool,
    },
}

impl Phase {
    /// The lifecycle in one place: the phase after `step`, and what to do.
    /// `peer_done` is whether the peer's EOF was read. A step that does
    /// not apply leaves the phase as it is and does nothing (closing a
    /// closing connection, shutting down a shut one).
    pub(super) fn step(self, step: Step, peer_done: bool) -> (Phase, Then) {
        use Phase::*;
        match (step, self) {
            (Step::Close, Open | ShutAfterFlush) => (Closing, Then::Nothing),
            (Step::Close, WriteShut) => (Lingering, Then::Nothing),
            (Step::Close, Connecting | ConnectingThenShut) => (self, Then::End { graceful: false }),
            (Step::ShutdownWrite, Open) => (ShutAfterFlush, Then::Nothing),
            (Step::ShutdownWrite, Connecting) => (ConnectingThenShut, Then::Nothing),
            // The peer is done too: nothing can arrive unread.
            (Step::Flushed, Closing | Lingering) if peer_done => {
                (self, Then::End { graceful: true })
            }
            (Step::Flushed, Closing) => (Lingering, Then::ShutWrite),
            (Step::Flushed, ShutAfterFlush) => (WriteShut, Then::ShutWrite),
            (Step::Connected, ConnectingThenShut) => (ShutAfterFlush, Then::Nothing),
            (Step::Connected, Connecting) => (Open, Then::Nothing),
            _ => (self, Then::Nothing),
        }
    }
}

/// What the peer has done to its side of the connection.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub(super) enum Peer {
    /// Still sending, as far as we know.
    Sending,
    /// The kernel reported its half-close (RDHUP or HUP). Kept in the
    /// connection, not in the event: an event carried over to the next
    /// turn holds only READABLE, and the FIN's edge does not come again.
    CloseSeen,
    /// We read its EOF: nothing more will be read.
    Eof,
}

/// One reason a connection is not being read.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(super) enum Pause {
    /// Its queued output passed the high-water mark.
    Backpressure = 1,
    /// Its handler (or whoever holds its id) asked:
    /// [`pause_reading`](super::Conn::pause_reading).
    User = 2,
    /// The set's queued output passed
    /// [`ConnOptions::max_queued_total`](super::ConnOptions::max_queued_total)
    /// while this connection's handler was adding to it. It resumes when
    /// its own queue drains to the low-water mark, or (a broadcaster,
    /// whose own queue is empty) when the set's total is back under half
    /// the cap.
    Budget = 4,
    /// Its handler handed input back ([`defer`](super::Conn::defer)): the
    /// socket is not read until that input has been handed to the handler
    /// again.
    Deferred = 8,
}

/// The set of [`Pause`]s in force on a connection.
#[derive(Copy, Clone, PartialEq, Eq, Default, Debug)]
pub(super) struct Pauses(u8);

impl Pauses {
    #[inline(always)]
    pub(super) fn is_empty(self) -> bool {
        self.0 == 0
    }

    #[inline]
    pub(super) fn contains(self, pause: Pause) -> bool {
        self.0 & pause as u8 != 0
    }

    /// True if `pause` is the only one in force.
    #[inline]
    pub(super) fn only(self, pause: Pause) -> bool {
        self.0 == pause as u8
    }

    pub(super) fn insert(&mut self, pause: Pause) {
        self.0 |= pause as u8;
    }

    /// Removes `pause`; true if it was in force.
    pub(super) fn remove(&mut self, pause: Pause) -> bool {
        let was = self.contains(pause);
        self.0 &= !(pause as u8);
        was
    }
}

/// A connection's state: three bytes.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(super) struct State {
    pub(super) phase: Phase,
    pub(super) peer: Peer,
    pub(super) pauses: Pauses,
}

impl State {
    pub(super) fn new(phase: Phase) -> State {
        State {
            phase,
            peer: Peer::Sending,
            pauses: Pauses::default(),
        }
    }

    /// After a hangup (HUP) while not reading: true if input may still
    /// wait unread, to be read once the pause ends. Our write side is shut
    /// and the peer's EOF is not read yet, so the HUP is only the two
    /// sides' shutdowns meeting (the peer's FIN behind data we have not
    /// read), not a dead socket. (Level-triggered, such a connection is
    /// out of the kernel's list while paused, so its HUP cannot spin.)
    #[inline]
    pub(super) fn may_hold_unread_input(self) -> bool {
        self.phase == Phase::WriteShut && self.peer != Peer::Eof
    }

    /// True while the connection is read: established, not paused, the
    /// peer's EOF not read. (A closing connection reads, and discards.)
    #[inline(always)]
    pub(super) fn reading(self) -> bool {
        self.phase.is_established() && self.pauses.is_empty() && self.peer != Peer::Eof
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every phase under every step, with the peer done or not: the whole
    /// lifecycle as a table. A row that is not listed stays put and does
    /// nothing.
    #[test]
    fn the_lifecycle_is_this_table() {
        use Phase::*;
        use Step::*;
        let end = |graceful| Then::End { graceful };
        let moves: &[(Step, Phase, bool, Phase, Then)] = &[
            (Close, Open, false, Closing, Then::Nothing),
            (Close, Open, true, Closing, Then::Nothing),
            (Close, ShutAfterFlush, false, Closing, Then::Nothing),
            (Close, ShutAfterFlush, true, Closing, Then::Nothing),
            (Close, WriteShut, false, Lingering, Then::Nothing),
            (Close, WriteShut, true, Lingering, Then::Nothing),
            (Close, Connecting, false, Connecting, end(false)),
            (Close, Connecting, true, Connecting, end(false)),
            (
                Close,
                ConnectingThenShut,
                false,
                ConnectingThenShut,
                end(false),
            ),
            (
                Close,
                ConnectingThenShut,
                true,
                ConnectingThenShut,
                end(false),
            ),
            (ShutdownWrite, Open, false, ShutAfterFlush, Then::Nothing),
            (ShutdownWrite, Open, true, ShutAfterFlush, Then::Nothing),
            (
                ShutdownWrite,
                Connecting,
                false,
                ConnectingThenShut,
                Then::Nothing,
            ),
            (
                ShutdownWrite,
                Connecting,
                true,
                ConnectingThenShut,
                Then::Nothing,
            ),
            (Flushed, Closing, false, Lingering, Then::ShutWrite),
            (Flushed, Closing, true, Closing, end(true)),
            (Flushed, Lingering, true, Lingering, end(true)),
            (Flushed, ShutAfterFlush, false, WriteShut, Then::ShutWrite),
            (Flushed, ShutAfterFlush, true, WriteShut, Then::ShutWrite),
            (Connected, Connecting, false, Open, Then::Nothing),
            (Connected, Connecting, true, Open, Then::Nothing),
            (
                Connected,
                ConnectingThenShut,
                false,
                ShutAfterFlush,
                Then::Nothing,
            ),
            (
                Connected,
                ConnectingThenShut,
                true,
                ShutAfterFlush,
                Then::Nothing,
            ),
        ];
        let phases = [
            Open,
            ShutAfterFlush,
            WriteShut,
            Closing,
            Lingering,
            Connecting,
            ConnectingThenShut,
            Doomed,
        ];
        for step in [Close, ShutdownWrite, Flushed, Connected] {
            for phase in phases {
                for peer_done in [false, true] {
                    let expected = moves
                        .iter()
                        .find(|m| (m.0, m.1, m.2) == (step, phase, peer_done))
                        .map_or((phase, Then::Nothing), |m| (m.3, m.4));
                    assert_eq!(
                        phase.step(step, peer_done),
                        expected,
                        "{step:?} in {phase:?}, peer done: {peer_done}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_state_is_three_bytes_and_phases_read_in_order() {
        assert_eq!(std::mem::size_of::<State>(), 3);
        for phase in [
            Phase::Open,
            Phase::ShutAfterFlush,
            Phase::WriteShut,
            Phase::Closing,
            Phase::Lingering,
        ] {
            assert!(
                phase.is_established() && State::new(phase).reading(),
                "{phase:?}"
            );
        }
        for phase in [Phase::Connecting, Phase::ConnectingThenShut, Phase::Doomed] {
            assert!(!State::new(phase).reading(), "{phase:?}");
        }
        let mut state = State::new(Phase::Open);
        state.pauses.insert(Pause::User);
        assert!(!state.reading());
        assert!(state.pauses.remove(Pause::User) && !state.pauses.remove(Pause::User));
        state.pauses.insert(Pause::Deferred);
        assert!(!state.reading() && state.pauses.only(Pause::Deferred));
        state.pauses.insert(Pause::Backpressure);
        assert!(!state.pauses.only(Pause::Deferred));
        state.peer = Peer::Eof;
        assert!(!state.reading());
    }
}
