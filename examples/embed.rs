//! Embedding edgeloop with no server layer: a supervisor on the user's own
//! `Reactor<D>`. A child process's stdout pipe (a plain registration, read
//! edge-triggered), a stats timer, a thread posting closures, SIGINT and
//! SIGTERM, and a control port (a `Connections` set installed on the same
//! reactor) all reach one loop state by `&mut`: no `Rc`, no `RefCell`.
//!
//! Run: `cargo run --example embed -- --addr 127.0.0.1:7005`, then
//! `printf 'stats\nquit\n' | nc 127.0.0.1 7005`. `stats` answers one line;
//! `quit` closes every control connection (a set-wide act from one
//! handler) and stops the loop. `--host epoll` drives the same reactor from
//! a plain nix epoll loop of the program's own instead of `run()`: it waits
//! on the reactor's fd with `next_timeout()`, runs one non-blocking turn,
//! and leaves when `stop_requested()` says so.

use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use edgeloop::conn::{AcceptOptions, ConnOptions, Connections, Handler};
use edgeloop::{Interest, PostAction, Reactor, Signal, Trigger, on_signals};

/// The loop state every callback reaches.
#[derive(Default, Debug)]
struct Supervisor {
    /// Lines the child wrote.
    lines: u64,
    /// Closures the poster thread ran on the loop.
    posted: u64,
    /// Stats timer ticks.
    ticks: u64,
}

/// The control port's handler.
struct Control;

/// The longest command line taken.
const MAX_COMMAND: usize = 1024;

/// Commands one handler call runs before it defers the rest of its input
/// (`Conn::defer`): a flood of `stats` from many clients cannot make the
/// operator's one command wait behind thousands.
const COMMANDS_PER_CALL: usize = 64;

impl Handler<Supervisor> for Control {
    /// The unfinished command line: a command split across reads is
    /// carried over, not misread as two.
    type Session = Vec<u8>;

    fn on_data(&mut self, conn: &mut edgeloop::conn::Conn<'_, Self, Supervisor>, data: &[u8]) {
        let mut pending = std::mem::take(conn.session());
        pending.extend_from_slice(data);
        let mut at = 0;
        for served in 0.. {
            let Some(end) = pending[at..].iter().position(|&b| b == b'\n') else {
                break;
            };
            if served == COMMANDS_PER_CALL {
                // Enough for one turn: the rest comes back on a later one,
                // after the other connections had theirs.
                return conn.defer(&pending[at..]);
            }
            let command = pending[at..at + end].trim_ascii();
            at += end + 1;
            match command {
                b"stats" => {
                    let s = conn.data();
                    let line = format!("lines={} posted={} ticks={}\n", s.lines, s.posted, s.ticks);
                    conn.write(line.as_bytes());
                }
                b"quit" => {
                    conn.write(b"bye\n");
                    // Every connection of the set, this one included.
                    for id in conn.ids().collect::<Vec<_>>() {
                        conn.close_other(id);
                    }
                    conn.core().stop();
                    return;
                }
                b"" => {}
                _ => conn.write(b"unknown command\n"),
            }
        }
        pending.drain(..at);
        if pending.len() > MAX_COMMAND {
            conn.write(b"command too long\n");
            return conn.close();
        }
        *conn.session() = pending;
    }
}

/// A supervisor on edgeloop's reactor, embedded without the server layer.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The control port.
    #[arg(long, default_value = "127.0.0.1:7005")]
    addr: std::net::SocketAddr,
    /// Who drives the reactor: its own `run()`, or a plain epoll loop.
    #[arg(long, value_parser = ["run", "epoll"], default_value = "run")]
    host: String,
}

fn main() -> io::Result<()> {
    env_logger::init();
    let args = Args::parse();
    let mut reactor = Reactor::with_data(Supervisor::default())?;

    // Signals first: blocked in this thread, so in the threads it starts.
    on_signals(&mut reactor, &[Signal::SIGINT, Signal::SIGTERM], |r, _| {
        r.core_mut().stop();
    })?;

    // A child's stdout: a pipe, read edge-triggered until WouldBlock.
    let mut child = Command::new("sh")
        .args(["-c", "for i in 1 2 3; do echo line $i; sleep 0.1; done"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    edgeloop::nix::fcntl::fcntl(
        &stdout,
        edgeloop::nix::fcntl::FcntlArg::F_SETFL(edgeloop::nix::fcntl::OFlag::O_NONBLOCK),
    )?;
    reactor
        .core_mut()
        .register(stdout, Interest::READABLE, Trigger::Edge, |r, pipe, _| {
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => return PostAction::Remove, // the child closed it
                    Ok(n) => {
                        let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
                        r.core_mut().data_mut().lines += lines as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return PostAction::Continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return PostAction::Remove,
                }
            }
        })?;

    // A stats timer.
    reactor
        .core_mut()
        .call_every(Duration::from_millis(200), |r| {
            r.core_mut().data_mut().ticks += 1;
            log::info!("{:?}", r.core().data());
        });

    // A thread posting closures; it stops once the loop is gone.
    let handle = reactor.core().handle();
    std::thread::spawn(move || {
        while handle.post(|r| r.core_mut().data_mut().posted += 1).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
    });

    // The control port: a connection set on this same reactor.
    let listener = edgeloop::conn::tcp_listener(args.addr, None, false)?;
    let local = listener.local_addr()?;
    let set = reactor.install(Connections::new(Control, ConnOptions::default())?)?;
    let (connections, core) = reactor.source_mut(set);
    let control = connections.listen(core, listener.into(), AcceptOptions::default())?;
    println!("listening on {local}");
    io::stdout().flush()?;

    match args.host.as_str() {
        "epoll" => host_epoll_loop(&mut reactor)?,
        _ => reactor.run()?,
    }
    // Stopped (by `quit` or a signal): stop accepting, then close the
    // control connections gracefully, their queued output sent first.
    let (connections, core) = reactor.source_mut(set);
    connections.unlisten(core, control);
    edgeloop::conn::shut_down(&mut reactor, set, Duration::from_secs(1))?;
    let _ = child.kill();
    let _ = child.wait();
    log::info!("stopped: {:?}", reactor.core().data());
    Ok(())
}

/// The program's own epoll loop, with the reactor as one of its fds.
fn host_epoll_loop(reactor: &mut Reactor<Supervisor>) -> io::Result<()> {
    use edgeloop::nix::sys::epoll::{
        Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout,
    };
    let host = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let fd = reactor
        .core()
        .pollable_fd()
        .expect("the epoll backend has a pollable fd");
    host.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 1))?;
    let mut events = [EpollEvent::empty(); 8];
    while !reactor.core().stop_requested() {
        // Rounded up to whole milliseconds: the host never wakes early.
        let timeout = match reactor.core_mut().next_timeout() {
            Some(t) => EpollTimeout::try_from(t).unwrap_or(EpollTimeout::NONE),
            None => EpollTimeout::NONE,
        };
        match host.wait(&mut events, timeout) {
            Ok(_) | Err(edgeloop::nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        reactor.run_once(Some(Duration::ZERO))?;
    }
    Ok(())
}
