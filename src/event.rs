//! What a replica tells its application.

use crate::replica::Invalid;
use crate::{DecodeError, SourceId};

/// Something the application may act on, drained with
/// [`Replica::poll_event`](crate::Replica::poll_event).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event<R> {
    /// The state changed (by a local write or a merge); `fields` names the bundle's
    /// fields that changed, as given to `#[derive(Merge)]`.
    Changed {
        /// The changed fields.
        fields: Vec<&'static str>,
    },
    /// This replica became the leader.
    LeadershipGained {
        /// Its term.
        term: u64,
    },
    /// This replica stopped acting as leader.
    LeadershipLost {
        /// The term it held.
        term: u64,
        /// Why.
        reason: LeadershipLoss,
    },
    /// The leader as this replica sees it changed (`None`: no one holds the lease).
    LeaderChanged {
        /// The new leader.
        leader: Option<SourceId>,
        /// Its term.
        term: u64,
    },
    /// An application request reached the replica that acts on it: the leader in
    /// leader mode, the requesting replica itself in distributed mode. Answer it by
    /// writing.
    Request {
        /// The replica that asked.
        from: SourceId,
        /// The request.
        request: R,
    },
    /// A replica was heard from for the first time (or again, after it left).
    PeerJoined {
        /// The peer.
        peer: SourceId,
    },
    /// A replica said goodbye or went silent.
    PeerLeft {
        /// The peer.
        peer: SourceId,
        /// `true` when it said goodbye, `false` when it timed out.
        said_goodbye: bool,
    },
    /// The replica works, but with less than it should.
    Degraded {
        /// Why.
        reason: Degradation,
    },
    /// Time jumped: the machine slept or the replica was frozen.
    SleepDetected {
        /// How much longer than expected the gap was, in ms.
        gap_ms: u64,
    },
    /// A merge met different values under one identical stamp (a reused source id or a
    /// corrupted peer); every replica resolved them alike.
    ConflictDetected {
        /// The peer whose data conflicted (this replica's own id for a local write).
        from: SourceId,
        /// How many registers conflicted.
        count: u32,
    },
    /// A message was refused.
    MessageRejected {
        /// Why.
        reason: Rejection,
    },
}

/// Why a leader stopped leading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeadershipLoss {
    /// It released the lease (leaving, or asked to).
    Released,
    /// Another replica holds a newer term.
    Superseded {
        /// The newer holder.
        by: SourceId,
        /// Its term.
        term: u64,
    },
    /// It could not renew before its renew deadline.
    RenewDeadline,
    /// It slept; it will re-validate before acting again.
    Slept,
    /// The lease authority no longer grants the term: it refused a renewal, reported
    /// the grant lost, or the grant ran out before a renewal was answered.
    AuthorityRefused,
    /// A message showed that a newer term exists, though its lease record has not
    /// arrived yet: this replica's term is over.
    NewerTerm {
        /// The newer term.
        term: u64,
    },
    /// The leader gave the lease up so that a new term starts: a register used up the
    /// 2^32 versions one term can give it.
    TermExhausted,
}

/// Why a replica is degraded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Degradation {
    /// The persisted state could not be read; it is kept as it was and never
    /// overwritten, and this replica does not persist until restarted with a readable
    /// store.
    StoreUnreadable(DecodeError),
    /// A transport-specific reason (a fallback in use, sends failing), from a driver.
    Transport(String),
    /// The store could not be loaded or saved, from a driver.
    Store(String),
    /// The store's last record was cut short (the process died while appending it:
    /// what is there is a strict prefix of a record, see [`Persist`](crate::Persist)): it
    /// was dropped, and the next persist rewrites the store without it. A record that is
    /// damaged rather than cut short is [`Degradation::StoreUnreadable`].
    StoreRecordDropped,
    /// The state could not be encoded with the store codec, so it was not persisted
    /// (a map with non-string keys under JSON, say). Reported when persisting starts
    /// failing; the state is persisted again once it encodes.
    PersistFailed(DecodeError),
    /// A state (a full sync, or coalesced writes) could not be sent: it holds a register
    /// too large for one message even alone. Raise `Config::max_message_bytes`.
    Unsendable(DecodeError),
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The bytes did not decode.
    Undecodable(DecodeError),
    /// The sender's clock is further ahead than the drift bound.
    ClockAhead {
        /// The sender.
        from: SourceId,
        /// How far ahead, ms.
        ahead_ms: u64,
    },
    /// A field that cannot be true of an honest peer (see [`Invalid`]).
    Invalid {
        /// The sender.
        from: SourceId,
        /// What was wrong.
        what: Invalid,
    },
    /// A message of the other mode (in leader mode, a write stamped without a term, as
    /// a replica configured for distributed mode writes).
    WrongMode {
        /// The sender.
        from: SourceId,
    },
}

impl core::fmt::Display for Rejection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Rejection::Undecodable(e) => write!(f, "undecodable message: {e}"),
            Rejection::ClockAhead { from, ahead_ms } => write!(
                f,
                "message from {from} is stamped {ahead_ms} ms ahead of the local clock, beyond the drift bound"
            ),
            Rejection::Invalid { from, what } => {
                write!(f, "message from {from} refused whole: {what}")
            }
            Rejection::WrongMode { from } => {
                write!(f, "message from {from} that only a leader may send, from a non-leader")
            }
        }
    }
}
