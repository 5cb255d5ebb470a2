//! The wire and store formats, mirrored in the test so that the simulator can read the
//! messages replicas send (to see which writes a message carries), play a corrupting
//! peer (decode a real message, set one field to an extreme value, re-encode it with a
//! valid integrity check) and craft stores (high starting terms and versions).
//!
//! Two layouts, chosen by the library's `SCHEMA_VERSION`, so that crafted input
//! reaches the decoder of whichever library the simulator is built against:
//!
//! - schema 2 and later (the new format): every message and store is the codec's bytes
//!   followed by a CRC-32 (IEEE, as the `crc32fast` crate computes it) of those bytes:
//!   binary `postcard ++ crc as 4 bytes little-endian`, JSON
//!   `serde_json ++ "\n" ++ crc as 8 lowercase hex digits`. A `FullSync` carries
//!   `part` and `parts`.
//! - schema 1 (commit 83c12b1): no integrity check, no parts.
//!
//! The structs mirror `replisync`'s private `Envelope`, `Body`, `State` and `Stored`
//! field for field and variant for variant (postcard depends on the order).

use replisync::{Codec, Lease, Lww, LwwMap, SourceId, Stamp, SCHEMA_VERSION};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Req, Rng, Session};

/// Whether the library frames messages and stores with an integrity check.
pub fn framed() -> bool {
    SCHEMA_VERSION >= 2
}

/// CRC-32 (IEEE 802.3, reflected, as `crc32fast` and zlib compute it).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// The state a replica syncs: the lease record and the bundle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub lease: Option<Lease>,
    pub app: Session,
}

/// One message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<B> {
    pub schema: u16,
    pub sender: SourceId,
    pub incarnation: u64,
    pub seq: u64,
    pub hlc: u64,
    pub term: u64,
    pub body: B,
}

/// The bodies of the new format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Body {
    Delta {
        dseq: u64,
        state: State,
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
        state: State,
    },
    Request {
        to: Option<SourceId>,
        hops: u8,
        request: Req,
    },
    Heartbeat {
        dseq: u64,
        digest: u64,
    },
    Goodbye,
}

/// The bodies of schema 1: a `FullSync` has no parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum LegacyBody {
    Delta {
        dseq: u64,
        state: State,
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
        state: State,
    },
    Request {
        to: Option<SourceId>,
        request: Req,
    },
    Heartbeat {
        dseq: u64,
        digest: u64,
    },
    Goodbye,
}

impl From<LegacyBody> for Body {
    fn from(b: LegacyBody) -> Body {
        match b {
            LegacyBody::Delta { dseq, state } => Body::Delta { dseq, state },
            LegacyBody::Lease { dseq, lease } => Body::Lease { dseq, lease },
            LegacyBody::SyncRequest { to } => Body::SyncRequest { to },
            LegacyBody::FullSync { to, dseq, state } => Body::FullSync {
                to,
                dseq,
                part: 0,
                parts: 1,
                state,
            },
            LegacyBody::Request { to, request } => Body::Request {
                to,
                hops: 0,
                request,
            },
            LegacyBody::Heartbeat { dseq, digest } => Body::Heartbeat { dseq, digest },
            LegacyBody::Goodbye => Body::Goodbye,
        }
    }
}

impl From<Body> for LegacyBody {
    fn from(b: Body) -> LegacyBody {
        match b {
            Body::Delta { dseq, state } => LegacyBody::Delta { dseq, state },
            Body::Lease { dseq, lease } => LegacyBody::Lease { dseq, lease },
            Body::SyncRequest { to } => LegacyBody::SyncRequest { to },
            Body::FullSync {
                to, dseq, state, ..
            } => LegacyBody::FullSync { to, dseq, state },
            Body::Request { to, request, .. } => LegacyBody::Request { to, request },
            Body::Heartbeat { dseq, digest } => LegacyBody::Heartbeat { dseq, digest },
            Body::Goodbye => LegacyBody::Goodbye,
        }
    }
}

/// What a replica persists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub schema: u16,
    pub updated_at: u64,
    pub source: SourceId,
    pub state: State,
}

