//! The decision of a lock-like lease authority (`flock`, Web Locks), with no I/O.

use std::collections::VecDeque;

use super::{AuthorityAnswer, AuthorityRequest};
use crate::SourceId;

/// What the lock's medium tells a [`LockArbiter`]: what became of the lock, and what
/// the record beside it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockFact {
    /// The lock is now held by this replica's adapter (after [`LockAction::Take`]).
    Locked,
    /// The lock is no longer held: it was taken away (its file removed or replaced, the
    /// browser let another have it), or a request queued for it ended unserved.
    Lost,
    /// The record beside the lock (after [`LockAction::ReadTerm`]): the highest term
    /// recorded there (`0` for none, or one that cannot be read), and the replica that
    /// recorded it, if the medium keeps that.
    Recorded {
        /// The highest term recorded.
        term: u64,
        /// Who recorded it, if known.
        holder: Option<SourceId>,
    },
    /// The record beside the lock now says `term` (after [`LockAction::WriteTerm`],
    /// written durably).
    Raised {
        /// The term recorded.
        term: u64,
    },
    /// [`LockAction::WriteTerm`] of `term` failed; the record is as it was.
    RaiseFailed {
        /// The term that could not be recorded.
        term: u64,
    },
}

/// What a [`LockArbiter`] asks of the lock's medium. Each ends in a [`LockFact`] handed
/// back (`Take` once the lock is held, which may be much later; `ReadTerm` and
/// `WriteTerm` once done); `Release` ends in none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockAction {
    /// Take the lock, or queue for it until it comes free, and report
    /// [`LockFact::Locked`] once held. Never asked while the lock is held or a request
    /// for it is queued.
    Take,
    /// Let go of the lock (or withdraw the request queued for it).
    Release,
    /// Read the record beside the lock and report [`LockFact::Recorded`]. It may be
    /// read without holding the lock (for a refusal); a grant reads it again once the
    /// lock is held.
    ReadTerm,
    /// Record `term` and its holder beside the lock, durably, and report
    /// [`LockFact::Raised`] (or [`LockFact::RaiseFailed`]). Only asked while the lock is
    /// held, so the record only grows.
    WriteTerm {
        /// The term to record.
        term: u64,
        /// Its holder (this replica).
        holder: SourceId,
    },
}

/// One output of a [`LockArbiter`], from [`LockArbiter::poll`], in the order they must
/// be carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockOutput {
    /// Hand this to the replica
    /// ([`Replica::handle_authority`](crate::Replica::handle_authority)).
    Answer(AuthorityAnswer),
    /// Carry this out on the medium, and hand back the fact it ends in.
    Medium(LockAction),
}

/// Where the lock stands for this adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lock {
    /// Neither held nor asked for.
    Idle,
    /// Asked for ([`LockAction::Take`]), not yet held.
    Queued,
    /// Held.
    Held,
}

