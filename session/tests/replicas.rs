//! The cross-replica rules of the service, on sans-IO replicas pumped by hand: every
//! message goes through `poll_transmit` and `handle_message`, and time moves only when
//! a test moves it (from one deadline to the next), so every run is the same.

use replisync::{Config, LeaseConfig, Lifecycle, Now, SourceId};
use replisync_session::{
    Cause, Operation, Outcome, Phase, Refusal, ResetCause, Session, SessionConfig, SessionError,
    SessionEvent,
};

const EPOCH: u64 = 1_700_000_000_000;

/// Replicas that share one time, joined by a network the test pumps.
struct Group {
    sessions: Vec<Session>,
    /// Crashed: no timers, no messages in or out.
    down: Vec<bool>,
    /// Hears nothing (its own messages still go out).
    deaf: Vec<bool>,
    /// Monotonic ms since the start; wall time is `EPOCH + t`.
    t: u64,
    /// Each replica's session events, with the time they were reported.
    events: Vec<Vec<(u64, SessionEvent)>>,
}

fn leader_config() -> Config {
    let mut config = Config::leader();
    config.lease = LeaseConfig {
        duration_ms: 300,
        renew_deadline_ms: 200,
        renew_interval_ms: 100,
        max_delay_ms: 50,
    }
    .validated()
    .unwrap();
    config.heartbeat_interval_ms = 100;
    config.peer_timeout_ms = 350;
    config
}

/// Idle grace 1 s, countdown 3 s, warning in its last 1 s.
fn session_config() -> SessionConfig {
    let mut c = SessionConfig::default();
    c.idle_grace_ms = 1_000;
    c.countdown_ms = 3_000;
    c.warn_before_ms = 1_000;
    c.validated().unwrap()
}

impl Group {
    fn new(config: Config, n: usize) -> Group {
        let mut group = Group {
            sessions: Vec::new(),
            down: Vec::new(),
            deaf: Vec::new(),
            t: 0,
            events: Vec::new(),
        };
        for _ in 0..n {
            group.join(config.clone());
        }
        group
    }

    /// A new replica joins now.
    fn join(&mut self, config: Config) -> usize {
        let i = self.sessions.len();
        let me = SourceId::from_u128(i as u128 + 1);
        let mut session = Session::new(config, me).unwrap();
        session.handle_timeout(self.now());
        self.sessions.push(session);
        self.down.push(false);
        self.deaf.push(false);
        self.events.push(Vec::new());
        self.settle();
        i
    }

    fn now(&self) -> Now {
        Now::new(EPOCH + self.t, self.t)
    }

    fn wall(&self, t: u64) -> u64 {
        EPOCH + t
    }

    fn collect(&mut self, i: usize) {
        let t = self.t;
        while let Some(e) = self.sessions[i].poll_event() {
            self.events[i].push((t, e));
        }
        while self.sessions[i].poll_sync_event().is_some() {}
        while self.sessions[i].poll_persist().is_some() {}
    }

    /// Delivers every queued message until none is left.
    fn settle(&mut self) {
        let now = self.now();
        loop {
            let mut quiet = true;
            for i in 0..self.sessions.len() {
                self.collect(i);
                while let Some(bytes) = self.sessions[i].poll_transmit() {
                    quiet = false;
                    if self.down[i] {
                        continue;
                    }
                    for j in 0..self.sessions.len() {
                        if j != i && !self.down[j] && !self.deaf[j] {
                            self.sessions[j].handle_message(now, &bytes);
                            self.collect(j);
                        }
                    }
                }
            }
            if quiet {
                break;
            }
        }
    }

