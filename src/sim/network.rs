//! A simulated network: deterministic, single-threaded, sans-IO, with fault injection.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::sync::Arc;

use super::Rng;

/// A node of a [`SimNetwork`] (or a link of a [`Hub`](crate::Hub)).
///
/// Ids are handed out in order from 0 and never reused, so a removed node's id never
/// names a newer node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NodeId(u64);

impl NodeId {
    /// (Used by the hub, which is native only.)
    #[cfg_attr(any(not(feature = "driver"), target_arch = "wasm32"), allow(dead_code))]
    pub(crate) const fn new(n: u64) -> Self {
        NodeId(n)
    }

    /// The node's number: 0 for the first node added, 1 for the next, and so on.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

/// The faults a link injects, each drawn independently per delivery (one message to one
/// receiver) from the network's seeded generator.
///
/// Build one with struct update syntax from [`Faults::NONE`]; the network checks it with
/// [`Faults::validate`] when it is set.
///
/// ```
/// use replisync::sim::{Faults, FaultsError};
///
/// let lossy = Faults { loss: 0.1, delay_ms: (5, 50), ..Faults::NONE };
/// assert_eq!(lossy.validate(), Ok(()));
///
/// let bad = Faults { delay_ms: (50, 5), ..Faults::NONE };
/// assert_eq!(bad.validate(), Err(FaultsError::DelayRangeInverted { min_ms: 50, max_ms: 5 }));
/// ```
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Faults {
    /// Probability (`0..=1`) that a delivery is dropped.
    pub loss: f64,
    /// Probability (`0..=1`) that a delivery that was not dropped arrives twice; the
    /// copy draws its own delay.
    pub duplicate: f64,
    /// `(min, max)`: each delivery is delayed by a time drawn uniformly from `min..=max`
    /// milliseconds. `(0, 0)` delivers at the time of sending.
    pub delay_ms: (u64, u64),
    /// Probability (`0..=1`) that a delivery is held back by an extra delay drawn from
    /// `1..=3 × max(delay_ms.1, 1)` milliseconds, so that later messages overtake it.
    pub reorder: f64,
}

impl Faults {
    /// A perfect link: no loss, no duplication, no delay, no reordering.
    pub const NONE: Faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        delay_ms: (0, 0),
        reorder: 0.0,
    };

    /// Checks that every probability is within `0..=1` (NaN is not) and that the delay
    /// range is not inverted.
    ///
    /// # Errors
    ///
    /// A [`FaultsError`] naming the first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FaultsError> {
        for (field, value) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultsError::ProbabilityOutOfRange { field, value });
            }
        }
        let (min_ms, max_ms) = self.delay_ms;
        if min_ms > max_ms {
            return Err(FaultsError::DelayRangeInverted { min_ms, max_ms });
        }
        Ok(())
    }
}

impl Default for Faults {
    /// [`Faults::NONE`].
    fn default() -> Self {
        Faults::NONE
    }
}

/// Why a [`Faults`] value was refused.
#[derive(Clone, Copy, PartialEq, Debug)]
#[non_exhaustive]
pub enum FaultsError {
    /// A probability was outside `0..=1`, or NaN.
    ProbabilityOutOfRange {
        /// The field: `"loss"`, `"duplicate"` or `"reorder"`.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// The delay range had its minimum above its maximum.
    DelayRangeInverted {
        /// The minimum given.
        min_ms: u64,
        /// The maximum given.
        max_ms: u64,
    },
}

impl fmt::Display for FaultsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultsError::ProbabilityOutOfRange { field, value } => write!(
                f,
                "the {field} probability must be between 0 and 1 inclusive, got {value}"
            ),
            FaultsError::DelayRangeInverted { min_ms, max_ms } => write!(
                f,
                "the delay range is inverted ({min_ms} ms minimum above {max_ms} ms maximum); \
                 give it as (min, max)"
            ),
        }
    }
}

impl std::error::Error for FaultsError {}

/// One message arriving at one node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Delivery {
    /// The receiving node.
    pub to: NodeId,
    /// The sending node.
    pub from: NodeId,
    /// The message, shared by every copy of it.
    pub bytes: Arc<[u8]>,
}

/// What a network has done so far. Counts are per delivery (one message to one
/// receiver), so `sent + duplicated == delivered + dropped + in flight`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub struct NetworkStats {
    /// Deliveries addressed: one per live receiver of each message sent.
    pub sent: u64,
    /// Deliveries handed to their receiver.
    pub delivered: u64,
    /// Deliveries lost: to injected loss, to a partition (at sending or in flight), or
    /// to a receiver removed while they were in flight.
    pub dropped: u64,
    /// Extra copies injected by duplication.
    pub duplicated: u64,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    live: bool,
    /// The partition group; nodes reach each other only within one group.
    group: u32,
}

