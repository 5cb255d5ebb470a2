//! The browser driver in a real page: headless Chromium through wasm-bindgen-test
//! (run by `run-browser-tests`). Every wait is raced against a timeout, so a lost
//! message fails its test instead of hanging it.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Date, Function, Promise, Reflect};
use replisync::{Config, Degradation, Event, Lww, LwwMap, Merge};
use replisync_web::{
    ChannelChoice, ChannelKind, Leadership, OpenError, Options, StorageChoice, StoreKind,
    WebReplica,
};
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{HtmlIFrameElement, Window};

wasm_bindgen_test_configure!(run_in_browser);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Merge)]
struct Doc {
    title: Lww<String>,
    scores: LwwMap<String, u32>,
}

type Tab = WebReplica<Doc, String>;

/// How long any one wait may take before the test fails.
const PATIENCE_MS: f64 = 10_000.0;

fn window() -> Window {
    web_sys::window().expect("a window")
}

/// A group name no other test (or earlier run) uses.
fn unique(name: &str) -> String {
    format!("{name}-{}", js_sys::Math::random().to_bits())
}

async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        window()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .expect("setTimeout");
    });
    JsFuture::from(promise).await.expect("sleep");
}

/// Waits until `done` holds; fails the test, naming `what`, after `PATIENCE_MS`.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Date::now();
    while !done() {
        assert!(
            Date::now() - start < PATIENCE_MS,
            "timed out after {PATIENCE_MS} ms waiting for {what}"
        );
        sleep(2).await;
    }
}

fn open(group: &str, config: Config, setup: impl FnOnce(&mut Options)) -> Tab {
    let mut options = Options::new(group, config);
    setup(&mut options);
    WebReplica::open(options).expect("the group opens")
}

fn title(tab: &Tab) -> Option<String> {
    tab.with_state(|s| s.title.get().cloned())
}

fn set_title(tab: &Tab, value: &str) {
    tab.write(|s, d, w| d.title = s.title.write(value.into(), w))
        .expect("the write is accepted");
}

/// Every event a tab reports, kept for assertions.
fn record(tab: &Tab) -> Rc<RefCell<Vec<Event<String>>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let into = seen.clone();
    tab.subscribe(move |event, _| into.borrow_mut().push(event.clone()));
    seen
}

/// A same-origin frame: a second document with its own window, localStorage events
/// and lifecycle.
fn frame() -> (HtmlIFrameElement, Window) {
    let document = window().document().expect("a document");
    let iframe: HtmlIFrameElement = document
        .create_element("iframe")
        .expect("an iframe")
        .dyn_into()
        .expect("an iframe element");
    document
        .body()
        .expect("a body")
        .append_child(&iframe)
        .expect("the frame is attached");
    let frame_window = iframe.content_window().expect("the frame's window");
    (iframe, frame_window)
}

/// Runs JavaScript `body` with `target` as its argument `t`.
fn run_js(body: &str, target: &JsValue) {
    Function::new_with_args("t", body)
        .call1(&JsValue::UNDEFINED, target)
        .expect("the script runs");
}

#[wasm_bindgen_test]
async fn two_replicas_in_one_page_converge_over_broadcast_channel() {
    let group = unique("converge");
    let a = open(&group, Config::distributed(), |_| {});
    let b = open(&group, Config::distributed(), |_| {});
    assert_eq!(a.channel_kind(), ChannelKind::BroadcastChannel);
    assert_eq!(a.store_kind(), StoreKind::LocalStorage);
    assert!(a.degradations().is_empty(), "{:?}", a.degradations());

    set_title(&a, "from a");
    wait_for("b to see a's write", || {
        title(&b).as_deref() == Some("from a")
    })
    .await;
    b.write(|s, d, w| d.scores = s.scores.write_insert("b".into(), 7, w))
        .unwrap();
    wait_for("a to see b's write", || {
        a.with_state(|s| s.scores.get("b").copied()) == Some(7)
    })
    .await;
    wait_for("byte-identical states", || {
        a.with_state(Clone::clone) == b.with_state(Clone::clone)
    })
    .await;
    a.close();
    b.close();
}

#[wasm_bindgen_test]
async fn a_request_reaches_the_leader_which_answers_by_writing() {
    let group = unique("request");
    let leader = open(&group, Config::leader(), |_| {});
    wait_for("the first tab to lead", || leader.is_leader()).await;
    leader.subscribe(|event, tab| {
        if let Event::Request { request, .. } = event {
            let _ = tab.write(|s, d, w| d.title = s.title.write(request.clone(), w));
        }
    });
    let follower = open(&group, Config::leader(), |_| {});
    wait_for("the follower to know the leader", || {
        follower.leader() == Some(leader.source())
    })
    .await;
    assert!(!follower.is_leader());
    assert!(
        follower
            .write(|s, d, w| d.title = s.title.write("no".into(), w))
            .is_err(),
        "a follower does not write in leader mode"
    );
    follower.request("asked by the follower".into()).unwrap();
    wait_for("the leader's answer at the follower", || {
        title(&follower).as_deref() == Some("asked by the follower")
    })
    .await;
    follower.close();
    leader.close();
}

