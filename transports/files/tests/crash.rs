//! Crash durability: a writer killed with SIGKILL at random points, 100 times, on one
//! group directory; after each kill the store loads, and holds every write the writer
//! reported persisted before it died.
//!
//! The seed is printed; replay a run with `REPLISYNC_FILES_SEED=<seed>`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{seed, Peer, Rng, Scratch};
use replisync::{Config, LwwMap, Merge, Now, Replica, SourceId, Store};
use replisync_files::{FileStore, Options};
use serde::{Deserialize, Serialize};

/// The peer program's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Board {
    entries: LwwMap<String, String>,
}

/// Loads the group's store as a replica starting in it would.
fn load(dir: &std::path::Path) -> Board {
    let mut store = FileStore::open(dir, &Options::default()).expect("the store opens");
    let bytes = store.load().expect("the store loads");
    let mut replica: Replica<Board> =
        Replica::new(Config::distributed(), SourceId::random()).unwrap();
    if let Some(bytes) = bytes {
        replica
            .restore(Now::new(0, 0), &bytes)
            .expect("the store is readable");
    }
    replica.state().clone()
}

#[test]
fn every_write_reported_persisted_survives_kill_9() {
    let mut rng = Rng::new(seed("crash"));
    let dir = Scratch::new("crash");
    let mut persisted: BTreeMap<String, String> = BTreeMap::new();
    let mut kills_mid_start = 0;
    for round in 0..100 {
        let mut writer = Peer::start(&format!("writer {round}"), dir.path(), &["--distributed"]);
        if rng.below(4) == 0 {
            // Killed while starting: loading, taking over the logs of the dead.
            std::thread::sleep(Duration::from_micros(rng.below(20_000)));
            kills_mid_start += 1;
        } else {
            writer.expect(|l| l.starts_with("ready "));
            let writes = rng.below(12);
            for i in 0..writes {
                let (key, value) = (format!("r{round}k{i}"), format!("v{}", rng.below(1000)));
                assert!(writer.put(&key, &value).is_some(), "a write was refused");
                persisted.insert(key, value);
            }
            // One more, in flight when the kill comes (it may or may not be kept).
            writer.send(&format!("put r{round}k{writes} late"));
            std::thread::sleep(Duration::from_micros(rng.below(1_500)));
        }
        writer.kill9();

        let board = load(dir.path());
        for (key, value) in &persisted {
            assert_eq!(
                board.entries.get(key),
                Some(value),
                "round {round}: {key} was reported persisted and is gone"
            );
        }
    }
    let logs = std::fs::read_dir(dir.path().join("store")).unwrap().count();
    println!(
        "crash: {} writes persisted over 100 kills ({kills_mid_start} while starting); {logs} store files left, {} bytes in all",
        persisted.len(),
        common::du(dir.path())
    );
    assert!(!persisted.is_empty());
}
