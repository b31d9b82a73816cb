//! edgeloop's answer to each epoll pitfall of `docs/study.md` ("Where
//! epoll bites"), run in the same situation as the raw-syscall
//! demonstration in `study/src/pitfalls`. Where a pitfall's answer is
//! pinned elsewhere, the test named here is that one:
//! - 2, a forked child: `tests/fork.rs`;
//! - 8, accept balance: `tests/servers.rs`
//!   `workers_spread_connections_over_every_reactor`;
//! - 10, ET starvation: `tests/fairness.rs`;
//! - 14, the thundering herd: `tests/exclusive.rs`.
//!
//! Some also pin the kernel's side, where it is deterministic, so a kernel
//! that behaves otherwise fails here rather than in the study's text.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

use edgeloop::conn::{Conn, ConnOptions, Connections, Handler};
use edgeloop::{Interest, PostAction, Reactor, Signal, Trigger, on_signals};
use edgeloop_study::pitfalls::{accepting, description, files, hangup, reuse, timeouts};

/// Pitfalls 1 and 12: deregistering takes the fd out of the kernel's
/// interest list before closing it, so a dup alive elsewhere keeps no
/// registration (and no LT spin) behind.
#[test]
fn a_deregistered_fd_with_a_dup_alive_reports_nothing() {
    let (events, waits) = description::edgeloop_after_deregister_with_a_dup().unwrap();
    assert_eq!(events, 0);
    assert!(waits <= 3, "{waits} waits in 100 ms: a spin");
}