/// How many tabs hold, and wait for, the group's Web Lock.
async fn lock_queue(group: &str) -> (usize, usize) {
    let locks = Reflect::get(&window().navigator(), &"locks".into()).unwrap();
    let query: Function = Reflect::get(&locks, &"query".into())
        .unwrap()
        .unchecked_into();
    let snapshot = JsFuture::from(query.call0(&locks).unwrap().unchecked_into::<Promise>())
        .await
        .unwrap();
    let count = |list: &str| {
        js_sys::Array::from(&Reflect::get(&snapshot, &list.into()).unwrap())
            .iter()
            .filter(|l| {
                Reflect::get(l, &"name".into())
                    .ok()
                    .and_then(|n| n.as_string())
                    .is_some_and(|n| n.contains(group))
            })
            .count()
    };
    (count("held"), count("pending"))
}

/// Closes a tab and waits until its Web Lock is given back.
async fn close(tab: &Tab) {
    tab.close();
    JsFuture::from(tab.released()).await.unwrap();
}

/// Waits until the group's Web Lock is held and waited for by as many tabs as said
/// (the browser settles a withdrawn or released request a moment after the call).
async fn wait_for_lock_queue(group: &str, held: usize, pending: usize) {
    let start = Date::now();
    loop {
        let now = lock_queue(group).await;
        if now == (held, pending) {
            return;
        }
        assert!(
            Date::now() - start < PATIENCE_MS,
            "timed out waiting for {held} holder(s) and {pending} waiting of the lock; {now:?}"
        );
        sleep(2).await;
    }
}

/// One leader among three tabs; closing it hands over to another, in a newer term.
async fn one_leader_then_handover(locks: bool) {
    let group = unique(if locks { "locks" } else { "gossip" });
    let tabs: Vec<Tab> = (0..3)
        .map(|_| open(&group, Config::leader(), |o| o.locks = locks))
        .collect();
    let expected = if locks {
        Leadership::WebLocks
    } else {
        Leadership::Gossip
    };
    assert!(tabs.iter().all(|t| t.leadership() == expected));
    // With Web Locks, never two leaders: checked at every event any tab reports.
    let overlap = Rc::new(Cell::new(false));
    for tab in &tabs {
        let all: Vec<Tab> = tabs.clone();
        let overlap = overlap.clone();
        tab.subscribe(move |_, _| {
            if all.iter().filter(|t| t.is_leader()).count() > 1 {
                overlap.set(true);
            }
        });
    }
    wait_for("exactly one leader that every tab knows", || {
        let leaders: Vec<_> = tabs.iter().filter(|t| t.is_leader()).collect();
        leaders.len() == 1 && tabs.iter().all(|t| t.leader() == Some(leaders[0].source()))
    })
    .await;
    let first = tabs.iter().position(|t| t.is_leader()).unwrap();
    let term = tabs[first].term();
    if locks {
        wait_for_lock_queue(&group, 1, 2).await;
    }
    close(&tabs[first]).await;
    let rest: Vec<&Tab> = tabs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, t)| t)
        .collect();
    wait_for("another tab to lead, in a newer term", || {
        let leaders: Vec<_> = rest.iter().filter(|t| t.is_leader()).collect();
        leaders.len() == 1
            && leaders[0].term() > term
            && rest.iter().all(|t| t.leader() == Some(leaders[0].source()))
    })
    .await;
    if locks {
        assert!(!overlap.get(), "two tabs led at once under Web Locks");
        wait_for_lock_queue(&group, 1, 1).await;
        let stored = window()
            .local_storage()
            .unwrap()
            .unwrap()
            .get_item(&format!("replisync:{group}:term"))
            .unwrap();
        let leader = rest.iter().find(|t| t.is_leader()).unwrap();
        assert_eq!(
            stored,
            Some(leader.term().to_string()),
            "the term counter beside the lock"
        );
    }
    for tab in rest {
        close(tab).await;
    }
    if locks {
        wait_for_lock_queue(&group, 0, 0).await; // closed tabs keep no lock
    }
}

#[wasm_bindgen_test]
async fn web_locks_give_one_leader_at_a_time_and_a_closed_leader_hands_over() {
    one_leader_then_handover(true).await;
}

#[wasm_bindgen_test]
async fn without_web_locks_gossip_elects_one_leader_and_a_closed_leader_hands_over() {
    one_leader_then_handover(false).await;
}

#[wasm_bindgen_test]
async fn a_tab_that_stops_leading_gives_the_lock_back_and_asks_again_to_lead() {
    let group = unique("requeue");
    let a = open(&group, Config::leader(), |_| {});
    wait_for("a to lead", || a.is_leader()).await;
    let b = open(&group, Config::leader(), |_| {});
    wait_for("b to know a", || b.leader() == Some(a.source())).await;
    // The page resumes from a freeze: a leader re-validates, so a stops leading and
    // gives the lock back to b, which leads. a does not queue for the lock again
    // until its replica asks to lead.
    run_js(
        "t.dispatchEvent(new Event('resume'));",
        window().document().unwrap().unchecked_ref(),
    );
    wait_for("b to lead", || {
        b.is_leader() && a.leader() == Some(b.source())
    })
    .await;
    assert!(!a.is_leader());
    wait_for_lock_queue(&group, 1, 0).await; // b holds the lock; a does not wait
    let term = b.term();
    close(&b).await;
    wait_for("a to lead again", || a.is_leader() && a.term() > term).await;
    close(&a).await;
}

