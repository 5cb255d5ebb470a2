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
//! | `Request` | a follower | an application request for the leader |
//! | `Heartbeat` | everyone, now and then | the sender's delta sequence and a digest of its state, so lost deltas and divergence are noticed |
//! | `Goodbye` | a replica leaving | nothing |
//!
//! Decoding checks the size limit before anything else, then the schema version.
//! Both codecs carry the same structure; all replicas of a group use one.

use core::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Lease, SourceId};

/// The schema version this build writes and reads, on the wire and in stores.
pub const SCHEMA_VERSION: u16 = 1;

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
    FullSync {
        to: Option<SourceId>,
        dseq: u64,
        state: St,
    },
    Request {
        to: Option<SourceId>,
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

impl Codec {
    /// Encodes a value.
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

    /// Decodes a value whose first field is a `schema: u16`, checking the size limit,
    /// then the schema, before trusting the rest.
    pub(crate) fn decode_versioned<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        max: usize,
        schema_of: impl Fn(&T) -> u16,
    ) -> Result<T, DecodeError> {
        if bytes.len() > max {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        if self == Codec::Binary {
            // postcard writes the schema first, as a varint: read it alone.
            let (schema, _) =
                postcard::take_from_bytes::<u16>(bytes).map_err(|e| DecodeError::Malformed {
                    codec: self,
                    detail: e.to_string(),
                })?;
            check_schema(schema)?;
        }
        let decoded: Result<T, String> = match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Codec::Binary => postcard::from_bytes(bytes).map_err(|e| e.to_string()),
        };
        match decoded {
            Ok(value) => {
                check_schema(schema_of(&value))?;
                Ok(value)
            }
            Err(detail) => {
                if self == Codec::Json {
                    // Say "too new" rather than "malformed" when that is the reason.
                    if let Ok(header) = serde_json::from_slice::<SchemaOnly>(bytes) {
                        check_schema(header.schema)?;
                    }
                }
                Err(DecodeError::Malformed {
                    codec: self,
                    detail,
                })
            }
        }
    }
}

fn check_schema(found: u16) -> Result<(), DecodeError> {
    const OLDEST: u16 = 1;
    if found > SCHEMA_VERSION {
        Err(DecodeError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        })
    } else if found < OLDEST {
        Err(DecodeError::SchemaTooOld {
            found,
            oldest: OLDEST,
        })
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

    #[test]
    fn both_codecs_round_trip() {
        for codec in [Codec::Json, Codec::Binary] {
            let bytes = codec.encode(&sample(1)).unwrap();
            let back: Env = codec
                .decode_versioned(&bytes, 1 << 20, |e: &Env| e.schema)
                .unwrap();
            assert_eq!(back, sample(1));
        }
    }

    #[test]
    fn size_is_checked_first() {
        let err = Codec::Json
            .decode_versioned::<Env>(&[b'x'; 100], 99, |e| e.schema)
            .unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { len: 100, max: 99 });
    }

    #[test]
    fn newer_schema_is_named_as_such() {
        for codec in [Codec::Json, Codec::Binary] {
            let bytes = codec.encode(&sample(7)).unwrap();
            let err = codec
                .decode_versioned::<Env>(&bytes, 1 << 20, |e| e.schema)
                .unwrap_err();
            assert_eq!(
                err,
                DecodeError::SchemaTooNew {
                    found: 7,
                    supported: SCHEMA_VERSION
                },
                "{codec}"
            );
        }
        // A newer JSON schema whose shape changed too is still reported as newer.
        let err = Codec::Json
            .decode_versioned::<Env>(br#"{"schema":9,"other":1}"#, 1 << 20, |e| e.schema)
            .unwrap_err();
        assert!(matches!(err, DecodeError::SchemaTooNew { found: 9, .. }));
    }

    #[test]
    fn garbage_is_malformed() {
        for codec in [Codec::Json, Codec::Binary] {
            let err = codec
                .decode_versioned::<Env>(&[0x01, 0xff, 0xff, 0xff], 1 << 20, |e| e.schema)
                .unwrap_err();
            assert!(
                matches!(err, DecodeError::Malformed { .. }),
                "{codec}: {err}"
            );
        }
    }
}
