//! The replica: a sans-IO state machine that keeps one bundle in step with its peers.

mod authority;
mod leader;
mod outbox;
mod peers;
mod persist;
mod receive;
mod requests;
mod sleep;
mod state;
mod stats;
mod sync;
mod timers;
mod validate;

pub use persist::Persist;
pub use stats::Stats;
pub use validate::Invalid;

use std::collections::VecDeque;

use crate::authority::{AuthorityAnswer, AuthorityRequest};
use crate::bundle::{Bundle, Request};
use crate::wire::{Body, Envelope};
use crate::{
    Config, ConfigError, DecodeError, Degradation, Event, Hlc, LeadershipLoss, Lease, Machine, Now,
    Output, Rejection, SourceId, StampError, SyncMode, Writer,
};
use authority::AuthorityLink;
use leader::Leadership;
use outbox::Outbox;
use peers::Peers;
use persist::Persistence;
use requests::RequestQueue;
use sleep::SleepWatch;
use state::{fnv1a, stored_terms, State};
use sync::SyncAnswers;

/// A lifecycle signal from the environment (the page, the process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lifecycle {
    /// The page was hidden; a holder keeps renewing while it can.
    Hidden,
    /// The page is visible again: followers re-check the leadership.
    Visible,
    /// The page is about to be frozen: timers will stop.
    Freeze,
    /// The page was resumed: like a wake from sleep, the holder re-validates and
    /// everyone asks for a sync.
    Resume,
    /// The replica leaves: pending writes go out, a holder releases the lease (others
    /// take over at once), and it says goodbye. Nothing is sent after.
    Leave,
}

/// Why a local write was refused. Nothing of a refused write is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// In leader mode only the leader writes; send a request instead.
    NotLeader {
        /// The leader, if one is known.
        leader: Option<SourceId>,
    },
    /// The replica has left.
    Left,
    /// The delta could not be encoded with the wire or the store codec, or holds a
    /// register too large for one message.
    Encode(DecodeError),
    /// The write could not be stamped (see [`StampError`]).
    Stamp(StampError),
    /// The delta holds stamps this write did not mint: registers copied from the state
    /// (`d.notes = s.notes.clone()`) or from another delta. Peers would reject such a
    /// delta as carrying another replica's writes; put into the delta only what the
    /// `write*` methods return.
    NotMinted {
        /// How many of the delta's stamps were not minted by this write.
        count: usize,
    },
    /// Writes of this call are missing from the delta: a later write to the same field
    /// replaced an earlier one (`d.notes = s.notes.write_insert(a, ..); d.notes =
    /// s.notes.write_insert(b, ..)` keeps only `b`). Record each write into the delta
    /// instead: [`LwwMap::write_insert_into`](crate::LwwMap::write_insert_into), or
    /// merge the second delta into the first.
    Dropped {
        /// How many minted stamps are not in the delta.
        count: usize,
    },
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteError::NotLeader { leader: Some(l) } => write!(
                f,
                "only the leader ({l}) writes in leader mode; send a request for it instead"
            ),
            WriteError::NotLeader { leader: None } => write!(
                f,
                "only the leader writes in leader mode and none is known yet; send a request (it is queued)"
            ),
            WriteError::Left => write!(f, "the replica has left; create a new one"),
            WriteError::Encode(e) => write!(f, "the write cannot be sent or stored: {e}"),
            WriteError::Stamp(e) => write!(f, "the write cannot be stamped: {e}"),
            WriteError::NotMinted { count } => write!(
                f,
                "the delta holds {count} stamp(s) this write did not mint (a register copied \
                 from the state?); put into the delta only what the write methods return"
            ),
            WriteError::Dropped { count } => write!(
                f,
                "{count} write(s) of this call are missing from the delta: a later write to the \
                 same field replaced an earlier one; record each write into the delta \
                 (LwwMap::write_insert_into, or merge the deltas)"
            ),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Encode(e) => Some(e),
            WriteError::Stamp(e) => Some(e),
            _ => None,
        }
    }
}

