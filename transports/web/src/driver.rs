//! The browser driver: a [`Replica`] wired to a channel, a store, `setTimeout` and the
//! page's lifecycle events.
//!
//! Every browser callback (a message, the timer, a lifecycle event) and every call of
//! the application is one input to the replica, followed by draining all its outputs:
//! messages go to the channel, events to the listeners, the next deadline to one
//! `setTimeout`, and then, still in the same task, persists to the store. Listeners run
//! after the replica is released, so they may call back into it (a leader answering a
//! request by writing, say); events raised meanwhile are delivered in order after
//! theirs, at most [`DELIVERY_BUDGET`] in one task: the rest follow in a later task, so
//! that a listener that writes on every change cannot hold the page. The store comes last so that it is off the path of a round trip: a message
//! and the listeners' answers to it are out before localStorage is written.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use js_sys::Promise;
use replisync::{
    Bundle, Clock, Config, Degradation, Event, Lease, Lifecycle, Now, Persist, Replica, Request,
    SourceId, Stats, Store, SyncMode, Writer,
};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{EventTarget, VisibilityState, Window};

use crate::channel::{Channel, ChannelChoice, ChannelKind};
use crate::error::describe;
use crate::locks::{self, WebLockAuthority};
use crate::names::Names;
use crate::store::{StorageChoice, StoreKind, WebStore};
use crate::{BrowserClock, GroupError, OpenError};

/// The degradation reported where leader mode finds no Web Locks.
const NO_WEB_LOCKS: &str = "the Web Locks API is missing: leadership is settled by gossip (a successor takes over once the lease expires)";

/// Events held for the first listener, at most.
const HELD_EVENTS: usize = 1_024;

/// Events delivered in one task, at most: those raised by listeners beyond it (a
/// listener that writes on every change, its own included) are delivered in a later
/// task, so the call that started it returns and the page keeps running.
const DELIVERY_BUDGET: usize = 256;

/// How to open a group. Start from [`Options::new`] and change the fields you need.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// The group's name: tabs of one origin that open the same name share one state.
    pub group: String,
    /// The replica's settings (mode, timings, codecs).
    pub config: Config,
    /// Which channel carries messages.
    pub channel: ChannelChoice,
    /// Where the state is kept.
    pub storage: StorageChoice,
    /// In leader mode, make the lease exclusive with the Web Locks API where the
    /// browser has it (the default). Without it, leadership is settled by gossip:
    /// eventually single and always fenced.
    pub locks: bool,
    /// This replica's id; a random one (from `crypto.getRandomValues`) by default.
    pub source: Option<SourceId>,
    /// How long the store's writes wait, so that a burst of changes costs one
    /// localStorage write (0, the default: written in the task that made them).
    ///
    /// Each localStorage write costs every other tab of the origin some work (the
    /// browser keeps their copies in step), which slows messages on their way while
    /// writes follow each other closely. Delayed writes are written at once when the
    /// page is hidden, frozen or left; what a crash within the delay loses survives in
    /// the tabs that received it.
    pub store_delay_ms: u32,
    /// The window whose channel, storage and lifecycle to use; the global `window` by
    /// default (tests pass a frame's).
    pub window: Option<Window>,
}

impl Options {
    /// A group named `group` with `config`, every other choice automatic.
    pub fn new(group: impl Into<String>, config: Config) -> Self {
        Options {
            group: group.into(),
            config,
            channel: ChannelChoice::Auto,
            storage: StorageChoice::Auto,
            locks: true,
            source: None,
            store_delay_ms: 0,
            window: None,
        }
    }
}

/// Identifies a listener added with [`WebReplica::subscribe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(u64);

/// How leadership is settled, as a group opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Leadership {
    /// The Web Locks API: at most one tab leads at any time, and a successor takes
    /// over as soon as the leader's tab closes or dies (the browser hands the lock to
    /// the next tab waiting for it).
    WebLocks,
    /// The core's gossip rules (no Web Locks, or not wanted): eventually one leader,
    /// always fenced; a successor takes over after the lease expires.
    Gossip,
    /// Distributed mode: no tab leads.
    None,
}

