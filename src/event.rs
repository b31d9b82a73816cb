//! The vocabulary every layer shares: which registration ([`Token`]), what it
//! wants ([`Interest`]), how the kernel should report it ([`Trigger`]) and what
//! happened ([`Ready`], [`Event`]).

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

/// Names one registration: a slab key in the low 32 bits and a generation in
/// the high 32 bits, packed into the 64-bit word epoll hands back with each
/// event.
///
/// The generation is what makes a stale event miss. When a callback
/// deregisters another registration and a new one reuses its slab slot in the
/// same batch of events, a later event for the old registration still carries
/// the old generation and is dropped instead of reaching the newcomer
/// (RELIABILITY.md item 7; nginx's "instance" bit and libev's `egen` do the
/// same).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

impl Token {
    /// Packs a slab key and a generation.
    pub const fn new(key: usize, generation: u32) -> Token {
        Token((generation as u64) << 32 | (key as u32 as u64))
    }

    /// The slab key: which slot of the registration table.
    pub const fn key(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The generation: which registration that slot held.
    pub const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}g{})", self.key(), self.generation())
    }
}

/// The directions a registration wants to hear about: a set of
/// [`Interest::READABLE`] and [`Interest::WRITABLE`].
///
/// [`Interest::NONE`] is allowed at the reactor level and means "not in the
/// kernel's interest list at all" (the fd is removed with `EPOLL_CTL_DEL` while
/// the registration and its token stay). The kernel reports HUP and ERR even
/// for a registration with an empty event mask, so a loop that registered one
/// would spin (DESIGN.md K12).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct Interest(u8);

impl Interest {
    /// Nothing: the fd is kept out of the kernel's interest list.
    pub const NONE: Interest = Interest(0);
    /// Data to read, or the peer closed its write side.
    pub const READABLE: Interest = Interest(1);
    /// Room to write.
    pub const WRITABLE: Interest = Interest(2);
    /// Both directions.
    pub const BOTH: Interest = Interest(3);

    /// True if readable is in the set.
    pub const fn is_readable(self) -> bool {
        self.0 & 1 != 0
    }

    /// True if writable is in the set.
    pub const fn is_writable(self) -> bool {
        self.0 & 2 != 0
    }

    /// True for [`Interest::NONE`].
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// This set with `other` removed.
    pub const fn without(self, other: Interest) -> Interest {
        Interest(self.0 & !other.0)
    }
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

impl BitOrAssign for Interest {
    fn bitor_assign(&mut self, rhs: Interest) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_readable(), self.is_writable()) {
            (false, false) => f.write_str("NONE"),
            (true, false) => f.write_str("READABLE"),
            (false, true) => f.write_str("WRITABLE"),
            (true, true) => f.write_str("READABLE|WRITABLE"),
        }
    }
}

/// How readiness is reported for one registration.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
pub enum Trigger {
    /// Level-triggered: reported on every wait while the condition holds. A
    /// callback may read once and return; it will be told again.
    #[default]
    Level,
    /// Edge-triggered (`EPOLLET`): reported once per change. A callback must
    /// read until `EAGAIN` (or requeue itself), or the wakeup is lost for good
    /// (DESIGN.md K1). Only the epoll backend supports it.
    Edge,
    /// Level-triggered, but disabled after one report until
    /// [`Reactor::modify`](crate::Reactor::modify) re-arms it (`EPOLLONESHOT`).
    Oneshot,
}

/// What the kernel reported for a registration: a set of readiness bits.
///
/// HUP and ERROR are always reported, whatever the interest (epoll does the
/// same). READ_CLOSED (`EPOLLRDHUP`) comes only with read interest.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct Ready(u8);

impl Ready {
    /// No readiness.
    pub const EMPTY: Ready = Ready(0);
    /// Data can be read (or EOF / an error is waiting to be read).
    pub const READABLE: Ready = Ready(1);
    /// Data can be written.
    pub const WRITABLE: Ready = Ready(2);
    /// The peer shut down its write side (`EPOLLRDHUP`).
    pub const READ_CLOSED: Ready = Ready(4);
    /// Hang-up (`EPOLLHUP`): both directions are closed.
    pub const HUP: Ready = Ready(8);
    /// An error is pending on the fd (`EPOLLERR`); read it with `SO_ERROR` or
    /// the next I/O call.
    pub const ERROR: Ready = Ready(16);

    /// True if the fd can be read (or a read would return EOF or an error).
    pub const fn is_readable(self) -> bool {
        self.0 & 1 != 0
    }

    /// True if the fd can be written.
    pub const fn is_writable(self) -> bool {
        self.0 & 2 != 0
    }

    /// True if the peer will send nothing more: READ_CLOSED or HUP.
    pub const fn is_read_closed(self) -> bool {
        self.0 & (4 | 8) != 0
    }

    /// True if HUP was reported.
    pub const fn is_hup(self) -> bool {
        self.0 & 8 != 0
    }

    /// True if ERROR was reported.
    pub const fn is_error(self) -> bool {
        self.0 & 16 != 0
    }

    /// True if no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True if every bit of `other` is set in `self`.
    pub const fn contains(self, other: Ready) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits a registration with `interest` may be told about: the asked-for
    /// directions plus HUP and ERROR, which the kernel always reports.
    pub const fn allowed_by(interest: Interest) -> Ready {
        let mut bits = 8 | 16;
        if interest.is_readable() {
            bits |= 1 | 4;
        }
        if interest.is_writable() {
            bits |= 2;
        }
        Ready(bits)
    }
}

impl BitOr for Ready {
    type Output = Ready;
    fn bitor(self, rhs: Ready) -> Ready {
        Ready(self.0 | rhs.0)
    }
}

impl BitOrAssign for Ready {
    fn bitor_assign(&mut self, rhs: Ready) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Ready {
    type Output = Ready;
    fn bitand(self, rhs: Ready) -> Ready {
        Ready(self.0 & rhs.0)
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 5] = ["READABLE", "WRITABLE", "READ_CLOSED", "HUP", "ERROR"];
        if self.0 == 0 {
            return f.write_str("EMPTY");
        }
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// One readiness report: which registration, and what happened to it.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Event {
    /// The registration this event is for.
    pub token: Token,
    /// What the kernel reported.
    pub ready: Ready,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_key_and_generation() {
        let t = Token::new(123_456, 0xdead_beef);
        assert_eq!(t.key(), 123_456);
        assert_eq!(t.generation(), 0xdead_beef);
    }

    #[test]
    fn ready_allowed_by_interest_always_keeps_hup_and_error() {
        let w = Ready::allowed_by(Interest::WRITABLE);
        assert!(w.contains(Ready::HUP | Ready::ERROR | Ready::WRITABLE));
        assert!(!w.is_readable());
        assert_eq!(
            format!("{:?}", Ready::READABLE | Ready::HUP),
            "READABLE|HUP"
        );
    }
}
