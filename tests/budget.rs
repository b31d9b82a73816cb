//! The set's output budget (`ConnOptions::max_queued_total`): clients that
//! send and never read, and a broadcaster writing to slow readers, are
//! paused at the cap; the loop keeps serving everyone else (failure mode
//! 22 in docs/failure-modes.md).
#![cfg(feature = "server")]

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edgeloop::Trigger;
use edgeloop::conn::ConnOptions;
use edgeloop::server::ServerOptions;
use util::connect;
use util::server::{Echo, start};

/// Clients that send and never read, against `options`: each floods until
/// its writes stall (the server stopped reading it), then all read their
/// echo back in full. Returns the server's counters.
fn flood_then_read_back(options: ServerOptions, clients: usize) -> edgeloop::conn::ConnStats {
    let server = start(|| Echo, options);
    let mut conns: Vec<TcpStream> = (0..clients).map(|_| connect(server.addr)).collect();
    let mut sent = vec![0u64; clients];
    let chunk = vec![9u8; 64 * 1024];
    for (c, sent) in conns.iter_mut().zip(sent.iter_mut()) {
        c.set_nonblocking(true).unwrap();
        let mut stalls = 0;
        while stalls < 3 && *sent < 8 << 20 {
            match c.write(&chunk) {
                Ok(n) => *sent += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    stalls += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("flood: {e}"),
            }
        }
    }
    for (c, sent) in conns.iter_mut().zip(&sent) {
        c.set_nonblocking(false).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match c.read(&mut buf).unwrap() {
                0 => break,
                n => back += n as u64,
            }
        }
        assert_eq!(back, *sent, "every byte came back");
    }
    drop(conns);
    server.stop().0
}

/// F5 of the attack on the examples: 300 clients that send and never read
/// grew the echo server by ~306 MiB, one high-water mark each. The set's
/// total queued output now has a cap: past it, the connection adding to it
/// stops reading. Here 40 such clients against a 4 MiB cap: the peak stays
/// within the cap plus one read per client (without the cap: ~40 MiB).
#[test]
fn the_sets_queued_output_stays_under_its_cap_with_many_clients_that_do_not_read() {
    let mut options = ServerOptions::default().with_conn(ConnOptions::with_trigger(Trigger::Level));
    options.conn.max_queued_total = 4 << 20;
    let stats = flood_then_read_back(options, 40);
    println!("{stats:?}");
    assert!(stats.budget_pauses > 0, "{stats:?}");
    assert!(
        stats.peak_queued <= (4 << 20) + 40 * (64 << 10),
        "peak {} bytes queued",
        stats.peak_queued
    );
}