impl core::fmt::Display for Leadership {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Leadership::WebLocks => "web-locks",
            Leadership::Gossip => "gossip",
            Leadership::None => "none",
        })
    }
}

type Listener<S, R> = Rc<RefCell<dyn FnMut(&Event<R>, &WebReplica<S, R>)>>;

/// One replica of a group in a browser page: the sans-IO [`Replica`] driven by the
/// page's callbacks. A cheap handle: clones drive the same replica.
///
/// It opens the group's channel (a BroadcastChannel, or the `storage` event where that
/// is missing), restores the state from localStorage (or keeps it in memory where that
/// does not work; each fallback is reported as [`Event::Degraded`]), and follows the
/// page's lifecycle: hidden and shown, frozen and resumed; on `pagehide` it leaves
/// (pending writes go out, a leader releases the lease, it says goodbye and closes the
/// channel, so the page stays eligible for the back-forward cache), and on a `pageshow`
/// from that cache it joins again with the same id.
///
/// ```no_run
/// use replisync::{Config, Event, Lww, Merge};
/// use replisync_web::{Options, WebReplica};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
/// struct Session {
///     deadline_ms: Lww<u64>,
/// }
///
/// let tab: WebReplica<Session, u64> =
///     WebReplica::open(Options::new("session", Config::leader()))?;
/// tab.subscribe(|event, tab| match event {
///     // Followers ask; the leader extends the deadline.
///     Event::Request { request: extra_ms, .. } => {
///         let _ = tab.write(|s, d, w| {
///             let now = s.deadline_ms.get().copied().unwrap_or(0);
///             d.deadline_ms = s.deadline_ms.write(now + extra_ms, w);
///         });
///     }
///     Event::Changed { .. } => {
///         let deadline = tab.with_state(|s| s.deadline_ms.get().copied());
///         web_sys::console::log_1(&format!("deadline {deadline:?}").into());
///     }
///     _ => {}
/// });
/// tab.request(30_000)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WebReplica<S: Bundle, R: Request = ()> {
    shared: Rc<Shared<S, R>>,
}

impl<S: Bundle, R: Request> Clone for WebReplica<S, R> {
    fn clone(&self) -> Self {
        WebReplica {
            shared: self.shared.clone(),
        }
    }
}

impl<S: Bundle, R: Request> core::fmt::Debug for WebReplica<S, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.shared.core.try_borrow() {
            Ok(core) => f
                .debug_struct("WebReplica")
                .field("group", &core.names.group())
                .field("replica", &core.replica)
                .field("channel", &core.channel_kind)
                .field("store", &core.store.kind())
                .finish_non_exhaustive(),
            Err(_) => f.write_str("WebReplica { .. }"),
        }
    }
}

struct Shared<S: Bundle, R: Request> {
    core: RefCell<Core<S, R>>,
    listeners: RefCell<Vec<(ListenerId, Listener<S, R>)>>,
    next_listener: Cell<u64>,
    queue: RefCell<VecDeque<Event<R>>>,
    delivering: Cell<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// Left on `pagehide`; joins again on a `pageshow` from the back-forward cache.
    Away,
    Closed,
}

struct Core<S: Bundle, R: Request> {
    this: Weak<Shared<S, R>>,
    names: Names,
    config: Config,
    window: Window,
    clock: BrowserClock,
    me: SourceId,
    replica: Replica<S, R>,
    channel_choice: ChannelChoice,
    channel: Option<Channel>,
    channel_kind: ChannelKind,
    store: WebStore,
    /// The store loaded (or was empty): persisting is allowed.
    store_loaded: bool,
    store_failing: bool,
    send_failing: bool,
    /// Persists drained from the replica, applied after the listeners ran.
    unsaved: VecDeque<Persist>,
    store_delay_ms: u32,
    /// Applies `unsaved` after `store_delay_ms`.
    save_timer: Timer,
    /// Delivers the events left over by a delivery that used up its budget.
    deliver_timer: Timer,
    timer: Timer,
    /// A localStorage that works, whether or not the store uses it: for the
    /// storage-event channel and the term counter.
    local_storage: Option<web_sys::Storage>,
    page: Vec<PageListener>,
    phase: Phase,
    /// Leader mode under Web Locks.
    use_locks: bool,
    /// The lease authority on the group's Web Lock (leader mode under Web Locks).
    authority: Option<WebLockAuthority>,
    degradations: Vec<Degradation>,
    /// Events raised by the driver itself, for the queue.
    raised: Vec<Event<R>>,
}

