//! 8,000 concurrent connections, each echoing a message. Both ends live in
//! this process: 16,000 fds under the 20,000 cap, so this test has its own
//! binary.
#![cfg(feature = "server")]

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use edgeloop::Trigger;
use edgeloop::conn::ConnOptions;
use edgeloop::server::ServerOptions;
use util::server::{Echo, start};

const CONNECTIONS: usize = 8_000;

#[test]
fn eight_thousand_concurrent_connections_each_echo() {
    for trigger in [Trigger::Level, Trigger::Edge] {
        let options = ServerOptions::default().with_conn(ConnOptions::with_trigger(trigger));
        let server = start(|| Echo, options);
        let mut clients: Vec<TcpStream> = (0..CONNECTIONS)
            .map(|_| TcpStream::connect(server.addr).unwrap())
            .collect();
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(format!("message {i:05}").as_bytes()).unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 13];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, format!("message {i:05}").as_bytes(), "{trigger:?}");
        }
        drop(clients);
        let (stats, open) = server.stop();
        assert_eq!(stats.accepts, CONNECTIONS as u64, "{trigger:?}");
        assert_eq!(open, 0);
    }
}
