//! The in-process transport: a hub on `crossbeam-channel`, with optional fault
//! injection, for tests, benchmarks, and replicas on threads of one process.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use crossbeam_channel::{Receiver, Sender};

use crate::sim::network::group_of;
use crate::sim::{Faults, FaultsError, NetworkStats, NodeId, SimNetwork};
use crate::Transport;

/// An in-process broadcast group: every [`HubLink`] it hands out reaches every other.
///
/// [`Hub::new`] is a perfect network: a broadcast pushes a copy straight into each other
/// link's channel, under a shared read lock, and nothing else. [`Hub::with_faults`] runs
/// a [`SimNetwork`] inside instead, on the hub's own clock (milliseconds since the hub
/// was made), so messages are dropped, duplicated, delayed and reordered as the
/// [`Faults`] say, from a seed. Both kinds can be partitioned and healed while running.
///
/// Delayed messages need something to release them when they come due: a hub whose
/// faults delay or reorder runs one timer thread, which stops once the hub and all its
/// links are dropped. (If the thread cannot be spawned, due messages go out at the next
/// broadcast or [`flush`](Hub::flush).) The hub is native only: in a browser, tabs
/// reach each other through a BroadcastChannel.
///
/// Clones of a `Hub` are handles to the same group.
///
/// ```
/// use replisync::{Hub, Transport};
///
/// let hub = Hub::new();
/// let (mut a, b, c) = (hub.connect(), hub.connect(), hub.connect());
///
/// a.broadcast(b"hello").unwrap();
/// assert_eq!(b.incoming().try_recv().unwrap(), b"hello");
/// assert_eq!(c.incoming().try_recv().unwrap(), b"hello");
/// assert!(a.incoming().try_recv().is_err()); // not back to the sender
///
/// hub.partition(&[&[a.id()]]); // a alone; b and c together
/// a.broadcast(b"anyone?").unwrap();
/// assert!(b.incoming().try_recv().is_err());
/// hub.heal();
/// a.broadcast(b"back").unwrap();
/// assert_eq!(b.incoming().try_recv().unwrap(), b"back");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Hub {
    shared: Arc<Shared>,
}

/// One member of a [`Hub`]: a [`Transport`] whose broadcasts reach every other link of
/// the hub. Dropping it disconnects it: it leaves the group, and its
/// [`incoming`](Transport::incoming) channel disconnects once drained.
///
/// ```
/// use crossbeam_channel::RecvTimeoutError;
/// use replisync::{Hub, Transport};
/// use std::time::Duration;
///
/// let hub = Hub::new();
/// let (mut a, b) = (hub.connect(), hub.connect());
/// let inbox = b.incoming();
///
/// // Links are Send: run one on another thread, as the native driver does.
/// let echo = std::thread::spawn(move || {
///     let mut b = b;
///     let message = b.incoming().recv_timeout(Duration::from_secs(10)).unwrap();
///     b.broadcast(&[message, b" back".to_vec()].concat()).unwrap();
/// }); // b is dropped when the thread ends
///
/// a.broadcast(b"ping").unwrap();
/// let reply = a.incoming().recv_timeout(Duration::from_secs(10)).unwrap();
/// assert_eq!(reply, b"ping back");
/// echo.join().unwrap();
/// assert_eq!(inbox.recv_timeout(Duration::from_secs(10)), Err(RecvTimeoutError::Disconnected));
/// ```
#[derive(Debug)]
pub struct HubLink {
    id: NodeId,
    incoming: Receiver<Vec<u8>>,
    shared: Arc<Shared>,
}

// One per hub, behind an `Arc`: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Shared {
    Direct(RwLock<Direct>),
    Simulated(Mutex<Simulated>),
}

impl Default for Shared {
    fn default() -> Self {
        Shared::Direct(RwLock::default())
    }
}

#[derive(Debug, Default)]
struct Direct {
    next_id: u64,
    members: Vec<Member>,
}

#[derive(Debug)]
struct Member {
    id: NodeId,
    tx: Sender<Vec<u8>>,
    group: u32,
}

