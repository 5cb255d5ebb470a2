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
//! ## The replica: a sans-IO state machine
//!
//! A [`Replica`] has no threads, sockets, clocks or randomness inside (the shape of
//! quinn-proto and str0m). Its methods are of four kinds:
//!
//! - **inputs**, each with the current [`Now`] first:
//!   [`handle_message`](Replica::handle_message) (bytes from the transport),
//!   [`handle_timeout`](Replica::handle_timeout) (its deadline came),
//!   [`handle_lifecycle`](Replica::handle_lifecycle) (hidden, resumed, leaving),
//!   [`handle_authority`](Replica::handle_authority) (a lease authority's answer),
//!   [`write`](Replica::write) and [`request`](Replica::request) (the application), and
//!   [`restore`](Replica::restore) once before the first input;
//! - **outputs**, drained after every input in one loop: [`poll_output`](Replica::poll_output)
//!   until it returns [`Output::Timeout`] (the drain order is documented on
//!   [`Output`]); or one kind at a time:
//!   [`poll_transmit`](Replica::poll_transmit) (bytes to broadcast),
//!   [`poll_persist`](Replica::poll_persist) (a [`Persist`] for the [`Store`]),
//!   [`poll_event`](Replica::poll_event) (an [`Event`] for the application),
//!   [`poll_authority`](Replica::poll_authority) (a request for the lease
//!   [authority](authority::AuthorityRequest)), and
//!   [`poll_timeout`](Replica::poll_timeout) (when to call `handle_timeout` next);
//! - **getters**: [`state`](Replica::state), [`is_leader`](Replica::is_leader),
//!   [`leader`](Replica::leader), [`lease`](Replica::lease), [`stats`](Replica::stats);
//! - **setup**: [`Replica::new`], [`Replica::with_authority`].
//!
//! The inputs and the one output are the [`Machine`] trait: a layer above the replica
//! (a service that wraps one) implements it too, and every driver drives either
//! without knowing which.
//!
//! A complete loop over two replicas, with the network, the store and the clock done
//! by hand (a driver does this for you: [`Driver`] on a native thread over any
//! [`Transport`]):
//!
//! ```
//! use replisync::{Config, Event, Lww, Merge, Now, Replica, SourceId, Store, MemoryStore};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
//! struct Doc { title: Lww<String> }
//!
//! let mut replicas: Vec<Replica<Doc>> = (1..=2)
//!     .map(|n| Replica::new(Config::distributed(), SourceId::from_u128(n)).unwrap())
//!     .collect();
//! let mut stores = vec![MemoryStore::new(), MemoryStore::new()];
//! let mut changed = [0, 0];
//! let mut now = Now::new(1_700_000_000_000, 0);
//!
//! // A write fills an empty delta with what the `write*` methods return, called on the
//! // state `s`; several writes of one map go in with `LwwMap::write_insert_into`. A
//! // delta holding anything else is refused (`WriteError::NotMinted`, `Dropped`).
//! replicas[0].write(now, |s, d, w| d.title = s.title.write("hello".into(), w)).unwrap();
//! for _ in 0..100 {
//!     // Drain every replica's outputs: broadcast, persist, report.
//!     for i in 0..2 {
//!         while let Some(bytes) = replicas[i].poll_transmit() {
//!             replicas[1 - i].handle_message(now, &bytes);
//!         }
//!         while let Some(persist) = replicas[i].poll_persist() {
//!             stores[i].persist(&persist).unwrap();
//!         }
//!         while let Some(event) = replicas[i].poll_event() {
//!             changed[i] += matches!(event, Event::Changed { .. }) as usize;
//!         }
//!     }
//!     // Time passes to the earliest deadline; each replica due handles its timeout.
//!     let next = replicas.iter().filter_map(|r| r.poll_timeout()).min().unwrap();
//!     now = now.after(next.saturating_sub(now.mono_ms).max(1));
//!     for r in &mut replicas {
//!         if r.poll_timeout().is_some_and(|t| t <= now.mono_ms) {
//!             r.handle_timeout(now);
//!         }
//!     }
//! }
//! assert_eq!(replicas[1].state().title.get().map(String::as_str), Some("hello"));
//! assert!(changed[1] > 0);
//!
//! // A restart reads its store back.
//! let mut again: Replica<Doc> = Replica::new(Config::distributed(), SourceId::from_u128(2)).unwrap();
//! again.restore(now, &stores[1].load().unwrap().unwrap()).unwrap();
//! assert_eq!(again.state(), replicas[1].state());
//! ```
//!
//! ## What every transport guarantees
//!
//! A transport only moves opaque bytes between the replicas of a group; a store only
//! keeps them. Whatever the medium (in-process channels, files, a BroadcastChannel, a
//! multi-host engine) and whatever drives the replica (the native [`Driver`] through the
//! [`Transport`] trait, or browser callbacks calling the replica directly), a transport:
//!
//! - **must** deliver whole messages: each message that arrives is exactly the bytes of
//!   one broadcast by another member, never split, joined or cut (a damaged message is
//!   rejected by its integrity check, and counts as lost);
//! - **must not** hand a member its own broadcasts;
//! - **must** eventually deliver while connected: a member that stays connected gets
//!   most of what the others send (any message that arrives is enough to bring it up
//!   to date; loss only delays convergence);
//! - **must** make closing a disconnect the driver can see (the native contract: the
//!   incoming channel disconnects);
//! - **need not** guarantee delivery, order, uniqueness, timeliness or a membership
//!   view: the replica tolerates loss, reordering, duplication and delay, and learns its
//!   peers from the messages themselves; nor authentication or encryption (do that in
//!   the medium if it is not trusted);
//! - **should** not block for long when sending (queue or drop rather than wait on a
//!   slow peer), and keep errors for what the application should hear about (closed,
//!   message too large), not for a message dropped on purpose.
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
//! 7. [`Replica`], [`Config`] and [`Event`]; [`Store`] and [`Persist`]; [`Transport`],
//!    [`Hub`] and [`Driver`].
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