/// Writes 64 KiB chunks to `sender` until `stalls` tries in a row (20 ms
/// apart) make no progress, or `limit` bytes went: the bytes sent. The
/// stream is blocking again afterwards.
fn send_until_paused(sender: &mut TcpStream, stalls: u32, limit: u64) -> u64 {
    sender.set_nonblocking(true).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let (mut sent, mut stalled) = (0u64, 0);
    while stalled < stalls && sent < limit {
        match sender.write(&chunk) {
            Ok(n) => {
                sent += n as u64;
                stalled = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                stalled += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
    sender.set_nonblocking(false).unwrap();
    sent
}

/// Sends every chunk it gets to every other connection (a chat broadcast).
struct Broadcast;

impl edgeloop::conn::Handler for Broadcast {
    type Session = ();
    fn on_data(&mut self, conn: &mut edgeloop::conn::Conn<'_, Self>, data: &[u8]) {
        let me = conn.id();
        let others: Vec<_> = conn.ids().filter(|&id| id != me).collect();
        for id in others {
            conn.write_to(id, data);
        }
    }
}

/// F5/F8: one sender broadcasting to slow readers. What it queues on the
/// others counts against the sender, which stops being read past the cap:
/// the peak stays within the cap plus one read fanned out.
#[test]
fn a_broadcast_to_readers_that_do_not_read_pauses_the_sender_at_the_cap() {
    let mut options = ServerOptions::default().with_conn(ConnOptions::with_trigger(Trigger::Edge));
    options.conn.max_queued_total = 2 << 20;
    options.conn.high_water = usize::MAX; // only the set's cap applies
    let server = start(|| Broadcast, options);
    // Readers with small receive buffers: what is sent to them queues in
    // the server, not in their kernel buffers (loopback autotuning would
    // let each absorb megabytes).
    let readers: Vec<TcpStream> = (0..10)
        .map(|_| util::connect_small_rcvbuf(server.addr, 4096))
        .collect();
    std::thread::sleep(Duration::from_millis(50)); // all attached
    let mut sender = connect(server.addr);
    // Paused: no progress for 25 tries in a row (500 ms), however slow
    // the server is to read on a busy machine.
    let sent = send_until_paused(&mut sender, 25, 64 << 20);
    assert!(sent < 64 << 20, "the sender was never paused");
    drop((readers, sender));
    let (stats, _) = server.stop();
    println!("sent {sent} before the pause; {stats:?}");
    assert!(stats.budget_pauses > 0, "{stats:?}");
    assert!(
        stats.peak_queued <= (2 << 20) + 10 * (64 << 10),
        "peak {} bytes queued",
        stats.peak_queued
    );
}

/// F8 of the attack on the examples: one sender flooding a broadcast to
/// many clients starved the loop (other clients' lines took seconds, one
/// never arrived): the read budget bounds the bytes of an event, not the
/// work it causes. What a sender queues on the others now counts against
/// it: past the set's cap it is paused, and the loop serves everyone else.
/// Here, while the flood goes on, another client's marker reaches a reader.
#[test]
fn a_broadcast_flood_does_not_starve_other_senders() {
    let mut options = ServerOptions::default().with_conn(ConnOptions::with_trigger(Trigger::Edge));
    options.conn.max_queued_total = 1 << 20;
    options.conn.high_water = usize::MAX;
    let server = start(|| Broadcast, options);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    // Readers that read (slowly: a small buffer, a pause now and then).
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let stop = stop.clone();
            let mut c = connect(addr);
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut window = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n @ 1..) = c.read(&mut buf) {
                        window.extend_from_slice(&buf[..n]);
                        if window.windows(6).any(|w| w == b"MARKER") {
                            return true;
                        }
                        let keep = window.len().saturating_sub(5);
                        window.drain(..keep);
                    }
                    if i % 2 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                false
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let flooder = {
        let stop = stop.clone();
        let mut c = connect(addr);
        // Paused by the server, its writes block: a timeout lets it see
        // the stop.
        c.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'.'; 64 * 1024];
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match c.write(&chunk) {
                    Ok(n) => sent += n as u64,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(200)); // the flood is on
    let mut pinger = connect(addr);
    pinger.write_all(b"MARKER").unwrap();
    // Every reader sees the marker while the flood goes on; a starved loop
    // would leave them waiting (they give up when the test's clock runs
    // out, 20 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = 0;
    for r in readers {
        while !r.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !r.is_finished() {
            stop.store(true, Ordering::Relaxed);
        }
        seen += r.join().unwrap() as usize;
    }
    stop.store(true, Ordering::Relaxed);
    drop(pinger);
    let flooded = flooder.join().unwrap();
    let (stats, _) = server.stop();
    println!("flooded {flooded} bytes; {stats:?}");
    assert_eq!(seen, 8, "readers that never saw another client's line");
    assert!(
        stats.budget_pauses > 0,
        "the flooder was never paused: {stats:?}"
    );
}

/// Writes 64 KiB for every byte it reads: one handler call can queue far
/// more than any read brought in (kv's pipelined GETs of a large value).
struct Amplify;

impl edgeloop::conn::Handler for Amplify {
    type Session = ();
    fn on_data(&mut self, conn: &mut edgeloop::conn::Conn<'_, Self>, data: &[u8]) {
        let block = vec![b'x'; 64 * 1024];
        for _ in data {
            conn.write(&block);
        }
    }
}

/// Pausing stops reads, not the writes of a call already running, so the
/// set has a hard ceiling too. A client sends 1,000 bytes in one write and
/// never reads; the handler answers them with 62.5 MiB in one call. The
/// write that passes twice the 1 MiB cap aborts the connection, so the
/// peak stays within the ceiling plus one write (without it the set would
/// queue all of it), and the loop serves the next client.
#[test]
fn one_handler_call_cannot_queue_past_twice_the_cap() {
    for trigger in [Trigger::Level, Trigger::Edge] {
        let mut options = ServerOptions::default().with_conn(ConnOptions::with_trigger(trigger));
        options.conn.max_queued_total = 1 << 20;
        options.conn.high_water = usize::MAX; // only the set's cap applies
        let server = start(|| Amplify, options);
        let mut flooder = util::connect_small_rcvbuf(server.addr, 4096);
        flooder.write_all(&[b'?'; 1000]).unwrap();
        // The flooder reads nothing until another client was served: the
        // loop is single-threaded, so by then the flood's call is over.
        std::thread::sleep(Duration::from_millis(200));
        let mut other = connect(server.addr);
        other.write_all(b"?").unwrap();
        let mut reply = vec![0u8; 64 * 1024];
        other.read_exact(&mut reply).unwrap();
        // Aborted: the flooder gets what its buffers held, then a reset or
        // EOF, not 62.5 MiB.
        flooder
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut got = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match flooder.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n as u64,
            }
        }
        assert!(got < 8 << 20, "{trigger:?}: {got} bytes came back");
        drop((flooder, other));
        let (stats, _) = server.stop();
        println!("{trigger:?}: {got} bytes reached the flooder; {stats:?}");
        assert_eq!(stats.budget_aborts, 1, "{trigger:?}: {stats:?}");
        assert!(
            stats.peak_queued <= (2 << 20) + (64 << 10),
            "{trigger:?}: peak {} bytes queued",
            stats.peak_queued
        );
    }
}

