//! What goes wrong in the simulated world beyond the network's own faults: the
//! workload's crashes, leaves (some for good), sleeps, partitions, clock steps, garbage
//! and a corrupting peer; stores from an earlier life with terms near 2^32; and leader
//! failover, measured on the healed network and under faults.

use super::Draw;
use replisync::format::SCHEMA_VERSION;
use replisync::sim::NodeId;
use replisync::{Lease, Lifecycle, Lww, Stamp, SyncMode};

use super::oracle::{registers, stamps};
use super::{hash_in, verbose, wire, Check, Departure, Node, Req, Rng, Session, World, EPOCH};

impl World {
    pub(super) fn random_node(&mut self, pred: impl Fn(&Node) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|i| pred(&self.nodes[*i]))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.rng.below(candidates.len() as u64) as usize])
    }

    /// One workload step: usually application traffic, sometimes a fault; then the
    /// added classes' own step.
    pub(super) fn act(&mut self) -> Check {
        self.act_usual()?;
        self.act_classes()
    }

    /// The added classes' step, on their own random stream (nothing, with them off):
    /// a request sized around the message limit, an unasked grant above `MAX_TERM`.
    fn act_classes(&mut self) -> Check {
        let c = self.opts.classes;
        if !c.any() {
            return Ok(());
        }
        self.foreign_grant();
        if c.sized_requests > 0.0 && self.class_rng.chance(c.sized_requests) {
            let awake: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].awake())
                .collect();
            if !awake.is_empty() {
                let i = awake[self.class_rng.below(awake.len() as u64) as usize];
                let request = self.sized_request();
                self.user(i, request)?;
            }
        }
        Ok(())
    }

    /// The workload step as drawn before the added classes.
    fn act_usual(&mut self) -> Check {
        let o = self.opts.clone();
        let roll = self.rng.below(1_000) as f64 / 1_000.0;
        let mut acc = 0.0;
        let mut pick = |p: f64| {
            acc += p;
            roll < acc
        };
        if pick(o.crash_rate) {
            if let Some(i) = self.random_node(Node::live) {
                if self.rng.chance(o.permanent) && self.removable() {
                    self.depart(i, Departure::Crash)?;
                } else {
                    let after = self.rng.range(50, 1_500);
                    self.crash(i, Some(after));
                }
            }
        } else if pick(o.leave_rate) {
            if let Some(i) = self.random_node(Node::awake) {
                if self.rng.chance(o.permanent) && self.removable() {
                    self.depart(i, Departure::Leave)?;
                } else {
                    let after = self.rng.range(100, 2_000);
                    self.leave(i, Some(after))?;
                }
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
                let bytes: Vec<u8> = (0..len).map(|_| self.rng.next_u64() as u8).collect();
                let now = self.now(i);
                if let Some(r) = self.nodes[i].replica.as_mut() {
                    r.handle_message(now, &bytes);
                }
                self.drain(i)?;
            }
        } else if pick(o.corrupt_rate) {
            self.corrupt()?;
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
                    r.handle_lifecycle(now, signal);
                }
                self.drain(i)?;
            }
        } else if let Some(i) = self.random_node(Node::awake) {
            let keys = u64::from(o.note_keys);
            let request = match self.rng.below(20) {
                _ if self.rng.chance(o.pair_rate) => Req::Pair(
                    self.rng.below(4) as u8,
                    self.rng.below(4) as u8,
                    self.rng.below(1_000) as u32,
                ),
                0 | 1 => Req::Config(self.rng.range(1, 100) as u32),
                2..=7 => Req::Note(self.rng.below(keys) as u16, self.rng.below(1_000) as u32),
                8 | 9 => Req::Forget(self.rng.below(keys) as u16),
                10 if keys > 8 => {
                    let first = self.rng.below(keys);
                    let count = self.rng.range(1, keys - first);
                    Req::Bulk(first as u16, count as u16, self.rng.below(1_000) as u32)
                }
                _ => Req::Activity(self.now(i).wall_ms + 60_000),
            };
            self.user(i, request)?;
        }
        Ok(())
    }

    /// Stores from an earlier life of the group, with the lease's term a few hundred
    /// below `MAX_TERM` (and the authority's term with it) and versions at the last of
    /// their term (leader mode) or near `MAX_VERSION` (distributed mode).
    pub(super) fn seed_high_stores(&mut self) {
        let leader = self.opts.mode == SyncMode::Leader;
        let term = replisync::stamp::MAX_TERM - self.rng.range(100, 1_000);
        let holder = self.nodes[self.rng.below(self.nodes.len() as u64) as usize].id;
        let version = |rng: &mut Rng| {
            let below = rng.below(4);
            if leader {
                (term << 32) | (u64::from(u32::MAX) - below)
            } else {
                replisync::stamp::MAX_VERSION - below
            }
        };
        let at = EPOCH - 5_000;
        let mut app = Session {
            deadline: Lww::from_parts(
                Stamp::new(version(&mut self.rng), at, holder),
                Some(at + 60_000),
            ),
            config: Lww::from_parts(Stamp::new(version(&mut self.rng), at, holder), Some(30)),
            ..Session::default()
        };
        let keys = self.rng.range(1, u64::from(self.opts.note_keys));
        app.notes = (0..keys as u16)
            .map(|k| {
                let stamp = Stamp::new(version(&mut self.rng), at + u64::from(k), holder);
                (k, Lww::from_parts(stamp, Some(u32::from(k))))
            })
            .collect();
        for (reg, (stamp, _)) in registers(&app) {
            self.ledger.initial.insert(reg, stamp);
        }
        let mut lease = None;
        if leader {
            let mut l = Lease::acquire(None, holder, 300);
            l.term = term;
            lease = Some(l.released());
            self.ledger.max_term = term;
            if let Some(auth) = self.authority.as_mut() {
                // The authority has granted this term before.
                auth.arbiter = replisync::authority::LeaseArbiter::spent(term);
            }
        }
        let state = wire::State { lease, app };
        for i in 0..self.nodes.len() {
            if i > 0 && self.rng.chance(0.25) {
                continue;
            }
            let stored = wire::Stored {
                schema: SCHEMA_VERSION,
                updated_at: at,
                source: self.nodes[i].id,
                state: state.clone(),
            };
            self.nodes[i].store = wire::encode_store(self.opts.store_codec, &stored);
            self.nodes[i].disk = stamps(&state.app);
        }
    }

    /// A corrupting peer: a real message just sent, with bits flipped, cut short, or
    /// re-encoded (with a valid integrity check) with one field at an extreme value,
    /// delivered to another replica.
    pub(super) fn corrupt(&mut self) -> Check {
        if self.recent.is_empty() {
            return Ok(());
        }
        let k = self.rng.below(self.recent.len() as u64) as usize;
        let (from, mut bytes) = self.recent[k].clone();
        if bytes.is_empty() {
            return Ok(());
        }
        let Some(to) = self.random_node(|n| n.awake() && n.net.as_u64() as usize != from) else {
            return Ok(());
        };
        let now = self.now(to);
        let what = match self.rng.below(3) {
            0 => {
                for _ in 0..self.rng.range(1, 8) {
                    let bit = self.rng.below(bytes.len() as u64 * 8) as usize;
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
                "bits flipped".to_string()
            }
            1 => {
                bytes.truncate(self.rng.below(bytes.len() as u64) as usize);
                "truncated".to_string()
            }
            _ => {
                let codec = self.opts.wire_codec;
                let Some(mut env) = wire::decode(codec, &bytes) else {
                    return Ok(());
                };
                let field = wire::mutate(&mut self.rng, &mut env, now.wall_ms);
                if matches!(field, "seq" | "incarnation") {
                    self.poisoned.insert((from, to));
                }
                let Some(crafted) = wire::encode(codec, &env) else {
                    return Ok(());
                };
                bytes = crafted;
                format!("crafted: {field}")
            }
        };
        if verbose() {
            println!("t={} node{from} -> node{to} CORRUPT {what}", self.time);
        }
        self.corruptions.push(format!("{what} ({from}->{to})"));
        hash_in(&mut self.trace, &bytes);
        if let Some(r) = self.nodes[to].replica.as_mut() {
            r.handle_message(now, &bytes);
        }
        self.drain(to)
    }

    /// Under faults, before the heal: partitions end, sleepers wake and the crashed come
    /// back, while loss, duplication, delay and reordering go on; once one leader is
    /// agreed on, failover is measured there. Skipped when no leader is agreed on.
    pub fn check_failover_under_faults(&mut self) -> Check {
        self.net.heal();
        self.net.set_faults(self.opts.faults).expect("valid faults");
        self.doomed.clear();
        for i in 0..self.nodes.len() {
            if self.nodes[i].asleep_until.is_some() {
                self.wake(i)?;
            }
            if !self.nodes[i].live() && !self.nodes[i].gone {
                self.try_start(i)?;
            }
        }
        let until = self.time + 3_000;
        loop {
            let leader = self.current_leader().map(|l| self.nodes[l].id);
            let agreed = leader.is_some()
                && self
                    .nodes
                    .iter()
                    .filter_map(|n| n.replica.as_ref())
                    .all(|r| r.leader() == leader);
            if agreed {
                break;
            }
            if self.time >= until {
                return Ok(());
            }
            let t = self.time + 10;
            self.run_until(t, false)?;
        }
        let t = self.time + 1_000;
        self.run_until(t, false)?;
        self.failover(true)
    }

    /// In leader mode, after convergence: the leader crashes for good; a successor must
    /// lead within lease duration + one renew interval. Then that successor leaves; the
    /// next must lead within one message.
    pub fn check_failover(&mut self) -> Check {
        self.failover(false)
    }

    /// The current leader; when there is none and `lapse_allowed` (an authority's grant
    /// may run out unrenewed under faults, and its holder then steps down by design),
    /// the first leader within `within_ms`.
    fn await_leader(
        &mut self,
        lapse_allowed: bool,
        within_ms: u64,
    ) -> Result<Option<usize>, String> {
        let until = self.time + within_ms;
        loop {
            if let Some(l) = self.current_leader() {
                return Ok(Some(l));
            }
            if !lapse_allowed || self.time > until {
                return Ok(None);
            }
            let t = self.time + 1;
            self.run_until(t, false)?;
        }
    }

    /// The failover measurements. Under faults the bounds add the allowed delay and the
    /// longest a message can take (reordering holds one back for up to 3 × the maximum
    /// delay), and a lost release makes the leave bound the crash bound. In some runs the
    /// successor dies for good as it claims, before anyone hears of it: then the next
    /// must lead within duration + renew interval + allowed delay of its death.
    pub(super) fn failover(&mut self, under_faults: bool) -> Check {
        if self.opts.mode != SyncMode::Leader {
            return Ok(());
        }
        let staying = self.nodes.iter().filter(|n| !n.gone).count();
        if staying < 3 {
            return Ok(());
        }
        let lease = self.config().lease;
        let delay_max = self.opts.faults.delay_ms.1;
        let one_way = if self.opts.faults.reorder > 0.0 {
            delay_max + 3 * delay_max.max(1)
        } else {
            delay_max
        };
        // With an authority its link is as faulty as the network: the last renewal may
        // reach it one way late (keeping the grant that much longer), a claim that
        // arrives before the grant ran out is refused and asked again a renew interval
        // later, and the grant may come back one way late.
        let authority_slack = if self.opts.authority {
            2 * one_way + lease.renew_interval_ms
        } else {
            0
        };
        let slack = if under_faults {
            lease.max_delay_ms + one_way + authority_slack
        } else {
            0
        };
        // With an authority whose link is slower than the lease's margins allow, a
        // grant can run out unrenewed (the holder then steps down, by design): a leader
        // must then be back within one failover bound.
        let lapse_allowed = under_faults && self.opts.authority;
        let back_by = lease.duration_ms + lease.renew_interval_ms + slack;
        let Some(leader) = self.await_leader(lapse_allowed, back_by)? else {
            return Err("failover: no leader after convergence".into());
        };
        let trap = self.spring_lease_trap(leader)?;
        let leader = match &trap {
            None => leader,
            // The crafted copy may have raced a step-down the faults caused (a grant run
            // out unrenewed): a leader must then be back within the same bound.
            Some(what) => match self.await_leader(lapse_allowed, back_by)? {
                Some(l) => l,
                None => {
                    return Err(format!(
                        "failover after a crafted lease record: no leader once the copy arrived (crafted: {what})"
                    ))
                }
            },
        };
        self.depart(leader, Departure::Crash)?;
        let crashed_at = self.time;
        let mut deadline = crashed_at + lease.duration_ms + lease.renew_interval_ms + slack;
        self.kill_next_claim = staying >= 4 && self.rng.chance(0.5);
        self.killed_claimant_at = None;
        let mut killed = false;
        // Followers time the lease from when they observe its last record, locally:
        // under faults that record may reach a follower late (through a sync), and a
        // corrupting peer may send the dead holder's record with a higher `renew_seq`
        // (a forged renewal, which no replica can tell from a real one relayed late);
        // the bound counts from then. `observed` keeps, per node, its record and when
        // it first held it.
        let mut observed: Vec<Option<(replisync::Lease, u64)>> = vec![None; self.nodes.len()];
        let successor = loop {
            if let Some(s) = self.current_leader() {
                break s;
            }
            if !killed {
                for (i, n) in self.nodes.iter().enumerate() {
                    let record = n.replica.as_ref().and_then(|r| r.lease().copied());
                    match (record, observed[i]) {
                        (Some(l), Some((seen, _))) if seen == l => {}
                        (Some(l), _) => observed[i] = Some((l, self.time)),
                        (None, _) => observed[i] = None,
                    }
                }
                let last_seen = observed.iter().flatten().map(|(_, at)| *at).max();
                if let Some(at) = last_seen.filter(|at| *at > crashed_at) {
                    deadline =
                        deadline.max(at + lease.duration_ms + lease.renew_interval_ms + slack);
                }
            }
            if let Some(at) = self.killed_claimant_at.take() {
                killed = true;
                deadline = at
                    + lease.duration_ms
                    + lease.renew_interval_ms
                    + lease.max_delay_ms
                    + if under_faults {
                        one_way + authority_slack
                    } else {
                        0
                    };
            }
            if self.time > deadline {
                self.kill_next_claim = false;
                return Err(format!(
                    "{}: no successor within {} ms of the leader's crash{}{}{}",
                    if trap.is_some() {
                        "failover after a crafted lease record"
                    } else {
                        "failover"
                    },
                    deadline - crashed_at,
                    if killed {
                        " (a claimant died for good as it claimed)"
                    } else {
                        ""
                    },
                    if under_faults { ", under faults" } else { "" },
                    trap.as_ref()
                        .map(|w| format!(" (crafted: {w})"))
                        .unwrap_or_default()
                ));
            }
            let t = self.time + 1;
            self.run_until(t, false)?;
        };
        self.kill_next_claim = false;
        if !self.removable() {
            return Ok(());
        }
        self.depart(successor, Departure::Leave)?;
        let left_at = self.time;
        // One message: delivered at once on the healed network (plus the claim's own
        // hop to the authority, which is immediate).
        let bound = if under_faults {
            lease.duration_ms + lease.renew_interval_ms + slack
        } else {
            lease.max_delay_ms
        };
        while self.time <= left_at + bound {
            let t = self.time + 1;
            self.run_until(t, false)?;
            if self.current_leader().is_some() {
                return Ok(());
            }
        }
        Err(format!(
            "failover: no successor within {bound} ms of the leader leaving{} (t={})",
            if under_faults { ", under faults" } else { "" },
            self.time
        ))
    }
}
