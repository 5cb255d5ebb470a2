//! Scripted scenarios: one test per row of DESIGN.md §3's table, in each mode the row
//! applies to, run in the deterministic simulated world (the testkit's `sim`) with no network
//! faults, so that each asserts the exact behaviour an application relies on.
//!
//! Time is simulated only: "at once" means "at the same simulated millisecond", which a
//! calm network (no delay) makes exact. Each scenario runs on a few seeds (they draw the
//! replicas' clock offsets and drifts); a failure names its seed.

use replisync::{
    Codec, Event, LeadershipLoss, LeaseConfig, Lifecycle, Replica, SourceId, SyncMode, WriteError,
};
use replisync_testkit::bench::Bench;
use replisync_testkit::sim::{sim_config, Logged, Options, Req, Session, World};

/// The seeds each scenario runs on.
const SEEDS: [u64; 4] = [1, 2, 3, 4];

// --- helpers ---

fn lease_config() -> LeaseConfig {
    sim_config(SyncMode::Leader, Codec::Binary).lease
}

/// A calm world of `nodes` replicas that has run for 1 s: everyone knows everyone and,
/// in leader mode, one replica leads.
fn settled(seed: u64, nodes: usize, mode: SyncMode) -> World {
    let mut w = World::new(Options::calm(seed, nodes, mode));
    w.run_until(1_000, false).unwrap();
    assert!(w.converged(), "seed {seed}: not settled after 1 s");
    w
}

/// Like [`settled`], but every wall clock reads true time and never drifts, so that
/// replicas acting at one world time act at one wall time.
fn settled_steady(seed: u64, nodes: usize, mode: SyncMode) -> World {
    let mut w = World::new(Options::calm(seed, nodes, mode));
    for n in &mut w.nodes {
        n.wall_offset = 0;
        n.drift_ppm = 0;
    }
    w.run_until(1_000, false).unwrap();
    assert!(w.converged(), "seed {seed}: not settled after 1 s");
    w
}

fn rep(w: &World, i: usize) -> &Replica<Session, Req> {
    w.nodes[i].replica.as_ref().expect("node is up")
}

fn rep_mut(w: &mut World, i: usize) -> &mut Replica<Session, Req> {
    w.nodes[i].replica.as_mut().expect("node is up")
}

fn id(w: &World, i: usize) -> SourceId {
    w.nodes[i].id
}

fn leader(w: &World) -> usize {
    w.current_leader().expect("a leader")
}

fn others(w: &World, but: usize) -> Vec<usize> {
    (0..w.nodes.len()).filter(|i| *i != but).collect()
}

fn term_of(w: &World, i: usize) -> u64 {
    rep(w, i).lease().expect("a lease record").term
}

/// Runs the world at its current time only: delivers what is in flight now.
fn deliver_now(w: &mut World, log: &mut Vec<Logged>) {
    let t = w.time;
    w.run_logged(t, log).unwrap();
}

fn logged_at(log: &[Logged], node: usize) -> impl Iterator<Item = &Logged> {
    log.iter().filter(move |l| l.node == node)
}

/// Whether the given live nodes hold byte-identical states.
fn same_state(w: &World, nodes: &[usize]) -> bool {
    let first = rep(w, nodes[0]).encode_state().unwrap();
    nodes
        .iter()
        .all(|i| rep(w, *i).encode_state().unwrap() == first)
}

fn all(w: &World) -> Vec<usize> {
    (0..w.nodes.len()).filter(|i| w.nodes[*i].live()).collect()
}

// --- join ---

/// A replica joining a group that has a leader starts empty, asks for a sync, and gets
/// the leader's whole state (bundle and lease) in one answer; it never takes the lease
/// while the leader lives.
#[test]
fn join_in_leader_mode_syncs_the_full_state_and_leaves_the_lease_to_the_live_leader() {
    for seed in SEEDS {
        let mut w = World::new(Options::calm(seed, 4, SyncMode::Leader));
        w.crash(3, None); // node 3 has not run yet: it joins later, with no store
        w.run_until(1_000, false).unwrap();
        let l = leader(&w);
        w.user(l, Req::Config(7)).unwrap();
        w.user(l, Req::Note(1, 11)).unwrap();
        w.run_until(1_100, false).unwrap();
        let term = term_of(&w, l);
        let answered = rep(&w, l).stats().syncs_sent;

        w.start(3);
        assert_eq!(rep(&w, 3).state(), &Session::default(), "seed {seed}");
        assert_eq!(rep(&w, 3).lease(), None, "seed {seed}: restored nothing");

        let mut log = Vec::new();
        deliver_now(&mut w, &mut log);
        assert_eq!(
            rep(&w, l).stats().syncs_sent,
            answered + 1,
            "seed {seed}: the leader answers the joiner's sync request once"
        );
        assert!(same_state(&w, &[3, l]), "seed {seed}: full state at once");
        assert_eq!(rep(&w, 3).state().config.get(), Some(&7), "seed {seed}");
        assert_eq!(rep(&w, 3).leader(), Some(id(&w, l)), "seed {seed}");
        assert!(!rep(&w, 3).is_leader(), "seed {seed}");
        assert!(
            logged_at(&log, 3).any(|e| e.event
                == Event::LeaderChanged {
                    leader: Some(id(&w, l)),
                    term
                }),
            "seed {seed}: the joiner is told who leads"
        );

        // Five lease durations later: the same leader, the same term, no claim.
        let until = w.time + 5 * lease_config().duration_ms;
        w.run_logged(until, &mut log).unwrap();
        assert!(
            !log.iter()
                .any(|e| matches!(e.event, Event::LeadershipGained { .. })),
            "seed {seed}: nobody claimed: {log:?}"
        );
        assert_eq!(leader(&w), l, "seed {seed}");
        assert_eq!(term_of(&w, 3), term, "seed {seed}");
    }
}