fn encode_raw<T: Serialize>(codec: Codec, value: &T) -> Option<Vec<u8>> {
    match codec {
        Codec::Json => serde_json::to_vec(value).ok(),
        _ => postcard::to_allocvec(value).ok(),
    }
}

fn decode_raw<T: DeserializeOwned>(codec: Codec, bytes: &[u8]) -> Option<T> {
    match codec {
        Codec::Json => serde_json::from_slice(bytes).ok(),
        _ => postcard::from_bytes(bytes).ok(),
    }
}

/// The codec's bytes with the integrity check appended (new format only).
pub fn frame(codec: Codec, mut bytes: Vec<u8>) -> Vec<u8> {
    if !framed() {
        return bytes;
    }
    let crc = crc32(&bytes);
    match codec {
        Codec::Json => {
            bytes.push(b'\n');
            bytes.extend_from_slice(format!("{crc:08x}").as_bytes());
        }
        _ => bytes.extend_from_slice(&crc.to_le_bytes()),
    }
    bytes
}

/// The codec's bytes of a framed message, if its integrity check holds.
pub fn unframe(codec: Codec, bytes: &[u8]) -> Option<&[u8]> {
    if !framed() {
        return Some(bytes);
    }
    let (body, crc) = match codec {
        Codec::Json => {
            let split = bytes.len().checked_sub(9)?;
            let (body, tail) = bytes.split_at(split);
            if tail[0] != b'\n' {
                return None;
            }
            let hex = core::str::from_utf8(&tail[1..]).ok()?;
            (body, u32::from_str_radix(hex, 16).ok()?)
        }
        _ => {
            let split = bytes.len().checked_sub(4)?;
            let (body, tail) = bytes.split_at(split);
            (body, u32::from_le_bytes(tail.try_into().ok()?))
        }
    };
    (crc32(body) == crc).then_some(body)
}

/// Decodes a message as the library would (`None` when it is not one).
pub fn decode(codec: Codec, bytes: &[u8]) -> Option<Envelope<Body>> {
    let body = unframe(codec, bytes)?;
    if framed() {
        decode_raw(codec, body)
    } else {
        let e: Envelope<LegacyBody> = decode_raw(codec, body)?;
        Some(Envelope {
            schema: e.schema,
            sender: e.sender,
            incarnation: e.incarnation,
            seq: e.seq,
            hlc: e.hlc,
            term: e.term,
            body: e.body.into(),
        })
    }
}

/// Encodes a message with a valid integrity check.
pub fn encode(codec: Codec, env: &Envelope<Body>) -> Option<Vec<u8>> {
    let raw = if framed() {
        encode_raw(codec, env)?
    } else {
        let legacy = Envelope {
            schema: env.schema,
            sender: env.sender,
            incarnation: env.incarnation,
            seq: env.seq,
            hlc: env.hlc,
            term: env.term,
            body: LegacyBody::from(env.body.clone()),
        };
        encode_raw(codec, &legacy)?
    };
    Some(frame(codec, raw))
}

/// Encodes a store.
pub fn encode_store(codec: Codec, stored: &Stored) -> Option<Vec<u8>> {
    Some(frame(codec, encode_raw(codec, stored)?))
}

/// The state a message carries, if any.
pub fn state_of(body: &Body) -> Option<&State> {
    match body {
        Body::Delta { state, .. } | Body::FullSync { state, .. } => Some(state),
        _ => None,
    }
}

const YEAR_MS: u64 = 365 * 24 * 3_600 * 1_000;
const TWO_32: u64 = 1 << 32;

/// An extreme value for a `u64` field: the maximum, 2^32 past the honest value (the
/// term's bits of a version), or right at the 2^32 boundary.
fn extreme(rng: &mut Rng, honest: u64) -> u64 {
    match rng.below(4) {
        0 => u64::MAX,
        1 => honest.wrapping_add(TWO_32),
        2 => TWO_32,
        _ => TWO_32 - 1,
    }
}