impl<S: Bundle, R: Request> WebReplica<S, R> {
    /// Opens `options.group` in the page: a replica joins the group's other tabs.
    ///
    /// # Errors
    ///
    /// [`OpenError`]: a bad group name or configuration, no window, a channel or
    /// storage insisted on that is missing, or no randomness for the id.
    pub fn open(options: Options) -> Result<Self, OpenError> {
        let names = Names::new(&options.group).map_err(OpenError::GroupName)?;
        let window = match options.window.clone() {
            Some(w) => w,
            None => web_sys::window().ok_or(OpenError::NoWindow)?,
        };
        let me = match options.source {
            Some(id) => id,
            None => random_source(&window)?,
        };
        let replica = Replica::new(options.config.clone(), me)?;
        let (store, store_check) = WebStore::open(&window, &names, me, options.storage);
        let mut raised = Vec::new();
        let mut degradations = Vec::new();
        match store_check {
            Ok(()) => {}
            Err(why) if options.storage == StorageChoice::LocalStorage => {
                return Err(OpenError::StorageUnavailable(why))
            }
            Err(why) => {
                let reason = Degradation::Store(format!(
                    "localStorage does not work here ({why}): the state is kept in memory only, and is lost when this page goes"
                ));
                degradations.push(reason.clone());
                raised.push(Event::Degraded { reason });
            }
        }
        let mut use_locks = options.config.mode == SyncMode::Leader && options.locks;
        if use_locks && !locks::available(&window) {
            use_locks = false;
            let reason = Degradation::Transport(NO_WEB_LOCKS.into());
            degradations.push(reason.clone());
            raised.push(Event::Degraded { reason });
        }
        let clock = BrowserClock::new(&window);
        let shared = Rc::new_cyclic(|this: &Weak<Shared<S, R>>| {
            let timer = Timer::new(&window, this.clone(), |shared| {
                let mut core = shared.core.borrow_mut();
                core.timer.fired();
                // Outside every lock callback: settled locks may go now.
                if let Some(authority) = &core.authority {
                    authority.sweep();
                }
                drop(core);
                let _ = shared.input(|r, now| r.handle_timeout(now));
            });
            let save_timer = Timer::new(&window, this.clone(), |shared| {
                shared.core.borrow_mut().save_timer.fired();
                shared.save(true);
            });
            let deliver_timer = Timer::new(&window, this.clone(), |shared| {
                shared.core.borrow_mut().deliver_timer.fired();
                shared.deliver();
            });
            Shared {
                core: RefCell::new(Core {
                    this: this.clone(),
                    names,
                    config: options.config.clone(),
                    window: window.clone(),
                    clock,
                    me,
                    replica,
                    channel_choice: options.channel,
                    channel: None,
                    channel_kind: ChannelKind::Unavailable,
                    store,
                    store_loaded: false,
                    store_failing: false,
                    send_failing: false,
                    unsaved: VecDeque::new(),
                    store_delay_ms: options.store_delay_ms,
                    save_timer,
                    deliver_timer,
                    timer,
                    local_storage: None,
                    page: Vec::new(),
                    phase: Phase::Away,
                    use_locks,
                    authority: None,
                    degradations,
                    raised,
                }),
                listeners: RefCell::new(Vec::new()),
                next_listener: Cell::new(0),
                queue: RefCell::new(VecDeque::new()),
                delivering: Cell::new(false),
            }
        });
        {
            let mut core = shared.core.borrow_mut();
            core.join(true)?;
            core.listen_to_page();
        }
        shared.input(|r, now| r.handle_timeout(now)).ok();
        Ok(WebReplica { shared })
    }

