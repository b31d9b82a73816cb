//! A selector that lies: it
//! wraps the real epoll backend and adds spurious readiness, duplicate
//! events, stale tokens and reordering to every batch. Connections on top of
//! it must not misdeliver, panic, close or spin.
#![cfg(feature = "server")]

mod util;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use edgeloop::conn::ConnOptions;
use edgeloop::server::{ServerOptions, StreamServer};
use edgeloop::{Epoll, Event, Events, Interest, PanicPolicy, Ready, Selector, Token, Trigger};
use util::server::Echo;
use util::stream::Rng;

struct Liar {
    real: Epoll,
    tokens: Vec<Token>,
    rng: Rng,
}

impl Selector for Liar {
    fn name(&self) -> &'static str {
        "liar"
    }
    fn supports(&self, trigger: Trigger) -> bool {
        self.real.supports(trigger)
    }
    fn ctl_is_syscall(&self) -> bool {
        true
    }
    fn register(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        self.tokens.push(token);
        self.real.register(fd, token, interest, trigger)
    }
    fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        self.real.reregister(fd, token, interest, trigger)
    }
    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.real.deregister(fd)
    }
    fn select(&mut self, batch: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        // Never block for long: the lies must keep coming.
        let timeout = Some(timeout.map_or(Duration::from_millis(5), |t| {
            t.min(Duration::from_millis(5))
        }));
        self.real.select(batch, timeout)?;
        let mut events: Vec<Event> = batch.iter().collect();
        let n = events.len();
        for i in 0..n {
            if self.rng.range(0, 3) == 0 {
                events.push(events[i]); // a duplicate
            }
        }
        for _ in 0..self.rng.range(0, 3) {
            // Spurious readiness for any token ever issued, live or dead
            // (stale): a read finds EAGAIN, a write finds nothing queued.
            let token = self.tokens[self.rng.range(0, self.tokens.len() - 1)];
            let ready = [
                Ready::READABLE,
                Ready::WRITABLE,
                Ready::READABLE | Ready::WRITABLE,
            ][self.rng.range(0, 2)];
            events.push(Event { token, ready });
        }
        // Reorder.
        for i in (1..events.len()).rev() {
            events.swap(i, self.rng.range(0, i));
        }
        batch.clear();
        for event in events {
            batch.push(event);
        }
        Ok(())
    }
}

#[test]
fn connections_survive_spurious_duplicate_stale_and_reordered_events() {
    for trigger in [Trigger::Level, Trigger::Edge] {
        let listener =
            edgeloop::conn::tcp_listener("127.0.0.1:0".parse().unwrap(), None, false).unwrap();
        let addr = listener.local_addr().unwrap();
        let options = ServerOptions::default()
            .with_conn(ConnOptions::with_trigger(trigger))
            .with_panic_policy(PanicPolicy::Propagate);
        let (tx, rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            let liar = Liar {
                real: Epoll::new().unwrap(),
                tokens: Vec::new(),
                rng: Rng::new(trigger as u64 + 7),
            };
            let reactor = edgeloop::Reactor::with_selector(Box::new(liar), ()).unwrap();
            let mut server = StreamServer::from_tcp(reactor, listener, Echo, options).unwrap();
            tx.send(server.shutdown_handle()).unwrap();
            server.serve_forever().unwrap();
            let stats = (*server.reactor().core().stats(), *server.stats());
            (stats, server.connections().len())
        });
        let shutdown = rx.recv().unwrap();
        // Clients come and go (so tokens go stale), each echoing a checked
        // stream.
        for round in 0..20u64 {
            let mut clients: Vec<TcpStream> =
                (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
            for (i, c) in clients.iter_mut().enumerate() {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let seed = round * 10 + i as u64;
                let mut data = vec![0u8; 10_000];
                util::stream::fill(seed, 0, &mut data);
                c.write_all(&data).unwrap();
                let mut back = vec![0u8; 10_000];
                c.read_exact(&mut back).unwrap();
                util::stream::verify(seed, 0, &back);
            }
        }
        shutdown.shutdown();
        let ((stats, io), open) = server.join().unwrap();
        assert_eq!(open, 0, "{trigger:?}");
        assert_eq!(io.accepts, 100);
        assert_eq!(stats.panics, 0);
        assert_eq!(io.resets, 0, "a spurious event closed a connection: {io:?}");
        assert!(
            stats.stale > 0,
            "the liar's stale tokens were dropped: {stats:?}"
        );
        assert!(
            io.eagain_reads > 0,
            "spurious readable events met EAGAIN: {io:?}"
        );
    }
}
