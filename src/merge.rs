//! The join: `Merge` and what a merge reports.

use core::ops::BitOrAssign;

use crate::Stamp;

/// The join of a join-semilattice: `a.merge(&b)` makes `a` the least upper bound of
/// `a` and `b`.
///
/// Every implementation is commutative (`a ⊔ b = b ⊔ a`), associative and idempotent
/// (`a ⊔ a = a`), so a message may be duplicated, reordered, delayed or replayed and
/// every replica still ends with the same state. `Default` is the bottom where a type
/// has one.
///
/// Implemented for [`Lww`](crate::Lww), [`LwwMap`](crate::LwwMap),
/// [`Lease`](crate::Lease), `Option<T>` (with `None` as the bottom) and tuples of up to
/// six. An application struct of these gets its implementation field by field from
/// `#[derive(Merge)]` in one line.
///
/// ```
/// use replisync::{Hlc, Lww, Merge, SourceId};
///
/// let mut hlc = Hlc::default();
/// let (a_id, b_id) = (SourceId::from_u128(1), SourceId::from_u128(2));
/// let mut a = Lww::new();
/// let mut b = Lww::new();
/// a.set(1, &mut hlc.writer(a_id, 100));
/// b.set(2, &mut hlc.writer(b_id, 100));
///
/// let mut ab = a.clone();
/// assert!(ab.merge(&b).changed());
/// let mut ba = b.clone();
/// let _ = ba.merge(&a);
/// assert_eq!(ab, ba);
/// assert!(!ab.merge(&b).changed(), "merging again changes nothing");
/// ```
pub trait Merge {
    /// Joins `other` into `self` and says what changed.
    fn merge(&mut self, other: &Self) -> Merged;

    /// Calls `visit` with the [`Stamp`] of every written register this value holds
    /// (registers at their bottom are skipped). A replica checks every stamp a peer
    /// sends with it before merging anything, so one implausible stamp (a version past
    /// [`MAX_VERSION`](crate::stamp::MAX_VERSION), a time far ahead, a term never led) rejects
    /// the message whole.
    fn visit_stamps(&self, visit: &mut dyn FnMut(&Stamp));

    /// Splits this value into pieces whose join is the value, so that a state too large
    /// for one message travels as several, each a valid delta. A map splits into about
    /// `parts` key ranges, a struct field by field (each piece holds a piece of one
    /// field), a register is one piece; pieces that would be empty are left out, so the
    /// bottom splits into none. The default, for values that cannot be split, is the
    /// value whole.
    fn split(&self, parts: usize) -> Vec<Self>
    where
        Self: Sized + Clone,
    {
        let _ = parts;
        vec![self.clone()]
    }
}

/// What one [`Merge::merge`] did: which fields changed, and how many conflicts it met.
///
/// A conflict is two different values under one identical [`Stamp`](crate::Stamp):
/// it cannot happen between honest replicas with distinct source ids, so it points at
/// a reused source id or a corrupted peer. Every replica resolves it the same way (the
/// greater value wins) and the merge counts it, so it is reported, never hidden.
///
/// The changed mask has a bit per field of a struct merged by
/// `#[derive(Merge)]` (bit `i` for field `i`, the 64th and later fields
/// sharing bit 63), and bit 0 for a single register or map.
///
/// ```
/// use replisync::Merged;
///
/// let mut m = Merged::NONE;
/// assert!(!m.changed());
/// m |= Merged::CHANGED;
/// assert!(m.changed());
/// assert_eq!(m.conflicts(), 0);
/// ```
#[must_use = "a merge says whether anything changed and whether it met a conflict"]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Merged {
    changed: u64,
    conflicts: u32,
}

impl Merged {
    /// Nothing changed.
    pub const NONE: Merged = Merged {
        changed: 0,
        conflicts: 0,
    };
    /// Something changed (bit 0).
    pub const CHANGED: Merged = Merged {
        changed: 1,
        conflicts: 0,
    };

    /// Whether the merge changed the target.
    pub const fn changed(&self) -> bool {
        self.changed != 0
    }

    /// The changed fields as a bit mask.
    pub const fn changed_mask(&self) -> u64 {
        self.changed
    }

    /// How many conflicts (different values under one identical stamp) the merge met.
    pub const fn conflicts(&self) -> u32 {
        self.conflicts
    }

    /// This result with one more conflict counted.
    pub const fn with_conflict(self) -> Merged {
        Merged {
            changed: self.changed,
            conflicts: self.conflicts.saturating_add(1),
        }
    }

    /// This result with `inner`, the merge of field `index`, folded in: any change in
    /// `inner` sets bit `index` (bit 63 for 63 and above); its conflicts add up.
    #[doc(hidden)]
    pub const fn with_field(self, index: u32, inner: Merged) -> Merged {
        let bit = if index > 63 { 63 } else { index };
        Merged {
            changed: self.changed | ((inner.changed() as u64) << bit),
            conflicts: self.conflicts.saturating_add(inner.conflicts),
        }
    }

