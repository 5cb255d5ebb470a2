//! The wire envelope and the codecs.
//!
//! Every message is one [`Envelope`]: schema version, sender, the sender's incarnation
//! (the HLC time it started at, so a restarted sender is told apart from a replayed
//! one), a sequence number, the sender's HLC time, the highest lease term the sender
//! knows, and a body. Bodies:
//!
//! | body | sent by | carries |
//! |---|---|---|
//! | `Delta` | a writer | a state holding only what changed, and the sender's delta sequence |
//! | `Lease` | a claimant or holder | the lease record: a claim (new term), a renewal, a release |
//! | `SyncRequest` | a joiner, or a replica that found a gap | whom it asks (`None`: whoever answers first) |
//! | `FullSync` | the replica asked | the whole state |
//! | `Request` | a follower | an application request for the leader, and how often it was passed on |
//! | `Heartbeat` | everyone, now and then | the sender's delta sequence and a digest of its state, so lost deltas and divergence are noticed |
//! | `Goodbye` | a replica leaving | nothing |
//!
//! Decoding checks the size limit before anything else, then the integrity check, then
//! the schema version, and only then the body; the replica then validates every field
//! it will trust (sequence numbers, terms, every stamp in the payload) before merging.
//! Both codecs carry the same structure; all replicas of a group use one.
//!
//! # Framing
//!
//! Messages and stores carry a CRC-32 (IEEE, as zlib computes it) of their encoded
//! bytes, so that bytes corrupted on the way or on disk are rejected whole instead of
//! decoding into wrong values:
//!
//! - binary: the postcard bytes, then the CRC as 4 bytes, little-endian;
//! - JSON: the JSON text, then a newline and the CRC as 8 lowercase hex digits (the
//!   text stays readable; a JavaScript peer strips the last 9 bytes).
//!
//! A store wraps each frame in a record of its log: see
//! [`Persist`](crate::Persist#store-record-format) for the record format.
//!
//! Schema 1 (before the integrity check) is still read from stores, which migrate to
//! schema 2 on their next write; messages must be schema 2.

use core::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Lease, SourceId};

/// The schema version this build writes and reads, on the wire and in stores.
pub const SCHEMA_VERSION: u16 = 2;

/// The oldest schema a store may have (schema 1 had no integrity check).
const OLDEST_STORE_SCHEMA: u16 = 1;

/// How messages and stores are encoded.
///
/// ```
/// use replisync::Codec;
///
/// assert_eq!(Codec::default(), Codec::Binary);
/// assert_eq!("json".parse::<Codec>().unwrap(), Codec::Json);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Codec {
    /// JSON (`serde_json`): for JavaScript peers and stores a person can read.
    Json,
    /// postcard: compact and fast, for Rust peers.
    #[default]
    Binary,
}

impl core::str::FromStr for Codec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Codec::Json),
            "binary" | "postcard" => Ok(Codec::Binary),
            other => Err(format!(
                "unknown codec {other:?}: use \"json\" or \"binary\""
            )),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Json => "json",
            Codec::Binary => "binary",
        })
    }
}

