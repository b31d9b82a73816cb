//! The vocabulary every layer shares: which registration ([`Token`]), what it
//! wants ([`Interest`]), how the kernel should report it ([`Trigger`]) and what
//! happened ([`Ready`], [`Event`]).

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

use nix::libc;

/// Names one registration: which owner holds it, which slot of the
/// owner's table, and which occupant of that slot, packed into the 64-bit
/// word epoll hands back with each event.
///
/// Layout: the slot key in the low 32 bits, the owner in the next 8, a
/// generation in the top 24. The reactor routes an event to its owner by
/// the owner byte; the owner finds its entry by the key and drops the event
/// if the generation differs. That is what makes a stale event miss: when a
/// callback removes another registration and a new one reuses the slot in
/// the same batch, a later event for the old one still carries the old
/// generation (nginx's "instance" bit and libev's `egen` do the same).
///
/// Only the reactor makes tokens: [`Core::register`](crate::Core::register)
/// returns a plain registration's, and a [`Source`](crate::Source) gets a
/// [`TokenFactory`] carrying its owner byte when it is installed. No safe
/// code can write one out of numbers and so reach, re-arm or time out a
/// registration it was never given. A token names a registration of the
/// reactor that made it; handed to another reactor it may match anything
/// there, or nothing (the 64 bits have no room for a reactor's id):
///
/// ```compile_fail
/// let forged = edgeloop::Token::new(2, 0, 1); // private: only the reactor mints tokens
/// ```
///
/// ```
/// use edgeloop::{Interest, PostAction, Reactor, Trigger};
/// let mut reactor = Reactor::new()?;
/// let (ours, _theirs) = std::os::unix::net::UnixStream::pair()?;
/// ours.set_nonblocking(true)?;
/// let token = reactor.core_mut().register(ours, Interest::READABLE, Trigger::Level, |_, _, _| {
///     PostAction::Continue
/// })?;
/// assert_eq!(token.owner(), 0); // plain registrations' owner byte
/// assert!(token.generation() > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(u64);

impl Token {
    /// Packs an owner, a slot key and a generation (only its low 24 bits
    /// are kept). Crate-private: tokens reach others only from the
    /// reactor (a registration's, or a [`TokenFactory`]'s).
    pub(crate) const fn new(owner: u8, key: u32, generation: u32) -> Token {
        Token(((generation as u64 & 0xff_ffff) << 40) | ((owner as u64) << 32) | key as u64)
    }

    /// The word the kernel stores and hands back with each event.
    #[inline(always)]
    pub(crate) const fn from_word(word: u64) -> Token {
        Token(word)
    }

    /// The word to give the kernel. Never 0 for a token the reactor made
    /// (owner 0 is plain registrations', whose generations start at 1), so
    /// 0 can mean "no token" in the reactor's tables.
    #[inline(always)]
    pub(crate) const fn word(self) -> u64 {
        self.0
    }

    /// The slot key in the owner's table.
    pub const fn key(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The owner: which table holds the registration.
    pub const fn owner(self) -> u8 {
        (self.0 >> 32) as u8
    }

    /// The generation: which registration that slot held (24 bits).
    pub const fn generation(self) -> u32 {
        (self.0 >> 40) as u32
    }
}

/// Makes the tokens of one installed [`Source`](crate::Source): each
/// carries the owner byte the reactor gave it, so its events and timers
/// come back to it. The reactor hands a source its factory once, in
/// [`Source::installed`](crate::Source::installed); nothing else makes
/// one (calloop's `TokenFactory` is the model).
///
/// ```
/// use edgeloop::{Batch, Core, Source, TokenFactory};
/// struct Mine(Option<TokenFactory>);
/// impl Source<()> for Mine {
///     fn installed(&mut self, tokens: TokenFactory) {
///         self.0 = Some(tokens);
///     }
///     fn dispatch(&mut self, _: &mut Core<()>, batch: &mut Batch<'_>) {
///         while batch.next_event().is_some() {
///             batch.record(true);
///         }
///     }
/// }
/// let mut reactor = edgeloop::Reactor::new()?;
/// let id = reactor.install(Mine(None))?;
/// let tokens = reactor.source(id).0.unwrap();
/// let token = tokens.token(5, 1);
/// assert_eq!((token.owner(), token.key(), token.generation()), (id.owner(), 5, 1));
/// // The same slot, reused: another generation, so another token.
/// assert_ne!(token, tokens.token(5, 2));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct TokenFactory {
    owner: u8,
}

impl TokenFactory {
    /// The factory of the source with owner byte `owner` (the reactor's
    /// to call, at install).
    pub(crate) const fn new(owner: u8) -> TokenFactory {
        TokenFactory { owner }
    }

    /// The token for slot `key` of this source's table, occupied for the
    /// `generation`th time (only the generation's low 24 bits are kept).
    #[inline(always)]
    pub const fn token(self, key: u32, generation: u32) -> Token {
        Token::new(self.owner, key, generation)
    }

