//! A deterministic, single-threaded world of replicas, in the style of TigerBeetle's
//! VOPR: one `u64` seed draws the configuration (mode, authority, codecs, flush
//! interval, message limit, how many keys, high starting terms and versions), the fault
//! rates, the workload and every random choice; simulated clocks (each replica's wall
//! clock with its own offset and drift, monotonic clocks that stop while a replica
//! sleeps); the network is replisync's `SimNetwork`.
//!
//! Phase one runs the workload under faults: crashes and leaves (some for good),
//! sleeps, partitions, clock steps, garbage, and a corrupting peer that flips bits,
//! truncates, or re-encodes a real message with one field set to an extreme value. In
//! some seeds a leader failover is then measured under the network faults. Phase two
//! heals everything (network, clocks, crashed replicas that were to come back) and
//! requires convergence within a bound, then checks that no peer was silenced, then
//! measures failover on the healed network.
//!
//! The invariants of DESIGN.md §7 are checked all along (see `drain`, `apply` and
//! `check_final`); a violation is an `Err` naming the invariant, and the runner names
//! the seed.

#![allow(dead_code)]

mod answer_replays;
mod authority;
mod checks;
mod classes;
mod extreme_fields;
mod faults;
mod oracle;
mod request_sizes;
mod store_damage;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use replisync::authority::{AuthorityAnswer, LeaseArbiter};
pub use replisync::sim::Rng;
use replisync::sim::{Faults, NodeId, SimNetwork};
use replisync::{
    Codec, Config, DecodeError, Event, Lease, LeaseConfig, Lifecycle, Lww, LwwMap, Merge, Now,
    Replica, SourceId, Stamp, SyncMode,
};

use authority::{Flight, SimAuthority};
use serde::{Deserialize, Serialize};

pub use classes::{Classes, CLASS_SALT};
pub use extreme_fields::{extreme_lease, extreme_request};
pub use oracle::{stamps, Ledger, Reg};
pub use store_damage::Damage;

/// The bundle the simulated application shares: a session-timeout service's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
pub struct Session {
    /// When the session expires (wall ms); activity anywhere extends it.
    pub deadline: Lww<u64>,
    /// A configuration register (the idle timeout, say).
    pub config: Lww<u32>,
    /// Free-form notes by key (hundreds of keys in some seeds).
    pub notes: LwwMap<u16, u32>,
    /// Keyed by pairs: a map JSON cannot encode once it holds a key (JSON keys are
    /// strings), so a JSON store or wire meets an unencodable state.
    pub pairs: LwwMap<(u8, u8), u32>,
}

/// The application's requests, forwarded to the leader in leader mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Req {
    /// User activity at this wall time: extend the deadline.
    Activity(u64),
    /// Set the configuration.
    Config(u32),
    /// Set a note.
    Note(u16, u32),
    /// Remove a note.
    Forget(u16),
    /// Set `count` notes from key `first` on, in one write.
    Bulk(u16, u16, u32),
    /// Set a pair (unencodable in JSON).
    Pair(u8, u8, u32),
    /// A request numbered for tracking, with a payload sized around the message limit
    /// (the leader records its length).
    Blob(u64, String),
}

/// The simulator's draws: replisync's own seeded SplitMix64 ([`Rng`]), plus the few
/// shapes of draw the workload uses. Implemented only for [`Rng`].
pub trait Draw {
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64;
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64;
    /// One of `items`, uniformly.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T;
}

impl Draw for Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// What one run simulates.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub nodes: usize,
    pub mode: SyncMode,
    pub authority: bool,
    /// The codec of messages and the codec of stores, drawn apart.
    pub wire_codec: Codec,
    pub store_codec: Codec,
    /// How long writes coalesce before they are sent and persisted.
    pub flush_interval_ms: u64,
    pub max_message_bytes: usize,
    /// How many distinct note keys the workload writes (8, or hundreds).
    pub note_keys: u16,
    /// Share of writes that go to the pairs map (unencodable in JSON).
    pub pair_rate: f64,
    /// Stores (and the authority) start with terms near `MAX_TERM` and versions at the
    /// end of their range.
    pub high_start: bool,
    pub faults: Faults,
    /// Phase one: workload under faults, simulated ms.
    pub phase1_ms: u64,
    /// Phase two: the bound on convergence after healing, simulated ms.
    pub converge_within_ms: u64,
    /// Probability per workload step of each fault kind.
    pub crash_rate: f64,
    pub leave_rate: f64,
    pub sleep_rate: f64,
    pub partition_rate: f64,
    pub jump_rate: f64,
    pub garbage_rate: f64,
    pub corrupt_rate: f64,
    /// Share of crashes and leaves that never come back.
    pub permanent: f64,
    /// Probability that a replica dies for good right as it gains the lease, and that a
    /// leader dies or leaves for good right after a write.
    pub kill_on_claim: f64,
    pub kill_after_write: f64,
    /// Whether a leader failover is also measured under the network's faults.
    pub failover_under_faults: bool,
    /// The fault classes added for issue 15, drawn from their own stream.
    pub classes: Classes,
}

