//! The shared bundle, and the phase as a pure function of it and the time.

use core::fmt;

use replisync::{Lww, Merge, Now, Stamp, Writer};
use serde::{Deserialize, Serialize};

use crate::SessionConfig;

/// Where a session stands. Ordered as a session moves through it: a phase only moves
/// forward until a reset (start, activity, extend) sends it back to `Idle`.
///
/// Serialized (and displayed) in capitals, `"IDLE"`, as the original service wrote it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Phase {
    /// No session runs: never started, or stopped.
    #[default]
    Stopped,
    /// The idle grace period counts from the last reset.
    Idle,
    /// The session countdown runs.
    Countdown,
    /// The countdown has at most `warn_before_ms` left.
    Warn,
    /// The countdown ran out, or the session was expired on purpose.
    Expired,
}

impl Phase {
    /// The phase's name in capitals, as serialized: `"IDLE"`, `"WARN"`, ...
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Stopped => "STOPPED",
            Phase::Idle => "IDLE",
            Phase::Countdown => "COUNTDOWN",
            Phase::Warn => "WARN",
            Phase::Expired => "EXPIRED",
        }
    }

    /// The phase of a running, unpaused session with `remaining_ms` until it expires.
    /// The boundaries belong to the later phase: the countdown starts when exactly
    /// `countdown_ms` is left, the warning when exactly `warn_before_ms` is.
    pub fn of_remaining(config: &SessionConfig, remaining_ms: u64) -> Phase {
        if remaining_ms == 0 {
            Phase::Expired
        } else if remaining_ms <= config.warn_before_ms {
            Phase::Warn
        } else if remaining_ms <= config.countdown_ms {
            Phase::Countdown
        } else {
            Phase::Idle
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What wrote the timer record last: lets every replica tell a reset by activity from
/// one by extend, though it only sees the registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cause {
    /// [`Operation::Start`](crate::Operation::Start).
    Start,
    /// [`Operation::Stop`](crate::Operation::Stop).
    Stop,
    /// [`Operation::Activity`](crate::Operation::Activity).
    Activity,
    /// [`Operation::Extend`](crate::Operation::Extend).
    Extend,
    /// [`Operation::Expire`](crate::Operation::Expire).
    Expire,
    /// [`Operation::Pause`](crate::Operation::Pause).
    Pause,
    /// [`Operation::Resume`](crate::Operation::Resume).
    Resume,
    /// [`Operation::SetConfig`](crate::Operation::SetConfig) re-planned the deadline.
    Config,
    /// The leader's timer recorded a phase transition.
    Timer,
}

/// The state every replica of the service shares: a bundle of last-writer-wins
/// registers, kept in step by a [`replisync::Replica`].
///
/// It holds absolute times (ms since the Unix epoch, on the wall clock), never
/// durations left, so every replica computes its own remaining time from the same
/// deadline: a replica whose timers ran late, or that was frozen, or that joined in the
/// middle of a countdown, shows the same deadline as the others the moment it looks
/// ([`SessionState::view`]).
///
/// # Registers
///
/// The **timer record**: `phase` (the phase as last written), `idle_start_at` (when
/// the idle grace began), `countdown_end_at` (when the session expires), `paused_at`
/// and `paused_remaining_ms` (set while paused), `extends` (extends used by this
/// session), and `cause` (what wrote the record). And `config`, the
/// [`SessionConfig`] (a register of its own: a config change is independent of the
/// timers).
///
/// Every write of the timer record writes all of its registers together, so they always
/// carry one stamp: when two replicas write it concurrently (distributed mode), the
/// greater stamp wins every register alike, and no replica ever holds half of one
/// write and half of another.
///
/// Write it only through [`Operation::apply`](crate::Operation::apply) and
/// [`SessionState::write_transition`], which keep that rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
pub struct SessionState {
    phase: Lww<Phase>,
    idle_start_at: Lww<u64>,
    countdown_end_at: Lww<u64>,
    paused_at: Lww<u64>,
    paused_remaining_ms: Lww<u64>,
    extends: Lww<u32>,
    cause: Lww<Cause>,
    config: Lww<SessionConfig>,
}

/// What one replica sees of the session at one moment: [`SessionState::view`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct View {
    /// The phase, computed from the deadlines and the time.
    pub phase: Phase,
    /// Whether the timers are paused (`phase` and `remaining_ms` stand still).
    pub paused: bool,
    /// Time left until the session expires; 0 once expired, `None` when stopped.
    pub remaining_ms: Option<u64>,
    /// When the session expires (or expired); `None` when stopped, and while paused (no
    /// deadline runs then: resuming sets one, `remaining_ms` from then).
    pub countdown_end_at: Option<u64>,
    /// When the idle grace began (the last reset, moved later by the time spent
    /// paused); `None` when stopped.
    pub idle_start_at: Option<u64>,
    /// When the session was paused, while it is.
    pub paused_at: Option<u64>,
    /// When the phase next changes by itself (the countdown starts, the warning, the
    /// expiry), if it will.
    pub next_change_at: Option<u64>,
    /// Extends used by this session.
    pub extends: u32,
    /// The settings in force.
    pub config: SessionConfig,
}

