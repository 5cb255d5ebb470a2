//! The last-writer-wins register.

use core::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::{Merge, Merged, Stamp, Writer};

/// A last-writer-wins register: a value (or none) under the [`Stamp`] of the write that
/// put it there. The greater stamp wins a merge.
///
/// The bottom (`Lww::new()`, `Default`) has [`Stamp::ZERO`] and no value. A register
/// can also be written empty with [`Lww::clear`]: that is a write like any other, with
/// a stamp, so a clear converges against concurrent sets (this is how
/// [`LwwMap`](crate::LwwMap) keeps tombstones).
///
/// Writes come in two forms: [`Lww::write`] leaves the register alone and returns the
/// delta (a register holding just the new write) to merge and send; [`Lww::set`] also
/// merges it in. Either way the delta is a state like any other: deltas merge into
/// each other and into states.
///
/// Merging needs `T: Ord` for one rare case only: two different values under one
/// identical stamp (a [conflict](crate::Merged::conflicts)) resolve to the greater
/// value on every replica.
///
/// ```
/// use replisync::{Hlc, Lww, Merge, SourceId};
///
/// let mut hlc = Hlc::default();
/// let a = SourceId::from_u128(1);
/// let mut reg: Lww<String> = Lww::new();
/// assert_eq!(reg.get(), None);
///
/// let delta = reg.set("hello".to_string(), &mut hlc.writer(a, 1_000));
/// assert_eq!(reg.get().map(String::as_str), Some("hello"));
///
/// // The delta brings a peer up to date.
/// let mut peer = Lww::new();
/// assert!(peer.merge(&delta).changed());
/// assert_eq!(peer, reg);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lww<T> {
    stamp: Stamp,
    value: Option<T>,
}

impl<T> Default for Lww<T> {
    fn default() -> Self {
        Lww::new()
    }
}

impl<T> Lww<T> {
    /// The bottom: never written.
    pub const fn new() -> Self {
        Lww {
            stamp: Stamp::ZERO,
            value: None,
        }
    }

    /// A register holding `value` under `stamp` (`None`: written empty), as read back
    /// from elsewhere.
    pub const fn from_parts(stamp: Stamp, value: Option<T>) -> Self {
        Lww { stamp, value }
    }

    /// The value, if the register holds one.
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// The stamp of the write the register holds ([`Stamp::ZERO`] when never written).
    pub fn stamp(&self) -> &Stamp {
        &self.stamp
    }

    /// Whether the register was never written (a clear is a write).
    pub fn is_bottom(&self) -> bool {
        self.stamp.is_zero()
    }

    /// The stamp and the value.
    pub fn into_parts(self) -> (Stamp, Option<T>) {
        (self.stamp, self.value)
    }

    /// The delta that writes `value`, stamped after this register's current write.
    /// The register itself is left as it is.
    #[must_use = "the delta is the write: merge it into the state and send it"]
    ///
    /// If the writer fails ([`Writer::error`]), the delta is the bottom: it merges as
    /// nothing.
    pub fn write(&self, value: T, writer: &mut Writer<'_>) -> Lww<T> {
        let stamp = writer.next_stamp(&self.stamp);
        Lww {
            stamp,
            value: (!stamp.is_zero()).then_some(value),
        }
    }

    /// The delta that empties the register (a stamped write of no value).
    #[must_use = "the delta is the write: merge it into the state and send it"]
    pub fn write_clear(&self, writer: &mut Writer<'_>) -> Lww<T> {
        Lww {
            stamp: writer.next_stamp(&self.stamp),
            value: None,
        }
    }
}

impl<T: Clone> Lww<T> {
    /// Writes `value` and returns the delta to send.
    pub fn set(&mut self, value: T, writer: &mut Writer<'_>) -> Lww<T> {
        let delta = self.write(value, writer);
        if !delta.is_bottom() {
            *self = delta.clone();
        }
        delta
    }