    /// Runs to `until` (monotonic ms), stopping at every deadline a live replica asks
    /// for; `frozen` replicas get no timers meanwhile.
    fn run_to(&mut self, until: u64, frozen: &[usize]) {
        loop {
            let down = self.down.clone();
            let live = |i: &usize| !down[*i] && !frozen.contains(i);
            let next = (0..self.sessions.len())
                .filter(live)
                .filter_map(|i| self.sessions[i].poll_timeout())
                .min()
                .unwrap_or(u64::MAX)
                .max(self.t);
            if next > until {
                break;
            }
            self.t = next;
            let now = self.now();
            for i in (0..self.sessions.len()).filter(live) {
                if self.sessions[i]
                    .poll_timeout()
                    .is_some_and(|d| d <= now.mono_ms)
                {
                    self.sessions[i].handle_timeout(now);
                }
            }
            self.settle();
            // Whatever stays due at this time waits for the next millisecond.
            let still_due = (0..self.sessions.len())
                .filter(live)
                .any(|i| self.sessions[i].poll_timeout().is_some_and(|d| d <= self.t));
            if still_due {
                if self.t >= until {
                    break;
                }
                self.t += 1;
            }
        }
        self.t = until;
    }

    fn op(&mut self, i: usize, op: Operation) -> Result<Outcome, SessionError> {
        let now = self.now();
        let result = self.sessions[i].operate(now, op);
        self.settle();
        result
    }

    fn leader(&self) -> usize {
        let leaders: Vec<usize> = (0..self.sessions.len())
            .filter(|i| !self.down[*i] && self.sessions[*i].is_leader())
            .collect();
        assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
        leaders[0]
    }

    fn end_at(&self, i: usize) -> Option<u64> {
        self.sessions[i].view(self.now()).countdown_end_at
    }

    fn live(&self) -> Vec<usize> {
        (0..self.sessions.len())
            .filter(|i| !self.down[*i])
            .collect()
    }

    /// The events replica `i` reported since (and including) `t`.
    fn events_since(&self, i: usize, t: u64) -> Vec<(u64, SessionEvent)> {
        self.events[i]
            .iter()
            .filter(|(at, _)| *at >= t)
            .cloned()
            .collect()
    }

    /// When replica `i` first reported an event `pick` accepts, at or after `t`.
    fn first(&self, i: usize, t: u64, pick: impl Fn(&SessionEvent) -> bool) -> Option<u64> {
        self.events_since(i, t)
            .into_iter()
            .find(|(_, e)| pick(e))
            .map(|(at, _)| at)
    }
}

/// Three leader-mode replicas with a leader, the session configured and started at a
/// follower: returns the group and the leader.
fn started_leader_group() -> (Group, usize) {
    let mut g = Group::new(leader_config(), 3);
    g.run_to(1_000, &[]);
    let leader = g.leader();
    let follower = (leader + 1) % 3;
    assert_eq!(
        g.op(follower, Operation::SetConfig(session_config())),
        Ok(Outcome::Forwarded)
    );
    assert_eq!(g.op(follower, Operation::Start), Ok(Outcome::Forwarded));
    (g, leader)
}

#[test]
fn an_operation_at_a_follower_reaches_every_replica_through_the_leader() {
    let (mut g, leader) = started_leader_group();
    let end = g.wall(1_000 + 4_000);
    for i in 0..3 {
        assert_eq!(g.end_at(i), Some(end), "replica {i}");
        assert_eq!(g.sessions[i].view(g.now()).config, session_config());
        assert!(g.events_since(i, 1_000).iter().any(|(_, e)| *e
            == SessionEvent::Started {
                countdown_end_at: end
            }));
    }
    // The write came from the leader, in its term.
    let term = g.sessions[leader].leading_term().unwrap();
    assert_eq!(g.sessions[0].state().record_stamp().term(), term);

    // Activity at the other follower resets the session everywhere.
    let other = (leader + 2) % 3;
    g.run_to(1_500, &[]);
    assert_eq!(g.op(other, Operation::Activity), Ok(Outcome::Forwarded));
    let end = g.wall(1_500 + 4_000);
    for i in 0..3 {
        assert_eq!(g.end_at(i), Some(end), "replica {i}");
        assert!(g.events_since(i, 1_500).iter().any(|(_, e)| *e
            == SessionEvent::Reset {
                cause: ResetCause::Activity,
                countdown_end_at: end
            }));
    }
    // At the leader itself, an operation is written at once.
    assert_eq!(g.op(leader, Operation::Pause), Ok(Outcome::Applied));
    for i in 0..3 {
        let v = g.sessions[i].view(g.now());
        assert!(v.paused);
        assert_eq!(v.remaining_ms, Some(4_000));
    }
    // Resume, extend and expire at the followers apply everywhere too.
    g.run_to(60_000, &[]);
    assert_eq!(g.op(other, Operation::Resume), Ok(Outcome::Forwarded));
    for i in 0..3 {
        assert_eq!(
            g.end_at(i),
            Some(g.wall(64_000)),
            "4 s left after the pause"
        );
    }
    g.run_to(61_000, &[]);
    let follower = (leader + 1) % 3;
    assert_eq!(g.op(follower, Operation::Extend), Ok(Outcome::Forwarded));
    for i in 0..3 {
        assert_eq!(g.end_at(i), Some(g.wall(65_000)));
        assert!(g
            .events_since(i, 61_000)
            .iter()
            .any(|(_, e)| *e == SessionEvent::Extended { count: 1 }));
    }
    assert_eq!(g.op(other, Operation::Expire), Ok(Outcome::Forwarded));
    for i in 0..3 {
        assert_eq!(g.sessions[i].view(g.now()).phase, Phase::Expired);
        assert_eq!(
            g.first(i, 61_000, |e| *e == SessionEvent::Expired),
            Some(61_000)
        );
    }
}