/// Changes one register of a bundle: its stamp goes a year ahead, or its version to
/// `u64::MAX` (a register never written gets such a write from `source`).
fn poison(rng: &mut Rng, app: &mut Session, source: SourceId, now_ms: u64) -> &'static str {
    let ahead = rng.chance(0.5);
    let bend = |stamp: Stamp| -> Stamp {
        let base = if stamp.is_zero() {
            Stamp::new(1, now_ms, source)
        } else {
            stamp
        };
        if ahead {
            Stamp::new(
                base.version,
                base.updated_at.saturating_add(YEAR_MS),
                base.source,
            )
        } else {
            Stamp::new(u64::MAX, base.updated_at, base.source)
        }
    };
    match rng.below(3) {
        0 => {
            let (stamp, value) = app.deadline.clone().into_parts();
            app.deadline = Lww::from_parts(bend(stamp), value.or(Some(now_ms)));
        }
        1 => {
            let (stamp, value) = app.config.clone().into_parts();
            app.config = Lww::from_parts(bend(stamp), value.or(Some(7)));
        }
        _ => {
            let mut regs: Vec<(u16, Lww<u32>)> = app
                .notes
                .registers()
                .map(|(k, r)| (*k, r.clone()))
                .collect();
            if regs.is_empty() {
                regs.push((0, Lww::new()));
            }
            let i = rng.below(regs.len() as u64) as usize;
            let (stamp, value) = regs[i].1.clone().into_parts();
            regs[i].1 = Lww::from_parts(bend(stamp), value.or(Some(1)));
            app.notes = regs.into_iter().collect::<LwwMap<u16, u32>>();
        }
    }
    if ahead {
        "a payload stamp a year ahead"
    } else {
        "a payload version of u64::MAX"
    }
}

/// Sets one field of a real message to an extreme value, or makes it a full sync
/// numbered `u64::MAX` (its state, if it had one); returns what it changed.
pub fn mutate(rng: &mut Rng, env: &mut Envelope<Body>, now_ms: u64) -> &'static str {
    let sender = env.sender;
    let mut kinds = vec!["seq", "incarnation", "term", "hlc", "full sync"];
    match &env.body {
        Body::Delta { .. } | Body::FullSync { .. } => kinds.extend(["dseq", "payload"]),
        Body::Lease { .. } => kinds.extend(["dseq", "lease term"]),
        Body::Heartbeat { .. } => kinds.push("dseq"),
        _ => {}
    }
    if framed() && matches!(env.body, Body::FullSync { .. }) {
        kinds.push("parts");
    }
    match rng.pick(&kinds) {
        "seq" => {
            env.seq = extreme(rng, env.seq);
            "seq"
        }
        "incarnation" => {
            env.incarnation = extreme(rng, env.incarnation);
            "incarnation"
        }
        "term" => {
            env.term = extreme(rng, env.term);
            "term"
        }
        "hlc" => {
            env.hlc = if rng.chance(0.5) {
                u64::MAX
            } else {
                env.hlc.saturating_add(YEAR_MS)
            };
            "hlc"
        }
        "dseq" => {
            let v = if rng.chance(0.5) { u64::MAX } else { 0 };
            if let Body::Delta { dseq, .. }
            | Body::Lease { dseq, .. }
            | Body::FullSync { dseq, .. }
            | Body::Heartbeat { dseq, .. } = &mut env.body
            {
                *dseq = if v == u64::MAX {
                    v
                } else {
                    extreme(rng, *dseq)
                };
            }
            "dseq"
        }
        "payload" => match &mut env.body {
            Body::Delta { state, .. } | Body::FullSync { state, .. } => {
                poison(rng, &mut state.app, sender, now_ms)
            }
            _ => unreachable!("only bodies with a state"),
        },
        "lease term" => {
            if let Body::Lease { lease, .. } = &mut env.body {
                lease.term = extreme(rng, lease.term);
            }
            "a lease record's term"
        }
        "parts" => {
            if let Body::FullSync { part, parts, .. } = &mut env.body {
                *part = u32::MAX;
                *parts = rng.below(2) as u32;
            }
            "a full sync's part"
        }
        _ => {
            let state = state_of(&env.body).cloned().unwrap_or_default();
            env.body = Body::FullSync {
                to: None,
                dseq: u64::MAX,
                part: 0,
                parts: 1,
                state,
            };
            "a full sync numbered u64::MAX"
        }
    }
}
