//! The `kv` example end to end, over RESP (the default) and the line
//! protocol: many pipelining clients get every reply in order, replies are
//! Redis' bytes, the feeder thread's keys arrive, protocol errors, overlong
//! lines and QUIT close after their reply, a request trickled past
//! `--request-timeout` is closed, and SIGTERM delivers the replies owed
//! before the process exits 0.
#![cfg(feature = "server")]

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::connect;
use util::process::spawn_example;
use util::resp::{command, exchange};

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
    let server = spawn_example(
        "kv",
        &[
            "--protocol",
            "line",
            "--addr",
            "127.0.0.1:0",
            "--feed",
            "100",
        ],
    );
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
    let server = spawn_example("kv", &["--protocol", "line", "--addr", "127.0.0.1:0"]);
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
    let mut server = spawn_example("kv", &["--protocol", "line", "--addr", "127.0.0.1:0"]);
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

/// Keys and values are bytes: `\xff` and `\xfe` are two keys (a lossy
/// UTF-8 conversion would make both U+FFFD), and values come back as sent.
#[test]
fn keys_and_values_are_bytes() {
    let server = spawn_example("kv", &["--protocol", "line", "--addr", "127.0.0.1:0"]);
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
    let mut server = spawn_example(
        "kv",
        &[
            "--protocol",
            "line",
            "--addr",
            "127.0.0.1:0",
            "--feed",
            "5000000",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The replies redis-server 7.0 gives for the same requests (recorded from
/// one; scripts/resp_diff.py checks them against a live one in CI).
#[test]
fn resp_replies_are_the_bytes_redis_sends() {
    let server = spawn_example("kv", &["--addr", "127.0.0.1:0"]);
    let mut stream = connect(&server.addr);
    for (request, expected) in [
        (&b"PING\r\n"[..], &b"+PONG\r\n"[..]),
        (b"ping hello\r\n", b"$5\r\nhello\r\n"),
        (
            b"PING a b\r\n",
            b"-ERR wrong number of arguments for 'ping' command\r\n",
        ),
        (
            b"FOO a b\r\n",
            b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n",
        ),
        (
            b"SET a b\r\nGET a\r\nGET nothing\r\n",
            b"+OK\r\n$1\r\nb\r\n$-1\r\n",
        ),
        (
            b"INCR a\r\n",
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (
            b"SET n 9223372036854775807\r\nINCR n\r\n",
            b"+OK\r\n-ERR increment or decrement would overflow\r\n",
        ),
        (b"SET z -5\r\nINCR z\r\n", b"+OK\r\n:-4\r\n"),
        (
            b"MSET a 1 b\r\n",
            b"-ERR wrong number of arguments for 'mset' command\r\n",
        ),
        (b"MGET a nothing b\r\n", b"*3\r\n$1\r\nb\r\n$-1\r\n$-1\r\n"),
        (b"EXISTS a a nothing\r\n", b":2\r\n"),
        (b"DEL a a b\r\n", b":1\r\n"),
        (b"DBSIZE\r\n", b":2\r\n"),
        (b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"),
        (
            b"SET \"a b\" \"c\\x41d\"\r\nGET \"a b\"\r\n",
            b"+OK\r\n$3\r\ncAd\r\n",
        ),
        (b"\r\n\r\nPING\r\n", b"+PONG\r\n"),
        (b"SET k v XX GET\r\n", b"$-1\r\n"),
        (b"SET k v BAD\r\n", b"-ERR syntax error\r\n"),
        (b"CONFIG GET save\r\n", b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"),
        (b"FLUSHALL\r\nDBSIZE\r\n", b"+OK\r\n:0\r\n"),
    ] {
        exchange(&mut stream, request, expected);
    }
    // Binary keys and values, and a value bigger than a read.
    let big = vec![0xa5u8; 300_000];
    let mut request = command(&[b"SET", b"\xff\x00", b"one\xff\r\n"]);
    request.extend(command(&[b"SET", b"big", &big]));
    request.extend(command(&[b"GET", b"\xff\x00"]));
    request.extend(command(&[b"GET", b"big"]));
    let mut expected = b"+OK\r\n+OK\r\n$6\r\none\xff\r\n\r\n$300000\r\n".to_vec();
    expected.extend_from_slice(&big);
    expected.extend_from_slice(b"\r\n");
    exchange(&mut stream, &request, &expected);
    // QUIT: its reply, then EOF, and nothing after it runs.
    stream.write_all(b"QUIT\r\nSET after quit\r\n").unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"+OK\r\n");
}

/// A protocol error gets Redis' reply and the connection closes, after the
/// replies to the requests before it.
#[test]
fn resp_protocol_errors_reply_then_close() {
    let server = spawn_example("kv", &["--addr", "127.0.0.1:0", "--max-request", "1000"]);
    for (request, expected) in [
        (
            &b"PING\r\n*x\r\n"[..],
            &b"+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n"[..],
        ),
        (
            b"*1\r\n+PING\r\n",
            b"-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"*1\r\n$-1\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$1001\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"SET \"a\"b c\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ] {
        let mut stream = connect(&server.addr);
        stream.write_all(request).unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(expected)
        );
    }
    // Two bulks of 600 bytes pass --max-request 1000 together.
    let mut stream = connect(&server.addr);
    let mut request = b"*2\r\n$600\r\n".to_vec();
    request.extend(vec![b'x'; 600]);
    request.extend_from_slice(b"\r\n$600\r\n");
    stream.write_all(&request).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR Protocol error: request over 1000 bytes (--max-request)\r\n"
    );
    // A count line that never ends, past 64 KiB.
    let mut stream = connect(&server.addr);
    let mut request = b"*".to_vec();
    request.extend(vec![b'1'; 70_000]);
    let _ = stream.write_all(&request);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR Protocol error: too big mbulk count string\r\n"
    );
}

/// Many RESP clients pipelining SET/GET/INCR: every reply, in order.
#[test]
fn resp_pipelining_clients_get_every_reply_in_order() {
    let server = spawn_example("kv", &["--addr", "127.0.0.1:0"]);
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                let mut stream = connect(&addr);
                let (mut request, mut expected) = (Vec::new(), Vec::new());
                for i in 0..1000 {
                    let key = format!("c{c}:{i}");
                    let value = format!("value {i}");
                    request.extend(command(&[b"SET", key.as_bytes(), value.as_bytes()]));
                    expected.extend_from_slice(b"+OK\r\n");
                    request.extend(command(&[b"GET", key.as_bytes()]));
                    expected.extend(format!("${}\r\n{value}\r\n", value.len()).into_bytes());
                    request.extend(command(&[b"INCR", format!("n{c}").as_bytes()]));
                    expected.extend(format!(":{}\r\n", i + 1).into_bytes());
                }
                exchange(&mut stream, &request, &expected);
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

/// A client trickling a request a byte at a time cannot hold a connection
/// (each byte would reset an idle timeout): a request unfinished past
/// --request-timeout gets an error and the connection closes; a request
/// finished in time is answered, however slowly it came.
#[test]
fn a_request_trickled_past_the_request_timeout_is_closed() {
    let server = spawn_example("kv", &["--addr", "127.0.0.1:0", "--request-timeout", "1"]);
    let mut slow_but_done = connect(&server.addr);
    let mut slowloris = connect(&server.addr);
    let request = command(&[b"SET", b"key", b"value"]);
    for &byte in &request[..6] {
        slow_but_done.write_all(&[byte]).unwrap();
        slowloris.write_all(&[byte]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    slow_but_done.write_all(&request[6..]).unwrap();
    exchange(&mut slow_but_done, b"", b"+OK\r\n");
    std::thread::sleep(Duration::from_millis(1000));
    let _ = slowloris.write_all(&request[6..7]);
    let mut reply = Vec::new();
    let _ = slowloris.read_to_end(&mut reply);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR Protocol error: request not finished within 1 s\r\n"
    );
    // The first connection, between requests, is not on the clock.
    std::thread::sleep(Duration::from_millis(1200));
    exchange(
        &mut slow_but_done,
        &command(&[b"GET", b"key"]),
        b"$5\r\nvalue\r\n",
    );
}

/// `--processes 2 --separate-stores`: each process its own store, a
/// connection's commands all on one; SIGTERM stops both and the supervisor
/// exits 0.
#[test]
fn resp_kv_runs_as_processes_and_exits_0_on_sigterm() {
    let mut server = spawn_example(
        "kv",
        &[
            "--addr",
            "127.0.0.1:0",
            "--processes",
            "2",
            "--separate-stores",
        ],
    );
    for i in 0..8 {
        let mut stream = connect(&server.addr);
        let value = format!("v{i}");
        let mut request = command(&[b"SET", b"k", value.as_bytes()]);
        request.extend(command(&[b"GET", b"k"]));
        exchange(
            &mut stream,
            &request,
            format!("+OK\r\n$2\r\n{value}\r\n").as_bytes(),
        );
    }
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
}
