//! Replica identity.

use core::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The identity of one replica: a UUID, unique per replica for its whole life.
///
/// The source id is the last component of every [`Stamp`](crate::Stamp), so it makes
/// the order of writes total, and it names the holder of a [`Lease`](crate::Lease).
/// Give each replica (each tab, thread or process) its own id; a replica that restarts
/// from its persisted state may keep it.
///
/// The core never draws randomness itself: [`SourceId::random`] exists on native
/// targets only; in the browser, pass 16 bytes from `crypto.getRandomValues` to
/// [`SourceId::from_random_bytes`].
///
/// ```
/// use replisync::SourceId;
///
/// let a = SourceId::from_u128(1);
/// let b = SourceId::from_u128(2);
/// assert!(a < b);
/// assert_eq!(a.to_string(), "00000000-0000-0000-0000-000000000001");
/// assert_eq!("00000000-0000-0000-0000-000000000001".parse::<SourceId>().unwrap(), a);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceId(Uuid);

impl SourceId {
    /// The nil id (all zero bits): the source of the bottom [`Stamp`](crate::Stamp).
    pub const NIL: SourceId = SourceId(Uuid::nil());

    /// A source id from a given number: for tests and simulations, where ids must be
    /// reproducible.
    pub const fn from_u128(value: u128) -> Self {
        SourceId(Uuid::from_u128(value))
    }

    /// A version-4 UUID built from 16 random bytes the caller drew (the browser's
    /// `crypto.getRandomValues`, say). The version and variant bits are set here.
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        SourceId(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    /// A fresh random (version-4) id from the operating system's randomness.
    ///
    /// Native targets only; see [`SourceId::from_random_bytes`] for the browser.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn random() -> Self {
        SourceId(Uuid::new_v4())
    }

    /// The id as a `u128` (big-endian bytes of the UUID).
    pub const fn as_u128(&self) -> u128 {
        self.0.as_u128()
    }

    /// The id as a UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for SourceId {
    fn from(value: Uuid) -> Self {
        SourceId(value)
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceId({})", self.0.hyphenated())
    }
}

impl core::str::FromStr for SourceId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(SourceId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_make_a_version_4_uuid() {
        let id = SourceId::from_random_bytes([0xff; 16]);
        assert_eq!(id.as_uuid().get_version_num(), 4);
        assert_ne!(id, SourceId::NIL);
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn random_ids_differ() {
        assert_ne!(SourceId::random(), SourceId::random());
    }

    #[test]
    fn order_follows_the_number() {
        assert!(SourceId::NIL < SourceId::from_u128(1));
        assert!(SourceId::from_u128(1) < SourceId::from_u128(u128::MAX));
    }
}
