//! Leader mode: claiming, renewing, releasing and losing the lease; fencing by term.

use super::authority::AuthorityLink;
use super::{Replica, State};
use crate::authority::AuthorityAnswer;
use crate::bundle::{Bundle, Request};
use crate::stamp::MAX_TERM;
use crate::wire::Body;
use crate::{Event, LeadershipLoss, Lease, LeaseConfig, LeaseWatch, Now, SourceId, SyncMode};

/// A leader announced in an event: who holds the lease (`None` once released), in
/// which term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Announced {
    pub(super) leader: Option<SourceId>,
    pub(super) term: u64,
}

/// What a replica knows and does about the lease: the term it leads, the newest term
/// heard of, the leader last announced, when it may claim, its view of the lease's
/// timing, and its conversation with the lease authority.
#[derive(Debug)]
pub(super) struct Leadership {
    /// The term this replica acts as leader in.
    pub(super) leading: Option<u64>,
    /// The highest term seen in any record or message.
    pub(super) known_term: u64,
    /// The leader last announced in an event.
    announced: Option<Announced>,
    /// The end of the join grace (local monotonic ms): no claim before it, to hear
    /// from a live leader first.
    pub(super) joined_until: u64,
    /// No retry of a claim the authority refused before this (reset by news of the
    /// lease).
    pub(super) claim_retry_at: u64,
    /// The lease record's timing as observed here.
    pub(super) watch: LeaseWatch,
    /// The conversation with the lease authority, if there is one.
    pub(super) authority: Option<AuthorityLink>,
}

impl Leadership {
    /// Not leading, nothing heard, no authority.
    pub(super) fn new(lease: LeaseConfig) -> Self {
        Leadership {
            leading: None,
            known_term: 0,
            announced: None,
            joined_until: 0,
            claim_retry_at: 0,
            watch: LeaseWatch::new(lease),
            authority: None,
        }
    }

    /// Remembers `term` if it is the highest heard of; returns the term this replica
    /// leads if that one is now over.
    pub(super) fn hear_term(&mut self, term: u64) -> Option<u64> {
        if term <= self.known_term {
            return None;
        }
        self.known_term = term;
        self.leading.filter(|t| *t < term)
    }

    /// The term a claim asks for: newer than the lease record and every term heard of.
    pub(super) fn next_term(&self, lease: Option<&Lease>) -> u64 {
        let lease = lease.map_or(0, |l| l.term);
        lease.max(self.known_term).saturating_add(1)
    }

    /// The leader `lease` names, if it was not announced yet: remembered as announced.
    pub(super) fn announce(&mut self, lease: Option<Lease>) -> Option<Announced> {
        let current = lease.map(|l| Announced {
            leader: (!l.released).then_some(l.holder),
            term: l.term,
        });
        if current.is_none() || current == self.announced {
            return None;
        }
        self.announced = current;
        current
    }
}

impl<S: Bundle, R: Request> Replica<S, R> {
    /// Before an input: a leader whose renew deadline passed, or whose authority grant
    /// is about to run out unrenewed, stops acting before it handles anything.
    pub(super) fn lease_validate(&mut self, now: Now) {
        let Some(term) = self.leadership.leading else {
            return;
        };
        if !self
            .leadership
            .watch
            .is_leader(self.state.lease.as_ref(), self.me, now.mono_ms)
        {
            self.lose(term, LeadershipLoss::RenewDeadline, now);
        } else if let Some(link) = self.leadership.authority.as_ref() {
            if link.until(term).is_none_or(|until| now.mono_ms >= until) {
                self.authority_gone(term, now);
            }
        }
    }

