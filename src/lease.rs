//! The leader lease: the record replicas agree on, and each replica's local view of time.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::{Merge, Merged, SourceId};

/// The leader-mode record: who holds the lease, in which term, how often renewed.
///
/// Ordered by `(term, renew_seq, holder)`, never by wall time, and merged by taking the
/// greater record, so every replica agrees on the latest record whatever order the
/// messages came in. The term grows by one on every acquisition and is the fencing
/// token: a replica keeps the highest term it has seen, a leader that hears of a newer
/// term stops acting at once, and every write carries its writer's term in its version
/// (see [`Writer::with_term`](crate::Writer::with_term)), so a write of an older term
/// never outranks one of a newer term, whatever order they arrive in.
///
/// A record says nothing about *when* it expires: each replica measures that on its
/// own monotonic clock with a [`LeaseWatch`]. A released record (`released`) is free at
/// once; the next holder takes term + 1.
///
/// ```
/// use replisync::{Lease, Merge, SourceId};
///
/// let (a, b) = (SourceId::from_u128(1), SourceId::from_u128(2));
/// let first = Lease::acquire(None, a, 3_000);
/// assert_eq!(first.term, 1);
/// let renewed = first.renewed();
/// let released = renewed.released();
/// let second = Lease::acquire(Some(&released), b, 3_000);
/// assert_eq!((second.term, second.holder), (2, b));
///
/// let mut view = Some(first);
/// let _ = view.merge(&Some(second));
/// let _ = view.merge(&Some(renewed)); // late and older: ignored
/// assert_eq!(view, Some(second));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Lease {
    /// Grows by one on each acquisition; the fencing token.
    pub term: u64,
    /// Grows by one on each renewal (and on the release) within a term.
    pub renew_seq: u64,
    /// The replica that holds (or, once released, held) the lease.
    pub holder: SourceId,
    /// Set by the holder's release: the lease is free for term + 1.
    pub released: bool,
    /// How long the holder claims it for, in ms, as followers measure it locally (each
    /// follower trusts it only within its own lease timings: see
    /// [`LeaseWatch::trusted_duration_ms`]).
    pub duration_ms: u64,
}

impl Lease {
    /// The record of `holder` acquiring the lease after `current` (term + 1).
    ///
    /// This only builds the record: whether the lease may be taken is the
    /// [`LeaseWatch`]'s question (or a lease authority's).
    pub fn acquire(current: Option<&Lease>, holder: SourceId, duration_ms: u64) -> Lease {
        Lease {
            term: current.map_or(0, |l| l.term).saturating_add(1),
            renew_seq: 0,
            holder,
            released: false,
            duration_ms,
        }
    }

    /// The holder's renewal: the same term, the next sequence number.
    pub fn renewed(&self) -> Lease {
        Lease {
            renew_seq: self.renew_seq.saturating_add(1),
            ..*self
        }
    }

    /// The holder's release: the next sequence number, marked free.
    pub fn released(&self) -> Lease {
        Lease {
            renew_seq: self.renew_seq.saturating_add(1),
            released: true,
            ..*self
        }
    }

    /// Whether `who` holds this record (and has not released it).
    pub fn is_held_by(&self, who: SourceId) -> bool {
        !self.released && self.holder == who
    }

    fn key(&self) -> (u64, u64, SourceId) {
        (self.term, self.renew_seq, self.holder)
    }
}

impl Merge for Lease {
    fn merge(&mut self, other: &Self) -> Merged {
        if *other > *self {
            let conflict = other.key() == self.key();
            *self = *other;
            if conflict {
                Merged::CHANGED.with_conflict()
            } else {
                Merged::CHANGED
            }
        } else if *other < *self && other.key() == self.key() {
            Merged::NONE.with_conflict()
        } else {
            Merged::NONE
        }
    }

    /// A lease record holds no register stamps (its term is checked on its own).
    fn visit_stamps(&self, _visit: &mut dyn FnMut(&crate::Stamp)) {}
}

