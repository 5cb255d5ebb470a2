//! Syncs: asking peers for their whole state, and answering such requests with ours
//! (in parts when it does not fit in one message), at a bounded rate.

use super::{Replica, State};
use crate::bundle::{Bundle, Request};
use crate::wire::Body;
use crate::{Now, SourceId};

/// The full-state answers this replica owes: when the next is due, to whom, and when
/// the last went out (answers are at least `sync_answer_interval_ms` apart).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SyncAnswers {
    /// When the next answer goes out (local monotonic ms).
    due: Option<u64>,
    /// Who it answers; `None` for an answer to several (or to an open request).
    to: Option<SourceId>,
    /// When the last answer went out.
    last: Option<u64>,
}

impl SyncAnswers {
    /// Schedules an answer to `from`: now, or `interval_ms` after the last one. One
    /// answer serves every request that arrives before it goes out; it is then
    /// addressed to no one in particular.
    pub(super) fn schedule(&mut self, from: SourceId, now_ms: u64, interval_ms: u64) {
        let earliest = self.last.map_or(now_ms, |t| t.saturating_add(interval_ms));
        self.to = if self.due.is_some() { None } else { Some(from) };
        self.due = Some(earliest.max(now_ms));
    }

    /// When the next answer is due.
    pub(super) fn due(&self) -> Option<u64> {
        self.due
    }

    /// Whether an answer is due at `now_ms`.
    pub(super) fn is_due(&self, now_ms: u64) -> bool {
        self.due.is_some_and(|t| now_ms >= t)
    }

    /// An answer goes out at `now_ms`: whom it answers.
    pub(super) fn answering(&mut self, now_ms: u64) -> Option<SourceId> {
        self.due = None;
        self.last = Some(now_ms);
        self.to.take()
    }
}

impl<S: Bundle, R: Request> Replica<S, R> {
    /// Asks for a sync from every peer found missing deltas or disagreeing on the
    /// digest for long enough.
    pub(super) fn request_due_syncs(&mut self, now: Now) {
        while let Some(peer) = self.peers.sync_due(now.mono_ms, self.config.sync_retry_ms) {
            self.stats.syncs_requested += 1;
            self.send(Body::SyncRequest { to: Some(peer) }, now);
        }
    }

    /// A peer asked for a sync (from this replica, or from anyone): answer if it is
    /// this replica's to answer.
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
        self.answers
            .schedule(from, now.mono_ms, self.config.sync_answer_interval_ms);
    }

    /// Sends the whole state, in as many parts as the message limit needs.
    pub(super) fn answer_sync(&mut self, now: Now) {
        let to = self.answers.answering(now.mono_ms);
        self.stats.syncs_sent += 1;
        // One encoding in the common case: split only a state that does not fit whole.
        let (seq, hlc) = self.next_header(now);
        let whole = self.encode(
            seq,
            hlc,
            Body::FullSync {
                to,
                dseq: self.outbox.dseq(),
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
                dseq: self.outbox.dseq(),
                part: part as u32,
                parts,
                state: piece.as_ref().unwrap_or(&self.state),
            };
            let encoded = self.encode(seq, hlc, body);
            self.push_encoded(encoded);
        }
    }

    /// A full state from `from`, or part `part.0` of `part.1`, the first part sent as
    /// message `first_seq`.
    pub(super) fn receive_full_state(
        &mut self,
        from: SourceId,
        dseq: u64,
        first_seq: u64,
        (part, parts): (u32, u32),
        state: &State<S>,
        now: Now,
    ) {
        self.peers
            .full_state_part(from, dseq, first_seq, part, parts, now.mono_ms);
        self.merge_state(state, from, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SourceId = SourceId::from_u128(1);
    const B: SourceId = SourceId::from_u128(2);

    #[test]
    fn the_first_answer_goes_out_at_once_to_the_asker() {
        let mut answers = SyncAnswers::default();
        assert!(!answers.is_due(u64::MAX));
        answers.schedule(A, 100, 1_000);
        assert_eq!(answers.due(), Some(100));
        assert!(answers.is_due(100));
        assert_eq!(answers.answering(100), Some(A));
        assert_eq!(answers.due(), None);
    }

    #[test]
    fn one_answer_serves_every_request_before_it_and_answers_are_spaced() {
        let mut answers = SyncAnswers::default();
        answers.schedule(A, 100, 1_000);
        let _ = answers.answering(100);
        answers.schedule(A, 300, 1_000);
        assert_eq!(answers.due(), Some(1_100), "an interval after the last");
        answers.schedule(B, 400, 1_000);
        assert_eq!(answers.due(), Some(1_100));
        assert!(!answers.is_due(1_099));
        assert_eq!(answers.answering(1_100), None, "to no one in particular");
        answers.schedule(B, 5_000, 1_000);
        assert_eq!(answers.due(), Some(5_000), "long after the last: at once");
    }
}