/// The decision of a lock-like lease authority, with no I/O: a lock that one replica
/// at a time holds (`flock` on a file, the Web Locks API), and a term counter recorded
/// beside it. An adapter only takes, releases and watches the lock and reads and
/// writes the record; this decides everything else, the same way for every medium.
///
/// It is told the replica's [`AuthorityRequest`]s ([`LockArbiter::handle_request`])
/// and the medium's [`LockFact`]s ([`LockArbiter::handle_fact`]), and answers with
/// [`LockOutput`]s ([`LockArbiter::poll`]): [`AuthorityAnswer`]s for the replica and
/// [`LockAction`]s for the medium.
///
/// - **Grants come with the lock, unasked.** An arbiter queues for the lock from the
///   start. Whenever the medium hands it the lock, it reads the record, writes a term
///   newer than every term recorded or seen (and at least the one last asked for), and
///   grants it: [`AuthorityAnswer::Granted`] with `valid_ms: None`, answering the last
///   acquire not yet granted (`ask: None` if there is none). The term is read and
///   raised only while holding the lock, so terms strictly increase across holders.
/// - **Acquire while not holding** is refused at once, with the highest term recorded
///   and the holder the record names (never this replica, which does not hold it); the
///   lock is queued for (if it was not), so the grant follows once it comes free.
/// - **Acquire while holding**: the term held is granted again; a term newer than
///   every term recorded is written beside the lock and granted (a holder moves to a
///   newer term); any other term is spent, and refused with the highest term recorded
///   and this replica as the holder, so the replica asks for a newer one.
/// - **Renew** (never asked of a lock by a replica) confirms the term held, and answers
///   [`AuthorityAnswer::Lost`] for any other term.
/// - **Release** of the term held lets go of the lock, and does *not* queue for it
///   again: a replica that steps down (it left, slept, or was told of a newer term)
///   does not take the lock back unasked; its next acquire queues for it. Releasing a
///   term not held (an older one, moved on from) does nothing.
/// - **Loss** of the lock while holding a term answers [`AuthorityAnswer::Lost`], and
///   queues for the lock again: the replica did not give it up.
///
/// ```
/// use replisync::authority::{
///     AuthorityAnswer, AuthorityRequest, LockAction, LockArbiter, LockFact, LockOutput,
/// };
/// use replisync::SourceId;
///
/// // The medium: a free lock, and a record beside it. Carries out every output, hands
/// // back the facts they end in, and returns the answers for the replica.
/// fn run(arbiter: &mut LockArbiter, recorded: &mut u64) -> Vec<AuthorityAnswer> {
///     let mut answers = Vec::new();
///     while let Some(output) = arbiter.poll() {
///         let fact = match output {
///             LockOutput::Answer(answer) => { answers.push(answer); continue }
///             LockOutput::Medium(LockAction::Take) => LockFact::Locked,
///             LockOutput::Medium(LockAction::ReadTerm) => {
///                 LockFact::Recorded { term: *recorded, holder: None }
///             }
///             LockOutput::Medium(LockAction::WriteTerm { term, .. }) => {
///                 *recorded = term;
///                 LockFact::Raised { term }
///             }
///             LockOutput::Medium(LockAction::Release) => continue,
///         };
///         arbiter.handle_fact(fact);
///     }
///     answers
/// }
///
/// let mut arbiter = LockArbiter::new(SourceId::from_u128(1));
/// let mut recorded = 4;
/// // The lock was free: term 5 is granted unasked, until lost.
/// assert_eq!(
///     run(&mut arbiter, &mut recorded),
///     [AuthorityAnswer::Granted { ask: None, term: 5, valid_ms: None }]
/// );
/// assert_eq!((arbiter.held(), recorded), (Some(5), 5));
///
/// // The holder moves on to a newer term.
/// arbiter.handle_request(AuthorityRequest::Acquire { ask: 1, term: 9, duration_ms: 3_000 });
/// assert_eq!(
///     run(&mut arbiter, &mut recorded),
///     [AuthorityAnswer::Granted { ask: Some(1), term: 9, valid_ms: None }]
/// );
/// assert_eq!(recorded, 9);
///
/// // The medium took the lock away: the grant is lost.
/// arbiter.handle_fact(LockFact::Lost);
/// assert_eq!(arbiter.poll(), Some(LockOutput::Answer(AuthorityAnswer::Lost { term: 9 })));
/// assert_eq!(arbiter.poll(), Some(LockOutput::Medium(LockAction::Take)), "queued again");
/// ```
#[derive(Clone, Debug)]
pub struct LockArbiter {
    me: SourceId,
    lock: Lock,
    /// The term granted under the lock held.
    held: Option<u64>,
    /// The highest term recorded or granted, as far as this arbiter knows: a record
    /// lost or wiped does not bring back an older term.
    highest: u64,
    /// The last acquire not yet answered by a grant: its ask and term.
    asked: Option<(u64, u64)>,
    /// Asks waiting for the record to be read, to be refused.
    refusals: Vec<u64>,
    /// A [`LockAction::ReadTerm`] is out.
    reading: bool,
    /// The read out began before the lock was held: a grant needs another.
    reread: bool,
    /// A [`LockAction::WriteTerm`] is out: its term, and the ask its grant answers.
    writing: Option<(u64, Option<u64>)>,
    out: VecDeque<LockOutput>,
}

impl LockArbiter {
    /// The arbiter of replica `me`'s adapter. It wants the lock from the start: its
    /// first output is [`LockAction::Take`].
    pub fn new(me: SourceId) -> Self {
        let mut out = VecDeque::new();
        out.push_back(LockOutput::Medium(LockAction::Take));
        LockArbiter {
            me,
            lock: Lock::Queued,
            held: None,
            highest: 0,
            asked: None,
            refusals: Vec::new(),
            reading: false,
            reread: false,
            writing: None,
            out,
        }
    }

    /// The term granted under the lock, while held.
    pub fn held(&self) -> Option<u64> {
        self.held.filter(|_| self.lock == Lock::Held)
    }

    /// Whether the medium holds the lock for this replica (granted or about to be).
    pub fn is_locked(&self) -> bool {
        self.lock == Lock::Held
    }

    /// The highest term recorded beside the lock or granted, as far as known.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// The next output to carry out, in order; `None` once there is none.
    pub fn poll(&mut self) -> Option<LockOutput> {
        self.out.pop_front()
    }

