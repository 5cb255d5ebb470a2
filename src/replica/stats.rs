//! Counters of what a replica did.

/// Counters of what a replica did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages handed to [`Replica::handle_message`](crate::Replica::handle_message).
    pub messages_in: u64,
    /// Messages produced for [`Replica::poll_transmit`](crate::Replica::poll_transmit).
    pub messages_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes produced.
    pub bytes_out: u64,
    /// Messages refused (undecodable or corrupted, clock ahead, an invalid field, wrong
    /// mode).
    pub rejected: u64,
    /// Duplicates, own echoes and messages from a peer's earlier life, dropped.
    pub ignored: u64,
    /// Merges that changed the state.
    pub merges: u64,
    /// Registers found in conflict.
    pub conflicts: u64,
    /// Sync requests sent.
    pub syncs_requested: u64,
    /// Full states sent.
    pub syncs_sent: u64,
    /// Sleeps (or freezes) detected.
    pub sleeps: u64,
    /// Requests dropped from a full queue while no leader was known.
    pub requests_dropped: u64,
}
