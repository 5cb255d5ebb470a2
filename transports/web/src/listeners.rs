//! JavaScript listeners by event type, for the JavaScript APIs built on this crate.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::Function;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// The listeners of a JavaScript object's `on(type, listener)`: each gets an
/// unsubscribe function, and one that throws never stops the others (its error goes to
/// the console, prefixed by the API's name).
#[derive(Debug)]
pub struct JsListeners {
    api: &'static str,
    entries: RefCell<Vec<(u32, &'static str, Function)>>,
    next: Cell<u32>,
}

impl JsListeners {
    /// No listeners yet; `api` names the API in console messages (`replisync`, say).
    pub fn new(api: &'static str) -> Rc<Self> {
        Rc::new(JsListeners {
            api,
            entries: RefCell::new(Vec::new()),
            next: Cell::new(0),
        })
    }

    /// Adds `listener` for events of `kind`; returns the JavaScript function that
    /// removes it (harmless once the listeners are gone).
    pub fn subscribe(self: &Rc<Self>, kind: &'static str, listener: Function) -> Function {
        let id = self.next.get();
        self.next.set(id + 1);
        self.entries.borrow_mut().push((id, kind, listener));
        let listeners = Rc::downgrade(self);
        let unsubscribe = Closure::<dyn FnMut()>::new(move || {
            if let Some(listeners) = listeners.upgrade() {
                listeners.entries.borrow_mut().retain(|(l, _, _)| *l != id);
            }
        });
        unsubscribe.into_js_value().unchecked_into()
    }

    /// Calls every listener of `kind` with `detail`. Listeners may subscribe or
    /// unsubscribe while they run: the ones called are those present when it began.
    pub fn emit(&self, kind: &'static str, detail: &JsValue) {
        let listeners: Vec<Function> = self
            .entries
            .borrow()
            .iter()
            .filter(|(_, k, _)| *k == kind)
            .map(|(_, _, f)| f.clone())
            .collect();
        for f in listeners {
            self.call(kind, &f, detail);
        }
    }

    /// Calls one listener of `kind`, as [`JsListeners::emit`] would.
    pub fn call(&self, kind: &'static str, listener: &Function, detail: &JsValue) {
        if let Err(e) = listener.call1(&JsValue::UNDEFINED, detail) {
            web_sys::console::error_2(
                &format!("{}: a '{kind}' listener threw", self.api).into(),
                &e,
            );
        }
    }

    /// Removes every listener.
    pub fn clear(&self) {
        self.entries.borrow_mut().clear();
    }
}