/// The lease timings, validated as client-go validates its leader election:
/// `duration > renew_deadline > 1.2 × renew_interval`, and
/// `max_delay < duration - renew_deadline`.
///
/// - `duration_ms`: how long a lease lasts after its last renewal, as followers measure
///   it on their own monotonic clocks.
/// - `renew_deadline_ms`: the holder stops acting as leader this long after its last
///   successful renewal. Shorter than the duration, so the holder has stopped before
///   any follower can think the lease expired.
/// - `renew_interval_ms`: how often the holder renews (about a third of the duration).
/// - `max_delay_ms`: how late a renewal may arrive; followers wait
///   `duration + max_delay` with no renewal observed before taking over.
///
/// ```
/// use replisync::{LeaseConfig, LeaseConfigError};
///
/// let config = LeaseConfig {
///     duration_ms: 3_000,
///     renew_deadline_ms: 2_000,
///     renew_interval_ms: 1_000,
///     max_delay_ms: 500,
/// };
/// assert_eq!(config.validated(), Ok(LeaseConfig::default()));
/// let too_slow = LeaseConfig { renew_interval_ms: 1_700, ..config };
/// assert!(matches!(
///     too_slow.validated(),
///     Err(LeaseConfigError::RenewIntervalTooLong { .. })
/// ));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct LeaseConfig {
    /// How long a lease lasts after its last renewal, as followers measure it.
    pub duration_ms: u64,
    /// The holder stops acting as leader this long after its last renewal.
    pub renew_deadline_ms: u64,
    /// How often the holder renews.
    pub renew_interval_ms: u64,
    /// How late a renewal may arrive.
    pub max_delay_ms: u64,
}

impl Default for LeaseConfig {
    /// 3 s leases, a 2 s renew deadline, renewals every second, 500 ms allowed delay.
    fn default() -> Self {
        LeaseConfig {
            duration_ms: 3_000,
            renew_deadline_ms: 2_000,
            renew_interval_ms: 1_000,
            max_delay_ms: 500,
        }
    }
}

impl LeaseConfig {
    /// These timings, if they keep the rules.
    ///
    /// # Errors
    ///
    /// A [`LeaseConfigError`] naming the rule broken.
    pub fn validated(self) -> Result<Self, LeaseConfigError> {
        let LeaseConfig {
            duration_ms,
            renew_deadline_ms,
            renew_interval_ms,
            max_delay_ms,
        } = self;
        if renew_interval_ms == 0 {
            return Err(LeaseConfigError::ZeroRenewInterval);
        }
        if duration_ms <= renew_deadline_ms {
            return Err(LeaseConfigError::DeadlineNotBelowDuration {
                duration_ms,
                renew_deadline_ms,
            });
        }
        // renew_deadline > 1.2 × renew_interval, in integers.
        if renew_deadline_ms.saturating_mul(5) <= renew_interval_ms.saturating_mul(6) {
            return Err(LeaseConfigError::RenewIntervalTooLong {
                renew_deadline_ms,
                renew_interval_ms,
            });
        }
        if max_delay_ms >= duration_ms - renew_deadline_ms {
            return Err(LeaseConfigError::DelayTooLong {
                max_delay_ms,
                slack_ms: duration_ms - renew_deadline_ms,
            });
        }
        Ok(self)
    }
}

/// Lease timings that break `duration > renew_deadline > 1.2 × renew_interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseConfigError {
    /// The renew interval was zero.
    ZeroRenewInterval,
    /// The renew deadline was not shorter than the duration.
    DeadlineNotBelowDuration {
        /// The duration given.
        duration_ms: u64,
        /// The deadline given.
        renew_deadline_ms: u64,
    },
    /// The allowed message delay was not shorter than `duration - renew_deadline`: a
    /// holder with a lease authority stops this long before its grant runs out, and
    /// would have no time left to lead.
    DelayTooLong {
        /// The delay given.
        max_delay_ms: u64,
        /// `duration - renew_deadline`, which it must stay below.
        slack_ms: u64,
    },
    /// The renew deadline left no room for a retry (it must exceed 1.2 × the interval).
    RenewIntervalTooLong {
        /// The deadline given.
        renew_deadline_ms: u64,
        /// The interval given.
        renew_interval_ms: u64,
    },
}

