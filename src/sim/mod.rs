//! The simulated network: deterministic, single-threaded, sans-IO, with fault injection.
//!
//! [`SimNetwork`] carries opaque messages between [`NodeId`]s, each delivery shaped by
//! the link's [`Faults`] (loss, duplication, delay, reordering) and drawn from one
//! seeded [`Rng`], so a seed replays exactly. The test kit's simulator and the in-process
//! hub (`Hub`, with the `driver` feature) are built on it.

pub(crate) mod network;
mod rng;

pub use network::{Delivery, Faults, FaultsError, NetworkStats, NodeId, SimNetwork};
pub use rng::Rng;
