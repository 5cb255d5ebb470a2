//! Replicas in processes of their own, on one group directory: the peer program
//! started three times.

mod common;

use common::{settled_leader, Peer, Scratch};

/// Short lease timings, so that leases expire within a test: duration, renew
/// deadline, renew interval, max delay (ms).
const LEASE: &str = "600,400,150,100";

#[test]
fn a_write_in_one_process_is_seen_by_all() {
    let dir = Scratch::new("seen-by-all");
    let mut peers: Vec<Peer> = (0..3)
        .map(|i| Peer::ready(&format!("p{i}"), dir.path(), &["--distributed"]))
        .collect();
    for (i, peer) in peers.iter_mut().enumerate() {
        let key = format!("from{i}");
        assert!(peer.put(&key, &format!("v{i}")).is_some(), "put refused");
    }
    for peer in &mut peers {
        for i in 0..3 {
            let want = format!("seen from{i} v{i} ");
            peer.await_said(|l| l.starts_with(&want));
        }
    }
    for peer in &mut peers {
        peer.leave();
    }
}

#[test]
fn leader_mode_has_one_leader_and_a_successor_after_kill_9() {
    let dir = Scratch::new("kill-leader");
    let mut peers: Vec<Peer> = (0..3)
        .map(|i| Peer::ready(&format!("p{i}"), dir.path(), &["--lease", LEASE]))
        .collect();
    let (leader, term) = settled_leader(&mut peers.iter_mut().collect::<Vec<_>>());
    // Only the leader writes; the others are refused.
    assert!(peers[leader].put("k", "by-leader").is_some());
    for (i, peer) in peers.iter_mut().enumerate() {
        if i != leader {
            assert_eq!(peer.put("k", "by-follower"), None, "a follower wrote");
            peer.await_said(|l| l.starts_with("seen k by-leader "));
        }
    }

    // With the lease authority, only one process ever led so far.
    let leaders = |peers: &mut [&mut Peer]| -> Vec<String> {
        let mut lines = Vec::new();
        for p in peers.iter_mut() {
            p.said(|_| false); // reads what arrived
            lines.extend(p.seen.iter().filter(|l| l.starts_with("leader ")).cloned());
        }
        lines
    };
    let before = leaders(&mut peers.iter_mut().collect::<Vec<_>>());
    assert_eq!(before.len(), 1, "{before:?}");

    peers[leader].kill9();
    let mut rest: Vec<&mut Peer> = peers
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, p)| p)
        .collect();
    let (successor, new_term) = settled_leader(&mut rest);
    assert!(new_term > term, "term {new_term} after {term}");
    assert!(rest[successor].said(|l| l.starts_with(&format!("leader {new_term} "))));
    // Exactly one survivor took over: the one the OS handed the lock to.
    let after = leaders(&mut rest);
    assert_eq!(after.len(), 1, "{after:?}");
    // The successor writes, and the write reaches the other survivor.
    assert!(rest[successor].put("k", "by-successor").is_some());
    let other = 1 - successor;
    rest[other].await_said(|l| l.starts_with("seen k by-successor "));
    assert_eq!(rest[other].get("k").as_deref(), Some("by-successor"));
    for peer in rest {
        peer.leave();
    }
}

#[test]
fn a_leader_that_exits_gracefully_hands_over() {
    let dir = Scratch::new("leave-leader");
    let mut peers: Vec<Peer> = (0..3)
        .map(|i| Peer::ready(&format!("p{i}"), dir.path(), &["--lease", LEASE]))
        .collect();
    let (leader, term) = settled_leader(&mut peers.iter_mut().collect::<Vec<_>>());
    assert!(peers[leader].put("note", "before-leaving").is_some());
    peers[leader].leave();
    let mut rest: Vec<&mut Peer> = peers
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, p)| p)
        .collect();
    let (successor, new_term) = settled_leader(&mut rest);
    assert!(new_term > term, "term {new_term} after {term}");
    // The write made before leaving reached the group.
    assert_eq!(
        rest[successor].get("note").as_deref(),
        Some("before-leaving")
    );
    for peer in rest {
        peer.leave();
    }
}

#[test]
fn a_restarted_group_starts_from_the_store() {
    let dir = Scratch::new("restart");
    let mut a = Peer::ready("a", dir.path(), &["--distributed"]);
    for i in 0..20 {
        assert!(a.put(&format!("k{i}"), &format!("v{i}")).is_some());
    }
    a.kill9();
    let mut b = Peer::ready("b", dir.path(), &["--distributed"]);
    for i in 0..20 {
        assert_eq!(b.get(&format!("k{i}")), Some(format!("v{i}")));
    }
    b.leave();
}
