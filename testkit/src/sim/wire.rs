//! The simulator's use of the wire and store formats (see [`crate::mirror`], the one
//! copy of them in the test kit): reading the messages replicas send (to see which
//! writes a message carries), playing a corrupting peer (decode a real message, set one
//! field to an extreme value, re-encode it with a valid integrity check) and crafting
//! stores (high starting terms and versions).

use super::Draw;
use replisync::{Codec, Lww, LwwMap, SourceId, Stamp};

use super::{Req, Rng, Session};
use crate::mirror;

/// The state a replica syncs: the lease record and the bundle.
pub type State = mirror::State<Session>;
/// One message.
pub type Envelope = mirror::Envelope<Session, Req>;
/// A message's body.
pub type Body = mirror::Body<Session, Req>;
/// What a replica persists.
pub type Stored = mirror::Stored<Session>;

/// Decodes a message as the library would (`None` when it is not one).
pub fn decode(codec: Codec, bytes: &[u8]) -> Option<Envelope> {
    mirror::try_decode(codec, bytes)
}

/// Encodes a message with a valid integrity check.
pub fn encode(codec: Codec, env: &Envelope) -> Option<Vec<u8>> {
    Some(mirror::encode(codec, env))
}

/// Encodes a store of one record.
pub fn encode_store(codec: Codec, stored: &Stored) -> Option<Vec<u8>> {
    Some(mirror::encode(codec, stored))
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
pub fn mutate(rng: &mut Rng, env: &mut Envelope, now_ms: u64) -> &'static str {
    let sender = env.sender;
    let mut kinds = vec!["seq", "incarnation", "term", "hlc", "full sync"];
    match &env.body {
        Body::Delta { .. } | Body::FullSync { .. } => kinds.extend(["dseq", "payload"]),
        Body::Lease { .. } => kinds.extend(["dseq", "lease term"]),
        Body::Heartbeat { .. } => kinds.push("dseq"),
        _ => {}
    }
    if matches!(env.body, Body::FullSync { .. }) {
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
