//! The workload and the per-library adapters of replisync's peer benchmark.
//!
//! The benchmark (`benches/peers.rs`) describes the workload in full and times the
//! merges. This library builds the replicas each library starts from, holds the merge
//! functions the benchmark times, and reads merged maps back, so that the tests below,
//! and the benchmark before it measures anything, can check that every library ends
//! with the map the workload says it should.
//!
//! Every library's module offers the same shape:
//!
//! - `full(&Workload)`: replicas A and B, each holding all N keys.
//! - `delta(&Workload)`: replica A and the 10-key delta a peer wrote after seeing A.
//! - the merge or apply functions the benchmark times;
//! - `read(..)`: the visible map, as `(key, value)` pairs in key order.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Seed of every random choice in the workload.
pub const SEED: u64 = 0x7265_706c_6973_796e;

/// How many keys a delta writes.
pub const DELTA_KEYS: usize = 10;

/// The wall time (ms) of the first write; later writes count up from it.
const BASE_MS: u64 = 1_000_000;

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, fixed generator, so that the
/// workload is the same on every machine and with every dependency version.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A small random value (32 bits, so that it is exact in every library's number
    /// type, including yrs' JSON-like numbers).
    pub fn value(&mut self) -> u64 {
        self.next_u64() >> 32
    }
}

/// One of the two replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Replica A: the one merged into.
    A,
    /// Replica B: the one merged from.
    B,
}

/// One key and the two concurrent writes the replicas made to it.
#[derive(Clone, Debug)]
pub struct KeyWrites {
    /// The key, `key-000123` style (zero-padded, so key order is index order).
    pub key: String,
    /// The value replica A wrote.
    pub a: u64,
    /// The value replica B wrote.
    pub b: u64,
    /// The replica that wrote later, whose value every replica must end with.
    pub later: Side,
}

impl KeyWrites {
    /// The value `side` wrote.
    pub fn value(&self, side: Side) -> u64 {
        match side {
            Side::A => self.a,
            Side::B => self.b,
        }
    }
}

/// The whole workload for one map size N.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Every key's two writes, in key order.
    pub keys: Vec<KeyWrites>,
    /// The delta: `(key index, new value)` for [`DELTA_KEYS`] distinct keys, in key
    /// order, written by replica B after it has seen all of A's writes.
    pub delta: Vec<(usize, u64)>,
}

impl Workload {
    /// The workload with `n` keys (at least [`DELTA_KEYS`]).
    pub fn new(n: usize) -> Self {
        assert!(
            n >= DELTA_KEYS,
            "the delta needs {DELTA_KEYS} distinct keys"
        );
        let mut rng = SplitMix64::new(SEED);
        let keys = (0..n)
            .map(|i| KeyWrites {
                key: key_name(i),
                a: rng.value(),
                b: rng.value(),
                later: if rng.next_u64() & 1 == 0 {
                    Side::A
                } else {
                    Side::B
                },
            })
            .collect();
        let mut delta: Vec<(usize, u64)> = Vec::with_capacity(DELTA_KEYS);
        while delta.len() < DELTA_KEYS {
            let index = (rng.next_u64() % n as u64) as usize;
            if delta.iter().all(|&(i, _)| i != index) {
                delta.push((index, rng.value()));
            }
        }
        delta.sort_unstable();
        Workload { keys, delta }
    }

    /// How many keys each replica holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the workload has no keys (never: kept for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The wall time (ms) at which `side` wrote key `index`: keys are written in key
    /// order, two milliseconds apart, and the later side writes one millisecond after
    /// the other. Both replicas' clocks therefore only move forward.
    pub fn write_time(&self, index: usize, side: Side) -> u64 {
        BASE_MS + 2 * index as u64 + u64::from(self.keys[index].later == side)
    }

    /// The wall time (ms) of the delta's writes: after every write of the full state.
    pub fn delta_time(&self) -> u64 {
        BASE_MS + 2 * self.len() as u64 + 1
    }

    /// The map after a full merge: each key holds the later write's value.
    pub fn expected_full(&self) -> Vec<(String, u64)> {
        self.keys
            .iter()
            .map(|k| (k.key.clone(), k.value(k.later)))
            .collect()
    }

