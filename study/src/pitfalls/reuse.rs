//! fd numbers are reused at once: `open`, `socket` and `accept` return the
//! lowest free number (POSIX; fs/file.c `alloc_fd`). Anything that names a
//! connection by its fd number (an event's data word, a re-arm by number)
//! can name its successor after a close.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use edgeloop::{Interest, PostAction, Reactor, Token, Trigger};
use nix::sys::epoll::EpollFlags;

use super::{Finding, add, ctl_number, epoll, pair, wait};

/// Pitfall 3: a stale event for a reused fd number in the same batch. A
/// loop whose event data is the fd number gets two events; handling the
/// first closes the other connection and accepts a new one, which takes
/// the freed number; the second event is then handed to the newcomer.
///
/// # Errors
/// Setup failures.
pub fn stale_event_in_the_batch() -> io::Result<Finding> {
    let epoll = epoll()?;
    let mut conns: HashMap<RawFd, (&str, UnixStream)> = HashMap::new();
    let mut peers = Vec::new();
    for name in ["a", "b"] {
        let (ours, mut theirs) = pair()?;
        theirs.write_all(b"request")?;
        let fd = ours.as_raw_fd();
        add(&epoll, &ours, EpollFlags::EPOLLIN, fd as u64)?;
        conns.insert(fd, (name, ours));
        peers.push(theirs);
    }
    let batch = wait(&epoll, 100)?;
    let mut handed_to_newcomer = 0;
    let mut reused = false;
    let mut newcomer_peer = None;
    for (i, event) in batch.iter().enumerate() {
        let fd = event.data() as RawFd;
        if i == 0 {
            // The first handler closes the other connection (its pair's
            // peer hung up, say), then a new connection arrives.
            let other = *conns.keys().find(|&&k| k != fd).expect("two connections");
            let (_, closed) = conns.remove(&other).expect("registered");
            epoll.delete(&closed)?;
            drop(closed);
            let (ours, theirs) = pair()?;
            reused = ours.as_raw_fd() == other;
            add(&epoll, &ours, EpollFlags::EPOLLIN, ours.as_raw_fd() as u64)?;
            conns.insert(ours.as_raw_fd(), ("newcomer", ours));
            newcomer_peer = Some(theirs);
            continue;
        }
        if let Some((name, stream)) = conns.get_mut(&fd) {
            let mut buf = [0; 64];
            if *name == "newcomer" && stream.read(&mut buf).is_err() {
                handed_to_newcomer += 1; // EAGAIN: the event was not its own
            }
        }
    }
    drop(newcomer_peer);
    let (stale, newcomer_called) = edgeloop_stale_event_in_the_batch()?;
    Ok(Finding {
        pitfall: "3. a stale event for a reused fd number in the same batch",
        raw: vec![(
            "any trigger",
            format!(
                "{} events in the batch; number reused at once: {}; events for the closed \
                 fd handed to the newcomer: {handed_to_newcomer}",
                batch.len(),
                if reused { "yes" } else { "no" }
            ),
        )],
        edgeloop: format!(
            "stale events dropped by the generation check: {stale}; newcomer's callback run \
             for them: {newcomer_called}"
        ),
    })
}

/// The same batch on edgeloop: two registrations with data pending; the
/// first callback to run deregisters the other and registers a newcomer
/// (a fresh pair, likely on the freed number). Returns (stale events the
/// reactor dropped, newcomer callbacks run) for that turn.
///
/// # Errors
/// Setup failures.
pub fn edgeloop_stale_event_in_the_batch() -> io::Result<(u64, u64)> {
    #[derive(Default)]
    struct Shared {
        tokens: Vec<Token>,
        newcomer_calls: u64,
        newcomer_peer: Option<UnixStream>,
        swapped: bool,
    }
    let shared = Rc::new(RefCell::new(Shared::default()));
    let mut reactor = Reactor::new()?;
    let mut peers = Vec::new();
    for _ in 0..2 {
        let (ours, mut theirs) = pair()?;
        theirs.write_all(b"request")?;
        peers.push(theirs);
        let mine = shared.clone();
        let token = reactor.core_mut().register(
            ours,
            Interest::READABLE,
            Trigger::Level,
            move |r, stream, event| {
                let mut buf = [0; 64];
                let _ = stream.read(&mut buf);
                let mut s = mine.borrow_mut();
                if !s.swapped {
                    s.swapped = true;
                    let other = *s.tokens.iter().find(|&&t| t != event.token).unwrap();
                    r.core_mut().deregister(other).unwrap();
                    let (ours, theirs) = pair().unwrap();
                    s.newcomer_peer = Some(theirs);
                    let counter = mine.clone();
                    r.core_mut()
                        .register(ours, Interest::READABLE, Trigger::Level, move |_, _, _| {
                            counter.borrow_mut().newcomer_calls += 1;
                            PostAction::Continue
                        })
                        .unwrap();
                }
                PostAction::Continue
            },
        )?;
        shared.borrow_mut().tokens.push(token);
    }
    let before = *reactor.core().stats();
    reactor.run_once(Some(Duration::from_millis(100)))?;
    let stale = reactor.core().stats().since(&before).stale;
    let calls = shared.borrow().newcomer_calls;
    Ok((stale, calls))
}

