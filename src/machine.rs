//! One sans-IO shape: the [`Machine`] trait every driver drives, and the [`Output`]
//! it drains in one loop.

use crate::authority::{AuthorityAnswer, AuthorityRequest};
use crate::{DecodeError, Degradation, Lifecycle, Now, Persist, SourceId};

/// One output of a sans-IO [`Machine`], from [`Machine::poll_output`] (or
/// [`Replica::poll_output`](crate::Replica::poll_output)).
///
/// # The drain
///
/// After every input, call `poll_output` until it returns [`Output::Timeout`], handling
/// each output as it comes. The machine hands them out in this order, so that a driver
/// never has to choose one:
///
/// 1. [`Authority`](Output::Authority): requests for the lease authority first, so a
///    release or a renewal is on its way before anything else happens;
/// 2. [`Transmit`](Output::Transmit): bytes to broadcast to every peer, in order;
/// 3. [`Persist`](Output::Persist): what to do with the store, in order (apply every
///    one: what was applied is what a restore reads back);
/// 4. [`Event`](Output::Event): what the application should know, in order;
/// 5. [`Timeout`](Output::Timeout), always last: the machine is fully drained. Call
///    [`Machine::handle_timeout`] at that deadline (local monotonic ms), unless another
///    input comes first; `None` once the machine has left (nothing more will come).
///
/// Inputs handled from inside the drain loop (a write in answer to an event, say) are
/// fine: the loop simply goes on until the next `Timeout`, which then reflects them.
///
/// The enum is deliberately exhaustive: a driver must handle every kind of output, and
/// a new kind should stop it from compiling rather than be dropped without a word.
///
/// ```
/// use replisync::{Config, Event, Lww, Merge, Now, Output, Replica, SourceId};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
/// struct Doc { title: Lww<String> }
///
/// let now = Now::new(1_700_000_000_000, 0);
/// let mut a: Replica<Doc> = Replica::new(Config::distributed(), SourceId::from_u128(1)).unwrap();
/// let mut b: Replica<Doc> = Replica::new(Config::distributed(), SourceId::from_u128(2)).unwrap();
/// a.write(now, |s, d, w| d.title = s.title.write("hello".into(), w)).unwrap();
///
/// // The canonical drain: one loop, one match, ending in the next deadline.
/// let next = loop {
///     match a.poll_output() {
///         Output::Authority(_) => {} // no authority here
///         Output::Transmit(bytes) => b.handle_message(now, &bytes),
///         Output::Persist(_) => {} // no store here
///         Output::Event(event) => println!("a: {event:?}"),
///         Output::Timeout(deadline) => break deadline,
///     }
/// };
/// assert!(next.is_some(), "a has not left: it wants a tick");
/// assert_eq!(b.state().title.get().map(String::as_str), Some("hello"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use = "handle every output, and drain until Output::Timeout"]
pub enum Output<E> {
    /// A request for the lease authority; carry it out and hand the answer to
    /// [`Machine::handle_authority`].
    Authority(AuthorityRequest),
    /// A message to broadcast to every peer.
    Transmit(Vec<u8>),
    /// What to do with the store: append a delta, or compact onto the whole state.
    Persist(Persist),
    /// Something the application should know.
    Event(E),
    /// Fully drained: call [`Machine::handle_timeout`] at this deadline (local
    /// monotonic ms), or never (`None`) once the machine has left.
    Timeout(Option<u64>),
}

/// A sans-IO state machine that a driver can run without knowing what it is: a bare
/// [`Replica`](crate::Replica), or a layer above one (a service that wraps a replica
/// and adds its own rules, such as `replisync_session::Session`).
///
/// It has no threads, sockets or clocks inside: time arrives with every input, bytes
/// arrive as input, and everything that leaves comes out of
/// [`poll_output`](Machine::poll_output), in the order [`Output`] documents.
///
/// # Call order
///
/// 1. Set up: [`use_authority`](Machine::use_authority) if a lease authority answers
///    for the group, then [`restore`](Machine::restore) with the store's bytes, both
///    before the first input.
/// 2. Inputs, each with the current [`Now`]: [`handle_message`](Machine::handle_message),
///    [`handle_timeout`](Machine::handle_timeout),
///    [`handle_lifecycle`](Machine::handle_lifecycle),
///    [`handle_authority`](Machine::handle_authority), and whatever the application
///    calls on the concrete type (a write, a request, a service's operations).
/// 3. After each input, drain [`poll_output`](Machine::poll_output) until
///    [`Output::Timeout`].
///
/// The native [`Driver`](crate::Driver) runs any `Machine` on a thread; its
/// [`Handle::call`](crate::Handle::call) reaches the concrete type for the application's
/// own inputs.
///
/// ```
/// use replisync::{Config, Lww, Machine, Merge, Now, Output, Replica, SourceId};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
/// struct Doc { title: Lww<String> }
///
/// /// Drains `from`, handing its messages to `to`; `from`'s next deadline. Works the
/// /// same for any `Machine`.
/// fn deliver<M: Machine>(from: &mut M, to: &mut M, now: Now) -> Option<u64> {
///     loop {
///         match from.poll_output() {
///             Output::Transmit(bytes) => to.handle_message(now, &bytes),
///             Output::Authority(_) | Output::Persist(_) | Output::Event(_) => {}
///             Output::Timeout(deadline) => return deadline,
///         }
///     }
/// }
///
/// let now = Now::new(1_700_000_000_000, 0);
/// let mut a: Replica<Doc> = Replica::new(Config::distributed(), SourceId::from_u128(1)).unwrap();
/// let mut b: Replica<Doc> = Replica::new(Config::distributed(), SourceId::from_u128(2)).unwrap();
/// a.write(now, |s, d, w| d.title = s.title.write("hi".into(), w)).unwrap();
/// assert!(deliver(&mut a, &mut b, now).is_some());
/// assert_eq!(b.state().title.get().map(String::as_str), Some("hi"));
/// ```
pub trait Machine {
    /// What the application hears: the events of [`Output::Event`]. A driver clones
    /// each for every subscriber.
    type Event;

