// How long a group lives, with the garbage collector forced (Chromium's --expose-gc):
// real tabs of a headless Chromium, driven over WebDriver. Run by ../run-browser-tests.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Browser, serve, startChromedriver, unique } from './webdriver.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
let driver, server, browser, page;

before(async () => {
  driver = await startChromedriver();
  server = await serve({ '/pkg/': `${here}../pkg`, '/': here });
  browser = await Browser.start(driver.url, ['--js-flags=--expose-gc']);
  page = `${server.url}/index.html`;
});

after(async () => {
  await browser?.quit();
  server?.close();
  driver?.stop();
});

/** Opens a group in `tab` keeping no reference to it, only its id, a `change`
 * listener that counts into `window.heard`, and a FinalizationRegistry that says when
 * the object was collected. Leads first if `lead`. */
const openUnreferenced = (tab, name, mode, lead) => tab.run(async (name, mode, lead) => {
  window.heard = [];
  window.collected = false;
  // Waits until the listener heard a change of `key` (fails after 10 s).
  window.heardKey = async (key) => {
    const start = Date.now();
    while (!heard.includes(key)) {
      if (Date.now() - start > 10000) throw new Error(`the listener did not hear '${key}'`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const registry = new FinalizationRegistry(() => { window.collected = true; });
  window.keepRegistry = registry;
  window.groupId = await replisync.openGroup({ name, mode }).then(async (g) => {
    g.on('change', (e) => heard.push(...e.keys));
    registry.register(g, 'group');
    if (lead) await Promise.race([g.awaitLeadership(), new Promise((_, r) => setTimeout(() => r(new Error('no leadership in 10 s')), 10000))]);
    return g.id;
  });
  return groupId;
}, name, mode, lead);

/** Collects garbage until the group's object is gone (or fails after 5 s). */
const collect = (tab) => tab.run(async () => {
  const start = Date.now();
  while (!collected) {
    if (Date.now() - start > 5000) throw new Error('the group object was not collected');
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  // Let the finalizers of the bindings run too.
  for (let i = 0; i < 5; i++) { gc(); await new Promise((r) => setTimeout(r, 20)); }
  return true;
});

test('a group whose object was collected keeps its listeners (distributed)', async () => {
  const name = unique('gc-distributed');
  const a = await browser.open(page);
  const b = await browser.open(page);
  const id = await openUnreferenced(a, name, 'distributed', false);
  await b.run(async (name, id) => {
    window.group = await replisync.openGroup({ name, mode: 'distributed' });
    window.peers = [];
    group.on('peer', (e) => peers.push(e));
    group.set('before', 1);
  }, name, id);
  await a.run(() => heardKey('before'));
  await collect(a);
  const seen = await b.run(async () => {
    group.set('after', 2);
    await new Promise((r) => setTimeout(r, 300));
    return peers;
  });
  assert.deepEqual(seen.filter((p) => !p.joined), [], 'the collected group did not leave');
  await a.run(() => heardKey('after'));
  await b.run(() => group.close());
  await a.close();
  await b.close();
});

test('a leader whose object was collected keeps leading (leader mode)', async () => {
  const name = unique('gc-leader');
  const a = await browser.open(page);
  const b = await browser.open(page);
  const id = await openUnreferenced(a, name, 'leader', true);
  const before = await b.run(async (name, id) => {
    window.group = await replisync.openGroup({ name });
    window.leaders = [];
    group.on('leader', (e) => leaders.push(e));
    await until(group, () => group.leader === id, 'the leader');
    window.leaders = [];
    return group.term;
  }, name, id);
  await collect(a);
  // A group closed by the collector would say goodbye and hand over at once.
  const after = await b.run(async () => {
    await new Promise((r) => setTimeout(r, 500));
    return { leader: group.leader, term: group.term, isLeader: group.isLeader, leaders };
  });
  assert.deepEqual(after, { leader: id, term: before, isLeader: false, leaders: [] });
  await b.run(() => group.close());
  await a.close();
  await b.close();
});
