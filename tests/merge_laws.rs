//! The join laws, for every mergeable type and an application struct: commutative,
//! associative, idempotent; deltas applied one by one equal their join applied once;
//! and a merge reports a change exactly when the state changed.
//!
//! Generators draw versions, times, sources and values from tiny ranges so that ties
//! (and conflicts: equal stamps, different values) come up often.
//!
//! The run prints its seed; replay a failure with `PROPTEST_SEED=<seed> cargo test
//! --test merge_laws`. `PROPTEST_CASES` raises the case count (default 1,000 per law).

mod common;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use replisync::{Lease, Lww, LwwMap, Merge, SourceId, Stamp};
use serde::{Deserialize, Serialize};

fn stamp() -> BoxedStrategy<Stamp> {
    (0u64..4, 0u64..4, 0u128..3)
        .prop_map(|(v, t, s)| Stamp::new(v, t, SourceId::from_u128(s)))
        .boxed()
}

fn lww() -> BoxedStrategy<Lww<u8>> {
    (stamp(), proptest::option::weighted(0.8, 0u8..3))
        .prop_map(|(stamp, value)| {
            if stamp.is_zero() {
                Lww::new()
            } else {
                Lww::from_parts(stamp, value)
            }
        })
        .boxed()
}

fn map() -> BoxedStrategy<LwwMap<u8, u8>> {
    // Up to 64 keys: large enough that a one-key delta takes the sparse merge path and
    // a full state the linear one.
    prop::collection::vec((0u8..80, lww()), 0..64)
        .prop_map(|regs| regs.into_iter().collect())
        .boxed()
}

fn lease() -> BoxedStrategy<Option<Lease>> {
    proptest::option::of(
        (
            0u64..3,
            0u64..3,
            0u128..3,
            any::<bool>(),
            prop::sample::select(vec![1_000u64, 3_000]),
        )
            .prop_map(|(term, renew_seq, holder, released, duration_ms)| Lease {
                term,
                renew_seq,
                holder: SourceId::from_u128(holder),
                released,
                duration_ms,
            }),
    )
    .boxed()
}

/// An application's bundle, merged field by field by `#[derive(Merge)]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Bundle {
    title: Lww<u8>,
    items: LwwMap<u8, u8>,
    lease: Option<Lease>,
}

fn bundle() -> BoxedStrategy<Bundle> {
    (lww(), map(), lease())
        .prop_map(|(title, items, lease)| Bundle {
            title,
            items,
            lease,
        })
        .boxed()
}

fn join<T: Merge + Clone>(a: &T, b: &T) -> T {
    let mut out = a.clone();
    let _ = out.merge(b);
    out
}

fn runner() -> TestRunner {
    common::runner("merge laws")
}

fn check_laws<T, S>(strategy: S)
where
    T: Merge + Clone + PartialEq + std::fmt::Debug,
    S: Strategy<Value = T> + Clone,
{
    let mut run = runner();
    run.run(&(strategy.clone(), strategy.clone()), |(a, b)| {
        prop_assert_eq!(join(&a, &b), join(&b, &a), "commutativity");
        Ok(())
    })
    .unwrap();
    run.run(
        &(strategy.clone(), strategy.clone(), strategy.clone()),
        |(a, b, c)| {
            prop_assert_eq!(
                join(&join(&a, &b), &c),
                join(&a, &join(&b, &c)),
                "associativity"
            );
            Ok(())
        },
    )
    .unwrap();
    run.run(&strategy, |a| {
        prop_assert_eq!(join(&a, &a), a.clone(), "idempotence");
        Ok(())
    })
    .unwrap();
    run.run(&(strategy.clone(), strategy.clone()), |(a, b)| {
        let mut merged = a.clone();
        let report = merged.merge(&b);
        prop_assert_eq!(
            report.changed(),
            merged != a,
            "a merge reports a change iff one happened"
        );
        Ok(())
    })
    .unwrap();
    run.run(
        &(strategy.clone(), prop::collection::vec(strategy, 0..6)),
        |(start, deltas)| {
            let mut one_by_one = start.clone();
            for d in &deltas {
                let _ = one_by_one.merge(d);
            }
            let mut all = match deltas.first() {
                Some(first) => first.clone(),
                None => return Ok(()),
            };
            for d in &deltas[1..] {
                let _ = all.merge(d);
            }
            prop_assert_eq!(
                one_by_one,
                join(&start, &all),
                "deltas one by one = their join"
            );
            Ok(())
        },
    )
    .unwrap();
}

#[test]
fn lww_register_is_a_join() {
    check_laws(lww());
}

#[test]
fn lww_map_is_a_join() {
    check_laws(map());
}

#[test]
fn lease_record_is_a_join() {
    check_laws(lease());
}

#[test]
fn tuple_is_a_join() {
    check_laws((lww(), lease()));
}

#[test]
fn application_bundle_is_a_join() {
    check_laws(bundle());
}

#[test]
fn map_live_count_matches_its_entries() {
    runner()
        .run(&(map(), map()), |(a, b)| {
            let m = join(&a, &b);
            prop_assert_eq!(m.len(), m.iter().count());
            Ok(())
        })
        .unwrap();
}

#[test]
fn bundle_survives_json_and_binary_round_trips() {
    runner()
        .run(&bundle(), |b| {
            let json = serde_json::to_vec(&b).unwrap();
            prop_assert_eq!(&serde_json::from_slice::<Bundle>(&json).unwrap(), &b);
            let bin = postcard::to_allocvec(&b).unwrap();
            prop_assert_eq!(&postcard::from_bytes::<Bundle>(&bin).unwrap(), &b);
            Ok(())
        })
        .unwrap();
}
