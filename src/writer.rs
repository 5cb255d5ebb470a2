//! Minting stamps for local writes.

use core::fmt;

use crate::stamp::{MAX_TERM, MAX_VERSION, TERM_SHIFT};
use crate::{Hlc, SourceId, Stamp};

/// Mints the [`Stamp`] of each local write: one more than the highest version seen for
/// the register, a time from the [`Hlc`], and this replica's source.
///
/// Made by [`Hlc::writer`] for one moment in time and borrowed by every write method
/// ([`Lww::write`](crate::Lww::write), [`LwwMap::write_insert`](crate::LwwMap::write_insert), …).
///
/// In leader mode, [`Writer::with_term`] puts the lease term in the version's high
/// bits: the first write of term `t` to a register gets version `t << 32 | 1`, so it
/// outranks every write of an older term whatever order replicas see them in, and
/// every write carries exactly its writer's term, never a newer one it only heard of.
/// A write that cannot be stamped so (the register already holds a newer term's write,
/// or its versions are used up) fails: it returns the bottom and [`Writer::error`] says
/// why.
///
/// ```
/// use replisync::{Hlc, Lww, SourceId};
///
/// let mut hlc = Hlc::default();
/// let me = SourceId::from_u128(7);
/// let mut reg = Lww::new();
/// let mut w = hlc.writer(me, 1_000);
/// reg.set("a", &mut w);
/// reg.set("b", &mut w);
/// assert_eq!(reg.stamp().version, 2);
/// assert_eq!(reg.stamp().source, me);
///
/// let mut w = hlc.writer(me, 1_001).with_term(3);
/// reg.set("c", &mut w);
/// assert_eq!(reg.stamp().version, (3 << 32) | 1);
/// assert_eq!(reg.stamp().term(), 3);
/// ```
#[derive(Debug)]
pub struct Writer<'a> {
    hlc: &'a mut Hlc,
    source: SourceId,
    wall_ms: u64,
    term: u64,
    error: Option<StampError>,
    /// Every stamp this writer minted, in order: [`Replica::write`](crate::Replica::write)
    /// checks that the delta holds exactly these.
    minted: Vec<Stamp>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(hlc: &'a mut Hlc, source: SourceId, wall_ms: u64) -> Self {
        Writer {
            hlc,
            source,
            wall_ms,
            term: 0,
            error: None,
            minted: Vec::new(),
        }
    }

    /// Writes from now on carry lease term `term` in their versions' high bits.
    ///
    /// A term above [`MAX_TERM`] cannot be carried: every write of this writer then
    /// fails (see [`Writer::error`]).
    pub fn with_term(mut self, term: u64) -> Self {
        self.term = term;
        if term > MAX_TERM {
            self.error.get_or_insert(StampError::TermTooLarge { term });
        }
        self
    }

    /// The source this writer stamps with.
    pub fn source(&self) -> SourceId {
        self.source
    }

    /// The term this writer stamps with (0 outside leader mode).
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Why a write of this writer failed, if one did. A failed write returns the bottom
    /// (an empty delta that merges as nothing), so nothing of it is applied anywhere;
    /// [`Replica::write`](crate::Replica::write) refuses the whole write then.
    pub fn error(&self) -> Option<&StampError> {
        self.error.as_ref()
    }

    /// Every stamp this writer has minted so far, in order.
    pub fn minted(&self) -> &[Stamp] {
        &self.minted
    }

    /// Forgets one minted `stamp`, replaced in the delta by a later write of the same
    /// call to the same register.
    pub(crate) fn supersede(&mut self, stamp: &Stamp) {
        if let Some(i) = self.minted.iter().position(|m| m == stamp) {
            self.minted.swap_remove(i);
        }
    }

    /// The stamp for a write to a register whose current stamp is `prev`: greater than
    /// `prev`, and in leader mode carrying exactly this writer's term.
    ///
    /// When no such stamp exists, the result is [`Stamp::ZERO`] and the reason is kept
    /// in [`Writer::error`]: `prev` carries a newer term than this writer's (the writer
    /// was deposed; its write must not outrank the newer term's), the term's
    /// 2^32 versions of this register are used up, or the version would pass
    /// [`MAX_VERSION`].
    pub fn next_stamp(&mut self, prev: &Stamp) -> Stamp {
        if self.error.is_some() {
            return Stamp::ZERO;
        }
        match self.next_version(prev) {
            Ok(version) => {
                let updated_at = self.hlc.now(self.wall_ms).max(prev.updated_at);
                self.hlc.restore(updated_at);
                let stamp = Stamp::new(version, updated_at, self.source);
                self.minted.push(stamp);
                stamp
            }
            Err(e) => {
                self.error = Some(e);
                Stamp::ZERO
            }
        }
    }

    fn next_version(&self, prev: &Stamp) -> Result<u64, StampError> {
        let next = prev
            .version
            .checked_add(1)
            .filter(|v| *v <= MAX_VERSION)
            .ok_or(StampError::VersionsExhausted { term: self.term });
        if self.term == 0 {
            return next;
        }
        match prev.term().cmp(&self.term) {
            core::cmp::Ordering::Less => Ok((self.term << TERM_SHIFT) | 1),
            core::cmp::Ordering::Equal => next.and_then(|v| {
                if v >> TERM_SHIFT == self.term {
                    Ok(v)
                } else {
                    Err(StampError::VersionsExhausted { term: self.term })
                }
            }),
            core::cmp::Ordering::Greater => Err(StampError::NewerTerm {
                term: self.term,
                newer: prev.term(),
            }),
        }
    }
}

