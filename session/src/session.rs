//! The service on a sans-IO replica.

use std::collections::VecDeque;

use replisync::authority::{AuthorityAnswer, AuthorityRequest};
use replisync::{
    Config, ConfigError as SyncConfigError, DecodeError, Degradation, Event, Lifecycle, Machine,
    Now, Output, Persist, Replica, SourceId, SyncMode, WriteError,
};

use crate::{Operation, Refusal, SessionEvent, SessionState, SessionWatch, View};

/// What became of an operation that was not refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Written here (this replica leads, or the mode is distributed); it reaches the
    /// others with the next messages.
    Applied,
    /// Sent to the leader (or queued until one is known), which decides again on its
    /// own state and writes it; a refusal there is reported at the leader
    /// ([`SessionEvent::Refused`]).
    Forwarded,
}

/// Why a [`Session`] operation did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The service refused it: nothing was written or sent.
    Refused(Refusal),
    /// The replica refused the write or the request (it has left, or the write could
    /// not be stamped or encoded).
    Write(WriteError),
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SessionError::Refused(r) => core::fmt::Display::fmt(r, f),
            SessionError::Write(e) => core::fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Refused(r) => Some(r),
            SessionError::Write(e) => Some(e),
        }
    }
}

impl From<Refusal> for SessionError {
    fn from(r: Refusal) -> Self {
        SessionError::Refused(r)
    }
}

impl From<WriteError> for SessionError {
    fn from(e: WriteError) -> Self {
        SessionError::Write(e)
    }
}

/// What a [`Session`] driven as a [`Machine`] tells the application
/// ([`Output::Event`]): the service's events, and the replica's own (peers, leadership,
/// degradation; requests excepted, the session applies those).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Notice {
    /// An event of the service ([`Session::poll_event`]).
    Session(SessionEvent),
    /// An event of the replica underneath ([`Session::poll_sync_event`]), or a
    /// degradation the driver found (its transport or store failing).
    Sync(Event<Operation>),
}

/// One replica of the session idle-timeout service: a sans-IO state machine over a
/// [`Replica`] of [`SessionState`], with no threads, clocks or sockets inside.
///
/// # What it does
///
/// - **Operations** ([`start`](Session::start), [`activity`](Session::activity),
///   [`extend`](Session::extend), ... or any [`Operation`] through
///   [`operate`](Session::operate)) are checked on this replica's state, then written
///   here when it may write (it leads, or the mode is distributed) or sent to the leader
///   as a request. The leader applies requests as they arrive.
/// - **Timers**: in leader mode the leader records each phase transition (the countdown
///   starts, the warning, the expiry) when it falls due; every replica computes its own
///   phase and time left from the shared absolute deadlines anyway
///   ([`view`](Session::view)), so a late timer or a handover never moves a deadline.
/// - **Events**: after every input, what changed as this replica sees it
///   ([`poll_event`](Session::poll_event), from a [`SessionWatch`]); the replica's own
///   events other than requests are kept for
///   [`poll_sync_event`](Session::poll_sync_event).
///
/// # As a [`Machine`]
///
/// A session is a [`Machine`] like the replica it wraps, so any driver runs it: the
/// native [`Driver`](replisync::Driver) (`Driver::new(session, transport)`, its
/// operations through [`Handle::call`](replisync::Handle::call)), or a test's own loop.
/// Its [`Output::Event`]s are [`Notice`]s, and its [`Output::Timeout`] includes the
/// session's next phase boundary, so the driver wakes it to record and report each
/// transition: no service code around the driver decides anything.
///
/// # Call order
///
/// As for a [`Replica`]: inputs with the current [`Now`]
/// ([`handle_message`](Session::handle_message),
/// [`handle_timeout`](Session::handle_timeout) once
/// [`poll_timeout`](Session::poll_timeout) is reached, the operations,
/// [`handle_lifecycle`](Session::handle_lifecycle)), then drain the outputs, with
/// [`poll_output`](Session::poll_output) until [`Output::Timeout`], or one kind at a time
/// ([`poll_transmit`](Session::poll_transmit), [`poll_persist`](Session::poll_persist),
/// [`poll_event`](Session::poll_event), [`poll_sync_event`](Session::poll_sync_event))
/// and read [`poll_timeout`](Session::poll_timeout) again. It wakes at the replica's
/// deadlines and at each phase boundary.
///
/// ```
/// use replisync::{Config, Now, SourceId};
/// use replisync_session::{Outcome, Phase, Session, SessionConfig, SessionEvent};
///
/// let mut a = Session::new(Config::distributed(), SourceId::from_u128(1)).unwrap();
/// let mut b = Session::new(Config::distributed(), SourceId::from_u128(2)).unwrap();
/// let mut now = Now::new(1_700_000_000_000, 0);
/// let mut pump = |a: &mut Session, b: &mut Session, now: Now| {
///     while let Some(bytes) = a.poll_transmit() { b.handle_message(now, &bytes); }
///     while let Some(bytes) = b.poll_transmit() { a.handle_message(now, &bytes); }
/// };
///
/// let mut config = SessionConfig::default();
/// config.idle_grace_ms = 1_000;
/// config.countdown_ms = 5_000;
/// config.warn_before_ms = 2_000;
/// a.set_config(now, config).unwrap();
/// assert_eq!(a.start(now), Ok(Outcome::Applied));
/// pump(&mut a, &mut b, now);
///
/// // Activity at b resets the session everywhere.
/// now = now.after(2_500);
/// b.activity(now).unwrap();
/// pump(&mut a, &mut b, now);
/// assert_eq!(a.view(now).countdown_end_at, Some(now.wall_ms + 6_000));
///
/// // Each replica wakes at the warning on its own (4 s later) and reports it.
/// assert!(b.poll_timeout().unwrap() <= now.mono_ms + 4_000);
/// now = now.after(4_000);
/// b.handle_timeout(now);
/// assert_eq!(b.view(now).phase, Phase::Warn);
/// assert!(std::iter::from_fn(|| b.poll_event()).any(|e| matches!(e, SessionEvent::Warn { .. })));
/// ```
#[derive(Debug)]
pub struct Session {
    replica: Replica<SessionState, Operation>,
    watch: SessionWatch,
    events: VecDeque<SessionEvent>,
    sync_events: VecDeque<Event<Operation>>,
    last_now: Option<Now>,
}

