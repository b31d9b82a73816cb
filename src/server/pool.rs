//! A bounded thread pool for slow handlers: I/O multiplexing for readiness,
//! threads for slow logic, as the classic texts recommend (what Python's
//! ThreadingMixIn does with a thread per connection instead).
//!
//! [`Pooled`] is a connection [`Handler`] that hands each request (each
//! `on_data` chunk) to a [`Blocking`] function on the pool. Replies come back
//! to the loop through an eventfd the pool registers, like the reactor's own
//! waker, and are written in request order per connection, whatever order
//! the workers finish in. The pool holds at most `capacity` requests
//! (queued or running); when it is full, the connection whose request did
//! not fit stops being read until a slot frees: backpressure, never an
//! unbounded queue.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::conn::{Conn, ConnId, Connections, Handler};
use crate::{Interest, PostAction, Reactor, SourceId, Token, Trigger};

/// The slow part of a request: runs on a pool thread.
pub trait Blocking: Send + Sync + 'static {
    /// Turns one request into its reply.
    fn handle(&self, request: &[u8]) -> Vec<u8>;
}

impl<F: Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static> Blocking for F {
    fn handle(&self, request: &[u8]) -> Vec<u8> {
        self(request)
    }
}

struct Job {
    conn: ConnId,
    seq: u64,
    request: Vec<u8>,
}

struct Done {
    conn: ConnId,
    seq: u64,
    reply: Vec<u8>,
}

/// What finished work the loop has not collected yet, and how to wake it.
struct Finished {
    done: Mutex<Vec<Done>>,
    notify: EventFd,
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
    /// A request that did not fit in the pool, waiting for a slot.
    waiting: Option<Vec<u8>>,
}

/// A connection handler that runs `B` on a bounded pool of threads.
pub struct Pooled<B: Blocking> {
    jobs: Option<SyncSender<Job>>,
    finished: Arc<Finished>,
    threads: Vec<JoinHandle<()>>,
    capacity: usize,
    outstanding: usize,
    /// Connections paused because the pool was full, oldest first.
    paused: VecDeque<ConnId>,
    _blocking: std::marker::PhantomData<B>,
}

impl<B: Blocking> std::fmt::Debug for Pooled<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("threads", &self.threads.len())
            .field("capacity", &self.capacity)
            .field("outstanding", &self.outstanding)
            .field("paused", &self.paused.len())
            .finish()
    }
}

impl<B: Blocking> Pooled<B> {
    /// A pool of `threads` threads running `blocking`, holding at most
    /// `capacity` requests at once.
    ///
    /// # Errors
    /// If the eventfd or a thread cannot be created.
    pub fn new(blocking: B, threads: usize, capacity: usize) -> io::Result<Pooled<B>> {
        let notify = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let finished = Arc::new(Finished {
            done: Mutex::new(Vec::new()),
            notify,
        });
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let blocking = Arc::new(blocking);
        let threads = (0..threads.max(1))
            .map(|i| {
                let (rx, finished, blocking) = (rx.clone(), finished.clone(), blocking.clone());
                std::thread::Builder::new()
                    .name(format!("edgeloop-pool-{i}"))
                    .spawn(move || work(&rx, &finished, &*blocking))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Pooled {
            jobs: Some(tx),
            finished,
            threads,
            capacity,
            outstanding: 0,
            paused: VecDeque::new(),
            _blocking: std::marker::PhantomData,
        })
    }

    /// Requests queued or running.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    fn submit(&mut self, conn: &mut Conn<'_, Self>, request: Vec<u8>) {
        let session = conn.session();
        let seq = session.next_seq;
        session.next_seq += 1;
        self.outstanding += 1;
        let job = Job {
            conn: conn.id(),
            seq,
            request,
        };
        if let Some(jobs) = &self.jobs {
            // Never blocks: `outstanding` <= capacity = the channel's bound.
            let _ = jobs.try_send(job);
        }
    }

    /// A reply came back: write what is now in order, then give the freed
    /// slot to a waiting connection.
    fn complete(&mut self, conn: &mut Conn<'_, Self>, seq: u64, reply: Vec<u8>) {
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
        let reply = blocking.handle(&job.request);
        finished
            .done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Done {
                conn: job.conn,
                seq: job.seq,
                reply,
            });
        let _ = finished.notify.write(1);
    }
}

impl<B: Blocking> Handler for Pooled<B> {
    type Session = PooledSession;

    fn on_data(&mut self, conn: &mut Conn<'_, Self>, data: &[u8]) {
        if self.outstanding < self.capacity {
            self.submit(conn, data.to_vec());
        } else {
            conn.session()
                .waiting
                .get_or_insert_with(Vec::new)
                .extend_from_slice(data);
            conn.pause_reading();
            let id = conn.id();
            if !self.paused.contains(&id) {
                self.paused.push_back(id);
            }
        }
    }

    fn on_eof(&mut self, conn: &mut Conn<'_, Self>) {
        // Replies still owed are written before the close (close() waits for
        // the queue; a reply still running is dropped if the peer is gone).
        let s = conn.session();
        if s.next_to_write == s.next_seq && s.waiting.is_none() {
            conn.close();
        }
    }
}

impl<B: Blocking> Drop for Pooled<B> {
    fn drop(&mut self) {
        self.jobs = None; // workers see the channel close and exit
        for t in self.threads.drain(..) {
            let _ = t.join();
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
    reactor.register(
        notify,
        Interest::READABLE,
        Trigger::Level,
        move |r, notify, _| {
            let finished = &notify.0;
            let _ = finished.notify.read();
            std::mem::swap(
                &mut *finished.done.lock().unwrap_or_else(|p| p.into_inner()),
                &mut batch,
            );
            let (connections, core) = r.source_mut(set);
            for done in batch.drain(..) {
                connections.handler_mut().outstanding -= 1;
                let gone = connections
                    .with_conn(core, done.conn, |p, conn| {
                        p.complete(conn, done.seq, done.reply);
                        let s = conn.session();
                        if s.next_to_write == s.next_seq
                            && s.waiting.is_none()
                            && conn.is_read_closed()
                        {
                            conn.close(); // the peer half-closed while its replies ran
                        }
                    })
                    .is_none();
                if gone {
                    log::debug!("pool: {:?} closed before its reply was ready", done.conn);
                }
                // A slot is free: the oldest waiting connection gets it.
                while let Some(id) = {
                    let p = connections.handler_mut();
                    (p.outstanding < p.capacity)
                        .then(|| p.paused.pop_front())
                        .flatten()
                } {
                    connections.with_conn(core, id, |p, conn| {
                        if let Some(request) = conn.session().waiting.take() {
                            p.submit(conn, request);
                        }
                        conn.resume_reading();
                    });
                }
            }
            PostAction::Continue
        },
    )
}
