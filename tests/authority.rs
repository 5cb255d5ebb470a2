//! The lease authority as a conversation: what a replica asks, and what it does with
//! answers that come late, twice, unasked, or never. Timings are the simulator's: a
//! 300 ms lease renewed every 100 ms, 50 ms allowed delay.

use std::time::Duration;

use replisync::authority::{AuthorityAnswer, AuthorityRequest};
use replisync::{
    Codec, Driver, Event, Hub, LeadershipLoss, Lifecycle, ManualClock, MutexAuthority, Now,
    Replica, SourceId, SyncMode,
};
use replisync_testkit::sim::{sim_config, Req, Session};

const EPOCH: u64 = 1_700_000_000_000;
const A: SourceId = SourceId::from_u128(1);
const B: SourceId = SourceId::from_u128(2);

fn at(t: u64) -> Now {
    Now::new(EPOCH + t, t)
}

fn replica(me: SourceId) -> Replica<Session, Req> {
    Replica::new(sim_config(SyncMode::Leader, Codec::Binary), me)
        .unwrap()
        .with_authority()
}

fn requests(r: &mut Replica<Session, Req>) -> Vec<AuthorityRequest> {
    std::iter::from_fn(|| r.poll_authority()).collect()
}

fn events(r: &mut Replica<Session, Req>) -> Vec<Event<Req>> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

/// Runs `r` alone, a millisecond at a time, from `from` until it asks for a term;
/// returns when it asked and the request.
fn until_it_asks(r: &mut Replica<Session, Req>, from: u64) -> (u64, u64, u64) {
    for t in from..from + 5_000 {
        r.handle_timeout(at(t));
        for request in requests(r) {
            if let AuthorityRequest::Acquire { ask, term, .. } = request {
                return (t, ask, term);
            }
        }
    }
    panic!("no claim within 5 s");
}

/// B is granted a lock in `term` and leads; A starts and hears B's records. Returns A
/// and the time.
fn following_b_with_a_lock(term: u64) -> (Replica<Session, Req>, u64) {
    let mut b = replica(B);
    let (t0, ask, _) = until_it_asks(&mut b, 0);
    b.handle_authority(
        at(t0),
        AuthorityAnswer::Granted {
            ask: Some(ask),
            term,
            valid_ms: None,
        },
    );
    assert!(b.is_leader());
    let mut a = replica(A);
    a.handle_timeout(at(t0));
    for m in std::iter::from_fn(|| b.poll_transmit()) {
        a.handle_message(at(t0), &m);
    }
    (a, t0)
}

#[test]
fn a_replica_leads_only_once_granted_and_a_late_grant_counts_from_the_ask() {
    let mut r = replica(A);
    let (asked_at, ask, term) = until_it_asks(&mut r, 0);
    assert_eq!(term, 1);
    // No answer yet: it does not lead, however long it waits for one.
    for t in asked_at..asked_at + 90 {
        r.handle_timeout(at(t));
    }
    assert!(!r.is_leader());
    // The grant arrives 90 ms late: it lasts 300 ms from the ask, less the allowed
    // delay, so it ends at ask + 250 whatever the lateness.
    r.handle_authority(
        at(asked_at + 90),
        AuthorityAnswer::Granted {
            ask: Some(ask),
            term,
            valid_ms: Some(300),
        },
    );
    assert!(r.is_leader());
    assert!(events(&mut r).contains(&Event::LeadershipGained { term }));
    let mut asked = Vec::new();
    let mut lost_at = None;
    for t in asked_at + 90..asked_at + 400 {
        r.handle_timeout(at(t));
        asked.extend(requests(&mut r));
        if !r.is_leader() {
            lost_at = Some(t);
            break;
        }
    }
    let renewals = asked
        .iter()
        .filter(|q| matches!(q, AuthorityRequest::Renew { term: 1, .. }))
        .count();
    assert!(renewals >= 1, "a timed grant is renewed");
    assert_eq!(
        lost_at,
        Some(asked_at + 250),
        "unanswered renewals: it stops a margin before the grant can run out"
    );
    assert!(events(&mut r).contains(&Event::LeadershipLost {
        term,
        reason: LeadershipLoss::AuthorityRefused
    }));
    assert!(
        r.lease().is_some_and(|l| l.released && l.holder == A),
        "it releases the lease record, so a successor need not wait for it to expire"
    );
    assert!(
        asked.contains(&AuthorityRequest::Release { term }),
        "{asked:?}"
    );
}

