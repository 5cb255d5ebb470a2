//! Encoding and decoding: a full state of 1,000 map records and a one-record delta, in
//! JSON (serde_json) and in the binary codec (postcard), as replicas send and store
//! them. Also writes the bytes per record to `target/criterion/codec_sizes.json`, for
//! the README's table.
//!
//! Run with `cargo bench --bench codec`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use replisync::{Lww, LwwMap, Merge, SourceId, Stamp};
use serde::{Deserialize, Serialize};

/// A bundle like an application's: a map of records and a register.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Bundle {
    records: LwwMap<String, u64>,
    deadline: Lww<u64>,
}

const RECORDS: usize = 1_000;

fn full_state() -> Bundle {
    let source = SourceId::from_u128(0x8f3a_11d2_4be0_4c7e_9a51_2f6c_0d4e_7b13);
    let records = (0..RECORDS)
        .map(|i| {
            let stamp = Stamp::new(
                1 + (i as u64 % 7),
                1_700_000_000_000 + i as u64 * 13,
                source,
            );
            (
                format!("key-{i:06}"),
                Lww::from_parts(stamp, Some(i as u64 * 7_919)),
            )
        })
        .collect();
    Bundle {
        records,
        deadline: Lww::from_parts(
            Stamp::new(3, 1_700_000_100_000, source),
            Some(1_700_000_160_000),
        ),
    }
}

fn delta() -> Bundle {
    let source = SourceId::from_u128(7);
    Bundle {
        records: [(
            "key-000042".to_string(),
            Lww::from_parts(Stamp::new(9, 1_700_000_200_000, source), Some(1)),
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

fn codecs(c: &mut Criterion) {
    let full = full_state();
    let small = delta();
    let json_full = serde_json::to_vec(&full).unwrap();
    let bin_full = postcard::to_allocvec(&full).unwrap();
    let json_delta = serde_json::to_vec(&small).unwrap();
    let bin_delta = postcard::to_allocvec(&small).unwrap();
    let sizes = format!(
        "{{\"records\":{RECORDS},\"json_full\":{},\"binary_full\":{},\"json_delta\":{},\"binary_delta\":{}}}\n",
        json_full.len(),
        bin_full.len(),
        json_delta.len(),
        bin_delta.len()
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("codec_sizes.json"), &sizes);
    }
    println!("codec sizes: {sizes}");

    let mut group = c.benchmark_group("codec_full_state");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function(BenchmarkId::new("encode", "json"), |b| {
        b.iter(|| serde_json::to_vec(black_box(&full)).unwrap())
    });
    group.bench_function(BenchmarkId::new("encode", "binary"), |b| {
        b.iter(|| postcard::to_allocvec(black_box(&full)).unwrap())
    });
    group.bench_function(BenchmarkId::new("decode", "json"), |b| {
        b.iter(|| serde_json::from_slice::<Bundle>(black_box(&json_full)).unwrap())
    });
    group.bench_function(BenchmarkId::new("decode", "binary"), |b| {
        b.iter(|| postcard::from_bytes::<Bundle>(black_box(&bin_full)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("codec_delta");
    group.bench_function(BenchmarkId::new("encode", "json"), |b| {
        b.iter(|| serde_json::to_vec(black_box(&small)).unwrap())
    });
    group.bench_function(BenchmarkId::new("encode", "binary"), |b| {
        b.iter(|| postcard::to_allocvec(black_box(&small)).unwrap())
    });
    group.bench_function(BenchmarkId::new("decode", "json"), |b| {
        b.iter(|| serde_json::from_slice::<Bundle>(black_box(&json_delta)).unwrap())
    });
    group.bench_function(BenchmarkId::new("decode", "binary"), |b| {
        b.iter(|| postcard::from_bytes::<Bundle>(black_box(&bin_delta)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