#[derive(Debug)]
struct InFlight {
    due_ms: u64,
    seq: u64,
    from: NodeId,
    to: NodeId,
    bytes: Arc<[u8]>,
}

// Ordered by due time, then by the order of scheduling: the queue's only key.
impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due_ms, self.seq).cmp(&(other.due_ms, other.seq))
    }
}

/// The group a partition puts `id` in: 1 + the index of the last group listing it, or 0
/// (the rest) when no group lists it.
pub(crate) fn group_of(groups: &[&[NodeId]], id: NodeId) -> u32 {
    groups
        .iter()
        .rposition(|group| group.contains(&id))
        .map_or(0, |i| u32::try_from(i + 1).unwrap_or(u32::MAX))
}

/// A deterministic, single-threaded, sans-IO broadcast network with fault injection:
/// the network a simulator runs replicas on, and the engine of a faulty
/// [`Hub`](crate::Hub).
///
/// It reads no clock and spawns nothing: time is the `now_ms` the caller passes (any
/// monotonic milliseconds), and randomness comes from the seed. The same seed and the
/// same calls give the same deliveries, on every target.
///
/// Call order: [`add_node`](Self::add_node) for each member; [`send`](Self::send) a
/// message from one node to all the others; then, at each time, drain
/// [`poll_deliver`](Self::poll_deliver) until it returns `None`, and sleep until
/// [`next_due`](Self::next_due). Faults and partitions may change at any time.
///
/// ```
/// use replisync::sim::{Faults, SimNetwork};
///
/// let mut net = SimNetwork::new(42);
/// let (a, b, c) = (net.add_node(), net.add_node(), net.add_node());
/// net.set_faults(Faults { delay_ms: (10, 10), ..Faults::NONE })?;
///
/// net.send(a, b"hello", 0);
/// assert!(net.poll_deliver(9).is_none()); // not due yet
/// assert_eq!(net.next_due(), Some(10));
///
/// let first = net.poll_deliver(10).unwrap();
/// let second = net.poll_deliver(10).unwrap();
/// assert_eq!((first.to, second.to), (b, c)); // everyone but the sender
/// assert_eq!(&*first.bytes, b"hello");
/// assert!(net.poll_deliver(10).is_none());
/// # let _ = c;
/// # Ok::<(), replisync::sim::FaultsError>(())
/// ```
#[derive(Debug)]
pub struct SimNetwork {
    rng: Rng,
    nodes: Vec<Node>,
    faults: Faults,
    link_faults: BTreeMap<(NodeId, NodeId), Faults>,
    queue: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    stats: NetworkStats,
}

impl SimNetwork {
    /// An empty, fault-free network whose random draws follow `seed`.
    pub fn new(seed: u64) -> Self {
        SimNetwork {
            rng: Rng::new(seed),
            nodes: Vec::new(),
            faults: Faults::NONE,
            link_faults: BTreeMap::new(),
            queue: BinaryHeap::new(),
            next_seq: 0,
            stats: NetworkStats::default(),
        }
    }

    /// Adds a node, reachable from every node of the rest group (see
    /// [`partition`](Self::partition)).
    pub fn add_node(&mut self) -> NodeId {
        let id = NodeId(self.nodes.len() as u64);
        self.nodes.push(Node {
            live: true,
            group: 0,
        });
        id
    }

    /// Removes a node: it sends nothing more, and messages still in flight to it are
    /// dropped (messages it sent before are still delivered). Returns whether it was live.
    pub fn remove_node(&mut self, id: NodeId) -> bool {
        self.link_faults
            .retain(|&(from, to), _| from != id && to != id);
        match self.node_mut(id) {
            Some(node) if node.live => {
                node.live = false;
                true
            }
            _ => false,
        }
    }

    /// Sets the faults of every link, replacing any per-link setting.
    ///
    /// # Errors
    ///
    /// [`FaultsError`] when `faults` is invalid; nothing changes then.
    pub fn set_faults(&mut self, faults: Faults) -> Result<(), FaultsError> {
        faults.validate()?;
        self.faults = faults;
        self.link_faults.clear();
        Ok(())
    }