#[test]
fn renewals_answered_in_time_keep_the_lease_and_duplicates_are_harmless() {
    let mut r = replica(A);
    let (asked_at, ask, term) = until_it_asks(&mut r, 0);
    let grant = |ask| AuthorityAnswer::Granted {
        ask: Some(ask),
        term,
        valid_ms: Some(300),
    };
    r.handle_authority(at(asked_at), grant(ask));
    r.handle_authority(at(asked_at + 1), grant(ask));
    for t in asked_at + 1..asked_at + 2_000 {
        r.handle_timeout(at(t));
        for request in requests(&mut r) {
            if let AuthorityRequest::Renew { ask, .. } = request {
                // Each renewal is answered 40 ms late, and twice.
                r.handle_timeout(at(t + 40));
                r.handle_authority(at(t + 40), grant(ask));
                r.handle_authority(at(t + 40), grant(ask));
            }
        }
        assert!(r.is_leader(), "lost the lease at {t}");
    }
    assert_eq!(
        events(&mut r)
            .iter()
            .filter(|e| matches!(e, Event::LeadershipGained { .. }))
            .count(),
        1
    );
}

#[test]
fn an_unasked_lock_grant_leads_at_once_and_a_loss_stops_it_at_once() {
    // A follows B, which leads term 1 by gossip records A has heard.
    let (mut a, t0) = following_b_with_a_lock(1);
    assert_eq!(a.leader(), Some(B));
    // B's tab dies; the browser hands its lock to A's queued request: A leads at once,
    // in a newer term, with no wait for B's record to expire.
    a.handle_authority(
        at(t0 + 1),
        AuthorityAnswer::Granted {
            ask: None,
            term: 2,
            valid_ms: None,
        },
    );
    assert!(a.is_leader());
    assert_eq!(a.lease().map(|l| (l.holder, l.term)), Some((A, 2)));
    // A lock held until lost needs no renewal.
    for t in t0 + 1..t0 + 1_000 {
        a.handle_timeout(at(t));
        assert!(requests(&mut a).is_empty(), "asked the lock at {t}");
        assert!(a.is_leader());
    }
    a.handle_authority(at(t0 + 1_000), AuthorityAnswer::Lost { term: 2 });
    assert!(!a.is_leader());
    assert!(events(&mut a).contains(&Event::LeadershipLost {
        term: 2,
        reason: LeadershipLoss::AuthorityRefused
    }));
}

#[test]
fn an_unasked_timed_grant_is_not_trusted_but_asked_again() {
    let mut r = replica(A);
    r.handle_timeout(at(0));
    r.handle_authority(
        at(10),
        AuthorityAnswer::Granted {
            ask: None,
            term: 4,
            valid_ms: Some(300),
        },
    );
    assert!(!r.is_leader(), "how much of it is left is unknown");
    let asked = requests(&mut r);
    assert!(
        matches!(asked[..], [AuthorityRequest::Acquire { term: 4, .. }]),
        "{asked:?}"
    );
}

#[test]
fn a_refusal_names_the_spent_term_and_the_next_claim_asks_a_newer_one() {
    let mut r = replica(A);
    let (t0, ask, term) = until_it_asks(&mut r, 0);
    assert_eq!(term, 1);
    r.handle_authority(
        at(t0),
        AuthorityAnswer::Refused {
            ask: Some(ask),
            term: 7,
            holder: None,
        },
    );
    assert!(!r.is_leader());
    let (t1, _, term) = until_it_asks(&mut r, t0 + 1);
    assert_eq!(term, 8, "never a spent term again");
    assert!(
        t1 >= t0 + 100,
        "retried after a renew interval, not at once"
    );
}

#[test]
fn a_grant_of_a_term_someone_else_recorded_moves_on_to_a_newer_term() {
    let (mut a, t0) = following_b_with_a_lock(3);
    // A lock adapter hands A the lock with the term it last knew, older than B's.
    a.handle_authority(
        at(t0 + 1),
        AuthorityAnswer::Granted {
            ask: None,
            term: 2,
            valid_ms: None,
        },
    );
    assert!(!a.is_leader());
    assert!(
        requests(&mut a).contains(&AuthorityRequest::Acquire {
            ask: 0,
            term: 4,
            duration_ms: 300
        }),
        "it asks to move its grant to a term newer than B's"
    );
}