/// A replica joining a distributed group gets everything written before it joined,
/// removals included, from a single sync answer.
#[test]
fn join_in_distributed_mode_gets_everything_written_before_it_joined() {
    for seed in SEEDS {
        let mut w = World::new(Options::calm(seed, 3, SyncMode::Distributed));
        w.crash(2, None); // node 2 joins later, with no store
        w.run_until(500, false).unwrap();
        let deadline = w.now(0).wall_ms + 60_000;
        w.user(0, Req::Config(3)).unwrap();
        w.user(1, Req::Note(1, 10)).unwrap();
        w.user(1, Req::Note(2, 20)).unwrap();
        w.user(0, Req::Activity(deadline)).unwrap();
        w.run_until(600, false).unwrap();
        w.user(0, Req::Forget(1)).unwrap();
        w.run_until(700, false).unwrap();

        w.start(2);
        assert_eq!(rep(&w, 2).state(), &Session::default(), "seed {seed}");
        let mut log = Vec::new();
        deliver_now(&mut w, &mut log);
        assert!(same_state(&w, &[0, 1, 2]), "seed {seed}: synced at once");
        let s = rep(&w, 2).state();
        assert_eq!(s.config.get(), Some(&3), "seed {seed}");
        assert_eq!(s.deadline.get(), Some(&deadline), "seed {seed}");
        assert_eq!(s.notes.get(&1), None, "seed {seed}: the removal too");
        assert_eq!(s.notes.get(&2), Some(&20), "seed {seed}");
    }
}

/// In leader mode, a replica restarted with its store holds what it persisted before
/// any message arrives, does not act on its persisted lease record, and its writes
/// survive in the group.
#[test]
fn join_from_a_persisted_store_in_leader_mode_holds_the_writes_before_any_message() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Leader);
        let l = leader(&w);
        w.user(l, Req::Config(5)).unwrap();
        w.user(l, Req::Note(3, 33)).unwrap();
        let persisted = rep(&w, l).state().clone();
        assert_eq!(persisted.config.get(), Some(&5));

        w.crash(l, None);
        w.start(l);
        assert_eq!(rep(&w, l).state(), &persisted, "seed {seed}: restored");
        let mut log = Vec::new();
        deliver_now(&mut w, &mut log); // its first input
        assert!(
            !rep(&w, l).is_leader(),
            "seed {seed}: a restart does not resume leading"
        );

        w.converge().unwrap();
        for i in all(&w) {
            assert_eq!(rep(&w, i).state().config.get(), Some(&5), "seed {seed}");
            assert_eq!(rep(&w, i).state().notes.get(&3), Some(&33), "seed {seed}");
        }
    }
}

/// In distributed mode, a replica restarted with its store holds its writes before any
/// message arrives, then merges whatever the others wrote meanwhile, and keeps its own.
#[test]
fn join_from_a_persisted_store_in_distributed_mode_holds_the_writes_before_any_message() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Distributed);
        w.user(1, Req::Config(5)).unwrap();
        w.user(1, Req::Note(3, 33)).unwrap();
        let persisted = rep(&w, 1).state().clone();
        w.crash(1, None);
        let t = w.time + 50;
        w.run_until(t, false).unwrap();
        w.user(0, Req::Config(6)).unwrap();
        w.user(2, Req::Note(4, 44)).unwrap();
        let t = w.time + 50;
        w.run_until(t, false).unwrap();

        w.start(1);
        assert_eq!(rep(&w, 1).state(), &persisted, "seed {seed}: restored");
        let mut log = Vec::new();
        deliver_now(&mut w, &mut log);
        assert!(same_state(&w, &[0, 1, 2]), "seed {seed}: synced at once");
        let s = rep(&w, 1).state();
        assert_eq!(s.config.get(), Some(&6), "seed {seed}: the newer write");
        assert_eq!(s.notes.get(&3), Some(&33), "seed {seed}: its own write");
        assert_eq!(s.notes.get(&4), Some(&44), "seed {seed}");
    }
}

// --- leave ---

