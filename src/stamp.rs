//! The order of writes: [`Stamp`] (also at the crate root) and the limits of its
//! version, which packs a lease term above a count of writes ([`TERM_SHIFT`],
//! [`MAX_VERSION`], [`MAX_TERM`]). A peer in another language or a recovery tool reads
//! them here; a replica refuses a peer's version or term past them.

use serde::{Deserialize, Serialize};

use crate::SourceId;

/// When and by whom a register was written: ordered by `version`, then `updated_at`,
/// then `source`.
///
/// - `version` is a per-register Lamport counter: a write sets it to one more than the
///   highest version its replica has seen for that register, so a write that saw
///   another always wins over it. In leader mode the writer's lease term sits in the
///   high 32 bits (see [`Writer::with_term`](crate::Writer::with_term)), so every
///   write of a newer term outranks every write of an older one.
/// - `updated_at` (milliseconds since the Unix epoch, from the [`Hlc`](crate::Hlc))
///   decides between concurrent writes.
/// - `source` makes the order total.
///
/// [`Stamp::ZERO`] is the bottom: the stamp of a register never written.
///
/// ```
/// use replisync::{SourceId, Stamp};
///
/// let a = Stamp::new(1, 5_000, SourceId::from_u128(9));
/// let b = Stamp::new(2, 1_000, SourceId::from_u128(1));
/// assert!(a < b, "a higher version wins even with an older time");
/// assert!(Stamp::ZERO < a);
/// ```
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Stamp {
    /// The per-register Lamport counter (with the term in its high bits in leader mode).
    pub version: u64,
    /// Hybrid-logical time of the write, in milliseconds since the Unix epoch.
    pub updated_at: u64,
    /// The replica that wrote.
    pub source: SourceId,
}

/// How many low bits of a version count writes within one term; the term sits above.
pub const TERM_SHIFT: u32 = 32;

/// The greatest version a stamp may carry: 2^63 - 1. A replica refuses a peer's stamp
/// above it, and a write that would need a greater version fails rather than wrap or
/// stand still, so no counter can be exhausted by accident (2^63 writes to one register)
/// and a corrupted or hostile version cannot cut a register off from its next writer.
pub const MAX_VERSION: u64 = (1 << 63) - 1;

/// The greatest lease term: the term must fit the version's high bits under
/// [`MAX_VERSION`], so 2^31 - 1. A replica refuses terms above it.
pub const MAX_TERM: u64 = MAX_VERSION >> TERM_SHIFT;

impl Stamp {
    /// The bottom stamp: no write yet.
    pub const ZERO: Stamp = Stamp {
        version: 0,
        updated_at: 0,
        source: SourceId::NIL,
    };

    /// A stamp from its three parts.
    pub const fn new(version: u64, updated_at: u64, source: SourceId) -> Self {
        Stamp {
            version,
            updated_at,
            source,
        }
    }

    /// Whether this is the bottom stamp.
    pub fn is_zero(&self) -> bool {
        *self == Stamp::ZERO
    }

    /// The lease term encoded in the version's high bits (0 outside leader mode).
    pub const fn term(&self) -> u64 {
        self.version >> TERM_SHIFT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: u64, t: u64, src: u128) -> Stamp {
        Stamp::new(v, t, SourceId::from_u128(src))
    }

    #[test]
    fn version_then_time_then_source() {
        assert!(s(1, 9, 9) < s(2, 0, 0));
        assert!(s(1, 1, 9) < s(1, 2, 0));
        assert!(s(1, 1, 1) < s(1, 1, 2));
        assert_eq!(s(1, 1, 1), s(1, 1, 1));
    }

    #[test]
    fn the_greatest_term_fits_the_greatest_version() {
        assert_eq!(MAX_TERM, (1 << 31) - 1);
        assert_eq!(s(MAX_VERSION, 0, 0).term(), MAX_TERM);
    }

    #[test]
    fn term_is_the_high_bits() {
        assert_eq!(s((4 << TERM_SHIFT) + 7, 0, 0).term(), 4);
        assert!(s((3 << TERM_SHIFT) + 1_000_000, 9, 9) < s(4 << TERM_SHIFT, 0, 0));
    }
}
