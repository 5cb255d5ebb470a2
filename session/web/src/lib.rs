//! # replisync-session-web
//!
//! The session idle-timeout service of [`replisync_session`] in browser tabs (form 4
//! of the service): each tab runs the service over the browser driver of
//! [`replisync_web`] (BroadcastChannel between tabs, localStorage, one leader under Web
//! Locks), and every tab shows the same countdown, computed from the shared absolute
//! deadlines.
//!
//! - [`WebSession`]: the service in one tab, for Rust code compiled to wasm.
//! - `openSession` and the `SessionTab` class: the same for JavaScript (the page in
//!   `static/` uses them). `build-page` builds the page; `README.md` says how to open
//!   it.
//!
//! Everything here is for `wasm32-unknown-unknown`; on other targets the crate is
//! empty.
#![cfg(target_arch = "wasm32")]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod js;
mod service;

pub use js::{open_session, SessionTab};
pub use service::{Notice, WebSession};
