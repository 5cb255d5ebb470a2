//! Receiving: admitting, fencing and merging what peers send.

use super::peers::Admit;
use super::{Replica, State};
use crate::bundle::{Bundle, Request};
use crate::wire::{Body, Envelope};
use crate::{Event, Merge, Now, Rejection, SourceId, SyncMode};

/// How many times a request is passed on from one former leader to the next.
const MAX_REQUEST_HOPS: u8 = 2;

impl<S: Bundle, R: Request> Replica<S, R> {
    pub(super) fn receive(&mut self, env: Envelope<State<S>, R>, now: Now) {
        let from = env.sender;
        if from == self.me {
            self.stats.ignored += 1;
            return;
        }
        // Nothing of a message is trusted, not even its time, before every field passed.
        if let Err(reason) = self.validate(&env, now) {
            self.reject(reason);
            return;
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
            return;
        }
        match self
            .peers
            .admit(from, env.incarnation, env.seq, now.mono_ms)
        {
            Admit::Duplicate | Admit::Stale => {
                self.stats.ignored += 1;
                self.merge_late(env, now);
                return;
            }
            Admit::Joined => self.events.push_back(Event::PeerJoined { peer: from }),
            Admit::Fresh => {}
        }
        // Every term in a valid message is at most its envelope's: a leader of an older
        // term hears here that its term is over, before it acts on anything. (A lease
        // record says who superseded it: that comes first.)
        let term = env.term;
        if !matches!(env.body, Body::Lease { .. }) {
            self.heard_term(term, now);
        }
        match env.body {
            Body::Delta { dseq, state } => {
                // Deltas of an older term are merged too: the order already ranks every
                // write of a newer term above them, and dropping them would lose the
                // writes an old leader made before handing over (its last flush on
                // leaving may arrive after its successor's claim).
                self.peers.delta(from, dseq, now.mono_ms);
                self.merge_state(&state, from, now);
            }
            Body::Lease { dseq, lease } => {
                self.peers.delta(from, dseq, now.mono_ms);
                let delta = State {
                    lease: Some(lease),
                    app: S::default(),
                };
                self.merge_state(&delta, from, now);
                self.heard_term(term, now);
            }
            Body::FullSync {
                dseq,
                part,
                parts,
                state,
                ..
            } => {
                let first_seq = env.seq - u64::from(part);
                self.peers
                    .full_state_part(from, dseq, first_seq, part, parts, now.mono_ms);
                self.merge_state(&state, from, now);
            }
            Body::SyncRequest { to } => self.sync_requested(from, to, now),
            Body::Request { to, hops, request } => {
                self.request_received(from, to, hops, request, now);
            }
            Body::Heartbeat { dseq, digest } => {
                let ours = self.digest();
                self.peers.heartbeat(from, dseq, digest, ours, now.mono_ms);
            }
            Body::Goodbye => {
                if self.peers.remove(from) {
                    self.events.push_back(Event::PeerLeft {
                        peer: from,
                        said_goodbye: true,
                    });
                }
                self.holder_left(from, now);
            }
        }
    }

    /// A message seen already, too late to tell, or from a peer's earlier life: its
    /// state still merges (a join changes nothing when it was merged before, and a
    /// delta from before a restart or overtaken by more than the duplicate window may
    /// hold writes no one else has), but nothing else of it counts: no request, no
    /// bookkeeping of the peer's sequence numbers.
    fn merge_late(&mut self, env: Envelope<State<S>, R>, now: Now) {
        let state = match env.body {
            Body::Delta { state, .. } | Body::FullSync { state, .. } => state,
            Body::Lease { lease, .. } => State {
                lease: Some(lease),
                app: S::default(),
            },
            _ => return,
        };
        self.merge_state(&state, env.sender, now);
        self.heard_term(env.term, now);
    }

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
        // What changed, for the store's next delta: not kept when the next persist
        // writes the whole state anyway (or never persists), so a large merge is not
        // copied for nothing.
        if !self.store_blocked && !self.compaction_due() {
            match &mut self.persist_delta {
                Some(pending) => {
                    let _ = pending.merge(other);
                }
                None => self.persist_delta = Some(other.clone()),
            }
        }
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

    pub(super) fn sync_requested(&mut self, from: SourceId, to: Option<SourceId>, now: Now) {
        let answer = match to {
            Some(target) => target == self.me,
            // An open request: the leader answers; without one, the lowest id.
            None => match self.leader() {
                Some(leader) => leader == self.me,
                None => self
                    .peers
                    .ids()
                    .chain([from])
                    .all(|id| self.me < id || id == from),
            },
        };
        if !answer {
            return;
        }
        let earliest = self.last_answer.map_or(now.mono_ms, |t| {
            t.saturating_add(self.config.sync_answer_interval_ms)
        });
        self.answer_to = if self.answer_due.is_some() {
            None
        } else {
            Some(from)
        };
        self.answer_due = Some(earliest.max(now.mono_ms));
    }

    /// Sends the whole state, in as many parts as the message limit needs.
    pub(super) fn answer_sync(&mut self, now: Now) {
        self.answer_due = None;
        self.last_answer = Some(now.mono_ms);
        self.stats.syncs_sent += 1;
        let to = self.answer_to.take();
        // One encoding in the common case: split only a state that does not fit whole.
        let (seq, hlc) = self.next_header(now);
        let whole = self.encode(
            seq,
            hlc,
            Body::FullSync {
                to,
                dseq: self.dseq,
                part: 0,
                parts: 1,
                state: &self.state,
            },
        );
        if self.fits(&whole) {
            return self.push_encoded(whole);
        }
        let pieces = match self.fit(&self.state) {
            Ok(pieces) => pieces,
            Err(e) => return self.unsendable(e),
        };
        let parts = pieces.len() as u32;
        for (part, piece) in pieces.iter().enumerate() {
            let (seq, hlc) = self.next_header(now);
            let body = Body::FullSync {
                to,
                dseq: self.dseq,
                part: part as u32,
                parts,
                state: piece.as_ref().unwrap_or(&self.state),
            };
            let encoded = self.encode(seq, hlc, body);
            self.push_encoded(encoded);
        }
    }

    pub(super) fn request_received(
        &mut self,
        from: SourceId,
        to: Option<SourceId>,
        hops: u8,
        request: R,
        now: Now,
    ) {
        if self.config.mode == SyncMode::Distributed {
            return;
        }
        if self.leading.is_some() && to.is_none_or(|t| t == self.me) {
            self.events.push_back(Event::Request { from, request });
        } else if to == Some(self.me) {
            // Addressed to a former leader: pass it on, a bounded number of times (two
            // replicas that each believe the other leads would otherwise bounce it
            // between them for as long as their views disagree). Past the bound it
            // waits here until a leader is announced.
            match self.other_leader() {
                Some(leader) if hops < MAX_REQUEST_HOPS => {
                    self.pass_request(leader, hops + 1, &request, now);
                }
                _ => self.queue_request(request),
            }
        }
    }
}
