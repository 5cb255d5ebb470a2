//! The map of last-writer-wins registers.

use core::borrow::Borrow;
use core::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Lww, Merge, Merged, Writer};

/// A map with a last-writer-wins register per key. A removal is a stamped write of no
/// value (a tombstone), so removals converge like insertions: a key removed on one
/// replica and concurrently updated on another ends the same way everywhere.
///
/// Keys are kept sorted, so a full-state merge walks both maps once in step (linear in
/// their sizes, no lookup per key), while merging a small delta into a large map costs a
/// lookup per delta key. Tombstones are kept; [`LwwMap::len`] and [`LwwMap::iter`] see
/// live keys only, [`LwwMap::registers`] sees every key.
///
/// As with [`Lww`], writes either return the delta and leave the map alone
/// ([`LwwMap::write_insert`], [`LwwMap::write_remove`]) or apply it and return it
/// ([`LwwMap::insert`], [`LwwMap::remove`]).
///
/// ```
/// use replisync::{Hlc, LwwMap, Merge, SourceId};
///
/// let mut hlc = Hlc::default();
/// let (a, b) = (SourceId::from_u128(1), SourceId::from_u128(2));
/// let mut left: LwwMap<String, u32> = LwwMap::new();
/// let mut right = LwwMap::new();
///
/// left.insert("x".to_string(), 1, &mut hlc.writer(a, 100));
/// let _ = right.merge(&left);
/// right.remove("x", &mut hlc.writer(b, 101));
/// let added = left.insert("y".to_string(), 2, &mut hlc.writer(a, 102));
///
/// let _ = left.merge(&right);
/// let _ = right.merge(&added);
/// assert_eq!(left, right);
/// assert_eq!(left.get("x"), None);
/// assert_eq!(left.get("y"), Some(&2));
/// assert_eq!(left.len(), 1);
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LwwMap<K, V> {
    entries: BTreeMap<K, Lww<V>>,
    live: usize,
}

impl<K, V> Default for LwwMap<K, V> {
    fn default() -> Self {
        LwwMap {
            entries: BTreeMap::new(),
            live: 0,
        }
    }
}

impl<K: Ord, V> LwwMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys hold a value (tombstones not counted).
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no key holds a value.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The value under `key`, if it holds one.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.get(key).and_then(Lww::get)
    }

    /// The register under `key`, tombstone or not.
    pub fn register<Q>(&self, key: &Q) -> Option<&Lww<V>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.get(key)
    }

    /// The live keys and their values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.entries
            .iter()
            .filter_map(|(k, reg)| reg.get().map(|v| (k, v)))
    }

    /// Every key's register, tombstones included, in key order.
    pub fn registers(&self) -> impl Iterator<Item = (&K, &Lww<V>)> + '_ {
        self.entries.iter()
    }

    /// How many registers the map holds, tombstones included.
    pub fn register_count(&self) -> usize {
        self.entries.len()
    }

    fn prev_stamp<Q>(&self, key: &Q) -> crate::Stamp
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries
            .get(key)
            .map(|r| *r.stamp())
            .unwrap_or(crate::Stamp::ZERO)
    }

    /// The delta that sets `key` to `value`; the map is left as it is.
    #[must_use = "the delta is the write: merge it into the state and send it"]
    pub fn write_insert(&self, key: K, value: V, writer: &mut Writer<'_>) -> LwwMap<K, V> {
        let stamp = writer.next_stamp(&self.prev_stamp(&key));
        if stamp.is_zero() {
            // The writer failed (see `Writer::error`): the delta is the bottom.
            return LwwMap::default();
        }
        Self::single(key, Lww::from_parts(stamp, Some(value)))
    }

    /// The delta that removes `key` (a tombstone); the map is left as it is.
    #[must_use = "the delta is the write: merge it into the state and send it"]
    pub fn write_remove<Q>(&self, key: &Q, writer: &mut Writer<'_>) -> LwwMap<K, V>
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        let stamp = writer.next_stamp(&self.prev_stamp(key));
        if stamp.is_zero() {
            return LwwMap::default();
        }
        Self::single(key.to_owned(), Lww::from_parts(stamp, None))
    }

    fn single(key: K, reg: Lww<V>) -> LwwMap<K, V> {
        let live = usize::from(reg.get().is_some());
        let mut entries = BTreeMap::new();
        entries.insert(key, reg);
        LwwMap { entries, live }
    }
}

