//! The wire format as a peer written elsewhere (in JavaScript, say) would read and
//! write it, from its description in the library's docs: the envelope, its bodies, and
//! the integrity check. Tests use it to craft messages the library would never send
//! (extreme field values under a valid check) and to check that what the library sends
//! is what the docs say.

use replisync::{Codec, Lease, SourceId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a message carries as state: the lease record and the application's bundle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State<S> {
    pub lease: Option<Lease>,
    pub app: S,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<S, R> {
    pub schema: u16,
    pub sender: SourceId,
    pub incarnation: u64,
    pub seq: u64,
    pub hlc: u64,
    pub term: u64,
    pub body: Body<S, R>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Body<S, R> {
    Delta {
        dseq: u64,
        state: State<S>,
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
        part: u32,
        parts: u32,
        state: State<S>,
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

/// What a store holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stored<S> {
    pub schema: u16,
    pub updated_at: u64,
    pub source: SourceId,
    pub state: State<S>,
}

/// Encodes `value` and appends the integrity check: binary, the CRC-32 as 4 bytes
/// little-endian; JSON, a newline and 8 lowercase hex digits.
pub fn encode<T: Serialize>(codec: Codec, value: &T) -> Vec<u8> {
    let mut bytes = match codec {
        Codec::Json => serde_json::to_vec(value).unwrap(),
        _ => postcard::to_allocvec(value).unwrap(),
    };
    let crc = crc32fast::hash(&bytes);
    match codec {
        Codec::Json => bytes.extend_from_slice(format!("\n{crc:08x}").as_bytes()),
        _ => bytes.extend_from_slice(&crc.to_le_bytes()),
    }
    bytes
}

/// Checks the integrity check and decodes; `None` when either fails.
pub fn try_decode<T: DeserializeOwned>(codec: Codec, bytes: &[u8]) -> Option<T> {
    let split = match codec {
        Codec::Json => bytes.len().checked_sub(9)?,
        _ => bytes.len().checked_sub(4)?,
    };
    let (body, trailer) = bytes.split_at(split);
    let crc = crc32fast::hash(body);
    let valid = match codec {
        Codec::Json => trailer == format!("\n{crc:08x}").as_bytes(),
        _ => trailer == crc.to_le_bytes(),
    };
    if !valid {
        return None;
    }
    match codec {
        Codec::Json => serde_json::from_slice(body).ok(),
        _ => postcard::from_bytes(body).ok(),
    }
}

/// Checks the integrity check and decodes; panics when either fails.
pub fn decode<T: DeserializeOwned>(codec: Codec, bytes: &[u8]) -> T {
    let (body, trailer) = match codec {
        Codec::Json => bytes.split_at(bytes.len() - 9),
        _ => bytes.split_at(bytes.len() - 4),
    };
    let crc = crc32fast::hash(body);
    match codec {
        Codec::Json => assert_eq!(trailer, format!("\n{crc:08x}").as_bytes()),
        _ => assert_eq!(trailer, crc.to_le_bytes()),
    }
    match codec {
        Codec::Json => serde_json::from_slice(body).unwrap(),
        _ => postcard::from_bytes(body).unwrap(),
    }
}
