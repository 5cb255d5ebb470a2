//! Persistence by delta: the records a replica hands its store, and reading them back.
//!
//! A store holds a **log**: a base record (the whole state, written by a compaction)
//! followed by delta records appended since. Every record is a state of its own, so
//! restoring is merging them in order (merging is a join: the result is the state
//! whatever the order). A small write into a large state appends a few bytes; once the
//! appended deltas outgrow the base ([`COMPACT_FACTOR`]), the next persist compacts.
//!
//! Record layout, per store codec:
//!
//! - binary: the record's length as 4 bytes little-endian, then the framed record (the
//!   postcard bytes and their CRC-32);
//! - JSON: the framed record (the JSON text, a newline, 8 hex digits of its CRC-32),
//!   then a newline: two lines a record, readable with a text editor.
//!
//! A last record cut short (the process died while appending) is dropped and reported;
//! the next persist compacts it away. Any other unreadable record makes the whole store
//! unreadable: it is reported and never overwritten.

use serde::{Deserialize, Serialize};

use super::Replica;
use crate::bundle::{Bundle, Request};
use crate::wire::SCHEMA_VERSION;
use crate::{Codec, DecodeError, Degradation, Event, Merge, SourceId};

/// Compaction happens once the deltas appended since the base add up to more than
/// this many times the base's size.
pub const COMPACT_FACTOR: usize = 1;

/// One persisted record: a state with the schema version and who wrote it when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stored<St> {
    pub schema: u16,
    pub updated_at: u64,
    pub source: SourceId,
    pub state: St,
}

/// What a replica asks of its store, from [`Replica::poll_persist`](crate::Replica::poll_persist).
///
/// ```
/// use replisync::Persist;
///
/// let mut log = Vec::new();
/// Persist::Compact(b"base".to_vec()).apply_to(&mut log);
/// Persist::Append(b"+delta".to_vec()).apply_to(&mut log);
/// assert_eq!(log, b"base+delta");
/// Persist::Compact(b"new base".to_vec()).apply_to(&mut log);
/// assert_eq!(log, b"new base");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a store that skips a persist loses writes"]
pub enum Persist {
    /// Append these bytes (one or more delta records) to what the store holds.
    Append(Vec<u8>),
    /// Replace all the store holds with these bytes (the whole state, and perhaps
    /// deltas after it).
    Compact(Vec<u8>),
}

impl Persist {
    /// The bytes to append or to compact onto.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Persist::Append(b) | Persist::Compact(b) => b,
        }
    }

    /// Applies this to a store kept as one byte log.
    pub fn apply_to(&self, log: &mut Vec<u8>) {
        match self {
            Persist::Append(b) => log.extend_from_slice(b),
            Persist::Compact(b) => {
                log.clear();
                log.extend_from_slice(b);
            }
        }
    }

    /// This followed by `next`, as one request.
    pub(crate) fn then(self, next: Persist) -> Persist {
        match (self, next) {
            (_, Persist::Compact(b)) => Persist::Compact(b),
            (Persist::Append(mut a), Persist::Append(b)) => {
                a.extend_from_slice(&b);
                Persist::Append(a)
            }
            (Persist::Compact(mut a), Persist::Append(b)) => {
                a.extend_from_slice(&b);
                Persist::Compact(a)
            }
        }
    }
}

/// Wraps a framed record for the log.
pub(crate) fn record(codec: Codec, framed: Vec<u8>) -> Vec<u8> {
    match codec {
        Codec::Json => {
            let mut r = framed;
            r.push(b'\n');
            r
        }
        _ => {
            let mut r = Vec::with_capacity(framed.len() + 4);
            r.extend_from_slice(&(framed.len() as u32).to_le_bytes());
            r.extend_from_slice(&framed);
            r
        }
    }
}

/// A log split into its framed records, and whether its last record was cut short.
pub(crate) struct Records<'a> {
    pub frames: Vec<&'a [u8]>,
    pub torn: bool,
}