#[test]
fn the_leader_records_each_transition_and_every_replica_reports_it_at_the_deadline() {
    let (mut g, leader) = started_leader_group();
    // Started at 1,000: the countdown at 2,000, the warning at 4,000, expiry at 5,000.
    g.run_to(1_999, &[]);
    assert_eq!(g.sessions[leader].state().recorded_phase(), Phase::Idle);
    g.run_to(2_000, &[]);
    assert_eq!(
        g.sessions[leader].state().recorded_phase(),
        Phase::Countdown
    );
    g.run_to(6_000, &[]);
    for i in 0..3 {
        let countdown = g.first(i, 1_000, |e| {
            matches!(e, SessionEvent::CountdownStarted { .. })
        });
        let warn = g.first(i, 1_000, |e| {
            *e == SessionEvent::Warn {
                remaining_ms: 1_000,
            }
        });
        let expired = g.first(i, 1_000, |e| *e == SessionEvent::Expired);
        assert_eq!(
            (countdown, warn, expired),
            (Some(2_000), Some(4_000), Some(5_000)),
            "replica {i}"
        );
        let state = g.sessions[i].state();
        assert_eq!(state.recorded_phase(), Phase::Expired);
        assert_eq!(state.cause(), Some(Cause::Timer));
        assert_eq!(
            g.end_at(i),
            Some(g.wall(5_000)),
            "the timer moved no deadline"
        );
    }
}

#[test]
fn a_leader_crash_hands_the_timers_over_without_moving_the_deadline() {
    let (mut g, leader) = started_leader_group();
    let term = g.sessions[leader].leading_term().unwrap();
    g.run_to(2_500, &[]);
    let end = g.end_at(leader).unwrap();
    g.down[leader] = true;
    g.run_to(3_500, &[]);
    let next = g.leader();
    assert_ne!(next, leader);
    let next_term = g.sessions[next].leading_term().unwrap();
    assert!(next_term > term);
    assert!(g
        .events_since(next, 2_500)
        .iter()
        .any(|(_, e)| *e == SessionEvent::LeaderGained { term: next_term }));
    for i in g.live() {
        assert_eq!(g.end_at(i), Some(end), "replica {i} kept the deadline");
    }
    // The successor runs the timers: it records the warning and the expiry, in its term.
    g.run_to(4_000, &[]);
    let state = g.sessions[next].state();
    assert_eq!(state.recorded_phase(), Phase::Warn);
    assert_eq!(state.record_stamp().term(), next_term);
    g.run_to(6_000, &[]);
    for i in g.live() {
        assert_eq!(
            g.first(i, 2_500, |e| *e == SessionEvent::Expired),
            Some(5_000)
        );
        assert_eq!(g.sessions[i].state().recorded_phase(), Phase::Expired);
    }
}