/// Holds the Web Lock `name` from the page, as another tab would, until [`let_go`].
async fn hold_lock(name: &str) {
    let hold = Function::new_with_args(
        "name",
        "return new Promise(held => navigator.locks.request(name, () => \
             new Promise(release => { window['release:' + name] = release; held(); })));",
    );
    let held = hold.call1(&JsValue::UNDEFINED, &name.into()).unwrap();
    JsFuture::from(held.unchecked_into::<Promise>())
        .await
        .unwrap();
}

/// Lets go of the Web Lock `name` held by [`hold_lock`].
fn let_go(name: &str) {
    run_js(
        "const r = window['release:' + t]; if (r) r();",
        &name.into(),
    );
}

/// Takes the Web Lock `name` from whoever holds it (`steal`), and lets go at once.
async fn steal_lock(name: &str) {
    let steal = Function::new_with_args(
        "name",
        "return navigator.locks.request(name, { steal: true }, () => {});",
    );
    let stolen = steal.call1(&JsValue::UNDEFINED, &name.into()).unwrap();
    JsFuture::from(stolen.unchecked_into::<Promise>())
        .await
        .unwrap();
}

/// The lock authority's table (`replisync_testkit::lock`), the rows the core runs
/// against `LockArbiter` and the files crate against `flock`, here against the Web
/// Locks API and localStorage: each row's answers, and the record beside the lock
/// after the last term written. [`OTHER`]'s hold is a second request for the lock
/// from the page; a lock taken away is stolen (`steal: true`) with its record wiped.
#[wasm_bindgen_test]
async fn the_lock_table_against_web_locks() {
    use replisync::authority::{AuthorityAnswer, AuthorityRequest, LockAction};
    use replisync::SourceId;
    use replisync_testkit::lock::{table, Given, When, ME, OTHER};
    use replisync_web::WebLockAuthority;

    async fn next(authority: &WebLockAuthority, row: &str) -> AuthorityAnswer {
        let start = Date::now();
        loop {
            if let Some(answer) = authority.poll_answer() {
                return answer;
            }
            assert!(Date::now() - start < PATIENCE_MS, "{row}: no answer");
            sleep(2).await;
        }
    }
    let storage = window().local_storage().unwrap().unwrap();
    for row in table() {
        let group = unique("lock-table");
        let lock = format!("replisync:{group}:lease");
        let term_key = format!("replisync:{group}:term");
        let holder_key = format!("replisync:{group}:holder");
        let record = |term: Option<u64>, holder: Option<SourceId>| {
            match term {
                Some(term) => storage.set_item(&term_key, &term.to_string()).unwrap(),
                None => storage.remove_item(&term_key).unwrap(),
            }
            match holder {
                Some(holder) => storage.set_item(&holder_key, &holder.to_string()).unwrap(),
                None => storage.remove_item(&holder_key).unwrap(),
            }
        };
        let open = || {
            WebLockAuthority::open(&window(), &group, ME, Some(storage.clone()), || {})
                .expect("the lock is asked for")
        };
        let granted = |term| AuthorityAnswer::Granted {
            ask: None,
            term,
            valid_ms: None,
        };
        let me = match row.given {
            Given::Fresh { recorded } => {
                record(Some(recorded), None);
                open()
            }
            Given::Held { term } | Given::Released { term } => {
                record(Some(term - 1), Some(OTHER));
                let me = open();
                assert_eq!(next(&me, row.name).await, granted(term), "{}", row.name);
                if matches!(row.given, Given::Released { .. }) {
                    me.handle(AuthorityRequest::Release { term });
                    wait_for_lock_queue(&group, 0, 0).await;
                }
                me
            }
            Given::Queued { term } => {
                hold_lock(&lock).await;
                record(Some(term), Some(OTHER));
                let me = open();
                wait_for_lock_queue(&group, 1, 1).await;
                me
            }
        };
        for when in &row.when {
            match *when {
                When::Request(request) => me.handle(request),
                When::OtherLetsGo => let_go(&lock),
                When::TakenAway => {
                    record(None, None);
                    steal_lock(&lock).await;
                }
            }
        }
        let mut answers = Vec::new();
        for _ in &row.answers {
            answers.push(next(&me, row.name).await);
        }
        assert_eq!(answers, row.answers, "{}", row.name);
        sleep(100).await;
        assert_eq!(me.poll_answer(), None, "{}: no more answers", row.name);
        if let Some(LockAction::WriteTerm { term, holder }) = row
            .actions
            .iter()
            .rev()
            .find(|a| matches!(a, LockAction::WriteTerm { .. }))
        {
            assert_eq!(
                storage.get_item(&term_key).unwrap(),
                Some(term.to_string()),
                "{}",
                row.name
            );
            assert_eq!(
                storage.get_item(&holder_key).unwrap(),
                Some(holder.to_string()),
                "{}",
                row.name
            );
        }
        drop(me);
        let_go(&lock);
        wait_for_lock_queue(&group, 0, 0).await;
        record(None, None);
    }
}

