//! Reaching a connection set from everywhere the loop runs code: its own
//! handler (through `Conn`), a timer, a closure posted from another thread
//! and a plain registration's callback (through `Reactor::source_mut`).
//! Each works; none can panic with "already borrowed", because the set is
//! never lent out twice: a handler gets `Conn`, never the reactor.
#![cfg(feature = "server")]

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use edgeloop::conn::{Conn, ConnId, ConnOptions, Handler};
use edgeloop::{Interest, PostAction, Trigger};

/// Relays each line to every other connection of its set, from inside the
/// handler.
struct Relay;

impl Handler for Relay {
    type Session = ();
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        let me = conn.id();
        let others: Vec<ConnId> = conn.ids().filter(|&id| id != me).collect();
        for id in others {
            assert!(conn.write_to(id, data));
        }
    }
}

fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line
}

#[test]
fn a_set_is_reachable_from_its_handler_a_timer_a_posted_closure_and_a_callback() {
    let (mut reactor, set, addr) = util::listening_set(Relay, ConnOptions::default());

    let a = TcpStream::connect(addr).unwrap();
    let b = TcpStream::connect(addr).unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    while reactor.source(set).len() < 2 {
        reactor.run_once(Some(Duration::from_secs(5))).unwrap();
    }
    let (mut a_reader, mut b_reader) = (
        BufReader::new(a.try_clone().unwrap()),
        BufReader::new(b.try_clone().unwrap()),
    );

    // 1. From inside the handler: a's line reaches b.
    (&a).write_all(b"from a\n").unwrap();
    while reactor.source(set).stats().bytes_out < 7 {
        reactor.run_once(Some(Duration::from_secs(5))).unwrap();
    }
    assert_eq!(read_line(&mut b_reader), "from a\n");

    // 2. From a timer, 3. a posted closure, 4. a plain callback: each
    // writes to every connection of the set.
    let broadcast = move |r: &mut edgeloop::Reactor, line: &'static [u8]| {
        let (connections, core) = r.source_mut(set);
        let ids: Vec<ConnId> = connections.ids().collect();
        for id in ids {
            connections.with_conn(core, id, |_, conn| conn.write(line));
        }
    };
    reactor
        .core_mut()
        .call_later(Duration::from_millis(1), move |r| broadcast(r, b"timer\n"));
    let handle = reactor.core().handle();
    std::thread::spawn(move || handle.post(move |r| broadcast(r, b"posted\n")))
        .join()
        .unwrap()
        .unwrap();
    let (ours, mut theirs) = util::pair();
    reactor
        .core_mut()
        .register(ours, Interest::READABLE, Trigger::Level, move |r, _, _| {
            broadcast(r, b"callback\n");
            PostAction::Remove
        })
        .unwrap();
    theirs.write_all(b"x").unwrap();
    // Three lines to each of the two connections, after a's first line.
    while reactor.source(set).stats().bytes_out < 7 + 2 * (6 + 7 + 9) {
        reactor.run_once(Some(Duration::from_secs(5))).unwrap();
    }
    for reader in [&mut a_reader, &mut b_reader] {
        let mut lines: Vec<String> = (0..3).map(|_| read_line(reader)).collect();
        lines.sort();
        assert_eq!(lines, ["callback\n", "posted\n", "timer\n"]);
    }
}