    /// The owner byte every token of this factory carries.
    pub const fn owner(self) -> u8 {
        self.owner
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Token({}:{}g{})",
            self.owner(),
            self.key(),
            self.generation()
        )
    }
}

/// The directions a registration wants to hear about: a set of
/// [`Interest::READABLE`] and [`Interest::WRITABLE`].
///
/// [`Interest::NONE`] is allowed at the reactor level and means "not in the
/// kernel's interest list at all" (the fd is removed with `EPOLL_CTL_DEL` while
/// the registration and its token stay). The kernel reports HUP and ERR even
/// for a registration with an empty event mask, so a loop that registered one
/// would spin (docs/kernel-facts.md K12).
///
/// ```
/// use edgeloop::Interest;
/// let both = Interest::READABLE | Interest::WRITABLE;
/// assert_eq!(both, Interest::BOTH);
/// assert_eq!(both.without(Interest::WRITABLE), Interest::READABLE);
/// assert_eq!(format!("{:?}", Interest::READABLE | Interest::PRIORITY), "READABLE|PRIORITY");
/// assert!(Interest::NONE.is_empty());
/// ```
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
    /// Priority data (`EPOLLPRI` / `POLLPRI`): TCP urgent data, a GPIO
    /// line's edge in sysfs, a cgroup's `memory.events` or
    /// `cgroup.events` change, a PSI trigger. Combine with `|`. The select
    /// backend refuses it (`Unsupported`).
    pub const PRIORITY: Interest = Interest(4);
    /// Not a direction but a way of waking (`EPOLLEXCLUSIVE`, epoll only):
    /// when several epoll instances (one per reactor thread) watch one fd,
    /// an event wakes one of them, not all. For a listener shared by
    /// several reactors, so one connection does not wake every thread (the
    /// thundering herd). The kernel refuses `EPOLL_CTL_MOD` of such a
    /// registration (`EINVAL`), so a change to or from it is a delete and
    /// an add (two `epoll_ctl` calls); with [`Trigger::Oneshot`] it is
    /// refused (`EINVAL`, as the kernel would). Which waiter wakes follows
    /// the wait queue's order, not the waiters' load: one reactor may take
    /// most connections. Poll and select refuse it (`Unsupported`).
    ///
    /// [`Trigger::Oneshot`]: crate::Trigger::Oneshot
    pub const EXCLUSIVE: Interest = Interest(8);

    /// True if readable is in the set.
    pub const fn is_readable(self) -> bool {
        self.0 & 1 != 0
    }

    /// True if writable is in the set.
    pub const fn is_writable(self) -> bool {
        self.0 & 2 != 0
    }

    /// True if priority data is in the set.
    pub const fn is_priority(self) -> bool {
        self.0 & 4 != 0
    }

    /// True if the registration wakes exclusively ([`Interest::EXCLUSIVE`]).
    pub const fn is_exclusive(self) -> bool {
        self.0 & 8 != 0
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
        let names = [
            (self.is_readable(), "READABLE"),
            (self.is_writable(), "WRITABLE"),
            (self.is_priority(), "PRIORITY"),
            (self.is_exclusive(), "EXCLUSIVE"),
        ];
        let mut any = false;
        for (_, name) in names.iter().filter(|(set, _)| *set) {
            if any {
                f.write_str("|")?;
            }
            f.write_str(name)?;
            any = true;
        }
        if !any {
            f.write_str("NONE")?;
        }
        Ok(())
    }
}

/// ```
/// use edgeloop::{Backend, Interest, PostAction, Reactor, Trigger};
/// // Edge and oneshot need epoll; poll and select are level-triggered,
/// // and refuse them rather than deliver something else.
/// let mut poll = Reactor::with_backend(Backend::Poll)?;
/// let (ours, _theirs) = std::os::unix::net::UnixStream::pair()?;
/// ours.set_nonblocking(true)?;
/// let refused = poll
///     .core_mut()
///     .register(ours, Interest::READABLE, Trigger::Edge, |_, _, _| PostAction::Continue)
///     .unwrap_err();
/// assert_eq!(refused.kind(), std::io::ErrorKind::Unsupported);
/// # Ok::<(), std::io::Error>(())
/// ```
/// How readiness is reported for one registration.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum Trigger {
    /// Level-triggered: reported on every wait while the condition holds. A
    /// callback may read once and return; it will be told again.
    #[default]
    Level,
    /// Edge-triggered (`EPOLLET`): reported once per change. A callback must
    /// read until `EAGAIN` (or requeue itself), or the wakeup is lost for good
    /// (docs/kernel-facts.md K1). Only the epoll backend supports it.
    Edge,
    /// Level-triggered, but disabled after one report until
    /// [`Core::modify`](crate::Core::modify) re-arms it (`EPOLLONESHOT`).
    Oneshot,
}

