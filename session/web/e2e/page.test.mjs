// The session service's page (form 4) in real tabs of one headless Chromium, driven
// over WebDriver with the web transport's harness. Run by ../run-browser-tests (which
// transports/web/run-browser-tests calls). Every wait is raced against a timeout; no
// assertion is on speed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Browser, serve, startChromedriver, unique } from '../../../transports/web/e2e/webdriver.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
let driver, server, browser;

before(async () => {
  driver = await startChromedriver();
  server = await serve({ '/': `${here}../dist` });
  browser = await Browser.start(driver.url);
});

after(async () => {
  await browser?.quit();
  server?.close();
  driver?.stop();
});

/** Opens the page in a new tab, in group `name`, with these default settings. Its
 *  events are kept in `window.events`. */
async function openTab(name, settings = {}) {
  const query = new URLSearchParams({ name, idleGraceMs: 500, countdownMs: 600000, warnBeforeMs: 1000, ...settings });
  const tab = await browser.open(`${server.url}/index.html?${query}`);
  tab.id = await tab.run(() => {
    window.events = [];
    session.on('event', (e) => events.push(e));
    return session.id;
  });
  return tab;
}

const view = (tab) => tab.run(() => session.view());

/** Waits in `tab` until `check(view, arg)` holds, and returns that view; fails with
 *  the last view after `ms`. `check` runs in the page. */
const waitView = (tab, what, check, arg = null, ms = 15000) => tab.run(async (what, source, arg, ms) => {
  const check = (0, eval)(`(${source})`);
  const start = Date.now();
  for (;;) {
    const v = session.view();
    if (check(v, arg)) return v;
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}; the view: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}, what, check.toString(), arg, ms);

/** What the page shows: the phase, and the deadline it draws. */
const shown = (tab) => tab.run(() => ({
  phase: document.getElementById('phase').textContent,
  countdownEndAt: Number(document.getElementById('ends').dataset.countdownEndAt),
  role: document.getElementById('role').textContent,
}));

const click = (tab, op) => tab.run((op) => {
  document.querySelector(`button[data-op="${op}"]`).click();
  const error = document.getElementById('error').textContent;
  if (error) throw new Error(`${op}: ${error}`);
}, op);

/** Tab A leads and has started a session; tab B follows it and sees the session. */
async function leaderAndFollower(name, settings) {
  const a = await openTab(name, settings);
  await waitView(a, 'A to lead', (v) => v.isLeader);
  const b = await openTab(name, settings);
  await waitView(b, 'B to know A as leader', (v, leader) => v.leader === leader && v.role === 'follower', a.id);
  await click(a, 'start');
  const started = await waitView(a, 'the session to start in A', (v) => v.countdownEndAt !== null);
  await waitView(b, "A's deadline in B", (v, end) => v.countdownEndAt === end, started.countdownEndAt);
  return { a, b };
}

test('activity in tab B resets tab A', async () => {
  const { a, b } = await leaderAndFollower(unique('activity'));
  // Idle grace of 0.5 s: A's countdown starts; both tabs show it with one deadline.
  const counting = await waitView(a, 'the countdown in A', (v) => v.phase === 'COUNTDOWN');
  await waitView(b, 'the countdown in B', (v, end) => v.phase === 'COUNTDOWN' && v.countdownEndAt === end, counting.countdownEndAt);

  await click(b, 'activity'); // B follows: the activity goes to A as a request
  const reset = await waitView(a, 'A reset by activity', (v, end) => v.countdownEndAt > end, counting.countdownEndAt);
  assert.ok(reset.idleStartAt > counting.idleStartAt, 'the idle grace starts over');
  const events = await a.run(() => events.filter((e) => e.event === 'reset').map((e) => e.cause));
  assert.deepEqual(events, ['activity'], 'A reports one reset, by activity');
  const inB = await waitView(b, "A's new deadline in B", (v, end) => v.countdownEndAt === end, reset.countdownEndAt);
  assert.equal(inB.idleStartAt, reset.idleStartAt);
  // The pages draw that deadline.
  assert.equal((await shown(a)).countdownEndAt, reset.countdownEndAt);
  assert.equal((await shown(b)).countdownEndAt, reset.countdownEndAt);
  assert.equal((await shown(a)).role, 'leader');
  assert.equal((await shown(b)).role, 'follower');
  await a.close();
  await b.close();
});

