//! How a replica behaves: its mode and its timings.

use serde::{Deserialize, Serialize};

use crate::hlc::DEFAULT_MAX_DRIFT_MS;
use crate::{Codec, LeaseConfig, LeaseConfigError};

/// Who writes.
///
/// | | leader (default) | distributed |
/// |---|---|---|
/// | writes | the lease holder only; followers forward requests | every replica |
/// | timers | run by the one leader | every replica's own |
/// | crash | a follower takes over once the lease expires | nothing to do |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SyncMode {
    /// One lease holder writes; the others mirror it and forward requests.
    #[default]
    Leader,
    /// Every replica writes; stamps decide.
    Distributed,
}

/// A replica's settings. Start from [`Config::default`] (leader mode) or
/// [`Config::distributed`] and change the fields you need.
///
/// ```
/// use replisync::{Codec, Config, SyncMode};
///
/// let mut config = Config::distributed();
/// config.flush_interval_ms = 50; // coalesce writes for 50 ms before sending
/// config.wire_codec = Codec::Json;
/// assert_eq!(config.mode, SyncMode::Distributed);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Config {
    /// Leader or distributed.
    pub mode: SyncMode,
    /// Lease timings (leader mode).
    pub lease: LeaseConfig,
    /// How long local writes coalesce before they are sent and persisted; 0 sends each
    /// write at once.
    pub flush_interval_ms: u64,
    /// How often every replica says it is alive (and which deltas it has sent).
    pub heartbeat_interval_ms: u64,
    /// A peer silent this long is reported gone.
    pub peer_timeout_ms: u64,
    /// A gap between calls this much longer than expected (or wall time running ahead
    /// of monotonic time by this much) is taken as a sleep: the holder re-validates its
    /// lease and everyone asks for a sync.
    pub sleep_tolerance_ms: u64,
    /// Remote times further than this ahead of the local wall clock are rejected.
    pub max_drift_ms: u64,
    /// Messages over this size are rejected unread, and none is sent: a state (a full
    /// sync, or coalesced writes) that does not fit travels as several messages, each a
    /// valid delta. Stores are not bound by it. At least 1,024.
    pub max_message_bytes: usize,
    /// At most one full-state answer per this interval; requests in between share it.
    pub sync_answer_interval_ms: u64,
    /// While deltas from a peer are missing, ask it for a sync this often.
    pub sync_retry_ms: u64,
    /// The codec of messages.
    pub wire_codec: Codec,
    /// The codec of persisted state.
    pub store_codec: Codec,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: SyncMode::Leader,
            lease: LeaseConfig::default(),
            flush_interval_ms: 0,
            heartbeat_interval_ms: 1_000,
            peer_timeout_ms: 3_500,
            sleep_tolerance_ms: 1_500,
            max_drift_ms: DEFAULT_MAX_DRIFT_MS,
            max_message_bytes: 16 << 20,
            sync_answer_interval_ms: 100,
            sync_retry_ms: 500,
            wire_codec: Codec::Binary,
            store_codec: Codec::Json,
        }
    }
}

impl Config {
    /// The defaults, in leader mode.
    pub fn leader() -> Self {
        Config::default()
    }

    /// The defaults, in distributed mode.
    pub fn distributed() -> Self {
        Config {
            mode: SyncMode::Distributed,
            ..Config::default()
        }
    }

    /// Checks the timings against each other.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Timings read back with serde skipped `LeaseConfig::new`: check them again.
        let l = &self.lease;
        LeaseConfig {
            duration_ms: l.duration_ms,
            renew_deadline_ms: l.renew_deadline_ms,
            renew_interval_ms: l.renew_interval_ms,
            max_delay_ms: l.max_delay_ms,
        }
        .validated()
        .map_err(ConfigError::Lease)?;
        if self.heartbeat_interval_ms == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.peer_timeout_ms <= self.heartbeat_interval_ms {
            return Err(ConfigError::PeerTimeoutTooShort {
                peer_timeout_ms: self.peer_timeout_ms,
                heartbeat_interval_ms: self.heartbeat_interval_ms,
            });
        }
        if self.max_message_bytes < 1_024 {
            return Err(ConfigError::MessageLimitTooSmall {
                max_message_bytes: self.max_message_bytes,
            });
        }
        Ok(())
    }
}

/// Settings that contradict each other.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The lease timings contradict each other.
    Lease(LeaseConfigError),
    /// The heartbeat interval was zero.
    ZeroHeartbeat,
    /// A peer would be declared gone between two of its heartbeats.
    PeerTimeoutTooShort {
        /// The timeout given.
        peer_timeout_ms: u64,
        /// The heartbeat interval given.
        heartbeat_interval_ms: u64,
    },
    /// The message size limit is too small for any real state.
    MessageLimitTooSmall {
        /// The limit given.
        max_message_bytes: usize,
    },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Lease(e) => write!(f, "lease timings: {e}"),
            ConfigError::ZeroHeartbeat => write!(f, "heartbeat_interval_ms must be above zero"),
            ConfigError::PeerTimeoutTooShort {
                peer_timeout_ms,
                heartbeat_interval_ms,
            } => write!(
                f,
                "peer_timeout_ms ({peer_timeout_ms}) must exceed heartbeat_interval_ms \
                 ({heartbeat_interval_ms}), or live peers are reported gone; use about 3.5 x"
            ),
            ConfigError::MessageLimitTooSmall { max_message_bytes } => write!(
                f,
                "max_message_bytes ({max_message_bytes}) must be at least 1024"
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Lease(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_read_back_are_checked_again() {
        let mut json = serde_json::to_value(Config::default()).unwrap();
        json["lease"]["max_delay_ms"] = 5_000.into();
        let config: Config = serde_json::from_value(json).unwrap();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Lease(LeaseConfigError::DelayTooLong { .. }))
        ));
        let mut bad = Config::default();
        bad.peer_timeout_ms = bad.heartbeat_interval_ms;
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::PeerTimeoutTooShort { .. })
        ));
        assert!(Config::default().validate().is_ok());
    }
}