/// When the holder leaves, a successor leads at the same moment (one message, not a
/// lease expiry) in the next term, and every follower is told the holder said goodbye,
/// once.
#[test]
fn leave_in_leader_mode_hands_over_within_one_message() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Leader);
        let l = leader(&w);
        let leaver = id(&w, l);
        let term = term_of(&w, l);
        let left_at = w.time;
        w.leave(l, None).unwrap();

        let mut log = Vec::new();
        deliver_now(&mut w, &mut log);
        assert_eq!(w.time, left_at);
        let s = w
            .current_leader()
            .unwrap_or_else(|| panic!("seed {seed}: no successor within one message"));
        assert_ne!(s, l);
        assert_eq!(term_of(&w, s), term + 1, "seed {seed}");
        for f in others(&w, l) {
            assert_eq!(rep(&w, f).leader(), Some(id(&w, s)), "seed {seed}");
            assert!(
                logged_at(&log, f).any(|e| e.event
                    == Event::PeerLeft {
                        peer: leaver,
                        said_goodbye: true
                    }),
                "seed {seed}: node {f} was told of the goodbye"
            );
        }

        let until = w.time + 1_000;
        w.run_logged(until, &mut log).unwrap();
        for f in others(&w, l) {
            let lefts = logged_at(&log, f)
                .filter(|e| matches!(e.event, Event::PeerLeft { peer, .. } if peer == leaver))
                .count();
            assert_eq!(lefts, 1, "seed {seed}: node {f} told once: {log:?}");
        }
        assert_eq!(leader(&w), s, "seed {seed}");
    }
}

/// In distributed mode, a replica that leaves says goodbye; its writes, even the last
/// one before leaving, stay with the others, and the others go on.
#[test]
fn leave_in_distributed_mode_keeps_the_state_and_the_leavers_writes() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Distributed);
        let leaver = id(&w, 2);
        w.user(2, Req::Note(2, 22)).unwrap();
        w.user(2, Req::Config(9)).unwrap();
        w.leave(2, None).unwrap();

        let mut log = Vec::new();
        deliver_now(&mut w, &mut log);
        for i in [0, 1] {
            let s = rep(&w, i).state();
            assert_eq!(s.notes.get(&2), Some(&22), "seed {seed}");
            assert_eq!(s.config.get(), Some(&9), "seed {seed}");
            assert_eq!(s.config.stamp().source, leaver, "seed {seed}");
            assert!(
                logged_at(&log, i).any(|e| e.event
                    == Event::PeerLeft {
                        peer: leaver,
                        said_goodbye: true
                    }),
                "seed {seed}"
            );
        }

        let until = w.time + 1_000;
        w.run_logged(until, &mut log).unwrap();
        w.user(0, Req::Note(5, 55)).unwrap();
        deliver_now(&mut w, &mut log);
        assert!(same_state(&w, &[0, 1]), "seed {seed}");
        let s = rep(&w, 1).state();
        assert_eq!(s.notes.get(&2), Some(&22), "seed {seed}: still there");
        assert_eq!(s.notes.get(&5), Some(&55), "seed {seed}");
    }
}

// --- hidden ---

/// A hidden holder keeps renewing: across five lease durations it stays the leader in
/// the same term, nobody else claims, and it still answers requests.
#[test]
fn hidden_in_leader_mode_holder_keeps_renewing_and_stays_leader() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Leader);
        let lc = lease_config();
        let l = leader(&w);
        let before = *rep(&w, l).lease().unwrap();
        let mut log = Vec::new();
        w.signal(l, Lifecycle::Hidden, &mut log).unwrap();

        let start = w.time;
        let f = others(&w, l)[0];
        w.run_logged(start + 2 * lc.duration_ms, &mut log).unwrap();
        w.user(f, Req::Note(7, 70)).unwrap();
        w.run_logged(start + 5 * lc.duration_ms, &mut log).unwrap();

        assert_eq!(leader(&w), l, "seed {seed}");
        let now = *rep(&w, l).lease().unwrap();
        assert_eq!(now.term, before.term, "seed {seed}");
        let renewals = 5 * lc.duration_ms / lc.renew_interval_ms;
        assert!(
            now.renew_seq >= before.renew_seq + renewals - 1,
            "seed {seed}: {} renewals in {} ms",
            now.renew_seq - before.renew_seq,
            5 * lc.duration_ms
        );
        assert!(
            !log.iter().any(|e| matches!(
                e.event,
                Event::LeadershipGained { .. }
                    | Event::LeadershipLost { .. }
                    | Event::LeaderChanged { .. }
                    | Event::PeerLeft { .. }
            )),
            "seed {seed}: {log:?}"
        );
        for i in all(&w) {
            assert_eq!(rep(&w, i).lease(), Some(&now), "seed {seed}");
            assert_eq!(rep(&w, i).state().notes.get(&7), Some(&70), "seed {seed}");
        }
    }
}

/// In distributed mode a hidden replica keeps going: it stays a peer, its writes go
/// out and the others' come in.
#[test]
fn hidden_in_distributed_mode_keeps_going() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Distributed);
        let mut log = Vec::new();
        w.signal(1, Lifecycle::Hidden, &mut log).unwrap();
        let until = w.time + 500;
        w.run_logged(until, &mut log).unwrap();
        w.user(1, Req::Note(1, 10)).unwrap();
        w.user(0, Req::Note(2, 20)).unwrap();
        deliver_now(&mut w, &mut log);
        assert!(same_state(&w, &[0, 1, 2]), "seed {seed}");
        let until = w.time + 1_000;
        w.run_logged(until, &mut log).unwrap();
        let s = rep(&w, 1).state();
        assert_eq!(
            (s.notes.get(&1), s.notes.get(&2)),
            (Some(&10), Some(&20)),
            "seed {seed}"
        );
        assert!(
            !log.iter()
                .any(|e| matches!(e.event, Event::PeerLeft { .. })),
            "seed {seed}: {log:?}"
        );
    }
}