/// Why bytes (a message from a peer, or a store) could not be read, or a value could
/// not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Longer than the configured limit; nothing was decoded.
    TooLarge {
        /// The length received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Written by a newer schema than this build reads. The bytes are left alone (a
    /// store is never overwritten); upgrade this replica.
    SchemaTooNew {
        /// The schema found.
        found: u16,
        /// The newest this build reads.
        supported: u16,
    },
    /// Written by a schema older than any this build can migrate.
    SchemaTooOld {
        /// The schema found.
        found: u16,
        /// The oldest this build reads.
        oldest: u16,
    },
    /// The integrity check failed: the bytes were corrupted or truncated on the way or
    /// on disk. Nothing of them was used.
    Corrupt {
        /// The codec tried.
        codec: Codec,
    },
    /// Not a valid message or store for this codec and bundle type.
    Malformed {
        /// The codec tried.
        codec: Codec,
        /// What the decoder said.
        detail: String,
    },
    /// A value could not be encoded (a map with non-string keys in JSON, say).
    Encode {
        /// The codec tried.
        codec: Codec,
        /// What the encoder said.
        detail: String,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge { len, max } => write!(
                f,
                "{len} bytes is over the {max}-byte limit; raise Config::max_message_bytes if such states are expected"
            ),
            DecodeError::SchemaTooNew { found, supported } => write!(
                f,
                "schema {found} is newer than this build reads ({supported}); upgrade this replica (the data is kept)"
            ),
            DecodeError::SchemaTooOld { found, oldest } => write!(
                f,
                "schema {found} is older than the oldest this build migrates ({oldest})"
            ),
            DecodeError::Corrupt { codec } => write!(
                f,
                "the {codec} bytes fail their integrity check (corrupted or truncated); nothing of them was used"
            ),
            DecodeError::Malformed { codec, detail } => {
                write!(f, "not a valid {codec} envelope for this bundle type: {detail}")
            }
            DecodeError::Encode { codec, detail } => {
                write!(f, "could not encode as {codec}: {detail}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// One message on the wire; `St` is the state type (borrowed when sending), `R` the
/// application's request type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope<St, R> {
    pub schema: u16,
    pub sender: SourceId,
    pub incarnation: u64,
    pub seq: u64,
    pub hlc: u64,
    pub term: u64,
    pub body: Body<St, R>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Body<St, R> {
    Delta {
        dseq: u64,
        state: St,
    },
    Lease {
        dseq: u64,
        lease: Lease,
    },
    SyncRequest {
        to: Option<SourceId>,
    },
    /// A full state, as `parts` messages when it does not fit in one: each part is a
    /// valid state on its own; the whole is received when every part is.
    FullSync {
        to: Option<SourceId>,
        dseq: u64,
        part: u32,
        parts: u32,
        state: St,
    },
    Request {
        to: Option<SourceId>,
        hops: u8,
        request: R,
    },
    Heartbeat {
        dseq: u64,
        digest: u64,
    },
    Goodbye,
}

impl<St, R> Body<St, R> {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Delta { .. } => "delta",
            Body::Lease { lease, .. } if lease.released => "lease-release",
            Body::Lease { lease, .. } if lease.renew_seq == 0 => "lease-claim",
            Body::Lease { .. } => "lease-renew",
            Body::SyncRequest { .. } => "sync-request",
            Body::FullSync { .. } => "full-sync",
            Body::Request { .. } => "request",
            Body::Heartbeat { .. } => "heartbeat",
            Body::Goodbye => "goodbye",
        }
    }
}

#[derive(Deserialize)]
struct SchemaOnly {
    schema: u16,
}

/// What a frame's integrity check found.
enum Frame<'a> {
    /// The check holds; the encoded value without its trailer.
    Checked(&'a [u8]),
    /// No valid trailer: corrupted, truncated, or written before the check existed.
    Unchecked,
}

impl Codec {
    /// Encodes a value, without a frame (for digests and size estimates).
    pub(crate) fn encode<T: Serialize>(self, value: &T) -> Result<Vec<u8>, DecodeError> {
        match self {
            Codec::Json => serde_json::to_vec(value).map_err(|e| DecodeError::Encode {
                codec: self,
                detail: e.to_string(),
            }),
            Codec::Binary => postcard::to_allocvec(value).map_err(|e| DecodeError::Encode {
                codec: self,
                detail: e.to_string(),
            }),
        }
    }

    /// Encodes a value and appends its integrity check (see the module docs).
    pub(crate) fn encode_framed<T: Serialize>(self, value: &T) -> Result<Vec<u8>, DecodeError> {
        let mut bytes = self.encode(value)?;
        let crc = crc32fast::hash(&bytes);
        match self {
            Codec::Json => bytes.extend_from_slice(format!("\n{crc:08x}").as_bytes()),
            Codec::Binary => bytes.extend_from_slice(&crc.to_le_bytes()),
        }
        Ok(bytes)
    }

    /// Whether these bytes are a frame whose integrity check holds.
    pub(crate) fn frame_checks(self, bytes: &[u8]) -> bool {
        matches!(self.unframe(bytes), Frame::Checked(_))
    }

    fn unframe(self, bytes: &[u8]) -> Frame<'_> {
        let (body, trailer) = match self {
            Codec::Json if bytes.len() >= 9 => bytes.split_at(bytes.len() - 9),
            Codec::Binary if bytes.len() >= 4 => bytes.split_at(bytes.len() - 4),
            _ => return Frame::Unchecked,
        };
        let found = match self {
            Codec::Json => {
                let hex = &trailer[1..];
                let valid = trailer[0] == b'\n'
                    && hex
                        .iter()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
                match core::str::from_utf8(hex).ok().filter(|_| valid) {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => None,
                }
            }
            Codec::Binary => Some(u32::from_le_bytes([
                trailer[0], trailer[1], trailer[2], trailer[3],
            ])),
        };
        if found == Some(crc32fast::hash(body)) {
            Frame::Checked(body)
        } else {
            Frame::Unchecked
        }
    }

    /// Decodes a framed message whose first field is a `schema: u16`: checks the size
    /// limit, then the integrity check, then the schema, before trusting the rest.
    pub(crate) fn decode_message<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        max: usize,
        schema_of: impl Fn(&T) -> u16,
    ) -> Result<T, DecodeError> {
        self.decode_framed(bytes, max, SCHEMA_VERSION, schema_of)
    }

    /// Decodes a framed store (no size limit: a store is not bound by the message
    /// limit); a schema-1 store, written before the integrity check, is read as it is.
    pub(crate) fn decode_store<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        schema_of: impl Fn(&T) -> u16,
    ) -> Result<T, DecodeError> {
        self.decode_framed(bytes, usize::MAX, OLDEST_STORE_SCHEMA, schema_of)
    }

    /// Decodes one record of a store log: unlike a whole store, which may predate the
    /// integrity check, a record must pass it (failing it, it is corrupt, whatever
    /// schema its damaged bytes seem to name).
    pub(crate) fn decode_store_record<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        schema_of: impl Fn(&T) -> u16,
    ) -> Result<T, DecodeError> {
        if !self.frame_checks(bytes) {
            return Err(DecodeError::Corrupt { codec: self });
        }
        self.decode_store(bytes, schema_of)
    }

    fn decode_framed<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        max: usize,
        oldest: u16,
        schema_of: impl Fn(&T) -> u16,
    ) -> Result<T, DecodeError> {
        if bytes.len() > max {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        match self.unframe(bytes) {
            Frame::Checked(body) => {
                let value = self.decode_body(body, oldest, &schema_of)?;
                if schema_of(&value) < 2 {
                    // Schema 1 never had a trailer: these bytes only look framed.
                    return Err(DecodeError::Corrupt { codec: self });
                }
                Ok(value)
            }
            Frame::Unchecked => {
                // A newer schema may frame differently: say so rather than "corrupt",
                // so that a store is kept for a newer build to read.
                if let Some(schema) = self.peek_schema(bytes) {
                    check_schema(schema, SCHEMA_VERSION.min(oldest))?;
                    if schema < 2 && oldest < 2 {
                        return self.decode_body(bytes, oldest, &schema_of);
                    }
                }
                Err(DecodeError::Corrupt { codec: self })
            }
        }
    }

    /// The schema of possibly unframed bytes, if it can be read.
    fn peek_schema(self, bytes: &[u8]) -> Option<u16> {
        match self {
            Codec::Binary => postcard::take_from_bytes::<u16>(bytes).ok().map(|(s, _)| s),
            Codec::Json => {
                let text = match bytes.iter().rposition(|b| *b == b'}') {
                    Some(end) => &bytes[..=end],
                    None => bytes,
                };
                serde_json::from_slice::<SchemaOnly>(text)
                    .ok()
                    .map(|h| h.schema)
            }
        }
    }

    fn decode_body<T: DeserializeOwned>(
        self,
        body: &[u8],
        oldest: u16,
        schema_of: &impl Fn(&T) -> u16,
    ) -> Result<T, DecodeError> {
        if let Some(schema) = self.peek_schema(body) {
            check_schema(schema, oldest)?;
        }
        let decoded: Result<T, String> = match self {
            Codec::Json => serde_json::from_slice(body).map_err(|e| e.to_string()),
            Codec::Binary => postcard::from_bytes(body).map_err(|e| e.to_string()),
        };
        match decoded {
            Ok(value) => {
                check_schema(schema_of(&value), oldest)?;
                Ok(value)
            }
            Err(detail) => Err(DecodeError::Malformed {
                codec: self,
                detail,
            }),
        }
    }
}

