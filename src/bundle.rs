//! What a replica can hold.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Fields, Merge};

/// The application's shared state: a struct of registers merged field by field, as
/// `#[derive(Merge)]` makes it, that serde can encode. Implemented for
/// every such type.
///
/// `Default` is the empty state; it is also the shape of a delta (the registers a write
/// did not touch stay at their bottom).
pub trait Bundle:
    Merge + Fields + Clone + Default + PartialEq + Serialize + DeserializeOwned + 'static
{
}

impl<T> Bundle for T where
    T: Merge + Fields + Clone + Default + PartialEq + Serialize + DeserializeOwned + 'static
{
}

/// An application request forwarded to the leader: anything serde can encode. `()` when
/// the application has none.
pub trait Request: Clone + Serialize + DeserializeOwned + 'static {}

impl<T> Request for T where T: Clone + Serialize + DeserializeOwned + 'static {}