// --- frozen / resume ---

/// A follower frozen for less than the sleep tolerance misses a write; on
/// `Lifecycle::Resume` it asks for a sync and holds the write at once (not at the next
/// heartbeat).
#[test]
fn resume_in_leader_mode_follower_asks_for_sync_and_catches_up() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Leader);
        let l = leader(&w);
        let f = others(&w, l)[0];
        let mut log = Vec::new();
        w.signal(f, Lifecycle::Freeze, &mut log).unwrap();
        w.sleep(f, 60_000); // frozen until resumed below
        let frozen_at = w.time;
        w.user(l, Req::Config(9)).unwrap();
        w.run_logged(frozen_at + 100, &mut log).unwrap();
        assert_ne!(rep(&w, f).state().config.get(), Some(&9), "seed {seed}");

        let asked = rep(&w, f).stats().syncs_requested;
        w.resume(f, &mut log).unwrap();
        assert_eq!(rep(&w, f).stats().syncs_requested, asked + 1, "seed {seed}");
        deliver_now(&mut w, &mut log);
        assert_eq!(rep(&w, f).state().config.get(), Some(&9), "seed {seed}");
        assert!(same_state(&w, &[f, l]), "seed {seed}");
    }
}

/// A holder frozen past its lease, while a successor took over, does not act as leader
/// on resume, before it hears anything: `is_leader()` is false and a write is refused
/// with `NotLeader`; it then follows the successor.
#[test]
fn resume_in_leader_mode_holder_whose_lease_expired_does_not_act() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Leader);
        let l = leader(&w);
        let term = term_of(&w, l);
        let mut log = Vec::new();
        w.signal(l, Lifecycle::Freeze, &mut log).unwrap();
        w.sleep(l, 60_000);
        let frozen_at = w.time;
        let s = loop {
            let t = w.time + 1;
            w.run_logged(t, &mut log).unwrap();
            if let Some(s) = w.current_leader() {
                break s;
            }
            assert!(w.time < frozen_at + 2_000, "seed {seed}: no successor");
        };
        assert_eq!(term_of(&w, s), term + 1, "seed {seed}");

        let resumed_at = w.time;
        w.resume(l, &mut log).unwrap();
        assert!(!rep(&w, l).is_leader(), "seed {seed}");
        let before = rep(&w, l).encode_state().unwrap();
        let now = w.now(l);
        let refused = rep_mut(&mut w, l).write(now, |st, d, wr| d.config = st.config.write(1, wr));
        assert!(
            matches!(refused, Err(WriteError::NotLeader { .. })),
            "seed {seed}: {refused:?}"
        );
        assert_eq!(rep(&w, l).encode_state().unwrap(), before, "seed {seed}");
        assert!(
            logged_at(&log, l).any(|e| e.event
                == Event::LeadershipLost {
                    term,
                    reason: LeadershipLoss::Slept
                }),
            "seed {seed}: {log:?}"
        );

        w.run_logged(resumed_at + 500, &mut log).unwrap();
        assert_eq!(leader(&w), s, "seed {seed}");
        assert_eq!(rep(&w, l).leader(), Some(id(&w, s)), "seed {seed}");
        assert!(
            !logged_at(&log, l).any(|e| matches!(e.event, Event::LeadershipGained { .. })),
            "seed {seed}"
        );
    }
}

/// A request made at a resumed former holder, before it has heard of its successor,
/// reaches the successor (it is not addressed to the former holder itself and lost).
#[test]
fn resume_in_leader_mode_request_at_the_former_holder_reaches_the_successor() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Leader);
        let l = leader(&w);
        let mut log = Vec::new();
        w.signal(l, Lifecycle::Freeze, &mut log).unwrap();
        w.sleep(l, 60_000);
        let frozen_at = w.time;
        let s = loop {
            let t = w.time + 1;
            w.run_logged(t, &mut log).unwrap();
            if let Some(s) = w.current_leader() {
                break s;
            }
            assert!(w.time < frozen_at + 2_000, "seed {seed}: no successor");
        };

        w.resume(l, &mut log).unwrap();
        let deadline = w.now(l).wall_ms + 60_000;
        w.user(l, Req::Activity(deadline)).unwrap();
        let until = w.time + 500;
        w.run_logged(until, &mut log).unwrap();
        assert!(
            logged_at(&log, s).any(|e| e.event
                == Event::Request {
                    from: id(&w, l),
                    request: Req::Activity(deadline)
                }),
            "seed {seed}: the request never reached the leader"
        );
        for i in all(&w) {
            assert_eq!(
                rep(&w, i).state().deadline.get(),
                Some(&deadline),
                "seed {seed}"
            );
        }
    }
}

