// replay's live view: plain JS and canvas, no dependency. See web/doc.go for
// the contract with the server. State lives in S; the DOM is redrawn from it.
'use strict';

const MEASURES = [
  { key: 'loss', title: 'training loss' },
  { key: 'test_loss', title: 'test loss' },
  { key: 'test_acc', title: 'test accuracy' },
  { key: 'step_dist', title: 'step distance (log)', log: true },
  { key: 'param_norm', title: 'parameter norm' },
];
const BLOCK = 64; // the server's block of forward summaries (server/series_blocks.go)
const COLORS = { forward: '#1f77b4', backward: '#ff7f0e' };
const COMPARE_COLORS = ['#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

const S = {
  token: '',
  runs: new Map(),        // name → api.RunStatus
  streams: new Map(),     // name → AbortController
  cur: null,              // selected run
  view: null,             // {from, to} when zoomed, null: the whole run
  width: 1,               // steps per bucket of the data held
  data: { forward: null, backward: null }, // {buckets: [...], anchors: [...]}
  compare: [],            // [{name, forward, backward}]
  frontier: 0,            // backward frontier the data was fetched against
  fetching: false, again: false,
  gen: 0,                 // bumped when the view changes: older answers are dropped
  cursor: null,           // step under the mouse
  drag: null,
  drawn: { anchors: [], forward: 0, backward: 0, draws: 0 }, // for tests and curiosity
  fetches: 0, events: 0, allEvents: 0,
  smooth: 'none',         // the smooth parameter the data held was fetched with
};
window.replayView = S; // the browser test reads it

// ---- API ----------------------------------------------------------------

function initToken() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) {
    S.token = decodeURIComponent(m[1]);
    sessionStorage.setItem('replay-token', S.token);
    history.replaceState(null, '', location.pathname + location.search + location.hash.replace(/(^#|&)token=[^&]+/, '$1'));
  } else {
    S.token = sessionStorage.getItem('replay-token') || '';
  }
}

function headers(extra) {
  const h = Object.assign({}, extra);
  if (S.token) h['Authorization'] = 'Bearer ' + S.token;
  return h;
}

async function api(method, path, body) {
  const opts = { method, headers: headers(method === 'GET' ? {} : { 'X-Replay-CSRF': '1', 'Content-Type': 'application/json' }), credentials: 'same-origin' };
  if (body !== undefined) opts.body = JSON.stringify(body);
  const resp = await fetch(path, opts);
  const text = await resp.text();
  let v = null;
  try { v = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
  if (!resp.ok) throw new Error((v && v.error) || (resp.status + ' ' + resp.statusText));
  return v;
}

const runPath = (name, rest) => '/v1/runs/' + encodeURIComponent(name) + (rest || '');

// ---- events (Server-Sent Events read with fetch, to carry the token) ---

// readSSE reads one event stream response, calling onEv with each
// event's JSON and id, until the stream ends or onEv returns true.
async function readSSE(resp, onEv) {
  const rd = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await rd.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i); buf = buf.slice(i + 2);
      let data = '', id = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('data: ')) data += line.slice(6);
        else if (line.startsWith('id: ')) id = line.slice(4);
      }
      if (!data) continue; // a keep-alive comment
      if (onEv(JSON.parse(data), id)) { rd.cancel(); return; }
    }
  }
}