/// One replica of a bundle `S`, with application requests of type `R`: a deterministic
/// state machine with no threads, clocks, sockets or randomness inside (the style of
/// quinn-proto and str0m).
///
/// # Call order
///
/// 1. [`Replica::new`] with a [`Config`] and this replica's [`SourceId`]. Optionally
///    [`Replica::with_authority`], then [`Replica::restore`] with the store's log.
/// 2. Feed it inputs, each with the current [`Now`]:
///    [`handle_message`](Replica::handle_message) for bytes from the transport,
///    [`handle_timeout`](Replica::handle_timeout) when the deadline from
///    [`poll_timeout`](Replica::poll_timeout) is reached, [`write`](Replica::write) and
///    [`request`](Replica::request) from the application,
///    [`handle_lifecycle`](Replica::handle_lifecycle) for page and process signals,
///    and [`handle_authority`](Replica::handle_authority) for the lease authority's
///    answers.
/// 3. After each input, drain the outputs: call [`poll_output`](Replica::poll_output)
///    until it returns [`Output::Timeout`], the next deadline. It hands out, in this
///    order, requests for the lease authority, bytes to broadcast, persists (a delta
///    to append to the store, or the whole state to compact onto) and events (what the
///    application should know). The same outputs are also reachable one kind at a
///    time: [`poll_authority`](Replica::poll_authority),
///    [`poll_transmit`](Replica::poll_transmit), [`poll_persist`](Replica::poll_persist),
///    [`poll_event`](Replica::poll_event) and [`poll_timeout`](Replica::poll_timeout).
///
/// Drivers do this for you, for a replica or any other [`Machine`]: the native driver
/// ([`Driver`](crate::Driver)) on a thread; in a browser, the `replisync-web` crate's
/// callbacks.
///
/// # Modes
///
/// In [`SyncMode::Leader`] one replica holds the lease and writes; the others mirror
/// it and forward [requests](Replica::request), which surface at the leader as
/// [`Event::Request`]. In [`SyncMode::Distributed`] every replica writes and requests
/// surface where they were made.
///
/// ```
/// use replisync::{Config, Event, Lww, Merge, Now, Replica, SourceId};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
/// struct Doc { title: Lww<String> }
///
/// let now = Now::new(1_700_000_000_000, 0);
/// let mut a: Replica<Doc> = Replica::new(Config::distributed(), SourceId::from_u128(1)).unwrap();
/// let mut b: Replica<Doc> = Replica::new(Config::distributed(), SourceId::from_u128(2)).unwrap();
///
/// a.write(now, |doc, d, w| d.title = doc.title.write("hello".into(), w)).unwrap();
/// while let Some(bytes) = a.poll_transmit() {
///     b.handle_message(now, &bytes);
/// }
/// assert_eq!(b.state().title.get().map(String::as_str), Some("hello"));
/// assert!(std::iter::from_fn(|| b.poll_event()).any(|e| matches!(e, Event::Changed { .. })));
/// ```
pub struct Replica<S, R = ()> {
    config: Config,
    me: SourceId,
    /// When this run began (its first input's time): peers tell its runs apart by it.
    incarnation: u64,
    hlc: Hlc,
    state: State<S>,
    /// The lease: the term led, terms heard of, the authority.
    leadership: Leadership,
    /// Whether the first input was handled (and the replica joined).
    started: bool,
    left: bool,
    /// What goes out: numbering, the coalesced delta, heartbeats, the transmit queue.
    outbox: Outbox<State<S>>,
    /// What the store holds and is owed.
    persistence: Persistence<State<S>>,
    /// The state's digest, until the state changes.
    digest: Option<u64>,
    peers: Peers,
    /// The full-state answers owed to peers.
    answers: SyncAnswers,
    /// Sleep detection between inputs.
    sleep: SleepWatch,
    events: VecDeque<Event<R>>,
    /// Requests waiting for a leader.
    requests: RequestQueue<R>,
    stats: Stats,
}

