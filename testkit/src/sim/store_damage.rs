//! Store damage at a restart, and the durability oracle over it.
//!
//! A replica that restarts may find its store damaged: a bit flipped in a record before
//! the last (in its body, in its length prefix or, in JSON, in a line break), a complete
//! last record that fails its check, or a last record cut short (a torn tail: the
//! process died while appending). The store's log format is the one the library
//! documents (binary: a 4-byte little-endian length, then the framed record; JSON: the
//! framed record, then a newline).
//!
//! The oracle: a restore of a damaged store either fails with an error, and then the
//! replica never changes those bytes (the simulator checks every persist against them
//! until it deliberately replaces the store at a later restart), or reads back every
//! record that was persisted. Only a torn tail may be dropped.

use super::Draw;
use replisync::{Codec, Lease, Stamp};
use std::collections::BTreeMap;

use super::oracle::{stamps, Reg};
use super::{hash_in, verbose, Check, World};

/// How a store was damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// A bit flipped in the body of a record before the last.
    MiddleBody,
    /// A bit flipped in the length prefix (binary) or a line break (JSON) of a record
    /// before the last.
    MiddleFraming,
    /// A bit flipped in the last record, which is complete.
    LastComplete,
    /// The last record cut short.
    TornTail,
}

/// Where each record of a log starts, and where its framing bytes are (the length
/// prefix, or the line breaks); `None` when the log does not split cleanly (a store
/// in the format before logs, say).
fn split(codec: Codec, log: &[u8]) -> Option<Vec<(usize, usize, Vec<usize>)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < log.len() {
        let rest = &log[at..];
        match codec {
            Codec::Json => {
                let first = rest.iter().position(|b| *b == b'\n')?;
                let end = first + 10;
                if rest.get(end - 1) != Some(&b'\n') {
                    return None;
                }
                out.push((at, at + end, vec![at + first, at + end - 1]));
                at += end;
            }
            _ => {
                let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
                let end = 4 + len;
                if rest.len() < end {
                    return None;
                }
                out.push((at, at + end, vec![at, at + 1, at + 2, at + 3]));
                at += end;
            }
        }
    }
    Some(out)
}

/// What a restore of the damaged store must read back at least: the stamps and the
/// lease of the undamaged log, or, for a torn tail, of the log without its last record.
pub(super) struct Floor {
    registers: BTreeMap<Reg, Stamp>,
    lease: Option<Lease>,
}

impl World {
    /// Node `i` restarts: with the class on, its store may be damaged first. Returns the
    /// damage done and what a successful restore must read back.
    pub(super) fn damage_store(&mut self, i: usize) -> Option<(Damage, Vec<u8>, Floor)> {
        let p = self.opts.classes.store_damage;
        if p <= 0.0 || !self.class_rng.chance(p) {
            return None;
        }
        let codec = self.opts.store_codec;
        let original = self.nodes[i].store.clone()?;
        let records = split(codec, &original)?;
        let last = records.len().checked_sub(1)?;
        let mut kinds = vec![Damage::LastComplete, Damage::TornTail];
        if last >= 1 {
            kinds.extend([
                Damage::MiddleBody,
                Damage::MiddleFraming,
                Damage::MiddleBody,
            ]);
        }
        let rng = &mut self.class_rng;
        let damage = rng.pick(&kinds);
        let mut bytes = original.clone();
        let flip = |bytes: &mut Vec<u8>, byte: usize, rng: &mut super::Rng| {
            bytes[byte] ^= 1 << rng.below(8);
        };
        let floor_bytes = match damage {
            Damage::MiddleBody | Damage::MiddleFraming => {
                let (start, end, framing) = &records[rng.below(last as u64) as usize];
                let byte = if damage == Damage::MiddleFraming {
                    framing[rng.below(framing.len() as u64) as usize]
                } else {
                    let body: Vec<usize> =
                        (*start..*end).filter(|b| !framing.contains(b)).collect();
                    body[rng.below(body.len() as u64) as usize]
                };
                flip(&mut bytes, byte, rng);
                original.clone()
            }
            Damage::LastComplete => {
                let (start, end, framing) = &records[last];
                // A bit of the record itself, its framing excepted (a flipped length
                // would make it look cut short or too long).
                let body: Vec<usize> = (*start..*end).filter(|b| !framing.contains(b)).collect();
                let byte = body[rng.below(body.len() as u64) as usize];
                flip(&mut bytes, byte, rng);
                original.clone()
            }
            Damage::TornTail => {
                let (start, end, _) = records[last];
                if last == 0 {
                    // Only a base: cutting it is not a torn delta, it is damage.
                    return None;
                }
                bytes.truncate(rng.range(start as u64 + 1, end as u64 - 1) as usize);
                original[..start].to_vec()
            }
        };
        if bytes == original {
            return None;
        }
        let now = self.now(i);
        let mut fresh = self.fresh_replica(i);
        fresh.restore(now, &floor_bytes).ok()?;
        let floor = Floor {
            registers: stamps(fresh.state()),
            lease: fresh.lease().copied(),
        };
        if verbose() {
            println!("t={} node{i} STORE DAMAGED: {damage:?}", self.time);
        }
        hash_in(&mut self.trace, format!("damage{damage:?}").as_bytes());
        self.nodes[i].store = Some(bytes.clone());
        Some((damage, bytes, floor))
    }

