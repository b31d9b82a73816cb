//! Process workers (`server::Processes`, `echo --processes N`): a killed
//! worker restarted, SIGTERM leaving no process behind, and workers holding
//! none of the supervisor's fds. More connections than one process may hold
//! is the bench's test (bench/tests/scale.rs): its load needs client
//! processes of its own.
#![cfg(feature = "server")]

mod util;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::process::{Server, spawn_example};

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// SIGTERM to the supervisor: it exits 0, and none of `workers` is left.
fn stop(mut server: Server, workers: &[u32]) {
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "the supervisor exited with {status}");
    for &w in workers {
        assert!(!alive(w), "worker {w} outlived the supervisor");
    }
}

fn echo_processes(n: &str) -> (Server, Vec<u32>) {
    let server = spawn_example(
        "echo",
        &[
            "--addr",
            "127.0.0.1:0",
            "--processes",
            n,
            "--idle-timeout",
            "0",
        ],
    );
    let workers = children(server.child.id());
    assert_eq!(workers.len().to_string(), n, "workers: {workers:?}");
    (server, workers)
}

#[test]
fn a_killed_worker_is_restarted_and_the_server_keeps_serving() {
    let (server, workers) = echo_processes("2");
    kill(Pid::from_raw(workers[0] as i32), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let replaced = loop {
        let now = children(server.child.id());
        if now.len() == 2 && !now.contains(&workers[0]) {
            break now;
        }
        assert!(Instant::now() < deadline, "not restarted: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for i in 0..50 {
        let mut c = TcpStream::connect(&server.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let message = format!("message {i}");
        c.write_all(message.as_bytes()).unwrap();
        let mut back = vec![0; message.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, message.as_bytes());
    }
    stop(server, &replaced);
}

/// What a process's fds point at, from fd 3 on (0-2 are shared on
/// purpose): sockets and pipes carry unique inode numbers.
fn fd_targets(pid: u32) -> HashSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let fd: u32 = e.file_name().to_str()?.parse().ok()?;
            (fd > 2).then(|| std::fs::read_link(e.path()).ok())?
        })
        .map(|l| l.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn workers_hold_none_of_the_supervisors_fds() {
    let (server, workers) = echo_processes("2");
    // Only what the supervisor opened: not what it inherited from this
    // test process (cargo's jobserver pipe, say), which every child shares.
    let inherited = fd_targets(std::process::id());
    let supervisor: HashSet<String> = fd_targets(server.child.id())
        .into_iter()
        .filter(|t| t.starts_with("socket:") || t.starts_with("pipe:"))
        .filter(|t| !inherited.contains(t))
        .collect();
    assert!(
        !supervisor.is_empty(),
        "the supervisor holds its reserved socket"
    );
    for &w in &workers {
        // A worker reports "listening" before it builds its reactor: give
        // it a moment to have one.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut theirs = fd_targets(w);
        while !theirs.iter().any(|t| t.contains("eventpoll")) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            theirs = fd_targets(w);
        }
        let shared: Vec<_> = theirs.intersection(&supervisor).collect();
        assert!(
            shared.is_empty(),
            "worker {w} holds the supervisor's {shared:?}"
        );
        let reactors = theirs.iter().filter(|t| t.contains("eventpoll")).count();
        assert_eq!(reactors, 1, "worker {w}: {theirs:?}");
    }
    stop(server, &workers);
}

/// The test harness runs tests on threads: `run` must refuse to fork it.
#[test]
fn processes_refuse_to_fork_a_multi_threaded_process() {
    let helper = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(500)));
    let processes = edgeloop::server::Processes::bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
    let e = processes
        .run(|_, _| Ok(()), |_| panic!("no child may start"))
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("threads"), "{e}");
    helper.join().unwrap();
}

/// The supervisor killed with SIGKILL (no chance to relay anything): its
/// workers get SIGTERM from the kernel (PR_SET_PDEATHSIG) and exit, so no
/// orphan keeps the port.
#[test]
fn workers_exit_when_the_supervisor_is_killed() {
    let (mut server, workers) = echo_processes("2");
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGKILL).unwrap();
    server.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers.iter().any(|&w| alive(w)) {
        if Instant::now() > deadline {
            for &w in &workers {
                let _ = kill(Pid::from_raw(w as i32), Signal::SIGKILL);
            }
            panic!("orphaned workers still ran 10 s after the supervisor died: {workers:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        TcpStream::connect(&server.addr).is_err(),
        "something still listens on the port"
    );
}

/// A second SO_REUSEPORT group on a taken port (`upper --processes 2`
/// after `echo --processes 2`, or `--workers 2`) is refused at bind,
/// naming the address, and the first keeps every connection: were both to
/// start, the kernel would split the connections between two different
/// servers (`abc` and `ABC` replies).
#[test]
fn a_second_reuseport_group_on_a_taken_port_is_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (server, workers) = {
        let server = spawn_example(
            "echo",
            &["--addr", &addr, "--processes", "2", "--idle-timeout", "0"],
        );
        let workers = children(server.child.id());
        (server, workers)
    };
    for flag in ["--processes", "--workers"] {
        let mut upper = std::process::Command::new(util::process::example("upper"))
            .args(["--addr", &addr, flag, "2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = util::process::exited_within(&mut upper, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("upper {flag} 2 started on {addr}, beside echo"));
        let mut stderr = String::new();
        upper
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "upper {flag} 2: {status}");
        assert!(stderr.contains("another socket listens"), "{stderr}");
    }
    for _ in 0..20 {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"abc").unwrap();
        let mut back = [0u8; 3];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"abc", "a reply from another server");
    }
    stop(server, &workers);
}
