//! The transport: an append-only message log per member in `<dir>/msgs`, which every
//! other member tails.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use replisync::Transport;

use crate::group::{self, MSGS};
use crate::reader::Reader;
use crate::record::{self, HEADER, MAX_PAYLOAD};
use crate::report::Reporter;
use crate::{OpenError, Options, SendError};

/// A member of a group directory: a [`Transport`] for processes (or threads) on one
/// machine.
///
/// Each member appends its broadcasts to a log of its own, `msgs/<member>-<n>.log`, as
/// records with a length and checksums (see the crate docs); every other member keeps
/// the log open and reads what was added, woken by a file notification (or by
/// polling). A log is rotated before it grows past [`Options::max_log_bytes`]: the
/// member starts log `n + 1` and removes log `n`, which readers that have it open
/// still read to its end. A member that closes removes its files; the files of a
/// member that died (its lock is free) are removed by the others.
///
/// Delivery is what the crate contract asks: whole messages, never the sender's own,
/// eventually while connected. A member that joins reads only what is written after it
/// joined; a reader that falls behind by more than a whole log while that member
/// rotates twice loses the messages in between (the replicas' protocol recovers them).
///
/// ```
/// use replisync::Transport;
/// use replisync_files::{FileTransport, Options};
/// use std::time::Duration;
///
/// let dir = std::env::temp_dir().join(format!("transport-doc-{}", std::process::id()));
/// let options = Options::default();
/// let mut a = FileTransport::join(&dir, &options)?;
/// let b = FileTransport::join(&dir, &options)?;
///
/// a.broadcast(b"hello")?;
/// assert_eq!(b.incoming().recv_timeout(Duration::from_secs(10)).unwrap(), b"hello");
/// assert!(a.incoming().try_recv().is_err()); // not back to the sender
///
/// let inbox = b.incoming();
/// drop(b); // closing disconnects its channel
/// assert!(inbox.recv_timeout(Duration::from_secs(10)).is_err());
/// # drop(a);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileTransport {
    msgs: PathBuf,
    member: String,
    /// The member's lock file, held while it lives.
    lock: Option<File>,
    log: Log,
    max_log_bytes: u64,
    incoming: Receiver<Vec<u8>>,
    /// Dropping it stops the reader thread.
    stop: Option<Sender<()>>,
    reader: Option<JoinHandle<()>>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for FileTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTransport")
            .field("member", &self.member)
            .field("log", &self.log.path)
            .finish_non_exhaustive()
    }
}

/// The member's current message log.
struct Log {
    file: File,
    path: PathBuf,
    generation: u64,
    len: u64,
}

/// The name of a member's log of generation `n`.
pub(crate) fn log_name(member: &str, generation: u64) -> String {
    format!("{member}-{generation:016x}.log")
}

/// A message log's member and generation, from its name.
pub(crate) fn parse_log_name(name: &str) -> Option<(&str, u64)> {
    let stem = name.strip_suffix(".log")?;
    let (member, generation) = stem.rsplit_once('-')?;
    if member.starts_with('.') || generation.len() != 16 {
        return None;
    }
    Some((member, u64::from_str_radix(generation, 16).ok()?))
}

fn create_log(msgs: &Path, member: &str, generation: u64) -> std::io::Result<Log> {
    let path = msgs.join(log_name(member, generation));
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    Ok(Log {
        file,
        path,
        generation,
        len: 0,
    })
}

impl FileTransport {
    /// Joins the group in `dir` (created 0700 if missing): creates this member's lock
    /// and log, and starts the thread that reads the others'.
    ///
    /// # Errors
    ///
    /// [`OpenError`] when the directory is refused (another user's, another layout) or
    /// the files or the thread cannot be made.
    pub fn join(dir: impl AsRef<Path>, options: &Options) -> Result<Self, OpenError> {
        let dir = dir.as_ref();
        group::prepare(dir)?;
        let msgs = dir.join(MSGS);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| OpenError::Io { path, error }
        };
        group::remove_tmp_debris(&msgs);
        let member = group::random_name();
        let lock_path = msgs.join(format!("{member}.lock"));
        let lock =
            group::create_locked(&msgs, &format!("{member}.lock")).map_err(io(&lock_path))?;
        let log = create_log(&msgs, &member, 0).map_err(io(&msgs))?;
        let (tx, incoming) = crossbeam_channel::unbounded();
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let reporter = Reporter::new(options.reports.clone());
        let reader = Reader::start(&msgs, &member, options, tx, reporter);
        let thread = std::thread::Builder::new()
            .name(format!("replisync-files-{}", &member[..8]))
            .spawn(move || reader.run(&stopped))
            .map_err(io(&msgs))?;
        Ok(FileTransport {
            msgs,
            member,
            lock: Some(lock),
            log,
            max_log_bytes: options.max_log_bytes,
            incoming,
            stop: Some(stop),
            reader: Some(thread),
            scratch: Vec::new(),
        })
    }

    /// This member's current log.
    pub fn log_path(&self) -> &Path {
        &self.log.path
    }

    /// Starts the next log and removes the current one (readers that have it open read
    /// it to its end).
    fn rotate(&mut self) -> Result<(), SendError> {
        let next =
            create_log(&self.msgs, &self.member, self.log.generation + 1).map_err(|error| {
                SendError::Io {
                    path: self.msgs.clone(),
                    error,
                }
            })?;
        let old = std::mem::replace(&mut self.log, next);
        let _ = fs::remove_file(&old.path);
        Ok(())
    }
}

impl Transport for FileTransport {
    type Error = SendError;

    fn broadcast(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        if bytes.len() > MAX_PAYLOAD {
            return Err(SendError::TooLarge { len: bytes.len() });
        }
        let size = (HEADER + bytes.len()) as u64;
        if self.log.len > 0 && self.log.len.saturating_add(size) > self.max_log_bytes {
            self.rotate()?;
        }
        self.scratch.clear();
        record::encode_into(&mut self.scratch, bytes);
        match self.log.file.write_all(&self.scratch) {
            Ok(()) => {
                self.log.len += size;
                Ok(())
            }
            Err(error) => {
                // Leave nothing of a record cut short (the disk filled up, say).
                let _ = self.log.file.set_len(self.log.len);
                Err(SendError::Io {
                    path: self.log.path.clone(),
                    error,
                })
            }
        }
    }

    fn incoming(&self) -> Receiver<Vec<u8>> {
        self.incoming.clone()
    }
}

impl Drop for FileTransport {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.reader.take() {
            if t.join().is_err() {
                tracing::error!(member = %self.member, "the message reader thread panicked");
            }
        }
        // Readers that have the log open still read it to its end.
        let _ = fs::remove_file(&self.log.path);
        let _ = fs::remove_file(self.msgs.join(format!("{}.lock", self.member)));
        drop(self.lock.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_read_back() {
        let name = log_name("0123abcd", 0x1f);
        assert_eq!(name, "0123abcd-000000000000001f.log");
        assert_eq!(parse_log_name(&name), Some(("0123abcd", 0x1f)));
        assert_eq!(parse_log_name("0123abcd.lock"), None);
        assert_eq!(parse_log_name("x-1.log"), None);
        assert_eq!(parse_log_name(".tmp-00-000000000000001f.log"), None);
    }
}
