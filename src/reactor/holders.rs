//! Which registration holds each fd the reactor watches.
//!
//! The kernel's interest list says only whether an fd is in it; the reactor
//! needs more to keep its contracts: a second registration of a live fd is
//! refused whatever either interest (an empty interest makes no
//! `EPOLL_CTL_ADD` the kernel could refuse), and a source may change or
//! remove an fd only under the token that armed it (otherwise safe code
//! could re-arm another registration's fd, or route an fd's events to a
//! registration that never had it).
//!
//! A plain registration holds its fd from `register` to its removal; a
//! source's fd is held from the `set_interest` that adds it to the one that
//! takes it out. One word per fd number, indexed by the number: fds are
//! small, dense integers, so this costs 8 bytes per fd and a bounds check,
//! where a hash set cost a hash and some 30 bytes per entry.

use std::io;
use std::os::fd::RawFd;

use crate::Token;

/// The token holding each fd number, 0 for none (no token the reactor makes
/// is 0; see [`Token::word`]).
#[derive(Default)]
pub(super) struct FdHolders {
    by_fd: Vec<u64>,
}

impl FdHolders {
    /// The token that holds `fd`, if any.
    #[inline]
    pub(super) fn holder(&self, fd: RawFd) -> Option<Token> {
        match self.by_fd.get(usize::try_from(fd).ok()?) {
            Some(&word) if word != 0 => Some(Token::from_word(word)),
            _ => None,
        }
    }

    /// `Ok` if `token` may move `fd` from an empty or armed interest
    /// (`from_empty`) to an empty or armed one (`to_empty`): an add only of
    /// an fd nobody holds, a change or removal only under the token that
    /// holds it.
    ///
    /// # Errors
    /// `AlreadyExists` (with `EEXIST`) for an add of a held fd, `NotFound`
    /// (with `ENOENT`, as the kernel would say) for a change of an fd
    /// nobody holds, `InvalidInput` for a change
    /// under another token; each names the fd and the holder.
    pub(super) fn check_change(
        &self,
        fd: RawFd,
        token: Token,
        from_empty: bool,
        to_empty: bool,
    ) -> io::Result<()> {
        match (from_empty, self.holder(fd)) {
            (true, Some(holder)) if !to_empty => Err(crate::sys::errno_error(
                nix::libc::EEXIST,
                format_args!(
                    "edgeloop: fd {fd} is held already, by {holder:?}: take it out \
                     (to = Interest::NONE) under that token first"
                ),
            )),
            // The kernel's answer too (EPOLL_CTL_MOD or DEL of an fd not
            // in the list): the errno is kept.
            (false, None) => Err(crate::sys::errno_error(
                nix::libc::ENOENT,
                format_args!(
                    "edgeloop: fd {fd} is not in the interest list under any token (add it \
                     first: from = Interest::NONE)"
                ),
            )),
            (false, Some(holder)) if holder != token => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "edgeloop: fd {fd} is held by {holder:?}, not {token:?}: a source changes \
                     only the fds it added itself"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Records that `token` holds `fd` (which no token holds).
    pub(super) fn hold(&mut self, fd: RawFd, token: Token) {
        let Ok(index) = usize::try_from(fd) else {
            return; // not an fd: nothing could be registered under it
        };
        if index >= self.by_fd.len() {
            // Grow by a quarter at least, not double: the table is sized
            // by the highest fd, and C100k servers live near their limit.
            let len = (index + 1).max(self.by_fd.len() + self.by_fd.len() / 4);
            self.by_fd.reserve_exact(len - self.by_fd.len());
            self.by_fd.resize(len, 0);
        }
        debug_assert_eq!(self.by_fd[index], 0, "fd {fd} is held already");
        self.by_fd[index] = token.word();
    }

    /// `token` no longer holds `fd` (nothing changes if another token
    /// holds it now: a registration that deregistered itself in its
    /// callback, its fd then registered again, releases nothing).
    pub(super) fn release(&mut self, fd: RawFd, token: Token) {
        if let Some(word) = usize::try_from(fd).ok().and_then(|i| self.by_fd.get_mut(i)) {
            if *word == token.word() {
                *word = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_releases_and_ignores_a_release_by_another_token() {
        let mut holders = FdHolders::default();
        let (a, b) = (Token::new(2, 1, 1), Token::new(0, 1, 1));
        assert_eq!(holders.holder(7), None);
        holders.hold(7, a);
        assert_eq!(holders.holder(7), Some(a));
        assert_eq!(holders.holder(6), None);
        assert_eq!(holders.holder(-1), None);
        holders.release(7, b);
        assert_eq!(holders.holder(7), Some(a), "b never held it");
        holders.release(7, a);
        assert_eq!(holders.holder(7), None);
        holders.hold(7, b);
        assert_eq!(holders.holder(7), Some(b));
    }
}
