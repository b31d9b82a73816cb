//! epoll watches an open file description, not an fd number. A
//! registration is keyed by (description, number) and lives as long as the
//! description does: `close(fd)` removes it only when it closed the last
//! copy (fs/eventpoll.c: `eventpoll_release` runs from the description's
//! final `fput`). A `dup`, a copy inherited by a child, or an fd passed to
//! another process keeps the registration, and its events, alive.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use edgeloop::{Interest, PostAction, Reactor, Trigger};
use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

use super::{Finding, TRIGGERS, add, delete_number, epoll, pair, wait};

/// Pitfall 1: a dup'ed fd keeps a closed fd's registration alive. Per
/// trigger: the events delivered for the closed number over three writes
/// and three waits each, and what `EPOLL_CTL_DEL` says by either number.
///
/// # Errors
/// Setup failures.
pub fn dup_keeps_the_registration() -> io::Result<Finding> {
    let mut raw = Vec::new();
    for (mode, flags) in TRIGGERS {
        let epoll = epoll()?;
        let (ours, mut theirs) = pair()?;
        add(&epoll, &ours, flags, 7)?;
        let copy = ours.try_clone()?; // dup(2)
        let number = ours.as_raw_fd();
        drop(ours); // close(2) of the registered number
        let mut events = 0;
        for _ in 0..3 {
            theirs.write_all(b"x")?;
            for _ in 0..3 {
                events += wait(&epoll, 0)?.iter().filter(|e| e.data() == 7).count();
            }
        }
        let by_old = errno_name(delete_number(&epoll, number));
        let by_copy = errno_name(delete_number(&epoll, copy.as_raw_fd()));
        drop(copy); // the last copy: now the registration goes
        let after_last = wait(&epoll, 0)?.len();
        raw.push((
            mode,
            format!(
                "{events} events in 9 waits after close; DEL by the closed number: {by_old}, \
                 by the dup: {by_copy}; {after_last} after the last copy closed"
            ),
        ));
    }
    Ok(Finding {
        pitfall: "1. a dup keeps a closed fd's registration alive",
        raw,
        edgeloop: format!(
            "{} events after deregister with a dup alive (the reactor owns the fd: DEL, then close)",
            edgeloop_after_deregister_with_a_dup()?.0
        ),
    })
}

/// Pitfall 12: the fd is closed before it is deleted, while its
/// description stays open elsewhere (a dup, a child). The loop can no
/// longer delete the registration (EBADF) and, level-triggered, wakes for
/// it forever: wakeups in 100 ms with one unread byte pending.
///
/// # Errors
/// Setup failures.
pub fn closed_before_deleted() -> io::Result<Finding> {
    let mut raw = Vec::new();
    for (mode, flags) in TRIGGERS {
        let epoll = epoll()?;
        let (ours, mut theirs) = pair()?;
        add(&epoll, &ours, flags, 7)?;
        let elsewhere = ours.try_clone()?;
        let number = ours.as_raw_fd();
        drop(ours);
        let deleted = errno_name(delete_number(&epoll, number));
        theirs.write_all(b"x")?;
        let wakeups = wakeups_in(&epoll, Duration::from_millis(100))?;
        drop(elsewhere);
        raw.push((
            mode,
            format!("DEL after close: {deleted}; {wakeups} wakeups in 100 ms"),
        ));
    }
    let (events, waits) = edgeloop_after_deregister_with_a_dup()?;
    Ok(Finding {
        pitfall: "12. closing an fd before deleting it, its description open elsewhere",
        raw,
        edgeloop: format!(
            "cannot happen: register takes the fd; after deregister, {waits} wait in 100 ms \
             and {events} events with a dup alive and a byte pending"
        ),
    })
}

/// Waits (up to 100 ms each) until `span` passed; counts the waits that
/// returned an event.
fn wakeups_in(epoll: &nix::sys::epoll::Epoll, span: Duration) -> io::Result<usize> {
    let start = Instant::now();
    let mut wakeups = 0;
    while start.elapsed() < span {
        let left = span.saturating_sub(start.elapsed());
        let ms = left.as_millis().clamp(1, 100) as u16;
        if !wait(epoll, ms)?.is_empty() {
            wakeups += 1;
        }
    }
    Ok(wakeups)
}

fn errno_name(result: Result<(), Errno>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(errno) => format!("{errno:?}"),
    }
}

