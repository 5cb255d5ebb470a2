//! The service's events, derived by comparing what a replica saw before and after.

use replisync::{Now, SourceId, Stamp};

use crate::state::Cause;
use crate::{Operation, Phase, Refusal, SessionConfig, SessionState};

/// Why the idle grace started over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResetCause {
    /// Activity at some replica.
    Activity,
    /// An explicit extend at some replica.
    Extend,
}

/// Something the service tells its application: what changed in the session as this
/// replica sees it. Each replica reports its own, at its own times: the warning and
/// the expiry come from its own computation on the shared deadlines, so every replica
/// reports them at the deadline (as its wall clock reads it), not when a message
/// arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A session runs: started here or elsewhere, or found running on joining.
    Started {
        /// When it expires unless reset.
        countdown_end_at: u64,
    },
    /// The session was stopped.
    Stopped,
    /// The idle grace ended; the countdown runs.
    CountdownStarted {
        /// Time left until expiry.
        remaining_ms: u64,
    },
    /// The countdown has at most `warn_before_ms` left.
    Warn {
        /// Time left until expiry.
        remaining_ms: u64,
    },
    /// The session expired (its countdown ran out, or it was expired on purpose).
    Expired,
    /// The session went back to `IDLE`: every reset, by activity or by extend. An
    /// extend is reported as [`SessionEvent::Extended`] first.
    Reset {
        /// What reset it.
        cause: ResetCause,
        /// The new deadline.
        countdown_end_at: u64,
    },
    /// The session was extended.
    Extended {
        /// Extends this session has used, this one included.
        count: u32,
    },
    /// The timers stopped, with this much left.
    Paused {
        /// Time left, frozen.
        remaining_ms: u64,
    },
    /// The timers run again.
    Resumed {
        /// The new deadline.
        countdown_end_at: u64,
    },
    /// This replica runs the timers now (leader mode).
    LeaderGained {
        /// Its lease term.
        term: u64,
    },
    /// This replica no longer runs the timers.
    LeaderLost {
        /// The term it held.
        term: u64,
    },
    /// The settings changed (here or elsewhere).
    ConfigChanged {
        /// The settings now in force.
        config: SessionConfig,
    },
    /// An operation that reached this replica to be applied (as the leader, or here in
    /// distributed mode) was refused; nothing was written. Operations a replica checks
    /// itself before forwarding are refused to the caller instead.
    Refused {
        /// The replica that asked.
        from: SourceId,
        /// What it asked.
        operation: Operation,
        /// Why not.
        refusal: Refusal,
    },
}

/// Derives the [`SessionEvent`]s of one replica by comparing what it sees now with
/// what it saw at the last look. Pure: give it the state, whether this replica leads
/// (its term), and the time, after every input and at every
/// [`next_change_at`](crate::View::next_change_at); it says what changed in between.
///
/// Events are differences between looks: a replica that was frozen through several
/// phases reports only the one it finds (an `Expired`, not a late `Warn` first), and
/// two writes that arrive together are reported as the last of them.
///
/// [`Session`](crate::Session) does this for a sans-IO replica; an application on the
/// native driver calls it with the handle's state.
///
/// ```
/// use replisync::{Hlc, Merge, Now, SourceId};
/// use replisync_session::{Operation, SessionEvent, SessionState, SessionWatch};
///
/// let mut state = SessionState::default();
/// let mut watch = SessionWatch::new();
/// let now = Now::new(1_700_000_000_000, 0);
/// assert!(watch.observe(&state, None, now).is_empty());
///
/// let mut hlc = Hlc::default();
/// let mut delta = SessionState::default();
/// let mut w = hlc.writer(SourceId::from_u128(1), now.wall_ms);
/// Operation::Start.apply(&state, now, &mut delta, &mut w).unwrap();
/// let _ = state.merge(&delta);
///
/// let end = state.view(now).countdown_end_at.unwrap();
/// assert_eq!(watch.observe(&state, None, now), [SessionEvent::Started { countdown_end_at: end }]);
/// assert_eq!(watch.observe(&state, None, Now::new(end, 0)), [SessionEvent::Expired]);
/// ```
#[derive(Clone, Debug)]
pub struct SessionWatch {
    last: Look,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Look {
    phase: Phase,
    record: Stamp,
    config: SessionConfig,
    leading: Option<u64>,
}

impl Default for SessionWatch {
    fn default() -> Self {
        SessionWatch::new()
    }
}

impl SessionWatch {
    /// A watch that has seen the empty state: no session, the default settings, not
    /// leading.
    pub fn new() -> Self {
        SessionWatch {
            last: Look {
                phase: Phase::Stopped,
                record: Stamp::ZERO,
                config: SessionConfig::default(),
                leading: None,
            },
        }
    }

