//! The wiring between the service and the native driver, shared by both forms of the
//! example (three replicas in one process, and one replica per process).
//!
//! The driver runs a [`Session`] as it runs a bare replica: the session decides
//! everything (it checks operations, writes them or forwards them to the leader,
//! decides again at the leader, records the phase transitions as they fall due), and
//! the driver wakes it at each phase boundary. What is left here is wiring: the
//! session's events become [`Report`]s, and a user's operation is a call on the
//! session through the [`Handle`].

use crossbeam_channel::{Receiver, Sender};
use replisync::{DriverError, Handle, Now, SourceId};
use replisync_session::{
    Notice, Operation, Outcome, Refusal, Session, SessionError, SessionEvent, SessionState, View,
};

/// An event a replica's service reported, with what the replica saw just after.
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

/// What `handle`'s session sees now.
pub fn status(handle: &Handle<Session>) -> Result<Status, DriverError> {
    handle.call(|session, now| Status {
        now,
        view: session.view(now),
        leading: session.leading_term(),
        leader: session.leader(),
        term: session.replica().lease().map(|l| l.term),
    })
}

/// A copy of the shared state as `handle`'s session holds it.
pub fn state(handle: &Handle<Session>) -> Result<SessionState, DriverError> {
    handle.call(|session, _| session.state().clone())
}

/// Reports each of the session's events, with the status it shows, until the driver
/// stops.
pub fn report(
    name: u128,
    handle: Handle<Session>,
    notices: Receiver<Notice>,
    reports: Sender<Report>,
) {
    for notice in notices {
        let Notice::Session(event) = notice else {
            continue;
        };
        let Ok(status) = status(&handle) else {
            return; // the replica stopped
        };
        let _ = reports.send(Report {
            name,
            at_ms: status.now.mono_ms,
            event,
            status,
        });
    }
}

/// Why a user's operation did not go out.
#[derive(Debug)]
pub enum Step {
    /// The service refused it: nothing was written or sent.
    Refused(Refusal),
    /// The replica refused it (it has left).
    Failed(SessionError),
    /// The driver has stopped.
    Stopped(DriverError),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Refused(r) => write!(f, "refused: {r}"),
            Step::Failed(e) => write!(f, "{e}"),
            Step::Stopped(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Step {}

/// A user's operation at a replica ([`Session::operate`]): once this returns, it was
/// written and handed to the transport, or sent to the leader (queued until one is
/// known).
pub fn operate(handle: &Handle<Session>, operation: Operation) -> Result<Outcome, Step> {
    match handle.call(move |session, now| session.operate(now, operation)) {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(SessionError::Refused(refusal))) => Err(Step::Refused(refusal)),
        Ok(Err(e)) => Err(Step::Failed(e)),
        Err(e) => Err(Step::Stopped(e)),
    }
}
