//! The store: a log per process in `<dir>/store`, read together.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use replisync::Store;

use crate::group::{self, STORE};
use crate::record::{self, MAX_PAYLOAD};
use crate::report::Reporter;
use crate::{OpenError, Options, Report, StoreError};

/// A [`Store`] in a group directory, shared by every process of the group so that
/// none loses another's writes.
///
/// Each open store writes only a log of its own, `store/<id>.log`: the replica's
/// appended deltas and compactions, each as one record with a length and checksums
/// (see the crate docs). An append is written (and synced, unless
/// [`Options::sync_appends`] is off) before the write that caused it returns; a
/// compaction writes a new log atomically (a temporary file, fsync, rename, fsync of
/// the directory).
///
/// [`load`](Store::load) reads every log of the directory: every record is a state of
/// its own, and restoring merges them, so nothing written by any process is lost. It
/// also takes the advisory lock of each log whose process is gone (its lock is free):
/// the next compaction holds everything those logs held, so once it is durable they
/// are removed (or, if damaged, renamed to end in `.damaged` and kept). The logs of
/// live processes are never touched.
///
/// Damage is reported (see [`Report`]) and left out: a record that fails its checksum
/// is skipped; the last record of a dead process's log, cut short when it died while
/// appending, is dropped (that write had not been reported persisted). A store whose
/// records pass the checks but that the replica cannot read (a newer schema) is
/// reported by the replica, which then never persists, so this store never writes.
///
/// ```
/// use replisync::Store;
/// use replisync_files::{FileStore, Options};
///
/// let dir = std::env::temp_dir().join(format!("store-doc-{}", std::process::id()));
/// let mut first = FileStore::open(&dir, &Options::default())?;
/// assert_eq!(first.load()?, None);
/// first.compact(b"base")?;
/// first.append(b"+delta")?;
///
/// // Another process (or a later run) reads every log.
/// let mut second = FileStore::open(&dir, &Options::default())?;
/// assert_eq!(second.load()?.as_deref(), Some(&b"base+delta"[..]));
/// # drop((first, second));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileStore {
    dir: PathBuf,
    id: String,
    /// Held while this store lives: the others leave its log alone.
    lock: Option<File>,
    log_path: PathBuf,
    /// The log open for appending, once it exists.
    log: Option<File>,
    log_len: u64,
    sync_appends: bool,
    reporter: Reporter,
    /// Logs of gone processes that the last load read: removed after the next
    /// compaction.
    claimed: Vec<Claimed>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("log", &self.log_path)
            .field("claimed", &self.claimed.len())
            .finish_non_exhaustive()
    }
}

/// The log of a gone process, read by the last load, with its lock held.
struct Claimed {
    log: PathBuf,
    lock_path: PathBuf,
    /// `None` for a log whose lock file was gone already.
    _lock: Option<File>,
    damaged: bool,
}

impl FileStore {
    /// Opens the store of the group in `dir` (created 0700 if missing), with a new log
    /// of its own.
    ///
    /// # Errors
    ///
    /// [`OpenError`] when the directory is refused (another user's, another layout) or
    /// the lock file cannot be made.
    pub fn open(dir: impl AsRef<Path>, options: &Options) -> Result<Self, OpenError> {
        let dir = dir.as_ref();
        group::prepare(dir)?;
        let dir = dir.join(STORE);
        group::remove_tmp_debris(&dir);
        let id = group::random_name();
        let lock =
            group::create_locked(&dir, &format!("{id}.lock")).map_err(|error| OpenError::Io {
                path: dir.clone(),
                error,
            })?;
        Ok(FileStore {
            log_path: dir.join(format!("{id}.log")),
            dir,
            id,
            lock: Some(lock),
            log: None,
            log_len: 0,
            sync_appends: options.sync_appends,
            reporter: Reporter::new(options.reports.clone()),
            claimed: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// This store's own log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn io(&self, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |error| StoreError::Io { path, error }
    }

    fn frame(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.len() > MAX_PAYLOAD {
            return Err(StoreError::TooLarge { len: bytes.len() });
        }
        self.scratch.clear();
        record::encode_into(&mut self.scratch, bytes);
        Ok(())
    }

    /// Reads one log into `out`; returns whether it was damaged.
    fn read_log(&self, path: &Path, gone: bool, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            // Compacted into another's log and removed while this one listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.io(path)(e)),
        };
        let scan = record::scan(&bytes);
        for payload in &scan.payloads {
            out.extend_from_slice(payload);
        }
        for (offset, len) in &scan.corrupt {
            self.reporter.report(Report::StoreRecordSkipped {
                log: path.to_path_buf(),
                offset: *offset,
                len: *len,
            });
        }
        // A live process may be appending right now: its tail is no damage.
        if let (Some((offset, len)), true) = (scan.torn, gone) {
            self.reporter.report(Report::StoreTailDropped {
                log: path.to_path_buf(),
                offset,
                len,
            });
        }
        Ok(!scan.corrupt.is_empty())
    }

    /// Removes (or keeps aside, if damaged) the claimed logs, now that a durable
    /// compaction holds what they held.
    fn absorb_claimed(&mut self) {
        for claimed in std::mem::take(&mut self.claimed) {
            if claimed.damaged {
                let aside = claimed.log.with_extension("log.damaged");
                if fs::rename(&claimed.log, &aside).is_ok() {
                    self.reporter
                        .report(Report::StoreLogKeptAside { path: aside });
                }
            } else {
                let _ = fs::remove_file(&claimed.log);
            }
            let _ = fs::remove_file(&claimed.lock_path);
        }
        let _ = group::sync_dir(&self.dir);
    }
}

impl Store for FileStore {
    type Error = StoreError;