/// Why a [`Writer`] could not stamp a write.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StampError {
    /// The register holds a write of a newer term than the writer's: the writer is no
    /// longer the leader, and its write would not count.
    NewerTerm {
        /// The writer's term.
        term: u64,
        /// The term of the register's write.
        newer: u64,
    },
    /// The register has used every version it can within this term (2^32 writes), or
    /// every version there is.
    VersionsExhausted {
        /// The writer's term (0 outside leader mode).
        term: u64,
    },
    /// The term does not fit a version's high bits.
    TermTooLarge {
        /// The term asked for.
        term: u64,
    },
}

impl fmt::Display for StampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StampError::NewerTerm { term, newer } => write!(
                f,
                "the register holds a write of term {newer}, newer than this writer's term {term}: \
                 a newer leader exists; send a request to it instead"
            ),
            StampError::VersionsExhausted { term: 0 } => write!(
                f,
                "the register has used every version there is (2^63 writes)"
            ),
            StampError::VersionsExhausted { term } => write!(
                f,
                "the register has used all 2^32 versions of term {term}; \
                 the leader must take a new term before writing it again"
            ),
            StampError::TermTooLarge { term } => write!(
                f,
                "term {term} is above the greatest term a version can carry ({MAX_TERM})"
            ),
        }
    }
}

impl std::error::Error for StampError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stamp_beats_what_it_saw() {
        let mut hlc = Hlc::default();
        let other = Stamp::new(41, 9_000, SourceId::from_u128(u128::MAX));
        let mut w = hlc.writer(SourceId::from_u128(1), 1_000);
        let s = w.next_stamp(&other);
        assert!(s > other);
        assert_eq!(s.version, 42);
        assert_eq!(s.updated_at, 9_000, "never behind a time it has seen");
        assert_eq!(hlc.last_ms(), 9_000);
    }

    #[test]
    fn term_floor_outranks_older_terms() {
        let mut hlc = Hlc::default();
        let old = Stamp::new((2 << TERM_SHIFT) + 500, 5_000, SourceId::from_u128(9));
        let s = hlc
            .writer(SourceId::from_u128(1), 10)
            .with_term(3)
            .next_stamp(&old);
        assert_eq!(s.version, (3 << TERM_SHIFT) | 1);
        assert!(s > old);
    }

    #[test]
    fn a_deposed_leader_cannot_outrank_the_newer_term() {
        // Defect: the write took the register's version + 1, and with it term 2.
        let mut hlc = Hlc::default();
        let newer = Stamp::new((2 << TERM_SHIFT) | 1, 5_000, SourceId::from_u128(2));
        let mut w = hlc.writer(SourceId::from_u128(1), 10).with_term(1);
        assert_eq!(w.next_stamp(&newer), Stamp::ZERO);
        assert_eq!(
            w.error(),
            Some(&StampError::NewerTerm { term: 1, newer: 2 })
        );
    }

    #[test]
    fn a_term_that_does_not_fit_the_version_fails_instead_of_wrapping() {
        // Defect: term 2^32 wrapped to version 1 and lost to a term-1 write.
        let mut hlc = Hlc::default();
        let mut w = hlc.writer(SourceId::from_u128(1), 10).with_term(1 << 32);
        assert_eq!(w.next_stamp(&Stamp::ZERO), Stamp::ZERO);
        assert!(matches!(w.error(), Some(StampError::TermTooLarge { .. })));
        let mut w = hlc.writer(SourceId::from_u128(1), 10).with_term(MAX_TERM);
        let s = w.next_stamp(&Stamp::ZERO);
        assert_eq!(s.term(), MAX_TERM);
        assert!(w.error().is_none());
    }

    #[test]
    fn versions_never_stand_still_or_spill_into_the_next_term() {
        // Defect: at u64::MAX the saturating add gave a stamp no greater than its
        // predecessor, and the write was silently lost.
        let mut hlc = Hlc::default();
        let me = SourceId::from_u128(1);
        let top = Stamp::new(MAX_VERSION, 1, SourceId::from_u128(9));
        let mut w = hlc.writer(me, 10);
        assert_eq!(w.next_stamp(&top), Stamp::ZERO);
        assert_eq!(w.error(), Some(&StampError::VersionsExhausted { term: 0 }));
        let beyond = Stamp::new(u64::MAX, 1, SourceId::from_u128(9));
        assert_eq!(hlc.writer(me, 10).next_stamp(&beyond), Stamp::ZERO);

        let full_term = Stamp::new((3 << TERM_SHIFT) | 0xffff_ffff, 1, me);
        let mut w = hlc.writer(me, 10).with_term(3);
        assert_eq!(w.next_stamp(&full_term), Stamp::ZERO, "term 4 is not ours");
        assert_eq!(w.error(), Some(&StampError::VersionsExhausted { term: 3 }));
    }

    #[test]
    fn one_failure_fails_every_later_write_of_the_writer() {
        let mut hlc = Hlc::default();
        let newer = Stamp::new(2 << TERM_SHIFT, 5, SourceId::from_u128(2));
        let mut w = hlc.writer(SourceId::from_u128(1), 10).with_term(1);
        let _ = w.next_stamp(&newer);
        assert_eq!(w.next_stamp(&Stamp::ZERO), Stamp::ZERO);
    }
}
