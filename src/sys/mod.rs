//! The one syscall door: every `unsafe` block of the crate lives in this
//! module, each with a `// SAFETY:` line, and every error built from a
//! syscall keeps its errno.
//!
//! The rule for who calls the kernel:
//! - The selectors, the reactor and the connection layer make no syscall
//!   of their own: every call they make is a function or type of this
//!   module (the hot path here, the rest in `socket` and `notify`).
//! - The server layer (`server/`: listening sockets, datagrams, Unix
//!   paths, worker processes, signal masks) calls nix's safe API itself.
//!   Its calls are setup, not the loop's work, only that layer makes them,
//!   and they are safe; keeping them beside the code that explains them
//!   reads better than a wrapper each here. The one it cannot make safely,
//!   `fork`, is here (`process`, built with the `server` feature).
//!
//! The hot path (recv, send, sendmsg, epoll_wait) calls libc directly:
//! nix's wrappers add conversions the loop does not need on every call.
//! Everything else uses nix's safe API where it has one.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;

mod error;
mod notify;
#[cfg(feature = "server")]
mod process;
mod socket;

pub use error::os_error;
pub(crate) use error::{context, errno_error, errno_error_hint};
pub(crate) use notify::{Counter, Signals};
#[cfg(feature = "server")]
pub(crate) use process::fork;
pub(crate) use socket::{
    Family, bind_source, connect, connect_unix, is_tcp, set_linger_zero, set_nodelay,
    shutdown_write, stream_socket, take_error, tcp_listener,
};
#[cfg(feature = "server")]
pub(crate) use socket::{in_context, socket_for};

/// The result of a raw call: the value, or the errno.
pub(crate) type SysResult<T> = Result<T, i32>;

#[inline(always)]
fn check(ret: isize) -> SysResult<usize> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret as usize)
    }
}

/// The calling thread's errno, read only on the error path.
#[cold]
fn errno() -> i32 {
    nix::errno::Errno::last_raw()
}

/// `recv(2)` into `buf`.
#[inline(always)]
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `buf` is a live, exclusively borrowed buffer and the length
    // passed is its length; the fd is open for the call (borrowed).
    check(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) })
}