#[derive(Debug)]
struct Simulated {
    net: SimNetwork,
    links: BTreeMap<NodeId, Sender<Vec<u8>>>,
    clock: HubClock,
    timer: Option<timer::Timer>,
}

impl Simulated {
    /// Hands every delivery due by `now_ms` to its link's channel.
    fn release_due(&mut self, now_ms: u64) {
        while let Some(delivery) = self.net.poll_deliver(now_ms) {
            if let Some(tx) = self.links.get(&delivery.to) {
                // A link's receiver lives as long as the link, which removes its sender
                // first; a send error can only mean the message is moot.
                let _ = tx.send(delivery.bytes.to_vec());
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the hub was made: the `now_ms` its [`SimNetwork`] runs on.
#[derive(Debug)]
struct HubClock {
    start: std::time::Instant,
}

impl HubClock {
    fn start() -> Self {
        HubClock {
            start: std::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Hub {
    /// A hub without faults: every broadcast reaches every other link at once.
    pub fn new() -> Self {
        Hub::default()
    }

    /// A hub that injects `faults` on every link, drawing from `seed`. Without delays
    /// the same seed and the same broadcasts from one thread give the same deliveries;
    /// with delays, timing decides what is due when.
    ///
    /// ```
    /// use replisync::sim::Faults;
    /// use replisync::{Hub, Transport};
    ///
    /// let hub = Hub::with_faults(7, Faults { loss: 1.0, ..Faults::NONE })?;
    /// let (mut a, b) = (hub.connect(), hub.connect());
    /// a.broadcast(b"lost").unwrap();
    /// assert!(b.incoming().try_recv().is_err());
    /// assert_eq!(hub.stats().map(|s| s.dropped), Some(1));
    /// # Ok::<(), replisync::sim::FaultsError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`FaultsError`] when `faults` is invalid.
    pub fn with_faults(seed: u64, faults: Faults) -> Result<Self, FaultsError> {
        let mut net = SimNetwork::new(seed);
        net.set_faults(faults)?;
        let hub = Hub {
            shared: Arc::new(Shared::Simulated(Mutex::new(Simulated {
                net,
                links: BTreeMap::new(),
                clock: HubClock::start(),
                timer: None,
            }))),
        };
        if faults.delay_ms.1 > 0 || faults.reorder > 0.0 {
            timer::start(&hub.shared);
        }
        Ok(hub)
    }

    /// Adds a member to the group and returns its link.
    pub fn connect(&self) -> HubLink {
        let (tx, incoming) = crossbeam_channel::unbounded();
        let id = match &*self.shared {
            Shared::Direct(direct) => {
                let mut direct = direct.write().unwrap_or_else(PoisonError::into_inner);
                let id = NodeId::new(direct.next_id);
                direct.next_id += 1;
                direct.members.push(Member { id, tx, group: 0 });
                id
            }
            Shared::Simulated(sim) => {
                let mut sim = lock(sim);
                let id = sim.net.add_node();
                sim.links.insert(id, tx);
                id
            }
        };
        HubLink {
            id,
            incoming,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Splits the group, as [`SimNetwork::partition`] does: links reach each other only
    /// within one group, links no group lists (and links connected later) form one more
    /// group together, and a later call replaces an earlier one.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        match &*self.shared {
            Shared::Direct(direct) => {
                let mut direct = direct.write().unwrap_or_else(PoisonError::into_inner);
                for member in &mut direct.members {
                    member.group = group_of(groups, member.id);
                }
            }
            Shared::Simulated(sim) => lock(sim).net.partition(groups),
        }
    }

    /// Removes every partition and every fault. Messages already held back still
    /// arrive when due.
    pub fn heal(&self) {
        match &*self.shared {
            Shared::Direct(direct) => {
                let mut direct = direct.write().unwrap_or_else(PoisonError::into_inner);
                for member in &mut direct.members {
                    member.group = 0;
                }
            }
            Shared::Simulated(sim) => lock(sim).net.heal(),
        }
    }

    /// Delivers at once every message still held back by a delay, in due order. (A
    /// hub without faults holds nothing back.)
    pub fn flush(&self) {
        if let Shared::Simulated(sim) = &*self.shared {
            lock(sim).release_due(u64::MAX);
        }
    }

    /// What the fault-injecting network has done so far; `None` for a hub made with
    /// [`Hub::new`], which counts nothing to keep its path lean.
    pub fn stats(&self) -> Option<NetworkStats> {
        match &*self.shared {
            Shared::Direct(_) => None,
            Shared::Simulated(sim) => Some(lock(sim).net.stats()),
        }
    }
}

impl HubLink {
    /// This link's id in its hub, for [`Hub::partition`].
    pub fn id(&self) -> NodeId {
        self.id
    }
}

impl Transport for HubLink {
    /// A hub always accepts a message (it may still lose it, if told to).
    type Error = Infallible;

    fn broadcast(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        match &*self.shared {
            Shared::Direct(direct) => {
                let direct = direct.read().unwrap_or_else(PoisonError::into_inner);
                let Some(group) = direct
                    .members
                    .iter()
                    .find(|m| m.id == self.id)
                    .map(|m| m.group)
                else {
                    return Ok(());
                };
                for member in &direct.members {
                    if member.id != self.id && member.group == group {
                        let _ = member.tx.send(bytes.to_vec());
                    }
                }
            }
            Shared::Simulated(sim) => {
                let mut sim = lock(sim);
                let now_ms = sim.clock.now_ms();
                sim.net.send(self.id, bytes, now_ms);
                sim.release_due(now_ms);
                timer::nudge(&mut sim);
            }
        }
        Ok(())
    }

    fn incoming(&self) -> Receiver<Vec<u8>> {
        self.incoming.clone()
    }
}

impl Drop for HubLink {
    fn drop(&mut self) {
        match &*self.shared {
            Shared::Direct(direct) => direct
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .members
                .retain(|m| m.id != self.id),
            Shared::Simulated(sim) => {
                let mut sim = lock(sim);
                sim.net.remove_node(self.id);
                sim.links.remove(&self.id);
            }
        }
    }
}

/// The timer thread that releases held-back messages on native targets.
///
/// It holds only a `Weak` handle to the hub between rounds, so it never keeps the hub
/// alive; it sleeps until the next due time or until a broadcast schedules something
/// earlier, and it ends when the hub is gone (its wake channel then disconnects).
mod timer {
    use std::sync::{Arc, Weak};
    use std::time::Duration;

    use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

    use super::{lock, Shared, Simulated};

    #[derive(Debug)]
    pub(super) struct Timer {
        wake: Sender<()>,
        /// When the thread will next look, if it has a time to look at.
        deadline: Option<u64>,
        /// Disconnects when the thread ends.
        #[cfg(test)]
        pub(super) alive: Receiver<()>,
    }

    pub(super) fn start(shared: &Arc<Shared>) {
        let Shared::Simulated(sim) = &**shared else {
            return;
        };
        let (wake, woken) = crossbeam_channel::bounded(1);
        let (alive_tx, _alive) = crossbeam_channel::bounded::<()>(0);
        let weak = Arc::downgrade(shared);
        let spawned = std::thread::Builder::new()
            .name("replisync-hub-timer".into())
            .spawn(move || run(&weak, &woken, alive_tx));
        if spawned.is_ok() {
            lock(sim).timer = Some(Timer {
                wake,
                deadline: None,
                #[cfg(test)]
                alive: _alive,
            });
        }
    }

    /// Wakes the thread if the earliest due time is now before its deadline.
    pub(super) fn nudge(sim: &mut Simulated) {
        let (Some(next), Some(timer)) = (sim.net.next_due(), sim.timer.as_mut()) else {
            return;
        };
        if timer.deadline.is_none_or(|deadline| next < deadline) {
            timer.deadline = Some(next);
            let _ = timer.wake.try_send(()); // full: a wake-up is already pending
        }
    }

    fn run(shared: &Weak<Shared>, woken: &Receiver<()>, _alive: Sender<()>) {
        loop {
            let wait = match shared.upgrade() {
                Some(shared) => release(&shared),
                None => return,
            };
            let result = match wait {
                Some(wait) => woken.recv_timeout(wait),
                None => woken.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            if result == Err(RecvTimeoutError::Disconnected) {
                return;
            }
        }
    }

    /// Releases what is due and returns how long to sleep (`None`: until woken).
    fn release(shared: &Shared) -> Option<Duration> {
        let Shared::Simulated(sim) = shared else {
            return None;
        };
        let mut sim = lock(sim);
        let now_ms = sim.clock.now_ms();
        sim.release_due(now_ms);
        let next = sim.net.next_due();
        if let Some(timer) = sim.timer.as_mut() {
            timer.deadline = next;
        }
        next.map(|due| Duration::from_millis(due.saturating_sub(now_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::network::tests::faults;
    use crossbeam_channel::{RecvTimeoutError, TryRecvError};
    use std::time::Duration;

    const PATIENCE: Duration = Duration::from_secs(10);

    fn received(link: &HubLink) -> Vec<Vec<u8>> {
        link.incoming().try_iter().collect()
    }

    fn timer_alive(hub: &Hub) -> Option<Receiver<()>> {
        match &*hub.shared {
            Shared::Simulated(sim) => lock(sim).timer.as_ref().map(|t| t.alive.clone()),
            Shared::Direct(_) => None,
        }
    }

    #[test]
    fn delivers_to_every_other_link() {
        for hub in [Hub::new(), Hub::with_faults(1, Faults::NONE).unwrap()] {
            let mut links: Vec<HubLink> = (0..4).map(|_| hub.connect()).collect();
            links[2].broadcast(b"m").unwrap();
            for (i, link) in links.iter().enumerate() {
                let want: Vec<Vec<u8>> = if i == 2 { vec![] } else { vec![b"m".to_vec()] };
                assert_eq!(received(link), want, "link {i}");
            }
        }
    }

    #[test]
    fn dropped_link_disconnects_and_leaves_the_group() {
        for hub in [Hub::new(), Hub::with_faults(1, Faults::NONE).unwrap()] {
            let (mut a, b, c) = (hub.connect(), hub.connect(), hub.connect());
            let inbox = b.incoming();
            a.broadcast(b"before").unwrap();
            drop(b);
            a.broadcast(b"after").unwrap();
            // What arrived before the drop can still be read, then the channel closes.
            assert_eq!(inbox.recv_timeout(PATIENCE), Ok(b"before".to_vec()));
            assert_eq!(
                inbox.recv_timeout(PATIENCE),
                Err(RecvTimeoutError::Disconnected)
            );
            assert_eq!(received(&c), vec![b"before".to_vec(), b"after".to_vec()]);
        }
    }

    #[test]
    fn partition_blocks_and_heal_restores() {
        for hub in [Hub::new(), Hub::with_faults(2, Faults::NONE).unwrap()] {
            let (mut a, mut b, c, d) = (hub.connect(), hub.connect(), hub.connect(), hub.connect());
            hub.partition(&[&[a.id(), b.id()], &[c.id()]]);
            a.broadcast(b"ab").unwrap();
            assert_eq!(received(&b), vec![b"ab".to_vec()]);
            assert!(received(&c).is_empty() && received(&d).is_empty());
            let e = hub.connect(); // joins the rest group, with d
            b.broadcast(b"ab").unwrap();
            assert!(received(&e).is_empty());
            hub.heal();
            b.broadcast(b"all").unwrap();
            assert_eq!(received(&a), vec![b"ab".to_vec(), b"all".to_vec()]);
            for link in [&c, &d, &e] {
                assert_eq!(received(link), vec![b"all".to_vec()]);
            }
        }
    }

    #[test]
    fn loss_is_roughly_honoured_and_same_seed_gives_same_deliveries() {
        fn run(seed: u64) -> (Vec<Vec<u8>>, NetworkStats) {
            let hub = Hub::with_faults(seed, faults(0.25, 0.0, (0, 0), 0.0)).unwrap();
            let (mut a, b) = (hub.connect(), hub.connect());
            for i in 0..4_000u32 {
                a.broadcast(&i.to_be_bytes()).unwrap();
            }
            (received(&b), hub.stats().unwrap())
        }
        let (got, stats) = run(5);
        // Expect 3,000 (standard deviation about 27).
        assert!(
            (2_800..=3_200).contains(&got.len()),
            "{} delivered",
            got.len()
        );
        assert_eq!((stats.sent, stats.delivered), (4_000, got.len() as u64));
        assert_eq!(run(5).0, got);
        assert_ne!(run(6).0, got);
    }

    #[test]
    fn duplication_delivers_extra_copies() {
        let hub = Hub::with_faults(3, faults(0.0, 1.0, (0, 0), 0.0)).unwrap();
        let (mut a, b) = (hub.connect(), hub.connect());
        a.broadcast(b"twice").unwrap();
        assert_eq!(received(&b), vec![b"twice".to_vec(), b"twice".to_vec()]);
    }

    #[test]
    fn long_delays_wait_for_flush() {
        let hour = 3_600_000;
        let hub = Hub::with_faults(4, faults(0.0, 0.0, (hour, hour), 0.0)).unwrap();
        let (mut a, b) = (hub.connect(), hub.connect());
        a.broadcast(b"1").unwrap();
        a.broadcast(b"2").unwrap();
        assert_eq!(b.incoming().try_recv(), Err(TryRecvError::Empty));
        hub.flush();
        assert_eq!(received(&b), vec![b"1".to_vec(), b"2".to_vec()]);
    }

    #[test]
    fn the_timer_releases_delayed_messages_in_order() {
        let hub = Hub::with_faults(5, faults(0.0, 0.0, (5, 5), 0.0)).unwrap();
        let (mut a, b, c) = (hub.connect(), hub.connect(), hub.connect());
        for i in 0..50u32 {
            a.broadcast(&i.to_be_bytes()).unwrap();
        }
        for link in [&b, &c] {
            for i in 0..50u32 {
                let got = link.incoming().recv_timeout(PATIENCE);
                assert_eq!(got, Ok(i.to_be_bytes().to_vec()));
            }
        }
        // A partition set while running drops what crosses it.
        hub.partition(&[&[a.id()]]);
        a.broadcast(b"cut").unwrap();
        hub.flush();
        assert!(received(&b).is_empty());
        hub.heal();
        a.broadcast(b"healed").unwrap();
        assert_eq!(b.incoming().recv_timeout(PATIENCE), Ok(b"healed".to_vec()));
    }

    #[test]
    fn the_timer_runs_only_with_delays_and_stops_with_the_hub() {
        assert!(timer_alive(&Hub::new()).is_none());
        let lossy = Hub::with_faults(1, faults(0.5, 0.5, (0, 0), 0.0));
        assert!(timer_alive(&lossy.unwrap()).is_none());

        let hub = Hub::with_faults(1, faults(0.0, 0.0, (3_600_000, 3_600_000), 0.0)).unwrap();
        let alive = timer_alive(&hub).expect("a timer for a delaying hub");
        let (mut a, b) = (hub.connect(), hub.connect());
        let spare = hub.clone();
        a.broadcast(b"due in an hour").unwrap();
        drop((hub, a));
        assert_eq!(
            alive.try_recv(),
            Err(TryRecvError::Empty),
            "links keep it running"
        );
        drop((b, spare));
        // Ends promptly, without waiting for the message due in an hour.
        assert_eq!(
            alive.recv_timeout(PATIENCE),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn invalid_faults_are_refused() {
        let err = Hub::with_faults(0, faults(0.0, 0.0, (0, 0), 2.0)).unwrap_err();
        assert_eq!(
            err,
            FaultsError::ProbabilityOutOfRange {
                field: "reorder",
                value: 2.0
            }
        );
    }
}
