//! The thread that reads the other members' message logs.
//!
//! It sleeps until a file notification rings its bell (or a poll interval passes),
//! then reads what each other member's log gained since the last look: one `fstat`
//! and, if the log grew, one `read` per member. The directory itself is listed only
//! when a notification says a file came or went (a member joined, rotated or left),
//! and on every poll. Once a second it also looks for members that died (their lock is
//! free), reads what they left, and removes their files.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::group;
use crate::record::{self, Parsed};
use crate::report::Reporter;
use crate::transport::parse_log_name;
use crate::{Options, Report, Watch};

/// With notifications, the directory is still looked at this often, in case one was
/// missed.
const SAFETY_LOOK: Duration = Duration::from_secs(1);

/// How often dead members are looked for.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// The reading side of a member.
pub(crate) struct Reader {
    msgs: PathBuf,
    me: String,
    peers: BTreeMap<String, PeerLog>,
    tx: Sender<Vec<u8>>,
    reporter: Reporter,
    /// Set by a notification that a file came or went.
    relist: Arc<AtomicBool>,
    bell: Receiver<()>,
    /// Kept alive while the thread runs; `None` when polling.
    _watcher: Option<notify::RecommendedWatcher>,
    /// How long to sleep without a bell.
    tick: Duration,
    polling: bool,
    poll_interval: Duration,
    last_reap: Instant,
}

/// An open message log of another member, and how far it has been read.
struct PeerLog {
    generation: u64,
    path: PathBuf,
    file: File,
    /// The file offset up to which bytes were read into `buf`.
    pos: u64,
    /// Read but not yet parsed (a record still being written).
    buf: Vec<u8>,
}

impl Reader {
    /// Sets up the watcher and takes note of the members already there (their logs are
    /// read from their current end).
    pub(crate) fn start(
        msgs: &Path,
        me: &str,
        options: &Options,
        tx: Sender<Vec<u8>>,
        reporter: Reporter,
    ) -> Reader {
        let relist = Arc::new(AtomicBool::new(false));
        let (ring, bell) = crossbeam_channel::bounded(1);
        let watcher = match options.watch {
            Watch::Notify => match watch(msgs, me, &relist, ring) {
                Ok(w) => Some(w),
                Err(e) => {
                    reporter.report(Report::Polling {
                        interval: options.poll_interval,
                        reason: format!("file notifications are unavailable: {e}"),
                    });
                    None
                }
            },
            Watch::Poll => None,
        };
        let polling = watcher.is_none();
        let poll_interval = options.poll_interval.max(Duration::from_millis(1));
        let mut reader = Reader {
            msgs: msgs.to_path_buf(),
            me: me.to_string(),
            peers: BTreeMap::new(),
            tx,
            reporter,
            relist,
            // Without a watcher nothing rings: a bell nobody can ring (a disconnected
            // one would be ready at once, and the loop would spin).
            bell: if polling {
                crossbeam_channel::never()
            } else {
                bell
            },
            _watcher: watcher,
            tick: if polling { poll_interval } else { SAFETY_LOOK },
            polling,
            poll_interval,
            last_reap: Instant::now(),
        };
        reader.reap();
        reader.look(true);
        reader
    }

    /// Reads until `stop` disconnects.
    pub(crate) fn run(mut self, stop: &Receiver<()>) {
        loop {
            let timed_out = crossbeam_channel::select! {
                recv(stop) -> _ => return,
                recv(self.bell) -> rang => {
                    if rang.is_err() {
                        self.notifications_stopped();
                    }
                    false
                }
                default(self.tick) => true,
            };
            if self.relist.swap(false, Ordering::AcqRel) || timed_out || self.polling {
                self.look(false);
            }
            self.read_all();
            if self.last_reap.elapsed() >= REAP_EVERY {
                self.reap();
                self.last_reap = Instant::now();
            }
        }
    }