/// In distributed mode a frozen replica misses writes; on `Lifecycle::Resume` it asks
/// for a sync and holds them at once.
#[test]
fn resume_in_distributed_mode_asks_for_sync_and_catches_up() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Distributed);
        let mut log = Vec::new();
        w.signal(2, Lifecycle::Freeze, &mut log).unwrap();
        w.sleep(2, 60_000);
        let frozen_at = w.time;
        w.user(0, Req::Config(4)).unwrap();
        w.user(1, Req::Note(1, 1)).unwrap();
        w.run_logged(frozen_at + 100, &mut log).unwrap();
        assert_eq!(rep(&w, 2).state().config.get(), None, "seed {seed}");

        w.resume(2, &mut log).unwrap();
        deliver_now(&mut w, &mut log);
        assert!(same_state(&w, &[0, 1, 2]), "seed {seed}");
        assert_eq!(rep(&w, 2).state().config.get(), Some(&4), "seed {seed}");
        assert_eq!(rep(&w, 2).state().notes.get(&1), Some(&1), "seed {seed}");
    }
}

// --- sleep / wake ---

/// The holder's machine sleeps past the lease: a successor takes over meanwhile in the
/// next term; on waking the old holder reports the gap, stops leading before it acts,
/// and follows; everyone converges on the successor.
#[test]
fn sleep_in_leader_mode_old_holder_revalidates_and_a_successor_took_over() {
    for seed in SEEDS {
        let mut w = settled_steady(seed, 3, SyncMode::Leader);
        let l = leader(&w);
        let term = term_of(&w, l);
        let slept_at = w.time;
        w.sleep(l, 1_000);
        let mut log = Vec::new();
        w.run_logged(slept_at + 1_000, &mut log).unwrap();

        let gained: Vec<&Logged> = log
            .iter()
            .filter(|e| matches!(e.event, Event::LeadershipGained { .. }))
            .collect();
        assert_eq!(gained.len(), 1, "seed {seed}: {gained:?}");
        let s = gained[0].node;
        assert_ne!(s, l);
        assert_eq!(
            gained[0].event,
            Event::LeadershipGained { term: term + 1 },
            "seed {seed}"
        );
        assert!(
            gained[0].at < slept_at + 1_000,
            "seed {seed}: before the wake"
        );

        let woke: Vec<&Event<Req>> = logged_at(&log, l).map(|e| &e.event).collect();
        assert!(
            woke.contains(&&Event::SleepDetected { gap_ms: 1_000 }),
            "seed {seed}: {woke:?}"
        );
        assert!(
            woke.contains(&&Event::LeadershipLost {
                term,
                reason: LeadershipLoss::Slept
            }),
            "seed {seed}: {woke:?}"
        );
        assert!(!rep(&w, l).is_leader(), "seed {seed}");

        w.converge().unwrap();
        assert_eq!(leader(&w), s, "seed {seed}");
        assert_eq!(rep(&w, l).leader(), Some(id(&w, s)), "seed {seed}");
        assert!(same_state(&w, &all(&w)), "seed {seed}");
    }
}

/// In distributed mode a replica that slept reports the gap, is reported gone and back
/// by the others, and holds the writes made while it slept at the moment it wakes.
#[test]
fn sleep_in_distributed_mode_sleeper_catches_up_on_wake() {
    for seed in SEEDS {
        let mut w = settled_steady(seed, 3, SyncMode::Distributed);
        let sleeper = id(&w, 2);
        let slept_at = w.time;
        w.sleep(2, 1_000);
        w.user(0, Req::Config(3)).unwrap();
        w.user(1, Req::Note(1, 10)).unwrap();
        let mut log = Vec::new();
        w.run_logged(slept_at + 999, &mut log).unwrap();
        assert_eq!(rep(&w, 2).state().config.get(), None, "seed {seed}");
        for i in [0, 1] {
            assert!(
                logged_at(&log, i).any(|e| e.event
                    == Event::PeerLeft {
                        peer: sleeper,
                        said_goodbye: false
                    }),
                "seed {seed}"
            );
        }

        w.run_logged(slept_at + 1_000, &mut log).unwrap();
        assert!(
            logged_at(&log, 2).any(|e| e.event == Event::SleepDetected { gap_ms: 1_000 }),
            "seed {seed}: {log:?}"
        );
        assert!(
            same_state(&w, &[0, 1, 2]),
            "seed {seed}: caught up on waking"
        );
        assert_eq!(rep(&w, 2).state().config.get(), Some(&3), "seed {seed}");
        for i in [0, 1] {
            assert!(
                logged_at(&log, i)
                    .any(|e| e.at == slept_at + 1_000
                        && e.event == Event::PeerJoined { peer: sleeper }),
                "seed {seed}"
            );
        }
    }
}

// --- activity / reset ---