// follow opens the event stream of the selected run (anchors, progress,
// rollbacks: what the charts follow), closing the one of the run shown
// before. The runs list follows the daemon-wide stream (followAll).
function follow(name) {
  for (const [n, c] of S.streams) if (n !== name) { c.abort(); S.streams.delete(n); }
  if (S.streams.has(name)) return;
  const ctl = new AbortController();
  S.streams.set(name, ctl);
  let last = '';
  const loop = async () => {
    while (!ctl.signal.aborted) {
      try {
        const h = headers(last ? { 'Last-Event-ID': last } : {});
        const resp = await fetch(runPath(name, '/events'), { headers: h, signal: ctl.signal, credentials: 'same-origin' });
        if (resp.status === 404) { dropRun(name); return; }
        if (!resp.ok) throw new Error('events: ' + resp.status);
        let gone = false;
        await readSSE(resp, (ev, id) => {
          if (id) last = id;
          onEvent(ev);
          return gone = ev.kind === 'deleted';
        });
        if (gone) { dropRun(name); return; }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      await new Promise(r => setTimeout(r, 1000)); // reconnect backoff, resumes from `last`
    }
  };
  loop();
}

// followAll keeps the runs list from the daemon-wide stream (GET
// /v1/events): a listing (one snapshot per run, then "synced") at every
// connection and after an overflow, then every event of every run with its
// status. A run created or deleted by anyone appears or goes without a
// reload.
function followAll() {
  const loop = async () => {
    for (;;) {
      try {
        const resp = await fetch('/v1/events', { headers: headers({}), credentials: 'same-origin' });
        if (!resp.ok) throw new Error('events: ' + resp.status);
        setConn('live');
        let listing = null; // names of the listing being received
        await readSSE(resp, ev => {
          S.allEvents++;
          if (ev.kind === 'synced') {
            const keep = listing || new Set();
            for (const n of [...S.runs.keys()]) if (!keep.has(n)) { if (n === S.cur) dropRun(n); else S.runs.delete(n); }
            listing = null;
          } else if (ev.kind === 'deleted') {
            if (ev.run === S.cur) dropRun(ev.run);
            S.runs.delete(ev.run);
          } else if (ev.status) {
            if (ev.kind === 'snapshot') (listing = listing || new Set()).add(ev.run);
            S.runs.set(ev.run, ev.status);
          }
          renderRuns();
          if (ev.run === S.cur) renderInfo();
          return false;
        });
      } catch (e) { /* reconnect */ }
      setConn('reconnecting…');
      await new Promise(r => setTimeout(r, 1000));
    }
  };
  loop();
}

function dropRun(name) {
  const c = S.streams.get(name);
  if (c) c.abort();
  S.streams.delete(name);
  S.runs.delete(name);
  renderRuns();
  if (name === S.cur) select(null); // deleted elsewhere: its view goes too
}

function onEvent(ev) {
  S.events++;
  const name = ev.run;
  if (ev.status) S.runs.set(name, ev.status);
  renderRuns();
  if (name !== S.cur) return;
  renderInfo();
  if (ev.kind === 'anchor' || ev.kind === 'reset-requested') {
    S.frontier = -1; // backward iterates are recomputed: refetch them
  }
  if (ev.status && ev.status.backward_step < S.frontier) S.frontier = -1; // a rollback
  refresh();
}

// ---- runs list ------------------------------------------------------------

function fmtNum(v, d) {
  if (v === null || v === undefined || !isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(d === undefined ? 3 : d);
  return v.toFixed(d === undefined ? 4 : d);
}

function fmtETA(s, st) {
  if (st.state !== 'running' || !(s > 0)) return '—';
  if (s < 90) return Math.round(s) + ' s';
  if (s < 5400) return Math.round(s / 60) + ' min';
  return (s / 3600).toFixed(1) + ' h';
}

function bar(cls, n, of) {
  const p = of > 0 ? Math.min(100, 100 * n / of) : 0;
  return `<span class="bar ${cls}"><i style="width:${p.toFixed(1)}%"></i></span>${n}/${of}`;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

// optimizer names a run's optimizer: api.RunSpec.optimizer, empty for
// plain SGD.
function optimizer(st) { return (st && st.spec && st.spec.optimizer) || 'sgd'; }

function renderRuns() {
  const tb = document.querySelector('#runs tbody');
  const rows = [];
  for (const st of [...S.runs.values()].sort((a, b) => a.name < b.name ? -1 : 1)) {
    const sp = st.spec || {};
    rows.push(`<tr data-run="${esc(st.name)}" class="${st.name === S.cur ? 'selected' : ''}">` +
      `<td>${esc(st.name)}</td><td>${esc(sp.model || '')}</td><td>${esc(sp.dataset || '')}</td><td class="optim">${esc(optimizer(st))}</td><td>${esc(st.strategy || '')}</td>` +
      `<td class="state-${esc(st.state)}">${esc(st.state)}</td>` +
      `<td>${bar('f', st.forward_step, st.steps)}</td><td>${bar('b', st.backward_step, st.steps)}</td>` +
      `<td>${st.ops_per_sec > 0 ? st.ops_per_sec.toFixed(1) : '—'}</td><td>${fmtETA(st.eta_seconds, st)}</td></tr>` +
      (st.reason ? `<tr class="reason-row"><td></td><td class="reason" colspan="9">${esc(st.reason)}</td></tr>` : '') +
      (st.waiting ? `<tr class="reason-row"><td></td><td class="reason waiting" colspan="9">backward waits: ${esc(st.waiting)}</td></tr>` : ''));
  }
  tb.innerHTML = rows.join('');
  document.getElementById('runs-empty').hidden = S.runs.size > 0;
}

// loadRuns lists the runs (at start and on the reload button; the
// daemon-wide stream keeps the list current after that).
async function loadRuns() {
  const l = await api('GET', '/v1/runs');
  S.runs.clear();
  for (const st of l.runs) S.runs.set(st.name, st);
  renderRuns();
}

// ---- the run view ---------------------------------------------------------

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  return { run: p.get('run'), compare: (p.get('compare') || '').split(',').filter(Boolean),
    from: +p.get('from') || 0, to: +p.get('to') || 0, smooth: p.get('smooth') || 'none' };
}

function writeHash() {
  const p = new URLSearchParams();
  if (S.cur) p.set('run', S.cur);
  if (S.compare.length) p.set('compare', S.compare.map(c => c.name).join(','));
  if (S.view) { p.set('from', S.view.from); p.set('to', S.view.to); }
  const sm = smoothParam();
  if (sm !== 'none') p.set('smooth', sm);
  history.replaceState(null, '', '#' + p.toString()); // the link reopens the same view
}

function select(name, keepView) {
  S.cur = name;
  if (!keepView) S.view = null;
  S.data = { forward: null, backward: null };
  S.frontier = 0;
  document.getElementById('run-view').hidden = !name;
  document.getElementById('run-title').textContent = name || '';
  if (name) follow(name);
  writeHash();
  renderRuns();
  renderInfo();
  refresh(true);
}

function renderInfo() {
  const st = S.runs.get(S.cur);
  if (!st) return;
  const a = st.anchor || {};
  document.getElementById('run-info').textContent =
    `${st.state} · ${optimizer(st)} · forward ${st.forward_step}/${st.steps} · backward frontier ${st.backward_step} · anchor ${a.step} (${a.from}, segment ${a.segment}) · window ${st.window}` +
    (st.pending_resets && st.pending_resets.length ? ` · pending resets ${st.pending_resets.join(', ')}` : '');
  const ra = document.getElementById('reset-at');
  if (!ra.value) ra.value = Math.max(1, Math.floor(st.forward_step / 2));
}

// range is the step range drawn: the zoom, or the whole run.
function range() {
  const st = S.runs.get(S.cur);
  const steps = st ? Math.max(1, st.steps) : 1;
  return S.view ? S.view : { from: 1, to: steps };
}

function bucketsWanted() {
  const c = document.getElementById('charts');
  return Math.max(100, Math.min(4000, Math.floor((c.clientWidth || 1000) * (window.devicePixelRatio || 1))));
}

// merge replaces the buckets from the answer's first one on.
function merge(old, ans) {
  const nb = [];
  for (let i = 0; i < ans.start.length; i++) {
    const b = { start: ans.start[i], last: ans.last_step[i], n: ans.n[i] };
    // [min, max, last, count] of the raw values, then [min, max, last] of
    // the smoothed ones when the answer has them (smoothed by the server
    // over every point of the series, see server/series_smooth.go).
    for (const m of MEASURES) {
      const x = ans[m.key], sm = x.smooth;
      b[m.key] = [x.min[i], x.max[i], x.last[i], x.count[i]].concat(sm ? [sm.min[i], sm.max[i], sm.last[i]] : []);
    }
    nb.push(b);
  }
  if (!old) return { buckets: nb, anchors: ans.anchors };
  const keep = old.buckets.filter(b => b.start < ans.from);
  const anchors = old.anchors.slice();
  for (const a of ans.anchors) if (!anchors.some(x => x.segment === a.segment && x.step === a.step)) anchors.push(a);
  return { buckets: keep.concat(nb), anchors };
}

// smoothParam is the series' smooth parameter for the controls: none,
// ema:K (the slider is the weight) or ma:N (the slider maps 0…0.99 to a
// width of 1…~1000 measured values, logarithmically).
function smoothParam() {
  const how = document.getElementById('smooth').value;
  const k = +document.getElementById('smooth-k').value;
  if (how === 'ema') return 'ema:' + k;
  if (how === 'ma') return 'ma:' + Math.max(1, Math.round(Math.pow(10, 3 * k)));
  return 'none';
}

async function fetchSeries(name, kind, from, to, width) {
  S.fetches++;
  const sm = S.smooth !== 'none' ? '&smooth=' + encodeURIComponent(S.smooth) : '';
  return api('GET', runPath(name, `/series?kind=${kind}&from=${from}&to=${to}&width=${width}${sm}`));
}

// refresh fetches what is new for the current view (everything when full
// is set or the width changed), then redraws. Calls while a fetch is in
// flight coalesce into one more round.
async function refresh(full) {
  if (full) {
    // Answers still in flight are for the old view: gen drops them.
    S.gen++;
    S.smooth = smoothParam();
    S.data = { forward: null, backward: null };
    for (const c of S.compare) c.width = 0;
  }
  if (S.fetching) { S.again = true; return; }
  const name = S.cur, st = S.runs.get(name);
  if (!name) return;
  S.fetching = true;
  const gen = S.gen;
  const mine = () => S.cur === name && S.gen === gen;
  try {
    const view = range();
    let width = Math.max(1, Math.ceil((view.to - view.from + 1) / bucketsWanted()));
    // Coarse buckets on the server's block grid (64 steps, 1 mod 64): the
    // server then answers from its block summaries, in O(buckets) rather
    // than O(steps) (server/series_blocks.go). The grid may start a little
    // left of the view; drawing clips.
    if (width > BLOCK) width = Math.ceil(width / BLOCK) * BLOCK;
    const r = width >= BLOCK ? { from: 1 + Math.floor((view.from - 1) / width) * width, to: view.to } : view;
    if (width !== S.width) { S.data = { forward: null, backward: null }; S.width = width; }
    const align = s => r.from + Math.floor((s - r.from) / width) * width;
    const fwdStep = st ? st.forward_step : r.to;
    const to = Math.min(r.to, Math.max(fwdStep, 1));
    const jobs = [];
    // Forward: from the last bucket held (it may have grown).
    const f = S.data.forward;
    const ff = f && f.buckets.length ? f.buckets[f.buckets.length - 1].start : r.from;
    jobs.push(fetchSeries(name, 'forward', ff, to, width).then(a => { if (mine()) S.data.forward = merge(S.data.forward, a); }));
    // Backward: steps up to the frontier are final; past it they complete
    // out of order, so fetch from the bucket holding the old frontier.
    const b = S.data.backward;
    const bf = b && S.frontier >= 0 ? align(Math.max(r.from, Math.min(S.frontier + 1, to))) : r.from;
    const frontier = st ? st.backward_step : 0;
    if (!b || S.frontier < 0) S.data.backward = null;
    jobs.push(fetchSeries(name, 'backward', bf, to, width).then(a => { if (mine()) { S.data.backward = merge(S.data.backward, a); S.frontier = frontier; } }));
    for (const c of S.compare) {
      if (c.width !== width || c.from !== r.from || c.to !== r.to) {
        c.width = width; c.from = r.from; c.to = r.to;
        const cst = S.runs.get(c.name);
        const cto = Math.min(r.to, cst ? Math.max(cst.forward_step, 1) : r.to);
        jobs.push(fetchSeries(c.name, 'forward', r.from, cto, width).then(a => { if (mine()) c.forward = merge(null, a); }));
        jobs.push(fetchSeries(c.name, 'backward', r.from, cto, width).then(a => { if (mine()) c.backward = merge(null, a); }));
      }
    }
    await Promise.all(jobs);
    setMsg('');
  } catch (e) {
    setMsg(e.message);
  } finally {
    S.fetching = false;
  }
  draw();
  if (S.again) { S.again = false; refresh(); }
}

// ---- drawing --------------------------------------------------------------

function setupCharts() {
  const box = document.getElementById('charts');
  for (const m of MEASURES) {
    const div = document.createElement('div');
    div.className = 'chart';
    div.innerHTML = `<canvas data-measure="${m.key}"></canvas><span class="title">${m.title}</span>`;
    box.appendChild(div);
    const cv = div.firstChild;
    cv.addEventListener('mousemove', e => { S.cursor = stepAt(cv, e); if (S.drag) S.drag.to = S.cursor; draw(); });
    cv.addEventListener('mouseleave', () => { S.cursor = null; draw(); });
    cv.addEventListener('mousedown', e => { S.drag = { from: stepAt(cv, e), to: stepAt(cv, e) }; e.preventDefault(); });
    cv.addEventListener('dblclick', () => zoom(null));
  }
  window.addEventListener('mouseup', () => {
    const d = S.drag; S.drag = null;
    if (d && Math.abs(d.to - d.from) >= 2) zoom({ from: Math.min(d.from, d.to), to: Math.max(d.from, d.to) });
    else draw();
  });
  window.addEventListener('resize', () => refresh());
}

const PAD = { l: 56, r: 10, t: 16, b: 18 };

function stepAt(cv, e) {
  const rect = cv.getBoundingClientRect();
  const r = range();
  const x = (e.clientX - rect.left - PAD.l) / Math.max(1, rect.width - PAD.l - PAD.r);
  return Math.round(r.from + Math.max(0, Math.min(1, x)) * (r.to - r.from));
}

function zoom(v) {
  S.view = v;
  writeHash();
  refresh(true);
}

function pan(dir) {
  const r = range(), st = S.runs.get(S.cur);
  const span = r.to - r.from, steps = st ? st.steps : r.to;
  let from = Math.round(r.from + dir * span / 2);
  from = Math.max(1, Math.min(from, Math.max(1, steps - span)));
  zoom({ from, to: from + span });
}

// series lists the curves drawn on every chart: [{kind, data, color, dash}]
function seriesList() {
  const out = [];
  for (const kind of ['forward', 'backward']) if (S.data[kind]) out.push({ name: S.cur, kind, data: S.data[kind], color: COLORS[kind], dash: [] });
  S.compare.forEach((c, i) => {
    const col = COMPARE_COLORS[i % COMPARE_COLORS.length];
    if (c.forward) out.push({ name: c.name, kind: 'forward', data: c.forward, color: col, dash: [] });
    if (c.backward) out.push({ name: c.name, kind: 'backward', data: c.backward, color: col, dash: [5, 3] });
  });
  return out;
}

function draw() {
  const st = S.runs.get(S.cur);
  if (!st) return;
  const r = range();
  const list = seriesList();
  const anchors = new Map();
  for (const s of list) if (s.kind === 'backward' && s.name === S.cur) for (const a of s.data.anchors) anchors.set(a.step, a);
  if (st.anchor) anchors.set(st.anchor.step, st.anchor);
  anchors.delete(0); // the initial anchor (x₀) is not a reset
  const win = windowShown(st), pending = pendingRanges(st, S.data.backward);
  S.drawn = { anchors: [...anchors.keys()].sort((a, b) => a - b), draws: S.drawn.draws + 1,
    forward: S.data.forward ? S.data.forward.buckets.length : 0, backward: S.data.backward ? S.data.backward.buckets.length : 0,
    forwardLast: lastStep(S.data.forward), backwardLast: lastStep(S.data.backward),
    window: win, pending: pending.reduce((n, [a, z]) => n + z - a + 1, 0) };
  for (const cv of document.querySelectorAll('#charts canvas')) {
    const m = MEASURES.find(x => x.key === cv.dataset.measure);
    drawChart(cv, m, r, list, anchors, st, win, pending);
  }
  // The compare legend names each run's optimizer: overlays often compare
  // optimizers.
  const lg = list.map(s => `<span><i style="background:${s.color}"></i>${esc(s.name)} (${esc(optimizer(S.runs.get(s.name)))}) ${s.kind}</span>`).join('');
  document.getElementById('legend').innerHTML = lg + `<span><i style="background:#7b1fa2"></i>anchors / resets</span><span><i style="background:#ddd"></i>pending backward (hatched)</span><span><i style="background:rgba(123,31,162,0.25)"></i>window</span>`;
  readout(list);
}

function lastStep(d) { return d && d.buckets.length ? d.buckets[d.buckets.length - 1].last : 0; }

// windowShown is the backward window of the run now: for window runs the
// steps the current anchor serves, (r, r+W]; for sliding ones the W steps
// the frontier's next iterate replays; null for full and memo runs (their
// chain starts at the anchor, however far).
function windowShown(st) {
  const W = st.window, a = st.anchor || {};
  if (!(W > 0)) return null;
  if (st.strategy === 'window') return { from: a.step || 0, to: Math.min(st.steps, (a.step || 0) + W), kind: 'window' };
  if (st.strategy === 'sliding') {
    const n = Math.min(st.steps, st.backward_step + 1);
    return { from: Math.max(0, n - W), to: n, kind: 'sliding' };
  }
  return null;
}

// pendingRanges lists the backward steps not computed yet, as [a, z]
// ranges: past the frontier (every step up to it is done) up to the
// forward step, less the buckets the data holds complete (steps past the
// frontier complete out of order).
function pendingRanges(st, data) {
  const out = [];
  let next = st.backward_step + 1;
  const end = st.forward_step;
  if (next > end) return out;
  for (const b of data ? data.buckets : []) {
    if (b.last < next) continue;
    if (b.start > end) break;
    if (b.n !== b.last - b.start + 1) continue; // a bucket with holes: pending still
    if (b.start > next) out.push([next, b.start - 1]);
    next = b.last + 1;
  }
  if (next <= end) out.push([next, end]);
  return out;
}

let hatch = null;
function hatchPattern(g) {
  if (!hatch) {
    const c = document.createElement('canvas');
    c.width = c.height = 8;
    const h = c.getContext('2d');
    h.strokeStyle = 'rgba(0,0,0,0.18)'; h.lineWidth = 1;
    h.beginPath(); h.moveTo(0, 8); h.lineTo(8, 0); h.stroke();
    hatch = c;
  }
  return g.createPattern(hatch, 'repeat');
}

function drawChart(cv, m, r, list, anchors, st, win, pending) {
  const smoothed = S.smooth !== 'none';
  const dpr = window.devicePixelRatio || 1;
  const W = cv.clientWidth, H = cv.clientHeight;
  if (cv.width !== Math.round(W * dpr)) { cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr); }
  const g = cv.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  const tv = v => (v === null || !isFinite(v) || (m.log && v <= 0)) ? null : (m.log ? Math.log10(v) : v);
  let lo = Infinity, hi = -Infinity;
  for (const s of list) for (const b of s.data.buckets) {
    if (b.last < r.from || b.start > r.to) continue;
    const a = tv(b[m.key][0]), z = tv(b[m.key][1]);
    if (a !== null) lo = Math.min(lo, a);
    if (z !== null) hi = Math.max(hi, z);
  }
  const empty = !(lo <= hi);
  if (empty) { lo = 0; hi = 1; }
  if (hi - lo < 1e-12) { hi += 0.5; lo -= 0.5; }
  const pw = W - PAD.l - PAD.r, ph = H - PAD.t - PAD.b;
  const X = s => PAD.l + (s - r.from) / Math.max(1, r.to - r.from) * pw;
  const Y = v => PAD.t + (1 - (v - lo) / (hi - lo)) * ph;
  // Axes and ticks.
  g.strokeStyle = '#ccc'; g.lineWidth = 1; g.strokeRect(PAD.l, PAD.t, pw, ph);
  g.fillStyle = '#555'; g.font = '10px system-ui, sans-serif'; g.textAlign = 'right';
  for (let i = 0; i <= 3; i++) {
    const v = lo + (hi - lo) * i / 3;
    g.fillText(m.log ? '1e' + v.toFixed(1) : fmtNum(v, 3), PAD.l - 4, Y(v) + 3);
  }
  g.textAlign = 'center';
  for (let i = 0; i <= 4; i++) {
    const s = Math.round(r.from + (r.to - r.from) * i / 4);
    g.textAlign = i === 0 ? 'left' : i === 4 ? 'right' : 'center';
    g.fillText(String(s), X(s), H - 4);
  }
  if (empty) { g.fillStyle = '#999'; g.fillText('no values (not measured for this run)', PAD.l + pw / 2, PAD.t + ph / 2); }
  g.save();
  g.beginPath(); g.rect(PAD.l, PAD.t, pw, ph); g.clip();
  // The window: a band from the anchor to anchor + W (window runs) or
  // the W steps behind the frontier (sliding runs), labelled.
  if (win) {
    const x0 = X(Math.max(r.from, win.from)), x1 = X(Math.min(r.to, win.to));
    if (x1 > x0) {
      g.fillStyle = 'rgba(123,31,162,0.08)'; g.fillRect(x0, PAD.t, x1 - x0, ph);
      g.fillStyle = '#7b1fa2'; g.textAlign = 'left';
      if (x1 - x0 > 50) g.fillText((win.kind === 'sliding' ? 'sliding window ' : 'window ') + (win.to - win.from), x0 + 3, PAD.t + 10);
    }
  }
  // Pending backward steps, hatched: past the frontier up to the forward
  // step, except those already computed (out of order).
  g.fillStyle = hatchPattern(g);
  for (const [a, z] of pending) {
    if (z < r.from || a > r.to) continue;
    const x0 = X(Math.max(r.from, a - 0.5)), x1 = Math.max(X(Math.min(r.to, z + 0.5)), x0 + 1);
    g.fillRect(x0, PAD.t, x1 - x0, ph);
  }
  if (pending.length) {
    const a = pending[0][0], z = pending[pending.length - 1][1];
    const x0 = X(Math.max(r.from, a)), x1 = X(Math.min(r.to, z));
    g.fillStyle = '#666'; g.textAlign = 'right';
    if (x1 - x0 > 110 && z >= r.from && a <= r.to) g.fillText('backward pending', x1 - 3, PAD.t + ph - 4);
  }
  // Anchors (solid) and pending resets (dotted).
  g.strokeStyle = '#7b1fa2'; g.lineWidth = 1;
  for (const s of anchors.keys()) { g.setLineDash([4, 3]); g.beginPath(); g.moveTo(X(s), PAD.t); g.lineTo(X(s), PAD.t + ph); g.stroke(); }
  g.setLineDash([1, 3]);
  for (const s of st.pending_resets || []) { g.beginPath(); g.moveTo(X(s), PAD.t); g.lineTo(X(s), PAD.t + ph); g.stroke(); }
  g.setLineDash([]);
  for (const s of list) {
    const bs = s.data.buckets.filter(b => b.last >= r.from && b.start <= r.to);
    // min–max band: every point of the bucket lies inside it.
    g.strokeStyle = s.color; g.globalAlpha = 0.25;
    g.beginPath();
    for (const b of bs) {
      const a = tv(b[m.key][0]), z = tv(b[m.key][1]);
      if (a === null || z === null || b.n < 2) continue;
      const x = X((b.start + b.last) / 2);
      g.moveTo(x, Y(a)); g.lineTo(x, Y(z) - 0.5);
    }
    g.stroke();
    const raw = bs.map(b => tv(b[m.key][2]));
    const line = (vals, alpha, width) => {
      g.globalAlpha = alpha; g.lineWidth = width; g.setLineDash(s.dash); g.beginPath();
      let pen = false;
      for (let i = 0; i < bs.length; i++) {
        // A missing bucket is a step with no point (a pending backward
        // step): the line breaks there. A bucket with no value was not
        // measured (eval_every): the line joins the measured ones.
        if (i > 0 && bs[i].start > bs[i - 1].last + S.width) pen = false;
        const v = vals[i];
        if (v === null) continue;
        const x = X(bs[i].last), y = Y(v);
        if (pen) g.lineTo(x, y); else g.moveTo(x, y);
        pen = true;
      }
      g.stroke();
    };
    if (!smoothed) line(raw, 1, 1.5);
    else {
      // The raw curve faint behind the smoothed one, both exact.
      line(raw, 0.25, 1);
      line(bs.map(b => b[m.key].length > 4 ? tv(b[m.key][6]) : null), 1, 1.8);
    }
    g.globalAlpha = 1; g.setLineDash([]);
  }
  // Zoom selection and the synced cursor.
  if (S.drag) { g.fillStyle = 'rgba(31,119,180,0.12)'; const a = X(Math.min(S.drag.from, S.drag.to)), z = X(Math.max(S.drag.from, S.drag.to)); g.fillRect(a, PAD.t, z - a, ph); }
  if (S.cursor !== null) { g.strokeStyle = '#333'; g.lineWidth = 0.7; g.beginPath(); g.moveTo(X(S.cursor), PAD.t); g.lineTo(X(S.cursor), PAD.t + ph); g.stroke(); }
  g.restore();
}

// readout prints every curve's bucket at the cursor (or the last one).
function readout(list) {
  const el = document.getElementById('readout');
  const lines = [];
  for (const s of list) {
    const bs = s.data.buckets;
    if (!bs.length) continue;
    let b = bs[bs.length - 1];
    if (S.cursor !== null) {
      b = null;
      for (const x of bs) { if (x.start <= S.cursor) b = x; else break; }
      if (!b) continue;
    }
    const at = b.start === b.last ? `step ${b.last}` : `steps ${b.start}–${b.last}`;
    // A measure not measured in that bucket (eval_every) reads out its
    // last measured value before it, with the step.
    const upto = bs.indexOf(b);
    const val = m => {
      for (let i = upto; i >= 0 && i > upto - 1000; i--) {
        const v = bs[i][m.key][2];
        if (v !== null) return fmtNum(v) + (i === upto ? '' : ` (@${bs[i].last})`);
      }
      return '—';
    };
    lines.push(`${s.name} ${s.kind.padEnd(8)} ${at}: ` + MEASURES.map(m => `${m.key} ${val(m)}`).join('  '));
  }
  el.textContent = lines.join('\n');
}

// ---- controls -------------------------------------------------------------

// setSmooth sets the controls from a smooth parameter (none, ema:K, ma:N).
function setSmooth(p) {
  const [how, arg] = String(p).split(':');
  const sel = document.getElementById('smooth'), k = document.getElementById('smooth-k');
  if (how === 'ema' && (arg === undefined || +arg >= 0 && +arg < 1)) { sel.value = 'ema'; if (arg !== undefined) k.value = +arg; }
  else if (how === 'ma' && (arg === undefined || +arg >= 1)) { sel.value = 'ma'; if (arg !== undefined) k.value = Math.log10(+arg) / 3; }
  else sel.value = 'none';
  showSmooth();
}

function showSmooth() {
  const p = smoothParam();
  document.getElementById('smooth-k').hidden = p === 'none';
  document.getElementById('smooth-v').textContent = p === 'none' ? '' : p.startsWith('ema:') ? 'weight ' + p.slice(4) : p.slice(3) + ' values';
}

function setMsg(t) { document.getElementById('msg').textContent = t; }
function setConn(t) { document.getElementById('conn').textContent = t; }

async function control(what) {
  const name = S.cur;
  if (!name) return;
  try {
    let st;
    if (what === 'reset') {
      const at = parseInt(document.getElementById('reset-at').value, 10);
      if (!(at >= 0)) throw new Error('reset: give a step');
      st = await api('POST', runPath(name, '/reset'), { at, from: document.getElementById('reset-from').value });
    } else {
      st = await api('POST', runPath(name, '/' + what));
    }
    S.runs.set(name, st);
    setMsg('');
    renderRuns(); renderInfo(); refresh();
  } catch (e) {
    setMsg(e.message);
  }
}

function setCompare(text) {
  const names = text.split(',').map(x => x.trim()).filter(x => x && x !== S.cur);
  S.compare = names.map(n => ({ name: n }));
  writeHash();
  refresh();
}

async function main() {
  initToken();
  setupCharts();
  document.querySelector('#runs tbody').addEventListener('click', e => {
    const tr = e.target.closest('tr[data-run]');
    if (tr) select(tr.dataset.run);
  });
  document.getElementById('pause-btn').onclick = () => control('pause');
  document.getElementById('resume-btn').onclick = () => control('resume');
  document.getElementById('reset-btn').onclick = () => control('reset');
  document.getElementById('zoom-out').onclick = () => zoom(null);
  document.getElementById('pan-left').onclick = () => pan(-1);
  document.getElementById('pan-right').onclick = () => pan(1);
  // Smoothing is computed by the server: a change refetches (the slider
  // once it has rested for a moment).
  let smoothTimer = 0;
  const smoothChanged = () => { showSmooth(); writeHash(); clearTimeout(smoothTimer); smoothTimer = setTimeout(() => refresh(true), 200); };
  document.getElementById('smooth').onchange = smoothChanged;
  document.getElementById('smooth-k').oninput = smoothChanged;
  document.getElementById('compare').onchange = e => setCompare(e.target.value);
  const relist = () => loadRuns().then(() => { renderInfo(); draw(); }).catch(e => setConn('cannot reach replayd: ' + e.message));
  document.getElementById('reload').onclick = relist;
  try {
    await loadRuns();
    setConn('connected');
    followAll();
  } catch (e) {
    setConn('cannot reach replayd: ' + e.message);
    return;
  }
  const h = readHash();
  setSmooth(h.smooth);
  if (h.compare.length) { document.getElementById('compare').value = h.compare.join(', '); S.compare = h.compare.map(n => ({ name: n })); }
  if (h.from && h.to > h.from) S.view = { from: h.from, to: h.to };
  const first = h.run && S.runs.has(h.run) ? h.run : (S.runs.size === 1 ? [...S.runs.keys()][0] : null);
  if (first) select(first, true);
}

main();
