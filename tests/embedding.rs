//! The examples that need no server layer, `hello` and `embed`: they build
//! and run without the `server` feature (`.ci/run` tests them so).

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use util::process::{example, exited_within, spawn_example};

/// `hello | head -1`: once stdout is closed, hello's next `println!`
/// panics (EPIPE) inside a posted closure or the stop timer; the loop must
/// still end, and the process exit.
#[test]
fn hello_exits_when_its_stdout_is_closed() {
    let hello = example("hello");
    assert!(
        !Command::new(&hello)
            .arg("--bogus")
            .output()
            .unwrap()
            .status
            .success()
    );
    let mut child = Command::new(&hello)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap(); // and the pipe's read end is closed here
    assert!(
        exited_within(&mut child, Duration::from_secs(10)).is_some(),
        "hello still runs 10 s after its stdout closed"
    );
}

/// `embed` runs a pipe, a timer, a posting thread, signals and a
/// connection set on its own reactor, driven
/// by `run()` or by a plain epoll host loop; `quit` from one control
/// connection closes every one (a set-wide act from a handler) and the
/// process exits 0.
#[test]
fn embed_serves_its_control_port_under_either_host_and_quit_closes_every_connection() {
    for host in ["run", "epoll"] {
        let mut server = spawn_example("embed", &["--addr", "127.0.0.1:0", "--host", host]);
        let mut control = TcpStream::connect(&server.addr).unwrap();
        let mut other = TcpStream::connect(&server.addr).unwrap();
        control
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The child's three lines and some posts arrive within a few turns.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let stats = loop {
            control.write_all(b"stats\n").unwrap();
            let mut buf = [0u8; 128];
            let n = control.read(&mut buf).unwrap();
            let line = String::from_utf8_lossy(&buf[..n]).to_string();
            if line.starts_with("lines=3 ") && !line.contains("posted=0 ") {
                break line;
            }
            assert!(std::time::Instant::now() < deadline, "{host}: {line}");
            std::thread::sleep(Duration::from_millis(100));
        };
        println!("{host}: {stats}");
        control.write_all(b"quit\n").unwrap();
        let mut rest = String::new();
        control.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "bye\n", "{host}");
        let mut rest = Vec::new();
        other.read_to_end(&mut rest).unwrap(); // closed too: EOF
        let status = exited_within(&mut server.child, Duration::from_secs(10)).expect("exit");
        assert!(status.success(), "{host}: {status}");
    }
}

/// A command split across reads is carried over: `stats` and `quit` split
/// at every byte (each part its own write, with a pause so each is its
/// own read) are each answered once, never as two unknown commands; 200
/// pipelined are answered 64 per handler call, every one; an endless line
/// is refused.
#[test]
fn embed_carries_a_command_split_at_every_byte() {
    let mut server = spawn_example("embed", &["--addr", "127.0.0.1:0"]);
    let mut control = TcpStream::connect(&server.addr).unwrap();
    control.set_nodelay(true).unwrap();
    control
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(control.try_clone().unwrap());
    let command = b"stats\n";
    for cut in 1..command.len() {
        control.write_all(&command[..cut]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        control.write_all(&command[cut..]).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("lines="), "cut at {cut}: {line:?}");
    }
    // 200 pipelined in one write: 64 per call, the rest deferred, every
    // one answered in order.
    control.write_all(&b"stats\n".repeat(200)).unwrap();
    for i in 0..200 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("lines="), "reply {i}: {line:?}");
    }
    let mut other = TcpStream::connect(&server.addr).unwrap();
    other.write_all(&[b'x'; 2000]).unwrap();
    let mut reply = String::new();
    other.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "command too long\n");
    control.write_all(b"qu").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    control.write_all(b"it\n").unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "bye\n");
    let status = exited_within(&mut server.child, Duration::from_secs(10)).expect("exit");
    assert!(status.success(), "{status}");
}
