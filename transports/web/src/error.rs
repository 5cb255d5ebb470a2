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

/// A JavaScript exception as text: `Name: message` for an error (a `DOMException` or
/// an `Error`, of any realm: a frame's errors are not `instanceof` this one's), the
/// string itself, or the value's debug form.
pub(crate) fn describe(value: &JsValue) -> String {
    if let Some(s) = value.as_string() {
        return s;
    }
    if value.is_object() {
        let field = |name: &str| {
            js_sys::Reflect::get(value, &JsValue::from_str(name))
                .ok()
                .and_then(|v| v.as_string())
        };
        if let (Some(name), message) = (field("name"), field("message")) {
            return match message {
                Some(m) if !m.is_empty() => format!("{name}: {m}"),
                _ => name,
            };
        }
    }
    format!("{value:?}")
}
