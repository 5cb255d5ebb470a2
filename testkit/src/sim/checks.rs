//! The invariants of DESIGN.md §7 as the simulator checks them: each write against
//! its own delta, persistence against what the store restores, monotonic reads, single
//! holders, and, in the converged state, fencing, durability, convergence that encodes,
//! and peers that are still heard.

use super::Draw;
use replisync::{DecodeError, Persist, SourceId, Stamp, SyncMode, Writer};

use super::oracle::{self, registers, stamps, Reg};
use super::{wire, Check, Departure, Replica, Req, Session, World, BLOB_KEY, PROBE_KEY};

impl World {
    /// Node `i` asked its store for `persist`: the store's log, with it applied, must
    /// restore in a fresh replica to the state it was taken from. What it holds is now
    /// durable.
    pub(super) fn persisted(&mut self, i: usize, persist: Persist) -> Check {
        let mut bytes = self.nodes[i].store.clone().unwrap_or_default();
        persist.apply_to(&mut bytes);
        if self.nodes[i].unreadable.is_some() {
            return self.check_unreadable_kept(i, &bytes);
        }
        let now = self.now(i);
        let mut fresh = self.fresh_replica(i);
        let restored = fresh.restore(now, &bytes);
        let node = &mut self.nodes[i];
        let r = node.replica.as_ref().expect("drained a live replica");
        if let Err(e) = restored {
            return Err(format!(
                "{}: node{i}'s persisted state ({} bytes, {}) does not restore: {e}",
                if node.torn {
                    "store damage (a persist after a torn last record was dropped)"
                } else if matches!(e, DecodeError::TooLarge { .. }) {
                    "sizes"
                } else {
                    "encodability"
                },
                bytes.len(),
                self.opts.store_codec
            ));
        }
        // The state may have moved on since the bytes were taken (a claim later in the
        // same input): the store holds nothing the state does not.
        let current = registers(r.state());
        let restored = registers(fresh.state());
        for (reg, held) in &restored {
            match current.get(reg) {
                Some(now) if now.0 > held.0 || now == held => {}
                now => {
                    return Err(format!(
                        "encodability: node{i}'s persisted state restores {reg} as {held:?}, but the state holds {now:?}"
                    ))
                }
            }
        }
        if fresh.lease() > r.lease() {
            return Err(format!(
                "encodability: node{i}'s persisted state restores the lease as {:?}, but the state holds {:?}",
                fresh.lease(),
                r.lease()
            ));
        }
        node.unpersisted
            .retain(|(reg, s, _)| restored.get(reg).is_none_or(|held| held.0 < *s));
        node.disk = restored.into_iter().map(|(k, h)| (k, h.0)).collect();
        node.store = Some(bytes);
        node.torn = false;
        let owed = std::mem::take(&mut node.owed_mem);
        node.owed_disk.extend(owed);
        Ok(())
    }

    /// A write accepted is persisted within the flush interval.
    pub(super) fn check_persisted_in_time(&mut self, i: usize) -> Check {
        if self.nodes[i].unreadable.is_some() {
            // It must not persist over its unreadable store: what it holds is not
            // durable until the store is replaced.
            self.nodes[i].unpersisted.clear();
            return Ok(());
        }
        let node = &self.nodes[i];
        let Some(&(reg, stamp, at)) = node.unpersisted.first() else {
            return Ok(());
        };
        let Some(r) = node.replica.as_ref() else {
            return Ok(());
        };
        if node.mono <= at + self.opts.flush_interval_ms {
            return Ok(());
        }
        let (class, why) = match r.encode_state() {
            Ok(_) => ("durability", String::new()),
            Err(e) => ("encodability", format!("; its state does not encode: {e}")),
        };
        Err(format!(
            "{class}: node{i} accepted a write ({reg} at {stamp:?}) at mono {at} and has not persisted it {} ms later (flush interval {} ms, store codec {}){why}",
            node.mono - at,
            self.opts.flush_interval_ms,
            self.opts.store_codec
        ))
    }

