//! Receiving: admitting a message (its sender, its fields, its time, its sequence
//! number), fencing by term, dispatching it by kind, and merging states.

use super::peers::Admit;
use super::{Replica, State};
use crate::bundle::{Bundle, Request};
use crate::wire::{Body, Envelope};
use crate::{Event, Lease, Merge, Now, Rejection, SourceId};

impl<S: Bundle, R: Request> Replica<S, R> {
    /// A decoded message: admitted, then handled by its kind.
    pub(super) fn receive(&mut self, env: Envelope<State<S>, R>, now: Now) {
        if !self.admit(&env, now) {
            return;
        }
        let from = env.sender;
        // Every term in a valid message is at most its envelope's: a leader of an older
        // term hears here that its term is over, before it acts on anything. (A lease
        // record says who superseded it: that comes first.)
        let term = env.term;
        if !matches!(env.body, Body::Lease { .. }) {
            self.heard_term(term, now);
        }
        match env.body {
            Body::Delta { dseq, state } => self.receive_delta(from, dseq, &state, now),
            Body::Lease { dseq, lease } => self.receive_lease(from, term, dseq, lease, now),
            Body::FullSync {
                dseq,
                part,
                parts,
                state,
                ..
            } => {
                let first_seq = env.seq - u64::from(part);
                self.receive_full_state(from, dseq, first_seq, (part, parts), &state, now);
            }
            Body::SyncRequest { to } => self.sync_requested(from, to, now),
            Body::Request { to, hops, request } => {
                self.request_received(from, to, hops, request, now);
            }
            Body::Heartbeat { dseq, digest } => self.receive_heartbeat(from, dseq, digest, now),
            Body::Goodbye => self.receive_goodbye(from, now),
        }
    }

    /// Whether a message is to be handled: not an echo of this replica's own, every
    /// field valid, its clock not too far ahead, and new from its sender. A message
    /// seen already or from a sender's earlier life still merges its state (see
    /// [`Replica::merge_late`]), and nothing else of it counts.
    fn admit(&mut self, env: &Envelope<State<S>, R>, now: Now) -> bool {
        let from = env.sender;
        if from == self.me {
            self.stats.ignored += 1;
            return false;
        }
        // Nothing of a message is trusted, not even its time, before every field passed.
        if let Err(reason) = self.validate(env, now) {
            self.reject(reason);
            return false;
        }
        if let Err(crate::ClockError::AheadOfLocal {
            remote_ms,
            local_ms,
            ..
        }) = self.hlc.observe(env.hlc, now.wall_ms)
        {
            self.reject(Rejection::ClockAhead {
                from,
                ahead_ms: remote_ms - local_ms,
            });
            return false;
        }
        match self
            .peers
            .admit(from, env.incarnation, env.seq, now.mono_ms)
        {
            Admit::Duplicate | Admit::Stale => {
                self.stats.ignored += 1;
                self.merge_late(env, now);
                false
            }
            Admit::Joined => {
                self.events.push_back(Event::PeerJoined { peer: from });
                true
            }
            Admit::Fresh => true,
        }
    }

    /// A delta of `from`'s writes.
    fn receive_delta(&mut self, from: SourceId, dseq: u64, state: &State<S>, now: Now) {
        // Deltas of an older term are merged too: the order already ranks every write
        // of a newer term above them, and dropping them would lose the writes an old
        // leader made before handing over (its last flush on leaving may arrive after
        // its successor's claim).
        self.peers.delta(from, dseq, now.mono_ms);
        self.merge_state(state, from, now);
    }

    /// A lease record from its holder, in a message of `term`.
    fn receive_lease(&mut self, from: SourceId, term: u64, dseq: u64, lease: Lease, now: Now) {
        self.peers.delta(from, dseq, now.mono_ms);
        self.merge_state(&State::of_lease(lease), from, now);
        self.heard_term(term, now);
    }

    /// A heartbeat: the sender's last delta number and state digest.
    fn receive_heartbeat(&mut self, from: SourceId, dseq: u64, digest: u64, now: Now) {
        let ours = self.digest();
        self.peers.heartbeat(from, dseq, digest, ours, now.mono_ms);
    }

    /// A peer left.
    fn receive_goodbye(&mut self, from: SourceId, now: Now) {
        if self.peers.remove(from) {
            self.events.push_back(Event::PeerLeft {
                peer: from,
                said_goodbye: true,
            });
        }
        self.holder_left(from, now);
    }

    /// A message seen already, too late to tell, or from a peer's earlier life: its
    /// state still merges (a join changes nothing when it was merged before, and a
    /// delta from before a restart or overtaken by more than the duplicate window may
    /// hold writes no one else has), but nothing else of it counts: no request, no
    /// bookkeeping of the peer's sequence numbers.
    fn merge_late(&mut self, env: &Envelope<State<S>, R>, now: Now) {
        let lease_state;
        let state = match &env.body {
            Body::Delta { state, .. } | Body::FullSync { state, .. } => state,
            Body::Lease { lease, .. } => {
                lease_state = State::of_lease(*lease);
                &lease_state
            }
            _ => return,
        };
        self.merge_state(state, env.sender, now);
        self.heard_term(env.term, now);
    }

    /// A message refused: counted and reported.
    pub(super) fn reject(&mut self, reason: Rejection) {
        tracing::debug!(source = %self.me, %reason, "message rejected");
        self.stats.rejected += 1;
        self.events.push_back(Event::MessageRejected { reason });
    }

    /// Merges a state (remote, restored or a local delta) and acts on what changed:
    /// events, persistence, leadership.
    pub(super) fn merge_state(&mut self, other: &State<S>, from: SourceId, now: Now) {
        let lease = self.state.lease.merge(&other.lease);
        let app = self.state.app.merge(&other.app);
        let conflicts = lease.conflicts() + app.conflicts();
        if conflicts > 0 {
            self.stats.conflicts += u64::from(conflicts);
            self.events.push_back(Event::ConflictDetected {
                from,
                count: conflicts,
            });
        }
        if !lease.changed() && !app.changed() {
            return;
        }
        self.stats.merges += 1;
        self.digest = None;
        self.persistence.changed(other);
        self.mark_dirty(now);
        if app.changed() {
            self.events.push_back(Event::Changed {
                fields: app.changed_fields(S::FIELDS).collect(),
            });
        }
        if lease.changed() {
            self.lease_changed(now);
        }
    }
}