    /// This replica's id.
    pub fn source(&self) -> SourceId {
        self.shared.core.borrow().me
    }

    /// The group's name.
    pub fn group(&self) -> String {
        self.shared.core.borrow().names.group().to_owned()
    }

    /// The mode, leader or distributed.
    pub fn mode(&self) -> SyncMode {
        self.shared.core.borrow().config.mode
    }

    /// The channel in use.
    pub fn channel_kind(&self) -> ChannelKind {
        self.shared.core.borrow().channel_kind
    }

    /// Where the state is kept.
    pub fn store_kind(&self) -> StoreKind {
        self.shared.core.borrow().store.kind()
    }

    /// Every degradation reported so far (a fallback in use, a store that failed).
    pub fn degradations(&self) -> Vec<Degradation> {
        self.shared.core.borrow().degradations.clone()
    }

    /// Reads the state.
    pub fn with_state<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        f(self.shared.core.borrow().replica.state())
    }

    /// Whether this replica acts as leader (leader mode).
    pub fn is_leader(&self) -> bool {
        let core = self.shared.core.borrow();
        core.phase == Phase::Open && core.replica.is_leader()
    }

    /// The leader as this replica knows it.
    pub fn leader(&self) -> Option<SourceId> {
        self.shared.core.borrow().replica.leader()
    }

    /// The latest lease record known here (leader mode).
    pub fn lease(&self) -> Option<Lease> {
        self.shared.core.borrow().replica.lease().copied()
    }

    /// The term of the latest lease record known here; 0 before any.
    pub fn term(&self) -> u64 {
        self.lease().map_or(0, |l| l.term)
    }

    /// The replica's counters.
    pub fn stats(&self) -> Stats {
        *self.shared.core.borrow().replica.stats()
    }

    /// Whether the group was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.core.borrow().phase == Phase::Closed
    }

    /// Writes (see [`Replica::write`]): `f` gets the state, an empty delta to fill and a
    /// [`Writer`].
    ///
    /// # Errors
    ///
    /// [`GroupError::Closed`] once closed; [`GroupError::Write`] when the replica
    /// refuses (in leader mode, only the leader writes).
    pub fn write(&self, f: impl FnOnce(&S, &mut S, &mut Writer<'_>)) -> Result<(), GroupError> {
        self.shared
            .input(|r, now| r.write(now, f))?
            .map_err(GroupError::from)
    }

    /// An application request: delivered to the leader as [`Event::Request`] (leader
    /// mode), or here (distributed mode, or on the leader).
    ///
    /// # Errors
    ///
    /// [`GroupError::Closed`] once closed.
    pub fn request(&self, request: R) -> Result<(), GroupError> {
        self.shared
            .input(|r, now| r.request(now, request))?
            .map_err(GroupError::from)
    }

    /// Adds a listener of every event, called with the event and this handle (so that
    /// it may write). Events raised before the first listener was added are held (up
    /// to a thousand) and delivered to it now.
    ///
    /// Events a listener's writes raise are delivered after the current one, at most
    /// 256 events in one task: the rest follow in a later task, so a listener that
    /// writes on every change does not hold the page.
    pub fn subscribe(
        &self,
        listener: impl FnMut(&Event<R>, &WebReplica<S, R>) + 'static,
    ) -> ListenerId {
        let id = ListenerId(self.shared.next_listener.get());
        self.shared.next_listener.set(id.0 + 1);
        self.shared
            .listeners
            .borrow_mut()
            .push((id, Rc::new(RefCell::new(listener))));
        self.shared.deliver();
        id
    }

    /// Removes a listener; `false` if it was not there.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        let mut listeners = self.shared.listeners.borrow_mut();
        let before = listeners.len();
        listeners.retain(|(l, _)| *l != id);
        listeners.len() != before
    }

    /// Leaves the group for good: pending writes go out, a leader releases the lease
    /// (another tab takes over at once), the replica says goodbye, and every listener
    /// the driver added to the page is removed. Later writes fail with
    /// [`GroupError::Closed`]. Idempotent. [`WebReplica::released`] tells when the Web
    /// Lock is given back.
    pub fn close(&self) {
        {
            let mut core = self.shared.core.borrow_mut();
            if core.phase != Phase::Closed {
                let mut queue = self.shared.queue.borrow_mut();
                core.leave(&mut queue);
                core.unlisten_to_page();
                core.phase = Phase::Closed;
            }
        }
        self.shared.deliver();
    }

    /// A promise that settles (never rejects) once the Web Lock this tab last gave
    /// back, or its request withdrawn, is free of it: after [`WebReplica::close`], when
    /// another tab can take the lock. At once if it never held one.
    pub fn released(&self) -> Promise {
        let core = self.shared.core.borrow();
        let released = core.authority.as_ref().and_then(WebLockAuthority::released);
        released.unwrap_or_else(|| Promise::resolve(&wasm_bindgen::JsValue::UNDEFINED))
    }

    /// How leadership is settled in this group.
    pub fn leadership(&self) -> Leadership {
        let core = self.shared.core.borrow();
        match core.config.mode {
            SyncMode::Distributed => Leadership::None,
            _ if core.use_locks => Leadership::WebLocks,
            _ => Leadership::Gossip,
        }
    }
}

