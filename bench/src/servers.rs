//! The echo servers the benchmark compares, each single-threaded on its own
//! thread, each stoppable from the load generator's thread.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use edgeloop::conn::{
    CloseReason, Conn, ConnId, ConnOptions, ConnStats, Connections, Handler, Others,
};
use edgeloop::server::{ServerOptions, ShutdownHandle, StreamServer};
use edgeloop::{Backend, Handle, SourceId, Stats, Trigger};

/// Which server a cell runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    EdgeloopLt,
    EdgeloopEt,
    EdgeloopEtDrain,
    EdgeloopPoll,
    EdgeloopSelect,
    Raw,
    Mio,
    Tokio,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::EdgeloopLt,
        Kind::EdgeloopEt,
        Kind::EdgeloopEtDrain,
        Kind::EdgeloopPoll,
        Kind::EdgeloopSelect,
        Kind::Raw,
        Kind::Mio,
        Kind::Tokio,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::EdgeloopLt => "edgeloop-lt",
            Kind::EdgeloopEt => "edgeloop-et",
            Kind::EdgeloopEtDrain => "edgeloop-et-drain",
            Kind::EdgeloopPoll => "edgeloop-poll",
            Kind::EdgeloopSelect => "edgeloop-select",
            Kind::Raw => "raw",
            Kind::Mio => "mio",
            Kind::Tokio => "tokio",
        }
    }

    pub fn parse(s: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown server {s:?}; one of {:?}",
                    Kind::ALL.map(Kind::name)
                )
            })
    }

    /// The most connections this server can take in a cell. select: both
    /// ends live in this process, so 2 fds per connection must stay below
    /// FD_SETSIZE (1024).
    pub fn max_connections(self) -> usize {
        match self {
            Kind::EdgeloopSelect => 400,
            _ => usize::MAX,
        }
    }

    pub fn edgeloop_options(self) -> Option<ServerOptions> {
        let (backend, conn) = match self {
            Kind::EdgeloopLt => (Backend::Epoll, ConnOptions::with_trigger(Trigger::Level)),
            Kind::EdgeloopEt => (Backend::Epoll, ConnOptions::with_trigger(Trigger::Edge)),
            Kind::EdgeloopEtDrain => (
                Backend::Epoll,
                ConnOptions::with_trigger(Trigger::Edge).with_short_read(false),
            ),
            Kind::EdgeloopPoll => (Backend::Poll, ConnOptions::with_trigger(Trigger::Level)),
            Kind::EdgeloopSelect => (Backend::Select, ConnOptions::with_trigger(Trigger::Level)),
            _ => return None,
        };
        Some(
            ServerOptions::default()
                .with_backend(backend)
                .with_conn(conn),
        )
    }
}

/// The syscalls a server counted, where it counts them (edgeloop from its
/// Stats, raw from its own counters).
#[derive(Copy, Clone, Debug, Default)]
pub struct Syscalls {
    pub waits: u64,
    pub ctls: u64,
    pub reads: u64,
    pub eagain_reads: u64,
    pub writes: u64,
}

impl Syscalls {
    pub fn since(&self, earlier: &Syscalls) -> Syscalls {
        Syscalls {
            waits: self.waits - earlier.waits,
            ctls: self.ctls - earlier.ctls,
            reads: self.reads - earlier.reads,
            eagain_reads: self.eagain_reads - earlier.eagain_reads,
            writes: self.writes - earlier.writes,
        }
    }

    pub fn total(&self) -> u64 {
        self.waits + self.ctls + self.reads + self.writes
    }

    fn from_stats(s: &Stats, c: &ConnStats) -> Syscalls {
        Syscalls {
            waits: s.waits,
            ctls: s.ctls,
            reads: c.reads,
            eagain_reads: c.eagain_reads,
            writes: c.writes,
        }
    }
}

/// How to stop a server and ask it for its counters.
enum Control {
    Edgeloop(ShutdownHandle, Handle, SourceId<Connections<Echo>>),
    Raw(OwnedFd, Arc<[AtomicU64; 5]>),
    Mio(mio::Waker),
    Tokio(tokio::sync::oneshot::Sender<()>),
}

/// A server running on its own thread.
pub struct Running {
    pub thread: JoinHandle<()>,
    control: Option<Control>,
}

