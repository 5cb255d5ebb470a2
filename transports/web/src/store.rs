//! localStorage as a replica's [`Store`], and the in-memory fallback.
//!
//! Every tab of a group shares one localStorage, so each replica keeps a log of its own:
//! record `n` of replica `s` lives under the key `replisync:<group>:log:<s>:<n>` (see
//! [`crate::names`]). A record is written once and never changed:
//!
//! - [`append`](Store::append) writes the delta records under the next key, so a small
//!   write costs a small `setItem`, whatever the size of the state;
//! - [`compact`](Store::compact) writes the whole state under the next key, then removes
//!   this replica's older keys, and the other replicas' keys it read when it loaded
//!   (their records are part of the state it compacted; keys written since, by tabs
//!   still alive, are left alone). A crash between the two steps leaves both, which
//!   restores to the same state: records are states, merged by a join;
//! - [`load`](Store::load) concatenates every replica's log of the group (each in
//!   order), so a tab opened later restores what every tab before it persisted, and the
//!   logs of tabs that are gone are folded into its first compaction.
//!
//! localStorage holds strings: a record that is UTF-8 (the JSON store codec, the
//! default) is kept as text after a `t`, readable in the browser's developer tools;
//! other bytes as base64 after a `b`.
//!
//! Where localStorage does not work (disabled, a sandboxed frame, a full quota), the
//! store keeps its log in memory: the state then lives as long as the page (and comes
//! back from memory after the back-forward cache), and the driver reports it as
//! degraded. The log is mirrored in memory in any case, so that a write refused by a
//! full quota is not lost: the next persist writes the whole log again.

use std::fmt;

use replisync::{SourceId, Store};
use web_sys::{Storage, Window};

use crate::base64;
use crate::error::describe;
use crate::names::Names;

/// Where the state is kept between page loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreKind {
    /// The page's localStorage, shared by the tabs of the origin.
    LocalStorage,
    /// Memory only: the state outlives no page load.
    Memory,
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::LocalStorage => "local-storage",
            StoreKind::Memory => "memory",
        })
    }
}

/// Where to keep the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageChoice {
    /// localStorage where it works, else memory (reported as degraded).
    #[default]
    Auto,
    /// localStorage, or fail to open.
    LocalStorage,
    /// Memory, by choice (not reported as degraded).
    Memory,
}

/// A store operation that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    /// What was being done.
    pub operation: &'static str,
    /// What the browser said (`QuotaExceededError: ...`, say).
    pub detail: String,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "localStorage {} failed ({}); the state is kept in memory and written again at the next change",
            self.operation, self.detail
        )
    }
}

impl std::error::Error for StoreError {}

/// The store of one replica of a group: its own log in localStorage (or memory),
/// restoring from every replica's log. See the [module docs](self).
#[derive(Debug)]
pub struct WebStore {
    storage: Option<Storage>,
    names: Names,
    me: SourceId,
    /// The next sequence number of this replica's records.
    next_seq: u64,
    /// This replica's keys, oldest first.
    own_keys: Vec<String>,
    /// Other replicas' keys read by the last load: folded into the next compaction.
    absorbed: Vec<String>,
    /// This replica's log, in memory.
    mirror: Vec<u8>,
    /// The last write to localStorage failed: the next persist rewrites the log whole.
    failed: bool,
}

impl WebStore {
    /// The store of replica `me` of `names`' group: in `window`'s localStorage as
    /// `choice` allows, tested by a write. The second value says why a fallback to
    /// memory was taken.
    pub(crate) fn open(
        window: &Window,
        names: &Names,
        me: SourceId,
        choice: StorageChoice,
    ) -> (WebStore, Result<(), String>) {
        let storage = match choice {
            StorageChoice::Memory => Ok(None),
            _ => working_local_storage(window, names).map(Some),
        };
        let (storage, result) = match storage {
            Ok(s) => (s, Ok(())),
            Err(why) => (None, Err(why)),
        };
        let store = WebStore {
            storage,
            names: names.clone(),
            me,
            next_seq: 0,
            own_keys: Vec::new(),
            absorbed: Vec::new(),
            mirror: Vec::new(),
            failed: false,
        };
        (store, result)
    }

