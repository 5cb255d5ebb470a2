//! What a replica knows of its peers: liveness, duplicates, and missing deltas.

use std::collections::{BTreeMap, BTreeSet};

use crate::SourceId;

/// Outcome of checking an envelope's sender, incarnation and sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// A new message from a known peer.
    Fresh,
    /// A new message from a peer first heard now (or again, after it restarted or left).
    Joined,
    /// Seen already.
    Duplicate,
    /// From an earlier life of a peer that has restarted since.
    Stale,
}

#[derive(Clone, Debug)]
struct Peer {
    incarnation: u64,
    last_heard_ms: u64,
    highest_seq: u64,
    /// Bit i set: seq `highest_seq - i` was received.
    window: u64,
    /// Every delta with a sequence number up to here was received (or covered by a
    /// full state from this peer).
    acked_dseq: u64,
    /// Deltas received past a gap.
    ahead: BTreeSet<u64>,
    /// The highest delta sequence number the peer says it has sent.
    known_dseq: u64,
    /// When deltas were first noticed missing.
    gap_since_ms: Option<u64>,
    /// Digest mismatches in a row from its heartbeats.
    digest_mismatches: u8,
    last_sync_request_ms: Option<u64>,
}

impl Peer {
    fn new(incarnation: u64, now_ms: u64) -> Self {
        Peer {
            incarnation,
            last_heard_ms: now_ms,
            highest_seq: 0,
            window: 0,
            acked_dseq: 0,
            ahead: BTreeSet::new(),
            known_dseq: 0,
            gap_since_ms: None,
            digest_mismatches: 0,
            last_sync_request_ms: None,
        }
    }

    fn update_gap(&mut self, now_ms: u64) {
        while self.ahead.remove(&(self.acked_dseq + 1)) {
            self.acked_dseq += 1;
        }
        self.ahead.retain(|d| *d > self.acked_dseq);
        if self.known_dseq > self.acked_dseq {
            self.gap_since_ms.get_or_insert(now_ms);
        } else {
            self.gap_since_ms = None;
        }
    }
}

/// The peers heard from, by source id.
#[derive(Clone, Debug, Default)]
pub(crate) struct Peers {
    peers: BTreeMap<SourceId, Peer>,
}

/// How long a gap may stand (reordering) before a sync is asked for.
const GAP_GRACE_MS: u64 = 50;
/// How many heartbeats in a row must disagree on the digest before a sync is asked for
/// (one disagreement is normal while deltas are in flight).
const DIGEST_MISMATCHES: u8 = 2;

impl Peers {
    /// Checks a message's sender, incarnation and sequence number, and records it.
    pub fn admit(&mut self, from: SourceId, incarnation: u64, seq: u64, now_ms: u64) -> Admit {
        let mut joined = false;
        let peer = self.peers.entry(from).or_insert_with(|| {
            joined = true;
            Peer::new(incarnation, now_ms)
        });
        if incarnation < peer.incarnation {
            return Admit::Stale;
        }
        if incarnation > peer.incarnation {
            *peer = Peer::new(incarnation, now_ms);
            joined = true;
        }
        peer.last_heard_ms = now_ms;
        if seq > peer.highest_seq {
            let shift = seq - peer.highest_seq;
            peer.window = if shift >= 64 { 0 } else { peer.window << shift };
            peer.window |= 1;
            peer.highest_seq = seq;
        } else {
            let back = peer.highest_seq - seq;
            if back >= 64 || peer.window & (1 << back) != 0 {
                return Admit::Duplicate;
            }
            peer.window |= 1 << back;
        }
        if joined {
            Admit::Joined
        } else {
            Admit::Fresh
        }
    }

    /// A delta numbered `dseq` arrived from `from`.
    pub fn delta(&mut self, from: SourceId, dseq: u64, now_ms: u64) {
        if let Some(p) = self.peers.get_mut(&from) {
            p.known_dseq = p.known_dseq.max(dseq);
            if dseq > p.acked_dseq {
                p.ahead.insert(dseq);
            }
            p.update_gap(now_ms);
        }
    }

    /// `from` says it has sent deltas up to `dseq` and its state digest is `digest`;
    /// `ours` is this replica's digest.
    pub fn heartbeat(&mut self, from: SourceId, dseq: u64, digest: u64, ours: u64, now_ms: u64) {
        if let Some(p) = self.peers.get_mut(&from) {
            p.known_dseq = p.known_dseq.max(dseq);
            p.update_gap(now_ms);
            if digest == ours {
                p.digest_mismatches = 0;
            } else {
                p.digest_mismatches = p.digest_mismatches.saturating_add(1);
            }
        }
    }

    /// `from` sent its whole state, which holds its deltas up to `dseq`.
    pub fn full_state(&mut self, from: SourceId, dseq: u64, now_ms: u64) {
        if let Some(p) = self.peers.get_mut(&from) {
            p.known_dseq = p.known_dseq.max(dseq);
            p.acked_dseq = p.acked_dseq.max(dseq);
            p.digest_mismatches = 0;
            p.update_gap(now_ms);
        }
    }

