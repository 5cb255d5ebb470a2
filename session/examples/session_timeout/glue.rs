//! The service on the native driver, shared by both forms of the example (three
//! replicas in one process, and one replica per process): the pure pieces of
//! `replisync_session` put together around a `Handle`.
//!
//! A [`SessionWatch`] per replica turns the state into events, the leader (or, in
//! distributed mode, every replica) applies operations with [`Operation::apply`], and
//! the leader records phase transitions with [`SessionState::write_transition`]. [`serve`] is all of it; [`operate`] is a user's
//! operation at a replica.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use replisync::{
    Clock, DriverError, Event, Handle, Now, SourceId, SyncMode, SystemClock, WriteError,
};
use replisync_session::{Operation, Refusal, SessionEvent, SessionState, SessionWatch, View};

/// An event a replica's service reported, with what the replica saw at that moment.
pub struct Report {
    /// The replica, as its application names it.
    pub name: u128,
    /// When (local monotonic ms).
    pub at_ms: u64,
    pub event: SessionEvent,
    pub status: Status,
}

/// What one replica sees at one moment: the session, and who runs the timers.
#[derive(Clone, Copy, Debug)]
pub struct Status {
    pub now: Now,
    pub view: View,
    /// This replica's lease term while it leads.
    pub leading: Option<u64>,
    /// The lease holder as this replica knows it.
    pub leader: Option<SourceId>,
    /// The latest lease term this replica knows, `None` before any.
    pub term: Option<u64>,
}

/// What `handle`'s replica sees at `now`.
pub fn status(handle: &Handle<SessionState, Operation>, now: Now) -> Result<Status, DriverError> {
    let (state, leads, lease, leader) = (
        handle.state()?,
        handle.is_leader()?,
        handle.lease()?,
        handle.leader()?,
    );
    Ok(Status {
        now,
        view: state.view(now),
        leading: lease.filter(|_| leads).map(|l| l.term),
        leader,
        term: lease.map(|l| l.term),
    })
}

/// The service of one replica on the native driver: after every event of the replica
/// and at every phase boundary, report what changed; as the leader (or in distributed
/// mode), apply the requests that arrive; as the leader, record the phase transitions
/// that fall due. Ends when the replica stops.
pub fn serve(
    name: u128,
    handle: Handle<SessionState, Operation>,
    events: Receiver<Event<Operation>>,
    reports: Sender<Report>,
    clock: SystemClock,
) {
    let mut watch = SessionWatch::new();
    loop {
        let now = clock.now();
        let (Ok(state), Ok(status)) = (handle.state(), status(&handle, now)) else {
            return; // the replica stopped
        };
        for event in watch.observe(&state, status.leading, now) {
            let _ = reports.send(Report {
                name,
                at_ms: now.mono_ms,
                event,
                status,
            });
        }
        if status.leading.is_some() && state.transition_due(now).is_some() {
            let recorded = handle.write(move |s, d, w| {
                s.write_transition(now, d, w);
            });
            if recorded.is_ok() {
                continue; // look again: the write is a change to report
            }
        }
        let wait = status
            .view
            .next_change_at
            .map_or(1_000, |at| at.saturating_sub(now.wall_ms))
            .min(1_000);
        match events.recv_timeout(Duration::from_millis(wait)) {
            Ok(Event::Request { from, request }) => {
                apply(&handle, &reports, name, from, request, clock.now())
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The leader (or, in distributed mode, the replica asked) applies a request: decided
/// on its own state, written in one write.
fn apply(
    handle: &Handle<SessionState, Operation>,
    reports: &Sender<Report>,
    name: u128,
    from: SourceId,
    operation: Operation,
    now: Now,
) {
    let (op, refused) = (operation.clone(), reports.clone());
    // The status a refusal is reported with: as the replica saw it just before.
    let Ok(before) = status(handle, now) else {
        return;
    };
    let written = handle.write(move |s, d, w| {
        if let Err(refusal) = op.apply(s, now, d, w) {
            let _ = refused.send(Report {
                name,
                at_ms: now.mono_ms,
                event: SessionEvent::Refused {
                    from,
                    operation: op,
                    refusal,
                },
                status: before,
            });
        }
    });
    if let Err(DriverError::Write(WriteError::NotLeader { .. })) = written {
        // Leadership moved on meanwhile: pass it to the new leader.
        let _ = handle.request(operation);
    }
}

/// Why a user's operation did not go out.
#[derive(Debug)]
pub enum Step {
    Refused(Refusal),
    Stopped(DriverError),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Refused(r) => write!(f, "refused: {r}"),
            Step::Stopped(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Step {}

/// A user's operation at a replica: checked on what that replica sees (refused
/// activity never costs a message), then, in leader mode, sent as a request to the
/// leader (this replica's own [`serve`], when it leads), which decides again and writes
/// it; in distributed mode, written here at once. Requests keep their order, queued
/// until a leader is known; a distributed write has been applied and handed to the
/// transport once this returns.
pub fn operate(
    handle: &Handle<SessionState, Operation>,
    mode: SyncMode,
    operation: Operation,
    clock: SystemClock,
) -> Result<(), Step> {
    let state = handle.state().map_err(Step::Stopped)?;
    let now = clock.now();
    operation.check(&state, now).map_err(Step::Refused)?;
    if mode == SyncMode::Leader {
        return handle.request(operation).map_err(Step::Stopped);
    }
    let (decided, decision) = crossbeam_channel::bounded(1);
    handle
        .write(move |s, d, w| {
            // Decided again on the state of the moment: a message may have come since.
            let _ = decided.send(operation.apply(s, now, d, w));
        })
        .map_err(Step::Stopped)?;
    decision.try_recv().unwrap_or(Ok(())).map_err(Step::Refused)
}