impl<K: Ord + Clone, V: Clone + Ord> LwwMap<K, V> {
    /// Records the write of `key` = `value` into `delta`, the delta of a
    /// [`Replica::write`](crate::Replica::write) being filled: several writes of one
    /// map in one call add up, where assigning each `write_insert` to the delta would
    /// keep only the last. Call it on the state, as every `write*` method.
    ///
    /// ```
    /// use replisync::{Config, Lww, LwwMap, Merge, Now, Replica, SourceId};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
    /// struct Doc { notes: LwwMap<String, String> }
    ///
    /// let now = Now::new(1_700_000_000_000, 0);
    /// let mut r: Replica<Doc> = Replica::new(Config::distributed(), SourceId::from_u128(1)).unwrap();
    /// r.write(now, |s, d, w| {
    ///     s.notes.write_insert_into(&mut d.notes, "a".into(), "one".into(), w);
    ///     s.notes.write_insert_into(&mut d.notes, "b".into(), "two".into(), w);
    /// })
    /// .unwrap();
    /// assert_eq!(r.state().notes.len(), 2);
    /// ```
    pub fn write_insert_into(
        &self,
        delta: &mut LwwMap<K, V>,
        key: K,
        value: V,
        writer: &mut Writer<'_>,
    ) {
        self.record_into(delta, key, Some(value), writer);
    }

    /// Records the removal of `key` into `delta` (see [`LwwMap::write_insert_into`]).
    ///
    /// A key written twice in one call keeps the later write: its stamp is minted past
    /// the earlier one's, which it replaces in the delta.
    pub fn write_remove_into<Q>(&self, delta: &mut LwwMap<K, V>, key: &Q, writer: &mut Writer<'_>)
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        self.record_into(delta, key.to_owned(), None, writer);
    }

    /// Writes `key` (a value, or a tombstone) into `delta`, stamped past both the
    /// state's register and any earlier write of this call to it.
    fn record_into(
        &self,
        delta: &mut LwwMap<K, V>,
        key: K,
        value: Option<V>,
        writer: &mut Writer<'_>,
    ) {
        let earlier = delta.prev_stamp(&key);
        let stamp = writer.next_stamp(&self.prev_stamp(&key).max(earlier));
        if stamp.is_zero() {
            return;
        }
        if !earlier.is_zero() {
            writer.supersede(&earlier);
        }
        let _ = delta.merge(&Self::single(key, Lww::from_parts(stamp, value)));
    }

    /// Sets `key` to `value` and returns the delta to send.
    pub fn insert(&mut self, key: K, value: V, writer: &mut Writer<'_>) -> LwwMap<K, V> {
        let delta = self.write_insert(key, value, writer);
        let _ = self.merge(&delta);
        delta
    }

    /// Removes `key` (writing a tombstone, even for a key this replica has not seen, so
    /// that it also wins over older concurrent insertions) and returns the delta.
    pub fn remove<Q>(&mut self, key: &Q, writer: &mut Writer<'_>) -> LwwMap<K, V>
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        let delta = self.write_remove(key, writer);
        let _ = self.merge(&delta);
        delta
    }

    /// Merges one register into the key's, keeping the live count.
    #[inline]
    fn merge_one(live: &mut usize, mine: &mut Lww<V>, theirs: &Lww<V>) -> Merged {
        let was_live = mine.get().is_some();
        let merged = mine.merge(theirs);
        if merged.changed() {
            let is_live = mine.get().is_some();
            *live = *live + usize::from(is_live) - usize::from(was_live);
        }
        merged
    }

    /// A delta much smaller than the map: a lookup per delta key.
    fn merge_sparse(&mut self, other: &Self) -> Merged {
        let mut merged = Merged::NONE;
        for (key, theirs) in &other.entries {
            match self.entries.get_mut(key) {
                Some(mine) => merged |= Self::merge_one(&mut self.live, mine, theirs),
                None if theirs.is_bottom() => {}
                None => {
                    self.live += usize::from(theirs.get().is_some());
                    self.entries.insert(key.clone(), theirs.clone());
                    merged |= Merged::CHANGED;
                }
            }
        }
        merged
    }

    /// Maps of comparable size: one walk over both, in key order.
    fn merge_linear(&mut self, other: &Self) -> Merged {
        let mut merged = Merged::NONE;
        let mut missing: Vec<(K, Lww<V>)> = Vec::new();
        let mut mine = self.entries.iter_mut();
        let mut current = mine.next();
        for (key, theirs) in &other.entries {
            loop {
                match current {
                    Some((k, ref mut reg)) => match k.cmp(key) {
                        Ordering::Less => current = mine.next(),
                        Ordering::Equal => {
                            merged |= Self::merge_one(&mut self.live, reg, theirs);
                            current = mine.next();
                            break;
                        }
                        Ordering::Greater => {
                            if !theirs.is_bottom() {
                                missing.push((key.clone(), theirs.clone()));
                            }
                            break;
                        }
                    },
                    None => {
                        if !theirs.is_bottom() {
                            missing.push((key.clone(), theirs.clone()));
                        }
                        break;
                    }
                }
            }
        }
        if !missing.is_empty() {
            merged |= Merged::CHANGED;
            self.live += missing.iter().filter(|(_, r)| r.get().is_some()).count();
            self.entries.extend(missing);
        }
        merged
    }
}