    /// This machine's replica id.
    fn source(&self) -> SourceId;

    /// Makes the lease exclusive through a lease authority (leader mode): the machine
    /// then asks through [`Output::Authority`] and hears the answers through
    /// [`handle_authority`](Machine::handle_authority). Call before the first input.
    fn use_authority(&mut self);

    /// Restores what the store holds (the bytes its persists left), before the first
    /// input.
    ///
    /// # Errors
    ///
    /// The bytes cannot be read; nothing is applied, the machine reports it as an event
    /// and never persists over them.
    fn restore(&mut self, now: Now, bytes: &[u8]) -> Result<(), DecodeError>;

    /// Bytes received from the transport.
    fn handle_message(&mut self, now: Now, bytes: &[u8]);

    /// The deadline of [`Output::Timeout`] was reached (early or late is harmless).
    fn handle_timeout(&mut self, now: Now);

    /// A lifecycle signal from the page or the process.
    fn handle_lifecycle(&mut self, now: Now, signal: Lifecycle);

    /// An answer of the lease authority, asked or unasked.
    fn handle_authority(&mut self, now: Now, answer: AuthorityAnswer);

    /// The next output; [`Output::Timeout`] once fully drained.
    fn poll_output(&mut self) -> Output<Self::Event>;

    /// The event that reports a degradation a driver found itself (broadcasts or saves
    /// failing, a store that cannot be loaded), so that it reaches the application the
    /// way the machine's own degradations do.
    fn degraded(reason: Degradation) -> Self::Event;
}

#[cfg(test)]
mod tests {
    use crate::{Config, Event, Lifecycle, Lww, Merge, Now, Output, Replica, SourceId};
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
    struct Doc {
        title: Lww<String>,
    }

    fn rank(output: &Output<Event<()>>) -> u8 {
        match output {
            Output::Authority(_) => 0,
            Output::Transmit(_) => 1,
            Output::Persist(_) => 2,
            Output::Event(_) => 3,
            Output::Timeout(_) => 4,
        }
    }

    /// Every output up to and including the `Timeout` that ends the drain.
    fn drain(r: &mut Replica<Doc>) -> Vec<Output<Event<()>>> {
        let mut outputs = Vec::new();
        loop {
            let output = r.poll_output();
            let done = matches!(output, Output::Timeout(_));
            outputs.push(output);
            if done {
                return outputs;
            }
        }
    }

    #[test]
    fn poll_output_hands_out_what_the_polls_do_in_the_documented_order_then_the_deadline() {
        let now = Now::new(1_700_000_000_000, 0);
        let mut twins: Vec<Replica<Doc>> = (0..2)
            .map(|_| Replica::new(Config::distributed(), SourceId::from_u128(1)).unwrap())
            .collect();
        for r in &mut twins {
            r.write(now, |s, d, w| d.title = s.title.write("hi".into(), w))
                .unwrap();
        }
        let outputs = drain(&mut twins[0]);
        assert!(outputs.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])));
        assert!(outputs.iter().any(|o| matches!(o, Output::Transmit(_))));
        assert!(outputs.iter().any(|o| matches!(o, Output::Persist(_))));
        assert!(outputs.iter().any(|o| matches!(o, Output::Event(_))));

        let b = &mut twins[1];
        let mut by_kind: Vec<Output<Event<()>>> = Vec::new();
        by_kind.extend(std::iter::from_fn(|| b.poll_authority()).map(Output::Authority));
        by_kind.extend(std::iter::from_fn(|| b.poll_transmit()).map(Output::Transmit));
        by_kind.extend(std::iter::from_fn(|| b.poll_persist()).map(Output::Persist));
        by_kind.extend(std::iter::from_fn(|| b.poll_event()).map(Output::Event));
        by_kind.push(Output::Timeout(b.poll_timeout()));
        assert_eq!(outputs, by_kind);
        assert_eq!(
            twins[0].poll_output(),
            Output::Timeout(twins[0].poll_timeout())
        );
    }

    #[test]
    fn after_leaving_the_drain_ends_without_a_deadline() {
        let now = Now::new(1_700_000_000_000, 0);
        let mut r: Replica<Doc> =
            Replica::new(Config::distributed(), SourceId::from_u128(1)).unwrap();
        r.handle_timeout(now);
        r.handle_lifecycle(now, Lifecycle::Leave);
        let outputs = drain(&mut r);
        assert!(
            outputs.iter().any(|o| matches!(o, Output::Transmit(_))),
            "a goodbye"
        );
        assert_eq!(outputs.last(), Some(&Output::Timeout(None)));
    }
}
