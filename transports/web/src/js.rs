//! The JavaScript API: `openGroup` and the `Group` class, over a [`JsonMap`].
//!
//! Names follow the JavaScript habits: camelCase, `on(type, listener)` returning an
//! unsubscribe function, promises for what completes later, `TypeError` for an argument
//! of the wrong type or value. Errors of state carry a `name` to branch on:
//! `NotLeaderError` (a write on a follower in leader mode: send a request instead),
//! `GroupClosedError`, `TooLargeError` (with `size` and `limit`), `WriteError`.
//!
//! A group lives until `close()`: an object the page no longer references may be
//! collected, but its group stays open, its listeners called, until the page goes.
//! `free()` (and `[Symbol.dispose]`) closes it first; every later call throws a
//! `GroupClosedError`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect, JSON};
use replisync::{
    Config, DecodeError, Degradation, Event, LeadershipLoss, Rejection, Stamp, SyncMode, WriteError,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::{
    ChannelChoice, GroupError, JsListeners, JsonMap, JsonText, OpenError, Options, StorageChoice,
    WebReplica,
};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** A JSON value: what `JSON.stringify` writes and `JSON.parse` reads. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** How to open a group. */
export interface GroupOptions {
  /** The group's name: the tabs of one origin that open the same name share one state. */
  name: string;
  /** `'leader'` (the default): one tab leads and writes, the others send requests.
   *  `'distributed'`: every tab writes; the last write wins. */
  mode?: 'leader' | 'distributed';
  /** The channel between tabs: BroadcastChannel where it exists, else the storage event. */
  transport?: 'auto' | 'broadcast-channel' | 'storage-event';
  /** Where the state is kept: localStorage where it works, else memory. */
  storage?: 'auto' | 'local-storage' | 'memory';
  /** Leader mode: make leadership exclusive with Web Locks where the browser has them (default true). */
  locks?: boolean;
  /** Coalesce writes for this many milliseconds before sending them (default 0: at once). */
  flushIntervalMs?: number;
  /** Delay localStorage writes by this many milliseconds, so that a burst of changes is
   *  stored once (default 0: stored at once). Written at once when the page is hidden or left. */
  storeDelayMs?: number;
}

/** `change`: keys whose value changed (set, deleted, or merged from another tab). */
export interface ChangeEvent { keys: string[] }
/** `leader`: who leads now (`null`: nobody), in which term, and whether it is this tab. */
export interface LeaderEvent { leader: string | null; term: number; isLeader: boolean }
/** `request`: a request made with `group.request(value)`, delivered to the leader. */
export interface RequestEvent { from: string; value: Json }
/** `degraded`: the group works with less than it should (`reason`: a short code). */
export interface DegradedEvent { reason: 'store' | 'transport' | 'store-unreadable' | 'store-record-dropped' | 'persist-failed' | 'unsendable' | 'other'; message: string }
/** `peer`: another tab joined or left. */
export interface PeerEvent { peer: string; joined: boolean; saidGoodbye: boolean }
/** `rejected`: a message from another tab was refused (`from`: its sender, when known). */
export interface RejectedEvent { from: string | null; reason: 'undecodable' | 'clock-ahead' | 'invalid' | 'wrong-mode' | 'other'; message: string }

export interface GroupEventMap {
  change: ChangeEvent;
  leader: LeaderEvent;
  request: RequestEvent;
  degraded: DegradedEvent;
  peer: PeerEvent;
  rejected: RejectedEvent;
}

export interface Group {
  /** Calls `listener` on every event of `type`; returns the function that stops it.
   *  A `degraded` listener also hears, at once, the degradations already in force. */
  on<K extends keyof GroupEventMap>(type: K, listener: (event: GroupEventMap[K]) => void): () => void;
}
"#;

const EVENT_TYPES: [&str; 6] = [
    "change", "leader", "request", "degraded", "peer", "rejected",
];

#[wasm_bindgen(inline_js = r#"
const GUARDED = Symbol('replisync guarded');

function closedError() {
  const e = new Error('the group was freed; open it again');
  e.name = 'GroupClosedError';
  return e;
}

// Wraps the methods and getters of the Group class once: a freed group (its pointer
// gone) throws a GroupClosedError instead of reaching Rust with a null pointer, and
// free() closes the group before freeing it.
export function guardGroup(group) {
  const proto = Object.getPrototypeOf(group);
  if (!proto || Object.prototype.hasOwnProperty.call(proto, GUARDED)) return;
  Object.defineProperty(proto, GUARDED, { value: true });
  const freed = (self) => !self.__wbg_ptr;
  for (const key of Reflect.ownKeys(proto)) {
    if (key === 'constructor' || key === GUARDED || key === '__destroy_into_raw') continue;
    const d = Object.getOwnPropertyDescriptor(proto, key);
    if (typeof d.value === 'function') {
      const f = d.value;
      let wrapped;
      if (key === 'free' || key === Symbol.dispose) {
        wrapped = function () {
          if (freed(this)) return;
          try { this.close(); } catch (_) { /* closed already */ }
          f.call(this);
        };
      } else if (key === 'close') {
        wrapped = function () { return freed(this) ? Promise.resolve() : f.call(this); };
      } else if (key === 'awaitLeadership') {
        wrapped = function () { return freed(this) ? Promise.reject(closedError()) : f.call(this); };
      } else {
        wrapped = function (...args) {
          if (freed(this)) throw closedError();
          return f.apply(this, args);
        };
      }
      Object.defineProperty(wrapped, 'name', { value: f.name });
      d.value = wrapped;
    } else if (d.get) {
      const get = d.get;
      d.get = key === 'closed'
        ? function () { return freed(this) || get.call(this); }
        : function () { if (freed(this)) throw closedError(); return get.call(this); };
    } else {
      continue;
    }
    Object.defineProperty(proto, key, d);
  }
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = guardGroup)]
    fn guard_group(group: &JsValue);
}