/// The timer record as plain values: what one write puts in the registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub phase: Phase,
    pub idle_start_at: Option<u64>,
    pub countdown_end_at: Option<u64>,
    /// `(paused_at, paused_remaining_ms)`.
    pub paused: Option<(u64, u64)>,
    pub extends: u32,
    pub cause: Option<Cause>,
}

impl Record {
    /// A stopped session.
    pub fn stopped(cause: Cause) -> Record {
        Record {
            phase: Phase::Stopped,
            idle_start_at: None,
            countdown_end_at: None,
            paused: None,
            extends: 0,
            cause: Some(cause),
        }
    }

    /// A session reset at `now_ms`: idle from now, expiring after the grace and the
    /// countdown.
    pub fn reset(config: &SessionConfig, now_ms: u64, extends: u32, cause: Cause) -> Record {
        Record {
            phase: Phase::Idle,
            idle_start_at: Some(now_ms),
            countdown_end_at: Some(
                now_ms
                    .saturating_add(config.idle_grace_ms)
                    .saturating_add(config.countdown_ms),
            ),
            paused: None,
            extends,
            cause: Some(cause),
        }
    }
}

fn write_opt<T: Clone>(reg: &Lww<T>, value: Option<T>, w: &mut Writer<'_>) -> Lww<T> {
    match value {
        Some(v) => reg.write(v, w),
        None => reg.write_clear(w),
    }
}

impl SessionState {
    /// The settings in force: the shared config, or the defaults while none was set.
    /// A shared config that fails [`SessionConfig::validate`] (a peer that skipped the
    /// check) counts as none.
    pub fn config(&self) -> SessionConfig {
        self.config
            .get()
            .filter(|c| c.validate().is_ok())
            .copied()
            .unwrap_or_default()
    }

    /// Whether a config was ever written to the shared register.
    pub fn config_is_set(&self) -> bool {
        !self.config.is_bottom()
    }

    /// The phase as last written to the record (by an operation, or by the leader's
    /// timer in leader mode). It lags the computed phase ([`SessionState::phase`]) by
    /// as long as the writer's timer is late, and in distributed mode, where no replica
    /// writes transitions, until the next operation; it is what a store or a replica
    /// that just joined holds before it computes.
    pub fn recorded_phase(&self) -> Phase {
        self.phase.get().copied().unwrap_or_default()
    }

    /// The stamp of the timer record's last write (every register of the record
    /// carries it). [`Stamp::ZERO`] before any.
    pub fn record_stamp(&self) -> Stamp {
        *self.phase.stamp()
    }

    /// What wrote the timer record last (`None` before anything did).
    pub fn cause(&self) -> Option<Cause> {
        self.cause.get().copied()
    }

    pub(crate) fn record(&self) -> Record {
        let paused = match (self.paused_at.get(), self.paused_remaining_ms.get()) {
            (Some(at), Some(remaining)) => Some((*at, *remaining)),
            _ => None,
        };
        Record {
            phase: self.recorded_phase(),
            idle_start_at: self.idle_start_at.get().copied(),
            countdown_end_at: self.countdown_end_at.get().copied(),
            paused,
            extends: self.extends.get().copied().unwrap_or(0),
            cause: self.cause(),
        }
    }

    /// Writes `record` whole into `delta`: every register of the timer record, under one
    /// stamp.
    pub(crate) fn write_record(&self, record: &Record, delta: &mut Self, w: &mut Writer<'_>) {
        delta.phase = self.phase.write(record.phase, w);
        delta.idle_start_at = write_opt(&self.idle_start_at, record.idle_start_at, w);
        delta.countdown_end_at = write_opt(&self.countdown_end_at, record.countdown_end_at, w);
        delta.paused_at = write_opt(&self.paused_at, record.paused.map(|p| p.0), w);
        delta.paused_remaining_ms =
            write_opt(&self.paused_remaining_ms, record.paused.map(|p| p.1), w);
        delta.extends = self.extends.write(record.extends, w);
        delta.cause = write_opt(&self.cause, record.cause, w);
    }

    pub(crate) fn write_config(&self, config: SessionConfig, delta: &mut Self, w: &mut Writer<'_>) {
        delta.config = self.config.write(config, w);
    }

    /// The phase at `now`, computed from the deadlines: see [`SessionState::view`].
    pub fn phase(&self, now: Now) -> Phase {
        self.view(now).phase
    }

