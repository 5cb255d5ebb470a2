//! What a replica syncs and stores: the application's bundle with the lease record,
//! and the checks and digest taken of it.

use serde::{Deserialize, Serialize};

use crate::{Lease, Merge, Merged};

/// What a replica syncs: the application's bundle and, in leader mode, the lease record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct State<S> {
    pub lease: Option<Lease>,
    pub app: S,
}

impl<S: Default> State<S> {
    /// A state that holds only a lease record.
    pub(crate) fn of_lease(lease: Lease) -> Self {
        State {
            lease: Some(lease),
            app: S::default(),
        }
    }
}

impl<S: Merge + Clone + Default> Merge for State<S> {
    fn merge(&mut self, other: &Self) -> Merged {
        // Bit 0 for the lease; the application's own field bits are reported apart.
        Merged::NONE
            .with_field(0, self.lease.merge(&other.lease))
            .with_field(1, self.app.merge(&other.app))
    }

    fn visit_stamps(&self, visit: &mut dyn FnMut(&crate::Stamp)) {
        self.app.visit_stamps(visit);
    }

    /// The application state's pieces; the lease record travels with the first.
    fn split(&self, parts: usize) -> Vec<Self> {
        let mut pieces: Vec<Self> = self
            .app
            .split(parts)
            .into_iter()
            .map(|app| State { lease: None, app })
            .collect();
        match pieces.first_mut() {
            Some(first) => first.lease = self.lease,
            None if self.lease.is_some() => pieces.push(State {
                lease: self.lease,
                app: S::default(),
            }),
            None => {}
        }
        pieces
    }
}

/// The highest term among a stored state's stamps and lease record, after checking
/// that each is in range.
pub(super) fn stored_terms<S: Merge>(state: &State<S>) -> Result<u64, String> {
    let mut top = state.lease.map_or(0, |l| l.term);
    let mut bad = None;
    state.app.visit_stamps(&mut |stamp| {
        if stamp.version > crate::stamp::MAX_VERSION {
            bad.get_or_insert(stamp.version);
        }
        top = top.max(stamp.term());
    });
    if let Some(v) = bad {
        return Err(format!(
            "version {v} is above {}",
            crate::stamp::MAX_VERSION
        ));
    }
    if top > crate::stamp::MAX_TERM {
        return Err(format!("term {top} is above {}", crate::stamp::MAX_TERM));
    }
    Ok(top)
}

/// FNV-1a, 64-bit: a stable hash for state digests (the same on every platform).
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
