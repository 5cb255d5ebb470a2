//! The swarm simulator over many seeds (see `tests/sim/mod.rs` for the world).
//!
//! - `SIM_SEEDS` sets how many seeds to run (default 5,000), `SIM_SEED_START` the
//!   first (default 0), `SIM_THREADS` the worker threads (default: the machine's cores).
//! - A failure prints its seed and the command that replays it:
//!   `SIM_SEED=<seed> cargo test --release --test simulator replay -- --nocapture`.

mod sim;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn many_seeds_converge_and_keep_every_invariant() {
    let count = env_u64("SIM_SEEDS", 5_000);
    let first = env_u64("SIM_SEED_START", 0);
    let threads = env_u64(
        "SIM_THREADS",
        std::thread::available_parallelism().map_or(2, |n| n.get() as u64),
    );
    println!(
        "simulator: seeds {first}..{} on {threads} threads",
        first + count
    );
    let next = AtomicU64::new(first);
    let failures = Mutex::new(Vec::new());
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= first + count {
                    break;
                }
                let outcome = std::panic::catch_unwind(|| sim::run_seed(seed))
                    .unwrap_or_else(|_| Err("panicked".into()));
                match outcome {
                    Ok(trace) => {
                        // The same seed must give the same run.
                        if seed % 50 == 0 {
                            let again = sim::run_seed(seed);
                            if again != Ok(trace) {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push((seed, "not deterministic: a rerun differed".into()));
                            }
                        }
                    }
                    Err(e) => failures.lock().unwrap().push((seed, e)),
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "simulator: {count} seeds in {elapsed:.1} s ({:.0} seeds/s)",
        count as f64 / elapsed.max(1e-9)
    );
    let failures = failures.into_inner().unwrap();
    for (seed, e) in failures.iter().take(5) {
        println!("seed {seed} failed: {e}");
        println!(
            "  replay: SIM_SEED={seed} cargo test --release --test simulator replay -- --nocapture"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed (first: {})",
        failures.len(),
        failures[0].0
    );
}

/// Replays one seed with a summary: `SIM_SEED=<seed>`. Without it, replays seed 0.
#[test]
fn replay() {
    let seed = env_u64("SIM_SEED", 0);
    let opts = sim::Options::from_seed(seed);
    println!("seed {seed}: {opts:?}");
    match sim::run_seed(seed) {
        Ok(trace) => println!("seed {seed}: ok, trace {trace:016x}"),
        Err(e) => panic!("seed {seed} failed: {e}"),
    }
}