    /// The map after a full merge where `side` won every key (yrs, see [`yrs_map`]).
    pub fn expected_full_all(&self, side: Side) -> Vec<(String, u64)> {
        self.keys
            .iter()
            .map(|k| (k.key.clone(), k.value(side)))
            .collect()
    }

    /// Replica A's map after the delta is merged in.
    pub fn expected_delta(&self) -> Vec<(String, u64)> {
        let mut map = self.expected_full_all(Side::A);
        for &(index, value) in &self.delta {
            map[index].1 = value;
        }
        map
    }
}

/// The key for index `i`: `key-000123`.
pub fn key_name(i: usize) -> String {
    format!("key-{i:06}")
}

/// replisync: `LwwMap<String, u64>`, merged with [`replisync::Merge`].
pub mod replisync_map {
    use replisync::{Hlc, LwwMap, Merge, Merged, SourceId};

    use crate::{Side, Workload};

    /// A replica's state.
    pub type State = LwwMap<String, u64>;

    fn source(side: Side) -> SourceId {
        match side {
            Side::A => SourceId::from_u128(1),
            Side::B => SourceId::from_u128(2),
        }
    }

    /// The replica `side`: every key written once, through the public write API.
    fn replica(w: &Workload, side: Side) -> State {
        let mut hlc = Hlc::default();
        let mut map = State::new();
        for (i, k) in w.keys.iter().enumerate() {
            let mut writer = hlc.writer(source(side), w.write_time(i, side));
            let _delta = map.insert(k.key.clone(), k.value(side), &mut writer);
        }
        map
    }

    /// Replicas A and B of the full-state merge.
    pub fn full(w: &Workload) -> (State, State) {
        (replica(w, Side::A), replica(w, Side::B))
    }

    /// Replica A and the delta B wrote (one `LwwMap` of 10 registers) after seeing A.
    pub fn delta(w: &Workload) -> (State, State) {
        let a = replica(w, Side::A);
        let b = a.clone();
        let mut hlc = Hlc::default();
        let mut writer = hlc.writer(source(Side::B), w.delta_time());
        let mut delta = State::new();
        for &(index, value) in &w.delta {
            let _ = delta.merge(&b.write_insert(w.keys[index].key.clone(), value, &mut writer));
        }
        (a, delta)
    }

    /// Merges `other` (a full state or a delta) into `state`.
    pub fn merge(state: &mut State, other: &State) -> Merged {
        state.merge(other)
    }

