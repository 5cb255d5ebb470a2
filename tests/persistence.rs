//! Persistence by delta: what a replica hands its store, and what it reads back.

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
                let _ = d
                    .notes
                    .merge(&s.notes.write_insert(k, format!("note {k}"), w));
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