    /// The names of the changed fields, given the field names of the merged type (in
    /// field order, as `#[derive(Merge)]` lists them).
    pub fn changed_fields<'a>(&self, names: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
        let mask = self.changed;
        names
            .iter()
            .enumerate()
            .filter(move |(i, _)| mask & (1u64 << (*i).min(63)) != 0)
            .map(|(_, name)| *name)
    }
}

impl BitOrAssign for Merged {
    fn bitor_assign(&mut self, rhs: Merged) {
        self.changed |= rhs.changed;
        self.conflicts = self.conflicts.saturating_add(rhs.conflicts);
    }
}

/// The field names of a struct merged field by field, in field order: bit `i` of
/// [`Merged::changed_mask`] stands for `FIELDS[i]`. Implemented by
/// `#[derive(Merge)]`.
pub trait Fields {
    /// The field names, in declaration order of the struct.
    const FIELDS: &'static [&'static str];
}

impl<T: Merge + Clone> Merge for Option<T> {
    fn merge(&mut self, other: &Self) -> Merged {
        match (self.as_mut(), other) {
            (_, None) => Merged::NONE,
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => {
                *self = Some(theirs.clone());
                Merged::CHANGED
            }
        }
    }

    fn visit_stamps(&self, visit: &mut dyn FnMut(&Stamp)) {
        if let Some(inner) = self {
            inner.visit_stamps(visit);
        }
    }

    fn split(&self, parts: usize) -> Vec<Self> {
        match self {
            Some(inner) => inner.split(parts).into_iter().map(Some).collect(),
            None => Vec::new(),
        }
    }
}

macro_rules! tuple_merge {
    ($($name:ident $index:tt),+) => {
        impl<$($name: Merge),+> Merge for ($($name,)+) {
            fn merge(&mut self, other: &Self) -> Merged {
                Merged::NONE$(.with_field($index, self.$index.merge(&other.$index)))+
            }

            fn visit_stamps(&self, visit: &mut dyn FnMut(&Stamp)) {
                $( self.$index.visit_stamps(visit); )+
            }
        }
    };
}

tuple_merge!(A 0);
tuple_merge!(A 0, B 1);
tuple_merge!(A 0, B 1, C 2);
tuple_merge!(A 0, B 1, C 2, D 3);
tuple_merge!(A 0, B 1, C 2, D 3, E 4);
tuple_merge!(A 0, B 1, C 2, D 3, E 4, F 5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hlc, Lww, LwwMap, SourceId};

    #[derive(Clone, Debug, Default, PartialEq, crate::Merge)]
    struct Derived {
        title: Lww<String>,
        tags: LwwMap<String, u32>,
    }

    #[derive(Clone, Debug, Default, PartialEq, crate::Merge)]
    struct Pair(Lww<u32>, Lww<u32>);

    #[test]
    fn derived_merge_covers_every_field() {
        let mut hlc = Hlc::default();
        let mut w = hlc.writer(SourceId::from_u128(1), 10);
        let mut a = Derived::default();
        let delta = Derived {
            title: a.title.write("t".into(), &mut w),
            tags: a.tags.write_insert("x".into(), 1, &mut w),
        };
        let merged = a.merge(&delta);
        assert_eq!(
            merged.changed_fields(Derived::FIELDS).collect::<Vec<_>>(),
            ["title", "tags"]
        );
        assert_eq!(a, delta);
        let mut stamps = 0;
        a.visit_stamps(&mut |_| stamps += 1);
        assert_eq!(stamps, 2);
        let pieces = a.split(4);
        assert_eq!(pieces.len(), 2, "one piece per written field");
        let mut joined = Derived::default();
        for p in &pieces {
            let _ = joined.merge(p);
        }
        assert_eq!(joined, a);

        let mut p = Pair::default();
        let d = Pair(Lww::new(), p.1.write(5, &mut w));
        assert_eq!(
            p.merge(&d).changed_fields(Pair::FIELDS).collect::<Vec<_>>(),
            ["1"]
        );
    }

    #[test]
    fn field_bits_saturate_at_63() {
        let m = Merged::NONE.with_field(70, Merged::CHANGED);
        assert_eq!(m.changed_mask(), 1 << 63);
        let m = Merged::NONE.with_field(2, Merged::NONE.with_conflict());
        assert!(!m.changed());
        assert_eq!(m.conflicts(), 1);
    }

    #[test]
    fn changed_fields_names_the_set_bits() {
        let m = Merged::NONE
            .with_field(0, Merged::CHANGED)
            .with_field(2, Merged::CHANGED);
        let names: Vec<_> = m.changed_fields(&["a", "b", "c"]).collect();
        assert_eq!(names, ["a", "c"]);
    }
}