#[wasm_bindgen_test]
async fn storage_event_fallback_reaches_a_second_document() {
    let group = unique("storage-event");
    let (iframe, frame_window) = frame();
    // The frame has no BroadcastChannel: it falls back, and says so.
    run_js("delete t.BroadcastChannel;", frame_window.unchecked_ref());
    let here = open(&group, Config::distributed(), |o| {
        o.channel = ChannelChoice::StorageEvent
    });
    let there = open(&group, Config::distributed(), |o| {
        o.window = Some(frame_window.clone())
    });
    assert_eq!(here.channel_kind(), ChannelKind::StorageEvent);
    assert_eq!(there.channel_kind(), ChannelKind::StorageEvent);
    assert!(here.degradations().is_empty(), "asked for, not a fallback");
    assert!(
        matches!(there.degradations().as_slice(), [Degradation::Transport(why)] if why.contains("BroadcastChannel")),
        "{:?}",
        there.degradations()
    );
    let told = record(&there);
    assert!(
        told.borrow().iter().any(|e| matches!(
            e,
            Event::Degraded {
                reason: Degradation::Transport(_)
            }
        )),
        "the first listener hears the degradation raised at open"
    );

    set_title(&here, "through the storage event");
    wait_for("the frame to see the write", || {
        title(&there).as_deref() == Some("through the storage event")
    })
    .await;
    there
        .write(|s, d, w| d.scores = s.scores.write_insert("frame".into(), 1, w))
        .unwrap();
    wait_for("the page to see the frame's write", || {
        here.with_state(|s| s.scores.get("frame").copied()) == Some(1)
    })
    .await;
    // Messages in flight are removed once written.
    let storage = window().local_storage().unwrap().unwrap();
    let in_flight = (0..storage.length().unwrap())
        .filter_map(|i| storage.key(i).unwrap())
        .filter(|k| k.contains(&group) && k.contains(":msg:"))
        .count();
    assert_eq!(in_flight, 0);
    here.close();
    there.close();
    iframe.remove();
}

#[wasm_bindgen_test]
async fn without_local_storage_the_state_is_kept_in_memory_and_reported() {
    let group = unique("memory");
    let (iframe, frame_window) = frame();
    run_js(
        "Object.defineProperty(t, 'localStorage', { get() { throw new t.DOMException('The operation is insecure.', 'SecurityError'); } });",
        frame_window.unchecked_ref(),
    );
    let insisted = WebReplica::<Doc, String>::open({
        let mut o = Options::new(group.clone(), Config::distributed());
        o.window = Some(frame_window.clone());
        o.storage = StorageChoice::LocalStorage;
        o
    });
    assert!(
        matches!(insisted, Err(OpenError::StorageUnavailable(ref why)) if why.contains("SecurityError")),
        "{insisted:?}"
    );

    let degraded = open(&group, Config::distributed(), |o| {
        o.window = Some(frame_window.clone())
    });
    assert_eq!(degraded.store_kind(), StoreKind::Memory);
    let told = record(&degraded);
    assert!(
        told.borrow().iter().any(|e| matches!(e, Event::Degraded { reason: Degradation::Store(why) } if why.contains("memory"))),
        "{:?}",
        told.borrow()
    );
    // BroadcastChannel still carries the group.
    let peer = open(&group, Config::distributed(), |_| {});
    set_title(&degraded, "kept in memory");
    wait_for("the peer to see the write", || {
        title(&peer).as_deref() == Some("kept in memory")
    })
    .await;
    degraded.close();
    peer.close();
    iframe.remove();
}

#[wasm_bindgen_test]
async fn a_full_quota_is_reported_and_the_log_is_written_whole_once_there_is_room() {
    let group = unique("quota");
    let tab = open(&group, Config::distributed(), |_| {});
    let told = record(&tab);
    let storage = window().local_storage().unwrap().unwrap();
    // Fill the origin's quota: big values, then smaller ones into what is left.
    let mut filler = Vec::new();
    let mut size = 1 << 20;
    while size > 0 {
        let key = format!("filler-{group}-{}", filler.len());
        if storage.set_item(&key, &"x".repeat(size)).is_ok() {
            filler.push(key);
        } else {
            size /= 4;
        }
        assert!(filler.len() < 1_000, "the quota never filled");
    }
    set_title(&tab, &"y".repeat(64 * 1024));
    wait_for("a store degradation", || {
        told.borrow().iter().any(|e| matches!(e, Event::Degraded { reason: Degradation::Store(why) } if why.contains("QuotaExceeded")))
    })
    .await;
    for key in &filler {
        storage.remove_item(key).unwrap();
    }
    set_title(&tab, "small");
    tab.close();
    let later = open(&group, Config::distributed(), |_| {});
    assert_eq!(
        title(&later).as_deref(),
        Some("small"),
        "restored from localStorage"
    );
    later.close();
}

#[wasm_bindgen_test]
async fn a_tab_opened_later_restores_from_local_storage() {
    let group = unique("restore");
    let first = open(&group, Config::distributed(), |_| {});
    set_title(&first, "persisted");
    first
        .write(|s, d, w| d.scores = s.scores.write_insert("k".into(), 3, w))
        .unwrap();
    first.close();
    let later = open(&group, Config::distributed(), |_| {});
    assert_eq!(title(&later).as_deref(), Some("persisted"));
    assert_eq!(later.with_state(|s| s.scores.get("k").copied()), Some(3));
    later.close();
}

