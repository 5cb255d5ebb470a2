//! The application's side of a driver: a cloneable handle.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{JoinHandle, ThreadId};

use crossbeam_channel::{Receiver, Sender};

use super::{Call, Command, DriverError};
use crate::bundle::{Bundle, Request};
use crate::Lease;
use crate::{Lifecycle, Machine, Now, Replica, SourceId, Stats, Writer};

/// The application's side of a running replica (or other [`Machine`]). Clones share
/// one machine.
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
/// [`DriverError::Stopped`] and event streams disconnect once drained. See [`Driver`](crate::Driver)
/// for an example.
///
/// Every machine's handle has [`call`](Handle::call), which runs a closure on the
/// machine itself (a service's operations, say), and the lifecycle calls; a bare
/// replica's handle, `Handle<Replica<S, R>>`, also has shortcuts for the replica's
/// writes, requests and getters.
pub struct Handle<M: Machine> {
    pub(super) inner: Arc<Inner<M>>,
}

impl<M: Machine> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Handle {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Machine> fmt::Debug for Handle<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

impl<S, R> Handle<Replica<S, R>>
where
    S: Bundle + Send + 'static,
    R: Request + Send + 'static,
{
    /// Writes, as [`Replica::write`]: `f` gets the current state, an empty delta to
    /// fill, and a [`Writer`]. `f` runs on the driver's thread: it must not call this
    /// handle (that panics rather than deadlock).
    ///
    /// # Errors
    ///
    /// [`DriverError::Write`] with [`WriteError::NotLeader`](crate::WriteError::NotLeader) on a follower in leader
    /// mode (send a [request](Handle::request) instead); [`DriverError::Stopped`].
    pub fn write<F>(&self, f: F) -> Result<(), DriverError>
    where
        F: for<'w> FnOnce(&S, &mut S, &mut Writer<'w>) + Send + 'static,
    {
        self.call(move |r, now| r.write(now, f))??;
        Ok(())
    }

    /// Sends an application request, as [`Replica::request`]: it surfaces as
    /// [`Event::Request`](crate::Event::Request) at the leader (or here, in distributed mode).
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

    /// Whether the replica acts as leader, as of its last input. (The driver hands the
    /// replica every due timer before it answers, so a lease that ran out has been
    /// noticed.)
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`].
    pub fn is_leader(&self) -> Result<bool, DriverError> {
        self.call(|r, _| r.is_leader())
    }

    /// The lease holder as the replica knows it (`None`: no one holds it).
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`].
    pub fn leader(&self) -> Result<Option<SourceId>, DriverError> {
        self.call(|r, _| r.leader())
    }

    /// The latest lease record the replica knows (its term is the fencing token),
    /// `None` before any.
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`].
    pub fn lease(&self) -> Result<Option<Lease>, DriverError> {
        self.call(|r, _| r.lease().copied())
    }

    /// The replica's counters.
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`].
    pub fn stats(&self) -> Result<Stats, DriverError> {
        self.call(|r, _| *r.stats())
    }
}

impl<M> Handle<M>
where
    M: Machine + Send + 'static,
{
    /// The machine's id.
    pub fn source(&self) -> SourceId {
        self.inner.source
    }

    /// A stream of the machine's events from now on. Read it or drop it: it is
    /// unbounded. It disconnects when the driver stops. ([`Driver::subscribe`](crate::Driver::subscribe)
    /// subscribes before the start.)
    pub fn subscribe(&self) -> Receiver<M::Event> {
        let (tx, rx) = crossbeam_channel::unbounded();
        // If the driver has stopped, `tx` is dropped with the command and `rx` is
        // disconnected, as a stream of a stopped driver should be.
        let _ = self.inner.commands.send(Command::Subscribe(tx));
        rx
    }

    /// Passes a lifecycle signal to the machine. [`Lifecycle::Leave`] is
    /// [`leave`](Handle::leave).
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`].
    pub fn lifecycle(&self, signal: Lifecycle) -> Result<(), DriverError> {
        if signal == Lifecycle::Leave {
            return self.leave();
        }
        self.call(move |r, now| r.handle_lifecycle(now, signal))
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

    fn stop(&self, command: Command<M>) -> Result<(), DriverError> {
        let sent = self.inner.commands.send(command);
        self.inner.join();
        sent.map_err(|_| DriverError::Stopped)
    }

    /// Runs `f` on the driver's thread, with the machine and the current [`Now`], and
    /// waits for its result, which is sent back only after the outputs of `f` were
    /// drained (so, once this returns, its messages went to the transport and its
    /// events to the subscribers). A deadline that is due is handled before `f` runs,
    /// so what `f` reads is never older than the call.
    ///
    /// This is how the application reaches its machine's own inputs and getters: a
    /// service's operations (`handle.call(|s, now| s.activity(now))`), or anything a
    /// replica offers beyond the shortcuts of `Handle<Replica<S, R>>`.
    ///
    /// ```
    /// use replisync::{Config, Driver, Hub, Lww, Merge, Replica, SourceId};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
    /// struct Doc { title: Lww<String> }
    ///
    /// let replica: Replica<Doc> =
    ///     Replica::new(Config::distributed(), SourceId::from_u128(1)).unwrap();
    /// let handle = Driver::new(replica, Hub::new().connect()).spawn()?;
    /// handle.call(|r, now| r.write(now, |s, d, w| d.title = s.title.write("hi".into(), w)))??;
    /// let sent = handle.call(|r, _| r.stats().messages_out)?;
    /// assert!(sent >= 1, "the write went out before the call returned");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`] when the driver has stopped.
    ///
    /// # Panics
    ///
    /// On the driver's own thread (a handle used inside a write closure), which would
    /// otherwise wait for itself forever.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut M, Now) -> T + Send + 'static,
    ) -> Result<T, DriverError> {
        assert!(
            self.inner.thread_id != std::thread::current().id(),
            "a replisync Handle was called from inside its own write closure; \
             that would deadlock: compute what you need before calling write"
        );
        let (tx, rx) = crossbeam_channel::bounded(1);
        let call: Call<M> = Box::new(move |machine, now| {
            let value = f(machine, now);
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
pub(super) struct Inner<M: Machine> {
    pub(super) source: SourceId,
    pub(super) commands: Sender<Command<M>>,
    pub(super) thread_id: ThreadId,
    pub(super) thread: Mutex<Option<JoinHandle<()>>>,
}

impl<M: Machine> Inner<M> {
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

impl<M: Machine> Drop for Inner<M> {
    fn drop(&mut self) {
        // Disconnect: swap the only sender for one of a channel nobody reads.
        drop(std::mem::replace(
            &mut self.commands,
            crossbeam_channel::unbounded().0,
        ));
        self.join();
    }
}