    /// A request of the replica (from
    /// [`Replica::poll_authority`](crate::Replica::poll_authority)).
    pub fn handle_request(&mut self, request: AuthorityRequest) {
        match request {
            AuthorityRequest::Acquire { ask, term, .. } => match self.lock {
                Lock::Held if self.held.is_some() && !self.busy() => self.acquire_held(ask, term),
                // The grant under way answers it (or, once done, decides it).
                Lock::Held => self.asked = Some((ask, term)),
                Lock::Queued | Lock::Idle => {
                    if self.lock == Lock::Idle {
                        self.lock = Lock::Queued;
                        self.act(LockAction::Take);
                    }
                    self.asked = Some((ask, term));
                    self.refusals.push(ask);
                    self.read();
                }
            },
            AuthorityRequest::Renew { ask, term, .. } => {
                let answer = if self.held() == Some(term) {
                    AuthorityAnswer::Granted {
                        ask: Some(ask),
                        term,
                        valid_ms: None,
                    }
                } else {
                    AuthorityAnswer::Lost { term }
                };
                self.answer(answer);
            }
            AuthorityRequest::Release { term } => {
                if self.held() == Some(term) {
                    self.lock = Lock::Idle;
                    self.held = None;
                    self.asked = None;
                    self.writing = None;
                    self.act(LockAction::Release);
                }
            }
        }
    }

    /// A fact of the medium.
    pub fn handle_fact(&mut self, fact: LockFact) {
        match fact {
            LockFact::Locked => match self.lock {
                Lock::Held => {}
                // No longer wanted: let go at once.
                Lock::Idle => self.act(LockAction::Release),
                Lock::Queued => {
                    self.lock = Lock::Held;
                    self.held = None;
                    if self.reading {
                        self.reread = true;
                    } else {
                        self.read();
                    }
                }
            },
            LockFact::Lost => match self.lock {
                Lock::Held => {
                    if let Some(term) = self.held.take() {
                        self.answer(AuthorityAnswer::Lost { term });
                    }
                    if let Some((term, Some(ask))) = self.writing.take() {
                        // Not granted: the next grant answers it.
                        self.asked.get_or_insert((ask, term));
                    }
                    self.reread = false;
                    self.lock = Lock::Queued;
                    self.act(LockAction::Take);
                }
                Lock::Queued => self.lock = Lock::Idle,
                Lock::Idle => {}
            },
            LockFact::Recorded { term, holder } => {
                self.reading = false;
                self.highest = self.highest.max(term);
                let refusals = std::mem::take(&mut self.refusals);
                if self.lock != Lock::Held {
                    // Not ours: the record's holder, if it is not this replica.
                    let holder = holder.filter(|h| *h != self.me);
                    for ask in refusals {
                        self.refuse(ask, holder);
                    }
                }
                if std::mem::take(&mut self.reread) {
                    self.read();
                } else if self.lock == Lock::Held && self.held.is_none() && self.writing.is_none() {
                    let (ask, asked) = self.asked.take().map_or((None, 0), |(a, t)| (Some(a), t));
                    let term = self.highest.saturating_add(1).max(asked);
                    self.write(term, ask);
                }
            }
            LockFact::Raised { term } => {
                self.highest = self.highest.max(term);
                let Some((writing, ask)) = self.writing.filter(|(t, _)| *t == term) else {
                    return;
                };
                self.writing = None;
                if self.lock != Lock::Held {
                    return;
                }
                self.held = Some(writing);
                self.answer(AuthorityAnswer::Granted {
                    ask,
                    term,
                    valid_ms: None,
                });
                if let Some((ask, term)) = self.asked.take() {
                    self.acquire_held(ask, term);
                }
            }
            LockFact::RaiseFailed { term } => {
                let Some((_, ask)) = self.writing.filter(|(t, _)| *t == term) else {
                    return;
                };
                self.writing = None;
                let asks = ask.into_iter().chain(self.asked.take().map(|(a, _)| a));
                if self.held.is_some() {
                    // The move failed: the held term stays.
                    let me = Some(self.me);
                    asks.for_each(|a| self.refuse(a, me));
                } else if self.lock == Lock::Held {
                    // Nothing can be granted under the lock: let go of it (the next
                    // acquire queues again, at the replica's pace).
                    asks.for_each(|a| self.refuse(a, None));
                    self.lock = Lock::Idle;
                    self.act(LockAction::Release);
                }
            }
        }
    }

    /// Whether a read or a write is out.
    fn busy(&self) -> bool {
        self.reading || self.writing.is_some()
    }

    /// An acquire while the lock is held with a term granted.
    fn acquire_held(&mut self, ask: u64, term: u64) {
        if self.held == Some(term) {
            self.answer(AuthorityAnswer::Granted {
                ask: Some(ask),
                term,
                valid_ms: None,
            });
        } else if term > self.highest {
            self.write(term, Some(ask));
        } else {
            self.refuse(ask, Some(self.me));
        }
    }

    fn read(&mut self) {
        if !self.reading {
            self.reading = true;
            self.act(LockAction::ReadTerm);
        }
    }

