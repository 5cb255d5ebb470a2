//! # replisync-files
//!
//! [replisync] for processes on one machine (desktop apps with several windows, CLI
//! tools, worker processes), through a shared directory: a [`Transport`], a [`Store`],
//! a lease authority on `flock` ([`FileAuthority`]), and one call, [`open`], from a
//! directory to a running [`Handle`].
//!
//! ```
//! use replisync::{Config, Lww, Merge};
//! use replisync_files::Options;
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//!
//! #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
//! struct Doc {
//!     title: Lww<String>,
//! }
//!
//! let dir = std::env::temp_dir().join(format!("replisync-doc-{}", std::process::id()));
//! // Two replicas here; in real use, one per process, each opening the same directory.
//! let alice = replisync_files::open::<Doc, ()>(&dir, Options::new(Config::distributed()))?;
//! let bob = replisync_files::open::<Doc, ()>(&dir, Options::new(Config::distributed()))?;
//!
//! alice.write(|doc, d, w| d.title = doc.title.write("hello".into(), w))?;
//! let mut waited = Duration::ZERO;
//! while bob.state()?.title.get().map(String::as_str) != Some("hello") {
//!     assert!(waited < Duration::from_secs(10), "bob never saw alice's write");
//!     std::thread::sleep(Duration::from_millis(5));
//!     waited += Duration::from_millis(5);
//! }
//!
//! // A later run starts from what was stored.
//! drop((alice, bob));
//! let again = replisync_files::open::<Doc, ()>(&dir, Options::new(Config::distributed()))?;
//! assert_eq!(again.state()?.title.get().map(String::as_str), Some("hello"));
//! # drop(again);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The directory
//!
//! ```text
//! <dir>/            0700, owned by the user running the replicas
//!   format          "replisync-files 1"
//!   lease           the lease authority's lock file: the last term granted, its holder
//!   msgs/           one message log per member: <member>-<n>.log, and <member>.lock
//!   store/          one store log per process: <id>.log, and <id>.lock
//! ```
//!
//! Files are created 0600. A directory of the current user is made 0700; one that
//! belongs to another user is refused ([`OpenError::NotOwner`]): its owner could read
//! and forge every message. Each member holds an advisory lock (`flock`) on its
//! `.lock` file while it lives; the OS frees it when the process dies, however it
//! dies, and the others then clean up after it.
//!
//! ## Messages
//!
//! A member appends each broadcast to its own log as one record; the others keep the
//! log open and read what it gained when a file notification wakes them (inotify on
//! Linux, through the `notify` crate). Where notifications are not to be had, or with
//! [`Watch::Poll`], they look every [`Options::poll_interval`] (10 ms by default)
//! instead: the **polling fallback**, reported once as [`Report::Polling`]. Even with
//! notifications the directory is looked at once a second, in case one was lost.
//!
//! ## Leadership
//!
//! In leader mode (unless [`Options::authority`] is off) a replica leads only while it
//! holds the advisory lock on `lease` ([`FileAuthority`]): at most one process leads at
//! a time, terms strictly increase across holders (the file holds the last one), and a
//! dead leader's lock is freed by the OS, so a waiting process leads within
//! milliseconds instead of waiting out the lease.
//!
//! ## Records
//!
//! Every log, of messages or of the store, is a sequence of records:
//!
//! | bytes | what |
//! |---|---|
//! | 0..4 | `RSF1` |
//! | 4..8 | the payload's length, u32 little-endian |
//! | 8..12 | the CRC-32 of the payload |
//! | 12..16 | the CRC-32 of bytes 0..12 |
//! | 16.. | the payload |
//!
//! A torn record (its writer died mid-write) or a damaged one (a flipped bit, a cut)
//! fails a check: it is skipped, reported as a [`Report`] (and logged), and the
//! reader carries on with the next good record; nothing crashes. The replicas'
//! protocol recovers a lost message by a later delta or sync. A damaged store record
//! is left out of what is loaded and its file is kept, never overwritten.
//!
//! ## Disk use
//!
//! Bounded, whatever the number of writes:
//!
//! - messages: per live member, at most [`Options::max_log_bytes`] (1 MiB by default)
//!   or one message and its 16-byte header if that is larger; a log is rotated before
//!   it would grow past the cap, and the files of members that died are removed
//!   within about a second by any live member;
//! - store: per live process, its log: the last compaction (the whole state) and the
//!   deltas appended since, which the replica compacts once they outgrow the state
//!   (so about twice the state's encoded size, plus one delta); the logs of processes
//!   that died are folded into the next compaction of a process that loaded them.
//!
//! So a group of `n` live processes whose state encodes to `s` bytes uses at most
//! about `n × (1 MiB + 2 s)` plus a few hundred bytes of lock and format files.
//! (`tests/disk.rs` checks it over 100,000 writes.)
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg(unix)]

