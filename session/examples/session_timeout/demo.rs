//! The session idle-timeout service, three replicas in one process: what replisync is
//! for, in under ten seconds.
//!
//! Three replicas (think browser tabs) share one session over the in-process hub, each
//! on a native driver thread. One leads and runs the timers; the others mirror it and
//! send it their users' operations. The demo shows activity spreading, the warning, an
//! extend, a leader crash with a successor that keeps the deadline, and the expiry.
//!
//! Run with `cargo run --release --example session_timeout`. It exits non-zero, saying
//! what did not happen, if any step it narrates does not happen in time.
//!
//! Each replica is a `replisync_session::Session` on a native driver, which runs it as
//! it runs a bare replica: the session decides everything, and `glue.rs` (shared with
//! the one-process-per-replica form, `replica.rs`) only wires its events and
//! operations to the demo.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use replisync::{
    Clock, Config, Driver, Handle, Hub, LeaseConfig, MutexAuthority, Now, SourceId, SystemClock,
};
use replisync_session::{
    Operation, Phase, Refusal, ResetCause, Session, SessionConfig, SessionEvent,
};

use super::glue::{self, Report, Step};

type Error = Box<dyn std::error::Error>;

/// How long the demo waits for any step before it gives up and fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// One replica as the demo's users see it.
struct Tab {
    name: u128,
    handle: Handle<Session>,
    service: std::thread::JoinHandle<()>,
}

