//! The lease authority: an advisory lock (`flock`) on `<dir>/lease`, whose file holds
//! the last term granted.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use replisync::authority::{AuthorityAnswer, AuthorityRequest};
use replisync::{Authority, SourceId};

use crate::group::{self, LEASE};
use crate::report::Reporter;
use crate::{OpenError, Options, Report};

/// While holding, how often the lock file is checked to be still the one locked (if
/// someone removed or replaced it, another process could lock the new file: the grant
/// is then reported lost).
const CHECK_HELD_EVERY: Duration = Duration::from_millis(250);

/// The group's lease authority: whoever holds the advisory lock (`flock`) on
/// `<dir>/lease` holds the lease, so leader mode has at most one holder among all the
/// processes (and threads) on the directory.
///
/// A thread waits on the lock (a blocking `flock`) from the start, and again after
/// each request to acquire; once it holds the lock it reads the last term granted
/// from the file, writes the next one (and the holder) and syncs it, and hands the
/// replica an unasked grant valid until lost ([`AuthorityAnswer::Granted`] with
/// `valid_ms: None`): the replica leads at once. The OS frees the lock of a process
/// that dies, however it dies, so a waiting process takes over at once rather than
/// after the lease expires; a leader that leaves releases the lock and a waiting
/// process takes over just as fast. Terms strictly increase across holders: each is
/// read and raised only under the lock.
///
/// A request to acquire while another holds the lock is refused with the term and
/// holder the file names (the wait goes on). A grant is reported
/// [lost](AuthorityAnswer::Lost) if the lock file is removed or replaced while held.
/// A thread still waiting when the authority is dropped ends once the lock comes free
/// (and lets go of it at once).
///
/// [`open`](crate::open) and [`driver`](crate::driver) use it in leader mode unless
/// [`Options::authority`] is off.
///
/// ```
/// use replisync::authority::{AuthorityAnswer, AuthorityRequest};
/// use replisync::{Authority, SourceId};
/// use replisync_files::{FileAuthority, Options};
/// use std::time::Duration;
///
/// let dir = std::env::temp_dir().join(format!("authority-doc-{}", std::process::id()));
/// let (a, b) = (SourceId::from_u128(1), SourceId::from_u128(2));
/// let at_a = FileAuthority::open(&dir, a, &Options::default())?;
/// let mut at_b = FileAuthority::open(&dir, b, &Options::default())?;
/// let wait = Duration::from_secs(10);
///
/// // The first to lock is granted a term, unasked.
/// let Ok(AuthorityAnswer::Granted { term, valid_ms: None, .. }) = at_a.answers().recv_timeout(wait)
/// else { panic!("a holds the lock") };
/// // The other is refused, and told who holds which term.
/// at_b.handle(b, AuthorityRequest::Acquire { ask: 0, term: term + 1, duration_ms: 3_000 });
/// assert!(matches!(
///     at_b.answers().recv_timeout(wait),
///     Ok(AuthorityAnswer::Refused { term: t, holder: Some(h), .. }) if t == term && h == a
/// ));
/// // Once a lets go (it left, or its process died), b holds a newer term at once.
/// drop(at_a);
/// assert!(matches!(
///     at_b.answers().recv_timeout(wait),
///     Ok(AuthorityAnswer::Granted { term: t, .. }) if t > term
/// ));
/// # drop(at_b);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileAuthority {
    shared: Arc<Shared>,
    answers: Receiver<AuthorityAnswer>,
}

impl std::fmt::Debug for FileAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("FileAuthority")
            .field("path", &self.shared.path)
            .field("held", &state.held.as_ref().map(|h| h.term))
            .field("waiting", &state.waiting)
            .finish_non_exhaustive()
    }
}