    /// The visible map.
    pub fn read(state: &State) -> Vec<(String, u64)> {
        state.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Types shared by the two crdts adapters.
pub mod crdts_common {
    use crdts::LWWReg;

    /// A crdts actor (replica id). `Default` (actor 0, no replica) is needed because
    /// crdts' `Map` builds a default register, marker `(0, Actor(0))`, for a new key.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Actor(pub u8);

    /// Replica A's actor.
    pub const A: Actor = Actor(1);
    /// Replica B's actor.
    pub const B: Actor = Actor(2);

    /// The marker that orders an `LWWReg`'s writes: `(wall time ms, actor)`, so that
    /// the later write wins and two writes never share a marker.
    pub type Marker = (u64, Actor);

    /// The register stored under every key.
    pub type Reg = LWWReg<u64, Marker>;
}

/// crdts: its `Map<String, LWWReg<u64, Marker>, Actor>`, merged with `CvRDT::merge`
/// (full state) or by applying `CmRDT` ops (delta).
///
/// crdts' `Map` is an observed-remove map: each entry carries a vector clock of the
/// actors that wrote it, and the map a clock of everything it has seen. Its values must
/// implement `ResetRemove` (forget what a remove clock has seen), which crdts implements
/// for its causal types (`MVReg`, `Orswot`, ...) but not for `LWWReg`, which has no
/// causal history to forget. This module implements it as a no-op; the workload never
/// removes a key, so the no-op is never asked to forget anything.
pub mod crdts_map {
    use crdts::{CmRDT, CvRDT, LWWReg, Map, ResetRemove, VClock};

    use crate::crdts_common::{Actor, Reg, A, B};
    use crate::{Side, Workload};

    /// A replica's state.
    pub type State = Map<String, Reg, Actor>;
    /// One operation on a replica's state.
    pub type Op = crdts::map::Op<String, Reg, Actor>;

    impl ResetRemove<Actor> for Reg {
        /// An `LWWReg` keeps no causal history, so there is nothing to forget.
        fn reset_remove(&mut self, _clock: &VClock<Actor>) {}
    }

    fn actor(side: Side) -> Actor {
        match side {
            Side::A => A,
            Side::B => B,
        }
    }

    /// The operation by which `side` writes `value` under `key` at `time`.
    fn write(state: &State, side: Side, key: &str, value: u64, time: u64) -> Op {
        let ctx = state.read_ctx().derive_add_ctx(actor(side));
        state.update(key, ctx, |_, _| LWWReg {
            val: value,
            marker: (time, actor(side)),
        })
    }

    fn replica(w: &Workload, side: Side) -> State {
        let mut map = State::new();
        for (i, k) in w.keys.iter().enumerate() {
            let op = write(&map, side, &k.key, k.value(side), w.write_time(i, side));
            map.apply(op);
        }
        map
    }

    /// Replicas A and B of the full-state merge.
    pub fn full(w: &Workload) -> (State, State) {
        (replica(w, Side::A), replica(w, Side::B))
    }

    /// Replica A and the 10 ops B made after seeing A.
    pub fn delta(w: &Workload) -> (State, Vec<Op>) {
        let a = replica(w, Side::A);
        let mut b = a.clone();
        let ops = w
            .delta
            .iter()
            .map(|&(index, value)| {
                let op = write(&b, Side::B, &w.keys[index].key, value, w.delta_time());
                b.apply(op.clone());
                op
            })
            .collect();
        (a, ops)
    }

    /// Merges the full state `other` into `state`. crdts' merge takes `other` by value.
    pub fn merge(state: &mut State, other: State) {
        state.merge(other);
    }

    /// Applies the delta's ops to `state`, in the order they were made.
    pub fn apply(state: &mut State, ops: Vec<Op>) {
        for op in ops {
            state.apply(op);
        }
    }

    /// The visible map.
    pub fn read(state: &State) -> Vec<(String, u64)> {
        state
            .iter()
            .map(|entry| {
                let (key, reg) = entry.val;
                (key.clone(), reg.val)
            })
            .collect()
    }
}

/// crdts registers without crdts' map: a `BTreeMap<String, LWWReg<u64, Marker>>`,
/// merged register by register with `CvRDT::merge` (a lookup per incoming key).
///
/// This is the cheapest map a crdts user can build from its registers, without the
/// causal bookkeeping of [`crdts_map`] (and so without removals that converge).
pub mod crdts_registers {
    use std::collections::BTreeMap;

    use crdts::{CvRDT, LWWReg};

    use crate::crdts_common::{Actor, Reg, A, B};
    use crate::{Side, Workload};

    /// A replica's state.
    pub type State = BTreeMap<String, Reg>;

    fn actor(side: Side) -> Actor {
        match side {
            Side::A => A,
            Side::B => B,
        }
    }

    fn replica(w: &Workload, side: Side) -> State {
        w.keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let reg = LWWReg {
                    val: k.value(side),
                    marker: (w.write_time(i, side), actor(side)),
                };
                (k.key.clone(), reg)
            })
            .collect()
    }

    /// Replicas A and B of the full-state merge.
    pub fn full(w: &Workload) -> (State, State) {
        (replica(w, Side::A), replica(w, Side::B))
    }

    /// Replica A and the 10 registers B wrote after seeing A.
    pub fn delta(w: &Workload) -> (State, State) {
        let a = replica(w, Side::A);
        let delta = w
            .delta
            .iter()
            .map(|&(index, value)| {
                let reg = LWWReg {
                    val: value,
                    marker: (w.delta_time(), B),
                };
                (w.keys[index].key.clone(), reg)
            })
            .collect();
        (a, delta)
    }

    /// Merges `other` (a full state or a delta) into `state`, register by register.
    pub fn merge(state: &mut State, other: &State) {
        for (key, theirs) in other {
            match state.get_mut(key) {
                Some(mine) => mine.merge(theirs.clone()),
                None => {
                    state.insert(key.clone(), theirs.clone());
                }
            }
        }
    }

