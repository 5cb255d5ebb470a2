//! What the files layer reports: damage it found and skipped, and fallbacks in use.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Sender;

/// Something the files layer noticed and worked around, for the application to log or
/// show. Every report is also logged with `tracing::warn!`. Receive them through
/// [`Options::reports`](crate::Options::reports).
///
/// Damage never stops a replica: a damaged message counts as lost (the replicas'
/// protocol recovers it by a later delta or sync), a damaged store record is left out
/// of what is loaded and its file is kept aside, never overwritten.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// Bytes of a message log that are no good record (a failed checksum, a damaged
    /// header) were skipped.
    MessageSkipped {
        /// The log.
        log: PathBuf,
        /// Where the damaged stretch starts.
        offset: u64,
        /// How long it is.
        len: u64,
    },
    /// A message log became shorter than what had been read of it (someone truncated
    /// it); reading goes on from its new end.
    MessageLogShrank {
        /// The log.
        log: PathBuf,
        /// How far it had been read.
        read_to: u64,
        /// Its length now.
        len: u64,
    },
    /// A damaged record of a store log was left out of what was loaded. The log is kept
    /// (renamed to end in `.damaged` once its other records are compacted elsewhere).
    StoreRecordSkipped {
        /// The log.
        log: PathBuf,
        /// Where the damaged stretch starts.
        offset: u64,
        /// How long it is.
        len: u64,
    },
    /// The last record of the store log of a process that died was cut short (it died
    /// while appending); it was left out. (That write had not been reported persisted.)
    StoreTailDropped {
        /// The log.
        log: PathBuf,
        /// Where the cut record starts.
        offset: u64,
        /// How much of it was there.
        len: u64,
    },
    /// A damaged store log was moved aside, kept for inspection: its readable records
    /// are now in this process's store log.
    StoreLogKeptAside {
        /// Where it is now.
        path: PathBuf,
    },
    /// File notifications are not available (or were asked off): new messages are
    /// found by polling, so they arrive up to `interval` later.
    Polling {
        /// How often the directory is looked at.
        interval: Duration,
        /// Why.
        reason: String,
    },
    /// The lease lock file could not be used as it should (it could not be locked or
    /// written, or it was removed or replaced while held: the grant is then reported
    /// lost to the replica, which stops leading).
    Lease {
        /// The lock file.
        path: PathBuf,
        /// What happened.
        error: String,
    },
    /// A file of the group could not be read; it is tried again later.
    ReadFailed {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        error: String,
    },
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::MessageSkipped { log, offset, len } => write!(
                f,
                "skipped {len} damaged bytes at offset {offset} of the message log {}",
                log.display()
            ),
            Report::MessageLogShrank { log, read_to, len } => write!(
                f,
                "the message log {} shrank from {read_to} to {len} bytes; reading on from its end",
                log.display()
            ),
            Report::StoreRecordSkipped { log, offset, len } => write!(
                f,
                "left out a damaged store record ({len} bytes at offset {offset}) of {}; the file is kept",
                log.display()
            ),
            Report::StoreTailDropped { log, offset, len } => write!(
                f,
                "dropped the cut-short last record ({len} bytes at offset {offset}) of {}, whose writer died",
                log.display()
            ),
            Report::StoreLogKeptAside { path } => {
                write!(f, "a damaged store log was kept aside as {}", path.display())
            }
            Report::Polling { interval, reason } => write!(
                f,
                "polling for messages every {} ms: {reason}",
                interval.as_millis()
            ),
            Report::Lease { path, error } => {
                write!(f, "the lease lock file {}: {error}", path.display())
            }
            Report::ReadFailed { path, error } => {
                write!(f, "could not read {}: {error}; trying again later", path.display())
            }
        }
    }
}

/// Where reports go: the log, and the application's channel if it gave one.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reporter {
    tx: Option<Sender<Report>>,
}

impl Reporter {
    pub(crate) fn new(tx: Option<Sender<Report>>) -> Self {
        Reporter { tx }
    }

    pub(crate) fn report(&self, report: Report) {
        tracing::warn!(%report, "replisync-files");
        if let Some(tx) = &self.tx {
            let _ = tx.send(report);
        }
    }
}
