//! fork() and a reactor (failure mode 10 in docs/failure-modes.md): the
//! child shares the parent's epoll instance, so a child that ran the
//! parent's reactor would steal its events, and one that deregistered
//! would remove the parent's registrations. The child is refused both, the
//! parent's registrations keep working, and the child can build a reactor
//! of its own. Its own binary: it forks.

mod util;

use std::io::Write;
use std::time::Duration;

use edgeloop::{Backend, Interest, PostAction, Trigger};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use util::{Log, expect_events, pair, reactor};

#[test]
fn a_child_neither_sees_nor_disturbs_the_parents_registrations() {
    let mut reactor = reactor(Backend::Epoll);
    let log = Log::new();
    let (ours, mut theirs) = pair();
    let token = reactor
        .core_mut()
        .register(
            ours,
            Interest::READABLE,
            Trigger::Edge,
            log.recorder("parent"),
        )
        .unwrap();
    // SAFETY: the child only makes syscalls and exits; it never returns
    // into the test harness.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            // Unsupported, each: the reactor belongs to the parent.
            let unsupported = |e: std::io::Error| e.kind() == std::io::ErrorKind::Unsupported;
            let refused = reactor
                .run_once(Some(Duration::ZERO))
                .is_err_and(unsupported)
                && reactor.core_mut().deregister(token).is_err_and(unsupported)
                && reactor
                    .core_mut()
                    .modify(token, Interest::NONE, Trigger::Edge)
                    .is_err_and(unsupported);
            // A reactor of its own works.
            let own = edgeloop::Reactor::new()
                .and_then(|mut r| {
                    r.core_mut()
                        .call_later(Duration::ZERO, |r| r.core_mut().stop());
                    r.run()
                })
                .is_ok();
            let (_a, _b) = pair();
            let mut fresh = edgeloop::Reactor::new().unwrap();
            let registered = fresh
                .core_mut()
                .register(_a, Interest::READABLE, Trigger::Level, |_, _, _| {
                    PostAction::Continue
                })
                .is_ok();
            std::process::exit(if refused && own && registered { 0 } else { 1 });
        }
        ForkResult::Parent { child } => {
            assert_eq!(
                waitpid(child, None).unwrap(),
                WaitStatus::Exited(child, 0),
                "the child was not refused, or could not build its own reactor"
            );
            // The parent's registration is intact and still fires.
            theirs.write_all(b"x").unwrap();
            expect_events(&mut reactor, &log, &["parent"]);
        }
    }
}