#[wasm_bindgen]
extern "C" {
    /// `Object.keys`, whose traps (a Proxy's `ownKeys`) may throw.
    #[wasm_bindgen(js_namespace = Object, js_name = keys, catch)]
    fn object_keys(object: &JsValue) -> Result<Array, JsValue>;
}

thread_local! {
    /// The groups open in this page: a group lives until `close()`, whether or not the
    /// page keeps a reference to its object.
    static OPEN: RefCell<Vec<(u64, WebReplica<JsonMap, JsonText>)>> = const { RefCell::new(Vec::new()) };
    static NEXT_OPEN: Cell<u64> = const { Cell::new(0) };
}

/// Listeners and what they are told, shared with the replica's listener.
struct Hub {
    listeners: Rc<JsListeners>,
    degraded: RefCell<Vec<JsValue>>,
    waiters: RefCell<Vec<(Function, Function)>>,
    stamps: RefCell<BTreeMap<String, Stamp>>,
    last_leader: RefCell<Option<(Option<String>, u64, bool)>>,
}

impl Hub {
    fn new() -> Self {
        Hub {
            listeners: JsListeners::new("replisync"),
            degraded: RefCell::default(),
            waiters: RefCell::default(),
            stamps: RefCell::default(),
            last_leader: RefCell::default(),
        }
    }

    fn emit(&self, kind: &'static str, detail: &JsValue) {
        self.listeners.emit(kind, detail);
    }

    fn settle_waiters(&self, outcome: Result<(), JsValue>) {
        let waiters: Vec<_> = self.waiters.borrow_mut().drain(..).collect();
        for (resolve, reject) in waiters {
            let _ = match &outcome {
                Ok(()) => resolve.call0(&JsValue::UNDEFINED),
                Err(e) => reject.call1(&JsValue::UNDEFINED, e),
            };
        }
    }

    /// The keys whose register changed since last asked.
    fn changed_keys(&self, state: &JsonMap) -> Vec<String> {
        let mut stamps = self.stamps.borrow_mut();
        let mut keys = Vec::new();
        for (key, register) in state.entries.registers() {
            if stamps.get(key) != Some(register.stamp()) {
                stamps.insert(key.clone(), *register.stamp());
                keys.push(key.clone());
            }
        }
        keys
    }

