//! Application requests in leader mode: forwarded to the leader, passed on a bounded
//! number of times by a former leader, and queued while no leader is known.

use std::collections::VecDeque;

use super::validate::MAX_SEQ;
use super::Replica;
use crate::bundle::{Bundle, Request};
use crate::wire::Body;
use crate::{DecodeError, Event, Now, SourceId, SyncMode};

/// How many requests wait for a leader at most; beyond, the oldest are dropped
/// (and counted), so a group that never elects one cannot grow a replica without bound.
const MAX_QUEUED_REQUESTS: usize = 1_024;

/// How many times a request is passed on from one former leader to the next.
const MAX_REQUEST_HOPS: u8 = 2;

/// Requests waiting for a leader, oldest first, at most [`MAX_QUEUED_REQUESTS`].
#[derive(Debug)]
pub(super) struct RequestQueue<R> {
    waiting: VecDeque<R>,
}

impl<R> Default for RequestQueue<R> {
    fn default() -> Self {
        RequestQueue {
            waiting: VecDeque::new(),
        }
    }
}

impl<R> RequestQueue<R> {
    /// Keeps `request`; whether the oldest had to be dropped to make room.
    pub(super) fn push(&mut self, request: R) -> bool {
        let full = self.waiting.len() >= MAX_QUEUED_REQUESTS;
        if full {
            self.waiting.pop_front();
        }
        self.waiting.push_back(request);
        full
    }

    /// The oldest request, taken.
    pub(super) fn pop(&mut self) -> Option<R> {
        self.waiting.pop_front()
    }
}

impl<S: Bundle, R: Request> Replica<S, R> {
    /// Whether `request` fits in one message wherever it may travel: encoded in the
    /// largest envelope it can take (the highest sequence number and time, addressed,
    /// passed on the most times), within [`Config::max_message_bytes`](crate::Config).
    ///
    /// # Errors
    ///
    /// [`DecodeError::TooLarge`] when it does not fit, or the codec's error when it
    /// cannot be encoded at all.
    pub(super) fn check_request_fits(&self, request: &R) -> Result<(), DecodeError> {
        let body = Body::Request {
            to: Some(self.me),
            hops: MAX_REQUEST_HOPS,
            request,
        };
        let (_, encoded) = self.encode(MAX_SEQ, u64::MAX, body);
        let len = encoded?.len();
        let max = self.config.max_message_bytes;
        if len > max {
            return Err(DecodeError::TooLarge { len, max });
        }
        Ok(())
    }

    /// A request made here, by a replica that does not lead: to the leader if one is
    /// known, else queued until one is.
    pub(super) fn forward_request(&mut self, request: R, now: Now) {
        match self.other_leader() {
            Some(leader) => self.send_request(leader, &request, now),
            None => self.queue_request(request),
        }
    }

    /// Sends a request made here to `leader`.
    pub(super) fn send_request(&mut self, leader: SourceId, request: &R, now: Now) {
        self.pass_request(leader, 0, request, now);
    }

    /// Sends a request on to `leader`, passed on `hops` times already.
    fn pass_request(&mut self, leader: SourceId, hops: u8, request: &R, now: Now) {
        let body = Body::Request {
            to: Some(leader),
            hops,
            request,
        };
        self.send(body, now);
    }

    /// Keeps a request until a leader is known.
    pub(super) fn queue_request(&mut self, request: R) {
        if self.requests.push(request) {
            self.stats.requests_dropped += 1;
            tracing::warn!(source = %self.me, "no leader known: oldest queued request dropped");
        }
    }

    /// This replica leads now: the queued requests surface here.
    pub(super) fn surface_queued_requests(&mut self) {
        while let Some(request) = self.requests.pop() {
            self.events.push_back(Event::Request {
                from: self.me,
                request,
            });
        }
    }

    /// `leader` was announced: the queued requests go to it.
    pub(super) fn send_queued_requests(&mut self, leader: SourceId, now: Now) {
        while let Some(request) = self.requests.pop() {
            self.send_request(leader, &request, now);
        }
    }

    /// A request from a peer: it surfaces here if this replica leads and it is for
    /// this replica (or for any leader); one addressed to this replica as a former
    /// leader is passed on.
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
        if self.leadership.leading.is_some() && to.is_none_or(|t| t == self.me) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_its_oldest() {
        let mut queue = RequestQueue::default();
        for i in 0..MAX_QUEUED_REQUESTS {
            assert!(!queue.push(i));
        }
        assert!(queue.push(MAX_QUEUED_REQUESTS), "full: the oldest goes");
        assert_eq!(queue.pop(), Some(1));
        let mut rest = 0;
        while queue.pop().is_some() {
            rest += 1;
        }
        assert_eq!(rest, MAX_QUEUED_REQUESTS - 1);
    }
}
