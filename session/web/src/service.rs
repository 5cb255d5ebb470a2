//! The service over the browser driver: [`WebSession`].

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::Promise;
use replisync::{Clock, Event, Now, SourceId, SyncMode, WriteError};
use replisync_session::{
    Operation, Outcome, SessionConfig, SessionError, SessionEvent, SessionState, SessionWatch, View,
};
use replisync_web::{BrowserClock, GroupError, OpenError, Options, WebReplica};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::Window;

/// What a [`WebSession`] tells its listeners.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// An event of the service, as this tab sees it.
    Session(SessionEvent),
    /// Something this tab shows may have changed (the state, the leader, the term):
    /// look at [`WebSession::view`] again.
    Changed,
}

type Listener = Rc<RefCell<dyn FnMut(&Notice)>>;

/// One tab's replica of the session service: the state machine of
/// [`replisync_session`] run over the browser driver of [`replisync_web`].
///
/// It is the service as the `Session` type runs it on a sans-IO replica, with the
/// driver's [`WebReplica`] underneath instead (the driver owns the replica and wakes
/// it), built from the same public pieces:
///
/// - an operation is checked on this tab's state ([`Operation::check`]), then written
///   here ([`Operation::apply`]) when this tab may write (it leads, or the mode is
///   distributed), or sent to the leader as a request;
/// - a request that reaches the leader is decided again there and written (or passed
///   on, if leadership moved meanwhile); a refusal there is a
///   [`SessionEvent::Refused`] at the leader;
/// - the leader records each phase transition as it falls due
///   ([`SessionState::write_transition`]); every tab computes its own phase and time
///   left from the shared absolute deadlines ([`WebSession::view`]);
/// - a [`SessionWatch`] turns what changed into [`SessionEvent`]s, after every event of
///   the replica and at every phase boundary (a `setTimeout` of its own, beside the
///   driver's).
///
/// A cheap handle: clones drive the same service.
#[derive(Clone)]
pub struct WebSession {
    inner: Rc<Inner>,
}

impl core::fmt::Debug for WebSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WebSession")
            .field("replica", &self.inner.replica)
            .finish_non_exhaustive()
    }
}

struct Inner {
    replica: WebReplica<SessionState, Operation>,
    clock: BrowserClock,
    window: Window,
    watch: RefCell<SessionWatch>,
    listeners: RefCell<Vec<(u64, Listener)>>,
    next_listener: Cell<u64>,
    /// The phase boundary timer: its callback, and the pending `setTimeout`.
    boundary: RefCell<Option<Closure<dyn FnMut()>>>,
    boundary_handle: Cell<Option<i32>>,
    /// A look is under way; `again` asks it to look once more.
    looking: Cell<bool>,
    again: Cell<bool>,
}

impl WebSession {
    /// Opens the service's group in this page (see [`Options`]; the replica's mode is
    /// the service's sync mode).
    ///
    /// # Errors
    ///
    /// The driver's [`OpenError`].
    pub fn open(options: Options) -> Result<WebSession, OpenError> {
        let window = match options.window.clone() {
            Some(w) => w,
            None => web_sys::window().ok_or(OpenError::NoWindow)?,
        };
        let replica: WebReplica<SessionState, Operation> = WebReplica::open(options)?;
        let inner = Rc::new_cyclic(|this: &Weak<Inner>| {
            let on_boundary = this.clone();
            let boundary = Closure::<dyn FnMut()>::new(move || {
                if let Some(inner) = on_boundary.upgrade() {
                    inner.boundary_handle.set(None);
                    inner.look();
                }
            });
            Inner {
                replica: replica.clone(),
                clock: BrowserClock::new(&window),
                window: window.clone(),
                watch: RefCell::new(SessionWatch::new()),
                listeners: RefCell::new(Vec::new()),
                next_listener: Cell::new(0),
                boundary: RefCell::new(Some(boundary)),
                boundary_handle: Cell::new(None),
                looking: Cell::new(false),
                again: Cell::new(false),
            }
        });
        let this = Rc::downgrade(&inner);
        replica.subscribe(move |event, _| {
            if let Some(inner) = this.upgrade() {
                if let Event::Request { from, request } = event {
                    inner.apply_request(*from, request.clone());
                }
                inner.look();
            }
        });
        inner.look();
        Ok(WebSession { inner })
    }