    /// Claims, renews or gives up the lease as time requires.
    pub(super) fn lease_tick(&mut self, now: Now) {
        if self.config.mode != SyncMode::Leader || self.left {
            return;
        }
        let t = now.mono_ms;
        let lease = self.state.lease;
        // `observe_input_time` validated the lease for this input already (same `now`); a merge since
        // then that superseded us went through `lease_changed`.
        if let Some(term) = self.leadership.leading {
            if t >= self.leadership.watch.renew_at() {
                self.renew(term, now);
            }
            return;
        }
        if self.claim_at().is_some_and(|at| t >= at)
            && self.leadership.watch.is_free(lease.as_ref(), t)
        {
            self.claim(now);
        }
    }

    /// When a follower may claim: once the lease is free (never held, released, or
    /// expired as observed here), after the join grace, and after a stagger of
    /// `max_delay` per live peer with a lower id that may claim by then, so that
    /// without faults the lowest id claims alone and the others hear its claim before
    /// their turn.
    ///
    /// A peer counts only if it may claim by then: first heard a join grace earlier,
    /// or by the end of this replica's own join grace (replicas that start together
    /// stagger among themselves). One that joined later is still listening and will
    /// not claim, so waiting for it would only delay the hand-over. Nor does a peer
    /// count that fell silent before the lease fell free: a live peer is heard at
    /// least every heartbeat interval, so one not heard for a heartbeat interval and
    /// a message's delay is most likely gone, and waiting for it until its peer
    /// timeout would delay the hand-over by a step for each peer that died lately.
    /// If it is only slow, both claim, and the lease's merge (or the authority)
    /// keeps one.
    fn claim_at(&self) -> Option<u64> {
        let lease = self.state.lease.as_ref();
        let free_at = match lease {
            None => 0,
            Some(l) if l.released => self.leadership.watch.changed_at_ms(),
            Some(_) => self.leadership.watch.free_at(lease)?,
        };
        let base = free_at.max(self.leadership.joined_until);
        // The holder whose lease ran out does not count: it is likely the one gone.
        let holder = lease.map(|l| l.holder);
        let silent_for = self
            .config
            .heartbeat_interval_ms
            .saturating_add(self.config.lease.max_delay_ms);
        let rank = self
            .peers
            .ids_heard(
                base.saturating_sub(self.join_grace_ms())
                    .max(self.leadership.joined_until),
                base.saturating_sub(silent_for),
            )
            .filter(|id| *id < self.me && Some(*id) != holder)
            .count() as u64;
        let stagger = rank.saturating_mul(self.config.lease.max_delay_ms);
        Some(
            base.saturating_add(stagger)
                .max(self.leadership.claim_retry_at),
        )
    }

    /// The next moment the lease needs attention.
    pub(super) fn lease_deadline(&self) -> Option<u64> {
        if self.config.mode != SyncMode::Leader {
            return None;
        }
        if let Some(term) = self.leadership.leading {
            let until = self
                .leadership
                .authority
                .as_ref()
                .and_then(|link| link.until(term))
                .unwrap_or(u64::MAX);
            return Some(
                self.leadership
                    .watch
                    .renew_at()
                    .min(self.leadership.watch.renew_deadline_at())
                    .min(until),
            );
        }
        self.claim_at()
    }

    fn claim(&mut self, now: Now) {
        let term = self.next_term();
        if term > MAX_TERM {
            tracing::warn!(source = %self.me, "every lease term is spent; no claim");
            self.leadership.claim_retry_at = u64::MAX;
            return;
        }
        let duration_ms = self.config.lease.duration_ms;
        if let Some(link) = self.leadership.authority.as_mut() {
            // Leads once granted; asks again after a renew interval if no answer came.
            link.acquire(term, duration_ms, now.mono_ms);
            self.leadership.claim_retry_at = now
                .mono_ms
                .saturating_add(self.config.lease.renew_interval_ms);
            return;
        }
        self.lead(term, now);
    }

    /// The term a claim asks for: newer than the lease record and every term heard of.
    fn next_term(&self) -> u64 {
        self.leadership.next_term(self.state.lease.as_ref())
    }

