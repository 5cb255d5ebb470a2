// Two (and more) real tabs of one headless Chromium, driven over WebDriver: what the
// issue asks of the browser transport across tabs. Run by ../run-browser-tests.
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

/** Opens `name` in a new tab; the group is `window.group`. */
async function tabInGroup(name, options = {}) {
  const tab = await browser.open(page);
  tab.id = await tab.run(async (name, options) => {
    window.group = await replisync.openGroup({ name, ...options });
    return group.id;
  }, name, options);
  return tab;
}

const leaderOf = (tab) => tab.run(() => ({ isLeader: group.isLeader, leader: group.leader, term: group.term }));

/** Waits in `tab` until it leads, or until it knows `other` as leader. */
const awaitLeader = (tab, leader) => tab.run((leader) => until(group, () => (leader === null ? group.isLeader : group.leader === leader), `leader ${leader}`), leader);

test('a write in tab A appears in tab B', async () => {
  const name = unique('write');
  const a = await tabInGroup(name, { mode: 'distributed' });
  const b = await tabInGroup(name, { mode: 'distributed' });
  await a.run(() => group.set('greeting', { text: 'hello from A', n: 1 }));
  const seen = await b.run(() => until(group, () => group.get('greeting'), 'the greeting'));
  assert.deepEqual(seen, { text: 'hello from A', n: 1 });
  await b.run(() => group.delete('greeting'));
  await a.run(() => until(group, () => group.get('greeting') === undefined, 'the deletion'));
  await a.close();
  await b.close();
});

for (const locks of [true, false]) {
  const how = locks ? 'with Web Locks' : 'by gossip';

  test(`closing the leader tab hands leadership to the other (${how})`, async () => {
    const name = unique('close');
    const a = await tabInGroup(name, { locks });
    await awaitLeader(a, null);
    const b = await tabInGroup(name, { locks });
    assert.equal(await b.run(() => group.leadership), locks ? 'web-locks' : 'gossip');
    await awaitLeader(b, a.id);
    const before = await leaderOf(a);
    await a.close();
    await awaitLeader(b, null);
    const after = await leaderOf(b);
    assert.equal(after.isLeader, true);
    assert.ok(after.term > before.term, `a newer term: ${after.term} > ${before.term}`);
    await b.close();
  });

  test(`a crashed leader tab is replaced (${how})`, async () => {
    const name = unique('crash');
    const a = await tabInGroup(name, { locks });
    await awaitLeader(a, null);
    const b = await tabInGroup(name, { locks });
    await awaitLeader(b, a.id);
    await a.run(() => group.set('before', 'the crash'));
    await b.run(() => until(group, () => group.get('before'), 'the write before the crash'));
    await a.crash();
    await awaitLeader(b, null);
    await b.run(() => group.set('after', 'the crash'));
    assert.equal(await b.run(() => group.get('before')), 'the crash');
    await b.close();
  });
}

test('a tab opened later restores the state from localStorage', async () => {
  const name = unique('restore');
  const a = await tabInGroup(name);
  await awaitLeader(a, null);
  await a.run(() => { group.set('deadline', 90); group.set('user', { name: 'ada' }); });
  await a.close();
  // No tab of the group is open: what the new one holds came from localStorage, read
  // before openGroup resolved.
  const later = await tabInGroup(name);
  assert.deepEqual(await later.run(() => group.snapshot()), { deadline: 90, user: { name: 'ada' } });
  await later.close();
});

test('the storage-event fallback carries a group between real tabs', async () => {
  const name = unique('fallback');
  const a = await tabInGroup(name, { mode: 'distributed', transport: 'storage-event' });
  const b = await tabInGroup(name, { mode: 'distributed', transport: 'storage-event' });
  assert.equal(await b.run(() => group.transport), 'storage-event');
  await a.run(() => group.set('via', 'storage'));
  assert.equal(await b.run(() => until(group, () => group.get('via'), 'the write')), 'storage');
  await a.close();
  await b.close();
});
