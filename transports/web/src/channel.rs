//! How a replica's messages reach the other tabs of its group: a BroadcastChannel, or
//! the `storage` event where BroadcastChannel is missing.

use std::fmt;

use replisync::SourceId;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BroadcastChannel, MessageEvent, Storage, StorageEvent, Window};

use crate::error::describe;
use crate::names::Names;
use crate::{base64, OpenError};

/// The channel a replica's messages travel on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChannelKind {
    /// A `BroadcastChannel` named after the group, carrying each message as a
    /// `Uint8Array`.
    BroadcastChannel,
    /// The fallback where BroadcastChannel is missing: each message is written to
    /// localStorage under a key of its own and removed at once; the other tabs read it
    /// from their `storage` event. It reaches other documents only (not a second replica
    /// in the same document), and every message costs a localStorage write.
    StorageEvent,
    /// Neither works (no BroadcastChannel, no usable localStorage): this tab keeps its
    /// state alone, reported as degraded.
    Unavailable,
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChannelKind::BroadcastChannel => "broadcast-channel",
            ChannelKind::StorageEvent => "storage-event",
            ChannelKind::Unavailable => "unavailable",
        })
    }
}

/// Which channel to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChannelChoice {
    /// BroadcastChannel where it exists, else the `storage` event, else none (each
    /// fallback reported as degraded).
    #[default]
    Auto,
    /// BroadcastChannel, or fail to open.
    BroadcastChannel,
    /// The `storage` event, or fail to open.
    StorageEvent,
}

/// An open channel. Closing it (or dropping it) stops delivery at once.
pub(crate) struct Channel {
    kind: ChannelKind,
    medium: Medium,
}

enum Medium {
    Broadcast {
        channel: BroadcastChannel,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
    },
    Storage {
        window: Window,
        storage: Storage,
        names: Names,
        me: SourceId,
        seq: u64,
        on_storage: Closure<dyn FnMut(StorageEvent)>,
    },
    None,
}

impl Channel {
    /// Opens the channel of `names`' group in `window`; `deliver` gets every message
    /// another member sends. Also says why a fallback was taken.
    pub fn open(
        window: &Window,
        names: &Names,
        me: SourceId,
        choice: ChannelChoice,
        storage: Option<&Storage>,
        deliver: impl FnMut(Vec<u8>) + 'static,
    ) -> Result<(Channel, Option<String>), OpenError> {
        let broadcast = match choice {
            ChannelChoice::StorageEvent => Err("not asked for".to_owned()),
            _ => open_broadcast(window, names),
        };
        let broadcast_missing = match broadcast {
            Ok(channel) => return Ok((Channel::broadcast(channel, deliver), None)),
            Err(detail) => detail,
        };
        if choice == ChannelChoice::BroadcastChannel {
            return Err(OpenError::ChannelUnavailable {
                kind: ChannelKind::BroadcastChannel,
                detail: broadcast_missing,
            });
        }
        match storage {
            Some(storage) => {
                let channel = Channel::storage(window, storage.clone(), names, me, deliver);
                let why = (choice == ChannelChoice::Auto).then(|| {
                    format!(
                        "BroadcastChannel is missing ({broadcast_missing}); messages go through localStorage and the storage event"
                    )
                });
                Ok((channel, why))
            }
            None if choice == ChannelChoice::StorageEvent => Err(OpenError::ChannelUnavailable {
                kind: ChannelKind::StorageEvent,
                detail: "localStorage does not work here".into(),
            }),
            None => Ok((
                Channel {
                    kind: ChannelKind::Unavailable,
                    medium: Medium::None,
                },
                Some(format!(
                    "BroadcastChannel is missing ({broadcast_missing}) and localStorage does not work: this tab cannot reach the others"
                )),
            )),
        }
    }

