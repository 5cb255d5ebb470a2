//! What replisync's tests, benchmarks and transport crates share (not published):
//!
//! - [`sim`]: the deterministic swarm simulator's world, its faults and its checks of
//!   every invariant;
//! - [`bench`](mod@bench): replicas driven by hand, so that single messages can be held back,
//!   altered or delivered late;
//! - [`mirror`]: the wire and store formats as another peer writes them, to craft
//!   messages the library would never send;
//! - `conformance`: the suite every transport runs (not on wasm32, which has no
//!   native `Driver`);
//! - [`lock`]: the table of a lock authority's behaviour, which the core's
//!   `LockArbiter` and every lock adapter run.

#![forbid(unsafe_code)]

pub mod bench;
// The suite drives the native `Driver` and `Transport`, which the core leaves out on
// wasm32; the rest (the lock table among them) builds there too, for the browser tests.
#[cfg(not(target_arch = "wasm32"))]
pub mod conformance;
pub mod lock;
pub mod mirror;
pub mod sim;