    /// The session as seen at `now` (only `now.wall_ms` counts: the deadlines are
    /// wall-clock times every replica shares). A pure function of the state and the
    /// time: every replica holding the same state computes the same view at the same
    /// time, whatever its timers did.
    ///
    /// The phase follows from the time left until `countdown_end_at` (see
    /// [`Phase::of_remaining`]); a session recorded as expired stays expired, a paused
    /// one shows the phase and time left it was paused with, and a record without a
    /// deadline (only a faulty peer writes one) counts as stopped.
    pub fn view(&self, now: Now) -> View {
        let config = self.config();
        let record = self.record();
        let stopped = View {
            phase: Phase::Stopped,
            paused: false,
            remaining_ms: None,
            countdown_end_at: None,
            idle_start_at: None,
            paused_at: None,
            next_change_at: None,
            extends: 0,
            config,
        };
        let (Some(end), false) = (record.countdown_end_at, record.phase == Phase::Stopped) else {
            return stopped;
        };
        let expired = record.phase == Phase::Expired;
        let common = View {
            idle_start_at: record.idle_start_at,
            extends: record.extends,
            ..stopped
        };
        if let Some((paused_at, remaining)) = record.paused.filter(|_| !expired) {
            return View {
                phase: Phase::of_remaining(&config, remaining),
                paused: true,
                remaining_ms: Some(remaining),
                paused_at: Some(paused_at),
                ..common
            };
        }
        let remaining = if expired {
            0
        } else {
            end.saturating_sub(now.wall_ms)
        };
        let next_change_at = [
            end.saturating_sub(config.countdown_ms),
            end.saturating_sub(config.warn_before_ms),
            end,
        ]
        .into_iter()
        .filter(|t| *t > now.wall_ms && remaining > 0)
        .min();
        View {
            phase: Phase::of_remaining(&config, remaining),
            remaining_ms: Some(remaining),
            countdown_end_at: Some(end),
            next_change_at,
            ..common
        }
    }

    /// The phase transition the leader's timer should record at `now`, if the computed
    /// phase is ahead of the recorded one (the countdown started, the warning began, the
    /// session expired). In leader mode the leader records each transition with
    /// [`SessionState::write_transition`]; every replica computes its own phase anyway,
    /// so a late transition never shows a wrong countdown.
    pub fn transition_due(&self, now: Now) -> Option<Phase> {
        let view = self.view(now);
        let recorded = self.recorded_phase();
        (view.phase != Phase::Stopped && !view.paused && view.phase > recorded)
            .then_some(view.phase)
    }

