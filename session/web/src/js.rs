//! The JavaScript API: `openSession` and the `SessionTab` class.
//!
//! As replisync-web's: camelCase, `on(type, listener)` returning an unsubscribe
//! function, a `TypeError` for an argument of the wrong type or value. An operation the
//! service refuses throws an `Error` named `RefusedError` whose `refusal` says why.

use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use replisync::{Config, SyncMode};
use replisync_session::{
    Operation, Outcome, Refusal, ResetCause, SessionConfig, SessionError, SessionEvent, View,
};
use replisync_web::{JsListeners, OpenError, Options};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::{Notice, WebSession};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** The service's settings, in milliseconds (see replisync-session's SessionConfig). */
export interface SessionSettings {
  idleGraceMs?: number;
  countdownMs?: number;
  warnBeforeMs?: number;
  activityResetCooldownMs?: number;
  resetOnWarningActivity?: boolean;
  allowManualExtendWhenExpired?: boolean;
  maxExtendPerSession?: number;
}

/** How to open the service in this tab. The settings are the group's defaults: they
 *  apply only where no tab has set any (a tab joining a session adopts its settings). */
export interface SessionOptions extends SessionSettings {
  /** The group's name: tabs of one origin that open the same name share one session. */
  name: string;
  /** `'leader'` (the default): one tab runs the timers, the others forward operations.
   *  `'distributed'`: every tab writes; concurrent operations converge by stamp order. */
  mode?: 'leader' | 'distributed';
  /** Leader mode: leadership made exclusive by Web Locks (default true). */
  locks?: boolean;
}

export type Phase = 'STOPPED' | 'IDLE' | 'COUNTDOWN' | 'WARN' | 'EXPIRED';

/** The session as this tab sees it now. Times are ms since the epoch. */
export interface SessionView {
  id: string;
  phase: Phase;
  paused: boolean;
  /** Time left until expiry: 0 once expired, null when stopped. */
  remainingMs: number | null;
  countdownEndAt: number | null;
  idleStartAt: number | null;
  pausedAt: number | null;
  nextChangeAt: number | null;
  extends: number;
  /** `'leader'` or `'follower'` in leader mode, `'peer'` in distributed mode. */
  role: 'leader' | 'follower' | 'peer';
  isLeader: boolean;
  leader: string | null;
  term: number;
  mode: 'leader' | 'distributed';
  config: Required<SessionSettings>;
  /** The wall-clock time this view was computed for. */
  now: number;
}

/** An event of the service: the view when it was reported, plus `event` and its fields. */
export interface SessionEventDetail extends SessionView {
  event: 'started' | 'stopped' | 'countdown' | 'warn' | 'expired' | 'reset' | 'extended'
    | 'paused' | 'resumed' | 'leader-gained' | 'leader-lost' | 'config-changed' | 'refused';
  /** `reset`: what reset it. */
  cause?: 'activity' | 'extend';
  /** `extended`: extends used by this session, this one included. */
  count?: number;
  /** `leader-gained`, `leader-lost`: `term` is the term gained or lost.
   *  `refused` (at the leader): who asked, what, and why not. */
  from?: string;
  operation?: string;
  refusal?: string;
  message?: string;
}

export interface SessionTab {
  /** `event`: every event of the service; `change`: something shown may have changed
   *  (read `view()`). Returns the function that stops the listener. */
  on(type: 'event', listener: (event: SessionEventDetail) => void): () => void;
  on(type: 'change', listener: () => void): () => void;
}
"#;

const SETTINGS: [&str; 7] = [
    "idleGraceMs",
    "countdownMs",
    "warnBeforeMs",
    "activityResetCooldownMs",
    "resetOnWarningActivity",
    "allowManualExtendWhenExpired",
    "maxExtendPerSession",
];

/// The session service in this tab, as JavaScript sees it. Made by `openSession`.
#[wasm_bindgen]
pub struct SessionTab {
    session: WebSession,
    listeners: Rc<JsListeners>,
}

/// Opens the session service in this tab (see `SessionOptions`); the promise rejects
/// with a `TypeError` for bad options.
#[wasm_bindgen(js_name = openSession, unchecked_return_type = "Promise<SessionTab>")]
pub fn open_session(
    #[wasm_bindgen(unchecked_param_type = "SessionOptions")] options: JsValue,
) -> Promise {
    match SessionTab::open(&options) {
        Ok(tab) => Promise::resolve(&JsValue::from(tab)),
        Err(e) => Promise::reject(&e),
    }
}

