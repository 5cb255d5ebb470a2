//! The driver's tests: replicas on threads over the in-process hub.

use super::*;
use crate::{
    Config, Event, Hub, HubLink, LeadershipLoss, LeaseConfig, Lww, MemoryStore, Merge, Replica,
    SourceId,
};
use crossbeam_channel::{RecvTimeoutError, Select};
use serde::{Deserialize, Serialize};

const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Board {
    note: Lww<String>,
}

type Node = (Handle<Replica<Board, String>>, Receiver<Event<String>>);

fn id(n: u128) -> SourceId {
    SourceId::from_u128(n)
}

fn fast_leader_config(lease: LeaseConfig) -> Config {
    let mut config = Config::leader();
    config.lease = lease;
    config.heartbeat_interval_ms = 100;
    config.peer_timeout_ms = 350;
    config
}

fn short_lease() -> LeaseConfig {
    LeaseConfig {
        duration_ms: 300,
        renew_deadline_ms: 200,
        renew_interval_ms: 100,
        max_delay_ms: 50,
    }
    .validated()
    .unwrap()
}

fn spawn_on(link: HubLink, config: Config, n: u128, store: Option<MemoryStore>) -> Node {
    let clock = SystemClock::new();
    let replica = Replica::new(config, id(n)).unwrap();
    let mut driver = Driver::new(replica, link).clock(clock);
    if let Some(store) = store {
        driver = driver.store(store);
    }
    let events = driver.subscribe();
    (driver.spawn().unwrap(), events)
}

fn write_note(handle: &Handle<Replica<Board, String>>, text: &str) -> Result<(), DriverError> {
    let text = text.to_owned();
    handle.write(move |b, d, w| d.note = b.note.write(text, w))
}

fn note(handle: &Handle<Replica<Board, String>>) -> Option<String> {
    handle.state().unwrap().note.get().cloned()
}