#[wasm_bindgen_test]
async fn pagehide_leaves_and_pageshow_from_the_cache_joins_again() {
    let group = unique("bfcache");
    let (iframe, frame_window) = frame();
    let here = open(&group, Config::distributed(), |_| {});
    let told = record(&here);
    let there = open(&group, Config::distributed(), |o| {
        o.window = Some(frame_window.clone())
    });
    let id = there.source();
    set_title(&there, "before");
    wait_for("the write before pagehide", || {
        title(&here).as_deref() == Some("before")
    })
    .await;

    run_js(
        "t.dispatchEvent(new t.PageTransitionEvent('pagehide', { persisted: true }));",
        frame_window.unchecked_ref(),
    );
    wait_for("a goodbye from the hidden page", || {
        told.borrow()
            .iter()
            .any(|e| matches!(e, Event::PeerLeft { peer, said_goodbye: true } if *peer == id))
    })
    .await;
    assert!(there
        .write(|s, d, w| d.title = s.title.write("away".into(), w))
        .is_err());
    set_title(&here, "while away");

    run_js(
        "t.dispatchEvent(new t.PageTransitionEvent('pageshow', { persisted: true }));",
        frame_window.unchecked_ref(),
    );
    assert_eq!(there.source(), id, "the same id after the cache");
    wait_for("the returning page to catch up", || {
        title(&there).as_deref() == Some("while away")
    })
    .await;
    set_title(&there, "after");
    wait_for("the returning page's write", || {
        title(&here).as_deref() == Some("after")
    })
    .await;
    here.close();
    there.close();
    iframe.remove();
}

#[wasm_bindgen_test]
async fn listeners_may_write_and_unsubscribe_while_events_are_delivered() {
    let group = unique("reentrant");
    let tab = open(&group, Config::distributed(), |_| {});
    let changes = Rc::new(RefCell::new(0));
    let counted = changes.clone();
    let id = Rc::new(RefCell::new(None));
    let own_id = id.clone();
    let listener = tab.subscribe(move |event, tab| {
        if let Event::Changed { .. } = event {
            *counted.borrow_mut() += 1;
            // A write from inside a listener: its own Changed comes after this one.
            if tab.with_state(|s| s.scores.get("n").copied()).unwrap_or(0) < 3 {
                let _ = tab.write(|s, d, w| {
                    let n = s.scores.get("n").copied().unwrap_or(0);
                    d.scores = s.scores.write_insert("n".into(), n + 1, w);
                });
            } else if let Some(id) = own_id.borrow_mut().take() {
                tab.unsubscribe(id);
            }
        }
    });
    *id.borrow_mut() = Some(listener);
    tab.write(|s, d, w| d.scores = s.scores.write_insert("n".into(), 1, w))
        .unwrap();
    assert_eq!(tab.with_state(|s| s.scores.get("n").copied()), Some(3));
    assert_eq!(*changes.borrow(), 3);
    assert!(!tab.unsubscribe(listener), "it removed itself");
    tab.close();
    assert!(tab.is_closed());
    assert!(matches!(
        tab.write(|s, d, w| d.title = s.title.write("late".into(), w)),
        Err(replisync_web::GroupError::Closed)
    ));
}

/// The group's store-log keys in localStorage.
fn log_keys(group: &str) -> usize {
    let storage = window().local_storage().unwrap().unwrap();
    (0..storage.length().unwrap())
        .filter_map(|i| storage.key(i).unwrap())
        .filter(|k| k.contains(group) && k.contains(":log:"))
        .count()
}

#[wasm_bindgen_test]
async fn delayed_store_writes_wait_and_are_written_on_leaving() {
    let group = unique("store-delay");
    let tab = open(&group, Config::distributed(), |o| o.store_delay_ms = 60_000);
    set_title(&tab, "later");
    assert_eq!(log_keys(&group), 0, "nothing written yet");
    tab.close();
    assert!(log_keys(&group) > 0, "written on leaving");
    let again = open(&group, Config::distributed(), |_| {});
    assert_eq!(title(&again).as_deref(), Some("later"));
    again.close();

    let quick = open(&group, Config::distributed(), |o| o.store_delay_ms = 1);
    set_title(&quick, "soon");
    let before = log_keys(&group);
    wait_for("the delayed write", || log_keys(&group) != before).await;
    quick.close();
}

#[wasm_bindgen_test]
async fn a_hidden_page_writes_its_delayed_store_at_once() {
    let group = unique("hidden");
    let (iframe, frame_window) = frame();
    let tab = open(&group, Config::distributed(), |o| {
        o.window = Some(frame_window.clone());
        o.store_delay_ms = 60_000;
    });
    set_title(&tab, "before hiding");
    assert_eq!(log_keys(&group), 0, "delayed");
    run_js(
        "Object.defineProperty(t.document, 'visibilityState', { get() { return 'hidden'; } }); t.document.dispatchEvent(new t.Event('visibilitychange'));",
        frame_window.unchecked_ref(),
    );
    assert!(
        log_keys(&group) > 0,
        "a hidden page may be discarded: written at once"
    );
    tab.close();
    iframe.remove();
}

// ---- The JavaScript API (`openGroup`, `Group`) in the page, and issue 15's defects ----