impl fmt::Display for LeaseConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseConfigError::ZeroRenewInterval => {
                write!(f, "the lease renew interval must be above zero")
            }
            LeaseConfigError::DeadlineNotBelowDuration {
                duration_ms,
                renew_deadline_ms,
            } => write!(
                f,
                "the renew deadline ({renew_deadline_ms} ms) must be shorter than the lease \
                 duration ({duration_ms} ms), or followers may take over while the holder still acts"
            ),
            LeaseConfigError::DelayTooLong {
                max_delay_ms,
                slack_ms,
            } => write!(
                f,
                "the allowed delay ({max_delay_ms} ms) must be shorter than duration - renew \
                 deadline ({slack_ms} ms); lengthen the lease or shorten the delay"
            ),
            LeaseConfigError::RenewIntervalTooLong {
                renew_deadline_ms,
                renew_interval_ms,
            } => write!(
                f,
                "the renew deadline ({renew_deadline_ms} ms) must exceed 1.2 x the renew interval \
                 ({renew_interval_ms} ms); renew more often or raise the deadline"
            ),
        }
    }
}

impl std::error::Error for LeaseConfigError {}

/// Why a lease operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseError {
    /// Another replica holds the lease and it has not expired as observed here.
    Held {
        /// The holder.
        holder: SourceId,
        /// Its term.
        term: u64,
        /// Milliseconds of local monotonic time until it counts as expired.
        remaining_ms: u64,
    },
    /// Only the holder may renew or release, and this replica is not it.
    NotHolder {
        /// The holder of the latest record, if any.
        holder: Option<SourceId>,
    },
    /// The holder missed its renew deadline; it must acquire again (a new term) once
    /// the lease is free.
    PastRenewDeadline {
        /// The term it held.
        term: u64,
    },
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseError::Held {
                holder,
                term,
                remaining_ms,
            } => write!(
                f,
                "the lease is held by {holder} in term {term}; it expires here in {remaining_ms} ms without a renewal"
            ),
            LeaseError::NotHolder { holder: Some(h) } => {
                write!(f, "only the holder ({h}) may renew or release the lease")
            }
            LeaseError::NotHolder { holder: None } => {
                write!(f, "no one holds the lease; acquire it first")
            }
            LeaseError::PastRenewDeadline { term } => write!(
                f,
                "the renew deadline of term {term} has passed; acquire the lease again once it is free"
            ),
        }
    }
}

impl std::error::Error for LeaseError {}

/// One replica's view of the lease in time, on its own monotonic clock.
///
/// It remembers when the lease record last *changed* as observed here (a new term or a
/// renewal arriving, or this replica's own acquire or renew). From that:
/// - a follower counts the lease expired after `duration + max_delay` with no change
///   observed, never by comparing another machine's clock (client-go's rule);
/// - the holder acts as leader only until `renew_deadline` after its last renewal, and
///   renews every `renew_interval`.
///
/// ```
/// use replisync::{Lease, LeaseConfig, LeaseWatch, SourceId};
///
/// let (a, b) = (SourceId::from_u128(1), SourceId::from_u128(2));
/// let mut at_a = LeaseWatch::new(LeaseConfig::default());
/// let mut at_b = LeaseWatch::new(LeaseConfig::default());
///
/// let lease = at_a.try_acquire(None, a, 0).unwrap();
/// at_b.observe(Some(&lease), 10);
/// assert!(at_a.is_leader(Some(&lease), a, 1_999));
/// assert!(!at_a.is_leader(Some(&lease), a, 2_000), "past the renew deadline");
/// assert!(at_b.try_acquire(Some(&lease), b, 3_000).is_err());
/// let next = at_b.try_acquire(Some(&lease), b, 3_510).unwrap(); // 3 000 + 500 after seen
/// assert_eq!(next.term, 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseWatch {
    config: LeaseConfig,
    seen: Option<Lease>,
    changed_at_ms: u64,
}

impl LeaseWatch {
    /// A watch that has seen no lease yet.
    pub fn new(config: LeaseConfig) -> Self {
        LeaseWatch {
            config,
            seen: None,
            changed_at_ms: 0,
        }
    }

    /// The timings.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Takes in the current record at local monotonic time `now_ms`; a record of
    /// another term, renewal or holder than the last one seen restarts the clocks (one
    /// that differs only in other fields, as a corrupted copy would, does not).
    pub fn observe(&mut self, lease: Option<&Lease>, now_ms: u64) {
        if let Some(l) = lease {
            if self.is_seen(l) {
                // The same record, or one a corrupted peer re-sent under its key with
                // other fields (a conflict, not a renewal): no news of the holder.
                self.seen = Some(*l);
                return;
            }
            self.seen = Some(*l);
            self.changed_at_ms = now_ms;
        }
    }

