//! Persistence by delta: what a replica hands its store, and what it reads back.
//!
//! Damage to a store log is either a last record cut short (dropped and reported) or
//! damage (the store is left unread and never written over): never a silent loss.
//! Randomised parts print their seed; replay with `PROPTEST_SEED=<seed>`.

mod common;

use proptest::prelude::*;
use replisync::{
    Codec, Config, Degradation, Event, LwwMap, Merge, Now, Persist, Replica, SourceId,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Notes {
    notes: LwwMap<u32, String>,
}

const NOW: Now = Now::new(1_700_000_000_000, 0);

fn replica(codec: Codec) -> Replica<Notes> {
    let mut config = Config::distributed();
    config.store_codec = codec;
    Replica::new(config, SourceId::from_u128(1)).unwrap()
}

fn write(r: &mut Replica<Notes>, key: u32, at: u64) {
    r.write(NOW.after(at), |s, d, w| {
        d.notes = s.notes.write_insert(key, format!("note {key}"), w)
    })
    .unwrap();
}

/// Runs `r`'s outputs into `log`; returns what was asked.
fn persist(r: &mut Replica<Notes>, log: &mut Vec<u8>) -> Option<Persist> {
    while r.poll_transmit().is_some() {}
    let p = r.poll_persist();
    if let Some(p) = &p {
        p.apply_to(log);
    }
    p
}

#[test]
fn a_small_write_into_a_large_state_appends_a_few_bytes() {
    for codec in [Codec::Json, Codec::Binary] {
        let mut r = replica(codec);
        let mut log = Vec::new();
        r.write(NOW, |s, d, w| {
            for k in 0..10_000 {
                s.notes
                    .write_insert_into(&mut d.notes, k, format!("note {k}"), w);
            }
        })
        .unwrap();
        let base = persist(&mut r, &mut log).unwrap();
        assert!(
            matches!(base, Persist::Compact(_)),
            "the first persist is a base"
        );
        assert!(log.len() > 100_000, "{codec}: {} bytes", log.len());

        write(&mut r, 5, 1);
        let delta = persist(&mut r, &mut log).unwrap();
        assert!(
            matches!(&delta, Persist::Append(b) if b.len() < 300),
            "{codec}: {} bytes for a one-key write",
            delta.bytes().len()
        );
    }
}

#[test]
fn restore_is_the_base_and_every_delta_in_order_and_compaction_keeps_the_log_small() {
    for codec in [Codec::Json, Codec::Binary] {
        let mut r = replica(codec);
        let mut log = Vec::new();
        let (mut compactions, mut base, mut largest_delta) = (0, 0, 0);
        for k in 0..200 {
            write(&mut r, k % 20, u64::from(k));
            match persist(&mut r, &mut log) {
                Some(Persist::Compact(b)) => {
                    compactions += 1;
                    base = b.len();
                }
                Some(Persist::Append(b)) => largest_delta = largest_delta.max(b.len()),
                None => {}
            }
            // The log always reads back as the state.
            let mut again = replica(codec);
            again.restore(NOW, &log).unwrap();
            assert_eq!(again.state(), r.state(), "{codec}: after write {k}");
            // The base, at most as much again in deltas, and one delta over.
            assert!(
                log.len() <= 2 * base + largest_delta,
                "{codec}: log {} over base {base}",
                log.len()
            );
        }
        assert!(compactions > 1, "{codec}: {compactions} compactions");
    }
}

#[test]
fn a_last_delta_cut_short_is_dropped_reported_and_compacted_away() {
    for codec in [Codec::Json, Codec::Binary] {
        let mut r = replica(codec);
        let mut log = Vec::new();
        write(&mut r, 1, 0);
        let _ = persist(&mut r, &mut log);
        let whole = log.len();
        write(&mut r, 2, 1);
        let _ = persist(&mut r, &mut log);
        for cut in whole + 1..log.len() {
            let mut again = replica(codec);
            again.restore(NOW, &log[..cut]).unwrap();
            assert_eq!(again.state().notes.len(), 1, "{codec}: cut at {cut}");
            let events: Vec<_> = std::iter::from_fn(|| again.poll_event()).collect();
            assert!(
                events.contains(&Event::Degraded {
                    reason: Degradation::StoreRecordDropped
                }),
                "{codec}: {events:?}"
            );
            // The next persist rewrites the log without the torn record.
            again.handle_timeout(NOW.after(10));
            let mut rewritten = log[..cut].to_vec();
            assert!(matches!(
                persist(&mut again, &mut rewritten),
                Some(Persist::Compact(_))
            ));
            let mut third = replica(codec);
            third.restore(NOW, &rewritten).unwrap();
            assert!(std::iter::from_fn(|| third.poll_event())
                .all(|e| !matches!(e, Event::Degraded { .. })));
        }
    }
}

#[test]
fn a_damaged_record_before_the_last_keeps_the_store_unread_and_untouched() {
    for codec in [Codec::Json, Codec::Binary] {
        let mut r = replica(codec);
        let mut log = Vec::new();
        let mut ends = Vec::new();
        for k in 0..3 {
            write(&mut r, k, u64::from(k));
            let _ = persist(&mut r, &mut log);
            ends.push(log.len());
        }
        // Damage the first delta, in the middle of its bytes.
        let mut damaged = log.clone();
        damaged[(ends[0] + ends[1]) / 2] ^= 0x01;
        let mut again = replica(codec);
        assert!(again.restore(NOW, &damaged).is_err(), "{codec}");
        write(&mut again, 7, 100);
        again.handle_timeout(NOW.after(200));
        assert_eq!(again.poll_persist(), None, "{codec}: never written over");
    }
}

/// A log written record by record: its bytes, where each record ends, and the state
/// after each record.
struct Written {
    log: Vec<u8>,
    ends: Vec<usize>,
    states: Vec<Notes>,
}

/// A log of a base holding `base` (a compaction) and one delta record per entry of
/// `deltas`.
fn written(codec: Codec, base: &[(u32, String)], deltas: &[Vec<(u32, String)>]) -> Written {
    let mut r = replica(codec);
    let mut w = Written {
        log: Vec::new(),
        ends: Vec::new(),
        states: Vec::new(),
    };
    for (at, keys) in std::iter::once(base)
        .chain(deltas.iter().map(Vec::as_slice))
        .enumerate()
    {
        r.write(NOW.after(at as u64), |s, d, w| {
            for (k, v) in keys {
                s.notes.write_insert_into(&mut d.notes, *k, v.clone(), w);
            }
        })
        .unwrap();
        match persist(&mut r, &mut w.log) {
            Some(Persist::Compact(_)) => {
                w.ends.clear();
                w.states.clear();
            }
            Some(Persist::Append(_)) => {}
            None => continue,
        }
        w.ends.push(w.log.len());
        w.states.push(r.state().clone());
    }
    w
}

fn notes(keys: std::ops::Range<u32>) -> Vec<(u32, String)> {
    keys.map(|k| (k, format!("note {k}"))).collect()
}

/// A base of ten notes and three deltas of one note each.
fn four_records(codec: Codec) -> Written {
    let w = written(
        codec,
        &notes(0..10),
        &[notes(100..101), notes(101..102), notes(102..103)],
    );
    assert_eq!(w.ends.len(), 4, "{codec}: a base and three deltas");
    w
}

/// What restoring (possibly damaged) log bytes gave.
#[derive(Debug, PartialEq)]
enum Read {
    /// `restore` failed: the store is left unread, and never written over.
    Unreadable,
    /// `restore` gave the state of the first `n` records, and whether it reported a
    /// dropped record.
    Records { n: usize, dropped: bool },
    /// `restore` gave a state that is not that of any prefix of the records.
    Other,
}

fn read(codec: Codec, bytes: &[u8], states: &[Notes]) -> Read {
    let mut r = replica(codec);
    let result = r.restore(NOW, bytes);
    let events: Vec<_> = std::iter::from_fn(|| r.poll_event()).collect();
    if result.is_err() {
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Degraded {
                    reason: Degradation::StoreUnreadable(_)
                }
            )),
            "{codec}: {events:?}"
        );
        write(&mut r, 7_777, 100);
        r.handle_timeout(NOW.after(200));
        assert_eq!(
            r.poll_persist(),
            None,
            "{codec}: persisted over an unread store"
        );
        return Read::Unreadable;
    }
    let dropped = events.contains(&Event::Degraded {
        reason: Degradation::StoreRecordDropped,
    });
    if r.state() == &Notes::default() {
        return Read::Records { n: 0, dropped };
    }
    match states.iter().position(|s| s == r.state()) {
        Some(i) => Read::Records { n: i + 1, dropped },
        None => Read::Other,
    }
}

