//! The simulated lease authority: a [`LeaseArbiter`] timed by world time, reached over
//! a link with the network's faults (it delays, reorders, loses and duplicates requests
//! and answers at the network's rates) until the world heals, and delivers at once
//! after.
//!
//! Its adapter reports a loss as soon as the arbiter grants the lease to someone else
//! ([`AuthorityAnswer::Lost`] to the previous holder, at once, and before any other
//! input of a holder that was asleep): a holder whose sleep was hidden from it (its
//! monotonic clock stopped, its wall clock set back) relies on that report, as the
//! library documents.

use super::Draw;
use std::collections::BTreeMap;

use replisync::authority::{AuthorityAnswer, AuthorityRequest, LeaseArbiter};
use replisync::sim::Faults;

use super::Rng;

/// Something on its way to or from the authority.
#[derive(Clone, Copy, Debug)]
pub enum Flight {
    /// A replica's request, on its way to the arbiter.
    Request(AuthorityRequest),
    /// The arbiter's answer, on its way to a replica.
    Answer(AuthorityAnswer),
}

/// The highest rate at which the authority's link loses a request or an answer.
pub const MAX_LOSS: f64 = 0.03;

pub struct SimAuthority {
    pub arbiter: LeaseArbiter,
    /// In flight, by (due time, sequence): the node, the run of its process that sent
    /// the request or is to get the answer, and what travels.
    flights: BTreeMap<(u64, u64), (usize, u64, Flight)>,
    seq: u64,
    /// Delays, losses and duplicates, as the network's, until the world heals.
    pub faults: Faults,
}

impl SimAuthority {
    pub fn new(arbiter: LeaseArbiter, faults: Faults) -> Self {
        SimAuthority {
            arbiter,
            flights: BTreeMap::new(),
            seq: 0,
            faults,
        }
    }

    /// Sends `flight` to or from run `run` of node `node` at `now`, through the faults:
    /// duplicated at the network's rate, delayed as its messages are, held back up to
    /// three times the longest delay when it reorders, and lost at the network's rate
    /// up to [`MAX_LOSS`] (an authority is reached over a reliable link: a loss is a
    /// call that timed out).
    pub fn send(&mut self, rng: &mut Rng, now: u64, (node, run): (usize, u64), flight: Flight) {
        let f = self.faults;
        if f == Faults::NONE {
            self.queue(now, node, run, flight);
            return;
        }
        if rng.chance(f.loss.min(MAX_LOSS)) {
            return;
        }
        let copies = if rng.chance(f.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let mut delay = rng.range(f.delay_ms.0, f.delay_ms.1 + 1);
            if rng.chance(f.reorder) {
                delay += rng.range(0, 3 * f.delay_ms.1.max(1) + 1);
            }
            self.queue(now + delay, node, run, flight);
        }
    }

    /// Reports to run `run` of node `node` at once that its grant is gone (never lost
    /// or delayed).
    pub fn report_lost(&mut self, now: u64, (node, run): (usize, u64), term: u64) {
        self.queue(
            now,
            node,
            run,
            Flight::Answer(AuthorityAnswer::Lost { term }),
        );
    }

    /// Queues `flight` for run `run` of node `node`, due at `at`, past the link's
    /// faults: a replay the simulator chose.
    pub fn inject(&mut self, at: u64, (node, run): (usize, u64), flight: Flight) {
        self.queue(at, node, run, flight);
    }

    fn queue(&mut self, at: u64, node: usize, run: u64, flight: Flight) {
        self.seq += 1;
        self.flights.insert((at, self.seq), (node, run, flight));
    }

    /// The earliest due time of anything in flight that `deliverable` accepts.
    pub fn next_due(&self, deliverable: impl Fn(usize, &Flight) -> bool) -> Option<u64> {
        self.flights
            .iter()
            .find(|(_, (node, _, flight))| deliverable(*node, flight))
            .map(|((at, _), _)| *at)
    }

    /// The first flight due by `now` that `deliverable` accepts (held answers to a
    /// sleeping node wait for it).
    pub fn pop_due(
        &mut self,
        now: u64,
        deliverable: impl Fn(usize, &Flight) -> bool,
    ) -> Option<(usize, u64, Flight)> {
        let key = self
            .flights
            .iter()
            .take_while(|((at, _), _)| *at <= now)
            .find(|(_, (node, _, flight))| deliverable(*node, flight))
            .map(|(k, _)| *k)?;
        self.flights.remove(&key)
    }
}
