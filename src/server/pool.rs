//! A bounded thread pool for slow handlers: I/O multiplexing for readiness,
//! threads for slow logic, as the classic texts recommend (what Python's
//! ThreadingMixIn does with a thread per connection instead).
//!
//! [`Pooled`] is a connection [`Handler`] that hands each request (each
//! `on_data` chunk) to a [`Blocking`] function on the pool. Replies come back
//! to the loop through an eventfd the pool registers, like the reactor's own
//! waker, and are written in request order per connection, whatever order
//! the workers finish in.
//!
//! - **Bounded.** The pool holds at most `capacity` requests (waiting or
//!   running); a connection whose request does not fit stops being read
//!   until a slot frees: backpressure, never an unbounded queue.
//! - **Fair.** Requests wait on the loop's side, per connection, and a free
//!   worker takes the next connection's oldest request round-robin: one
//!   client with a hundred queued requests does not make a newcomer wait
//!   behind all of them.
//! - **Panic-proof.** A job that panics is caught on its worker thread,
//!   which lives on; the connection it was for gets no reply and is closed
//!   (counted in [`Pooled::panics`]).
//! - **Signal-proof.** Workers start with every signal blocked, so SIGINT
//!   and SIGTERM always reach the loop's thread (and its signalfd), never a
//!   worker, whichever was set up first.
//! - **Drained at shutdown.** [`Handler::busy`] tells the server that
//!   replies are still running; a graceful shutdown waits for them (within
//!   its grace period) before it closes the connections.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::spawn_with_signals_blocked;
use crate::conn::{CloseReason, Conn, ConnId, Connections, Handler, Others};
use crate::{Core, Interest, PostAction, Reactor, SourceId, Token, Trigger};

/// The slow part of a request: runs on a pool thread.
pub trait Blocking: Send + Sync + 'static {
    /// Turns one request into its reply, on a pool thread.
    fn handle(&self, request: &[u8]) -> Vec<u8>;

    /// The reply to a request that needs no pool: called on the loop
    /// first, for every request; `Some` is the reply (written in request
    /// order, behind any slow reply still owed on the connection), `None`
    /// sends the request to the pool. The default sends every request.
    fn quick(&self, request: &[u8]) -> Option<Vec<u8>> {
        let _ = request;
        None
    }
}

impl<F: Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static> Blocking for F {
    fn handle(&self, request: &[u8]) -> Vec<u8> {
        self(request)
    }
}

/// The longest request line with [`Pooled::lines`]: a longer one is
/// handed over in pieces of this size.
const MAX_LINE: usize = 64 * 1024;

struct Job {
    conn: ConnId,
    seq: u64,
    request: Vec<u8>,
}

struct Done {
    conn: ConnId,
    seq: u64,
    /// `None`: the job panicked.
    reply: Option<Vec<u8>>,
}

/// What finished work the loop has not collected yet, and how to wake it.
struct Finished {
    done: Mutex<Vec<Done>>,
    notify: crate::sys::Counter,
}

/// The reactor's share of [`Finished`]: registering it keeps the eventfd
/// open for as long as it is registered.
struct Notify(Arc<Finished>);

impl AsFd for Notify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.notify.as_fd()
    }
}

/// Per-connection order keeping.
#[derive(Default, Debug)]
pub struct PooledSession {
    next_seq: u64,
    next_to_write: u64,
    /// Replies that finished ahead of an earlier request's.
    early: BTreeMap<u64, Vec<u8>>,
    /// Requests waiting for a worker, oldest first.
    waiting: VecDeque<(u64, Vec<u8>)>,
    /// With line framing: the line read so far.
    partial: Vec<u8>,
    /// Bytes read while the pool was full, not yet made requests: taken
    /// before the connection is read again.
    unread: Vec<u8>,
    /// Not read because too many quick replies wait behind a slow one.
    paused_for_order: bool,
}

impl PooledSession {
    /// Every request answered and none waiting.
    fn settled(&self) -> bool {
        self.next_to_write == self.next_seq && self.waiting.is_empty() && self.unread.is_empty()
    }
}