/// The demo's whole story, written to `out`. Fails, saying which step did not happen,
/// if one does not happen in time.
pub fn run(out: &mut dyn Write) -> Result<(), Error> {
    let began = Instant::now();
    let clock = SystemClock::new();
    let (report_tx, reports) = crossbeam_channel::unbounded();
    let mut story = Story {
        out,
        reports,
        start: clock.now(),
    };

    let mut config = SessionConfig::default();
    config.idle_grace_ms = 1_000;
    config.countdown_ms = 3_000;
    config.warn_before_ms = 1_500;
    config.reset_on_warning_activity = false;
    let config = config.validated()?;

    story.say(
        "replisync: one session idle-timeout service, three replicas, one shared countdown.\n\
         Durations are short for the demo: idle for 1 s after the last activity, then a 3 s\n\
         countdown that warns in its last 1.5 s. Activity during the warning does not count\n\
         (reset_on_warning_activity = false): the user must click \"extend\".\n",
    )?;

    let hub = Hub::new();
    // A lease authority makes leadership exclusive: in one process, a mutex.
    let authority = MutexAuthority::new(clock);
    let mut tabs = Vec::new();
    for name in 1..=3 {
        tabs.push(open_tab(name, &hub, &authority, clock, report_tx.clone())?);
    }
    drop(report_tx);

    // 1. A leader is elected; it will run the timers.
    story.expect_one(&[1, 2, 3], "a leader", |e| {
        matches!(e, SessionEvent::LeaderGained { .. })
    })?;
    let leader = sole_leader(&tabs)?;
    let follower = if leader == 2 { 3 } else { 2 };
    let other = 6 - leader - follower;
    story.step(&format!(
        "replica {leader} leads and runs the timers; replicas {follower} and {other} follow and send it their operations."
    ))?;

    // 2. A follower configures and starts the session.
    story.step(&format!(
        "replica {follower} configures the session and starts it (as requests to the leader)."
    ))?;
    operate(tab(&tabs, follower), Operation::SetConfig(config))?;
    operate(tab(&tabs, follower), Operation::Start)?;
    story.expect_all(&[1, 2, 3], "the start", |e| {
        matches!(e, SessionEvent::Started { .. })
    })?;
    let deadline = same_deadline(&tabs, clock)?;
    story.step(&format!(
        "all three show the same deadline, {}: it is one shared register, not three timers.",
        story.at(deadline)
    ))?;

    // 3. Activity at one replica resets them all.
    std::thread::sleep(Duration::from_millis(600));
    story.step(&format!("replica {other}'s user moves the mouse."))?;
    operate(tab(&tabs, other), Operation::Activity)?;
    story.expect_all(&[1, 2, 3], "the reset by activity", |e| {
        matches!(
            e,
            SessionEvent::Reset {
                cause: ResetCause::Activity,
                ..
            }
        )
    })?;
    let reset = same_deadline(&tabs, clock)?;
    if reset <= deadline {
        return Err(
            format!("the activity did not move the deadline ({reset} <= {deadline})").into(),
        );
    }
    story.step(&format!(
        "every replica was reset: the deadline moved to {}.",
        story.at(reset)
    ))?;

    // 4. Nobody moves: the countdown, then the warning, on every replica.
    story.step("nobody moves for a while...")?;
    story.expect_all(&[1, 2, 3], "the countdown", |e| {
        matches!(e, SessionEvent::CountdownStarted { .. })
    })?;
    story.expect_all(&[1, 2, 3], "the warning", |e| {
        matches!(e, SessionEvent::Warn { .. })
    })?;

    // 5. During the warning, activity is not enough; an extend is.
    story.step(&format!(
        "replica {follower}'s user moves the mouse during the warning:"
    ))?;
    match operate(tab(&tabs, follower), Operation::Activity) {
        Err(Step::Refused(Refusal::WarningNeedsExtend)) => {
            story.say(&format!("        ignored: {}", Refusal::WarningNeedsExtend))?
        }
        other => {
            return Err(format!("activity during the warning was not ignored: {other:?}").into())
        }
    }
    story.step(&format!("replica {follower}'s user clicks \"extend\"."))?;
    operate(tab(&tabs, follower), Operation::Extend)?;
    story.expect_all(&[1, 2, 3], "the extend", |e| {
        matches!(e, SessionEvent::Extended { count: 1 })
    })?;
    let extended = same_deadline(&tabs, clock)?;
    story.step(&format!(
        "extended everywhere: the session now ends at {}.",
        story.at(extended)
    ))?;

    // 6. The leader crashes during the countdown; a successor keeps the deadline.
    story.expect_all(&[1, 2, 3], "the countdown after the extend", |e| {
        matches!(e, SessionEvent::CountdownStarted { .. })
    })?;
    let leader = sole_leader(&tabs)?;
    let crashed = tabs.remove(tabs.iter().position(|t| t.name == leader).unwrap());
    crashed.handle.crash()?;
    crashed
        .service
        .join()
        .map_err(|_| "the crashed replica's service panicked")?;
    story.step(&format!(
        "replica {leader}, the leader, crashes: no goodbye. Nobody runs the timers until its lease runs out."
    ))?;
    let live: Vec<u128> = tabs.iter().map(|t| t.name).collect();
    let (successor, gained) = story.expect_one(&live, "a successor", |e| {
        matches!(e, SessionEvent::LeaderGained { .. })
    })?;
    let SessionEvent::LeaderGained { term } = gained else {
        unreachable!()
    };
    let kept = same_deadline(&tabs, clock)?;
    if kept != extended {
        return Err(format!("the handover moved the deadline from {extended} to {kept}").into());
    }
    story.step(&format!(
        "replica {successor} took over (term {term}) and kept the deadline: still {}.",
        story.at(kept)
    ))?;

    // 7. The successor's timers: the warning and the expiry.
    story.expect_all(&live, "the warning after the handover", |e| {
        matches!(e, SessionEvent::Warn { .. })
    })?;
    wait_until("the successor to record the warning", || {
        let state = glue::state(&tab(&tabs, successor).handle)?;
        Ok(state.recorded_phase() >= Phase::Warn && state.record_stamp().term() == term)
    })?;
    story.step(&format!(
        "replica {successor} recorded the warning in the shared state, stamped with its term {term}."
    ))?;
    story.expect_all(&live, "the expiry", |e| matches!(e, SessionEvent::Expired))?;
    let last = *live.iter().find(|n| **n != successor).unwrap();
    story.step(&format!(
        "replica {last}'s user clicks \"extend\" too late:"
    ))?;
    match operate(tab(&tabs, last), Operation::Extend) {
        Err(Step::Refused(Refusal::ExtendWhenExpired)) => {
            story.say(&format!("        refused: {}", Refusal::ExtendWhenExpired))?
        }
        other => return Err(format!("an extend after expiry was not refused: {other:?}").into()),
    }

    for t in tabs {
        t.handle.leave()?;
        t.service
            .join()
            .map_err(|_| "a replica's service panicked")?;
    }
    story.say("")?;
    story.say(&format!(
        "Every step happened, in {:.1} s. The same service runs in browser tabs and processes:",
        began.elapsed().as_secs_f64()
    ))?;
    story.say("only the transport changes. Next: cargo run --release --example quickstart")?;
    Ok(())
}

