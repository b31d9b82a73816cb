//! Micro-benchmarks of the reactor's own costs (criterion): dispatch per
//! ready event, register + deregister, modify, timers, waker round trip and
//! Handle::post throughput.
//!
//! Run: `cargo bench --bench reactor`.

use std::hint::black_box;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use edgeloop::{Interest, PostAction, Reactor, Trigger};

fn ready_pairs(n: usize) -> Vec<(UnixStream, UnixStream)> {
    (0..n)
        .map(|_| {
            let (a, mut b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            b.write_all(b"x").unwrap();
            (a, b)
        })
        .collect()
}

fn dispatch(c: &mut Criterion) {
    for n in [1usize, 1000] {
        let mut reactor = Reactor::new().unwrap();
        let mut peers = Vec::new();
        for (a, b) in ready_pairs(n) {
            // Level-triggered and never read: every turn reports all n.
            reactor
                .core_mut()
                .register(a, Interest::READABLE, Trigger::Level, |_, _, e| {
                    black_box(e);
                    PostAction::Continue
                })
                .unwrap();
            peers.push(b);
        }
        c.bench_function(&format!("turn with {n} ready (LT)"), |b| {
            b.iter(|| reactor.run_once(Some(Duration::ZERO)).unwrap())
        });
    }
}

fn registration(c: &mut Criterion) {
    let mut reactor = Reactor::new().unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    // Shared, so each registration owns a handle to the same socket.
    let a = Rc::new(a);
    let keep = |_: &mut Reactor, _: &mut Rc<UnixStream>, _| PostAction::Continue;
    c.bench_function("register + deregister", |b| {
        b.iter(|| {
            let t = reactor
                .core_mut()
                .register(a.clone(), Interest::READABLE, Trigger::Level, keep)
                .unwrap();
            reactor.core_mut().deregister(t).unwrap();
        })
    });
    let t = reactor
        .core_mut()
        .register(a, Interest::READABLE, Trigger::Level, keep)
        .unwrap();
    let mut flip = false;
    c.bench_function("modify (LT, alternating interest)", |b| {
        b.iter(|| {
            flip = !flip;
            let interest = if flip {
                Interest::BOTH
            } else {
                Interest::READABLE
            };
            reactor
                .core_mut()
                .modify(t, interest, Trigger::Level)
                .unwrap();
        })
    });
}

fn timers(c: &mut Criterion) {
    c.bench_function("1M timers: insert, cancel 99%, expire the rest", |b| {
        b.iter_batched(
            || Reactor::new().unwrap(),
            |mut reactor| {
                let now = Instant::now();
                let ids: Vec<_> = (0..1_000_000u64)
                    .map(|i| {
                        reactor
                            .core_mut()
                            .call_at(now + Duration::from_nanos(i), |_| {})
                    })
                    .collect();
                for (i, id) in ids.iter().enumerate() {
                    if i % 100 != 0 {
                        reactor.core_mut().cancel(*id);
                    }
                }
                while reactor.core().timers() > 0 {
                    reactor.run_once(None).unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
}

fn waker(c: &mut Criterion) {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.core().handle();
    c.bench_function("wake + turn (same thread)", |b| {
        b.iter(|| {
            handle.wake();
            reactor.run_once(Some(Duration::ZERO)).unwrap()
        })
    });
    c.bench_function("post 1000 closures + one turn", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                let _ = handle.post(|r| {
                    black_box(r);
                });
            }
            reactor.run_once(Some(Duration::ZERO)).unwrap()
        })
    });
}

criterion_group!(benches, dispatch, registration, timers, waker);
criterion_main!(benches);