    /// Whether `lease` is the record last seen: the same key (term, renewal, holder)
    /// and release.
    fn is_seen(&self, lease: &Lease) -> bool {
        self.seen
            .is_some_and(|s| s.key() == lease.key() && s.released == lease.released)
    }

    /// Forgets when the record last changed, as after a sleep: the lease counts as
    /// freshly seen at `now_ms`, so followers wait a whole duration again before taking
    /// over, and the holder must renew before acting.
    pub fn restart(&mut self, now_ms: u64) {
        self.changed_at_ms = now_ms;
    }

    /// When the record last changed as observed here (local monotonic ms).
    pub fn changed_at_ms(&self) -> u64 {
        self.changed_at_ms
    }

    /// When `lease` expires as observed here: its duration after it last changed, plus
    /// the allowed delay. The duration a record states is trusted only within this
    /// replica's own timings, from its renew deadline to its own duration: a record
    /// from a corrupted or misconfigured peer cannot keep the group waiting longer than
    /// this replica's configuration says (nor make it take over before a holder of the
    /// same configuration has missed a renewal).
    fn expires_at(&self, lease: &Lease) -> u64 {
        self.changed_at_ms
            .saturating_add(self.trusted_duration_ms(lease))
            .saturating_add(self.config.max_delay_ms)
    }

    /// A record's duration, bounded by this replica's own timings (see `expires_at`).
    pub fn trusted_duration_ms(&self, lease: &Lease) -> u64 {
        lease
            .duration_ms
            .clamp(self.config.renew_deadline_ms, self.config.duration_ms)
    }

    /// Whether the lease is free to take at `now_ms`: never held, released, or expired
    /// as observed here.
    pub fn is_free(&self, lease: Option<&Lease>, now_ms: u64) -> bool {
        match lease {
            None => true,
            Some(l) if l.released => true,
            Some(l) => self.is_seen(l) && now_ms >= self.expires_at(l),
        }
    }

    /// When (local monotonic ms) a follower may next try to take the lease: `None` when
    /// it is free now or has not been observed.
    pub fn free_at(&self, lease: Option<&Lease>) -> Option<u64> {
        match lease {
            Some(l) if !l.released && self.is_seen(l) => Some(self.expires_at(l)),
            _ => None,
        }
    }

    /// Whether `me` may act as leader at `now_ms`: it holds the latest record and its
    /// last renewal is less than the renew deadline old.
    pub fn is_leader(&self, lease: Option<&Lease>, me: SourceId, now_ms: u64) -> bool {
        match lease {
            Some(l) if l.is_held_by(me) && self.is_seen(l) => now_ms < self.renew_deadline_at(),
            _ => false,
        }
    }

    /// When (local monotonic ms) the holder should renew next.
    pub fn renew_at(&self) -> u64 {
        self.changed_at_ms
            .saturating_add(self.config.renew_interval_ms)
    }

    /// When (local monotonic ms) the holder's renew deadline falls.
    pub fn renew_deadline_at(&self) -> u64 {
        self.changed_at_ms
            .saturating_add(self.config.renew_deadline_ms)
    }

    /// Takes the lease for `me` at `now_ms` when it is free (or already `me`'s, within
    /// its renew deadline: then this renews). The returned record is observed here.
    ///
    /// # Errors
    ///
    /// [`LeaseError::Held`] while another holder's lease has not expired as observed here;
    /// [`LeaseError::PastRenewDeadline`] is never returned here: a holder past its
    /// deadline takes a new term like anyone else once the lease is free.
    pub fn try_acquire(
        &mut self,
        lease: Option<&Lease>,
        me: SourceId,
        now_ms: u64,
    ) -> Result<Lease, LeaseError> {
        if let Some(l) = lease {
            if self.is_leader(lease, me, now_ms) {
                return self.try_renew(l, me, now_ms);
            }
        }
        self.observe(lease, now_ms);
        if let Some(l) = lease.filter(|_| !self.is_free(lease, now_ms)) {
            return Err(LeaseError::Held {
                holder: l.holder,
                term: l.term,
                remaining_ms: self.expires_at(l).saturating_sub(now_ms),
            });
        }
        let next = Lease::acquire(lease, me, self.config.duration_ms);
        self.observe(Some(&next), now_ms);
        Ok(next)
    }

