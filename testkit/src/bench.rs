//! Replicas driven by hand, outside the simulated world, so that single messages can
//! be held back, reordered, altered or delivered late. They share one monotonic time;
//! each wall clock has its own offset. A replica can be stopped (a crash: its last
//! persisted bytes stay) and started again from its store.

use replisync::authority::LeaseArbiter;
use replisync::{Codec, Config, Event, Lifecycle, Now, Replica, SourceId, SyncMode, WriteError};

use crate::sim::{sim_config, Req, Session};

pub const EPOCH: u64 = 1_700_000_000_000;

pub struct Bench {
    pub t: u64,
    pub offsets: Vec<u64>,
    pub config: Config,
    pub replicas: Vec<Replica<Session, Req>>,
    pub events: Vec<Vec<Event<Req>>>,
    /// Each replica's store: the log of what it persisted.
    pub stores: Vec<Option<Vec<u8>>>,
    /// Replicas that are down (crashed): no timers, no deliveries.
    pub down: Vec<bool>,
    /// The lease authority, if any: it answers at once, timed by the shared monotonic
    /// time.
    pub authority: Option<LeaseArbiter>,
}

impl Bench {
    /// Leader-mode replicas with the simulator's timings, one per wall-clock offset.
    pub fn new(offsets: &[u64]) -> Self {
        Bench::with(sim_config(SyncMode::Leader, Codec::Binary), offsets, false)
    }

    /// Replicas of `config`, one per offset, sharing a lease authority that answers at
    /// once if `authority`.
    pub fn with(config: Config, offsets: &[u64], authority: bool) -> Self {
        let authority = authority.then(LeaseArbiter::default);
        let mut bench = Bench {
            t: 0,
            offsets: offsets.to_vec(),
            config,
            replicas: Vec::new(),
            events: vec![Vec::new(); offsets.len()],
            stores: vec![None; offsets.len()],
            down: vec![false; offsets.len()],
            authority,
        };
        for i in 0..offsets.len() {
            let r = bench.fresh(i);
            bench.replicas.push(r);
        }
        bench
    }

    fn fresh(&self, i: usize) -> Replica<Session, Req> {
        let me = SourceId::from_u128(i as u128 + 1);
        let r = Replica::new(self.config.clone(), me).unwrap();
        match &self.authority {
            Some(_) => r.with_authority(),
            None => r,
        }
    }

    pub fn now(&self, i: usize) -> Now {
        Now::new(EPOCH + self.t + self.offsets[i], self.t)
    }

    pub fn id(&self, i: usize) -> SourceId {
        SourceId::from_u128(i as u128 + 1)
    }

    fn drain_events(&mut self, i: usize) {
        while let Some(request) = self.replicas[i].poll_authority() {
            let (t, me) = (self.t, self.id(i));
            let answer = self
                .authority
                .as_mut()
                .and_then(|arbiter| arbiter.answer(t, me, &request));
            if let Some(answer) = answer {
                let now = self.now(i);
                self.replicas[i].handle_authority(now, answer);
            }
        }
        while let Some(e) = self.replicas[i].poll_event() {
            self.events[i].push(e);
        }
        if let Some(persist) = self.replicas[i].poll_persist() {
            persist.apply_to(self.stores[i].get_or_insert_with(Vec::new));
        }
    }

    pub fn deliver(&mut self, to: usize, bytes: &[u8]) {
        if self.down[to] {
            return;
        }
        let now = self.now(to);
        self.replicas[to].handle_message(now, bytes);
        self.drain_events(to);
    }

    /// The messages node `i` has queued.
    pub fn outbox(&mut self, i: usize) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.replicas[i].poll_transmit()).collect()
    }

    /// Sends everything queued along the links `route` allows, until nothing is left.
    pub fn pump(&mut self, route: &dyn Fn(usize, usize) -> bool) {
        loop {
            let mut quiet = true;
            for i in 0..self.replicas.len() {
                for bytes in self.outbox(i) {
                    quiet = false;
                    for j in 0..self.replicas.len() {
                        if j != i && route(i, j) {
                            self.deliver(j, &bytes);
                        }
                    }
                }
            }
            if quiet {
                break;
            }
        }
    }

    /// Runs to `until`, a millisecond at a time, firing due timers and pumping.
    pub fn run(&mut self, until: u64, route: &dyn Fn(usize, usize) -> bool) {
        while self.t < until {
            self.tick();
            self.pump(route);
        }
    }

    /// One millisecond: due timers fire; what they send stays in the outboxes.
    pub fn tick(&mut self) {
        self.t += 1;
        for i in 0..self.replicas.len() {
            if self.down[i] {
                continue;
            }
            let now = self.now(i);
            if self.replicas[i]
                .poll_timeout()
                .is_some_and(|due| due <= now.mono_ms)
            {
                self.replicas[i].handle_timeout(now);
                self.drain_events(i);
            }
        }
    }

    /// Runs until `done` holds, at most to `limit`; whether it held.
    pub fn run_until(
        &mut self,
        limit: u64,
        route: &dyn Fn(usize, usize) -> bool,
        done: impl Fn(&Bench) -> bool,
    ) -> bool {
        while !done(self) {
            if self.t >= limit {
                return false;
            }
            let t = self.t + 1;
            self.run(t, route);
        }
        true
    }

    pub fn write_config(&mut self, i: usize, value: u32) {
        self.try_write_config(i, value).unwrap();
    }

    pub fn try_write_config(&mut self, i: usize, value: u32) -> Result<(), WriteError> {
        let now = self.now(i);
        let result = self.replicas[i].write(now, |s, d, w| d.config = s.config.write(value, w));
        self.drain_events(i);
        result
    }

    pub fn signal(&mut self, i: usize, signal: Lifecycle) {
        let now = self.now(i);
        self.replicas[i].handle_lifecycle(now, signal);
        self.drain_events(i);
    }

    /// Node `i` crashes: nothing more is sent or received; its store stays.
    pub fn crash(&mut self, i: usize) {
        self.down[i] = true;
        let _ = self.outbox(i);
    }

    /// Node `i` starts again from its store.
    pub fn restart(&mut self, i: usize) {
        let mut r = self.fresh(i);
        if let Some(bytes) = &self.stores[i] {
            r.restore(self.now(i), bytes).unwrap();
        }
        self.replicas[i] = r;
        self.down[i] = false;
        self.drain_events(i);
    }

    /// The indices of the live replicas acting as leader.
    pub fn leaders(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|i| !self.down[*i] && self.replicas[*i].is_leader())
            .collect()
    }
}
