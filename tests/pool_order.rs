//! The pool's order keeping has a bound: quick replies (answered on the
//! loop) that must wait behind a slow one stop the connection being read
//! once the pool's capacity of them are held, and reading resumes once the
//! slow reply is written. Every reply still arrives, in order.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use edgeloop::server::{Blocking, Pooled, ServerOptions, TcpServer, attach_pool};

/// `slow` lines sleep on the pool; others are echoed on the loop.
struct SlowOrQuick;

impl Blocking for SlowOrQuick {
    fn handle(&self, line: &[u8]) -> Vec<u8> {
        std::thread::sleep(Duration::from_millis(600));
        line.to_ascii_uppercase()
    }

    fn quick(&self, line: &[u8]) -> Option<Vec<u8>> {
        (!line.starts_with(b"slow")).then(|| line.to_vec())
    }
}

#[test]
fn quick_replies_behind_a_slow_one_pause_reading_at_the_pools_capacity() {
    const QUICK: usize = 200_000; // 400 KB of "q\n": several reads' worth
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let pooled = Pooled::new(SlowOrQuick, 1, 4).unwrap().lines();
        let mut server = TcpServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            pooled,
            ServerOptions::default(),
        )
        .unwrap();
        let set = server.connections_id();
        attach_pool(server.reactor(), set).unwrap();
        tx.send((
            server.local_addr().to_string(),
            server.shutdown_handle(),
            server.reactor().handle(),
            set,
        ))
        .unwrap();
        server.serve_forever().unwrap();
    });
    let (addr, shutdown, handle, set) = rx.recv().unwrap();
    let stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut request = b"slow\n".to_vec();
        request.extend(b"q\n".repeat(QUICK));
        writer.write_all(&request).unwrap();
    });
    // While the slow line sleeps, the server must have stopped reading.
    std::thread::sleep(Duration::from_millis(300));
    let (tx, rx) = mpsc::channel();
    handle.post(move |r| tx.send(r.source(set).stats().bytes_in).unwrap());
    let read_while_slow = rx.recv().unwrap();
    assert!(
        read_while_slow < (5 + 2 * QUICK) as u64 / 2,
        "read {read_while_slow} of {} bytes while the slow reply ran",
        5 + 2 * QUICK
    );
    // Then everything, in order.
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "SLOW\n");
    for _ in 0..QUICK {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "q\n");
    }
    sender.join().unwrap();
    drop(reader);
    shutdown.shutdown();
    server.join().unwrap();
}