/// On edgeloop: a registration whose fd the program dup'ed beforehand is
/// deregistered with a byte pending, and the peer writes again. Returns
/// (the events any wait then reported, dispatched or stale; the waits of
/// one `run_once` of 100 ms). A registration left in the kernel would
/// make them (some, many).
///
/// # Errors
/// Setup failures.
pub fn edgeloop_after_deregister_with_a_dup() -> io::Result<(u64, u64)> {
    let mut reactor = Reactor::new()?;
    let (ours, mut theirs) = pair()?;
    let _copy = ours.try_clone()?;
    let token =
        reactor
            .core_mut()
            .register(ours, Interest::READABLE, Trigger::Level, |_, _, _| {
                PostAction::Continue
            })?;
    theirs.write_all(b"x")?;
    reactor.core_mut().deregister(token)?;
    theirs.write_all(b"x")?;
    let before = *reactor.core().stats();
    for _ in 0..3 {
        reactor.run_once(Some(Duration::ZERO))?;
    }
    let span = *reactor.core().stats();
    let deadline = Instant::now() + Duration::from_millis(100);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        reactor.run_once(Some(left))?;
    }
    let all = reactor.core().stats().since(&before);
    let waits = reactor.core().stats().since(&span).waits;
    Ok((all.dispatched + all.stale, waits))
}

/// Pitfall 2: parent and child share one epoll instance after fork. Per
/// trigger, a child that waits on the inherited instance takes the
/// parent's event (edge and oneshot: the parent never sees it); and a child
/// that deletes its copy of the fd removes the parent's registration.
///
/// Forks: call it from a single-threaded process (the study's binary).
///
/// # Errors
/// Setup failures.
pub fn forked_child_shares_the_instance() -> io::Result<Finding> {
    let mut raw = Vec::new();
    for (mode, flags) in TRIGGERS {
        let stolen = child_waits(flags)?;
        raw.push((mode, stolen));
    }
    let deleted = child_deletes()?;
    raw.push(("child's DEL", deleted));
    let mut reactor = Reactor::new()?;
    let (ours, _theirs) = pair()?;
    reactor
        .core_mut()
        .register(ours, Interest::READABLE, Trigger::Edge, |_, _, _| {
            PostAction::Continue
        })?;
    let refused = in_child(|| {
        reactor
            .run_once(Some(Duration::ZERO))
            .is_err_and(|e| e.kind() == io::ErrorKind::Unsupported)
    })?;
    Ok(Finding {
        pitfall: "2. parent and child share one epoll instance after fork",
        raw,
        edgeloop: if refused {
            "the child's run_once is refused (Unsupported); tests/fork.rs".into()
        } else {
            "the child ran the parent's reactor".into()
        },
    })
}

/// The child waits on the shared instance; the parent writes, then (once
/// the child exited) polls it.
fn child_waits(flags: EpollFlags) -> io::Result<String> {
    let epoll = epoll()?;
    let (ours, mut theirs) = pair()?;
    add(&epoll, &ours, flags, 7)?;
    let child = spawn_child(|| wait(&epoll, 1000).is_ok_and(|events| !events.is_empty()))?;
    std::thread::sleep(Duration::from_millis(20));
    theirs.write_all(b"x")?;
    let child_saw = exited_true(child)?;
    let parent_saw = wait(&epoll, 0)?.len();
    Ok(format!(
        "child saw the event: {}; parent then saw {parent_saw}",
        if child_saw { "yes" } else { "no" }
    ))
}

/// The child deletes its copy of the fd; the parent's registration goes.
fn child_deletes() -> io::Result<String> {
    let epoll = epoll()?;
    let (ours, mut theirs) = pair()?;
    add(&epoll, &ours, EpollFlags::EPOLLIN, 7)?;
    let deleted = in_child(|| epoll.delete(&ours).is_ok())?;
    theirs.write_all(b"x")?;
    let parent_saw = wait(&epoll, 50)?.len();
    Ok(format!(
        "child's DEL {}; the parent's LT registration then reported {parent_saw} events",
        if deleted { "succeeded" } else { "failed" }
    ))
}

/// Runs `check` in a forked child; its verdict.
fn in_child(check: impl FnOnce() -> bool) -> io::Result<bool> {
    exited_true(spawn_child(check)?)
}

fn spawn_child(check: impl FnOnce() -> bool) -> io::Result<nix::unistd::Pid> {
    // SAFETY: the study's binary is single-threaded when it forks, and the
    // child runs `check` and leaves with _exit, never returning into the
    // caller.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let verdict = check();
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or flushing its stdio buffers twice.
            unsafe { nix::libc::_exit(if verdict { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => Ok(child),
    }
}

fn exited_true(child: nix::unistd::Pid) -> io::Result<bool> {
    Ok(matches!(waitpid(child, None)?, WaitStatus::Exited(_, 0)))
}