#[wasm_bindgen]
impl SessionTab {
    fn open(options: &JsValue) -> Result<SessionTab, JsValue> {
        if !options.is_object() || options.is_function() {
            return Err(type_error(
                "openSession(options): options must be an object such as { name: 'session' }",
            ));
        }
        let known: Vec<&str> = ["name", "mode", "locks"]
            .into_iter()
            .chain(SETTINGS)
            .collect();
        for key in Object::keys(options.unchecked_ref::<Object>()).iter() {
            let key = key.as_string().unwrap_or_default();
            if !known.contains(&key.as_str()) {
                return Err(type_error(&format!(
                    "openSession(options): unknown option '{key}'; the options are {}",
                    known.join(", ")
                )));
            }
        }
        let name = get(options, "name")
            .as_string()
            .ok_or_else(|| type_error("openSession(options): options.name must be a string"))?;
        let mode = get(options, "mode");
        let config = match mode.as_string().as_deref() {
            None if mode.is_undefined() => Config::leader(),
            Some("leader") => Config::leader(),
            Some("distributed") => Config::distributed(),
            _ => {
                return Err(type_error(
                    "openSession(options): options.mode must be 'leader' or 'distributed'",
                ))
            }
        };
        let mut open = Options::new(name, config);
        let locks = get(options, "locks");
        if !locks.is_undefined() {
            open.locks = locks.as_bool().ok_or_else(|| {
                type_error("openSession(options): options.locks must be true or false")
            })?;
        }
        let settings = settings("openSession(options)", options, SessionConfig::default())?;
        settings
            .validate()
            .map_err(|e| type_error(&format!("openSession(options): {e}")))?;
        let session = WebSession::open(open).map_err(|e| open_error(&e))?;
        let listeners = JsListeners::new("replisync-session");
        let listening = Rc::downgrade(&listeners);
        let seen = session.clone();
        session.subscribe(move |notice| {
            let Some(listeners) = listening.upgrade() else {
                return;
            };
            match notice {
                Notice::Session(event) => listeners.emit("event", &event_detail(&seen, event)),
                Notice::Changed => listeners.emit("change", &JsValue::UNDEFINED),
            }
        });
        session
            .adopt_config(settings)
            .map_err(|e| session_error(&e))?;
        Ok(SessionTab { session, listeners })
    }

    /// This tab's replica id (a UUID).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.session.source().to_string()
    }

    /// The group's name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.session.replica().group()
    }

    /// The session as this tab sees it now: computed from the shared absolute deadlines
    /// and this tab's clock, so call it as often as the page redraws.
    #[wasm_bindgen(unchecked_return_type = "SessionView")]
    pub fn view(&self) -> JsValue {
        view_object(&self.session).into()
    }

    /// Starts a session (when none runs, or the last one expired). Returns `'applied'`
    /// (written here) or `'forwarded'` (sent to the leader); throws a `RefusedError`.
    pub fn start(&self) -> Result<String, JsValue> {
        self.operate(Operation::Start)
    }

    /// Stops the session.
    pub fn stop(&self) -> Result<String, JsValue> {
        self.operate(Operation::Stop)
    }

    /// The user did something: back to `IDLE` everywhere (unless it does not count).
    pub fn activity(&self) -> Result<String, JsValue> {
        self.operate(Operation::Activity)
    }

    /// The user asked for more time.
    pub fn extend(&self) -> Result<String, JsValue> {
        self.operate(Operation::Extend)
    }

    /// Ends the session now.
    pub fn expire(&self) -> Result<String, JsValue> {
        self.operate(Operation::Expire)
    }

    /// Stops the clock everywhere.
    pub fn pause(&self) -> Result<String, JsValue> {
        self.operate(Operation::Pause)
    }

    /// Starts the clock again with the time left at the pause.
    pub fn resume(&self) -> Result<String, JsValue> {
        self.operate(Operation::Resume)
    }

    /// Changes the settings everywhere: the settings given replace those in force, the
    /// others stay. Invalid values throw a `RefusedError` (`invalid-config`) and change
    /// nothing.
    #[wasm_bindgen(js_name = setConfig)]
    pub fn set_config(
        &self,
        #[wasm_bindgen(unchecked_param_type = "SessionSettings")] settings_: JsValue,
    ) -> Result<String, JsValue> {
        if !settings_.is_object() || settings_.is_function() {
            return Err(type_error(
                "setConfig(settings): settings must be an object",
            ));
        }
        for key in Object::keys(settings_.unchecked_ref::<Object>()).iter() {
            let key = key.as_string().unwrap_or_default();
            if !SETTINGS.contains(&key.as_str()) {
                return Err(type_error(&format!(
                    "setConfig(settings): unknown setting '{key}'; the settings are {}",
                    SETTINGS.join(", ")
                )));
            }
        }
        let now = self.session.now();
        let current = self.session.view(now).config;
        let config = settings("setConfig(settings)", &settings_, current)?;
        self.operate(Operation::SetConfig(config))
    }

    /// See the `SessionTab` interface: `on('event' | 'change', listener)`.
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, kind: JsValue, listener: JsValue) -> Result<Function, JsValue> {
        let kind = match kind.as_string().as_deref() {
            Some("event") => "event",
            Some("change") => "change",
            _ => {
                return Err(type_error(
                    "on(type, listener): type must be 'event' or 'change'",
                ))
            }
        };
        let listener: Function = listener
            .dyn_into()
            .map_err(|_| type_error("on(type, listener): listener must be a function"))?;
        Ok(self.listeners.subscribe(kind, listener))
    }

    /// Leaves the group: a leader hands the timers over at once. Resolves once the Web
    /// Lock is given back.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        self.listeners.clear();
        self.session.close()
    }

    /// Whether `close()` was called.
    #[wasm_bindgen(getter)]
    pub fn closed(&self) -> bool {
        self.session.is_closed()
    }

    fn operate(&self, operation: Operation) -> Result<String, JsValue> {
        match self.session.operate(operation) {
            Ok(Outcome::Forwarded) => Ok("forwarded".into()),
            Ok(_) => Ok("applied".into()),
            Err(e) => Err(session_error(&e)),
        }
    }
}

fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `base` with the settings `object` gives.
fn settings(what: &str, object: &JsValue, base: SessionConfig) -> Result<SessionConfig, JsValue> {
    let mut config = base;
    let ms = |key: &str| -> Result<Option<u64>, JsValue> {
        let value = get(object, key);
        if value.is_undefined() {
            return Ok(None);
        }
        match value.as_f64() {
            Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9.007_199_254_740_991e15 => {
                Ok(Some(n as u64))
            }
            _ => Err(type_error(&format!(
                "{what}: {key} must be a whole number of milliseconds, 0 or more"
            ))),
        }
    };
    let flag = |key: &str| -> Result<Option<bool>, JsValue> {
        let value = get(object, key);
        if value.is_undefined() {
            return Ok(None);
        }
        value
            .as_bool()
            .map(Some)
            .ok_or_else(|| type_error(&format!("{what}: {key} must be true or false")))
    };
    if let Some(v) = ms("idleGraceMs")? {
        config.idle_grace_ms = v;
    }
    if let Some(v) = ms("countdownMs")? {
        config.countdown_ms = v;
    }
    if let Some(v) = ms("warnBeforeMs")? {
        config.warn_before_ms = v;
    }
    if let Some(v) = ms("activityResetCooldownMs")? {
        config.activity_reset_cooldown_ms = v;
    }
    if let Some(v) = flag("resetOnWarningActivity")? {
        config.reset_on_warning_activity = v;
    }
    if let Some(v) = flag("allowManualExtendWhenExpired")? {
        config.allow_manual_extend_when_expired = v;
    }
    if let Some(v) = ms("maxExtendPerSession")? {
        config.max_extend_per_session = u32::try_from(v)
            .map_err(|_| type_error(&format!("{what}: maxExtendPerSession is too large")))?;
    }
    Ok(config)
}

fn set(object: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(object, &JsValue::from_str(key), &value.into());
}

fn number(value: Option<u64>) -> JsValue {
    value.map_or(JsValue::NULL, |v| JsValue::from_f64(v as f64))
}

fn config_object(config: &SessionConfig) -> Object {
    let out = Object::new();
    set(&out, "idleGraceMs", config.idle_grace_ms as f64);
    set(&out, "countdownMs", config.countdown_ms as f64);
    set(&out, "warnBeforeMs", config.warn_before_ms as f64);
    set(
        &out,
        "activityResetCooldownMs",
        config.activity_reset_cooldown_ms as f64,
    );
    set(
        &out,
        "resetOnWarningActivity",
        config.reset_on_warning_activity,
    );
    set(
        &out,
        "allowManualExtendWhenExpired",
        config.allow_manual_extend_when_expired,
    );
    set(&out, "maxExtendPerSession", config.max_extend_per_session);
    out
}

