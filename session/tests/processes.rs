//! The example's one-replica-per-process form (`session_timeout --dir DIR --id NAME`),
//! run as real processes on one group directory: the file transport, its store, and its
//! `flock` lease authority, with `kill -9`.
//!
//! The processes are the example binary that `cargo test` builds (it builds every
//! example before it runs the tests). Every wait is bounded by [`PATIENCE`] and fails
//! the test, with what each process said, when it runs out; nothing here measures
//! speed. The sessions use durations long enough not to change phase during a test,
//! except where a test waits for a phase.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::Value;

/// How long a process may take to do what a test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

/// A session that stays `IDLE` through a test.
const IDLE: &[&str] = &[
    "--idle-grace-ms",
    "600000",
    "--countdown-ms",
    "600000",
    "--warn-before-ms",
    "1000",
];

/// A session whose countdown starts at once and runs through a test.
const COUNTING: &[&str] = &[
    "--idle-grace-ms",
    "0",
    "--countdown-ms",
    "600000",
    "--warn-before-ms",
    "1000",
];

/// The example binary, next to this test's own directory; fails when it is missing or
/// older than the example's sources (then `cargo test` or `cargo build -p
/// replisync-session --example session_timeout` builds it).
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = profile
        .join("examples")
        .join(format!("session_timeout{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "no example binary at {} ({e}): run `cargo test` (it builds the examples), \
                 or `cargo build -p replisync-session --example session_timeout` first",
                bin.display()
            )
        });
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/session_timeout");
    for entry in std::fs::read_dir(&sources).expect("the example's sources") {
        let entry = entry.unwrap();
        let changed = entry.metadata().unwrap().modified().unwrap();
        assert!(
            changed <= built,
            "{} is older than {}: run `cargo test` (it builds the examples), or \
             `cargo build -p replisync-session --example session_timeout` first",
            bin.display(),
            entry.path().display()
        );
    }
    bin
}

/// A fresh group directory path under the system's temporary directory, removed on
/// drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Scratch(std::env::temp_dir().join(format!(
            "replisync-session-{name}-{}-{nanos}",
            std::process::id()
        )))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One replica's process, its JSON lines read on a thread.
struct Replica {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    /// Every line read so far.
    seen: Vec<Value>,
}

