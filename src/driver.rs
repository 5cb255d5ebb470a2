//! The native driver: runs one [`Replica`] on its own thread and hands the application
//! a cloneable [`Handle`].
//!
//! The thread owns the replica, its [`Transport`], a [`Clock`] and an optional
//! [`Store`]. It waits, with `crossbeam_channel::select!` and no polling, on three
//! things at once: bytes from the transport, a command from a handle, and the replica's
//! next deadline. After each input it drains the replica's outputs: messages to the
//! transport, bytes to the store, events to every subscriber.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::bundle::{Bundle, Request};
use crate::{
    Clock, Degradation, Event, Lifecycle, Replica, SourceId, Stats, SystemClock, Transport,
    WriteError, Writer,
};

/// Where a driver keeps the replica's persisted state: whole states as bytes, each
/// replacing the one before.
///
/// The driver loads once, before its thread starts, and restores the replica from what
/// it finds; then it saves every state the replica hands out
/// ([`Replica::poll_persist`]). If `load` fails, the driver never saves during that
/// run, so data it could not read is never overwritten (the same rule the replica
/// applies to bytes it cannot decode).
pub trait Store: Send + 'static {
    /// Why loading or saving failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The bytes saved last, or `None` if nothing was ever saved.
    ///
    /// # Errors
    ///
    /// The store's error when it could not be read.
    fn load(&mut self) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Replaces the saved bytes.
    ///
    /// # Errors
    ///
    /// The store's error when the bytes could not be saved.
    fn save(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// A [`Store`] in memory. Clones share the same bytes, so a test can restart a replica
/// from the store an earlier one saved to.
///
/// ```
/// use replisync::{MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// let mut writer = store.clone();
/// writer.save(b"state")?;
/// assert_eq!(store.bytes().as_deref(), Some(&b"state"[..]));
/// # Ok::<(), std::convert::Infallible>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    bytes: Arc<Mutex<Option<Vec<u8>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A copy of the bytes saved last.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        self.bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Store for MemoryStore {
    type Error = std::convert::Infallible;

    fn load(&mut self) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.bytes())
    }

    fn save(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        *self.bytes.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes.to_vec());
        Ok(())
    }
}

/// Why a call on a [`Handle`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverError {
    /// The driver's thread has stopped: the replica left, crashed, or its transport
    /// closed. Spawn a new driver to take part again.
    Stopped,
    /// The replica refused the write or request.
    Write(WriteError),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Stopped => write!(
                f,
                "the replica's driver has stopped (it left, crashed or lost its transport); spawn a new one"
            ),
            DriverError::Write(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DriverError::Stopped => None,
            DriverError::Write(e) => Some(e),
        }
    }
}

impl From<WriteError> for DriverError {
    fn from(e: WriteError) -> Self {
        DriverError::Write(e)
    }
}