/// Pitfalls 1 and 12, for connections: a connection closed while the
/// program holds a dup of its socket leaves no registration behind.
#[test]
fn a_closed_connection_with_a_dup_alive_reports_nothing() {
    struct Quiet;
    impl Handler for Quiet {
        type Session = ();
        fn on_data(&mut self, _conn: &mut Conn<'_, Self>, _data: &[u8]) {}
    }
    for trigger in [Trigger::Level, Trigger::Edge] {
        let mut reactor = Reactor::new().unwrap();
        let set = reactor
            .install(Connections::new(Quiet, ConnOptions::with_trigger(trigger)).unwrap())
            .unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let _dup = ours.try_clone().unwrap();
        let (connections, core) = reactor.source_mut(set);
        let id = connections.attach(core, ours.into()).unwrap();
        connections
            .with_conn(core, id, |_, conn| conn.abort())
            .unwrap();
        reactor.run_once(Some(Duration::ZERO)).unwrap();
        theirs.write_all(b"after the close").unwrap();
        let before = *reactor.core().stats();
        for _ in 0..3 {
            reactor.run_once(Some(Duration::from_millis(10))).unwrap();
        }
        let turns = reactor.core().stats().since(&before);
        assert_eq!((turns.dispatched, turns.stale), (0, 0), "{trigger:?}");
    }
}

/// Pitfall 3: an event already in the batch for a registration removed
/// earlier in the batch is dropped by the token's generation, even when a
/// newcomer took the fd number and the slot.
#[test]
fn a_stale_event_in_the_batch_never_reaches_the_newcomer() {
    let (stale, newcomer_calls) = reuse::edgeloop_stale_event_in_the_batch().unwrap();
    assert_eq!((stale, newcomer_calls), (1, 0));
}

/// Pitfall 4: a oneshot re-arm by a token whose registration is gone is
/// refused, and touches the newcomer on the same fd number not at all.
#[test]
fn a_oneshot_rearm_by_a_stale_token_is_refused() {
    let (refusal, reached) = reuse::edgeloop_rearm_with_a_stale_token().unwrap();
    assert_eq!(refusal, Some(io::ErrorKind::NotFound));
    assert_eq!(reached, ["second"]);
}

/// Pitfall 5: after the peer's half-close, a connection still writing its
/// reply waits for writability only: no spin on the read side's EOF, and
/// the whole reply arrives.
#[test]
fn a_reply_after_a_half_close_waits_without_spinning() {
    let (waits, received, sent) = hangup::edgeloop_half_closed_reply(1 << 20).unwrap();
    assert!(waits <= 5, "{waits} waits in 100 ms: a spin");
    assert_eq!(received, sent);
}

/// Pitfall 6: timers under a millisecond away cost one wait each, not a
/// spin, and are not early.
#[test]
fn a_sub_millisecond_timer_costs_one_wait() {
    let run = timeouts::edgeloop_timers().unwrap();
    assert!(
        run.waits_per_timer <= 1.5,
        "{} waits per timer",
        run.waits_per_timer
    );
}

/// Pitfall 7: the kernel refuses MOD of an exclusive registration and an
/// exclusive oneshot; edgeloop's `modify` deletes and adds instead, and
/// refuses the oneshot itself with the kernel's errno.
#[test]
fn an_exclusive_registration_can_be_modified() {
    let (modified, added_oneshot) = accepting::exclusive_refusals().unwrap();
    assert_eq!(
        (modified.as_str(), added_oneshot.as_str()),
        ("EINVAL", "EINVAL")
    );
    assert!(accepting::edgeloop_modify_exclusive().unwrap());

    let mut reactor = Reactor::new().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let refused = reactor
        .core_mut()
        .register(
            listener,
            Interest::READABLE | Interest::EXCLUSIVE,
            Trigger::Oneshot,
            |_, _, _| PostAction::Continue,
        )
        .unwrap_err();
    assert_eq!(edgeloop::os_error(&refused), Some(nix::libc::EINVAL));
    assert!(refused.to_string().contains("Oneshot"), "{refused}");
}

/// Pitfall 9: an edge-triggered listener that accepts one connection per
/// turn still accepts a whole backlog with no new arrival.
#[test]
fn an_edge_triggered_listener_accepts_its_whole_backlog() {
    assert_eq!(accepting::edgeloop_edge_backlog(20, 1).unwrap(), 20);
}

/// Pitfall 11: a regular file or a directory is refused with EPERM on
/// registration, blocking or not, with the reason.
#[test]
fn regular_files_and_directories_are_refused_with_eperm() {
    let temp = files::TempFile::new().unwrap();
    for file in [
        std::fs::File::open(&temp.path).unwrap(),
        std::fs::File::open(std::env::temp_dir()).unwrap(),
    ] {
        let (kind, errno) = files::edgeloop_register(file);
        assert_eq!(kind, io::ErrorKind::PermissionDenied);
        assert_eq!(errno, Some(nix::libc::EPERM));
    }
    let refused = Reactor::new()
        .unwrap()
        .core_mut()
        .register(
            std::fs::File::open(&temp.path).unwrap(),
            Interest::READABLE,
            Trigger::Level,
            |_, _, _| PostAction::Continue,
        )
        .unwrap_err();
    assert!(refused.to_string().contains("always ready"), "{refused}");
}

/// The warnings edgeloop logs, for pitfall 13.
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            WARNINGS.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// Pitfall 13: `on_signals` in a process where another thread does not
/// block the signals warns, naming that thread; a thread spawned after
/// (which inherits the mask) is not named.
#[test]
fn on_signals_names_the_threads_that_can_take_its_signals() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let before = std::thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
        done_rx.recv().ok();
    });
    let before_tid = tid_rx.recv().unwrap();
    // On a thread of its own, so the harness's threads keep their masks.
    let warned = std::thread::spawn(move || {
        let mut reactor = Reactor::new().unwrap();
        on_signals(&mut reactor, &[Signal::SIGUSR2], |_, _| {}).unwrap();
        let (after_tx, after_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || after_tx.send(nix::unistd::gettid().as_raw()).unwrap())
            .join()
            .unwrap();
        let after_tid = after_rx.recv().unwrap();
        (WARNINGS.lock().unwrap().clone(), after_tid)
    });
    let (warnings, after_tid) = warned.join().unwrap();
    done_tx.send(()).unwrap();
    before.join().unwrap();
    let warning = warnings
        .iter()
        .find(|w| w.contains("SIGUSR2"))
        .unwrap_or_else(|| panic!("no warning about SIGUSR2 in {warnings:?}"));
    assert!(warning.contains(&before_tid.to_string()), "{warning}");
    assert!(!warning.contains(&format!(" {after_tid},")), "{warning}");
}