fn view_object(session: &WebSession) -> Object {
    let now = session.now();
    let view: View = session.view(now);
    let out = Object::new();
    set(&out, "id", session.source().to_string());
    set(&out, "phase", view.phase.as_str());
    set(&out, "paused", view.paused);
    set(&out, "remainingMs", number(view.remaining_ms));
    set(&out, "countdownEndAt", number(view.countdown_end_at));
    set(&out, "idleStartAt", number(view.idle_start_at));
    set(&out, "pausedAt", number(view.paused_at));
    set(&out, "nextChangeAt", number(view.next_change_at));
    set(&out, "extends", view.extends);
    let distributed = session.mode() == SyncMode::Distributed;
    let is_leader = session.is_leader();
    let role = match (distributed, is_leader) {
        (true, _) => "peer",
        (false, true) => "leader",
        (false, false) => "follower",
    };
    set(&out, "role", role);
    set(&out, "isLeader", is_leader);
    set(
        &out,
        "leader",
        session
            .leader()
            .map_or(JsValue::NULL, |l| JsValue::from_str(&l.to_string())),
    );
    set(&out, "term", session.term() as f64);
    set(
        &out,
        "mode",
        if distributed { "distributed" } else { "leader" },
    );
    set(&out, "config", config_object(&view.config));
    set(&out, "now", now.wall_ms as f64);
    out
}

fn event_detail(session: &WebSession, event: &SessionEvent) -> JsValue {
    let out = view_object(session);
    let name = match event {
        SessionEvent::Started { .. } => "started",
        SessionEvent::Stopped => "stopped",
        SessionEvent::CountdownStarted { .. } => "countdown",
        SessionEvent::Warn { .. } => "warn",
        SessionEvent::Expired => "expired",
        SessionEvent::Reset { cause, .. } => {
            let cause = match cause {
                ResetCause::Extend => "extend",
                _ => "activity",
            };
            set(&out, "cause", cause);
            "reset"
        }
        SessionEvent::Extended { count } => {
            set(&out, "count", *count);
            "extended"
        }
        SessionEvent::Paused { .. } => "paused",
        SessionEvent::Resumed { .. } => "resumed",
        SessionEvent::LeaderGained { term } => {
            set(&out, "term", *term as f64);
            "leader-gained"
        }
        SessionEvent::LeaderLost { term } => {
            set(&out, "term", *term as f64);
            "leader-lost"
        }
        SessionEvent::ConfigChanged { .. } => "config-changed",
        SessionEvent::Refused {
            from,
            operation,
            refusal,
        } => {
            set(&out, "from", from.to_string());
            set(&out, "operation", operation_name(operation));
            set(&out, "refusal", refusal_code(refusal));
            set(&out, "message", refusal.to_string());
            "refused"
        }
        _ => "other",
    };
    set(&out, "event", name);
    out.into()
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Start => "start",
        Operation::Stop => "stop",
        Operation::Activity => "activity",
        Operation::Extend => "extend",
        Operation::Expire => "expire",
        Operation::Pause => "pause",
        Operation::Resume => "resume",
        Operation::SetConfig(_) => "set-config",
        _ => "other",
    }
}

fn refusal_code(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::NotRunning => "not-running",
        Refusal::AlreadyRunning => "already-running",
        Refusal::Expired => "expired",
        Refusal::ExtendWhenExpired => "extend-when-expired",
        Refusal::Paused => "paused",
        Refusal::AlreadyPaused => "already-paused",
        Refusal::NotPaused => "not-paused",
        Refusal::Cooldown { .. } => "cooldown",
        Refusal::WarningNeedsExtend => "warning-needs-extend",
        Refusal::ExtendLimit { .. } => "extend-limit",
        Refusal::InvalidConfig(_) => "invalid-config",
        _ => "other",
    }
}

fn type_error(message: &str) -> JsValue {
    js_sys::TypeError::new(message).into()
}

fn named_error(name: &str, message: &str) -> js_sys::Error {
    let e = js_sys::Error::new(message);
    e.set_name(name);
    e
}

fn open_error(e: &OpenError) -> JsValue {
    match e {
        OpenError::GroupName(_) => type_error(&format!("openSession(options): {e}")),
        _ => named_error("Error", &format!("openSession(options): {e}")).into(),
    }
}

fn session_error(e: &SessionError) -> JsValue {
    match e {
        SessionError::Refused(refusal) => {
            let error = named_error("RefusedError", &refusal.to_string());
            let _ = Reflect::set(&error, &"refusal".into(), &refusal_code(refusal).into());
            error.into()
        }
        SessionError::Write(w) => named_error("WriteError", &w.to_string()).into(),
        _ => named_error("Error", &e.to_string()).into(),
    }
}