test('closing the leader tab hands the timers over without moving the deadline', async () => {
  // An idle grace of 3 s: the handover usually falls in IDLE, and the successor then
  // records the countdown's start itself (either way, nothing below depends on it).
  const { a, b } = await leaderAndFollower(unique('handover'), { idleGraceMs: 3000 });
  const before = await view(b);
  const leaderBefore = await view(a);
  await a.close();
  const after = await waitView(b, 'B to lead', (v) => v.isLeader);
  assert.equal(after.countdownEndAt, before.countdownEndAt, 'the deadline did not move');
  assert.equal(after.idleStartAt, before.idleStartAt);
  assert.ok(after.term > leaderBefore.term, `a newer term: ${after.term} > ${leaderBefore.term}`);
  const gained = await b.run(() => events.filter((e) => e.event === 'leader-gained').map((e) => e.term));
  assert.deepEqual(gained, [after.term], 'B reports its leadership');
  // B runs the timers: the countdown starts on the same deadline.
  const counting = await waitView(b, 'the countdown in B', (v) => v.phase === 'COUNTDOWN');
  assert.equal(counting.countdownEndAt, before.countdownEndAt);
  assert.equal((await shown(b)).role, 'leader');
  await b.close();
});

test('a third tab opened later shows the same countdown_end_at', async () => {
  const name = unique('third');
  const { a, b } = await leaderAndFollower(name);
  const running = await waitView(a, 'the countdown in A', (v) => v.phase === 'COUNTDOWN');
  // The third tab brings other settings: it adopts the session's instead.
  const c = await openTab(name, { idleGraceMs: 99000, countdownMs: 99000, warnBeforeMs: 9000 });
  const seen = await waitView(c, "the session's deadline in C", (v, end) => v.countdownEndAt === end, running.countdownEndAt);
  assert.equal(seen.idleStartAt, running.idleStartAt);
  assert.equal(seen.phase, 'COUNTDOWN');
  assert.deepEqual(seen.config, running.config, 'C adopted the running settings');
  assert.equal(seen.role, 'follower');
  assert.equal(seen.leader, a.id);
  assert.equal((await shown(c)).countdownEndAt, running.countdownEndAt);
  assert.equal((await view(a)).countdownEndAt, running.countdownEndAt, 'opening C moved nothing');
  await c.close();
  await b.close();
  await a.close();
});

test('distributed mode: an operation in any tab applies in every tab', async () => {
  const name = unique('distributed');
  const settings = { mode: 'distributed' };
  const a = await openTab(name, settings);
  const b = await openTab(name, settings);
  assert.equal((await view(a)).role, 'peer');
  await click(a, 'start');
  const started = await waitView(a, 'the session in A', (v) => v.countdownEndAt !== null);
  await waitView(b, "A's session in B", (v, end) => v.countdownEndAt === end, started.countdownEndAt);
  await click(b, 'pause');
  await waitView(a, "B's pause in A", (v) => v.paused);
  await click(a, 'resume');
  const resumed = await waitView(b, "A's resume in B", (v) => !v.paused && v.countdownEndAt !== null);
  await waitView(a, 'one deadline', (v, end) => v.countdownEndAt === end, resumed.countdownEndAt);
  await click(b, 'expire');
  await waitView(a, "B's expiry in A", (v) => v.phase === 'EXPIRED');
  await a.close();
  await b.close();
});

test('the API refuses bad input and refused operations, saying why', async () => {
  const tab = await openTab(unique('api'));
  const outcome = await tab.run(async () => {
    const caught = async (f) => { try { await f(); return null; } catch (e) { return { name: e.name, refusal: e.refusal, message: e.message }; } };
    return {
      noName: await caught(() => openSession({})),
      badMode: await caught(() => openSession({ name: 'x', mode: 'boss' })),
      unknown: await caught(() => openSession({ name: 'x', idleGrace: 5 })),
      zeroCountdown: await caught(() => openSession({ name: 'x', countdownMs: 0 })),
      notRunning: await caught(() => session.activity()),
      badSetting: await caught(() => session.setConfig({ countdownMs: -1 })),
      invalid: await caught(() => session.setConfig({ countdownMs: 0 })),
    };
  });
  assert.equal(outcome.noName.name, 'TypeError');
  assert.match(outcome.badMode.message, /mode must be 'leader' or 'distributed'/);
  assert.match(outcome.unknown.message, /unknown option 'idleGrace'/);
  assert.equal(outcome.zeroCountdown.name, 'TypeError');
  assert.deepEqual([outcome.notRunning.name, outcome.notRunning.refusal], ['RefusedError', 'not-running']);
  assert.equal(outcome.badSetting.name, 'TypeError');
  assert.deepEqual([outcome.invalid.name, outcome.invalid.refusal], ['RefusedError', 'invalid-config']);
  await tab.close();
});
