//! The table of a lock authority's behaviour: each row a state, the inputs, and the
//! answers the replica gets and the actions the medium is asked for. The core runs it
//! against [`LockArbiter`] over a simulated medium ([`run_simulated`]); each lock
//! adapter (`flock`, Web Locks) runs the same rows against its real medium and checks
//! the answers.
//!
//! Every row speaks of two replicas: [`ME`], whose adapter is under test, and
//! [`OTHER`], another holder of the same lock.

use std::collections::VecDeque;

use replisync::authority::{
    AuthorityAnswer, AuthorityRequest, LockAction, LockArbiter, LockFact, LockOutput,
};
use replisync::SourceId;

/// The replica whose adapter is under test.
pub const ME: SourceId = SourceId::from_u128(0xa);
/// Another replica, holding the same lock.
pub const OTHER: SourceId = SourceId::from_u128(0xb);

/// The state a row starts from. Terms are what the record beside the lock says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Given {
    /// Nothing opened yet; the record says `recorded` (no holder named). The row's
    /// outputs include what opening the adapter does.
    Fresh {
        /// The term recorded before.
        recorded: u64,
    },
    /// [`ME`] holds the lock, granted `term` unasked (the record said `term - 1`).
    Held {
        /// The term held.
        term: u64,
    },
    /// [`OTHER`] holds the lock with `term` recorded; [`ME`] is queued for it.
    Queued {
        /// The term [`OTHER`] holds.
        term: u64,
    },
    /// [`ME`] held `term` and released it; no one holds the lock.
    Released {
        /// The term released.
        term: u64,
    },
}

/// One input of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// The replica asks.
    Request(AuthorityRequest),
    /// [`OTHER`] lets go of the lock (its process ends, its tab closes).
    OtherLetsGo,
    /// The lock is taken from [`ME`] and its record wiped (the lock file removed).
    TakenAway,
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// What the row shows.
    pub name: &'static str,
    /// The state before.
    pub given: Given,
    /// The inputs, in order.
    pub when: Vec<When>,
    /// Every answer the replica gets, in order.
    pub answers: Vec<AuthorityAnswer>,
    /// Every action asked of the medium, in order.
    pub actions: Vec<LockAction>,
}

fn acquire(ask: u64, term: u64) -> When {
    When::Request(AuthorityRequest::Acquire {
        ask,
        term,
        duration_ms: 3_000,
    })
}

fn granted(ask: Option<u64>, term: u64) -> AuthorityAnswer {
    AuthorityAnswer::Granted {
        ask,
        term,
        valid_ms: None,
    }
}

fn refused(ask: u64, term: u64, holder: Option<SourceId>) -> AuthorityAnswer {
    AuthorityAnswer::Refused {
        ask: Some(ask),
        term,
        holder,
    }
}

fn write(term: u64) -> LockAction {
    LockAction::WriteTerm { term, holder: ME }
}

/// The table.
pub fn table() -> Vec<Row> {
    use LockAction::{ReadTerm, Release, Take};
    vec![
        Row {
            name: "opening queues for the lock; a free lock is granted unasked, past the record",
            given: Given::Fresh { recorded: 3 },
            when: vec![],
            answers: vec![granted(None, 4)],
            actions: vec![Take, ReadTerm, write(4)],
        },
        Row {
            name: "acquire while another holds the lock is refused, naming the holder",
            given: Given::Queued { term: 4 },
            when: vec![acquire(1, 5)],
            answers: vec![refused(1, 4, Some(OTHER))],
            actions: vec![ReadTerm],
        },
        Row {
            name: "the holder lets go: the lock is granted unasked, in the next term",
            given: Given::Queued { term: 4 },
            when: vec![When::OtherLetsGo],
            answers: vec![granted(None, 5)],
            actions: vec![ReadTerm, write(5)],
        },
        Row {
            name: "the grant that follows a refusal answers the ask, in at least its term",
            given: Given::Queued { term: 4 },
            when: vec![acquire(1, 7), When::OtherLetsGo],
            answers: vec![refused(1, 4, Some(OTHER)), granted(Some(1), 7)],
            actions: vec![ReadTerm, ReadTerm, write(7)],
        },
        Row {
            name: "the holder asking its own term is granted it again",
            given: Given::Held { term: 4 },
            when: vec![acquire(2, 4)],
            answers: vec![granted(Some(2), 4)],
            actions: vec![],
        },
        Row {
            name: "the holder moves to a newer term: recorded, then granted",
            given: Given::Held { term: 4 },
            when: vec![acquire(2, 9)],
            answers: vec![granted(Some(2), 9)],
            actions: vec![write(9)],
        },
        Row {
            name: "the holder asking a spent term is refused, naming itself",
            given: Given::Held { term: 4 },
            when: vec![acquire(2, 3)],
            answers: vec![refused(2, 4, Some(ME))],
            actions: vec![],
        },
        Row {
            name: "renewing the held term confirms it, until lost",
            given: Given::Held { term: 4 },
            when: vec![When::Request(AuthorityRequest::Renew {
                ask: 3,
                term: 4,
                duration_ms: 3_000,
            })],
            answers: vec![granted(Some(3), 4)],
            actions: vec![],
        },
        Row {
            name: "renewing a term not held: lost",
            given: Given::Held { term: 4 },
            when: vec![When::Request(AuthorityRequest::Renew {
                ask: 3,
                term: 2,
                duration_ms: 3_000,
            })],
            answers: vec![AuthorityAnswer::Lost { term: 2 }],
            actions: vec![],
        },
        Row {
            name: "release lets go of the lock, and does not queue for it again",
            given: Given::Held { term: 4 },
            when: vec![When::Request(AuthorityRequest::Release { term: 4 })],
            answers: vec![],
            actions: vec![Release],
        },
        Row {
            name: "releasing an older term, moved on from, does nothing",
            given: Given::Held { term: 4 },
            when: vec![When::Request(AuthorityRequest::Release { term: 3 })],
            answers: vec![],
            actions: vec![],
        },
        Row {
            name: "after a release, acquire queues again: refused at once, granted once locked",
            given: Given::Released { term: 4 },
            when: vec![acquire(5, 5)],
            answers: vec![refused(5, 4, None), granted(Some(5), 5)],
            actions: vec![Take, ReadTerm, ReadTerm, write(5)],
        },
        Row {
            name: "a lock taken away is lost, queued for again, and granted past every term seen",
            given: Given::Held { term: 4 },
            when: vec![When::TakenAway],
            answers: vec![AuthorityAnswer::Lost { term: 4 }, granted(None, 5)],
            actions: vec![Take, ReadTerm, write(5)],
        },
    ]
}