impl<S: Bundle, R: Request> Shared<S, R> {
    /// One input: `f` with the replica and the time, then every output drained.
    fn input<T>(
        self: &Rc<Self>,
        f: impl FnOnce(&mut Replica<S, R>, Now) -> T,
    ) -> Result<T, GroupError> {
        let out = {
            let mut core = self.core.borrow_mut();
            if core.phase != Phase::Open {
                return Err(GroupError::Closed);
            }
            let now = core.clock.now();
            let out = f(&mut core.replica, now);
            core.pump(&mut self.queue.borrow_mut());
            out
        };
        self.deliver();
        self.save(false);
        Ok(out)
    }

    /// Applies the persists of the inputs so far to the store: after the listeners ran,
    /// so that the messages and the listeners' answers to them are out first; at once,
    /// or after [`Options::store_delay_ms`] unless `now`.
    fn save(self: &Rc<Self>, now: bool) {
        let raised = {
            let mut core = self.core.borrow_mut();
            if core.unsaved.is_empty() {
                return;
            }
            if !now && core.store_delay_ms > 0 {
                if core.save_timer.due.is_none() {
                    let now_ms = core.clock.now().mono_ms;
                    let at = now_ms + u64::from(core.store_delay_ms);
                    core.save_timer.schedule(Some(at), now_ms);
                }
                return;
            }
            core.save_timer.cancel();
            let mut queue = self.queue.borrow_mut();
            let before = queue.len();
            core.save(&mut queue);
            queue.len() > before
        };
        if raised {
            self.deliver();
        }
    }

    /// A page lifecycle event.
    fn page_event(self: &Rc<Self>, kind: &str, event: &web_sys::Event) {
        let signal = match kind {
            "visibilitychange" => {
                let hidden = self
                    .core
                    .borrow()
                    .window
                    .document()
                    .is_some_and(|d| d.visibility_state() == VisibilityState::Hidden);
                Some(if hidden {
                    Lifecycle::Hidden
                } else {
                    Lifecycle::Visible
                })
            }
            "freeze" => Some(Lifecycle::Freeze),
            "resume" => Some(Lifecycle::Resume),
            "pagehide" => {
                {
                    let mut core = self.core.borrow_mut();
                    if core.phase == Phase::Open {
                        core.leave(&mut self.queue.borrow_mut());
                        core.phase = Phase::Away;
                    }
                }
                self.deliver();
                None
            }
            "pageshow" => {
                // Read as a property: a frame's events are not `instanceof` this
                // realm's PageTransitionEvent.
                let persisted = js_sys::Reflect::get(event, &"persisted".into())
                    .ok()
                    .and_then(|p| p.as_bool())
                    .unwrap_or(false);
                let away = self.core.borrow().phase == Phase::Away;
                if persisted && away {
                    // Back from the back-forward cache: join again, same id.
                    let joined = self.core.borrow_mut().join(false);
                    if joined.is_ok() {
                        let _ = self.input(|r, now| r.handle_timeout(now));
                    }
                }
                None
            }
            _ => None,
        };
        if let Some(signal) = signal {
            let _ = self.input(|r, now| r.handle_lifecycle(now, signal));
            if matches!(signal, Lifecycle::Hidden | Lifecycle::Freeze) {
                // A hidden or frozen page may be discarded without another event.
                self.save(true);
            }
        }
    }