    fn load(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        self.claimed.clear();
        let entries = group::list(&self.dir).map_err(self.io(&self.dir.clone()))?;
        let mut logs = Vec::new();
        for (name, path) in &entries {
            if let Some(id) = name.strip_suffix(".log") {
                if !id.starts_with('.') {
                    logs.push((id.to_string(), path.clone()));
                }
            }
        }
        logs.sort();
        // Lock files of gone processes that never wrote a log: nothing to keep.
        for (name, path) in &entries {
            if let Some(id) = name.strip_suffix(".lock") {
                let has_log = logs.iter().any(|(l, _)| l == id);
                if id != self.id && !id.starts_with('.') && !has_log {
                    if let Ok(Some(_held)) = group::claim_if_gone(path) {
                        let _ = fs::remove_file(path);
                    }
                }
            }
        }
        let mut out = Vec::new();
        let mut found = false;
        for (id, log) in logs {
            found = true;
            if id == self.id {
                self.read_log(&log, false, &mut out)?;
                continue;
            }
            let lock_path = self.dir.join(format!("{id}.lock"));
            let claim = if lock_path.exists() {
                match group::claim_if_gone(&lock_path) {
                    Ok(Some(lock)) => Some(Some(lock)),
                    Ok(None) => None,
                    Err(e) => return Err(self.io(&lock_path)(e)),
                }
            } else {
                // No lock file: its process is gone (it removed the lock on its way
                // out, or died before making one).
                Some(None)
            };
            let gone = claim.is_some();
            let damaged = self.read_log(&log, gone, &mut out)?;
            if let Some(lock) = claim {
                self.claimed.push(Claimed {
                    log,
                    lock_path,
                    _lock: lock,
                    damaged,
                });
            }
        }
        Ok((found && !out.is_empty()).then_some(out))
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.frame(bytes)?;
        if self.log.is_none() {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&self.log_path)
                .map_err(self.io(&self.log_path))?;
            self.log_len = file.metadata().map_err(self.io(&self.log_path))?.len();
            // The new file's name must survive a crash too.
            group::sync_dir(&self.dir).map_err(self.io(&self.dir))?;
            self.log = Some(file);
        }
        let file = self.log.as_mut().expect("opened above");
        let written = file.write_all(&self.scratch).and_then(|()| {
            if self.sync_appends {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.log_len += self.scratch.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Leave nothing of a record cut short.
                let _ = file.set_len(self.log_len);
                Err(self.io(&self.log_path)(e))
            }
        }
    }

    fn compact(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.frame(bytes)?;
        let name = format!("{}.log", self.id);
        group::write_atomically(&self.dir, &name, &self.scratch)
            .map_err(self.io(&self.log_path))?;
        self.log_len = self.scratch.len() as u64;
        self.log = Some(
            OpenOptions::new()
                .append(true)
                .open(&self.log_path)
                .map_err(self.io(&self.log_path))?,
        );
        self.absorb_claimed();
        Ok(())
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        // The log stays: it is the state. Without its lock file it is a gone
        // process's log, for the next load to take over.
        let _ = fs::remove_file(self.dir.join(format!("{}.lock", self.id)));
        drop(self.lock.take());
    }
}
