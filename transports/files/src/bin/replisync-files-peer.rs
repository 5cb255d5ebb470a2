//! A replica in a process of its own, driven by lines on stdin and telling what happens
//! on stdout: the program the crate's process tests and benchmarks start, and a way to
//! try a group directory by hand.
//!
//! ```text
//! replisync-files-peer <dir> [--distributed] [--poll] [--no-sync] [--no-authority]
//!                            [--lease <duration_ms>,<renew_deadline_ms>,<renew_interval_ms>,<max_delay_ms>]
//! ```
//!
//! The state is a map of strings to strings. Commands, one a line:
//!
//! | command | answer |
//! |---|---|
//! | `put <key> <value>` | `put <key> ok <started_ns> <done_ns>` once written and persisted (the unix times, in ns, when the write began and when it returned), or `put <key> err <why>` |
//! | `get <key>` | `value <key> <value>` or `value <key> -` |
//! | `lease` | `lease <leading: true/false> <term or 0>` |
//! | `leave` | leaves the group (a leader hands over), prints `left`, exits 0 |
//!
//! Events, as they happen: `ready <source>` once running; `leader <term> <unix_ns>` when
//! this replica starts leading; `follower <term>` when it stops; `seen <key> <value>
//! <unix_ns>` when a key gets a new value (the time is when the change was heard of);
//! `report <text>` for a report of the files layer; `degraded <text>`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use replisync::{Config, Event, LeaseConfig, LwwMap, Merge};
use replisync_files::{Options, Watch};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Board {
    entries: LwwMap<String, String>,
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn usage(why: &str) -> ! {
    eprintln!("replisync-files-peer: {why}");
    eprintln!(
        "usage: replisync-files-peer <dir> [--distributed] [--poll] [--no-sync] [--no-authority] [--lease d,r,i,m]"
    );
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| usage("no directory given"));
    let mut config = Config::leader();
    let mut options_watch = Watch::Notify;
    let mut sync_appends = true;
    let mut authority = true;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--distributed" => config.mode = replisync::SyncMode::Distributed,
            "--poll" => options_watch = Watch::Poll,
            "--no-sync" => sync_appends = false,
            "--no-authority" => authority = false,
            "--lease" => {
                let v: Vec<u64> = args
                    .next()
                    .unwrap_or_else(|| usage("--lease needs four numbers"))
                    .split(',')
                    .map(|n| n.parse().unwrap_or_else(|_| usage("--lease needs numbers")))
                    .collect();
                let [duration_ms, renew_deadline_ms, renew_interval_ms, max_delay_ms] = v[..]
                else {
                    usage("--lease needs four numbers")
                };
                config.lease = LeaseConfig {
                    duration_ms,
                    renew_deadline_ms,
                    renew_interval_ms,
                    max_delay_ms,
                };
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let mut options = Options::new(config);
    options.watch = options_watch;
    options.sync_appends = sync_appends;
    options.authority = authority;
    let reports = options.reports();

    let out = Arc::new(Mutex::new(std::io::stdout()));
    let say = {
        let out = Arc::clone(&out);
        move |line: String| {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };

    let mut driver = match replisync_files::driver::<Board, ()>(&dir, options) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("replisync-files-peer: {e}");
            std::process::exit(1)
        }
    };
    let events = driver.subscribe();
    let handle = driver.spawn().unwrap_or_else(|e| {
        eprintln!("replisync-files-peer: {e}");
        std::process::exit(1)
    });

    {
        let say = say.clone();
        std::thread::spawn(move || {
            for report in reports {
                say(format!("report {report}"));
            }
        });
    }
    {
        let say = say.clone();
        let handle = handle.clone();
        std::thread::spawn(move || {
            let mut known: BTreeMap<String, String> = BTreeMap::new();
            for event in events {
                let at = unix_ns();
                match event {
                    Event::Changed { .. } => {
                        let Ok(state) = handle.state() else { break };
                        for (k, v) in state.entries.iter() {
                            if known.get(k) != Some(v) {
                                say(format!("seen {k} {v} {at}"));
                                known.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    Event::LeadershipGained { term } => say(format!("leader {term} {at}")),
                    Event::LeadershipLost { term, .. } => say(format!("follower {term}")),
                    Event::Degraded { reason } => say(format!("degraded {reason:?}")),
                    _ => {}
                }
            }
        });
    }
    say(format!("ready {}", handle.source()));

    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("put"), Some(key), Some(value)) => {
                let (k, v) = (key.to_string(), value.to_string());
                let started = unix_ns();
                match handle.write(move |s, d, w| d.entries = s.entries.write_insert(k, v, w)) {
                    Ok(()) => say(format!("put {key} ok {started} {}", unix_ns())),
                    Err(e) => say(format!("put {key} err {e}")),
                }
            }
            (Some("get"), Some(key), None) => {
                let value = handle
                    .state()
                    .ok()
                    .and_then(|s| s.entries.get(key).cloned())
                    .unwrap_or_else(|| "-".into());
                say(format!("value {key} {value}"));
            }
            (Some("lease"), None, None) => {
                let leading = handle.is_leader().unwrap_or(false);
                let term = handle.lease().ok().flatten().map_or(0, |l| l.term);
                say(format!("lease {leading} {term}"));
            }
            (Some("leave"), None, None) => {
                let _ = handle.leave();
                say("left".into());
                std::process::exit(0);
            }
            _ => say(format!("unknown {line}")),
        }
    }
    // stdin closed: leave as on `leave`.
    let _ = handle.leave();
}
