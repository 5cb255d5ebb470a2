//! Duplicated and reordered answers of the lease authority, across `Lost` and across
//! asks, and unasked grants of terms above `MAX_TERM`; and the oracle that
//! `LeadershipGained` is never raised for a term the replica cannot write.
//!
//! With the class on, the authority's adapter (its link) misbehaves in the ways a real
//! one can: an old grant is delivered again after the replica was told `Lost`, or after
//! later asks; a refusal is held back until after a later grant (for the same term,
//! when the replica retried); an unasked grant names a term above `MAX_TERM`.
//!
//! The oracle, always on: a replica never gains a term above `MAX_TERM`, a term it was
//! told it lost (in this run of its process), or a term below one it was granted or
//! heard of (a lease record of a higher term) in this run.

use super::Draw;
use replisync::authority::{AuthorityAnswer, AuthorityRequest};
use replisync::stamp::MAX_TERM;

use super::authority::Flight;
use super::{hash_in, verbose, Check, World};

/// What a replica's process was told by its authority and heard from its peers, for
/// the oracle, and the answers the link holds back to replay.
#[derive(Clone, Debug, Default)]
pub(super) struct AnswerMemory {
    /// The run of the process this is about.
    run: u64,
    /// Terms it was told it lost, or gave up itself (a release).
    lost: Vec<u64>,
    /// The highest term it asked to acquire.
    asked: u64,
    /// The highest term (at most `MAX_TERM`) granted to it or heard of.
    known: u64,
    /// The last grant delivered to it.
    last_grant: Option<AuthorityAnswer>,
    /// Refusals held back until its next grant.
    held: Vec<AuthorityAnswer>,
}

impl World {
    fn memory(&mut self, i: usize) -> &mut AnswerMemory {
        let run = self.nodes[i].run;
        let m = &mut self.nodes[i].answers;
        if m.run != run {
            *m = AnswerMemory {
                run,
                ..AnswerMemory::default()
            };
        }
        m
    }

    /// Node `i` (run `run`) is handed `answer`: remember it for the oracle and, with
    /// the class on, replay it or an older one later.
    pub(super) fn answer_delivered(&mut self, i: usize, run: u64, answer: AuthorityAnswer) {
        let p = self.opts.classes.answer_replays;
        let time = self.time;
        let mut replays = Vec::new();
        {
            let m = self.memory(i);
            match answer {
                AuthorityAnswer::Lost { term } => {
                    m.lost.push(term);
                    if let Some(grant) = m.last_grant {
                        replays.push((grant, 0, 60));
                        // The same grant as a lock's adapter would hand it again: unasked
                        // and untimed.
                        if let AuthorityAnswer::Granted { term, .. } = grant {
                            let lock = AuthorityAnswer::Granted {
                                ask: None,
                                term,
                                valid_ms: None,
                            };
                            replays.push((lock, 0, 60));
                        }
                    }
                }
                AuthorityAnswer::Granted { term, .. } => {
                    if term <= MAX_TERM {
                        m.known = m.known.max(term);
                    }
                    m.last_grant = Some(answer);
                    for refusal in std::mem::take(&mut m.held) {
                        replays.push((refusal, 0, 30));
                    }
                    replays.push((answer, 150, 600));
                }
                AuthorityAnswer::Refused { .. } => m.held.push(answer),
            }
        }
        if p <= 0.0 {
            self.nodes[i].answers.held.clear();
            return;
        }
        for (replay, lo, hi) in replays {
            if !self.class_rng.chance(p) {
                continue;
            }
            let at = time + self.class_rng.range(lo, hi);
            if verbose() {
                println!("t={time} node{i} AUTHORITY REPLAY at {at}: {replay:?}");
            }
            hash_in(&mut self.trace, format!("replay{i}{replay:?}").as_bytes());
            if let Some(auth) = self.authority.as_mut() {
                auth.inject(at, (i, run), Flight::Answer(replay));
            }
        }
        // A refusal is held back only sometimes.
        if matches!(answer, AuthorityAnswer::Refused { .. }) && !self.class_rng.chance(p) {
            self.nodes[i].answers.held.clear();
        }
    }

    /// With the class on: sometimes an unasked grant of a term above `MAX_TERM` reaches
    /// an awake replica.
    pub(super) fn foreign_grant(&mut self) {
        let p = self.opts.classes.foreign_grants;
        if p <= 0.0 || self.authority.is_none() || !self.class_rng.chance(p) {
            return;
        }
        let awake: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].awake())
            .collect();
        if awake.is_empty() {
            return;
        }
        let i = awake[self.class_rng.below(awake.len() as u64) as usize];
        let term = self.class_rng.pick(&[MAX_TERM + 1, 1 << 32, u64::MAX]);
        let valid_ms = self.class_rng.pick(&[None, Some(300)]);
        let answer = AuthorityAnswer::Granted {
            ask: None,
            term,
            valid_ms,
        };
        let run = self.nodes[i].run;
        hash_in(&mut self.trace, format!("foreign{i}{answer:?}").as_bytes());
        if let Some(auth) = self.authority.as_mut() {
            auth.inject(self.time, (i, run), Flight::Answer(answer));
        }
    }

    /// Node `i` asks its authority `request`: a release gives a term up, an acquisition
    /// shows which terms it knows are spent.
    pub(super) fn authority_asked(&mut self, i: usize, request: &AuthorityRequest) {
        let m = self.memory(i);
        match *request {
            AuthorityRequest::Release { term } => m.lost.push(term),
            AuthorityRequest::Acquire { term, .. } if term <= MAX_TERM => {
                m.asked = m.asked.max(term);
            }
            _ => {}
        }
    }

    /// After node `i`'s drain: the lease record it holds is a term it heard of.
    pub(super) fn heard_term(&mut self, i: usize) {
        let Some(term) = self.nodes[i]
            .replica
            .as_ref()
            .and_then(|r| r.lease())
            .map(|l| l.term)
        else {
            return;
        };
        if term <= MAX_TERM {
            let m = self.memory(i);
            m.known = m.known.max(term);
        }
    }

    /// Node `i` raised `LeadershipGained { term }`: a term it can write.
    pub(super) fn check_gained_term(&mut self, i: usize, term: u64) -> Check {
        let m = self.memory(i).clone();
        let why = if term > MAX_TERM {
            format!("above MAX_TERM ({MAX_TERM})")
        } else if m.lost.contains(&term) {
            "which its authority told it it had lost, or it released".to_string()
        } else if term < m.asked {
            format!(
                "below term {}, which it had asked its authority for since",
                m.asked
            )
        } else if term < m.known {
            format!(
                "below term {}, which it was granted or heard of before",
                m.known
            )
        } else {
            return Ok(());
        };
        Err(format!(
            "authority answers: node{i} raised LeadershipGained for term {term}, {why} (authority={}, lost {:?})",
            self.opts.authority, m.lost
        ))
    }
}
