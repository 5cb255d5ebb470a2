//! The lease authority on `flock`: one holder at a time, terms that only grow, and a
//! grant that passes on at once when its holder lets go.

mod common;

use std::time::Duration;

use common::{Scratch, PATIENCE};
use crossbeam_channel::Receiver;
use replisync::authority::{AuthorityAnswer, AuthorityRequest};
use replisync::{Authority, SourceId};
use replisync_files::{FileAuthority, Options};

fn answer(rx: &Receiver<AuthorityAnswer>) -> AuthorityAnswer {
    rx.recv_timeout(PATIENCE).expect("the authority answers")
}

fn acquire(ask: u64, term: u64) -> AuthorityRequest {
    AuthorityRequest::Acquire {
        ask,
        term,
        duration_ms: 3_000,
    }
}

fn granted(a: &AuthorityAnswer) -> Option<u64> {
    match a {
        AuthorityAnswer::Granted {
            term,
            valid_ms: None,
            ..
        } => Some(*term),
        _ => None,
    }
}

#[test]
fn one_holder_at_a_time_and_each_successor_a_newer_term() {
    let dir = Scratch::new("authority-order");
    let ids: Vec<SourceId> = (1..=3).map(SourceId::from_u128).collect();
    let mut authorities: Vec<Option<FileAuthority>> = ids
        .iter()
        .map(|id| Some(FileAuthority::open(dir.path(), *id, &Options::default()).unwrap()))
        .collect();
    let inboxes: Vec<Receiver<AuthorityAnswer>> = authorities
        .iter()
        .map(|a| a.as_ref().unwrap().answers())
        .collect();
    let mut last_term = 0;
    for round in 0..3 {
        // Exactly one of those left holds the lock: its unasked grant arrives.
        let live: Vec<usize> = (0..3).filter(|i| authorities[*i].is_some()).collect();
        let (holder, term) = loop {
            let granted_now: Vec<(usize, u64)> = live
                .iter()
                .filter_map(|i| {
                    inboxes[*i]
                        .try_recv()
                        .ok()
                        .and_then(|a| granted(&a))
                        .map(|t| (*i, t))
                })
                .collect();
            assert!(
                granted_now.len() <= 1,
                "round {round}: two grants {granted_now:?}"
            );
            if let Some(g) = granted_now.first() {
                break *g;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(
            term > last_term,
            "round {round}: term {term} after {last_term}"
        );
        last_term = term;
        let text = std::fs::read_to_string(dir.path().join("lease")).unwrap();
        assert_eq!(text, format!("{term} {:032x}\n", ids[holder].as_u128()));
        // The others are refused, and told who holds which term.
        for i in live.iter().filter(|i| **i != holder) {
            authorities[*i]
                .as_mut()
                .unwrap()
                .handle(ids[*i], acquire(7, term + 1));
            match answer(&inboxes[*i]) {
                AuthorityAnswer::Refused {
                    ask,
                    term: t,
                    holder: h,
                } => {
                    assert_eq!((ask, t, h), (Some(7), term, Some(ids[holder])));
                }
                other => panic!("round {round}: {other:?} while {holder} holds the lock"),
            }
        }
        // The holder lets go: by release in the first round, by going away after.
        if round == 0 {
            authorities[holder]
                .as_mut()
                .unwrap()
                .handle(ids[holder], AuthorityRequest::Release { term });
            // It does not take the lock again until it asks.
            std::thread::sleep(Duration::from_millis(50));
            assert!(inboxes[holder].try_recv().is_err());
            authorities[holder] = None;
        } else {
            authorities[holder] = None;
        }
    }
}

#[test]
fn a_holder_moves_its_grant_to_a_newer_term() {
    let dir = Scratch::new("authority-move");
    let me = SourceId::from_u128(5);
    let mut authority = FileAuthority::open(dir.path(), me, &Options::default()).unwrap();
    let inbox = authority.answers();
    let term = granted(&answer(&inbox)).expect("granted");
    authority.handle(me, acquire(1, term + 10));
    assert_eq!(
        answer(&inbox),
        AuthorityAnswer::Granted {
            ask: Some(1),
            term: term + 10,
            valid_ms: None
        }
    );
    authority.handle(
        me,
        AuthorityRequest::Renew {
            ask: 2,
            term: term + 10,
            duration_ms: 3_000,
        },
    );
    assert_eq!(granted(&answer(&inbox)), Some(term + 10));
    drop(authority);
    // The next holder starts above it.
    let next = FileAuthority::open(dir.path(), me, &Options::default()).unwrap();
    assert_eq!(granted(&answer(&next.answers())), Some(term + 11));
}

#[test]
fn a_lock_file_removed_under_the_holder_is_a_lost_grant() {
    let dir = Scratch::new("authority-lost");
    let me = SourceId::from_u128(6);
    let authority = FileAuthority::open(dir.path(), me, &Options::default()).unwrap();
    let inbox = authority.answers();
    let term = granted(&answer(&inbox)).expect("granted");
    std::fs::remove_file(authority.path()).unwrap();
    assert_eq!(answer(&inbox), AuthorityAnswer::Lost { term });
    // It waits on the new file, and is granted again: a newer term, though the new
    // file knows of none.
    let again = granted(&answer(&inbox)).expect("granted again");
    assert!(again > term, "term {again} after {term}");
}

/// The lock authority's table (`replisync_testkit::lock`), the same rows the core runs
/// against `LockArbiter`, here against `flock` and the lease file: each row's answers,
/// and the lease file's record after the last term written.
#[test]
fn the_lock_table_against_flock() {
    use replisync::authority::LockAction;
    use replisync_testkit::lock::{table, Given, When, ME, OTHER};

    for row in table() {
        let dir = Scratch::new("authority-table");
        let lease = dir.path().join("lease");
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(dir.path())
            .unwrap();
        let record = |term: u64, holder: Option<SourceId>| {
            let text = match holder {
                Some(h) => format!("{term} {:032x}\n", h.as_u128()),
                None => format!("{term}\n"),
            };
            std::fs::write(&lease, text).unwrap();
        };
        let open = |id| FileAuthority::open(dir.path(), id, &Options::default()).unwrap();
        let mut other = None;
        let mut me = match row.given {
            Given::Fresh { recorded } => {
                record(recorded, None);
                open(ME)
            }
            Given::Held { term } | Given::Released { term } => {
                record(term - 1, Some(OTHER));
                let mut me = open(ME);
                assert_eq!(granted(&answer(&me.answers())), Some(term), "{}", row.name);
                if matches!(row.given, Given::Released { .. }) {
                    me.handle(ME, AuthorityRequest::Release { term });
                }
                me
            }
            Given::Queued { term } => {
                record(term - 1, None);
                let holder = open(OTHER);
                assert_eq!(
                    granted(&answer(&holder.answers())),
                    Some(term),
                    "{}",
                    row.name
                );
                other = Some(holder);
                open(ME)
            }
        };
        let inbox = me.answers();
        for when in &row.when {
            match *when {
                When::Request(request) => me.handle(ME, request),
                When::OtherLetsGo => other = None,
                When::TakenAway => std::fs::remove_file(&lease).unwrap(),
            }
        }
        let answers: Vec<AuthorityAnswer> = row.answers.iter().map(|_| answer(&inbox)).collect();
        assert_eq!(answers, row.answers, "{}", row.name);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(inbox.try_recv().ok(), None, "{}: no more answers", row.name);
        if let Some(LockAction::WriteTerm { term, holder }) = row
            .actions
            .iter()
            .rev()
            .find(|a| matches!(a, LockAction::WriteTerm { .. }))
        {
            let text = std::fs::read_to_string(&lease).unwrap();
            assert_eq!(
                text,
                format!("{term} {:032x}\n", holder.as_u128()),
                "{}",
                row.name
            );
        }
        drop(me);
        drop(other);
    }
}

/// A process waiting on the lock file when it is removed must not be granted the lease
/// on the removed file once its holder lets go of it: the file named `lease` is the
/// lock, and whoever holds that one leads (issue 17, defect 4).
#[test]
fn a_waiter_on_a_removed_lock_file_is_not_granted() {
    let dir = Scratch::new("authority-removed-waiter");
    let (a, b) = (SourceId::from_u128(1), SourceId::from_u128(2));
    let at_a = FileAuthority::open(dir.path(), a, &Options::default()).unwrap();
    let from_a = at_a.answers();
    let first = granted(&answer(&from_a)).expect("a holds the lock");
    // b waits on the file now named `lease`.
    let at_b = FileAuthority::open(dir.path(), b, &Options::default()).unwrap();
    let from_b = at_b.answers();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::remove_file(at_a.path()).unwrap();
    // a lets go of the removed file; one of the two locks the new one, and only one.
    assert_eq!(answer(&from_a), AuthorityAnswer::Lost { term: first });
    let (holder, waiter, mut at_holder, at_waiter, from_waiter, second) = loop {
        if let Ok(g) = from_a.try_recv() {
            break (a, b, at_a, at_b, from_b, granted(&g).expect("a grant"));
        }
        if let Ok(g) = from_b.try_recv() {
            break (b, a, at_b, at_a, from_a, granted(&g).expect("a grant"));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    // (b never saw term `first`, whose record was removed: it may be granted it again,
    // and its replica, which heard of it, then moves to a newer term.)
    let _ = first;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        from_waiter.try_recv().ok(),
        None,
        "{waiter} granted while {holder} holds the lease"
    );
    let text = std::fs::read_to_string(at_holder.path()).unwrap();
    assert_eq!(text, format!("{second} {:032x}\n", holder.as_u128()));
    at_holder.handle(holder, AuthorityRequest::Release { term: second });
    let third = granted(&answer(&from_waiter)).expect("the other holds the lease once released");
    assert!(third > second, "term {third} after {second}");
    drop(at_waiter);
}
