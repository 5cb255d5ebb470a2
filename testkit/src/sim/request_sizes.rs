//! Requests near and over the message limit, and the oracle that no request is lost
//! silently.
//!
//! With the class on, the message limit is small (1–4 KiB) and some requests carry a
//! payload sized around it ([`Req::Blob`]). Every such request that `request()`
//! accepted is tracked until it surfaces as [`Event::Request`](replisync::Event) at a
//! leader. It may also end, excused, when the library reported it (an error from
//! `request()`, a `Degraded` event at the requester, the counter of dropped queued
//! requests) or when a fault the simulator injected took it (the network dropped a
//! copy of a message carrying it, or partitioned it away in flight; a message carrying
//! it reached a replica that was asleep or down; a replica holding it crashed or left;
//! its target refused it for a clock the simulator stepped ahead, or as already seen
//! after a crafted sequence number or incarnation of its sender reached the target
//! first). Any other end is a
//! silent loss. After convergence a probe makes requests of every size around the limit
//! on the healed network, where nothing is excused but a report.

use super::Draw;
use std::collections::{BTreeMap, BTreeSet};

use replisync::{Degradation, Event, Rejection, SourceId, SyncMode};

use super::{wire, Check, Req, World};

/// A tracked request on its way.
#[derive(Clone, Debug)]
pub(super) struct Pending {
    /// The replica that asked.
    from: usize,
    /// Its payload's length.
    len: usize,
    /// World time of the ask.
    at: u64,
    /// The replicas that held it: the requester, and each target of a message carrying
    /// it.
    holders: BTreeSet<usize>,
    /// Whether a message has carried it.
    carried: bool,
}

/// The tracked requests, and what excused the ones that ended without surfacing.
#[derive(Debug, Default)]
pub(super) struct Requests {
    pending: BTreeMap<u64, Pending>,
    next_id: u64,
    /// The tracked requests a message now being handled carries.
    pub(super) delivering: Vec<u64>,
    /// How many surfaced, how many were excused.
    pub(super) surfaced: u64,
    pub(super) excused: u64,
    /// The last value of each replica's `requests_dropped` counter.
    dropped_counter: BTreeMap<usize, u64>,
}

impl Requests {
    fn excuse(&mut self, pred: impl Fn(u64, &Pending) -> bool) {
        let before = self.pending.len();
        self.pending.retain(|id, p| !pred(*id, p));
        self.excused += (before - self.pending.len()) as u64;
    }
}

impl World {
    /// The message limit this run uses.
    pub(super) fn message_limit(&self) -> usize {
        self.opts
            .classes
            .message_limit
            .unwrap_or(self.opts.max_message_bytes)
    }

    /// A request whose payload is sized around the message limit: from a quarter of it
    /// to three times it.
    pub(super) fn sized_request(&mut self) -> Req {
        let limit = self.message_limit();
        let pct = self
            .class_rng
            .pick(&[25, 50, 80, 90, 95, 98, 100, 102, 110, 150, 300]);
        let len = (limit * pct / 100).saturating_sub(self.class_rng.range(0, 120) as usize);
        let id = self.requests.next_id;
        self.requests.next_id += 1;
        Req::Blob(id, "x".repeat(len.max(1)))
    }

    /// Node `i`'s `request()` accepted `request` at world time `at`.
    pub(super) fn request_accepted(&mut self, i: usize, request: &Req) {
        if let Req::Blob(id, payload) = request {
            self.requests.pending.insert(
                *id,
                Pending {
                    from: i,
                    len: payload.len(),
                    at: self.time,
                    holders: BTreeSet::from([i]),
                    carried: false,
                },
            );
        }
    }

    /// An event at node `i`: a tracked request surfaced, or was reported.
    pub(super) fn request_event(&mut self, i: usize, event: &Event<Req>) {
        if self.requests.pending.is_empty() {
            return;
        }
        match event {
            Event::Request {
                request: Req::Blob(id, _),
                ..
            } if self.requests.pending.remove(id).is_some() => {
                self.requests.surfaced += 1;
            }
            Event::Degraded {
                reason: Degradation::Unsendable(_),
            } => self.requests.excuse(|_, p| p.from == i),
            Event::MessageRejected {
                reason: Rejection::ClockAhead { .. },
            } => {
                let carried = std::mem::take(&mut self.requests.delivering);
                self.requests.excuse(|id, _| carried.contains(&id));
            }
            _ => {}
        }
    }