impl Running {
    /// The server's syscall counters, if it keeps them.
    pub fn syscalls(&self) -> Option<Syscalls> {
        match self.control.as_ref()? {
            Control::Edgeloop(_, handle, set) => {
                let (tx, rx) = mpsc::channel();
                let set = *set;
                let _ = handle.post(move |r| {
                    let _ = tx.send(Syscalls::from_stats(
                        r.core().stats(),
                        r.source(set).stats(),
                    ));
                });
                rx.recv().ok()
            }
            Control::Raw(_, counters) => {
                let c: Vec<u64> = counters.iter().map(|a| a.load(Ordering::Acquire)).collect();
                Some(Syscalls {
                    waits: c[0],
                    ctls: c[1],
                    reads: c[2],
                    eagain_reads: c[3],
                    writes: c[4],
                })
            }
            _ => None,
        }
    }

    pub fn stop(mut self) {
        let control = self.control.take();
        match &control {
            Some(Control::Edgeloop(shutdown, ..)) => shutdown.shutdown(),
            Some(Control::Raw(eventfd, _)) => {
                let _ = nix::unistd::write(eventfd, &1u64.to_ne_bytes());
            }
            Some(Control::Mio(waker)) => waker.wake().unwrap(),
            None => {}
            Some(Control::Tokio(_)) => {}
        }
        if let Some(Control::Tokio(tx)) = control {
            let _ = tx.send(());
            self.thread.join().unwrap();
            return;
        }
        // Keep the control (a mio Waker's eventfd) open until the thread has
        // seen it: closing an fd drops its pending epoll event with it.
        self.thread.join().unwrap();
        drop(control);
    }
}

/// Runs `kind` on the calling thread until it stops (a single-threaded
/// process under callgrind: glibc then skips its cancellation-point
/// bookkeeping around every recv and send, as in a C event loop).
pub fn run_here(kind: Kind, listener: TcpListener, exit_after: Option<u64>) -> io::Result<()> {
    let (tx, _rx) = mpsc::channel::<Control>();
    match kind {
        Kind::Raw => raw::serve(listener, tx, exit_after),
        Kind::Mio => mio_echo::serve(listener, tx),
        Kind::Tokio => {
            tokio_echo::serve(listener, tx);
            Ok(())
        }
        _ => edgeloop_serve(kind, listener, tx, exit_after),
    }
}

/// Starts `kind` on a fresh thread with the bound, non-blocking `listener`.
/// `exit_after`: stop by itself once that many connections have closed (for
/// runs under callgrind, which must exit normally to write its counts).
pub fn start(
    kind: Kind,
    listener: TcpListener,
    exit_after: Option<u64>,
    pin: Option<usize>,
) -> io::Result<Running> {
    let (tx, rx) = mpsc::channel::<Control>();
    let thread = std::thread::Builder::new()
        .name(kind.name().into())
        .spawn(move || {
            if let Some(cpu) = pin {
                let mut set = nix::sched::CpuSet::new();
                let _ = set.set(cpu);
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
            }
            match kind {
                Kind::Raw => raw::serve(listener, tx, exit_after).unwrap(),
                Kind::Mio => mio_echo::serve(listener, tx).unwrap(),
                Kind::Tokio => tokio_echo::serve(listener, tx),
                _ => edgeloop_serve(kind, listener, tx, exit_after).unwrap(),
            }
        })?;
    let control = rx
        .recv()
        .map_err(|_| io::Error::other(format!("{} failed to start", kind.name())))?;
    Ok(Running {
        thread,
        control: Some(control),
    })
}

// ---- edgeloop ---------------------------------------------------------------

pub struct Echo {
    closes: u64,
    exit_after: Option<u64>,
    shutdown: Option<ShutdownHandle>,
}

impl Handler for Echo {
    type Session = ();
    // The bench is a library crate, which exports its trait impls; without
    // the hint LLVM keeps an exported function out of line at its one call
    // site (in the set's dispatch) where a binary's private one is inlined.
    #[inline]
    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        conn.write(data);
    }
    fn on_close(&mut self, _: &mut Others<'_, Self>, _: ConnId, _: (), _: CloseReason) {
        self.closes += 1;
        if Some(self.closes) == self.exit_after {
            if let Some(s) = &self.shutdown {
                s.shutdown();
            }
        }
    }
}