/// Sets up a native driver: give it a replica and a transport, optionally a clock, a
/// store and early subscribers, then [`spawn`](Driver::spawn) it.
///
/// # Time
///
/// The driver reads its [`Clock`] for the `now` of every call and turns the replica's
/// deadlines into real timers, so the clock must run at real speed
/// ([`SystemClock`], the default). Build the replica with a reading of **the same
/// clock** (`SystemClock` is `Copy`): [`Replica::new`] takes its first `now` from the
/// caller, and a reading from another clock's monotonic frame would shift its first
/// timers.
///
/// # Errors and degradation
///
/// A failed broadcast or save is logged (`tracing::warn!`) and reported to subscribers
/// as [`Event::Degraded`] with [`Degradation::Transport`]: once when failures start,
/// not again until an operation of that kind has succeeded. The replica itself does not
/// hear of it: its protocol already tolerates lost messages, and it persists the whole
/// state again after its next change. A store that cannot be loaded is reported the
/// same way, and then never saved to.
///
/// ```
/// use crossbeam_channel::RecvTimeoutError;
/// use replisync::{impl_merge, Clock, Config, Driver, Event, Hub, Lww, Replica, SourceId, SystemClock};
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
/// struct Doc { title: Lww<String> }
/// impl_merge!(Doc { title });
///
/// let (hub, clock) = (Hub::new(), SystemClock::new());
/// let spawn = |n: u128| {
///     let replica: Replica<Doc> =
///         Replica::new(Config::distributed(), SourceId::from_u128(n), clock.now()).unwrap();
///     let mut driver = Driver::new(replica, hub.connect()).clock(clock);
///     let events = driver.subscribe(); // subscribed before the thread starts: nothing missed
///     (driver.spawn().unwrap(), events)
/// };
/// let (alice, _) = spawn(1);
/// let (bob, bob_events) = spawn(2);
///
/// alice.write(|doc, w| Doc { title: doc.title.write("hello".into(), w) })?;
/// loop {
///     match bob_events.recv_timeout(Duration::from_secs(10)) {
///         Ok(Event::Changed { fields }) if fields.contains(&"title") => break,
///         Ok(_) => continue,
///         Err(e) => panic!("bob never saw the write: {e}"),
///     }
/// }
/// assert_eq!(bob.state()?.title.get().map(String::as_str), Some("hello"));
///
/// alice.leave()?; // a goodbye, then alice's thread ends
/// drop(bob); // the last handle: bob leaves too, and his event stream closes
/// while bob_events.recv_timeout(Duration::from_secs(10)).is_ok() {}
/// # Ok::<(), replisync::DriverError>(())
/// ```
pub struct Driver<S, R, T> {
    replica: Replica<S, R>,
    transport: T,
    clock: Box<dyn Clock + Send>,
    store: Option<Box<dyn DynStore>>,
    subscribers: Vec<Sender<Event<R>>>,
}

impl<S, R, T> fmt::Debug for Driver<S, R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("replica", &self.replica)
            .field("store", &self.store.is_some())
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