    /// Starts leading `term`.
    fn lead(&mut self, term: u64, now: Now) {
        let mut next = Lease::acquire(
            self.state.lease.as_ref(),
            self.me,
            self.config.lease.duration_ms,
        );
        next.term = term;
        tracing::debug!(source = %self.me, term, "lease claimed");
        self.leadership.leading = Some(term);
        self.events.push_back(Event::LeadershipGained { term });
        self.publish_lease(next, now);
        // Requests queued while no leader was known are ours to handle now.
        self.surface_queued_requests();
    }

    fn renew(&mut self, term: u64, now: Now) {
        let Some(lease) = self.state.lease else {
            return;
        };
        if let Some(link) = self.leadership.authority.as_mut() {
            // Its own duration: the record's may have come from a corrupted peer.
            link.renew(term, self.config.lease.duration_ms, now.mono_ms);
        }
        match self
            .leadership
            .watch
            .try_renew(&lease, self.me, now.mono_ms)
        {
            Ok(next) => self.publish_lease(next, now),
            Err(_) => self.lose(term, LeadershipLoss::RenewDeadline, now),
        }
    }

    /// An answer of the lease authority.
    pub(super) fn authority_answer(&mut self, answer: AuthorityAnswer, now: Now) {
        if self.config.mode != SyncMode::Leader {
            return;
        }
        let Some(link) = self.leadership.authority.as_ref() else {
            return;
        };
        match answer {
            AuthorityAnswer::Granted {
                ask,
                term,
                valid_ms,
            } => {
                // An answer times from its own ask, and only for the term asked.
                let asked = ask.and_then(|a| link.asked(a)).filter(|a| a.term == term);
                let margin = self.config.lease.max_delay_ms;
                let until = match valid_ms {
                    None => Some(u64::MAX),
                    Some(d) => asked.map(|a| a.at_ms.saturating_add(d.saturating_sub(margin))),
                };
                self.granted(term, until, ask, asked.is_some_and(|a| a.renew), now);
            }
            AuthorityAnswer::Refused { ask, term, holder } => {
                let asked = ask.and_then(|a| link.asked(a));
                // A refusal of an ask made before the grant held began (delayed, or
                // duplicated) says nothing about that grant.
                let current = link.is_current(ask);
                tracing::debug!(source = %self.me, term, ?holder, current, "authority refused");
                self.heard_term(term.min(MAX_TERM), now);
                match self.leadership.leading {
                    Some(leading) => {
                        if holder != Some(self.me)
                            && current
                            && asked.is_none_or(|a| a.term == leading)
                        {
                            self.authority_gone(leading, now);
                        }
                    }
                    None => {
                        // Held elsewhere, or the term was spent (by a replica no one
                        // heard): the next claim asks for a newer term, after a renew
                        // interval.
                        self.leadership.claim_retry_at = now
                            .mono_ms
                            .saturating_add(self.config.lease.renew_interval_ms);
                    }
                }
            }
            AuthorityAnswer::Lost { term } => {
                if let Some(link) = self.leadership.authority.as_mut() {
                    link.lost(term);
                }
                if self.leadership.leading == Some(term) {
                    self.authority_gone(term, now);
                }
            }
        }
    }

    /// The grant of `term` is gone (refused, lost, or run out unrenewed): the holder
    /// stops, and releases the lease record so that a successor claims at once rather
    /// than after it expires.
    fn authority_gone(&mut self, term: u64, now: Now) {
        self.step_down(LeadershipLoss::AuthorityRefused, now);
        if self.leadership.leading == Some(term) {
            self.lose(term, LeadershipLoss::AuthorityRefused, now);
        }
    }