    /// Renews `me`'s lease at `now_ms`. The returned record is observed here.
    ///
    /// # Errors
    ///
    /// [`LeaseError::NotHolder`] when `me` does not hold `lease`;
    /// [`LeaseError::PastRenewDeadline`] when its renew deadline has passed.
    pub fn try_renew(
        &mut self,
        lease: &Lease,
        me: SourceId,
        now_ms: u64,
    ) -> Result<Lease, LeaseError> {
        if !lease.is_held_by(me) {
            return Err(LeaseError::NotHolder {
                holder: (!lease.released).then_some(lease.holder),
            });
        }
        if !self.is_leader(Some(lease), me, now_ms) {
            return Err(LeaseError::PastRenewDeadline { term: lease.term });
        }
        // The holder's own timings, never what the record came to say: a record a
        // corrupted peer re-sent under the same key may have won the merge.
        let next = Lease {
            duration_ms: self.config.duration_ms,
            ..lease.renewed()
        };
        self.observe(Some(&next), now_ms);
        Ok(next)
    }

    /// Releases `me`'s lease so that another replica can take it at once.
    ///
    /// # Errors
    ///
    /// [`LeaseError::NotHolder`] when `me` does not hold `lease`.
    pub fn release(
        &mut self,
        lease: &Lease,
        me: SourceId,
        now_ms: u64,
    ) -> Result<Lease, LeaseError> {
        if !lease.is_held_by(me) {
            return Err(LeaseError::NotHolder {
                holder: (!lease.released).then_some(lease.holder),
            });
        }
        let next = lease.released();
        self.observe(Some(&next), now_ms);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SourceId = SourceId::from_u128(1);
    const B: SourceId = SourceId::from_u128(2);

    fn watch() -> LeaseWatch {
        LeaseWatch::new(LeaseConfig::default())
    }

    #[test]
    fn acquire_only_when_free_or_expired_as_observed() {
        let (mut wa, mut wb) = (watch(), watch());
        let l1 = wa.try_acquire(None, A, 0).unwrap();
        assert_eq!((l1.term, l1.holder), (1, A));
        // B first sees the record late, at 2 500: its own clock starts then.
        wb.observe(Some(&l1), 2_500);
        let err = wb.try_acquire(Some(&l1), B, 5_999).unwrap_err();
        assert_eq!(
            err,
            LeaseError::Held {
                holder: A,
                term: 1,
                remaining_ms: 1
            }
        );
        let l2 = wb.try_acquire(Some(&l1), B, 6_000).unwrap();
        assert_eq!((l2.term, l2.holder, l2.renew_seq), (2, B, 0));
    }

    #[test]
    fn unobserved_record_is_never_expired() {
        let mut wb = watch();
        let l1 = Lease::acquire(None, A, 3_000);
        // try_acquire observes first: the clock starts now, not at some earlier time.
        assert!(wb.try_acquire(Some(&l1), B, 1_000_000).is_err());
        assert!(wb.try_acquire(Some(&l1), B, 1_003_500).is_ok());
    }

    #[test]
    fn renewals_reset_the_follower_clock() {
        let (mut wa, mut wb) = (watch(), watch());
        let mut l = wa.try_acquire(None, A, 0).unwrap();
        wb.observe(Some(&l), 0);
        for t in (1_000..=10_000).step_by(1_000) {
            l = wa.try_renew(&l, A, t).unwrap();
            wb.observe(Some(&l), t);
            assert!(!wb.is_free(Some(&l), t + 3_499));
        }
        assert_eq!(l.term, 1);
        assert_eq!(l.renew_seq, 10);
        assert!(wb.is_free(Some(&l), 13_500));
    }

    #[test]
    fn renew_deadline_falls_before_any_follower_can_take_over() {
        let config = LeaseConfig::default();
        let mut wa = watch();
        let l = wa.try_acquire(None, A, 100).unwrap();
        assert!(wa.is_leader(Some(&l), A, 100 + config.renew_deadline_ms - 1));
        assert!(!wa.is_leader(Some(&l), A, 100 + config.renew_deadline_ms));
        assert!(config.renew_deadline_ms < config.duration_ms);
        assert_eq!(
            wa.try_renew(&l, A, 100 + config.renew_deadline_ms),
            Err(LeaseError::PastRenewDeadline { term: 1 })
        );
        assert_eq!(wa.renew_at(), 100 + config.renew_interval_ms);
    }

    #[test]
    fn release_frees_at_once_and_the_term_grows() {
        let (mut wa, mut wb) = (watch(), watch());
        let l1 = wa.try_acquire(None, A, 0).unwrap();
        wb.observe(Some(&l1), 0);
        let r = wa.release(&l1, A, 10).unwrap();
        assert!(!wa.is_leader(Some(&r), A, 10));
        wb.observe(Some(&r), 11);
        let l2 = wb.try_acquire(Some(&r), B, 11).unwrap();
        assert_eq!((l2.term, l2.holder), (2, B));
        assert!(r < l2);
    }

    #[test]
    fn only_the_holder_renews_or_releases() {
        let mut wa = watch();
        let l = wa.try_acquire(None, A, 0).unwrap();
        let mut wb = watch();
        assert_eq!(
            wb.try_renew(&l, B, 1),
            Err(LeaseError::NotHolder { holder: Some(A) })
        );
        assert!(wb.release(&l, B, 1).is_err());
        let released = wa.release(&l, A, 2).unwrap();
        assert_eq!(
            wa.try_renew(&released, A, 3),
            Err(LeaseError::NotHolder { holder: None })
        );
    }

    #[test]
    fn acquiring_ones_own_live_lease_renews_it() {
        let mut wa = watch();
        let l = wa.try_acquire(None, A, 0).unwrap();
        let again = wa.try_acquire(Some(&l), A, 500).unwrap();
        assert_eq!((again.term, again.renew_seq), (1, 1));
    }

    #[test]
    fn config_rules_match_client_go() {
        assert_eq!(
            LeaseConfig {
                duration_ms: 2_000,
                renew_deadline_ms: 2_000,
                renew_interval_ms: 500,
                max_delay_ms: 0
            }
            .validated(),
            Err(LeaseConfigError::DeadlineNotBelowDuration {
                duration_ms: 2_000,
                renew_deadline_ms: 2_000
            })
        );
        // 1.2 × 1 000 = 1 200: a deadline of exactly 1 200 is too short.
        assert!(LeaseConfig {
            duration_ms: 3_000,
            renew_deadline_ms: 1_200,
            renew_interval_ms: 1_000,
            max_delay_ms: 0
        }
        .validated()
        .is_err());
        assert!(LeaseConfig {
            duration_ms: 3_000,
            renew_deadline_ms: 1_201,
            renew_interval_ms: 1_000,
            max_delay_ms: 0
        }
        .validated()
        .is_ok());
        assert_eq!(
            LeaseConfig {
                duration_ms: 3_000,
                renew_deadline_ms: 2_000,
                renew_interval_ms: 0,
                max_delay_ms: 0
            }
            .validated(),
            Err(LeaseConfigError::ZeroRenewInterval)
        );
        assert_eq!(
            LeaseConfig {
                duration_ms: 3_000,
                renew_deadline_ms: 2_000,
                renew_interval_ms: 1_000,
                max_delay_ms: 1_000
            }
            .validated(),
            Err(LeaseConfigError::DelayTooLong {
                max_delay_ms: 1_000,
                slack_ms: 1_000
            })
        );
        let msg = LeaseConfig {
            duration_ms: 3_000,
            renew_deadline_ms: 1_000,
            renew_interval_ms: 1_000,
            max_delay_ms: 0,
        }
        .validated()
        .unwrap_err()
        .to_string();
        assert!(msg.contains("1.2 x"), "{msg}");
    }

    #[test]
    fn conflicting_records_under_one_key_are_counted() {
        let a = Lease::acquire(None, A, 3_000);
        let b = Lease {
            duration_ms: 9_000,
            ..a
        };
        let mut x = a;
        let mx = x.merge(&b);
        let mut y = b;
        let my = y.merge(&a);
        assert_eq!(x, y);
        assert_eq!((mx.conflicts(), my.conflicts()), (1, 1));
    }
}