    /// The application at node `i` acts on a request by writing; the write is checked
    /// against its delta: every stamp it creates is the writer's, greater than what the
    /// register held, carries the term the writer leads (leader mode), and is visible
    /// at the writer right after.
    pub(super) fn apply(&mut self, i: usize, request: Req) -> Check {
        let now = self.now(i);
        let leader_mode = self.opts.mode == SyncMode::Leader;
        let node = &mut self.nodes[i];
        let (me, leading, mono) = (node.id, node.leading, node.mono);
        let Some(r) = node.replica.as_mut() else {
            return Ok(());
        };
        let before = registers(r.state());
        let mut delta = None;
        let result = r.write(now, |s, d, w| {
            write_for(s, d, w, &request);
            delta = Some(d.clone());
        });
        // A write refused (leadership lost between request and answer, a delta that
        // cannot be encoded) is the application's to retry; the simulation drops it.
        if let (Ok(()), Some(delta)) = (result, delta) {
            let after = registers(r.state());
            for (reg, (stamp, value)) in registers(&delta) {
                if stamp.is_zero() {
                    continue;
                }
                let prev = before.get(&reg).map_or(Stamp::ZERO, |h| h.0);
                let fail = |what: String| {
                    Err(format!(
                        "{what}\n  node{i} wrote {reg} = {value:?} with {stamp:?} over {prev:?} ({request:?})"
                    ))
                };
                if stamp.source != me {
                    return fail(format!(
                        "term honesty: the stamp's source is not the writer {me}"
                    ));
                }
                if stamp <= prev {
                    return fail("lost write: the new stamp is not above the register's".into());
                }
                if leader_mode {
                    match leading {
                        None => {
                            return fail("term honesty: a write with no LeadershipGained".into())
                        }
                        Some(term) if stamp.term() != term => {
                            return fail(format!(
                                "term honesty: a write of term {} by the leader of term {term}",
                                stamp.term()
                            ))
                        }
                        _ => {}
                    }
                }
                if after.get(&reg) != Some(&(stamp, value)) {
                    return fail(format!(
                        "lost write: not visible at the writer right after; it holds {:?}",
                        after.get(&reg)
                    ));
                }
                self.ledger.record(reg, stamp);
                node.unsent.insert(reg, stamp);
                node.unpersisted.push((reg, stamp, mono));
            }
            if leader_mode
                && self.opts.kill_after_write > 0.0
                && self.time < self.opts.phase1_ms
                && self.rng.chance(self.opts.kill_after_write)
            {
                // The leader dies or leaves for good just after it wrote, before or
                // after its flush.
                let at = self.time + self.rng.below(self.opts.flush_interval_ms + 10);
                let how = if self.rng.chance(0.5) {
                    Departure::Leave
                } else {
                    Departure::Crash
                };
                self.doomed.push((at, i, how));
            }
        }
        self.drain(i)
    }

