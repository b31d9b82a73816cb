//! Binding Unix-domain sockets safely (failure mode 35 in docs/failure-modes.md).
//!
//! - A path left behind by a server that died is *stale*: `bind` fails with
//!   `EADDRINUSE` and `SO_REUSEADDR` does not apply. Blindly unlinking would
//!   steal the path of a server that is alive, so we connect first: refused
//!   means stale (unlink, bind again); accepted means alive (a clear error,
//!   and the live server is untouched). libuv does not unlink at all
//!   (libuv#106); the connect-first recipe is katzenpost#1116's.
//! - `sun_path` holds 107 bytes and a NUL: longer paths are a clean error.
//! - A name starting with `@` binds in the abstract namespace: no file, no
//!   permissions (authenticate with SO_PEERCRED if it matters).
//! - `bind` honours the umask; a `mode` is applied to the file right after.
//! - The file is removed when the server is dropped, if it is still ours.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen,
};

/// Where a Unix socket lives: a filesystem path, or (a name starting with
/// `@`) the abstract namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnixPath {
    /// A socket file.
    File(PathBuf),
    /// A name in the abstract namespace (no file).
    Abstract(Vec<u8>),
}

impl UnixPath {
    /// `@name` is abstract; anything else is a path.
    ///
    /// ```
    /// use edgeloop::server::UnixPath;
    /// assert!(matches!(UnixPath::parse("@edgeloop"), UnixPath::Abstract(_)));
    /// assert!(matches!(UnixPath::parse("/tmp/echo.sock"), UnixPath::File(_)));
    /// ```
    pub fn parse(s: &str) -> UnixPath {
        match s.strip_prefix('@') {
            Some(name) => UnixPath::Abstract(name.as_bytes().to_vec()),
            None => UnixPath::File(PathBuf::from(s)),
        }
    }

    fn addr(&self) -> io::Result<UnixAddr> {
        let empty = match self {
            UnixPath::File(path) => path.as_os_str().is_empty(),
            UnixPath::Abstract(name) => name.is_empty(),
        };
        if empty {
            // An empty sun_path binds to an unnamed abstract address the
            // kernel picks (autobind): nobody could find the server.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "edgeloop: an empty unix socket path (it would bind an unnamed address \
                 nobody can reach); give a file path or @name",
            ));
        }
        let result = match self {
            UnixPath::File(path) => UnixAddr::new(path.as_path()),
            UnixPath::Abstract(name) => UnixAddr::new_abstract(name),
        };
        result.map_err(|e| {
            let hint = if e == Errno::ENAMETOOLONG {
                " (sun_path holds at most 107 bytes)"
            } else {
                ""
            };
            crate::sys::errno_error(e as i32, format_args!("unix socket {self}{hint}"))
        })
    }
}

impl std::fmt::Display for UnixPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnixPath::File(p) => write!(f, "{}", p.display()),
            UnixPath::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// Removes a bound socket's file when dropped, if the file is still ours.
#[derive(Debug)]
pub(crate) struct UnlinkOnDrop {
    path: UnixPath,
    inode: Option<u64>,
}

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        if let (UnixPath::File(path), Some(inode)) = (&self.path, self.inode) {
            // Only our own file: a later server may have replaced it.
            if inode_of(path) == Some(inode) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn inode_of(path: &Path) -> Option<u64> {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).ok()?).into()
}

/// Binds a non-blocking, close-on-exec Unix socket of `kind` at `path`;
/// listens with `backlog` for streams. Applies `mode` to the file. The guard
/// removes the file when dropped.
pub(crate) fn bind_unix(
    path: &UnixPath,
    kind: SockType,
    backlog: Option<i32>,
    mode: Option<u32>,
) -> io::Result<(OwnedFd, UnlinkOnDrop)> {
    let addr = path.addr()?;
    let fd = new_socket(kind)?;
    match bind(fd.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(Errno::EADDRINUSE) if matches!(path, UnixPath::File(_)) => {
            if let UnixPath::File(p) = path {
                refuse_non_socket(p)?;
            }
            if is_alive(&addr, kind)? {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "unix socket {path}: a live server is listening there; not touching it"
                    ),
                ));
            }
            // Stale: nobody answers. Replace it.
            if let UnixPath::File(p) = path {
                std::fs::remove_file(p)?;
            }
            bind(fd.as_raw_fd(), &addr)
                .map_err(|e| crate::sys::errno_error(e as i32, format_args!("bind {path}")))?;
        }
        Err(e) => {
            return Err(crate::sys::errno_error(
                e as i32,
                format_args!("bind {path}"),
            ));
        }
    }
    let inode = match path {
        UnixPath::File(p) => {
            if let Some(mode) = mode {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
            }
            inode_of(p)
        }
        UnixPath::Abstract(_) => None,
    };
    if kind == SockType::Stream {
        let backlog = Backlog::new(backlog.unwrap_or_else(crate::conn::somaxconn).max(1))
            .unwrap_or(Backlog::MAXCONN);
        listen(&fd, backlog)
            .map_err(|e| crate::sys::errno_error(e as i32, format_args!("listen on {path}")))?;
    }
    Ok((
        fd,
        UnlinkOnDrop {
            path: path.clone(),
            inode,
        },
    ))
}

/// Only a socket file may be replaced: a regular file, a directory or a
/// symlink (followed or not) at the path is the user's, and a typo in a
/// path must never delete it. `lstat`, so a symlink is seen as itself.
fn refuse_non_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::symlink_metadata(path)
        .map_err(|e| crate::sys::context(e, format_args!("unix socket {}", path.display())))?
        .file_type();
    if kind.is_socket() {
        return Ok(());
    }
    let what = if kind.is_symlink() {
        "a symlink"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a socket"
    };
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "unix socket {}: the path exists and is {what}; refusing to replace it (remove it \
             yourself, or choose another path)",
            path.display()
        ),
    ))
}

fn new_socket(kind: SockType) -> io::Result<OwnedFd> {
    socket::socket(
        AddressFamily::Unix,
        kind,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| crate::sys::errno_error(e as i32, format_args!("unix socket")))
}

/// True if something accepts a connection (or a datagram) at `addr`.
fn is_alive(addr: &UnixAddr, kind: SockType) -> io::Result<bool> {
    let probe = socket::socket(AddressFamily::Unix, kind, SockFlag::SOCK_CLOEXEC, None)?;
    match connect(probe.as_raw_fd(), addr) {
        Ok(()) => Ok(true),
        Err(Errno::ECONNREFUSED | Errno::ENOENT) => Ok(false),
        // EAGAIN: a live server with a full backlog.
        Err(Errno::EAGAIN) => Ok(true),
        Err(e) => Err(crate::sys::errno_error(
            e as i32,
            format_args!("probing {addr}"),
        )),
    }
}
