//! Three replicas of a small shared board, each on its own thread, joined by the
//! in-process hub. One leads; the others mirror it and send it requests; when the
//! leader leaves, another takes over at once.
//!
//! Run with `cargo run --example quickstart`. It exits non-zero if a step does not
//! happen in time.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use replisync::{
    Config, Driver, Event, Handle, Hub, LeaseConfig, Lww, Merge, MutexAuthority, Replica, SourceId,
    SystemClock,
};
use serde::{Deserialize, Serialize};

/// The shared state: a struct of last-writer-wins registers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Board {
    note: Lww<String>,
    deadline_s: Lww<u64>,
}

/// What a follower may ask the leader for.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Ask {
    Extend { by_s: u64 },
}

type Error = Box<dyn std::error::Error>;

struct Node {
    name: u128,
    handle: Handle<Replica<Board, Ask>>,
    events: Receiver<Event<Ask>>,
}

fn main() -> Result<(), Error> {
    // Short lease timings so the demo is quick (the defaults are seconds).
    let mut config = Config::leader();
    config.lease = LeaseConfig {
        duration_ms: 300,
        renew_deadline_ms: 200,
        renew_interval_ms: 100,
        max_delay_ms: 50,
    }
    .validated()?;
    config.heartbeat_interval_ms = 100;
    config.peer_timeout_ms = 350;

    let hub = Hub::new();
    let clock = SystemClock::new();
    // A lease authority makes leadership exclusive; in one process, a mutex.
    let authority = MutexAuthority::new(clock);
    let mut nodes = Vec::new();
    for name in 1..=3 {
        let replica = Replica::new(config.clone(), SourceId::from_u128(name))?;
        let mut driver = Driver::new(replica, hub.connect())
            .clock(clock)
            .authority(authority.clone());
        let events = driver.subscribe();
        nodes.push(Node {
            name,
            handle: driver.spawn()?,
            events,
        });
    }

    // 1. The replicas elect a leader.
    let (leader, term) = wait(&nodes[0].events, "a leader", |e| match e {
        Event::LeaderChanged {
            leader: Some(l),
            term,
        } => Some((l.as_u128(), term)),
        _ => None,
    })?;
    println!("replica {leader} is the leader (term {term})");
    let lead = nodes.iter().position(|n| n.name == leader).unwrap();

    // 2. Only the leader writes; the others see its write.
    nodes[lead].handle.write(|board, d, w| {
        d.note = board.note.write("standup at ten".into(), w);
        d.deadline_s = board.deadline_s.write(60, w);
    })?;
    for n in nodes.iter().filter(|n| n.name != leader) {
        wait(&n.events, "the leader's write", changed("note"))?;
        let board = n.handle.state()?;
        println!(
            "replica {} sees note = {:?}, deadline = {} s",
            n.name,
            board.note.get().unwrap(),
            board.deadline_s.get().unwrap()
        );
    }

    // 3. A follower asks the leader for more time; the leader applies it by writing.
    let asker = &nodes[(lead + 1) % 3];
    asker.handle.request(Ask::Extend { by_s: 30 })?;
    let (from, Ask::Extend { by_s }) = wait(&nodes[lead].events, "the request", |e| match e {
        Event::Request { from, request } => Some((from.as_u128(), request)),
        _ => None,
    })?;
    println!("replica {leader} got a request from replica {from}: extend by {by_s} s");
    nodes[lead].handle.write(move |board, d, w| {
        d.deadline_s = board
            .deadline_s
            .write(board.deadline_s.get().unwrap_or(&0) + by_s, w)
    })?;
    wait(&asker.events, "the extension", changed("deadline_s"))?;
    let deadline = *asker.handle.state()?.deadline_s.get().unwrap();
    println!("replica {} sees deadline = {deadline} s", asker.name);

    // 4. The leader leaves: it releases the lease, and another takes over at once.
    let leaving = nodes.remove(lead);
    leaving.handle.leave()?;
    println!("replica {leader} left");
    let (next, term) = wait(&nodes[0].events, "a new leader", |e| match e {
        Event::LeaderChanged {
            leader: Some(l),
            term,
        } if l.as_u128() != leader => Some((l.as_u128(), term)),
        _ => None,
    })?;
    println!("replica {next} took over (term {term})");

    // 5. The new leader writes; the other replica sees it.
    let lead = nodes.iter().position(|n| n.name == next).unwrap();
    nodes[lead].handle.write(move |board, d, w| {
        d.note = board
            .note
            .write(format!("replica {next} is in charge now"), w)
    })?;
    let other = &nodes[1 - lead];
    wait(&other.events, "the new leader's write", changed("note"))?;
    let note = other.handle.state()?.note.get().cloned().unwrap();
    println!("replica {} sees note = {note:?}", other.name);
    Ok(()) // dropping the handles makes the others leave cleanly
}

/// Picks a change of `field`.
fn changed(field: &'static str) -> impl FnMut(Event<Ask>) -> Option<()> {
    move |e| matches!(e, Event::Changed { fields } if fields.contains(&field)).then_some(())
}

/// Waits for the first event that `pick` accepts, for at most 5 seconds.
fn wait<T>(
    events: &Receiver<Event<Ask>>,
    what: &str,
    mut pick: impl FnMut(Event<Ask>) -> Option<T>,
) -> Result<T, Error> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let event = events
            .recv_deadline(deadline)
            .map_err(|e| format!("no {what} in time ({e})"))?;
        if let Some(found) = pick(event) {
            return Ok(found);
        }
    }
}