impl Options {
    /// Everything drawn from the seed: 2–9 replicas; leader mode in 60% (with an
    /// authority in half of all seeds); the wire codec binary in 70%, the store codec
    /// JSON or binary at even odds (so the library's default, binary wire and JSON
    /// store, runs in about a third); a flush interval of 0, 10, 50 or 200 ms; a
    /// message limit of 1 KiB, 4 KiB or 16 MiB; hundreds of note keys in 20%; writes to
    /// the pairs map (which JSON cannot encode) in 15%; terms near `MAX_TERM` in 15%; a
    /// corrupting peer in half; departures for good in 60%; failover under faults in
    /// 30% of leader seeds. Then loss 0–30%, duplication 0–50%, delay, reordering and
    /// the workload's fault rates.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x005e_ed0f_0b71_0ead);
        let max_delay = rng.range(0, 40);
        let faults = Faults {
            loss: rng.below(31) as f64 / 100.0,
            duplicate: rng.below(51) as f64 / 100.0,
            delay_ms: (rng.range(0, max_delay.min(5)), max_delay),
            reorder: rng.below(21) as f64 / 100.0,
        };
        let mode = if rng.chance(0.6) {
            SyncMode::Leader
        } else {
            SyncMode::Distributed
        };
        let permanent = rng.chance(0.6);
        Options {
            seed,
            nodes: rng.range(2, 9) as usize,
            mode,
            authority: rng.chance(0.5),
            wire_codec: if rng.chance(0.7) {
                Codec::Binary
            } else {
                Codec::Json
            },
            store_codec: if rng.chance(0.5) {
                Codec::Json
            } else {
                Codec::Binary
            },
            flush_interval_ms: rng.pick(&[0, 0, 10, 50, 200]),
            max_message_bytes: rng.pick(&[1_024, 4_096, 16 << 20, 16 << 20, 16 << 20]),
            note_keys: if rng.chance(0.2) {
                rng.range(100, 300) as u16
            } else {
                8
            },
            pair_rate: if rng.chance(0.15) { 0.05 } else { 0.0 },
            high_start: rng.chance(0.15),
            faults,
            phase1_ms: rng.range(2_000, 6_000),
            converge_within_ms: 15_000,
            crash_rate: rng.below(4) as f64 / 100.0,
            leave_rate: rng.below(3) as f64 / 100.0,
            sleep_rate: rng.below(4) as f64 / 100.0,
            partition_rate: rng.below(4) as f64 / 100.0,
            jump_rate: rng.below(3) as f64 / 100.0,
            garbage_rate: rng.below(3) as f64 / 100.0,
            corrupt_rate: if rng.chance(0.5) {
                rng.range(1, 3) as f64 / 100.0
            } else {
                0.0
            },
            permanent: if permanent { 0.3 } else { 0.0 },
            kill_on_claim: if permanent { 0.1 } else { 0.0 },
            kill_after_write: if permanent { 0.02 } else { 0.0 },
            failover_under_faults: mode == SyncMode::Leader && rng.chance(0.3),
            classes: Classes::from_seed(seed),
        }
    }

    /// The same run with every class added for issue 15 off: the world the simulator
    /// made for this seed before them.
    pub fn without_classes(mut self) -> Self {
        self.classes = Classes::NONE;
        self
    }

    /// No faults at all: for scripted scenarios.
    pub fn calm(seed: u64, nodes: usize, mode: SyncMode) -> Self {
        Options {
            seed,
            nodes,
            mode,
            authority: false,
            wire_codec: Codec::Binary,
            store_codec: Codec::Binary,
            flush_interval_ms: 0,
            max_message_bytes: 16 << 20,
            note_keys: 8,
            pair_rate: 0.0,
            high_start: false,
            faults: Faults::NONE,
            phase1_ms: 0,
            converge_within_ms: 15_000,
            crash_rate: 0.0,
            leave_rate: 0.0,
            sleep_rate: 0.0,
            partition_rate: 0.0,
            jump_rate: 0.0,
            garbage_rate: 0.0,
            corrupt_rate: 0.0,
            permanent: 0.0,
            kill_on_claim: 0.0,
            kill_after_write: 0.0,
            failover_under_faults: false,
            classes: Classes::NONE,
        }
    }
}

/// Lease timings of the simulation: short, so that many terms fit in a run.
pub fn sim_config(mode: SyncMode, codec: Codec) -> Config {
    let mut config = match mode {
        SyncMode::Leader => Config::leader(),
        _ => Config::distributed(),
    };
    config.lease = LeaseConfig {
        duration_ms: 300,
        renew_deadline_ms: 200,
        renew_interval_ms: 100,
        max_delay_ms: 50,
    }
    .validated()
    .expect("valid timings");
    config.heartbeat_interval_ms = 100;
    config.peer_timeout_ms = 350;
    config.sleep_tolerance_ms = 150;
    config.sync_answer_interval_ms = 20;
    config.sync_retry_ms = 100;
    config.wire_codec = codec;
    config.store_codec = codec;
    config
}

const EPOCH: u64 = 1_700_000_000_000;

/// How many inputs other than messages (ticks, authority answers, the workload) the
/// replicas may take at one world instant before the world counts as livelocked (a
/// replica that wants a tick at the very instant it was given one, or asks its
/// authority again at once after every answer, forever).
const MAX_INPUTS_AT_ONE_INSTANT: u64 = 5_000;

/// How many messages may be delivered at one world instant before the world counts as
/// livelocked (replicas answering each other at zero delay, forever). Far above
/// [`MAX_INPUTS_AT_ONE_INSTANT`]: a backlog of full-state parts sent at once to many
/// peers may fall due in one millisecond without anything looping.
const MAX_MESSAGES_AT_ONE_INSTANT: u64 = 500_000;

/// The note keys the write probe uses (above any the workload writes).
const PROBE_KEY: u16 = u16::MAX - 64;

/// The note key where the leader records the length of a sized request's payload.
const BLOB_KEY: u16 = u16::MAX - 128;