    pub(super) fn check_monotonic(&mut self, i: usize) -> Check {
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_ref() else {
            return Ok(());
        };
        // Registers are never dropped (removals are tombstones), so the registers seen
        // last are a subsequence of the ones held now: walk both in order.
        let mut now = Vec::with_capacity(node.seen.len() + 1);
        let mut old = node.seen.iter().peekable();
        let mut back = None;
        oracle::visit(r.state(), |reg, stamp, _| {
            while let Some((seen_reg, seen)) = old.peek() {
                if *seen_reg > reg {
                    break;
                }
                if *seen_reg < reg {
                    back.get_or_insert((*seen_reg, *seen, Stamp::ZERO));
                } else if stamp < *seen {
                    back.get_or_insert((reg, *seen, stamp));
                }
                old.next();
            }
            now.push((reg, stamp));
        });
        for (reg, seen) in old {
            back.get_or_insert((*reg, *seen, Stamp::ZERO));
        }
        if let Some((reg, seen, stamp)) = back {
            return Err(format!(
                "monotonic reads: {} saw {reg} go back from {seen:?} to {stamp:?}",
                node.id
            ));
        }
        node.seen = now;
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
    pub(super) fn check_single_holder(&self) -> Check {
        let leaders: Vec<SourceId> = self
            .nodes
            .iter()
            .filter(|n| n.awake() && n.replica.as_ref().is_some_and(|r| r.is_leader()))
            .map(|n| n.id)
            .collect();
        if leaders.len() > 1 {
            return Err(format!(
                "lease: two leaders at once with an authority at t={}: {leaders:?}",
                self.time
            ));
        }
        Ok(())
    }

    /// A graceful leaver's final message reaches node `i`: the writes it had to bring
    /// are now this replica's to keep (unless the message is one the receiver must
    /// refuse for a clock too far ahead). Returns the writes the message carries that the
    /// receiver must take at once.
    pub(super) fn receive_leave_claims(&mut self, i: usize, bytes: &[u8]) -> Vec<(Reg, Stamp)> {
        if self.leave_batches.is_empty() {
            return Vec::new();
        }
        let wall = self.now(i).wall_ms;
        let max_drift = self.config().max_drift_ms;
        let codec = self.opts.wire_codec;
        let known = self.nodes[i]
            .replica
            .as_ref()
            .and_then(|r| r.lease())
            .map_or(0, |l| l.term);
        let mut owed = Vec::new();
        let mut take = Vec::new();
        for batch in &self.leave_batches {
            let Some(m) = batch.messages.iter().find(|m| m.bytes.as_slice() == bytes) else {
                continue;
            };
            let in_drift =
                wire::decode(codec, bytes).is_some_and(|e| e.hlc <= wall.saturating_add(max_drift));
            if !in_drift {
                continue;
            }
            // A write sent before the release, overtaken by the release and a newer
            // term's claim on the way, meets a replica that keeps the highest term and
            // may drop the older one: the network's doing. Sent after the release, it is
            // the leaver's.
            let overtaken = m.before_release && batch.term.is_some_and(|t| known > t);
            if !overtaken {
                owed.extend(m.carries.iter().copied());
                take.extend(m.carries.iter().copied());
            }
            owed.extend(batch.uncarried.iter().copied());
        }
        self.nodes[i].owed_mem.extend(owed);
        take
    }

    /// Node `i` handled a graceful leaver's message carrying `carried`: it holds them
    /// (or newer writes) now.
    pub(super) fn check_leave_taken(&self, i: usize, carried: &[(Reg, Stamp)]) -> Check {
        let Some(r) = self.nodes[i].replica.as_ref() else {
            return Ok(());
        };
        let held = stamps(r.state());
        for (reg, s) in carried {
            let h = held.get(reg).copied().unwrap_or(Stamp::ZERO);
            if h < *s {
                return Err(format!(
                    "durability: node{i} dropped {reg} at {s:?} that a graceful leaver sent it (it holds {h:?}); a leave must bring its writes to the group"
                ));
            }
        }
        Ok(())
    }

    /// Why the live replicas have not converged: their states differ or do not encode,
    /// or (leader mode) not exactly one leads. `None` once converged.
    pub fn divergence(&self) -> Option<String> {
        let live: Vec<&Replica<Session, Req>> = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .collect();
        let first = live.first()?;
        let bytes = match first.encode_state() {
            Ok(b) => b,
            Err(e) => return Some(format!("encodability: a state does not encode: {e}")),
        };
        for r in &live {
            match r.encode_state() {
                Ok(b) if b == bytes => {}
                Ok(_) => return Some("states differ".into()),
                Err(e) => return Some(format!("encodability: a state does not encode: {e}")),
            }
        }
        if self.opts.mode == SyncMode::Leader {
            let leaders = live.iter().filter(|r| r.is_leader()).count();
            if leaders != 1 {
                return Some(format!("{leaders} leaders"));
            }
        }
        None
    }

    /// Whether every live replica holds byte-identical state (that encodes), and in
    /// leader mode exactly one of them leads.
    pub fn converged(&self) -> bool {
        self.divergence().is_none()
    }

    pub(super) fn divergence_report(&self) -> String {
        let mut out = format!(
            "no convergence within {} ms ({}):",
            self.opts.converge_within_ms,
            self.divergence().unwrap_or_default()
        );
        for n in &self.nodes {
            if let Some(r) = &n.replica {
                let s = r.state();
                out.push_str(&format!(
                    "\n  {} leader={} lease={:?} deadline={:?} config={:?} notes={} pairs={} stats={:?}",
                    n.id,
                    r.is_leader(),
                    r.lease(),
                    s.deadline,
                    s.config,
                    s.notes.register_count(),
                    s.pairs.register_count(),
                    r.stats()
                ));
            }
        }
        out
    }

    /// Fencing, durability and no poisoning, in the converged state. Each register
    /// holds a stamp some replica wrote (in leader mode, the holder of that stamp's
    /// term); and it is at least every write that had to survive: what each surviving
    /// replica persisted, and what graceful leavers brought to the group.
    pub fn check_final(&self) -> Check {
        let Some(r) = self.nodes.iter().find_map(|n| n.replica.as_ref()) else {
            return Ok(());
        };
        let have = stamps(r.state());
        let leader_mode = self.opts.mode == SyncMode::Leader;
        for (reg, held) in &have {
            if !self.ledger.is_written(*reg, *held) {
                return Err(format!(
                    "poisoned: register {reg} converged on {held:?}, which no replica wrote"
                ));
            }
            let initial = self.ledger.initial.get(reg) == Some(held);
            if leader_mode
                && !held.is_zero()
                && !initial
                && !self.ledger.held(held.term(), held.source)
            {
                return Err(format!(
                    "term honesty: register {reg} converged on {held:?}, of term {}, which {} never held (holders {:?})",
                    held.term(),
                    held.source,
                    self.ledger.holders.get(&held.term())
                ));
            }
        }
        let mut must: Vec<(Reg, Stamp, String)> = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.live() {
                continue;
            }
            for (reg, s) in &n.disk {
                must.push((*reg, *s, format!("persisted by node{i}")));
            }
            for (reg, s) in n.owed_mem.iter().chain(&n.owed_disk) {
                must.push((
                    *reg,
                    *s,
                    format!("written before a graceful leave, reached node{i}"),
                ));
            }
        }
        for (reg, s, why) in must {
            let held = have.get(&reg).copied().unwrap_or(Stamp::ZERO);
            if held < s {
                let greatest = self.ledger.writes.get(&reg).and_then(|w| w.last().copied());
                return Err(format!(
                    "durability: register {reg} converged on {held:?}, below {s:?} ({why}); the greatest write was {greatest:?}"
                ));
            }
        }
        Ok(())
    }

