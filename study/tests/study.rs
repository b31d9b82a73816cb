//! The lt_vs_et trace is generated from real epoll calls: pin what it must
//! show (docs/kernel-facts.md K1-K4, K7).

use edgeloop::Ready;
use edgeloop_study::trace::{Action, Outcome, trace_triggers};

#[test]
fn the_trace_shows_what_each_trigger_really_reports() {
    let steps = trace_triggers().unwrap();
    let waits: Vec<[Outcome; 3]> = steps
        .iter()
        .filter(|s| s.action == Action::Wait)
        .map(|s| s.seen)
        .collect();
    let ev = |r: Ready| Outcome::Event(r);
    let none = Outcome::Nothing;
    let readable = Ready::READABLE;
    let closing = Ready::READABLE | Ready::READ_CLOSED;
    assert_eq!(
        waits,
        [
            [ev(readable), ev(readable), ev(readable)], // 10 B arrive: everyone
            [ev(readable), none, none],                 // after reading 3: LT only (K1, K3, K4)
            [ev(readable), ev(readable), none],         // 5 more: a new edge; oneshot disarmed
            [ev(readable), none, ev(readable)],         // MOD re-arms oneshot (K4)
            [none, none, none],                         // drained
            [ev(closing), ev(closing), none],           // peer SHUT_WR: RDHUP (K7)
        ]
    );
    // The reads: 3 bytes, then 12 drained, then EOF on every lane.
    let reads: Vec<[Outcome; 3]> = steps
        .iter()
        .filter(|s| matches!(s.action, Action::Read(_) | Action::Drain))
        .map(|s| s.seen)
        .collect();
    assert_eq!(reads[0], [Outcome::Bytes(3); 3]);
    assert_eq!(reads[1], [Outcome::Bytes(12); 3]);
    assert_eq!(reads[2], [Outcome::Bytes(0); 3]);
}

#[test]
fn epoll_shares_no_memory_with_user_space_the_mmap_claim_is_a_myth() {
    // The classic texts say epoll "uses mmap to share memory with the
    // kernel". An epoll fd cannot even be mapped: eventpoll's file
    // operations have no mmap (ENODEV), and epoll_wait copies the ready
    // events into the caller's array.
    use nix::sys::epoll::{Epoll, EpollCreateFlags};
    use nix::sys::mman::{MapFlags, ProtFlags, mmap};
    use std::num::NonZeroUsize;
    use std::os::fd::AsFd;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    // SAFETY: a fresh shared mapping request the kernel refuses; nothing is
    // mapped, so no memory is touched.
    let result = unsafe {
        mmap(
            None,
            NonZeroUsize::new(4096).unwrap(),
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
            epoll.0.as_fd(),
            0,
        )
    };
    assert_eq!(result.unwrap_err(), nix::errno::Errno::ENODEV);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        !maps.contains("eventpoll"),
        "no eventpoll mapping in this process"
    );
}