    /// After node `i`'s drain: its counter of dropped queued requests moved (it cannot
    /// say which; every tracked request is excused).
    pub(super) fn request_counters(&mut self, i: usize) {
        let Some(r) = self.nodes[i].replica.as_ref() else {
            return;
        };
        let now = r.stats().requests_dropped;
        let before = self.requests.dropped_counter.insert(i, now).unwrap_or(0);
        if now > before {
            self.requests.excuse(|_, _| true);
        }
    }

    /// The tracked requests `bytes` carries, with the replica each is addressed to.
    pub(super) fn carried_requests(&self, bytes: &[u8]) -> Vec<(u64, Option<SourceId>)> {
        if self.requests.pending.is_empty() {
            return Vec::new();
        }
        match wire::decode(self.opts.wire_codec, bytes).map(|e| e.body) {
            Some(wire::Body::Request {
                to,
                request: Req::Blob(id, _),
                ..
            }) if self.requests.pending.contains_key(&id) => vec![(id, to)],
            _ => Vec::new(),
        }
    }

    /// A message carrying `carried` goes out; `lost` when the network dropped a copy of
    /// it at once (loss or partition).
    pub(super) fn requests_sent(&mut self, carried: &[(u64, Option<SourceId>)], lost: bool) {
        for (id, to) in carried {
            let target = to.and_then(|t| self.nodes.iter().position(|n| n.id == t));
            if let Some(p) = self.requests.pending.get_mut(id) {
                p.carried = true;
                p.holders.extend(target);
            }
        }
        if lost {
            self.requests
                .excuse(|id, _| carried.iter().any(|(c, _)| *c == id));
        }
    }

    /// The network dropped a delivery in flight (a partition): every tracked request a
    /// message has carried may have been in it.
    pub(super) fn requests_dropped_in_flight(&mut self) {
        self.requests.excuse(|_, p| p.carried);
    }

    /// A message carrying `carried` reached node `i`, which is asleep or down.
    pub(super) fn requests_missed(&mut self, i: usize, carried: &[(u64, Option<SourceId>)]) {
        let me = self.nodes[i].id;
        self.requests.excuse(|id, _| {
            carried
                .iter()
                .any(|(c, to)| *c == id && to.is_none_or(|t| t == me))
        });
    }

    /// The message being delivered was refused as already seen because a crafted
    /// sequence number or incarnation of its sender reached the receiver first: the
    /// requests it carries were taken by that fault.
    pub(super) fn requests_refused_after_crafted(&mut self) {
        let carried = std::mem::take(&mut self.requests.delivering);
        self.requests.excuse(|id, _| carried.contains(&id));
    }

    /// Node `i` crashed, left or departed: the requests it held go with it.
    pub(super) fn requests_holder_gone(&mut self, i: usize) {
        self.requests.excuse(|_, p| p.holders.contains(&i));
    }

    /// After convergence, on the healed network: every live replica asks with payloads
    /// of every size around the limit; then every tracked request must have surfaced or
    /// been excused.
    pub(super) fn check_requests(&mut self) -> Check {
        if self.opts.classes.sized_requests <= 0.0 {
            return Ok(());
        }
        if self.opts.mode == SyncMode::Leader {
            let live: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].live())
                .collect();
            let limit = self.message_limit();
            for &i in &live {
                for pct in [50, 90, 99, 101, 150] {
                    let len = limit * pct / 100;
                    let id = self.requests.next_id;
                    self.requests.next_id += 1;
                    self.user(i, Req::Blob(id, "x".repeat(len)))?;
                }
            }
        }
        let t = self.time + self.opts.flush_interval_ms + 200;
        self.run_until(t, false)?;
        if let Some((id, p)) = self.requests.pending.iter().next() {
            let leader = self.current_leader();
            return Err(format!(
                "lost request: node{}'s request #{id} ({} bytes of payload, message limit {} B, {} wire) was accepted at t={} {} and neither surfaced at a leader nor was reported (leader now: {leader:?}; {} surfaced, {} excused by faults or reports, {} lost)",
                p.from,
                p.len,
                self.message_limit(),
                self.opts.wire_codec,
                p.at,
                if p.carried {
                    "and sent"
                } else {
                    "and never sent"
                },
                self.requests.surfaced,
                self.requests.excused,
                self.requests.pending.len()
            ));
        }
        Ok(())
    }
}
