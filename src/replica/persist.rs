//! Persistence by delta: the records a replica hands its store, and reading them back.
//!
//! A store holds a **log**: a base record (the whole state, written by a compaction)
//! followed by delta records appended since. Every record is a state of its own, so
//! restoring is merging them in order (merging is a join: the result is the state
//! whatever the order). A small write into a large state appends a few bytes; once the
//! appended deltas outgrow the base ([`COMPACT_FACTOR`]), the next persist compacts.
//!
//! The record layout is documented on [`Persist`] (public, for recovery tools).
//!
//! A last record cut short (the process died while appending) is dropped and reported;
//! the next persist compacts it away. Any other record that is not whole and checked
//! (a damaged length, header or line break, or a whole record failing its check) makes
//! the whole store unreadable: it is reported and never overwritten.

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
/// A store keeps a **log**: the bytes of every `Persist` applied in order (see
/// [`Persist::apply_to`]). [`Replica::restore`](crate::Replica::restore) reads it back.
///
/// # Store record format
///
/// A log is a sequence of records, each a whole state (merging them in order restores
/// the state). A compaction's bytes start with a base record (the whole state) and may
/// be followed by delta records; an append's bytes are one or more delta records. Each
/// record holds one `Stored` value, a struct with, in this order: `schema` (u16, 2
/// today), `updated_at` (u64, milliseconds of the writer's hybrid clock), `source` (the
/// writer's UUID) and `state` (the bundle, with its lease record). Its bytes are
/// *framed*: the encoded value, then a CRC-32 (IEEE, as zlib computes it) of those
/// bytes. Per store codec ([`Config::store_codec`](crate::Config::store_codec)):
///
/// **Binary** (record format 2). A 16-byte header, then the frame:
///
/// | offset | size | content |
/// |---|---|---|
/// | 0 | 4 | `08 00 00 00` |
/// | 4 | 2 | `rs` (`72 73`) |
/// | 6 | 1 | `02`: the record format |
/// | 7 | 1 | `B` (`42`): the first record of a compaction, or `D` (`44`): a delta |
/// | 8 | 4 | `n`, the frame's length, u32 little-endian (at least 4) |
/// | 12 | 4 | CRC-32 of bytes 0–11, u32 little-endian |
/// | 16 | `n` | the frame: the postcard bytes of the record, then their CRC-32, u32 little-endian |
///
/// **JSON**. Two lines a record, readable in a text editor: the record as compact JSON
/// (which holds no raw newline or other control character), a newline (`0a`), its
/// CRC-32 as 8 lowercase hex digits, a newline.
///
/// **Reading.** A record is whole when all its bytes are there; a whole record must pass
/// every check (binary: the header's CRC, then the frame's; JSON: the second newline
/// exactly 9 bytes after the first, then the CRC). Only the log's **last** record may be
/// *cut short* (the process died while appending it), and only if what is there is a
/// strict prefix of a record: binary, a prefix of the header's constant part and kind,
/// or a whole header that passes its check followed by fewer than `n` bytes (whose
/// trailing CRC bytes, where present, match the postcard bytes); JSON, a prefix of the
/// JSON text (from its `{`, with no control character), or the whole JSON text, its
/// newline and a prefix of its CRC digits, with no final newline. Such a record is
/// dropped, reported as [`Degradation::StoreRecordDropped`](crate::Degradation::StoreRecordDropped),
/// and the next persist rewrites the log. The first record is never dropped. Anything
/// else (a header, length or line break that fails its check, a whole record whose CRC
/// fails, a record of a newer schema) leaves the store unread: restore fails with
/// [`Degradation::StoreUnreadable`](crate::Degradation::StoreUnreadable), and the
/// replica never persists over it.
///
/// **Older stores** still load, and the next persist rewrites them in the current
/// format: binary logs of record format 1 (each record a u32 little-endian length, then
/// the frame; such a length is never 8, so the two formats are told apart by their first
/// bytes), and stores written before logs (one state, framed, or unframed at schema 1).
/// A build that reads only record format 1 takes a record of format 2 for a record of a
/// newer schema, and so keeps the store rather than misreading it.
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