#[test]
fn a_leader_that_leaves_hands_the_timers_over_at_once() {
    let (mut g, leader) = started_leader_group();
    g.run_to(2_500, &[]);
    let end = g.end_at(leader);
    let now = g.now();
    g.sessions[leader].handle_lifecycle(now, Lifecycle::Leave);
    g.settle();
    g.down[leader] = true;
    g.run_to(2_501, &[]);
    let next = g.leader();
    assert_ne!(next, leader);
    for i in g.live() {
        assert_eq!(g.end_at(i), end);
    }
    // Activity after the handover goes to the new leader.
    let follower = g.live().into_iter().find(|i| *i != next).unwrap();
    assert_eq!(g.op(follower, Operation::Activity), Ok(Outcome::Forwarded));
    for i in g.live() {
        assert_eq!(g.end_at(i), Some(g.wall(2_501 + 4_000)));
    }
}

#[test]
fn a_frozen_replica_shows_the_right_phase_the_moment_it_runs_again() {
    let (mut g, leader) = started_leader_group();
    let frozen = (leader + 1) % 3;
    g.run_to(1_100, &[]);
    g.deaf[frozen] = true;
    // Minutes with no timer and no message: the session expired meanwhile.
    g.run_to(181_100, &[frozen]);
    assert!(g.events_since(frozen, 1_101).is_empty(), "it was frozen");
    let now = g.now();
    assert_eq!(g.sessions[frozen].view(now).phase, Phase::Expired);
    g.sessions[frozen].handle_timeout(now);
    g.collect(frozen);
    let events: Vec<SessionEvent> = g
        .events_since(frozen, 181_100)
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(events, [SessionEvent::Expired], "not a stale warning first");
}

#[test]
fn a_replica_that_joins_mid_countdown_shows_the_same_deadline() {
    let (mut g, _) = started_leader_group();
    g.run_to(3_000, &[]);
    let late = g.join(leader_config());
    g.run_to(3_200, &[]);
    assert_eq!(g.end_at(late), g.end_at(0));
    let events: Vec<SessionEvent> = g.events[late].iter().map(|e| e.1.clone()).collect();
    assert!(events.contains(&SessionEvent::Started {
        countdown_end_at: g.wall(5_000)
    }));
    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::CountdownStarted { .. })));
    g.run_to(4_000, &[]);
    assert_eq!(
        g.first(late, 3_000, |e| matches!(e, SessionEvent::Warn { .. })),
        Some(4_000)
    );
}

#[test]
fn a_config_change_anywhere_is_adopted_everywhere_and_an_invalid_one_nowhere() {
    let (mut g, leader) = started_leader_group();
    let follower = (leader + 1) % 3;
    let mut longer = session_config();
    longer.countdown_ms = 10_000;
    assert_eq!(
        g.op(follower, Operation::SetConfig(longer)),
        Ok(Outcome::Forwarded)
    );
    for i in 0..3 {
        assert_eq!(g.sessions[i].view(g.now()).config, longer);
        // Re-planned from the last reset (the start at 1,000).
        assert_eq!(g.end_at(i), Some(g.wall(1_000 + 11_000)));
        assert!(g
            .events_since(i, 1_000)
            .iter()
            .any(|(_, e)| *e == SessionEvent::ConfigChanged { config: longer }));
    }
    let mut bad = longer;
    bad.countdown_ms = 0;
    let before = g.sessions[leader].state().clone();
    assert!(matches!(
        g.op(follower, Operation::SetConfig(bad)),
        Err(SessionError::Refused(Refusal::InvalidConfig(_)))
    ));
    assert_eq!(*g.sessions[leader].state(), before);
}

#[test]
fn an_operation_the_leader_refuses_is_reported_there() {
    let (mut g, leader) = started_leader_group();
    let follower = (leader + 1) % 3;
    // The follower hears nothing while the leader expires the session.
    g.deaf[follower] = true;
    assert_eq!(g.op(leader, Operation::Expire), Ok(Outcome::Applied));
    assert_eq!(g.sessions[follower].view(g.now()).phase, Phase::Idle);
    assert_eq!(g.op(follower, Operation::Activity), Ok(Outcome::Forwarded));
    let id = g.sessions[follower].source();
    assert!(g.events[leader].iter().any(|(_, e)| *e
        == SessionEvent::Refused {
            from: id,
            operation: Operation::Activity,
            refusal: Refusal::Expired
        }));
    assert_eq!(g.sessions[leader].view(g.now()).phase, Phase::Expired);
}