    /// The driver underneath (its channel, store, degradations, lease).
    pub fn replica(&self) -> &WebReplica<SessionState, Operation> {
        &self.inner.replica
    }

    /// The current time on this page's clocks.
    pub fn now(&self) -> Now {
        self.inner.clock.now()
    }

    /// The session as this tab sees it at `now`.
    pub fn view(&self, now: Now) -> View {
        self.inner.replica.with_state(|s| s.view(now))
    }

    /// This tab's id.
    pub fn source(&self) -> SourceId {
        self.inner.replica.source()
    }

    /// Whether this tab runs the timers (leader mode).
    pub fn is_leader(&self) -> bool {
        self.inner.replica.is_leader()
    }

    /// The tab running the timers, as this one knows it (leader mode).
    pub fn leader(&self) -> Option<SourceId> {
        self.inner.replica.leader()
    }

    /// The term of the latest lease known here; 0 before any.
    pub fn term(&self) -> u64 {
        self.inner.replica.term()
    }

    /// The service's sync mode.
    pub fn mode(&self) -> SyncMode {
        self.inner.replica.mode()
    }

    /// Whether a config was ever set in this group (else the defaults are in force).
    pub fn config_is_set(&self) -> bool {
        self.inner.replica.with_state(SessionState::config_is_set)
    }

    /// Checks `operation` on this tab's state, then writes it here (leading, or in
    /// distributed mode) or sends it to the leader (queued until one is known).
    ///
    /// # Errors
    ///
    /// [`SessionError::Refused`] when the check fails (nothing is written or sent);
    /// [`SessionError::Write`] when the driver refuses (the group is closed).
    pub fn operate(&self, operation: Operation) -> Result<Outcome, SessionError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        inner
            .replica
            .with_state(|s| operation.check(s, now))
            .map_err(SessionError::Refused)?;
        let outcome = if inner.may_write() {
            let mut refused = None;
            let written = inner.replica.write(|s, d, w| {
                refused = operation.apply(s, now, d, w).err();
            });
            match written {
                Ok(()) => match refused {
                    // The state cannot change between the check and the write (one
                    // task): kept for safety all the same.
                    Some(refusal) => Err(SessionError::Refused(refusal)),
                    None => Ok(Outcome::Applied),
                },
                // Leadership went between the look and the write: ask the leader.
                Err(GroupError::Write(WriteError::NotLeader { .. })) => inner
                    .replica
                    .request(operation)
                    .map(|()| Outcome::Forwarded)
                    .map_err(write_error),
                Err(e) => Err(write_error(e)),
            }
        } else {
            inner
                .replica
                .request(operation)
                .map(|()| Outcome::Forwarded)
                .map_err(write_error)
        };
        inner.look();
        outcome
    }

    /// Sets `config` unless a config is already set in the group: the settings a tab
    /// brings are the group's defaults, and a tab that joins a running session adopts
    /// the session's settings instead of re-planning it. `Ok(None)` when one was set.
    ///
    /// # Errors
    ///
    /// As [`WebSession::operate`].
    pub fn adopt_config(&self, config: SessionConfig) -> Result<Option<Outcome>, SessionError> {
        if self.config_is_set() {
            return Ok(None);
        }
        self.operate(Operation::SetConfig(config)).map(Some)
    }

    /// Adds a listener of every [`Notice`]; events raised before it was added are not
    /// replayed (read [`WebSession::view`] for where things stand).
    pub fn subscribe(&self, listener: impl FnMut(&Notice) + 'static) -> u64 {
        let id = self.inner.next_listener.get();
        self.inner.next_listener.set(id + 1);
        self.inner
            .listeners
            .borrow_mut()
            .push((id, Rc::new(RefCell::new(listener))));
        id
    }

    /// Removes a listener; `false` if it was not there.
    pub fn unsubscribe(&self, id: u64) -> bool {
        let mut listeners = self.inner.listeners.borrow_mut();
        let before = listeners.len();
        listeners.retain(|(l, _)| *l != id);
        listeners.len() != before
    }

    /// Leaves the group (a leader hands the timers over at once) and stops the boundary
    /// timer. The promise settles once the Web Lock is given back.
    pub fn close(&self) -> Promise {
        let inner = &self.inner;
        inner.replica.close();
        if let Some(handle) = inner.boundary_handle.take() {
            inner.window.clear_timeout_with_handle(handle);
        }
        inner.listeners.borrow_mut().clear();
        inner.replica.released()
    }

    /// Whether the group was closed.
    pub fn is_closed(&self) -> bool {
        self.inner.replica.is_closed()
    }
}