/// Pitfall 4: EPOLLONESHOT handed between threads. A worker thread takes
/// a oneshot event for connection 1; meanwhile the main thread closes
/// that connection and accepts another, which gets the same fd number and
/// registers as connection 2. The worker, done, re-arms "its" fd by number:
/// the MOD succeeds, on the newcomer, with connection 1's data word (in C,
/// a pointer to freed memory). The newcomer's next event carries it.
///
/// # Errors
/// Setup failures.
pub fn oneshot_rearmed_from_another_thread() -> io::Result<Finding> {
    let oneshot = EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT;
    let epoll = Arc::new(epoll()?);
    let (first, mut first_peer) = pair()?;
    add(&epoll, &first, oneshot, 1)?;
    let number = first.as_raw_fd();
    let (took, took_rx) = mpsc::channel::<u64>();
    let (go, go_rx) = mpsc::channel::<()>();
    let worker_epoll = epoll.clone();
    let worker = std::thread::spawn(move || -> io::Result<(String, Option<u64>)> {
        let event = wait(&worker_epoll, 1000)?;
        took.send(event.first().map_or(0, |e| e.data())).ok();
        go_rx.recv().ok();
        // "Done with connection 1": re-arm its fd, by number.
        let rearmed = ctl_number(&worker_epoll, nix::libc::EPOLL_CTL_MOD, number, oneshot, 1);
        let next = wait(&worker_epoll, 1000)?;
        let rearm = match rearmed {
            Ok(()) => "ok".to_string(),
            Err(errno) => format!("{errno:?}"),
        };
        Ok((rearm, next.first().map(|e| e.data())))
    });
    first_peer.write_all(b"x")?;
    let worker_took = took_rx.recv().unwrap_or(0);
    epoll.delete(&first)?;
    drop(first);
    let (second, mut second_peer) = pair()?;
    let reused = second.as_raw_fd() == number;
    add(&epoll, &second, oneshot, 2)?;
    go.send(()).ok();
    std::thread::sleep(Duration::from_millis(20));
    second_peer.write_all(b"y")?;
    let (rearm, next) = worker.join().expect("the worker thread")?;
    let next = next.map_or("none".to_string(), |d| format!("data {d}"));
    let (refusal, reached) = edgeloop_rearm_with_a_stale_token()?;
    Ok(Finding {
        pitfall: "4. EPOLLONESHOT re-armed from another thread",
        raw: vec![(
            "oneshot, 2 threads",
            format!(
                "worker took data {worker_took}; number reused: {}; worker's MOD by number: \
                 {rearm}; the newcomer's next event: {next} (connection 1's, freed)",
                if reused { "yes" } else { "no" }
            ),
        )],
        edgeloop: format!(
            "re-arm by the old token: {}; the newcomer's event went to: {reached:?}",
            refusal.map_or("ok".to_string(), |kind| format!("{kind:?}"))
        ),
    })
}

/// On edgeloop: a oneshot registration is deregistered and a newcomer
/// registered (likely on the same number); re-arming the first by its
/// token is refused, and the newcomer's event still reaches the newcomer.
/// Returns the refusal's kind (`None` if the re-arm was accepted) and the
/// callbacks that ran.
///
/// # Errors
/// Setup failures.
pub fn edgeloop_rearm_with_a_stale_token() -> io::Result<(Option<io::ErrorKind>, Vec<&'static str>)>
{
    let mut reactor = Reactor::with_data(Vec::<&str>::new())?;
    let (first, _first_peer) = pair()?;
    let old =
        reactor
            .core_mut()
            .register(first, Interest::READABLE, Trigger::Oneshot, |r, _, _| {
                r.core_mut().data_mut().push("first");
                PostAction::Continue
            })?;
    reactor.core_mut().deregister(old)?;
    let (second, mut second_peer) = pair()?;
    reactor.core_mut().register(
        second,
        Interest::READABLE,
        Trigger::Oneshot,
        |r, stream, _| {
            let mut buf = [0; 8];
            let _ = stream.read(&mut buf);
            r.core_mut().data_mut().push("second");
            PostAction::Continue
        },
    )?;
    let rearm = reactor
        .core_mut()
        .modify(old, Interest::READABLE, Trigger::Oneshot);
    second_peer.write_all(b"y")?;
    reactor.run_once(Some(Duration::from_millis(100)))?;
    Ok((rearm.err().map(|e| e.kind()), reactor.core().data().clone()))
}
