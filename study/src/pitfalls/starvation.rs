//! Edge triggering obliges a reader to drain to EAGAIN, or it is never
//! told again about what it left. A loop that obeys by draining each ready
//! fd before the next gives a connection with endless data the whole loop:
//! as long as the sender keeps ahead of the reader, EAGAIN never comes,
//! and the other connections' events wait in the batch. The cure keeps
//! the obligation and bounds the work: read a budget, and keep the fd on a
//! ready list of the loop's own (in place of the edge the kernel will not
//! repeat) so it gets the rest of its reads on later turns.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgeloop::conn::{Conn, ConnOptions, Connections, Handler};
use edgeloop::{Reactor, Trigger};
use nix::sys::epoll::EpollFlags;

use super::{Finding, add, epoll, pair, us, wait};

/// Work per byte handed to the loop (a parser, a checksum): 50 µs per
/// 64 KiB, about 1.3 GB/s, slower than a local sender.
fn process(bytes: usize) {
    let until = Instant::now() + Duration::from_nanos(bytes as u64 * 50_000 / 65_536);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// How a loop reads an edge-triggered fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Read and process until EAGAIN before the next fd.
    DrainFirst,
    /// One 16 KiB read per fd per turn; an fd not yet at EAGAIN stays on
    /// the loop's own ready list.
    Budget,
}

/// The quiet client's wait: from its one request's send to the loop
/// handing that request over, and the flooder's bytes handed over
/// meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Starved {
    pub waited: Duration,
    pub flood_bytes: usize,
}

impl Starved {
    fn cell(&self) -> String {
        format!(
            "the quiet client waited {}, behind {:.1} MB of the flood",
            us(self.waited),
            self.flood_bytes as f64 / 1e6
        )
    }
}

/// A flooder writing as fast as it can for at most 500 ms (or until
/// `stop`), and a quiet client that sends one request 20 ms in. Returns
/// their streams' loop ends, the flooder thread, and when the request was
/// sent.
struct Clients {
    flooded: UnixStream,
    quiet: UnixStream,
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Option<Instant>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Clients {
    fn start() -> io::Result<Clients> {
        let (flooded, mut flooder) = pair()?;
        let (quiet, mut asker) = pair()?;
        flooder.set_nonblocking(false)?;
        flooder.set_write_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(None));
        let flood_stop = stop.clone();
        let flood = std::thread::spawn(move || {
            let chunk = [b'x'; 64 * 1024];
            let start = Instant::now();
            while !flood_stop.load(Ordering::Relaxed)
                && start.elapsed() < Duration::from_millis(500)
            {
                let _ = flooder.write(&chunk);
            }
        });
        let when = sent.clone();
        let ask = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            *when.lock().unwrap() = Some(Instant::now());
            let _ = asker.write_all(b"p");
            std::thread::sleep(Duration::from_secs(1)); // keep the stream open
        });
        Ok(Clients {
            flooded,
            quiet,
            stop,
            sent,
            threads: vec![flood, ask],
        })
    }

    fn finish(self, served: Instant, flood_bytes: usize) -> Starved {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sent.lock().unwrap().unwrap_or(served);
        drop(self.threads); // detached: each ends within a second
        Starved {
            waited: served.saturating_duration_since(sent),
            flood_bytes,
        }
    }
}

/// Runs a raw edge-triggered loop over a flooder and a quiet client.
///
/// # Errors
/// Setup failures.
pub fn raw_loop(reading: Reading) -> io::Result<Starved> {
    let mut clients = Clients::start()?;
    let epoll = epoll()?;
    let et = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
    add(&epoll, &clients.flooded, et, 0)?;
    add(&epoll, &clients.quiet, et, 1)?;
    let mut ready: VecDeque<u64> = VecDeque::new();
    let mut buf = vec![0; 64 * 1024];
    let mut flood_bytes = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let timeout = if ready.is_empty() { 100 } else { 0 };
        for event in wait(&epoll, timeout)? {
            if !ready.contains(&event.data()) {
                ready.push_back(event.data());
            }
        }
        for _ in 0..ready.len() {
            let which = ready.pop_front().expect("counted");
            let stream = if which == 0 {
                &mut clients.flooded
            } else {
                &mut clients.quiet
            };
            let chunk = if reading == Reading::Budget {
                16 * 1024
            } else {
                buf.len()
            };
            loop {
                match stream.read(&mut buf[..chunk]) {
                    Ok(n) if n > 0 => {
                        if which == 1 {
                            return Ok(clients.finish(Instant::now(), flood_bytes));
                        }
                        flood_bytes += n;
                        process(n);
                        if reading == Reading::Budget {
                            ready.push_back(which); // not at EAGAIN yet
                            break;
                        }
                    }
                    _ => break, // EAGAIN or EOF
                }
            }
        }
    }
    Err(io::Error::other(
        "the quiet client was not served within 2 s",
    ))
}

/// Pitfall 10: ET starvation.
///
/// # Errors
/// Setup failures.
pub fn endless_reader() -> io::Result<Finding> {
    let drained = raw_loop(Reading::DrainFirst)?;
    let budget = raw_loop(Reading::Budget)?;
    Ok(Finding {
        pitfall: "10. ET starvation: one endless connection, no read budget",
        raw: vec![
            ("ET, drain each fd to EAGAIN", drained.cell()),
            ("ET, 16 KiB per fd per turn + ready list", budget.cell()),
        ],
        edgeloop: format!(
            "defaults (one 16 KiB read per event), Edge: {}; tests/fairness.rs",
            edgeloop_quiet_client()?.cell()
        ),
    })
}

/// Records when the quiet client's request arrives; processes the rest.
struct Serve;

impl Handler<(usize, Option<Instant>)> for Serve {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self, (usize, Option<Instant>)>, data: &[u8]) {
        if data.first() == Some(&b'p') {
            conn.data_mut().1 = Some(Instant::now());
        } else {
            conn.data_mut().0 += data.len();
            process(data.len());
        }
    }
}

/// The same flooder and quiet client on an edge-triggered edgeloop set
/// with its default read options.
///
/// # Errors
/// Setup failures, or the quiet client not served within 2 s.
pub fn edgeloop_quiet_client() -> io::Result<Starved> {
    let clients = Clients::start()?;
    let mut reactor = Reactor::with_data((0usize, None))?;
    let set = reactor.install(Connections::new(
        Serve,
        ConnOptions::with_trigger(Trigger::Edge),
    )?)?;
    for stream in [&clients.flooded, &clients.quiet] {
        let (connections, core) = reactor.source_mut(set);
        connections.attach(core, nix::unistd::dup(stream)?)?;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        reactor.run_once(Some(Duration::from_millis(100)))?;
        let (flood_bytes, served) = *reactor.core().data();
        if let Some(served) = served {
            return Ok(clients.finish(served, flood_bytes));
        }
    }
    Err(io::Error::other(
        "the quiet client was not served within 2 s",
    ))
}
