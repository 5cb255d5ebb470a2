//! The service's settings, shared by every replica as one register.

use core::fmt;

use serde::{Deserialize, Serialize};

/// The longest duration a setting may hold: 365 days. Deadlines are absolute times
/// that travel to every replica (browser tabs read them as JavaScript numbers); a
/// longer value is taken for a unit mistake (microseconds for milliseconds) rather than
/// a session anyone means to keep.
pub const MAX_DURATION_MS: u64 = 365 * 24 * 60 * 60 * 1_000;

/// The session timeout's settings. Start from [`SessionConfig::default`] (the original
/// service's values) and change the fields you need; [`validate`](SessionConfig::validate)
/// checks them, and [`Operation::SetConfig`](crate::Operation::SetConfig) refuses
/// values that do not pass, changing nothing.
///
/// The settings are one register of the shared [`SessionState`](crate::SessionState):
/// a change made at any replica is adopted by all of them. The sync mode (leader or
/// distributed) is not among them: it is fixed for a replica's life and must be the
/// same across the group, so it is chosen when the replica is made
/// ([`replisync::Config`]).
///
/// ```
/// use replisync_session::{ConfigError, SessionConfig};
///
/// let mut config = SessionConfig::default();
/// assert_eq!(config.idle_grace_ms, 120_000);
/// config.countdown_ms = 60_000;
/// config.warn_before_ms = 10_000;
/// assert_eq!(config.validate(), Ok(()));
///
/// config.countdown_ms = 0;
/// assert_eq!(config.validate(), Err(ConfigError::ZeroCountdown));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionConfig {
    /// How long after the last reset (start, accepted activity, extend) the session
    /// stays `IDLE` before the countdown starts. Zero starts the countdown at once.
    /// Default 120,000 (2 minutes).
    pub idle_grace_ms: u64,
    /// How long the countdown runs before the session expires. Above zero. Default
    /// 3,600,000 (1 hour).
    pub countdown_ms: u64,
    /// The countdown enters `WARN` when at most this much of it is left; at least the
    /// countdown itself goes straight into `WARN`, zero never warns. Default 300,000
    /// (5 minutes).
    pub warn_before_ms: u64,
    /// Activity within this long after an accepted reset is ignored (it would only
    /// move the deadline by a few milliseconds, and costs a write each time). Must be
    /// shorter than `idle_grace_ms + countdown_ms`. Default 0.
    pub activity_reset_cooldown_ms: u64,
    /// Whether activity during `WARN` resets the session. When false, only an explicit
    /// extend does: the user must answer the warning. Default true.
    pub reset_on_warning_activity: bool,
    /// Whether an extend revives a session that has expired. When false, an expired
    /// session ends: start a new one. Default false.
    pub allow_manual_extend_when_expired: bool,
    /// How many extends one session allows (from its start); 0 is no limit. Default 0.
    pub max_extend_per_session: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_grace_ms: 120_000,
            countdown_ms: 3_600_000,
            warn_before_ms: 300_000,
            activity_reset_cooldown_ms: 0,
            reset_on_warning_activity: true,
            allow_manual_extend_when_expired: false,
            max_extend_per_session: 0,
        }
    }
}

impl SessionConfig {
    /// Checks the settings, alone and against each other.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (setting, value_ms) in [
            ("idle_grace_ms", self.idle_grace_ms),
            ("countdown_ms", self.countdown_ms),
            ("warn_before_ms", self.warn_before_ms),
            (
                "activity_reset_cooldown_ms",
                self.activity_reset_cooldown_ms,
            ),
        ] {
            if value_ms > MAX_DURATION_MS {
                return Err(ConfigError::TooLong { setting, value_ms });
            }
        }
        if self.countdown_ms == 0 {
            return Err(ConfigError::ZeroCountdown);
        }
        let session_ms = self.idle_grace_ms + self.countdown_ms;
        if self.activity_reset_cooldown_ms >= session_ms {
            return Err(ConfigError::CooldownTooLong {
                cooldown_ms: self.activity_reset_cooldown_ms,
                session_ms,
            });
        }
        Ok(())
    }

    /// The settings if they pass [`validate`](SessionConfig::validate).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting to change.
    pub fn validated(self) -> Result<Self, ConfigError> {
        self.validate().map(|()| self)
    }
}

/// Settings refused by [`SessionConfig::validate`]. Nothing of a refused configuration
/// is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The countdown was zero: the session would expire the moment its idle grace
    /// ends.
    ZeroCountdown,
    /// A duration was longer than [`MAX_DURATION_MS`].
    TooLong {
        /// The setting's name, as the field is named.
        setting: &'static str,
        /// The value given, in ms.
        value_ms: u64,
    },
    /// The activity cooldown was at least the whole session (idle grace plus
    /// countdown): activity could never reset it.
    CooldownTooLong {
        /// The cooldown given, in ms.
        cooldown_ms: u64,
        /// `idle_grace_ms + countdown_ms`.
        session_ms: u64,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroCountdown => write!(
                f,
                "countdown_ms must be above zero (to turn the timeout off, stop the session)"
            ),
            ConfigError::TooLong { setting, value_ms } => write!(
                f,
                "{setting} is {value_ms} ms, longer than a year ({MAX_DURATION_MS} ms); \
                 durations are in milliseconds"
            ),
            ConfigError::CooldownTooLong {
                cooldown_ms,
                session_ms,
            } => write!(
                f,
                "activity_reset_cooldown_ms ({cooldown_ms}) must be shorter than \
                 idle_grace_ms + countdown_ms ({session_ms}), or activity never resets the session"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_original_services_and_valid() {
        let c = SessionConfig::default();
        assert_eq!(
            (c.idle_grace_ms, c.countdown_ms, c.warn_before_ms),
            (120_000, 3_600_000, 300_000)
        );
        assert_eq!(c.activity_reset_cooldown_ms, 0);
        assert!(c.reset_on_warning_activity);
        assert!(!c.allow_manual_extend_when_expired);
        assert_eq!(c.max_extend_per_session, 0);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn each_invalid_value_is_named() {
        let c = SessionConfig {
            countdown_ms: 0,
            ..SessionConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ZeroCountdown));

        let c = SessionConfig {
            warn_before_ms: MAX_DURATION_MS + 1,
            ..SessionConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::TooLong {
                setting: "warn_before_ms",
                value_ms: MAX_DURATION_MS + 1
            })
        );
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("warn_before_ms"));

        let mut c = SessionConfig {
            idle_grace_ms: 1_000,
            countdown_ms: 2_000,
            activity_reset_cooldown_ms: 3_000,
            ..SessionConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::CooldownTooLong {
                cooldown_ms: 3_000,
                session_ms: 3_000
            })
        );
        c.activity_reset_cooldown_ms = 2_999;
        assert_eq!(c.validated(), Ok(c));
    }

    #[test]
    fn edge_values_that_make_sense_are_accepted() {
        let mut c = SessionConfig {
            idle_grace_ms: 0,                    // the countdown starts at once
            warn_before_ms: 2 * MAX_DURATION_MS, // straight into WARN
            countdown_ms: MAX_DURATION_MS,
            ..SessionConfig::default()
        };
        assert!(c.validate().is_err(), "but no duration over a year");
        c.warn_before_ms = MAX_DURATION_MS;
        assert_eq!(c.validate(), Ok(()));
        c.warn_before_ms = 0; // never warns
        assert_eq!(c.validate(), Ok(()));
    }
}