/// Splits a log into records.
pub(crate) fn records(codec: Codec, log: &[u8]) -> Records<'_> {
    let mut frames = Vec::new();
    let mut rest = log;
    let mut torn = false;
    while !rest.is_empty() {
        let taken = match codec {
            Codec::Json => json_record(rest),
            _ => binary_record(rest),
        };
        match taken {
            Some((frame, after)) => {
                frames.push(frame);
                rest = after;
            }
            None => {
                torn = true;
                break;
            }
        }
    }
    Records { frames, torn }
}

fn binary_record(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let end = 4usize.checked_add(len)?;
    Some((bytes.get(4..end)?, &bytes[end..]))
}

fn json_record(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    // The JSON text holds no raw newline: it ends at the first; 8 hex digits and a
    // newline follow.
    let first = bytes.iter().position(|b| *b == b'\n')?;
    let end = first.checked_add(10)?;
    if bytes.get(end - 1) != Some(&b'\n') {
        return None;
    }
    Some((&bytes[..end - 1], &bytes[end..]))
}

/// What a log held: its records' states in order, the size of its base and of the
/// deltas after it, and whether a cut-short last record was dropped or the log must be
/// rewritten (an old schema).
pub(crate) struct Loaded<St> {
    pub states: Vec<Stored<St>>,
    pub base_len: usize,
    pub appended_len: usize,
    pub torn: bool,
    pub rewrite: bool,
}

/// Reads a log: every record must decode, but for a last one cut short (or failing its
/// check), which is dropped. A store written before logs (one unframed schema-1 state)
/// is read as it is.
pub(crate) fn load<St: serde::de::DeserializeOwned>(
    codec: Codec,
    log: &[u8],
) -> Result<Loaded<St>, DecodeError> {
    let split = records(codec, log);
    let count = split.frames.len();
    let mut states = Vec::with_capacity(count);
    let mut torn = split.torn;
    let mut base_len = 0;
    let mut total = 0;
    for (i, frame) in split.frames.iter().enumerate() {
        match codec.decode_store::<Stored<St>>(frame, |s| s.schema) {
            Ok(s) => {
                let len = record_len(codec, frame);
                if i == 0 {
                    base_len = len;
                }
                total += len;
                states.push(s);
            }
            Err(e) if i == 0 => return legacy(codec, log).map_err(|_| e),
            Err(DecodeError::Corrupt { .. }) if i + 1 == count && !torn => {
                torn = true;
            }
            Err(e) => return Err(e),
        }
    }
    if states.is_empty() {
        return legacy(codec, log);
    }
    Ok(Loaded {
        states,
        base_len,
        appended_len: total - base_len,
        torn,
        rewrite: false,
    })
}

fn record_len(codec: Codec, frame: &[u8]) -> usize {
    frame.len()
        + match codec {
            Codec::Json => 1,
            _ => 4,
        }
}

/// The whole bytes as one state, as stores were written before logs.
fn legacy<St: serde::de::DeserializeOwned>(
    codec: Codec,
    bytes: &[u8],
) -> Result<Loaded<St>, DecodeError> {
    let state = codec.decode_store::<Stored<St>>(bytes, |s| s.schema)?;
    Ok(Loaded {
        states: vec![state],
        base_len: bytes.len(),
        appended_len: 0,
        torn: false,
        rewrite: true,
    })
}

/// What a replica keeps about its store: whether something changed since the last
/// persist and what, how large the log's base and appended deltas are (to know when to
/// compact), whether the store must not or cannot be written, and the [`Persist`]
/// waiting for [`Replica::poll_persist`].
#[derive(Debug)]
pub(super) struct Persistence<St> {
    /// Something changed since the last persist.
    dirty: bool,
    /// What changed since the last persist (the join of everything merged).
    delta: Option<St>,
    /// The last persist failed to encode (reported once until one succeeds).
    failing: bool,
    /// The size of the store's base record.
    base: usize,
    /// The size of the deltas appended after the base.
    appended: usize,
    /// The next persist rewrites the store: a record was dropped, an old schema read,
    /// or a persist failed.
    compact_next: bool,
    /// The store is unreadable: it is never written over.
    blocked: bool,
    /// What the store is to do next.
    out: Option<Persist>,
}

impl<St> Default for Persistence<St> {
    fn default() -> Self {
        Persistence {
            dirty: false,
            delta: None,
            failing: false,
            base: 0,
            appended: 0,
            compact_next: false,
            blocked: false,
            out: None,
        }
    }
}