/// One simulated replica: its process (absent while crashed or gone), its store, and
/// its clocks.
pub struct Node {
    pub id: SourceId,
    pub net: NodeId,
    pub replica: Option<Replica<Session, Req>>,
    pub store: Option<Vec<u8>>,
    pub mono: u64,
    pub wall_offset: i64,
    pub drift_ppm: i64,
    drift_acc: i64,
    pub asleep_until: Option<u64>,
    pub down_until: Option<u64>,
    /// Departed for good: never restarted, its store gone.
    pub gone: bool,
    /// How many times its process started (its link to the authority is new each time).
    pub run: u64,
    /// The term this replica leads, as its events told.
    leading: Option<u64>,
    /// The stamp seen last of every register in this incarnation, in `Reg` order
    /// (monotonic reads).
    seen: Vec<(Reg, Stamp)>,
    seen_lease: Option<Lease>,
    /// The stamps of the state last persisted.
    disk: BTreeMap<Reg, Stamp>,
    /// Accepted writes no persisted state holds yet, with the monotonic time of each.
    unpersisted: Vec<(Reg, Stamp, u64)>,
    /// Own writes no message has carried yet.
    unsent: BTreeMap<Reg, Stamp>,
    /// Writes of a graceful leaver that reached this replica: they must survive if it
    /// does (kept in memory until it persists, then on disk).
    owed_mem: Vec<(Reg, Stamp)>,
    owed_disk: Vec<(Reg, Stamp)>,
    /// The bytes of its store, which its last restore reported unreadable: kept exactly
    /// until the simulator replaces the store at a later restart.
    unreadable: Option<Vec<u8>>,
    /// Its store ends in a record cut short, which the restore dropped.
    torn: bool,
    /// What its authority told this run of its process, and what it heard of.
    answers: answer_replays::AnswerMemory,
}

impl Node {
    pub fn live(&self) -> bool {
        self.replica.is_some()
    }
    pub fn awake(&self) -> bool {
        self.replica.is_some() && self.asleep_until.is_none()
    }
}

/// How a replica departs for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    Crash,
    Leave,
}

/// The final messages of a graceful leaver and the writes they must bring to the group.
struct LeaveBatch {
    /// The term the leaver led (leader mode).
    term: Option<u64>,
    /// Each message, the writes it carries, and whether it went out before the release.
    messages: Vec<LeaveMessage>,
    /// Writes no final message carries: any of them arriving should have brought them.
    uncarried: Vec<(Reg, Stamp)>,
}

struct LeaveMessage {
    bytes: Vec<u8>,
    carries: Vec<(Reg, Stamp)>,
    before_release: bool,
}

/// The simulated world.
pub struct World {
    pub opts: Options,
    pub rng: Rng,
    pub time: u64,
    pub nodes: Vec<Node>,
    pub net: SimNetwork,
    authority: Option<SimAuthority>,
    /// Every write and leadership.
    ledger: Ledger,
    leave_batches: Vec<LeaveBatch>,
    /// Departures for good, due at a world time.
    doomed: Vec<(u64, usize, Departure)>,
    /// The next replica to gain the lease dies before its claim leaves it.
    kill_next_claim: bool,
    /// A replica that could not start from its store when the world was made.
    startup_error: Option<String>,
    /// When the last replica killed that way died.
    killed_claimant_at: Option<u64>,
    /// The last messages sent, for the corrupting peer.
    recent: VecDeque<(usize, Vec<u8>)>,
    /// What the last drain sent.
    last_sent: Vec<Vec<u8>>,
    /// The last time each replica admitted a message from each other: (from, to).
    admitted: BTreeMap<(usize, usize), u64>,
    /// (from, to): a crafted sequence number or incarnation from `from` reached `to`,
    /// which may refuse `from`'s real messages as already seen until it starts its
    /// record of `from` afresh (after a few refusals in a row).
    poisoned: BTreeSet<(usize, usize)>,
    /// A running hash of everything that happened, for the determinism check.
    pub trace: u64,
    /// Where events go as well, while a scenario logs them.
    pub log: Option<Vec<Logged>>,
    pub deliveries: u64,
    pub leader_gains: u64,
    pub rejected: u64,
    /// What the corrupting peer delivered, and from whom to whom.
    pub corruptions: Vec<String>,
    pub departures: u64,
    /// Messages of the library that the simulator's mirror of the wire format could not
    /// read (0 unless the format moved on without the mirror).
    pub undecodable_own: u64,
    /// The added fault classes' own random stream.
    class_rng: Rng,
    /// The requests tracked until they surface.
    requests: request_sizes::Requests,
    /// Crafted copies racing real messages, to deliver first: (to, bytes).
    crafted: VecDeque<(usize, Vec<u8>)>,
    /// The failover check waits for this node's next lease message, to race it.
    lease_trap: Option<usize>,
    /// What the racing copy changed, once the trap was sprung.
    trap_sprung: Option<String>,
    /// How many restarts found a damaged store.
    pub damaged: u64,
    /// The world instant of the last drain, and how many drains it has seen: after
    /// other inputs, and after messages.
    instant: (u64, u64, u64),
    /// Whether the drain at hand follows a message delivery.
    delivering_message: bool,
}

pub type Check = Result<(), String>;

/// `SIM_VERBOSE=1` prints every event (with a replay).
fn verbose() -> bool {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("SIM_VERBOSE").is_some())
}

fn hash_in(trace: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *trace ^= u64::from(*b);
        *trace = trace.wrapping_mul(0x0100_0000_01b3);
    }
}