/// What the kernel reported for a registration: a set of readiness bits.
///
/// The bits are the kernel's own: `EPOLLIN`, `EPOLLOUT`, `EPOLLRDHUP`,
/// `EPOLLHUP` and `EPOLLERR` have the same values as their `POLL*` twins on
/// Linux, so an event is read from the kernel's buffer as it is, with no
/// translation.
///
/// HUP and ERROR are always reported, whatever the interest (epoll does the
/// same). READ_CLOSED (`EPOLLRDHUP`) comes only with read interest.
///
/// ```
/// use edgeloop::{Interest, Ready};
/// // A peer that sent its last bytes and shut down its write side:
/// let ready = Ready::READABLE | Ready::READ_CLOSED;
/// assert!(ready.is_readable() && ready.is_read_closed() && !ready.is_hup());
/// // What a write-only registration may be told: WRITABLE, HUP, ERROR.
/// let allowed = Ready::allowed_by(Interest::WRITABLE);
/// assert!((ready & allowed).is_empty());
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct Ready(u32);

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const RDHUP: u32 = libc::EPOLLRDHUP as u32;
const HUP: u32 = libc::EPOLLHUP as u32;
const ERR: u32 = libc::EPOLLERR as u32;
const PRI: u32 = libc::EPOLLPRI as u32;
/// Every bit a `Ready` may hold.
const KNOWN: u32 = IN | OUT | RDHUP | HUP | ERR | PRI;

// The translation-free read of events relies on these (Linux, every arch).
const _: () = assert!(IN == libc::POLLIN as u32 && OUT == libc::POLLOUT as u32);
const _: () = assert!(RDHUP == libc::POLLRDHUP as u32 && HUP == libc::POLLHUP as u32);
const _: () = assert!(ERR == libc::POLLERR as u32 && PRI == libc::POLLPRI as u32);

impl Ready {
    /// No readiness.
    pub const EMPTY: Ready = Ready(0);
    /// Data can be read (or EOF / an error is waiting to be read).
    pub const READABLE: Ready = Ready(IN);
    /// Data can be written.
    pub const WRITABLE: Ready = Ready(OUT);
    /// The peer shut down its write side (`EPOLLRDHUP`).
    pub const READ_CLOSED: Ready = Ready(RDHUP);
    /// Hang-up (`EPOLLHUP`): both directions are closed.
    pub const HUP: Ready = Ready(HUP);
    /// An error is pending on the fd (`EPOLLERR`); read it with `SO_ERROR` or
    /// the next I/O call.
    pub const ERROR: Ready = Ready(ERR);
    /// Priority data is waiting (`EPOLLPRI`); only reported to an
    /// [`Interest::PRIORITY`] registration.
    pub const PRIORITY: Ready = Ready(PRI);

    /// The readiness in a kernel event mask (`epoll_event.events` or
    /// `pollfd.revents`); bits edgeloop does not know are dropped.
    pub(crate) const fn from_kernel(bits: u32) -> Ready {
        Ready(bits & KNOWN)
    }

    /// The kernel bits (`EPOLL*`, which equal `POLL*`).
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True if the fd can be read (or a read would return EOF or an error).
    pub const fn is_readable(self) -> bool {
        self.0 & IN != 0
    }

    /// True if the fd can be written.
    pub const fn is_writable(self) -> bool {
        self.0 & OUT != 0
    }

    /// True if the peer will send nothing more: READ_CLOSED or HUP.
    pub const fn is_read_closed(self) -> bool {
        self.0 & (RDHUP | HUP) != 0
    }

    /// True if HUP was reported.
    pub const fn is_hup(self) -> bool {
        self.0 & HUP != 0
    }

    /// True if ERROR was reported.
    pub const fn is_error(self) -> bool {
        self.0 & ERR != 0
    }

    /// True if PRIORITY was reported.
    pub const fn is_priority(self) -> bool {
        self.0 & PRI != 0
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
        let mut bits = HUP | ERR;
        if interest.is_readable() {
            bits |= IN | RDHUP;
        }
        if interest.is_writable() {
            bits |= OUT;
        }
        if interest.is_priority() {
            bits |= PRI;
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
        const NAMES: [(u32, &str); 6] = [
            (IN, "READABLE"),
            (PRI, "PRIORITY"),
            (OUT, "WRITABLE"),
            (RDHUP, "READ_CLOSED"),
            (HUP, "HUP"),
            (ERR, "ERROR"),
        ];
        if self.0 == 0 {
            return f.write_str("EMPTY");
        }
        let mut first = true;
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
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
        let t = Token::new(7, 123_456, 0xde_beef);
        assert_eq!(t.key(), 123_456);
        assert_eq!(t.owner(), 7);
        assert_eq!(t.generation(), 0xde_beef);
        assert_eq!(Token::new(0, 1, 0x1ff_ffff).generation(), 0xff_ffff);
        assert_eq!(Token::from_word(t.word()), t);
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