impl Replica {
    /// Starts `session_timeout --dir <dir> --id <name> <args>` and waits for its `ready`
    /// line.
    fn start(dir: &Scratch, name: &str, args: &[&str]) -> Replica {
        let mut child = Command::new(example())
            .arg("--dir")
            .arg(&dir.0)
            .args(["--id", name])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the example starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = crossbeam_channel::unbounded();
        let who = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("{who} printed a line that is not JSON ({e}): {line}")
                });
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut replica = Replica {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        };
        replica.expect(|l| l["event"] == "ready");
        replica
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("the process reads its stdin");
        stdin.flush().unwrap();
    }

    /// The next line, if one comes before `deadline`.
    fn next_before(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                assert_eq!(line["id"], self.name.as_str(), "{line}");
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Waits for a line from now on that `want` accepts; fails after [`PATIENCE`].
    fn expect(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.next_before(deadline) {
                Some(line) if want(&line) => return line,
                Some(_) => {}
                None => panic!(
                    "{} did not print the line awaited; it printed:\n{}",
                    self.name,
                    self.transcript()
                ),
            }
        }
    }

    /// A line that `want` accepts, printed already or from now on.
    fn await_said(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        if let Some(line) = self.seen.iter().find(|l| want(l)) {
            return line.clone();
        }
        self.expect(want)
    }

    /// Sends `status` and returns its answer.
    fn status(&mut self) -> Value {
        self.send("status");
        self.expect(|l| l["event"] == "status")
    }

    /// Asks `status` until `want` accepts the answer; fails after [`PATIENCE`].
    fn status_until(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.status();
            if want(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} never reached the awaited status; it printed:\n{}",
                self.name,
                self.transcript()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn transcript(&self) -> String {
        self.seen
            .iter()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    }

    /// SIGKILL, as `kill -9`: no goodbye, no release (the OS frees its locks).
    fn kill9(&mut self) {
        self.child.kill().expect("the process is killed");
        let _ = self.child.wait();
    }

    /// `quit`, then waits for the `left` line and a clean exit.
    fn quit(&mut self) {
        self.send("quit");
        self.expect(|l| l["event"] == "left");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("the process's status") {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first process of a group in leader mode: started alone, so it is the one that
/// takes the lease and starts the session. Returns it and its `started` line.
fn first_leader(dir: &Scratch, name: &str, args: &[&str]) -> (Replica, Value) {
    let mut leader = Replica::start(dir, name, args);
    leader.await_said(|l| l["event"] == "leader_gained");
    let started = leader.await_said(|l| l["event"] == "started");
    assert_eq!(started["role"], "leader", "{started}");
    (leader, started)
}

#[test]
fn activity_in_a_follower_resets_every_process() {
    let dir = Scratch::new("activity");
    let (p0, started) = first_leader(&dir, "p0", IDLE);
    let before = started["idle_start_at"].as_u64().unwrap();
    let mut all = vec![p0];
    for name in ["p1", "p2"] {
        all.push(Replica::start(&dir, name, IDLE));
    }
    // The late ones joined the running session rather than starting their own.
    for p in &mut all[1..] {
        let joined = p.await_said(|l| l["event"] == "started");
        assert_eq!(
            joined["idle_start_at"], started["idle_start_at"],
            "{joined}"
        );
        let status = p.status_until(|s| s["leader"] == "p0");
        assert_eq!(status["role"], "follower", "{status}");
    }

    std::thread::sleep(Duration::from_millis(5)); // a later millisecond for the reset
    all[1].send("activity");
    let mut resets = Vec::new();
    for p in &mut all {
        let reset = p.expect(|l| l["event"] == "reset" && l["cause"] == "activity");
        resets.push(reset["idle_start_at"].as_u64().unwrap());
        assert_eq!(reset["phase"], "IDLE", "{reset}");
    }
    assert!(resets[0] > before, "{resets:?} after {before}");
    assert!(resets.iter().all(|r| *r == resets[0]), "{resets:?}");
    for p in &mut all {
        p.quit();
    }
}

#[test]
fn after_kill_9_of_the_leader_a_successor_keeps_the_deadlines() {
    let dir = Scratch::new("kill-leader");
    let (mut p0, _) = first_leader(&dir, "p0", COUNTING);
    let counting = p0.await_said(|l| l["event"] == "countdown");
    let (end, idle) = (
        counting["countdown_end_at"].clone(),
        counting["idle_start_at"].clone(),
    );
    let term = counting["term"].as_u64().unwrap();
    let mut rest: Vec<Replica> = ["p1", "p2"]
        .iter()
        .map(|n| Replica::start(&dir, n, COUNTING))
        .collect();
    for p in &mut rest {
        let status = p.status_until(|s| s["leader"] == "p0");
        assert_eq!(status["countdown_end_at"], end, "{status}");
    }

    p0.kill9();
    // Exactly one survivor takes over, with a higher term.
    let deadline = Instant::now() + PATIENCE;
    let successor = 'found: loop {
        for (i, p) in rest.iter_mut().enumerate() {
            if p.next_before(Instant::now() + Duration::from_millis(20))
                .is_some_and(|l| l["event"] == "leader_gained")
            {
                break 'found i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no successor after the leader's kill -9:\n{}{}",
            rest[0].transcript(),
            rest[1].transcript()
        );
    };
    let name = rest[successor].name.clone();
    for p in &mut rest {
        let status = p.status_until(|s| s["leader"] == name.as_str());
        assert!(
            status["term"].as_u64().unwrap() > term,
            "{status} after term {term}"
        );
        assert_eq!(status["countdown_end_at"], end, "{status}");
        assert_eq!(status["idle_start_at"], idle, "{status}");
        assert_eq!(status["phase"], "COUNTDOWN", "{status}");
        let role = if p.name == name { "leader" } else { "follower" };
        assert_eq!(status["role"], role, "{status}");
    }
    let other = 1 - successor;
    assert!(
        !rest[other]
            .seen
            .iter()
            .any(|l| l["event"] == "leader_gained"),
        "two successors:\n{}",
        rest[other].transcript()
    );
    for p in &mut rest {
        p.quit();
    }
}

#[test]
fn a_process_started_mid_countdown_shows_the_same_deadline() {
    let dir = Scratch::new("mid-countdown");
    let (mut p0, _) = first_leader(&dir, "p0", COUNTING);
    let counting = p0.await_said(|l| l["event"] == "countdown");
    let end = counting["countdown_end_at"].clone();
    assert!(end.is_u64(), "{counting}");

    // Another process, with other durations on its command line: it joins the session
    // running, and shows its deadline instead of starting over.
    let mut p1 = Replica::start(&dir, "p1", &[]);
    let joined = p1.await_said(|l| l["event"] == "started");
    assert_eq!(joined["countdown_end_at"], end, "{joined}");
    assert_eq!(joined["phase"], "COUNTDOWN", "{joined}");
    assert_eq!(p1.status()["countdown_end_at"], end);

    // The same name after a kill -9 is the same replica, and it too finds the deadline.
    p1.kill9();
    let mut again = Replica::start(&dir, "p1", &[]);
    let joined = again.await_said(|l| l["event"] == "started");
    assert_eq!(joined["countdown_end_at"], end, "{joined}");
    again.quit();
    p0.quit();
}

#[test]
fn distributed_mode_converges_after_concurrent_activity() {
    let dir = Scratch::new("distributed");
    let args: Vec<&str> = [&["--mode", "distributed"], IDLE].concat();
    let mut p0 = Replica::start(&dir, "p0", &args);
    let started = p0.await_said(|l| l["event"] == "started");
    let before = started["idle_start_at"].as_u64().unwrap();
    let mut all = vec![p0];
    for name in ["p1", "p2"] {
        let mut p = Replica::start(&dir, name, &args);
        p.await_said(|l| l["event"] == "started");
        all.push(p);
    }
    for p in &mut all {
        let status = p.status_until(|s| s["idle_start_at"] == before);
        assert_eq!(
            (&status["role"], &status["leader"]),
            (&"peer".into(), &Value::Null)
        );
    }

    std::thread::sleep(Duration::from_millis(5));
    // Activity in two processes at once: each writes its own reset. A process answers
    // the `status` after it only once its own write is made and sent.
    all[0].send("activity");
    all[1].send("activity");
    for p in &mut all[..2] {
        p.status();
    }
    // Every process ends on the same reset, whichever won: each holds at least its own,
    // so once all three agree they hold the winner.
    let deadline = Instant::now() + PATIENCE;
    let settled = loop {
        let statuses: Vec<Value> = all.iter_mut().map(Replica::status).collect();
        let same = |key: &str| statuses.iter().all(|s| s[key] == statuses[0][key]);
        if same("idle_start_at") && same("countdown_end_at") && same("phase") {
            break statuses[0].clone();
        }
        assert!(Instant::now() < deadline, "no convergence: {statuses:#?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        settled["idle_start_at"].as_u64().unwrap() > before,
        "{settled}"
    );
    for p in &mut all {
        p.quit();
    }
}

#[test]
fn unknown_commands_and_bad_values_are_errors_that_change_nothing() {
    let dir = Scratch::new("errors");
    let (mut p0, _) = first_leader(&dir, "p0", IDLE);
    let before = p0.status();
    for bad in [
        "bogus",
        "activity now",
        "config",
        "config countdown_ms=abc",
        "config countdown_ms=0",
        "config warn_before_ms=-5",
        "config reset_on_warning_activity=maybe",
        "config no_such_setting=1",
        "config idle_grace_ms",
        "config countdown_ms=1000 idle_grace_ms=99999999999999",
    ] {
        p0.send(bad);
        let error = p0.expect(|l| l.get("error").is_some());
        assert_eq!(error["event"], "error", "{bad}: {error}");
        assert_eq!(error["input"], bad, "{error}");
    }
    // An operation the service refuses: also an `error` field, nothing written.
    p0.send("resume");
    let refused = p0.expect(|l| l.get("error").is_some());
    assert_eq!(
        (&refused["event"], &refused["operation"]),
        (&"refused".into(), &"resume".into())
    );

    let after = p0.status();
    for key in [
        "phase",
        "idle_start_at",
        "countdown_end_at",
        "config",
        "extends",
    ] {
        assert_eq!(
            before[key],
            after[key],
            "{key} changed:\n{}",
            p0.transcript()
        );
    }
    // Nothing but the errors and the two statuses was printed meanwhile.
    let since: Vec<&Value> = p0
        .seen
        .iter()
        .skip_while(|l| **l != before)
        .filter(|l| l.get("error").is_none())
        .collect();
    assert_eq!(since, [&before, &after], "{}", p0.transcript());
    p0.quit();
}

#[test]
fn bad_arguments_exit_with_code_2_and_a_message() {
    for args in [
        &["--dir", "/tmp/x"][..],
        &["--id", "a"],
        &["--dir", "/tmp/x", "--id", "a", "--mode", "both"],
        &["--dir", "/tmp/x", "--id", "a", "--countdown-ms", "soon"],
        &["--dir", "/tmp/x", "--id", "a", "--countdown-ms", "0"],
        &["--dir", "/tmp/x", "--id", "seventeen-letters"],
        &["--dir", "/tmp/x", "--id", "a", "--frobnicate"],
    ] {
        let out = Command::new(example())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the example runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("session_timeout: "),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