impl World {
    pub fn new(opts: Options) -> Self {
        let mut rng = Rng::new(opts.seed);
        let mut net = SimNetwork::new(rng.next_u64());
        net.set_faults(opts.faults).expect("valid faults");
        // The authority's link is as faulty as the network.
        let authority = opts
            .authority
            .then(|| SimAuthority::new(LeaseArbiter::default(), opts.faults));
        let mut world = World {
            rng,
            time: 0,
            nodes: Vec::new(),
            net,
            authority,
            ledger: Ledger::default(),
            leave_batches: Vec::new(),
            doomed: Vec::new(),
            kill_next_claim: false,
            startup_error: None,
            killed_claimant_at: None,
            recent: VecDeque::new(),
            last_sent: Vec::new(),
            admitted: BTreeMap::new(),
            poisoned: BTreeSet::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            log: None,
            deliveries: 0,
            leader_gains: 0,
            rejected: 0,
            corruptions: Vec::new(),
            departures: 0,
            undecodable_own: 0,
            class_rng: Rng::new((opts.seed ^ CLASS_SALT).rotate_left(17)),
            requests: Default::default(),
            crafted: VecDeque::new(),
            lease_trap: None,
            trap_sprung: None,
            damaged: 0,
            instant: (0, 0, 0),
            delivering_message: false,
            opts,
        };
        for i in 0..world.opts.nodes {
            let id = SourceId::from_u128(0x1000 + i as u128);
            let net = world.net.add_node();
            let offset = world.rng.range(0, 200) as i64 - 100;
            world.nodes.push(Node {
                id,
                net,
                replica: None,
                store: None,
                mono: world.rng.range(0, 1_000_000),
                wall_offset: offset,
                drift_ppm: world.rng.range(0, 2_000) as i64 - 1_000,
                drift_acc: 0,
                asleep_until: None,
                down_until: None,
                gone: false,
                run: 0,
                leading: None,
                seen: Vec::new(),
                seen_lease: None,
                disk: BTreeMap::new(),
                unpersisted: Vec::new(),
                unsent: BTreeMap::new(),
                owed_mem: Vec::new(),
                owed_disk: Vec::new(),
                unreadable: None,
                torn: false,
                answers: Default::default(),
            });
        }
        if world.opts.high_start {
            world.seed_high_stores();
        }
        for i in 0..world.nodes.len() {
            if let Err(e) = world.try_start(i) {
                let crafted = if world.opts.high_start {
                    " (a high-start store, crafted by the simulator's mirror of the store format)"
                } else {
                    ""
                };
                world.startup_error.get_or_insert(format!("{e}{crafted}"));
            }
        }
        world
    }

    pub fn now(&self, i: usize) -> Now {
        let n = &self.nodes[i];
        let wall = (EPOCH + self.time) as i64 + n.wall_offset + n.drift_acc;
        Now::new(wall.max(0) as u64, n.mono)
    }

    fn config(&self) -> Config {
        let mut config = sim_config(self.opts.mode, self.opts.wire_codec);
        config.store_codec = self.opts.store_codec;
        config.flush_interval_ms = self.opts.flush_interval_ms;
        config.max_message_bytes = self.message_limit();
        config
    }

    /// A replica as node `i` would start it, without its store.
    fn fresh_replica(&self, i: usize) -> Replica<Session, Req> {
        let replica = Replica::new(self.config(), self.nodes[i].id).expect("valid config");
        if self.authority.is_some() {
            return replica.with_authority();
        }
        replica
    }

    /// Starts (or restarts) node `i` from its store.
    ///
    /// # Panics
    ///
    /// When the store does not restore; [`World::try_start`] returns that as an error.
    pub fn start(&mut self, i: usize) {
        if let Err(e) = self.try_start(i) {
            panic!("{e}");
        }
    }

    /// Starts (or restarts) node `i` from its store: restarting never fails.
    pub fn try_start(&mut self, i: usize) -> Check {
        // A store reported unreadable is replaced at the next restart (an operator
        // moved it aside): the replica starts empty. What it held only in memory in its
        // last run (it never persists over an unreadable store), writes a graceful
        // leaver brought it included, is gone with that run.
        if self.nodes[i].unreadable.take().is_some() {
            self.nodes[i].store = None;
            self.nodes[i].disk.clear();
            self.nodes[i].owed_mem.clear();
        }
        self.nodes[i].torn = false;
        let damaged = if self.nodes[i].run > 0 {
            self.damage_store(i)
        } else {
            None
        };
        let now = self.now(i);
        let mut replica = self.fresh_replica(i);
        let mut damage_error = None;
        let node = &mut self.nodes[i];
        if let (Some(bytes), Some(_)) = (&node.store, &damaged) {
            damage_error = replica.restore(now, bytes).err().map(|e| e.to_string());
        } else if let Some(bytes) = &node.store {
            replica.restore(now, bytes).map_err(|e| {
                format!(
                    "{}: node{i} cannot restart from its own store ({} bytes): {e}",
                    if matches!(e, DecodeError::TooLarge { .. }) {
                        "sizes"
                    } else {
                        "restore"
                    },
                    bytes.len()
                )
            })?;
        }
        // Monotonic reads hold within one incarnation; a restart resumes from the store.
        node.seen = stamps(replica.state()).into_iter().collect();
        node.seen_lease = replica.lease().copied();
        node.replica = Some(replica);
        // A new process: answers meant for an earlier one never reach it.
        node.run += 1;
        node.down_until = None;
        node.gone = false;
        node.leading = None;
        node.unsent.clear();
        node.unpersisted.clear();
        hash_in(&mut self.trace, b"start");
        if let Some((damage, bytes, floor)) = damaged {
            self.check_damaged_restore(i, damage, bytes, floor, damage_error)?;
        }
        self.heard_term(i);
        Ok(())
    }

    /// Kills node `i`: no goodbye, no release; its store survives.
    pub fn crash(&mut self, i: usize, restart_after: Option<u64>) {
        if verbose() {
            println!("t={} node{i} CRASH", self.time);
        }
        let node = &mut self.nodes[i];
        node.replica = None;
        node.asleep_until = None;
        node.down_until = restart_after.map(|d| self.time + d);
        node.leading = None;
        node.owed_mem.clear();
        hash_in(&mut self.trace, b"crash");
        self.requests_holder_gone(i);
    }

