//! The record framing of every log this crate writes (message logs and store logs).
//!
//! A record is a 16-byte header and its payload:
//!
//! | bytes | what |
//! |---|---|
//! | 0..4 | the magic `RSF1` (replisync files, format 1) |
//! | 4..8 | the payload's length, u32 little-endian |
//! | 8..12 | the CRC-32 (IEEE) of the payload, little-endian |
//! | 12..16 | the CRC-32 of bytes 0..12, little-endian |
//! | 16.. | the payload |
//!
//! The header has its own check so that a damaged length is caught before it is
//! trusted: a reader never waits for bytes a corrupted length promised. After a damaged
//! header a reader looks for the next magic whose header checks out (resynchronises),
//! so one bad record costs that record only. A payload that fails its check is skipped
//! by its (checked) length.

/// The magic that starts every record.
pub(crate) const MAGIC: [u8; 4] = *b"RSF1";

/// The size of a record's header.
pub(crate) const HEADER: usize = 16;

/// The largest payload a record can carry.
pub(crate) const MAX_PAYLOAD: usize = u32::MAX as usize;

/// Appends the record holding `payload` to `out`.
///
/// # Panics
///
/// When `payload` is longer than [`MAX_PAYLOAD`] (callers check first).
pub(crate) fn encode_into(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payload length checked by the caller");
    let start = out.len();
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&out[start..start + 12]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The record holding `payload`.
#[cfg(test)]
pub(crate) fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, payload);
    out
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    /// A whole record whose checks pass; `used` bytes of the buffer make it up.
    Record { payload: &'a [u8], used: usize },
    /// The start of a record (or of a header) whose rest has not been written yet.
    Incomplete,
    /// `skip` bytes that are no good record: a damaged header (skip to the next place a
    /// record may start) or a whole record whose payload fails its check.
    Corrupt { skip: usize },
}

/// Reads the record at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < HEADER {
        // A header still being written matches the magic so far.
        let n = buf.len().min(MAGIC.len());
        if buf[..n] == MAGIC[..n] {
            return Parsed::Incomplete;
        }
        return Parsed::Corrupt { skip: resync(buf) };
    }
    let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    if buf[..4] != MAGIC || crc32fast::hash(&buf[..12]) != word(12) {
        return Parsed::Corrupt { skip: resync(buf) };
    }
    let len = word(4) as usize;
    let Some(end) = HEADER.checked_add(len) else {
        return Parsed::Corrupt { skip: resync(buf) };
    };
    if buf.len() < end {
        return Parsed::Incomplete;
    }
    let payload = &buf[HEADER..end];
    if crc32fast::hash(payload) != word(8) {
        return Parsed::Corrupt { skip: end };
    }
    Parsed::Record { payload, used: end }
}

/// How many bytes to drop so that the buffer starts where a record may start: at the
/// next magic after the first byte, or at a tail that may be the start of one.
fn resync(buf: &[u8]) -> usize {
    let mut at = 1;
    while at < buf.len() {
        let rest = &buf[at..];
        let n = rest.len().min(MAGIC.len());
        if rest[..n] == MAGIC[..n] {
            return at;
        }
        at += 1;
    }
    buf.len()
}

/// The records of a whole file, read at once (a store log).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan<'a> {
    /// The payloads that passed their checks, in order.
    pub payloads: Vec<&'a [u8]>,
    /// Damaged stretches before the end: (offset, length).
    pub corrupt: Vec<(u64, u64)>,
    /// A last record cut short or failing its check: (offset, length).
    pub torn: Option<(u64, u64)>,
}

/// Splits a whole file into records. A damaged stretch that runs to the end of the file
/// is its torn tail (a write cut short), not corruption in the middle.
pub(crate) fn scan(bytes: &[u8]) -> Scan<'_> {
    let mut out = Scan::default();
    let mut at = 0usize;
    while at < bytes.len() {
        match parse(&bytes[at..]) {
            Parsed::Record { payload, used } => {
                out.payloads.push(payload);
                at += used;
            }
            Parsed::Incomplete => {
                out.torn = Some((at as u64, (bytes.len() - at) as u64));
                break;
            }
            Parsed::Corrupt { skip } => {
                if at + skip >= bytes.len() {
                    out.torn = Some((at as u64, (bytes.len() - at) as u64));
                } else {
                    match out.corrupt.last_mut() {
                        // Adjacent damaged stretches are one.
                        Some((start, len)) if *start + *len == at as u64 => *len += skip as u64,
                        _ => out.corrupt.push((at as u64, skip as u64)),
                    }
                }
                at += skip;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_into(&mut out, p);
        }
        out
    }

    #[test]
    fn records_read_back_whole() {
        let bytes = log(&[b"", b"a", &[7u8; 1000]]);
        let scan = scan(&bytes);
        assert_eq!(scan.payloads, vec![&b""[..], b"a", &[7u8; 1000]]);
        assert!(scan.corrupt.is_empty());
        assert_eq!(scan.torn, None);
    }

    #[test]
    fn every_cut_of_a_record_is_incomplete_never_corrupt() {
        let record = encode(b"hello, replicas");
        for cut in 0..record.len() {
            assert_eq!(parse(&record[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        let bytes = log(&[b"first", b"second"]);
        let first = encode(b"first").len();
        for cut in first + 1..bytes.len() {
            let scan = scan(&bytes[..cut]);
            assert_eq!(scan.payloads, vec![&b"first"[..]], "cut at {cut}");
            assert_eq!(scan.torn, Some((first as u64, (cut - first) as u64)));
            assert!(scan.corrupt.is_empty());
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_costs_that_record_only() {
        let bytes = log(&[b"one", b"two", b"three"]);
        let second = encode(b"one").len();
        let third = second + encode(b"two").len();
        for at in second..third {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                let scan = scan(&damaged);
                assert_eq!(
                    scan.payloads,
                    vec![&b"one"[..], b"three"],
                    "byte {at} bit {bit}"
                );
                assert_eq!(scan.corrupt.len(), 1, "byte {at} bit {bit}");
                assert_eq!(scan.corrupt[0].0, second as u64);
                assert_eq!(scan.torn, None);
            }
        }
    }

    #[test]
    fn a_damaged_length_is_never_trusted() {
        let mut bytes = log(&[b"small", b"next"]);
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        // The header check fails at once: no waiting for 4 GiB that never come.
        assert!(matches!(parse(&bytes), Parsed::Corrupt { .. }));
        assert_eq!(scan(&bytes).payloads, vec![&b"next"[..]]);
    }

    #[test]
    fn garbage_before_and_between_records_is_skipped() {
        let mut bytes = b"RSFgarbageRS".to_vec();
        bytes.extend(encode(b"kept"));
        bytes.extend(b"RSF1RSF1xx");
        bytes.extend(encode(b"kept too"));
        let scan = scan(&bytes);
        assert_eq!(scan.payloads, vec![&b"kept"[..], b"kept too"]);
        assert_eq!(scan.corrupt.len(), 2);
        assert_eq!(scan.torn, None);
    }
}
