//! The native driver: runs one sans-IO [`Machine`] (a [`Replica`](crate::Replica), or
//! a layer that wraps one) on its own thread and hands the application a cloneable
//! [`Handle`].
//!
//! The thread owns the machine, its [`Transport`], a [`Clock`] and an optional
//! [`Store`], and an optional lease [`Authority`]. It waits, with
//! `crossbeam_channel::select!` and no polling, on four things at once: bytes from the
//! transport, an answer of the authority, a command from a handle, and the machine's
//! next deadline. After each input it drains the machine's [`Output`]s in one loop:
//! requests to the authority, messages to the transport, persists to the store, events
//! to every subscriber, until the next deadline.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::authority::AuthorityAnswer;
use crate::{Clock, Degradation, Lifecycle, Machine, Output, Store, SystemClock, WriteError};

mod authority;
mod handle;
mod store;
#[cfg(test)]
mod tests;
mod transport;

pub use authority::{Authority, MutexAuthority};
pub use handle::Handle;
use handle::Inner;
use store::DynStore;
pub use transport::Transport;

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

/// Sets up a native driver: give it a replica (or any other [`Machine`]) and a
/// transport, optionally a clock, a store, a lease authority and early subscribers,
/// then [`spawn`](Driver::spawn) it.
///
/// The driver knows its machine only through [`Machine`]: it hands it messages,
/// timeouts, lifecycle signals and the authority's answers, and drains
/// [`Machine::poll_output`] after each. What the application does beyond that
/// (a replica's writes, a service's operations) goes through [`Handle::call`], or the
/// shortcuts [`Handle`] has for a bare [`Replica`](crate::Replica).
///
/// # Time
///
/// The driver reads its [`Clock`] for the `now` of every call and turns the replica's
/// deadlines into real timers, so the clock must run at real speed
/// ([`SystemClock`], the default). The replica takes its first `now` from the driver's
/// first call, so no reading of another clock reaches it.
///
/// # A layer above the replica
///
/// A service that wraps a replica and implements [`Machine`] (such as
/// `replisync_session::Session`) rides on the same driver: `Driver::new(service,
/// transport)`, and its operations through [`Handle::call`].
///
/// # Errors and degradation
///
/// A failed broadcast or save is logged (`tracing::warn!`) and reported to subscribers
/// as the machine's degradation event ([`Machine::degraded`]; for a replica
/// [`Event::Degraded`](crate::Event::Degraded)) with [`Degradation::Transport`] or
/// [`Degradation::Store`]: once when failures start,
/// not again until an operation of that kind has succeeded. The replica itself does not
/// hear of it: its protocol already tolerates lost messages, and it persists the whole
/// state again after its next change. A store that cannot be loaded is reported the
/// same way, and then never saved to.
///
/// ```
/// use crossbeam_channel::RecvTimeoutError;
/// use replisync::{Config, Driver, Event, Hub, Lww, Merge, Replica, SourceId, SystemClock};
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
/// struct Doc { title: Lww<String> }
///
/// let (hub, clock) = (Hub::new(), SystemClock::new());
/// let spawn = |n: u128| {
///     let replica: Replica<Doc> =
///         Replica::new(Config::distributed(), SourceId::from_u128(n)).unwrap();
///     let mut driver = Driver::new(replica, hub.connect()).clock(clock);
///     let events = driver.subscribe(); // subscribed before the thread starts: nothing missed
///     (driver.spawn().unwrap(), events)
/// };
/// let (alice, _) = spawn(1);
/// let (bob, bob_events) = spawn(2);
///
/// alice.write(|doc, d, w| d.title = doc.title.write("hello".into(), w))?;
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
pub struct Driver<M: Machine, T> {
    machine: M,
    transport: T,
    clock: Box<dyn Clock + Send>,
    store: Option<Box<dyn DynStore>>,
    authority: Option<Box<dyn Authority>>,
    subscribers: Vec<Sender<M::Event>>,
}

impl<M: Machine + fmt::Debug, T> fmt::Debug for Driver<M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("machine", &self.machine)
            .field("store", &self.store.is_some())
            .field("authority", &self.authority.is_some())
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