    /// Empties the register with a stamped write and returns the delta to send.
    pub fn clear(&mut self, writer: &mut Writer<'_>) -> Lww<T> {
        let delta = self.write_clear(writer);
        if !delta.is_bottom() {
            *self = delta.clone();
        }
        delta
    }
}

impl<T: Clone + Ord> Merge for Lww<T> {
    #[inline]
    fn merge(&mut self, other: &Self) -> Merged {
        match other.stamp.cmp(&self.stamp) {
            Ordering::Less => Merged::NONE,
            Ordering::Greater => {
                self.stamp = other.stamp;
                self.value.clone_from(&other.value);
                Merged::CHANGED
            }
            Ordering::Equal => self.merge_tie(other),
        }
    }

    fn visit_stamps(&self, visit: &mut dyn FnMut(&Stamp)) {
        if !self.is_bottom() {
            visit(&self.stamp);
        }
    }

    /// One piece, or none for the bottom.
    fn split(&self, _parts: usize) -> Vec<Self> {
        if self.is_bottom() {
            Vec::new()
        } else {
            vec![self.clone()]
        }
    }
}

impl<T: Clone + Ord> Lww<T> {
    #[cold]
    fn merge_tie(&mut self, other: &Self) -> Merged {
        match other.value.cmp(&self.value) {
            Ordering::Equal => Merged::NONE,
            Ordering::Less => Merged::NONE.with_conflict(),
            Ordering::Greater => {
                self.value.clone_from(&other.value);
                Merged::CHANGED.with_conflict()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hlc, SourceId};

    fn reg(v: u64, t: u64, src: u128, value: Option<u32>) -> Lww<u32> {
        Lww::from_parts(Stamp::new(v, t, SourceId::from_u128(src)), value)
    }

    #[test]
    fn greater_stamp_wins_either_way() {
        let old = reg(1, 100, 1, Some(1));
        let new = reg(2, 50, 2, Some(2));
        let mut a = old.clone();
        assert!(a.merge(&new).changed());
        assert_eq!(a, new);
        let mut b = new.clone();
        assert!(!b.merge(&old).changed());
        assert_eq!(b, new);
    }

    #[test]
    fn identical_stamp_different_value_is_a_conflict_resolved_alike() {
        let x = reg(3, 3, 3, Some(10));
        let y = reg(3, 3, 3, Some(20));
        let mut a = x.clone();
        let ma = a.merge(&y);
        let mut b = y.clone();
        let mb = b.merge(&x);
        assert_eq!(a, b, "both replicas resolve the conflict the same way");
        assert_eq!(a.get(), Some(&20));
        assert_eq!((ma.conflicts(), mb.conflicts()), (1, 1));
        assert!(ma.changed() && !mb.changed());
    }

    #[test]
    fn identical_writes_are_no_conflict() {
        let x = reg(3, 3, 3, Some(10));
        let mut a = x.clone();
        assert_eq!(a.merge(&x), Merged::NONE);
    }

    #[test]
    fn clear_is_a_write_that_beats_an_older_set() {
        let mut hlc = Hlc::default();
        let (a, b) = (SourceId::from_u128(1), SourceId::from_u128(2));
        let mut r = Lww::new();
        let set = r.set(5u32, &mut hlc.writer(a, 10));
        let clear = r.clear(&mut hlc.writer(b, 11));
        assert_eq!(r.get(), None);
        assert!(!r.is_bottom());
        let mut peer = clear.clone();
        let _ = peer.merge(&set);
        assert_eq!(peer, r);
    }

    #[test]
    fn bottom_merges_to_nothing() {
        let mut a = reg(1, 1, 1, Some(1));
        assert_eq!(a.merge(&Lww::new()), Merged::NONE);
        let mut bottom = Lww::new();
        assert!(bottom.merge(&a).changed());
        assert_eq!(bottom, a);
    }
}
