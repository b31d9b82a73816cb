//! What a server process costs when clients misbehave: memory under a client
//! that writes and never reads (failure mode 22 in docs/failure-modes.md), and CPU with a
//! thousand idle or half-closed connections (items 14, 15 and 16). The
//! server is the echo example in a child process, so its RSS and CPU time
//! are its own.
#![cfg(feature = "server")]

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use util::process::{cpu_time, rss, spawn_example};
use util::stream::{fill, verify};

#[test]
fn a_client_writing_256_mib_without_reading_costs_bounded_memory() {
    const TOTAL: u64 = 256 << 20;
    for mode in ["lt", "et"] {
        let server = spawn_example("echo", &["--addr", "127.0.0.1:0", "--mode", mode]);
        let pid = server.child.id();
        let client = TcpStream::connect(&server.addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let baseline = rss(pid);
        let sent = Arc::new(AtomicU64::new(0));
        let mut writer = client.try_clone().unwrap();
        let s = sent.clone();
        let w = std::thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            let mut off = 0;
            while off < TOTAL {
                fill(77, off, &mut buf);
                writer.write_all(&buf).unwrap();
                off += buf.len() as u64;
                s.store(off, Ordering::Relaxed);
            }
            writer.shutdown(Shutdown::Write).unwrap();
        });
        // The writer blocks once the server stops reading (backpressure) and
        // the kernel buffers are full.
        let mut peak = 0;
        let mut last = u64::MAX;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(40));
            peak = peak.max(rss(pid));
            let now = sent.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        let blocked_at = sent.load(Ordering::Relaxed);
        assert!(
            blocked_at < TOTAL / 4,
            "{mode}: the server kept reading ({blocked_at} bytes)"
        );
        // Now read everything back, sampling the server's memory.
        let mut reader = client;
        let mut buf = vec![0; 256 * 1024];
        let mut got = 0u64;
        while got < TOTAL {
            let n = reader.read(&mut buf).unwrap();
            assert!(n > 0, "{mode}: EOF at {got}");
            verify(77, got, &buf[..n]);
            got += n as u64;
            if got % (16 << 20) < n as u64 {
                peak = peak.max(rss(pid));
            }
        }
        assert_eq!(
            reader.read(&mut buf).unwrap(),
            0,
            "{mode}: EOF after the echo"
        );
        w.join().unwrap();
        let growth = peak.saturating_sub(baseline);
        println!(
            "{mode}: writer blocked after {blocked_at} bytes; server RSS grew {} KiB",
            growth / 1024
        );
        assert!(growth < 32 << 20, "{mode}: server RSS grew {growth} bytes");
    }
}

#[test]
fn a_thousand_idle_and_half_closed_connections_cost_no_cpu() {
    for mode in ["lt", "et"] {
        let server = spawn_example("echo", &["--addr", "127.0.0.1:0", "--mode", mode]);
        let pid = server.child.id();
        let mut idle: Vec<TcpStream> = (0..1000)
            .map(|_| TcpStream::connect(&server.addr).unwrap())
            .collect();
        // Some talk once, then go quiet.
        for c in idle.iter_mut().step_by(10) {
            c.write_all(b"hi").unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b).unwrap();
        }
        // Half-closed clients that do not read: the server has seen EOF
        // (RDHUP stays asserted) and holds output it cannot send.
        let stuck: Vec<TcpStream> = (0..10)
            .map(|_| {
                let mut c = TcpStream::connect(&server.addr).unwrap();
                c.set_nonblocking(true).unwrap();
                let chunk = vec![0u8; 64 * 1024];
                for _ in 0..64 {
                    if c.write(&chunk).is_err() {
                        break;
                    }
                }
                c.shutdown(Shutdown::Write).unwrap();
                c
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let before = cpu_time(pid);
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let burned = cpu_time(pid) - before;
        println!(
            "{mode}: {burned:?} CPU over {:?} with 1010 quiet connections",
            t.elapsed()
        );
        assert!(
            burned <= Duration::from_millis(40),
            "{mode}: {burned:?} CPU while idle: a spin"
        );
        drop((idle, stuck));
    }
}
