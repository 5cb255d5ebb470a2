//! Leader failover in the simulator, in **simulated milliseconds** (criterion prints
//! them as its "time"): from the leader's crash, or its leave, until another replica
//! leads. Five replicas, 1–5 ms network delay, lease 300 ms (renew deadline 200 ms,
//! renewals every 100 ms, 50 ms allowed delay); with and without a lease authority.
//!
//! Run with `cargo bench --bench failover`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use replisync::sim::Faults;
use replisync::SyncMode;
use replisync_testkit::sim;

#[derive(Clone, Copy)]
enum Exit {
    Crash,
    Leave,
}

/// Simulated ms from the leader's exit until a successor leads.
fn failover_ms(seed: u64, authority: bool, exit: Exit) -> u64 {
    let mut opts = sim::Options::calm(seed, 5, SyncMode::Leader);
    opts.authority = authority;
    opts.faults = Faults {
        delay_ms: (1, 5),
        ..Faults::NONE
    };
    let mut world = sim::World::new(opts);
    // Let a leader settle, and a random while longer so exits fall anywhere in the
    // renew cycle.
    let settle = 1_000 + seed % 100;
    world.run_until(settle, false).expect("calm run");
    let leader = world.current_leader().expect("a leader after a second");
    match exit {
        Exit::Crash => world.crash(leader, None),
        Exit::Leave => world.leave(leader, None).expect("leave"),
    }
    let start = world.time;
    while world.current_leader().is_none() {
        let t = world.time + 1;
        world.run_until(t, false).expect("calm run");
        assert!(world.time < start + 10_000, "no successor in 10 s");
    }
    world.time - start
}

fn failover(c: &mut Criterion) {
    let mut group = c.benchmark_group("failover_simulated_ms");
    for (name, authority, exit) in [
        ("crash_gossip", false, Exit::Crash),
        ("crash_authority", true, Exit::Crash),
        ("leave_gossip", false, Exit::Leave),
        ("leave_authority", true, Exit::Leave),
    ] {
        let mut seed = 0;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = 0;
                for _ in 0..iters {
                    seed += 1;
                    total += failover_ms(seed, authority, exit);
                }
                // Simulated milliseconds, reported through criterion's time axis.
                Duration::from_millis(total)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, failover);
criterion_main!(benches);
