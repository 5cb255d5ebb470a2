//! The transport conformance suite: what every transport must do, checked the same way
//! for each (see the crate-level contract in replisync's docs). A transport crate calls
//! [`run`] from a test with a way to open a group of `n` members of one fresh group.
//!
//! ```
//! use replisync::Hub;
//!
//! replisync_testkit::conformance::run(|n| {
//!     let hub = Hub::new();
//!     (0..n).map(|_| hub.connect()).collect()
//! });
//! ```

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use replisync::{Config, Driver, Event, Lww, Merge, Replica, SourceId, Transport};
use serde::{Deserialize, Serialize};

/// How long a message may take to arrive before the suite calls it lost.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Runs every check on fresh groups from `open` (each call: `n` connected members of a
/// new group, on a medium that loses nothing while the test runs). Panics, naming the
/// check, on the first failure.
pub fn run<T: Transport>(mut open: impl FnMut(usize) -> Vec<T>) {
    whole_messages_reach_every_other_member(open(3));
    nothing_comes_back_to_its_sender(open(2));
    replicas_converge_over_it(open(3));
}

/// Messages of every size arrive whole, byte for byte, once at each other member.
pub fn whole_messages_reach_every_other_member<T: Transport>(mut group: Vec<T>) {
    assert!(group.len() >= 2, "conformance: a group of at least two");
    let sizes = [0usize, 1, 2, 255, 256, 4_096, 65_536, 1 << 20];
    for (n, size) in sizes.into_iter().enumerate() {
        let message: Vec<u8> = (0..size).map(|i| (i * 31 + n) as u8).collect();
        let from = n % group.len();
        group[from]
            .broadcast(&message)
            .unwrap_or_else(|e| panic!("conformance: broadcast of {size} bytes failed: {e}"));
        for (i, member) in group.iter().enumerate() {
            if i == from {
                continue;
            }
            let got = member
                .incoming()
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|e| panic!("conformance: member {i} never got {size} bytes: {e}"));
            assert!(
                got == message,
                "conformance: member {i} got {} bytes for a message of {size}, or other bytes",
                got.len()
            );
        }
    }
}

/// A member does not receive its own broadcasts.
pub fn nothing_comes_back_to_its_sender<T: Transport>(mut group: Vec<T>) {
    group[0].broadcast(b"mine").expect("conformance: broadcast");
    let other = group[1]
        .incoming()
        .recv_timeout(PATIENCE)
        .expect("conformance: the other member got it");
    assert_eq!(other, b"mine");
    match group[0].incoming().recv_timeout(Duration::from_millis(200)) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok(bytes) => panic!(
            "conformance: a member got its own broadcast back ({} bytes)",
            bytes.len()
        ),
        Err(RecvTimeoutError::Disconnected) => {
            panic!("conformance: a member's incoming channel closed while it was open")
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Board {
    note: Lww<String>,
}

/// Replicas on native drivers over the transport agree on every write.
pub fn replicas_converge_over_it<T: Transport>(group: Vec<T>) {
    let mut handles = Vec::new();
    let mut streams = Vec::new();
    for (i, member) in group.into_iter().enumerate() {
        let replica: Replica<Board> =
            Replica::new(Config::distributed(), SourceId::from_u128(i as u128 + 1))
                .expect("a valid config");
        let mut driver = Driver::new(replica, member);
        streams.push(driver.subscribe());
        handles.push(driver.spawn().expect("conformance: the driver starts"));
    }
    for (i, h) in handles.iter().enumerate() {
        let text = format!("from replica {i}");
        h.write(move |s, d, w| d.note = s.note.write(text, w))
            .expect("conformance: a write");
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        let notes: Vec<Option<String>> = handles
            .iter()
            .map(|h| h.state().expect("running").note.get().cloned())
            .collect();
        if notes[0].is_some() && notes.iter().all(|n| *n == notes[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "conformance: replicas did not converge over the transport: {notes:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for h in &handles {
        h.leave().expect("conformance: a clean leave");
    }
    // Every event stream ends once its driver has stopped.
    for s in streams {
        while let Ok(event) = s.recv_timeout(PATIENCE) {
            let _: Event<()> = event;
        }
    }
}
