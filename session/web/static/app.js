// The page of the session service (form 4): every tab runs the service through the
// wasm module and draws what it sees. The query string chooses the group and its
// default settings, e.g. index.html?name=demo&mode=leader&idleGraceMs=5000&countdownMs=30000&warnBeforeMs=10000
import init, { openSession } from './pkg/replisync_session_web.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const options = { name: params.get('name') ?? 'session', mode: params.get('mode') ?? 'leader' };
for (const key of ['idleGraceMs', 'countdownMs', 'warnBeforeMs', 'activityResetCooldownMs', 'maxExtendPerSession']) {
  if (params.has(key)) options[key] = Number(params.get(key));
}
// Without settings in the address, short ones that show every phase within a minute.
if (!params.has('idleGraceMs') && !params.has('countdownMs') && !params.has('warnBeforeMs')) {
  Object.assign(options, { idleGraceMs: 10000, countdownMs: 30000, warnBeforeMs: 10000 });
}

await init();
const session = await openSession(options);
// For the console, and for the tests that drive the page.
window.session = session;
window.openSession = openSession;

const short = (id) => (id ? id.slice(0, 8) : '—');
const clock = (ms) => {
  if (ms === null) return '—';
  const s = Math.ceil(ms / 100) / 10;
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, '0')}`;
};

function render() {
  const v = session.view();
  document.body.dataset.phase = v.phase;
  $('phase').textContent = v.paused ? `${v.phase} (paused)` : v.phase;
  $('remaining').textContent = clock(v.remainingMs);
  const ends = $('ends');
  ends.textContent = v.countdownEndAt === null ? '—' : new Date(v.countdownEndAt).toLocaleTimeString();
  ends.dataset.countdownEndAt = v.countdownEndAt ?? '';
  $('role').textContent = v.role;
  $('term').textContent = String(v.term);
  $('leader').textContent = v.mode === 'distributed' ? 'none (distributed)' : short(v.leader);
  $('me').textContent = short(v.id);
  const form = $('config');
  if (!form.contains(document.activeElement)) {
    for (const key of ['idleGraceMs', 'countdownMs', 'warnBeforeMs']) form.elements[key].value = v.config[key];
  }
}

const log = [];
session.on('event', (e) => {
  const extra = e.event === 'reset' ? ` (${e.cause})`
    : e.event === 'refused' ? `: ${e.operation} from ${short(e.from)}: ${e.message}`
    : e.event.startsWith('leader') ? ` (term ${e.term})` : '';
  log.unshift(`${new Date(e.now).toLocaleTimeString()}  ${e.event}${extra}  ${e.phase} ${clock(e.remainingMs)}`);
  log.length = Math.min(log.length, 50);
  $('log').textContent = log.join('\n');
  render();
});
session.on('change', render);

const failed = (e) => { $('error').textContent = e.message; };
for (const button of document.querySelectorAll('button[data-op]')) {
  button.addEventListener('click', () => {
    $('error').textContent = '';
    try { session[button.dataset.op](); } catch (e) { failed(e); }
  });
}
$('config').addEventListener('submit', (event) => {
  event.preventDefault();
  $('error').textContent = '';
  const settings = {};
  for (const key of ['idleGraceMs', 'countdownMs', 'warnBeforeMs']) settings[key] = Number(event.target.elements[key].value);
  try { session.setConfig(settings); } catch (e) { failed(e); }
  document.activeElement.blur();
});

// The countdown is live: redrawn from the shared deadline, not counted down by a timer.
setInterval(render, 100);
render();
window.ready = true;