/// Runs `body`, the body of an async JavaScript function, with `openGroup` and the
/// test's `args` in scope, and awaits its result (an error it throws fails the test).
/// `window.race(promise, what)` races a promise against the test's patience.
async fn js(body: &str, args: &[JsValue]) -> JsValue {
    let open = wasm_bindgen::closure::Closure::<dyn Fn(JsValue) -> Promise>::new(
        replisync_web::open_group,
    );
    let list: js_sys::Array = args.iter().collect();
    let f = Function::new_with_args(
        "openGroup, args",
        &format!(
            "const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
             const race = (p, what) => Promise.race([p, new Promise((_, reject) =>
               setTimeout(() => reject(new Error('timed out waiting for ' + what)), {PATIENCE_MS}))]);
             const until = async (check, what) => {{
               const start = performance.now();
               while (!check()) {{
                 if (performance.now() - start > {PATIENCE_MS}) throw new Error('timed out waiting for ' + what);
                 await sleep(2);
               }}
             }};
             const attempt = (f) => {{ try {{ f(); return 'returned'; }} catch (e) {{ return String(e && e.name) + ': ' + String(e && e.message); }} }};
             return (async () => {{ {body} }})();"
        ),
    );
    let promise: Promise = f
        .call2(&JsValue::UNDEFINED, open.as_ref(), &list)
        .expect("the script starts")
        .unchecked_into();
    let out = JsFuture::from(promise).await;
    drop(open);
    match out {
        Ok(v) => v,
        Err(e) => panic!(
            "the script failed: {}",
            js_sys::JSON::stringify(&e)
                .ok()
                .and_then(|s| s.as_string())
                .unwrap_or_default()
                + &format!(" {e:?}")
        ),
    }
}

/// A JavaScript value as JSON text, for comparisons.
fn json(value: &JsValue) -> String {
    js_sys::JSON::stringify(value).unwrap().as_string().unwrap()
}

#[wasm_bindgen_test]
async fn freeing_a_follower_throws_nothing_and_every_later_call_says_closed() {
    let out = js(
        "const [name] = args;
         const uncaught = [];
         const heard = (e) => uncaught.push(String(e.reason ?? e.error ?? e.message));
         window.addEventListener('unhandledrejection', heard);
         window.addEventListener('error', heard);
         const leader = await openGroup({ name });
         await race(leader.awaitLeadership(), 'the first group to lead');
         // Its lock request waits behind the leader's: closing withdraws it, and the
         // browser settles the withdrawal a moment later.
         const follower = await openGroup({ name });
         follower.close();
         follower.free();
         // Freed without a close (as the garbage collector would).
         const other = await openGroup({ name });
         other.free();
         await sleep(300);
         window.removeEventListener('unhandledrejection', heard);
         window.removeEventListener('error', heard);
         const after = {
           set: attempt(() => follower.set('k', 1)),
           delete: attempt(() => follower.delete('k')),
           get: attempt(() => follower.get('k')),
           snapshot: attempt(() => follower.snapshot()),
           request: attempt(() => follower.request(1)),
           on: attempt(() => follower.on('change', () => {})),
           id: attempt(() => follower.id),
           isLeader: attempt(() => follower.isLeader),
           freeAgain: attempt(() => follower.free()),
           otherSet: attempt(() => other.set('k', 1)),
           closed: follower.closed,
         };
         const leading = leader.isLeader;
         await leader.close();
         return { uncaught, after, leading };",
        &[unique("free").into()],
    )
    .await;
    let uncaught = Reflect::get(&out, &"uncaught".into()).unwrap();
    assert_eq!(json(&uncaught), "[]", "nothing thrown uncaught");
    let after = Reflect::get(&out, &"after".into()).unwrap();
    for call in [
        "set", "delete", "get", "snapshot", "request", "on", "id", "isLeader", "otherSet",
    ] {
        let said = Reflect::get(&after, &call.into())
            .unwrap()
            .as_string()
            .unwrap();
        assert!(
            said.starts_with("GroupClosedError: "),
            "{call} after free(): {said}"
        );
    }
    assert_eq!(
        Reflect::get(&after, &"freeAgain".into())
            .unwrap()
            .as_string()
            .as_deref(),
        Some("returned"),
        "free() twice is harmless"
    );
    assert_eq!(
        Reflect::get(&after, &"closed".into()).unwrap(),
        JsValue::TRUE
    );
    assert_eq!(
        Reflect::get(&out, &"leading".into()).unwrap(),
        JsValue::TRUE
    );
}

#[wasm_bindgen_test]
async fn a_change_listener_that_writes_does_not_hang_the_page() {
    let out = js(
        "const [name] = args;
         const g = await openGroup({ name, mode: 'distributed' });
         const LIMIT = 2000;
         let calls = 0;
         // Writes on every change, its own included: without a bound the first set()
         // would never return.
         g.on('change', () => { calls += 1; if (calls < LIMIT) g.set('n', Math.random()); });
         g.set('n', 0);
         const atReturn = calls;
         await new Promise((r) => setTimeout(r, 0));
         const afterATask = calls;
         await until(() => calls >= LIMIT, 'the listener to run its course');
         await sleep(50);
         const total = calls;
         await g.close();
         return { atReturn, afterATask, total, LIMIT };",
        &[unique("feedback").into()],
    )
    .await;
    let get = |k: &str| Reflect::get(&out, &k.into()).unwrap().as_f64().unwrap();
    assert!(
        get("atReturn") >= 1.0 && get("atReturn") < get("LIMIT"),
        "the first set() returned after a bounded number of deliveries: {}",
        json(&out)
    );
    assert!(
        get("afterATask") < get("LIMIT"),
        "another task ran while the listener went on: {}",
        json(&out)
    );
    assert_eq!(
        get("total"),
        get("LIMIT"),
        "every write's change was delivered, none twice"
    );
}