    /// The watcher's thread is gone (its bell disconnected): poll from now on.
    fn notifications_stopped(&mut self) {
        self.bell = crossbeam_channel::never();
        self.polling = true;
        self.tick = self.poll_interval;
        self.reporter.report(Report::Polling {
            interval: self.poll_interval,
            reason: "file notifications stopped".into(),
        });
    }

    /// Lists the directory: opens the logs of members that joined, follows members
    /// to their newer logs, and forgets members whose files are gone (after reading
    /// their open log to its end).
    fn look(&mut self, initial: bool) {
        let entries = match group::list(&self.msgs) {
            Ok(e) => e,
            Err(e) => {
                self.reporter.report(Report::ReadFailed {
                    path: self.msgs.clone(),
                    error: e.to_string(),
                });
                return;
            }
        };
        let mut logs: BTreeMap<String, Vec<(u64, PathBuf)>> = BTreeMap::new();
        for (name, path) in entries {
            if let Some((member, generation)) = parse_log_name(&name) {
                if member != self.me {
                    logs.entry(member.to_string())
                        .or_default()
                        .push((generation, path));
                }
            }
        }
        // Members whose logs are all gone: read what is left of the open one, forget.
        let gone: Vec<String> = self
            .peers
            .keys()
            .filter(|m| !logs.contains_key(*m))
            .cloned()
            .collect();
        for member in gone {
            if let Some(mut log) = self.peers.remove(&member) {
                self.read(&mut log);
            }
        }
        for (member, mut generations) in logs {
            generations.sort();
            match self.peers.remove(&member) {
                None => {
                    // A member that was there before this one joined is read from its
                    // current end; one that joined since, from its first byte.
                    let (generation, path) = if initial {
                        generations.pop().expect("at least one log")
                    } else {
                        generations.swap_remove(0)
                    };
                    if let Some(mut log) = self.open(generation, path, initial) {
                        if !initial {
                            self.follow(&mut log, &generations);
                        }
                        self.peers.insert(member, log);
                    }
                }
                Some(mut log) => {
                    self.follow(&mut log, &generations);
                    self.peers.insert(member, log);
                }
            }
        }
    }

    /// Moves `log` on to the newest of `generations` newer than it, reading each log
    /// on the way to its end (a member writes no more to a log once it started the
    /// next).
    fn follow(&mut self, log: &mut PeerLog, generations: &[(u64, PathBuf)]) {
        for (generation, path) in generations {
            if *generation <= log.generation {
                continue;
            }
            self.read(log);
            if let Some(next) = self.open(*generation, path.clone(), false) {
                *log = next;
            }
        }
    }

