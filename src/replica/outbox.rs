//! The outbox: numbering messages, coalescing deltas and flushing them, heartbeats,
//! fitting states to the message limit, and encoding envelopes for the transport.

use std::collections::VecDeque;

use super::validate::MAX_PARTS;
use super::{Replica, State};
use crate::bundle::{Bundle, Request};
use crate::wire::{Body, Envelope, SCHEMA_VERSION};
use crate::{DecodeError, Degradation, Event, Merge, Now};

/// Room left in a message for the envelope around a state: the header fields, the
/// body's own fields and the integrity check, with JSON's field names (under 300
/// bytes in practice).
pub(super) const ENVELOPE_ROOM: usize = 512;

/// A message's kind and its encoding.
pub(super) type Encoded = (&'static str, Result<Vec<u8>, DecodeError>);

/// What goes out, and when: the message and delta sequence numbers, the delta
/// coalesced until the next flush, the next heartbeat, and the encoded messages
/// waiting for [`Replica::poll_transmit`].
#[derive(Debug)]
pub(super) struct Outbox<St> {
    /// The sequence number of the last message (every message takes the next).
    seq: u64,
    /// The delta sequence number of the last delta or lease record sent.
    dseq: u64,
    /// Local writes not sent yet, merged into one delta.
    pending: Option<St>,
    /// When the pending delta goes out (local monotonic ms).
    flush_at: Option<u64>,
    /// When the next heartbeat is due (local monotonic ms).
    heartbeat_at: u64,
    /// Encoded messages to broadcast, oldest first.
    transmit: VecDeque<Vec<u8>>,
}

impl<St> Default for Outbox<St> {
    fn default() -> Self {
        Outbox {
            seq: 0,
            dseq: 0,
            pending: None,
            flush_at: None,
            heartbeat_at: 0,
            transmit: VecDeque::new(),
        }
    }
}

impl<St: Merge> Outbox<St> {
    /// The sequence number for the next message.
    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The delta sequence number of the last delta or lease record sent.
    pub(super) fn dseq(&self) -> u64 {
        self.dseq
    }

    /// The delta sequence number for the next delta or lease record.
    pub(super) fn next_dseq(&mut self) -> u64 {
        self.dseq += 1;
        self.dseq
    }

    /// Adds a local delta to what the next flush sends.
    pub(super) fn coalesce(&mut self, delta: St) {
        match &mut self.pending {
            Some(p) => {
                let _ = p.merge(&delta);
            }
            None => self.pending = Some(delta),
        }
    }

    /// Flushes at `at`, unless a flush is due earlier already.
    pub(super) fn flush_by(&mut self, at: u64) {
        if self.flush_at.is_none() {
            self.flush_at = Some(at);
        }
    }

    /// When the next flush is due.
    pub(super) fn flush_at(&self) -> Option<u64> {
        self.flush_at
    }

    /// Whether a flush is due at `now_ms`.
    pub(super) fn flush_due(&self, now_ms: u64) -> bool {
        self.flush_at.is_some_and(|t| now_ms >= t)
    }

    /// Starts a flush: no flush is due any more, and the coalesced delta is handed out.
    pub(super) fn start_flush(&mut self) -> Option<St> {
        self.flush_at = None;
        self.pending.take()
    }

    /// When the next heartbeat is due.
    pub(super) fn heartbeat_at(&self) -> u64 {
        self.heartbeat_at
    }

    /// Heartbeats next at `at`.
    pub(super) fn set_heartbeat_at(&mut self, at: u64) {
        self.heartbeat_at = at;
    }

    /// Queues an encoded message for broadcast.
    pub(super) fn push(&mut self, bytes: Vec<u8>) {
        self.transmit.push_back(bytes);
    }

    /// The next message to broadcast.
    pub(super) fn pop(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }
}

impl<S: Bundle, R: Request> Replica<S, R> {
    /// Something changed: it goes to the store at the next flush, which is scheduled
    /// if none is.
    pub(super) fn mark_dirty(&mut self, now: Now) {
        self.persistence.mark_dirty();
        self.outbox
            .flush_by(now.mono_ms.saturating_add(self.config.flush_interval_ms));
    }

    /// A local write's delta, to be sent at the next flush (and persisted).
    pub(super) fn queue_delta(&mut self, delta: State<S>, now: Now) {
        self.outbox.coalesce(delta);
        self.mark_dirty(now);
    }

    /// Sends the coalesced delta (in several deltas if it does not fit in one message)
    /// and persists the state.
    pub(super) fn flush(&mut self, now: Now) {
        if let Some(delta) = self.outbox.start_flush() {
            // One encoding in the common case: split only what does not fit whole.
            let (seq, hlc) = self.next_header(now);
            let dseq = self.outbox.dseq() + 1;
            let whole = self.encode(
                seq,
                hlc,
                Body::Delta {
                    dseq,
                    state: &delta,
                },
            );
            if self.fits(&whole) {
                self.outbox.next_dseq();
                self.push_encoded(whole);
            } else {
                self.send_delta_pieces(&delta, now);
            }
        }
        if self.persistence.take_dirty() {
            self.persist_changes();
        }
    }

    /// Heartbeats if one is due: this replica's last delta number and state digest,
    /// so peers notice what they missed.
    pub(super) fn heartbeat_if_due(&mut self, now: Now) {
        if now.mono_ms < self.outbox.heartbeat_at() {
            return;
        }
        let digest = self.digest();
        self.send(
            Body::Heartbeat {
                dseq: self.outbox.dseq(),
                digest,
            },
            now,
        );
        self.outbox.set_heartbeat_at(
            now.mono_ms
                .saturating_add(self.config.heartbeat_interval_ms),
        );
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
                    let body = Body::Delta {
                        dseq: self.outbox.next_dseq(),
                        state: piece.as_ref().unwrap_or(delta),
                    };
                    self.send(body, now);
                }
            }
            Err(e) => self.unsendable(e),
        }
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

    /// Encodes `body` in the next envelope and queues it for broadcast.
    pub(super) fn send(&mut self, body: Body<&State<S>, &R>, now: Now) {
        let (seq, hlc) = self.next_header(now);
        let encoded = self.encode(seq, hlc, body);
        self.push_encoded(encoded);
    }

    /// The sequence number and time of the next message.
    pub(super) fn next_header(&mut self, now: Now) -> (u64, u64) {
        (self.outbox.next_seq(), self.hlc.now(now.wall_ms))
    }

    /// `body` in an envelope numbered `seq` and timed `hlc`, encoded with the wire
    /// codec.
    pub(super) fn encode(&self, seq: u64, hlc: u64, body: Body<&State<S>, &R>) -> Encoded {
        let kind = body.kind();
        let envelope = Envelope {
            schema: SCHEMA_VERSION,
            sender: self.me,
            incarnation: self.incarnation,
            seq,
            hlc,
            term: self.leadership.known_term,
            body,
        };
        (kind, self.config.wire_codec.encode_framed(&envelope))
    }

    /// Queues an encoded message for broadcast (one that failed to encode is logged
    /// and dropped).
    pub(super) fn push_encoded(&mut self, (kind, encoded): Encoded) {
        match encoded {
            Ok(bytes) if bytes.len() > self.config.max_message_bytes => {
                // Never sent: every peer would reject it. Deltas and full states are
                // split before they get here; what still does not fit is reported.
                self.unsendable(DecodeError::TooLarge {
                    len: bytes.len(),
                    max: self.config.max_message_bytes,
                });
            }
            Ok(bytes) => {
                tracing::trace!(source = %self.me, kind, len = bytes.len(), "send");
                self.stats.messages_out += 1;
                self.stats.bytes_out += bytes.len() as u64;
                self.outbox.push(bytes);
            }
            Err(e) => tracing::warn!(source = %self.me, kind, error = %e, "message not encodable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Lease, SourceId};

    fn lease(term: u64) -> Lease {
        Lease {
            term,
            ..Lease::acquire(None, SourceId::from_u128(1), 300)
        }
    }

    #[test]
    fn deltas_coalesce_until_the_flush() {
        let mut outbox = Outbox::default();
        outbox.coalesce(lease(2));
        outbox.coalesce(lease(5));
        outbox.coalesce(lease(3));
        assert_eq!(outbox.start_flush().map(|l| l.term), Some(5));
        assert_eq!(outbox.start_flush(), None, "handed out once");
    }

    #[test]
    fn the_first_flush_time_holds_until_it_flushes() {
        let mut outbox = Outbox::<Lease>::default();
        assert!(!outbox.flush_due(u64::MAX));
        outbox.flush_by(100);
        outbox.flush_by(50);
        outbox.flush_by(150);
        assert_eq!(outbox.flush_at(), Some(100));
        assert!(!outbox.flush_due(99));
        assert!(outbox.flush_due(100));
        let _ = outbox.start_flush();
        assert_eq!(outbox.flush_at(), None);
        outbox.flush_by(150);
        assert_eq!(outbox.flush_at(), Some(150));
    }

    #[test]
    fn sequence_numbers_count_up_from_one() {
        let mut outbox = Outbox::<Lease>::default();
        assert_eq!((outbox.next_seq(), outbox.next_seq()), (1, 2));
        assert_eq!(outbox.dseq(), 0);
        assert_eq!(outbox.next_dseq(), 1);
        assert_eq!(outbox.dseq(), 1);
    }

    #[test]
    fn messages_go_out_in_order() {
        let mut outbox = Outbox::<Lease>::default();
        outbox.push(vec![1]);
        outbox.push(vec![2]);
        assert_eq!(outbox.pop(), Some(vec![1]));
        assert_eq!(outbox.pop(), Some(vec![2]));
        assert_eq!(outbox.pop(), None);
    }
}