    /// Node `i` leaves cleanly.
    pub fn leave(&mut self, i: usize, rejoin_after: Option<u64>) -> Check {
        let now = self.now(i);
        // What the leave must still bring to the group: own writes no message carried
        // yet, when this replica writes legitimately (in leader mode, as the one holder
        // of the newest term).
        let node = &self.nodes[i];
        let term = (self.opts.mode == SyncMode::Leader)
            .then_some(node.leading)
            .flatten();
        let claims: Vec<(Reg, Stamp)> = match (self.opts.mode, node.leading) {
            (SyncMode::Leader, Some(term)) if self.ledger.sole_newest_holder(term, node.id) => node
                .unsent
                .iter()
                .filter(|(_, s)| s.term() == term)
                .map(|(r, s)| (*r, *s))
                .collect(),
            (SyncMode::Leader, _) => Vec::new(),
            _ => node.unsent.iter().map(|(r, s)| (*r, *s)).collect(),
        };
        if let Some(r) = self.nodes[i].replica.as_mut() {
            r.handle_lifecycle(now, Lifecycle::Leave);
        }
        self.drain(i)?;
        if !claims.is_empty() {
            let sent = std::mem::take(&mut self.last_sent);
            if let Some(batch) = leave_batch(self.opts.wire_codec, sent, claims, term) {
                self.leave_batches.push(batch);
            }
        }
        let node = &mut self.nodes[i];
        node.replica = None;
        node.leading = None;
        node.down_until = rejoin_after.map(|d| self.time + d);
        self.requests_holder_gone(i);
        Ok(())
    }

    /// Whether one more replica may depart for good: at least two always stay.
    fn removable(&self) -> bool {
        self.nodes.iter().filter(|n| !n.gone).count() > 2
    }

    /// Node `i` departs for good: it never comes back and its store is gone.
    pub fn depart(&mut self, i: usize, how: Departure) -> Check {
        if verbose() {
            println!("t={} node{i} DEPARTS for good ({how:?})", self.time);
        }
        match how {
            Departure::Crash => self.crash(i, None),
            Departure::Leave => self.leave(i, None)?,
        }
        self.departures += 1;
        let node = &mut self.nodes[i];
        node.gone = true;
        node.store = None;
        node.unreadable = None;
        node.down_until = None;
        hash_in(&mut self.trace, b"depart");
        Ok(())
    }

    /// Node `i` sleeps: it does nothing, its monotonic clock stops, wall time passes.
    pub fn sleep(&mut self, i: usize, ms: u64) {
        if verbose() {
            println!("t={} node{i} SLEEP {ms}", self.time);
        }
        if self.nodes[i].awake() {
            self.nodes[i].asleep_until = Some(self.time + ms);
        }
    }

    /// The machine resumes and the replica's timer fires at once.
    fn wake(&mut self, i: usize) -> Check {
        if verbose() {
            println!("t={} node{i} WAKE now={:?}", self.time, self.now(i));
        }
        self.nodes[i].asleep_until = None;
        hash_in(&mut self.trace, b"wake");
        // What the authority's adapter holds for the replica comes first: a loss of
        // its grant reported while it slept.
        self.deliver_authority(Some(i), true)?;
        self.deliver_authority(Some(i), false)?;
        let now = self.now(i);
        if let Some(r) = self.nodes[i].replica.as_mut() {
            r.handle_timeout(now);
        }
        self.drain(i)
    }

    /// Moves time forward to `to`, every awake node's monotonic clock with it.
    fn advance(&mut self, to: u64) {
        let d = to.saturating_sub(self.time);
        if d == 0 {
            return;
        }
        self.time = to;
        for n in &mut self.nodes {
            if n.asleep_until.is_none() {
                n.mono += d;
            }
            n.drift_acc += d as i64 * n.drift_ppm / 1_000_000;
        }
    }

    /// The world time at which node `i` wants its next tick.
    fn timeout_of(&self, i: usize) -> Option<u64> {
        let n = &self.nodes[i];
        let r = n.replica.as_ref()?;
        if n.asleep_until.is_some() {
            return None;
        }
        let at = r.poll_timeout()?;
        Some(self.time + at.saturating_sub(n.mono))
    }

    /// Hands node `i`'s outputs to the network, the store and the application, and
    /// checks monotonic reads, leases, persistence and what the store restores to.
    pub fn drain(&mut self, i: usize) -> Check {
        let now_world = self.time;
        if self.instant.0 != now_world {
            self.instant = (now_world, 0, 0);
        }
        if self.delivering_message {
            self.instant.2 += 1;
        } else {
            self.instant.1 += 1;
        }
        if self.instant.1 > MAX_INPUTS_AT_ONE_INSTANT
            || self.instant.2 > MAX_MESSAGES_AT_ONE_INSTANT
        {
            return Err(self.livelock_report());
        }
        let (asked, sent, persisted, events) = {
            let Some(r) = self.nodes[i].replica.as_mut() else {
                return Ok(());
            };
            let asked: Vec<_> = std::iter::from_fn(|| r.poll_authority()).collect();
            let sent: Vec<Vec<u8>> = std::iter::from_fn(|| r.poll_transmit()).collect();
            let persisted: Vec<_> = std::iter::from_fn(|| r.poll_persist()).collect();
            let events: Vec<Event<Req>> = std::iter::from_fn(|| r.poll_event()).collect();
            (asked, sent, persisted, events)
        };
        let run = self.nodes[i].run;
        for request in &asked {
            self.authority_asked(i, request);
        }
        if let Some(auth) = self.authority.as_mut() {
            for request in asked {
                hash_in(&mut self.trace, format!("{i}{request:?}").as_bytes());
                if verbose() {
                    println!("t={now_world} node{i} ASKS {request:?}");
                }
                let flight = Flight::Request(request);
                auth.send(&mut self.rng, now_world, (i, run), flight);
            }
        }
        for bytes in &sent {
            hash_in(&mut self.trace, bytes);
        }
        let mut writes = Vec::new();
        let mut killed = false;
        for event in events {
            hash_in(&mut self.trace, format!("{i}{event:?}").as_bytes());
            self.request_event(i, &event);
            if verbose() && !matches!(event, Event::Changed { .. }) {
                println!(
                    "t={now_world} node{i} mono={} {event:?}",
                    self.nodes[i].mono
                );
            }
            if let Some(log) = self.log.as_mut() {
                log.push(Logged {
                    at: now_world,
                    node: i,
                    event: event.clone(),
                });
            }
            match event {
                Event::Request { request, .. } => writes.push(request),
                Event::LeadershipGained { term } => {
                    self.check_gained_term(i, term)?;
                    self.leader_gains += 1;
                    let id = self.nodes[i].id;
                    let holders = self.ledger.holders.entry(term).or_default();
                    if self.opts.authority && holders.iter().any(|h| *h != id) {
                        return Err(format!(
                            "lease: two holders of term {term} with an authority: {holders:?} and {id}"
                        ));
                    }
                    holders.insert(id);
                    self.ledger.max_term = self.ledger.max_term.max(term);
                    self.nodes[i].leading = Some(term);
                    // A holder dies for good right as it claims, before its claim
                    // message leaves it.
                    let kill = self.kill_next_claim
                        || (self.opts.kill_on_claim > 0.0
                            && self.time < self.opts.phase1_ms
                            && self.rng.chance(self.opts.kill_on_claim));
                    if kill && self.removable() {
                        killed = true;
                    }
                }
                Event::LeadershipLost { .. } => self.nodes[i].leading = None,
                Event::MessageRejected { .. } => self.rejected += 1,
                _ => {}
            }
        }
        if killed {
            self.kill_next_claim = false;
            self.killed_claimant_at = Some(now_world);
            return self.depart(i, Departure::Crash);
        }
        self.transmit(i, sent);
        for persist in persisted {
            self.persisted(i, persist)?;
        }
        for request in writes {
            self.apply(i, request)?;
        }
        self.request_counters(i);
        self.heard_term(i);
        self.check_monotonic(i)?;
        self.check_persisted_in_time(i)?;
        if self.opts.authority {
            self.check_single_holder()?;
        }
        Ok(())
    }