    /// Where the state is kept.
    pub fn kind(&self) -> StoreKind {
        match self.storage {
            Some(_) => StoreKind::LocalStorage,
            None => StoreKind::Memory,
        }
    }

    /// The localStorage in use, if any.
    pub(crate) fn local_storage(&self) -> Option<&Storage> {
        self.storage.as_ref()
    }

    fn error(operation: &'static str, e: wasm_bindgen::JsValue) -> StoreError {
        StoreError {
            operation,
            detail: describe(&e),
        }
    }

    /// Writes the whole mirror under a new key, then removes what it replaces.
    fn write_whole(&mut self) -> Result<(), StoreError> {
        let Some(storage) = &self.storage else {
            return Ok(());
        };
        let key = self.names.log_key(self.me, self.next_seq);
        if let Err(e) = storage.set_item(&key, &encode_value(&self.mirror)) {
            self.failed = true;
            return Err(Self::error("setItem (compaction)", e));
        }
        self.next_seq += 1;
        for old in self.own_keys.drain(..).chain(self.absorbed.drain(..)) {
            let _ = storage.remove_item(&old);
        }
        self.own_keys.push(key);
        self.failed = false;
        Ok(())
    }
}

impl Store for WebStore {
    type Error = StoreError;

    fn load(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(storage) = &self.storage else {
            return Ok((!self.mirror.is_empty()).then(|| self.mirror.clone()));
        };
        let count = storage.length().map_err(|e| Self::error("length", e))?;
        let mut logs: Vec<(bool, SourceId, u64, String)> = Vec::new();
        for i in 0..count {
            let Some(key) = storage.key(i).map_err(|e| Self::error("key", e))? else {
                continue;
            };
            if let Some((source, seq)) = self.names.parse_log_key(&key) {
                logs.push((source == self.me, source, seq, key));
            }
        }
        // Other replicas' logs first, then this one's; each log in its own order.
        logs.sort();
        let mut bytes = Vec::new();
        self.own_keys.clear();
        self.absorbed.clear();
        self.mirror.clear();
        for (own, _, seq, key) in logs {
            // A key removed since it was listed (another tab compacted) is skipped:
            // the compaction that removed it holds its records.
            let Some(value) = storage
                .get_item(&key)
                .map_err(|e| Self::error("getItem", e))?
            else {
                continue;
            };
            let record = decode_value(&value).ok_or_else(|| StoreError {
                operation: "getItem",
                detail: format!("the value under {key:?} is not a record of this library"),
            })?;
            bytes.extend_from_slice(&record);
            if own {
                self.mirror.extend_from_slice(&record);
                self.next_seq = self.next_seq.max(seq + 1);
                self.own_keys.push(key);
            } else {
                self.absorbed.push(key);
            }
        }
        Ok((!bytes.is_empty()).then_some(bytes))
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.mirror.extend_from_slice(bytes);
        if self.failed {
            return self.write_whole();
        }
        let Some(storage) = &self.storage else {
            return Ok(());
        };
        let key = self.names.log_key(self.me, self.next_seq);
        match storage.set_item(&key, &encode_value(bytes)) {
            Ok(()) => {
                self.next_seq += 1;
                self.own_keys.push(key);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(Self::error("setItem", e))
            }
        }
    }

    fn compact(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.mirror.clear();
        self.mirror.extend_from_slice(bytes);
        self.write_whole()
    }
}

/// The window's localStorage, if reading it, writing and removing a key all work.
pub(crate) fn working_local_storage(window: &Window, names: &Names) -> Result<Storage, String> {
    let storage = window
        .local_storage()
        .map_err(|e| describe(&e))?
        .ok_or_else(|| "window.localStorage is null".to_owned())?;
    let probe = names.probe_key();
    storage.set_item(&probe, "1").map_err(|e| describe(&e))?;
    storage.remove_item(&probe).map_err(|e| describe(&e))?;
    Ok(storage)
}