impl Session {
    /// A service replica with `config` (its mode and timings) and the id `me`.
    ///
    /// # Errors
    ///
    /// The replica's [`replisync::ConfigError`] when `config` contradicts itself.
    pub fn new(config: Config, me: SourceId) -> Result<Session, SyncConfigError> {
        Replica::new(config, me).map(Session::from_replica)
    }

    /// The service over a replica made and set up elsewhere (restored from a store, or
    /// [with an authority](Replica::with_authority), say); from then on, feed it
    /// through the session only.
    pub fn from_replica(replica: Replica<SessionState, Operation>) -> Session {
        Session {
            replica,
            watch: SessionWatch::new(),
            events: VecDeque::new(),
            sync_events: VecDeque::new(),
            last_now: None,
        }
    }

    /// The replica underneath, to read (its lease, its counters).
    pub fn replica(&self) -> &Replica<SessionState, Operation> {
        &self.replica
    }

    /// The shared state as this replica holds it.
    pub fn state(&self) -> &SessionState {
        self.replica.state()
    }

    /// The session as this replica sees it at `now` ([`SessionState::view`]).
    pub fn view(&self, now: Now) -> View {
        self.replica.state().view(now)
    }

    /// This replica's id.
    pub fn source(&self) -> SourceId {
        self.replica.source()
    }

    /// Whether this replica runs the timers (leader mode, holding the lease).
    pub fn is_leader(&self) -> bool {
        self.replica.is_leader()
    }

    /// The replica running the timers, as this one knows it (leader mode).
    pub fn leader(&self) -> Option<SourceId> {
        self.replica.leader()
    }

    /// The lease term this replica leads in, if it leads.
    pub fn leading_term(&self) -> Option<u64> {
        leading_term(&self.replica)
    }

    // --- operations ---

    /// [`Operation::Start`].
    ///
    /// # Errors
    ///
    /// As [`Session::operate`].
    pub fn start(&mut self, now: Now) -> Result<Outcome, SessionError> {
        self.operate(now, Operation::Start)
    }

    /// [`Operation::Stop`].
    ///
    /// # Errors
    ///
    /// As [`Session::operate`].
    pub fn stop(&mut self, now: Now) -> Result<Outcome, SessionError> {
        self.operate(now, Operation::Stop)
    }

