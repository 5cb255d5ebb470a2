//! The group directory: private files, and a directory of another user refused.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::Scratch;
use replisync::{Config, Lww, Merge};
use replisync_files::{OpenError, Options};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Doc {
    title: Lww<String>,
}

fn modes(dir: &Path, out: &mut Vec<(String, bool, u32)>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        out.push((
            entry.path().display().to_string(),
            meta.is_dir(),
            meta.mode() & 0o777,
        ));
        if meta.is_dir() {
            modes(&entry.path(), out);
        }
    }
}

#[test]
fn files_are_created_0600_and_directories_0700() {
    let dir = Scratch::new("modes");
    let handle =
        replisync_files::open::<Doc, ()>(dir.path(), Options::new(Config::distributed())).unwrap();
    for i in 0..3 {
        handle
            .write(move |s, d, w| d.title = s.title.write(format!("t{i}"), w))
            .unwrap();
    }
    let mut found = Vec::new();
    modes(dir.path(), &mut found);
    let files = found.iter().filter(|f| !f.1).count();
    // format, a message log and its lock, a store log and its lock
    assert!(files >= 5, "{found:?}");
    for (path, is_dir, mode) in &found {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{path}: {mode:o}");
    }
    assert_eq!(fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o700);
    drop(handle);
}

#[test]
fn a_group_directory_of_another_user_is_refused() {
    let scratch = Scratch::new("not-mine");
    let user = rustix::process::geteuid();
    // As root, a directory given to another user; as anyone else, root's `/`.
    let dir = if user.is_root() {
        fs::create_dir(scratch.path()).unwrap();
        std::os::unix::fs::chown(scratch.path(), Some(65534), Some(65534)).unwrap();
        scratch.path().to_path_buf()
    } else {
        Path::new("/").to_path_buf()
    };
    let owner = fs::metadata(&dir).unwrap().uid();
    assert_ne!(owner, user.as_raw());
    let err = replisync_files::open::<Doc, ()>(&dir, Options::new(Config::distributed()))
        .expect_err("another user's directory is refused");
    match &err {
        OpenError::NotOwner {
            path,
            owner: o,
            user: u,
        } => {
            assert_eq!(
                (path.as_path(), *o, *u),
                (dir.as_path(), owner, user.as_raw())
            );
        }
        other => panic!("refused for another reason: {other}"),
    }
    assert!(err.to_string().contains("belongs to user"), "{err}");
    if user.is_root() {
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing was created in it"
        );
    }
}
