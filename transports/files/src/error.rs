//! What can go wrong, one enum per operation.

use std::fmt;
use std::io;
use std::path::PathBuf;

use replisync::ConfigError;

/// Why a group directory could not be opened (by [`open`](crate::open),
/// [`FileTransport::join`](crate::FileTransport::join) or
/// [`FileStore::open`](crate::FileStore::open)).
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// A file or directory could not be created, read or locked.
    Io {
        /// Which.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// The path exists and is no directory.
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The directory belongs to another user. Whoever owns it can read and alter every
    /// message and the stored state, so it is refused.
    NotOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// The user id of this process.
        user: u32,
    },
    /// The directory was laid out by a newer version of this crate; it is left as it
    /// is.
    NewerFormat {
        /// The `format` file.
        path: PathBuf,
        /// What it says.
        found: String,
    },
    /// The directory's `format` file says it is something else.
    NotAGroup {
        /// The `format` file.
        path: PathBuf,
        /// What it says.
        found: String,
    },
    /// The replica's configuration contradicts itself.
    Config(ConfigError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            OpenError::NotADirectory { path } => write!(
                f,
                "{} is not a directory; give a directory (it is created if missing)",
                path.display()
            ),
            OpenError::NotOwner { path, owner, user } => write!(
                f,
                "the group directory {} belongs to user {owner}, not to this process's user {user}; \
                 refusing it (its owner could read and forge every message): use a directory of your own",
                path.display()
            ),
            OpenError::NewerFormat { path, found } => write!(
                f,
                "{} says {found:?}: the group was laid out by a newer replisync-files; \
                 upgrade this program (the directory is left untouched)",
                path.display()
            ),
            OpenError::NotAGroup { path, found } => write!(
                f,
                "{} says {found:?}, not \"replisync-files 1\": this directory is not a \
                 replisync-files group; choose another",
                path.display()
            ),
            OpenError::Config(e) => write!(f, "invalid replica configuration: {e}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io { error, .. } => Some(error),
            OpenError::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for OpenError {
    fn from(e: ConfigError) -> Self {
        OpenError::Config(e)
    }
}

/// Why a broadcast was not written.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The message log could not be written (the disk is full, say). Nothing of the
    /// message is left in the log.
    Io {
        /// The log.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// The message is longer than a record can carry (4 GiB).
    TooLarge {
        /// Its length.
        len: usize,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Io { path, error } => {
                write!(f, "writing the message log {}: {error}", path.display())
            }
            SendError::TooLarge { len } => write!(
                f,
                "a message of {len} bytes is over the 4 GiB a record carries; lower Config::max_message_bytes"
            ),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Io { error, .. } => Some(error),
            SendError::TooLarge { .. } => None,
        }
    }
}

/// Why the store could not be read or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// A store file could not be read or written. A failed append leaves nothing of
    /// itself in the log; a failed compaction leaves the old log in place.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// The bytes are longer than a record can carry (4 GiB).
    TooLarge {
        /// Their length.
        len: usize,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, error } => write!(f, "store file {}: {error}", path.display()),
            StoreError::TooLarge { len } => {
                write!(f, "{len} bytes are over the 4 GiB a store record carries")
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            StoreError::TooLarge { .. } => None,
        }
    }
}
