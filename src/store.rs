//! The persisted form of a replica's state.

use serde::{Deserialize, Serialize};

use crate::SourceId;

/// What a replica persists: its whole state with the schema version and who wrote it
/// when. A store that does not decode, or was written by a newer schema, is reported
/// and never overwritten.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stored<St> {
    pub schema: u16,
    pub updated_at: u64,
    pub source: SourceId,
    pub state: St,
}