impl<St: Merge + Clone> Persistence<St> {
    /// Something changed: the next flush persists.
    pub(super) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether a persist is due (something changed and the store may be written); if
    /// so, it is no longer due.
    pub(super) fn take_dirty(&mut self) -> bool {
        if self.dirty && !self.blocked {
            self.dirty = false;
            return true;
        }
        false
    }

    /// A merged state that changed this replica's: kept for the next delta record,
    /// unless the next persist writes the whole state anyway (or never persists), so a
    /// large merge is not copied for nothing.
    pub(super) fn changed(&mut self, other: &St) {
        if self.blocked || self.compaction_due() {
            return;
        }
        match &mut self.delta {
            Some(pending) => {
                let _ = pending.merge(other);
            }
            None => self.delta = Some(other.clone()),
        }
    }

    /// Whether the next persist writes the whole state: nothing is stored yet, the log
    /// must be rewritten, or the appended deltas outgrew the base.
    pub(super) fn compaction_due(&self) -> bool {
        self.compact_next
            || self.base == 0
            || self.appended > COMPACT_FACTOR.saturating_mul(self.base)
    }

    /// The changes kept for the next delta record, taken.
    pub(super) fn take_delta(&mut self) -> Option<St> {
        self.delta.take()
    }

    /// What was pending before a restore, put back after it: what a restore merges is
    /// in the store already.
    pub(super) fn keep_pending(&mut self, delta: Option<St>, dirty: bool) {
        self.delta = delta;
        self.dirty = dirty;
    }

    /// Whether something changed since the last persist.
    pub(super) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The store read back: its base and appended sizes.
    pub(super) fn restored(&mut self, base: usize, appended: usize) {
        self.base = base;
        self.appended = appended;
    }

    /// The next persist rewrites the whole store.
    pub(super) fn compact_next(&mut self) {
        self.compact_next = true;
    }

    /// The store is unreadable: never write over it.
    pub(super) fn block(&mut self) {
        self.blocked = true;
    }

    /// A record was encoded: hand it to the store, as the new base (`compact`) or
    /// appended after what it holds.
    pub(super) fn written(&mut self, bytes: Vec<u8>, compact: bool) {
        let next = if compact {
            self.base = bytes.len();
            self.appended = 0;
            self.compact_next = false;
            Persist::Compact(bytes)
        } else {
            self.appended = self.appended.saturating_add(bytes.len());
            Persist::Append(bytes)
        };
        self.out = Some(match self.out.take() {
            Some(earlier) => earlier.then(next),
            None => next,
        });
        self.failing = false;
    }

    /// A record failed to encode: what was not written goes with the whole state, once
    /// it encodes. Whether to report it (the first failure in a row).
    pub(super) fn failed(&mut self) -> bool {
        self.compact_next = true;
        !std::mem::replace(&mut self.failing, true)
    }

    /// What the store is to do next.
    pub(super) fn poll(&mut self) -> Option<Persist> {
        self.out.take()
    }
}