fn write_error(e: GroupError) -> SessionError {
    match e {
        GroupError::Write(e) => SessionError::Write(e),
        _ => SessionError::Write(WriteError::Left),
    }
}

impl Inner {
    fn may_write(&self) -> bool {
        self.replica.mode() == SyncMode::Distributed || self.replica.is_leader()
    }

    fn leading(&self) -> Option<u64> {
        if self.replica.is_leader() {
            self.replica.lease().map(|l| l.term)
        } else {
            None
        }
    }

    /// A request that reached this tab to be applied (as the leader, or here in
    /// distributed mode).
    fn apply_request(&self, from: SourceId, operation: Operation) {
        let now = self.clock.now();
        if let Err(refusal) = self.replica.with_state(|s| operation.check(s, now)) {
            self.emit(&Notice::Session(SessionEvent::Refused {
                from,
                operation,
                refusal,
            }));
            return;
        }
        let written = if self.may_write() {
            self.replica.write(|s, d, w| {
                let _ = operation.apply(s, now, d, w);
            })
        } else {
            Err(GroupError::Write(WriteError::NotLeader { leader: None }))
        };
        if let Err(GroupError::Write(WriteError::NotLeader { .. })) = written {
            // Leadership moved on since the request surfaced here: pass it on.
            let _ = self.replica.request(operation);
        }
    }

    /// Reports what changed since the last look, records a transition that fell due
    /// (as the leader), and sets the timer for the next phase boundary.
    fn look(&self) {
        if self.looking.replace(true) {
            self.again.set(true);
            return;
        }
        loop {
            self.again.set(false);
            if self.replica.is_closed() {
                break;
            }
            let now = self.clock.now();
            let leading = self.leading();
            let events = self
                .replica
                .with_state(|s| self.watch.borrow_mut().observe(s, leading, now));
            let due =
                leading.is_some() && self.replica.with_state(|s| s.transition_due(now)).is_some();
            if due {
                // A failed write (leadership lost on the way) leaves the transition to
                // the next leader, which finds it due in the same way.
                let _ = self.replica.write(|s, d, w| {
                    s.write_transition(now, d, w);
                });
            }
            for event in events {
                self.emit(&Notice::Session(event));
            }
            self.emit(&Notice::Changed);
            self.schedule(now);
            if !self.again.get() {
                break;
            }
        }
        self.looking.set(false);
    }

    /// Sets the boundary timer to the view's next change (just after it: a look at the
    /// boundary itself finds the later phase).
    fn schedule(&self, now: Now) {
        if let Some(handle) = self.boundary_handle.take() {
            self.window.clear_timeout_with_handle(handle);
        }
        let Some(at) = self.replica.with_state(|s| s.view(now).next_change_at) else {
            return;
        };
        let delay = at
            .saturating_sub(now.wall_ms)
            .saturating_add(1)
            .min(i32::MAX as u64) as i32;
        let boundary = self.boundary.borrow();
        let Some(callback) = boundary.as_ref() else {
            return;
        };
        if let Ok(handle) = self
            .window
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                callback.as_ref().unchecked_ref(),
                delay,
            )
        {
            self.boundary_handle.set(Some(handle));
        }
    }

    fn emit(&self, notice: &Notice) {
        let listeners: Vec<Listener> = self
            .listeners
            .borrow()
            .iter()
            .map(|(_, l)| l.clone())
            .collect();
        for listener in listeners {
            if let Ok(mut listener) = listener.try_borrow_mut() {
                (*listener)(notice);
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(handle) = self.boundary_handle.take() {
            self.window.clear_timeout_with_handle(handle);
        }
    }
}