/// The README's code compiles as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod authority;
mod error;
mod group;
mod options;
mod reader;
mod record;
mod report;
mod store;
mod transport;

use std::path::Path;

use replisync::{Bundle, Driver, Handle, Machine, Replica, Request, SourceId, SyncMode};

pub use authority::FileAuthority;
pub use error::{OpenError, SendError, StoreError};
pub use options::{Options, Watch};
pub use report::Report;
pub use store::FileStore;
pub use transport::FileTransport;

#[doc(no_inline)]
pub use replisync::{Store, Transport};

/// Opens the group in `dir` (created if missing) and starts a replica in it: one call
/// from a directory to a running [`Handle`]. The replica restores what the group's
/// store holds, joins through a [`FileTransport`], and persists to a [`FileStore`]; in
/// leader mode it leads only while it holds the group's [`FileAuthority`] (unless
/// [`Options::authority`] is off), so at most one process leads at a time, and a
/// successor takes over as soon as the OS frees a dead leader's lock.
///
/// To subscribe to events from the very start, or to use another clock, take the
/// [`driver`] instead and spawn it yourself. See the crate docs for an example.
///
/// # Errors
///
/// [`OpenError`]: the directory is refused, a file or the thread cannot be made, or
/// the configuration contradicts itself.
pub fn open<S, R>(
    dir: impl AsRef<Path>,
    options: Options,
) -> Result<Handle<Replica<S, R>>, OpenError>
where
    S: Bundle + Send,
    R: Request + Send,
{
    let dir = dir.as_ref();
    driver(dir, options)?
        .spawn()
        .map_err(|error| OpenError::Io {
            path: dir.to_path_buf(),
            error,
        })
}

/// What [`open`] starts, not started yet: subscribe to it
/// ([`Driver::subscribe`]) or set its clock, then [`spawn`](Driver::spawn) it.
///
/// ```
/// use replisync::{Config, Event, Lww, Merge};
/// use replisync_files::Options;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
/// struct Doc { title: Lww<String> }
///
/// let dir = std::env::temp_dir().join(format!("driver-doc-{}", std::process::id()));
/// let mut driver = replisync_files::driver::<Doc, ()>(&dir, Options::new(Config::distributed()))?;
/// let events = driver.subscribe(); // nothing missed
/// let handle = driver.spawn()?;
/// handle.write(|doc, d, w| d.title = doc.title.write("hi".into(), w))?;
/// assert!(events.iter().any(|e| matches!(e, Event::Changed { .. })));
/// # drop(handle);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`open`].
pub fn driver<S, R>(
    dir: impl AsRef<Path>,
    options: Options,
) -> Result<Driver<Replica<S, R>, FileTransport>, OpenError>
where
    S: Bundle + Send,
    R: Request + Send,
{
    let source = options.source.unwrap_or_else(SourceId::random);
    let replica: Replica<S, R> = Replica::new(options.config.clone(), source)?;
    driver_for(dir, options, replica)
}

/// As [`driver`], for a machine made elsewhere: a [`Replica`] built by hand, or a layer
/// that wraps one and implements [`Machine`] (such as `replisync_session::Session`).
/// The group in `dir` is joined as `machine`'s [source](Machine::source)
/// ([`Options::source`] is not read); `options.config` must be the configuration the
/// machine's replica was made with (its mode decides whether the lease authority is
/// used).
///
/// ```
/// use replisync::{Config, Lww, Merge, Replica, SourceId};
/// use replisync_files::Options;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
/// struct Doc { title: Lww<String> }
///
/// let dir = std::env::temp_dir().join(format!("driver-for-doc-{}", std::process::id()));
/// let config = Config::distributed();
/// let replica: Replica<Doc> = Replica::new(config.clone(), SourceId::random())?;
/// let handle = replisync_files::driver_for(&dir, Options::new(config), replica)?.spawn()?;
/// handle.write(|doc, d, w| d.title = doc.title.write("hi".into(), w))?;
/// # drop(handle);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`open`].
pub fn driver_for<M>(
    dir: impl AsRef<Path>,
    options: Options,
    machine: M,
) -> Result<Driver<M, FileTransport>, OpenError>
where
    M: Machine + Send + 'static,
    M::Event: Clone + Send + 'static,
{
    let dir = dir.as_ref();
    let source = machine.source();
    let store = FileStore::open(dir, &options)?;
    let transport = FileTransport::join(dir, &options)?;
    let driver = Driver::new(machine, transport).store(store);
    if options.authority && options.config.mode == SyncMode::Leader {
        return Ok(driver.authority(FileAuthority::open(dir, source, &options)?));
    }
    Ok(driver)
}

#[cfg(test)]
pub(crate) mod testdir {
    use std::path::PathBuf;

    /// A fresh directory path under the system's temporary directory (not created).
    pub(crate) fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "replisync-files-{name}-{}",
            crate::group::random_name()
        ))
    }
}
