//! The native driver's transport: how a replica's messages reach the rest of its group
//! when a driver thread runs it.

/// Carries a replica's messages to the other members of its group, and theirs to it.
///
/// A transport only moves opaque bytes; it never looks inside them. The native driver
/// owns one transport per replica, moves it to the replica's thread (hence
/// `Send + 'static`), calls [`broadcast`](Self::broadcast) for every message the
/// replica emits, and selects on [`incoming`](Self::incoming) together with its
/// timers.
///
/// What a transport must and need not guarantee is the crate's contract for every
/// transport, native or not: see [the crate docs](crate#what-every-transport-guarantees).
/// Beyond it, for the native driver:
///
/// - `incoming` may be called more than once; each call returns a handle to the same
///   channel (a clone of one [`Receiver`](crossbeam_channel::Receiver)), never a new one;
/// - closing the transport disconnects that channel (every sender of it is dropped):
///   the driver stops when it sees that;
/// - an error from `broadcast` means that message was not sent.
///
/// # Example: a loopback pair
///
/// Two members joined by two crossbeam channels. The in-process
/// [`Hub`](crate::Hub) is the ready-made version for any number of members.
///
/// ```
/// use crossbeam_channel::{unbounded, Receiver, Sender};
/// use replisync::Transport;
///
/// /// One end of a two-member group.
/// struct Loopback {
///     to_peer: Sender<Vec<u8>>,
///     from_peer: Receiver<Vec<u8>>,
/// }
///
/// /// The other end was dropped.
/// #[derive(Debug)]
/// struct PeerGone;
///
/// impl std::fmt::Display for PeerGone {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("the other end of the loopback pair was dropped")
///     }
/// }
///
/// impl std::error::Error for PeerGone {}
///
/// impl Transport for Loopback {
///     type Error = PeerGone;
///
///     fn broadcast(&mut self, bytes: &[u8]) -> Result<(), PeerGone> {
///         self.to_peer.send(bytes.to_vec()).map_err(|_| PeerGone)
///     }
///
///     fn incoming(&self) -> Receiver<Vec<u8>> {
///         self.from_peer.clone()
///     }
/// }
///
/// fn loopback_pair() -> (Loopback, Loopback) {
///     let (a_tx, a_rx) = unbounded();
///     let (b_tx, b_rx) = unbounded();
///     (
///         Loopback { to_peer: b_tx, from_peer: a_rx },
///         Loopback { to_peer: a_tx, from_peer: b_rx },
///     )
/// }
///
/// let (mut a, b) = loopback_pair();
/// a.broadcast(b"hi")?;
/// assert_eq!(b.incoming().recv().unwrap(), b"hi");
/// assert!(a.incoming().try_recv().is_err()); // nothing echoed back
///
/// drop(b); // closing one end disconnects the other
/// assert!(a.broadcast(b"anyone?").is_err());
/// assert!(a.incoming().recv().is_err());
/// # Ok::<(), PeerGone>(())
/// ```
pub trait Transport: Send + 'static {
    /// Why a send failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Sends one message to every other member of the group (not back to the sender).
    /// Best effort: delivery may be lost; the replica's protocol tolerates loss,
    /// duplication and reordering.
    ///
    /// # Errors
    ///
    /// The transport's error when the message could not be sent at all.
    fn broadcast(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;

    /// The channel on which messages from the other members arrive; the driver selects
    /// on it. A disconnected channel means the transport is closed.
    fn incoming(&self) -> crossbeam_channel::Receiver<Vec<u8>>;
}
