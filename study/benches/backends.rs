//! select vs poll vs epoll: the cost of one wait with N watched fds of which
//! k are ready, and of register + deregister (criterion).
//!
//! Run: `cargo bench -p edgeloop-study --bench backends`. The same study as
//! a table and an SVG plot: `cargo run --release -p edgeloop-study --bin
//! backends`.

use std::net::UdpSocket;
use std::rc::Rc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgeloop::{Backend, Interest, PostAction, Trigger};
use edgeloop_study::wait_cost::Fixture;

fn wait(c: &mut Criterion) {
    let mut group = c.benchmark_group("wait");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for backend in Backend::ALL.iter().copied() {
        for n in [10usize, 100, 1_000, 10_000] {
            for k in [1usize, 100] {
                if k > n {
                    continue;
                }
                let Ok(mut fixture) = Fixture::new(backend, n, k) else {
                    continue; // select past FD_SETSIZE
                };
                group.bench_function(
                    BenchmarkId::new(format!("{}/k={k}", backend.name()), n),
                    |b| b.iter(|| fixture.turn()),
                );
            }
        }
    }
    group.finish();
}

fn register(c: &mut Criterion) {
    let mut group = c.benchmark_group("register+deregister");
    for backend in Backend::ALL.iter().copied() {
        let mut fixture = Fixture::new(backend, 100, 0).unwrap();
        // Shared, so each registration owns a handle to the same socket.
        let probe = Rc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        group.bench_function(backend.name(), |b| {
            b.iter(|| {
                let t = fixture
                    .reactor
                    .core_mut()
                    .register(
                        probe.clone(),
                        Interest::READABLE,
                        Trigger::Level,
                        |_, _, _| PostAction::Continue,
                    )
                    .unwrap();
                fixture.reactor.core_mut().deregister(t).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, wait, register);
criterion_main!(benches);