/// What a binary record header starts with: `08 00 00 00`, then `rs` and the record
/// format (2). See [`Persist`] for the layout.
pub(crate) const MARKER: [u8; 7] = [8, 0, 0, 0, b'r', b's', 2];

/// The length of a binary record header.
const HEADER: usize = 16;

/// What a binary record holds: the first record of a compaction, or a delta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Base,
    Delta,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Base => b'B',
            Kind::Delta => b'D',
        }
    }
}

fn is_kind(byte: u8) -> bool {
    byte == b'B' || byte == b'D'
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Wraps a framed record for the log (see [`Persist`] for the layout).
pub(crate) fn record(codec: Codec, kind: Kind, framed: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
    match codec {
        Codec::Json => {
            let mut r = framed;
            r.push(b'\n');
            Ok(r)
        }
        _ => {
            let len = u32::try_from(framed.len()).map_err(|_| DecodeError::Encode {
                codec,
                detail: format!("a record of {} bytes is over the 4 GiB limit", framed.len()),
            })?;
            let mut r = Vec::with_capacity(framed.len() + HEADER);
            r.extend_from_slice(&MARKER);
            r.push(kind.byte());
            r.extend_from_slice(&len.to_le_bytes());
            let check = crc32fast::hash(&r);
            r.extend_from_slice(&check.to_le_bytes());
            r.extend_from_slice(&framed);
            Ok(r)
        }
    }
}

/// The front of a log, split.
#[derive(Debug, PartialEq)]
enum Split<'a> {
    /// A complete record (its integrity check still to be verified by decoding): its
    /// framed bytes, its length in the log, and whether it is of the previous binary
    /// format (a bare length).
    Record {
        frame: &'a [u8],
        len: usize,
        old: bool,
    },
    /// The rest of the log is a strict prefix of a record: a last record cut short.
    Torn,
    /// Neither: the log is damaged.
    Damaged,
}

/// Splits the first record off `rest`. `after_new`: a record of the current binary
/// format came before (the previous format's records are then read only whole).
fn split(codec: Codec, rest: &[u8], after_new: bool) -> Split<'_> {
    match codec {
        Codec::Json => json_split(rest),
        _ if is_new_binary(rest) => binary_split(rest),
        _ => old_binary_split(rest, after_new),
    }
}

/// Whether `rest` starts like a record of the current binary format (or is a prefix of
/// such a start). The previous format never wrote a record of 8 bytes, so its records
/// never start so.
fn is_new_binary(rest: &[u8]) -> bool {
    let n = rest.len().min(MARKER.len());
    rest[..n] == MARKER[..n]
}

/// A binary record: its header must pass its own check before its length is trusted;
/// then either the record is whole, or the log ends inside it (and what is there of
/// its trailer matches what its body says it must be).
fn binary_split(rest: &[u8]) -> Split<'_> {
    if rest.len() < HEADER {
        // Only the header's constant part and kind can be checked.
        return match rest.get(MARKER.len()) {
            Some(kind) if !is_kind(*kind) => Split::Damaged,
            _ => Split::Torn,
        };
    }
    if crc32fast::hash(&rest[..12]) != u32_at(rest, 12) || !is_kind(rest[7]) {
        return Split::Damaged;
    }
    let len = u32_at(rest, 8) as usize;
    if len < 4 {
        return Split::Damaged;
    }
    let Some(end) = HEADER.checked_add(len) else {
        return Split::Damaged;
    };
    match rest.get(HEADER..end) {
        Some(frame) => Split::Record {
            frame,
            len: end,
            old: false,
        },
        None => {
            let body = HEADER + len - 4;
            if rest.len() > body {
                let check = crc32fast::hash(&rest[HEADER..body]).to_le_bytes();
                if rest[body..] != check[..rest.len() - body] {
                    return Split::Damaged;
                }
            }
            Split::Torn
        }
    }
}