    fn write(&mut self, term: u64, ask: Option<u64>) {
        self.writing = Some((term, ask));
        self.act(LockAction::WriteTerm {
            term,
            holder: self.me,
        });
    }

    fn refuse(&mut self, ask: u64, holder: Option<SourceId>) {
        self.answer(AuthorityAnswer::Refused {
            ask: Some(ask),
            term: self.highest,
            holder,
        });
    }

    fn answer(&mut self, answer: AuthorityAnswer) {
        self.out.push_back(LockOutput::Answer(answer));
    }

    fn act(&mut self, action: LockAction) {
        self.out.push_back(LockOutput::Medium(action));
    }
}

#[cfg(test)]
mod tests {
    //! The rows of the shared table (`replisync_testkit::lock`) run in
    //! `tests/authority.rs`; here, what no real medium can be made to do on demand.
    use super::*;

    const ME: SourceId = SourceId::from_u128(1);

    fn drain(arbiter: &mut LockArbiter) -> Vec<LockOutput> {
        std::iter::from_fn(|| arbiter.poll()).collect()
    }

    fn held(term: u64) -> LockArbiter {
        let mut arbiter = LockArbiter::new(ME);
        arbiter.handle_fact(LockFact::Locked);
        arbiter.handle_fact(LockFact::Recorded {
            term: term - 1,
            holder: None,
        });
        arbiter.handle_fact(LockFact::Raised { term });
        drain(&mut arbiter);
        arbiter
    }

    #[test]
    fn a_record_that_cannot_be_raised_grants_nothing_and_lets_go() {
        let mut arbiter = LockArbiter::new(ME);
        arbiter.handle_request(AuthorityRequest::Acquire {
            ask: 1,
            term: 3,
            duration_ms: 0,
        });
        arbiter.handle_fact(LockFact::Recorded {
            term: 2,
            holder: None,
        });
        arbiter.handle_fact(LockFact::Locked);
        arbiter.handle_fact(LockFact::Recorded {
            term: 2,
            holder: None,
        });
        arbiter.handle_fact(LockFact::RaiseFailed { term: 3 });
        let refused = |holder| {
            LockOutput::Answer(AuthorityAnswer::Refused {
                ask: Some(1),
                term: 2,
                holder,
            })
        };
        assert_eq!(
            drain(&mut arbiter),
            vec![
                LockOutput::Medium(LockAction::Take),
                LockOutput::Medium(LockAction::ReadTerm),
                refused(None),
                LockOutput::Medium(LockAction::ReadTerm),
                LockOutput::Medium(LockAction::WriteTerm {
                    term: 3,
                    holder: ME
                }),
                refused(None),
                LockOutput::Medium(LockAction::Release),
            ]
        );
        assert!(!arbiter.is_locked());

        // A holder whose move fails keeps its term.
        let mut arbiter = held(4);
        arbiter.handle_request(AuthorityRequest::Acquire {
            ask: 2,
            term: 6,
            duration_ms: 0,
        });
        arbiter.handle_fact(LockFact::RaiseFailed { term: 6 });
        assert_eq!(
            drain(&mut arbiter)[1..],
            [LockOutput::Answer(AuthorityAnswer::Refused {
                ask: Some(2),
                term: 4,
                holder: Some(ME)
            })]
        );
        assert_eq!(arbiter.held(), Some(4));
    }

    #[test]
    fn a_lock_that_comes_once_released_is_let_go() {
        let mut arbiter = held(4);
        arbiter.handle_request(AuthorityRequest::Release { term: 4 });
        arbiter.handle_fact(LockFact::Locked);
        assert_eq!(
            drain(&mut arbiter),
            vec![
                LockOutput::Medium(LockAction::Release),
                LockOutput::Medium(LockAction::Release)
            ]
        );
        assert_eq!((arbiter.held(), arbiter.highest()), (None, 4));
    }

    #[test]
    fn a_read_begun_before_the_lock_came_is_read_again() {
        let mut arbiter = LockArbiter::new(ME);
        arbiter.handle_request(AuthorityRequest::Acquire {
            ask: 1,
            term: 1,
            duration_ms: 0,
        });
        arbiter.handle_fact(LockFact::Locked);
        // The read was out before the lock came: another holder may have raised the
        // record since, so the grant reads it again.
        arbiter.handle_fact(LockFact::Recorded {
            term: 2,
            holder: None,
        });
        arbiter.handle_fact(LockFact::Recorded {
            term: 7,
            holder: None,
        });
        assert_eq!(
            drain(&mut arbiter)[2..],
            [
                LockOutput::Medium(LockAction::ReadTerm),
                LockOutput::Medium(LockAction::WriteTerm {
                    term: 8,
                    holder: ME
                })
            ]
        );
    }
}
