// Tab-to-tab figures in headless Chromium, beside raw BroadcastChannel in the same run:
// propagation of one write (round trip / 2, p50 and p99), first leadership, and
// failover after the leader's tab closes or crashes, with and without Web Locks.
//
//   node transports/web/e2e/bench.mjs [--rounds 500] [--failovers 5]
//
// Needs the package built (../build-pkg) and chromium + chromedriver, like the tests.
// Timer throttling of background tabs is turned off, so that the figures measure the
// library, not the browser's power saving (a hidden tab's timers run late; messages
// are not delayed).
import { fileURLToPath } from 'node:url';
import { Browser, serve, startChromedriver, unique } from './webdriver.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const ROUNDS = arg('rounds', 500);
const FAILOVERS = arg('failovers', 5);
const here = fileURLToPath(new URL('.', import.meta.url));
const clock = () => performance.timeOrigin + performance.now();

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const median = (xs) => quantile(xs, 0.5);
const ms = (x) => `${x.toFixed(x < 10 ? 2 : 0)} ms`;

const driver = await startChromedriver();
const server = await serve({ '/pkg/': `${here}../pkg`, '/': here });
const browser = await Browser.start(driver.url, [
  '--disable-background-timer-throttling', '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows',
]);
const page = `${server.url}/index.html`;
const rows = [];

try {
  // Raw BroadcastChannel: a echoes b's posts.
  {
    const name = unique('raw');
    const a = await browser.open(page);
    const b = await browser.open(page);
    await b.run((name) => { const c = new BroadcastChannel(name); c.onmessage = (e) => c.postMessage(e.data); window.echo = c; }, name);
    const halves = await a.run(async (name, rounds) => {
      const c = new BroadcastChannel(name);
      const out = [];
      for (let i = 0; i < rounds + 50; i++) {
        const t0 = performance.now();
        await new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no echo within 5 s')), 5000);
          c.onmessage = () => { clearTimeout(timer); resolve(); };
          c.postMessage(new Uint8Array([i & 255]));
        });
        if (i >= 50) out.push((performance.now() - t0) / 2);
      }
      c.close();
      return out;
    }, name, ROUNDS);
    rows.push(['propagation, raw BroadcastChannel (one Uint8Array)', median(halves), quantile(halves, 0.99)]);
    await a.close();
    await b.close();
  }

  // replisync: b writes back what a wrote; a times the round trip.
  for (const [storage, gap, storeDelayMs] of [['local-storage', 0, 0], ['local-storage', 5, 0], ['local-storage', 0, 20], ['local-storage', 5, 20], ['memory', 0, 0]]) {
    const name = unique('propagation');
    const a = await browser.open(page);
    const b = await browser.open(page);
    await b.run(async (name, storage, storeDelayMs) => {
      window.group = await replisync.openGroup({ name, mode: 'distributed', storage, storeDelayMs });
      group.on('change', ({ keys }) => { if (keys.includes('ping')) group.set('pong', group.get('ping')); });
    }, name, storage, storeDelayMs);
    const halves = await a.run(async (name, rounds, storage, gap, storeDelayMs) => {
      window.group = await replisync.openGroup({ name, mode: 'distributed', storage, storeDelayMs });
      const out = [];
      for (let i = 0; i < rounds + 50; i++) {
        if (gap) await new Promise((r) => setTimeout(r, gap));
        const t0 = performance.now();
        // Timed in the listener: when the application hears of the answer.
        const t1 = await new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5000);
          const stop = group.on('change', ({ keys }) => {
            if (keys.includes('pong') && group.get('pong') === i) { const t = performance.now(); clearTimeout(timer); stop(); resolve(t); }
          });
          group.set('ping', i);
        });
        if (i >= 50) out.push((t1 - t0) / 2);
      }
      return out;
    }, name, ROUNDS, storage, gap, storeDelayMs);
    rows.push([`propagation, replisync (one key of a JSON map, ${storage} store${storeDelayMs ? ` written ${storeDelayMs} ms later` : ''}${gap ? `, writes ${gap} ms apart` : ', back to back'})`, median(halves), quantile(halves, 0.99)]);
    await a.run(() => group.close());
    await b.run(() => group.close());
    await a.close();
    await b.close();
  }

  for (const locks of [true, false]) {
    const label = locks ? 'with Web Locks' : 'without Web Locks';
    // First leadership, from openGroup to leading a fresh group: in a fresh tab (cold:
    // the wasm's first run, its functions compiled as they are first called), then
    // again in the same tab (warm).
    const cold = [];
    const warm = [];
    for (let i = 0; i < FAILOVERS; i++) {
      const tab = await browser.open(page);
      const [c, w] = await tab.run(async (name, locks) => {
        const lead = async (name) => {
          const t0 = performance.now();
          const group = await replisync.openGroup({ name, locks });
          await Promise.race([group.awaitLeadership(), new Promise((_, r) => setTimeout(() => r(new Error('no leadership in 10 s')), 10000))]);
          const took = performance.now() - t0;
          await group.close();
          return took;
        };
        return [await lead(`${name}-cold`), await lead(`${name}-warm`)];
      }, unique('first'), locks);
      cold.push(c);
      warm.push(w);
      await tab.close();
    }
    rows.push([`first leadership in a fresh tab (the wasm's first run), ${label}`, median(cold), Math.max(...cold)]);
    rows.push([`first leadership, ${label}`, median(warm), Math.max(...warm)]);

    for (const how of ['close', 'crash']) {
      const times = [];
      for (let i = 0; i < FAILOVERS; i++) {
        const name = unique(`failover-${how}`);
        const a = await browser.open(page);
        await a.run(async (name, locks) => {
          addEventListener('pagehide', () => localStorage.setItem(`${name}:closed-at`, String(performance.timeOrigin + performance.now())));
          window.group = await replisync.openGroup({ name, locks });
          await group.awaitLeadership();
        }, name, locks);
        const b = await browser.open(page);
        await b.run(async (name, locks) => {
          window.group = await replisync.openGroup({ name, locks });
          await until(group, () => group.leader !== null && !group.isLeader, 'a leader elsewhere');
          // A follower that has been in the group for a while (past its join grace).
          await new Promise((r) => setTimeout(r, 2000));
          window.led = group.awaitLeadership().then(() => performance.timeOrigin + performance.now());
        }, name, locks);
        let from;
        if (how === 'close') {
          await a.close();
        } else {
          from = clock();
          await a.crash();
        }
        const led = await b.run((name) => Promise.race([
          led, new Promise((_, r) => setTimeout(() => r(new Error('no failover in 15 s')), 15000)),
        ]).then((t) => ({ t, closedAt: Number(localStorage.getItem(`${name}:closed-at`)) })), name);
        times.push(led.t - (how === 'close' ? led.closedAt : from));
        await b.run(() => group.close());
        await b.close();
      }
      rows.push([`failover after the leader's tab ${how === 'close' ? 'closes' : 'crashes'}, ${label}`, median(times), Math.max(...times)]);
    }
  }
} finally {
  await browser.quit();
  server.close();
  driver.stop();
}

const version = (await import('node:child_process')).execFileSync(process.env.CHROMIUM ?? '/usr/bin/chromium', ['--version']).toString().trim();
console.log(`\n${version}; ${ROUNDS} writes per propagation figure, ${FAILOVERS} runs per leadership figure\n`);
console.log('| measure | p50 (median) | p99 (max for leadership) |');
console.log('|---|---:|---:|');
for (const [what, p50, p99] of rows) console.log(`| ${what} | ${ms(p50)} | ${ms(p99)} |`);