    /// After convergence: every replica admits fresh messages from every live peer,
    /// and a write at any replica (a request, in leader mode) reaches every other one
    /// by its delta, within the flush interval and no sync.
    pub fn check_no_silenced_peer(&mut self) -> Check {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].live())
            .collect();
        // A live peer is heard within the peer timeout, or it would be reported gone.
        let t0 = self.time;
        let window = self.config().peer_timeout_ms + 10;
        self.run_until(t0 + window, false)?;
        for &from in &live {
            for &to in &live {
                if from != to && self.admitted.get(&(from, to)).is_none_or(|t| *t < t0) {
                    return Err(format!(
                        "silenced peer: node{to} admitted no message from node{from} in {} ms after convergence",
                        self.time - t0
                    ));
                }
            }
        }
        let mut probes = Vec::new();
        for (n, &i) in live.iter().enumerate() {
            let key = PROBE_KEY + n as u16;
            let value = 1_000_000 + self.rng.below(1_000) as u32;
            self.user(i, Req::Note(key, value))?;
            probes.push((i, key, value));
        }
        let t1 = self.time;
        self.run_until(t1 + self.opts.flush_interval_ms + 20, false)?;
        for (from, key, value) in probes {
            for &to in &live {
                let Some(r) = self.nodes[to].replica.as_ref() else {
                    continue;
                };
                if r.state().notes.get(&key) != Some(&value) {
                    return Err(format!(
                        "silenced peer: node{to} did not take the write probe made at node{from} within {} ms (holds {:?})",
                        self.time - t1,
                        r.state().notes.get(&key)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The delta that `request` writes.
pub(super) fn write_for(s: &Session, d: &mut Session, w: &mut Writer<'_>, request: &Req) {
    match *request {
        Req::Activity(at) => {
            d.deadline = s
                .deadline
                .write(at.max(s.deadline.get().copied().unwrap_or(0)), w)
        }
        Req::Config(v) => d.config = s.config.write(v, w),
        Req::Note(k, v) => d.notes = s.notes.write_insert(k, v, w),
        Req::Forget(k) => d.notes = s.notes.write_remove(&k, w),
        Req::Bulk(first, count, v) => {
            for k in first..first.saturating_add(count) {
                s.notes.write_insert_into(&mut d.notes, k, v, w);
            }
        }
        Req::Pair(a, b, v) => d.pairs = s.pairs.write_insert((a, b), v, w),
        Req::Blob(_, ref payload) => {
            d.notes = s.notes.write_insert(BLOB_KEY, payload.len() as u32, w)
        }
    }
}