    /// [`Operation::Activity`].
    ///
    /// # Errors
    ///
    /// As [`Session::operate`]; activity that does not count (cooldown, paused, a
    /// warning that needs an extend, expired) is a [`Refusal`] the caller may ignore.
    pub fn activity(&mut self, now: Now) -> Result<Outcome, SessionError> {
        self.operate(now, Operation::Activity)
    }

    /// [`Operation::Extend`].
    ///
    /// # Errors
    ///
    /// As [`Session::operate`].
    pub fn extend(&mut self, now: Now) -> Result<Outcome, SessionError> {
        self.operate(now, Operation::Extend)
    }

    /// [`Operation::Expire`].
    ///
    /// # Errors
    ///
    /// As [`Session::operate`].
    pub fn expire(&mut self, now: Now) -> Result<Outcome, SessionError> {
        self.operate(now, Operation::Expire)
    }

    /// [`Operation::Pause`].
    ///
    /// # Errors
    ///
    /// As [`Session::operate`].
    pub fn pause(&mut self, now: Now) -> Result<Outcome, SessionError> {
        self.operate(now, Operation::Pause)
    }

    /// [`Operation::Resume`].
    ///
    /// # Errors
    ///
    /// As [`Session::operate`].
    pub fn resume(&mut self, now: Now) -> Result<Outcome, SessionError> {
        self.operate(now, Operation::Resume)
    }

    /// [`Operation::SetConfig`]: invalid settings are refused here, changing nothing.
    ///
    /// # Errors
    ///
    /// As [`Session::operate`];
    /// [`Refusal::InvalidConfig`](crate::Refusal::InvalidConfig) with the
    /// [`ConfigError`](crate::ConfigError) naming the setting.
    pub fn set_config(
        &mut self,
        now: Now,
        config: crate::SessionConfig,
    ) -> Result<Outcome, SessionError> {
        self.operate(now, Operation::SetConfig(config))
    }

    /// Checks `operation` on this replica's state, then writes it here (leading, or in
    /// distributed mode) or sends it to the leader (queued until one is known).
    ///
    /// # Errors
    ///
    /// [`SessionError::Refused`] when the check fails (nothing is written or sent);
    /// [`SessionError::Write`] when the replica refuses (it has left).
    pub fn operate(&mut self, now: Now, operation: Operation) -> Result<Outcome, SessionError> {
        let result = self.operate_within(now, operation);
        self.after_input(now);
        result
    }

    fn operate_within(&mut self, now: Now, operation: Operation) -> Result<Outcome, SessionError> {
        operation.check(self.replica.state(), now)?;
        if self.may_write() {
            self.replica
                .write(now, |s, d, w| {
                    // Checked just above on this very state: it cannot be refused.
                    let _ = operation.apply(s, now, d, w);
                })
                .map(|()| Outcome::Applied)
                .map_err(SessionError::Write)
        } else {
            self.replica
                .request(now, operation)
                .map(|()| Outcome::Forwarded)
                .map_err(SessionError::Write)
        }
    }

    fn may_write(&self) -> bool {
        self.replica.config().mode == SyncMode::Distributed || self.replica.is_leader()
    }

    // --- inputs ---

    /// Bytes from the transport ([`Replica::handle_message`]).
    pub fn handle_message(&mut self, now: Now, bytes: &[u8]) {
        self.replica.handle_message(now, bytes);
        self.after_input(now);
    }

    /// The deadline from [`Session::poll_timeout`] was reached (early or late is
    /// harmless).
    pub fn handle_timeout(&mut self, now: Now) {
        self.replica.handle_timeout(now);
        self.after_input(now);
    }

    /// A lifecycle signal ([`Replica::handle_lifecycle`]); on [`Lifecycle::Leave`] a
    /// leader hands the timers over at once.
    pub fn handle_lifecycle(&mut self, now: Now, signal: Lifecycle) {
        self.replica.handle_lifecycle(now, signal);
        self.after_input(now);
    }

    /// An answer of the lease authority ([`Replica::handle_authority`]), for a session
    /// whose replica was made [`with_authority`](Replica::with_authority).
    pub fn handle_authority(&mut self, now: Now, answer: AuthorityAnswer) {
        self.replica.handle_authority(now, answer);
        self.after_input(now);
    }

