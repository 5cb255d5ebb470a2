//! The errors of the browser driver, one per operation.

use replisync::{ConfigError, WriteError};
use wasm_bindgen::JsValue;

use crate::ChannelKind;

/// Why a group could not be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// The group name is empty or too long.
    GroupName(String),
    /// The configuration contradicts itself.
    Config(ConfigError),
    /// No `window`: the driver runs in a page (not in a worker, nor outside a browser).
    NoWindow,
    /// The channel the options insist on is missing from this browser.
    ChannelUnavailable {
        /// The channel asked for.
        kind: ChannelKind,
        /// What the browser said.
        detail: String,
    },
    /// localStorage was insisted on (`StorageChoice::LocalStorage`) and does not work.
    StorageUnavailable(String),
    /// `crypto.getRandomValues` failed, so no replica id could be drawn (pass one in
    /// the options).
    NoRandomness(String),
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::GroupName(why) => write!(f, "bad group name: {why}"),
            OpenError::Config(e) => write!(f, "bad configuration: {e}"),
            OpenError::NoWindow => write!(
                f,
                "no window: open groups from a page's main thread (not from a worker)"
            ),
            OpenError::ChannelUnavailable { kind, detail } => write!(
                f,
                "the {kind} channel was asked for and is not available here ({detail}); use the automatic choice to fall back"
            ),
            OpenError::StorageUnavailable(detail) => write!(
                f,
                "localStorage was asked for and does not work here ({detail}); use the automatic choice to fall back to memory"
            ),
            OpenError::NoRandomness(detail) => write!(
                f,
                "crypto.getRandomValues failed ({detail}); pass a replica id in the options"
            ),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for OpenError {
    fn from(e: ConfigError) -> Self {
        OpenError::Config(e)
    }
}

/// Why a write or a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupError {
    /// The group was closed; open it again.
    Closed,
    /// The replica refused the write (see [`WriteError`]): in leader mode, a follower
    /// sends a request instead.
    Write(WriteError),
}

impl core::fmt::Display for GroupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GroupError::Closed => write!(f, "the group is closed; open it again"),
            GroupError::Write(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for GroupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GroupError::Write(e) => Some(e),
            GroupError::Closed => None,
        }
    }
}

impl From<WriteError> for GroupError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Left => GroupError::Closed,
            e => GroupError::Write(e),
        }
    }
}

/// A JavaScript exception as text: `Name: message` for an `Error`, the string itself,
/// or the value's debug form.
pub(crate) fn describe(value: &JsValue) -> String {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        let name = String::from(e.name());
        let message = String::from(e.message());
        return if message.is_empty() {
            name
        } else {
            format!("{name}: {message}")
        };
    }
    match value.as_string() {
        Some(s) => s,
        None => format!("{value:?}"),
    }
}

use wasm_bindgen::JsCast as _;