    /// The visible map.
    pub fn read(state: &State) -> Vec<(String, u64)> {
        state.iter().map(|(k, reg)| (k.clone(), reg.val)).collect()
    }
}

/// yrs (the Rust port of Yjs): a root `Y.Map` named `m` in a `Doc`, merged by encoding
/// an update (lib0 v1) on one side and decoding and applying it on the other.
///
/// Yjs has no timestamps: concurrent writes to one key are ordered by client id, and
/// the write of the greater client id wins. B's client id is the greater, so after a
/// full merge every key holds B's value (not the per-key later write of the other
/// libraries); the amount of work, N concurrent writes to integrate, is the same.
///
/// A `Doc` is a shared handle (cloning it does not copy the document), so the
/// benchmark's untimed copy of A is A built again by the same inserts (`replica`).
/// A copy made by applying A's full update to a new `Doc` is not the same inside:
/// applying the 10-key delta to such a copy of a 100,000-key map took about ten times
/// as long as applying it to the map built by inserts.
///
/// Encoding any update, even the 10-write diff, also encodes the delete set, which yrs
/// builds from the whole block store each time: encoding grows with N.
pub mod yrs_map {
    use yrs::updates::decoder::Decode;
    use yrs::{Any, Doc, Map, Out, ReadTxn, StateVector, Transact, Update};

    use crate::{Side, Workload};

    /// The name of the root map.
    pub const MAP: &str = "m";

    fn client_id(side: Side) -> u64 {
        match side {
            Side::A => 1,
            Side::B => 2,
        }
    }

    fn number(value: u64) -> i64 {
        i64::try_from(value).expect("workload values fit in an i64")
    }

    /// The replica `side`: its N inserts in one transaction.
    pub fn replica(w: &Workload, side: Side) -> Doc {
        let doc = Doc::with_client_id(client_id(side));
        let map = doc.get_or_insert_map(MAP);
        let mut txn = doc.transact_mut();
        for k in &w.keys {
            map.insert(&mut txn, k.key.as_str(), number(k.value(side)));
        }
        drop(txn);
        doc
    }

    /// Replicas A and B of the full-state merge.
    pub fn full(w: &Workload) -> (Doc, Doc) {
        (replica(w, Side::A), replica(w, Side::B))
    }

    /// Replica A, and B: a copy of A (under B's client id) that then wrote the delta's
    /// 10 keys in one transaction.
    pub fn delta(w: &Workload) -> (Doc, Doc) {
        let a = replica(w, Side::A);
        let b = Doc::with_client_id(client_id(Side::B));
        apply(&b, &encode_full(&a));
        let map = b.get_or_insert_map(MAP);
        let mut txn = b.transact_mut();
        for &(index, value) in &w.delta {
            map.insert(&mut txn, w.keys[index].key.as_str(), number(value));
        }
        drop(txn);
        (a, b)
    }

    /// `doc`'s whole state as an update.
    pub fn encode_full(doc: &Doc) -> Vec<u8> {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// What `doc` has that a replica at `seen` has not, as an update.
    pub fn encode_diff(doc: &Doc, seen: &StateVector) -> Vec<u8> {
        doc.transact().encode_state_as_update_v1(seen)
    }

    /// `doc`'s state vector: what it has seen of each client.
    pub fn state_vector(doc: &Doc) -> StateVector {
        doc.transact().state_vector()
    }

    /// Decodes `update` and applies it to `doc` in one transaction (committed on drop).
    pub fn apply(doc: &Doc, update: &[u8]) {
        let update = Update::decode_v1(update).expect("a valid update");
        doc.transact_mut()
            .apply_update(update)
            .expect("the update applies");
    }

    /// The visible map.
    pub fn read(doc: &Doc) -> Vec<(String, u64)> {
        let map = doc.get_or_insert_map(MAP);
        let txn = doc.transact();
        let mut entries: Vec<(String, u64)> = map
            .iter(&txn)
            .map(|(key, out)| match out {
                Out::Any(any @ Any::Number(_)) => {
                    (key.to_string(), u64::try_from(any).expect("a u64"))
                }
                other => panic!("unexpected value under {key}: {other:?}"),
            })
            .collect();
        entries.sort_unstable();
        entries
    }
}

/// automerge: puts into the root map of an `Automerge` document, merged with
/// `Automerge::merge` (which finds the changes the other document has and this one
/// lacks, then applies them) or with `apply_changes` given those changes.
///
/// Each replica writes all its keys in one transaction, so its state is one change of N
/// ops. Automerge has no timestamps either: of two concurrent writes to a key, the op
/// with the greater id (Lamport counter, then actor) wins, and a transaction numbers its
/// ops in the order they are made. Each replica therefore writes the keys it must lose
/// first and the keys it must win after them (each group in key order), which makes
/// automerge pick the same per-key winners as replisync and crdts.
pub mod automerge_map {
    use automerge::transaction::Transactable;
    use automerge::{ActorId, Automerge, Change, ReadDoc, ScalarValue, Value, ROOT};