    /// Node `i` restored (`ok`) or failed to restore its damaged store: a failure keeps
    /// the bytes as they are from now on; a success must have read every record back
    /// (all but a torn last one).
    pub(super) fn check_damaged_restore(
        &mut self,
        i: usize,
        damage: Damage,
        bytes: Vec<u8>,
        floor: Floor,
        error: Option<String>,
    ) -> Check {
        self.damaged += 1;
        if let Some(e) = error {
            if verbose() {
                println!("t={} node{i} STORE UNREADABLE: {e}", self.time);
            }
            // Reported: what it held need not survive; its bytes must not change.
            let node = &mut self.nodes[i];
            node.unreadable = Some(bytes);
            node.disk.clear();
            node.owed_disk.clear();
            return Ok(());
        }
        let Some(r) = self.nodes[i].replica.as_ref() else {
            return Ok(());
        };
        let held = stamps(r.state());
        for (reg, s) in &floor.registers {
            let h = held.get(reg).copied().unwrap_or(Stamp::ZERO);
            if h < *s {
                return Err(format!(
                    "store damage: node{i}'s store, damaged ({damage:?}, {}), restored without error but lost {reg} at {s:?} (holds {h:?}); only a last record cut short may be dropped",
                    self.opts.store_codec
                ));
            }
        }
        if r.lease() < floor.lease.as_ref() {
            return Err(format!(
                "store damage: node{i}'s store, damaged ({damage:?}, {}), restored without error but its lease went back from {:?} to {:?}",
                self.opts.store_codec,
                floor.lease,
                r.lease()
            ));
        }
        let node = &mut self.nodes[i];
        // A graceful leaver's writes persisted only in the dropped torn record went
        // with it.
        node.owed_disk
            .retain(|(reg, s)| held.get(reg).is_some_and(|h| h >= s));
        node.disk = held;
        node.torn = damage == Damage::TornTail;
        Ok(())
    }

    /// A persist at node `i`, whose store could not be read: it must leave the bytes
    /// exactly as they were.
    pub(super) fn check_unreadable_kept(&self, i: usize, after: &[u8]) -> Check {
        match &self.nodes[i].unreadable {
            Some(kept) if kept.as_slice() != after => Err(format!(
                "store damage: node{i} changed its store ({} bytes to {}), which it had reported unreadable; it must never be overwritten",
                kept.len(),
                after.len()
            )),
            _ => Ok(()),
        }
    }
}