/// A record of the previous binary format: a 4-byte length, then the frame. Its length
/// has no check of its own: a record that runs past the end of the log is taken as cut
/// short only when nothing shows its length is damaged (no current-format record came
/// before, the bytes after the length are not a whole frame, and no whole record ends
/// the log further on).
fn old_binary_split(rest: &[u8], after_new: bool) -> Split<'_> {
    if rest.len() >= 4 {
        let len = u32_at(rest, 0) as usize;
        if let Some(frame) = 4usize.checked_add(len).and_then(|end| rest.get(4..end)) {
            return Split::Record {
                frame,
                len: len + 4,
                old: true,
            };
        }
    }
    let damaged = after_new
        || (rest.len() >= 4 && Codec::Binary.frame_checks(&rest[4..]))
        || (1..rest.len()).any(|at| whole_binary_record_at(&rest[at..]));
    if damaged {
        Split::Damaged
    } else {
        Split::Torn
    }
}

/// Whether `bytes` start with a current-format header that passes its check, or are
/// one whole record of the previous format.
fn whole_binary_record_at(bytes: &[u8]) -> bool {
    if bytes.len() >= HEADER && bytes[..MARKER.len()] == MARKER {
        return crc32fast::hash(&bytes[..12]) == u32_at(bytes, 12);
    }
    bytes.len() >= 8
        && u32_at(bytes, 0) as usize == bytes.len() - 4
        && Codec::Binary.frame_checks(&bytes[4..])
}

/// A JSON record: the JSON text (which holds no raw newline), a newline, 8 hex digits,
/// a newline. Whole when the second newline is where it must be; otherwise cut short
/// only if what is there is a strict prefix of such a record.
fn json_split(rest: &[u8]) -> Split<'_> {
    let first = rest.iter().position(|b| *b == b'\n');
    match first {
        Some(at) if rest.get(at + 9) == Some(&b'\n') => Split::Record {
            frame: &rest[..at + 9],
            len: at + 10,
            old: false,
        },
        Some(at) => {
            let (text, check) = (&rest[..at], &rest[at + 1..]);
            let cut = check.len() < 9
                && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
                && format!("{:08x}", crc32fast::hash(text))
                    .as_bytes()
                    .starts_with(check);
            if cut {
                Split::Torn
            } else {
                Split::Damaged
            }
        }
        // The JSON text cut short: compact JSON holds no control character.
        None if rest[0] == b'{' && rest.iter().all(|b| *b >= 0x20) => Split::Torn,
        None => Split::Damaged,
    }
}

/// What a log held: its records' states in order, the size of its base and of the
/// deltas after it, and whether a cut-short last record was dropped or the log must be
/// rewritten (an old schema or record format).
pub(crate) struct Loaded<St> {
    pub states: Vec<Stored<St>>,
    pub base_len: usize,
    pub appended_len: usize,
    pub torn: bool,
    pub rewrite: bool,
}