/// Replica `name` with its driver and its service thread.
fn open_tab(
    name: u128,
    hub: &Hub,
    authority: &MutexAuthority,
    clock: SystemClock,
    reports: Sender<Report>,
) -> Result<Tab, Error> {
    // Short lease timings, so that a crashed leader is replaced within half a second.
    let mut config = Config::leader();
    config.lease = LeaseConfig {
        duration_ms: 300,
        renew_deadline_ms: 200,
        renew_interval_ms: 100,
        max_delay_ms: 50,
    }
    .validated()?;
    config.heartbeat_interval_ms = 100;
    config.peer_timeout_ms = 350;
    let session = Session::new(config, SourceId::from_u128(name))?;
    let mut driver = Driver::new(session, hub.connect())
        .clock(clock)
        .authority(authority.clone());
    let events = driver.subscribe();
    let handle = driver.spawn()?;
    let for_service = handle.clone();
    let service = std::thread::Builder::new()
        .name(format!("service-{name}"))
        .spawn(move || glue::report(name, for_service, events, reports))?;
    Ok(Tab {
        name,
        handle,
        service,
    })
}

/// A user's operation at a demo replica.
fn operate(tab: &Tab, operation: Operation) -> Result<(), Step> {
    glue::operate(&tab.handle, operation).map(|_| ())
}

fn tab(tabs: &[Tab], name: u128) -> &Tab {
    tabs.iter()
        .find(|t| t.name == name)
        .expect("a replica of the demo")
}

/// The one replica that leads, once exactly one does. (Without a lease authority two
/// replicas that claim at the same moment may both lead for a moment; the higher term
/// wins and the other steps down.)
fn sole_leader(tabs: &[Tab]) -> Result<u128, Error> {
    let mut leader = 0;
    wait_until("exactly one leader", || {
        let mut leaders = Vec::new();
        for t in tabs {
            if t.handle.call(|s, _| s.is_leader())? {
                leaders.push(t.name);
            }
        }
        leader = leaders.first().copied().unwrap_or(0);
        Ok(leaders.len() == 1)
    })?;
    Ok(leader)
}

/// The deadline every live replica shows; an error if they differ.
fn same_deadline(tabs: &[Tab], clock: SystemClock) -> Result<u64, Error> {
    let now = clock.now();
    let mut seen = BTreeMap::new();
    for t in tabs {
        seen.insert(t.name, glue::state(&t.handle)?.view(now).countdown_end_at);
    }
    let first = *seen.values().next().unwrap();
    match first {
        Some(end) if seen.values().all(|e| *e == first) => Ok(end),
        _ => Err(format!("the replicas disagree on the deadline: {seen:?}").into()),
    }
}

/// Polls `done` until it holds, at most [`STEP_TIMEOUT`].
fn wait_until(what: &str, mut done: impl FnMut() -> Result<bool, Error>) -> Result<(), Error> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !done()? {
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The narration: the demo's own lines, and every event the replicas report.
struct Story<'a> {
    out: &'a mut dyn Write,
    reports: Receiver<Report>,
    start: Now,
}

