//! Bad input from peers and from storage: typed errors, counters and events; never a
//! panic, never a half-applied state, never an overwrite of a store that could not be
//! read.
//!
//! Randomised parts print their seed; replay with `PROPTEST_SEED=<seed>`.

mod common;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use replisync::{
    Codec, Config, DecodeError, Degradation, Event, Lww, LwwMap, Merge, Now, Rejection, Replica,
    SourceId,
};
use replisync_testkit::mirror;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Doc {
    title: Lww<String>,
    tags: LwwMap<String, u32>,
}

const NOW: Now = Now::new(1_700_000_000_000, 0);

fn replica(codec: Codec, id: u128) -> Replica<Doc, String> {
    let mut config = Config::distributed();
    config.wire_codec = codec;
    config.store_codec = codec;
    Replica::new(config, SourceId::from_u128(id)).unwrap()
}

/// A valid message stream from a writer: the raw material for mutations.
fn valid_messages(codec: Codec) -> Vec<Vec<u8>> {
    let mut a = replica(codec, 1);
    a.write(NOW, |d, delta, w| {
        delta.title = d.title.write("hello".into(), w);
        delta.tags = d.tags.write_insert("x".into(), 7, w);
    })
    .unwrap();
    a.request(NOW, "ping".into()).unwrap();
    a.handle_timeout(NOW.after(5_000));
    std::iter::from_fn(|| a.poll_transmit()).collect()
}

fn runner() -> TestRunner {
    common::runner("bad input")
}

#[test]
fn arbitrary_bytes_as_messages_are_rejected_whole() {
    for codec in [Codec::Json, Codec::Binary] {
        runner()
            .run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
                let mut b = replica(codec, 2);
                let before = b.encode_state().unwrap();
                b.handle_message(NOW, &bytes);
                let events: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
                if b.stats().rejected > 0 {
                    prop_assert_eq!(b.encode_state().unwrap(), before, "rejected but changed");
                    let told = events
                        .iter()
                        .any(|e| matches!(e, Event::MessageRejected { .. }));
                    prop_assert!(told, "rejected without an event");
                }
                Ok(())
            })
            .unwrap();
    }
}

/// Values at the edges of a field's range, and near a real value.
fn edge(real: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just((1 << 31) - 1),
        Just(1 << 31),
        Just((1 << 32) - 1),
        Just(1 << 32),
        Just((1 << 63) - 1),
        Just(1 << 63),
        Just(u64::MAX),
        Just(real.wrapping_add(1 << 32)),
        Just(real.wrapping_sub(1 << 32)),
        (0..128u64).prop_map(move |d| real.wrapping_add(d)),
        any::<u64>(),
    ]
}

