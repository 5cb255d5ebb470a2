//! Cross-process timings over a group directory, with the peer program in processes of
//! its own: a write in process A until process B hears of it (p50, p99), and leader
//! failover after SIGKILL of the leader and after a graceful exit.
//!
//! ```sh
//! cargo bench -p replisync-files --bench propagation
//! ```
//!
//! Times are unix nanoseconds read by each process (one machine, one clock): the
//! write's start in A, the change's event in B, the kill in this program, the
//! successor's leadership event.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{settled_leader, Peer, Rng, Scratch};

fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// p50, p99 and the largest of `samples` (ns), in ms.
fn summary(samples: &mut [u128]) -> String {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i] as f64 / 1e6
    };
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} samples)",
        at(0.5),
        at(0.99),
        at(1.0),
        samples.len()
    )
}

/// One write at a time in A, each timed until B's event.
fn propagation(args: &[&str], writes: usize) -> String {
    let dir = Scratch::new("bench-propagation");
    let mut a = Peer::ready("a", dir.path(), args);
    let mut b = Peer::ready("b", dir.path(), args);
    // Warm up: both have heard of each other.
    a.put("warm", "up").unwrap();
    b.await_said(|l| l.starts_with("seen warm up "));
    let mut samples = Vec::with_capacity(writes);
    // Random pauses between writes, so that they fall anywhere in a poll interval
    // (a fixed pause can lock onto its phase).
    let mut rng = Rng::new(0x5eed);
    for i in 0..writes {
        let key = format!("k{i}");
        let started = a.put(&key, "v").expect("written");
        let prefix = format!("seen {key} v ");
        let line = b.await_said(|l| l.starts_with(&prefix));
        let seen: u128 = line[prefix.len()..].parse().unwrap();
        samples.push(seen.saturating_sub(started));
        std::thread::sleep(Duration::from_micros(1_000 + rng.below(10_000)));
    }
    a.leave();
    b.leave();
    summary(&mut samples)
}

/// A little more than the default join grace.
const JOIN_GRACE: Duration = Duration::from_millis(1_600);

/// Leader failover: three peers; the leader is killed (or leaves) and replaced by a
/// new peer, `rounds` times.
fn failover(args: &[&str], rounds: usize, graceful: bool) -> String {
    let dir = Scratch::new("bench-failover");
    let mut peers: Vec<Peer> = (0..3)
        .map(|i| Peer::ready(&format!("p{i}"), dir.path(), args))
        .collect();
    std::thread::sleep(JOIN_GRACE);
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (leader, term) = settled_leader(&mut peers.iter_mut().collect::<Vec<_>>());
        let at = unix_ns();
        if graceful {
            peers[leader].send("leave");
        } else {
            peers[leader].kill9();
        }
        let mut old = peers.remove(leader);
        let mut first = None;
        while first.is_none() {
            for peer in peers.iter_mut() {
                if let Some(line) = peer.next_line(Duration::from_millis(1)) {
                    let mut words = line.split_whitespace();
                    if words.next() == Some("leader") {
                        let t: u64 = words.next().unwrap().parse().unwrap();
                        let when: u128 = words.next().unwrap().parse().unwrap();
                        if t > term {
                            first = Some(when);
                        }
                    }
                }
            }
        }
        samples.push(first.unwrap().saturating_sub(at));
        if graceful {
            old.expect(|l| l == "left");
        }
        drop(old);
        peers.push(Peer::ready(&format!("r{round}"), dir.path(), args));
        // Without an authority, a replica that just joined waits out its join grace (a
        // renew interval plus the allowed delay: 1.5 s by default) before it claims;
        // measure hand-overs between replicas that have been running.
        std::thread::sleep(JOIN_GRACE);
    }
    for mut p in peers {
        p.leave();
    }
    summary(&mut samples)
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter is not offered.
    println!("cross-process propagation, a write in A until B's event:");
    println!(
        "  inotify:            {}",
        propagation(&["--distributed"], 1_000)
    );
    println!(
        "  polling (10 ms):    {}",
        propagation(&["--distributed", "--poll"], 200)
    );
    println!("leader failover (3 processes), until a survivor leads a newer term:");
    println!(
        "  flock authority, after kill -9:      {}",
        failover(&[], 20, false)
    );
    println!(
        "  flock authority, after a clean exit: {}",
        failover(&[], 20, true)
    );
    let gossip = ["--no-authority"];
    println!(
        "  no authority, after kill -9:         {}",
        failover(&gossip, 3, false)
    );
    println!(
        "  no authority, after a clean exit:    {}",
        failover(&gossip, 3, true)
    );
}
