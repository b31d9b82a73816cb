//! One reactor per core, the nginx way: N threads,
//! each with its own reactor and its own `SO_REUSEPORT` listener on the same
//! address, so the kernel spreads connections over them and no lock is
//! shared. A single reactor stays single-threaded.
//!
//! To scale past one machine, put several hosts behind an ordinary L4 load
//! balancer (LVS, an HAProxy TCP frontend, a cloud NLB); edgeloop does no
//! clustering of its own.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::{ServerOptions, ShutdownHandle, StreamServer};
use crate::Reactor;
use crate::conn::tcp_listener;
use crate::conn::{ConnStats, Handler};

/// N TCP servers on N threads sharing one address through `SO_REUSEPORT`.
///
/// ```
/// use edgeloop::conn::{Conn, Handler};
/// use edgeloop::server::{ServerOptions, Workers};
/// use std::io::{Read, Write};
///
/// #[derive(Clone)]
/// struct Echo;
/// impl Handler for Echo {
///     type Session = ();
///     fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
///         conn.write(data);
///     }
/// }
///
/// let workers = Workers::bind("127.0.0.1:0".parse().unwrap(), 2, || Echo, ServerOptions::default())?;
/// let mut client = std::net::TcpStream::connect(workers.local_addr())?;
/// client.write_all(b"hi")?;
/// let mut reply = [0; 2];
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"hi");
/// drop(client);
/// workers.shutdown();
/// assert_eq!(workers.join()?.len(), 2); // each worker's ConnStats
/// # Ok::<(), std::io::Error>(())
/// ```
/// N TCP servers on N threads sharing one address through `SO_REUSEPORT`.
#[derive(Debug)]
pub struct Workers {
    local_addr: SocketAddr,
    shutdowns: Vec<ShutdownHandle>,
    threads: Vec<JoinHandle<io::Result<ConnStats>>>,
}

impl Workers {
    /// Binds `n` listeners on `addr` (port 0: the first picks, the others
    /// follow) and starts a server on each, with a handler from `make`.
    ///
    /// # Errors
    /// Binding errors; `AddrInUse` if another socket listens on `addr` (a
    /// `SO_REUSEPORT` group would share connections with it); a worker that
    /// failed to start.
    pub fn bind<H, F>(
        addr: SocketAddr,
        n: usize,
        make: F,
        options: ServerOptions,
    ) -> io::Result<Workers>
    where
        H: Handler,
        F: Fn() -> H + Send + Sync + Clone + 'static,
    {
        super::net::refuse_if_taken(addr)?;
        let first = tcp_listener(addr, options.backlog, true)?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..n.max(1) {
            listeners.push(tcp_listener(local_addr, options.backlog, true)?);
        }
        let mut shutdowns = Vec::new();
        let mut threads = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            let make = make.clone();
            let options = options.clone();
            // Signals belong to the thread that set up their handling, never
            // to a worker.
            threads.push(super::spawn_with_signals_blocked(
                format!("edgeloop-worker-{i}"),
                move || -> io::Result<ConnStats> {
                    let reactor = Reactor::with_backend(options.backend)?;
                    let mut server = StreamServer::from_tcp(reactor, listener, make(), options)?;
                    let _ = tx.send(server.shutdown_handle());
                    server.serve_forever()?;
                    Ok(*server.stats())
                },
            )?);
            shutdowns.push(
                rx.recv()
                    .map_err(|_| io::Error::other(format!("worker {i} failed to start")))?,
            );
        }
        Ok(Workers {
            local_addr,
            shutdowns,
            threads,
        })
    }

    /// The shared address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle per worker, to stop them (from anywhere, a handler included).
    pub fn shutdown_handles(&self) -> Vec<ShutdownHandle> {
        self.shutdowns.clone()
    }

    /// Asks every worker to shut down gracefully; never blocks.
    pub fn shutdown(&self) {
        for s in &self.shutdowns {
            s.shutdown();
        }
    }

    /// Waits for every worker to exit; returns each one's connection
    /// counters.
    ///
    /// # Errors
    /// The first worker's error, if any failed.
    pub fn join(self) -> io::Result<Vec<ConnStats>> {
        self.threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| io::Error::other("a worker panicked"))?
            })
            .collect()
    }
}
