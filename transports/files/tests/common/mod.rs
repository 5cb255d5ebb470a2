//! What the process tests and the benchmark share: peers in processes of their own,
//! fresh directories, seeds.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// How long a peer may take to do what a test waits for before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The peer program.
pub const PEER: &str = env!("CARGO_BIN_EXE_replisync-files-peer");

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Scratch(std::env::temp_dir().join(format!(
            "replisync-files-{name}-{}-{nanos}",
            std::process::id()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The total size of the files under `dir`.
pub fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() {
            du(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// A peer program running as a child process, its lines read on a thread.
pub struct Peer {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Peer {
    /// Starts the peer program on `dir` with `args`.
    pub fn start(name: &str, dir: &Path, args: &[&str]) -> Peer {
        let mut child = Command::new(PEER)
            .arg(dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the peer program starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Starts a peer and waits until it is running.
    pub fn ready(name: &str, dir: &Path, args: &[&str]) -> Peer {
        let mut peer = Peer::start(name, dir, args);
        peer.expect(|l| l.starts_with("ready "));
        peer
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("the peer reads its stdin");
        stdin.flush().unwrap();
    }

    /// The next line, if one comes within `wait`.
    pub fn next_line(&mut self, wait: Duration) -> Option<String> {
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Waits for a line from now on that `want` accepts and returns it; panics after
    /// [`PATIENCE`].
    pub fn expect(&mut self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "peer {} did not say what was awaited ({e:?}); it said: {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Waits until a line that `want` accepts has come (it may have come already);
    /// panics after [`PATIENCE`].
    pub fn await_said(&mut self, want: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| want(l)) {
            return line.clone();
        }
        self.expect(want)
    }

    /// Whether a line that `want` accepts came, reading what arrived up to now.
    pub fn said(&mut self, want: impl Fn(&str) -> bool) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().any(|l| want(l))
    }

    /// Sends `put key value` and waits for its answer: `Some(unix_ns)`, when the write
    /// began, once written and persisted; `None` if refused.
    pub fn put(&mut self, key: &str, value: &str) -> Option<u128> {
        self.send(&format!("put {key} {value}"));
        let prefix = format!("put {key} ");
        let line = self.expect(|l| l.starts_with(&prefix));
        let rest = &line[prefix.len()..];
        rest.strip_prefix("ok ")
            .map(|t| t.split_whitespace().next().unwrap().parse().unwrap())
    }

    /// `(leading, term)`.
    pub fn lease(&mut self) -> (bool, u64) {
        self.send("lease");
        let line = self.expect(|l| l.starts_with("lease "));
        let mut words = line.split_whitespace().skip(1);
        let leading = words.next() == Some("true");
        (leading, words.next().unwrap().parse().unwrap())
    }

    /// The value of `key`, `None` if unset.
    pub fn get(&mut self, key: &str) -> Option<String> {
        self.send(&format!("get {key}"));
        let prefix = format!("value {key} ");
        let line = self.expect(|l| l.starts_with(&prefix));
        let v = line[prefix.len()..].to_string();
        (v != "-").then_some(v)
    }

    /// Kills the process with SIGKILL, as `kill -9` does (no goodbye, no release: the
    /// OS frees its locks), and waits for it to end.
    pub fn kill9(&mut self) {
        // std's `Child::kill` sends SIGKILL on Unix.
        self.child.kill().expect("the peer is killed");
        let _ = self.child.wait();
    }

    /// Asks the peer to leave and waits for it to exit.
    pub fn leave(&mut self) {
        self.send("leave");
        self.expect(|l| l == "left");
        let status = self.child.wait().expect("the peer exits");
        assert!(status.success(), "peer {} exited with {status}", self.name);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A seed from `REPLISYNC_FILES_SEED` (to replay a run), or a fresh one; printed.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("REPLISYNC_FILES_SEED") {
        Ok(s) => s.parse().expect("REPLISYNC_FILES_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    println!("{test}: seed {seed} (replay with REPLISYNC_FILES_SEED={seed})");
    seed
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Asks every peer until exactly one leads and all agree on its term; returns the
/// leader's index and the term.
pub fn settled_leader(peers: &mut [&mut Peer]) -> (usize, u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answers: Vec<(bool, u64)> = peers.iter_mut().map(|p| p.lease()).collect();
        let leaders: Vec<usize> = (0..answers.len()).filter(|i| answers[*i].0).collect();
        let term = answers[0].1;
        if leaders.len() == 1 && answers.iter().all(|a| a.1 == term) && term > 0 {
            return (leaders[0], term);
        }
        assert!(
            Instant::now() < deadline,
            "no single leader settled: {answers:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