#[wasm_bindgen_test]
async fn a_snapshot_holds_a_proto_key_as_its_own_property() {
    let out = js(
        "const [name] = args;
         const g = await openGroup({ name, mode: 'distributed' });
         g.set('__proto__', { polluted: true });
         g.set('plain', 1);
         const s = g.snapshot();
         const out = {
           own: Object.prototype.hasOwnProperty.call(s, '__proto__'),
           value: Object.getOwnPropertyDescriptor(s, '__proto__')?.value ?? null,
           prototype: Object.getPrototypeOf(s) === Object.prototype,
           polluted: 'polluted' in s,
           keys: Object.keys(s).sort(),
           get: g.get('__proto__'),
         };
         await g.close();
         return out;",
        &[unique("proto").into()],
    )
    .await;
    assert_eq!(
        json(&out),
        r#"{"own":true,"value":{"polluted":true},"prototype":true,"polluted":false,"keys":["__proto__","plain"],"get":{"polluted":true}}"#
    );
}

#[wasm_bindgen_test]
async fn an_oversized_request_is_refused_with_a_typed_error() {
    let out = js(
        "const [name] = args;
         const leader = await openGroup({ name });
         await race(leader.awaitLeadership(), 'the first group to lead');
         const asked = [];
         leader.on('request', (e) => asked.push(typeof e.value === 'string' ? e.value.length : e.value));
         const follower = await openGroup({ name });
         await until(() => follower.leader === leader.id, 'the follower to know the leader');
         // Over the default 16 MiB message limit: it cannot reach the leader.
         const big = 'x'.repeat(17 * 1024 * 1024);
         let refused = null;
         try { follower.request(big); } catch (e) { refused = { name: e.name, message: e.message, size: e.size, limit: e.limit }; }
         follower.request('small');
         await until(() => asked.includes(5), 'the small request');
         await sleep(50);
         await follower.close();
         await leader.close();
         return { refused, asked };",
        &[unique("oversized").into()],
    )
    .await;
    let refused = Reflect::get(&out, &"refused".into()).unwrap();
    assert!(
        refused.is_object(),
        "request() of 17 MiB returned without an error: {}",
        json(&out)
    );
    let field = |k: &str| Reflect::get(&refused, &k.into()).unwrap();
    assert_eq!(field("name").as_string().as_deref(), Some("TooLargeError"));
    let limit = field("limit").as_f64().expect("the limit");
    let size = field("size").as_f64().expect("the size");
    assert_eq!(limit, f64::from(16u32 << 20));
    assert!(size > limit, "{size} > {limit}");
    let message = field("message").as_string().unwrap();
    assert!(
        message.contains(&format!("{size}")) && message.contains(&format!("{limit}")),
        "the message names the size and the limit: {message}"
    );
    assert_eq!(
        json(&Reflect::get(&out, &"asked".into()).unwrap()),
        "[5]",
        "only the small request arrived"
    );
}

#[wasm_bindgen_test]
async fn a_rejected_message_is_told_to_rejected_listeners() {
    let group = unique("rejected");
    let out = js(
        "const [name, channelName] = args;
         const g = await openGroup({ name, mode: 'distributed' });
         const told = [];
         g.on('rejected', (e) => told.push(e));
         const channel = new BroadcastChannel(channelName);
         channel.postMessage(new Uint8Array([1, 2, 3, 4, 5]));
         channel.close();
         await until(() => told.length > 0, 'the rejection');
         await g.close();
         return told;",
        &[
            group.clone().into(),
            // The channel of the group (no `%` or `:` in the name to escape).
            format!("replisync:{group}:channel").into(),
        ],
    )
    .await;
    let told = js_sys::Array::from(&out);
    assert_eq!(told.length(), 1, "{}", json(&out));
    let first = told.get(0);
    assert_eq!(
        Reflect::get(&first, &"reason".into())
            .unwrap()
            .as_string()
            .as_deref(),
        Some("undecodable"),
        "{}",
        json(&out)
    );
    assert!(Reflect::get(&first, &"message".into())
        .unwrap()
        .as_string()
        .is_some_and(|m| !m.is_empty()));
}

