//! Readiness is a property of things that can make a reader wait: sockets,
//! pipes, terminals, eventfds. A regular file or a directory never makes
//! one wait for data (a read may sleep on the disk, which no readiness API
//! reports), so their file operations have no `poll` method. `poll` and
//! `select` then report the default mask, always readable and writable
//! (fs/select.c `vfs_poll`: `DEFAULT_POLLMASK`); `epoll_ctl` refuses them
//! with EPERM (fs/eventpoll.c: `file_can_poll`), because a registration
//! that is always ready would only spin. io_uring reads them for real,
//! asynchronously.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

use edgeloop::{Interest, PostAction, Reactor, Trigger};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::EpollFlags;

use super::{Finding, add, epoll};

/// A regular file with a few bytes in it, in the temp dir; removed on drop.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    /// # Errors
    /// If the temp dir is not writable.
    pub fn new() -> io::Result<TempFile> {
        let path = std::env::temp_dir().join(format!("edgeloop-pitfall-{}", std::process::id()));
        File::create(&path)?.write_all(b"data")?;
        Ok(TempFile { path })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Pitfall 11: epoll on a regular file and on a directory.
///
/// # Errors
/// Setup failures.
pub fn regular_files_and_directories() -> io::Result<Finding> {
    let temp = TempFile::new()?;
    let mut raw = Vec::new();
    for (what, file) in [
        ("regular file", File::open(&temp.path)?),
        ("directory", File::open(std::env::temp_dir())?),
    ] {
        let epoll = epoll()?;
        let added = match add(&epoll, &file, EpollFlags::EPOLLIN, 0) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!(
                "{:?}",
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))
            ),
        };
        let mut fds = [PollFd::new(
            file.as_fd(),
            PollFlags::POLLIN | PollFlags::POLLOUT,
        )];
        poll(&mut fds, PollTimeout::ZERO)?;
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        raw.push((
            what,
            format!("epoll_ctl ADD: {added}; poll at once: {revents:?}"),
        ));
    }
    raw.push(("io_uring read of the file", uring_read(&temp)));
    let (file_kind, file_errno) = edgeloop_register(File::open(&temp.path)?);
    let (dir_kind, _) = edgeloop_register(File::open(std::env::temp_dir())?);
    Ok(Finding {
        pitfall: "11. epoll on a regular file or a directory",
        raw,
        edgeloop: format!(
            "register refuses both: {file_kind:?} ({}) for the file, {dir_kind:?} for the \
             directory, blocking or not, saying why",
            nix::errno::Errno::from_raw(file_errno.unwrap_or(0))
        ),
    })
}

fn uring_read(temp: &TempFile) -> String {
    let read = || -> io::Result<i32> {
        let file = File::open(&temp.path)?;
        let mut ring = io_uring::IoUring::new(2)?;
        let mut buf = [0u8; 16];
        let entry = io_uring::opcode::Read::new(
            io_uring::types::Fd(file.as_raw_fd()),
            buf.as_mut_ptr(),
            buf.len() as u32,
        )
        .build();
        // SAFETY: `buf` and `file` outlive the read: submit_and_wait
        // returns once it completed, and its completion is reaped here.
        unsafe { ring.submission().push(&entry) }.map_err(io::Error::other)?;
        ring.submit_and_wait(1)?;
        let result = ring.completion().next().map_or(-1, |c| c.result());
        Ok(result)
    };
    match read() {
        Ok(n) => format!("completes with {n} bytes"),
        Err(e) => format!("io_uring refused: {e}"),
    }
}

/// On edgeloop: registers `file` as it was opened (blocking); the error's
/// kind and errno.
pub fn edgeloop_register(file: File) -> (io::ErrorKind, Option<i32>) {
    let result = Reactor::new().and_then(|mut reactor| {
        reactor
            .core_mut()
            .register(file, Interest::READABLE, Trigger::Level, |_, _, _| {
                PostAction::Continue
            })
    });
    match result {
        Ok(_) => (io::ErrorKind::Other, None),
        Err(e) => (e.kind(), edgeloop::os_error(&e)),
    }
}
