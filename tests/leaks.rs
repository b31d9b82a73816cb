//! After a reactor is dropped, every fd it or its callbacks held is closed
//! (libuv's MAKE_VALGRIND_HAPPY in spirit). One test
//! per binary: the fd count is process-wide.

mod util;

use std::io::Write;
use std::time::Duration;

use edgeloop::{Interest, PostAction, Reactor, Trigger};
use util::{fd_count, pair};

#[test]
fn fds_and_registrations_return_to_baseline() {
    let baseline = fd_count();
    {
        let mut reactor = Reactor::new().unwrap();
        let handle = reactor.core().handle();
        let mut peers = Vec::new();
        let mut tokens = Vec::new();
        for i in 0..200 {
            let (ours, mut theirs) = pair();
            theirs.write_all(b"x").unwrap();
            let trigger = [Trigger::Level, Trigger::Edge, Trigger::Oneshot][i % 3];
            tokens.push(
                reactor
                    .core_mut()
                    .register(ours, Interest::READABLE, trigger, |_, _, _| {
                        PostAction::Continue
                    })
                    .unwrap(),
            );
            peers.push(theirs);
        }
        reactor
            .core_mut()
            .call_later(Duration::from_secs(60), |_| {});
        reactor.run_once(Some(Duration::from_millis(100))).unwrap();
        // Half deregistered by hand, half dropped with the reactor.
        for token in tokens.iter().step_by(2) {
            reactor.core_mut().deregister(*token).unwrap();
        }
        assert_eq!(reactor.core().registrations(), 100);
        drop(peers);
        drop(handle);
    }
    assert_eq!(fd_count(), baseline, "fds leaked");
}