    fn on_event(&self, event: &Event<JsonText>, group: &WebReplica<JsonMap, JsonText>) {
        match event {
            Event::Changed { .. } => {
                let keys = group.with_state(|s| self.changed_keys(s));
                if !keys.is_empty() {
                    let list: Array = keys.iter().map(|k| JsValue::from_str(k)).collect();
                    self.emit("change", &object(&[("keys", list.into())]));
                }
            }
            Event::LeadershipGained { .. }
            | Event::LeadershipLost { .. }
            | Event::LeaderChanged { .. } => {
                if let Event::LeadershipLost { reason, .. } = event {
                    tracing::debug!(?reason, "leadership lost");
                    let _: &LeadershipLoss = reason;
                }
                let now = (
                    group.leader().map(|l| l.to_string()),
                    group.term(),
                    group.is_leader(),
                );
                let changed = self.last_leader.borrow().as_ref() != Some(&now);
                if changed {
                    *self.last_leader.borrow_mut() = Some(now.clone());
                    let (leader, term, is_leader) = now;
                    self.emit(
                        "leader",
                        &object(&[
                            (
                                "leader",
                                leader.map_or(JsValue::NULL, |l| JsValue::from_str(&l)),
                            ),
                            ("term", JsValue::from_f64(term as f64)),
                            ("isLeader", JsValue::from_bool(is_leader)),
                        ]),
                    );
                    if is_leader {
                        self.settle_waiters(Ok(()));
                    }
                }
            }
            Event::Request { from, request } => {
                let value = JSON::parse(request.as_str()).unwrap_or(JsValue::NULL);
                self.emit(
                    "request",
                    &object(&[
                        ("from", JsValue::from_str(&from.to_string())),
                        ("value", value),
                    ]),
                );
            }
            Event::MessageRejected { reason } => {
                let (code, from) = match reason {
                    Rejection::Undecodable(_) => ("undecodable", None),
                    Rejection::ClockAhead { from, .. } => ("clock-ahead", Some(from)),
                    Rejection::Invalid { from, .. } => ("invalid", Some(from)),
                    Rejection::WrongMode { from } => ("wrong-mode", Some(from)),
                    _ => ("other", None),
                };
                self.emit(
                    "rejected",
                    &object(&[
                        (
                            "from",
                            from.map_or(JsValue::NULL, |f| JsValue::from_str(&f.to_string())),
                        ),
                        ("reason", JsValue::from_str(code)),
                        ("message", JsValue::from_str(&reason.to_string())),
                    ]),
                );
            }
            Event::Degraded { reason } => {
                let (code, message) = degradation(reason);
                let detail = object(&[
                    ("reason", JsValue::from_str(code)),
                    ("message", JsValue::from_str(&message)),
                ]);
                self.degraded.borrow_mut().push(detail.clone());
                self.emit("degraded", &detail);
            }
            Event::PeerJoined { peer } => self.emit(
                "peer",
                &object(&[
                    ("peer", JsValue::from_str(&peer.to_string())),
                    ("joined", JsValue::TRUE),
                    ("saidGoodbye", JsValue::FALSE),
                ]),
            ),
            Event::PeerLeft { peer, said_goodbye } => self.emit(
                "peer",
                &object(&[
                    ("peer", JsValue::from_str(&peer.to_string())),
                    ("joined", JsValue::FALSE),
                    ("saidGoodbye", JsValue::from_bool(*said_goodbye)),
                ]),
            ),
            _ => {}
        }
    }
}

/// A group as JavaScript sees it: the tabs of one origin that opened the same name,
/// sharing a map of JSON values. Made by `openGroup`.
#[wasm_bindgen]
pub struct Group {
    replica: WebReplica<JsonMap, JsonText>,
    hub: Rc<Hub>,
    /// Its entry in `OPEN`.
    key: u64,
}

/// Opens a group (see `GroupOptions`); the promise rejects with a `TypeError` for bad
/// options.
#[wasm_bindgen(js_name = openGroup, unchecked_return_type = "Promise<Group>")]
pub fn open_group(
    #[wasm_bindgen(unchecked_param_type = "GroupOptions")] options: JsValue,
) -> Promise {
    match Group::open(&options) {
        Ok(group) => {
            let group = JsValue::from(group);
            guard_group(&group);
            Promise::resolve(&group)
        }
        Err(e) => Promise::reject(&e),
    }
}

