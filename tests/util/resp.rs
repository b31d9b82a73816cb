//! RESP for the tests that talk to `kv`: a command as a client library
//! encodes it, and one request/reply exchange checked byte for byte.

use std::io::{Read, Write};

/// `args` as an array of bulk strings.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sends `request`, then reads exactly `expected.len()` bytes and checks
/// them.
pub fn exchange(stream: &mut std::net::TcpStream, request: &[u8], expected: &[u8]) {
    stream.write_all(request).unwrap();
    let mut reply = vec![0u8; expected.len()];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reply),
        String::from_utf8_lossy(expected),
        "for {:?}",
        String::from_utf8_lossy(request)
    );
}
