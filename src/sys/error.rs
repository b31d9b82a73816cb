//! Errors that keep the errno *and* say what failed.
//!
//! `std::io::Error` holds either a bare OS code (`raw_os_error()` is `Some`,
//! the message is only strerror) or a custom payload (a message, and
//! `raw_os_error()` is `None`): it cannot hold both. An error from a
//! syscall here is a custom [`io::Error`] whose kind is the errno's kind,
//! whose message names the call, the fd and what to do, and whose
//! [`source`](std::error::Error::source) is the bare OS error.
//! [`os_error`] reads the errno back from either form.

use std::error::Error;
use std::fmt;
use std::io;

/// The errno behind `error`, whichever form it takes: a bare OS error, or
/// one of edgeloop's errors with context (whose source is the OS error).
///
/// ```
/// let e = std::io::Error::from_raw_os_error(9);
/// assert_eq!(edgeloop::os_error(&e), Some(9));
/// ```
pub fn os_error(error: &io::Error) -> Option<i32> {
    if let Some(code) = error.raw_os_error() {
        return Some(code);
    }
    let mut cause = error.get_ref()?.source();
    while let Some(e) = cause {
        if let Some(code) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(code);
        }
        cause = e.source();
    }
    None
}

struct WithContext {
    context: String,
    os: io::Error,
    /// What to do about it, after the errno (may be empty).
    hint: &'static str,
}

impl fmt::Debug for WithContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.context, self.os)
    }
}

impl fmt::Display for WithContext {
    /// `context: ENAME: description (os error N)`: the errno's name is
    /// what a user greps man pages for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.os.raw_os_error().unwrap_or(0);
        let errno = nix::errno::Errno::from_raw(code);
        write!(
            f,
            "{}: {errno} (os error {code}){}",
            self.context, self.hint
        )
    }
}

impl Error for WithContext {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.os)
    }
}

/// An error for `errno`, with `context` in front of strerror.
pub(crate) fn errno_error(errno: i32, context: impl fmt::Display) -> io::Error {
    context_of(io::Error::from_raw_os_error(errno), context, "")
}

/// Like [`errno_error`], with a `hint` (what to do, starting with "; ")
/// after the errno.
pub(crate) fn errno_error_hint(
    errno: i32,
    context: impl fmt::Display,
    hint: &'static str,
) -> io::Error {
    context_of(io::Error::from_raw_os_error(errno), context, hint)
}

/// `error` with `context` in front; an OS error keeps its errno (see
/// [`os_error`]), any other error its kind.
pub(crate) fn context(error: io::Error, context: impl fmt::Display) -> io::Error {
    context_of(error, context, "")
}

fn context_of(error: io::Error, context: impl fmt::Display, hint: &'static str) -> io::Error {
    let context = context.to_string();
    if error.raw_os_error().is_some() {
        let kind = error.kind();
        io::Error::new(
            kind,
            WithContext {
                context,
                os: error,
                hint,
            },
        )
    } else {
        io::Error::new(error.kind(), format!("{context}: {error}{hint}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_with_context_keeps_its_errno_and_kind() {
        let e = errno_error(9, "epoll_ctl(DEL, fd 7)");
        assert_eq!(os_error(&e), Some(9));
        assert_eq!(e.kind(), io::Error::from_raw_os_error(9).kind());
        assert_eq!(
            e.to_string(),
            "epoll_ctl(DEL, fd 7): EBADF: Bad file number (os error 9)"
        );
        let plain = context(io::Error::other("x"), "y");
        assert_eq!(os_error(&plain), None);
    }
}