    fn open(&self, generation: u64, path: PathBuf, at_end: bool) -> Option<PeerLog> {
        let file = match File::open(&path) {
            Ok(f) => f,
            // Rotated away or removed before it could be opened.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.reporter.report(Report::ReadFailed {
                    path,
                    error: e.to_string(),
                });
                return None;
            }
        };
        let pos = if at_end {
            file.metadata().map(|m| m.len()).unwrap_or(0)
        } else {
            0
        };
        Some(PeerLog {
            generation,
            path,
            file,
            pos,
            buf: Vec::new(),
        })
    }

    fn read_all(&mut self) {
        let mut peers = std::mem::take(&mut self.peers);
        for log in peers.values_mut() {
            self.read(log);
        }
        self.peers = peers;
    }

    /// Reads what `log` gained and hands every whole record on.
    fn read(&self, log: &mut PeerLog) {
        let len = match log.file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                self.reporter.report(Report::ReadFailed {
                    path: log.path.clone(),
                    error: e.to_string(),
                });
                return;
            }
        };
        if len < log.pos {
            self.reporter.report(Report::MessageLogShrank {
                log: log.path.clone(),
                read_to: log.pos,
                len,
            });
            log.pos = len;
            log.buf.clear();
            return;
        }
        if len == log.pos {
            return;
        }
        let start = log.buf.len();
        let want = usize::try_from(len - log.pos).unwrap_or(usize::MAX);
        log.buf.resize(start + want, 0);
        let mut got = 0;
        while got < want {
            match log
                .file
                .read_at(&mut log.buf[start + got..], log.pos + got as u64)
            {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.reporter.report(Report::ReadFailed {
                        path: log.path.clone(),
                        error: e.to_string(),
                    });
                    break;
                }
            }
        }
        log.buf.truncate(start + got);
        log.pos += got as u64;
        // The file offset of buf[0].
        let base = log.pos - log.buf.len() as u64;
        let mut used = 0;
        loop {
            match record::parse(&log.buf[used..]) {
                Parsed::Record { payload, used: n } => {
                    // The receiving side may be gone (the driver stopped): nothing to do.
                    let _ = self.tx.send(payload.to_vec());
                    used += n;
                }
                Parsed::Corrupt { skip } => {
                    self.reporter.report(Report::MessageSkipped {
                        log: log.path.clone(),
                        offset: base + used as u64,
                        len: skip as u64,
                    });
                    used += skip;
                }
                Parsed::Incomplete => break,
            }
            if used == log.buf.len() {
                break;
            }
        }
        log.buf.drain(..used);
    }

    /// Removes the files of members that died: their lock is free (or their lock file
    /// is gone while logs remain).
    fn reap(&mut self) {
        let Ok(entries) = group::list(&self.msgs) else {
            return;
        };
        let mut locks = BTreeMap::new();
        let mut logs: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for (name, path) in entries {
            if let Some(member) = name.strip_suffix(".lock") {
                if member != self.me && !member.starts_with('.') {
                    locks.insert(member.to_string(), path);
                }
            } else if let Some((member, _)) = parse_log_name(&name) {
                if member != self.me {
                    logs.entry(member.to_string()).or_default().push(path);
                }
            }
        }
        for (member, lock) in &locks {
            match group::claim_if_gone(lock) {
                Ok(Some(_held)) => {
                    if let Some(mut log) = self.peers.remove(member) {
                        self.read(&mut log);
                    }
                    for path in logs.remove(member).unwrap_or_default() {
                        let _ = fs::remove_file(path);
                    }
                    let _ = fs::remove_file(lock);
                    tracing::debug!(%member, "removed the message files of a member that died");
                }
                Ok(None) => {
                    logs.remove(member);
                }
                Err(e) => {
                    logs.remove(member);
                    self.reporter.report(Report::ReadFailed {
                        path: lock.clone(),
                        error: e.to_string(),
                    });
                }
            }
        }
        // Logs without a lock file: a member creates its lock before its first log
        // and removes it after its last, so these belong to no one.
        for (member, paths) in logs {
            // A listing is no snapshot: a member that joined while it was read may show
            // its log and not its lock. Ask for the lock itself.
            if self.msgs.join(format!("{member}.lock")).exists() {
                continue;
            }
            self.peers.remove(&member);
            for path in paths {
                let _ = fs::remove_file(path);
            }
        }
        group::remove_tmp_debris(&self.msgs);
    }
}

/// Watches the directory: any change but this member's own writes rings the bell;
/// files that came or went also ask for a new listing.
fn watch(
    msgs: &Path,
    me: &str,
    relist: &Arc<AtomicBool>,
    ring: Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let relist = Arc::clone(relist);
    let mine = format!("{me}-");
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(event) => match event.kind {
                // Opening, reading and closing a file change nothing.
                EventKind::Access(_) => return,
                EventKind::Modify(notify::event::ModifyKind::Data(_)) => {
                    let own = event.paths.iter().all(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&mine))
                    });
                    if own {
                        return;
                    }
                }
                _ => relist.store(true, Ordering::Release),
            },
            // Notifications may have been lost (the queue overflowed): look again.
            Err(_) => relist.store(true, Ordering::Release),
        }
        let _ = ring.try_send(());
    })?;
    watcher.watch(msgs, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