/// The index of the record holding byte `at`.
fn record_at(ends: &[usize], at: usize) -> usize {
    ends.iter().position(|e| at < *e).unwrap_or(ends.len())
}

#[test]
fn every_single_bit_flip_in_a_log_is_damage_never_a_silent_loss() {
    let mut failures = Vec::new();
    for codec in [Codec::Binary, Codec::Json] {
        let w = four_records(codec);
        let mut lost = Vec::new();
        let (mut unreadable, mut harmless) = (0, 0);
        let flips = w.log.len() * 8;
        for bit in 0..flips {
            let mut damaged = w.log.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            match read(codec, &damaged, &w.states) {
                Read::Unreadable => unreadable += 1,
                Read::Records { n: 4, .. } => harmless += 1,
                other => lost.push((bit, record_at(&w.ends, bit / 8), other)),
            }
        }
        let by_record: Vec<usize> = (0..4)
            .map(|i| lost.iter().filter(|l| l.1 == i).count())
            .collect();
        println!(
            "{codec}: {flips} flips: {unreadable} unreadable, {harmless} harmless, {} lost data (by record: {by_record:?})",
            lost.len()
        );
        if !lost.is_empty() {
            failures.push(format!(
                "{codec}: {} of {flips} flips accepted with data missing (bit, record, read): {:?}",
                lost.len(),
                &lost[..lost.len().min(12)]
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// What restoring the log cut at `cut` must give: the records wholly before the cut,
/// and a dropped record reported when the cut is inside one. A cut inside the base
/// leaves the store unreadable (the base is never dropped), except for the JSON base
/// that lost only its last newline: that is exactly a store written before logs.
fn expected_cut(codec: Codec, ends: &[usize], cut: usize) -> Read {
    let n = ends.iter().filter(|e| **e <= cut).count();
    if n == 0 {
        return if codec == Codec::Json && cut + 1 == ends[0] {
            Read::Records {
                n: 1,
                dropped: false,
            }
        } else {
            Read::Unreadable
        };
    }
    Read::Records {
        n,
        dropped: !ends.contains(&cut),
    }
}

#[test]
fn every_truncation_of_a_log_keeps_exactly_the_records_before_the_cut() {
    let mut failures = Vec::new();
    for codec in [Codec::Binary, Codec::Json] {
        let w = four_records(codec);
        let mut wrong = Vec::new();
        for cut in 1..=w.log.len() {
            let expected = expected_cut(codec, &w.ends, cut);
            let got = read(codec, &w.log[..cut], &w.states);
            if got != expected {
                wrong.push((cut, expected, got));
            }
        }
        println!(
            "{codec}: {} of {} cuts read wrong",
            wrong.len(),
            w.log.len()
        );
        if !wrong.is_empty() {
            failures.push(format!(
                "{codec}: {} of {} cuts read wrong (cut, expected, got): {:?}",
                wrong.len(),
                w.log.len(),
                &wrong[..wrong.len().min(12)]
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[derive(Clone, Debug)]
enum Damage {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
}

impl Damage {
    fn apply(&self, log: &mut Vec<u8>) {
        if log.is_empty() {
            return;
        }
        match self {
            Damage::Flip(at, bit) => {
                let at = at.index(log.len());
                log[at] ^= 1 << (bit % 8);
            }
            Damage::Insert(at, bytes) => {
                let at = at.index(log.len() + 1);
                log.splice(at..at, bytes.iter().copied());
            }
            Damage::Delete(at, len) => {
                let at = at.index(log.len());
                let end = (at + len).min(log.len());
                log.drain(at..end);
            }
        }
    }
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Flip(i, b)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..6)
        )
            .prop_map(|(i, b)| Damage::Insert(i, b)),
        (any::<prop::sample::Index>(), 1usize..8).prop_map(|(i, n)| Damage::Delete(i, n)),
    ]
}

fn some_notes(keys: std::ops::Range<u32>) -> impl Strategy<Value = Vec<(u32, String)>> {
    prop::collection::vec((keys, "[a-z\\\\\"\n]{0,24}"), 1..4)
}

/// Random logs, cut at a random point (or not), then damaged at random (or not): a
/// restore either fails, or gives every record wholly in the cut log, or drops only
/// the last of them when the damage is confined to it (and to a torn record after it,
/// if the cut left one) and is not only flipped bits: bytes inserted or deleted there
/// can make it look like a record cut short, and it is reported as dropped. A cut
/// without other damage reads exactly as [`expected_cut`] says.
#[test]
fn random_damage_to_a_log_never_loses_a_record_silently() {
    let logs = (
        prop::bool::ANY,
        some_notes(0..50),
        prop::collection::vec(some_notes(50..100), 0..5),
        prop::option::of(any::<prop::sample::Index>()),
        prop::collection::vec(damage(), 0..4),
    );
    common::runner("store damage")
        .run(&logs, |(json, base, deltas, cut, damages)| {
            let codec = if json { Codec::Json } else { Codec::Binary };
            let w = written(codec, &base, &deltas);
            let cut = cut.map_or(w.log.len(), |c| 1 + c.index(w.log.len()));
            let mut damaged = w.log[..cut].to_vec();
            for d in &damages {
                d.apply(&mut damaged);
            }
            let got = read(codec, &damaged, &w.states);
            if damaged == w.log[..cut] {
                prop_assert_eq!(got, expected_cut(codec, &w.ends, cut));
                return Ok(());
            }
            // The records wholly in the cut log, and the first byte damage changed.
            let whole = w.ends.iter().filter(|e| **e <= cut).count();
            let first = w.log[..cut]
                .iter()
                .zip(&damaged)
                .position(|(a, b)| a != b)
                .unwrap_or(damaged.len().min(cut));
            let flips_only = damages.iter().all(|d| matches!(d, Damage::Flip(..)));
            match got {
                Read::Unreadable => {}
                Read::Records { n, .. } if n == whole => {}
                // Only damage confined to the last whole record (and any torn bytes
                // after it) may look like its tail was cut short, and a flip never does.
                Read::Records { n, dropped: true }
                    if n + 1 == whole
                        && n > 0
                        && first >= w.ends[n - 1]
                        && !flips_only => {}
                other => prop_assert!(
                    false,
                    "{codec}: {other:?} from a cut at {cut} and {damages:?} (first change at {first}, records end at {:?})",
                    w.ends
                ),
            }
            Ok(())
        })
        .unwrap();
}

/// A log of a base and two deltas (notes 0, 1, 2) in the binary record format of
/// a5207fa (a 4-byte length, then the postcard bytes and their CRC-32), written by that
/// commit's code.
const OLD_BINARY_LOG: &str = concat!(
    "3f0000000280d095ffbc31100000000000000000000000000000000100010001",
    "80d095ffbc31100000000000000000000000000000000101066e6f74652030fb",
    "fb8eae3f0000000281d095ffbc31100000000000000000000000000000000100",
    "01010181d095ffbc31100000000000000000000000000000000101066e6f7465",
    "2031dcbc5bab3f0000000282d095ffbc31100000000000000000000000000000",
    "00010001020182d095ffbc31100000000000000000000000000000000101066e",
    "6f74652032b57524a5",
);

/// The same log in the JSON store codec of a5207fa (unchanged since).
const OLD_JSON_LOG: &str = concat!(
    r#"{"schema":2,"updated_at":1700000000000,"source":"00000000-0000-0000-0000-000000000001","state":{"lease":null,"app":{"notes":{"0":{"stamp":{"version":1,"updated_at":1700000000000,"source":"00000000-0000-0000-0000-000000000001"},"value":"note 0"}}}}}"#,
    "\n",
    r#"a71edcb7"#,
    "\n",
    r#"{"schema":2,"updated_at":1700000000001,"source":"00000000-0000-0000-0000-000000000001","state":{"lease":null,"app":{"notes":{"1":{"stamp":{"version":1,"updated_at":1700000000001,"source":"00000000-0000-0000-0000-000000000001"},"value":"note 1"}}}}}"#,
    "\n",
    r#"d9ddb46e"#,
    "\n",
    r#"{"schema":2,"updated_at":1700000000002,"source":"00000000-0000-0000-0000-000000000001","state":{"lease":null,"app":{"notes":{"2":{"stamp":{"version":1,"updated_at":1700000000002,"source":"00000000-0000-0000-0000-000000000001"},"value":"note 2"}}}}}"#,
    "\n",
    r#"5a980d05"#,
    "\n",
);

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn old_logs() -> [(Codec, Vec<u8>); 2] {
    [
        (Codec::Binary, unhex(OLD_BINARY_LOG)),
        (Codec::Json, OLD_JSON_LOG.as_bytes().to_vec()),
    ]
}

#[test]
fn a_log_of_the_previous_record_format_loads_and_the_next_compaction_rewrites_it() {
    for (codec, old) in old_logs() {
        let mut r = replica(codec);
        r.restore(NOW, &old).unwrap();
        assert!(
            std::iter::from_fn(|| r.poll_event()).all(|e| !matches!(e, Event::Degraded { .. })),
            "{codec}"
        );
        assert_eq!(r.state().notes.len(), 3, "{codec}");
        assert_eq!(
            r.state().notes.get(&2).map(String::as_str),
            Some("note 2"),
            "{codec}"
        );
        // The next persist writes the current format.
        let mut log = old.clone();
        write(&mut r, 3, 10);
        let next = persist(&mut r, &mut log).unwrap();
        if codec == Codec::Binary {
            assert!(matches!(next, Persist::Compact(_)), "{codec}: migrated");
            assert_eq!(&log[..7], b"\x08\x00\x00\x00rs\x02", "{codec}");
        }
        let mut again = replica(codec);
        again.restore(NOW, &log).unwrap();
        assert_eq!(again.state(), r.state(), "{codec}");
        assert_eq!(again.state().notes.len(), 4, "{codec}");
    }
}

#[test]
fn damage_to_a_log_of_the_previous_record_format_is_never_a_silent_loss() {
    for (codec, old) in old_logs() {
        // Every record ends with a newline in JSON (two lines a record); each binary
        // record here is 67 bytes.
        let ends: Vec<usize> = match codec {
            Codec::Json => (0..old.len())
                .filter(|i| old[*i] == b'\n')
                .skip(1)
                .step_by(2)
                .map(|i| i + 1)
                .collect(),
            _ => vec![67, 134, 201],
        };
        assert_eq!(ends.len(), 3, "{codec}: {ends:?}");
        assert_eq!(ends[2], old.len(), "{codec}");
        let states: Vec<Notes> = ends
            .iter()
            .map(|end| {
                let mut r = replica(codec);
                r.restore(NOW, &old[..*end]).unwrap();
                r.state().clone()
            })
            .collect();
        let mut lost = Vec::new();
        for bit in 0..old.len() * 8 {
            let mut damaged = old.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            match read(codec, &damaged, &states) {
                Read::Unreadable | Read::Records { n: 3, .. } => {}
                other => lost.push((bit, record_at(&ends, bit / 8), other)),
            }
        }
        assert!(
            lost.is_empty(),
            "{codec}: {} of {} flips lost data: {:?}",
            lost.len(),
            old.len() * 8,
            &lost[..lost.len().min(12)]
        );
    }
}
