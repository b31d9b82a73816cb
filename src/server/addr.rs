//! [`ServerAddr`]: where a server is bound, an IP address and port or a
//! Unix socket, as a type rather than a string.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use super::UnixPath;

/// Where a server is bound: what its `local_addr()` reports.
///
/// It prints as `127.0.0.1:43517`, a path, or `@name`, and a TCP or UDP
/// client can connect to it directly:
///
/// ```
/// use edgeloop::server::ServerAddr;
/// let addr = ServerAddr::from("127.0.0.1:7000".parse::<std::net::SocketAddr>().unwrap());
/// assert_eq!(addr.to_string(), "127.0.0.1:7000");
/// assert_eq!(addr.inet().map(|a| a.port()), Some(7000));
/// // A client connects to it as to a SocketAddr (this one refuses: nobody listens).
/// assert!(std::net::TcpStream::connect(&addr).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerAddr {
    /// An IP address and port (TCP or UDP).
    Inet(SocketAddr),
    /// A Unix socket: a path, or a name in the abstract namespace.
    Unix(UnixPath),
}

impl ServerAddr {
    /// The IP address and port, if it is one.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            ServerAddr::Inet(addr) => Some(*addr),
            ServerAddr::Unix(_) => None,
        }
    }

    /// The Unix socket, if it is one.
    pub fn unix(&self) -> Option<&UnixPath> {
        match self {
            ServerAddr::Inet(_) => None,
            ServerAddr::Unix(path) => Some(path),
        }
    }
}

impl From<SocketAddr> for ServerAddr {
    fn from(addr: SocketAddr) -> ServerAddr {
        ServerAddr::Inet(addr)
    }
}

impl From<UnixPath> for ServerAddr {
    fn from(path: UnixPath) -> ServerAddr {
        ServerAddr::Unix(path)
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Inet(addr) => addr.fmt(f),
            ServerAddr::Unix(path) => path.fmt(f),
        }
    }
}

/// A client connects (or sends) to an IP server's address as it would to
/// the `SocketAddr`; a Unix socket's is `InvalidInput`.
impl ToSocketAddrs for ServerAddr {
    type Iter = std::option::IntoIter<SocketAddr>;

    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        match self {
            ServerAddr::Inet(addr) => Ok(Some(*addr).into_iter()),
            ServerAddr::Unix(path) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path} is a Unix socket, not an IP address and port"),
            )),
        }
    }
}