    /// Records the transition due at `now` (see [`SessionState::transition_due`]) into
    /// `delta`, the deadlines unchanged, and returns the phase recorded; `None` (nothing
    /// written) when none is due. For the leader in leader mode: in distributed mode
    /// every replica keeps its own timers and none writes transitions (a transition
    /// written concurrently with a reset elsewhere could win over it and undo it).
    ///
    /// ```
    /// use replisync::{Config, Now, Replica, SourceId};
    /// use replisync_session::{Operation, Phase, SessionConfig, SessionState};
    ///
    /// let mut replica: Replica<SessionState, Operation> =
    ///     Replica::new(Config::distributed(), SourceId::from_u128(1)).unwrap();
    /// let now = Now::new(1_700_000_000_000, 0);
    /// replica.write(now, |s, d, w| Operation::Start.apply(s, now, d, w).unwrap()).unwrap();
    ///
    /// let later = now.after(SessionConfig::default().idle_grace_ms);
    /// assert_eq!(replica.state().transition_due(later), Some(Phase::Countdown));
    /// replica.write(later, |s, d, w| { s.write_transition(later, d, w); }).unwrap();
    /// assert_eq!(replica.state().recorded_phase(), Phase::Countdown);
    /// assert_eq!(replica.state().transition_due(later), None);
    /// ```
    pub fn write_transition(
        &self,
        now: Now,
        delta: &mut Self,
        w: &mut Writer<'_>,
    ) -> Option<Phase> {
        let phase = self.transition_due(now)?;
        let record = Record {
            phase,
            cause: Some(Cause::Timer),
            ..self.record()
        };
        self.write_record(&record, delta, w);
        Some(phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{apply, at, config, started};
    use crate::Operation;

    #[test]
    fn phases_change_at_exact_boundaries() {
        // grace 1,000, countdown 3,000, warn 1,000: started at 0.
        let c = config(1_000, 3_000, 1_000);
        let s = started(&c);
        let phase = |t| s.phase(at(t));
        assert_eq!(phase(0), Phase::Idle);
        assert_eq!(phase(999), Phase::Idle);
        assert_eq!(phase(1_000), Phase::Countdown, "the grace ends");
        assert_eq!(phase(2_999), Phase::Countdown);
        assert_eq!(phase(3_000), Phase::Warn, "at most warn_before_ms left");
        assert_eq!(phase(3_999), Phase::Warn);
        assert_eq!(phase(4_000), Phase::Expired);
        assert_eq!(phase(1_000_000), Phase::Expired);

        let v = s.view(at(2_500));
        assert_eq!(v.remaining_ms, Some(1_500));
        assert_eq!(v.countdown_end_at, Some(at(4_000).wall_ms));
        assert_eq!(v.idle_start_at, Some(at(0).wall_ms));
        assert_eq!(v.next_change_at, Some(at(3_000).wall_ms));
        assert_eq!(s.view(at(0)).next_change_at, Some(at(1_000).wall_ms));
        assert_eq!(s.view(at(3_000)).next_change_at, Some(at(4_000).wall_ms));
        assert_eq!(s.view(at(4_000)).next_change_at, None);
        assert_eq!(s.view(at(4_000)).remaining_ms, Some(0));
    }

    #[test]
    fn a_warning_as_long_as_the_countdown_goes_straight_into_warn() {
        let s = started(&config(1_000, 2_000, 2_000));
        assert_eq!(s.phase(at(999)), Phase::Idle);
        assert_eq!(s.phase(at(1_000)), Phase::Warn);
        let s = started(&config(1_000, 2_000, 5_000));
        assert_eq!(s.phase(at(1_000)), Phase::Warn);
        assert_eq!(s.view(at(0)).next_change_at, Some(at(1_000).wall_ms));
    }

    #[test]
    fn no_warning_when_warn_before_is_zero() {
        let s = started(&config(0, 2_000, 0));
        assert_eq!(
            s.phase(at(0)),
            Phase::Countdown,
            "no grace: counting at once"
        );
        assert_eq!(s.phase(at(1_999)), Phase::Countdown);
        assert_eq!(s.phase(at(2_000)), Phase::Expired);
    }

    #[test]
    fn a_never_started_session_is_stopped() {
        let s = SessionState::default();
        let v = s.view(at(5));
        assert_eq!(v.phase, Phase::Stopped);
        assert_eq!((v.remaining_ms, v.countdown_end_at), (None, None));
        assert_eq!(v.config, SessionConfig::default());
        assert_eq!(s.transition_due(at(5)), None);
    }

    #[test]
    fn transitions_are_due_only_when_the_recorded_phase_lags() {
        let c = config(1_000, 3_000, 1_000);
        let mut s = started(&c);
        assert_eq!(s.transition_due(at(999)), None);
        assert_eq!(s.transition_due(at(1_000)), Some(Phase::Countdown));
        // A leader that was late records the phase it finds, not the ones it missed.
        assert_eq!(s.transition_due(at(3_500)), Some(Phase::Warn));
        let end = s.view(at(0)).countdown_end_at;
        let mut hlc = replisync::Hlc::default();
        let mut w = hlc.writer(replisync::SourceId::from_u128(1), at(3_500).wall_ms);
        let mut d = SessionState::default();
        assert_eq!(
            s.write_transition(at(3_500), &mut d, &mut w),
            Some(Phase::Warn)
        );
        let _ = s.merge(&d);
        assert_eq!(s.recorded_phase(), Phase::Warn);
        assert_eq!(s.cause(), Some(Cause::Timer));
        assert_eq!(
            s.view(at(3_500)).countdown_end_at,
            end,
            "deadlines unchanged"
        );
        assert_eq!(s.transition_due(at(3_999)), None);
        assert_eq!(s.transition_due(at(4_000)), Some(Phase::Expired));
    }

    #[test]
    fn a_record_written_expired_stays_expired() {
        let c = config(1_000, 3_000, 1_000);
        let mut s = started(&c);
        apply(&mut s, Operation::Expire, 10).unwrap();
        assert_eq!(s.phase(at(10)), Phase::Expired);
        assert_eq!(s.view(at(10)).remaining_ms, Some(0));
        // Even where a wall clock reads earlier than the writer's did.
        assert_eq!(s.phase(at(0)), Phase::Expired);
    }

    #[test]
    fn an_invalid_shared_config_counts_as_none() {
        let mut s = SessionState::default();
        let bad = SessionConfig {
            countdown_ms: 0,
            ..SessionConfig::default()
        };
        let mut hlc = replisync::Hlc::default();
        let mut w = hlc.writer(replisync::SourceId::from_u128(9), 1);
        let d = SessionState {
            config: s.config.write(bad, &mut w),
            ..Default::default()
        };
        let _ = s.merge(&d);
        assert!(s.config_is_set());
        assert_eq!(s.config(), SessionConfig::default());
    }

    #[test]
    fn phases_serialize_in_capitals() {
        assert_eq!(
            serde_json::to_string(&Phase::Countdown).unwrap(),
            "\"COUNTDOWN\""
        );
        assert_eq!(Phase::Warn.to_string(), "WARN");
    }
}