/// A follower's activity travels to the leader as a request from that follower; the
/// leader extends the deadline in its term and every replica holds it at once.
#[test]
fn activity_in_leader_mode_is_forwarded_and_the_leader_extends_the_deadline() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Leader);
        let l = leader(&w);
        let f = others(&w, l)[1];
        let deadline = w.now(f).wall_ms + 60_000;
        w.user(f, Req::Activity(deadline)).unwrap();
        let mut log = Vec::new();
        deliver_now(&mut w, &mut log);

        let requests: Vec<&Logged> = log
            .iter()
            .filter(|e| matches!(e.event, Event::Request { .. }))
            .collect();
        assert_eq!(requests.len(), 1, "seed {seed}: {requests:?}");
        assert_eq!(requests[0].node, l, "seed {seed}: surfaced at the leader");
        assert_eq!(
            requests[0].event,
            Event::Request {
                from: id(&w, f),
                request: Req::Activity(deadline)
            }
        );
        for i in all(&w) {
            let reg = &rep(&w, i).state().deadline;
            assert_eq!(reg.get(), Some(&deadline), "seed {seed}: node {i}");
            assert_eq!(reg.stamp().source, id(&w, l), "seed {seed}");
            assert_eq!(reg.stamp().term(), term_of(&w, l), "seed {seed}");
        }
    }
}

/// In distributed mode the replica with the activity writes the deadline itself, with
/// a stamp above the one it replaces; concurrent activity on two replicas converges on
/// the later one everywhere (decided by time, not by replica id).
#[test]
fn activity_in_distributed_mode_writes_directly_and_concurrent_activity_keeps_the_later_deadline() {
    for seed in SEEDS {
        let mut w = settled_steady(seed, 3, SyncMode::Distributed);
        let old = *rep(&w, 1).state().deadline.stamp();
        let first = w.now(1).wall_ms + 60_000;
        w.user(1, Req::Activity(first)).unwrap();
        let reg = rep(&w, 1).state().deadline.clone();
        assert_eq!(reg.get(), Some(&first), "seed {seed}: written at once");
        assert_eq!(reg.stamp().source, id(&w, 1), "seed {seed}");
        assert!(*reg.stamp() > old, "seed {seed}");
        assert_eq!(reg.stamp().updated_at, w.now(1).wall_ms, "seed {seed}");
        let mut log = Vec::new();
        deliver_now(&mut w, &mut log);
        assert!(same_state(&w, &[0, 1, 2]), "seed {seed}");

        // Node 0's clock reads 30 ms later than node 2's: its activity is the later one,
        // though node 2 has the greater id.
        w.nodes[0].wall_offset = 30;
        let later = w.now(0).wall_ms + 60_000;
        let earlier = w.now(2).wall_ms + 60_000;
        w.user(0, Req::Activity(later)).unwrap();
        w.user(2, Req::Activity(earlier)).unwrap();
        deliver_now(&mut w, &mut log);
        assert!(same_state(&w, &[0, 1, 2]), "seed {seed}");
        for i in 0..3 {
            assert_eq!(
                rep(&w, i).state().deadline.get(),
                Some(&later),
                "seed {seed}"
            );
        }
    }
}

// --- config change ---

/// In leader mode a follower's direct write of the configuration is refused, naming the
/// leader, and changes nothing; the same change sent as a request is applied by the
/// leader and reaches every replica like any register.
#[test]
fn config_change_in_leader_mode_follower_write_is_refused_and_the_request_path_works() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Leader);
        let l = leader(&w);
        let f = others(&w, l)[0];
        let before = rep(&w, f).encode_state().unwrap();
        let now = w.now(f);
        let refused = rep_mut(&mut w, f).write(now, |st, d, wr| d.config = st.config.write(42, wr));
        assert_eq!(
            refused,
            Err(WriteError::NotLeader {
                leader: Some(id(&w, l))
            }),
            "seed {seed}"
        );
        assert_eq!(rep(&w, f).encode_state().unwrap(), before, "seed {seed}");

        w.user(f, Req::Config(42)).unwrap();
        let mut log = Vec::new();
        deliver_now(&mut w, &mut log);
        assert!(
            logged_at(&log, l).any(|e| e.event
                == Event::Request {
                    from: id(&w, f),
                    request: Req::Config(42)
                }),
            "seed {seed}"
        );
        for i in all(&w) {
            let reg = &rep(&w, i).state().config;
            assert_eq!(reg.get(), Some(&42), "seed {seed}");
            assert_eq!(reg.stamp().source, id(&w, l), "seed {seed}");
        }
        for i in others(&w, l) {
            assert!(
                logged_at(&log, i).any(|e| e.event
                    == Event::Changed {
                        fields: vec!["config"]
                    }),
                "seed {seed}"
            );
        }
    }
}

/// In distributed mode a configuration write propagates like any register: every
/// replica holds it at once and is told exactly that field changed.
#[test]
fn config_change_in_distributed_mode_propagates_like_any_register() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Distributed);
        w.user(1, Req::Config(42)).unwrap();
        let mut log = Vec::new();
        deliver_now(&mut w, &mut log);
        for i in 0..3 {
            let reg = &rep(&w, i).state().config;
            assert_eq!(reg.get(), Some(&42), "seed {seed}");
            assert_eq!(reg.stamp().source, id(&w, 1), "seed {seed}");
        }
        for i in [0, 2] {
            let changed: Vec<&Event<Req>> = logged_at(&log, i)
                .map(|e| &e.event)
                .filter(|e| matches!(e, Event::Changed { .. }))
                .collect();
            assert_eq!(
                changed,
                [&Event::Changed {
                    fields: vec!["config"]
                }],
                "seed {seed}"
            );
        }
    }
}

