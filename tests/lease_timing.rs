//! How long followers wait on a lease record, and in which order they claim: bounded
//! by their own configuration whatever a peer's record says, and not held up by peers
//! that cannot claim yet. The simulator's timings: a 300 ms lease renewed every 100 ms,
//! 50 ms allowed delay, a 150 ms join grace.

use replisync::{Codec, Event, Invalid, Lifecycle, Rejection};
use replisync_testkit::bench::Bench;
use replisync_testkit::mirror;
use replisync_testkit::sim::{sim_config, Req, Session};

type Env = mirror::Envelope<Session, Req>;

fn everyone(_: usize, _: usize) -> bool {
    true
}

/// Runs until `from` sends a lease record, delivering everything to everyone; returns
/// that record re-encoded (under a valid integrity check) with `duration_ms`.
fn next_lease_record_lasting(b: &mut Bench, from: usize, duration_ms: u64) -> Vec<u8> {
    let limit = b.t + 2_000;
    while b.t < limit {
        b.tick();
        for i in 0..b.replicas.len() {
            for m in b.outbox(i) {
                for j in (0..b.replicas.len()).filter(|j| *j != i) {
                    b.deliver(j, &m);
                }
                let mut env = mirror::decode::<Env>(Codec::Binary, &m);
                if let (true, mirror::Body::Lease { lease, .. }) = (i == from, &mut env.body) {
                    lease.duration_ms = duration_ms;
                    return mirror::encode(Codec::Binary, &env);
                }
            }
        }
    }
    panic!("no lease record from {from} in 2 s");
}

// Issue 15, defect 2: a lease record with an extreme duration left the group leaderless
// for good once its holder died, with or without an authority.
#[test]
fn a_lease_record_claiming_a_huge_duration_delays_failover_no_longer_than_the_own_config() {
    for authority in [false, true] {
        for duration in [u64::MAX, 365 * 24 * 3_600_000] {
            let config = sim_config(replisync::SyncMode::Leader, Codec::Binary);
            let mut b = Bench::with(config, &[0, 0, 0], authority);
            b.run(400, &everyone);
            assert_eq!(b.leaders(), [0], "authority {authority}");
            // The holder renews; a corrupting peer re-sends that record with a huge
            // duration to the others, and the holder crashes right after.
            let crafted = next_lease_record_lasting(&mut b, 0, duration);
            b.deliver(1, &crafted);
            b.deliver(2, &crafted);
            let crashed_at = b.t;
            b.crash(0);
            // A successor within the own timings: the lease's 300 ms and the allowed
            // delay after the last renewal, a stagger, the claim's round.
            let bound = crashed_at + 300 + 50 + 50 + 100;
            assert!(
                b.run_until(bound, &everyone, |b| !b.leaders().is_empty()),
                "authority {authority}, duration {duration}: no successor by {bound} ms"
            );
        }
    }
}

#[test]
fn a_lease_record_of_zero_duration_is_refused() {
    let mut b = Bench::with(
        sim_config(replisync::SyncMode::Leader, Codec::Binary),
        &[0, 0],
        false,
    );
    b.run(400, &everyone);
    let crafted = next_lease_record_lasting(&mut b, 0, 0);
    b.events[1].clear();
    b.deliver(1, &crafted);
    assert!(b.events[1].iter().any(|e| matches!(
        e,
        Event::MessageRejected {
            reason: Rejection::Invalid {
                what: Invalid::LeaseDuration(0),
                ..
            }
        }
    )));
}

// Issue 15, defect 13: a leader's hand-over waited a stagger for a lower-id peer that had
// just joined, which cannot claim before its join grace is over.
#[test]
fn a_leaving_leader_hands_over_at_once_past_a_lower_id_that_just_joined() {
    for authority in [false, true] {
        let config = sim_config(replisync::SyncMode::Leader, Codec::Binary);
        let mut b = Bench::with(config, &[0, 0, 0], authority);
        b.crash(1);
        b.run(1_000, &everyone);
        assert_eq!(b.leaders(), [0]);
        // Node 1 (a lower id than node 2) joins; 20 ms later the leader leaves.
        b.restart(1);
        b.run(1_020, &everyone);
        b.signal(0, Lifecycle::Leave);
        let left_at = b.t;
        b.pump(&everyone);
        b.down[0] = true;
        assert!(
            b.run_until(left_at + 5, &everyone, |b| b.leaders() == [2]),
            "authority {authority}: node 2 did not take over within one message of the leave \
             (leaders {:?} at {} ms)",
            b.leaders(),
            b.t
        );
    }
}