    /// Hands queued events to the listeners, unless a delivery is under way (then it
    /// will reach them). Held while no listener is there.
    fn deliver(self: &Rc<Self>) {
        if self.delivering.replace(true) {
            return;
        }
        let handle = WebReplica {
            shared: self.clone(),
        };
        let mut budget = DELIVERY_BUDGET;
        loop {
            if self.listeners.borrow().is_empty() || budget == 0 {
                break;
            }
            let Some(event) = self.queue.borrow_mut().pop_front() else {
                break;
            };
            budget -= 1;
            let ids: Vec<ListenerId> = self.listeners.borrow().iter().map(|(id, _)| *id).collect();
            for id in ids {
                // Skip a listener removed by an earlier one.
                let listener = self
                    .listeners
                    .borrow()
                    .iter()
                    .find(|(l, _)| *l == id)
                    .map(|(_, l)| l.clone());
                if let Some(listener) = listener {
                    if let Ok(mut listener) = listener.try_borrow_mut() {
                        (*listener)(&event, &handle);
                    }
                }
            }
        }
        let listening = !self.listeners.borrow().is_empty();
        let mut queue = self.queue.borrow_mut();
        if !listening {
            while queue.len() > HELD_EVENTS {
                queue.pop_front();
            }
        }
        let left = !queue.is_empty();
        drop(queue);
        self.delivering.set(false);
        if listening && left {
            // The budget ran out: the rest in a later task.
            if let Ok(mut core) = self.core.try_borrow_mut() {
                let now = core.clock.now().mono_ms;
                core.deliver_timer.schedule(Some(now), now);
            }
        }
    }
}

impl<S: Bundle, R: Request> Core<S, R> {
    /// Restores from the store and opens the channel: at open (`first`), or again after
    /// the back-forward cache with a new replica of the same id.
    fn join(&mut self, first: bool) -> Result<(), OpenError> {
        let now = self.clock.now();
        // The channel and the lock's record may go through localStorage even where the
        // store keeps the state in memory by choice.
        self.local_storage = match self.store.local_storage() {
            Some(storage) => Some(storage.clone()),
            None => crate::store::working_local_storage(&self.window, &self.names).ok(),
        };
        let mut replica = Replica::new(self.config.clone(), self.me)?;
        if self.use_locks {
            let this = self.this.clone();
            let wake = move || {
                if let Some(shared) = this.upgrade() {
                    // Hands the authority's answers to the replica.
                    let _ = shared.input(|_, _| ());
                }
            };
            let (window, storage) = (&self.window, self.local_storage.clone());
            let group = self.names.group();
            match WebLockAuthority::open(window, group, self.me, storage, wake) {
                Ok(authority) => {
                    // A term seen before a stay in the back-forward cache stays seen.
                    if let Some(before) = &self.authority {
                        authority.note_term(before.highest());
                    }
                    self.authority = Some(authority);
                    replica = replica.with_authority();
                }
                Err(why) => {
                    self.use_locks = false;
                    self.degrade(Degradation::Transport(format!(
                        "navigator.locks.request failed ({why}): leadership is settled by gossip"
                    )));
                }
            }
        }
        self.replica = replica;
        self.store_failing = false;
        self.send_failing = false;
        match self.store.load() {
            Ok(Some(bytes)) => {
                // An unreadable store is reported by the replica (Degraded), kept, and
                // never written over.
                self.store_loaded = self.replica.restore(now, &bytes).is_ok();
            }
            Ok(None) => self.store_loaded = true,
            Err(e) => {
                self.store_loaded = false;
                self.degrade(Degradation::Store(format!(
                    "{e}; nothing is written to localStorage until the page is loaded again"
                )));
            }
        }
        let this = self.this.clone();
        let deliver = move |bytes: Vec<u8>| {
            if let Some(shared) = this.upgrade() {
                let _ = shared.input(|r, now| r.handle_message(now, &bytes));
            }
        };
        let (channel, fallback) = Channel::open(
            &self.window,
            &self.names,
            self.me,
            self.channel_choice,
            self.local_storage.as_ref(),
            deliver,
        )?;
        self.channel_kind = channel.kind();
        self.channel = Some(channel);
        if let Some(why) = fallback {
            if first {
                self.degrade(Degradation::Transport(why));
            }
        }
        self.phase = Phase::Open;
        Ok(())
    }

