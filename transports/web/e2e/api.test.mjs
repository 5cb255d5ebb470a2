// The JavaScript API end to end, as an application uses it: real tabs of a headless
// Chromium, driven over WebDriver. Run by ../run-browser-tests.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Browser, serve, startChromedriver, unique } from './webdriver.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
let driver, server, browser, page;

before(async () => {
  driver = await startChromedriver();
  server = await serve({ '/pkg/': `${here}../pkg`, '/': here });
  browser = await Browser.start(driver.url);
  page = `${server.url}/index.html`;
});

after(async () => {
  await browser?.quit();
  server?.close();
  driver?.stop();
});

test('openGroup rejects bad options with a TypeError that says what to fix', async () => {
  const tab = await browser.open(page);
  const cases = [
    [undefined, /options must be an object/],
    ['session', /options must be an object/],
    [{}, /options\.name must be a string, got undefined/],
    [{ name: '' }, /group name is empty/],
    [{ name: 'x', mode: 'boss' }, /options\.mode must be one of 'leader', 'distributed', got the string "boss"/],
    [{ name: 'x', nmae: 'y' }, /unknown option 'nmae'/],
    [{ name: 'x', transport: 'carrier-pigeon' }, /options\.transport must be one of/],
    [{ name: 'x', storage: 'disk' }, /options\.storage must be one of/],
    [{ name: 'x', locks: 'yes' }, /options\.locks must be true or false/],
    [{ name: 'x', flushIntervalMs: -1 }, /flushIntervalMs must be a whole number/],
  ];
  for (const [options, message] of cases) {
    const outcome = await tab.tryRun((options) => replisync.openGroup(options), options);
    assert.ok(outcome.error, `rejected: ${JSON.stringify(options)}`);
    assert.equal(outcome.error.name, 'TypeError', JSON.stringify(options));
    assert.match(outcome.error.message, message);
  }
  await tab.close();
});