    use crate::{Side, Workload};

    fn actor(side: Side) -> ActorId {
        match side {
            Side::A => ActorId::from([0xaa; 16]),
            Side::B => ActorId::from([0xbb; 16]),
        }
    }

    fn replica(w: &Workload, side: Side) -> Automerge {
        let mut doc = Automerge::new().with_actor(actor(side));
        let losing = w.keys.iter().filter(|k| k.later != side);
        let winning = w.keys.iter().filter(|k| k.later == side);
        let mut tx = doc.transaction();
        for k in losing.chain(winning) {
            tx.put(ROOT, k.key.as_str(), k.value(side))
                .expect("put into the root map");
        }
        tx.commit();
        doc
    }

    /// Replicas A and B of the full-state merge.
    pub fn full(w: &Workload) -> (Automerge, Automerge) {
        (replica(w, Side::A), replica(w, Side::B))
    }

    /// Replica A, and B: a copy of A (under B's actor) that then wrote the delta's 10
    /// keys in one transaction (one change).
    pub fn delta(w: &Workload) -> (Automerge, Automerge) {
        let a = replica(w, Side::A);
        let mut b = a.clone().with_actor(actor(Side::B));
        let mut tx = b.transaction();
        for &(index, value) in &w.delta {
            tx.put(ROOT, w.keys[index].key.as_str(), value)
                .expect("put into the root map");
        }
        tx.commit();
        (a, b)
    }

    /// The changes `other` has and `doc` lacks.
    pub fn missing_changes(doc: &Automerge, other: &Automerge) -> Vec<Change> {
        doc.get_changes_added(other)
    }

    /// Merges `other` into `doc`: finds the missing changes and applies them.
    /// (automerge wants `other` mutable, to close an open transaction first.)
    pub fn merge(doc: &mut Automerge, other: &mut Automerge) {
        doc.merge(other).expect("the merge applies");
    }

    /// Applies `changes` to `doc`.
    pub fn apply(doc: &mut Automerge, changes: Vec<Change>) {
        doc.apply_changes(changes).expect("the changes apply");
    }

