//! The driver's view of a store: its error type erased, `Send` to move to the thread.

use crate::{Persist, Store};

/// A [`Store`] with its error type erased.
pub(super) trait DynStore: Send {
    fn load(&mut self) -> Result<Option<Vec<u8>>, String>;
    fn persist(&mut self, persist: &Persist) -> Result<(), String>;
}

impl<T: Store + Send> DynStore for T {
    fn load(&mut self) -> Result<Option<Vec<u8>>, String> {
        Store::load(self).map_err(|e| e.to_string())
    }

    fn persist(&mut self, persist: &Persist) -> Result<(), String> {
        Store::persist(self, persist).map_err(|e| e.to_string())
    }
}