/// `send(2)` with `MSG_NOSIGNAL | MSG_DONTWAIT`: never SIGPIPE, never
/// blocks, whatever the fd's flags and the host's signal dispositions.
#[inline(always)]
pub(crate) fn send(fd: BorrowedFd<'_>, data: &[u8]) -> SysResult<usize> {
    // SAFETY: `data` is a live buffer of the length passed; the fd is open
    // for the call (borrowed).
    check(unsafe {
        libc::send(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    })
}

/// A vectored `send` (`sendmsg(2)` with no address or control data), with
/// the flags of [`send`].
#[inline]
pub(crate) fn send_vectored(fd: BorrowedFd<'_>, slices: &[io::IoSlice<'_>]) -> SysResult<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = slices.len() as _;
    // SAFETY: msg points at `slices.len()` live iovecs that outlive the
    // call; the kernel only reads them. The fd is open (borrowed).
    check(unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    })
}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`: the new connection, owned.
pub(crate) fn accept(listener: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    // SAFETY: null address pointers are allowed (the peer address is not
    // wanted); the listener fd is open (borrowed).
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    check(fd as isize)?;
    // SAFETY: accept4 just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `epoll_create1(EPOLL_CLOEXEC)`, then `O_NONBLOCK` (so that a host loop
/// that polls the epoll fd can never block on it).
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the flags are valid.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    check(fd as isize).map_err(|e| errno_error(e, "epoll_create1"))?;
    // SAFETY: epoll_create1 just returned this fd; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(|e| errno_error(e as i32, "fcntl(O_NONBLOCK) on the epoll fd"))?;
    Ok(fd)
}

/// Sets `O_NONBLOCK` on `fd` (keeping its other status flags), for an fd
/// the library reads and writes itself: a blocking one would stall the
/// loop in its first `accept4` or `recv` that has nothing to return.
/// `what` names the fd in the error.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, what: &str) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd, FcntlArg::F_GETFL)
        .map_err(|e| errno_error(e as i32, format_args!("fcntl(F_GETFL) on {what}")))?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags))
        .map_err(|e| errno_error(e as i32, format_args!("fcntl(O_NONBLOCK) on {what}")))?;
    Ok(())
}

/// Whether `fd` has `O_NONBLOCK` set.
pub(crate) fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags =
        fcntl(fd, FcntlArg::F_GETFL).map_err(|e| errno_error(e as i32, "fcntl(F_GETFL)"))?;
    Ok(OFlag::from_bits_retain(flags).contains(OFlag::O_NONBLOCK))
}

/// True for a regular file or a directory: always ready for every
/// readiness API (they have no poll method), so epoll refuses them (EPERM)
/// and poll and select report them ready on every call.
pub(crate) fn is_always_ready(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::stat::{SFlag, fstat};
    fstat(fd).is_ok_and(|st| {
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        kind == SFlag::S_IFREG || kind == SFlag::S_IFDIR
    })
}

/// `epoll_ctl(op, fd, {events, data})`.
pub(crate) fn epoll_ctl(
    epoll: BorrowedFd<'_>,
    op: libc::c_int,
    fd: BorrowedFd<'_>,
    events: u32,
    data: u64,
) -> SysResult<()> {
    let mut event = libc::epoll_event { events, u64: data };
    // SAFETY: `event` is a live epoll_event (DEL ignores it); both fds are
    // open for the call (borrowed).
    check(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd.as_raw_fd(), &mut event) } as isize)
        .map(drop)
}

/// Waits on `epoll` into `buffer` for at most `timeout` (`None`: until an
/// event); how many events it wrote.
///
/// `epoll_wait` takes whole milliseconds, so the timeout is rounded up:
/// late by under 1 ms, never early (an early return would find the timer
/// not yet due and wait again with 0 ms: a spin). Under a millisecond
/// that rounding would multiply the wait (0.3 ms becomes 1 ms), so there
/// `epoll_pwait2` (Linux 5.11) waits the nanoseconds asked; where the
/// kernel or a seccomp filter refuses it (ENOSYS, EPERM), rounding up
/// takes over for the rest of the process.
pub(crate) fn epoll_wait(
    epoll: BorrowedFd<'_>,
    buffer: &mut [libc::epoll_event],
    timeout: Option<std::time::Duration>,
) -> SysResult<usize> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static PWAIT2_REFUSED: AtomicBool = AtomicBool::new(false);
    let max = buffer.len().min(i32::MAX as usize) as i32;
    // (64-bit only: there libc's timespec is the kernel's __kernel_timespec.)
    let under_a_millisecond = timeout
        .filter(|t| t.as_nanos() < 1_000_000 && !t.is_zero())
        .filter(|_| cfg!(target_pointer_width = "64") && !PWAIT2_REFUSED.load(Ordering::Relaxed));
    if let Some(t) = under_a_millisecond {
        let timespec = libc::timespec {
            tv_sec: 0,
            tv_nsec: t.subsec_nanos().into(),
        };
        // SAFETY: `buffer` is a live, exclusively borrowed array of at
        // least `max` epoll_events, of which the kernel writes at most
        // `max`; `timespec` lives across the call; a null sigmask leaves
        // the mask alone.
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                epoll.as_raw_fd(),
                buffer.as_mut_ptr(),
                max,
                &raw const timespec,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        match check(n as isize) {
            Err(libc::ENOSYS | libc::EPERM) => PWAIT2_REFUSED.store(true, Ordering::Relaxed),
            other => return other,
        }
    }
    let timeout_ms = crate::selector::timeout_ms(timeout);
    // SAFETY: as above; the kernel writes at most `max` events.
    check(
        unsafe { libc::epoll_wait(epoll.as_raw_fd(), buffer.as_mut_ptr(), max, timeout_ms) }
            as isize,
    )
}

/// `poll(2)` over `fds`; how many entries have `revents` set.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> SysResult<usize> {
    // SAFETY: `fds` is a live, exclusively borrowed array and the length
    // passed is its length; poll(2) writes only the `revents` fields.
    check(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) } as isize)
}

/// An `fd_set` for [`select`], with bounds-checked access: `FD_SET` on an
/// fd at or above `FD_SETSIZE` would write past the set.
pub(crate) struct FdSet(libc::fd_set);

impl FdSet {
    pub(crate) fn new() -> FdSet {
        // SAFETY: an all-zero fd_set is a valid, empty set (what FD_ZERO
        // writes).
        FdSet(unsafe { std::mem::zeroed() })
    }

    /// Adds `fd`; false (nothing written) if select cannot hold it.
    pub(crate) fn insert(&mut self, fd: RawFd) -> bool {
        if !(0..libc::FD_SETSIZE as RawFd).contains(&fd) {
            return false;
        }
        // SAFETY: 0 <= fd < FD_SETSIZE, checked above, so the bit is inside
        // the set.
        unsafe { libc::FD_SET(fd, &mut self.0) };
        true
    }

    pub(crate) fn contains(&self, fd: RawFd) -> bool {
        // SAFETY: as in insert; out-of-range fds are never members.
        (0..libc::FD_SETSIZE as RawFd).contains(&fd) && unsafe { libc::FD_ISSET(fd, &self.0) }
    }
}

impl fmt::Debug for FdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FdSet")
    }
}

/// `select(2)`; how many fds are ready. The sets are overwritten with the
/// result.
pub(crate) fn select(
    nfds: RawFd,
    read: &mut FdSet,
    write: &mut FdSet,
    timeout: Option<&mut libc::timeval>,
) -> SysResult<usize> {
    let tv = timeout.map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
    // SAFETY: both sets are live and exclusively borrowed; `tv` is null or a
    // live timeval; nfds <= FD_SETSIZE because only fds below it are ever
    // inserted.
    check(unsafe {
        libc::select(
            nfds.min(libc::FD_SETSIZE as RawFd),
            &mut read.0,
            &mut write.0,
            std::ptr::null_mut(),
            tv,
        )
    } as isize)
}

/// Counts the `fork()`s this process is the child of (0 in the original
/// process): a reactor remembers the value it was built under and refuses
/// to run or touch its epoll instance in a child, which shares that
/// instance with the parent (an `EPOLL_CTL_DEL` there would remove the
/// parent's registration).
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn count_fork_in_child() {
    // An atomic add is async-signal-safe, as the child of fork() requires.
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The number of forks this process descends from, with the counting
/// installed on first use.
pub(crate) fn fork_generation() -> u64 {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // SAFETY: the handler is an `extern "C" fn()` that only does an
        // atomic add, which is safe in the child of fork(); no prepare or
        // parent handlers.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
        if rc != 0 {
            log::warn!("pthread_atfork: {}", io::Error::from_raw_os_error(rc));
        }
    });
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether the process forked since `generation` was read.
#[inline(always)]
pub(crate) fn forked_since(generation: u64) -> bool {
    FORKS.load(std::sync::atomic::Ordering::Relaxed) != generation
}