    /// Sends node `i`'s messages, noting which of its writes they carry.
    fn transmit(&mut self, i: usize, sent: Vec<Vec<u8>>) {
        let codec = self.opts.wire_codec;
        for bytes in &sent {
            let carried = self.carried_requests(bytes);
            let dropped = self.net.stats().dropped;
            self.net.send(self.nodes[i].net, bytes, self.time);
            if !carried.is_empty() {
                let lost = self.net.stats().dropped > dropped;
                self.requests_sent(&carried, lost);
            }
            if self.opts.classes.extreme_fields > 0.0 || self.lease_trap == Some(i) {
                self.race_with_extreme(i, bytes);
            }
            if !self.nodes[i].unsent.is_empty() {
                match wire::decode(codec, bytes) {
                    Some(env) => {
                        if let Some(state) = wire::state_of(&env.body) {
                            let carried = stamps(&state.app);
                            self.nodes[i]
                                .unsent
                                .retain(|reg, s| carried.get(reg).is_none_or(|c| *c < *s));
                        }
                    }
                    None => {
                        // The mirror of the wire format does not read the library's own
                        // message: claim nothing about what was sent.
                        self.undecodable_own += 1;
                        self.nodes[i].unsent.clear();
                    }
                }
            }
            if self.opts.corrupt_rate > 0.0 {
                if self.recent.len() >= 32 {
                    self.recent.pop_front();
                }
                self.recent.push_back((i, bytes.clone()));
            }
        }
        self.last_sent = sent;
    }

    /// Runs until world time `until`, with `workload` deciding what happens at each
    /// action point (every 5–50 ms).
    pub fn run_until(&mut self, until: u64, with_workload: bool) -> Check {
        let mut next_action = self.time + self.rng.range(5, 50);
        loop {
            let mut next = until;
            if let Some(t) = self.net.next_due() {
                next = next.min(t);
            }
            if let Some(t) = self.authority.as_ref().and_then(|auth| {
                auth.next_due(|n, flight| {
                    matches!(flight, Flight::Request(_)) || self.nodes[n].awake()
                })
            }) {
                next = next.min(t);
            }
            for i in 0..self.nodes.len() {
                if let Some(t) = self.timeout_of(i) {
                    next = next.min(t);
                }
                if let Some(t) = self.nodes[i].asleep_until {
                    next = next.min(t);
                }
                if let Some(t) = self.nodes[i].down_until {
                    next = next.min(t);
                }
            }
            for (t, _, _) in &self.doomed {
                next = next.min(*t);
            }
            if with_workload {
                next = next.min(next_action);
            }
            if !self.crafted.is_empty() {
                next = next.min(self.time);
            }
            if next > until {
                break;
            }
            self.advance(next);
            self.step(with_workload && self.time >= next_action)?;
            if with_workload && self.time >= next_action {
                next_action = self.time + self.rng.range(5, 50);
            }
            if self.time >= until && self.net.next_due().is_none_or(|t| t > until) {
                break;
            }
        }
        self.advance(until);
        Ok(())
    }

    /// Why the world stopped moving: the replicas that keep asking for a tick at the
    /// instant they were just given one, and every replica's lease record.
    fn livelock_report(&self) -> String {
        let stuck: Vec<String> = (0..self.nodes.len())
            .filter(|i| self.timeout_of(*i).is_some_and(|t| t <= self.time))
            .map(|i| format!("node{i}"))
            .collect();
        let leases: Vec<String> = (0..self.nodes.len())
            .filter_map(|i| {
                let r = self.nodes[i].replica.as_ref()?;
                Some(format!("node{i}: {:?}", r.lease()))
            })
            .collect();
        format!(
            "livelock: more than {MAX_INPUTS_AT_ONE_INSTANT} inputs or {MAX_MESSAGES_AT_ONE_INSTANT} messages at t={} without time moving; ticks due at once: {stuck:?}; leases: {leases:?}",
            self.time
        )
    }