fn edgeloop_serve(
    kind: Kind,
    listener: TcpListener,
    tx: mpsc::Sender<Control>,
    exit_after: Option<u64>,
) -> io::Result<()> {
    let options = kind.edgeloop_options().expect("an edgeloop kind");
    let reactor = edgeloop::Reactor::with_backend(options.backend)?;
    let echo = Echo {
        closes: 0,
        exit_after,
        shutdown: None,
    };
    let mut server = StreamServer::from_tcp(reactor, listener, echo, options)?;
    let shutdown = server.shutdown_handle();
    server.connections_mut().0.handler_mut().shutdown = Some(shutdown.clone());
    let set = server.connections_id();
    let _ = tx.send(Control::Edgeloop(
        shutdown,
        server.reactor().core().handle(),
        set,
    ));
    server.serve_forever()
}

// ---- raw: the zero-overhead yardstick ------------------------------------------

/// A minimal level-triggered echo loop straight on nix epoll: one read per
/// event, the echo written at once, EPOLLOUT only while a write is pending.
/// No reactor, no callbacks, no slab: the floor edgeloop is measured
/// against. Syscall counters are kept in locals and published once per
/// wait, so counting costs it nothing measurable.
mod raw {
    use super::*;
    use nix::errno::Errno;
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    use nix::sys::eventfd::{EfdFlags, EventFd};
    use nix::sys::socket::{MsgFlags, SockFlag, accept4, recv, send};

    const LISTENER: u64 = u64::MAX;
    const STOP: u64 = u64::MAX - 1;

