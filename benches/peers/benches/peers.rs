//! replisync's `LwwMap` merge against three other Rust CRDT libraries, on one workload,
//! in one run: crdts 7.3, yrs 0.28 (Yjs) and automerge 0.12.
//!
//! # The workload
//!
//! - N keys (N = 1,000 and 100,000 by default; see `PEER_BENCH_SIZES` below), named
//!   `key-000000`, `key-000001`, ..., each holding a small value (a random `u64` below
//!   2^32).
//! - Two replicas, A and B, each wrote every key once, concurrently (neither saw the
//!   other's writes). For each key one of the two wrote later than the other, chosen at
//!   random per key (SplitMix64, fixed seed: about half the keys each way). A merge must
//!   leave each key holding the later write.
//! - The delta: after seeing all of A's writes, B writes 10 random existing keys.
//!
//! Every library starts from the same keys and values, built through its public write
//! API; `replisync_peer_bench::check` runs each merge once before anything is measured
//! and asserts the map it ends with.
//!
//! # What is timed
//!
//! Group `full_merge` (throughput: N elements, so a per-key time): merge all of B into a
//! copy of A. Copying A (and anything else consumed) happens in the untimed setup of
//! `iter_batched(.., BatchSize::LargeInput)`; dropping the result is untimed too.
//!
//! | benchmark            | timed operation |
//! |----------------------|-----------------|
//! | `replisync`          | `LwwMap::merge(&mut a, &b)` |
//! | `crdts-map`          | `Map::merge(&mut a, b)` on crdts' `Map<String, LWWReg<u64, (u64, Actor)>, Actor>` (takes `b` by value: a copy of B is made in setup, and dropping it is timed) |
//! | `crdts-registers`    | a `BTreeMap<String, LWWReg<..>>`: a lookup and `LWWReg::merge` per key of B |
//! | `yrs-encode-apply`   | B encodes its whole state as an update, A decodes and applies it |
//! | `yrs-apply`          | A decodes and applies B's update (encoded once, outside the timing) |
//! | `automerge-merge`    | `Automerge::merge(&mut a, &mut b)`: finds B's changes A lacks and applies them |
//! | `automerge-apply`    | `Automerge::apply_changes(&mut a, changes)`, with B's changes extracted outside the timing |
//!
//! Group `delta_merge` (throughput: 10 elements, so a time per delta key): merge B's
//! 10-key delta into a copy of A (N keys).
//!
//! | benchmark            | timed operation |
//! |----------------------|-----------------|
//! | `replisync`          | `LwwMap::merge` of an `LwwMap` holding the 10 new registers |
//! | `crdts-map`          | `CmRDT::apply` of the 10 `Map` ops B made |
//! | `crdts-registers`    | a lookup and `LWWReg::merge` for each of the 10 registers |
//! | `yrs-encode-apply`   | B encodes the diff against A's state vector (only the 10 writes), A decodes and applies it |
//! | `yrs-apply`          | A decodes and applies that diff (encoded once, outside the timing) |
//! | `automerge-merge`    | `Automerge::merge`: finds B's one new change (10 puts) and applies it |
//! | `automerge-apply`    | `apply_changes` with that one change |
//!
//! Where the libraries necessarily differ (see each module of `src/lib.rs`):
//!
//! - yrs and automerge have no timestamps. automerge orders concurrent writes by op id
//!   (Lamport counter, then actor), so each replica writes the keys it must lose first:
//!   automerge then picks the same winners. yrs orders them by client id, so B (the
//!   greater id) wins every key there; the work, N concurrent writes, is the same.
//! - Each replica writes all its keys in one transaction in yrs and automerge (for
//!   automerge one change of N ops, not N changes to find and apply).
//! - crdts' `Map` needs `ResetRemove` on its values; `LWWReg` lacks it, so the library
//!   implements it as a no-op (no key is ever removed here).
//! - A yrs `Doc` is a shared handle, so the untimed copy of A is A built again by the
//!   same inserts (a `Doc` loaded from A's update is slower to apply a delta to).
//!
//! # Running
//!
//! From this folder (results under `target/criterion` here):
//!
//! ```text
//! cargo bench --bench peers                                        # N = 1,000 and 100,000
//! PEER_BENCH_SIZES=1000 cargo bench --bench peers -- --warm-up-time 1 --measurement-time 2
//! PEER_BENCH_SIZES=1000,100000,1000000 cargo bench --bench peers  # 1M: replisync and crdts only
//! python3 report.py target/criterion                               # the Markdown tables
//! ```
//!
//! As a member of the root workspace: `cargo bench -p replisync-peer-bench --bench peers`
//! from the root, then `python3 benches/peers/report.py target/criterion`.
//!
//! Maps of 100,000 keys and more take 10 samples (flat sampling) instead of criterion's
//! 100. On a 2-core machine the default run takes about 6 minutes, and 1,000,000 keys
//! add about 1.5 minutes.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion,
    SamplingMode, Throughput,
};
use replisync_peer_bench::{
    automerge_map, crdts_map, crdts_registers, replisync_map, yrs_map, Side, Workload, DELTA_KEYS,
    MAX_N_ALL_LIBRARIES,
};

