//! The Web Locks API: one exclusive lock per group, the lease authority of leader mode.
//!
//! A tab keeps one request for the group's lock queued with the browser. When the
//! browser grants it (at once, or when the holder's tab releases it, closes or dies),
//! the callback it runs returns a promise that this module holds unresolved: the lock
//! stays held until [`Lock::release`] resolves it. A queued request is withdrawn with
//! an `AbortSignal`.
//!
//! web-sys has these bindings only behind `--cfg web_sys_unstable_apis`; the few used
//! are declared here instead.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, Window};

use crate::error::describe;

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
    /// [`Lock::release`] was called (a settle without it, while held, is a loss).
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
    /// grants it, `lost` if a held lock ends without [`Lock::release`] (both from a
    /// later task, never from inside this call).
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
                let was_held = inner.state == LockState::Held;
                inner.state = LockState::Done;
                inner.settled = true;
                inner.release = None;
                was_held && !inner.released
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

/// The last term granted under the group's lock, kept in localStorage (Web Locks have
/// no terms of their own); 0 if none or unreadable.
pub(crate) fn stored_term(storage: &web_sys::Storage, key: &str) -> u64 {
    storage
        .get_item(key)
        .ok()
        .flatten()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// Raises the stored term to `term` (only while holding the lock, so terms strictly
/// increase across holders).
pub(crate) fn store_term(storage: &web_sys::Storage, key: &str, term: u64) -> Result<(), String> {
    if stored_term(storage, key) >= term {
        return Ok(());
    }
    storage
        .set_item(key, &term.to_string())
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
