//! A deterministic, single-threaded world of replicas, in the style of TigerBeetle's
//! VOPR: one `u64` seed draws the fault rates, the workload and every random choice;
//! simulated clocks (each replica's wall clock with its own offset and drift, monotonic
//! clocks that stop while a replica sleeps); the network is replisync's `SimNetwork`.
//!
//! Phase one runs the workload under faults; phase two heals everything (network,
//! clocks, crashed and departed replicas rejoin) and requires convergence within a
//! bound. The invariants of DESIGN.md §7 are checked all along; a violation is an
//! `Err` naming the seed.

#![allow(dead_code)]

use std::collections::BTreeMap;

use replisync::{
    impl_merge, Codec, Config, Event, Faults, Lease, LeaseConfig, Lifecycle, Lww, LwwMap,
    ManualClock, MutexAuthority, NodeId, Now, Replica, SimNetwork, SourceId, Stamp, SyncMode,
};
use serde::{Deserialize, Serialize};

/// The bundle the simulated application shares: a session-timeout service's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// When the session expires (wall ms); activity anywhere extends it.
    pub deadline: Lww<u64>,
    /// A configuration register (the idle timeout, say).
    pub config: Lww<u32>,
    /// Free-form notes by key.
    pub notes: LwwMap<u8, u32>,
}
impl_merge!(Session {
    deadline,
    config,
    notes
});

/// The application's requests, forwarded to the leader in leader mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Req {
    /// User activity at this wall time: extend the deadline.
    Activity(u64),
    /// Set the configuration.
    Config(u32),
    /// Set a note.
    Note(u8, u32),
    /// Remove a note.
    Forget(u8),
}

/// SplitMix64: small, fast, and the same everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 1.0 < p
    }
}

/// What one run simulates.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub nodes: usize,
    pub mode: SyncMode,
    pub authority: bool,
    pub codec: Codec,
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
}

impl Options {
    /// Everything drawn from the seed: 2–9 replicas, the mode, an authority or not,
    /// loss 0–30%, duplication 0–50%, delay and reordering, and the workload's fault
    /// rates.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x005e_ed0f_0b71_0ead);
        let max_delay = rng.range(0, 40);
        let faults = Faults {
            loss: rng.below(31) as f64 / 100.0,
            duplicate: rng.below(51) as f64 / 100.0,
            delay_ms: (rng.range(0, max_delay.min(5)), max_delay),
            reorder: rng.below(21) as f64 / 100.0,
        };
        Options {
            seed,
            nodes: rng.range(2, 9) as usize,
            mode: if rng.chance(0.6) {
                SyncMode::Leader
            } else {
                SyncMode::Distributed
            },
            authority: rng.chance(0.5),
            codec: if rng.chance(0.7) {
                Codec::Binary
            } else {
                Codec::Json
            },
            faults,
            phase1_ms: rng.range(2_000, 6_000),
            converge_within_ms: 15_000,
            crash_rate: rng.below(4) as f64 / 100.0,
            leave_rate: rng.below(3) as f64 / 100.0,
            sleep_rate: rng.below(4) as f64 / 100.0,
            partition_rate: rng.below(4) as f64 / 100.0,
            jump_rate: rng.below(3) as f64 / 100.0,
            garbage_rate: rng.below(3) as f64 / 100.0,
        }
    }

    /// No faults at all: for scripted scenarios.
    pub fn calm(seed: u64, nodes: usize, mode: SyncMode) -> Self {
        Options {
            seed,
            nodes,
            mode,
            authority: false,
            codec: Codec::Binary,
            faults: Faults::NONE,
            phase1_ms: 0,
            converge_within_ms: 15_000,
            crash_rate: 0.0,
            leave_rate: 0.0,
            sleep_rate: 0.0,
            partition_rate: 0.0,
            jump_rate: 0.0,
            garbage_rate: 0.0,
        }
    }
}

/// Lease timings of the simulation: short, so that many terms fit in a run.
pub fn sim_config(mode: SyncMode, codec: Codec) -> Config {
    let mut config = match mode {
        SyncMode::Leader => Config::leader(),
        _ => Config::distributed(),
    };
    config.lease = LeaseConfig::new(300, 200, 100, 50).expect("valid timings");
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
    /// The highest stamp seen per register, for the monotonic-reads check.
    seen: BTreeMap<String, Stamp>,
    seen_lease: Option<Lease>,
}

impl Node {
    pub fn live(&self) -> bool {
        self.replica.is_some()
    }
    pub fn awake(&self) -> bool {
        self.replica.is_some() && self.asleep_until.is_none()
    }
}

