//! Where a driver keeps the replica's persisted state.

use std::sync::{Arc, Mutex, PoisonError};

/// Where a driver keeps the replica's persisted state: whole states as bytes, each
/// replacing the one before.
///
/// The driver loads once, before its thread starts, and restores the replica from what
/// it finds; then it saves every state the replica hands out
/// ([`Replica::poll_persist`]). If `load` fails, the driver never saves during that
/// run, so data it could not read is never overwritten (the same rule the replica
/// applies to bytes it cannot decode).
pub trait Store: Send + 'static {
    /// Why loading or saving failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The bytes saved last, or `None` if nothing was ever saved.
    ///
    /// # Errors
    ///
    /// The store's error when it could not be read.
    fn load(&mut self) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Replaces the saved bytes.
    ///
    /// # Errors
    ///
    /// The store's error when the bytes could not be saved.
    fn save(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// A [`Store`] in memory. Clones share the same bytes, so a test can restart a replica
/// from the store an earlier one saved to.
///
/// ```
/// use replisync::{MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// let mut writer = store.clone();
/// writer.save(b"state")?;
/// assert_eq!(store.bytes().as_deref(), Some(&b"state"[..]));
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

    /// A copy of the bytes saved last.
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

    fn save(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        *self.bytes.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes.to_vec());
        Ok(())
    }
}

/// A [`Store`] with its error type erased.
pub(super) trait DynStore: Send {
    fn load(&mut self) -> Result<Option<Vec<u8>>, String>;
    fn save(&mut self, bytes: &[u8]) -> Result<(), String>;
}

impl<T: Store> DynStore for T {
    fn load(&mut self) -> Result<Option<Vec<u8>>, String> {
        Store::load(self).map_err(|e| e.to_string())
    }

    fn save(&mut self, bytes: &[u8]) -> Result<(), String> {
        Store::save(self, bytes).map_err(|e| e.to_string())
    }
}
