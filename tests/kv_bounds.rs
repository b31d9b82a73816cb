//! The `kv` example inside its own bounds, as a hostile or careless client
//! finds them: a read of many GETs of a large value queues about one
//! output cap (the rest of the input waits, deferred), unfinished requests
//! over all connections stay under `--max-pending-total`, `--max-request`
//! counts exactly, `--processes` above 1 needs `--separate-stores`, and
//! the last byte differences from Redis 7.0 are gone.
#![cfg(feature = "server")]

mod util;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::connect;
use util::process::{example, exited_within, rss, spawn_example};
use util::resp::{command, exchange};

/// Reads until EOF (the server closed after its reply).
fn read_to_close(stream: &mut std::net::TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    all
}

/// 2,000 GETs of a 60 KB value in one write (120 MB of replies) from a
/// client that does not read: the server holds about one output cap, not
/// the replies of the whole read; then every reply arrives.
#[test]
fn a_read_of_many_large_gets_holds_one_output_cap_then_delivers_all() {
    for protocol in ["resp", "line"] {
        let server = spawn_example("kv", &["--addr", "127.0.0.1:0", "--protocol", protocol]);
        let pid = server.child.id();
        let value = vec![b'v'; 60_000];
        let mut stream = connect(&server.addr);
        let (set, get, reply_len) = match protocol {
            "resp" => (
                command(&[b"SET", b"k", &value]),
                b"GET k\r\n".to_vec(),
                60_010,
            ),
            _ => {
                let mut set = b"SET k ".to_vec();
                set.extend_from_slice(&value);
                set.push(b'\n');
                (set, b"GET k\n".to_vec(), 60_000 + 7)
            }
        };
        let ok: &[u8] = if protocol == "resp" {
            b"+OK\r\n"
        } else {
            b"OK\n"
        };
        exchange(&mut stream, &set, ok);
        let before = rss(pid);
        let gets: Vec<u8> = get.repeat(2_000);
        stream.write_all(&gets).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let grown = rss(pid).saturating_sub(before);
        assert!(
            grown < 16 << 20,
            "{protocol}: the server grew {} MiB for a client that does not read",
            grown >> 20
        );
        let mut back = vec![0; 2_000 * reply_len];
        stream.read_exact(&mut back).unwrap();
        let first = &back[..reply_len];
        assert!(
            back.chunks(reply_len).all(|reply| reply == first),
            "{protocol}: every reply whole and in order"
        );
    }
}

/// Unfinished requests over all connections stay under
/// `--max-pending-total`: the connection that would pass it is answered
/// an error and closed; the others are untouched.
#[test]
fn unfinished_requests_over_all_connections_are_capped() {
    let server = spawn_example(
        "kv",
        &["--addr", "127.0.0.1:0", "--max-pending-total", "3000000"],
    );
    // Each sends 400 KB of a 1 MB bulk and stops.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&server.addr);
        stream
            .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n")
            .unwrap();
        stream.write_all(&vec![b'x'; 400_000]).unwrap();
        streams.push(stream);
    }
    std::thread::sleep(Duration::from_millis(300));
    // The third's 1.6 MB of a 2 MB bulk would take the total past 3 MB.
    let mut third = connect(&server.addr);
    third
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n")
        .unwrap();
    third.write_all(&vec![b'x'; 1_600_000]).unwrap();
    let reply = read_to_close(&mut third);
    assert!(
        reply.starts_with(b"-ERR unfinished requests over all connections past 3000000 bytes"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    // A finished request gives its bytes back: the first two complete and
    // a new connection is served again.
    for stream in &mut streams {
        stream.write_all(&vec![b'x'; 600_000]).unwrap();
        stream.write_all(b"\r\n").unwrap();
        let mut ok = [0; 5];
        stream.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"+OK\r\n");
    }
    let mut fourth = connect(&server.addr);
    exchange(&mut fourth, &command(&[b"DBSIZE"]), b":1\r\n");
}

/// `--max-request N` serves a request of N bytes and refuses N + 1, for
/// arrays of bulk strings (bytes as sent plus 16 bytes of bookkeeping per
/// argument) and inline commands alike.
#[test]
fn max_request_counts_exactly() {
    let server = spawn_example("kv", &["--addr", "127.0.0.1:0", "--max-request", "1000"]);
    // Counted: the request's bytes, and the parser's ranges for its three
    // arguments (room for four, 16 bytes each).
    let request = |len: usize| command(&[b"SET", b"k", &vec![b'v'; len]]);
    let counted = |len: usize| request(len).len() + 4 * 16;
    let fits = (900..1000).rev().find(|&len| counted(len) <= 1000).unwrap();
    assert_eq!(counted(fits), 1000, "a request of exactly the limit exists");
    let mut stream = connect(&server.addr);
    exchange(&mut stream, &request(fits), b"+OK\r\n");
    stream.write_all(&request(fits + 1)).unwrap();
    let reply = read_to_close(&mut stream);
    assert!(
        reply.starts_with(b"-ERR Protocol error: request over 1000 bytes"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    // Inline: 300 one-byte words are 608 bytes of line, but with their
    // bookkeeping past the limit.
    let mut stream = connect(&server.addr);
    let mut line = b"EXISTS".to_vec();
    for _ in 0..300 {
        line.extend_from_slice(b" a");
    }
    line.extend_from_slice(b"\r\n");
    stream.write_all(&line).unwrap();
    let reply = read_to_close(&mut stream);
    assert!(
        reply.starts_with(b"-ERR Protocol error: request over 1000 bytes"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
}

/// `--processes 2` alone is refused (two stores would disagree), naming
/// `--separate-stores`, which asks for it (tests/kv.rs runs that).
#[test]
fn processes_need_separate_stores_by_name() {
    let mut refused = Command::new(example("kv"))
        .args(["--addr", "127.0.0.1:0", "--processes", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exited_within(&mut refused, Duration::from_secs(10));
    if status.is_none() {
        kill(Pid::from_raw(refused.id() as i32), Signal::SIGTERM).unwrap();
        refused.wait().unwrap();
    }
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    let mut stderr = String::new();
    refused
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("--separate-stores"), "{stderr}");
}

/// Byte differences from Redis 7.0 the attack found, now Redis' bytes
/// (recorded from redis-server 7.0.15).
#[test]
fn the_last_byte_differences_from_redis_are_gone() {
    let server = spawn_example("kv", &["--addr", "127.0.0.1:0"]);
    let mut stream = connect(&server.addr);
    for (request, expected) in [
        // `\v` separates inline words, as C's isspace.
        (&b"\x0bPING\r\n"[..], &b"+PONG\r\n"[..]),
        (b"ECHO \x0bhi\r\n", b"$2\r\nhi\r\n"),
        // A non-UTF-8 subcommand comes back as sent.
        (
            &command(&[b"CONFIG", b"\xff\xfe"]),
            b"-ERR unknown subcommand '\xff\xfe'. Try CONFIG HELP.\r\n",
        ),
        // CONFIG GET echoes a parameter's name as asked.
        (
            &command(&[b"CONFIG", b"GET", b"SAVE"]),
            b"*2\r\n$4\r\nSAVE\r\n$0\r\n\r\n",
        ),
        (
            &command(&[b"COMMAND", b"COUNT", b"x"]),
            b"-ERR wrong number of arguments for 'command|count' command\r\n",
        ),
    ] {
        exchange(&mut stream, request, expected);
    }
}
