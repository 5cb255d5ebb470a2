//! In-process propagation: one write until all N replicas hold it, for N = 2, 8, 32.
//!
//! - `propagation_pump`: the replicas and the hub in one thread; the loop hands each
//!   message from the hub to the next replica at once. This is the cost of the
//!   protocol and the hub: encode, broadcast, N-1 decodes and merges.
//! - `propagation_threads`: each replica on its own native-driver thread, as an
//!   application runs them; adds thread wake-ups (the machine's cores bound it).
//!
//! Run with `cargo bench --bench propagation`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use replisync::{
    Clock, Config, Driver, Event, Hub, Lww, ManualClock, Merge, Now, Replica, SourceId,
    SystemClock, Transport,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Session {
    deadline: Lww<u64>,
}

fn config() -> Config {
    let mut config = Config::distributed();
    // No heartbeats inside a measured round.
    config.heartbeat_interval_ms = 3_600_000;
    config.peer_timeout_ms = 7_200_000;
    config
}

fn pump(c: &mut Criterion) {
    let mut group = c.benchmark_group("propagation_pump");
    for n in [2usize, 8, 32] {
        let hub = Hub::new();
        let clock = ManualClock::new(1_700_000_000_000, 0);
        let mut links: Vec<_> = (0..n).map(|_| hub.connect()).collect();
        let mut replicas: Vec<Replica<Session>> = (0..n)
            .map(|i| Replica::new(config(), SourceId::from_u128(i as u128 + 1)).unwrap())
            .collect();
        let inboxes: Vec<_> = links.iter().map(|l| l.incoming()).collect();
        let mut value = 0u64;
        // Settle the joins before measuring.
        let settle = |replicas: &mut Vec<Replica<Session>>, links: &mut Vec<_>, now: Now| {
            for _ in 0..3 {
                for (i, r) in replicas.iter_mut().enumerate() {
                    r.handle_timeout(now);
                    while let Some(bytes) = r.poll_transmit() {
                        Transport::broadcast(&mut links[i], &bytes).unwrap();
                    }
                    while r.poll_event().is_some() {}
                    while r.poll_persist().is_some() {}
                }
                for (i, r) in replicas.iter_mut().enumerate() {
                    while let Ok(bytes) = inboxes[i].try_recv() {
                        r.handle_message(now, &bytes);
                    }
                }
            }
        };
        settle(&mut replicas, &mut links, clock.now());
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    value += 1;
                    let now = clock.now();
                    let start = Instant::now();
                    replicas[0]
                        .write(now, |s, d, w| d.deadline = s.deadline.write(value, w))
                        .unwrap();
                    while let Some(bytes) = replicas[0].poll_transmit() {
                        Transport::broadcast(&mut links[0], &bytes).unwrap();
                    }
                    for i in 1..n {
                        while replicas[i].state().deadline.get() != Some(&value) {
                            let bytes = inboxes[i].recv().unwrap();
                            replicas[i].handle_message(now, &bytes);
                        }
                    }
                    total += start.elapsed();
                    // Outputs of the round (persisted bytes, events) are dropped untimed.
                    for r in replicas.iter_mut() {
                        while r.poll_transmit().is_some() {}
                        while r.poll_event().is_some() {}
                        while r.poll_persist().is_some() {}
                    }
                }
                total
            })
        });
    }
    group.finish();
}

fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("propagation_threads");
    group.sample_size(20);
    for n in [2usize, 8, 32] {
        let hub = Hub::new();
        let clock = SystemClock::new();
        let mut handles = Vec::new();
        let mut events = Vec::new();
        for i in 0..n {
            let replica: Replica<Session> =
                Replica::new(config(), SourceId::from_u128(i as u128 + 1)).unwrap();
            let mut driver = Driver::new(replica, hub.connect()).clock(clock);
            events.push(driver.subscribe());
            handles.push(driver.spawn().unwrap());
        }
        let mut value = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    value += 1;
                    let v = value;
                    for rx in &events {
                        while rx.try_recv().is_ok() {}
                    }
                    let start = Instant::now();
                    handles[0]
                        .write(move |s, d, w| d.deadline = s.deadline.write(v, w))
                        .unwrap();
                    for rx in &events[1..] {
                        loop {
                            match rx.recv_timeout(Duration::from_secs(10)) {
                                Ok(Event::Changed { .. }) => break,
                                Ok(_) => {}
                                Err(e) => panic!("a replica did not get the write: {e}"),
                            }
                        }
                    }
                    total += start.elapsed();
                }
                total
            })
        });
        for h in handles {
            let _ = h.leave();
        }
    }
    group.finish();
}

criterion_group!(benches, pump, threads);
criterion_main!(benches);
