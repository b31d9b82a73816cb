//! The soak (the soak practice of mio and libuv: seeded streams, verified byte by byte): the echo example in a
//! child process, hundreds of live connections each sending a seeded byte
//! stream in random-size writes with random pauses, every echoed byte
//! checked against the stream as it arrives. Mixed in at random:
//! half-closes (full echo, then EOF expected), resets (SO_LINGER 0), idle
//! periods; for the whole run a SIGALRM every millisecond in the server
//! (EINTR everywhere); once, SIGSTOP/SIGCONT of the server for a second.
//! Invariants: the server's fds stay within baseline + live connections +
//! a constant and return to baseline; its RSS stays flat after warm-up; no
//! busy loop once idle.
//!
//! The default run does LT and ET on epoll and LT on poll, 12 s each. The
//! long run: `cargo test --release --test soak -- --ignored` (60 s each,
//! 1,500 live connections).
#![cfg(feature = "server")]

mod util;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::process::{cpu_time, rss, spawn_example};
use util::stream::{Rng, byte_at, fill};

#[derive(Copy, Clone, Debug, PartialEq)]
enum Kind {
    Normal,
    HalfClose,
    Reset,
    Idle,
}

struct Client {
    stream: TcpStream,
    seed: u64,
    total: u64,
    sent: u64,
    received: u64,
    kind: Kind,
    /// Reset once this much is sent.
    reset_at: u64,
    paused_until: Option<Instant>,
    write_shut: bool,
    idled: bool,
}

#[derive(Default, Debug)]
struct Tally {
    completed: u64,
    bytes_verified: u64,
    half_closes: u64,
    resets: u64,
    idles: u64,
}

/// Opens one more client with a random plan.
fn open(
    registry: &mio::Registry,
    addr: SocketAddr,
    clients: &mut HashMap<usize, Client>,
    rng: &mut Rng,
    next: &mut usize,
) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let token = *next;
    *next += 1;
    registry
        .register(
            &mut stream,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )
        .unwrap();
    let kind = match rng.range(0, 99) {
        0..=69 => Kind::Normal,
        70..=84 => Kind::HalfClose,
        85..=94 => Kind::Reset,
        _ => Kind::Idle,
    };
    let total = rng.range(1, 256 * 1024) as u64;
    clients.insert(
        token,
        Client {
            stream,
            seed: token as u64 * 0x9e37 + 1,
            total,
            sent: 0,
            received: 0,
            kind,
            reset_at: rng.range(0, total as usize) as u64,
            paused_until: None,
            write_shut: false,
            idled: false,
        },
    );
}