#[wasm_bindgen]
impl Group {
    fn open(options: &JsValue) -> Result<Group, JsValue> {
        let options = parse_options(options)?;
        let replica: WebReplica<JsonMap, JsonText> =
            WebReplica::open(options).map_err(|e| open_error(&e))?;
        let hub = Rc::new(Hub::new());
        let listening = hub.clone();
        replica.subscribe(move |event, group| listening.on_event(event, group));
        let key = NEXT_OPEN.with(|n| n.replace(n.get() + 1));
        OPEN.with(|open| open.borrow_mut().push((key, replica.clone())));
        Ok(Group { replica, hub, key })
    }

    /// A `GroupClosedError` once closed.
    fn check_open(&self) -> Result<(), JsValue> {
        if self.replica.is_closed() {
            return Err(group_error(&GroupError::Closed));
        }
        Ok(())
    }

    /// This tab's replica id (a UUID).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.replica.source().to_string()
    }

    /// The group's name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.replica.group()
    }

    /// `'leader'` or `'distributed'`.
    #[wasm_bindgen(getter, unchecked_return_type = "'leader' | 'distributed'")]
    pub fn mode(&self) -> String {
        match self.replica.mode() {
            SyncMode::Distributed => "distributed",
            _ => "leader",
        }
        .into()
    }

    /// The channel in use: `'broadcast-channel'`, `'storage-event'` (the fallback), or
    /// `'unavailable'`.
    #[wasm_bindgen(
        getter,
        unchecked_return_type = "'broadcast-channel' | 'storage-event' | 'unavailable'"
    )]
    pub fn transport(&self) -> String {
        self.replica.channel_kind().to_string()
    }

    /// Where the state is kept: `'local-storage'` or `'memory'`.
    #[wasm_bindgen(getter, unchecked_return_type = "'local-storage' | 'memory'")]
    pub fn storage(&self) -> String {
        self.replica.store_kind().to_string()
    }

    /// Whether this tab leads (leader mode).
    #[wasm_bindgen(getter, js_name = isLeader)]
    pub fn is_leader(&self) -> bool {
        self.replica.is_leader()
    }

    /// The id of the leading tab, or `null` when none is known.
    #[wasm_bindgen(getter, unchecked_return_type = "string | null")]
    pub fn leader(&self) -> JsValue {
        match self.replica.leader() {
            Some(l) => JsValue::from_str(&l.to_string()),
            None => JsValue::NULL,
        }
    }

    /// The term of the latest lease known here (it grows with every new leadership);
    /// 0 before any.
    #[wasm_bindgen(getter)]
    pub fn term(&self) -> f64 {
        self.replica.term() as f64
    }

    /// Whether `close()` was called.
    #[wasm_bindgen(getter)]
    pub fn closed(&self) -> bool {
        self.replica.is_closed()
    }

    /// The degradations in force, as the `degraded` events told them.
    #[wasm_bindgen(getter, unchecked_return_type = "DegradedEvent[]")]
    pub fn degradations(&self) -> Array {
        self.hub.degraded.borrow().iter().collect()
    }

    /// Sets `key` to a JSON value. In leader mode only the leader writes: a follower's
    /// `set` throws a `NotLeaderError` (send a `request` to the leader instead).
    pub fn set(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Json")] value: JsValue,
    ) -> Result<(), JsValue> {
        let key = key_argument("set", &key)?;
        let text = json_argument("set", &value)?;
        self.replica
            .write(|s, d, w| d.entries = s.entries.write_insert(key, JsonText::new(text), w))
            .map_err(|e| group_error(&e))
    }

    /// Deletes `key` (a no-op on a key that is not there). Leader mode: as `set`.
    #[wasm_bindgen(js_name = delete)]
    pub fn delete(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
    ) -> Result<(), JsValue> {
        let key = key_argument("delete", &key)?;
        self.check_open()?;
        if self.replica.with_state(|s| s.entries.get(&key).is_none()) {
            return Ok(());
        }
        self.replica
            .write(|s, d, w| d.entries = s.entries.write_remove(&key, w))
            .map_err(|e| group_error(&e))
    }

    /// The value of `key`, or `undefined`.
    #[wasm_bindgen(unchecked_return_type = "Json | undefined")]
    pub fn get(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
    ) -> Result<JsValue, JsValue> {
        let key = key_argument("get", &key)?;
        self.check_open()?;
        Ok(self.replica.with_state(|s| match s.entries.get(&key) {
            Some(text) => JSON::parse(text.as_str()).unwrap_or(JsValue::UNDEFINED),
            None => JsValue::UNDEFINED,
        }))
    }

    /// Every key and value, as a plain object (each key an own property, `__proto__`
    /// included).
    #[wasm_bindgen(unchecked_return_type = "Record<string, Json>")]
    pub fn snapshot(&self) -> Result<Object, JsValue> {
        self.check_open()?;
        let out = Object::new();
        self.replica.with_state(|s| {
            for (key, text) in s.entries.iter() {
                let value = JSON::parse(text.as_str()).unwrap_or(JsValue::NULL);
                own_property(&out, key, &value);
            }
        });
        Ok(out)
    }

    /// Sends a JSON request to the leader, where it arrives as a `request` event (in
    /// distributed mode, and on the leader, it arrives here). Queued while no leader is
    /// known.
    pub fn request(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Json")] value: JsValue,
    ) -> Result<(), JsValue> {
        let text = json_argument("request", &value)?;
        self.check_open()?;
        // A request to forward must fit in one message: the core refuses one that does
        // not (`WriteError::Encode(TooLarge)`, a `TooLargeError` here).
        self.replica
            .request(JsonText::new(text))
            .map_err(|e| group_error(&e))
    }

    /// See the `Group` interface: `on(type, listener)` returns an unsubscribe function.
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, kind: JsValue, listener: JsValue) -> Result<Function, JsValue> {
        let kind = match kind.as_string() {
            Some(k) => EVENT_TYPES.iter().find(|t| **t == k).copied(),
            None => None,
        }
        .ok_or_else(|| {
            type_error(&format!(
                "on(type, listener): type must be one of {}, got {}",
                EVENT_TYPES.map(|t| format!("'{t}'")).join(", "),
                show(&kind)
            ))
        })?;
        let listener: Function = listener.dyn_into().map_err(|v| {
            type_error(&format!(
                "on('{kind}', listener): listener must be a function, got {}",
                show(&v)
            ))
        })?;
        if self.replica.is_closed() {
            return Err(named_error(
                "GroupClosedError",
                "the group is closed; open it again",
            ));
        }
        if kind == "degraded" {
            let held: Vec<JsValue> = self.hub.degraded.borrow().clone();
            for detail in held {
                self.hub.listeners.call(kind, &listener, &detail);
            }
        }
        Ok(self.hub.listeners.subscribe(kind, listener))
    }

    /// Resolves once this tab leads (at once if it does). Rejects in distributed mode
    /// (no one leads) and when the group is closed first.
    #[wasm_bindgen(js_name = awaitLeadership, unchecked_return_type = "Promise<void>")]
    pub fn await_leadership(&self) -> Promise {
        let mut ready: Option<Result<(), JsValue>> = None;
        if self.replica.is_closed() {
            ready = Some(Err(named_error(
                "GroupClosedError",
                "the group is closed; open it again",
            )));
        } else if self.replica.mode() == SyncMode::Distributed {
            ready = Some(Err(named_error(
                "Error",
                "awaitLeadership(): the group is in distributed mode, where no tab leads",
            )));
        } else if self.replica.is_leader() {
            ready = Some(Ok(()));
        }
        let hub = self.hub.clone();
        Promise::new(&mut |resolve, reject| match ready.take() {
            Some(Ok(())) => {
                let _ = resolve.call0(&JsValue::UNDEFINED);
            }
            Some(Err(e)) => {
                let _ = reject.call1(&JsValue::UNDEFINED, &e);
            }
            None => hub.waiters.borrow_mut().push((resolve, reject)),
        })
    }

    /// Leaves the group: pending writes go out, a leader hands over at once, and this
    /// object stops working (listeners are dropped, pending `awaitLeadership` promises
    /// reject). Resolves once done, the Web Lock given back.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        OPEN.with(|open| open.borrow_mut().retain(|(key, _)| *key != self.key));
        self.replica.close();
        self.hub.listeners.clear();
        self.hub.settle_waiters(Err(named_error(
            "GroupClosedError",
            "the group was closed before this tab became leader",
        )));
        self.replica.released()
    }

    /// How leadership is settled: `'web-locks'` (one leader at a time; a successor
    /// takes over as soon as the leader's tab closes or dies), `'gossip'` (no Web
    /// Locks, or `locks: false`: a successor takes over once the lease expires), or
    /// `'none'` (distributed mode).
    #[wasm_bindgen(getter, unchecked_return_type = "'web-locks' | 'gossip' | 'none'")]
    pub fn leadership(&self) -> String {
        self.replica.leadership().to_string()
    }
}

