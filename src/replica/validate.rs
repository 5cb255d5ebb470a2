//! Validating what a peer sends, field by field, before anything of it is trusted.
//!
//! The integrity check (see the wire module) rejects bytes corrupted on the way; this
//! rejects what decoded but cannot be true of an honest peer: counters at the end of
//! their range, a stamp far in the future, a write of a term its sender never knew, a
//! delta carrying another replica's writes. One bad field rejects the message whole.

use core::fmt;

use super::{Replica, State};
use crate::bundle::{Bundle, Request};
use crate::stamp::{MAX_TERM, MAX_VERSION};
use crate::wire::{Body, Envelope};
use crate::{Lease, Merge, Now, Rejection, SourceId, SyncMode};

/// The greatest sequence number (message, delta) a peer may send: 2^63 - 1, so that
/// counting on from it never overflows.
pub(super) const MAX_SEQ: u64 = (1 << 63) - 1;

/// The most parts a full state may travel in.
pub(super) const MAX_PARTS: u32 = 1 << 16;

/// A field of a message that cannot be true of an honest peer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalid {
    /// A message or delta sequence number of 0 or past 2^63 - 1.
    Sequence(u64),
    /// The sender's incarnation (the time it started) is later than the message's own
    /// time.
    Incarnation {
        /// The incarnation.
        incarnation: u64,
        /// The message's time.
        hlc: u64,
    },
    /// A term past the greatest a version can carry, or a term the sender does not
    /// claim to know (a stamp or lease record of a term above the envelope's).
    Term {
        /// The term found.
        term: u64,
        /// The greatest term allowed here.
        max: u64,
    },
    /// A stamp's version past [`MAX_VERSION`].
    Version(u64),
    /// A delta holding a write of another replica (deltas carry their sender's own
    /// writes only), or a lease record of another holder.
    Foreign {
        /// The replica the stamp or record names.
        source: SourceId,
    },
    /// A delta carrying a lease record (records travel in lease messages).
    LeaseInDelta,
    /// A lease record's duration of 0 ms.
    LeaseDuration(u64),
    /// A part number outside its full state's parts.
    Part {
        /// The part.
        part: u32,
        /// The number of parts.
        parts: u32,
    },
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Sequence(n) => write!(f, "sequence number {n} is outside 1..2^63"),
            Invalid::Incarnation { incarnation, hlc } => write!(
                f,
                "incarnation {incarnation} is later than the message's time {hlc}"
            ),
            Invalid::Term { term, max } => {
                write!(f, "term {term} is above the greatest allowed here ({max})")
            }
            Invalid::Version(v) => write!(f, "version {v} is above {MAX_VERSION}"),
            Invalid::Foreign { source } => write!(
                f,
                "it carries a write or lease record of {source}, not of its sender"
            ),
            Invalid::LeaseInDelta => write!(f, "a delta carries a lease record"),
            Invalid::LeaseDuration(d) => write!(f, "a lease record lasts {d} ms"),
            Invalid::Part { part, parts } => {
                write!(f, "part {part} of {parts} is not a valid part number")
            }
        }
    }
}

impl std::error::Error for Invalid {}

/// A lease record's fields: a term the sender knows, a renew sequence number that
/// can still count on, and a duration of at least 1 ms. (How long a follower waits on
/// a record is bounded by its own configuration whatever the record says: see
/// [`LeaseWatch`](crate::LeaseWatch).)
fn validate_lease(lease: &Lease, envelope_term: u64) -> Result<(), Invalid> {
    if lease.term > envelope_term {
        return Err(Invalid::Term {
            term: lease.term,
            max: envelope_term,
        });
    }
    if lease.renew_seq > MAX_SEQ {
        return Err(Invalid::Sequence(lease.renew_seq));
    }
    if lease.duration_ms == 0 {
        return Err(Invalid::LeaseDuration(lease.duration_ms));
    }
    Ok(())
}