/// A record as a localStorage string: `t` and the text if it is UTF-8, else `b` and
/// base64.
fn encode_value(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("t{text}"),
        Err(_) => format!("b{}", base64::encode(bytes)),
    }
}

fn decode_value(value: &str) -> Option<Vec<u8>> {
    if let Some(text) = value.strip_prefix('t') {
        Some(text.as_bytes().to_vec())
    } else {
        base64::decode(value.strip_prefix('b')?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    fn fresh(group: &str, me: u128) -> WebStore {
        let window = web_sys::window().unwrap();
        let names = Names::new(group).unwrap();
        let (store, ok) = WebStore::open(
            &window,
            &names,
            SourceId::from_u128(me),
            StorageChoice::Auto,
        );
        ok.unwrap();
        store
    }

    fn clear(group: &str) {
        let storage = web_sys::window().unwrap().local_storage().unwrap().unwrap();
        let names = Names::new(group).unwrap();
        let prefix = names.log_key(SourceId::NIL, 0);
        let prefix = &prefix[..prefix.find("log:").unwrap()];
        let keys: Vec<String> = (0..storage.length().unwrap())
            .filter_map(|i| storage.key(i).unwrap())
            .filter(|k| k.starts_with(prefix))
            .collect();
        for k in keys {
            storage.remove_item(&k).unwrap();
        }
    }

    #[wasm_bindgen_test]
    fn values_round_trip_as_text_or_base64() {
        for bytes in [&b"{\"a\":1}\n0badf00d\n"[..], &[0xff, 0, 1][..], &[][..]] {
            assert_eq!(decode_value(&encode_value(bytes)).as_deref(), Some(bytes));
        }
        assert!(encode_value(b"text").starts_with('t'));
        assert!(encode_value(&[0xff]).starts_with('b'));
        assert_eq!(decode_value("x"), None);
    }

    #[wasm_bindgen_test]
    fn logs_of_every_replica_load_and_fold_into_a_compaction() {
        let group = "store-unit-fold";
        clear(group);
        let mut a = fresh(group, 1);
        assert_eq!(a.load().unwrap(), None);
        a.compact(b"A0").unwrap();
        a.append(b"A1").unwrap();
        let mut b = fresh(group, 2);
        assert_eq!(b.load().unwrap().as_deref(), Some(&b"A0A1"[..]));
        b.append(b"B0").unwrap();
        // A writes more after B loaded: B's compaction must leave it.
        a.append(b"A2").unwrap();
        b.compact(b"A0A1B0").unwrap();
        let mut c = fresh(group, 3);
        assert_eq!(c.load().unwrap().as_deref(), Some(&b"A2A0A1B0"[..]));
        // A's own compaction replaces all of its keys.
        a.compact(b"A*").unwrap();
        assert_eq!(
            fresh(group, 4).load().unwrap().as_deref(),
            Some(&b"A*A0A1B0"[..])
        );
        // Its own log comes back to a replica that keeps its id (a page restored
        // from the back-forward cache).
        let mut again = fresh(group, 1);
        let all = again.load().unwrap().unwrap();
        assert!(all.ends_with(b"A*"), "own log last: {all:?}");
        clear(group);
    }

    #[wasm_bindgen_test]
    fn memory_store_keeps_its_log() {
        let window = web_sys::window().unwrap();
        let names = Names::new("store-unit-memory").unwrap();
        let (mut store, ok) = WebStore::open(
            &window,
            &names,
            SourceId::from_u128(1),
            StorageChoice::Memory,
        );
        assert!(ok.is_ok());
        assert_eq!(store.kind(), StoreKind::Memory);
        store.compact(b"base").unwrap();
        store.append(b"+d").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some(&b"base+d"[..]));
    }
}
