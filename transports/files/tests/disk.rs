//! Disk use stays bounded, whatever the number of writes.

mod common;

use common::{du, Scratch};
use replisync::{Config, LwwMap, Merge};
use replisync_files::Options;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Board {
    entries: LwwMap<String, u64>,
}

#[test]
fn a_hundred_thousand_writes_keep_the_directory_under_its_bound() {
    const WRITES: u64 = 100_000;
    const KEYS: u64 = 100;
    const CAP: u64 = 64 << 10;
    let dir = Scratch::new("disk");
    let options = || {
        let mut o = Options::new(Config::distributed());
        o.max_log_bytes = CAP;
        // Syncing changes no size; it only makes this test slower.
        o.sync_appends = false;
        o
    };
    let writer = replisync_files::open::<Board, ()>(dir.path(), options()).unwrap();
    let reader = replisync_files::open::<Board, ()>(dir.path(), options()).unwrap();
    let mut largest = 0;
    for i in 0..WRITES {
        writer
            .write(move |s, d, w| {
                d.entries = s.entries.write_insert(format!("key {}", i % KEYS), i, w)
            })
            .unwrap();
        if i % 1_000 == 999 {
            largest = largest.max(du(dir.path()));
        }
    }
    // The bound the crate docs state: per member, the message log cap (the largest
    // message here is a full sync of the state, far below it) plus about twice the
    // state as stored. The state: 100 keys, each a stamp and a number, stored as JSON
    // (under 200 bytes a key).
    let state = KEYS * 200;
    let bound = 2 * (CAP + 2 * state) + 4_096;
    println!("disk: largest {largest} bytes after {WRITES} writes; bound {bound}");
    assert!(largest <= bound, "{largest} bytes > {bound}");
    // And the reader kept up: the last write arrived.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    let last = format!("key {}", (WRITES - 1) % KEYS);
    while reader.state().unwrap().entries.get(&last) != Some(&(WRITES - 1)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the reader never got the last write"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