    /// The events between the last look and this one, in this order: leadership, the
    /// config, what the last write of the timer record did, then the phase reached by
    /// time. `leading` is this replica's lease term while it leads (always `None` in
    /// distributed mode).
    pub fn observe(
        &mut self,
        state: &SessionState,
        leading: Option<u64>,
        now: Now,
    ) -> Vec<SessionEvent> {
        let view = state.view(now);
        let now_look = Look {
            phase: view.phase,
            record: state.record_stamp(),
            config: view.config,
            leading,
        };
        let last = core::mem::replace(&mut self.last, now_look);
        let mut events = Vec::new();
        if last.leading != leading {
            if let Some(term) = last.leading {
                events.push(SessionEvent::LeaderLost { term });
            }
            if let Some(term) = leading {
                events.push(SessionEvent::LeaderGained { term });
            }
        }
        if last.config != view.config {
            events.push(SessionEvent::ConfigChanged {
                config: view.config,
            });
        }
        let end = view.countdown_end_at.unwrap_or(0);
        let running = !matches!(view.phase, Phase::Stopped | Phase::Expired);
        if view.phase == Phase::Stopped {
            if last.phase != Phase::Stopped {
                events.push(SessionEvent::Stopped);
            }
        } else if now_look.record != last.record && last.phase == Phase::Stopped {
            // A session found by a replica that saw none (or saw it stopped) is a start
            // to it, whatever wrote the record last; one found expired is only that.
            if running {
                events.push(SessionEvent::Started {
                    countdown_end_at: end,
                });
            }
        } else if now_look.record != last.record {
            match state.cause() {
                Some(Cause::Start) => events.push(SessionEvent::Started {
                    countdown_end_at: end,
                }),
                Some(Cause::Activity) => events.push(SessionEvent::Reset {
                    cause: ResetCause::Activity,
                    countdown_end_at: end,
                }),
                Some(Cause::Extend) => {
                    events.push(SessionEvent::Extended {
                        count: view.extends,
                    });
                    events.push(SessionEvent::Reset {
                        cause: ResetCause::Extend,
                        countdown_end_at: end,
                    });
                }
                Some(Cause::Pause) if view.paused => events.push(SessionEvent::Paused {
                    remaining_ms: view.remaining_ms.unwrap_or(0),
                }),
                Some(Cause::Resume) => events.push(SessionEvent::Resumed {
                    countdown_end_at: end,
                }),
                _ => {}
            }
        }
        if view.phase != last.phase {
            let remaining_ms = view.remaining_ms.unwrap_or(0);
            match view.phase {
                Phase::Countdown => events.push(SessionEvent::CountdownStarted { remaining_ms }),
                Phase::Warn => events.push(SessionEvent::Warn { remaining_ms }),
                Phase::Expired => events.push(SessionEvent::Expired),
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{apply, at, config, started};

    fn look(watch: &mut SessionWatch, s: &SessionState, t: u64) -> Vec<SessionEvent> {
        watch.observe(s, None, at(t))
    }

    #[test]
    fn a_session_reports_each_phase_once_at_its_time() {
        let c = config(1_000, 3_000, 1_000);
        let mut watch = SessionWatch::new();
        let s = started(&c);
        let end = at(4_000).wall_ms;
        assert_eq!(
            look(&mut watch, &s, 0),
            [
                SessionEvent::ConfigChanged { config: c },
                SessionEvent::Started {
                    countdown_end_at: end
                }
            ]
        );
        assert!(look(&mut watch, &s, 999).is_empty());
        assert_eq!(
            look(&mut watch, &s, 1_000),
            [SessionEvent::CountdownStarted {
                remaining_ms: 3_000
            }]
        );
        assert!(look(&mut watch, &s, 2_000).is_empty());
        assert_eq!(
            look(&mut watch, &s, 3_000),
            [SessionEvent::Warn {
                remaining_ms: 1_000
            }]
        );
        assert_eq!(look(&mut watch, &s, 4_000), [SessionEvent::Expired]);
        assert!(look(&mut watch, &s, 5_000).is_empty());
    }

    #[test]
    fn a_frozen_replica_reports_only_the_phase_it_finds() {
        let mut watch = SessionWatch::new();
        let s = started(&config(1_000, 3_000, 1_000));
        let _ = look(&mut watch, &s, 0);
        assert_eq!(look(&mut watch, &s, 600_000), [SessionEvent::Expired]);
    }

    #[test]
    fn resets_carry_their_cause() {
        let mut watch = SessionWatch::new();
        let mut s = started(&config(1_000, 3_000, 1_000));
        let _ = look(&mut watch, &s, 0);
        let _ = look(&mut watch, &s, 3_000);
        apply(&mut s, Operation::Activity, 3_100).unwrap();
        assert_eq!(
            look(&mut watch, &s, 3_100),
            [SessionEvent::Reset {
                cause: ResetCause::Activity,
                countdown_end_at: at(7_100).wall_ms
            }]
        );
        apply(&mut s, Operation::Extend, 3_200).unwrap();
        assert_eq!(
            look(&mut watch, &s, 3_200),
            [
                SessionEvent::Extended { count: 1 },
                SessionEvent::Reset {
                    cause: ResetCause::Extend,
                    countdown_end_at: at(7_200).wall_ms
                }
            ]
        );
    }

    #[test]
    fn pause_resume_stop_and_start_again() {
        let mut watch = SessionWatch::new();
        let mut s = started(&config(1_000, 3_000, 1_000));
        let _ = look(&mut watch, &s, 0);
        apply(&mut s, Operation::Pause, 1_500).unwrap();
        assert_eq!(
            look(&mut watch, &s, 1_500),
            [
                SessionEvent::Paused {
                    remaining_ms: 2_500
                },
                SessionEvent::CountdownStarted {
                    remaining_ms: 2_500
                }
            ]
        );
        assert!(
            look(&mut watch, &s, 90_000).is_empty(),
            "paused: nothing happens"
        );
        apply(&mut s, Operation::Resume, 90_000).unwrap();
        assert_eq!(
            look(&mut watch, &s, 90_000),
            [SessionEvent::Resumed {
                countdown_end_at: at(92_500).wall_ms
            }]
        );
        apply(&mut s, Operation::Stop, 90_001).unwrap();
        assert_eq!(look(&mut watch, &s, 90_001), [SessionEvent::Stopped]);
        apply(&mut s, Operation::Start, 90_002).unwrap();
        assert_eq!(
            look(&mut watch, &s, 90_002),
            [SessionEvent::Started {
                countdown_end_at: at(94_002).wall_ms
            }]
        );
        apply(&mut s, Operation::Expire, 90_003).unwrap();
        assert_eq!(look(&mut watch, &s, 90_003), [SessionEvent::Expired]);
        apply(&mut s, Operation::Start, 90_004).unwrap();
        assert_eq!(
            look(&mut watch, &s, 90_004),
            [SessionEvent::Started {
                countdown_end_at: at(94_004).wall_ms
            }]
        );
    }

    #[test]
    fn a_session_found_running_is_started_and_in_its_phase() {
        let mut watch = SessionWatch::new();
        let mut s = started(&config(1_000, 3_000, 1_000));
        apply(&mut s, Operation::Activity, 100).unwrap();
        assert_eq!(
            look(&mut watch, &s, 3_500),
            [
                SessionEvent::ConfigChanged { config: s.config() },
                SessionEvent::Started {
                    countdown_end_at: at(4_100).wall_ms
                },
                SessionEvent::Warn { remaining_ms: 600 }
            ]
        );
        // An expired session found on joining is only expired.
        let mut watch = SessionWatch::new();
        let _ = watch.observe(&SessionState::default(), None, at(0));
        let events = look(&mut watch, &s, 10_000);
        assert_eq!(events.last(), Some(&SessionEvent::Expired));
        assert!(!events
            .iter()
            .any(|e| matches!(e, SessionEvent::Started { .. })));
    }

    #[test]
    fn leadership_changes_are_reported() {
        let mut watch = SessionWatch::new();
        let s = SessionState::default();
        assert_eq!(
            watch.observe(&s, Some(1), at(0)),
            [SessionEvent::LeaderGained { term: 1 }]
        );
        assert!(watch.observe(&s, Some(1), at(1)).is_empty());
        assert_eq!(
            watch.observe(&s, Some(3), at(2)),
            [
                SessionEvent::LeaderLost { term: 1 },
                SessionEvent::LeaderGained { term: 3 }
            ]
        );
        assert_eq!(
            watch.observe(&s, None, at(3)),
            [SessionEvent::LeaderLost { term: 3 }]
        );
    }
}