    /// Restores what the store holds into the replica ([`Replica::restore`]), before
    /// the first input; its events (a record dropped, a store unreadable) come out
    /// with [`poll_sync_event`](Session::poll_sync_event).
    ///
    /// # Errors
    ///
    /// As [`Replica::restore`]: nothing is applied, and the replica never persists
    /// over the bytes.
    pub fn restore(&mut self, now: Now, bytes: &[u8]) -> Result<(), DecodeError> {
        let restored = self.replica.restore(now, bytes);
        // A restore surfaces no request: its events are all the replica's own.
        self.sync_events
            .extend(std::iter::from_fn(|| self.replica.poll_event()));
        restored
    }

    /// Requests that reached this replica, the leader's timers, and the events.
    fn after_input(&mut self, now: Now) {
        self.last_now = Some(now);
        // A write can make the replica claim the lease, which hands it the requests
        // queued meanwhile: look again after writing, a bounded number of times.
        for _ in 0..4 {
            let mut again = false;
            while let Some(event) = self.replica.poll_event() {
                match event {
                    Event::Request { from, request } => {
                        self.apply_request(now, from, request);
                        again = true;
                    }
                    other => self.sync_events.push_back(other),
                }
            }
            if self.replica.config().mode == SyncMode::Leader
                && self.replica.is_leader()
                && self.replica.state().transition_due(now).is_some()
            {
                // A failed write (leadership lost on the way) leaves the transition to
                // the next leader, which finds it due in the same way.
                again |= self
                    .replica
                    .write(now, |s, d, w| {
                        s.write_transition(now, d, w);
                    })
                    .is_ok();
            }
            if !again {
                break;
            }
        }
        let leading = self.leading_term();
        self.events
            .extend(self.watch.observe(self.replica.state(), leading, now));
    }

    /// An operation that reached this replica to be applied.
    fn apply_request(&mut self, now: Now, from: SourceId, operation: Operation) {
        if let Err(refusal) = operation.check(self.replica.state(), now) {
            self.events.push_back(SessionEvent::Refused {
                from,
                operation,
                refusal,
            });
            return;
        }
        let written = if self.may_write() {
            let op = operation.clone();
            self.replica.write(now, |s, d, w| {
                let _ = op.apply(s, now, d, w);
            })
        } else {
            Err(WriteError::NotLeader { leader: None })
        };
        if let Err(WriteError::NotLeader { .. }) = written {
            // Leadership moved on since the request surfaced here: pass it on to the
            // leader (or queue it until one is known).
            let _ = self.replica.request(now, operation);
        }
    }

    // --- outputs ---

    /// The next message to broadcast to every peer.
    #[must_use = "drain every output after each input"]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.replica.poll_transmit()
    }

    /// What to do with the store ([`Replica::poll_persist`]).
    #[must_use = "drain every output after each input"]
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.replica.poll_persist()
    }

    /// The next request for the lease authority ([`Replica::poll_authority`]).
    #[must_use = "drain every output after each input"]
    pub fn poll_authority(&mut self) -> Option<AuthorityRequest> {
        self.replica.poll_authority()
    }

    /// The next event of the service.
    #[must_use = "drain every output after each input"]
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The next event of the replica underneath (peers, leadership, degradation),
    /// requests excepted: the session applies those.
    #[must_use = "drain every output after each input"]
    pub fn poll_sync_event(&mut self) -> Option<Event<Operation>> {
        self.sync_events.pop_front()
    }

    /// The next output, in the order [`Output`] documents: the replica's authority
    /// requests, messages and persists, then the replica's events
    /// ([`Notice::Sync`]) and the service's ([`Notice::Session`]), and last
    /// [`Output::Timeout`] with [`Session::poll_timeout`].
    pub fn poll_output(&mut self) -> Output<Notice> {
        if let Some(request) = self.replica.poll_authority() {
            return Output::Authority(request);
        }
        if let Some(bytes) = self.replica.poll_transmit() {
            return Output::Transmit(bytes);
        }
        if let Some(persist) = self.replica.poll_persist() {
            return Output::Persist(persist);
        }
        if let Some(event) = self.sync_events.pop_front() {
            return Output::Event(Notice::Sync(event));
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(Notice::Session(event));
        }
        Output::Timeout(self.poll_timeout())
    }

    /// When (local monotonic ms) [`Session::handle_timeout`] should next be called:
    /// the replica's next deadline, or the session's next phase boundary, whichever
    /// comes first. The boundary is a wall-clock time; it is turned into monotonic time
    /// as of the last input, and the turn is made again at every input.
    #[must_use = "drain every output after each input"]
    pub fn poll_timeout(&self) -> Option<u64> {
        let replica = self.replica.poll_timeout()?;
        let boundary = self.last_now.and_then(|now| {
            let at = self.replica.state().view(now).next_change_at?;
            Some(now.mono_ms.saturating_add(at.saturating_sub(now.wall_ms)))
        });
        Some(boundary.map_or(replica, |b| b.min(replica)))
    }
}