/// The simulated world.
pub struct World {
    pub opts: Options,
    pub rng: Rng,
    pub time: u64,
    pub nodes: Vec<Node>,
    pub net: SimNetwork,
    authority_clock: ManualClock,
    authority: Option<MutexAuthority>,
    /// The highest stamp written per register by anyone, ever.
    written: BTreeMap<String, Stamp>,
    /// Who led each term.
    holders: BTreeMap<u64, SourceId>,
    /// A running hash of everything that happened, for the determinism check.
    pub trace: u64,
    /// Where events go as well, while a scenario logs them.
    pub log: Option<Vec<Logged>>,
    pub deliveries: u64,
    pub leader_gains: u64,
    pub rejected: u64,
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
        let mut net = SimNetwork::new(rng.next());
        net.set_faults(opts.faults).expect("valid faults");
        let authority_clock = ManualClock::new(EPOCH, 0);
        let authority = opts
            .authority
            .then(|| MutexAuthority::new(authority_clock.clone()));
        let mut world = World {
            rng,
            time: 0,
            nodes: Vec::new(),
            net,
            authority_clock,
            authority,
            written: BTreeMap::new(),
            holders: BTreeMap::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            log: None,
            deliveries: 0,
            leader_gains: 0,
            rejected: 0,
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
                seen: BTreeMap::new(),
                seen_lease: None,
            });
        }
        for i in 0..world.nodes.len() {
            world.start(i);
        }
        world
    }

    pub fn now(&self, i: usize) -> Now {
        let n = &self.nodes[i];
        let wall = (EPOCH + self.time) as i64 + n.wall_offset + n.drift_acc;
        Now::new(wall.max(0) as u64, n.mono)
    }

    fn config(&self) -> Config {
        sim_config(self.opts.mode, self.opts.codec)
    }

    /// Starts (or restarts) node `i` from its store.
    pub fn start(&mut self, i: usize) {
        let now = self.now(i);
        let mut replica = Replica::new(self.config(), self.nodes[i].id, now).expect("valid config");
        if let Some(auth) = &self.authority {
            replica = replica.with_authority(Box::new(auth.clone()));
        }
        if let Some(bytes) = self.nodes[i].store.clone() {
            replica
                .restore(&bytes, now)
                .expect("a replica's own store is readable");
        }
        self.nodes[i].replica = Some(replica);
        self.nodes[i].down_until = None;
        hash_in(&mut self.trace, b"start");
    }

    /// Kills node `i`: no goodbye, no release; its store survives.
    pub fn crash(&mut self, i: usize, restart_after: Option<u64>) {
        if verbose() {
            println!("t={} node{i} CRASH", self.time);
        }
        self.nodes[i].replica = None;
        self.nodes[i].asleep_until = None;
        self.nodes[i].down_until = restart_after.map(|d| self.time + d);
        hash_in(&mut self.trace, b"crash");
    }

    /// Node `i` leaves cleanly.
    pub fn leave(&mut self, i: usize, rejoin_after: Option<u64>) -> Check {
        let now = self.now(i);
        if let Some(r) = self.nodes[i].replica.as_mut() {
            r.handle_lifecycle(Lifecycle::Leave, now);
        }
        self.drain(i)?;
        self.nodes[i].replica = None;
        self.nodes[i].down_until = rejoin_after.map(|d| self.time + d);
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
        self.authority_clock.advance(d);
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
    /// checks monotonic reads and leases.
    pub fn drain(&mut self, i: usize) -> Check {
        let now_world = self.time;
        let mut writes = Vec::new();
        {
            let node = &mut self.nodes[i];
            let Some(r) = node.replica.as_mut() else {
                return Ok(());
            };
            while let Some(bytes) = r.poll_transmit() {
                hash_in(&mut self.trace, &bytes);
                self.net.send(node.net, &bytes, now_world);
            }
            if let Some(bytes) = r.poll_persist() {
                node.store = Some(bytes);
            }
            while let Some(event) = r.poll_event() {
                hash_in(&mut self.trace, format!("{i}{event:?}").as_bytes());
                if verbose() && !matches!(event, Event::Changed { .. }) {
                    println!("t={now_world} node{i} mono={} {event:?}", node.mono);
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
                        self.leader_gains += 1;
                        if let Some(prev) = self.holders.insert(term, node.id) {
                            if prev != node.id && self.opts.authority {
                                return Err(format!(
                                    "two holders of term {term} with an authority: {prev} and {}",
                                    node.id
                                ));
                            }
                        }
                    }
                    Event::MessageRejected { .. } => self.rejected += 1,
                    _ => {}
                }
            }
        }
        for request in writes {
            self.apply(i, request)?;
        }
        self.check_monotonic(i)?;
        if self.opts.authority {
            self.check_single_holder()?;
        }
        Ok(())
    }

    /// The application at node `i` acts on a request by writing.
    fn apply(&mut self, i: usize, request: Req) -> Check {
        let now = self.now(i);
        let Some(r) = self.nodes[i].replica.as_mut() else {
            return Ok(());
        };
        let result = r.write(now, |s, w| match request {
            Req::Activity(at) => Session {
                deadline: s
                    .deadline
                    .write(at.max(s.deadline.get().copied().unwrap_or(0)), w),
                ..Default::default()
            },
            Req::Config(v) => Session {
                config: s.config.write(v, w),
                ..Default::default()
            },
            Req::Note(k, v) => Session {
                notes: s.notes.write_insert(k, v, w),
                ..Default::default()
            },
            Req::Forget(k) => Session {
                notes: s.notes.write_remove(&k, w),
                ..Default::default()
            },
        });
        if result.is_ok() {
            let state = r.state();
            let mut record = |name: String, stamp: Stamp| {
                let e = self.written.entry(name).or_insert(Stamp::ZERO);
                *e = (*e).max(stamp);
            };
            record("deadline".into(), *state.deadline.stamp());
            record("config".into(), *state.config.stamp());
            for (k, reg) in state.notes.registers() {
                record(format!("note{k}"), *reg.stamp());
            }
        }
        // A write refused (leadership lost between request and answer) is the
        // application's to retry; the simulation drops it.
        self.drain(i)
    }

    fn check_monotonic(&mut self, i: usize) -> Check {
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_ref() else {
            return Ok(());
        };
        let s = r.state();
        let mut regs: Vec<(String, Stamp)> = vec![
            ("deadline".into(), *s.deadline.stamp()),
            ("config".into(), *s.config.stamp()),
        ];
        regs.extend(
            s.notes
                .registers()
                .map(|(k, r)| (format!("note{k}"), *r.stamp())),
        );
        for (name, stamp) in regs {
            let seen = node.seen.entry(name.clone()).or_insert(Stamp::ZERO);
            if stamp < *seen {
                return Err(format!(
                    "monotonic reads: {} saw {name} go back from {seen:?} to {stamp:?}",
                    node.id
                ));
            }
            *seen = stamp;
        }
        let lease = r.lease().copied();
        if lease < node.seen_lease {
            return Err(format!(
                "monotonic reads: {}'s lease went back from {:?} to {lease:?}",
                node.id, node.seen_lease
            ));
        }
        node.seen_lease = lease;
        Ok(())
    }

    /// With an authority, never two awake replicas acting as leader at once.
    fn check_single_holder(&self) -> Check {
        let leaders: Vec<SourceId> = self
            .nodes
            .iter()
            .filter(|n| n.awake() && n.replica.as_ref().is_some_and(|r| r.is_leader()))
            .map(|n| n.id)
            .collect();
        if leaders.len() > 1 {
            return Err(format!(
                "two leaders at once with an authority at t={}: {leaders:?}",
                self.time
            ));
        }
        Ok(())
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
            if with_workload {
                next = next.min(next_action);
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

    /// Everything due at the current time.
    fn step(&mut self, act: bool) -> Check {
        // Wake sleepers and restart the crashed whose time has come.
        for i in 0..self.nodes.len() {
            if self.nodes[i].asleep_until.is_some_and(|t| t <= self.time) {
                self.wake(i)?;
            }
            if self.nodes[i].down_until.is_some_and(|t| t <= self.time) {
                self.start(i);
            }
        }
        while let Some(d) = self.net.poll_deliver(self.time) {
            let i = d.to.as_u64() as usize;
            self.deliveries += 1;
            if !self.nodes[i].awake() {
                continue;
            }
            let now = self.now(i);
            if let Some(r) = self.nodes[i].replica.as_mut() {
                r.handle_message(&d.bytes, now);
            }
            self.drain(i)?;
        }
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

    fn random_node(&mut self, pred: impl Fn(&Node) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|i| pred(&self.nodes[*i]))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.rng.below(candidates.len() as u64) as usize])
    }

    /// One workload step: usually application traffic, sometimes a fault.
    fn act(&mut self) -> Check {
        let o = self.opts.clone();
        let roll = self.rng.below(1_000) as f64 / 1_000.0;
        let mut acc = 0.0;
        let mut pick = |p: f64| {
            acc += p;
            roll < acc
        };
        if pick(o.crash_rate) {
            if let Some(i) = self.random_node(Node::live) {
                let after = self.rng.range(50, 1_500);
                self.crash(i, Some(after));
            }
        } else if pick(o.leave_rate) {
            if let Some(i) = self.random_node(Node::awake) {
                let after = self.rng.range(100, 2_000);
                self.leave(i, Some(after))?;
            }
        } else if pick(o.sleep_rate) {
            if let Some(i) = self.random_node(Node::awake) {
                let ms = self.rng.range(160, 1_500);
                self.sleep(i, ms);
            }
        } else if pick(o.partition_rate) {
            let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.net).collect();
            let cut = self.rng.range(1, ids.len() as u64 - 1) as usize;
            let (a, b) = ids.split_at(cut);
            self.net.partition(&[a, b]);
            hash_in(&mut self.trace, b"partition");
        } else if pick(o.partition_rate) {
            self.net.heal();
            self.net.set_faults(o.faults).expect("valid faults");
        } else if pick(o.jump_rate) {
            if let Some(i) = self.random_node(Node::live) {
                // A step of the wall clock to anywhere within ±600 ms of true time.
                self.nodes[i].wall_offset = self.rng.range(0, 1_200) as i64 - 600;
            }
        } else if pick(o.garbage_rate) {
            if let Some(i) = self.random_node(Node::awake) {
                let len = self.rng.range(0, 64) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
                let now = self.now(i);
                if let Some(r) = self.nodes[i].replica.as_mut() {
                    r.handle_message(&bytes, now);
                }
                self.drain(i)?;
            }
        } else if pick(0.02) {
            if let Some(i) = self.random_node(Node::awake) {
                let signal = [
                    Lifecycle::Hidden,
                    Lifecycle::Visible,
                    Lifecycle::Freeze,
                    Lifecycle::Resume,
                ][self.rng.below(4) as usize];
                let now = self.now(i);
                if let Some(r) = self.nodes[i].replica.as_mut() {
                    r.handle_lifecycle(signal, now);
                }
                self.drain(i)?;
            }
        } else if let Some(i) = self.random_node(Node::awake) {
            let request = match self.rng.below(10) {
                0 => Req::Config(self.rng.range(1, 100) as u32),
                1..=3 => Req::Note(self.rng.below(8) as u8, self.rng.below(1_000) as u32),
                4 => Req::Forget(self.rng.below(8) as u8),
                _ => Req::Activity(self.now(i).wall_ms + 60_000),
            };
            self.user(i, request)?;
        }
        Ok(())
    }

    /// The user does something at node `i`: the leader (or any replica in distributed
    /// mode) writes; a follower sends a request.
    pub fn user(&mut self, i: usize, request: Req) -> Check {
        let now = self.now(i);
        let Some(r) = self.nodes[i].replica.as_mut() else {
            return Ok(());
        };
        r.request(now, request).map_err(|e| e.to_string())?;
        self.drain(i)
    }

    /// Phase two: heal the network and the clocks, wake everyone, bring back everyone
    /// who crashed or left.
    pub fn heal(&mut self) -> Check {
        self.net.heal();
        for i in 0..self.nodes.len() {
            self.nodes[i].wall_offset = self.nodes[i].wall_offset.clamp(-100, 100);
            self.nodes[i].drift_ppm = 0;
            if self.nodes[i].asleep_until.is_some() {
                self.wake(i)?;
            }
            if !self.nodes[i].live() {
                self.start(i);
            }
        }
        hash_in(&mut self.trace, b"heal");
        Ok(())
    }

    /// Whether every live replica holds byte-identical state, and in leader mode one
    /// of them leads and all agree on it.
    pub fn converged(&self) -> bool {
        let live: Vec<&Replica<Session, Req>> = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .collect();
        let Some(first) = live.first() else {
            return true;
        };
        let bytes = first.encode_state().ok();
        if !live.iter().all(|r| r.encode_state().ok() == bytes) {
            return false;
        }
        if self.opts.mode == SyncMode::Leader {
            let leaders = live.iter().filter(|r| r.is_leader()).count();
            return leaders == 1;
        }
        true
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

    fn divergence_report(&self) -> String {
        let mut out = format!("no convergence within {} ms:", self.opts.converge_within_ms);
        for n in &self.nodes {
            if let Some(r) = &n.replica {
                out.push_str(&format!(
                    "\n  {} leader={} lease={:?} deadline={:?} config={:?} notes={:?}",
                    n.id,
                    r.is_leader(),
                    r.lease(),
                    r.state().deadline,
                    r.state().config,
                    r.state().notes.registers().collect::<Vec<_>>()
                ));
            }
        }
        out
    }

    /// Durability and fencing in the converged state: every register holds the
    /// greatest write ever made to it, so no write of an older term outranks one of a
    /// newer term, and no persisted write was lost.
    pub fn check_final(&self) -> Check {
        let Some(r) = self.nodes.iter().find_map(|n| n.replica.as_ref()) else {
            return Ok(());
        };
        let s = r.state();
        let mut have: BTreeMap<String, Stamp> = BTreeMap::new();
        have.insert("deadline".into(), *s.deadline.stamp());
        have.insert("config".into(), *s.config.stamp());
        for (k, reg) in s.notes.registers() {
            have.insert(format!("note{k}"), *reg.stamp());
        }
        for (name, written) in &self.written {
            let held = have.get(name).copied().unwrap_or(Stamp::ZERO);
            if held != *written {
                return Err(format!(
                    "register {name}: converged on {held:?}, but the greatest write was {written:?}"
                ));
            }
        }
        Ok(())
    }

    /// In leader mode, after convergence: the leader crashes; a successor must lead
    /// within lease duration + one renew interval. Then that successor leaves; the
    /// next must lead within one message.
    pub fn check_failover(&mut self) -> Check {
        if self.opts.mode != SyncMode::Leader || self.nodes.len() < 3 {
            return Ok(());
        }
        let config = self.config();
        let Some(leader) = self.current_leader() else {
            return Err("no leader after convergence".into());
        };
        self.crash(leader, None);
        let crashed_at = self.time;
        let bound = config.lease.duration_ms() + config.lease.renew_interval_ms();
        let mut successor = None;
        while self.time <= crashed_at + bound {
            let t = self.time + 1;
            self.run_until(t, false)?;
            if let Some(s) = self.current_leader() {
                successor = Some(s);
                break;
            }
        }
        let Some(successor) = successor else {
            return Err(format!(
                "no successor within {bound} ms of the leader's crash"
            ));
        };
        self.leave(successor, None)?;
        let left_at = self.time;
        // One message: delivered at once on the healed network (plus the claim's own
        // hop to the authority, which is immediate).
        while self.time <= left_at + config.lease.max_delay_ms() {
            let t = self.time + 1;
            self.run_until(t, false)?;
            if self.current_leader().is_some() {
                return Ok(());
            }
        }
        Err(format!(
            "no successor within one message of the leader leaving (t={})",
            self.time
        ))
    }

    pub fn current_leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.awake() && n.replica.as_ref().is_some_and(|r| r.is_leader()))
    }

    /// A summary for logs.
    pub fn summary(&self) -> String {
        format!(
            "{} nodes, {:?}, authority={}, codec={}, faults={:?}, t={} ms, deliveries={}, leader gains={}, rejected={}",
            self.opts.nodes,
            self.opts.mode,
            self.opts.authority,
            self.opts.codec,
            self.opts.faults,
            self.time,
            self.deliveries,
            self.leader_gains,
            self.rejected
        )
    }
}

/// One whole seed: phase one under faults, phase two healed; every invariant checked.
/// Returns the trace hash (for the determinism check).
pub fn run_seed(seed: u64) -> Result<u64, String> {
    let opts = Options::from_seed(seed);
    let mut world = World::new(opts);
    let phase1 = world.opts.phase1_ms;
    world
        .run_until(phase1, true)
        .map_err(|e| format!("{e}\n  [{}]", world.summary()))?;
    world
        .heal()
        .map_err(|e| format!("{e}\n  [{}]", world.summary()))?;
    world
        .converge()
        .map_err(|e| format!("{e}\n  [{}]", world.summary()))?;
    world
        .check_final()
        .map_err(|e| format!("{e}\n  [{}]", world.summary()))?;
    // A replica whose wall clock stood ahead keeps its HLC ahead (it never goes back);
    // its messages are refused until real time catches up. Let that pass before the
    // failover timings are measured.
    let calm = world.time + 1_000;
    world
        .run_until(calm, false)
        .map_err(|e| format!("{e}\n  [{}]", world.summary()))?;
    world
        .check_failover()
        .map_err(|e| format!("{e}\n  [{}]", world.summary()))?;
    Ok(world.trace)
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
                r.handle_lifecycle(signal, now);
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
