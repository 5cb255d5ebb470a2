//! The bundle behind the JavaScript API: a map of JSON values.

use replisync::{Lww, LwwMap, Merge};
use serde::{Deserialize, Serialize};

/// A JSON value kept as its text (as `JSON.stringify` wrote it).
///
/// Kept as text so that both codecs carry it (postcard cannot decode a self-describing
/// value) and JavaScript parses it with its own `JSON.parse`.
///
/// ```
/// use replisync_web::JsonText;
///
/// let value = JsonText::new("{\"seconds\":90}");
/// assert_eq!(value.as_str(), "{\"seconds\":90}");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonText(String);

impl JsonText {
    /// Wraps JSON text; the caller vouches that it is JSON.
    pub fn new(text: impl Into<String>) -> Self {
        JsonText(text.into())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The state shared by a JavaScript group: string keys to JSON values, each key a
/// last-writer-wins register (a deletion is a tombstone, so it converges too).
///
/// ```
/// use replisync::{Hlc, Merge, SourceId};
/// use replisync_web::{JsonMap, JsonText};
///
/// let mut hlc = Hlc::default();
/// let mut a = JsonMap::default();
/// let delta = JsonMap {
///     entries: a.entries.write_insert("deadline".into(), JsonText::new("90"), &mut hlc.writer(SourceId::from_u128(1), 1_000)),
/// };
/// let _ = a.merge(&delta);
/// let mut b = JsonMap::default();
/// let _ = b.merge(&delta);
/// assert_eq!(a, b);
/// assert_eq!(b.entries.get("deadline").map(JsonText::as_str), Some("90"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
pub struct JsonMap {
    /// The entries.
    pub entries: LwwMap<String, JsonText>,
}

impl JsonMap {
    /// The register of `key`, live or tombstoned.
    pub fn register(&self, key: &str) -> Option<&Lww<JsonText>> {
        self.entries.register(key)
    }
}
