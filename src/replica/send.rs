//! Sending: flushing coalesced deltas, persisting, encoding envelopes.

use super::persist::{self, Stored, COMPACT_FACTOR};
use super::validate::MAX_PARTS;
use super::{Replica, State};
use crate::bundle::{Bundle, Request};
use crate::wire::{Body, Envelope, SCHEMA_VERSION};
use crate::Persist;
use crate::{DecodeError, Degradation, Event, Merge, Now, SourceId};

/// How many requests wait for a leader at most; beyond, the oldest are dropped
/// (and counted), so a group that never elects one cannot grow a replica without bound.
const MAX_QUEUED_REQUESTS: usize = 1_024;

/// Room left in a message for the envelope around a state: the header fields, the
/// body's own fields and the integrity check, with JSON's field names (under 300
/// bytes in practice).
pub(super) const ENVELOPE_ROOM: usize = 512;

/// A message's kind and its encoding.
pub(super) type Encoded = (&'static str, Result<Vec<u8>, DecodeError>);

impl<S: Bundle, R: Request> Replica<S, R> {
    pub(super) fn mark_dirty(&mut self, now: Now) {
        self.persist_dirty = true;
        if self.flush_at.is_none() {
            self.flush_at = Some(now.mono_ms.saturating_add(self.config.flush_interval_ms));
        }
    }

    pub(super) fn queue_delta(&mut self, delta: State<S>, now: Now) {
        match &mut self.pending {
            Some(p) => {
                let _ = p.merge(&delta);
            }
            None => self.pending = Some(delta),
        }
        self.mark_dirty(now);
    }

    /// Sends the coalesced delta (in several deltas if it does not fit in one message)
    /// and persists the state.
    pub(super) fn flush(&mut self, now: Now) {
        self.flush_at = None;
        if let Some(delta) = self.pending.take() {
            // One encoding in the common case: split only what does not fit whole.
            let (seq, hlc) = self.next_header(now);
            let dseq = self.dseq + 1;
            let whole = self.encode(
                seq,
                hlc,
                Body::Delta {
                    dseq,
                    state: &delta,
                },
            );
            if self.fits(&whole) {
                self.dseq = dseq;
                self.push_encoded(whole);
            } else {
                self.send_delta_pieces(&delta, now);
            }
        }
        if self.persist_dirty && !self.store_blocked {
            self.persist_dirty = false;
            self.persist_changes();
        }
    }

    /// Whether an encoded message is within the limit.
    pub(super) fn fits(&self, (_, encoded): &Encoded) -> bool {
        encoded
            .as_ref()
            .is_ok_and(|bytes| bytes.len() <= self.config.max_message_bytes)
    }

    /// A delta too large for one message, as several deltas.
    fn send_delta_pieces(&mut self, delta: &State<S>, now: Now) {
        match self.fit(delta) {
            Ok(pieces) => {
                for piece in &pieces {
                    self.dseq += 1;
                    let body = Body::Delta {
                        dseq: self.dseq,
                        state: piece.as_ref().unwrap_or(delta),
                    };
                    self.send(body, now);
                }
            }
            Err(e) => self.unsendable(e),
        }
    }

    /// Hands the store what changed since the last persist: a delta to append, or,
    /// once the appended deltas outgrow the base (or the log needs rewriting), the
    /// whole state to compact onto.
    fn persist_changes(&mut self) {
        let delta = self.persist_delta.take();
        let compact = self.compaction_due();
        let state = match (&delta, compact) {
            (_, true) => &self.state,
            (Some(delta), false) => delta,
            (None, false) => return,
        };
        let stored = Stored {
            schema: SCHEMA_VERSION,
            updated_at: self.hlc.last_ms(),
            source: self.me,
            state,
        };
        let codec = self.config.store_codec;
        match codec.encode_framed(&stored) {
            Ok(framed) => {
                let bytes = persist::record(codec, framed);
                let next = if compact {
                    self.store_base = bytes.len();
                    self.store_appended = 0;
                    self.compact_next = false;
                    Persist::Compact(bytes)
                } else {
                    self.store_appended = self.store_appended.saturating_add(bytes.len());
                    Persist::Append(bytes)
                };
                self.persist = Some(match self.persist.take() {
                    Some(earlier) => earlier.then(next),
                    None => next,
                });
                self.persist_failing = false;
            }
            Err(e) => {
                // What was not written goes with the whole state, once it encodes.
                self.compact_next = true;
                tracing::warn!(source = %self.me, error = %e, "state not persisted");
                if !self.persist_failing {
                    self.persist_failing = true;
                    self.events.push_back(Event::Degraded {
                        reason: Degradation::PersistFailed(e),
                    });
                }
            }
        }
    }

    /// Whether the next persist writes the whole state: nothing is stored yet, the log
    /// must be rewritten, or the appended deltas outgrew the base.
    pub(super) fn compaction_due(&self) -> bool {
        self.compact_next
            || self.store_base == 0
            || self.store_appended > COMPACT_FACTOR.saturating_mul(self.store_base)
    }

    /// `state` in pieces that each fit in one message with room for the envelope:
    /// `[None]` when it fits whole, else pieces split by [`Merge::split`], each a state
    /// of its own.
    ///
    /// # Errors
    ///
    /// The state cannot be encoded, or holds a register too large for a message alone.
    pub(super) fn fit(&self, state: &State<S>) -> Result<Vec<Option<State<S>>>, DecodeError> {
        let budget = self.config.max_message_bytes.saturating_sub(ENVELOPE_ROOM);
        let len = self.config.wire_codec.encode(state)?.len();
        if len <= budget {
            return Ok(vec![None]);
        }
        let mut fitted = Vec::new();
        self.split_to_fit(state, len, budget, &mut fitted)?;
        if fitted.len() > MAX_PARTS as usize {
            return Err(DecodeError::TooLarge {
                len,
                max: self.config.max_message_bytes,
            });
        }
        Ok(fitted.into_iter().map(Some).collect())
    }

    fn split_to_fit(
        &self,
        state: &State<S>,
        len: usize,
        budget: usize,
        fitted: &mut Vec<State<S>>,
    ) -> Result<(), DecodeError> {
        let pieces = state.split(len.div_ceil(budget.max(1)).saturating_add(1));
        if pieces.len() <= 1 {
            return Err(DecodeError::TooLarge {
                len: len.saturating_add(ENVELOPE_ROOM),
                max: self.config.max_message_bytes,
            });
        }
        for piece in pieces {
            let len = self.config.wire_codec.encode(&piece)?.len();
            if len <= budget {
                fitted.push(piece);
            } else {
                self.split_to_fit(&piece, len, budget, fitted)?;
            }
        }
        Ok(())
    }

    /// A state could not be sent: say so (it stays here, and a later sync may carry it
    /// once the limit is raised).
    pub(super) fn unsendable(&mut self, e: DecodeError) {
        tracing::warn!(source = %self.me, error = %e, "state not sent");
        self.events.push_back(Event::Degraded {
            reason: Degradation::Unsendable(e),
        });
    }

    pub(super) fn send_request(&mut self, leader: SourceId, request: &R, now: Now) {
        self.pass_request(leader, 0, request, now);
    }

    /// Sends a request on to `leader`, passed on `hops` times already.
    pub(super) fn pass_request(&mut self, leader: SourceId, hops: u8, request: &R, now: Now) {
        let body = Body::Request {
            to: Some(leader),
            hops,
            request,
        };
        self.send(body, now);
    }

    /// Encodes `body` in the next envelope and queues it for broadcast.
    pub(super) fn send(&mut self, body: Body<&State<S>, &R>, now: Now) {
        let (seq, hlc) = self.next_header(now);
        let encoded = self.encode(seq, hlc, body);
        self.push_encoded(encoded);
    }

    /// The sequence number and time of the next message.
    pub(super) fn next_header(&mut self, now: Now) -> (u64, u64) {
        self.seq += 1;
        (self.seq, self.hlc.now(now.wall_ms))
    }

    pub(super) fn encode(&self, seq: u64, hlc: u64, body: Body<&State<S>, &R>) -> Encoded {
        let kind = body.kind();
        let envelope = Envelope {
            schema: SCHEMA_VERSION,
            sender: self.me,
            incarnation: self.incarnation,
            seq,
            hlc,
            term: self.known_term,
            body,
        };
        (kind, self.config.wire_codec.encode_framed(&envelope))
    }

    pub(super) fn push_encoded(&mut self, (kind, encoded): Encoded) {
        match encoded {
            Ok(bytes) => {
                tracing::trace!(source = %self.me, kind, len = bytes.len(), "send");
                self.stats.messages_out += 1;
                self.stats.bytes_out += bytes.len() as u64;
                self.transmit.push_back(bytes);
            }
            Err(e) => tracing::warn!(source = %self.me, kind, error = %e, "message not encodable"),
        }
    }

    /// Keeps a request until a leader is known.
    pub(super) fn queue_request(&mut self, request: R) {
        if self.queued_requests.len() >= MAX_QUEUED_REQUESTS {
            self.queued_requests.pop_front();
            self.stats.requests_dropped += 1;
            tracing::warn!(source = %self.me, "no leader known: oldest queued request dropped");
        }
        self.queued_requests.push_back(request);
    }
}