impl<S: Bundle, R: Request> Replica<S, R> {
    /// Checks every field of `env` this replica will trust. Every term in a valid
    /// message is at most its envelope's term.
    pub(super) fn validate(&self, env: &Envelope<State<S>, R>, now: Now) -> Result<(), Rejection> {
        let from = env.sender;
        let invalid = |what| Rejection::Invalid { from, what };
        if env.seq == 0 || env.seq > MAX_SEQ {
            return Err(invalid(Invalid::Sequence(env.seq)));
        }
        if env.incarnation > env.hlc {
            return Err(invalid(Invalid::Incarnation {
                incarnation: env.incarnation,
                hlc: env.hlc,
            }));
        }
        if env.term > MAX_TERM {
            return Err(invalid(Invalid::Term {
                term: env.term,
                max: MAX_TERM,
            }));
        }
        let dseq_ok = |dseq: u64| dseq <= MAX_SEQ;
        match &env.body {
            Body::Delta { dseq, state } => {
                if *dseq == 0 || !dseq_ok(*dseq) {
                    return Err(invalid(Invalid::Sequence(*dseq)));
                }
                if state.lease.is_some() {
                    return Err(invalid(Invalid::LeaseInDelta));
                }
                self.validate_stamps(env, state, Some(from), now)?;
            }
            Body::Lease { dseq, lease } => {
                if !dseq_ok(*dseq) {
                    return Err(invalid(Invalid::Sequence(*dseq)));
                }
                if lease.holder != from {
                    return Err(invalid(Invalid::Foreign {
                        source: lease.holder,
                    }));
                }
                validate_lease(lease, env.term).map_err(invalid)?;
            }
            Body::FullSync {
                dseq,
                part,
                parts,
                state,
                ..
            } => {
                if !dseq_ok(*dseq) {
                    return Err(invalid(Invalid::Sequence(*dseq)));
                }
                if *parts == 0 || *parts > MAX_PARTS || part >= parts || u64::from(*part) >= env.seq
                {
                    return Err(invalid(Invalid::Part {
                        part: *part,
                        parts: *parts,
                    }));
                }
                if let Some(lease) = &state.lease {
                    validate_lease(lease, env.term).map_err(invalid)?;
                }
                self.validate_stamps(env, state, None, now)?;
            }
            Body::Heartbeat { dseq, .. } => {
                if !dseq_ok(*dseq) {
                    return Err(invalid(Invalid::Sequence(*dseq)));
                }
            }
            Body::SyncRequest { .. } | Body::Request { .. } | Body::Goodbye => {}
        }
        Ok(())
    }

    /// Every stamp of a payload: a version in range, a time no further ahead than the
    /// drift bound, in leader mode a term from 1 to the envelope's, and in a delta the
    /// sender's own source.
    fn validate_stamps(
        &self,
        env: &Envelope<State<S>, R>,
        state: &State<S>,
        own: Option<SourceId>,
        now: Now,
    ) -> Result<(), Rejection> {
        let from = env.sender;
        let leader_mode = self.config.mode == SyncMode::Leader;
        let latest = now.wall_ms.saturating_add(self.config.max_drift_ms);
        let mut found: Option<Rejection> = None;
        state.visit_stamps(&mut |stamp| {
            if found.is_some() {
                return;
            }
            let what = if stamp.version > MAX_VERSION {
                Some(Invalid::Version(stamp.version))
            } else if own.is_some_and(|me| stamp.source != me) {
                Some(Invalid::Foreign {
                    source: stamp.source,
                })
            } else if leader_mode && stamp.term() > env.term {
                Some(Invalid::Term {
                    term: stamp.term(),
                    max: env.term,
                })
            } else {
                None
            };
            found = match what {
                Some(what) => Some(Rejection::Invalid { from, what }),
                None if leader_mode && stamp.term() == 0 => Some(Rejection::WrongMode { from }),
                None if stamp.updated_at > latest => Some(Rejection::ClockAhead {
                    from,
                    ahead_ms: stamp.updated_at - now.wall_ms,
                }),
                None => None,
            };
        });
        found.map_or(Ok(()), Err)
    }
}
