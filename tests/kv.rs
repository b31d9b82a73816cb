//! The `kv` example end to end: many pipelining clients get every reply in
//! order, the feeder thread's keys arrive, overlong lines and QUIT close,
//! and SIGTERM delivers the replies owed before the process exits 0.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::connect;
use util::process::spawn_example;

/// Sends `commands` in one write and reads one reply line per command.
fn pipeline(addr: &str, commands: &[String]) -> Vec<String> {
    let mut stream = connect(addr);
    let request: String = commands.iter().map(|c| format!("{c}\n")).collect();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut replies = Vec::new();
    for _ in commands {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        replies.push(line.trim_end().to_string());
    }
    replies
}

#[test]
fn pipelining_clients_get_every_reply_in_order() {
    let server = spawn_example("kv", &["--addr", "127.0.0.1:0", "--feed", "100"]);
    let addr = server.addr.clone();
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut commands = Vec::new();
                let mut expected = Vec::new();
                for i in 0..500 {
                    let key = format!("k{c}:{i}");
                    commands.push(format!("SET {key} value {i}"));
                    expected.push("OK".to_string());
                    commands.push(format!("GET {key}"));
                    expected.push(format!("VALUE value {i}"));
                    commands.push(format!("DEL {key}"));
                    expected.push("DELETED".to_string());
                    commands.push(format!("GET {key}"));
                    expected.push("NOT_FOUND".to_string());
                }
                assert_eq!(pipeline(&addr, &commands), expected, "client {c}");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }

    let replies = pipeline(
        &addr,
        &[
            "DEL nothing".into(),
            "FLY away".into(),
            "GET".into(),
            "SET a".into(),
        ],
    );
    assert_eq!(
        replies,
        [
            "NOT_FOUND",
            "ERROR unknown command",
            "ERROR wrong arguments for GET",
            "ERROR wrong arguments for SET"
        ]
    );

    // The feeder thread's keys, posted through the loop's handle.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if pipeline(&addr, &["GET fed:99".into()]) == ["VALUE 99"] {
            break;
        }
        assert!(Instant::now() < deadline, "fed:99 never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = pipeline(&addr, &["STATS".into()]);
    assert!(
        stats[0].starts_with("STATS keys=100 connections=1 commands="),
        "{stats:?}"
    );
}

#[test]
fn quit_and_an_overlong_line_close_the_connection_after_the_reply() {
    let server = spawn_example("kv", &["--addr", "127.0.0.1:0"]);
    let mut stream = connect(&server.addr);
    stream.write_all(b"SET a 1\nQUIT\nGET a\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "OK\nBYE\n");

    let mut stream = connect(&server.addr);
    stream.write_all(b"GET a\n").unwrap();
    stream.write_all(&vec![b'x'; 70 * 1024]).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "VALUE 1\nERROR line too long\n");
}

#[test]
fn sigterm_delivers_the_replies_owed_and_exits_0() {
    let mut server = spawn_example("kv", &["--addr", "127.0.0.1:0"]);
    let commands: Vec<String> = (0..20_000).map(|i| format!("SET k{i} {i}")).collect();
    let mut stream = connect(&server.addr);
    let request: String = commands.iter().map(|c| format!("{c}\n")).collect();
    stream.write_all(request.as_bytes()).unwrap();
    // Read the first reply, so the server is at work, then stop it.
    let mut first = [0; 3];
    stream.read_exact(&mut first).unwrap();
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    let replies = 1 + rest.lines().count();
    assert!(rest.lines().all(|l| l == "OK"));
    let status = server.child.wait().unwrap();
    assert!(status.success(), "kv exited with {status}");
    // What the server had read before the signal is answered in full; what
    // it had not read yet may go unanswered, never half a line.
    assert!(rest.ends_with('\n') || rest.is_empty());
    assert!(replies >= 1 && replies <= commands.len());
}

/// Issue 23 point 3: keys and values are bytes. `\xff` and `\xfe` were the
/// same key (both became U+FFFD), and values came back altered.
#[test]
fn keys_and_values_are_bytes() {
    let server = spawn_example("kv", &["--addr", "127.0.0.1:0"]);
    let mut stream = connect(&server.addr);
    stream
        .write_all(b"SET \xff one\xff\x00\nSET \xfe two\xfe\nGET \xff\nGET \xfe\n")
        .unwrap();
    let expected: &[u8] = b"OK\nOK\nVALUE one\xff\x00\nVALUE two\xfe\n";
    let mut reply = vec![0u8; expected.len()];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, expected, "{:?}", String::from_utf8_lossy(&reply));
}

/// SIGTERM while the feeder thread posts: the feeder once started before
/// the signals were blocked, took the SIGTERM itself, and the process died
/// of it (exit by signal 15) instead of shutting down and exiting 0.
#[test]
fn sigterm_while_feeding_exits_0() {
    let mut server = spawn_example("kv", &["--addr", "127.0.0.1:0", "--feed", "5000000"]);
    std::thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
}