impl<S, R, T> Driver<S, R, T>
where
    S: Bundle + Send,
    R: Request + Send,
    T: Transport,
{
    /// A driver for `replica` over `transport`, on a fresh [`SystemClock`], without a
    /// store.
    pub fn new(replica: Replica<S, R>, transport: T) -> Self {
        Driver {
            replica,
            transport,
            clock: Box::new(SystemClock::new()),
            store: None,
            subscribers: Vec::new(),
        }
    }

    /// Reads time from `clock` (the one the replica was built with).
    pub fn clock(mut self, clock: impl Clock + Send + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Restores from `store` when spawned, and saves every state the replica persists.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// A stream of the replica's events from its very start (a restore, the first
    /// leadership). [`Handle::subscribe`] subscribes later.
    pub fn subscribe(&mut self) -> Receiver<Event<R>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.subscribers.push(tx);
        rx
    }

    /// Loads the store (if any) into the replica, then starts the thread, named
    /// `replisync-` and the first 8 hex digits of the replica's source id.
    ///
    /// # Errors
    ///
    /// The operating system refused to start a thread.
    pub fn spawn(self) -> std::io::Result<Handle<S, R>> {
        let Driver {
            mut replica,
            transport,
            clock,
            mut store,
            subscribers,
        } = self;
        let source = replica.source();
        let mut early = Vec::new();
        if let Some(s) = store.as_mut() {
            match s.load() {
                // A decode error is the replica's to report (an event) and to honour
                // (it never persists over those bytes).
                Ok(Some(bytes)) => {
                    let _ = replica.restore(&bytes, clock.now());
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%source, error = %e, "store not loaded; it will not be saved to");
                    store = None;
                    early.push(Event::Degraded {
                        reason: Degradation::Store(format!(
                            "the store could not be loaded ({e}); nothing is saved to it while this driver runs"
                        )),
                    });
                }
            }
        }
        let (commands, inbox) = crossbeam_channel::unbounded();
        let incoming = transport.incoming();
        let mut runner = Runner {
            replica,
            transport,
            incoming,
            inbox,
            clock,
            store,
            subscribers,
            send_failing: false,
            save_failing: false,
            last_timeout_ms: None,
        };
        for event in early {
            runner.publish(event);
        }
        let thread = std::thread::Builder::new()
            .name(format!("replisync-{:08x}", source.as_u128() >> 96))
            .spawn(move || runner.run())?;
        Ok(Handle {
            inner: Arc::new(Inner {
                source,
                commands,
                thread_id: thread.thread().id(),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }
}

/// The application's side of a running replica. Clones share one replica.
///
/// Every call is a command to the driver's thread, handled in order with the
/// transport's messages and the replica's timers; calls that answer wait for that
/// answer. After a call returns, its outputs have been handed to the transport, the
/// store and the subscribers (a write coalesced by `flush_interval_ms` goes out at the
/// next flush).
///
/// The thread stops on [`leave`](Handle::leave), on [`crash`](Handle::crash), when
/// its transport closes (it leaves then), or when the last handle is dropped: it leaves
/// cleanly, and the drop waits for the thread to end. After that, calls return
/// [`DriverError::Stopped`] and event streams disconnect once drained. See [`Driver`]
/// for an example.
pub struct Handle<S, R = ()> {
    inner: Arc<Inner<S, R>>,
}

impl<S, R> Clone for Handle<S, R> {
    fn clone(&self) -> Self {
        Handle {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S, R> fmt::Debug for Handle<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

impl<S, R> Handle<S, R>
where
    S: Bundle + Send,
    R: Request + Send,
{
    /// The replica's id.
    pub fn source(&self) -> SourceId {
        self.inner.source
    }

    /// Writes, as [`Replica::write`]: `f` gets the current state and a [`Writer`] and
    /// returns the delta. `f` runs on the driver's thread: it must not call this
    /// handle (that panics rather than deadlock).
    ///
    /// # Errors
    ///
    /// [`DriverError::Write`] with [`WriteError::NotLeader`] on a follower in leader
    /// mode (send a [request](Handle::request) instead); [`DriverError::Stopped`].
    pub fn write<F>(&self, f: F) -> Result<(), DriverError>
    where
        F: for<'w> FnOnce(&S, &mut Writer<'w>) -> S + Send + 'static,
    {
        self.call(move |r, now| r.write(now, f))??;
        Ok(())
    }

    /// Sends an application request, as [`Replica::request`]: it surfaces as
    /// [`Event::Request`] at the leader (or here, in distributed mode).
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`].
    pub fn request(&self, request: R) -> Result<(), DriverError> {
        self.call(move |r, now| r.request(now, request))??;
        Ok(())
    }

    /// A copy of the current state.
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`].
    pub fn state(&self) -> Result<S, DriverError> {
        self.call(|r, _| r.state().clone())
    }

    /// Whether the replica acts as leader; `false` once stopped.
    pub fn is_leader(&self) -> bool {
        self.call(|r, _| r.is_leader()).unwrap_or(false)
    }

    /// The lease holder as the replica knows it; `None` once stopped.
    pub fn leader(&self) -> Option<SourceId> {
        self.call(|r, _| r.leader()).ok().flatten()
    }

    /// The replica's counters.
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`].
    pub fn stats(&self) -> Result<Stats, DriverError> {
        self.call(|r, _| *r.stats())
    }

    /// A stream of the replica's events from now on. Read it or drop it: it is
    /// unbounded. It disconnects when the driver stops. ([`Driver::subscribe`]
    /// subscribes before the start.)
    pub fn subscribe(&self) -> Receiver<Event<R>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        // If the driver has stopped, `tx` is dropped with the command and `rx` is
        // disconnected, as a stream of a stopped driver should be.
        let _ = self.inner.commands.send(Command::Subscribe(tx));
        rx
    }

    /// Passes a lifecycle signal to the replica. [`Lifecycle::Leave`] is
    /// [`leave`](Handle::leave).
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`].
    pub fn lifecycle(&self, signal: Lifecycle) -> Result<(), DriverError> {
        if signal == Lifecycle::Leave {
            return self.leave();
        }
        self.call(move |r, now| r.handle_lifecycle(signal, now))
    }

    /// Leaves: pending writes go out, a leader releases the lease (a successor takes
    /// over at once), the replica says goodbye, and the thread ends. Returns once it
    /// has ended.
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`] when the driver had already stopped.
    pub fn leave(&self) -> Result<(), DriverError> {
        self.stop(Command::Leave)
    }

    /// Stops the thread *without* leaving, as if the process were killed: no goodbye,
    /// no release, nothing pending is sent; the transport is dropped. Peers notice by
    /// timeout, and in leader mode elect a successor once the lease expires. For tests
    /// and demonstrations.
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`] when the driver had already stopped.
    pub fn crash(&self) -> Result<(), DriverError> {
        self.stop(Command::Crash)
    }

    fn stop(&self, command: Command<S, R>) -> Result<(), DriverError> {
        let sent = self.inner.commands.send(command);
        self.inner.join();
        sent.map_err(|_| DriverError::Stopped)
    }

    /// Runs `f` on the driver's thread and waits for its result, which is sent back
    /// only after the outputs of `f` were drained.
    ///
    /// # Panics
    ///
    /// On the driver's own thread (a handle used inside a write closure), which would
    /// otherwise wait for itself forever.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Replica<S, R>, crate::Now) -> T + Send + 'static,
    ) -> Result<T, DriverError> {
        assert!(
            self.inner.thread_id != std::thread::current().id(),
            "a replisync Handle was called from inside its own write closure; \
             that would deadlock: compute what you need before calling write"
        );
        let (tx, rx) = crossbeam_channel::bounded(1);
        let call: Call<S, R> = Box::new(move |replica, now| {
            let value = f(replica, now);
            Box::new(move || {
                let _ = tx.send(value);
            })
        });
        self.inner
            .commands
            .send(Command::Call(call))
            .map_err(|_| DriverError::Stopped)?;
        rx.recv().map_err(|_| DriverError::Stopped)
    }
}

/// What all clones of a handle share. Dropping it (with the last handle) disconnects
/// the command channel, which makes the thread leave, and waits for the thread.
struct Inner<S, R> {
    source: SourceId,
    commands: Sender<Command<S, R>>,
    thread_id: ThreadId,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<S, R> Inner<S, R> {
    /// Waits for the thread to end (at most once; later callers wait for the first).
    fn join(&self) {
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = thread.take() {
            // A handle dropped on the driver's own thread cannot wait for it.
            if self.thread_id == std::thread::current().id() {
                return;
            }
            if t.join().is_err() {
                tracing::error!(source = %self.source, "the driver thread panicked");
            }
        }
    }
}

impl<S, R> Drop for Inner<S, R> {
    fn drop(&mut self) {
        // Disconnect: swap the only sender for one of a channel nobody reads.
        drop(std::mem::replace(
            &mut self.commands,
            crossbeam_channel::unbounded().0,
        ));
        self.join();
    }
}

/// A call run on the driver's thread; it returns the reply to send once the outputs
/// are drained.
type Call<S, R> = Box<dyn FnOnce(&mut Replica<S, R>, crate::Now) -> Reply + Send>;
type Reply = Box<dyn FnOnce() + Send>;

enum Command<S, R> {
    Call(Call<S, R>),
    Subscribe(Sender<Event<R>>),
    Leave,
    Crash,
}

/// A [`Store`] with its error type erased.
trait DynStore: Send {
    fn load(&mut self) -> Result<Option<Vec<u8>>, String>;
    fn save(&mut self, bytes: &[u8]) -> Result<(), String>;
}

impl<T: Store> DynStore for T {
    fn load(&mut self) -> Result<Option<Vec<u8>>, String> {
        Store::load(self).map_err(|e| e.to_string())
    }

    fn save(&mut self, bytes: &[u8]) -> Result<(), String> {
        Store::save(self, bytes).map_err(|e| e.to_string())
    }
}

/// The driver's thread: owns the replica and everything it talks to.
struct Runner<S, R, T> {
    replica: Replica<S, R>,
    transport: T,
    incoming: Receiver<Vec<u8>>,
    inbox: Receiver<Command<S, R>>,
    clock: Box<dyn Clock + Send>,
    store: Option<Box<dyn DynStore>>,
    subscribers: Vec<Sender<Event<R>>>,
    send_failing: bool,
    save_failing: bool,
    /// The monotonic ms of the last timeout handled, so that a deadline that does not
    /// move forward waits a millisecond instead of spinning.
    last_timeout_ms: Option<u64>,
}

/// How a run ends.
enum Exit {
    Leave,
    Crash,
}

impl<S, R, T> Runner<S, R, T>
where
    S: Bundle + Send,
    R: Request + Send,
    T: Transport,
{
    fn run(mut self) {
        let source = self.replica.source();
        tracing::debug!(%source, "driver started");
        self.drain();
        let exit = loop {
            let timer = self.timer();
            crossbeam_channel::select! {
                recv(self.incoming) -> bytes => match bytes {
                    Ok(bytes) => {
                        let now = self.clock.now();
                        self.replica.handle_message(&bytes, now);
                    }
                    Err(_) => {
                        tracing::warn!(%source, "transport closed; leaving");
                        self.publish(Event::Degraded {
                            reason: Degradation::Transport(
                                "the transport closed; the replica left and its driver stopped".into(),
                            ),
                        });
                        break Exit::Leave;
                    }
                },
                recv(self.inbox) -> command => match command {
                    Ok(Command::Call(call)) => {
                        let reply = call(&mut self.replica, self.clock.now());
                        self.drain();
                        reply();
                        continue;
                    }
                    Ok(Command::Subscribe(tx)) => self.subscribers.push(tx),
                    Ok(Command::Leave) | Err(_) => break Exit::Leave,
                    Ok(Command::Crash) => break Exit::Crash,
                },
                recv(timer) -> _ => {
                    let now = self.clock.now();
                    self.last_timeout_ms = Some(now.mono_ms);
                    self.replica.handle_timeout(now);
                }
            }
            self.drain();
        };
        match exit {
            Exit::Leave => {
                let now = self.clock.now();
                self.replica.handle_lifecycle(Lifecycle::Leave, now);
                self.drain();
                tracing::debug!(%source, "driver stopped after leaving");
            }
            Exit::Crash => tracing::debug!(%source, "driver crashed on purpose"),
        }
    }

    /// A channel that fires at the replica's next deadline.
    fn timer(&self) -> Receiver<Instant> {
        let Some(deadline) = self.replica.poll_timeout() else {
            return crossbeam_channel::never();
        };
        let deadline = match self.last_timeout_ms {
            Some(last) => deadline.max(last.saturating_add(1)),
            None => deadline,
        };
        let wait = deadline.saturating_sub(self.clock.now().mono_ms);
        crossbeam_channel::after(Duration::from_millis(wait))
    }

    /// Hands every output of the replica to the transport, the store and the
    /// subscribers.
    fn drain(&mut self) {
        while let Some(bytes) = self.replica.poll_transmit() {
            match self.transport.broadcast(&bytes) {
                Ok(()) => self.send_failing = false,
                Err(e) => {
                    let source = self.replica.source();
                    tracing::debug!(%source, error = %e, "broadcast failed");
                    if !self.send_failing {
                        self.send_failing = true;
                        tracing::warn!(%source, error = %e, "broadcasts are failing");
                        self.publish(Event::Degraded {
                            reason: Degradation::Transport(format!("broadcast failed: {e}")),
                        });
                    }
                }
            }
        }
        if let Some(bytes) = self.replica.poll_persist() {
            if let Some(store) = self.store.as_mut() {
                match store.save(&bytes) {
                    Ok(()) => self.save_failing = false,
                    Err(e) => {
                        let source = self.replica.source();
                        tracing::debug!(%source, error = %e, "save failed");
                        if !self.save_failing {
                            self.save_failing = true;
                            tracing::warn!(%source, error = %e, "saves are failing");
                            self.publish(Event::Degraded {
                                reason: Degradation::Store(format!(
                                    "the state could not be saved: {e}"
                                )),
                            });
                        }
                    }
                }
            }
        }
        while let Some(event) = self.replica.poll_event() {
            self.publish(event);
        }
    }

    /// Sends `event` to every subscriber still listening, and forgets the others.
    fn publish(&mut self, event: Event<R>) {
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{impl_merge, Config, Hub, HubLink, LeadershipLoss, LeaseConfig, Lww};
    use crossbeam_channel::{RecvTimeoutError, Select};
    use serde::{Deserialize, Serialize};

    const PATIENCE: Duration = Duration::from_secs(10);

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Board {
        note: Lww<String>,
    }
    impl_merge!(Board { note });

    type Node = (Handle<Board, String>, Receiver<Event<String>>);

    fn id(n: u128) -> SourceId {
        SourceId::from_u128(n)
    }

    fn fast_leader_config(lease: LeaseConfig) -> Config {
        let mut config = Config::leader();
        config.lease = lease;
        config.heartbeat_interval_ms = 100;
        config.peer_timeout_ms = 350;
        config
    }

    fn short_lease() -> LeaseConfig {
        LeaseConfig::new(300, 200, 100, 50).unwrap()
    }

    fn spawn_on(link: HubLink, config: Config, n: u128, store: Option<MemoryStore>) -> Node {
        let clock = SystemClock::new();
        let replica = Replica::new(config, id(n), clock.now()).unwrap();
        let mut driver = Driver::new(replica, link).clock(clock);
        if let Some(store) = store {
            driver = driver.store(store);
        }
        let events = driver.subscribe();
        (driver.spawn().unwrap(), events)
    }

    fn write_note(handle: &Handle<Board, String>, text: &str) -> Result<(), DriverError> {
        let text = text.to_owned();
        handle.write(move |b, w| Board {
            note: b.note.write(text, w),
        })
    }

    fn note(handle: &Handle<Board, String>) -> Option<String> {
        handle.state().unwrap().note.get().cloned()
    }

    /// The first event on `events` that `pick` maps to `Some`; panics after `PATIENCE`.
    fn wait_for<T>(
        events: &Receiver<Event<String>>,
        what: &str,
        mut pick: impl FnMut(Event<String>) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match events.recv_deadline(deadline) {
                Ok(e) => {
                    if let Some(t) = pick(e) {
                        return t;
                    }
                }
                Err(e) => panic!("waiting for {what}: {e}"),
            }
        }
    }

    /// Waits, event by event on any of `nodes`, until `done` holds; panics after
    /// `PATIENCE`.
    fn settle(nodes: &[&Node], what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            let mut select = Select::new();
            for (_, events) in nodes {
                select.recv(events);
            }
            let op = select
                .select_deadline(deadline)
                .unwrap_or_else(|_| panic!("waiting for {what}: timed out"));
            let index = op.index();
            if op.recv(&nodes[index].1).is_err() {
                panic!("waiting for {what}: a driver stopped");
            }
        }
    }

    /// Waits until every node names the same leader and exactly that one leads.
    fn single_leader(nodes: &[&Node]) -> SourceId {
        let mut leader = None;
        settle(nodes, "a single leader", || {
            let seen: Vec<_> = nodes.iter().map(|(h, _)| h.leader()).collect();
            let leading: Vec<_> = nodes
                .iter()
                .filter(|(h, _)| h.is_leader())
                .map(|(h, _)| h.source())
                .collect();
            leader = seen[0];
            leader.is_some() && seen.iter().all(|l| *l == leader) && leading == [leader.unwrap()]
        });
        leader.unwrap()
    }

    #[test]
    fn a_write_in_distributed_mode_reaches_every_replica() {
        let hub = Hub::new();
        let nodes: Vec<Node> = (1..=3)
            .map(|n| spawn_on(hub.connect(), Config::distributed(), n, None))
            .collect();
        write_note(&nodes[1].0, "hello").unwrap();
        for (handle, events) in &nodes {
            wait_for(events, "the note", |e| match e {
                Event::Changed { fields } if fields == ["note"] => Some(()),
                _ => None,
            });
            assert_eq!(note(handle).as_deref(), Some("hello"));
        }
    }

    #[test]
    fn one_leader_is_elected_takes_requests_and_is_replaced_after_a_crash() {
        let hub = Hub::new();
        let config = fast_leader_config(short_lease());
        let nodes: Vec<Node> = (1..=3)
            .map(|n| spawn_on(hub.connect(), config.clone(), n, None))
            .collect();
        let all: Vec<&Node> = nodes.iter().collect();
        let first = single_leader(&all);
        let leader = nodes.iter().find(|(h, _)| h.source() == first).unwrap();
        let followers: Vec<&Node> = nodes.iter().filter(|(h, _)| h.source() != first).collect();

        // Followers may not write; their requests reach the leader.
        let refused = write_note(&followers[0].0, "mine").unwrap_err();
        assert!(
            matches!(refused, DriverError::Write(WriteError::NotLeader { leader: Some(l) }) if l == first),
            "{refused:?}"
        );
        followers[0].0.request("please".to_owned()).unwrap();
        let from = wait_for(&leader.1, "the request", |e| match e {
            Event::Request { from, request } if request == "please" => Some(from),
            _ => None,
        });
        assert_eq!(from, followers[0].0.source());
        write_note(&leader.0, "granted").unwrap();
        for (handle, events) in &followers {
            wait_for(events, "the leader's write", |e| {
                matches!(e, Event::Changed { .. }).then_some(())
            });
            assert_eq!(note(handle).as_deref(), Some("granted"));
        }

        // A crashed leader says nothing; the lease expires, and a follower takes over.
        let old_term = leader.0.call(|r, _| r.lease().map(|l| l.term)).unwrap();
        leader.0.crash().unwrap();
        assert_eq!(leader.0.crash(), Err(DriverError::Stopped));
        assert_eq!(leader.0.state(), Err(DriverError::Stopped));
        let next = single_leader(&followers);
        assert_ne!(next, first);
        let successor = followers.iter().find(|(h, _)| h.source() == next).unwrap();
        let new_term = successor.0.call(|r, _| r.lease().map(|l| l.term)).unwrap();
        assert!(new_term > old_term, "{new_term:?} after {old_term:?}");
        write_note(&successor.0, "after the crash").unwrap();
        assert_eq!(note(&successor.0).as_deref(), Some("after the crash"));
    }

    #[test]
    fn a_leaving_leader_hands_over_before_its_lease_expires() {
        // A lease far longer than the test's patience: a takeover must come from the
        // release, not from expiry.
        let lease = LeaseConfig::new(60_000, 40_000, 100, 50).unwrap();
        let config = fast_leader_config(lease);
        let hub = Hub::new();
        let nodes: Vec<Node> = (1..=3)
            .map(|n| spawn_on(hub.connect(), config.clone(), n, None))
            .collect();
        let all: Vec<&Node> = nodes.iter().collect();
        let first = single_leader(&all);
        let leader = nodes.iter().find(|(h, _)| h.source() == first).unwrap();
        write_note(&leader.0, "before").unwrap();

        leader.0.leave().unwrap();
        let reason = wait_for(&leader.1, "the release", |e| match e {
            Event::LeadershipLost { reason, .. } => Some(reason),
            _ => None,
        });
        assert_eq!(reason, LeadershipLoss::Released);
        let followers: Vec<&Node> = nodes.iter().filter(|(h, _)| h.source() != first).collect();
        for (_, events) in &followers {
            let goodbye = wait_for(events, "the goodbye", |e| match e {
                Event::PeerLeft { peer, said_goodbye } if peer == first => Some(said_goodbye),
                _ => None,
            });
            assert!(goodbye, "the leader said goodbye");
        }
        let next = single_leader(&followers);
        assert_ne!(next, first);
        let successor = followers.iter().find(|(h, _)| h.source() == next).unwrap();
        assert_eq!(note(&successor.0).as_deref(), Some("before"));
        write_note(&successor.0, "after").unwrap();
        assert_eq!(leader.0.leave(), Err(DriverError::Stopped));
        assert!(!leader.0.is_leader());
    }

    #[test]
    fn a_restart_from_the_store_keeps_a_persisted_write() {
        let store = MemoryStore::new();
        let hub = Hub::new();
        let (a, _) = spawn_on(hub.connect(), Config::distributed(), 1, Some(store.clone()));
        write_note(&a, "kept").unwrap();
        assert!(store.bytes().is_some(), "persisted when the write returned");
        a.crash().unwrap();

        let (again, events) =
            spawn_on(hub.connect(), Config::distributed(), 1, Some(store.clone()));
        assert_eq!(note(&again).as_deref(), Some("kept"));
        // The restore was announced to the subscriber that was there from the start.
        wait_for(&events, "the restored note", |e| {
            matches!(e, Event::Changed { .. }).then_some(())
        });
    }

    #[test]
    fn dropping_the_last_handle_leaves_and_stops_the_thread() {
        let hub = Hub::new();
        let (a, a_events) = spawn_on(hub.connect(), Config::distributed(), 1, None);
        let (b, b_events) = spawn_on(hub.connect(), Config::distributed(), 2, None);
        wait_for(&b_events, "a to join", |e| {
            matches!(e, Event::PeerJoined { .. }).then_some(())
        });
        let a_too = a.clone();
        drop(a);
        assert!(a_too.state().is_ok(), "a clone keeps it running");
        drop(a_too); // waits for the thread
        loop {
            match a_events.recv_timeout(PATIENCE) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("a's driver is still running"),
            }
        }
        let goodbye = wait_for(&b_events, "a's goodbye", |e| match e {
            Event::PeerLeft { peer, said_goodbye } if peer == id(1) => Some(said_goodbye),
            _ => None,
        });
        assert!(goodbye, "a left cleanly");
        assert!(b.state().is_ok());
    }

    /// A transport whose broadcasts always fail; it closes when the sender of
    /// `incoming` is dropped.
    struct Broken {
        incoming: Receiver<Vec<u8>>,
    }

    #[derive(Debug)]
    struct Unplugged;

    impl fmt::Display for Unplugged {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("unplugged")
        }
    }

    impl std::error::Error for Unplugged {}

    impl Transport for Broken {
        type Error = Unplugged;

        fn broadcast(&mut self, _: &[u8]) -> Result<(), Unplugged> {
            Err(Unplugged)
        }

        fn incoming(&self) -> Receiver<Vec<u8>> {
            self.incoming.clone()
        }
    }

    #[test]
    fn transport_failures_are_reported_and_a_closed_transport_stops_the_driver() {
        let (close, incoming) = crossbeam_channel::unbounded();
        let clock = SystemClock::new();
        let replica: Replica<Board, String> =
            Replica::new(Config::distributed(), id(1), clock.now()).unwrap();
        let mut driver = Driver::new(replica, Broken { incoming }).clock(clock);
        let events = driver.subscribe();
        let handle = driver.spawn().unwrap();
        let reason = wait_for(&events, "a degradation", |e| match e {
            Event::Degraded { reason } => Some(reason),
            _ => None,
        });
        assert_eq!(
            reason,
            Degradation::Transport("broadcast failed: unplugged".into())
        );
        // Reported once, not for every failed message.
        write_note(&handle, "one").unwrap();
        write_note(&handle, "two").unwrap();
        assert!(handle.stats().unwrap().messages_out >= 3);

        drop(close);
        let mut degraded = 0;
        loop {
            match events.recv_timeout(PATIENCE) {
                Ok(Event::Degraded { .. }) => degraded += 1,
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("the driver did not stop"),
            }
        }
        assert_eq!(degraded, 1, "only the closing is reported");
        assert_eq!(handle.state(), Err(DriverError::Stopped));
    }

    #[test]
    fn an_unreadable_store_is_kept() {
        let store = MemoryStore::new();
        Store::save(&mut store.clone(), b"not a state").unwrap();
        let (handle, events) = spawn_on(
            Hub::new().connect(),
            Config::distributed(),
            1,
            Some(store.clone()),
        );
        wait_for(&events, "the report", |e| match e {
            Event::Degraded {
                reason: Degradation::StoreUnreadable(_),
            } => Some(()),
            _ => None,
        });
        write_note(&handle, "new").unwrap();
        assert_eq!(store.bytes().as_deref(), Some(&b"not a state"[..]));
    }

    #[test]
    fn the_thread_is_named_after_the_source() {
        let (handle, _) = spawn_on(
            Hub::new().connect(),
            Config::distributed(),
            0xabcd_ef12 << 96,
            None,
        );
        let name = handle
            .inner
            .thread
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|t| t.thread().name().map(str::to_owned));
        assert_eq!(name.as_deref(), Some("replisync-abcdef12"));
    }
}
