//! Torn, truncated and corrupted files, of messages and of the store: detected, skipped,
//! reported, never a crash; the group keeps working.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Peer, Scratch, PATIENCE};
use crossbeam_channel::Receiver;
use replisync::{Config, Degradation, Event, Lww, Merge, Store, Transport};
use replisync_files::{FileStore, FileTransport, Options, Report};
use replisync_testkit::mirror;
use serde::{Deserialize, Serialize};

/// A record as the crate docs describe it: `RSF1`, the length, the payload's CRC-32,
/// the header's CRC-32, the payload.
fn record(payload: &[u8]) -> Vec<u8> {
    let mut r = b"RSF1".to_vec();
    r.extend((payload.len() as u32).to_le_bytes());
    r.extend(crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&r);
    r.extend(header_crc.to_le_bytes());
    r.extend(payload);
    r
}

fn recv(rx: &Receiver<Vec<u8>>) -> Vec<u8> {
    rx.recv_timeout(PATIENCE).expect("a message arrives")
}

/// The reports received so far, and the stream of those to come.
struct Reports {
    rx: Receiver<Report>,
    seen: Vec<Report>,
}

impl Reports {
    fn new(rx: Receiver<Report>) -> Reports {
        Reports {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits until a report that `want` accepts has come (it may have come already).
    fn wait(&mut self, want: impl Fn(&Report) -> bool) -> Report {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(r) = self.seen.iter().find(|r| want(r)) {
                return r.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(r) => self.seen.push(r),
                Err(e) => panic!("the report never came ({e}); came: {:#?}", self.seen),
            }
        }
    }

    /// How many of the reports so far `want` accepts.
    fn count(&mut self, want: impl Fn(&Report) -> bool) -> usize {
        self.seen.extend(self.rx.try_iter());
        self.seen.iter().filter(|r| want(r)).count()
    }
}

/// Places a file whole (written aside, then renamed in), as a member creates its lock.
fn place(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let tmp = dir.join(format!(".tmp-test-{name}"));
    fs::write(&tmp, bytes).unwrap();
    let path = dir.join(name);
    fs::rename(&tmp, &path).unwrap();
    path
}

const MEMBER: &str = "00000000000000000000000000000abc";

#[test]
fn damaged_messages_are_skipped_reported_and_reading_goes_on() {
    let dir = Scratch::new("damaged-messages");
    let mut options = Options::default();
    let mut reports = Reports::new(options.reports());
    let reader = FileTransport::join(dir.path(), &options).unwrap();
    let inbox = reader.incoming();

    // A member that lives (its lock is held) and whose log is damaged.
    let msgs = dir.path().join("msgs");
    let lock = place(&msgs, &format!("{MEMBER}.lock"), b"");
    let held = File::open(&lock).unwrap();
    held.lock().unwrap();
    let mut log = record(b"first");
    let mut flipped = record(b"second");
    let at = flipped.len() - 2;
    flipped[at] ^= 0x10;
    log.extend(&flipped);
    log.extend(record(b"third"));
    log.extend(b"some bytes that are no record");
    log.extend(record(b"fourth"));
    let log_path = place(&msgs, &format!("{MEMBER}-0000000000000000.log"), &log);

    assert_eq!(recv(&inbox), b"first");
    assert_eq!(recv(&inbox), b"third");
    assert_eq!(recv(&inbox), b"fourth");
    let skipped = |r: &Report| matches!(r, Report::MessageSkipped { log, .. } if *log == log_path);
    reports.wait(|r| {
        *r == Report::MessageSkipped {
            log: log_path.clone(),
            offset: record(b"first").len() as u64,
            len: flipped.len() as u64,
        }
    });
    assert_eq!(reports.count(skipped), 2, "{:#?}", reports.seen);

    // Cut short under the reader's feet, then written on: read on from the new end.
    let file = OpenOptions::new().append(true).open(&log_path).unwrap();
    file.set_len(10).unwrap();
    reports.wait(|r| matches!(r, Report::MessageLogShrank { len: 10, .. }));
    (&file).write_all(&record(b"fifth")).unwrap();
    assert_eq!(recv(&inbox), b"fifth");
    assert!(inbox.try_recv().is_err(), "nothing else arrived");
    drop(held);
}

#[test]
fn the_message_files_of_a_member_that_died_are_removed_and_the_living_kept() {
    let dir = Scratch::new("dead-member");
    let reader = FileTransport::join(dir.path(), &Options::default()).unwrap();
    let msgs = dir.path().join("msgs");
    let live = FileTransport::join(dir.path(), &Options::default()).unwrap();
    // A member that died: its lock file is there, nobody holds its lock.
    let dead_lock = place(&msgs, &format!("{MEMBER}.lock"), b"");
    let dead_log = place(
        &msgs,
        &format!("{MEMBER}-0000000000000003.log"),
        &record(b"last words"),
    );
    assert_eq!(recv(&reader.incoming()), b"last words");
    let deadline = Instant::now() + PATIENCE;
    while dead_lock.exists() || dead_log.exists() {
        assert!(Instant::now() < deadline, "a dead member's files stayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(live.log_path().exists(), "a live member's log was removed");
    drop((reader, live));
}

#[test]
fn a_store_reads_every_process_log_and_folds_in_only_those_of_the_gone() {
    let dir = Scratch::new("store-logs");
    let options = Options::default();
    let mut a = FileStore::open(dir.path(), &options).unwrap();
    let mut b = FileStore::open(dir.path(), &options).unwrap();
    a.compact(b"[a base]").unwrap();
    b.compact(b"[b base]").unwrap();
    a.append(b"[a delta]").unwrap();
    b.append(b"[b delta]").unwrap();
    let (a_log, b_log) = (a.log_path().to_path_buf(), b.log_path().to_path_buf());
    drop(a); // gone; b lives

    let mut c = FileStore::open(dir.path(), &options).unwrap();
    let loaded = String::from_utf8(c.load().unwrap().unwrap()).unwrap();
    for part in ["[a base][a delta]", "[b base][b delta]"] {
        assert!(loaded.contains(part), "{part} missing from {loaded}");
    }
    c.compact(loaded.as_bytes()).unwrap();
    assert!(
        !a_log.exists(),
        "the gone process's log was folded in and removed"
    );
    assert!(b_log.exists(), "a live process's log is never touched");
    b.append(b"[b again]").unwrap();
    drop(c);

    let mut d = FileStore::open(dir.path(), &options).unwrap();
    let loaded = String::from_utf8(d.load().unwrap().unwrap()).unwrap();
    for part in ["[a base][a delta]", "[b base][b delta][b again]"] {
        assert!(loaded.contains(part), "{part} missing from {loaded}");
    }
    drop((b, d));
}

#[test]
fn damaged_store_records_are_left_out_reported_and_their_log_kept() {
    let dir = Scratch::new("store-damage");
    let mut options = Options::default();
    let mut reports = Reports::new(options.reports());
    let mut a = FileStore::open(dir.path(), &options).unwrap();
    a.compact(b"[a base]").unwrap();
    a.append(b"[a one]").unwrap();
    a.append(b"[a two]").unwrap();
    let mut b = FileStore::open(dir.path(), &options).unwrap();
    b.compact(b"[b base]").unwrap();
    b.append(b"[b cut]").unwrap();
    let (a_log, b_log) = (a.log_path().to_path_buf(), b.log_path().to_path_buf());
    drop((a, b));

    // A flipped bit in a's middle record; b's last record cut short.
    let mut bytes = fs::read(&a_log).unwrap();
    let middle = record(b"[a base]").len() + 16 + 2;
    bytes[middle] ^= 0x01;
    fs::write(&a_log, &bytes).unwrap();
    let len = fs::metadata(&b_log).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&b_log)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let original = fs::read(&a_log).unwrap();

    let mut c = FileStore::open(dir.path(), &options).unwrap();
    let loaded = String::from_utf8(c.load().unwrap().unwrap()).unwrap();
    for part in ["[a base]", "[a two]", "[b base]"] {
        assert!(loaded.contains(part), "{part} missing from {loaded}");
    }
    assert!(!loaded.contains("[a one]") && !loaded.contains("[b cut]"));
    reports.wait(|r| {
        matches!(r, Report::StoreRecordSkipped { log, offset, .. }
            if *log == a_log && *offset == record(b"[a base]").len() as u64)
    });
    reports.wait(|r| matches!(r, Report::StoreTailDropped { log, .. } if *log == b_log));

    c.compact(loaded.as_bytes()).unwrap();
    let aside = a_log.with_extension("log.damaged");
    reports.wait(|r| {
        *r == Report::StoreLogKeptAside {
            path: aside.clone(),
        }
    });
    assert_eq!(
        fs::read(&aside).unwrap(),
        original,
        "the damaged log is kept as it was"
    );
    assert!(
        !b_log.exists(),
        "a log with only a torn tail is folded in and removed"
    );
    drop(c);
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Doc {
    title: Lww<String>,
}

#[test]
fn a_store_of_a_newer_schema_is_reported_and_never_written_over() {
    let dir = Scratch::new("newer-schema");
    // What a newer version of the library would have stored.
    let stored = mirror::Stored {
        schema: replisync::format::SCHEMA_VERSION + 1,
        updated_at: 1,
        source: replisync::SourceId::from_u128(9),
        state: mirror::State::<Doc>::default(),
    };
    let mut newer = mirror::encode(replisync::Codec::Json, &stored);
    newer.push(b'\n');
    let mut old = FileStore::open(dir.path(), &Options::default()).unwrap();
    old.compact(&newer).unwrap();
    let newer_log = old.log_path().to_path_buf();
    drop(old);
    let before = fs::read(&newer_log).unwrap();

    let mut driver =
        replisync_files::driver::<Doc, ()>(dir.path(), Options::new(Config::distributed()))
            .unwrap();
    let events = driver.subscribe();
    let handle = driver.spawn().unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events
            .recv_timeout(left)
            .expect("the replica reports the store")
        {
            Event::Degraded {
                reason: Degradation::StoreUnreadable(_),
            } => break,
            _ => continue,
        }
    }
    // The replica works on, and never persists over what it could not read.
    for i in 0..5 {
        handle
            .write(move |s, d, w| d.title = s.title.write(format!("t{i}"), w))
            .unwrap();
    }
    drop(handle);
    assert_eq!(fs::read(&newer_log).unwrap(), before);
    let logs: Vec<_> = fs::read_dir(dir.path().join("store"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .collect();
    assert_eq!(logs.len(), 1, "nothing else was stored");
}

#[test]
fn a_group_keeps_working_after_its_files_are_damaged() {
    let dir = Scratch::new("group-damage");
    let mut a = Peer::ready("a", dir.path(), &["--distributed"]);
    let mut b = Peer::ready("b", dir.path(), &["--distributed"]);
    assert!(a.put("k1", "one").is_some());
    b.await_said(|l| l.starts_with("seen k1 one "));

    // Garbage in every message log, as a torn or corrupted write would leave.
    let msgs = dir.path().join("msgs");
    for entry in fs::read_dir(&msgs).unwrap().flatten() {
        if entry.path().extension().is_some_and(|x| x == "log") {
            let mut f = OpenOptions::new().append(true).open(entry.path()).unwrap();
            f.write_all(b"RSF1\xff\xff\xff\x7fdamaged header and then some")
                .unwrap();
        }
    }
    assert!(a.put("k2", "two").is_some());
    b.await_said(|l| l.starts_with("seen k2 two "));
    b.await_said(|l| l.starts_with("report skipped "));
    a.leave();
    b.leave();

    // Damage every store log: a flipped bit in the first record, the last one cut.
    let store = dir.path().join("store");
    let logs: Vec<PathBuf> = fs::read_dir(&store)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    assert_eq!(logs.len(), 2, "{logs:?}");
    let mut bytes = fs::read(&logs[0]).unwrap();
    bytes[20] ^= 0x04;
    fs::write(&logs[0], bytes).unwrap();
    let len = fs::metadata(&logs[1]).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&logs[1])
        .unwrap()
        .set_len(len - 1)
        .unwrap();

    let mut c = Peer::ready("c", dir.path(), &["--distributed"]);
    c.await_said(|l| l.starts_with("report left out a damaged store record "));
    c.await_said(|l| l.starts_with("report dropped the cut-short last record "));
    assert_eq!(c.get("k1").as_deref(), Some("one"));
    assert!(c.put("k3", "three").is_some());
    c.leave();
}