    /// The authority granted `term` until `until` (local monotonic ms; `None` when the
    /// ask is not remembered, so the grant cannot be timed).
    fn granted(
        &mut self,
        term: u64,
        until: Option<u64>,
        ask: Option<u64>,
        renewal: bool,
        now: Now,
    ) {
        let duration_ms = self.config.lease.duration_ms;
        let next = self.next_term();
        let Some(link) = self.leadership.authority.as_mut() else {
            return;
        };
        if link.is_stale(term) {
            // A late or duplicated grant of a term this replica gave up or lost, or has
            // asked past: the authority has moved on (another replica, or this one in
            // the newer term, may hold it).
            tracing::debug!(source = %self.me, term, "stale grant ignored");
            return;
        }
        if term > MAX_TERM {
            // No write could carry it: leading it would hold the lock and do nothing.
            tracing::warn!(source = %self.me, term, "granted a term above MAX_TERM; handed back");
            link.hand_back(term);
            return;
        }
        if self.leadership.leading == Some(term) {
            if let Some(until) = until {
                link.hold(term, until, ask);
            }
            return;
        }
        if renewal || self.leadership.leading.is_some() {
            // A late answer to a renewal of a term no longer led, or a grant of another
            // term while leading one: nothing to act on.
            return;
        }
        match until {
            Some(until) if until > now.mono_ms => {
                // The authority grants a term to one replica only, so hearing of the
                // term itself is no news (it told a refused claimant who holds it);
                // a newer term, or a record of this term by someone else, is.
                let record = self.state.lease.filter(|l| l.holder != self.me);
                if term < self.leadership.known_term || record.is_some_and(|l| l.term >= term) {
                    // The lease is ours but the term is spent: move it to a newer one.
                    link.hold(term, until, ask);
                    if next <= MAX_TERM {
                        link.acquire(next, duration_ms, now.mono_ms);
                    }
                    return;
                }
                link.hold(term, until, ask);
                self.lead(term, now);
            }
            // Timed but unasked, or run out already: ask again at once.
            _ => {
                let next = next.max(term);
                if next <= MAX_TERM {
                    link.acquire(next, duration_ms, now.mono_ms);
                    self.leadership.claim_retry_at = now
                        .mono_ms
                        .saturating_add(self.config.lease.renew_interval_ms);
                }
            }
        }
    }

    /// Merges this replica's own new lease record and sends it.
    fn publish_lease(&mut self, lease: Lease, now: Now) {
        self.leadership.watch.observe(Some(&lease), now.mono_ms);
        self.leadership.known_term = self.leadership.known_term.max(lease.term);
        self.merge_state(&State::of_lease(lease), self.me, now);
        let body = Body::Lease {
            dseq: self.outbox.next_dseq(),
            lease,
        };
        self.send(body, now);
    }

    fn lose(&mut self, term: u64, reason: LeadershipLoss, now: Now) {
        // A replica that does not lead holds no grant: a successor need not wait for
        // it to run out (or, for a lock, forever).
        if let Some(link) = self.leadership.authority.as_mut() {
            link.release_held();
            link.spend(term);
        }
        if self.leadership.leading.take().is_none() {
            return;
        }
        tracing::debug!(source = %self.me, term, ?reason, "leadership lost");
        self.events
            .push_back(Event::LeadershipLost { term, reason });
        // Writes made while leading still go out: they carry our term.
        self.flush(now);
    }

    /// After any change of the lease record: observe it, fence, announce.
    pub(super) fn lease_changed(&mut self, now: Now) {
        let lease = self.state.lease;
        self.leadership.claim_retry_at = 0;
        self.leadership.watch.observe(lease.as_ref(), now.mono_ms);
        if let Some(l) = lease {
            self.leadership.known_term = self.leadership.known_term.max(l.term);
            if let Some(term) = self.leadership.leading {
                if !(l.is_held_by(self.me) && l.term == term) {
                    let reason = if l.holder == self.me && l.released {
                        LeadershipLoss::Released
                    } else {
                        LeadershipLoss::Superseded {
                            by: l.holder,
                            term: l.term,
                        }
                    };
                    self.lose(term, reason, now);
                }
            }
        }
        if let Some(Announced { leader, term }) = self.leadership.announce(lease) {
            self.events.push_back(Event::LeaderChanged { leader, term });
            if let Some(leader) = leader.filter(|l| *l != self.me) {
                self.send_queued_requests(leader, now);
            }
        }
    }