fn check_schema(found: u16, oldest: u16) -> Result<(), DecodeError> {
    if found > SCHEMA_VERSION {
        Err(DecodeError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        })
    } else if found < oldest {
        Err(DecodeError::SchemaTooOld { found, oldest })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Env = Envelope<Vec<u32>, String>;

    fn sample(schema: u16) -> Env {
        Envelope {
            schema,
            sender: SourceId::from_u128(5),
            incarnation: 1,
            seq: 2,
            hlc: 3,
            term: 4,
            body: Body::Delta {
                dseq: 9,
                state: vec![1, 2, 3],
            },
        }
    }

    fn decode(codec: Codec, bytes: &[u8]) -> Result<Env, DecodeError> {
        codec.decode_message(bytes, 1 << 20, |e: &Env| e.schema)
    }

    #[test]
    fn both_codecs_round_trip() {
        for codec in [Codec::Json, Codec::Binary] {
            let bytes = codec.encode_framed(&sample(SCHEMA_VERSION)).unwrap();
            assert_eq!(decode(codec, &bytes).unwrap(), sample(SCHEMA_VERSION));
        }
    }

    #[test]
    fn json_frames_stay_readable() {
        let bytes = Codec::Json.encode_framed(&sample(SCHEMA_VERSION)).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let (json, crc) = text.rsplit_once('\n').unwrap();
        assert!(json.starts_with(r#"{"schema":2,"#));
        assert_eq!(crc, format!("{:08x}", crc32fast::hash(json.as_bytes())));
    }

    #[test]
    fn every_single_bit_flip_and_every_truncation_is_rejected() {
        for codec in [Codec::Json, Codec::Binary] {
            let bytes = codec.encode_framed(&sample(SCHEMA_VERSION)).unwrap();
            for bit in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    decode(codec, &flipped).is_err(),
                    "{codec}: bit {bit} accepted"
                );
            }
            for len in 0..bytes.len() {
                assert!(
                    decode(codec, &bytes[..len]).is_err(),
                    "{codec}: {len} bytes"
                );
            }
        }
    }

    #[test]
    fn size_is_checked_first() {
        let err = Codec::Json
            .decode_message::<Env>(&[b'x'; 100], 99, |e| e.schema)
            .unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { len: 100, max: 99 });
    }

    #[test]
    fn newer_schema_is_named_as_such() {
        for codec in [Codec::Json, Codec::Binary] {
            let bytes = codec.encode_framed(&sample(7)).unwrap();
            let err = decode(codec, &bytes).unwrap_err();
            assert_eq!(
                err,
                DecodeError::SchemaTooNew {
                    found: 7,
                    supported: SCHEMA_VERSION
                },
                "{codec}"
            );
        }
        // A newer JSON schema whose shape and framing changed is still reported as newer.
        let err = decode(Codec::Json, br#"{"schema":9,"other":1}"#).unwrap_err();
        assert!(matches!(err, DecodeError::SchemaTooNew { found: 9, .. }));
    }

    #[test]
    fn unframed_schema_1_is_read_from_stores_but_not_from_the_wire() {
        for codec in [Codec::Json, Codec::Binary] {
            let old = codec.encode(&sample(1)).unwrap();
            let store: Env = codec.decode_store(&old, |e: &Env| e.schema).unwrap();
            assert_eq!(store, sample(1));
            assert_eq!(
                decode(codec, &old).unwrap_err(),
                DecodeError::SchemaTooOld {
                    found: 1,
                    oldest: 2
                }
            );
            // Schema 2 without its trailer is corrupt, not old.
            let unframed = codec.encode(&sample(2)).unwrap();
            assert_eq!(
                codec
                    .decode_store::<Env>(&unframed, |e| e.schema)
                    .unwrap_err(),
                DecodeError::Corrupt { codec }
            );
        }
    }

    #[test]
    fn garbage_is_rejected() {
        for codec in [Codec::Json, Codec::Binary] {
            let err = decode(codec, &[0x01, 0xff, 0xff, 0xff]).unwrap_err();
            assert!(
                matches!(
                    err,
                    DecodeError::Corrupt { .. } | DecodeError::SchemaTooOld { .. }
                ),
                "{codec}: {err}"
            );
        }
    }
}
