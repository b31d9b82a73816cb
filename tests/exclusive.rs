//! The thundering herd, and EPOLLEXCLUSIVE: two reactors on two threads
//! watch one listening socket. Without `Interest::EXCLUSIVE` every new
//! connection wakes both threads (one accepts; for the other the kernel
//! finds the queue empty again and puts it back to sleep, so no callback
//! runs, but the thread was woken and scheduled); with it, one. Wakeups
//! are counted as the threads' voluntary context switches (each sleep
//! after a wakeup is one), printed and asserted.

mod util;

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use edgeloop::{Backend, Interest, PostAction, Reactor, Trigger};

/// This thread's voluntary context switches so far.
fn voluntary_switches() -> usize {
    let tid = nix::unistd::gettid();
    std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Wakeups (context switches of the two reactor threads) and accepts over
/// `connections` connects, one every 5 ms.
fn herd(exclusive: bool, connections: usize) -> (usize, usize) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let interest = if exclusive {
        Interest::READABLE | Interest::EXCLUSIVE
    } else {
        Interest::READABLE
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let listener = listener.try_clone().unwrap();
            let (accepts, tx) = (accepts.clone(), tx.clone());
            std::thread::spawn(move || {
                let mut reactor = Reactor::with_backend(Backend::Epoll).unwrap();
                reactor
                    .core_mut()
                    .register(listener, interest, Trigger::Level, move |_, l, _| {
                        if let Ok((conn, _)) = l.accept() {
                            accepts.fetch_add(1, Ordering::SeqCst);
                            drop(conn);
                        }
                        PostAction::Continue
                    })
                    .unwrap();
                tx.send(reactor.core().handle()).unwrap();
                let before = voluntary_switches();
                reactor.run().unwrap();
                voluntary_switches() - before
            })
        })
        .collect();
    let handles: Vec<_> = (0..2).map(|_| rx.recv().unwrap()).collect();
    std::thread::sleep(Duration::from_millis(50)); // both are waiting
    for _ in 0..connections {
        let c = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        drop(c);
    }
    std::thread::sleep(Duration::from_millis(50));
    for h in &handles {
        h.stop();
    }
    let switches: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    (switches, accepts.load(Ordering::SeqCst))
}

#[test]
fn exclusive_wakes_one_reactor_per_connection_not_both() {
    const N: usize = 200;
    let (herd_wakeups, herd_accepts) = herd(false, N);
    let (one_wakeups, one_accepts) = herd(true, N);
    assert_eq!((herd_accepts, one_accepts), (N, N));
    let herd_ratio = herd_wakeups as f64 / N as f64;
    let one_ratio = one_wakeups as f64 / N as f64;
    println!(
        "wakeups per accepted connection, 2 reactors on one listener: \
         {herd_ratio:.2} without EPOLLEXCLUSIVE, {one_ratio:.2} with it"
    );
    assert!(herd_ratio > 1.5, "the herd did not show: {herd_ratio:.2}");
    assert!(
        one_ratio < 1.3,
        "EPOLLEXCLUSIVE still woke both: {one_ratio:.2}"
    );
}

#[test]
fn poll_and_select_refuse_an_exclusive_interest() {
    for backend in [Backend::Poll, Backend::Select] {
        let mut reactor = util::reactor(backend);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let e = reactor
            .core_mut()
            .register(
                listener,
                Interest::READABLE | Interest::EXCLUSIVE,
                Trigger::Level,
                util::ignore(),
            )
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{backend:?}");
    }
}