    /// After a sleep: the holder stops acting until it holds a fresh grant; everyone's
    /// view of the lease restarts, so no one takes over on stale observations.
    pub(super) fn lease_woke(&mut self, now: Now) {
        if self.config.mode != SyncMode::Leader {
            return;
        }
        if let Some(term) = self.leadership.leading {
            self.lose(term, LeadershipLoss::Slept, now);
        }
        if let Some(link) = self.leadership.authority.as_mut() {
            link.forget_asks();
        }
        self.leadership.watch.restart(now.mono_ms);
    }

    /// Leaving: a holder releases, so a successor takes over on the next message.
    pub(super) fn leave_lease(&mut self, now: Now) {
        self.step_down(LeadershipLoss::Released, now);
    }

    /// The holder releases the lease for `reason`, so that a successor (or itself, in
    /// a new term) claims at once.
    pub(super) fn step_down(&mut self, reason: LeadershipLoss, now: Now) {
        let Some(term) = self.leadership.leading else {
            return;
        };
        if let Some(lease) = self.state.lease {
            if let Some(link) = self.leadership.authority.as_mut() {
                link.release(term);
            }
            if let Ok(released) = self.leadership.watch.release(&lease, self.me, now.mono_ms) {
                self.leadership.leading = None;
                self.events
                    .push_back(Event::LeadershipLost { term, reason });
                self.publish_lease(released, now);
            }
        }
    }

    /// A term was heard of (in a message, a refusal, a stamp): remember the highest,
    /// and stop leading an older one. Every write carries the term its writer leads, so
    /// a leader whose term is over must not write again.
    pub(super) fn heard_term(&mut self, term: u64, now: Now) {
        if let Some(leading) = self.leadership.hear_term(term) {
            self.lose(leading, LeadershipLoss::NewerTerm { term }, now);
        }
    }

    /// A peer said goodbye: if it held the lease and its release was lost, release on
    /// its behalf (the record is the one it would have sent), so a successor need not
    /// wait for expiry.
    pub(super) fn holder_left(&mut self, from: SourceId, now: Now) {
        if let Some(lease) = self.state.lease {
            if lease.is_held_by(from) {
                self.merge_state(&State::of_lease(lease.released()), from, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leadership() -> Leadership {
        Leadership::new(LeaseConfig::default())
    }

    fn lease(holder: u128, term: u64, released: bool) -> Lease {
        Lease {
            term,
            released,
            ..Lease::acquire(None, SourceId::from_u128(holder), 300)
        }
    }

    #[test]
    fn a_newer_term_ends_the_term_led() {
        let mut l = leadership();
        assert_eq!(l.hear_term(3), None, "not leading");
        assert_eq!(l.known_term, 3);
        l.leading = Some(3);
        assert_eq!(l.hear_term(3), None, "the same term is no news");
        assert_eq!(l.hear_term(2), None, "an older one neither");
        assert_eq!(l.hear_term(4), Some(3));
        assert_eq!(l.known_term, 4);
    }

    #[test]
    fn a_claim_asks_past_every_term_known() {
        let mut l = leadership();
        assert_eq!(l.next_term(None), 1);
        l.hear_term(5);
        assert_eq!(l.next_term(Some(&lease(1, 2, false))), 6);
        assert_eq!(l.next_term(Some(&lease(1, 9, false))), 10);
    }

    #[test]
    fn each_leader_is_announced_once() {
        let mut l = leadership();
        assert_eq!(l.announce(None), None);
        let a = lease(1, 1, false);
        let leader = Some(SourceId::from_u128(1));
        assert_eq!(l.announce(Some(a)), Some(Announced { leader, term: 1 }));
        assert_eq!(l.announce(Some(a.renewed())), None, "a renewal is no news");
        assert_eq!(l.announce(None), None);
        assert_eq!(
            l.announce(Some(a.released())),
            Some(Announced {
                leader: None,
                term: 1
            }),
            "a release announces no leader"
        );
    }
}
