//! The Web Locks API: one exclusive lock per group, the lease authority of leader mode.
//!
//! A tab queues a request for the group's lock with the browser from the start (and
//! again after losing it, or when it asks to lead after giving it back). When the
//! browser grants it (at once, or when the holder's tab releases it, closes or dies),
//! the callback it runs returns a promise that this module holds unresolved: the lock
//! stays held until [`Lock::release`] resolves it. A queued request is withdrawn with
//! an `AbortSignal`. [`WebLockAuthority`] carries out the core's `LockArbiter` on it.
//!
//! web-sys has these bindings only behind `--cfg web_sys_unstable_apis`; the few used
//! are declared here instead.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use js_sys::{Function, Object, Promise, Reflect};
use replisync::authority::{
    AuthorityAnswer, AuthorityRequest, LockAction, LockArbiter, LockFact, LockOutput,
};
use replisync::SourceId;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, Storage, Window};

use crate::error::describe;
use crate::names::Names;

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks`.
    type LockManager;

    /// `navigator.locks.request(name, options, callback)`.
    #[wasm_bindgen(method, catch, js_name = request)]
    fn request(
        this: &LockManager,
        name: &str,
        options: &JsValue,
        callback: &Function,
    ) -> Result<Promise, JsValue>;
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockState {
    /// Waiting in the browser's queue.
    Queued,
    /// Granted: held until released.
    Held,
    /// Released or withdrawn (see [`Lock::settled`] for when the browser is done with
    /// it), or refused by the browser.
    Done,
}

struct Inner {
    state: LockState,
    /// The browser settled the request: it will call none of its callbacks again.
    settled: bool,
    /// [`Lock::release`] was called (a settle without it is a loss).
    released: bool,
    /// Resolves the promise the lock callback returned: releases the lock.
    release: Option<Function>,
    abort: Option<AbortController>,
}

/// One request for a group's lock, from queued to released.
///
/// The browser holds its callbacks until it settles the request, which may be a while
/// after [`Lock::release`] (a withdrawn request settles with an `AbortError` in a
/// later task): dropped before that, a lock leaves its callbacks behind rather than
/// free them under the browser.
pub(crate) struct Lock {
    inner: Rc<RefCell<Inner>>,
    /// Settles once the lock is released (or the request withdrawn).
    settled: Promise,
    callbacks: Option<Callbacks>,
}

struct Callbacks {
    _grant: Closure<dyn FnMut(JsValue) -> Promise>,
    _settle: Closure<dyn FnMut(JsValue)>,
}

/// Whether `window` has the Web Locks API.
pub(crate) fn available(window: &Window) -> bool {
    lock_manager(window).is_some()
}

fn lock_manager(window: &Window) -> Option<LockManager> {
    let locks = Reflect::get(&window.navigator(), &"locks".into()).ok()?;
    (!locks.is_undefined() && !locks.is_null()).then(|| locks.unchecked_into())
}

impl Lock {
    /// Queues a request for the exclusive lock `name`; `granted` runs when the browser
    /// grants it, `lost` if the request ends without [`Lock::release`]: a held lock
    /// taken away (another request's `steal`), or a queued one the browser settled
    /// without granting it (both from a later task, never from inside this call).
    pub fn request(
        window: &Window,
        name: &str,
        mut granted: impl FnMut() + 'static,
        mut lost: impl FnMut() + 'static,
    ) -> Result<Lock, String> {
        let manager =
            lock_manager(window).ok_or_else(|| "navigator.locks is missing".to_owned())?;
        let abort = AbortController::new().map_err(|e| describe(&e))?;
        let options = Object::new();
        let _ = Reflect::set(&options, &"mode".into(), &"exclusive".into());
        let _ = Reflect::set(&options, &"signal".into(), &abort.signal());
        let inner = Rc::new(RefCell::new(Inner {
            state: LockState::Queued,
            settled: false,
            released: false,
            release: None,
            abort: Some(abort),
        }));
        let on_grant = inner.clone();
        let callback = Closure::<dyn FnMut(JsValue) -> Promise>::new(move |_lock: JsValue| {
            let mut release = None;
            let held = Promise::new(&mut |resolve, _| release = Some(resolve));
            {
                let mut inner = on_grant.borrow_mut();
                if inner.released || inner.state != LockState::Queued {
                    // Released before the grant arrived: give it straight back.
                    return Promise::resolve(&JsValue::UNDEFINED);
                }
                inner.state = LockState::Held;
                inner.release = release;
                inner.abort = None;
            }
            granted();
            held
        });
        let on_settle = inner.clone();
        let settle = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            let was_lost = {
                let mut inner = on_settle.borrow_mut();
                let was_live = inner.state != LockState::Done;
                inner.state = LockState::Done;
                inner.settled = true;
                inner.release = None;
                was_live && !inner.released
            };
            if was_lost {
                lost();
            }
        });
        let asked = manager
            .request(name, &options, callback.as_ref().unchecked_ref())
            .map_err(|e| describe(&e))?;
        // Released, withdrawn (AbortError) or refused: all end the request.
        let settled = asked.then2(&settle, &settle);
        Ok(Lock {
            inner,
            settled,
            callbacks: Some(Callbacks {
                _grant: callback,
                _settle: settle,
            }),
        })
    }

    /// Whether the browser is done with the request (released, withdrawn or refused,
    /// and its promise settled): its callbacks may go.
    pub fn is_settled(&self) -> bool {
        self.inner.borrow().settled
    }

    /// Where the request stands.
    #[cfg(test)]
    pub fn state(&self) -> LockState {
        self.inner.borrow().state
    }

    /// Releases the lock if held, withdraws the request if queued. Idempotent.
    pub fn release(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.released = true;
        if let Some(resolve) = inner.release.take() {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
        if let Some(abort) = inner.abort.take() {
            abort.abort();
        }
        if inner.state == LockState::Queued {
            inner.state = LockState::Done;
        }
    }

    /// A promise that settles once the lock is released or the request withdrawn.
    pub fn settled(&self) -> Promise {
        self.settled.clone()
    }
}

impl Drop for Lock {
    /// A request the browser has not settled yet keeps its callbacks (they are small,
    /// and the browser calls them once more at most); a settled one frees them.
    fn drop(&mut self) {
        if !self.is_settled() {
            if let Some(Callbacks { _grant, _settle }) = self.callbacks.take() {
                _grant.forget();
                _settle.forget();
            }
        }
    }
}

/// The lease authority of leader mode on the group's Web Lock, the core's
/// [`LockArbiter`] carried out on the browser: it only takes, gives back and watches
/// the lock, and reads and raises the record beside it; the arbiter decides every
/// answer (see it for the rules).
///
/// The record is the last term granted and its holder, in localStorage (Web Locks have
/// no terms of their own), read and raised only while holding the lock, so terms
/// strictly increase across holders. It is also kept in memory, which stands in for it
/// where localStorage does not work; a read takes the highest of the two and of the
/// highest term the replica has seen ([`WebLockAuthority::note_term`]).
///
/// The driver uses it in leader mode; it is public (and hidden) for the browser tests,
/// which run the core's table of a lock authority against it.
#[doc(hidden)]
pub struct WebLockAuthority {
    state: Rc<RefCell<State>>,
}

struct State {
    this: Weak<RefCell<State>>,
    window: Window,
    lock_name: String,
    term_key: String,
    holder_key: String,
    storage: Option<Storage>,
    /// The highest term this tab recorded (the record where localStorage fails).
    memory_term: u64,
    /// The highest term the replica has seen.
    known_term: u64,
    arbiter: LockArbiter,
    /// The request for the lock: queued, or held.
    lock: Option<Lock>,
    /// Locks given back or lost, kept until the browser has settled them (their
    /// callbacks must outlive that).
    retired: Vec<Lock>,
    /// Settles once the last lock given back is released.
    released: Option<Promise>,
    /// Answers for the replica.
    answers: VecDeque<AuthorityAnswer>,
    /// Closed: the lock is not asked for again.
    closed: bool,
    /// Told once the lock was granted or lost (answers may be waiting).
    wake: Rc<dyn Fn()>,
}

impl WebLockAuthority {
    /// The authority of replica `me` on the lock of `group`, its record in `storage`
    /// (`None`: in memory only). Queues for the lock at once; `wake` runs
    /// (from a later task) whenever the lock is granted or lost, after which
    /// [`WebLockAuthority::poll_answer`] may have answers.
    ///
    /// # Errors
    ///
    /// A bad group name, or the browser refused the request for the lock.
    pub fn open(
        window: &Window,
        group: &str,
        me: SourceId,
        storage: Option<Storage>,
        wake: impl Fn() + 'static,
    ) -> Result<Self, String> {
        let names = Names::new(group)?;
        let state = Rc::new_cyclic(|this| {
            RefCell::new(State {
                this: this.clone(),
                window: window.clone(),
                lock_name: names.lock(),
                term_key: names.term_key(),
                holder_key: names.holder_key(),
                storage,
                memory_term: 0,
                known_term: 0,
                arbiter: LockArbiter::new(me),
                lock: None,
                retired: Vec::new(),
                released: None,
                answers: VecDeque::new(),
                closed: false,
                wake: Rc::new(wake),
            })
        });
        let lock = state.borrow().request()?;
        let mut inner = state.borrow_mut();
        inner.lock = Some(lock);
        inner.carry_out(); // the arbiter's first Take: already asked
        drop(inner);
        Ok(WebLockAuthority { state })
    }

    /// A request of the replica.
    pub fn handle(&self, request: AuthorityRequest) {
        let mut state = self.state.borrow_mut();
        state.arbiter.handle_request(request);
        state.carry_out();
    }

    /// The next answer for the replica.
    pub fn poll_answer(&self) -> Option<AuthorityAnswer> {
        self.state.borrow_mut().answers.pop_front()
    }

    /// The replica has seen `term`: the record never says less.
    pub fn note_term(&self, term: u64) {
        let mut state = self.state.borrow_mut();
        state.known_term = state.known_term.max(term);
    }

    /// The highest term known here (recorded, granted or seen).
    pub fn highest(&self) -> u64 {
        let state = self.state.borrow();
        (state.arbiter.highest())
            .max(state.memory_term)
            .max(state.known_term)
    }

    /// The term granted under the lock, while held.
    pub fn held(&self) -> Option<u64> {
        self.state.borrow().arbiter.held()
    }

    /// Gives the lock back, or withdraws its request, for good.
    pub fn close(&self) {
        let mut state = self.state.borrow_mut();
        state.closed = true;
        if let Some(lock) = state.lock.take() {
            state.retire(lock);
        }
    }

    /// A promise that settles once the lock last given back is free of this tab.
    pub fn released(&self) -> Option<Promise> {
        self.state.borrow().released.clone()
    }

    /// Frees the locks the browser is done with (call outside every lock callback).
    pub fn sweep(&self) {
        self.state.borrow_mut().retired.retain(|l| !l.is_settled());
    }
}

impl Drop for WebLockAuthority {
    fn drop(&mut self) {
        self.close();
    }
}

/// What a lock's callback tells the authority (the browser granted it, or it ended
/// without being given back).
fn tell(state: &Weak<RefCell<State>>, fact: LockFact) {
    let Some(state) = state.upgrade() else {
        return;
    };
    let wake = {
        let mut state = state.borrow_mut();
        if fact == LockFact::Lost {
            // Settled: kept until this callback is over.
            if let Some(lock) = state.lock.take() {
                state.retired.push(lock);
            }
        }
        state.arbiter.handle_fact(fact);
        state.carry_out();
        state.wake.clone()
    };
    wake();
}

impl State {
    /// Queues a request for the lock.
    fn request(&self) -> Result<Lock, String> {
        let (on_grant, on_loss) = (self.this.clone(), self.this.clone());
        Lock::request(
            &self.window,
            &self.lock_name,
            move || tell(&on_grant, LockFact::Locked),
            move || tell(&on_loss, LockFact::Lost),
        )
    }

    /// Gives a lock back (or withdraws its request), keeping it until the browser has
    /// settled it.
    fn retire(&mut self, lock: Lock) {
        lock.release();
        self.released = Some(lock.settled());
        self.retired.push(lock);
    }

    /// Carries out the arbiter's outputs.
    fn carry_out(&mut self) {
        while let Some(output) = self.arbiter.poll() {
            let fact = match output {
                LockOutput::Answer(answer) => {
                    self.answers.push_back(answer);
                    continue;
                }
                LockOutput::Medium(LockAction::Take) => {
                    if self.lock.is_some() || self.closed {
                        continue;
                    }
                    match self.request() {
                        Ok(lock) => {
                            self.lock = Some(lock);
                            continue;
                        }
                        Err(why) => {
                            // The next acquire asks again.
                            tracing::warn!(%why, "the Web Lock could not be asked for");
                            LockFact::Lost
                        }
                    }
                }
                LockOutput::Medium(LockAction::Release) => {
                    if let Some(lock) = self.lock.take() {
                        self.retire(lock);
                    }
                    continue;
                }
                LockOutput::Medium(LockAction::ReadTerm) => self.read(),
                LockOutput::Medium(LockAction::WriteTerm { term, holder }) => {
                    self.raise(term, holder)
                }
            };
            self.arbiter.handle_fact(fact);
        }
    }

    /// The record: the highest term known, and its holder if localStorage names the
    /// holder of that term.
    fn read(&self) -> LockFact {
        let (stored, holder) = match &self.storage {
            Some(storage) => stored_record(storage, &self.term_key, &self.holder_key),
            None => (0, None),
        };
        let term = stored.max(self.memory_term).max(self.known_term);
        LockFact::Recorded {
            term,
            holder: holder.filter(|_| stored == term),
        }
    }

    /// Raises the record to `term`, held by `holder` (only while holding the lock).
    /// The record in memory is always raised; localStorage failing is only warned of.
    fn raise(&mut self, term: u64, holder: SourceId) -> LockFact {
        self.memory_term = self.memory_term.max(term);
        if let Some(storage) = &self.storage {
            if let Err(why) = store_record(storage, &self.term_key, &self.holder_key, term, holder)
            {
                tracing::warn!(%why, "the lease term could not be stored; it is kept in memory");
            }
        }
        LockFact::Raised { term }
    }
}

/// The last term granted under the group's lock and its holder, kept in localStorage;
/// 0 if none or unreadable, and no holder if none or unreadable.
fn stored_record(storage: &Storage, term_key: &str, holder_key: &str) -> (u64, Option<SourceId>) {
    let read = |key| storage.get_item(key).ok().flatten();
    let term = read(term_key).and_then(|t| t.parse().ok()).unwrap_or(0);
    let holder = read(holder_key).and_then(|h| h.parse().ok());
    (term, holder)
}

/// Raises the stored term to `term` and names its holder (never lowers it).
fn store_record(
    storage: &Storage,
    term_key: &str,
    holder_key: &str,
    term: u64,
    holder: SourceId,
) -> Result<(), String> {
    if stored_record(storage, term_key, holder_key).0 >= term {
        return Ok(());
    }
    storage
        .set_item(term_key, &term.to_string())
        .and_then(|()| storage.set_item(holder_key, &holder.to_string()))
        .map_err(|e| describe(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use wasm_bindgen_futures::JsFuture;
    use wasm_bindgen_test::wasm_bindgen_test;

    async fn until(what: &str, done: impl Fn() -> bool) {
        let start = js_sys::Date::now();
        while !done() {
            assert!(
                js_sys::Date::now() - start < 10_000.0,
                "timed out waiting for {what}"
            );
            let tick = Promise::new(&mut |resolve, _| {
                let _ = web_sys::window()
                    .unwrap()
                    .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 2);
            });
            JsFuture::from(tick).await.unwrap();
        }
    }

    #[wasm_bindgen_test]
    async fn one_holder_at_a_time_and_the_next_in_line_gets_it() {
        let window = web_sys::window().unwrap();
        assert!(available(&window), "Chromium has Web Locks");
        let name = format!("lock-unit-{}", js_sys::Math::random());
        let grants = Rc::new(Cell::new((0, 0)));
        let (ga, gb) = (grants.clone(), grants.clone());
        let a = Lock::request(
            &window,
            &name,
            move || ga.set((ga.get().0 + 1, ga.get().1)),
            || panic!("not lost"),
        )
        .unwrap();
        let b = Lock::request(
            &window,
            &name,
            move || gb.set((gb.get().0, gb.get().1 + 1)),
            || panic!("not lost"),
        )
        .unwrap();
        until("a's grant", || a.state() == LockState::Held).await;
        assert_eq!(b.state(), LockState::Queued);
        assert_eq!(grants.get(), (1, 0));
        a.release();
        JsFuture::from(a.settled()).await.unwrap();
        until("b's grant", || b.state() == LockState::Held).await;
        assert_eq!(grants.get(), (1, 1));
        // A queued request withdrawn never gets the lock.
        let c = Lock::request(
            &window,
            &name,
            || panic!("withdrawn"),
            || panic!("not lost"),
        )
        .unwrap();
        c.release();
        JsFuture::from(c.settled()).await.unwrap();
        assert_eq!(c.state(), LockState::Done);
        b.release();
        JsFuture::from(b.settled()).await.unwrap();
        assert_eq!(b.state(), LockState::Done);
    }
}
