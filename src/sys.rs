//! The few places where a raw fd has to become a borrowed one for nix. Every
//! `unsafe` block in the crate that touches an fd lives here or next to the
//! one syscall that needs it, each with its `// SAFETY:` reason.

use std::os::fd::{BorrowedFd, RawFd};

/// Borrows a raw fd that the caller keeps open for the duration of one call.
///
/// The reactor stores raw fds because it does not own them: the registration
/// contract (documented on [`Reactor::register`](crate::Reactor::register))
/// is that the fd stays open until it is deregistered. An fd closed early
/// makes the syscall fail with `EBADF`, which is reported, never undefined
/// behaviour: the kernel validates fd numbers.
pub(crate) fn borrow_fd<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: BorrowedFd only requires that the fd is not -1 and stays open for
    // 'a. The kernel checks the number on every syscall, so a closed fd gives
    // EBADF rather than memory unsafety; 'a is one syscall long at every call
    // site.
    assert!(fd >= 0, "negative fd {fd}");
    unsafe { BorrowedFd::borrow_raw(fd) }
}