/// What the replica's side and the waiting thread share.
struct Shared {
    path: PathBuf,
    me: SourceId,
    tx: Sender<AuthorityAnswer>,
    reporter: Reporter,
    state: Mutex<State>,
    /// Wakes the holding thread's checks early (on release, on drop).
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The lock held, and the term granted with it.
    held: Option<Held>,
    /// Whether the replica wants the lease (from the start, and after each acquire
    /// request, until it releases).
    want: bool,
    /// The latest acquire request: its ask, and the term it asked for.
    asked: Option<(u64, u64)>,
    /// A thread is blocked on the lock.
    waiting: bool,
    /// The authority was dropped.
    closed: bool,
    /// Counts grants, so that a holding thread knows when its grant is over.
    grants: u64,
    /// The highest term this authority has seen (in the file, or granted): a lock file
    /// removed and made anew does not bring back an old term.
    known: u64,
}

struct Held {
    file: File,
    term: u64,
    grant: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, answer: AuthorityAnswer) {
        // The receiver lives in the authority; once it is dropped, no one asks.
        let _ = self.tx.send(answer);
    }
}

impl FileAuthority {
    /// The lease authority of the group in `dir` (created 0700 if missing), for the
    /// replica `me`; its thread starts waiting on the lock at once.
    ///
    /// # Errors
    ///
    /// [`OpenError`] when the directory is refused or the lock file cannot be made.
    pub fn open(dir: impl AsRef<Path>, me: SourceId, options: &Options) -> Result<Self, OpenError> {
        let dir = dir.as_ref();
        group::prepare(dir)?;
        let path = dir.join(LEASE);
        open_lease(&path).map_err(|error| OpenError::Io {
            path: path.clone(),
            error,
        })?;
        let (tx, answers) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            path,
            me,
            tx,
            reporter: Reporter::new(options.reports.clone()),
            state: Mutex::new(State {
                want: true,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let mut state = shared.lock();
        wait_for_lock(&shared, &mut state);
        drop(state);
        Ok(FileAuthority { shared, answers })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

fn open_lease(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// The last term granted and its holder, as the lock file says (`0` for a new file,
/// or one whose content is damaged: terms are also fenced by the replicas).
fn read_lease(file: &mut File) -> (u64, Option<SourceId>) {
    let mut text = String::new();
    if file.seek(SeekFrom::Start(0)).is_err() || file.read_to_string(&mut text).is_err() {
        return (0, None);
    }
    let mut words = text.split_whitespace();
    let term = words.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let holder = words
        .next()
        .and_then(|h| u128::from_str_radix(h, 16).ok())
        .map(SourceId::from_u128);
    (term, holder)
}

fn write_lease(file: &mut File, term: u64, holder: SourceId) -> io::Result<()> {
    let text = format!("{term} {:032x}\n", holder.as_u128());
    file.seek(SeekFrom::Start(0))?;
    file.write_all(text.as_bytes())?;
    file.set_len(text.len() as u64)?;
    file.sync_data()
}

/// Starts a thread that blocks on the lock, unless one is waiting or the lock is held.
fn wait_for_lock(shared: &Arc<Shared>, state: &mut State) {
    if state.waiting || state.held.is_some() || state.closed || !state.want {
        return;
    }
    state.waiting = true;
    let shared_for_thread = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("replisync-files-lease".into())
        .spawn(move || hold(&shared_for_thread));
    if let Err(e) = spawned {
        state.waiting = false;
        shared.reporter.report(Report::Lease {
            path: shared.path.clone(),
            error: format!("no thread to wait on the lease lock: {e}"),
        });
    }
}

/// The waiting thread: blocks on the lock; once it holds it, grants the next term and
/// then checks, until the grant ends, that the lock file is still the one locked.
fn hold(shared: &Arc<Shared>) {
    let granted = match lock_and_grant(shared) {
        Ok(g) => g,
        Err(e) => {
            shared.lock().waiting = false;
            shared.reporter.report(Report::Lease {
                path: shared.path.clone(),
                error: format!("the lease lock: {e}"),
            });
            return;
        }
    };
    let Some((grant, ino)) = granted else {
        return;
    };
    let mut state = shared.lock();
    loop {
        let Some(held) = state.held.as_ref().filter(|h| h.grant == grant) else {
            return; // released (or closed)
        };
        let replaced = std::fs::metadata(&shared.path).map(|m| m.ino()).ok() != Some(ino);
        if replaced {
            let term = held.term;
            state.held = None;
            shared.reporter.report(Report::Lease {
                path: shared.path.clone(),
                error: "the lease lock file was removed or replaced while held; the grant is lost"
                    .into(),
            });
            shared.send(AuthorityAnswer::Lost { term });
            wait_for_lock(shared, &mut state);
            return;
        }
        state = shared
            .changed
            .wait_timeout(state, CHECK_HELD_EVERY)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Blocks until the lock is held, then grants: `Ok(Some((grant, inode)))`; `Ok(None)`
/// when the lease is no longer wanted by then (the lock is let go at once).
fn lock_and_grant(shared: &Arc<Shared>) -> io::Result<Option<(u64, u64)>> {
    let mut file = open_lease(&shared.path)?;
    file.lock()?;
    let ino = file.metadata()?.ino();
    let mut state = shared.lock();
    state.waiting = false;
    if state.closed || !state.want {
        return Ok(None); // dropping `file` lets go of the lock
    }
    let (last, _) = read_lease(&mut file);
    let asked = state.asked.take();
    let term = last
        .max(state.known)
        .saturating_add(1)
        .max(asked.map_or(0, |(_, term)| term));
    state.known = term;
    if let Err(e) = write_lease(&mut file, term, shared.me) {
        state.want = false;
        drop(state);
        return Err(e);
    }
    state.grants += 1;
    let grant = state.grants;
    state.held = Some(Held { file, term, grant });
    shared.send(AuthorityAnswer::Granted {
        ask: asked.map(|(ask, _)| ask),
        term,
        valid_ms: None,
    });
    Ok(Some((grant, ino)))
}

impl Authority for FileAuthority {
    fn handle(&mut self, holder: SourceId, request: AuthorityRequest) {
        let shared = &self.shared;
        let mut guard = shared.lock();
        let state = &mut *guard;
        match request {
            AuthorityRequest::Acquire { ask, term, .. } => {
                state.want = true;
                if let Some(held) = state.held.as_mut() {
                    // Move the grant to a newer term: raise it in the file first.
                    if term > held.term {
                        match write_lease(&mut held.file, term, holder) {
                            Ok(()) => {
                                held.term = term;
                                state.known = state.known.max(term);
                            }
                            Err(e) => shared.reporter.report(Report::Lease {
                                path: shared.path.clone(),
                                error: format!("raising the lease term: {e}"),
                            }),
                        }
                    }
                    let term = held.term;
                    shared.send(AuthorityAnswer::Granted {
                        ask: Some(ask),
                        term,
                        valid_ms: None,
                    });
                    return;
                }
                state.asked = Some((ask, term));
                let (held_term, by) = open_lease(&shared.path)
                    .map(|mut f| read_lease(&mut f))
                    .unwrap_or((0, None));
                state.known = state.known.max(held_term);
                wait_for_lock(shared, state);
                shared.send(AuthorityAnswer::Refused {
                    ask: Some(ask),
                    term: held_term,
                    holder: by,
                });
            }
            AuthorityRequest::Renew { ask, term, .. } => {
                // Grants here last until lost; a renewal is only confirmed.
                match state.held.as_ref() {
                    Some(h) if h.term == term => shared.send(AuthorityAnswer::Granted {
                        ask: Some(ask),
                        term,
                        valid_ms: None,
                    }),
                    _ => shared.send(AuthorityAnswer::Lost { term }),
                }
            }
            AuthorityRequest::Release { term } => {
                if state.held.as_ref().is_some_and(|h| h.term == term) {
                    // Dropping the file lets go of the lock; a waiting process (or
                    // thread) takes it at once. Waiting again only on the next acquire.
                    state.held = None;
                    state.want = false;
                    shared.changed.notify_all();
                }
            }
        }
    }

    fn answers(&self) -> Receiver<AuthorityAnswer> {
        self.answers.clone()
    }
}

impl Drop for FileAuthority {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.want = false;
        state.held = None;
        self.shared.changed.notify_all();
    }
}