    pub fn serve(
        listener: TcpListener,
        tx: mpsc::Sender<Control>,
        exit_after: Option<u64>,
    ) -> io::Result<()> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let stop = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
        epoll.add(&stop, EpollEvent::new(EpollFlags::EPOLLIN, STOP))?;
        let counters: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
        let stop_writer = nix::unistd::dup(&stop)?;
        let _ = tx.send(Control::Raw(stop_writer, counters.clone()));
        // Indexed by fd number: no hashing on the hot path.
        let mut conns: Vec<Option<(OwnedFd, Vec<u8>)>> = Vec::new();
        let mut events = vec![EpollEvent::empty(); 1024];
        let mut buf = vec![0u8; 64 * 1024];
        let (mut waits, mut ctls, mut reads, mut eagain, mut writes) =
            (0u64, 2u64, 0u64, 0u64, 0u64);
        let mut closes = 0u64;
        loop {
            let n = epoll
                .wait(&mut events, EpollTimeout::NONE)
                .or_else(|e| if e == Errno::EINTR { Ok(0) } else { Err(e) })?;
            waits += 1;
            for ev in &events[..n] {
                match ev.data() {
                    LISTENER => {
                        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
                        while let Ok(fd) = accept4(listener.as_raw_fd(), flags) {
                            // SAFETY: accept4 returned a fresh fd.
                            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                            epoll.add(
                                &fd,
                                EpollEvent::new(EpollFlags::EPOLLIN, fd.as_raw_fd() as u64),
                            )?;
                            ctls += 1;
                            let index = fd.as_raw_fd() as usize;
                            if index >= conns.len() {
                                conns.resize_with(index + 1, || None);
                            }
                            conns[index] = Some((fd, Vec::new()));
                        }
                    }
                    STOP => return Ok(()),
                    data => {
                        let fd = data as RawFd;
                        let mut close = false;
                        let (sock, pending) = conns[fd as usize].as_mut().expect("registered fd");
                        if ev.events().contains(EpollFlags::EPOLLOUT) && !pending.is_empty() {
                            writes += 1;
                            match send(fd, pending, MsgFlags::MSG_NOSIGNAL) {
                                Ok(k) => {
                                    pending.drain(..k);
                                    if pending.is_empty() {
                                        epoll.modify(
                                            &*sock,
                                            &mut EpollEvent::new(EpollFlags::EPOLLIN, data),
                                        )?;
                                        ctls += 1;
                                    }
                                }
                                Err(Errno::EAGAIN) => {}
                                Err(_) => close = true,
                            }
                        }
                        if !close
                            && ev.events().intersects(
                                EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR,
                            )
                            && pending.is_empty()
                        {
                            reads += 1;
                            match recv(fd, &mut buf, MsgFlags::empty()) {
                                Ok(0) => close = true,
                                Ok(k) => {
                                    writes += 1;
                                    let sent = match send(fd, &buf[..k], MsgFlags::MSG_NOSIGNAL) {
                                        Ok(s) => s,
                                        Err(Errno::EAGAIN) => 0,
                                        Err(_) => {
                                            close = true;
                                            k
                                        }
                                    };
                                    if sent < k {
                                        pending.extend_from_slice(&buf[sent..k]);
                                        epoll.modify(
                                            &*sock,
                                            &mut EpollEvent::new(
                                                EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT,
                                                data,
                                            ),
                                        )?;
                                        ctls += 1;
                                    }
                                }
                                Err(Errno::EAGAIN) => eagain += 1,
                                Err(_) => close = true,
                            }
                        }
                        if close {
                            let (sock, _) = conns[fd as usize].take().unwrap();
                            epoll.delete(&sock)?;
                            ctls += 1;
                            closes += 1;
                            if Some(closes) == exit_after {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            for (counter, value) in counters.iter().zip([waits, ctls, reads, eagain, writes]) {
                counter.store(value, Ordering::Release);
            }
        }
    }
}

// ---- mio, the way its tcp_server example does it -------------------------------------

mod mio_echo {
    use super::*;
    use mio::net::TcpListener as MioListener;
    use mio::{Events, Interest, Poll, Token, Waker};

    const SERVER: Token = Token(0);
    const WAKER: Token = Token(1);

    pub fn serve(listener: TcpListener, tx: mpsc::Sender<Control>) -> io::Result<()> {
        let mut poll = Poll::new()?;
        let mut events = Events::with_capacity(1024);
        let mut server = MioListener::from_std(listener);
        poll.registry()
            .register(&mut server, SERVER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let _ = tx.send(Control::Mio(waker));
        let mut connections: HashMap<Token, (mio::net::TcpStream, Vec<u8>)> = HashMap::new();
        let mut unique = 2usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = poll.poll(&mut events, None) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    SERVER => loop {
                        match server.accept() {
                            Ok((mut conn, _)) => {
                                let token = Token(unique);
                                unique += 1;
                                poll.registry().register(
                                    &mut conn,
                                    token,
                                    Interest::READABLE | Interest::WRITABLE,
                                )?;
                                connections.insert(token, (conn, Vec::new()));
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    },
                    WAKER => return Ok(()),
                    token => {
                        let done = match connections.get_mut(&token) {
                            Some((conn, pending)) => handle(conn, pending, &mut buf, event),
                            None => false,
                        };
                        if done {
                            if let Some((mut conn, _)) = connections.remove(&token) {
                                poll.registry().deregister(&mut conn)?;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Edge-triggered, as mio is: read until WouldBlock, echo each chunk,
    /// keep what the socket would not take for the next writable event.
    fn handle(
        conn: &mut mio::net::TcpStream,
        pending: &mut Vec<u8>,
        buf: &mut [u8],
        event: &mio::event::Event,
    ) -> bool {
        if event.is_writable() && !pending.is_empty() {
            match conn.write(pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return true,
            }
        }
        if event.is_readable() {
            loop {
                match conn.read(buf) {
                    Ok(0) => return true,
                    Ok(n) => {
                        if pending.is_empty() {
                            match conn.write(&buf[..n]) {
                                Ok(k) if k == n => {}
                                Ok(k) => pending.extend_from_slice(&buf[k..n]),
                                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                    pending.extend_from_slice(&buf[..n])
                                }
                                Err(_) => return true,
                            }
                        } else {
                            pending.extend_from_slice(&buf[..n]);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return true,
                }
            }
        }
        false
    }
}

// ---- tokio current_thread, the way its echo example does it -----------------------

mod tokio_echo {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub fn serve(listener: TcpListener, tx: mpsc::Sender<Control>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(Control::Tokio(stop_tx));
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let accept = async {
                loop {
                    let Ok((mut socket, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let mut buf = vec![0; 1024];
                        loop {
                            let n = match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if socket.write_all(&buf[0..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            };
            tokio::select! {
                _ = accept => {}
                _ = stop_rx => {}
            }
        });
    }
}
