//! The operations: each decided on the shared state and turned into one write.

use core::fmt;

use replisync::{Now, Writer};
use serde::{Deserialize, Serialize};

use crate::state::{Cause, Record};
use crate::{ConfigError, Phase, SessionConfig, SessionState};

/// What the application asks of the service. It is also the request type of the
/// replica (`Replica<SessionState, Operation>`): in leader mode a follower's operation
/// travels to the leader as a request, and the leader applies it.
///
/// [`apply`](Operation::apply) decides it on the current state and writes it;
/// [`check`](Operation::check) only decides. An operation refused is a [`Refusal`] and
/// writes nothing.
///
/// ```
/// use replisync::{Hlc, Merge, Now, SourceId};
/// use replisync_session::{Operation, Phase, Refusal, SessionState};
///
/// let mut state = SessionState::default();
/// let mut hlc = Hlc::default();
/// let now = Now::new(1_700_000_000_000, 0);
///
/// let mut delta = SessionState::default();
/// let mut w = hlc.writer(SourceId::from_u128(1), now.wall_ms);
/// Operation::Start.apply(&state, now, &mut delta, &mut w).unwrap();
/// let _ = state.merge(&delta);
/// assert_eq!(state.phase(now), Phase::Idle);
///
/// assert_eq!(Operation::Start.check(&state, now), Err(Refusal::AlreadyRunning));
/// assert_eq!(Operation::Resume.check(&state, now), Err(Refusal::NotPaused));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Operation {
    /// Starts a session (when none runs, or the last one expired): `IDLE` from now, the
    /// extend count back to zero.
    Start,
    /// Stops the session: no phase, no deadlines.
    Stop,
    /// The user did something: back to `IDLE` from now, unless the session is paused
    /// or expired, the activity falls within `activity_reset_cooldown_ms` of the last
    /// reset, or it is `WARN` and `reset_on_warning_activity` is false.
    Activity,
    /// The user asked for more time: back to `IDLE` from now, counted against
    /// `max_extend_per_session`; while `WARN` whatever `reset_on_warning_activity`
    /// says, and after expiry if `allow_manual_extend_when_expired`.
    Extend,
    /// Ends the session now, as if the countdown had run out.
    Expire,
    /// Stops the clock: the phase and the time left stand still until resumed.
    Pause,
    /// Starts the clock again with the time left at the pause.
    Resume,
    /// Replaces the settings (refused, changing nothing, unless they pass
    /// [`SessionConfig::validate`]). A running, unpaused session is re-planned from its
    /// last reset: its deadline becomes `idle_start_at + idle_grace_ms + countdown_ms`
    /// under the new settings (possibly expiring it at once). A paused session keeps
    /// the time it has left.
    SetConfig(SessionConfig),
}

impl Operation {
    /// Whether the operation would be applied to `state` at `now` (only `now.wall_ms`
    /// counts). A follower checks before it forwards an operation, so refused activity
    /// (say, within the cooldown) never costs a message; the leader decides again on
    /// its own state.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] that [`apply`](Operation::apply) would give.
    pub fn check(&self, state: &SessionState, now: Now) -> Result<(), Refusal> {
        self.plan(state, now).map(|_| ())
    }

    /// Decides the operation on `state` at `now` and, if it is accepted, writes it into
    /// `delta` with `w`: the body of a write,
    /// `replica.write(now, |s, d, w| op.apply(s, now, d, w))`. Every change of the timer
    /// writes the whole timer record (see [`SessionState`]).
    ///
    /// # Errors
    ///
    /// The [`Refusal`]; then nothing is written.
    pub fn apply(
        &self,
        state: &SessionState,
        now: Now,
        delta: &mut SessionState,
        w: &mut Writer<'_>,
    ) -> Result<(), Refusal> {
        let plan = self.plan(state, now)?;
        if let Some(config) = plan.config {
            state.write_config(config, delta, w);
        }
        if let Some(record) = plan.record {
            state.write_record(&record, delta, w);
        }
        Ok(())
    }

