//! The lease authority: an advisory lock (`flock`) on `<dir>/lease`, whose file holds
//! the last term granted.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use replisync::authority::{
    AuthorityAnswer, AuthorityRequest, LockAction, LockArbiter, LockFact, LockOutput,
};
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
/// What to answer is decided by the core's [`LockArbiter`] (see it for every rule);
/// this adapter only takes, releases and watches the lock and reads and writes the
/// term beside it. A thread waits on the lock (a blocking `flock`) from the start, and
/// again after a request to acquire that finds it not held; once it holds the lock
/// (still the file named `lease`: a file removed or replaced while it waited is let go
/// and the new one locked), the file's term is raised past every term seen (with the
/// holder, synced), and the replica is handed an unasked grant valid until lost
/// ([`AuthorityAnswer::Granted`] with `valid_ms: None`): it leads at once. The OS frees
/// the lock of a process that dies, however it dies, so a waiting process takes over
/// at once rather than after the lease expires; a leader that leaves releases the lock
/// and a waiting process takes over just as fast. Terms strictly increase across
/// holders: each is read and raised only under the lock.
///
/// A request to acquire while another holds the lock is refused with the term and
/// holder the file names (the wait goes on). A release lets go of the lock and does
/// not wait for it again until the next request to acquire. A grant is reported
/// [lost](AuthorityAnswer::Lost) if the lock file is removed or replaced while held
/// (and the new file is waited on). A thread still waiting when the authority is
/// dropped ends once the lock comes free (and lets go of it at once).
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
/// let wait = Duration::from_secs(10);
/// let at_a = FileAuthority::open(&dir, a, &Options::default())?;
///
/// // The first to lock is granted a term, unasked.
/// let Ok(AuthorityAnswer::Granted { term, valid_ms: None, .. }) = at_a.answers().recv_timeout(wait)
/// else { panic!("a holds the lock") };
/// let mut at_b = FileAuthority::open(&dir, b, &Options::default())?;
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
            .field("held", &state.arbiter.held())
            .field("waiting", &state.waiting)
            .finish_non_exhaustive()
    }
}

/// What the replica's side and the waiting thread share.
struct Shared {
    path: PathBuf,
    tx: Sender<AuthorityAnswer>,
    reporter: Reporter,
    state: Mutex<State>,
    /// Wakes the holding thread's checks early (on release, on drop).
    changed: Condvar,
}