#[wasm_bindgen_test]
async fn after_close_every_call_throws_and_bad_options_reject() {
    let out = js(
        "const [name] = args;
         const g = await openGroup({ name, mode: 'distributed' });
         g.set('there', 1);
         await g.close();
         const closed = {
           deleteMissing: attempt(() => g.delete('missing')),
           deleteThere: attempt(() => g.delete('there')),
           set: attempt(() => g.set('k', 1)),
           get: attempt(() => g.get('there')),
           snapshot: attempt(() => g.snapshot()),
           request: attempt(() => g.request(1)),
           on: attempt(() => g.on('change', () => {})),
         };
         // A getter that throws: its error rejects openGroup as it is.
         const thrown = new Error('from the getter');
         const getter = await openGroup({ get name() { throw thrown; } })
           .then(() => 'resolved', (e) => (e === thrown ? 'the getter error' : `${e.name}: ${e.message}`));
         const laterGetter = await openGroup({ name, get mode() { throw thrown; } })
           .then((g) => { g.close(); return 'resolved'; }, (e) => (e === thrown ? 'the getter error' : `${e.name}: ${e.message}`));
         // A Proxy whose ownKeys throws: openGroup rejects, it does not throw.
         const proxy = new Proxy({ name }, { ownKeys() { throw new RangeError('no keys'); } });
         let promise = null, sync = 'returned';
         try { promise = openGroup(proxy); } catch (e) { sync = `threw ${e.name}: ${e.message}`; }
         const proxied = promise === null ? null
           : await promise.then((g) => { g.close(); return 'resolved'; }, (e) => `${e.name}: ${e.message}`);
         return { closed, getter, laterGetter, sync, proxied };",
        &[unique("closed-calls").into()],
    )
    .await;
    let closed = Reflect::get(&out, &"closed".into()).unwrap();
    for call in js_sys::Object::keys(closed.unchecked_ref::<js_sys::Object>()).iter() {
        let said = Reflect::get(&closed, &call).unwrap().as_string().unwrap();
        assert!(
            said.starts_with("GroupClosedError: "),
            "{:?} after close(): {said}",
            call.as_string()
        );
    }
    let text = |k: &str| Reflect::get(&out, &k.into()).unwrap().as_string();
    assert_eq!(text("getter").as_deref(), Some("the getter error"));
    assert_eq!(text("laterGetter").as_deref(), Some("the getter error"));
    assert_eq!(
        text("sync").as_deref(),
        Some("returned"),
        "no synchronous throw"
    );
    assert_eq!(text("proxied").as_deref(), Some("RangeError: no keys"));
}

#[wasm_bindgen_test]
async fn a_memory_store_keeps_the_storage_event_fallback() {
    let group = unique("memory-storage-event");
    // Asked for: the storage event works while the state is kept in memory.
    let here = open(&group, Config::distributed(), |o| {
        o.storage = StorageChoice::Memory;
        o.channel = ChannelChoice::StorageEvent;
    });
    assert_eq!(here.store_kind(), StoreKind::Memory);
    assert_eq!(here.channel_kind(), ChannelKind::StorageEvent);
    assert!(here.degradations().is_empty(), "{:?}", here.degradations());
    // Taken as the fallback in a frame without BroadcastChannel: said as such, and not
    // as localStorage failing.
    let (iframe, frame_window) = frame();
    run_js("delete t.BroadcastChannel;", frame_window.unchecked_ref());
    let there = open(&group, Config::distributed(), |o| {
        o.window = Some(frame_window.clone());
        o.storage = StorageChoice::Memory;
    });
    assert_eq!(there.channel_kind(), ChannelKind::StorageEvent);
    assert!(
        matches!(there.degradations().as_slice(), [Degradation::Transport(why)] if why.contains("the storage event")),
        "{:?}",
        there.degradations()
    );
    set_title(&here, "memory, through the storage event");
    wait_for("the frame to see the write", || {
        title(&there).as_deref() == Some("memory, through the storage event")
    })
    .await;
    here.close();
    there.close();
    iframe.remove();
}

/// A replica id that sorts where the test needs it.
fn id(byte: u8) -> replisync::SourceId {
    replisync::SourceId::from_random_bytes([byte; 16])
}

#[wasm_bindgen_test]
async fn without_web_locks_a_leaving_leader_hands_over_at_once_despite_a_newcomer() {
    let group = unique("handover-newcomer");
    let gossip = |source: u8| {
        let group = group.clone();
        move || -> Tab {
            open(&group, Config::leader(), |o| {
                o.locks = false;
                o.source = Some(id(source));
            })
        }
    };
    let leader = gossip(0x80)();
    wait_for("the first tab to lead", || leader.is_leader()).await;
    let survivor = gossip(0xf0)();
    wait_for("the survivor to know the leader", || {
        survivor.leader() == Some(leader.source())
    })
    .await;
    // Past the survivor's own join grace (1.5 s by default).
    sleep(1_700).await;
    // A tab that has just opened, with a lower id than the survivor's: still in its
    // join grace, it cannot claim.
    let newcomer = gossip(0x01)();
    let peers = record(&survivor);
    wait_for("the survivor to hear the newcomer", || {
        peers
            .borrow()
            .iter()
            .any(|e| matches!(e, Event::PeerJoined { peer } if *peer == newcomer.source()))
    })
    .await;
    let start = Date::now();
    leader.close();
    wait_for("the survivor to lead", || survivor.is_leader()).await;
    let took = Date::now() - start;
    assert!(
        took < 250.0,
        "a leaving leader hands over at once: {took} ms (the stagger is 500 ms per peer ranked ahead)"
    );
    assert!(!newcomer.is_leader());
    survivor.close();
    newcomer.close();
}