impl<S: Bundle, R: Request> Replica<S, R> {
    /// Hands the store what changed since the last persist: a delta to append, or,
    /// once the appended deltas outgrow the base (or the log needs rewriting), the
    /// whole state to compact onto.
    pub(super) fn persist_changes(&mut self) {
        let delta = self.persistence.take_delta();
        let compact = self.persistence.compaction_due();
        let state = match (&delta, compact) {
            (_, true) => &self.state,
            (Some(delta), false) => delta,
            (None, false) => return,
        };
        let stored = Stored {
            schema: SCHEMA_VERSION,
            updated_at: self.hlc.last_ms(),
            source: self.me,
            state,
        };
        let codec = self.config.store_codec;
        match codec.encode_framed(&stored) {
            Ok(framed) => self.persistence.written(record(codec, framed), compact),
            Err(e) => {
                tracing::warn!(source = %self.me, error = %e, "state not persisted");
                if self.persistence.failed() {
                    self.events.push_back(Event::Degraded {
                        reason: Degradation::PersistFailed(e),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(codec: Codec, state: u32) -> Vec<u8> {
        let stored = Stored {
            schema: crate::SCHEMA_VERSION,
            updated_at: 1,
            source: SourceId::from_u128(1),
            state,
        };
        record(codec, codec.encode_framed(&stored).unwrap())
    }

    #[test]
    fn a_log_reads_back_record_by_record() {
        for codec in [Codec::Json, Codec::Binary] {
            let mut log = framed(codec, 1);
            let base = log.len();
            log.extend(framed(codec, 2));
            log.extend(framed(codec, 3));
            let loaded: Loaded<u32> = load(codec, &log).unwrap();
            let states: Vec<u32> = loaded.states.iter().map(|s| s.state).collect();
            assert_eq!(states, [1, 2, 3]);
            assert_eq!(
                (loaded.base_len, loaded.appended_len),
                (base, log.len() - base)
            );
            assert!(!loaded.torn);
        }
    }

    #[test]
    fn a_torn_last_record_is_dropped_never_the_base() {
        for codec in [Codec::Json, Codec::Binary] {
            let base = framed(codec, 1);
            let delta = framed(codec, 2);
            for cut in 1..delta.len() {
                let mut log = base.clone();
                log.extend(&delta[..cut]);
                let loaded: Loaded<u32> = load(codec, &log).unwrap();
                assert_eq!(loaded.states.len(), 1, "{codec}: cut at {cut}");
                assert!(loaded.torn);
            }
            // A base that lost only its record's final newline still holds all of
            // the state; any shorter cut leaves nothing readable.
            let whole = base.len() - usize::from(codec == Codec::Json);
            for cut in 1..whole {
                assert!(
                    load::<u32>(codec, &base[..cut]).is_err(),
                    "{codec}: base cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_corrupt_record_before_the_last_makes_the_store_unreadable() {
        for codec in [Codec::Json, Codec::Binary] {
            let mut log = framed(codec, 1);
            let at = log.len() + 6;
            log.extend(framed(codec, 2));
            log.extend(framed(codec, 3));
            log[at] ^= 0x01;
            assert!(load::<u32>(codec, &log).is_err(), "{codec}");
        }
    }

    fn lease(term: u64) -> crate::Lease {
        crate::Lease {
            term,
            ..crate::Lease::acquire(None, SourceId::from_u128(1), 300)
        }
    }

    #[test]
    fn the_first_persist_compacts_then_deltas_append_until_they_outgrow_the_base() {
        let mut book = Persistence::<crate::Lease>::default();
        assert!(book.compaction_due(), "nothing stored yet");
        book.changed(&lease(1));
        assert_eq!(book.take_delta(), None, "not kept for a compaction");
        book.written(vec![0; 10], true);
        assert!(!book.compaction_due());
        book.changed(&lease(2));
        book.changed(&lease(3));
        assert_eq!(book.take_delta().map(|l| l.term), Some(3), "joined");
        book.written(vec![1; 6], false);
        assert!(!book.compaction_due());
        book.written(vec![2; 5], false);
        assert!(
            book.compaction_due(),
            "11 appended bytes outgrow a 10-byte base"
        );
        assert_eq!(
            book.poll(),
            Some(Persist::Compact(
                [vec![0; 10], vec![1; 6], vec![2; 5]].concat()
            )),
            "chained into one request"
        );
        assert_eq!(book.poll(), None);
    }

    #[test]
    fn a_failure_is_reported_once_and_compacts_next() {
        let mut book = Persistence::<crate::Lease>::default();
        book.written(vec![0; 10], true);
        assert!(book.failed());
        assert!(!book.failed(), "reported once");
        assert!(book.compaction_due());
        book.written(vec![0; 8], true);
        assert!(!book.compaction_due());
        assert!(book.failed(), "a new failure after a success is reported");
    }

    #[test]
    fn a_blocked_store_is_never_due() {
        let mut book = Persistence::<crate::Lease>::default();
        book.mark_dirty();
        book.block();
        assert!(!book.take_dirty());
        let mut book = Persistence::<crate::Lease>::default();
        book.mark_dirty();
        assert!(book.take_dirty());
        assert!(!book.take_dirty(), "taken once");
    }
}