/// The map sizes to run, from `PEER_BENCH_SIZES` (comma-separated), by default 1,000
/// and 100,000.
fn sizes() -> Vec<usize> {
    let spec = std::env::var("PEER_BENCH_SIZES").unwrap_or_else(|_| "1000,100000".into());
    spec.split(',')
        .map(|s| {
            s.trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("PEER_BENCH_SIZES: {s:?} is not a size"))
        })
        .collect()
}

/// Maps of 100,000 keys and more take 10 samples of equal iteration counts (flat
/// sampling): one iteration there takes up to seconds (automerge), plus the untimed
/// copy of the replica, and criterion's default (100 samples of 1, 2, 3, ... iterations)
/// would take hours.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    if n >= 100_000 {
        group.sample_size(10).sampling_mode(SamplingMode::Flat);
    } else {
        group.sample_size(100).sampling_mode(SamplingMode::Auto);
    }
}

fn full_merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_merge");
    for n in sizes() {
        let w = Workload::new(n);
        replisync_peer_bench::check(&w);
        configure(&mut group, n);
        group.throughput(Throughput::Elements(n as u64));

        let (a, b) = replisync_map::full(&w);
        group.bench_function(BenchmarkId::new("replisync", n), |bench| {
            bench.iter_batched(
                || a.clone(),
                |mut a| {
                    let merged = replisync_map::merge(&mut a, black_box(&b));
                    (a, merged)
                },
                BatchSize::LargeInput,
            )
        });
        drop((a, b));

        let (a, b) = crdts_map::full(&w);
        group.bench_function(BenchmarkId::new("crdts-map", n), |bench| {
            bench.iter_batched(
                || (a.clone(), b.clone()),
                |(mut a, b)| {
                    crdts_map::merge(&mut a, black_box(b));
                    a
                },
                BatchSize::LargeInput,
            )
        });
        drop((a, b));

        let (a, b) = crdts_registers::full(&w);
        group.bench_function(BenchmarkId::new("crdts-registers", n), |bench| {
            bench.iter_batched(
                || a.clone(),
                |mut a| {
                    crdts_registers::merge(&mut a, black_box(&b));
                    a
                },
                BatchSize::LargeInput,
            )
        });
        drop((a, b));

        if n <= MAX_N_ALL_LIBRARIES {
            let (a, b) = yrs_map::full(&w);
            group.bench_function(BenchmarkId::new("yrs-encode-apply", n), |bench| {
                bench.iter_batched(
                    || yrs_map::replica(&w, Side::A),
                    |a| {
                        yrs_map::apply(&a, &yrs_map::encode_full(black_box(&b)));
                        a
                    },
                    BatchSize::LargeInput,
                )
            });
            let update = yrs_map::encode_full(&b);
            group.bench_function(BenchmarkId::new("yrs-apply", n), |bench| {
                bench.iter_batched(
                    || yrs_map::replica(&w, Side::A),
                    |a| {
                        yrs_map::apply(&a, black_box(&update));
                        a
                    },
                    BatchSize::LargeInput,
                )
            });
            drop((a, b, update));

            let (a, mut b) = automerge_map::full(&w);
            group.bench_function(BenchmarkId::new("automerge-merge", n), |bench| {
                bench.iter_batched(
                    || a.clone(),
                    |mut a| {
                        automerge_map::merge(&mut a, black_box(&mut b));
                        a
                    },
                    BatchSize::LargeInput,
                )
            });
            let changes = automerge_map::missing_changes(&a, &b);
            group.bench_function(BenchmarkId::new("automerge-apply", n), |bench| {
                bench.iter_batched(
                    || (a.clone(), changes.clone()),
                    |(mut a, changes)| {
                        automerge_map::apply(&mut a, black_box(changes));
                        a
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

fn delta_merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("delta_merge");
    for n in sizes() {
        let w = Workload::new(n);
        configure(&mut group, n);
        group.throughput(Throughput::Elements(DELTA_KEYS as u64));

        let (a, delta) = replisync_map::delta(&w);
        group.bench_function(BenchmarkId::new("replisync", n), |bench| {
            bench.iter_batched(
                || a.clone(),
                |mut a| {
                    let merged = replisync_map::merge(&mut a, black_box(&delta));
                    (a, merged)
                },
                BatchSize::LargeInput,
            )
        });
        drop((a, delta));

        let (a, ops) = crdts_map::delta(&w);
        group.bench_function(BenchmarkId::new("crdts-map", n), |bench| {
            bench.iter_batched(
                || (a.clone(), ops.clone()),
                |(mut a, ops)| {
                    crdts_map::apply(&mut a, black_box(ops));
                    a
                },
                BatchSize::LargeInput,
            )
        });
        drop((a, ops));

        let (a, delta) = crdts_registers::delta(&w);
        group.bench_function(BenchmarkId::new("crdts-registers", n), |bench| {
            bench.iter_batched(
                || a.clone(),
                |mut a| {
                    crdts_registers::merge(&mut a, black_box(&delta));
                    a
                },
                BatchSize::LargeInput,
            )
        });
        drop((a, delta));

        if n <= MAX_N_ALL_LIBRARIES {
            let (a, b) = yrs_map::delta(&w);
            let seen = yrs_map::state_vector(&a);
            group.bench_function(BenchmarkId::new("yrs-encode-apply", n), |bench| {
                bench.iter_batched(
                    || yrs_map::replica(&w, Side::A),
                    |a| {
                        yrs_map::apply(&a, &yrs_map::encode_diff(black_box(&b), &seen));
                        a
                    },
                    BatchSize::LargeInput,
                )
            });
            let update = yrs_map::encode_diff(&b, &seen);
            group.bench_function(BenchmarkId::new("yrs-apply", n), |bench| {
                bench.iter_batched(
                    || yrs_map::replica(&w, Side::A),
                    |a| {
                        yrs_map::apply(&a, black_box(&update));
                        a
                    },
                    BatchSize::LargeInput,
                )
            });
            drop((a, b, update));

            let (a, mut b) = automerge_map::delta(&w);
            group.bench_function(BenchmarkId::new("automerge-merge", n), |bench| {
                bench.iter_batched(
                    || a.clone(),
                    |mut a| {
                        automerge_map::merge(&mut a, black_box(&mut b));
                        a
                    },
                    BatchSize::LargeInput,
                )
            });
            let changes = automerge_map::missing_changes(&a, &b);
            group.bench_function(BenchmarkId::new("automerge-apply", n), |bench| {
                bench.iter_batched(
                    || (a.clone(), changes.clone()),
                    |(mut a, changes)| {
                        automerge_map::apply(&mut a, black_box(changes));
                        a
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, full_merge, delta_merge);
criterion_main!(benches);