fn parse_options(options: &JsValue) -> Result<Options, JsValue> {
    if !options.is_object() || options.is_function() {
        return Err(type_error(&format!(
            "openGroup(options): options must be an object such as {{ name: 'session' }}, got {}",
            show(options)
        )));
    }
    const KNOWN: [&str; 7] = [
        "name",
        "mode",
        "transport",
        "storage",
        "locks",
        "flushIntervalMs",
        "storeDelayMs",
    ];
    for key in object_keys(options)?.iter() {
        let key = key.as_string().unwrap_or_default();
        if !KNOWN.contains(&key.as_str()) {
            return Err(type_error(&format!(
                "openGroup(options): unknown option '{key}'; the options are {}",
                KNOWN.join(", ")
            )));
        }
    }
    // A getter (or a Proxy's trap) that throws rejects openGroup with its error.
    let get = |name: &str| Reflect::get(options, &JsValue::from_str(name));
    let name = get("name")?;
    let name = name.as_string().ok_or_else(|| {
        type_error(&format!(
            "openGroup(options): options.name must be a string, got {}",
            show(&name)
        ))
    })?;
    let choice = |option: &str, allowed: &[&str]| -> Result<Option<String>, JsValue> {
        let value = get(option)?;
        if value.is_undefined() {
            return Ok(None);
        }
        match value.as_string() {
            Some(s) if allowed.contains(&s.as_str()) => Ok(Some(s)),
            _ => Err(type_error(&format!(
                "openGroup(options): options.{option} must be one of {}, got {}",
                allowed
                    .iter()
                    .map(|a| format!("'{a}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                show(&value)
            ))),
        }
    };
    let mut config = match choice("mode", &["leader", "distributed"])?.as_deref() {
        Some("distributed") => Config::distributed(),
        _ => Config::leader(),
    };
    let millis = |option: &str| -> Result<Option<u32>, JsValue> {
        let value = get(option)?;
        if value.is_undefined() {
            return Ok(None);
        }
        match value.as_f64() {
            Some(ms) if (0.0..=3_600_000.0).contains(&ms) && ms.fract() == 0.0 => Ok(Some(ms as u32)),
            _ => Err(type_error(&format!(
                "openGroup(options): options.{option} must be a whole number of milliseconds from 0 to 3600000, got {}",
                show(&value)
            ))),
        }
    };
    if let Some(ms) = millis("flushIntervalMs")? {
        config.flush_interval_ms = u64::from(ms);
    }
    let mut parsed = Options::new(name, config);
    parsed.store_delay_ms = millis("storeDelayMs")?.unwrap_or(0);
    parsed.channel =
        match choice("transport", &["auto", "broadcast-channel", "storage-event"])?.as_deref() {
            Some("broadcast-channel") => ChannelChoice::BroadcastChannel,
            Some("storage-event") => ChannelChoice::StorageEvent,
            _ => ChannelChoice::Auto,
        };
    parsed.storage = match choice("storage", &["auto", "local-storage", "memory"])?.as_deref() {
        Some("local-storage") => StorageChoice::LocalStorage,
        Some("memory") => StorageChoice::Memory,
        _ => StorageChoice::Auto,
    };
    let locks = get("locks")?;
    if !locks.is_undefined() {
        parsed.locks = locks.as_bool().ok_or_else(|| {
            type_error(&format!(
                "openGroup(options): options.locks must be true or false, got {}",
                show(&locks)
            ))
        })?;
    }
    Ok(parsed)
}

fn key_argument(method: &str, key: &JsValue) -> Result<String, JsValue> {
    key.as_string().ok_or_else(|| {
        type_error(&format!(
            "{method}(key, ...): key must be a string, got {}",
            show(key)
        ))
    })
}

/// The JSON text of a value, or a `TypeError` saying why it has none.
fn json_argument(method: &str, value: &JsValue) -> Result<String, JsValue> {
    match JSON::stringify(value) {
        Ok(text) => text.as_string().ok_or_else(|| {
            type_error(&format!(
                "{method}(): the value must be JSON (null, a boolean, number, string, array or plain object), got {}{}",
                show(value),
                if method == "set" { "; use delete(key) to remove a key" } else { "" }
            ))
        }),
        Err(e) => Err(type_error(&format!(
            "{method}(): the value cannot be written as JSON ({})",
            crate::error::describe(&e)
        ))),
    }
}

/// What a value is, for an error message.
fn show(value: &JsValue) -> String {
    if value.is_undefined() {
        "undefined".into()
    } else if value.is_null() {
        "null".into()
    } else if let Some(s) = value.as_string() {
        format!("the string {s:?}")
    } else if value.is_function() {
        "a function".into()
    } else if Array::is_array(value) {
        "an array".into()
    } else {
        match value.js_typeof().as_string().as_deref() {
            Some("object") => "an object".into(),
            Some(t) => format!("a {t}"),
            None => "a value".into(),
        }
    }
}

/// Sets `key` of `object` as an own data property: `__proto__` too, which an assignment
/// would take for the prototype.
fn own_property(object: &Object, key: &str, value: &JsValue) {
    if key == "__proto__" {
        let descriptor = object_of(&[
            ("value", value.clone()),
            ("writable", JsValue::TRUE),
            ("enumerable", JsValue::TRUE),
            ("configurable", JsValue::TRUE),
        ]);
        let _ = Reflect::define_property(object, &JsValue::from_str(key), &descriptor);
    } else {
        let _ = Reflect::set(object, &JsValue::from_str(key), value);
    }
}

fn object_of(fields: &[(&str, JsValue)]) -> Object {
    let out = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&out, &JsValue::from_str(k), v);
    }
    out
}