#[test]
fn extreme_header_values_under_a_valid_check_never_panic_nor_silence_the_sender() {
    type Env = mirror::Envelope<Doc, String>;
    let codec = Codec::Binary;
    let first: Env = mirror::decode(codec, &valid_messages(codec)[0]);
    let strategy = (
        edge(first.seq),
        edge(first.incarnation),
        edge(first.hlc),
        edge(first.term),
        edge(1),
    );
    runner()
        .run(&strategy, |(seq, incarnation, hlc, term, dseq)| {
            let mut a = replica(codec, 1);
            let mut b = replica(codec, 2);
            let write = |a: &mut Replica<Doc, String>, n: u64| {
                a.write(NOW.after(n), |d, delta, w| {
                    delta.title = d.title.write(format!("title {n}"), w)
                })
                .unwrap();
                std::iter::from_fn(|| a.poll_transmit()).collect::<Vec<_>>()
            };
            let real: Vec<Env> = write(&mut a, 0)
                .iter()
                .map(|m| mirror::decode(codec, m))
                .collect();
            for env in real {
                let mut env = Env {
                    seq,
                    incarnation,
                    hlc,
                    term,
                    ..env
                };
                if let mirror::Body::Delta { dseq: d, .. } = &mut env.body {
                    *d = dseq;
                }
                b.handle_message(NOW, &mirror::encode(codec, &env));
            }
            // The sender writes on: within a few messages, it is heard again.
            for n in 1..=8 {
                for m in write(&mut a, n) {
                    b.handle_message(NOW.after(n), &m);
                }
            }
            prop_assert_eq!(b.state().title.get(), a.state().title.get());
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_valid_messages_never_panic_and_apply_whole_or_not_at_all() {
    for codec in [Codec::Json, Codec::Binary] {
        let messages = valid_messages(codec);
        let strategy = (
            0..messages.len(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            any::<prop::sample::Index>(),
        );
        runner()
            .run(&strategy, |(which, flips, cut)| {
                let mut bytes = messages[which].clone();
                for (at, value) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                let mut b = replica(codec, 2);
                b.handle_message(NOW, &bytes);
                // Whatever was accepted must be a state the merge laws allow: merging it
                // again changes nothing.
                let state = b.state().clone();
                b.handle_message(NOW, &bytes);
                prop_assert_eq!(b.state(), &state);
                Ok(())
            })
            .unwrap();
    }
}

#[test]
fn arbitrary_bytes_as_a_store_give_an_error_and_are_never_overwritten() {
    for codec in [Codec::Json, Codec::Binary] {
        runner()
            .run(&prop::collection::vec(any::<u8>(), 0..256), |bytes| {
                let mut r = replica(codec, 3);
                if r.restore(NOW, &bytes).is_ok() {
                    return Ok(());
                }
                r.write(NOW, |d, delta, w| {
                    delta.title = d.title.write("new".into(), w)
                })
                .unwrap();
                r.handle_timeout(NOW.after(1));
                prop_assert_eq!(r.poll_persist(), None, "persisted over an unreadable store");
                Ok(())
            })
            .unwrap();
    }
}

#[test]
fn a_store_from_a_newer_schema_is_reported_and_kept() {
    let newer = br#"{"schema":3,"updated_at":1,"source":"00000000-0000-0000-0000-000000000001","state":{"future":true}}"#;
    let mut r = replica(Codec::Json, 1);
    let err = r.restore(NOW, newer).unwrap_err();
    assert_eq!(
        err,
        DecodeError::SchemaTooNew {
            found: 3,
            supported: 2
        }
    );
    assert!(err.to_string().contains("upgrade"), "{err}");
    let event = r.poll_event().unwrap();
    assert_eq!(
        event,
        Event::Degraded {
            reason: Degradation::StoreUnreadable(err)
        }
    );
    r.write(NOW, |d, delta, w| {
        delta.title = d.title.write("x".into(), w)
    })
    .unwrap();
    assert_eq!(r.poll_persist(), None);
}

#[test]
fn a_message_over_the_size_limit_is_not_decoded() {
    let mut r = replica(Codec::Binary, 1);
    let limit = r.config().max_message_bytes;
    r.handle_message(NOW, &vec![0u8; limit + 1]);
    let rejected = std::iter::from_fn(|| r.poll_event()).find_map(|e| match e {
        Event::MessageRejected {
            reason: Rejection::Undecodable(e),
        } => Some(e),
        _ => None,
    });
    assert_eq!(
        rejected,
        Some(DecodeError::TooLarge {
            len: limit + 1,
            max: limit
        })
    );
}

#[test]
fn a_peer_clock_beyond_the_drift_bound_is_rejected_and_counted() {
    let mut a = replica(Codec::Binary, 1);
    let mut b = replica(Codec::Binary, 2);
    let ahead = Now::new(NOW.wall_ms + 10_000, 0);
    a.write(ahead, |d, delta, w| {
        delta.title = d.title.write("from the future".into(), w)
    })
    .unwrap();
    while let Some(bytes) = a.poll_transmit() {
        b.handle_message(NOW, &bytes);
    }
    assert_eq!(b.state().title.get(), None, "nothing applied");
    assert!(b.stats().rejected > 0);
    assert!(std::iter::from_fn(|| b.poll_event()).any(|e| matches!(
        e,
        Event::MessageRejected {
            reason: Rejection::ClockAhead { ahead_ms, .. }
        } if ahead_ms >= 9_000
    )));
}

#[test]
fn a_delta_from_a_non_leader_in_leader_mode_is_rejected() {
    let leader_config = || {
        let mut c = Config::leader();
        c.wire_codec = Codec::Binary;
        c
    };
    let mut a: Replica<Doc, String> =
        Replica::new(leader_config(), SourceId::from_u128(1)).unwrap();
    let mut c: Replica<Doc, String> =
        Replica::new(leader_config(), SourceId::from_u128(3)).unwrap();
    // A replica misconfigured for distributed mode in a leader-mode group.
    let mut b = replica(Codec::Binary, 2);
    // A claims the lease once its join grace has passed, and everyone hears of it.
    let later = NOW.after(5_000);
    a.handle_timeout(NOW);
    a.handle_timeout(later);
    assert!(a.is_leader());
    while let Some(bytes) = a.poll_transmit() {
        b.handle_message(later, &bytes);
        c.handle_message(later, &bytes);
    }
    b.write(later, |d, delta, w| {
        delta.title = d.title.write("not the leader's".into(), w)
    })
    .unwrap();
    while let Some(bytes) = b.poll_transmit() {
        c.handle_message(later, &bytes);
    }
    assert_eq!(c.state().title.get(), None);
    assert!(std::iter::from_fn(|| c.poll_event()).any(|e| e
        == Event::MessageRejected {
            reason: Rejection::WrongMode {
                from: SourceId::from_u128(2)
            }
        }));
}