#[test]
fn leaving_releases_the_grant_and_a_grant_after_leaving_is_handed_back() {
    let mut r = replica(A);
    let (t0, ask, term) = until_it_asks(&mut r, 0);
    r.handle_authority(
        at(t0),
        AuthorityAnswer::Granted {
            ask: Some(ask),
            term,
            valid_ms: Some(300),
        },
    );
    let _ = requests(&mut r);
    r.handle_lifecycle(at(t0 + 5), Lifecycle::Leave);
    assert_eq!(requests(&mut r), [AuthorityRequest::Release { term }]);
    r.handle_authority(
        at(t0 + 6),
        AuthorityAnswer::Granted {
            ask: None,
            term: 9,
            valid_ms: None,
        },
    );
    assert!(!r.is_leader());
    assert_eq!(requests(&mut r), [AuthorityRequest::Release { term: 9 }]);
}

#[test]
fn replicas_on_drivers_share_a_mutex_authority_and_hand_over_on_leave() {
    let clock = ManualClock::new(EPOCH, 0);
    let authority = MutexAuthority::new(clock.clone());
    let hub = Hub::new();
    let mut handles = Vec::new();
    let mut streams = Vec::new();
    for id in [A, B] {
        let replica =
            Replica::<Session, Req>::new(sim_config(SyncMode::Leader, Codec::Binary), id).unwrap();
        let mut driver = Driver::new(replica, hub.connect())
            .clock(clock.clone())
            .authority(authority.clone());
        streams.push(driver.subscribe());
        handles.push(driver.spawn().unwrap());
    }
    let ids = [A, B];
    // Runs the shared clock until replica `who` (or, with `None`, either) gains the
    // lease; which one, and its term.
    let gained = |who: Option<usize>| {
        for _ in 0..2_000 {
            clock.advance(5);
            for (i, stream) in streams.iter().enumerate() {
                while let Ok(e) = stream.recv_timeout(Duration::from_millis(1)) {
                    if let Event::LeadershipGained { term } = e {
                        if who.is_none_or(|w| w == i) {
                            return Some((i, term));
                        }
                    }
                }
            }
        }
        None
    };
    let (leader, first) = gained(None).expect("a leader");
    assert_eq!(authority.holder(), Some((ids[leader], first)));
    let other = 1 - leader;
    assert!(!handles[other].is_leader().unwrap());
    handles[leader].leave().unwrap();
    let (_, second) = gained(Some(other)).expect("the other takes over");
    assert!(second > first);
    assert_eq!(authority.holder(), Some((ids[other], second)));
}

// Issue 15, defect 4: a duplicated grant arriving after `Lost` revived the leadership.
#[test]
fn a_grant_duplicated_past_its_loss_is_never_led_again() {
    for valid_ms in [None, Some(300)] {
        let mut a = replica(A);
        let (t0, ask, term) = until_it_asks(&mut a, 0);
        let grant = AuthorityAnswer::Granted {
            ask: Some(ask),
            term,
            valid_ms,
        };
        a.handle_authority(at(t0), grant);
        assert!(a.is_leader());
        a.handle_authority(at(t0 + 5), AuthorityAnswer::Lost { term });
        assert!(!a.is_leader());
        let _ = events(&mut a);
        // B is granted term 2 somewhere; then the duplicate of A's old grant arrives.
        a.handle_authority(at(t0 + 10), grant);
        assert!(!a.is_leader(), "{valid_ms:?}: a lost term came back");
        assert!(
            !events(&mut a)
                .iter()
                .any(|e| matches!(e, Event::LeadershipGained { .. })),
            "{valid_ms:?}: no LeadershipGained for a term it lost"
        );
        // The same for a term it gave up itself (stepped down on a refusal).
        a.handle_authority(
            at(t0 + 20),
            AuthorityAnswer::Granted {
                ask: None,
                term: 1,
                valid_ms: None,
            },
        );
        assert!(
            !a.is_leader(),
            "{valid_ms:?}: an unasked grant of a spent term"
        );
    }
}

