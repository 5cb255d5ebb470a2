//! Where a replica's state is kept between runs.

use std::sync::{Arc, Mutex, PoisonError};

use crate::Persist;

/// Where a replica's state is kept between runs: a log of bytes that the replica
/// appends deltas to and now and then compacts onto a whole state
/// ([`Replica::poll_persist`](crate::Replica::poll_persist) says which), and that it
/// restores from ([`Replica::restore`](crate::Replica::restore)) when it starts.
///
/// A store only moves bytes; it never looks inside them. The replica's records are
/// framed and checked, so a store need not detect corruption, but it should make a
/// compaction atomic (write a new file, then rename it over the old, say): a crash
/// during a compaction must leave either the old log or the new one. A crash during an
/// append may leave the last record cut short; the replica drops such a record and
/// compacts it away.
///
/// If `load` fails, a driver never saves during that run, so data it could not read is
/// never overwritten (the replica applies the same rule to bytes it cannot decode).
/// The trait asks for no `Send`: a browser's store holds JavaScript values; the native
/// driver asks for `Send` where it moves a store to its thread.
pub trait Store {
    /// Why loading or saving failed.
    type Error: std::error::Error + 'static;

    /// All the bytes saved (the log), or `None` if nothing was ever saved.
    ///
    /// # Errors
    ///
    /// The store's error when it could not be read.
    fn load(&mut self) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Appends `bytes` to the log.
    ///
    /// # Errors
    ///
    /// The store's error when the bytes could not be saved.
    fn append(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Replaces the whole log with `bytes`, atomically.
    ///
    /// # Errors
    ///
    /// The store's error when the bytes could not be saved (the old log must then
    /// still be there).
    fn compact(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Carries out what the replica asked.
    ///
    /// # Errors
    ///
    /// The store's error.
    fn persist(&mut self, persist: &Persist) -> Result<(), Self::Error> {
        match persist {
            Persist::Append(bytes) => self.append(bytes),
            Persist::Compact(bytes) => self.compact(bytes),
        }
    }
}

/// A [`Store`] in memory. Clones share the same log, so a test can restart a replica
/// from the store an earlier one saved to.
///
/// ```
/// use replisync::{MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// let mut writer = store.clone();
/// writer.compact(b"base")?;
/// writer.append(b"+delta")?;
/// assert_eq!(store.bytes().as_deref(), Some(&b"base+delta"[..]));
/// # Ok::<(), std::convert::Infallible>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    bytes: Arc<Mutex<Option<Vec<u8>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A copy of the log.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        self.bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Store for MemoryStore {
    type Error = std::convert::Infallible;

    fn load(&mut self) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.bytes())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(Vec::new)
            .extend_from_slice(bytes);
        Ok(())
    }

    fn compact(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        *self.bytes.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes.to_vec());
        Ok(())
    }
}