#[test]
fn a_follower_keeps_refused_activity_to_itself() {
    let (mut g, leader) = started_leader_group();
    let follower = (leader + 1) % 3;
    let mut c = session_config();
    c.activity_reset_cooldown_ms = 500;
    g.op(leader, Operation::SetConfig(c)).unwrap();
    g.run_to(1_200, &[]);
    let before = g.sessions[follower].replica().stats().messages_out;
    assert_eq!(
        g.op(follower, Operation::Activity),
        Err(SessionError::Refused(Refusal::Cooldown {
            until_ms: g.wall(1_500)
        }))
    );
    assert_eq!(
        g.sessions[follower].replica().stats().messages_out,
        before,
        "nothing sent"
    );
}

fn distributed_pair() -> Group {
    let mut g = Group::new(Config::distributed(), 2);
    g.op(0, Operation::SetConfig(session_config())).unwrap();
    assert_eq!(g.op(1, Operation::Start), Ok(Outcome::Applied));
    g
}

/// Both replicas write before either hears the other, `first` 5 ms before `second`.
fn concurrently(g: &mut Group, first: (usize, Operation), second: (usize, Operation)) {
    let t = g.t;
    for (dt, (i, op)) in [(1_000, first), (1_005, second)] {
        g.t = t + dt;
        let now = g.now();
        assert_eq!(g.sessions[i].operate(now, op), Ok(Outcome::Applied));
    }
    g.settle();
}

#[test]
fn distributed_concurrent_activity_and_extend_converge_on_the_later_write() {
    let mut g = distributed_pair();
    // The later write wins every register of the record: here the activity, so the
    // extend it overrode is not counted either.
    concurrently(&mut g, (1, Operation::Extend), (0, Operation::Activity));
    assert_eq!(g.sessions[0].state(), g.sessions[1].state());
    let v = g.sessions[1].view(g.now());
    assert_eq!((v.extends, v.idle_start_at), (0, Some(g.wall(1_005))));
    assert_eq!(g.sessions[0].state().cause(), Some(Cause::Activity));

    // The other way round: the extend wins, counted once.
    concurrently(&mut g, (0, Operation::Activity), (1, Operation::Extend));
    assert_eq!(g.sessions[0].state(), g.sessions[1].state());
    let v = g.sessions[0].view(g.now());
    assert_eq!((v.extends, v.idle_start_at), (1, Some(g.wall(2_010))));
    for i in 0..2 {
        assert!(g.events[i]
            .iter()
            .any(|(_, e)| *e == SessionEvent::Extended { count: 1 }));
    }

    // Two extends at once: one wins, everywhere.
    concurrently(&mut g, (0, Operation::Extend), (1, Operation::Extend));
    assert_eq!(g.sessions[0].state(), g.sessions[1].state());
    assert_eq!(g.sessions[0].view(g.now()).extends, 2);
    assert_eq!(
        g.sessions[0].state().record_stamp().source,
        g.sessions[1].source()
    );
}

#[test]
fn distributed_concurrent_pause_and_activity_never_mix_their_registers() {
    let mut g = distributed_pair();
    concurrently(&mut g, (0, Operation::Activity), (1, Operation::Pause));
    for i in 0..2 {
        let v = g.sessions[i].view(g.now());
        assert!(v.paused);
        // The pause saw the record before the activity: its own idle start, not the
        // activity's, under its one stamp.
        assert_eq!(v.idle_start_at, Some(g.wall(0)));
        assert_eq!(v.remaining_ms, Some(4_000 - 1_005));
    }
    assert_eq!(g.sessions[0].state(), g.sessions[1].state());
}

#[test]
fn distributed_replicas_run_their_own_timers_and_write_no_transitions() {
    let mut g = distributed_pair();
    g.run_to(6_000, &[]);
    for i in 0..2 {
        assert_eq!(
            g.first(i, 0, |e| *e
                == SessionEvent::Warn {
                    remaining_ms: 1_000
                }),
            Some(3_000)
        );
        assert_eq!(g.first(i, 0, |e| *e == SessionEvent::Expired), Some(4_000));
        assert_eq!(g.sessions[i].state().recorded_phase(), Phase::Idle);
        assert_eq!(g.sessions[i].view(g.now()).phase, Phase::Expired);
    }
}