// Issue 15, defect 5: a late refusal of an earlier ask deposed a valid holder.
#[test]
fn a_late_refusal_of_an_earlier_ask_does_not_depose_the_holder() {
    let mut a = replica(A);
    let (t0, first, term) = until_it_asks(&mut a, 0);
    // No answer to the first ask: it asks again after a renew interval.
    let mut second = None;
    for t in t0 + 1..t0 + 500 {
        a.handle_timeout(at(t));
        if let Some(AuthorityRequest::Acquire {
            ask, term: asked, ..
        }) = requests(&mut a).pop()
        {
            assert_eq!(asked, term, "the same term: none was refused");
            second = Some((t, ask));
            break;
        }
    }
    let (t1, second) = second.expect("a second ask");
    a.handle_authority(
        at(t1 + 1),
        AuthorityAnswer::Granted {
            ask: Some(second),
            term,
            valid_ms: Some(300),
        },
    );
    assert!(a.is_leader());
    let _ = events(&mut a);
    // The refusal of the first ask, delayed on the way, arrives now.
    a.handle_authority(
        at(t1 + 2),
        AuthorityAnswer::Refused {
            ask: Some(first),
            term: term - 1,
            holder: Some(B),
        },
    );
    assert!(
        a.is_leader(),
        "a refusal of an earlier ask says nothing of this grant"
    );
    assert!(!requests(&mut a)
        .iter()
        .any(|q| matches!(q, AuthorityRequest::Release { .. })));
    // A refusal of a renewal asked since the grant began does depose it.
    let mut renew = None;
    for t in t1 + 2..t1 + 200 {
        a.handle_timeout(at(t));
        if let Some(AuthorityRequest::Renew { ask, .. }) = requests(&mut a).pop() {
            renew = Some((t, ask));
            break;
        }
    }
    let (t2, renew) = renew.expect("a renewal");
    a.handle_authority(
        at(t2 + 1),
        AuthorityAnswer::Refused {
            ask: Some(renew),
            term,
            holder: Some(B),
        },
    );
    assert!(
        !a.is_leader(),
        "a refusal of a renewal asked since deposes it"
    );
}

// Issue 15, defect 6: a grant of a term above MAX_TERM was led by a replica that could
// then write nothing.
#[test]
fn a_grant_of_a_term_no_write_can_carry_is_handed_back_not_led() {
    let mut a = replica(A);
    a.handle_timeout(at(0));
    let _ = requests(&mut a);
    let term = replisync::stamp::MAX_TERM + 1;
    a.handle_authority(
        at(1),
        AuthorityAnswer::Granted {
            ask: None,
            term,
            valid_ms: None,
        },
    );
    assert!(!a.is_leader());
    assert!(!events(&mut a)
        .iter()
        .any(|e| matches!(e, Event::LeadershipGained { .. })));
    assert!(requests(&mut a).contains(&AuthorityRequest::Release { term }));
}

// Issue 15, "Also": the in-process authority never told a replaced holder it lost.
#[test]
fn the_mutex_authority_tells_a_replaced_holder_it_lost_the_lease() {
    use replisync::Authority;
    let clock = ManualClock::new(0, 0);
    let mut at_a = MutexAuthority::new(clock.clone());
    let mut at_b = at_a.clone();
    let acquire = |term| AuthorityRequest::Acquire {
        ask: 0,
        term,
        duration_ms: 300,
    };
    at_a.handle(A, acquire(1));
    assert!(matches!(
        at_a.answers().try_recv(),
        Ok(AuthorityAnswer::Granted { term: 1, .. })
    ));
    // A's clock stopped (it slept); B is granted term 2 once A's grant ran out.
    clock.advance(300);
    at_b.handle(B, acquire(2));
    assert!(matches!(
        at_b.answers().try_recv(),
        Ok(AuthorityAnswer::Granted { term: 2, .. })
    ));
    assert_eq!(
        at_a.answers().try_recv(),
        Ok(AuthorityAnswer::Lost { term: 1 })
    );
    // A replica fed that answer stops at once.
    let mut r = replica(A);
    let (t0, ask, term) = until_it_asks(&mut r, 0);
    r.handle_authority(
        at(t0),
        AuthorityAnswer::Granted {
            ask: Some(ask),
            term,
            valid_ms: Some(300),
        },
    );
    assert!(r.is_leader());
    r.handle_authority(at(t0 + 1), AuthorityAnswer::Lost { term });
    assert!(!r.is_leader());
}

/// The lock authority's table (`replisync_testkit::lock`), row by row, against
/// `LockArbiter` over a simulated lock: the answers the replica gets and the actions
/// the medium is asked for. Each lock adapter runs the same rows against its medium.
#[test]
fn the_lock_arbiter_follows_the_lock_table() {
    for row in replisync_testkit::lock::table() {
        let (answers, actions) = replisync_testkit::lock::run_simulated(&row);
        assert_eq!(answers, row.answers, "{}: the answers", row.name);
        assert_eq!(actions, row.actions, "{}: the medium's actions", row.name);
    }
}
