//! Minting stamps for local writes.

use crate::stamp::TERM_SHIFT;
use crate::{Hlc, SourceId, Stamp};

/// Mints the [`Stamp`] of each local write: one more than the highest version seen for
/// the register, a time from the [`Hlc`], and this replica's source.
///
/// Made by [`Hlc::writer`] for one moment in time and borrowed by every write method
/// ([`Lww::write`](crate::Lww::write), [`LwwMap::write_insert`](crate::LwwMap::write_insert), …).
///
/// In leader mode, [`Writer::with_term`] puts the lease term in the version's high
/// bits: the first write of term `t` to a register gets version `t << 32 | 1`, so it
/// outranks every write of an older term whatever order replicas see them in.
/// The replica hands a termed writer only to the current holder of the highest term it
/// knows, so a register never carries a newer term than the writer's.
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
}

impl<'a> Writer<'a> {
    pub(crate) fn new(hlc: &'a mut Hlc, source: SourceId, wall_ms: u64) -> Self {
        Writer {
            hlc,
            source,
            wall_ms,
            term: 0,
        }
    }

    /// Writes from now on carry lease term `term` in their versions' high bits.
    pub fn with_term(mut self, term: u64) -> Self {
        self.term = term;
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

    /// The stamp for a write to a register whose current stamp is `prev`.
    ///
    /// The result is always greater than `prev`.
    pub fn next_stamp(&mut self, prev: &Stamp) -> Stamp {
        let floor = self.term << TERM_SHIFT;
        let version = prev.version.saturating_add(1).max(floor | 1);
        let updated_at = self.hlc.now(self.wall_ms).max(prev.updated_at);
        self.hlc.restore(updated_at);
        Stamp::new(version, updated_at, self.source)
    }
}

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
}