    fn plan(&self, state: &SessionState, now: Now) -> Result<Plan, Refusal> {
        let t = now.wall_ms;
        let config = state.config();
        let view = state.view(now);
        let current = state.record();
        let record = |record| {
            Ok(Plan {
                record: Some(record),
                config: None,
            })
        };
        let running = view.phase != Phase::Stopped;
        match self {
            Operation::Start => match view.phase {
                Phase::Stopped | Phase::Expired => {
                    record(Record::reset(&config, t, 0, Cause::Start))
                }
                _ => Err(Refusal::AlreadyRunning),
            },
            Operation::Stop if running => record(Record::stopped(Cause::Stop)),
            Operation::Activity if running => {
                if view.phase == Phase::Expired {
                    return Err(Refusal::Expired);
                }
                if view.paused {
                    return Err(Refusal::Paused);
                }
                if view.phase == Phase::Warn && !config.reset_on_warning_activity {
                    return Err(Refusal::WarningNeedsExtend);
                }
                let cooldown = config.activity_reset_cooldown_ms;
                if let Some(start) = view.idle_start_at.filter(|_| cooldown > 0) {
                    let until_ms = start.saturating_add(cooldown);
                    if t < until_ms {
                        return Err(Refusal::Cooldown { until_ms });
                    }
                }
                record(Record::reset(&config, t, view.extends, Cause::Activity))
            }
            Operation::Extend if running => {
                if view.paused {
                    return Err(Refusal::Paused);
                }
                if view.phase == Phase::Expired && !config.allow_manual_extend_when_expired {
                    return Err(Refusal::ExtendWhenExpired);
                }
                let max = config.max_extend_per_session;
                if max > 0 && view.extends >= max {
                    return Err(Refusal::ExtendLimit { max });
                }
                let extends = view.extends.saturating_add(1);
                record(Record::reset(&config, t, extends, Cause::Extend))
            }
            Operation::Expire if running => {
                if view.phase == Phase::Expired {
                    return Err(Refusal::Expired);
                }
                record(Record {
                    phase: Phase::Expired,
                    countdown_end_at: Some(t),
                    paused: None,
                    cause: Some(Cause::Expire),
                    ..current
                })
            }
            Operation::Pause if running => {
                if view.phase == Phase::Expired {
                    return Err(Refusal::Expired);
                }
                if view.paused {
                    return Err(Refusal::AlreadyPaused);
                }
                let remaining = view.remaining_ms.unwrap_or(0);
                record(Record {
                    phase: view.phase,
                    paused: Some((t, remaining)),
                    cause: Some(Cause::Pause),
                    ..current
                })
            }
            Operation::Resume if running => {
                let (Some((_, remaining)), Some(end), Some(start)) = (
                    current.paused,
                    current.countdown_end_at,
                    current.idle_start_at,
                ) else {
                    return Err(Refusal::NotPaused);
                };
                if view.phase == Phase::Expired {
                    return Err(Refusal::NotPaused);
                }
                // The idle start keeps its distance from the deadline: the time spent
                // paused does not count.
                let new_end = t.saturating_add(remaining);
                record(Record {
                    idle_start_at: Some(new_end.saturating_sub(end.saturating_sub(start))),
                    countdown_end_at: Some(new_end),
                    paused: None,
                    cause: Some(Cause::Resume),
                    ..current
                })
            }
            Operation::SetConfig(new) => {
                new.validate().map_err(Refusal::InvalidConfig)?;
                let replan = running && !view.paused && view.phase != Phase::Expired;
                let record = match (replan, current.idle_start_at) {
                    (true, Some(start)) => {
                        let end = start
                            .saturating_add(new.idle_grace_ms)
                            .saturating_add(new.countdown_ms);
                        Some(Record {
                            phase: Phase::of_remaining(new, end.saturating_sub(t)),
                            countdown_end_at: Some(end),
                            cause: Some(Cause::Config),
                            ..current
                        })
                    }
                    _ => None,
                };
                Ok(Plan {
                    record,
                    config: Some(*new),
                })
            }
            Operation::Stop
            | Operation::Activity
            | Operation::Extend
            | Operation::Expire
            | Operation::Pause
            | Operation::Resume => Err(Refusal::NotRunning),
        }
    }
}