    /// The visible map.
    pub fn read(doc: &Automerge) -> Vec<(String, u64)> {
        doc.keys(ROOT)
            .map(|key| {
                let value = match doc.get(ROOT, key.as_str()).expect("a readable key") {
                    Some((Value::Scalar(scalar), _)) => match scalar.as_ref() {
                        ScalarValue::Uint(v) => *v,
                        other => panic!("unexpected scalar under {key}: {other:?}"),
                    },
                    other => panic!("unexpected value under {key}: {other:?}"),
                };
                (key, value)
            })
            .collect()
    }
}

/// Runs every library's full merge and delta merge once for `w` and checks the maps
/// they end with. The benchmark calls this before it measures anything.
///
/// # Panics
///
/// When a library ends with another map than the workload expects.
pub fn check(w: &Workload) {
    check_full(w);
    check_delta(w);
}

fn check_full(w: &Workload) {
    let expected = w.expected_full();
    let n = w.len();

    let (mut a, b) = replisync_map::full(w);
    assert!(replisync_map::merge(&mut a, &b).changed());
    assert_eq!(replisync_map::read(&a), expected, "replisync, full, N={n}");

    let (mut a, b) = crdts_map::full(w);
    crdts_map::merge(&mut a, b);
    assert_eq!(crdts_map::read(&a), expected, "crdts Map, full, N={n}");

    let (mut a, b) = crdts_registers::full(w);
    crdts_registers::merge(&mut a, &b);
    assert_eq!(
        crdts_registers::read(&a),
        expected,
        "crdts registers, full, N={n}"
    );

    if n <= MAX_N_ALL_LIBRARIES {
        let (a, b) = yrs_map::full(w);
        yrs_map::apply(&a, &yrs_map::encode_full(&b));
        assert_eq!(
            yrs_map::read(&a),
            w.expected_full_all(Side::B),
            "yrs, full, N={n}"
        );

        let (mut a, mut b) = automerge_map::full(w);
        let mut applied = a.clone();
        automerge_map::merge(&mut a, &mut b);
        assert_eq!(
            automerge_map::read(&a),
            expected,
            "automerge merge, full, N={n}"
        );
        let changes = automerge_map::missing_changes(&applied, &b);
        automerge_map::apply(&mut applied, changes);
        assert_eq!(
            automerge_map::read(&applied),
            expected,
            "automerge apply, full, N={n}"
        );
    }
}

fn check_delta(w: &Workload) {
    let expected = w.expected_delta();
    let n = w.len();

    let (mut a, delta) = replisync_map::delta(w);
    assert_eq!(delta.len(), crate::DELTA_KEYS);
    assert!(replisync_map::merge(&mut a, &delta).changed());
    assert_eq!(replisync_map::read(&a), expected, "replisync, delta, N={n}");

    let (mut a, ops) = crdts_map::delta(w);
    crdts_map::apply(&mut a, ops);
    assert_eq!(crdts_map::read(&a), expected, "crdts Map, delta, N={n}");

    let (mut a, delta) = crdts_registers::delta(w);
    crdts_registers::merge(&mut a, &delta);
    assert_eq!(
        crdts_registers::read(&a),
        expected,
        "crdts registers, delta, N={n}"
    );

    if n <= MAX_N_ALL_LIBRARIES {
        let (a, b) = yrs_map::delta(w);
        let update = yrs_map::encode_diff(&b, &yrs_map::state_vector(&a));
        let whole = yrs_map::encode_full(&b);
        assert!(
            update.len() * 10 < whole.len(),
            "the diff ({} bytes) should be far smaller than B's state ({} bytes)",
            update.len(),
            whole.len()
        );
        yrs_map::apply(&a, &update);
        assert_eq!(yrs_map::read(&a), expected, "yrs, delta, N={n}");

        let (mut a, mut b) = automerge_map::delta(w);
        let changes = automerge_map::missing_changes(&a, &b);
        assert_eq!(changes.len(), 1, "the delta is one change");
        assert_eq!(changes[0].len(), crate::DELTA_KEYS, "of 10 ops");
        let mut applied = a.clone();
        automerge_map::merge(&mut a, &mut b);
        assert_eq!(
            automerge_map::read(&a),
            expected,
            "automerge merge, delta, N={n}"
        );
        automerge_map::apply(&mut applied, changes);
        assert_eq!(
            automerge_map::read(&applied),
            expected,
            "automerge apply, delta, N={n}"
        );
    }
}

/// The largest N run through yrs and automerge; larger maps (1,000,000 keys) are run
/// through replisync and crdts only.
pub const MAX_N_ALL_LIBRARIES: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_ends_with_the_expected_map() {
        check(&Workload::new(1_000));
    }

    #[test]
    fn workload_is_fixed_and_mixed() {
        let w = Workload::new(1_000);
        assert_eq!(w.keys[123].key, "key-000123");
        assert_eq!(w.keys.len(), 1_000);
        let later_a = w.keys.iter().filter(|k| k.later == Side::A).count();
        assert!(
            (400..600).contains(&later_a),
            "about half the keys: {later_a}"
        );
        let again = Workload::new(1_000);
        assert_eq!(w.keys[999].a, again.keys[999].a);
        assert_eq!(w.delta, again.delta);
        assert!(w.delta.windows(2).all(|p| p[0].0 < p[1].0));
    }
}
