//! What the simulator knows independently of the replicas: every register of the
//! bundle listed once, and the record of every write (its stamp, who made it, whether
//! it must survive), against which the converged state is judged.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use replisync::{SourceId, Stamp};

use super::Session;

/// One register of the bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reg {
    Deadline,
    Config,
    Note(u16),
    Pair(u8, u8),
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reg::Deadline => write!(f, "deadline"),
            Reg::Config => write!(f, "config"),
            Reg::Note(k) => write!(f, "note{k}"),
            Reg::Pair(a, b) => write!(f, "pair({a},{b})"),
        }
    }
}

/// A register's stamp and value (widened to `u64`; `None` for an empty register or a
/// tombstone).
pub type Held = (Stamp, Option<u64>);

/// Calls `f` with every register a bundle holds (tombstones included), its stamp and
/// its value, in `Reg` order.
pub fn visit(s: &Session, mut f: impl FnMut(Reg, Stamp, Option<u64>)) {
    f(
        Reg::Deadline,
        *s.deadline.stamp(),
        s.deadline.get().copied(),
    );
    f(
        Reg::Config,
        *s.config.stamp(),
        s.config.get().map(|v| u64::from(*v)),
    );
    for (k, r) in s.notes.registers() {
        f(Reg::Note(*k), *r.stamp(), r.get().map(|v| u64::from(*v)));
    }
    for ((a, b), r) in s.pairs.registers() {
        f(
            Reg::Pair(*a, *b),
            *r.stamp(),
            r.get().map(|v| u64::from(*v)),
        );
    }
}

/// Every register a bundle holds, with its stamp and value.
pub fn registers(s: &Session) -> BTreeMap<Reg, Held> {
    let mut out = BTreeMap::new();
    visit(s, |reg, stamp, value| {
        out.insert(reg, (stamp, value));
    });
    out
}

/// Just the stamps.
pub fn stamps(s: &Session) -> BTreeMap<Reg, Stamp> {
    registers(s).into_iter().map(|(k, (s, _))| (k, s)).collect()
}

/// The record of writes and leaderships.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every write a replica accepted, by register.
    pub writes: BTreeMap<Reg, BTreeSet<Stamp>>,
    /// The stamps of crafted stores (writes of an earlier life of the group).
    pub initial: BTreeMap<Reg, Stamp>,
    /// Who gained each term.
    pub holders: BTreeMap<u64, BTreeSet<SourceId>>,
    /// The highest term anyone gained.
    pub max_term: u64,
}

impl Ledger {
    pub fn record(&mut self, reg: Reg, stamp: Stamp) {
        self.writes.entry(reg).or_default().insert(stamp);
    }

    /// Whether `stamp` is one a replica wrote (or one of a crafted store's).
    pub fn is_written(&self, reg: Reg, stamp: Stamp) -> bool {
        stamp.is_zero()
            || self.initial.get(&reg) == Some(&stamp)
            || self.writes.get(&reg).is_some_and(|w| w.contains(&stamp))
    }

    /// Whether `source` gained term `term`.
    pub fn held(&self, term: u64, source: SourceId) -> bool {
        self.holders.get(&term).is_some_and(|h| h.contains(&source))
    }

    /// Whether `source` is the one holder of the newest term `term`.
    pub fn sole_newest_holder(&self, term: u64, source: SourceId) -> bool {
        term == self.max_term
            && self
                .holders
                .get(&term)
                .is_some_and(|h| h.len() == 1 && h.contains(&source))
    }
}
