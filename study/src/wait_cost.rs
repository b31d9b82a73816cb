//! The select / poll / epoll scaling study: what one wait costs with N
//! watched fds of which k are ready. Shared by the `backends` program and
//! the `backends` criterion bench.
//!
//! The watched fds are bound UDP sockets (one fd each, so N = 10,000 fits
//! under a 20,000-fd limit); k of them get one datagram and stay readable,
//! level-triggered, so every wait reports exactly k.
use std::hint::black_box;
use std::io;
use std::net::UdpSocket;
use std::rc::Rc;
use std::time::{Duration, Instant};

use edgeloop::{Backend, Interest, PostAction, Reactor, Trigger};

/// A reactor watching `n` sockets, `k` of them readable.
pub struct Fixture {
    pub reactor: Reactor,
}

impl Fixture {
    /// # Errors
    /// Out of fds, or (select) an fd at or above FD_SETSIZE.
    pub fn new(backend: Backend, n: usize, k: usize) -> io::Result<Fixture> {
        let mut reactor = Reactor::with_backend(backend)?;
        let sender = UdpSocket::bind("127.0.0.1:0")?;
        for i in 0..n {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_nonblocking(true)?;
            if i < k {
                sender.send_to(b"x", s.local_addr()?)?;
            }
            reactor
                .core_mut()
                .register(s, Interest::READABLE, Trigger::Level, |_, _, e| {
                    black_box(e);
                    PostAction::Continue
                })?;
        }
        let mut fixture = Fixture { reactor };
        // Let the datagrams land, and check every wait reports k.
        std::thread::sleep(Duration::from_millis(5));
        let ran = fixture.turn();
        if ran != k {
            return Err(io::Error::other(format!("expected {k} ready, got {ran}")));
        }
        Ok(fixture)
    }

    /// One non-blocking turn; returns the callbacks run.
    pub fn turn(&mut self) -> usize {
        self.reactor.run_once(Some(Duration::ZERO)).unwrap()
    }
}

/// Median nanoseconds per turn over five batches of about 20 ms each.
pub fn ns_per_turn(fixture: &mut Fixture) -> f64 {
    for _ in 0..50 {
        fixture.turn();
    }
    let start = Instant::now();
    let mut calibrate = 0u64;
    while start.elapsed() < Duration::from_millis(10) {
        fixture.turn();
        calibrate += 1;
    }
    let per_batch = (calibrate * 2).max(10);
    let mut samples: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                fixture.turn();
            }
            t.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[2]
}

/// Nanoseconds for one register + deregister, with `n` others registered.
pub fn ns_per_register_deregister(backend: Backend, n: usize) -> io::Result<f64> {
    let mut fixture = Fixture::new(backend, n, 0)?;
    // Shared, so each registration owns a handle to the same socket.
    let probe = Rc::new(UdpSocket::bind("127.0.0.1:0")?);
    let reactor = &mut fixture.reactor;
    let rounds = 20_000;
    let t = Instant::now();
    for _ in 0..rounds {
        let token = reactor.core_mut().register(
            probe.clone(),
            Interest::READABLE,
            Trigger::Level,
            |_, _, _| PostAction::Continue,
        )?;
        reactor.core_mut().deregister(token)?;
    }
    Ok(t.elapsed().as_nanos() as f64 / rounds as f64)
}