impl<M, T> Driver<M, T>
where
    M: Machine + Send + 'static,
    M::Event: Clone + Send + 'static,
    T: Transport,
{
    /// A driver for `machine` (a [`Replica`](crate::Replica), or a layer that wraps
    /// one) over `transport`, on a fresh [`SystemClock`], without a store.
    pub fn new(machine: M, transport: T) -> Self {
        Driver {
            machine,
            transport,
            clock: Box::new(SystemClock::new()),
            store: None,
            authority: None,
            subscribers: Vec::new(),
        }
    }

    /// Makes the lease exclusive through `authority` (leader mode): the replica leads
    /// only while the authority grants it the term (see
    /// [`Replica::with_authority`](crate::Replica::with_authority) and
    /// [`Machine::use_authority`]). The driver carries out the machine's requests and
    /// hands it every answer as it arrives.
    pub fn authority(mut self, authority: impl Authority + 'static) -> Self {
        self.machine.use_authority();
        self.authority = Some(Box::new(authority));
        self
    }

    /// Reads time from `clock` (the one the replica was built with).
    pub fn clock(mut self, clock: impl Clock + Send + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Restores from `store` when spawned ([`Machine::restore`]), and carries out
    /// every persist the machine asks for (appended deltas, compactions).
    pub fn store(mut self, store: impl Store + Send + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// A stream of the machine's events from its very start (a restore, the first
    /// leadership). [`Handle::subscribe`] subscribes later.
    pub fn subscribe(&mut self) -> Receiver<M::Event> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.subscribers.push(tx);
        rx
    }

    /// Loads the store (if any) into the machine, then starts the thread, named
    /// `replisync-` and the first 8 hex digits of the machine's source id.
    ///
    /// # Errors
    ///
    /// The operating system refused to start a thread.
    pub fn spawn(self) -> std::io::Result<Handle<M>> {
        let Driver {
            mut machine,
            transport,
            clock,
            mut store,
            authority,
            subscribers,
        } = self;
        let source = machine.source();
        let mut early = Vec::new();
        if let Some(s) = store.as_mut() {
            match s.load() {
                // A decode error is the replica's to report (an event) and to honour
                // (it never persists over those bytes).
                Ok(Some(bytes)) => {
                    let _ = machine.restore(clock.now(), &bytes);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%source, error = %e, "store not loaded; it will not be saved to");
                    store = None;
                    early.push(M::degraded(Degradation::Store(format!(
                        "the store could not be loaded ({e}); nothing is saved to it while this driver runs"
                    ))));
                }
            }
        }
        let (commands, inbox) = crossbeam_channel::unbounded();
        let incoming = transport.incoming();
        let answers = authority
            .as_ref()
            .map_or_else(crossbeam_channel::never, |a| a.answers());
        let mut runner = Runner {
            machine,
            transport,
            incoming,
            authority,
            answers,
            inbox,
            clock,
            store,
            subscribers,
            sends: FailureStreak::default(),
            saves: FailureStreak::default(),
            deadline: None,
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

/// A call run on the driver's thread; it returns the reply to send once the outputs
/// are drained.
type Call<M> = Box<dyn FnOnce(&mut M, crate::Now) -> Reply + Send>;
type Reply = Box<dyn FnOnce() + Send>;

enum Command<M: Machine> {
    Call(Call<M>),
    Subscribe(Sender<M::Event>),
    Leave,
    Crash,
}

/// Failures of one kind of operation (broadcasts, saves), reported once when they
/// start and not again until one has succeeded.
#[derive(Debug, Default)]
struct FailureStreak {
    failing: bool,
}

impl FailureStreak {
    /// Notes an operation's outcome; the error when it starts a streak (report it),
    /// `None` after a success or while the streak goes on.
    fn note<E>(&mut self, result: Result<(), E>) -> Option<E> {
        let error = result.err();
        let starts = error.is_some() && !self.failing;
        self.failing = error.is_some();
        error.filter(|_| starts)
    }
}

/// The driver's thread: owns the machine and everything it talks to.
struct Runner<M: Machine, T> {
    machine: M,
    transport: T,
    incoming: Receiver<Vec<u8>>,
    authority: Option<Box<dyn Authority>>,
    answers: Receiver<AuthorityAnswer>,
    inbox: Receiver<Command<M>>,
    clock: Box<dyn Clock + Send>,
    store: Option<Box<dyn DynStore>>,
    subscribers: Vec<Sender<M::Event>>,
    sends: FailureStreak,
    saves: FailureStreak,
    /// The machine's next deadline, from the last drain's [`Output::Timeout`].
    deadline: Option<u64>,
    /// The monotonic ms of the last timeout handled, so that a deadline that does not
    /// move forward waits a millisecond instead of spinning.
    last_timeout_ms: Option<u64>,
}

/// How a run ends.
enum Exit {
    Leave,
    Crash,
}

impl<M, T> Runner<M, T>
where
    M: Machine,
    M::Event: Clone,
    T: Transport,
{
    fn run(mut self) {
        let source = self.machine.source();
        tracing::debug!(%source, "driver started");
        self.drain();
        let exit = loop {
            let timer = self.timer();
            crossbeam_channel::select! {
                recv(self.incoming) -> bytes => match bytes {
                    Ok(bytes) => {
                        let now = self.clock.now();
                        self.machine.handle_message(now, &bytes);
                    }
                    Err(_) => {
                        tracing::warn!(%source, "transport closed; leaving");
                        self.publish(M::degraded(Degradation::Transport(
                            "the transport closed; the replica left and its driver stopped".into(),
                        )));
                        break Exit::Leave;
                    }
                },
                recv(self.answers) -> answer => match answer {
                    Ok(answer) => {
                        let now = self.clock.now();
                        self.machine.handle_authority(now, answer);
                    }
                    Err(_) => {
                        // The authority is gone: no grant can come again. A leader
                        // stops when its grant runs out; a lock-like adapter reports
                        // the loss before it drops its channel.
                        tracing::warn!(%source, "lease authority closed");
                        self.answers = crossbeam_channel::never();
                    }
                },
                recv(self.inbox) -> command => match command {
                    Ok(Command::Call(call)) => {
                        let now = self.clock.now();
                        // A deadline that is due is handled before the question, so no
                        // answer (whether it leads, say) is older than the call.
                        if self.deadline.is_some_and(|t| t <= now.mono_ms) {
                            self.last_timeout_ms = Some(now.mono_ms);
                            self.machine.handle_timeout(now);
                        }
                        let reply = call(&mut self.machine, now);
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
                    self.machine.handle_timeout(now);
                }
            }
            self.drain();
        };
        match exit {
            Exit::Leave => {
                let now = self.clock.now();
                self.machine.handle_lifecycle(now, Lifecycle::Leave);
                self.drain();
                tracing::debug!(%source, "driver stopped after leaving");
            }
            Exit::Crash => tracing::debug!(%source, "driver crashed on purpose"),
        }
    }

    /// A channel that fires at the machine's next deadline.
    fn timer(&self) -> Receiver<Instant> {
        let Some(deadline) = self.deadline else {
            return crossbeam_channel::never();
        };
        let deadline = match self.last_timeout_ms {
            Some(last) => deadline.max(last.saturating_add(1)),
            None => deadline,
        };
        let wait = deadline.saturating_sub(self.clock.now().mono_ms);
        crossbeam_channel::after(Duration::from_millis(wait))
    }

    /// Hands every output of the machine, in the order it gives them, to the
    /// authority, the transport, the store and the subscribers, until it is drained;
    /// notes the next deadline.
    fn drain(&mut self) {
        self.deadline = loop {
            match self.machine.poll_output() {
                Output::Authority(request) => {
                    if let Some(authority) = self.authority.as_mut() {
                        authority.handle(self.machine.source(), request);
                    }
                }
                Output::Transmit(bytes) => {
                    let sent = self.transport.broadcast(&bytes);
                    self.report_failure(sent, Channel::Transport);
                }
                Output::Persist(persist) => {
                    if let Some(store) = self.store.as_mut() {
                        let saved = store.persist(&persist);
                        self.report_failure(saved, Channel::Store);
                    }
                }
                Output::Event(event) => self.publish(event),
                Output::Timeout(deadline) => break deadline,
            }
        };
    }

    /// Logs a failed broadcast or save, and tells the subscribers when failures of
    /// that kind start.
    fn report_failure<E: fmt::Display>(&mut self, result: Result<(), E>, channel: Channel) {
        let source = self.machine.source();
        if let Err(e) = &result {
            tracing::debug!(%source, error = %e, "{} failed", channel.operation());
        }
        let streak = match channel {
            Channel::Transport => &mut self.sends,
            Channel::Store => &mut self.saves,
        };
        let Some(e) = streak.note(result) else {
            return;
        };
        tracing::warn!(%source, error = %e, "{}s are failing", channel.operation());
        let reason = match channel {
            Channel::Transport => Degradation::Transport(format!("broadcast failed: {e}")),
            Channel::Store => Degradation::Store(format!("the state could not be saved: {e}")),
        };
        self.publish(M::degraded(reason));
    }

    /// Sends `event` to every subscriber still listening, and forgets the others.
    fn publish(&mut self, event: M::Event) {
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }
}

/// Where an output goes that may fail.
#[derive(Clone, Copy)]
enum Channel {
    Transport,
    Store,
}

impl Channel {
    fn operation(self) -> &'static str {
        match self {
            Channel::Transport => "broadcast",
            Channel::Store => "save",
        }
    }
}