fn object(fields: &[(&str, JsValue)]) -> JsValue {
    object_of(fields).into()
}

fn type_error(message: &str) -> JsValue {
    js_sys::TypeError::new(message).into()
}

fn named_error(name: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    e.set_name(name);
    e.into()
}

fn open_error(e: &OpenError) -> JsValue {
    match e {
        OpenError::GroupName(_) => type_error(&format!("openGroup(options): {e}")),
        _ => named_error("Error", &format!("openGroup(options): {e}")),
    }
}

fn group_error(e: &GroupError) -> JsValue {
    match e {
        GroupError::Closed => named_error("GroupClosedError", &e.to_string()),
        GroupError::Write(WriteError::NotLeader { .. }) => {
            named_error("NotLeaderError", &e.to_string())
        }
        GroupError::Write(WriteError::Encode(DecodeError::TooLarge { len, max })) => {
            let error = named_error("TooLargeError", &e.to_string());
            let _ = Reflect::set(&error, &"size".into(), &JsValue::from_f64(*len as f64));
            let _ = Reflect::set(&error, &"limit".into(), &JsValue::from_f64(*max as f64));
            error
        }
        GroupError::Write(_) => named_error("WriteError", &e.to_string()),
    }
}

fn degradation(reason: &Degradation) -> (&'static str, String) {
    match reason {
        Degradation::Store(m) => ("store", m.clone()),
        Degradation::Transport(m) => ("transport", m.clone()),
        Degradation::StoreUnreadable(e) => (
            "store-unreadable",
            format!(
                "the stored state cannot be read ({e}); it is kept as it is and not written over"
            ),
        ),
        Degradation::StoreRecordDropped => (
            "store-record-dropped",
            "the stored state's last record was cut short and was dropped".into(),
        ),
        Degradation::PersistFailed(e) => (
            "persist-failed",
            format!("the state could not be stored: {e}"),
        ),
        Degradation::Unsendable(e) => ("unsendable", format!("a state could not be sent: {e}")),
        other => ("other", format!("{other:?}")),
    }
}
