//! POSIX AIO on a socket: is it kernel asynchronous IO? Count the process's
//! threads while one `aio_read` waits on a socket with nothing to read.
//! glibc implements POSIX AIO in user space: each request is handed to a
//! helper thread that makes the ordinary blocking `read`.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::libc;

/// This process's thread count, from /proc.
pub fn threads() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Threads before, and while, one `aio_read` waits on a socket.
pub fn threads_during_aio_read() -> io::Result<(u64, u64)> {
    let (ours, mut theirs) = UnixStream::pair()?;
    let mut buf = [0u8; 64];
    let before = threads();
    // SAFETY: an all-zero aiocb is a valid "no request" value (plain C
    // data, no pointers that must be non-null).
    let mut cb: libc::aiocb = unsafe { std::mem::zeroed() };
    cb.aio_fildes = ours.as_raw_fd();
    cb.aio_buf = buf.as_mut_ptr().cast();
    cb.aio_nbytes = buf.len();
    // SAFETY: `cb` and `buf` live until the request completes below (we
    // wait for it before either goes out of scope), and are not moved.
    if unsafe { libc::aio_read(&mut cb) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::thread::sleep(Duration::from_millis(100));
    let during = threads();
    theirs.write_all(b"done")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: `cb` is the request submitted above.
    while unsafe { libc::aio_error(&cb) } == libc::EINPROGRESS {
        if Instant::now() > deadline {
            // SAFETY: as above; cancel so nothing writes to `buf` later.
            unsafe { libc::aio_cancel(cb.aio_fildes, &mut cb) };
            return Err(io::Error::other("aio_read did not complete in 5 s"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: the request completed; this reaps it.
    unsafe { libc::aio_return(&mut cb) };
    Ok((before, during))
}