/// The first event on `events` that `pick` maps to `Some`; panics after `PATIENCE`.
fn wait_for<T>(
    events: &Receiver<Event<String>>,
    what: &str,
    mut pick: impl FnMut(Event<String>) -> Option<T>,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match events.recv_deadline(deadline) {
            Ok(e) => {
                if let Some(t) = pick(e) {
                    return t;
                }
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// Waits, event by event on any of `nodes`, until `done` holds; panics after
/// `PATIENCE`.
fn settle(nodes: &[&Node], what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        let mut select = Select::new();
        for (_, events) in nodes {
            select.recv(events);
        }
        let op = select
            .select_deadline(deadline)
            .unwrap_or_else(|_| panic!("waiting for {what}: timed out"));
        let index = op.index();
        if op.recv(&nodes[index].1).is_err() {
            panic!("waiting for {what}: a driver stopped");
        }
    }
}

/// Waits until every node names the same leader and exactly that one leads.
fn single_leader(nodes: &[&Node]) -> SourceId {
    let mut leader = None;
    settle(nodes, "a single leader", || {
        let seen: Vec<_> = nodes.iter().map(|(h, _)| h.leader().unwrap()).collect();
        let leading: Vec<_> = nodes
            .iter()
            .filter(|(h, _)| h.is_leader().unwrap())
            .map(|(h, _)| h.source())
            .collect();
        leader = seen[0];
        leader.is_some() && seen.iter().all(|l| *l == leader) && leading == [leader.unwrap()]
    });
    leader.unwrap()
}

#[test]
fn a_write_in_distributed_mode_reaches_every_replica() {
    let hub = Hub::new();
    let nodes: Vec<Node> = (1..=3)
        .map(|n| spawn_on(hub.connect(), Config::distributed(), n, None))
        .collect();
    write_note(&nodes[1].0, "hello").unwrap();
    for (handle, events) in &nodes {
        wait_for(events, "the note", |e| match e {
            Event::Changed { fields } if fields == ["note"] => Some(()),
            _ => None,
        });
        assert_eq!(note(handle).as_deref(), Some("hello"));
    }
}

#[test]
fn one_leader_is_elected_takes_requests_and_is_replaced_after_a_crash() {
    let hub = Hub::new();
    let config = fast_leader_config(short_lease());
    let nodes: Vec<Node> = (1..=3)
        .map(|n| spawn_on(hub.connect(), config.clone(), n, None))
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    let first = single_leader(&all);
    let leader = nodes.iter().find(|(h, _)| h.source() == first).unwrap();
    let followers: Vec<&Node> = nodes.iter().filter(|(h, _)| h.source() != first).collect();

    // Followers may not write; their requests reach the leader.
    let refused = write_note(&followers[0].0, "mine").unwrap_err();
    assert!(
        matches!(refused, DriverError::Write(WriteError::NotLeader { leader: Some(l) }) if l == first),
        "{refused:?}"
    );
    followers[0].0.request("please".to_owned()).unwrap();
    let from = wait_for(&leader.1, "the request", |e| match e {
        Event::Request { from, request } if request == "please" => Some(from),
        _ => None,
    });
    assert_eq!(from, followers[0].0.source());
    write_note(&leader.0, "granted").unwrap();
    for (handle, events) in &followers {
        wait_for(events, "the leader's write", |e| {
            matches!(e, Event::Changed { .. }).then_some(())
        });
        assert_eq!(note(handle).as_deref(), Some("granted"));
    }

    // A crashed leader says nothing; the lease expires, and a follower takes over.
    let old_term = leader.0.lease().unwrap().map(|l| l.term);
    leader.0.crash().unwrap();
    assert_eq!(leader.0.crash(), Err(DriverError::Stopped));
    assert_eq!(leader.0.state(), Err(DriverError::Stopped));
    let next = single_leader(&followers);
    assert_ne!(next, first);
    let successor = followers.iter().find(|(h, _)| h.source() == next).unwrap();
    let new_term = successor.0.lease().unwrap().map(|l| l.term);
    assert!(new_term > old_term, "{new_term:?} after {old_term:?}");
    write_note(&successor.0, "after the crash").unwrap();
    assert_eq!(note(&successor.0).as_deref(), Some("after the crash"));
}

#[test]
fn a_leaving_leader_hands_over_before_its_lease_expires() {
    // A lease far longer than the test's patience: a takeover must come from the
    // release, not from expiry.
    let lease = LeaseConfig {
        duration_ms: 60_000,
        renew_deadline_ms: 40_000,
        renew_interval_ms: 100,
        max_delay_ms: 50,
    }
    .validated()
    .unwrap();
    let config = fast_leader_config(lease);
    let hub = Hub::new();
    let nodes: Vec<Node> = (1..=3)
        .map(|n| spawn_on(hub.connect(), config.clone(), n, None))
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    let first = single_leader(&all);
    let leader = nodes.iter().find(|(h, _)| h.source() == first).unwrap();
    write_note(&leader.0, "before").unwrap();

    leader.0.leave().unwrap();
    let reason = wait_for(&leader.1, "the release", |e| match e {
        Event::LeadershipLost { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(reason, LeadershipLoss::Released);
    let followers: Vec<&Node> = nodes.iter().filter(|(h, _)| h.source() != first).collect();
    for (_, events) in &followers {
        let goodbye = wait_for(events, "the goodbye", |e| match e {
            Event::PeerLeft { peer, said_goodbye } if peer == first => Some(said_goodbye),
            _ => None,
        });
        assert!(goodbye, "the leader said goodbye");
    }
    let next = single_leader(&followers);
    assert_ne!(next, first);
    let successor = followers.iter().find(|(h, _)| h.source() == next).unwrap();
    assert_eq!(note(&successor.0).as_deref(), Some("before"));
    write_note(&successor.0, "after").unwrap();
    // Once stopped, every question says so alike.
    assert_eq!(leader.0.leave(), Err(DriverError::Stopped));
    assert_eq!(leader.0.is_leader(), Err(DriverError::Stopped));
    assert_eq!(leader.0.leader(), Err(DriverError::Stopped));
    assert_eq!(leader.0.lease(), Err(DriverError::Stopped));
    assert!(leader.0.state().is_err() && leader.0.stats().is_err());
}

#[test]
fn a_restart_from_the_store_keeps_a_persisted_write() {
    let store = MemoryStore::new();
    let hub = Hub::new();
    let (a, _) = spawn_on(hub.connect(), Config::distributed(), 1, Some(store.clone()));
    write_note(&a, "kept").unwrap();
    assert!(store.bytes().is_some(), "persisted when the write returned");
    a.crash().unwrap();

    let (again, events) = spawn_on(hub.connect(), Config::distributed(), 1, Some(store.clone()));
    assert_eq!(note(&again).as_deref(), Some("kept"));
    // The restore was announced to the subscriber that was there from the start.
    wait_for(&events, "the restored note", |e| {
        matches!(e, Event::Changed { .. }).then_some(())
    });
}

#[test]
fn dropping_the_last_handle_leaves_and_stops_the_thread() {
    let hub = Hub::new();
    let (a, a_events) = spawn_on(hub.connect(), Config::distributed(), 1, None);
    let (b, b_events) = spawn_on(hub.connect(), Config::distributed(), 2, None);
    wait_for(&b_events, "a to join", |e| {
        matches!(e, Event::PeerJoined { .. }).then_some(())
    });
    let a_too = a.clone();
    drop(a);
    assert!(a_too.state().is_ok(), "a clone keeps it running");
    drop(a_too); // waits for the thread
    loop {
        match a_events.recv_timeout(PATIENCE) {
            Ok(_) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("a's driver is still running"),
        }
    }
    let goodbye = wait_for(&b_events, "a's goodbye", |e| match e {
        Event::PeerLeft { peer, said_goodbye } if peer == id(1) => Some(said_goodbye),
        _ => None,
    });
    assert!(goodbye, "a left cleanly");
    assert!(b.state().is_ok());
}

/// A transport whose broadcasts always fail; it closes when the sender of
/// `incoming` is dropped.
struct Broken {
    incoming: Receiver<Vec<u8>>,
}

#[derive(Debug)]
struct Unplugged;

impl fmt::Display for Unplugged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unplugged")
    }
}

impl std::error::Error for Unplugged {}

impl Transport for Broken {
    type Error = Unplugged;

    fn broadcast(&mut self, _: &[u8]) -> Result<(), Unplugged> {
        Err(Unplugged)
    }

    fn incoming(&self) -> Receiver<Vec<u8>> {
        self.incoming.clone()
    }
}

#[test]
fn transport_failures_are_reported_and_a_closed_transport_stops_the_driver() {
    let (close, incoming) = crossbeam_channel::unbounded();
    let clock = SystemClock::new();
    let replica: Replica<Board, String> = Replica::new(Config::distributed(), id(1)).unwrap();
    let mut driver = Driver::new(replica, Broken { incoming }).clock(clock);
    let events = driver.subscribe();
    let handle = driver.spawn().unwrap();
    let reason = wait_for(&events, "a degradation", |e| match e {
        Event::Degraded { reason } => Some(reason),
        _ => None,
    });
    assert_eq!(
        reason,
        Degradation::Transport("broadcast failed: unplugged".into())
    );
    // Reported once, not for every failed message.
    write_note(&handle, "one").unwrap();
    write_note(&handle, "two").unwrap();
    assert!(handle.stats().unwrap().messages_out >= 3);

    drop(close);
    let mut degraded = 0;
    loop {
        match events.recv_timeout(PATIENCE) {
            Ok(Event::Degraded { .. }) => degraded += 1,
            Ok(_) => {}
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("the driver did not stop"),
        }
    }
    assert_eq!(degraded, 1, "only the closing is reported");
    assert_eq!(handle.state(), Err(DriverError::Stopped));
}

#[test]
fn an_unreadable_store_is_kept() {
    let store = MemoryStore::new();
    Store::compact(&mut store.clone(), b"not a state").unwrap();
    let (handle, events) = spawn_on(
        Hub::new().connect(),
        Config::distributed(),
        1,
        Some(store.clone()),
    );
    wait_for(&events, "the report", |e| match e {
        Event::Degraded {
            reason: Degradation::StoreUnreadable(_),
        } => Some(()),
        _ => None,
    });
    write_note(&handle, "new").unwrap();
    assert_eq!(store.bytes().as_deref(), Some(&b"not a state"[..]));
}

#[test]
fn the_thread_is_named_after_the_source() {
    let (handle, _) = spawn_on(
        Hub::new().connect(),
        Config::distributed(),
        0xabcd_ef12 << 96,
        None,
    );
    let name = handle
        .inner
        .thread
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|t| t.thread().name().map(str::to_owned));
    assert_eq!(name.as_deref(), Some("replisync-abcdef12"));
}