/// The simulated medium: one lock, a record beside it, and the lock's queue.
#[derive(Debug, Default)]
struct Medium {
    /// The record: term, holder.
    record: (u64, Option<SourceId>),
    /// Who holds the lock.
    holder: Option<SourceId>,
    /// [`ME`] waits for the lock.
    queued: bool,
    /// Facts not yet told (a lock comes later than the request for it).
    later: VecDeque<LockFact>,
}

impl Medium {
    fn set_free(&mut self) {
        self.holder = None;
        if std::mem::take(&mut self.queued) {
            self.holder = Some(ME);
            self.later.push_back(LockFact::Locked);
        }
    }
}

/// Runs `row` against [`LockArbiter`] over a simulated medium: every answer the
/// replica got and every action the medium was asked for, in order, from the inputs
/// on (for [`Given::Fresh`], from opening on).
pub fn run_simulated(row: &Row) -> (Vec<AuthorityAnswer>, Vec<LockAction>) {
    let mut medium = Medium::default();
    let mut log = (Vec::new(), Vec::new());
    let mut arbiter = match row.given {
        Given::Fresh { recorded } => {
            medium.record = (recorded, None);
            let mut arbiter = LockArbiter::new(ME);
            settle(&mut arbiter, &mut medium, &mut log);
            arbiter
        }
        Given::Held { term } | Given::Released { term } => {
            medium.record = (term - 1, Some(OTHER));
            let mut arbiter = LockArbiter::new(ME);
            settle(&mut arbiter, &mut medium, &mut (Vec::new(), Vec::new()));
            assert_eq!(arbiter.held(), Some(term), "given {:?}", row.given);
            if matches!(row.given, Given::Released { .. }) {
                arbiter.handle_request(AuthorityRequest::Release { term });
                settle(&mut arbiter, &mut medium, &mut (Vec::new(), Vec::new()));
            }
            arbiter
        }
        Given::Queued { term } => {
            medium.record = (term, Some(OTHER));
            medium.holder = Some(OTHER);
            let mut arbiter = LockArbiter::new(ME);
            settle(&mut arbiter, &mut medium, &mut (Vec::new(), Vec::new()));
            arbiter
        }
    };
    for when in &row.when {
        match *when {
            When::Request(request) => arbiter.handle_request(request),
            When::OtherLetsGo => {
                assert_eq!(medium.holder, Some(OTHER), "{}", row.name);
                medium.set_free();
            }
            When::TakenAway => {
                assert_eq!(medium.holder, Some(ME), "{}", row.name);
                medium.holder = None;
                medium.record = (0, None);
                medium.later.push_back(LockFact::Lost);
            }
        }
        settle(&mut arbiter, &mut medium, &mut log);
    }
    log
}

/// Carries out every output, then tells the facts that come later, until quiet.
fn settle(
    arbiter: &mut LockArbiter,
    medium: &mut Medium,
    (answers, actions): &mut (Vec<AuthorityAnswer>, Vec<LockAction>),
) {
    loop {
        while let Some(output) = arbiter.poll() {
            let action = match output {
                LockOutput::Answer(answer) => {
                    answers.push(answer);
                    continue;
                }
                LockOutput::Medium(action) => action,
            };
            actions.push(action);
            match action {
                LockAction::Take => {
                    assert_ne!(medium.holder, Some(ME), "take while holding");
                    if medium.holder.is_none() {
                        medium.holder = Some(ME);
                        medium.later.push_back(LockFact::Locked);
                    } else {
                        medium.queued = true;
                    }
                }
                LockAction::Release => {
                    if medium.holder == Some(ME) {
                        medium.set_free();
                    }
                    medium.queued = false;
                }
                LockAction::ReadTerm => {
                    let (term, holder) = medium.record;
                    arbiter.handle_fact(LockFact::Recorded { term, holder });
                }
                LockAction::WriteTerm { term, holder } => {
                    assert_eq!(medium.holder, Some(ME), "a write without the lock");
                    assert!(term > medium.record.0, "the record only grows");
                    medium.record = (term, Some(holder));
                    arbiter.handle_fact(LockFact::Raised { term });
                }
            }
        }
        let Some(fact) = medium.later.pop_front() else {
            return;
        };
        arbiter.handle_fact(fact);
    }
}