pub mod authority;
mod bundle;
mod clock;
mod config;
mod event;
pub mod format;
pub mod hlc;
mod lease;
mod lww;
mod machine;
mod map;
mod merge;
mod replica;
mod source;
pub mod stamp;
mod store;
mod wire;
mod writer;

pub use bundle::{Bundle, Request};
#[cfg(not(target_arch = "wasm32"))]
pub use clock::SystemClock;
pub use clock::{Clock, ManualClock, Now};
pub use config::{Config, ConfigError, SyncMode};
pub use event::{Degradation, Event, LeadershipLoss, Rejection};
pub use hlc::{ClockError, Hlc};
pub use lease::{Lease, LeaseConfig, LeaseConfigError, LeaseError, LeaseWatch};
pub use lww::Lww;
pub use machine::{Machine, Output};
pub use map::LwwMap;
/// What `#[derive(Merge)]` implements besides [`Merge`]: the field names, for
/// [`Event::Changed`]'s `fields`. Plumbing, not for implementing by hand.
#[doc(hidden)]
pub use merge::Fields;
pub use merge::{Merge, Merged};
pub use replica::{Invalid, Lifecycle, Persist, Replica, Stats, WriteError};
/// `#[derive(Merge)]`: implements [`Merge`] for a struct whose fields are all
/// [`Merge`], merging every field (see the trait's docs), and names the fields for
/// [`Event::Changed`].
pub use replisync_derive::Merge;
pub use source::SourceId;
pub use stamp::Stamp;
pub use store::{MemoryStore, Store};
pub use wire::{Codec, DecodeError};
pub use writer::{StampError, Writer};

pub mod sim;

// The native runtime, behind the default `driver` feature (native targets only).
#[cfg(all(feature = "driver", not(target_arch = "wasm32")))]
mod driver;
#[cfg(all(feature = "driver", not(target_arch = "wasm32")))]
mod hub;
#[cfg(all(feature = "driver", not(target_arch = "wasm32")))]
pub use driver::{Authority, Driver, DriverError, Handle, MutexAuthority, Transport};
#[cfg(all(feature = "driver", not(target_arch = "wasm32")))]
pub use hub::{Hub, HubLink};