    fn broadcast(channel: BroadcastChannel, mut deliver: impl FnMut(Vec<u8>) + 'static) -> Self {
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            // Anything but a typed array is not ours: skip it (the replica's integrity
            // check judges the bytes). Not `instanceof Uint8Array`: a frame's channel
            // hands over arrays of the frame's realm.
            let data = event.data();
            if js_sys::ArrayBuffer::is_view(&data) {
                deliver(data.unchecked_ref::<js_sys::Uint8Array>().to_vec());
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Channel {
            kind: ChannelKind::BroadcastChannel,
            medium: Medium::Broadcast {
                channel,
                _on_message: on_message,
            },
        }
    }

    fn storage(
        window: &Window,
        storage: Storage,
        names: &Names,
        me: SourceId,
        mut deliver: impl FnMut(Vec<u8>) + 'static,
    ) -> Self {
        let ours = names.clone();
        let on_storage = Closure::<dyn FnMut(StorageEvent)>::new(move |event: StorageEvent| {
            let (Some(key), Some(value)) = (event.key(), event.new_value()) else {
                return; // a removal, or storage cleared
            };
            match ours.parse_message_key(&key) {
                Some(from) if from != me => {}
                _ => return,
            }
            // A value that does not decode is not a message of ours: skip it (the
            // replica's integrity check stays the judge of what does decode).
            if let Some(bytes) = base64::decode(&value) {
                deliver(bytes);
            }
        });
        // An event target only fails to take a listener for a wrong argument.
        let _ =
            window.add_event_listener_with_callback("storage", on_storage.as_ref().unchecked_ref());
        Channel {
            kind: ChannelKind::StorageEvent,
            medium: Medium::Storage {
                window: window.clone(),
                storage,
                names: names.clone(),
                me,
                seq: 0,
                on_storage,
            },
        }
    }

    /// The channel in use.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// Broadcasts `bytes` to the group's other members.
    pub fn post(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.medium {
            Medium::Broadcast { channel, .. } => {
                let array = js_sys::Uint8Array::from(bytes);
                channel
                    .post_message(&array)
                    .map_err(|e| format!("BroadcastChannel.postMessage failed: {}", describe(&e)))
            }
            Medium::Storage {
                storage,
                names,
                me,
                seq,
                ..
            } => {
                *seq += 1;
                let key = names.message_key(*me, *seq);
                storage
                    .set_item(&key, &base64::encode(bytes))
                    .map_err(|e| format!("localStorage.setItem failed: {}", describe(&e)))?;
                // The write fired the event elsewhere; removing it keeps storage tidy
                // (its own event carries no value and is skipped).
                let _ = storage.remove_item(&key);
                Ok(())
            }
            Medium::None => Ok(()),
        }
    }

    /// Stops sending and delivering (idempotent).
    pub fn close(&mut self) {
        match std::mem::replace(&mut self.medium, Medium::None) {
            Medium::Broadcast {
                channel,
                _on_message,
            } => {
                channel.set_onmessage(None);
                channel.close();
            }
            Medium::Storage {
                window, on_storage, ..
            } => {
                let _ = window.remove_event_listener_with_callback(
                    "storage",
                    on_storage.as_ref().unchecked_ref(),
                );
            }
            Medium::None => {}
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.close();
    }
}

/// A BroadcastChannel made by `window`'s own constructor, or why there is none.
fn open_broadcast(window: &Window, names: &Names) -> Result<BroadcastChannel, String> {
    let constructor = js_sys::Reflect::get(window, &JsValue::from_str("BroadcastChannel"))
        .map_err(|e| describe(&e))?;
    let Some(constructor) = constructor.dyn_ref::<js_sys::Function>() else {
        return Err("window.BroadcastChannel is undefined".into());
    };
    let args = js_sys::Array::of1(&JsValue::from_str(&names.channel()));
    js_sys::Reflect::construct(constructor, &args)
        .map(JsCast::unchecked_into)
        .map_err(|e| describe(&e))
}

/// The transport contract of the crate docs of replisync (the checks of the native
/// conformance suite, for the browser's channels): whole messages of every size reach
/// the other member byte for byte, once, and nothing comes back to its sender.
#[cfg(test)]
mod conformance {
    use std::cell::RefCell;
    use std::rc::Rc;

    use js_sys::Promise;
    use wasm_bindgen_futures::JsFuture;
    use wasm_bindgen_test::wasm_bindgen_test;
    use web_sys::HtmlIFrameElement;

    use super::*;

    type Inbox = Rc<RefCell<Vec<Vec<u8>>>>;

    async fn tick() {
        let promise = Promise::new(&mut |resolve, _| {
            let _ = web_sys::window()
                .unwrap()
                .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 2);
        });
        JsFuture::from(promise).await.unwrap();
    }

    fn member(window: &Window, names: &Names, id: u128, choice: ChannelChoice) -> (Channel, Inbox) {
        let inbox: Inbox = Rc::default();
        let into = inbox.clone();
        let storage = window.local_storage().unwrap();
        let (channel, _) = Channel::open(
            window,
            names,
            SourceId::from_u128(id),
            choice,
            storage.as_ref(),
            move |bytes| into.borrow_mut().push(bytes),
        )
        .unwrap();
        (channel, inbox)
    }

    async fn check(choice: ChannelChoice, kind: ChannelKind) {
        let names = Names::new(&format!("conformance-{}", js_sys::Math::random())).unwrap();
        let window = web_sys::window().unwrap();
        // A second document: the storage event reaches other documents only.
        let document = window.document().unwrap();
        let frame: HtmlIFrameElement = document.create_element("iframe").unwrap().unchecked_into();
        document.body().unwrap().append_child(&frame).unwrap();
        let other = frame.content_window().unwrap();
        let (mut a, from_b) = member(&window, &names, 1, choice);
        let (mut b, from_a) = member(&other, &names, 2, choice);
        assert_eq!((a.kind(), b.kind()), (kind, kind));

        let sizes = [0usize, 1, 2, 255, 256, 4_096, 65_536, 1 << 20];
        for (n, size) in sizes.into_iter().enumerate() {
            let message: Vec<u8> = (0..size).map(|i| (i * 31 + n) as u8).collect();
            let (sender, inbox) = if n % 2 == 0 {
                (&mut a, &from_a)
            } else {
                (&mut b, &from_b)
            };
            sender.post(&message).unwrap();
            let start = js_sys::Date::now();
            while inbox.borrow().is_empty() {
                assert!(
                    js_sys::Date::now() - start < 10_000.0,
                    "{kind}: {size} bytes never arrived"
                );
                tick().await;
            }
            let got = inbox.borrow_mut().remove(0);
            assert!(
                got == message,
                "{kind}: {} bytes arrived for a message of {size}",
                got.len()
            );
        }
        // Nothing came back to a sender, nor twice: a last message, then both inboxes.
        a.post(b"last").unwrap();
        let start = js_sys::Date::now();
        while from_a.borrow().is_empty() {
            assert!(
                js_sys::Date::now() - start < 10_000.0,
                "{kind}: the last message never arrived"
            );
            tick().await;
        }
        for _ in 0..10 {
            tick().await;
        }
        assert_eq!(from_a.borrow().as_slice(), [b"last".to_vec()]);
        assert!(
            from_b.borrow().is_empty(),
            "{kind}: a sender got its own message back"
        );
        a.close();
        b.close();
        frame.remove();
    }

    #[wasm_bindgen_test]
    async fn broadcast_channel_keeps_the_transport_contract() {
        check(
            ChannelChoice::BroadcastChannel,
            ChannelKind::BroadcastChannel,
        )
        .await;
    }

    #[wasm_bindgen_test]
    async fn the_storage_event_keeps_the_transport_contract() {
        check(ChannelChoice::StorageEvent, ChannelKind::StorageEvent).await;
    }
}