impl<S, R> core::fmt::Debug for Replica<S, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Replica")
            .field("source", &self.me)
            .field("mode", &self.config.mode)
            .field("leading", &self.leadership.leading)
            .field("known_term", &self.leadership.known_term)
            .field("lease", &self.state.lease)
            .field("left", &self.left)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<S: Bundle, R: Request> Replica<S, R> {
    /// A replica with an empty state. It joins (asks its peers for their state) on the
    /// first input, which also fixes its incarnation (the time this run began); restore
    /// persisted bytes before that.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the configuration contradicts itself.
    pub fn new(config: Config, me: SourceId) -> Result<Self, ConfigError> {
        config.validate()?;
        let hlc = Hlc::new(config.max_drift_ms);
        Ok(Replica {
            leadership: Leadership::new(config.lease),
            me,
            incarnation: 0,
            hlc,
            state: State::default(),
            started: false,
            left: false,
            outbox: Outbox::default(),
            persistence: Persistence::default(),
            digest: None,
            peers: Peers::default(),
            answers: SyncAnswers::default(),
            sleep: SleepWatch::default(),
            events: VecDeque::new(),
            requests: RequestQueue::default(),
            stats: Stats::default(),
            config,
        })
    }

    /// Makes the lease exclusive through a lease authority (leader mode): this replica
    /// leads only while the authority grants it the term. It asks through
    /// [`Replica::poll_authority`] and hears the answers through
    /// [`Replica::handle_authority`].
    pub fn with_authority(mut self) -> Self {
        self.use_authority();
        self
    }

    pub(crate) fn use_authority(&mut self) {
        self.leadership
            .authority
            .get_or_insert_with(AuthorityLink::default);
    }

    /// Restores the state persisted so far (every [`Persist`] of
    /// [`Replica::poll_persist`], applied in order: the store's log), merging it into
    /// the current state. A store is not bound by [`Config::max_message_bytes`].
    ///
    /// A last record cut short (the process died while appending it: what is there is
    /// a strict prefix of a record) is dropped with a [`Degradation::StoreRecordDropped`]
    /// event, and the next persist rewrites the store without it. The record format,
    /// and exactly what counts as cut short, is documented on [`Persist`].
    ///
    /// # Errors
    ///
    /// A record is not whole and checked (a damaged length, header or line break, or a
    /// whole record that fails its integrity check, the last one included), is of a
    /// newer schema, is malformed, or holds a version or term out of range; or the
    /// first record is cut short. Then nothing is applied, a
    /// [`Degradation::StoreUnreadable`] event is queued, and this replica never persists
    /// over the unreadable bytes.
    pub fn restore(&mut self, now: Now, bytes: &[u8]) -> Result<(), DecodeError> {
        let codec = self.config.store_codec;
        let loaded = persist::load::<State<S>>(codec, bytes).and_then(|loaded| {
            let mut top = 0;
            for stored in &loaded.states {
                let term = stored_terms(&stored.state)
                    .map_err(|detail| DecodeError::Malformed { codec, detail })?;
                top = top.max(term);
            }
            Ok((loaded, top))
        });
        match loaded {
            Ok((loaded, top_term)) => {
                // What is merged here is in the store already: only what was pending
                // before stays to be persisted.
                let pending = self.persistence.take_delta();
                let dirty = self.persistence.is_dirty();
                if self.config.mode == SyncMode::Leader {
                    self.heard_term(top_term, now);
                }
                for stored in &loaded.states {
                    self.hlc.restore(stored.updated_at);
                    self.merge_state(&stored.state, self.me, now);
                }
                self.persistence.keep_pending(pending, dirty);
                self.persistence
                    .restored(loaded.base_len, loaded.appended_len);
                if loaded.torn {
                    tracing::warn!(source = %self.me, "the store's last record was cut short; dropped");
                    self.events.push_back(Event::Degraded {
                        reason: Degradation::StoreRecordDropped,
                    });
                }
                if loaded.torn || loaded.rewrite {
                    self.persistence.compact_next();
                    self.mark_dirty(now);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(source = %self.me, error = %e, "persisted state unreadable; kept and never overwritten");
                self.persistence.block();
                self.events.push_back(Event::Degraded {
                    reason: Degradation::StoreUnreadable(e.clone()),
                });
                Err(e)
            }
        }
    }

    /// This replica's id.
    pub fn source(&self) -> SourceId {
        self.me
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current state of the bundle.
    pub fn state(&self) -> &S {
        &self.state.app
    }

    /// The latest lease record known here (leader mode).
    pub fn lease(&self) -> Option<&Lease> {
        self.state.lease.as_ref()
    }

    /// The holder of the latest lease record, if it is held.
    pub fn leader(&self) -> Option<SourceId> {
        self.state.lease.filter(|l| !l.released).map(|l| l.holder)
    }

    /// The leader, when it is another replica. A record naming this replica while it
    /// does not act as leader (it slept, or its renewal is late) is stale: no leader is
    /// known until the record moves on.
    fn other_leader(&self) -> Option<SourceId> {
        self.leader().filter(|l| *l != self.me)
    }

    /// Whether this replica acts as leader (it may write in leader mode), as of the last
    /// input.
    pub fn is_leader(&self) -> bool {
        self.leadership.leading.is_some()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether [`Lifecycle::Leave`] was handled.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// A digest of the whole state (the bundle and the lease record): equal digests
    /// mean byte-identical states, as far as a 64-bit hash can tell.
    pub fn digest(&mut self) -> u64 {
        if let Some(d) = self.digest {
            return d;
        }
        let bytes = crate::Codec::Binary.encode(&self.state).unwrap_or_default();
        let d = fnv1a(&bytes);
        self.digest = Some(d);
        d
    }

    /// The whole state, encoded with the store codec (for comparing replicas).
    ///
    /// # Errors
    ///
    /// The bundle cannot be encoded with that codec.
    pub fn encode_state(&self) -> Result<Vec<u8>, DecodeError> {
        self.config.store_codec.encode(&self.state)
    }

    /// Writes: `f` gets the current state, an empty delta to fill, and a [`Writer`]; it
    /// sets the delta's registers it writes to what their `write*` methods return, as
    /// in `|s, d, w| d.title = s.title.write(v, w)`, or records several writes of one
    /// map into the delta, as in `s.notes.write_insert_into(&mut d.notes, k, v, w)`.
    /// The delta is merged here, persisted and sent (at once, or coalesced for
    /// `flush_interval_ms`).
    ///
    /// The delta must hold exactly the stamps this call's writer minted: a register
    /// copied from the state, or a write replaced by a later one to the same field, is
    /// refused ([`WriteError::NotMinted`], [`WriteError::Dropped`]) rather than sent
    /// to peers that would reject it or lost without a word. Call the `write*` methods
    /// on the state `s` (they stamp past its current stamps), never on the delta.
    ///
    /// In leader mode every write carries exactly the term this replica leads: a leader
    /// that has heard of a newer term has stopped leading, and its writes are refused.
    ///
    /// # Errors
    ///
    /// Nothing of a refused write is applied:
    /// [`WriteError::NotLeader`] in leader mode on a non-leader (send a
    /// [request](Replica::request) instead), [`WriteError::Left`] after leaving,
    /// [`WriteError::Encode`] when the delta cannot be encoded with the wire or store
    /// codec (or holds a register too large for one message), [`WriteError::Stamp`]
    /// when a register's versions are used up, [`WriteError::NotMinted`] and
    /// [`WriteError::Dropped`] when the delta does not hold exactly this call's writes.
    pub fn write(
        &mut self,
        now: Now,
        f: impl FnOnce(&S, &mut S, &mut Writer<'_>),
    ) -> Result<(), WriteError> {
        if self.left {
            return Err(WriteError::Left);
        }
        self.observe_input_time(now);
        let result = self.write_within(now, f);
        self.run_due(now);
        result
    }

    fn write_within(
        &mut self,
        now: Now,
        f: impl FnOnce(&S, &mut S, &mut Writer<'_>),
    ) -> Result<(), WriteError> {
        let term = match self.config.mode {
            SyncMode::Distributed => 0,
            SyncMode::Leader => match self.leadership.leading {
                Some(term) => term,
                None => {
                    return Err(WriteError::NotLeader {
                        leader: self.other_leader(),
                    })
                }
            },
        };
        let mut writer = self.hlc.writer(self.me, now.wall_ms).with_term(term);
        let mut app = S::default();
        f(&self.state.app, &mut app, &mut writer);
        match writer.error().cloned() {
            None => {}
            Some(StampError::NewerTerm { newer, .. }) => {
                // The state holds a newer term's write: this term is over.
                self.heard_term(newer, now);
                return Err(WriteError::NotLeader {
                    leader: self.other_leader(),
                });
            }
            Some(e @ StampError::VersionsExhausted { .. }) if term > 0 => {
                // A new term gives every register 2^32 fresh versions.
                self.step_down(LeadershipLoss::TermExhausted, now);
                return Err(WriteError::Stamp(e));
            }
            Some(e) => return Err(WriteError::Stamp(e)),
        }
        check_minted(&app, writer.minted())?;
        let delta = State { lease: None, app };
        if let Err(e) = self
            .fit(&delta)
            .and_then(|_| self.config.store_codec.encode(&delta))
        {
            return Err(WriteError::Encode(e));
        }
        self.merge_state(&delta, self.me, now);
        self.queue_delta(delta, now);
        Ok(())
    }

    /// An application request. In leader mode it goes to the leader (queued until one
    /// is known) and surfaces there as [`Event::Request`]; on the leader itself, and in
    /// distributed mode, it surfaces here at once.
    ///
    /// # Errors
    ///
    /// [`WriteError::Left`] after leaving; [`WriteError::Encode`] when the request
    /// must travel to a leader (leader mode, on a replica that does not lead) and
    /// cannot be encoded, or does not fit in one message
    /// ([`Config::max_message_bytes`], error [`DecodeError::TooLarge`]). A refused
    /// request is neither sent nor queued.
    pub fn request(&mut self, now: Now, request: R) -> Result<(), WriteError> {
        if self.left {
            return Err(WriteError::Left);
        }
        self.observe_input_time(now);
        let result =
            if self.config.mode == SyncMode::Distributed || self.leadership.leading.is_some() {
                self.events.push_back(Event::Request {
                    from: self.me,
                    request,
                });
                Ok(())
            } else {
                // It travels (now, or once a leader is known): it must fit a message.
                self.check_request_fits(&request)
                    .map(|()| self.forward_request(request, now))
                    .map_err(WriteError::Encode)
            };
        self.run_due(now);
        result
    }

    /// Bytes received from the transport. Whatever they hold, they are merged whole or
    /// not at all: bad bytes give an [`Event::MessageRejected`] and a counter, never a
    /// panic.
    pub fn handle_message(&mut self, now: Now, bytes: &[u8]) {
        if self.left {
            return;
        }
        self.observe_input_time(now);
        self.stats.messages_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        match self
            .config
            .wire_codec
            .decode_message::<Envelope<State<S>, R>>(bytes, self.config.max_message_bytes, |e| {
                e.schema
            }) {
            Ok(envelope) => self.receive(envelope, now),
            Err(e) => self.reject(Rejection::Undecodable(e)),
        }
        self.run_due(now);
    }

    /// The deadline from [`Replica::poll_timeout`] was reached (calling it early or late
    /// is harmless: it does what is due).
    pub fn handle_timeout(&mut self, now: Now) {
        if self.left {
            return;
        }
        self.observe_input_time(now);
        self.run_due(now);
    }

    /// An answer of the lease authority (to a request from
    /// [`Replica::poll_authority`], or unasked: a lock granted once its holder died, a
    /// grant lost). Late, lost and duplicated answers are harmless: a grant is timed
    /// from the ask it answers, so lateness only shortens it. Ignored without
    /// [`Replica::with_authority`]; after leaving, a grant is handed back.
    pub fn handle_authority(&mut self, now: Now, answer: AuthorityAnswer) {
        if self.left {
            if let (Some(link), AuthorityAnswer::Granted { term, .. }) =
                (self.leadership.authority.as_mut(), answer)
            {
                link.release(term);
            }
            return;
        }
        self.observe_input_time(now);
        self.authority_answer(answer, now);
        self.run_due(now);
    }

    /// A lifecycle signal.
    pub fn handle_lifecycle(&mut self, now: Now, signal: Lifecycle) {
        if self.left {
            return;
        }
        self.observe_input_time(now);
        match signal {
            Lifecycle::Hidden | Lifecycle::Freeze => {}
            Lifecycle::Visible => self.lease_tick(now),
            Lifecycle::Resume => self.woke(0, now),
            Lifecycle::Leave => {
                // Pending writes first, while this replica still leads their term (a
                // successor claims on the release, and must not be ahead of them);
                // then the release, persisted with the state; then goodbye.
                self.flush(now);
                self.leave_lease(now);
                self.flush(now);
                self.send(Body::Goodbye, now);
                self.left = true;
                tracing::debug!(source = %self.me, "left");
                return;
            }
        }
        self.run_due(now);
    }

    /// The next message to broadcast to every peer.
    #[must_use = "drain every output after each input"]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop()
    }

    /// What to do with the store: append a delta, or compact onto the whole state (see
    /// [`Persist`] and [`Store`](crate::Store)). Apply each in order; what was applied
    /// is what [`Replica::restore`] reads back.
    #[must_use = "drain every output after each input"]
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.persistence.poll()
    }

    /// The next request for the lease authority (with [`Replica::with_authority`]);
    /// carry it out and hand the answer to [`Replica::handle_authority`]. Still drained
    /// after leaving: the last one releases the lease.
    #[must_use = "drain every output after each input"]
    pub fn poll_authority(&mut self) -> Option<AuthorityRequest> {
        self.leadership.authority.as_mut()?.poll()
    }

    /// The next event for the application.
    #[must_use = "drain every output after each input"]
    pub fn poll_event(&mut self) -> Option<Event<R>> {
        self.events.pop_front()
    }

    /// When (local monotonic ms) [`Replica::handle_timeout`] should next be called;
    /// `None` once the replica has left.
    #[must_use = "drain every output after each input"]
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.left {
            return None;
        }
        if !self.started {
            return Some(0);
        }
        self.timers().next()
    }

    /// The next output, in the one drain order every driver follows: authority
    /// requests, then messages to broadcast, then persists, then events, and last
    /// [`Output::Timeout`] with [`Replica::poll_timeout`] once all of them are drained
    /// (see [`Output`] for why this order). Call it after every input until it returns
    /// `Timeout`. The separate `poll_*` methods hand out the same outputs; use one way
    /// or the other.
    pub fn poll_output(&mut self) -> Output<Event<R>> {
        if let Some(request) = self.poll_authority() {
            return Output::Authority(request);
        }
        if let Some(bytes) = self.poll_transmit() {
            return Output::Transmit(bytes);
        }
        if let Some(persist) = self.poll_persist() {
            return Output::Persist(persist);
        }
        if let Some(event) = self.poll_event() {
            return Output::Event(event);
        }
        Output::Timeout(self.poll_timeout())
    }

    // --- the two steps every input goes through ---

    /// Before an input: observes its time and joins. The first input fixes the
    /// incarnation; a gap since the last input that shows a sleep is acted on; a
    /// leader whose lease (or authority grant) ran out stops before it handles
    /// anything; and on the first input the replica joins: it asks its peers for
    /// their state and starts the join grace and the heartbeats.
    fn observe_input_time(&mut self, now: Now) {
        if !self.started {
            // This run's incarnation: its first time, later than anything it restored,
            // so peers tell it apart from its earlier runs.
            self.incarnation = self.hlc.now(now.wall_ms);
        }
        if let Some(gap) = self.sleep.observe(now, self.config.sleep_tolerance_ms) {
            self.woke(gap, now);
        }
        self.lease_validate(now);
        if !self.started {
            self.started = true;
            self.leadership.joined_until = now.mono_ms.saturating_add(self.join_grace_ms());
            self.outbox.set_heartbeat_at(now.mono_ms);
            self.send(Body::SyncRequest { to: None }, now);
        }
    }

    /// After an input: runs whatever is due, in this order: the lease (claim or
    /// renew), the flush, the heartbeat, sync requests, the sync answer, peer expiry;
    /// then notes when the next input is expected (for sleep detection).
    fn run_due(&mut self, now: Now) {
        self.lease_tick(now);
        if self.outbox.flush_due(now.mono_ms) {
            self.flush(now);
        }
        self.heartbeat_if_due(now);
        self.request_due_syncs(now);
        if self.answers.is_due(now.mono_ms) {
            self.answer_sync(now);
        }
        for peer in self.peers.expire(now.mono_ms, self.config.peer_timeout_ms) {
            self.events.push_back(Event::PeerLeft {
                peer,
                said_goodbye: false,
            });
        }
        self.sleep.expect_by(self.poll_timeout());
    }

    fn join_grace_ms(&self) -> u64 {
        let lease = &self.config.lease;
        lease
            .renew_interval_ms
            .max(self.config.heartbeat_interval_ms)
            .saturating_add(lease.max_delay_ms)
    }
}

/// The replica as a [`Machine`]: each method is the inherent one of the same name.
impl<S: Bundle, R: Request> Machine for Replica<S, R> {
    type Event = Event<R>;

    fn source(&self) -> SourceId {
        Replica::source(self)
    }

    fn use_authority(&mut self) {
        Replica::use_authority(self);
    }

    fn restore(&mut self, now: Now, bytes: &[u8]) -> Result<(), DecodeError> {
        Replica::restore(self, now, bytes)
    }

    fn handle_message(&mut self, now: Now, bytes: &[u8]) {
        Replica::handle_message(self, now, bytes);
    }

    fn handle_timeout(&mut self, now: Now) {
        Replica::handle_timeout(self, now);
    }

    fn handle_lifecycle(&mut self, now: Now, signal: Lifecycle) {
        Replica::handle_lifecycle(self, now, signal);
    }

    fn handle_authority(&mut self, now: Now, answer: AuthorityAnswer) {
        Replica::handle_authority(self, now, answer);
    }

    fn poll_output(&mut self) -> Output<Event<R>> {
        Replica::poll_output(self)
    }

    fn degraded(reason: Degradation) -> Event<R> {
        Event::Degraded { reason }
    }
}

/// Checks that `delta` holds exactly the stamps in `minted` (as multisets): nothing
/// copied from elsewhere, nothing minted and then replaced.
fn check_minted<S: crate::Merge>(delta: &S, minted: &[crate::Stamp]) -> Result<(), WriteError> {
    let mut held = Vec::with_capacity(minted.len());
    delta.visit_stamps(&mut |stamp| held.push(*stamp));
    let mut minted = minted.to_vec();
    held.sort_unstable();
    minted.sort_unstable();
    if held == minted {
        return Ok(());
    }
    // Count both differences by walking the two sorted lists.
    let (mut i, mut j, mut foreign, mut dropped) = (0, 0, 0, 0);
    while i < held.len() || j < minted.len() {
        match (held.get(i), minted.get(j)) {
            (Some(h), Some(m)) if h == m => {
                i += 1;
                j += 1;
            }
            (Some(h), Some(m)) if h < m => {
                foreign += 1;
                i += 1;
            }
            (Some(_), None) => {
                foreign += 1;
                i += 1;
            }
            _ => {
                dropped += 1;
                j += 1;
            }
        }
    }
    if foreign > 0 {
        Err(WriteError::NotMinted { count: foreign })
    } else {
        Err(WriteError::Dropped { count: dropped })
    }
}
