//! # replisync
//!
//! Keeps one piece of shared state in step across replicas: browser tabs, threads,
//! processes, hosts.
//!
//! The state is an application struct of **last-writer-wins registers** ([`Lww`],
//! [`LwwMap`]), each write ordered by its [`Stamp`] `(version, updated_at, source)`.
//! Merging is a join ([`Merge`]): commutative, associative and idempotent, so messages
//! may be duplicated, reordered, delayed or replayed and every replica still ends with
//! the same state. A write returns a **delta** of the same type; deltas merge into each
//! other and into states, so batching is just merging.
//!
//! In leader mode a [`Lease`] record decides which one replica acts (runs the timers,
//! say); its term is a fencing token, and [`LeaseWatch`] measures expiry on the local
//! monotonic clock only.
//!
//! ## The pieces, in the order a newcomer meets them
//!
//! 1. [`SourceId`]: who a replica is.
//! 2. [`Now`] and [`Clock`]: time is passed in; the core never reads a clock.
//! 3. [`Hlc`] issues the times of writes; [`Hlc::writer`] gives a [`Writer`] that mints
//!    [`Stamp`]s.
//! 4. [`Lww`] and [`LwwMap`] hold values; their writes return deltas.
//! 5. `#[derive(Merge)]` makes the application's struct of registers a [`Merge`] type.
//! 6. [`Lease`], [`LeaseConfig`] and [`LeaseWatch`] for leader mode.
//!
//! ```
//! use replisync::{Hlc, Lww, LwwMap, Merge, SourceId};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
//! struct Shared {
//!     title: Lww<String>,
//!     scores: LwwMap<String, u32>,
//! }
//!
//! let (alice, bob) = (SourceId::from_u128(1), SourceId::from_u128(2));
//! let (mut alice_clock, mut bob_clock) = (Hlc::default(), Hlc::default());
//! let (mut at_alice, mut at_bob) = (Shared::default(), Shared::default());
//!
//! // Each replica writes; each write is a delta.
//! let mut w = alice_clock.writer(alice, 1_000);
//! let from_alice = Shared { title: at_alice.title.write("Game night".into(), &mut w), ..Default::default() };
//! let _ = at_alice.merge(&from_alice);
//!
//! let mut w = bob_clock.writer(bob, 1_001);
//! let from_bob = Shared { scores: at_bob.scores.write_insert("bob".into(), 3, &mut w), ..Default::default() };
//! let _ = at_bob.merge(&from_bob);
//!
//! // Deltas cross in any order; both end the same.
//! let _ = at_alice.merge(&from_bob);
//! let _ = at_bob.merge(&from_alice);
//! assert_eq!(at_alice, at_bob);
//! assert_eq!(at_bob.title.get().map(String::as_str), Some("Game night"));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// `#[derive(Merge)]` names `::replisync`, which this lets the crate's own code use too.
extern crate self as replisync;

/// The README's code compiles and runs as a doc test.
#[cfg(all(doctest, not(target_arch = "wasm32")))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod authority;
mod bundle;
mod clock;
mod config;
mod event;
mod hlc;
mod lease;
mod lww;
mod map;
mod merge;
mod replica;
mod source;
mod stamp;
mod store;
mod wire;
mod writer;

pub use authority::{LeaseAuthority, MutexAuthority, Refused};
pub use bundle::{Bundle, Request};
#[cfg(not(target_arch = "wasm32"))]
pub use clock::SystemClock;
pub use clock::{Clock, ManualClock, Now};
pub use config::{Config, ConfigError, SyncMode};
pub use event::{Degradation, Event, LeadershipLoss, Rejection};
pub use hlc::{ClockError, Hlc, DEFAULT_MAX_DRIFT_MS};
pub use lease::{Lease, LeaseConfig, LeaseConfigError, LeaseError, LeaseWatch};
pub use lww::Lww;
pub use map::LwwMap;
pub use merge::{Fields, Merge, Merged};
pub use replica::{Invalid, Lifecycle, Persist, Replica, Stats, WriteError};
/// `#[derive(Merge)]`: implements [`Merge`] and [`Fields`] for a struct whose fields
/// are all [`Merge`], merging every field (see the trait's docs).
pub use replisync_derive::Merge;
pub use source::SourceId;
pub use stamp::{Stamp, MAX_TERM, MAX_VERSION, TERM_SHIFT};
pub use store::{MemoryStore, Store};
pub use wire::{Codec, DecodeError, SCHEMA_VERSION};
pub use writer::{StampError, Writer};

mod hub;
mod network;
mod rng;
mod transport;

pub use hub::{Hub, HubLink};
pub use network::{Delivery, Faults, FaultsError, NetworkStats, NodeId, SimNetwork};
pub use transport::Transport;
#[cfg(not(target_arch = "wasm32"))]
mod driver;
#[cfg(not(target_arch = "wasm32"))]
pub use driver::{Driver, DriverError, Handle};