    /// Everything due at the current time.
    fn step(&mut self, act: bool) -> Check {
        // Wake sleepers and restart the crashed whose time has come.
        for i in 0..self.nodes.len() {
            if self.nodes[i].asleep_until.is_some_and(|t| t <= self.time) {
                self.wake(i)?;
            }
            if self.nodes[i].down_until.is_some_and(|t| t <= self.time) {
                self.try_start(i)?;
            }
        }
        let due: Vec<(u64, usize, Departure)> = self
            .doomed
            .iter()
            .copied()
            .filter(|(t, _, _)| *t <= self.time)
            .collect();
        self.doomed.retain(|(t, _, _)| *t > self.time);
        for (_, i, how) in due {
            if self.nodes[i].awake() && self.removable() {
                self.depart(i, how)?;
            }
        }
        self.deliver_crafted()?;
        loop {
            let dropped = self.net.stats().dropped;
            let Some(d) = self.net.poll_deliver(self.time) else {
                if self.net.stats().dropped > dropped {
                    self.requests_dropped_in_flight();
                }
                break;
            };
            if self.net.stats().dropped > dropped {
                self.requests_dropped_in_flight();
            }
            let i = d.to.as_u64() as usize;
            let from = d.from.as_u64() as usize;
            self.deliveries += 1;
            let carried = self.carried_requests(&d.bytes);
            if !self.nodes[i].awake() {
                self.requests_missed(i, &carried);
                continue;
            }
            let me = self.nodes[i].id;
            self.requests.delivering = carried
                .iter()
                .filter(|(_, to)| to.is_none_or(|t| t == me))
                .map(|(id, _)| *id)
                .collect();
            let carried = self.receive_leave_claims(i, &d.bytes);
            let now = self.now(i);
            if let Some(r) = self.nodes[i].replica.as_mut() {
                let before = *r.stats();
                r.handle_message(now, &d.bytes);
                let after = r.stats();
                if after.ignored == before.ignored && after.rejected == before.rejected {
                    self.admitted.insert((from, i), self.time);
                    self.poisoned.remove(&(from, i));
                } else if self.poisoned.contains(&(from, i)) {
                    // Refused for a crafted number the simulator sent ahead of it.
                    self.requests_refused_after_crafted();
                }
            }
            self.delivering_message = true;
            let drained = self.drain(i);
            self.delivering_message = false;
            drained?;
            self.requests.delivering.clear();
            if !carried.is_empty() {
                self.check_leave_taken(i, &carried)?;
            }
        }
        self.deliver_authority(None, false)?;
        for i in 0..self.nodes.len() {
            if self.timeout_of(i).is_some_and(|t| t <= self.time) {
                let now = self.now(i);
                if let Some(r) = self.nodes[i].replica.as_mut() {
                    r.handle_timeout(now);
                }
                self.drain(i)?;
            }
        }
        if act {
            self.act()?;
        }
        Ok(())
    }

    /// Delivers what is due on the authority's links (only to and from node `only`, if
    /// given; only reports of lost grants, if `losses_only`, which a waking replica
    /// hears before anything else): requests reach the arbiter, answers reach awake replicas (a sleeping
    /// one's wait for it to wake; a crashed one's were dropped).
    fn deliver_authority(&mut self, only: Option<usize>, losses_only: bool) -> Check {
        loop {
            let time = self.time;
            let nodes = &self.nodes;
            let Some(auth) = self.authority.as_mut() else {
                return Ok(());
            };
            let next = auth.pop_due(time, |n, flight| {
                only.is_none_or(|o| o == n)
                    && (matches!(flight, Flight::Request(_)) || nodes[n].awake())
                    && (!losses_only
                        || matches!(flight, Flight::Answer(AuthorityAnswer::Lost { .. })))
            });
            let Some((i, run, flight)) = next else {
                return Ok(());
            };
            match flight {
                Flight::Request(request) => {
                    let decision = auth.arbiter.decide(time, self.nodes[i].id, &request);
                    // The adapter learns of the loss when the authority decides, so the
                    // holder it ended hears of it before the new holder can hear of its
                    // grant (which travels after the decision).
                    if let Some((holder, term)) = decision.ended {
                        if let Some(j) = self.nodes.iter().position(|n| n.id == holder) {
                            auth.report_lost(time, (j, self.nodes[j].run), term);
                        }
                    }
                    if let Some(answer) = decision.answer {
                        auth.send(&mut self.rng, time, (i, run), Flight::Answer(answer));
                    }
                }
                Flight::Answer(_) if run != self.nodes[i].run => {}
                Flight::Answer(answer) => {
                    hash_in(&mut self.trace, format!("{i}{answer:?}").as_bytes());
                    if verbose() {
                        println!("t={time} node{i} AUTHORITY {answer:?}");
                    }
                    self.answer_delivered(i, run, answer);
                    let now = self.now(i);
                    if let Some(r) = self.nodes[i].replica.as_mut() {
                        r.handle_authority(now, answer);
                    }
                    self.drain(i)?;
                }
            }
        }
    }

    /// The user does something at node `i`: the leader (or any replica in distributed
    /// mode) writes; a follower sends a request.
    pub fn user(&mut self, i: usize, request: Req) -> Check {
        let now = self.now(i);
        let Some(r) = self.nodes[i].replica.as_mut() else {
            return Ok(());
        };
        match r.request(now, request.clone()) {
            Ok(()) => self.request_accepted(i, &request),
            // Refusing a request too large to send is reporting it.
            Err(_) if matches!(request, Req::Blob(..)) => {}
            Err(e) => return Err(e.to_string()),
        }
        self.drain(i)
    }

    /// Phase two: heal the network and the clocks, wake everyone, bring back everyone
    /// who crashed or left and was to come back.
    pub fn heal(&mut self) -> Check {
        self.net.heal();
        if let Some(auth) = self.authority.as_mut() {
            auth.faults = Faults::NONE;
        }
        self.doomed.clear();
        for i in 0..self.nodes.len() {
            self.nodes[i].wall_offset = self.nodes[i].wall_offset.clamp(-100, 100);
            self.nodes[i].drift_ppm = 0;
            if self.nodes[i].asleep_until.is_some() {
                self.wake(i)?;
            }
            if !self.nodes[i].live() && !self.nodes[i].gone {
                self.try_start(i)?;
            }
        }
        hash_in(&mut self.trace, b"heal");
        Ok(())
    }

