// What the end-to-end tests need, with nothing from npm: chromedriver started on a
// free port, a static server for the page and the package, and a WebDriver client
// over plain HTTP (Node's fetch).
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { once } from 'node:events';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const CHROMEDRIVER = process.env.CHROMEDRIVER ?? '/usr/bin/chromedriver';
const PATIENCE_MS = 15000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  return port;
}

/** Starts chromedriver; fails (never skips) when it is missing or does not answer. */
export async function startChromedriver() {
  const port = await freePort();
  const proc = spawn(CHROMEDRIVER, [`--port=${port}`], { stdio: 'ignore' });
  let failed = null;
  proc.on('error', (e) => { failed = e; });
  const url = `http://127.0.0.1:${port}`;
  const start = Date.now();
  for (;;) {
    if (failed) throw new Error(`chromedriver (${CHROMEDRIVER}) did not start: ${failed.message}`);
    try {
      const status = await (await fetch(`${url}/status`)).json();
      if (status.value?.ready) break;
    } catch { /* not listening yet */ }
    if (Date.now() - start > PATIENCE_MS) throw new Error(`chromedriver did not answer on ${url}`);
    await sleep(50);
  }
  return { url, stop: () => proc.kill() };
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.ts': 'text/plain' };

/** Serves `routes` (URL prefix → folder) on 127.0.0.1. */
export async function serve(routes) {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    for (const [prefix, dir] of Object.entries(routes)) {
      if (!path.startsWith(prefix)) continue;
      const rest = normalize(path.slice(prefix.length) || 'index.html').replace(/^(\.\.[/\\])+/, '');
      try {
        const body = await readFile(join(dir, rest));
        res.writeHead(200, { 'content-type': TYPES[extname(rest)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
        res.end(body);
      } catch {
        res.writeHead(404).end();
      }
      return;
    }
    res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

export class WebDriverError extends Error {}

/** One browser, driven over WebDriver; its tabs share BroadcastChannel and storage. */
export class Browser {
  static async start(driverUrl, extraArgs = []) {
    const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic',
      '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs];
    const browser = new Browser(driverUrl);
    const { value } = await browser.command('POST', '/session', {
      capabilities: { alwaysMatch: { browserName: 'chrome', 'goog:chromeOptions': { binary: CHROMIUM, args } } },
    });
    browser.session = value.sessionId;
    await browser.command('POST', `/session/${browser.session}/timeouts`, { script: 30000, pageLoad: 30000 });
    // The first tab stays open, blank, so that the session outlives every test tab.
    browser.home = (await browser.command('GET', `/session/${browser.session}/window`)).value;
    browser.current = browser.home;
    return browser;
  }

  constructor(url) { this.url = url; }

  async command(method, path, body) {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (!res.ok) throw new WebDriverError(`${method} ${path}: ${json.value?.error}: ${json.value?.message?.split('\n')[0]}`);
    return json;
  }

  s(path) { return `/session/${this.session}${path}`; }

  async switchTo(handle) {
    if (this.current !== handle) {
      await this.command('POST', this.s('/window'), { handle });
      this.current = handle;
    }
  }

  /** Opens a tab at `url` and waits for the package to load in it. */
  async open(url) {
    const { value } = await this.command('POST', this.s('/window/new'), { type: 'tab' });
    const tab = new Tab(this, value.handle);
    await this.switchTo(tab.handle);
    await this.command('POST', this.s('/url'), { url });
    await tab.run(() => new Promise((resolve, reject) => {
      const start = Date.now();
      const check = () => (window.ready ? resolve() : Date.now() - start > 10000 ? reject(new Error('the package did not load')) : setTimeout(check, 5));
      check();
    }));
    return tab;
  }

  async quit() {
    try { await this.command('DELETE', this.s('')); } catch { /* gone already */ }
  }
}

export class Tab {
  constructor(browser, handle) { this.browser = browser; this.handle = handle; }

  /** Runs `fn(...args)` in the tab (it may be async); its result must be JSON. */
  async run(fn, ...args) {
    const outcome = await this.tryRun(fn, ...args);
    if ('error' in outcome) {
      const e = new Error(`in the page: ${outcome.error.name}: ${outcome.error.message}`);
      e.page = outcome.error;
      throw e;
    }
    return outcome.ok;
  }

  /** As `run`, returning `{ ok }` or `{ error: { name, message } }`. */
  async tryRun(fn, ...args) {
    await this.browser.switchTo(this.handle);
    const script = `const args = Array.from(arguments); const done = args.pop();
      Promise.resolve().then(() => (${fn.toString()})(...args)).then(
        (v) => done({ ok: v === undefined ? null : v }),
        (e) => done({ error: { name: e && e.name, message: e && e.message !== undefined ? e.message : String(e) } }));`;
    const { value } = await this.browser.command('POST', this.browser.s('/execute/async'), { script, args });
    return value;
  }

  /** Closes the tab as a person would (the page gets pagehide). */
  async close() {
    await this.browser.switchTo(this.handle);
    await this.browser.command('DELETE', this.browser.s('/window'));
    this.browser.current = null;
    await this.browser.switchTo(this.browser.home);
  }

  /** Kills the tab's renderer: no handler runs. The driver's "tab crashed" is expected. */
  async crash() {
    await this.browser.switchTo(this.handle);
    try {
      await this.browser.command('POST', this.browser.s('/goog/cdp/execute'), { cmd: 'Page.crash', params: {} });
    } catch (e) {
      if (!/crash/i.test(e.message)) throw e;
    }
    await this.browser.switchTo(this.browser.home);
  }
}

/** A group name no other test uses. */
export const unique = (name) => `${name}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