/// A connection handler that runs `B` on a bounded pool of threads.
///
/// ```
/// use edgeloop::server::{Pooled, ServerOptions, StreamServer, attach_pool};
/// use std::io::{Read, Write};
/// use std::time::Duration;
///
/// // The slow part: runs on one of 2 threads, at most 16 requests held.
/// let slow = |request: &[u8]| request.to_ascii_uppercase();
/// let pooled = Pooled::new(slow, 2, 16)?;
/// let mut server = StreamServer::bind("127.0.0.1:0".parse().unwrap(), pooled, ServerOptions::default())?;
/// let set = server.connections_id();
/// attach_pool(server.reactor(), set)?;
/// let mut client = std::net::TcpStream::connect(server.local_addr())?;
/// client.write_all(b"shout")?;
/// while server.connections().stats().bytes_out < 5 {
///     server.reactor().run_once(Some(Duration::from_millis(100)))?;
/// }
/// let mut reply = [0; 5];
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"SHOUT");
/// # Ok::<(), std::io::Error>(())
/// ```
/// A connection handler that runs `B` on a bounded pool of threads.
pub struct Pooled<B: Blocking> {
    blocking: Arc<B>,
    /// Requests are lines, not reads.
    lines: bool,
    jobs: Option<Sender<Job>>,
    finished: Arc<Finished>,
    threads: Vec<JoinHandle<()>>,
    capacity: usize,
    /// Requests held: waiting in sessions or running.
    held: usize,
    /// Requests handed to the workers and not back yet.
    running: usize,
    /// Connections with waiting requests, in round-robin order.
    turn: VecDeque<ConnId>,
    /// Connections paused because the pool was full, oldest first.
    paused: VecDeque<ConnId>,
    panics: u64,
    _blocking: std::marker::PhantomData<B>,
}

impl<B: Blocking> std::fmt::Debug for Pooled<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("threads", &self.threads.len())
            .field("capacity", &self.capacity)
            .field("held", &self.held)
            .field("running", &self.running)
            .field("paused", &self.paused.len())
            .field("panics", &self.panics)
            .finish()
    }
}

