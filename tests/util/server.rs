//! A server on its own thread, for in-process tests.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use edgeloop::conn::ConnStats;
use edgeloop::conn::{Conn, Handler};
use edgeloop::server::{ServerOptions, ShutdownHandle, StreamServer};
use edgeloop::{PanicPolicy, Stats};

/// Echoes every byte.
pub struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(data);
    }
}

pub struct ServerThread {
    pub addr: SocketAddr,
    pub shutdown: ShutdownHandle,
    thread: Option<JoinHandle<(Stats, ConnStats, usize)>>,
}

impl ServerThread {
    /// Shuts the server down and returns its connection counters and its
    /// open connection count after the graceful close.
    pub fn stop(self) -> (ConnStats, usize) {
        let (_, conn, open) = self.stop_all();
        (conn, open)
    }

    /// Like `stop`, with the loop's own counters first.
    pub fn stop_all(mut self) -> (Stats, ConnStats, usize) {
        self.shutdown.shutdown();
        assert!(
            self.shutdown.wait(Duration::from_secs(20)).unwrap(),
            "server did not stop"
        );
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

/// Starts a TCP server on 127.0.0.1 with `make()`'s handler. A handler's
/// panic propagates (the server thread dies and `stop` fails the test).
pub fn start<H: Handler>(
    make: impl FnOnce() -> H + Send + 'static,
    mut options: ServerOptions,
) -> ServerThread {
    options.panic_policy = PanicPolicy::Propagate;
    start_with_policy(make, options)
}

/// Like `start`, with the panic policy `options` asks for (the panic
/// isolation tests want `Isolate`).
pub fn start_with_policy<H: Handler>(
    make: impl FnOnce() -> H + Send + 'static,
    options: ServerOptions,
) -> ServerThread {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut server =
            StreamServer::bind("127.0.0.1:0".parse().unwrap(), make(), options).unwrap();
        tx.send((
            server.local_addr().inet().unwrap(),
            server.shutdown_handle(),
        ))
        .unwrap();
        server.serve_forever().unwrap();
        (
            *server.reactor().core().stats(),
            *server.stats(),
            server.connections().len(),
        )
    });
    let (addr, shutdown) = rx.recv().unwrap();
    ServerThread {
        addr,
        shutdown,
        thread: Some(thread),
    }
}
