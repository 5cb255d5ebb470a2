//! The file transport passes the transport conformance suite every transport runs, with
//! file notifications and with polling.

use replisync_files::{FileTransport, Options, Watch};

fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "replisync-files-conformance-{name}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ))
}

fn group(watch: Watch, dir: &std::path::Path, n: usize) -> Vec<FileTransport> {
    let mut options = Options::default();
    options.watch = watch;
    (0..n)
        .map(|_| FileTransport::join(dir, &options).expect("joins"))
        .collect()
}

#[test]
fn the_file_transport_keeps_the_transport_contract() {
    let mut dirs = Vec::new();
    replisync_testkit::conformance::run(|n| {
        dirs.push(scratch(&format!("notify-{}", dirs.len())));
        group(Watch::Notify, dirs.last().unwrap(), n)
    });
    for dir in dirs {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn the_file_transport_keeps_the_transport_contract_when_polling() {
    let mut dirs = Vec::new();
    replisync_testkit::conformance::run(|n| {
        dirs.push(scratch(&format!("poll-{}", dirs.len())));
        group(Watch::Poll, dirs.last().unwrap(), n)
    });
    for dir in dirs {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