/// Reads a log: every record must be whole and pass its checks, but for a last one
/// cut short (a strict prefix of a record), which is dropped; the first record is
/// never dropped. A store written before logs (one state, unframed at schema 1 or
/// framed without a record around it) is read as it is.
pub(crate) fn load<St: serde::de::DeserializeOwned>(
    codec: Codec,
    log: &[u8],
) -> Result<Loaded<St>, DecodeError> {
    let corrupt = DecodeError::Corrupt { codec };
    // Only a log that does not start as the current binary format may predate logs.
    let may_be_legacy = codec == Codec::Json || !is_new_binary(log);
    let mut states = Vec::new();
    let (mut rest, mut base_len, mut total) = (log, 0, 0);
    let (mut torn, mut after_new, mut old) = (false, false, false);
    while !rest.is_empty() {
        let first = states.is_empty();
        match split(codec, rest, after_new) {
            Split::Record {
                frame,
                len,
                old: old_format,
            } => {
                match codec.decode_store_record::<Stored<St>>(frame, |s| s.schema) {
                    Ok(s) => states.push(s),
                    Err(e) if first && may_be_legacy => return legacy(codec, log).map_err(|_| e),
                    Err(e) => return Err(e),
                }
                if first {
                    base_len = len;
                }
                total += len;
                old |= old_format;
                after_new |= !old_format;
                rest = &rest[len..];
            }
            Split::Torn if !first => {
                torn = true;
                break;
            }
            // Never the base: a log whose first record is not whole is unreadable,
            // unless it is a store from before logs.
            _ if first && may_be_legacy => return legacy(codec, log),
            _ => return Err(corrupt),
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
        rewrite: old,
    })
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
        let kind = if compact { Kind::Base } else { Kind::Delta };
        match codec
            .encode_framed(&stored)
            .and_then(|framed| record(codec, kind, framed))
        {
            Ok(bytes) => self.persistence.written(bytes, compact),
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
            schema: crate::format::SCHEMA_VERSION,
            updated_at: 1,
            source: SourceId::from_u128(1),
            state,
        };
        record(codec, Kind::Delta, codec.encode_framed(&stored).unwrap()).unwrap()
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

    /// A record of the previous binary format (record format 1): a bare length.
    fn old_framed(state: u32) -> Vec<u8> {
        let framed = framed(Codec::Binary, state)[HEADER..].to_vec();
        let mut r = (framed.len() as u32).to_le_bytes().to_vec();
        r.extend(framed);
        r
    }

    fn states(loaded: &Loaded<u32>) -> Vec<u32> {
        loaded.states.iter().map(|s| s.state).collect()
    }

    #[test]
    fn a_whole_last_record_failing_its_check_is_damage_not_a_cut() {
        for codec in [Codec::Json, Codec::Binary] {
            let mut log = framed(codec, 1);
            log.extend(framed(codec, 2));
            let end = log.len();
            // A byte of the last record's encoded value (the JSON text, or the postcard
            // bytes after the header), and of its check.
            let at = if codec == Codec::Json {
                end - 30
            } else {
                end - 6
            };
            for at in [at, end - 2] {
                let mut damaged = log.clone();
                damaged[at] ^= 0x04;
                assert_eq!(
                    load::<u32>(codec, &damaged).err(),
                    Some(DecodeError::Corrupt { codec }),
                    "{codec}: byte {at}"
                );
            }
        }
    }

    #[test]
    fn logs_of_both_binary_formats_read_in_either_order_and_ask_for_a_rewrite() {
        let new = |s| framed(Codec::Binary, s);
        let old_then_new = [old_framed(1), old_framed(2), new(3)].concat();
        let new_then_old = [new(1), new(2), old_framed(3)].concat();
        for log in [old_then_new, new_then_old] {
            let loaded: Loaded<u32> = load(Codec::Binary, &log).unwrap();
            assert_eq!(states(&loaded), [1, 2, 3]);
            assert!(loaded.rewrite, "the next persist writes the current format");
        }
        let current: Loaded<u32> = load(Codec::Binary, &[new(1), new(2)].concat()).unwrap();
        assert!(!current.rewrite);
        // An old record cut short is a tail only before any current-format record.
        let old = old_framed(2);
        let torn: Loaded<u32> =
            load(Codec::Binary, &[old_framed(1), old[..20].to_vec()].concat()).unwrap();
        assert!(torn.torn);
        assert!(load::<u32>(Codec::Binary, &[new(1), old[..20].to_vec()].concat()).is_err());
        // An old record whose length was damaged, with whole records after it.
        let mut damaged = [old_framed(1), old_framed(2), old_framed(3)].concat();
        let second = old_framed(1).len();
        damaged[second + 2] ^= 0x01;
        assert!(load::<u32>(Codec::Binary, &damaged).is_err());
    }

    #[test]
    fn a_reader_of_the_previous_binary_format_takes_a_current_record_for_a_newer_schema() {
        // That reader splits a 4-byte length (8) and an 8-byte frame off the front,
        // and, failing it, tries the whole log as one state.
        let log = [framed(Codec::Binary, 1), framed(Codec::Binary, 2)].concat();
        assert_eq!(&log[..4], &8u32.to_le_bytes());
        for bytes in [&log[4..12], &log[..]] {
            let err = Codec::Binary
                .decode_store::<Stored<u32>>(bytes, |s| s.schema)
                .unwrap_err();
            assert!(matches!(err, DecodeError::SchemaTooNew { .. }), "{err:?}");
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
