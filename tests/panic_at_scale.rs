//! A panicking handler among a hundred live connections, under the
//! default `Isolate` policy. Its own binary: the fd count is process-wide.
#![cfg(feature = "server")]

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use edgeloop::conn::{Conn, Handler};
use edgeloop::server::ServerOptions;
use util::fd_count;
use util::server::start_with_policy;

/// Echoes, but panics on "BOOM".
struct Fragile;

impl Handler for Fragile {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        if data.windows(4).any(|w| w == b"BOOM") {
            panic!("BOOM");
        }
        conn.write(data);
    }
}

#[test]
fn a_panicking_handler_closes_one_connection_while_a_hundred_keep_echoing() {
    let baseline = fd_count();
    let server = start_with_policy(|| Fragile, ServerOptions::default());
    let mut clients: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    for c in &clients {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let mut bomber = TcpStream::connect(server.addr).unwrap();
    bomber
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for round in 0..3u8 {
        if round == 1 {
            bomber.write_all(b"BOOM").unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let msg = [round, i as u8, 7, 7];
            c.write_all(&msg).unwrap();
            let mut back = [0u8; 4];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, msg);
        }
    }
    // The bomber's connection was closed: EOF or a reset, within a turn.
    let mut b = [0u8; 8];
    match bomber.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the panicking connection stayed open: {other:?}"),
    }
    drop((clients, bomber));
    std::thread::sleep(Duration::from_millis(100));
    let (loop_stats, stats, open) = server.stop_all();
    assert_eq!(loop_stats.panics, 1);
    assert_eq!(open, 0);
    assert_eq!(stats.accepts, 101);
    assert_eq!(fd_count(), baseline, "fds back to baseline");
}