    /// Runs phase two until convergence, checked every 10 ms, within the bound.
    pub fn converge(&mut self) -> Result<u64, String> {
        let start = self.time;
        let deadline = start + self.opts.converge_within_ms;
        while self.time < deadline {
            if self.converged() {
                return Ok(self.time - start);
            }
            let t = self.time + 10;
            self.run_until(t, false)?;
        }
        Err(self.divergence_report())
    }

    pub fn current_leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.awake() && n.replica.as_ref().is_some_and(|r| r.is_leader()))
    }

    /// A summary for logs.
    pub fn summary(&self) -> String {
        let o = &self.opts;
        format!(
            "{} nodes, {:?}, authority={}, wire={}, store={}, flush={} ms, max message={} B, keys={}, pairs={}, high start={}, faults={:?}, t={} ms, deliveries={}, leader gains={}, rejected={}, corruptions={:?}, departures for good={}, own messages the mirror could not read={}, classes={:?}, damaged stores={}",
            o.nodes,
            o.mode,
            o.authority,
            o.wire_codec,
            o.store_codec,
            o.flush_interval_ms,
            o.max_message_bytes,
            o.note_keys,
            o.pair_rate > 0.0,
            o.high_start,
            o.faults,
            self.time,
            self.deliveries,
            self.leader_gains,
            self.rejected,
            self.corruptions,
            self.departures,
            self.undecodable_own,
            o.classes,
            self.damaged
        )
    }
}

/// What a graceful leaver's final messages must bring: which message carries which of
/// `claims`, and whether it went out before the lease's release. `None` when the
/// mirror of the wire format cannot read them.
fn leave_batch(
    codec: Codec,
    sent: Vec<Vec<u8>>,
    claims: Vec<(Reg, Stamp)>,
    term: Option<u64>,
) -> Option<LeaveBatch> {
    let mut messages = Vec::new();
    let mut released = false;
    let mut uncarried: BTreeMap<Reg, Stamp> = claims.into_iter().collect();
    for bytes in sent {
        let env = wire::decode(codec, &bytes)?;
        let mut carries = Vec::new();
        if let Some(state) = wire::state_of(&env.body) {
            let held = stamps(&state.app);
            uncarried.retain(|reg, s| {
                let carried = held.get(reg).is_some_and(|h| h >= s);
                if carried {
                    carries.push((*reg, *s));
                }
                !carried
            });
        }
        if let wire::Body::Lease { lease, .. } = &env.body {
            released |= lease.released;
        }
        messages.push(LeaveMessage {
            bytes,
            carries,
            before_release: !released,
        });
    }
    Some(LeaveBatch {
        term,
        messages,
        uncarried: uncarried.into_iter().collect(),
    })
}

/// One whole seed: phase one under faults, phase two healed; every invariant checked.
/// Returns the trace hash (for the determinism check).
pub fn run_seed(seed: u64) -> Result<u64, String> {
    run_options(Options::from_seed(seed))
}

/// One whole run of `opts` (a seed's options, perhaps with the added classes off), as
/// [`run_seed`] runs it.
pub fn run_options(opts: Options) -> Result<u64, String> {
    let mut world = World::new(opts);
    let outcome = run_world(&mut world);
    outcome
        .map(|()| world.trace)
        .map_err(|e| format!("{e}\n  [{}]", world.summary()))
}

fn run_world(world: &mut World) -> Check {
    if let Some(e) = world.startup_error.take() {
        return Err(e);
    }
    let phase1 = world.opts.phase1_ms;
    world.run_until(phase1, true)?;
    if world.opts.failover_under_faults {
        world.check_failover_under_faults()?;
    }
    world.heal()?;
    world.converge()?;
    world.check_final()?;
    // A replica whose wall clock stood ahead keeps its HLC ahead (it never goes back);
    // its messages are refused until real time catches up. Let that pass before peers
    // are probed and the failover timings are measured.
    let calm = world.time + 1_000;
    world.run_until(calm, false)?;
    world.check_no_silenced_peer()?;
    world.check_requests()?;
    world.check_failover()
}

/// An event a replica raised, with the world time and the node that raised it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub at: u64,
    pub node: usize,
    pub event: Event<Req>,
}

/// Helpers for scripted scenarios that assert on events (tests/scenarios.rs).
impl World {
    /// Runs `f` with every event a replica raises also appended to `log` (with its time
    /// and node), answering requests as usual.
    fn logging<T>(&mut self, log: &mut Vec<Logged>, f: impl FnOnce(&mut World) -> T) -> T {
        self.log = Some(std::mem::take(log));
        let out = f(self);
        *log = self.log.take().unwrap_or_default();
        out
    }

    /// Like `run_until(until, false)`, logging every event to `log`.
    pub fn run_logged(&mut self, until: u64, log: &mut Vec<Logged>) -> Check {
        self.logging(log, |w| w.run_until(until, false))
    }

    /// Node `i` gets a lifecycle signal; its events go to `log`.
    pub fn signal(&mut self, i: usize, signal: Lifecycle, log: &mut Vec<Logged>) -> Check {
        self.logging(log, |w| {
            let now = w.now(i);
            if let Some(r) = w.nodes[i].replica.as_mut() {
                r.handle_lifecycle(now, signal);
            }
            w.drain(i)
        })
    }

    /// Node `i`, frozen (put to `sleep`), is resumed by the page: `Lifecycle::Resume` is
    /// its first input, before any timer or message.
    pub fn resume(&mut self, i: usize, log: &mut Vec<Logged>) -> Check {
        self.nodes[i].asleep_until = None;
        self.signal(i, Lifecycle::Resume, log)
    }
}