impl Story<'_> {
    fn say(&mut self, line: &str) -> Result<(), Error> {
        writeln!(self.out, "{line}")?;
        Ok(())
    }

    fn step(&mut self, line: &str) -> Result<(), Error> {
        self.say(&format!("  -> {line}"))
    }

    /// A wall-clock time as seconds since the demo began.
    fn at(&self, wall_ms: u64) -> String {
        format!(
            "{:.2} s",
            wall_ms.saturating_sub(self.start.wall_ms) as f64 / 1_000.0
        )
    }

    fn secs(ms: u64) -> String {
        format!("{:.2} s", ms as f64 / 1_000.0)
    }

    fn describe(&self, event: &SessionEvent) -> String {
        match event {
            SessionEvent::Started { countdown_end_at } => {
                format!("session started; it ends at {}", self.at(*countdown_end_at))
            }
            SessionEvent::Stopped => "session stopped".into(),
            SessionEvent::CountdownStarted { remaining_ms } => {
                format!(
                    "idle grace over: the countdown runs, {} left",
                    Self::secs(*remaining_ms)
                )
            }
            SessionEvent::Warn { remaining_ms } => {
                format!("WARNING: the session ends in {}", Self::secs(*remaining_ms))
            }
            SessionEvent::Expired => "EXPIRED".into(),
            SessionEvent::Reset {
                cause,
                countdown_end_at,
            } => format!(
                "reset by {}; it now ends at {}",
                match cause {
                    ResetCause::Activity => "activity",
                    _ => "extend",
                },
                self.at(*countdown_end_at)
            ),
            SessionEvent::Extended { count } => {
                format!("extended (extend no. {count} of this session)")
            }
            SessionEvent::Paused { remaining_ms } => {
                format!("paused with {} left", Self::secs(*remaining_ms))
            }
            SessionEvent::Resumed { countdown_end_at } => {
                format!("resumed; it ends at {}", self.at(*countdown_end_at))
            }
            SessionEvent::LeaderGained { term } => {
                format!("leads now (term {term}): runs the timers")
            }
            SessionEvent::LeaderLost { term } => format!("no longer leads (term {term})"),
            SessionEvent::ConfigChanged { config } => format!(
                "config: idle {}, countdown {}, warning in the last {}",
                Self::secs(config.idle_grace_ms),
                Self::secs(config.countdown_ms),
                Self::secs(config.warn_before_ms)
            ),
            SessionEvent::Refused {
                operation, refusal, ..
            } => format!("refused {operation:?}: {refusal}"),
            other => format!("{other:?}"),
        }
    }

    fn print(&mut self, report: &Report) -> Result<(), Error> {
        let line = format!(
            "  {:>5.2} s  replica {}  {}",
            report.at_ms.saturating_sub(self.start.mono_ms) as f64 / 1_000.0,
            report.name,
            self.describe(&report.event)
        );
        self.say(&line)
    }

    /// Reads reports (printing each) until one of `from` reports an event `pick`
    /// accepts; that replica and event.
    fn expect_one(
        &mut self,
        from: &[u128],
        what: &str,
        pick: impl Fn(&SessionEvent) -> bool,
    ) -> Result<(u128, SessionEvent), Error> {
        let found = self.expect(from, 1, what, pick)?;
        Ok(found.into_iter().next().expect("one event"))
    }

    /// Reads reports (printing each) until every replica of `from` reported an event
    /// `pick` accepts.
    fn expect_all(
        &mut self,
        from: &[u128],
        what: &str,
        pick: impl Fn(&SessionEvent) -> bool,
    ) -> Result<BTreeMap<u128, SessionEvent>, Error> {
        self.expect(from, from.len(), what, pick)
    }

    fn expect(
        &mut self,
        from: &[u128],
        count: usize,
        what: &str,
        pick: impl Fn(&SessionEvent) -> bool,
    ) -> Result<BTreeMap<u128, SessionEvent>, Error> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut found = BTreeMap::new();
        while found.len() < count {
            let report = self.reports.recv_deadline(deadline).map_err(|_| {
                let missing: Vec<&u128> = from.iter().filter(|n| !found.contains_key(*n)).collect();
                format!(
                    "no {what} from replica(s) {missing:?} within {} s",
                    STEP_TIMEOUT.as_secs()
                )
            })?;
            self.print(&report)?;
            if from.contains(&report.name) && pick(&report.event) {
                found.entry(report.name).or_insert(report.event);
            }
        }
        Ok(found)
    }
}