/// What an accepted operation writes.
struct Plan {
    record: Option<Record>,
    config: Option<SessionConfig>,
}

/// Why an operation was refused. A refused operation writes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No session runs (never started, or stopped).
    NotRunning,
    /// [`Operation::Start`] while a session runs.
    AlreadyRunning,
    /// The session has expired: activity, pause and expire no longer apply.
    Expired,
    /// [`Operation::Extend`] after expiry, with `allow_manual_extend_when_expired` off.
    ExtendWhenExpired,
    /// Activity or extend while paused.
    Paused,
    /// [`Operation::Pause`] while paused.
    AlreadyPaused,
    /// [`Operation::Resume`] while not paused.
    NotPaused,
    /// Activity within `activity_reset_cooldown_ms` of the last reset.
    Cooldown {
        /// When (ms since the epoch) activity counts again.
        until_ms: u64,
    },
    /// Activity during `WARN` with `reset_on_warning_activity` off.
    WarningNeedsExtend,
    /// The session used its `max_extend_per_session` extends.
    ExtendLimit {
        /// The limit.
        max: u32,
    },
    /// [`Operation::SetConfig`] with settings that do not validate.
    InvalidConfig(ConfigError),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotRunning => write!(f, "no session is running; start one first"),
            Refusal::AlreadyRunning => write!(
                f,
                "a session is already running; extend it, or stop it before starting again"
            ),
            Refusal::Expired => write!(f, "the session has expired; start a new one"),
            Refusal::ExtendWhenExpired => write!(
                f,
                "the session has expired and allow_manual_extend_when_expired is off; start a new one"
            ),
            Refusal::Paused => write!(f, "the session is paused; resume it first"),
            Refusal::AlreadyPaused => write!(f, "the session is already paused"),
            Refusal::NotPaused => write!(f, "the session is not paused"),
            Refusal::Cooldown { until_ms } => write!(
                f,
                "activity ignored: within activity_reset_cooldown_ms of the last reset (until {until_ms})"
            ),
            Refusal::WarningNeedsExtend => write!(
                f,
                "activity ignored during WARN (reset_on_warning_activity is off); extend instead"
            ),
            Refusal::ExtendLimit { max } => write!(
                f,
                "this session has used its {max} extends (max_extend_per_session); start a new one"
            ),
            Refusal::InvalidConfig(e) => write!(f, "config refused: {e}"),
        }
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Refusal::InvalidConfig(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{apply, at, config, started};

    #[test]
    fn start_and_stop() {
        let c = config(1_000, 3_000, 1_000);
        let mut s = SessionState::default();
        assert_eq!(apply(&mut s, Operation::Stop, 0), Err(Refusal::NotRunning));
        assert_eq!(
            apply(&mut s, Operation::Activity, 0),
            Err(Refusal::NotRunning)
        );
        apply(&mut s, Operation::SetConfig(c), 0).unwrap();
        apply(&mut s, Operation::Start, 100).unwrap();
        assert_eq!(s.view(at(100)).countdown_end_at, Some(at(4_100).wall_ms));
        assert_eq!(
            apply(&mut s, Operation::Start, 200),
            Err(Refusal::AlreadyRunning)
        );
        apply(&mut s, Operation::Stop, 300).unwrap();
        let v = s.view(at(300));
        assert_eq!(
            (v.phase, v.countdown_end_at, v.idle_start_at),
            (Phase::Stopped, None, None)
        );
        // An expired session can be started again, with a fresh extend count.
        apply(&mut s, Operation::Start, 400).unwrap();
        apply(&mut s, Operation::Extend, 500).unwrap();
        assert_eq!(s.view(at(500)).extends, 1);
        apply(&mut s, Operation::Expire, 600).unwrap();
        apply(&mut s, Operation::Start, 700).unwrap();
        assert_eq!(s.view(at(700)).phase, Phase::Idle);
        assert_eq!(s.view(at(700)).extends, 0);
    }

    #[test]
    fn activity_resets_to_idle_from_now() {
        let c = config(1_000, 3_000, 1_000);
        let mut s = started(&c);
        assert_eq!(s.phase(at(2_000)), Phase::Countdown);
        apply(&mut s, Operation::Activity, 2_000).unwrap();
        let v = s.view(at(2_000));
        assert_eq!(v.phase, Phase::Idle);
        assert_eq!(v.idle_start_at, Some(at(2_000).wall_ms));
        assert_eq!(v.countdown_end_at, Some(at(6_000).wall_ms));
        assert_eq!(s.cause(), Some(Cause::Activity));
    }

    #[test]
    fn activity_within_the_cooldown_is_ignored() {
        let mut c = config(1_000, 3_000, 1_000);
        c.activity_reset_cooldown_ms = 500;
        let mut s = started(&c);
        let until_ms = at(500).wall_ms;
        assert_eq!(
            apply(&mut s, Operation::Activity, 0),
            Err(Refusal::Cooldown { until_ms })
        );
        assert_eq!(
            apply(&mut s, Operation::Activity, 499),
            Err(Refusal::Cooldown { until_ms })
        );
        assert_eq!(
            s.view(at(499)).idle_start_at,
            Some(at(0).wall_ms),
            "nothing written"
        );
        apply(&mut s, Operation::Activity, 500).unwrap();
        // The cooldown counts from the accepted reset.
        let until_ms = at(1_000).wall_ms;
        assert_eq!(
            apply(&mut s, Operation::Activity, 999),
            Err(Refusal::Cooldown { until_ms })
        );
        // An extend is no activity: the cooldown does not hold it back.
        apply(&mut s, Operation::Extend, 999).unwrap();
        assert_eq!(s.view(at(999)).idle_start_at, Some(at(999).wall_ms));
    }

    #[test]
    fn a_zero_cooldown_accepts_every_activity() {
        let mut s = started(&config(1_000, 3_000, 1_000));
        for t in [0, 0, 1, 2] {
            apply(&mut s, Operation::Activity, t).unwrap();
        }
        assert_eq!(s.view(at(2)).idle_start_at, Some(at(2).wall_ms));
    }

    #[test]
    fn activity_during_warn_resets_only_when_allowed() {
        let mut c = config(1_000, 3_000, 1_000);
        let mut s = started(&c);
        apply(&mut s, Operation::Activity, 3_000).unwrap();
        assert_eq!(
            s.phase(at(3_000)),
            Phase::Idle,
            "reset_on_warning_activity on"
        );

        c.reset_on_warning_activity = false;
        let mut s = started(&c);
        // Before the warning, activity still resets.
        apply(&mut s, Operation::Activity, 2_999).unwrap();
        assert_eq!(s.phase(at(5_999)), Phase::Warn);
        assert_eq!(
            apply(&mut s, Operation::Activity, 5_999),
            Err(Refusal::WarningNeedsExtend)
        );
        assert_eq!(s.phase(at(5_999)), Phase::Warn);
        apply(&mut s, Operation::Extend, 5_999).unwrap();
        assert_eq!(s.phase(at(5_999)), Phase::Idle);
    }

    #[test]
    fn activity_never_revives_an_expired_session() {
        let mut s = started(&config(1_000, 3_000, 1_000));
        assert_eq!(
            apply(&mut s, Operation::Activity, 4_000),
            Err(Refusal::Expired)
        );
        assert_eq!(s.phase(at(4_000)), Phase::Expired);
    }

    #[test]
    fn extends_are_counted_and_limited() {
        let mut c = config(1_000, 3_000, 1_000);
        c.max_extend_per_session = 2;
        let mut s = started(&c);
        apply(&mut s, Operation::Extend, 100).unwrap();
        apply(&mut s, Operation::Activity, 150).unwrap();
        apply(&mut s, Operation::Extend, 200).unwrap();
        assert_eq!(s.view(at(200)).extends, 2, "activity does not count");
        assert_eq!(
            apply(&mut s, Operation::Extend, 300),
            Err(Refusal::ExtendLimit { max: 2 })
        );
        assert_eq!(s.view(at(300)).idle_start_at, Some(at(200).wall_ms));
        // A new session has its own allowance.
        apply(&mut s, Operation::Stop, 400).unwrap();
        apply(&mut s, Operation::Start, 500).unwrap();
        apply(&mut s, Operation::Extend, 600).unwrap();

        // 0 is no limit.
        c.max_extend_per_session = 0;
        let mut s = started(&c);
        for t in 1..=50 {
            apply(&mut s, Operation::Extend, t).unwrap();
        }
        assert_eq!(s.view(at(50)).extends, 50);
    }

    #[test]
    fn extend_after_expiry_follows_the_setting() {
        let mut c = config(1_000, 3_000, 1_000);
        let mut s = started(&c);
        assert_eq!(
            apply(&mut s, Operation::Extend, 4_000),
            Err(Refusal::ExtendWhenExpired)
        );
        assert_eq!(s.phase(at(4_000)), Phase::Expired);

        c.allow_manual_extend_when_expired = true;
        let mut s = started(&c);
        apply(&mut s, Operation::Expire, 10).unwrap();
        apply(&mut s, Operation::Extend, 5_000).unwrap();
        let v = s.view(at(5_000));
        assert_eq!((v.phase, v.extends), (Phase::Idle, 1));
        assert_eq!(v.countdown_end_at, Some(at(9_000).wall_ms));
        // The limit holds after expiry too.
        c.max_extend_per_session = 1;
        apply(&mut s, Operation::SetConfig(c), 5_000).unwrap();
        apply(&mut s, Operation::Expire, 5_001).unwrap();
        assert_eq!(
            apply(&mut s, Operation::Extend, 5_002),
            Err(Refusal::ExtendLimit { max: 1 })
        );
    }

    #[test]
    fn expire_ends_the_session_now() {
        let mut s = started(&config(1_000, 3_000, 1_000));
        apply(&mut s, Operation::Expire, 500).unwrap();
        let v = s.view(at(500));
        assert_eq!((v.phase, v.remaining_ms), (Phase::Expired, Some(0)));
        assert_eq!(v.countdown_end_at, Some(at(500).wall_ms));
        assert_eq!(apply(&mut s, Operation::Expire, 600), Err(Refusal::Expired));
        assert_eq!(apply(&mut s, Operation::Pause, 600), Err(Refusal::Expired));
    }

    #[test]
    fn pause_and_resume_keep_the_time_left() {
        let c = config(1_000, 3_000, 1_000);
        let mut s = started(&c);
        apply(&mut s, Operation::Pause, 2_500).unwrap();
        // Paused for a long time: nothing moves.
        for t in [2_500, 10_000, 100_000] {
            let v = s.view(at(t));
            assert_eq!(
                (v.phase, v.paused, v.remaining_ms),
                (Phase::Countdown, true, Some(1_500))
            );
            assert_eq!(v.countdown_end_at, None);
            assert_eq!(s.transition_due(at(t)), None, "no timer runs while paused");
        }
        assert_eq!(
            apply(&mut s, Operation::Pause, 100_000),
            Err(Refusal::AlreadyPaused)
        );
        assert_eq!(
            apply(&mut s, Operation::Activity, 100_000),
            Err(Refusal::Paused)
        );
        assert_eq!(
            apply(&mut s, Operation::Extend, 100_000),
            Err(Refusal::Paused)
        );
        apply(&mut s, Operation::Resume, 100_000).unwrap();
        let v = s.view(at(100_000));
        assert_eq!(
            (v.phase, v.paused, v.remaining_ms),
            (Phase::Countdown, false, Some(1_500))
        );
        assert_eq!(v.countdown_end_at, Some(at(101_500).wall_ms));
        assert_eq!(
            v.idle_start_at,
            Some(at(97_500).wall_ms),
            "paused time does not count"
        );
        assert_eq!(s.phase(at(100_500)), Phase::Warn);
        assert_eq!(s.phase(at(101_500)), Phase::Expired);
        assert_eq!(
            apply(&mut s, Operation::Resume, 100_000),
            Err(Refusal::NotPaused)
        );
    }

    #[test]
    fn pause_keeps_the_idle_phase_and_expire_ends_a_pause() {
        let mut s = started(&config(1_000, 3_000, 1_000));
        apply(&mut s, Operation::Pause, 200).unwrap();
        assert_eq!(s.phase(at(50_000)), Phase::Idle);
        apply(&mut s, Operation::Expire, 50_000).unwrap();
        assert!(!s.view(at(50_000)).paused);
        assert_eq!(s.phase(at(50_000)), Phase::Expired);
    }

    #[test]
    fn invalid_config_is_refused_and_changes_nothing() {
        let c = config(1_000, 3_000, 1_000);
        let mut s = started(&c);
        let before = s.clone();
        let mut bad = c;
        bad.countdown_ms = 0;
        assert_eq!(
            apply(&mut s, Operation::SetConfig(bad), 10),
            Err(Refusal::InvalidConfig(ConfigError::ZeroCountdown))
        );
        assert_eq!(s, before);
        assert_eq!(s.config(), c);
    }

    #[test]
    fn a_config_change_replans_the_running_session_from_its_last_reset() {
        let c = config(1_000, 3_000, 1_000);
        let mut s = started(&c);
        apply(&mut s, Operation::Activity, 500).unwrap();
        let longer = config(2_000, 5_000, 1_000);
        apply(&mut s, Operation::SetConfig(longer), 2_000).unwrap();
        let v = s.view(at(2_000));
        assert_eq!(v.config, longer);
        assert_eq!(v.countdown_end_at, Some(at(7_500).wall_ms));
        assert_eq!(v.idle_start_at, Some(at(500).wall_ms));
        assert_eq!(v.phase, Phase::Idle);
        // Shorter settings can end it at once.
        apply(&mut s, Operation::SetConfig(config(100, 200, 50)), 2_000).unwrap();
        assert_eq!(s.phase(at(2_000)), Phase::Expired);
        assert_eq!(s.recorded_phase(), Phase::Expired);

        // A paused session keeps what it had left; a stopped one only takes the config.
        let mut s = started(&c);
        apply(&mut s, Operation::Pause, 100).unwrap();
        apply(&mut s, Operation::SetConfig(longer), 200).unwrap();
        assert_eq!(s.view(at(200)).remaining_ms, Some(3_900));
        let mut s = SessionState::default();
        apply(&mut s, Operation::SetConfig(longer), 0).unwrap();
        assert_eq!(s.phase(at(0)), Phase::Stopped);
        assert_eq!(s.config(), longer);
    }

    #[test]
    fn every_record_write_carries_one_stamp() {
        let mut s = started(&config(1_000, 3_000, 1_000));
        apply(&mut s, Operation::Pause, 10).unwrap();
        apply(&mut s, Operation::Resume, 20).unwrap();
        let stamp = s.record_stamp();
        let mut stamps = Vec::new();
        replisync::Merge::visit_stamps(&s, &mut |st| stamps.push(*st));
        // The config was written apart; the seven registers of the record share one.
        assert_eq!(stamps.iter().filter(|st| **st == stamp).count(), 7);
    }

    #[test]
    fn refusals_say_what_to_do() {
        assert!(Refusal::Paused.to_string().contains("resume"));
        assert!(Refusal::WarningNeedsExtend.to_string().contains("extend"));
        let e = Refusal::InvalidConfig(ConfigError::ZeroCountdown);
        assert!(std::error::Error::source(&e).is_some());
    }
}
