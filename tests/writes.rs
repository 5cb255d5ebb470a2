//! What the application hands a replica: writes whose delta must hold exactly what
//! was written, and requests that must fit in one message. A mistake is refused with
//! a typed error, never sent to be rejected by every peer, never lost without a word.

use replisync::{
    Config, DecodeError, Event, Lww, LwwMap, Merge, Now, Replica, SourceId, SyncMode, WriteError,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Doc {
    title: Lww<String>,
    notes: LwwMap<String, String>,
}

const EPOCH: u64 = 1_700_000_000_000;

fn at(t: u64) -> Now {
    Now::new(EPOCH + t, t)
}

fn distributed(n: u128) -> Replica<Doc, String> {
    Replica::new(Config::distributed(), SourceId::from_u128(n)).unwrap()
}

fn sent(r: &mut Replica<Doc, String>) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

// Issue 15, first trap: two writes of one map assigned to the delta in turn compiled and
// silently dropped the first.
#[test]
fn a_write_replaced_by_a_later_one_to_the_same_field_is_refused_not_dropped() {
    let mut r = distributed(1);
    let _ = sent(&mut r);
    let result = r.write(at(1), |s, d, w| {
        d.notes = s.notes.write_insert("a".into(), "one".into(), w);
        d.notes = s.notes.write_insert("b".into(), "two".into(), w);
    });
    assert_eq!(result, Err(WriteError::Dropped { count: 1 }));
    assert!(
        r.state().notes.is_empty(),
        "nothing of a refused write applies"
    );
    r.handle_timeout(at(2));
    assert!(
        sent(&mut r).iter().all(|m| m.len() < 200),
        "no delta went out"
    );

    // Recorded into the delta, both writes land.
    r.write(at(3), |s, d, w| {
        s.notes
            .write_insert_into(&mut d.notes, "a".into(), "one".into(), w);
        s.notes
            .write_insert_into(&mut d.notes, "b".into(), "two".into(), w);
        s.notes.write_remove_into(&mut d.notes, "c", w);
    })
    .unwrap();
    assert_eq!(r.state().notes.get("a").map(String::as_str), Some("one"));
    assert_eq!(r.state().notes.get("b").map(String::as_str), Some("two"));
    assert_eq!(r.state().notes.register_count(), 3, "and the tombstone");

    // A peer receives all three.
    let mut peer = distributed(2);
    for m in sent(&mut r) {
        peer.handle_message(at(4), &m);
    }
    assert_eq!(peer.state(), r.state());
}

// Issue 15, second trap: state copied into the delta was accepted locally, and every
// peer rejected the delta as carrying another replica's writes.
#[test]
fn a_delta_holding_stamps_the_write_did_not_mint_is_refused() {
    let mut a = distributed(1);
    let mut b = distributed(2);
    b.write(at(1), |s, d, w| {
        d.notes = s.notes.write_insert("theirs".into(), "x".into(), w)
    })
    .unwrap();
    for m in sent(&mut b) {
        a.handle_message(at(2), &m);
    }
    assert_eq!(a.state().notes.len(), 1);
    let before = a.state().clone();
    let result = a.write(at(3), |s, d, w| {
        d.notes = s.notes.clone();
        d.title = s.title.write("mine".into(), w);
    });
    assert_eq!(result, Err(WriteError::NotMinted { count: 1 }));
    assert_eq!(a.state(), &before, "nothing of it applies");
    let message = result.unwrap_err().to_string();
    assert!(message.contains("did not mint"), "{message}");
}

fn leader_pair(max_message_bytes: usize) -> ([Replica<Doc, String>; 2], u64) {
    let mut config = Config::leader();
    config.max_message_bytes = max_message_bytes;
    let mut pair = [1, 2].map(|n| Replica::new(config.clone(), SourceId::from_u128(n)).unwrap());
    // Run until one leads and the other knows it.
    for t in 0..20_000 {
        for i in 0..2 {
            if pair[i].poll_timeout().is_some_and(|due| due <= t) {
                pair[i].handle_timeout(at(t));
            }
            for m in sent(&mut pair[i]) {
                pair[1 - i].handle_message(at(t), &m);
            }
        }
        if pair[0].is_leader() && pair[1].leader() == Some(pair[0].source()) {
            return (pair, t + 1);
        }
    }
    panic!("no leader in 20 s");
}

// Issue 15, defect 3: a request too large for one message was sent anyway, rejected by
// the leader, and `request()` had returned Ok.
#[test]
fn a_request_too_large_for_one_message_is_refused_and_one_that_fits_arrives() {
    let ([mut leader, mut follower], t) = leader_pair(1_024);
    let _ = std::iter::from_fn(|| leader.poll_event()).count();
    let big = "x".repeat(2_048);
    match follower.request(at(t), big) {
        Err(WriteError::Encode(DecodeError::TooLarge { len, max })) => {
            assert!(len > 2_048, "{len}");
            assert_eq!(max, 1_024);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let near = "y".repeat(800);
    follower.request(at(t + 1), near.clone()).unwrap();
    let messages = sent(&mut follower);
    assert!(messages.iter().all(|m| m.len() <= 1_024));
    for m in &messages {
        leader.handle_message(at(t + 2), m);
    }
    let requests: Vec<String> = std::iter::from_fn(|| leader.poll_event())
        .filter_map(|e| match e {
            Event::Request { request, .. } => Some(request),
            _ => None,
        })
        .collect();
    assert_eq!(requests, [near]);
    // On the leader and in distributed mode a request goes nowhere: no limit applies.
    leader.request(at(t + 3), "z".repeat(4_096)).unwrap();
    assert_eq!(leader.config().mode, SyncMode::Leader);
}

#[test]
fn a_key_recorded_twice_in_one_write_keeps_the_later_value_everywhere() {
    let mut r = distributed(1);
    r.write(at(1), |s, d, w| {
        s.notes
            .write_insert_into(&mut d.notes, "k".into(), "zz first".into(), w);
        s.notes
            .write_insert_into(&mut d.notes, "k".into(), "aa second".into(), w);
    })
    .unwrap();
    assert_eq!(
        r.state().notes.get("k").map(String::as_str),
        Some("aa second")
    );
    // Assigning two deltas of one key in turn is refused: which would win is not the
    // order of writing but the order of the values under one stamp.
    let result = r.write(at(2), |s, d, w| {
        let _ = d
            .notes
            .merge(&s.notes.write_insert("k".into(), "zz".into(), w));
        let _ = d
            .notes
            .merge(&s.notes.write_insert("k".into(), "aa".into(), w));
    });
    assert_eq!(result, Err(WriteError::Dropped { count: 1 }));
    let mut peer = distributed(2);
    for m in sent(&mut r) {
        peer.handle_message(at(3), &m);
    }
    assert_eq!(
        peer.state().notes.get("k").map(String::as_str),
        Some("aa second")
    );
}
