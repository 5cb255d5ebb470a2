//! The group directory: its layout, its permissions, and the locked files that say
//! which members are alive.
//!
//! ```text
//! <dir>/            0700, owned by the user running the replicas
//!   format          "replisync-files 1": the layout's version
//!   lease           the lease authority's lock file, holding the last term granted
//!   msgs/           message logs: <member>.lock, <member>-<generation>.log
//!   store/          store logs: <store>.lock, <store>.log (<store>.log.damaged)
//! ```
//!
//! Every file is created 0600. A member (a transport, or a store) holds an exclusive
//! advisory lock (`flock`, through [`File::lock`]) on its `.lock` file while it lives;
//! the OS frees it when the process dies, however it dies, so any member that can
//! take another's lock knows that one is gone and may clean up after it. A lock file
//! is created under a temporary name, locked, then renamed into place, so that no one
//! ever sees it unlocked while its owner lives.

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::OpenError;

/// What the `format` file holds.
pub(crate) const FORMAT: &str = "replisync-files 1\n";

/// The prefix of every temporary file.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// Temporary files older than this whose lock is free are debris of a crash.
const TMP_DEBRIS_AGE: Duration = Duration::from_secs(60);

/// The subdirectory of message logs.
pub(crate) const MSGS: &str = "msgs";
/// The subdirectory of store logs.
pub(crate) const STORE: &str = "store";
/// The lease authority's lock file.
pub(crate) const LEASE: &str = "lease";

/// Creates the group directory (0700) and its subdirectories if missing, and checks
/// that the current user owns them; makes an existing directory of that user private.
///
/// # Errors
///
/// [`OpenError`] when the directory belongs to another user, is no directory, holds
/// another layout, or cannot be created or read.
pub(crate) fn prepare(dir: &Path) -> Result<(), OpenError> {
    // The layout is checked before anything is changed: a directory refused is left
    // exactly as it was, its permissions included.
    owned_dir(dir)?;
    check_format(dir)?;
    private_dir(dir)?;
    private_dir(&dir.join(MSGS))?;
    private_dir(&dir.join(STORE))?;
    Ok(())
}

/// Creates `dir` (0700) if missing, checks it is a directory of this user, and makes
/// it private.
fn private_dir(dir: &Path) -> Result<(), OpenError> {
    let meta = owned_dir(dir)?;
    if meta.mode() & 0o077 != 0 {
        let io = |error| OpenError::Io {
            path: dir.to_path_buf(),
            error,
        };
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Creates `dir` (0700) if missing and checks that it is a directory of this user;
/// changes nothing of an existing one.
fn owned_dir(dir: &Path) -> Result<fs::Metadata, OpenError> {
    let io = |error| OpenError::Io {
        path: dir.to_path_buf(),
        error,
    };
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let meta = fs::metadata(dir).map_err(io)?;
    if !meta.is_dir() {
        return Err(OpenError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let user = rustix::process::geteuid().as_raw();
    if meta.uid() != user {
        return Err(OpenError::NotOwner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            user,
        });
    }
    Ok(meta)
}

fn check_format(dir: &Path) -> Result<(), OpenError> {
    let path = dir.join("format");
    let io = |error| OpenError::Io {
        path: path.clone(),
        error,
    };
    match fs::read(&path) {
        Ok(found) if found == FORMAT.as_bytes() => Ok(()),
        Ok(found) => {
            let found = String::from_utf8_lossy(&found).trim().to_string();
            let newer = found
                .strip_prefix("replisync-files ")
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|v| v > 1);
            Err(if newer {
                OpenError::NewerFormat { path, found }
            } else {
                OpenError::NotAGroup { path, found }
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write_atomically(dir, "format", FORMAT.as_bytes()).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

/// A random name part: 32 hex digits.
pub(crate) fn random_name() -> String {
    format!("{:032x}", replisync::SourceId::random().as_u128())
}

/// Options that create a new file 0600 for writing, failing if it exists.
pub(crate) fn create_new() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true).mode(0o600);
    o
}

/// Writes `name` in `dir` atomically: a temporary file, fsync, rename, fsync of the
/// directory. A crash leaves the old file or the new, never a mix.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{}", random_name()));
    let result = (|| {
        let mut f = create_new().open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes the directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `<dir>/<name>` holding an exclusive lock: under a temporary name, locked,
/// then renamed, so that no one sees it unlocked while the returned file lives.
pub(crate) fn create_locked(dir: &Path, name: &str) -> io::Result<File> {
    let tmp = dir.join(format!("{TMP_PREFIX}{}", random_name()));
    let file = create_new().open(&tmp)?;
    let done = file.lock().and_then(|()| fs::rename(&tmp, dir.join(name)));
    match done {
        Ok(()) => Ok(file),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Whether the member whose lock file is `path` is gone. `Ok(Some(file))`: its lock was
/// free and is now held through `file` (drop it to let go); `Ok(None)`: it lives (or
/// its lock file is gone already).
pub(crate) fn claim_if_gone(path: &Path) -> io::Result<Option<File>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Removes temporary files in `dir` that a crash left behind (older than a minute,
/// lock free).
pub(crate) fn remove_tmp_debris(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(TMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > TMP_DEBRIS_AGE);
        if old && matches!(claim_if_gone(&path), Ok(Some(_))) {
            let _ = fs::remove_file(&path);
        }
    }
}

/// The entries of `dir` as (file name, path), names that are not UTF-8 left out.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::scratch;

    #[test]
    fn a_new_group_is_private() {
        let dir = scratch("private");
        prepare(&dir).unwrap();
        for d in [dir.clone(), dir.join(MSGS), dir.join(STORE)] {
            assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700, "{d:?}");
        }
        let format = fs::metadata(dir.join("format")).unwrap();
        assert_eq!(format.mode() & 0o777, 0o600);
        // An existing directory of this user is made private.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn another_layout_is_refused_and_kept() {
        let dir = scratch("format");
        prepare(&dir).unwrap();
        fs::write(dir.join("format"), "replisync-files 2\n").unwrap();
        // Issue 17, defect 9: refusing a newer layout changed its permissions.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        assert!(matches!(prepare(&dir), Err(OpenError::NewerFormat { .. })));
        assert_eq!(
            fs::metadata(&dir).unwrap().mode() & 0o777,
            0o750,
            "a refused directory is left as it was"
        );
        fs::write(dir.join("format"), "something else").unwrap();
        assert!(matches!(prepare(&dir), Err(OpenError::NotAGroup { .. })));
        assert_eq!(fs::read(dir.join("format")).unwrap(), b"something else");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_is_no_group_directory() {
        let dir = scratch("file");
        fs::write(&dir, "").unwrap();
        assert!(matches!(
            prepare(&dir),
            Err(OpenError::NotADirectory { .. })
        ));
        fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn a_held_lock_says_alive_and_a_free_one_gone() {
        let dir = scratch("locks");
        prepare(&dir).unwrap();
        let held = create_locked(&dir, "a.lock").unwrap();
        assert!(claim_if_gone(&dir.join("a.lock")).unwrap().is_none());
        drop(held);
        let claimed = claim_if_gone(&dir.join("a.lock")).unwrap();
        assert!(claimed.is_some());
        // While claimed, a second claimant sees it held.
        assert!(claim_if_gone(&dir.join("a.lock")).unwrap().is_none());
        assert!(claim_if_gone(&dir.join("missing.lock")).unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