// --- crash ---

/// The holder crashes right after a renewal: nobody leads before the lease has run out
/// (duration + allowed delay), a successor leads within duration + one renew interval,
/// in the next term, and every live replica follows it.
#[test]
fn crash_in_leader_mode_successor_leads_after_the_lease_expires_with_a_higher_term() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Leader);
        let lc = lease_config();
        let l = leader(&w);
        let seq = rep(&w, l).lease().unwrap().renew_seq;
        while rep(&w, l).lease().unwrap().renew_seq == seq {
            assert!(w.time < 2_000, "seed {seed}: the holder does not renew");
            let t = w.time + 1;
            w.run_until(t, false).unwrap();
        }
        let term = term_of(&w, l);
        w.crash(l, None);
        let crashed_at = w.time;

        let bound = lc.duration_ms + lc.renew_interval_ms;
        let (s, at) = loop {
            let t = w.time + 1;
            w.run_until(t, false).unwrap();
            if let Some(s) = w.current_leader() {
                break (s, w.time);
            }
            assert!(
                w.time <= crashed_at + bound,
                "seed {seed}: no successor within {bound} ms"
            );
        };
        let waited = at - crashed_at;
        assert!(
            waited >= lc.duration_ms + lc.max_delay_ms,
            "seed {seed}: a successor after {waited} ms, before the lease ran out"
        );
        assert!(waited <= bound, "seed {seed}: {waited} ms");
        assert_eq!(term_of(&w, s), term + 1, "seed {seed}");
        for i in all(&w) {
            assert_eq!(rep(&w, i).leader(), Some(id(&w, s)), "seed {seed}");
        }
    }
}

/// In distributed mode a crash changes nothing for the others: they keep its writes,
/// report it gone (without a goodbye) within the peer timeout, and go on writing.
#[test]
fn crash_in_distributed_mode_changes_nothing_for_the_others() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Distributed);
        let crashed = id(&w, 2);
        w.user(2, Req::Note(2, 22)).unwrap();
        let mut log = Vec::new();
        deliver_now(&mut w, &mut log);
        w.crash(2, None);
        let crashed_at = w.time;
        let timeout = sim_config(SyncMode::Distributed, Codec::Binary).peer_timeout_ms;
        w.run_logged(crashed_at + timeout, &mut log).unwrap();

        for i in [0, 1] {
            assert_eq!(rep(&w, i).state().notes.get(&2), Some(&22), "seed {seed}");
            assert!(
                logged_at(&log, i).any(|e| e.event
                    == Event::PeerLeft {
                        peer: crashed,
                        said_goodbye: false
                    }),
                "seed {seed}: node {i} not told within {timeout} ms"
            );
        }
        w.user(0, Req::Config(8)).unwrap();
        deliver_now(&mut w, &mut log);
        assert_eq!(rep(&w, 1).state().config.get(), Some(&8), "seed {seed}");
        assert!(same_state(&w, &[0, 1]), "seed {seed}");
    }
}

// --- concurrent writes and partitions (distributed) ---

/// Two replicas write the same register at the same wall time, neither seeing the
/// other: every replica ends with the same winner, the write with the greater stamp,
/// and no conflict is reported (the stamps differ by source).
#[test]
fn concurrent_writes_in_distributed_mode_converge_on_the_greater_stamp() {
    for seed in SEEDS {
        let mut w = settled_steady(seed, 3, SyncMode::Distributed);
        assert_eq!(w.now(0).wall_ms, w.now(2).wall_ms);
        w.user(0, Req::Config(1)).unwrap();
        w.user(2, Req::Config(2)).unwrap();
        let s0 = *rep(&w, 0).state().config.stamp();
        let s2 = *rep(&w, 2).state().config.stamp();
        assert_eq!(
            (s0.version, s0.updated_at),
            (s2.version, s2.updated_at),
            "seed {seed}"
        );
        let (winner, value) = if s0 > s2 { (s0, 1) } else { (s2, 2) };

        let mut log = Vec::new();
        deliver_now(&mut w, &mut log);
        for i in 0..3 {
            let reg = &rep(&w, i).state().config;
            assert_eq!(*reg.stamp(), winner, "seed {seed}");
            assert_eq!(reg.get(), Some(&value), "seed {seed}");
        }
        assert!(
            !log.iter()
                .any(|e| matches!(e.event, Event::ConflictDetected { .. })),
            "seed {seed}"
        );
    }
}