fn leading_term(replica: &Replica<SessionState, Operation>) -> Option<u64> {
    replica
        .is_leader()
        .then(|| replica.lease().map(|l| l.term))
        .flatten()
}

/// The session as a [`Machine`]: each method is the inherent one of the same name
/// ([`Machine::use_authority`] reaches the replica underneath).
impl Machine for Session {
    type Event = Notice;

    fn source(&self) -> SourceId {
        Session::source(self)
    }

    fn use_authority(&mut self) {
        Machine::use_authority(&mut self.replica);
    }

    fn restore(&mut self, now: Now, bytes: &[u8]) -> Result<(), DecodeError> {
        Session::restore(self, now, bytes)
    }

    fn handle_message(&mut self, now: Now, bytes: &[u8]) {
        Session::handle_message(self, now, bytes);
    }

    fn handle_timeout(&mut self, now: Now) {
        Session::handle_timeout(self, now);
    }

    fn handle_lifecycle(&mut self, now: Now, signal: Lifecycle) {
        Session::handle_lifecycle(self, now, signal);
    }

    fn handle_authority(&mut self, now: Now, answer: AuthorityAnswer) {
        Session::handle_authority(self, now, answer);
    }

    fn poll_output(&mut self) -> Output<Notice> {
        Session::poll_output(self)
    }

    fn degraded(reason: Degradation) -> Notice {
        Notice::Sync(Event::Degraded { reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{at, config};

    /// Drains `machine` through the trait only: its notices, and its next deadline.
    fn drain<M: Machine<Event = Notice>>(machine: &mut M) -> (Vec<Notice>, Option<u64>) {
        let mut notices = Vec::new();
        loop {
            match machine.poll_output() {
                Output::Event(notice) => notices.push(notice),
                Output::Authority(_) | Output::Transmit(_) | Output::Persist(_) => {}
                Output::Timeout(deadline) => return (notices, deadline),
            }
        }
    }

    #[test]
    fn a_session_driven_as_a_machine_wakes_at_each_phase_boundary_and_reports_it() {
        let mut s = Session::new(Config::distributed(), SourceId::from_u128(1)).unwrap();
        s.set_config(at(0), config(1_000, 5_000, 2_000)).unwrap();
        s.start(at(0)).unwrap();
        let (notices, mut deadline) = drain(&mut s);
        assert!(notices.contains(&Notice::Session(SessionEvent::Started {
            countdown_end_at: at(6_000).wall_ms
        })));
        // A loop that knows nothing of sessions: wake at each deadline until expiry.
        let mut seen = Vec::new();
        while let Some(t) = deadline.filter(|t| *t <= 7_000) {
            Machine::handle_timeout(&mut s, at(t));
            let (notices, next) = drain(&mut s);
            for notice in notices {
                if let Notice::Session(e) = notice {
                    seen.push((t, e));
                }
            }
            deadline = next.map(|n| n.max(t + 1));
        }
        let at_of =
            |pick: fn(&SessionEvent) -> bool| seen.iter().find(|(_, e)| pick(e)).map(|(t, _)| *t);
        assert_eq!(
            at_of(|e| matches!(e, SessionEvent::CountdownStarted { .. })),
            Some(1_000)
        );
        assert_eq!(
            at_of(|e| matches!(e, SessionEvent::Warn { .. })),
            Some(4_000)
        );
        assert_eq!(at_of(|e| matches!(e, SessionEvent::Expired)), Some(6_000));
        assert_eq!(
            Machine::source(&s),
            SourceId::from_u128(1),
            "the machine's source is the replica's"
        );
    }
}