impl<B: Blocking> Pooled<B> {
    /// A pool of `threads` threads running `blocking`, holding at most
    /// `capacity` requests at once. The threads start with every signal
    /// blocked.
    ///
    /// # Errors
    /// If the eventfd or a thread cannot be created.
    pub fn new(blocking: B, threads: usize, capacity: usize) -> io::Result<Pooled<B>> {
        let notify = crate::sys::Counter::new("the pool")?;
        let finished = Arc::new(Finished {
            done: Mutex::new(Vec::new()),
            notify,
        });
        // Unbounded, but the loop only sends to an idle worker: it holds at
        // most one job per thread.
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let blocking = Arc::new(blocking);
        let workers = (0..threads.max(1))
            .map(|i| {
                let (rx, finished, blocking) = (rx.clone(), finished.clone(), blocking.clone());
                spawn_with_signals_blocked(format!("edgeloop-pool-{i}"), move || {
                    work(&rx, &finished, &*blocking)
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Pooled {
            blocking,
            lines: false,
            jobs: Some(tx),
            finished,
            threads: workers,
            capacity: capacity.max(1),
            held: 0,
            running: 0,
            turn: VecDeque::new(),
            paused: VecDeque::new(),
            panics: 0,
            _blocking: std::marker::PhantomData,
        })
    }

    /// Requests are lines (each ending in `\n`, at most 64 KiB; a longer
    /// one is cut there, and an unfinished one at EOF is a request too)
    /// rather than whatever one read returns.
    #[must_use]
    pub fn lines(mut self) -> Pooled<B> {
        self.lines = true;
        self
    }

    /// Requests held: waiting for a worker or running.
    pub fn outstanding(&self) -> usize {
        self.held
    }

    /// Jobs that panicked (their connections were closed).
    pub fn panics(&self) -> u64 {
        self.panics
    }

    /// Makes requests of `data` while the pool has room. What is left
    /// once it is full stays unread in the session, and the connection is
    /// not read again until a slot frees: the pool never holds more than
    /// its capacity, however many requests one read brings.
    fn take(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        let mut taken = 0;
        if !self.lines {
            if self.held < self.capacity {
                self.request(conn, data.to_vec());
                taken = data.len();
            }
        } else {
            let mut line = std::mem::take(&mut conn.session().partial);
            for chunk in data.split_inclusive(|&b| b == b'\n') {
                if self.held >= self.capacity {
                    break;
                }
                taken += chunk.len();
                line.extend_from_slice(chunk);
                if line.ends_with(b"\n") || line.len() >= MAX_LINE {
                    self.request(conn, std::mem::take(&mut line));
                }
            }
            conn.session().partial = line;
        }
        if taken < data.len() {
            conn.session().unread = data[taken..].to_vec();
            self.pause(conn);
        }
    }

    /// The pool is full: `conn` is not read until a slot frees.
    fn pause(&mut self, conn: &mut Conn<'_, Self>) {
        let id = conn.id();
        conn.pause_reading();
        if !self.paused.contains(&id) {
            self.paused.push_back(id);
        }
    }

    /// One request: answered at once if [`Blocking::quick`] can, else to
    /// an idle worker, else waiting its turn.
    fn request(&mut self, conn: &mut Conn<'_, Self>, request: Vec<u8>) {
        let id = conn.id();
        let session = conn.session();
        let seq = session.next_seq;
        session.next_seq += 1;
        if let Some(reply) = self.blocking.quick(&request) {
            Pooled::complete(conn, seq, reply);
            // Quick replies that must wait behind a slow one are held here:
            // past the pool's capacity of them, stop reading this
            // connection until its slow reply is written.
            let session = conn.session();
            if session.early.len() >= self.capacity && !session.paused_for_order {
                session.paused_for_order = true;
                conn.pause_reading();
            }
            return;
        }
        let session = conn.session();
        self.held += 1;
        if self.running < self.threads.len() {
            // A worker is idle, so nobody is waiting: straight to it.
            self.start(id, seq, request);
        } else {
            if session.waiting.is_empty() {
                self.turn.push_back(id);
            }
            session.waiting.push_back((seq, request));
        }
        if self.held >= self.capacity {
            self.pause(conn);
        }
    }

    /// Sends a job to an idle worker.
    fn start(&mut self, conn: ConnId, seq: u64, request: Vec<u8>) {
        self.running += 1;
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job { conn, seq, request });
        }
    }

    /// A reply came back: write what is now in order.
    fn complete(conn: &mut Conn<'_, Self>, seq: u64, reply: Vec<u8>) {
        let session = conn.session();
        session.early.insert(seq, reply);
        while let Some(reply) = {
            let s = conn.session();
            let next = s.next_to_write;
            s.early.remove(&next)
        } {
            conn.session().next_to_write += 1;
            conn.write(&reply);
        }
    }
}

fn work<B: Blocking>(jobs: &Mutex<Receiver<Job>>, finished: &Finished, blocking: &B) {
    loop {
        let job = match jobs.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return, // the pool was dropped
        };
        // A panicking job must not take its worker with it.
        let reply = catch_unwind(AssertUnwindSafe(|| blocking.handle(&job.request))).ok();
        if reply.is_none() {
            log::error!("pool: the job for {:?} panicked; closing it", job.conn);
        }
        finished
            .done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Done {
                conn: job.conn,
                seq: job.seq,
                reply,
            });
        let _ = finished.notify.add_one();
    }
}

impl<B: Blocking> Handler for Pooled<B> {
    type Session = PooledSession;

    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        let mut unread = std::mem::take(&mut conn.session().unread);
        if unread.is_empty() {
            self.take(conn, data);
        } else {
            unread.extend_from_slice(data);
            self.take(conn, &unread);
        }
    }

    fn on_eof(&mut self, conn: &mut Conn<'_, Self>) {
        let rest = std::mem::take(&mut conn.session().partial);
        if !rest.is_empty() {
            self.request(conn, rest);
        }
        // Replies still owed are written before the close (close() waits for
        // the queue; a reply still running is written when it comes back).
        if conn.session().settled() {
            conn.close();
        }
    }

    fn on_close(
        &mut self,
        _: &mut Others<'_, Self>,
        _: ConnId,
        session: PooledSession,
        _: CloseReason,
    ) {
        // Requests that never reached a worker go with their connection;
        // running ones are counted back when they finish.
        self.held -= session.waiting.len();
    }

    fn busy(&self) -> bool {
        self.held > 0
    }

    fn in_flight(&self, session: &PooledSession) -> bool {
        !session.settled()
    }
}

/// How long dropping a pool waits for its workers to exit.
const DROP_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