    fn degrade(&mut self, reason: Degradation) {
        self.degradations.push(reason.clone());
        self.raised.push(Event::Degraded { reason });
    }

    /// Drains every output of the replica.
    fn pump(&mut self, queue: &mut VecDeque<Event<R>>) {
        queue.extend(self.raised.drain(..));
        // The authority's answers are inputs too: carry out every request, hand back
        // every answer, until the replica asks nothing more.
        if let Some(authority) = &self.authority {
            loop {
                authority.note_term(self.replica.lease().map_or(0, |l| l.term));
                while let Some(request) = self.replica.poll_authority() {
                    authority.handle(request);
                }
                let Some(answer) = authority.poll_answer() else {
                    break;
                };
                let now = self.clock.now();
                self.replica.handle_authority(now, answer);
            }
        }
        while let Some(bytes) = self.replica.poll_transmit() {
            let Some(channel) = &mut self.channel else {
                continue;
            };
            match channel.post(&bytes) {
                Ok(()) => self.send_failing = false,
                Err(why) => {
                    // Reported when sending starts failing, not for every message.
                    if !self.send_failing {
                        self.send_failing = true;
                        let reason = Degradation::Transport(why);
                        self.degradations.push(reason.clone());
                        queue.push_back(Event::Degraded { reason });
                    }
                }
            }
        }
        while let Some(persist) = self.replica.poll_persist() {
            if self.store_loaded {
                self.unsaved.push_back(persist);
            }
        }
        while let Some(event) = self.replica.poll_event() {
            if let Event::Degraded { reason } = &event {
                self.degradations.push(reason.clone());
            }
            queue.push_back(event);
        }
        let now = self.clock.now();
        let due = self.replica.poll_timeout();
        self.timer.schedule(due, now.mono_ms);
    }

    /// Applies the pending persists to the store, in order.
    fn save(&mut self, queue: &mut VecDeque<Event<R>>) {
        while let Some(persist) = self.unsaved.pop_front() {
            match self.store.persist(&persist) {
                Ok(()) => self.store_failing = false,
                Err(e) => {
                    if !self.store_failing {
                        self.store_failing = true;
                        let reason = Degradation::Store(e.to_string());
                        self.degradations.push(reason.clone());
                        queue.push_back(Event::Degraded { reason });
                    }
                }
            }
        }
    }

    /// Leaves: the replica says goodbye (after sending pending writes and releasing the
    /// lease), then the channel closes and the timer stops.
    fn leave(&mut self, queue: &mut VecDeque<Event<R>>) {
        if self.phase == Phase::Open {
            let now = self.clock.now();
            self.replica.handle_lifecycle(now, Lifecycle::Leave);
            self.pump(queue);
        }
        self.save(queue);
        self.save_timer.cancel();
        // A lock still held was given back with the lease; a request still queued is
        // withdrawn, so that the page keeps no lock (and stays eligible for the
        // back-forward cache).
        if let Some(authority) = &self.authority {
            authority.close();
        }
        if let Some(mut channel) = self.channel.take() {
            channel.close();
        }
        self.timer.cancel();
    }