impl<K: Ord + Clone, V: Clone + Ord> Merge for LwwMap<K, V> {
    fn merge(&mut self, other: &Self) -> Merged {
        if other.entries.is_empty() {
            return Merged::NONE;
        }
        if self.entries.is_empty() {
            *self = other.clone();
            self.entries.retain(|_, r| !r.is_bottom());
            return if self.entries.is_empty() {
                Merged::NONE
            } else {
                Merged::CHANGED
            };
        }
        // A lookup costs about log2(n) steps of a walk; take whichever is cheaper.
        let n = self.entries.len();
        let log_n = (usize::BITS - n.leading_zeros()) as usize;
        if other.entries.len().saturating_mul(log_n) < n {
            self.merge_sparse(other)
        } else {
            self.merge_linear(other)
        }
    }

    fn visit_stamps(&self, visit: &mut dyn FnMut(&crate::Stamp)) {
        for reg in self.entries.values() {
            reg.visit_stamps(visit);
        }
    }

    /// Key ranges of about equal register counts, in key order.
    fn split(&self, parts: usize) -> Vec<Self> {
        let n = self.entries.len();
        let per = n.div_ceil(parts.max(1)).max(1);
        let mut pieces = Vec::with_capacity(n.div_ceil(per));
        let mut chunk = Vec::with_capacity(per);
        for (k, r) in &self.entries {
            chunk.push((k.clone(), r.clone()));
            if chunk.len() == per {
                pieces.push(Self::from_sorted(core::mem::take(&mut chunk)));
            }
        }
        if !chunk.is_empty() {
            pieces.push(Self::from_sorted(chunk));
        }
        pieces
    }
}

impl<K: Ord + Clone, V: Clone + Ord> FromIterator<(K, Lww<V>)> for LwwMap<K, V> {
    /// A map of the given registers; a key given twice keeps the merge of both.
    fn from_iter<I: IntoIterator<Item = (K, Lww<V>)>>(iter: I) -> Self {
        let mut items: Vec<(K, Lww<V>)> =
            iter.into_iter().filter(|(_, r)| !r.is_bottom()).collect();
        // Stable, so equal keys stay in order; already sorted input costs one pass.
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let mut joined: Vec<(K, Lww<V>)> = Vec::with_capacity(items.len());
        for (key, reg) in items {
            match joined.last_mut() {
                Some((last, mine)) if *last == key => {
                    let _ = mine.merge(&reg);
                }
                _ => joined.push((key, reg)),
            }
        }
        Self::from_sorted(joined)
    }
}

impl<K: Ord, V> LwwMap<K, V> {
    /// Builds the tree in one pass from entries sorted by key, so its nodes are full:
    /// fewer nodes to walk than a tree grown key by key. (Unsorted input is sorted
    /// first; of a key given twice, the last stays.)
    fn from_sorted(items: Vec<(K, Lww<V>)>) -> Self {
        let entries: BTreeMap<K, Lww<V>> = items.into_iter().collect();
        let live = entries.values().filter(|r| r.get().is_some()).count();
        LwwMap { entries, live }
    }
}

impl<K: Ord + Clone, V: Clone> Clone for LwwMap<K, V> {
    /// A compact copy: the tree is rebuilt from its sorted entries (full nodes),
    /// whatever order of inserts grew the original.
    fn clone(&self) -> Self {
        LwwMap {
            entries: self
                .entries
                .iter()
                .map(|(k, r)| (k.clone(), r.clone()))
                .collect(),
            live: self.live,
        }
    }
}

impl<K: Serialize, V: Serialize> Serialize for LwwMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(serializer)
    }
}

impl<'de, K, V> Deserialize<'de> for LwwMap<K, V>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntriesVisitor(core::marker::PhantomData))
    }
}

/// Reads a map's entries into a vector first: the sorted input of a well-formed state
/// then builds the tree in one pass instead of one insertion per key.
struct EntriesVisitor<K, V>(core::marker::PhantomData<(K, V)>);

