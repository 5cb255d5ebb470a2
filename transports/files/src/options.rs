//! How a group directory is used.

use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use replisync::{Config, SourceId};

use crate::Report;

/// How new messages are noticed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Watch {
    /// File notifications (inotify on Linux, through the `notify` crate), with a look
    /// at the directory every second in case one was missed. Where notifications
    /// cannot be had (no inotify instances left, say), falls back to
    /// [`Poll`](Watch::Poll) and says so with [`Report::Polling`].
    #[default]
    Notify,
    /// Looks at the directory every [`Options::poll_interval`]: for file systems that
    /// send no notifications.
    Poll,
}

/// Settings of a replica on a group directory. Start from [`Options::new`] (or
/// [`Options::default`], leader mode) and change the fields you need.
///
/// ```
/// use replisync::Config;
/// use replisync_files::{Options, Watch};
///
/// let mut options = Options::new(Config::distributed());
/// options.watch = Watch::Poll;
/// let reports = options.reports(); // damage found and fallbacks in use
/// assert!(reports.try_recv().is_err());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// The replica's configuration.
    pub config: Config,
    /// The replica's id; `None` (the default) draws a random one.
    pub source: Option<SourceId>,
    /// How new messages are noticed.
    pub watch: Watch,
    /// How often the directory is looked at when polling. Default 10 ms.
    pub poll_interval: Duration,
    /// A message log is rotated (a new file started, the old one removed) before it
    /// would grow past this; one message larger than this gets a file of its own.
    /// Default 1 MiB.
    pub max_log_bytes: u64,
    /// Whether every store append is synced to the disk (`fdatasync`) before the
    /// write that caused it returns. Default `true`: a write reported persisted
    /// survives a power cut, not only a crash of the process. Compactions are always
    /// synced.
    pub sync_appends: bool,
    /// Leader mode only: make the lease exclusive with the group's lease authority,
    /// a [`FileAuthority`](crate::FileAuthority) (a `flock` on the `lease` file), so
    /// that at most one process leads at a time and a successor takes over as soon as
    /// the OS frees a dead leader's lock. Default `true`; off, leadership is only
    /// eventually single (and always fenced), and a dead leader is replaced once its
    /// lease expires.
    pub authority: bool,
    /// Where [`Report`]s go (besides the log); see [`Options::reports`].
    pub reports: Option<Sender<Report>>,
}

impl Default for Options {
    /// Leader mode, with the defaults above.
    fn default() -> Self {
        Options::new(Config::default())
    }
}

impl Options {
    /// `config`, with the defaults above.
    pub fn new(config: Config) -> Self {
        Options {
            config,
            source: None,
            watch: Watch::Notify,
            poll_interval: Duration::from_millis(10),
            max_log_bytes: 1 << 20,
            sync_appends: true,
            authority: true,
            reports: None,
        }
    }

    /// A stream of the [`Report`]s of everything opened with these options (and their
    /// clones) from now on. Read it or drop it: it is unbounded.
    pub fn reports(&mut self) -> Receiver<Report> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.reports = Some(tx);
        rx
    }
}