/// Both sides of a partition write (the same register and different ones); once it
/// heals, every replica converges within a few heartbeats on the greater write of each
/// register, and nothing either side wrote is lost.
#[test]
fn partition_in_distributed_mode_heals_and_converges() {
    for seed in SEEDS {
        let mut w = settled(seed, 3, SyncMode::Distributed);
        let cut = w.nodes[0].net;
        w.net.partition(&[&[cut]]);
        w.user(0, Req::Config(10)).unwrap();
        w.user(0, Req::Note(1, 1)).unwrap();
        let t = w.time + 200;
        w.run_until(t, false).unwrap();
        w.user(1, Req::Config(20)).unwrap();
        w.user(2, Req::Note(2, 2)).unwrap();
        let t = w.time + 300;
        w.run_until(t, false).unwrap();
        let c0 = *rep(&w, 0).state().config.stamp();
        let c1 = *rep(&w, 1).state().config.stamp();
        assert_ne!(c0, c1, "seed {seed}: the sides diverged");
        assert!(same_state(&w, &[1, 2]), "seed {seed}");

        w.net.heal();
        let took = w.converge().unwrap();
        let heartbeat = sim_config(SyncMode::Distributed, Codec::Binary).heartbeat_interval_ms;
        assert!(
            took <= 3 * heartbeat,
            "seed {seed}: converged after {took} ms"
        );
        for i in 0..3 {
            let s = rep(&w, i).state();
            assert_eq!(*s.config.stamp(), c0.max(c1), "seed {seed}");
            assert_eq!(s.notes.get(&1), Some(&1), "seed {seed}");
            assert_eq!(s.notes.get(&2), Some(&2), "seed {seed}");
        }
    }
}

// --- fencing (leader mode) ---

/// A deposed leader still writes in its old term (no authority: it has not heard of
/// the new term). The newer term's write wins everywhere: at a replica that saw the
/// older write first, at one that gets the older write last (it is merged, and ranks
/// below), and although the older write has the later time and was written more often.
#[test]
fn fencing_in_leader_mode_the_newer_term_wins_whatever_order_the_writes_arrive_in() {
    const A: usize = 0;
    const B: usize = 1;
    const C: usize = 2;
    const D: usize = 3;
    // A's wall clock runs 450 ms ahead (within the 500 ms drift bound), so its writes
    // carry later times than B's.
    let mut bench = Bench::new(&[450, 0, 0, 0]);
    let everyone = |_: usize, _: usize| true;
    bench.run(400, &everyone);
    assert!(bench.replicas[A].is_leader());
    assert_eq!(bench.replicas[A].lease().unwrap().term, 1);

    // A partition: {A, D} | {B, C}.
    let side = |i: usize| i == A || i == D;
    let cut = move |i: usize, j: usize| side(i) == side(j);
    bench.run(410, &cut);
    bench.write_config(A, 100);
    bench.pump(&cut);
    bench.run(420, &cut);
    bench.write_config(A, 200);
    // This delta reaches D now, and C late (it was sent before the cut, say).
    let held = bench.outbox(A);
    for bytes in &held {
        bench.deliver(D, bytes);
    }
    assert_eq!(bench.replicas[D].state().config.get(), Some(&200));

    // B takes term 2 once the lease expires on its side; A, renewing alone, still
    // believes it leads.
    while bench.replicas[C].lease().unwrap().term < 2 {
        assert!(bench.t < 1_500, "no new term");
        let t = bench.t + 1;
        bench.run(t, &cut);
    }
    assert!(bench.replicas[B].is_leader());
    assert!(bench.replicas[A].is_leader(), "A has heard nothing yet");
    bench.write_config(B, 300);
    bench.pump(&cut);
    assert_eq!(bench.replicas[C].state().config.get(), Some(&300));

    // A wrote the register twice and B once, and A's write carries the later time:
    // only the term puts B's write first.
    let a_stamp = *bench.replicas[D].state().config.stamp();
    let b_stamp = *bench.replicas[C].state().config.stamp();
    assert!(
        a_stamp.updated_at > b_stamp.updated_at,
        "A's write is later"
    );
    assert_eq!((a_stamp.term(), b_stamp.term()), (1, 2));

    // A's old-term delta reaches C, which knows term 2: merged, and outranked.
    for bytes in &held {
        bench.deliver(C, bytes);
    }
    assert!(
        !bench.events[C]
            .iter()
            .any(|e| matches!(e, Event::MessageRejected { .. })),
        "{:?}",
        bench.events[C]
    );
    assert_eq!(*bench.replicas[C].state().config.stamp(), b_stamp);

    // Healed: everyone, A and D included, ends with term 2's write; A steps down.
    let until = bench.t + 1_000;
    bench.run(until, &everyone);
    let first = bench.replicas[A].encode_state().unwrap();
    for r in &bench.replicas {
        assert_eq!(r.encode_state().unwrap(), first, "converged");
        assert_eq!(r.state().config.get(), Some(&300));
        assert_eq!(*r.state().config.stamp(), b_stamp);
    }
    // Whichever came first: B's lease record, or any message of term 2.
    let b = bench.id(B);
    let stepped_down = bench.events[A].iter().any(|e| match e {
        Event::LeadershipLost { term: 1, reason } => match reason {
            LeadershipLoss::Superseded { by, term: 2 } => *by == b,
            LeadershipLoss::NewerTerm { term } => *term == 2,
            _ => false,
        },
        _ => false,
    });
    assert!(stepped_down, "{:?}", bench.events[A]);
    let leaders: Vec<usize> = (0..4).filter(|i| bench.replicas[*i].is_leader()).collect();
    assert_eq!(leaders, [B]);
}