impl<'de, K, V> serde::de::Visitor<'de> for EntriesVisitor<K, V>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    type Value = LwwMap<K, V>;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a map of keys to last-writer-wins registers")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut access: A,
    ) -> Result<Self::Value, A::Error> {
        // Bounded, so a forged length cannot make us allocate much up front.
        let mut items: Vec<(K, Lww<V>)> =
            Vec::with_capacity(access.size_hint().unwrap_or(0).min(4_096));
        while let Some((key, reg)) = access.next_entry::<K, Lww<V>>()? {
            // A never-written register carries nothing: dropping it keeps equal states
            // equal.
            if !reg.is_bottom() {
                items.push((key, reg));
            }
        }
        Ok(LwwMap::from_sorted(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hlc, SourceId, Stamp};

    fn entry(v: u64, src: u128, value: Option<u32>) -> Lww<u32> {
        Lww::from_parts(Stamp::new(v, 0, SourceId::from_u128(src)), value)
    }

    fn map(items: &[(u32, u64, Option<u32>)]) -> LwwMap<u32, u32> {
        let entries: BTreeMap<_, _> = items
            .iter()
            .map(|&(k, v, val)| (k, entry(v, 1, val)))
            .collect();
        let live = entries.values().filter(|r| r.get().is_some()).count();
        LwwMap { entries, live }
    }

    #[test]
    fn sparse_and_linear_paths_agree() {
        let big = map(&(0..1_000).map(|k| (k * 2, 5, Some(k))).collect::<Vec<_>>());
        let delta = map(&[
            (4, 9, None),
            (5, 1, Some(7)),
            (6, 1, Some(0)),
            (3_000, 1, Some(1)),
        ]);
        let mut sparse = big.clone();
        let ms = sparse.merge_sparse(&delta);
        let mut linear = big.clone();
        let ml = linear.merge_linear(&delta);
        assert_eq!(sparse, linear);
        assert_eq!(ms, ml);
        assert_eq!(sparse.len(), 1_000 - 1 + 2);
        assert_eq!(sparse.get(&4), None);
        assert_eq!(sparse.get(&6), Some(&3), "older write to key 6 loses");
        assert_eq!(sparse.register_count(), 1_002);
    }

    #[test]
    fn live_count_follows_tombstones_both_ways() {
        let mut m = map(&[(1, 1, Some(1)), (2, 1, None)]);
        assert_eq!(m.len(), 1);
        let _ = m.merge(&map(&[(1, 2, None), (2, 2, Some(2)), (3, 1, None)]));
        assert_eq!(m.len(), 1);
        assert_eq!(m.iter().collect::<Vec<_>>(), [(&2, &2)]);
        assert_eq!(m.register_count(), 3);
    }

    #[test]
    fn bottom_registers_are_never_stored() {
        let mut m = map(&[(1, 1, Some(1))]);
        let mut bottom = LwwMap::new();
        bottom.entries.insert(7, Lww::new());
        assert_eq!(m.merge(&bottom), Merged::NONE);
        assert!(m.register(&7).is_none());
        let mut empty = LwwMap::<u32, u32>::new();
        assert_eq!(empty.merge(&bottom), Merged::NONE);
        assert_eq!(empty, LwwMap::new());
    }

    #[test]
    fn remove_of_an_unseen_key_beats_an_older_insert() {
        let mut hlc = Hlc::default();
        let (a, b) = (SourceId::from_u128(1), SourceId::from_u128(2));
        let mut left: LwwMap<String, u32> = LwwMap::new();
        let insert = left.insert("k".into(), 1, &mut hlc.writer(a, 10));
        let mut right: LwwMap<String, u32> = LwwMap::new();
        let _ = right.merge(&insert);
        right.remove("k", &mut hlc.writer(b, 20));
        let _ = left.merge(&right);
        assert_eq!(left.get("k"), None);
        assert_eq!(left, right);
    }

    #[test]
    fn unsorted_input_decodes_sorted() {
        let m = map(&[(1, 1, Some(1)), (2, 1, None), (3, 2, Some(3))]);
        let reg = |v: u64, value: &str| {
            format!(
                r#"{{"stamp":{{"version":{v},"updated_at":0,"source":"00000000-0000-0000-0000-000000000001"}},"value":{value}}}"#
            )
        };
        let shuffled = format!(
            r#"{{"3":{},"1":{},"2":{}}}"#,
            reg(2, "3"),
            reg(1, "1"),
            reg(1, "null")
        );
        let back: LwwMap<u32, u32> = serde_json::from_str(&shuffled).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn json_round_trip_recounts_and_drops_bottoms() {
        let m = map(&[(1, 1, Some(1)), (2, 1, None)]);
        let json = serde_json::to_string(&m).unwrap();
        let back: LwwMap<u32, u32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.len(), 1);
        let with_bottom = r#"{"9":{"stamp":{"version":0,"updated_at":0,"source":"00000000-0000-0000-0000-000000000000"},"value":null}}"#;
        let back: LwwMap<u32, u32> = serde_json::from_str(with_bottom).unwrap();
        assert_eq!(back.register_count(), 0);
    }
}
