//! Merge speed: one register, full-state map merges, and a small delta into a large map.
//!
//! Run with `cargo bench --bench merge`. Map workloads: string keys (`key-000123`),
//! u64 values, both replicas holding every key, and for each key a coin flip (fixed
//! seed) deciding which side wrote later, so stamps come in random order. The merge of
//! B into a clone of A is timed; the clone is not.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use replisync::{Lww, LwwMap, Merge, SourceId, Stamp};

/// SplitMix64: a fixed-seed generator so every run measures the same maps.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

const A: SourceId = SourceId::from_u128(0xa);
const B: SourceId = SourceId::from_u128(0xb);

fn key(i: usize) -> String {
    format!("key-{i:06}")
}

/// Two replicas of `n` keys; per key, one of them wrote later.
fn replica_pair(n: usize, seed: u64) -> (LwwMap<String, u64>, LwwMap<String, u64>) {
    let mut rng = SplitMix(seed);
    let mut a = Vec::with_capacity(n);
    let mut b = Vec::with_capacity(n);
    for i in 0..n {
        let r = rng.next();
        let (va, vb) = if r & 1 == 0 { (1, 2) } else { (2, 1) };
        let t = 1_700_000_000_000 + (r >> 40);
        a.push((key(i), Lww::from_parts(Stamp::new(va, t, A), Some(r))));
        b.push((key(i), Lww::from_parts(Stamp::new(vb, t, B), Some(r >> 1))));
    }
    (a.into_iter().collect(), b.into_iter().collect())
}

fn register(c: &mut Criterion) {
    // 1,024 registers merged per iteration, so the timer's own cost does not swamp a
    // merge of a few nanoseconds; the figure reported is per register.
    const N: usize = 1_024;
    let mut rng = SplitMix(7);
    let older: Vec<Lww<u64>> = (0..N)
        .map(|i| {
            Lww::from_parts(
                Stamp::new(1, 1_000 + (rng.next() & 0xff), A),
                Some(i as u64),
            )
        })
        .collect();
    let newer: Vec<Lww<u64>> = (0..N)
        .map(|i| {
            Lww::from_parts(
                Stamp::new(2, 1_000 + (rng.next() & 0xff), B),
                Some(i as u64),
            )
        })
        .collect();
    let mut group = c.benchmark_group("register_merge");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("newer_wins", |bench| {
        bench.iter_batched_ref(
            || older.clone(),
            |regs| {
                let mut changed = 0u32;
                for (mine, theirs) in regs.iter_mut().zip(&newer) {
                    changed += u32::from(mine.merge(theirs).changed());
                }
                black_box(changed)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("older_ignored", |bench| {
        let mut regs = newer.clone();
        bench.iter(|| {
            let mut changed = 0u32;
            for (mine, theirs) in black_box(&mut regs).iter_mut().zip(&older) {
                changed += u32::from(mine.merge(theirs).changed());
            }
            black_box(changed)
        })
    });
    group.finish();
}

fn map_full(c: &mut Criterion) {
    let mut group = c.benchmark_group("map_full_merge");
    for n in [1_000usize, 100_000, 1_000_000] {
        let (a, b) = replica_pair(n, 42);
        group.throughput(Throughput::Elements(n as u64));
        if n >= 100_000 {
            group.sample_size(10);
        }
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter_batched_ref(
                || a.clone(),
                |mine| black_box(mine.merge(black_box(&b))),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn map_delta(c: &mut Criterion) {
    let mut group = c.benchmark_group("map_delta_merge");
    group.throughput(Throughput::Elements(10));
    for n in [1_000usize, 100_000, 1_000_000] {
        let (mut map, _) = replica_pair(n, 42);
        // Each iteration merges a fresh ten-key delta, spread across the map and
        // written later than the one before, into the same long-lived map.
        let mut version = 2;
        group.bench_function(BenchmarkId::new("10_keys_into", n), |bench| {
            bench.iter_batched(
                || {
                    version += 1;
                    (0..10)
                        .map(|i| {
                            let stamp = Stamp::new(version, 1_800_000_000_000, B);
                            (key(i * n / 10 + 7), Lww::from_parts(stamp, Some(i as u64)))
                        })
                        .collect::<LwwMap<String, u64>>()
                },
                |delta| black_box(map.merge(black_box(&delta))),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, register, map_full, map_delta);
criterion_main!(benches);