/// Clients that never read, each under its own limit, can hold the set
/// over its budget; were a pause to last until the total fell to half,
/// which a non-reader never lets happen, every sender would freeze (a chat
/// room). A pause lasts at most `budget_grace`: then the longest queues,
/// the non-readers', are aborted until the total is under half, and the
/// paused senders read again.
#[test]
fn non_readers_under_their_own_limit_cannot_pause_the_senders_for_good() {
    let mut options = ServerOptions::default().with_conn(
        ConnOptions::with_trigger(Trigger::Edge).with_budget_grace(Duration::from_millis(500)),
    );
    options.conn.max_queued_total = 2 << 20;
    options.conn.high_water = usize::MAX; // only the set's budget applies
    let server = start(|| Broadcast, options);
    let stuck: Vec<TcpStream> = (0..10)
        .map(|_| util::connect_small_rcvbuf(server.addr, 4096))
        .collect();
    // One reader that reads everything, looking for the last line.
    let mut reader = connect(server.addr);
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let drain = std::thread::spawn(move || {
        let mut window = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = reader.read(&mut buf).unwrap();
            assert!(n > 0, "the reader was closed");
            window.extend_from_slice(&buf[..n]);
            if window.windows(4).any(|w| w == b"DONE") {
                return;
            }
            let keep = window.len().saturating_sub(3);
            window.drain(..keep);
        }
    });
    std::thread::sleep(Duration::from_millis(50)); // all attached
    let mut sender = connect(server.addr);
    let sent = send_until_paused(&mut sender, 10, 256 << 20);
    sender
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    sender.write_all(b"DONE").unwrap();
    drain.join().unwrap(); // arrives once the grace is over
    drop((stuck, sender));
    let (stats, _) = server.stop();
    println!("sent {sent}; {stats:?}");
    assert!(stats.budget_pauses > 0, "{stats:?}");
    assert!(stats.budget_aborts > 0, "{stats:?}");
}
