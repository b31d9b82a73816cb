//! The `http` example end to end over raw sockets: keep-alive and
//! pipelining with responses in order, HTTP/1.0 and `Connection: close`,
//! HEAD, 404 and 405, the refusals (each closes after its response), the
//! header timeout, and the start/stop contract with `--processes 2`.
#![cfg(feature = "server")]

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::connect;
use util::process::spawn_example;

/// Reads one response (head and Content-Length body): status, head, body.
fn response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, head, body)
}

fn closed(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    rest.is_empty()
}

#[test]
fn keep_alive_pipelining_and_routes() {
    let server = spawn_example("http", &["--addr", "127.0.0.1:0"]);
    let mut stream = connect(&server.addr);
    let mut request = Vec::new();
    for i in 0..200 {
        let path = ["/", "/json", "/nope"][i % 3];
        request.extend(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes());
    }
    stream.write_all(&request).unwrap();
    for i in 0..200 {
        let (status, head, body) = response(&mut stream);
        let (want_status, want_body) = [
            (200, &b"Hello, World!"[..]),
            (200, br#"{"message":"Hello, World!"}"#),
            (404, b"Not Found\n"),
        ][i % 3];
        assert_eq!((status, &body[..]), (want_status, want_body), "{i}: {head}");
        let date = head.lines().find_map(|l| l.strip_prefix("Date: "));
        assert!(
            date.is_some_and(|d| httpdate::parse_http_date(d).is_ok()),
            "{head}"
        );
        assert!(!head.contains("Connection:"), "{head}");
    }
    // HEAD: the headers GET would have, no body; then a body POSTed by
    // Content-Length and chunked is read and 405 answered, in order.
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloPOST /json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&head).contains("Content-Length: 13\r\n"));
    for want in [405, 405, 200] {
        let (status, head, _) = response(&mut stream);
        assert_eq!(status, want, "{head}");
        assert!(
            want != 405 || head.contains("Allow: GET, HEAD\r\n"),
            "{head}"
        );
    }
    // `Connection: close`: the response says so, then EOF.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, head, _) = response(&mut stream);
    assert_eq!(status, 200);
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(closed(&mut stream));
}

#[test]
fn http10_closes_unless_it_asks_for_keep_alive() {
    let server = spawn_example("http", &["--addr", "127.0.0.1:0"]);
    let mut stream = connect(&server.addr);
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let (status, head, _) = response(&mut stream);
    assert_eq!(status, 200);
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(closed(&mut stream));

    let mut stream = connect(&server.addr);
    for _ in 0..3 {
        stream
            .write_all(b"GET /json HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap();
        let (status, head, _) = response(&mut stream);
        assert_eq!(status, 200);
        assert!(head.contains("Connection: keep-alive\r\n"), "{head}");
    }
}

#[test]
fn refusals_answer_then_close() {
    let server = spawn_example("http", &["--addr", "127.0.0.1:0", "--max-body", "100"]);
    for (request, want) in [
        ("garbage\r\n\r\n".to_string(), 400),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc".into(),
            400,
        ),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 501),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n".into(), 413),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n".to_string()
                + &"x".repeat(64)
                + "\r\n40\r\n",
            413,
        ),
        (format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000)), 414),
        (format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n", "a".repeat(9000)), 431),
    ] {
        let mut stream = connect(&server.addr);
        let _ = stream.write_all(request.as_bytes());
        let (status, head, _) = response(&mut stream);
        assert_eq!(status, want, "{request:.80}: {head}");
        assert!(head.contains("Connection: close\r\n"), "{head}");
        assert!(closed(&mut stream), "{request:.80}");
    }
}

#[test]
fn a_head_trickled_past_the_header_timeout_gets_408() {
    let server = spawn_example("http", &["--addr", "127.0.0.1:0", "--header-timeout", "1"]);
    let mut slowloris = connect(&server.addr);
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" {
        slowloris.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(60));
    }
    let (status, head, _) = response(&mut slowloris);
    assert_eq!(status, 408, "{head}");
    assert!(closed(&mut slowloris));
}

#[test]
fn http_runs_as_processes_and_exits_0_on_sigterm() {
    let mut server = spawn_example("http", &["--addr", "127.0.0.1:0", "--processes", "2"]);
    for _ in 0..8 {
        let mut stream = connect(&server.addr);
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(response(&mut stream).0, 200);
    }
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// A chunk extension with a bare LF, end to end: one 400 and the close.
/// A lenient reading would answer the POST, then a smuggled
/// `GET /smuggled` that a front end ending the line at the LF saw as body.
#[test]
fn a_chunk_extension_with_a_bare_lf_is_refused_and_nothing_is_smuggled() {
    let server = spawn_example("http", &["--addr", "127.0.0.1:0"]);
    let mut stream = connect(&server.addr);
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n29\r\n0\r\n\r\n\
              GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n",
        )
        .unwrap();
    let (status, _, _) = response(&mut stream);
    assert_eq!(status, 400);
    assert!(closed(&mut stream), "one response, then the close");
}

/// `Expect: 100-continue` gets `100 Continue` before the body is sent
/// (curl waits a second for it otherwise), then the final response.
#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = spawn_example("http", &["--addr", "127.0.0.1:0"]);
    let mut stream = connect(&server.addr);
    stream
        .write_all(
            b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let mut interim = [0; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").unwrap();
    let (status, _, _) = response(&mut stream);
    assert_eq!(status, 405);
    // Absolute form is served by its path.
    stream
        .write_all(b"GET http://x/json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, _, body) = response(&mut stream);
    assert_eq!(
        (status, &body[..]),
        (200, &br#"{"message":"Hello, World!"}"#[..])
    );
}