struct State {
    arbiter: LockArbiter,
    /// The lock file held, and which taking of the lock it is.
    held: Option<(File, u64)>,
    /// Counts the takings of the lock, so that a watching thread knows its own.
    takes: u64,
    /// A thread is blocked on the lock.
    waiting: bool,
    /// The authority was dropped.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self, error: String) {
        self.reporter.report(Report::Lease {
            path: self.path.clone(),
            error,
        });
    }

    /// Carries out the arbiter's outputs: answers to the replica, actions on the lock.
    fn carry_out(self: &Arc<Self>, state: &mut State) {
        while let Some(output) = state.arbiter.poll() {
            let fact = match output {
                LockOutput::Answer(answer) => {
                    // The receiver lives in the authority; once it is dropped, no one asks.
                    let _ = self.tx.send(answer);
                    continue;
                }
                LockOutput::Medium(LockAction::Take) => {
                    wait_for_lock(self, state);
                    continue;
                }
                LockOutput::Medium(LockAction::Release) => {
                    // Dropping the file lets go of the lock; a waiting process (or
                    // thread) takes it at once.
                    state.held = None;
                    self.changed.notify_all();
                    continue;
                }
                LockOutput::Medium(LockAction::ReadTerm) => {
                    let (term, holder) = match state.held.as_mut() {
                        Some((file, _)) => read_lease(file),
                        None => {
                            open_lease(&self.path).map_or((0, None), |mut f| read_lease(&mut f))
                        }
                    };
                    LockFact::Recorded { term, holder }
                }
                LockOutput::Medium(LockAction::WriteTerm { term, holder }) => {
                    let written = match state.held.as_mut() {
                        Some((file, _)) => write_lease(file, term, holder),
                        None => Err(io::Error::other("the lock is not held")),
                    };
                    match written {
                        Ok(()) => LockFact::Raised { term },
                        Err(e) => {
                            self.report(format!("raising the lease term to {term}: {e}"));
                            LockFact::RaiseFailed { term }
                        }
                    }
                }
            };
            state.arbiter.handle_fact(fact);
        }
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
            tx,
            reporter: Reporter::new(options.reports.clone()),
            state: Mutex::new(State {
                arbiter: LockArbiter::new(me),
                held: None,
                takes: 0,
                waiting: false,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        shared.carry_out(&mut shared.lock());
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

/// The file's identity: a file removed or replaced has another.
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Whether `file` is still the one named `path`.
fn is_named(file: &File, path: &Path) -> bool {
    let named = std::fs::metadata(path).map(|m| identity(&m));
    file.metadata().map(|m| identity(&m)).ok() == named.ok()
}

/// Starts a thread that blocks on the lock, unless one is waiting or the lock is held.
fn wait_for_lock(shared: &Arc<Shared>, state: &mut State) {
    if state.waiting || state.held.is_some() || state.closed {
        return;
    }
    state.waiting = true;
    let shared_for_thread = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("replisync-files-lease".into())
        .spawn(move || hold(&shared_for_thread));
    if let Err(e) = spawned {
        state.waiting = false;
        shared.report(format!("no thread to wait on the lease lock: {e}"));
        state.arbiter.handle_fact(LockFact::Lost); // the next acquire tries again
    }
}

/// Blocks until the lock on the file named `path` is held. A file removed or replaced
/// while waiting on it is let go, and the one named `path` now is locked instead:
/// holding the lock of a file no longer named `lease` would let a second process hold
/// the lease.
fn lock_named(path: &Path) -> io::Result<File> {
    loop {
        let file = open_lease(path)?;
        file.lock()?;
        if is_named(&file, path) {
            return Ok(file);
        }
    }
}

/// The waiting thread: blocks on the lock; once it holds it, tells the arbiter, and
/// then checks, until it lets go, that the lock file is still the one locked.
fn hold(shared: &Arc<Shared>) {
    let locked = lock_named(&shared.path);
    let mut state = shared.lock();
    state.waiting = false;
    let file = match locked {
        Ok(file) => file,
        Err(e) => {
            shared.report(format!("the lease lock: {e}"));
            state.arbiter.handle_fact(LockFact::Lost); // the next acquire tries again
            shared.carry_out(&mut state);
            return;
        }
    };
    if state.closed {
        return; // dropping `file` lets go of the lock
    }
    state.takes += 1;
    let take = state.takes;
    state.held = Some((file, take));
    state.arbiter.handle_fact(LockFact::Locked);
    shared.carry_out(&mut state);
    loop {
        let Some((file, _)) = state.held.as_ref().filter(|(_, t)| *t == take) else {
            return; // let go (released, or closed)
        };
        if !is_named(file, &shared.path) {
            state.held = None;
            shared.report(
                "the lease lock file was removed or replaced while held; the grant is lost".into(),
            );
            state.arbiter.handle_fact(LockFact::Lost);
            shared.carry_out(&mut state);
            return;
        }
        state = shared
            .changed
            .wait_timeout(state, CHECK_HELD_EVERY)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

impl Authority for FileAuthority {
    fn handle(&mut self, _holder: SourceId, request: AuthorityRequest) {
        let mut state = self.shared.lock();
        state.arbiter.handle_request(request);
        self.shared.carry_out(&mut state);
    }

    fn answers(&self) -> Receiver<AuthorityAnswer> {
        self.answers.clone()
    }
}

impl Drop for FileAuthority {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.held = None;
        self.shared.changed.notify_all();
    }
}
