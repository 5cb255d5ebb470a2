//! The fault classes added after the first swarm (issue 15): damage in the middle of a
//! store's log, lease records and requests with extreme timing and size fields,
//! requests near and over the message limit, and duplicated or reordered answers of
//! the lease authority.
//!
//! They are drawn from their own random stream (the seed mixed with [`CLASS_SALT`]),
//! and act on their own stream during the run, so that a seed run with every class off
//! ([`Classes::NONE`]) replays exactly the world it made before the classes existed.

use super::Draw;
use super::Rng;

/// Mixed into the seed for the classes' own random streams.
pub const CLASS_SALT: u64 = 0x15c1_a55e_5eed_0015;

/// Which of the added fault classes a run generates, and how often.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Classes {
    /// Probability that a restarting replica finds its store damaged: a bit flipped in a
    /// record before the last (in its body, its length prefix or its line breaks), a
    /// complete last record that fails its check, or a last record cut short.
    pub store_damage: f64,
    /// Probability that a lease-carrying message is raced by a crafted copy (one timing
    /// or size field of the lease record at an extreme), and that a forwarded request
    /// is raced by one with an extreme field.
    pub extreme_fields: f64,
    /// Whether the failover check first races the leader's next lease message with a
    /// crafted copy (an extreme field), then crashes the leader.
    pub lease_trap_at_failover: bool,
    /// The message limit this run uses instead of the drawn one (`None`: the drawn one),
    /// and whether requests carry payloads sized around that limit.
    pub message_limit: Option<usize>,
    /// Share of workload requests that are payloads sized around the message limit.
    pub sized_requests: f64,
    /// Probability, per answer the authority delivers, that it is replayed later: a
    /// grant duplicated after a `Lost` or after a later ask, a refusal held back until
    /// after a later grant.
    pub answer_replays: f64,
    /// Probability per workload step of an unasked grant with a term above `MAX_TERM`.
    pub foreign_grants: f64,
}

impl Classes {
    /// Every added class off: the world as the simulator made it before them.
    pub const NONE: Classes = Classes {
        store_damage: 0.0,
        extreme_fields: 0.0,
        lease_trap_at_failover: false,
        message_limit: None,
        sized_requests: 0.0,
        answer_replays: 0.0,
        foreign_grants: 0.0,
    };

    /// Drawn from `seed` mixed with [`CLASS_SALT`]: each class on in about 40% of
    /// seeds, independently.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ CLASS_SALT);
        let on = |rng: &mut Rng| rng.chance(0.4);
        let store = on(&mut rng);
        let fields = on(&mut rng);
        let sizes = on(&mut rng);
        let answers = on(&mut rng);
        Classes {
            store_damage: if store { 0.7 } else { 0.0 },
            extreme_fields: if fields {
                rng.range(5, 30) as f64 / 100.0
            } else {
                0.0
            },
            lease_trap_at_failover: fields && rng.chance(0.7),
            message_limit: sizes.then(|| rng.pick(&[1_024, 1_024, 2_048, 4_096])),
            sized_requests: if sizes { 0.15 } else { 0.0 },
            answer_replays: if answers {
                rng.range(10, 50) as f64 / 100.0
            } else {
                0.0
            },
            foreign_grants: if answers && rng.chance(0.5) {
                0.01
            } else {
                0.0
            },
        }
    }

    /// Whether any class is on.
    pub fn any(&self) -> bool {
        *self != Classes::NONE
    }
}