fn soak(mode: &str, backend: &str, duration: Duration, live: usize) {
    let server = spawn_example(
        "echo",
        &[
            "--addr",
            "127.0.0.1:0",
            "--mode",
            mode,
            "--backend",
            backend,
            "--max-pending",
            "65536",
            "--sigalrm-us",
            "1000",
        ],
    );
    let pid = server.child.id();
    let addr: SocketAddr = server.addr.parse().unwrap();
    let fd_count = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    std::thread::sleep(Duration::from_millis(100));
    let fd_baseline = fd_count();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let mut clients: HashMap<usize, Client> = HashMap::new();
    let mut rng = Rng::new(0x50a4 ^ mode.len() as u64 ^ backend.len() as u64);
    let mut next = 0usize;
    let mut tally = Tally::default();
    let start = Instant::now();
    let stop_at = start + duration / 3;
    let mut stopped = false;
    let mut rss_after_warmup = None;
    let mut rss_peak = 0;
    let mut last_check = start;
    // When each finished client closed: closes still in flight on the server
    // count against the fd bound for a while.
    let mut closed_at: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut wbuf = vec![0u8; 64 * 1024];

    for _ in 0..live {
        open(poll.registry(), addr, &mut clients, &mut rng, &mut next);
    }

    while !clients.is_empty() {
        let now = Instant::now();
        let running = now < start + duration;
        // Chaos on the server: stopped for a second, once.
        if !stopped && now >= stop_at {
            stopped = true;
            kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
            std::thread::sleep(Duration::from_secs(1));
            kill(Pid::from_raw(pid as i32), Signal::SIGCONT).unwrap();
        }
        // Invariants, every second.
        if now - last_check >= Duration::from_secs(1) {
            last_check = now;
            while closed_at
                .front()
                .is_some_and(|t| now - *t > Duration::from_secs(2))
            {
                closed_at.pop_front();
            }
            let fds = fd_count();
            assert!(
                fds <= fd_baseline + clients.len() + closed_at.len() + 16,
                "{mode}/{backend}: server has {fds} fds for {} live connections and {} closed in the last 2 s (baseline {fd_baseline})",
                clients.len(),
                closed_at.len()
            );
            let r = rss(pid);
            if now - start >= Duration::from_secs(3) && rss_after_warmup.is_none() {
                rss_after_warmup = Some(r);
            }
            rss_peak = rss_peak.max(r);
        }
        poll.poll(&mut events, Some(Duration::from_millis(5)))
            .unwrap();
        let mut touched: Vec<usize> = events.iter().map(|e| e.token().0).collect();
        // Paused writers whose pause ended get a turn too.
        touched.extend(
            clients
                .iter()
                .filter(|(_, c)| c.paused_until.is_some_and(|t| t <= now))
                .map(|(t, _)| *t),
        );
        let mut done = Vec::new();
        for token in touched {
            let Some(c) = clients.get_mut(&token) else {
                continue;
            };
            // Read and verify everything that is there.
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        assert!(
                            c.kind == Kind::HalfClose && c.write_shut && c.received == c.total,
                            "{mode}/{backend}: stream {} got EOF after {} of {} bytes ({:?})",
                            c.seed,
                            c.received,
                            c.total,
                            c.kind
                        );
                        tally.half_closes += 1;
                        done.push(token);
                        break;
                    }
                    Ok(n) => {
                        for (i, b) in buf[..n].iter().enumerate() {
                            let at = c.received + i as u64;
                            assert_eq!(
                                *b,
                                byte_at(c.seed, at),
                                "{mode}/{backend}: stream {} wrong byte at offset {at}",
                                c.seed
                            );
                        }
                        c.received += n as u64;
                        tally.bytes_verified += n as u64;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!(
                        "{mode}/{backend}: stream {}: {e} after {} bytes",
                        c.seed, c.received
                    ),
                }
            }
            if done.last() == Some(&token) {
                continue;
            }
            // Write while not paused.
            if c.paused_until.is_some_and(|t| t > now) {
                continue;
            }
            c.paused_until = None;
            while c.sent < c.total {
                if c.kind == Kind::Reset && c.sent >= c.reset_at {
                    break;
                }
                if c.kind == Kind::Idle && !c.idled && c.sent >= c.total / 2 {
                    c.idled = true;
                    c.paused_until = Some(now + Duration::from_millis(1500));
                    break;
                }
                let n = rng.range(1, wbuf.len()).min((c.total - c.sent) as usize);
                fill(c.seed, c.sent, &mut wbuf[..n]);
                match c.stream.write(&wbuf[..n]) {
                    Ok(k) => c.sent += k as u64,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{mode}/{backend}: stream {}: write: {e}", c.seed),
                }
                if rng.range(0, 9) == 0 {
                    c.paused_until = Some(now + Duration::from_millis(rng.range(1, 20) as u64));
                    break;
                }
            }
            if c.kind == Kind::Reset && c.sent >= c.reset_at {
                util::set_linger_zero(&c.stream);
                tally.resets += 1;
                done.push(token);
                continue;
            }
            if c.sent == c.total && c.kind == Kind::HalfClose && !c.write_shut {
                c.stream.shutdown(Shutdown::Write).unwrap();
                c.write_shut = true;
            }
            if c.received == c.total && c.kind != Kind::HalfClose {
                if c.kind == Kind::Idle {
                    tally.idles += 1;
                }
                done.push(token);
            }
        }
        for token in done {
            if let Some(mut c) = clients.remove(&token) {
                poll.registry().deregister(&mut c.stream).unwrap();
                tally.completed += 1;
                closed_at.push_back(Instant::now());
            }
            if running {
                open(poll.registry(), addr, &mut clients, &mut rng, &mut next);
            }
        }
    }
    // Quiet: every connection gone, fds back to baseline, no busy loop.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fd_count(),
        fd_baseline,
        "{mode}/{backend}: fds left open after every client closed"
    );
    let cpu0 = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(1));
    let idle_cpu = cpu_time(pid) - cpu0;
    let growth = rss_peak.saturating_sub(rss_after_warmup.unwrap_or(rss_peak));
    println!(
        "soak {mode}/{backend}: {:?}, {live} live connections, {} completed, {} bytes verified, \
         {} half-closes, {} resets, {} idle periods, 1 SIGSTOP/SIGCONT, SIGALRM every 1 ms; \
         losses 0; RSS growth after warm-up {} KiB; idle CPU {idle_cpu:?}/s",
        duration,
        tally.completed,
        tally.bytes_verified,
        tally.half_closes,
        tally.resets,
        tally.idles,
        growth / 1024
    );
    assert!(
        growth < 64 << 20,
        "{mode}/{backend}: RSS grew {growth} bytes after warm-up"
    );
    // A SIGALRM every millisecond costs a little; a spin costs a core.
    assert!(
        idle_cpu < Duration::from_millis(200),
        "{mode}/{backend}: {idle_cpu:?} CPU per second while idle"
    );
}

#[test]
fn soak_lt_and_et_on_epoll_and_lt_on_poll() {
    for (mode, backend) in [("lt", "epoll"), ("et", "epoll"), ("lt", "poll")] {
        soak(mode, backend, Duration::from_secs(12), 300);
    }
}

#[test]
#[ignore = "long: 60 s per mode; cargo test --release --test soak -- --ignored"]
fn soak_long() {
    for (mode, backend) in [
        ("lt", "epoll"),
        ("et", "epoll"),
        ("lt", "poll"),
        ("et-drain", "epoll"),
    ] {
        let mode = if mode == "et-drain" { "et" } else { mode };
        soak(mode, backend, Duration::from_secs(60), 1500);
    }
}
