//! # replisync-web
//!
//! replisync in the browser: the tabs of one web application keep a shared state in
//! step. A [`WebReplica`] drives the core's sans-IO [`Replica`](replisync::Replica)
//! from the page's callbacks:
//!
//! - messages travel on a `BroadcastChannel` named after the group, as `Uint8Array`s
//!   (where BroadcastChannel is missing, through localStorage and the `storage` event);
//! - the state is kept in localStorage, one log per tab under the group's keys, with
//!   deltas appended and compacted as the core asks (see [`store`]); where localStorage
//!   does not work, in memory, reported as degraded;
//! - in leader mode the lease is made exclusive by the Web Locks API where the browser
//!   has it; otherwise the gossip rules of the core settle it;
//! - the replica's deadline is one `setTimeout`; `visibilitychange`, `freeze`,
//!   `resume`, `pagehide` and `pageshow` reach it as lifecycle signals. Timers of
//!   hidden tabs run late (once a second, or once a minute after five minutes hidden),
//!   and nothing rests on them being on time.
//!
//! For applications not written in Rust, the crate is also a JavaScript package
//! (`openGroup`, [`Group`]); `README.md` says how to build it.
//!
//! Everything here is for `wasm32-unknown-unknown`; on other targets the crate is
//! empty.
#![cfg(target_arch = "wasm32")]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod base64;
mod channel;
mod clock;
mod driver;
mod error;
mod js;
mod json;
mod listeners;
mod locks;
pub mod names;
pub mod store;

pub use channel::{ChannelChoice, ChannelKind};
pub use clock::BrowserClock;
pub use driver::{Leadership, ListenerId, Options, WebReplica};
pub use error::{GroupError, OpenError};
pub use js::{open_group, Group};
pub use json::{JsonMap, JsonText};
pub use listeners::JsListeners;
#[doc(hidden)]
pub use locks::WebLockAuthority;
pub use store::{StorageChoice, StoreError, StoreKind, WebStore};

#[cfg(test)]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