    fn listen_to_page(&mut self) {
        let Some(document) = self.window.document() else {
            return;
        };
        let targets: [(EventTarget, &'static str); 5] = [
            (document.clone().into(), "visibilitychange"),
            (document.clone().into(), "freeze"),
            (document.into(), "resume"),
            (self.window.clone().into(), "pagehide"),
            (self.window.clone().into(), "pageshow"),
        ];
        for (target, kind) in targets {
            let this = self.this.clone();
            let callback =
                Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
                    if let Some(shared) = this.upgrade() {
                        shared.page_event(kind, &event);
                    }
                });
            let _ =
                target.add_event_listener_with_callback(kind, callback.as_ref().unchecked_ref());
            self.page.push(PageListener {
                target,
                kind,
                callback,
            });
        }
    }

    fn unlisten_to_page(&mut self) {
        for PageListener {
            target,
            kind,
            callback,
        } in self.page.drain(..)
        {
            let _ =
                target.remove_event_listener_with_callback(kind, callback.as_ref().unchecked_ref());
        }
    }
}

impl<S: Bundle, R: Request> Drop for Core<S, R> {
    /// The last handle went without a close: leave all the same (the goodbye and
    /// pending writes still go out), and take every listener off the page.
    fn drop(&mut self) {
        let mut queue = VecDeque::new();
        self.leave(&mut queue);
        self.unlisten_to_page();
    }
}

/// A listener the driver added to the page (removed on close).
struct PageListener {
    target: EventTarget,
    kind: &'static str,
    callback: Closure<dyn FnMut(web_sys::Event)>,
}

/// The one `setTimeout` of a replica, set to its next deadline.
struct Timer {
    window: Window,
    callback: Closure<dyn FnMut()>,
    handle: Option<i32>,
    due: Option<u64>,
}

impl Timer {
    /// A timer that calls `fire` with the driver (if it is still there).
    fn new<S: Bundle, R: Request>(
        window: &Window,
        this: Weak<Shared<S, R>>,
        fire: fn(&Rc<Shared<S, R>>),
    ) -> Self {
        let callback = Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = this.upgrade() {
                fire(&shared);
            }
        });
        Timer {
            window: window.clone(),
            callback,
            handle: None,
            due: None,
        }
    }

    /// Marks the timer as fired (call first thing in its callback).
    fn fired(&mut self) {
        self.handle = None;
        self.due = None;
    }

    /// Fires at `due` (local monotonic ms), or never.
    fn schedule(&mut self, due: Option<u64>, now_ms: u64) {
        if due == self.due && self.handle.is_some() {
            return;
        }
        self.cancel();
        let Some(due) = due else {
            return;
        };
        let delay = due.saturating_sub(now_ms).min(i32::MAX as u64) as i32;
        match self
            .window
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                self.callback.as_ref().unchecked_ref(),
                delay,
            ) {
            Ok(handle) => {
                self.handle = Some(handle);
                self.due = Some(due);
            }
            Err(e) => tracing::warn!(error = %describe(&e), "setTimeout failed"),
        }
    }

    fn cancel(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.window.clear_timeout_with_handle(handle);
        }
        self.due = None;
    }
}

impl Drop for Timer {
    /// A pending `setTimeout` must not call a dropped callback.
    fn drop(&mut self) {
        self.cancel();
    }
}

/// A version-4 id from `crypto.getRandomValues`.
fn random_source(window: &Window) -> Result<SourceId, OpenError> {
    let crypto = window
        .crypto()
        .map_err(|e| OpenError::NoRandomness(describe(&e)))?;
    let mut bytes = [0u8; 16];
    crypto
        .get_random_values_with_u8_array(&mut bytes)
        .map_err(|e| OpenError::NoRandomness(describe(&e)))?;
    Ok(SourceId::from_random_bytes(bytes))
}
