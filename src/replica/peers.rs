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
    /// When this run of the peer was first heard (local monotonic ms).
    first_heard_ms: u64,
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
    /// The full state arriving in parts: the sequence number of its first part, how
    /// many parts it has, and those received.
    partial: Option<(u64, u32, BTreeSet<u32>)>,
    /// Messages in a row refused as too old to tell or from an earlier life (see
    /// [`SUSPECT_LIMIT`]).
    suspect: u8,
}

impl Peer {
    fn new(incarnation: u64, now_ms: u64) -> Self {
        Peer {
            incarnation,
            first_heard_ms: now_ms,
            last_heard_ms: now_ms,
            highest_seq: 0,
            window: 0,
            acked_dseq: 0,
            ahead: BTreeSet::new(),
            known_dseq: 0,
            gap_since_ms: None,
            digest_mismatches: 0,
            last_sync_request_ms: None,
            partial: None,
            suspect: 0,
        }
    }

    fn update_gap(&mut self, now_ms: u64) {
        while let Some(next) = self.acked_dseq.checked_add(1) {
            if !self.ahead.remove(&next) {
                break;
            }
            self.acked_dseq = next;
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
/// How many messages in a row from one peer may be refused as too old to tell (64 or
/// more behind its highest sequence number) or as from an earlier life before the
/// record of that peer is taken to be wrong and started afresh from the latest message.
/// An honest peer's numbers only grow; a record can still be wrong (a sequence number
/// or incarnation that was corrupted yet decoded, or a restart whose clock had gone
/// back), and a wrong record must not silence the peer for good.
const SUSPECT_LIMIT: u8 = 4;

impl Peers {
    /// Checks a message's sender, incarnation and sequence number, and records it.
    pub fn admit(&mut self, from: SourceId, incarnation: u64, seq: u64, now_ms: u64) -> Admit {
        let mut joined = false;
        let peer = self.peers.entry(from).or_insert_with(|| {
            joined = true;
            Peer::new(incarnation, now_ms)
        });
        let stale = incarnation < peer.incarnation;
        let too_old =
            !stale && incarnation == peer.incarnation && peer.highest_seq.saturating_sub(seq) >= 64;
        if stale || too_old {
            peer.suspect = peer.suspect.saturating_add(1);
            if peer.suspect < SUSPECT_LIMIT {
                return if stale {
                    Admit::Stale
                } else {
                    Admit::Duplicate
                };
            }
            tracing::debug!(peer = %from, "a peer's record was wrong: started afresh");
            *peer = Peer::new(incarnation, now_ms);
            joined = true;
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
            if peer.window & (1 << back) != 0 {
                return Admit::Duplicate;
            }
            peer.window |= 1 << back;
        }
        peer.suspect = 0;
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
            p.acked_dseq = p.acked_dseq.max(dseq);
            // The peer's own word on how far it has sent, as of this answer (a count
            // that was wrong, a corrupted heartbeat's say, is corrected here).
            let beyond = p.ahead.last().copied().unwrap_or(0);
            p.known_dseq = dseq.max(beyond).max(p.acked_dseq);
            p.digest_mismatches = 0;
            p.update_gap(now_ms);
        }
    }

    /// Part `part` of `parts` of a full state from `from`, whose first part had
    /// sequence number `first_seq`: the whole is received (and its deltas up to `dseq`
    /// acknowledged) once every part of the same answer is.
    pub fn full_state_part(
        &mut self,
        from: SourceId,
        dseq: u64,
        first_seq: u64,
        part: u32,
        parts: u32,
        now_ms: u64,
    ) {
        if parts <= 1 {
            return self.full_state(from, dseq, now_ms);
        }
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        let same = matches!(&p.partial, Some((first, n, _)) if *first == first_seq && *n == parts);
        if !same {
            p.partial = Some((first_seq, parts, BTreeSet::new()));
        }
        let complete = match &mut p.partial {
            Some((_, n, got)) => {
                got.insert(part);
                got.len() == *n as usize
            }
            None => false,
        };
        if complete {
            p.partial = None;
            self.full_state(from, dseq, now_ms);
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

    /// The peers whose current run was first heard by `first_by_ms` at the latest and
    /// that were last heard at `last_since_ms` or later (local monotonic ms).
    pub fn ids_heard(
        &self,
        first_by_ms: u64,
        last_since_ms: u64,
    ) -> impl Iterator<Item = SourceId> + '_ {
        self.peers
            .iter()
            .filter(move |(_, p)| {
                p.first_heard_ms <= first_by_ms && p.last_heard_ms >= last_since_ms
            })
            .map(|(id, _)| *id)
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
    fn one_corrupted_sequence_number_does_not_silence_a_peer() {
        // Defect: seq 2^32 + 1 once made every later message look like a duplicate.
        let mut p = Peers::default();
        assert_eq!(p.admit(A, 1, 1, 0), Admit::Joined);
        assert_eq!(p.admit(A, 1, (1 << 32) + 1, 0), Admit::Fresh);
        let mut admitted = 0;
        for seq in 2..100 {
            if matches!(p.admit(A, 1, seq, 0), Admit::Fresh | Admit::Joined) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 98 - usize::from(SUSPECT_LIMIT) + 1);
        assert_eq!(p.admit(A, 1, 99, 0), Admit::Duplicate, "a real duplicate");
    }

    #[test]
    fn a_peer_whose_incarnation_went_back_is_heard_again() {
        let mut p = Peers::default();
        assert_eq!(p.admit(A, 1_000, 1, 0), Admit::Joined);
        // It restarted with a clock set back: every message looks like the old life.
        for seq in 1..u64::from(SUSPECT_LIMIT) {
            assert_eq!(p.admit(A, 900, seq, 0), Admit::Stale);
        }
        assert_eq!(p.admit(A, 900, 4, 0), Admit::Joined);
        assert_eq!(p.admit(A, 900, 5, 0), Admit::Fresh);
    }

    #[test]
    fn extreme_delta_numbers_do_not_overflow() {
        // Defect: dseq = u64::MAX in a full state panicked with overflow checks on.
        let mut p = Peers::default();
        let _ = p.admit(A, 1, 1, 0);
        p.full_state(A, u64::MAX, 0);
        p.delta(A, u64::MAX, 0);
        p.heartbeat(A, u64::MAX, 0, 0, 0);
        assert_eq!(p.sync_due(1_000, 500), None);
    }

    #[test]
    fn a_full_state_in_parts_counts_once_every_part_is_in() {
        let mut p = Peers::default();
        let _ = p.admit(A, 1, 1, 0);
        p.heartbeat(A, 7, 0, 0, 0);
        assert_eq!(p.sync_due(100, 500), Some(A), "deltas 1..7 missing");
        p.full_state_part(A, 7, 10, 0, 3, 200);
        p.full_state_part(A, 7, 10, 2, 3, 200);
        assert_eq!(p.sync_due(700, 500), Some(A), "part 1 is still missing");
        p.full_state_part(A, 7, 20, 1, 3, 700);
        assert_eq!(
            p.sync_due(1_300, 500),
            Some(A),
            "parts of two answers do not make a whole"
        );
        p.full_state_part(A, 7, 20, 0, 3, 1_300);
        p.full_state_part(A, 7, 20, 2, 3, 1_300);
        assert_eq!(p.next_sync_check(500), None);
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