impl<B: Blocking> Drop for Pooled<B> {
    /// Closes the job queue: idle workers exit at once, and are joined. A
    /// worker still inside a job is not waited for beyond a moment: the
    /// server's graceful shutdown already gave replies in flight its grace
    /// period, so joining it would stretch the grace by however long the
    /// job runs (forever, for one that never returns). Such a worker is
    /// left to finish on its own (its reply goes nowhere), and ends with
    /// the process.
    fn drop(&mut self) {
        self.jobs = None; // workers see the channel close and exit
        let deadline = std::time::Instant::now() + DROP_WAIT;
        while self.threads.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let (done, running): (Vec<_>, Vec<_>) =
            self.threads.drain(..).partition(|t| t.is_finished());
        for t in done {
            let _ = t.join();
        }
        if !running.is_empty() {
            log::warn!(
                "edgeloop: {} pool worker(s) still running a job were left behind at shutdown",
                running.len()
            );
        }
    }
}

/// Registers the pool's eventfd on `reactor`, so replies finished on the
/// pool reach the connection set `set` on the loop. Call once, after the
/// server is built. Returns the registration's token.
///
/// # Errors
/// What registering the eventfd reports.
pub fn attach_pool<B: Blocking>(
    reactor: &mut Reactor,
    set: SourceId<Connections<Pooled<B>>>,
) -> io::Result<Token> {
    let notify = Notify(reactor.source(set).handler().finished.clone());
    let mut batch = Vec::new();
    reactor.core_mut().register(
        notify,
        Interest::READABLE,
        Trigger::Level,
        move |r, notify, _| {
            let finished = &notify.0;
            finished.notify.drain();
            std::mem::swap(
                &mut *finished.done.lock().unwrap_or_else(|p| p.into_inner()),
                &mut batch,
            );
            let (connections, core) = r.source_mut(set);
            for done in batch.drain(..) {
                let pool = connections.handler_mut();
                pool.running -= 1;
                pool.held -= 1;
                if done.reply.is_none() {
                    pool.panics += 1;
                }
                let gone = connections
                    .with_conn(core, done.conn, |pool, conn| match done.reply {
                        Some(reply) => {
                            Pooled::complete(conn, done.seq, reply);
                            let session = conn.session();
                            if session.paused_for_order && session.early.is_empty() {
                                session.paused_for_order = false;
                                if !pool.paused.contains(&done.conn) {
                                    conn.resume_reading();
                                }
                            }
                            if conn.session().settled() && conn.is_read_closed() {
                                conn.close(); // the peer half-closed while its replies ran
                            }
                        }
                        None => conn.abort(),
                    })
                    .is_none();
                if gone {
                    log::debug!("pool: {:?} closed before its reply was ready", done.conn);
                }
            }
            // Slots freed: feed idle workers round-robin, then resume paused
            // connections.
            feed_workers(connections, core);
            loop {
                let pool = connections.handler_mut();
                if pool.held >= pool.capacity {
                    break;
                }
                let Some(id) = pool.paused.pop_front() else {
                    break;
                };
                connections.with_conn(core, id, |pool, conn| {
                    // What was read while the pool was full goes first; if
                    // it fills the pool again, the connection waits again.
                    let unread = std::mem::take(&mut conn.session().unread);
                    if !unread.is_empty() {
                        pool.take(conn, &unread);
                    }
                    let session = conn.session();
                    if session.unread.is_empty() && !session.paused_for_order {
                        conn.resume_reading();
                    }
                });
            }
            PostAction::Continue
        },
    )
}

/// Hands waiting requests to idle workers: the oldest request of the next
/// connection in turn, one connection at a time (round-robin).
fn feed_workers<B: Blocking>(connections: &mut Connections<Pooled<B>>, core: &mut Core) {
    loop {
        let pool = connections.handler_mut();
        if pool.running >= pool.threads.len() {
            return;
        }
        let Some(id) = pool.turn.pop_front() else {
            return;
        };
        // A connection that closed took its waiting requests with it.
        connections.with_conn(core, id, |pool, conn| {
            let session = conn.session();
            if let Some((seq, request)) = session.waiting.pop_front() {
                if !session.waiting.is_empty() {
                    pool.turn.push_back(id);
                }
                pool.start(id, seq, request);
            }
        });
    }
}