    /// Forgets a peer that said goodbye; `true` if it was known.
    pub fn remove(&mut self, from: SourceId) -> bool {
        self.peers.remove(&from).is_some()
    }

    /// Removes and returns the peers silent for `timeout_ms` or more.
    pub fn expire(&mut self, now_ms: u64, timeout_ms: u64) -> Vec<SourceId> {
        let gone: Vec<SourceId> = self
            .peers
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.last_heard_ms) >= timeout_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.peers.remove(id);
        }
        gone
    }

    /// The earliest moment a peer may time out.
    pub fn next_expiry(&self, timeout_ms: u64) -> Option<u64> {
        self.peers
            .values()
            .map(|p| p.last_heard_ms.saturating_add(timeout_ms))
            .min()
    }

    /// A peer to ask for a sync now, if one is missing deltas or disagrees on the
    /// digest, and was not asked within `retry_ms`. Marks it asked.
    pub fn sync_due(&mut self, now_ms: u64, retry_ms: u64) -> Option<SourceId> {
        let (id, peer) = self.peers.iter_mut().find(|(_, p)| {
            let gap = p
                .gap_since_ms
                .is_some_and(|since| now_ms >= since.saturating_add(GAP_GRACE_MS));
            let diverged = p.digest_mismatches >= DIGEST_MISMATCHES;
            let rested = p
                .last_sync_request_ms
                .is_none_or(|at| now_ms >= at.saturating_add(retry_ms));
            (gap || diverged) && rested
        })?;
        peer.last_sync_request_ms = Some(now_ms);
        peer.digest_mismatches = 0;
        Some(*id)
    }

    /// When [`Peers::sync_due`] may next have something.
    pub fn next_sync_check(&self, retry_ms: u64) -> Option<u64> {
        self.peers
            .values()
            .filter_map(|p| {
                let since = p.gap_since_ms?;
                let rested = p
                    .last_sync_request_ms
                    .map_or(0, |at| at.saturating_add(retry_ms));
                Some(since.saturating_add(GAP_GRACE_MS).max(rested))
            })
            .min()
    }

    /// Peer ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = SourceId> + '_ {
        self.peers.keys().copied()
    }

    /// Whether `id` is a live peer.
    #[cfg(test)]
    pub fn contains(&self, id: SourceId) -> bool {
        self.peers.contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SourceId = SourceId::from_u128(1);

    #[test]
    fn duplicates_and_reordering_within_the_window() {
        let mut p = Peers::default();
        assert_eq!(p.admit(A, 1, 1, 0), Admit::Joined);
        assert_eq!(p.admit(A, 1, 3, 0), Admit::Fresh);
        assert_eq!(p.admit(A, 1, 2, 0), Admit::Fresh, "late but new");
        assert_eq!(p.admit(A, 1, 2, 0), Admit::Duplicate);
        assert_eq!(p.admit(A, 1, 3, 0), Admit::Duplicate);
        assert_eq!(p.admit(A, 1, 100, 0), Admit::Fresh);
        assert_eq!(
            p.admit(A, 1, 30, 0),
            Admit::Duplicate,
            "too old to tell: dropped"
        );
    }

    #[test]
    fn a_restart_resets_and_the_old_life_is_stale() {
        let mut p = Peers::default();
        assert_eq!(p.admit(A, 5, 10, 0), Admit::Joined);
        assert_eq!(p.admit(A, 6, 1, 0), Admit::Joined);
        assert_eq!(p.admit(A, 5, 11, 0), Admit::Stale);
    }

    #[test]
    fn gaps_are_found_and_closed() {
        let mut p = Peers::default();
        let _ = p.admit(A, 1, 1, 0);
        p.delta(A, 1, 0);
        p.delta(A, 3, 10);
        assert_eq!(p.sync_due(20, 500), None, "grace for reordering");
        assert_eq!(p.next_sync_check(500), Some(60));
        assert_eq!(p.sync_due(60, 500), Some(A));
        assert_eq!(p.sync_due(61, 500), None, "asked already");
        p.delta(A, 2, 70);
        assert_eq!(p.next_sync_check(500), None);
        p.heartbeat(A, 5, 0, 0, 80);
        assert_eq!(p.sync_due(600, 500), Some(A));
        p.full_state(A, 5, 600);
        assert_eq!(p.next_sync_check(500), None);
    }

    #[test]
    fn persistent_digest_mismatch_asks_for_a_sync() {
        let mut p = Peers::default();
        let _ = p.admit(A, 1, 1, 0);
        p.heartbeat(A, 0, 7, 8, 0);
        assert_eq!(p.sync_due(0, 500), None);
        p.heartbeat(A, 0, 7, 8, 1_000);
        assert_eq!(p.sync_due(1_000, 500), Some(A));
    }

    #[test]
    fn silent_peers_expire() {
        let mut p = Peers::default();
        let _ = p.admit(A, 1, 1, 100);
        assert_eq!(p.next_expiry(1_000), Some(1_100));
        assert!(p.expire(1_099, 1_000).is_empty());
        assert_eq!(p.expire(1_100, 1_000), vec![A]);
        assert!(!p.contains(A));
    }
}