test('a distributed group: properties, set, get, delete, snapshot, change events', async () => {
  const name = unique('api-distributed');
  const a = await browser.open(page);
  const b = await browser.open(page);
  const props = await a.run(async (name) => {
    window.group = await replisync.openGroup({ name, mode: 'distributed' });
    return { id: group.id, name: group.name, mode: group.mode, transport: group.transport, storage: group.storage,
      isLeader: group.isLeader, leader: group.leader, term: group.term, closed: group.closed, degradations: group.degradations,
      leadership: group.leadership };
  }, name);
  assert.match(props.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.deepEqual({ ...props, id: undefined }, {
    id: undefined, name, mode: 'distributed', transport: 'broadcast-channel', storage: 'local-storage',
    isLeader: false, leader: null, term: 0, closed: false, degradations: [], leadership: 'none',
  });
  await b.run(async (name) => {
    window.group = await replisync.openGroup({ name, mode: 'distributed' });
    window.changes = [];
    window.stop = group.on('change', (e) => changes.push(e.keys));
  }, name);

  const local = await a.run(() => {
    const seen = [];
    const stop = group.on('change', (e) => seen.push(e.keys));
    group.set('n', 1);
    group.set('list', [1, 'two', { three: 3 }, null, true]);
    group.delete('n');
    group.delete('never-set');
    stop();
    group.set('after-unsubscribe', 0);
    return { seen, n: group.get('n'), list: group.get('list'), missing: group.get('missing'), snapshot: group.snapshot() };
  });
  assert.deepEqual(local.seen, [['n'], ['list'], ['n']], 'one change per write, none after unsubscribing');
  assert.equal(local.n, null, 'a deleted key reads as undefined (null over WebDriver)');
  assert.deepEqual(local.list, [1, 'two', { three: 3 }, null, true]);
  assert.deepEqual(local.snapshot, { list: [1, 'two', { three: 3 }, null, true], 'after-unsubscribe': 0 });

  const remote = await b.run(() => until(group, () => group.get('after-unsubscribe') === 0, 'the last write').then(() => {
    stop();
    return { snapshot: group.snapshot(), changed: [...new Set(changes.flat())].sort() };
  }));
  assert.deepEqual(remote.snapshot, local.snapshot);
  assert.ok(remote.changed.includes('list') && remote.changed.includes('after-unsubscribe'), remote.changed.join());
  assert.ok(remote.changed.every((k) => ['n', 'list', 'after-unsubscribe'].includes(k)), remote.changed.join());

  const awaited = await a.tryRun(() => group.awaitLeadership());
  assert.match(awaited.error.message, /distributed mode/);
  await a.run(() => group.close());
  await b.run(() => group.close());
  await a.close();
  await b.close();
});

test('bad arguments throw a TypeError that says what to fix', async () => {
  const tab = await browser.open(page);
  const errors = await tab.run(async (name) => {
    const group = await replisync.openGroup({ name, mode: 'distributed' });
    const attempt = (f) => { try { f(); return null; } catch (e) { return { name: e.name, message: e.message }; } };
    const cyclic = {}; cyclic.self = cyclic;
    const out = {
      key: attempt(() => group.set(42, 'v')),
      undefinedValue: attempt(() => group.set('k', undefined)),
      fn: attempt(() => group.set('k', () => 1)),
      cyclic: attempt(() => group.set('k', cyclic)),
      bigint: attempt(() => group.set('k', 10n)),
      getKey: attempt(() => group.get({})),
      deleteKey: attempt(() => group.delete(null)),
      request: attempt(() => group.request(undefined)),
      onType: attempt(() => group.on('changes', () => {})),
      onListener: attempt(() => group.on('change', 'not a function')),
    };
    await group.close();
    return out;
  }, unique('api-errors'));
  for (const [what, e] of Object.entries(errors)) assert.equal(e?.name, 'TypeError', what);
  assert.match(errors.key.message, /set\(key, \.\.\.\): key must be a string, got a number/);
  assert.match(errors.undefinedValue.message, /must be JSON .*got undefined; use delete\(key\)/);
  assert.match(errors.fn.message, /got a function/);
  assert.match(errors.cyclic.message, /cannot be written as JSON \(TypeError: .*circular/i);
  assert.match(errors.bigint.message, /cannot be written as JSON .*BigInt/);
  assert.match(errors.getKey.message, /get\(key, \.\.\.\): key must be a string, got an object/);
  assert.match(errors.onType.message, /type must be one of 'change', 'leader', 'request', 'degraded', 'peer', 'rejected', got the string "changes"/);
  assert.match(errors.onListener.message, /listener must be a function/);
  await tab.close();
});

test('leader mode: awaitLeadership, NotLeaderError, requests to the leader, leader events, close', async () => {
  const name = unique('api-leader');
  const a = await browser.open(page);
  const b = await browser.open(page);
  const first = await a.run(async (name) => {
    window.group = await replisync.openGroup({ name });
    await group.awaitLeadership();
    // The leader answers requests by writing.
    group.on('request', ({ from, value }) => group.set('asked', { from, value }));
    return { id: group.id, isLeader: group.isLeader, term: group.term, leadership: group.leadership };
  }, name);
  assert.equal(first.isLeader, true);
  assert.equal(first.leadership, 'web-locks');
  assert.ok(first.term >= 1);

  const follower = await b.run(async (name, leader) => {
    window.group = await replisync.openGroup({ name });
    window.leaderEvents = [];
    group.on('leader', (e) => leaderEvents.push(e));
    await until(group, () => group.leader === leader, 'the leader');
    let refused = null;
    try { group.set('k', 1); } catch (e) { refused = { name: e.name, message: e.message }; }
    group.request({ extend: 30 });
    const asked = await until(group, () => group.get('asked'), "the leader's answer");
    return { id: group.id, isLeader: group.isLeader, refused, asked };
  }, name, first.id);
  assert.equal(follower.isLeader, false);
  assert.equal(follower.refused.name, 'NotLeaderError');
  assert.match(follower.refused.message, /only the leader .* writes in leader mode; send a request/);
  assert.deepEqual(follower.asked, { from: follower.id, value: { extend: 30 } });

  // The follower waits for leadership; the leader closes and it takes over.
  await b.run(() => { window.promoted = group.awaitLeadership().then(() => 'led'); });
  await a.run(async () => {
    await group.close();
    const attempt = (f) => { try { f(); return null; } catch (e) { return e.name; } };
    return { set: attempt(() => group.set('k', 1)), closed: group.closed };
  }).then((after) => assert.deepEqual(after, { set: 'GroupClosedError', closed: true }));
  const promoted = await b.run(async (term) => ({
    outcome: await Promise.race([promoted, new Promise((_, reject) => setTimeout(() => reject(new Error('no leadership within 10 s')), 10000))]),
    last: leaderEvents.at(-1),
    term,
  }), first.term);
  assert.equal(promoted.outcome, 'led');
  assert.equal(promoted.last.isLeader, true);
  assert.equal(promoted.last.leader, follower.id);
  assert.ok(promoted.last.term > first.term);

  const closing = await b.run(async () => {
    const pending = group.awaitLeadership();
    await group.close();
    const late = await group.awaitLeadership().then(() => 'resolved', (e) => e.name);
    return { pending: await pending.then(() => 'resolved'), late };
  });
  assert.deepEqual(closing, { pending: 'resolved', late: 'GroupClosedError' });
  await a.close();
  await b.close();
});

test('without localStorage the group keeps its state in memory and says so', async () => {
  const tab = await browser.open(page);
  const outcome = await tab.run(async (name) => {
    Object.defineProperty(window, 'localStorage', { get() { throw new DOMException('The operation is insecure.', 'SecurityError'); } });
    const group = await replisync.openGroup({ name, mode: 'distributed' });
    const heard = [];
    group.on('degraded', (e) => heard.push(e));
    group.set('still', 'works');
    const out = { storage: group.storage, heard, value: group.get('still'), degradations: group.degradations };
    await group.close();
    return out;
  }, unique('api-memory'));
  assert.equal(outcome.storage, 'memory');
  assert.equal(outcome.value, 'works');
  assert.equal(outcome.heard.length, 1, 'a listener added after open hears the degradation in force');
  assert.equal(outcome.heard[0].reason, 'store');
  assert.match(outcome.heard[0].message, /SecurityError.*kept in memory only/);
  assert.deepEqual(outcome.degradations, outcome.heard);
  await tab.close();
});

test('without Web Locks a leader group leads by gossip and says so', async () => {
  const tab = await browser.open(page);
  const outcome = await tab.run(async (name) => {
    Object.defineProperty(Navigator.prototype, 'locks', { get() { return undefined; } });
    const group = await replisync.openGroup({ name });
    const heard = [];
    group.on('degraded', (e) => heard.push(e));
    await Promise.race([group.awaitLeadership(), new Promise((_, r) => setTimeout(() => r(new Error('no leadership in 10 s')), 10000))]);
    const out = { leadership: group.leadership, isLeader: group.isLeader, heard };
    await group.close();
    const chosen = await replisync.openGroup({ name: `${name}-chosen`, locks: false });
    out.chosen = { leadership: chosen.leadership, degradations: chosen.degradations.length };
    await chosen.close();
    return out;
  }, unique('api-gossip'));
  assert.equal(outcome.leadership, 'gossip');
  assert.equal(outcome.isLeader, true, 'a lone tab leads by gossip too');
  assert.equal(outcome.heard.length, 1);
  assert.equal(outcome.heard[0].reason, 'transport');
  assert.match(outcome.heard[0].message, /Web Locks API is missing: leadership is settled by gossip/);
  assert.deepEqual(outcome.chosen, { leadership: 'gossip', degradations: 0 }, 'locks: false is a choice, not a degradation');
  await tab.close();
});