    /// Sets the faults of the one directed link `from → to`.
    ///
    /// # Errors
    ///
    /// [`FaultsError`] when `faults` is invalid; nothing changes then.
    pub fn set_link_faults(
        &mut self,
        from: NodeId,
        to: NodeId,
        faults: Faults,
    ) -> Result<(), FaultsError> {
        faults.validate()?;
        self.link_faults.insert((from, to), faults);
        Ok(())
    }

    /// Splits the network: nodes reach each other only within one group. Nodes no group
    /// lists, including nodes added later, form one more group together, so
    /// `partition(&[&[a]])` cuts `a` off from everyone else. A node listed twice belongs
    /// to the last group listing it; unknown ids are ignored. Replaces any earlier
    /// partition. Messages in flight across the cut are dropped when they come due, as
    /// on a real network.
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.group = group_of(groups, NodeId(i as u64));
        }
    }

    /// Removes every partition and every fault. Messages already in flight keep their
    /// due times.
    pub fn heal(&mut self) {
        for node in &mut self.nodes {
            node.group = 0;
        }
        self.faults = Faults::NONE;
        self.link_faults.clear();
    }

    /// Broadcasts `bytes` from `from` to every other live node at time `now_ms`. Each
    /// delivery is dropped, duplicated, delayed or held back independently, by the
    /// faults of its link. A `from` that is not a live node sends nothing.
    pub fn send(&mut self, from: NodeId, bytes: &[u8], now_ms: u64) {
        let Some(sender) = self.node(from).filter(|node| node.live) else {
            return;
        };
        let bytes: Arc<[u8]> = Arc::from(bytes);
        for i in 0..self.nodes.len() {
            let to = NodeId(i as u64);
            let receiver = self.nodes[i];
            if to == from || !receiver.live {
                continue;
            }
            self.stats.sent += 1;
            if receiver.group != sender.group {
                self.stats.dropped += 1;
                continue;
            }
            let faults = *self.link_faults.get(&(from, to)).unwrap_or(&self.faults);
            if self.rng.chance(faults.loss) {
                self.stats.dropped += 1;
                continue;
            }
            let due_ms = now_ms.saturating_add(self.draw_delay(&faults));
            self.schedule(due_ms, from, to, Arc::clone(&bytes));
            if self.rng.chance(faults.duplicate) {
                self.stats.duplicated += 1;
                let due_ms = now_ms.saturating_add(self.draw_delay(&faults));
                self.schedule(due_ms, from, to, Arc::clone(&bytes));
            }
        }
    }

    /// The next delivery due at or before `now_ms`: earliest due time first, and among
    /// equal due times in the order they were scheduled. `None` when nothing is due.
    /// Deliveries that a partition or a removal made impossible are dropped on the way.
    #[must_use = "a delivery taken and ignored is lost"]
    pub fn poll_deliver(&mut self, now_ms: u64) -> Option<Delivery> {
        while self.queue.peek()?.0.due_ms <= now_ms {
            let Reverse(m) = self.queue.pop()?;
            let reachable = match (self.node(m.from), self.node(m.to)) {
                (Some(from), Some(to)) => to.live && from.group == to.group,
                _ => false,
            };
            if !reachable {
                self.stats.dropped += 1;
                continue;
            }
            self.stats.delivered += 1;
            return Some(Delivery {
                to: m.to,
                from: m.from,
                bytes: m.bytes,
            });
        }
        None
    }

    /// The due time of the earliest delivery in flight, if any: when to call
    /// [`poll_deliver`](Self::poll_deliver) next. (That delivery may still be dropped.)
    pub fn next_due(&self) -> Option<u64> {
        self.queue.peek().map(|m| m.0.due_ms)
    }

    /// How many deliveries are in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// The counters so far.
    pub fn stats(&self) -> NetworkStats {
        self.stats
    }

    fn node(&self, id: NodeId) -> Option<Node> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.nodes.get(i))
            .copied()
    }

    fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.nodes.get_mut(i))
    }

    fn draw_delay(&mut self, faults: &Faults) -> u64 {
        let (min, max) = faults.delay_ms;
        let delay = self.rng.between(min, max);
        if self.rng.chance(faults.reorder) {
            let hold = self.rng.between(1, max.max(1).saturating_mul(3));
            delay.saturating_add(hold)
        } else {
            delay
        }
    }

    fn schedule(&mut self, due_ms: u64, from: NodeId, to: NodeId, bytes: Arc<[u8]>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(InFlight {
            due_ms,
            seq,
            from,
            to,
            bytes,
        }));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn faults(loss: f64, duplicate: f64, delay_ms: (u64, u64), reorder: f64) -> Faults {
        Faults {
            loss,
            duplicate,
            delay_ms,
            reorder,
        }
    }

    fn net_of(n: usize, seed: u64, faults: Faults) -> (SimNetwork, Vec<NodeId>) {
        let mut net = SimNetwork::new(seed);
        net.set_faults(faults).unwrap();
        let ids = (0..n).map(|_| net.add_node()).collect();
        (net, ids)
    }

    fn drain(net: &mut SimNetwork, now_ms: u64) -> Vec<Delivery> {
        std::iter::from_fn(|| net.poll_deliver(now_ms)).collect()
    }

    fn check_balance(net: &SimNetwork) {
        let s = net.stats();
        assert_eq!(
            s.sent + s.duplicated,
            s.delivered + s.dropped + net.in_flight() as u64
        );
    }

    #[test]
    fn delivers_to_all_but_the_sender() {
        let (mut net, ids) = net_of(4, 1, Faults::NONE);
        net.send(ids[1], b"x", 5);
        let got = drain(&mut net, 5);
        let to: Vec<NodeId> = got.iter().map(|d| d.to).collect();
        assert_eq!(to, vec![ids[0], ids[2], ids[3]]);
        assert!(got.iter().all(|d| d.from == ids[1] && &*d.bytes == b"x"));
        // Every copy shares one allocation.
        assert!(Arc::ptr_eq(&got[0].bytes, &got[2].bytes));
        assert_eq!(net.stats().delivered, 3);
        check_balance(&net);
    }

    #[test]
    fn removed_and_unknown_nodes() {
        let (mut net, ids) = net_of(3, 1, Faults::NONE);
        net.send(ids[0], b"in flight", 0);
        assert!(net.remove_node(ids[1]));
        assert!(!net.remove_node(ids[1]));
        assert!(!net.remove_node(NodeId(99)));
        let got = drain(&mut net, 0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].to, ids[2]);
        net.send(ids[1], b"from the dead", 0);
        net.send(NodeId(99), b"from nobody", 0);
        assert!(drain(&mut net, 0).is_empty());
        assert_eq!(net.stats().dropped, 1);
        check_balance(&net);
    }

    #[test]
    fn loss_rate_is_roughly_honoured() {
        let (mut net, ids) = net_of(2, 7, faults(0.3, 0.0, (0, 0), 0.0));
        for t in 0..10_000 {
            net.send(ids[0], b"m", t);
        }
        let got = drain(&mut net, u64::MAX).len();
        // Expect 7,000 (standard deviation about 46).
        assert!((6_700..=7_300).contains(&got), "{got} delivered");
        assert_eq!(net.stats().dropped, 10_000 - got as u64);
        check_balance(&net);
    }

    #[test]
    fn duplication_adds_copies() {
        let (mut net, ids) = net_of(2, 3, faults(0.0, 0.5, (0, 0), 0.0));
        for t in 0..2_000 {
            net.send(ids[0], &(t as u32).to_be_bytes(), t);
        }
        let got = drain(&mut net, u64::MAX);
        let dups = net.stats().duplicated;
        assert!((800..=1_200).contains(&dups), "{dups} duplicated");
        assert_eq!(got.len() as u64, 2_000 + dups);
        check_balance(&net);
    }

    #[test]
    fn delays_order_deliveries_by_due_time_then_send_order() {
        let (mut net, ids) = net_of(2, 5, faults(0.0, 0.0, (10, 100), 0.0));
        for t in 0..500 {
            net.send(ids[0], &(t as u32).to_be_bytes(), t);
        }
        assert!(drain(&mut net, 9).is_empty());
        let mut last = (0, 0);
        let mut count = 0;
        while let Some(due) = net.next_due() {
            for d in drain(&mut net, due) {
                let sent = u32::from_be_bytes(d.bytes[..].try_into().unwrap()) as u64;
                assert!(
                    (sent + 10..=sent + 100).contains(&due),
                    "sent {sent}, due {due}"
                );
                assert!((due, sent) > last, "out of order");
                last = (due, sent);
                count += 1;
            }
        }
        assert_eq!(count, 500);
    }

    #[test]
    fn reorder_lets_later_messages_overtake() {
        let (mut net, ids) = net_of(2, 11, faults(0.0, 0.0, (0, 0), 0.2));
        for i in 0..200u32 {
            net.send(ids[0], &i.to_be_bytes(), 0);
        }
        let order: Vec<u32> = drain(&mut net, u64::MAX)
            .iter()
            .map(|d| u32::from_be_bytes(d.bytes[..].try_into().unwrap()))
            .collect();
        assert_eq!(order.len(), 200);
        assert!(
            order.windows(2).any(|w| w[0] > w[1]),
            "nothing was reordered"
        );
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn per_link_faults_override_the_default() {
        let (mut net, ids) = net_of(3, 2, Faults::NONE);
        let lossy = faults(1.0, 0.0, (0, 0), 0.0);
        net.set_link_faults(ids[0], ids[2], lossy).unwrap();
        net.send(ids[0], b"a", 0);
        net.send(ids[2], b"b", 0);
        let got: Vec<(NodeId, NodeId)> =
            drain(&mut net, 0).iter().map(|d| (d.from, d.to)).collect();
        assert_eq!(
            got,
            vec![(ids[0], ids[1]), (ids[2], ids[0]), (ids[2], ids[1])]
        );
        // set_faults replaces per-link settings.
        net.set_faults(Faults::NONE).unwrap();
        net.send(ids[0], b"a", 1);
        assert_eq!(drain(&mut net, 1).len(), 2);
    }

    #[test]
    fn partition_blocks_and_heal_restores() {
        let (mut net, ids) = net_of(4, 9, faults(0.0, 0.0, (5, 5), 0.0));
        net.send(ids[0], b"in flight", 0);
        // {0, 1} | {2} | rest = {3}
        net.partition(&[&[ids[0], ids[1]], &[ids[2]]]);
        let got = drain(&mut net, 5);
        assert_eq!(got.len(), 1, "in-flight messages across the cut are lost");
        assert_eq!(got[0].to, ids[1]);
        net.send(ids[2], b"alone", 6);
        net.send(ids[3], b"rest", 6);
        assert!(drain(&mut net, 100).is_empty());
        // An added node joins the rest group.
        let late = net.add_node();
        net.send(ids[3], b"rest", 100);
        let got = drain(&mut net, 200);
        assert_eq!(got.iter().map(|d| d.to).collect::<Vec<_>>(), vec![late]);

        net.heal();
        net.send(ids[2], b"healed", 300);
        assert_eq!(drain(&mut net, 300).len(), 4, "heal also removed the delay");
        check_balance(&net);
    }

    #[test]
    fn same_seed_same_deliveries() {
        type Log = Vec<(u64, NodeId, NodeId, Vec<u8>)>;
        fn run(seed: u64) -> (Log, NetworkStats) {
            let (mut net, ids) = net_of(5, seed, faults(0.2, 0.2, (1, 40), 0.3));
            let mut log = Vec::new();
            for t in 0..300u64 {
                net.send(ids[(t % 5) as usize], &t.to_be_bytes(), t);
                for d in drain(&mut net, t) {
                    log.push((t, d.from, d.to, d.bytes.to_vec()));
                }
            }
            (log, net.stats())
        }
        assert_eq!(run(17), run(17));
        assert_ne!(run(17).0, run(18).0);
    }

    #[test]
    fn invalid_faults_are_refused_with_clear_errors() {
        let mut net = SimNetwork::new(0);
        let err = net.set_faults(faults(1.5, 0.0, (0, 0), 0.0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the loss probability must be between 0 and 1 inclusive, got 1.5"
        );
        for bad in [
            faults(0.0, -0.1, (0, 0), 0.0),
            faults(0.0, 0.0, (0, 0), f64::NAN),
        ] {
            assert!(matches!(
                bad.validate(),
                Err(FaultsError::ProbabilityOutOfRange { .. })
            ));
        }
        let err = faults(0.0, 0.0, (3, 2), 0.0).validate().unwrap_err();
        assert!(err.to_string().contains("(min, max)"));
        let lossy = faults(2.0, 0.0, (0, 0), 0.0);
        assert!(net.set_link_faults(NodeId(0), NodeId(1), lossy).is_err());
        assert_eq!(faults(1.0, 0.0, (0, u64::MAX), 1.0).validate(), Ok(()));
    }

    #[test]
    fn extreme_delays_saturate_instead_of_overflowing() {
        let (mut net, ids) = net_of(2, 4, faults(0.0, 0.0, (u64::MAX - 1, u64::MAX), 1.0));
        net.send(ids[0], b"late", u64::MAX - 5);
        assert_eq!(net.next_due(), Some(u64::MAX));
        assert_eq!(drain(&mut net, u64::MAX).len(), 1);
    }
}
