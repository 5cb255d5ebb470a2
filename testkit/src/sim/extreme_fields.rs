//! A corrupting peer that pushes every timing and size field of a lease record, and of
//! a forwarded request, to an extreme (`u64::MAX`, one year, 0, past 2^32), re-encodes
//! the message under a valid integrity check, and races the real one: the copy reaches
//! every other awake replica first, so the real message, with the same sequence number,
//! comes second.
//!
//! With the class on, the failover check also sets a trap: it waits for the leader's
//! next lease message, races it with such a copy, then crashes the leader; a successor
//! must still lead within the failover bound.

use super::Draw;
use replisync::stamp::MAX_TERM;

use super::{hash_in, verbose, wire, Check, Req, Rng, World};

const YEAR_MS: u64 = 365 * 24 * 3_600 * 1_000;
const TWO_32: u64 = 1 << 32;

/// Sets one timing or size field of the lease record `env` carries to an extreme;
/// returns what it set, or `None` when `env` carries no lease record.
pub fn extreme_lease(rng: &mut Rng, env: &mut wire::Envelope) -> Option<String> {
    let lease = match &mut env.body {
        wire::Body::Lease { lease, .. } => lease,
        wire::Body::Delta { state, .. } | wire::Body::FullSync { state, .. } => {
            state.lease.as_mut()?
        }
        _ => return None,
    };
    let field = rng.pick(&[
        "duration_ms",
        "duration_ms",
        "duration_ms",
        "renew_seq",
        "term",
    ]);
    let value = match field {
        "duration_ms" => {
            let v = rng.pick(&[u64::MAX, YEAR_MS, 0, TWO_32, 1]);
            lease.duration_ms = v;
            v
        }
        "renew_seq" => {
            let v = rng.pick(&[u64::MAX, 0, lease.renew_seq.wrapping_add(TWO_32)]);
            lease.renew_seq = v;
            v
        }
        _ => {
            let v = rng.pick(&[u64::MAX, MAX_TERM + 1, TWO_32]);
            lease.term = v;
            env.term = v;
            v
        }
    };
    Some(format!("a lease record's {field} = {value}"))
}

/// Sets one field of the forwarded request `env` carries to an extreme: its hop count,
/// or the time an activity request carries; `None` when `env` is no such request.
pub fn extreme_request(rng: &mut Rng, env: &mut wire::Envelope) -> Option<String> {
    let wire::Body::Request { hops, request, .. } = &mut env.body else {
        return None;
    };
    if let (Req::Activity(at), true) = (&mut *request, rng.chance(0.5)) {
        let v = rng.pick(&[u64::MAX, at.saturating_add(YEAR_MS), 0]);
        *at = v;
        return Some(format!("a request's activity time = {v}"));
    }
    let v = rng.pick(&[u8::MAX, 0, 3]);
    *hops = v;
    Some(format!("a request's hops = {v}"))
}

impl World {
    /// Node `from` sends `bytes`: with the class on (or the failover trap set for
    /// `from`), a crafted copy with an extreme field is queued for every other awake
    /// replica, ahead of the real message.
    pub(super) fn race_with_extreme(&mut self, from: usize, bytes: &[u8]) {
        let trapped = self.lease_trap == Some(from);
        let p = self.opts.classes.extreme_fields;
        if !trapped && (p <= 0.0 || !self.class_rng.chance(p)) {
            return;
        }
        let codec = self.opts.wire_codec;
        let Some(mut env) = wire::decode(codec, bytes) else {
            return;
        };
        let what = if trapped {
            extreme_lease(&mut self.class_rng, &mut env)
        } else if matches!(env.body, wire::Body::Request { .. }) {
            extreme_request(&mut self.class_rng, &mut env)
        } else {
            extreme_lease(&mut self.class_rng, &mut env)
        };
        let (Some(what), Some(crafted)) = (what, wire::encode(codec, &env)) else {
            return;
        };
        if trapped {
            self.lease_trap = None;
            self.trap_sprung = Some(what.clone());
        }
        if verbose() {
            println!("t={} node{from} RACED BY CRAFTED {what}", self.time);
        }
        hash_in(&mut self.trace, &crafted);
        self.corruptions
            .push(format!("{what} (from node{from}, to all)"));
        for to in 0..self.nodes.len() {
            if to != from && self.nodes[to].awake() {
                self.crafted.push_back((to, crafted.clone()));
            }
        }
    }

    /// Delivers the crafted copies queued by [`World::race_with_extreme`].
    pub(super) fn deliver_crafted(&mut self) -> Check {
        while let Some((to, bytes)) = self.crafted.pop_front() {
            let now = self.now(to);
            if !self.nodes[to].awake() {
                continue;
            }
            if let Some(r) = self.nodes[to].replica.as_mut() {
                r.handle_message(now, &bytes);
            }
            self.drain(to)?;
        }
        Ok(())
    }

    /// Before the failover check crashes `leader`: with the class on, waits (up to a
    /// lease duration) for its next lease message and races it with a crafted copy.
    /// Returns the field the copy changed.
    pub(super) fn spring_lease_trap(&mut self, leader: usize) -> Result<Option<String>, String> {
        if !self.opts.classes.lease_trap_at_failover {
            return Ok(None);
        }
        self.lease_trap = Some(leader);
        self.trap_sprung = None;
        let until = self.time + self.config().lease.duration_ms;
        while self.trap_sprung.is_none() && self.time < until && self.nodes[leader].awake() {
            let t = self.time + 1;
            self.run_until(t, false)?;
        }
        self.lease_trap = None;
        // Let the crafted copies reach the others before the leader dies.
        let t = self.time + 1;
        self.run_until(t, false)?;
        Ok(self.trap_sprung.take())
    }
}
