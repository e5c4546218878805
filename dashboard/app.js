/*
 * herd dashboard: one page, nine tabs (ollama-herd's eight and the request
 * explorer). Everything a peer controls (node ids, model names, tags,
 * error messages) reaches the page through textContent or attributes,
 * never as markup; the server's Content-Security-Policy forbids inline
 * script besides. Charts are uPlot, bundled into herd at build time.
 */
(() => {
  'use strict';

  // ---------------------------------------------------------------- DOM
  /** el('div', {class: 'x', onclick: f}, 'text', child, ...) */
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else if (k === 'class') e.className = v;
      else if (k === 'style' && typeof v === 'object') Object.assign(e.style, v);
      else if (k === 'value') e.value = v;
      else if (k === 'checked') e.checked = !!v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids.flat(Infinity)) {
      if (k === undefined || k === null || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }
  const $ = (sel, root = document) => root.querySelector(sel);
  /** Replaces node's children; null, undefined and false are left out. */
  function fill(node, ...kids) {
    node.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
  }
  const main = () => $('#main');

  // ----------------------------------------------------------- formatting
  const fmt = {
    n(v, d = 0) {
      if (v === null || v === undefined || Number.isNaN(v)) return '–';
      return Number(v).toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: 0 });
    },
    ms(v) {
      if (v === null || v === undefined) return '–';
      if (v >= 10000) return `${fmt.n(v / 1000, 1)} s`;
      return `${fmt.n(v, v < 10 ? 2 : 0)} ms`;
    },
    gb(v) { return v === null || v === undefined ? '–' : `${fmt.n(v, 1)} GB`; },
    pct(v) { return v === null || v === undefined ? '–' : `${fmt.n(v, 1)}%`; },
    time(ts) {
      if (!ts) return '–';
      const d = new Date(ts * 1000);
      return d.toLocaleString('en-GB', { hour12: false });
    },
    ago(ts) {
      if (!ts) return 'never';
      const s = Date.now() / 1000 - ts;
      if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
      if (s < 3600) return `${Math.round(s / 60)} min ago`;
      if (s < 86400) return `${Math.round(s / 3600)} h ago`;
      return `${Math.round(s / 86400)} d ago`;
    },
    ctx(v) { return v ? `${fmt.n(v / 1024, v % 1024 ? 1 : 0)}K ctx` : ''; },
    day(ts) {
      if (!ts) return 'never';
      const d = Math.floor(Date.now() / 86400000) - Math.floor(ts / 86400);
      return d <= 0 ? 'today' : d === 1 ? 'yesterday' : `${d} days ago`;
    },
    short(id) { return String(id || '').slice(0, 8); },
  };

  // ----------------------------------------------------------------- API
  const adminKey = () => localStorage.getItem('herd-admin-key') || '';
  async function api(path, opts = {}) {
    const headers = { ...(opts.headers || {}) };
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    if (opts.admin && adminKey()) headers.Authorization = `Bearer ${adminKey()}`;
    const r = await fetch(path, {
      method: opts.method || (opts.body !== undefined ? 'POST' : 'GET'),
      headers,
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
    });
    let data = null;
    const text = await r.text();
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!r.ok) {
      const m = data && (typeof data.error === 'string' ? data.error : data.error && data.error.message);
      const e = new Error(m || `HTTP ${r.status}`);
      e.status = r.status;
      throw e;
    }
    return data;
  }
  const errorBox = (e) => el('div', { class: 'msg error', role: 'alert' }, String(e.message || e));

  // --------------------------------------------------------------- charts
  const palette = ['#7aa2ff', '#4cc38a', '#f0b44c', '#f06a6a', '#b58cff', '#5fd4d4', '#ff8fd0', '#c9d36b'];
  /**
   * A uPlot chart in a titled box. xs: unix seconds; series: [{label, values,
   * bars?}]. An empty chart says so instead.
   */
  function chart(title, xs, series, { height = 220, yLabel = '' } = {}) {
    const box = el('div', { class: 'chart', 'data-chart': title }, el('h3', {}, title));
    if (!xs.length || !series.length) {
      box.append(el('div', { class: 'empty' }, 'No data in this range yet.'));
      return box;
    }
    const lo = xs[0];
    const hi = xs[xs.length - 1] > lo ? xs[xs.length - 1] : lo + 3600;
    const opts = {
      width: 520, height,
      scales: { x: { time: true, range: () => [lo, hi] } },
      axes: [
        { stroke: '#8f9bb5', grid: { stroke: '#2a3550' } },
        { stroke: '#8f9bb5', grid: { stroke: '#2a3550' }, label: yLabel, size: 60 },
      ],
      series: [{}, ...series.map((s, i) => ({
        label: s.label,
        stroke: palette[i % palette.length],
        width: 2,
        fill: s.bars ? `${palette[i % palette.length]}55` : undefined,
        paths: s.bars && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined,
        points: { show: xs.length < 3 },
        spanGaps: false,
      }))],
      legend: { live: true },
    };
    const data = [xs, ...series.map((s) => s.values)];
    // Sized once it is in the page; resized with it.
    requestAnimationFrame(() => {
      const w = Math.max(300, box.clientWidth - 20);
      const u = new uPlot({ ...opts, width: w }, data, box);
      box.uplot = u;
    });
    return box;
  }
  /** Every bucket start from `from` to `to` (unix s), step seconds. */
  function buckets(from, to, step) {
    const xs = [];
    for (let t = Math.floor(from / step) * step; t <= to; t += step) xs.push(t);
    return xs;
  }
  /** Values of rows at each x (missing buckets: fill). */
  function along(xs, rows, x, f, fill = 0) {
    const by = new Map(rows.map((r) => [r[x], r]));
    return xs.map((t) => (by.has(t) ? f(by.get(t)) : fill));
  }
  /** Points of rows grouped by key: {xs, series:[{label, values}]}. */
  function pivot(rows, { x, key, y, top = 8, xs: given }) {
    const xs = given || [...new Set(rows.map((r) => r[x]))].sort((a, b) => a - b);
    const totals = new Map();
    for (const r of rows) totals.set(r[key], (totals.get(r[key]) || 0) + (r[y] || 0));
    const keys = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map((e) => e[0]);
    const idx = new Map(xs.map((v, i) => [v, i]));
    const series = keys.map((k) => ({ label: String(k), values: xs.map(() => 0) }));
    for (const r of rows) {
      const s = keys.indexOf(r[key]);
      if (s >= 0 && idx.has(r[x])) series[s].values[idx.get(r[x])] += r[y] || 0;
    }
    return { xs, series };
  }

  // ------------------------------------------------------------ the stream
  const live = { snap: null, es: null, listeners: new Set(), at: 0 };
  function connect() {
    if (live.es) return;
    const es = new EventSource('/dashboard/events');
    live.es = es;
    es.onmessage = (ev) => {
      try { live.snap = JSON.parse(ev.data); } catch { return; }
      live.at = Date.now();
      const c = $('#conn');
      c.className = 'conn live';
      c.textContent = `live · ${new Date().toLocaleTimeString('en-GB', { hour12: false })}`;
      c.dataset.updates = String((Number(c.dataset.updates) || 0) + 1);
      for (const f of live.listeners) f(live.snap);
    };
    es.onerror = () => {
      const c = $('#conn');
      c.className = 'conn down';
      c.textContent = 'reconnecting…';
    };
  }
  function onSnapshot(f) {
    live.listeners.add(f);
    if (live.snap) f(live.snap);
    return () => live.listeners.delete(f);
  }

  // -------------------------------------------------------------- routing
  const tabs = {};
  let cleanup = [];
  function tabFromPath(p) {
    const m = /^\/dashboard\/?([a-z-]*)/.exec(p);
    const t = m && m[1] ? m[1] : 'fleet';
    if (t === 'apps') return 'tags';
    if (t === 'explorer') return 'requests';
    return tabs[t] ? t : 'fleet';
  }
  function show(tab) {
    for (const f of cleanup) f();
    cleanup = [];
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.tab === tab);
    const m = main();
    fill(m);
    m.dataset.tab = tab;
    document.title = `herd · ${tab}`;
    Promise.resolve(tabs[tab](m)).catch((e) => m.append(errorBox(e)));
  }
  function go(path) {
    history.pushState({}, '', path);
    show(tabFromPath(path));
  }
  document.addEventListener('click', (e) => {
    const a = e.target.closest('a[data-tab]');
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    go(a.getAttribute('href'));
  });
  window.addEventListener('popstate', () => show(tabFromPath(location.pathname)));
  function every(ms, f) {
    const t = setInterval(f, ms);
    cleanup.push(() => clearInterval(t));
  }

  // ================================================================ Fleet
  function bar(label, used, total, cls = '') {
    const pct = total > 0 ? Math.min(100, (used / total) * 100) : 0;
    return el('div', {},
      el('div', { class: 'barlabel' }, el('span', {}, label), el('span', {}, total > 0 ? `${fmt.n(pct, 0)}%` : '–')),
      el('div', { class: `bar ${cls}` }, el('span', { style: { width: `${pct}%` } })));
  }
  function nodeCard(n) {
    const mem = n.memory || {};
    const cap = n.capacity;
    const gpu = n.gpu;
    const loaded = (n.ollama && n.ollama.models_loaded) || [];
    const pressure = mem.pressure === 'warn' ? 'warn' : mem.pressure === 'critical' ? 'critical' : '';
    return el('div', { class: `card node-card ${n.status}`, 'data-node': n.node_id },
      el('header', {},
        el('div', {}, el('h3', { class: 'node-name' }, n.node_id),
          el('div', { class: 'sub' }, [n.hardware && n.hardware.chip, n.hardware && n.hardware.arch, `${n.hardware ? n.hardware.cores_physical : '?'} cores`].filter(Boolean).join(' · '))),
        el('div', {}, el('span', { class: `badge ${n.status}` }, n.status),
          n.router_state ? el('span', { class: `badge ${n.router_state}`, title: 'herd stopped sending it requests after failures' }, ` ${n.router_state}`) : null)),
      bar(`CPU ${fmt.n(n.cpu && n.cpu.utilization_pct, 0)}%`, n.cpu ? n.cpu.utilization_pct : 0, 100),
      bar(`Memory ${fmt.n(mem.used_gb, 1)} / ${fmt.n(mem.total_gb, 1)} GB · pressure ${mem.pressure || '?'}`, mem.used_gb || 0, mem.total_gb || 0, pressure),
      gpu ? bar(`GPU ${gpu.name} · ${fmt.n(gpu.utilization_pct, 0)}% · VRAM ${fmt.n(gpu.vram_used_gb, 1)} / ${fmt.n(gpu.vram_total_gb, 1)} GB`, gpu.vram_used_gb, gpu.vram_total_gb) : null,
      n.disk ? el('div', { class: 'sub' }, `Disk: ${fmt.gb(n.disk.available_gb)} free of ${fmt.gb(n.disk.total_gb)}`) : null,
      cap ? el('div', { class: 'sub' }, 'Capacity: ', el('span', { class: 'badge' }, cap.mode),
        ` availability ${fmt.n(cap.availability_score * 100, 0)}% · ceiling ${fmt.gb(cap.ceiling_gb)} · confidence ${fmt.n(cap.learning_confidence * 100, 0)}%`) : null,
      el('div', { class: 'sub' }, `${n.ollama ? n.ollama.models_available_count : 0} models on disk · ${n.num_parallel} slot${n.num_parallel === 1 ? '' : 's'} per model · ${n.in_flight} in flight · heartbeat ${fmt.n(n.last_heartbeat_s, 1)} s ago`),
      el('div', { class: 'chips' }, loaded.length ? loaded.map((m) => el('span', { class: 'chip model-chip', 'data-model': m.name },
        el('span', { class: 't' }, m.category === 'embedding' ? 'EMBED' : 'TEXT'), m.name,
        ` · ${fmt.gb(m.size_gb)}`, m.context_length ? ` · ${fmt.ctx(m.context_length)}` : '',
        ` · ${m.in_flight}/${n.num_parallel}`)) : el('span', { class: 'sub' }, 'no model loaded')));
  }
  function queueCard(key, q) {
    return el('div', { class: 'card queue-card', 'data-queue': key },
      el('header', {}, el('h3', {}, q.model), el('span', { class: 'sub' }, q.node_id)),
      bar(`${q.in_flight} in flight / ${q.concurrency} slots`, q.in_flight, q.concurrency),
      el('div', { class: 'sub' }, `${fmt.n(q.completed)} completed · ${fmt.n(q.failed)} failed`));
  }
  function liveRows(list) {
    if (!list || !list.length) return el('div', { class: 'hint', id: 'live-empty' }, 'No request in flight.');
    return el('div', { class: 'live' }, list.map((r) => {
      const rate = r.elapsed_ms > r.ttft_ms && r.tokens ? r.tokens / ((r.elapsed_ms - r.ttft_ms) / 1000) : 0;
      return el('div', { class: 'liverow', 'data-live': r.request_id },
        el('a', { href: `/dashboard/requests?id=${encodeURIComponent(r.request_id)}`, class: 'mono' }, fmt.short(r.request_id)),
        el('div', {}, el('div', {}, `${r.model} → ${r.node || '…'}`),
          el('div', { class: 'tokens', title: `${r.tokens} tokens` }, el('span', { style: { width: `${Math.min(100, r.tokens / 3)}%` } }))),
        el('span', { class: `badge ${r.state === 'streaming' ? 'running' : ''}` }, r.state),
        el('span', { class: 'num tokens-count' }, `${fmt.n(r.tokens)} tok`),
        el('span', { class: 'sub' }, `${fmt.ms(r.elapsed_ms)} · TTFT ${fmt.ms(r.ttft_ms || null)} · ${fmt.n(rate, 1)} tok/s`));
    }));
  }
  tabs.fleet = (m) => {
    m.append(el('h1', {}, 'Fleet'));
    const stats = el('div', { class: 'stats', id: 'fleet-stats' });
    const nodes = el('div', { class: 'grid', id: 'nodes' });
    const queues = el('div', { class: 'grid', id: 'queues' });
    const lv = el('div', { id: 'fleet-live' });
    m.append(stats, el('h2', {}, 'Herd nodes'), nodes, el('h2', {}, 'Request queues'), queues,
      el('h2', {}, 'Streams in flight'), lv);
    const render = (s) => {
      const f = s.fleet;
      fill(stats, 
        ...[['Nodes online', `${f.nodes_online} / ${f.nodes_total}`, 'nodes'], ['Models loaded', f.models_loaded, 'models'],
          ['In flight', f.requests_active, 'inflight'], ['Waiting for a slot', f.requests_held, 'held'],
          ['Completed', fmt.n(f.completed), 'completed'], ['Failed', fmt.n(f.failed), 'failed']]
          .map(([k, v, id]) => el('div', { class: 'stat', 'data-stat': id }, el('div', { class: 'v' }, String(v)), el('div', { class: 'k' }, k))));
      fill(nodes, ...(s.nodes.length ? s.nodes.map(nodeCard)
        : [el('div', { class: 'hint' }, 'No node has reported yet: start herd-node beside each Ollama.')]));
      const qs = Object.entries(s.queues || {});
      fill(queues, ...(qs.length ? qs.map(([k, q]) => queueCard(k, q)) : [el('div', { class: 'hint' }, 'No queue yet.')]));
      fill(lv, liveRows(s.live));
    };
    cleanup.push(onSnapshot(render));
  };

  // ===================================================== Request explorer
  const SIGNALS = ['thermal', 'memory_fit', 'queue_depth', 'wait_time', 'role_affinity', 'availability_trend', 'context_fit', 'health', 'slot_free'];
  const SIGNAL_NAMES = {
    thermal: 'hot', memory_fit: 'fit', queue_depth: 'queue', wait_time: 'wait', role_affinity: 'role',
    availability_trend: 'avail.', context_fit: 'context', health: 'health', slot_free: 'slot',
  };
  const tps = (t) => (t.completion_tokens && t.latency_ms && t.time_to_first_token_ms !== null
    ? t.completion_tokens / Math.max(0.001, (t.latency_ms - (t.time_to_first_token_ms || 0)) / 1000) : null);

  function decision(t) {
    const cands = (t.scored_candidates || []).filter((c) => c.node_id);
    if (!cands.length) return el('div', { class: 'hint' }, 'No scoring recorded (the request never reached the router).');
    const eligible = cands.filter((c) => !(c.breakdown && c.breakdown.eliminated));
    const winner = cands.find((c) => c.node_id === t.node_id) || eligible[0];
    const others = eligible.filter((c) => c !== winner).sort((a, b) => b.score - a.score);
    let verdict;
    if (!winner) verdict = 'No eligible node.';
    else if (!others.length) verdict = `${winner.node_id} was the only eligible node (score ${fmt.n(winner.score, 1)}).`;
    else {
      const by = winner.score - others[0].score;
      verdict = by >= 0
        ? `${winner.node_id} won with ${fmt.n(winner.score, 1)}, ${fmt.n(by, 1)} points ahead of ${others[0].node_id} (${fmt.n(others[0].score, 1)}).`
        : `${winner.node_id} served with ${fmt.n(winner.score, 1)}: ${others[0].node_id} scored ${fmt.n(-by, 1)} more but had no free slot or was tried first.`;
    }
    const rows = cands.map((c) => {
      const b = c.breakdown || {};
      return el('tr', { class: c === winner ? 'winner' : b.eliminated ? 'eliminated' : '', 'data-candidate': c.node_id },
        el('td', {}, c.node_id, c === winner ? ' ★' : ''),
        SIGNALS.map((s) => el('td', { class: 'num' }, fmt.n(b[s], 1))),
        el('td', { class: 'num' }, el('b', {}, fmt.n(b.total !== undefined ? b.total : c.score, 1))),
        el('td', { class: 'num' }, `${c.in_flight}/${c.num_parallel}`),
        el('td', {}, b.eliminated || ''));
    });
    return el('div', {},
      el('div', { class: 'verdict', id: 'verdict' }, verdict),
      el('div', { class: 'tablewrap' }, el('table', { id: 'candidates' },
        el('thead', {}, el('tr', {}, el('th', {}, 'node'), SIGNALS.map((s) => el('th', { class: 'num', title: s }, SIGNAL_NAMES[s])),
          el('th', { class: 'num' }, 'total'), el('th', { class: 'num' }, 'slots'), el('th', {}, 'eliminated'))),
        el('tbody', {}, rows))));
  }
  function timeline(events, total) {
    if (!events || !events.length) return el('div', { class: 'hint' }, 'No event recorded.');
    const end = Math.max(total || 0, ...events.map((e) => e.ms || 0), 1);
    const bad = /fault|fail|timeout|reaped|error/;
    const warn = /held|busy|retry|context|fallback|pull/;
    return el('div', {},
      el('div', { class: 'timeline', title: `0 – ${fmt.ms(end)}` }, events.map((e) => el('span', {
        class: `tick ${bad.test(e.event) ? 'bad' : warn.test(e.event) ? 'warn' : ''}`,
        style: { left: `calc(${(100 * (e.ms || 0)) / end}% - 1px)` },
        title: `${fmt.ms(e.ms)} ${e.event}${e.node ? ` @${e.node}` : ''}${e.detail ? `: ${e.detail}` : ''}`,
      }))),
      el('ol', { class: 'events', id: 'events' }, events.map((e) => el('li', { 'data-event': e.event },
        el('span', { class: 'ms' }, `+${fmt.ms(e.ms)}`), el('b', {}, e.event), e.node ? ` @ ${e.node}` : '', e.detail ? ` — ${e.detail}` : ''))));
  }
  function attemptsTable(list) {
    if (!list || !list.length) return el('div', { class: 'hint' }, 'No upstream attempt.');
    return el('table', { id: 'attempts' }, el('thead', {}, el('tr', {}, ['#', 'node', 'reason', 'status', 'time'].map((h) => el('th', {}, h)))),
      el('tbody', {}, list.map((a, i) => el('tr', { 'data-attempt': i + 1 }, el('td', {}, i + 1), el('td', {}, a.node),
        el('td', {}, el('span', { class: `badge ${a.reason === 'ok' ? 'ok' : 'failed'}` }, a.reason)),
        el('td', {}, a.status || '–'), el('td', { class: 'num' }, fmt.ms(a.ms))))));
  }
  async function showTrace(box, id) {
    fill(box, el('div', { class: 'hint' }, 'Loading…'));
    let d;
    try { d = await api(`/dashboard/api/trace/${encodeURIComponent(id)}`); } catch (e) { fill(box, errorBox(e)); return; }
    const rows = d.traces || [];
    const t = rows[rows.length - 1];
    const kv = (k, v, id2) => el('div', {}, el('div', { class: 'k' }, k), el('div', { class: 'v', 'data-field': id2 || k }, v));
    fill(box, 
      el('h2', {}, 'Request ', el('span', { class: 'mono', id: 'trace-id' }, id)),
      el('div', { class: 'kv' },
        kv('status', el('span', { class: `badge ${t.status}` }, t.status), 'status'),
        kv('model', t.model === t.original_model ? t.model : `${t.original_model} → ${t.model}`, 'model'),
        kv('node', t.node_id || '–', 'node'),
        kv('endpoint', t.endpoint || t.original_format || '–'),
        kv('client', t.client_ip || '–'),
        kv('when', fmt.time(t.timestamp)),
        kv('queue wait', fmt.ms(t.queue_wait_ms), 'queue_wait'),
        kv('time to first token', fmt.ms(t.time_to_first_token_ms), 'ttft'),
        kv('total', fmt.ms(t.latency_ms), 'latency'),
        kv('tokens in / out', `${fmt.n(t.prompt_tokens)} / ${fmt.n(t.completion_tokens)}`, 'tokens'),
        kv('tokens/s', fmt.n(tps(t), 1), 'tps'),
        kv('retries', String(t.retry_count || 0), 'retries'),
        kv('tags', (t.tags || []).join(', ') || '–', 'tags'),
        kv('fallback', t.fallback_used ? 'yes' : 'no')),
      t.error_message ? el('div', { class: 'msg error', id: 'trace-error' }, t.error_message) : null,
      el('h3', {}, 'The decision: every candidate, every signal'), decision(t),
      el('h3', { style: { marginTop: '14px' } }, 'Attempts'), attemptsTable(t.attempts),
      el('h3', { style: { marginTop: '14px' } }, 'Timeline'), timeline(t.events, (t.queue_wait_ms || 0) + (t.latency_ms || 0)),
      rows.length > 1 ? el('div', { class: 'hint' }, `${rows.length} rows for this request: ${rows.map((r) => r.status).join(', ')}.`) : null);
  }
  tabs.requests = async (m) => {
    const q = new URLSearchParams(location.search);
    m.append(el('h1', {}, 'Requests'));
    const liveBox = el('div', { id: 'explorer-live' });
    m.append(el('h2', {}, 'In flight now'), liveBox);
    const refreshLive = async () => {
      try { fill(liveBox, liveRows((await api('/dashboard/api/live')).requests)); } catch (e) { fill(liveBox, errorBox(e)); }
    };
    refreshLive();
    every(1000, refreshLive);
    const f = el('form', { class: 'filters', id: 'trace-filters' },
      el('label', {}, 'Model', el('input', { name: 'model', placeholder: 'any', value: q.get('model') || '' })),
      el('label', {}, 'Node', el('input', { name: 'node_id', placeholder: 'any', value: q.get('node_id') || '' })),
      el('label', {}, 'Status', el('select', { name: 'status' }, ['', 'completed', 'failed', 'retried', 'incomplete', 'client_disconnected']
        .map((s) => el('option', { value: s, selected: q.get('status') === s }, s || 'any')))),
      el('label', {}, 'Tag', el('input', { name: 'tag', placeholder: 'any', value: q.get('tag') || '' })),
      el('label', {}, 'Since', el('select', { name: 'window' }, [['', 'all time'], ['900', '15 min'], ['3600', '1 hour'], ['86400', '24 hours'], ['604800', '7 days']]
        .map(([v, t]) => el('option', { value: v, selected: q.get('window') === v }, t)))),
      el('label', {}, 'Rows', el('select', { name: 'limit' }, ['50', '100', '250', '1000'].map((v) => el('option', { value: v }, v)))),
      el('button', { type: 'submit' }, 'Search'));
    const list = el('div', { class: 'tablewrap', id: 'trace-list' });
    const detail = el('div', { class: 'detail', id: 'trace-detail' }, el('div', { class: 'hint' }, 'Pick a request to see how it was routed.'));
    m.append(el('h2', {}, 'Latest requests'), f, el('div', { class: 'split' }, list, detail));
    const load = async () => {
      const fd = new FormData(f);
      const p = new URLSearchParams();
      for (const k of ['model', 'node_id', 'status', 'tag', 'limit']) if (fd.get(k)) p.set(k, fd.get(k));
      if (fd.get('window')) p.set('since', String(Math.floor(Date.now() / 1000) - Number(fd.get('window'))));
      let d;
      try { d = await api(`/dashboard/api/traces?${p}`); } catch (e) { fill(list, errorBox(e)); return; }
      const rows = d.traces.map((t) => el('tr', { class: 'clickable', 'data-request-id': t.request_id, onclick: () => {
        for (const r of list.querySelectorAll('tr.selected')) r.classList.remove('selected');
        rowSel(t.request_id);
        showTrace(detail, t.request_id);
      } },
      el('td', {}, fmt.time(t.timestamp)), el('td', { class: 'mono' }, fmt.short(t.request_id)),
      el('td', {}, t.model, t.model !== t.original_model ? el('div', { class: 'sub' }, `asked ${t.original_model}`) : null),
      el('td', {}, t.node_id || '–'), el('td', {}, el('span', { class: `badge ${t.status}` }, t.status)),
      el('td', { class: 'num' }, fmt.ms(t.latency_ms)), el('td', { class: 'num' }, fmt.ms(t.time_to_first_token_ms)),
      el('td', { class: 'num' }, fmt.n(t.completion_tokens)), el('td', { class: 'num' }, fmt.n(tps(t), 1)),
      el('td', { class: 'num' }, t.retry_count || 0), el('td', {}, (t.tags || []).join(', '))));
      fill(list, el('table', {}, el('thead', {}, el('tr', {},
        ['time', 'id', 'model', 'node', 'status', 'latency', 'TTFT', 'tokens', 'tok/s', 'retries', 'tags'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: 11, class: 'hint' }, 'No request matches.')))));
      list.dataset.count = String(d.traces.length);
    };
    const rowSel = (id) => { const r = list.querySelector(`tr[data-request-id="${CSS.escape(id)}"]`); if (r) r.classList.add('selected'); };
    f.addEventListener('submit', (e) => { e.preventDefault(); load(); });
    await load();
    if (q.get('id')) showTrace(detail, q.get('id'));
  };

  // =============================================================== Trends
  function rangePicker(name, options, current, onPick) {
    return el('div', { class: 'row', id: `${name}-range` }, options.map(([v, t]) => el('button', {
      type: 'button', 'data-range': v, class: String(v) === String(current) ? 'active' : '',
      onclick: () => onPick(v),
    }, t)));
  }
  tabs.trends = async (m) => {
    const hours = Number(new URLSearchParams(location.search).get('hours')) || 72;
    m.append(el('h1', {}, 'Trends'),
      rangePicker('trends', [[24, '24h'], [48, '48h'], [72, '72h'], [168, '7d'], [720, '30d']], hours, (h) => go(`/dashboard/trends?hours=${h}`)));
    const d = await api(`/dashboard/api/trends?hours=${hours}`);
    const rows = d.data || [];
    const now = Date.now() / 1000;
    const xs = buckets(now - hours * 3600, now, 3600);
    const total = rows.reduce((a, r) => a + r.request_count, 0);
    const tokens = rows.reduce((a, r) => a + r.total_prompt_tokens + r.total_completion_tokens, 0);
    const lat = total ? rows.reduce((a, r) => a + (r.avg_latency_ms || 0) * r.request_count, 0) / total : null;
    m.append(el('div', { class: 'stats' },
      el('div', { class: 'stat', 'data-stat': 'requests' }, el('div', { class: 'v' }, fmt.n(total)), el('div', { class: 'k' }, `requests in ${hours} h`)),
      el('div', { class: 'stat' }, el('div', { class: 'v' }, fmt.ms(lat)), el('div', { class: 'k' }, 'average latency')),
      el('div', { class: 'stat' }, el('div', { class: 'v' }, fmt.n(tokens)), el('div', { class: 'k' }, 'tokens'))),
    el('div', { class: 'charts' },
      chart('Requests per hour', xs, [{ label: 'requests', values: along(xs, rows, 'hour_bucket', (r) => r.request_count), bars: true }]),
      chart('Average latency (s)', xs, [{ label: 'latency s', values: along(xs, rows, 'hour_bucket', (r) => (r.avg_latency_ms || 0) / 1000, null) }]),
      chart('Tokens per hour', xs, [{ label: 'prompt', values: along(xs, rows, 'hour_bucket', (r) => r.total_prompt_tokens) },
        { label: 'completion', values: along(xs, rows, 'hour_bucket', (r) => r.total_completion_tokens) }])));
  };

  // =============================================================== Models
  tabs.models = async (m) => {
    const days = Number(new URLSearchParams(location.search).get('days')) || 7;
    m.append(el('h1', {}, 'Models'),
      rangePicker('models', [[1, '24h'], [7, '7d'], [30, '30d'], [90, '90d']], days, (v) => go(`/dashboard/models?days=${v}`)));
    const d = await api(`/dashboard/api/models?days=${days}`);
    const today = Date.now() / 1000;
    const pv = pivot(d.daily || [], { x: 'day_bucket', key: 'model_name', y: 'request_count', xs: buckets(today - (days - 1) * 86400, today, 86400) });
    m.append(chart('Requests per day, by model', pv.xs, pv.series));
    m.append(el('div', { class: 'tablewrap' }, el('table', { id: 'models-table' },
      el('thead', {}, el('tr', {}, ['model', 'requests', 'avg latency', 'min', 'max', 'tokens/s', 'prompt tokens', 'completion tokens', 'last seen']
        .map((h, i) => el('th', { class: i ? 'num' : '' }, h)))),
      el('tbody', {}, (d.summary || []).map((s) => el('tr', { 'data-model': s.model_name },
        el('td', {}, s.model_name), el('td', { class: 'num' }, fmt.n(s.total_requests)), el('td', { class: 'num' }, fmt.ms(s.avg_latency_ms)),
        el('td', { class: 'num' }, fmt.ms(s.min_latency_ms)), el('td', { class: 'num' }, fmt.ms(s.max_latency_ms)),
        el('td', { class: 'num' }, fmt.n(s.avg_latency_ms ? s.total_completion_tokens / s.total_requests / (s.avg_latency_ms / 1000) : null, 1)),
        el('td', { class: 'num' }, fmt.n(s.total_prompt_tokens)), el('td', { class: 'num' }, fmt.n(s.total_completion_tokens)),
        el('td', { class: 'num' }, fmt.ago(s.last_seen))))))));
    if (!(d.summary || []).length) m.append(el('div', { class: 'hint' }, 'No request in this range.'));
  };

  // ========================================================== Apps / Tags
  tabs.tags = async (m) => {
    const days = Number(new URLSearchParams(location.search).get('days')) || 7;
    m.append(el('h1', {}, 'Apps / Tags'),
      rangePicker('tags', [[1, '24h'], [7, '7d'], [30, '30d'], [90, '90d']], days, (v) => go(`/dashboard/tags?days=${v}`)));
    const [d, daily] = await Promise.all([api(`/dashboard/api/tags?days=${days}`), api(`/dashboard/api/tags/daily?days=${days}`)]);
    const rows = d.data || [];
    const top = rows.slice().sort((a, b) => b.request_count - a.request_count)[0];
    m.append(el('div', { class: 'stats' },
      el('div', { class: 'stat', 'data-stat': 'unique-tags' }, el('div', { class: 'v' }, String(rows.length)), el('div', { class: 'k' }, 'tags seen')),
      el('div', { class: 'stat', 'data-stat': 'top-tag' }, el('div', { class: 'v' }, top ? top.tag : '–'), el('div', { class: 'k' }, 'busiest tag'))));
    const today = Date.now() / 1000;
    const pv = pivot(daily.data || [], { x: 'day_bucket', key: 'tag', y: 'request_count', xs: buckets(today - (days - 1) * 86400, today, 86400) });
    m.append(chart('Requests per day, by tag', pv.xs, pv.series));
    m.append(el('div', { class: 'tablewrap' }, el('table', { id: 'tags-table' },
      el('thead', {}, el('tr', {}, ['tag', 'requests', 'completed', 'failed', 'error rate', 'avg latency', 'avg TTFT', 'prompt tokens', 'completion tokens']
        .map((h, i) => el('th', { class: i ? 'num' : '' }, h)))),
      el('tbody', {}, rows.map((t) => el('tr', { 'data-tag': t.tag },
        el('td', {}, el('a', { href: `/dashboard/requests?tag=${encodeURIComponent(t.tag)}` }, t.tag)),
        el('td', { class: 'num' }, fmt.n(t.request_count)), el('td', { class: 'num' }, fmt.n(t.completed_count)),
        el('td', { class: 'num' }, fmt.n(t.failed_count)), el('td', { class: 'num' }, fmt.pct(t.request_count ? (100 * t.failed_count) / t.request_count : 0)),
        el('td', { class: 'num' }, fmt.ms(t.avg_latency_ms)), el('td', { class: 'num' }, fmt.ms(t.avg_ttft_ms)),
        el('td', { class: 'num' }, fmt.n(t.total_prompt_tokens)), el('td', { class: 'num' }, fmt.n(t.total_completion_tokens))))))));
    m.append(el('h2', {}, 'Tag your requests'), el('pre', { class: 'snippet' },
      `# a header (any API)\ncurl ${location.origin}/api/chat -H 'X-Herd-Tags: my-app, prod' -d '{"model":"llama3.2:3b","messages":[{"role":"user","content":"hi"}]}'\n\n` +
      `# or in the body: "metadata": {"tags": ["my-app"]}   (OpenAI "user": "alice" becomes the tag user:alice)`));
  };

  // =========================================================== Benchmarks
  tabs.benchmarks = async (m) => {
    m.append(el('h1', {}, 'Benchmarks'),
      el('p', { class: 'hint' }, 'A short run of chat requests through herd itself (routing, slots and all) to the loaded models. Results are kept in benchmarks.json in the data directory.'));
    const msg = el('div', { id: 'bench-msg' });
    const loaded = [...new Set(((live.snap && live.snap.nodes) || []).flatMap((n) => ((n.ollama && n.ollama.models_loaded) || []).map((x) => x.name)))];
    const f = el('form', { class: 'filters', id: 'bench-form' },
      el('label', {}, 'Duration (s)', el('input', { name: 'duration', type: 'number', min: 1, max: 600, value: 10 })),
      el('label', {}, 'At once', el('input', { name: 'concurrency', type: 'number', min: 1, max: 32, value: 2 })),
      el('label', {}, 'Tokens per answer', el('input', { name: 'num_predict', type: 'number', min: 1, max: 4096, value: 32 })),
      el('label', {}, 'Max requests', el('input', { name: 'max_requests', type: 'number', min: 1, max: 10000, value: 200 })),
      el('label', {}, 'Models (empty: every loaded model)', el('input', { name: 'models', placeholder: loaded.join(', ') || 'model names, comma-separated' })),
      el('button', { type: 'submit', id: 'bench-start' }, 'Run benchmark'),
      el('button', { type: 'button', class: 'danger', id: 'bench-cancel', onclick: async () => {
        try { await api('/dashboard/api/benchmarks/cancel', { body: {}, admin: true }); } catch (e) { fill(msg, errorBox(e)); }
      } }, 'Cancel'));
    const prog = el('div', { class: 'detail', id: 'bench-progress' });
    const hist = el('div', { id: 'bench-history' });
    m.append(f, msg, prog, el('h2', {}, 'History'), hist);
    const history = async () => {
      const d = await api('/dashboard/api/benchmarks');
      const runs = d.runs || [];
      const asc = runs.slice().reverse();
      fill(hist, 
        el('div', { class: 'charts' },
          chart('Throughput per run', asc.map((r) => r.timestamp), [{ label: 'tokens/s', values: asc.map((r) => r.tokens_per_sec) },
            { label: 'requests/s', values: asc.map((r) => r.requests_per_sec) }]),
          chart('Latency and TTFT per run (p50, ms)', asc.map((r) => r.timestamp), [{ label: 'latency p50', values: asc.map((r) => r.latency_p50_ms) },
            { label: 'TTFT p50', values: asc.map((r) => r.ttft_p50_ms) }])),
        el('div', { class: 'tablewrap' }, el('table', { id: 'bench-runs' },
          el('thead', {}, el('tr', {}, ['when', 'run', 'status', 'requests', 'failures', 'req/s', 'tok/s', 'latency p50/p95', 'TTFT p50', 'models', 'nodes']
            .map((h) => el('th', {}, h)))),
          el('tbody', {}, runs.map((r) => el('tr', { 'data-run': r.run_id },
            el('td', {}, fmt.time(r.timestamp)), el('td', { class: 'mono' }, fmt.short(r.run_id)),
            el('td', {}, el('span', { class: `badge ${r.status === 'completed' ? 'ok' : 'warning'}` }, r.status)),
            el('td', { class: 'num' }, fmt.n(r.total_requests)), el('td', { class: 'num' }, fmt.n(r.total_failures)),
            el('td', { class: 'num' }, fmt.n(r.requests_per_sec, 2)), el('td', { class: 'num' }, fmt.n(r.tokens_per_sec, 1)),
            el('td', { class: 'num' }, `${fmt.ms(r.latency_p50_ms)} / ${fmt.ms(r.latency_p95_ms)}`), el('td', { class: 'num' }, fmt.ms(r.ttft_p50_ms)),
            el('td', {}, (r.models || []).join(', ')), el('td', {}, Object.keys(r.per_node_results || {}).join(', '))))))));
    };
    let wasRunning = false;
    const progress = async () => {
      let p;
      try { p = await api('/dashboard/api/benchmarks/progress'); } catch (e) { fill(prog, errorBox(e)); return; }
      if (p.status === 'idle') { fill(prog, el('div', { class: 'hint' }, 'No benchmark has run since herd started.')); return; }
      prog.dataset.status = p.status;
      fill(prog, 
        el('h3', {}, `Run ${fmt.short(p.run_id)} `, el('span', { class: `badge ${p.running ? 'running' : 'ok'}`, id: 'bench-status' }, p.status)),
        el('progress', { max: p.planned_duration_s, value: Math.min(p.elapsed_s, p.planned_duration_s) }),
        el('div', { class: 'kv' },
          ...[['elapsed', `${fmt.n(p.elapsed_s, 1)} s`], ['requests', fmt.n(p.total_requests)], ['failures', fmt.n(p.total_failures)],
            ['in flight', fmt.n(p.in_flight)], ['requests/s', fmt.n(p.requests_per_sec, 2)], ['tokens/s', fmt.n(p.tokens_per_sec, 1)],
            ['latency p50', fmt.ms(p.latency_p50_ms)], ['TTFT p50', fmt.ms(p.ttft_p50_ms)]]
            .map(([k, v]) => el('div', {}, el('div', { class: 'k' }, k), el('div', { class: 'v' }, v)))),
        p.last_error ? el('div', { class: 'hint' }, `last error: ${p.last_error}`) : null);
      if (wasRunning && !p.running) history();
      wasRunning = p.running;
    };
    f.addEventListener('submit', async (e) => {
      e.preventDefault();
      const fd = new FormData(f);
      const body = {};
      for (const k of ['duration', 'concurrency', 'num_predict', 'max_requests']) body[k] = Number(fd.get(k));
      const models = String(fd.get('models') || '').split(',').map((s) => s.trim()).filter(Boolean);
      if (models.length) body.models = models;
      try {
        const r = await api('/dashboard/api/benchmarks/start', { body, admin: true });
        fill(msg, el('div', { class: 'msg ok' }, `Started run ${fmt.short(r.run_id)} on ${r.models} model(s).`));
        wasRunning = true;
        progress();
      } catch (err) { fill(msg, errorBox(err)); }
    });
    await Promise.all([history(), progress()]);
    every(1000, progress);
  };

  // =============================================================== Health
  tabs.health = async (m) => {
    m.append(el('h1', {}, 'Health'));
    const d = await api('/dashboard/api/health');
    const v = d.vitals;
    const s = v.health_score;
    m.append(el('div', { class: 'row' },
      el('div', { class: 'card' }, el('div', { class: `score ${s >= 80 ? 'good' : s >= 50 ? 'mid' : 'bad'}`, id: 'health-score' }, String(s)),
        el('div', { class: 'sub' }, 'health score (100 − 20 per critical, 10 per warning, 3 per info)')),
      el('div', { class: 'stats', style: { flex: 1 } },
        ...[['Nodes online', `${v.nodes_online} / ${v.nodes_total}`, 'nodes'], ['Requests (24 h)', fmt.n(v.total_requests_24h), 'requests'],
          ['Error rate', fmt.pct(v.overall_error_rate_pct), 'errors'], ['Avg TTFT', fmt.ms(v.avg_ttft_ms), 'ttft'],
          ['Cold loads', fmt.n(v.cold_loads_24h), 'cold'], ['Retries', fmt.n(v.total_retries_24h), 'retries'],
          ['Client disconnects', fmt.n(v.client_disconnects_24h), 'disconnects'], ['Incomplete streams', fmt.n(v.incomplete_streams_24h), 'incomplete']]
          .map(([k, val, id]) => el('div', { class: 'stat', 'data-vital': id }, el('div', { class: 'v' }, val), el('div', { class: 'k' }, k))))));
    if (!v.traces_available) m.append(el('div', { class: 'msg' }, 'No trace store: only the node checks ran.'));
    m.append(el('h2', {}, 'Recommendations'));
    const recs = d.recommendations || [];
    m.append(el('div', { class: 'grid', id: 'health-recs' }, recs.length ? recs.map((r) => el('div', { class: `card rec ${r.severity}`, 'data-check': r.check_id },
      el('header', {}, el('h3', {}, r.title), el('span', { class: `badge ${r.severity}` }, r.severity)),
      el('div', {}, r.description), r.fix ? el('div', { class: 'fix' }, `Fix: ${r.fix}`) : null,
      r.node_id ? el('div', { class: 'sub' }, `node ${r.node_id}`) : null))
      : [el('div', { class: 'msg ok' }, 'All checks pass.')]));
    m.append(el('p', { class: 'hint' }, `Checked ${fmt.time(d.checked_at)} (kept 30 s).`));
  };

  // ====================================================== Recommendations
  /** POST /api/pull with a stream: calls onLine for each progress line. */
  async function pull(model, node, onLine) {
    const headers = { 'Content-Type': 'application/json' };
    if (adminKey()) headers.Authorization = `Bearer ${adminKey()}`;
    const r = await fetch('/api/pull', { method: 'POST', headers, body: JSON.stringify({ model, node_id: node, stream: true }) });
    if (!r.ok) {
      let m = `HTTP ${r.status}`;
      try { m = (await r.json()).error || m; } catch { /* not JSON */ }
      throw new Error(m);
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        let j;
        try { j = JSON.parse(line); } catch { continue; }
        if (j.error) throw new Error(j.error);
        onLine(j);
      }
    }
  }
  function pullButton(model, node, after) {
    const out = el('span', { class: 'pull-progress' });
    const b = el('button', { type: 'button', 'data-pull': `${node}/${model}`, onclick: async () => {
      b.disabled = true;
      try {
        await pull(model, node, (j) => {
          const pct = j.total ? ` ${fmt.n((100 * (j.completed || 0)) / j.total, 0)}%` : '';
          out.textContent = `${j.status || ''}${pct}`;
        });
        out.textContent = 'pulled';
        if (after) after();
      } catch (e) { out.textContent = `failed: ${e.message}`; b.disabled = false; }
    } }, 'Pull');
    return el('span', {}, b, ' ', out);
  }
  async function modelManagement(box) {
    fill(box, el('div', { class: 'hint' }, 'Asking every node for its models…'));
    let d;
    try { d = await api('/dashboard/api/model-management'); } catch (e) { fill(box, errorBox(e)); return; }
    const msg = el('div', {});
    fill(box, msg, ...d.nodes.map((n) => {
      const sel = new Set();
      const del = el('button', { type: 'button', class: 'danger', disabled: true, 'data-delete': n.node_id, onclick: async () => {
        if (!window.confirm(`Delete ${[...sel].join(', ')} from ${n.node_id}?`)) return;
        for (const model of sel) {
          try {
            await api('/dashboard/api/delete', { body: { node_id: n.node_id, model }, admin: true });
            fill(msg, el('div', { class: 'msg ok' }, `Deleted ${model} from ${n.node_id}.`));
          } catch (e) { fill(msg, errorBox(e)); }
        }
        modelManagement(box);
      } }, 'Delete selected');
      return el('div', { class: 'card', 'data-mm-node': n.node_id, style: { marginBottom: '12px' } },
        el('header', {}, el('h3', {}, n.node_id), el('span', { class: 'sub' },
          `${fmt.gb(n.total_size_gb)} of models · disk ${fmt.gb(n.disk_available_gb)} free of ${fmt.gb(n.disk_total_gb)}`)),
        n.tags_error ? el('div', { class: 'hint' }, `Sizes unknown: ${n.tags_error}`) : null,
        el('table', {}, el('thead', {}, el('tr', {}, ['', 'model', 'category', 'size', 'in memory', 'last used', 'requests (30 d)', 'pinned'].map((h) => el('th', {}, h)))),
          el('tbody', {}, n.models.map((x) => el('tr', { 'data-mm-model': x.name },
            el('td', {}, el('input', { type: 'checkbox', onchange: (e) => { if (e.target.checked) sel.add(x.name); else sel.delete(x.name); del.disabled = !sel.size; } })),
            el('td', {}, x.name, x.unused ? el('span', { class: 'badge', title: 'not used for 7 days or more' }, ' unused') : null),
            el('td', {}, x.category), el('td', { class: 'num' }, fmt.gb(x.size_gb)),
            el('td', {}, x.loaded_in_vram ? el('span', { class: 'badge ok' }, 'loaded') : '–'),
            el('td', {}, fmt.day(x.last_used)), el('td', { class: 'num' }, fmt.n(x.total_requests)),
            el('td', {}, el('label', { class: 'switch' }, el('input', { type: 'checkbox', checked: x.pinned, 'data-pin': `${n.node_id}/${x.name}`, onchange: async (e) => {
              try {
                await api('/dashboard/api/pinned-models', { body: { node_id: n.node_id, model: x.name, pinned: e.target.checked }, admin: true });
                fill(msg, el('div', { class: 'msg ok' }, `${e.target.checked ? 'Pinned' : 'Unpinned'} ${x.name} on ${n.node_id}.`));
              } catch (err) { e.target.checked = !e.target.checked; fill(msg, errorBox(err)); }
            } }))))))),
        el('div', { class: 'row', style: { marginTop: '8px' } }, del));
    }));
  }
  tabs.recommendations = async (m) => {
    m.append(el('h1', {}, 'Recommendations'));
    const d = await api('/dashboard/api/recommendations');
    const u = d.usage;
    m.append(el('div', { class: 'stats' },
      el('div', { class: 'stat' }, el('div', { class: 'v' }, fmt.n(u.total_requests_24h)), el('div', { class: 'k' }, 'requests in 24 h')),
      ...Object.entries(u.category_breakdown || {}).map(([k, v]) => el('div', { class: 'stat' }, el('div', { class: 'v' }, fmt.n(v)), el('div', { class: 'k' }, k)))));
    if ((d.uncovered_categories || []).length) m.append(el('div', { class: 'msg' }, `No node can cover: ${d.uncovered_categories.join(', ')}.`));
    m.append(el('h2', {}, 'Recommended model mix per node'), el('div', { class: 'grid', id: 'rec-nodes' }, d.nodes.map((n) => el('div', { class: 'card', 'data-rec-node': n.node_id },
      el('header', {}, el('h3', {}, n.node_id), el('span', { class: 'sub' }, `${fmt.gb(n.usable_ram_gb)} usable · ${fmt.gb(n.ram_headroom_gb)} left`)),
      el('table', {}, el('tbody', {}, n.recommendations.map((r) => el('tr', { 'data-rec-model': r.model },
        el('td', {}, el('b', {}, r.display_name), el('div', { class: 'sub' }, `${r.model} · ${r.category} · ${fmt.gb(r.ram_gb)}`), el('div', { class: 'sub' }, r.reason)),
        el('td', {}, el('span', { class: `badge ${r.priority}` }, r.priority)),
        el('td', {}, r.already_available ? el('span', { class: 'badge ok' }, 'on disk') : pullButton(r.model, n.node_id))))))))));
    m.append(el('p', { class: 'hint' }, `Catalogue: ${d.catalog} (${d.catalog_models} models) · generated ${fmt.time(d.generated_at)}`));
    const mm = el('div', { id: 'model-management' });
    m.append(el('h2', {}, 'Model management'), mm);
    await modelManagement(mm);
  };

  // ============================================================= Settings
  tabs.settings = async (m) => {
    m.append(el('h1', {}, 'Settings'));
    const d = await api('/dashboard/api/settings');
    const msg = el('div', { id: 'settings-msg' });
    const key = el('input', { type: 'password', id: 'admin-key', placeholder: d.admin_key_required ? 'required to change anything' : 'not required', value: adminKey() });
    key.addEventListener('change', () => localStorage.setItem('herd-admin-key', key.value));
    const post = async (body) => {
      try {
        const r = await api('/dashboard/api/settings', { body, admin: true });
        fill(msg, el('div', { class: 'msg ok' }, r.status === 'updated' ? `Updated ${Object.keys(r.updated).join(', ')}.` : r.message));
      } catch (e) { fill(msg, errorBox(e)); }
    };
    const t = d.config.toggles;
    const toggle = (k, label) => el('label', { class: 'switch' }, el('input', { type: 'checkbox', 'data-setting': k, checked: t[k], onchange: (e) => post({ [k]: e.target.checked }) }), label,
      el('span', { class: 'hint mono' }, d.env[k]));
    m.append(el('h2', {}, 'Feature toggles (in memory until restart)'), el('div', { class: 'card' },
      el('label', {}, 'Admin key (FLEET_ADMIN_KEY)', key),
      toggle('auto_pull', 'Auto-pull models no node has'),
      toggle('vram_fallback', 'VRAM fallback: answer a cold model with a loaded one'),
      toggle('vram_fallback_cross_category', '… even from another category'),
      el('div', { class: 'row' },
        el('label', {}, 'Context protection', el('select', { 'data-setting': 'context_protection', onchange: (e) => post({ context_protection: e.target.value }) },
          ['strip', 'warn', 'passthrough'].map((v) => el('option', { value: v, selected: d.config.context_protection.context_protection === v }, v)))),
        el('label', {}, 'Max retries', el('input', { type: 'number', min: 0, max: 15, 'data-setting': 'max_retries', value: d.config.server.max_retries,
          onchange: (e) => post({ max_retries: Number(e.target.value) }) }))),
      msg));
    m.append(el('h2', {}, 'Fleet nodes'), el('div', { class: 'tablewrap' }, el('table', { id: 'settings-nodes' },
      el('thead', {}, el('tr', {}, ['node', 'status', 'herd-node', 'Ollama', 'address', 'models loaded', 'on disk', 'slots'].map((h) => el('th', {}, h)))),
      el('tbody', {}, d.nodes.map((n) => el('tr', { 'data-node': n.node_id },
        el('td', {}, n.node_id, n.is_router ? ' (router host)' : ''), el('td', {}, el('span', { class: `badge ${n.status}` }, n.status)),
        el('td', {}, n.agent_version || 'unknown', n.version_matches ? '' : el('span', { class: 'badge warning', title: `herd is ${d.router_version}` }, ' differs')),
        el('td', {}, n.ollama_version || '–'), el('td', { class: 'mono' }, n.ip),
        el('td', { class: 'num' }, n.models_loaded_count), el('td', { class: 'num' }, n.models_available_count), el('td', { class: 'num' }, n.num_parallel)))))));
    m.append(el('h2', {}, `Router configuration · herd ${d.router_version} on ${d.router_hostname}`));
    m.append(el('div', { class: 'grid' }, Object.entries(d.config).map(([group, vals]) => el('div', { class: 'card', 'data-group': group },
      el('h3', {}, group.replace(/_/g, ' ')),
      el('table', {}, el('tbody', {}, Object.entries(vals).map(([k, v]) => el('tr', {},
        el('td', {}, k, el('div', { class: 'hint mono' }, d.env[k] || '')),
        el('td', { class: 'num mono', 'data-config': k }, typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v))))))))));
    const ctx = el('div', { id: 'context-usage' });
    m.append(el('h2', {}, 'Context usage (last 7 days)'), ctx);
    try {
      const c = await api('/dashboard/api/context-usage');
      fill(ctx, c.models.length ? el('div', { class: 'tablewrap' }, el('table', {},
        el('thead', {}, el('tr', {}, ['model', 'allocated', 'requests', 'prompt p50', 'total p99', 'max 24 h', 'utilisation', 'recommended', 'saving'].map((h) => el('th', {}, h)))),
        el('tbody', {}, c.models.map((x) => el('tr', { 'data-ctx-model': x.model },
          el('td', {}, x.model), el('td', { class: 'num' }, fmt.n(x.allocated_ctx)), el('td', { class: 'num' }, fmt.n(x.request_count)),
          el('td', { class: 'num' }, fmt.n(x.prompt_tokens.p50)), el('td', { class: 'num' }, fmt.n(x.total_tokens.p99)),
          el('td', { class: 'num' }, fmt.n(x.total_tokens.max_24h)), el('td', { class: 'num' }, fmt.pct(x.utilization_pct)),
          el('td', { class: 'num' }, fmt.n(x.recommended_ctx)), el('td', { class: 'num' }, fmt.pct(x.savings_pct)))))))
        : el('div', { class: 'hint' }, 'No model is loaded.'));
    } catch (e) { fill(ctx, errorBox(e)); }
  };

  // ---------------------------------------------------------------- start
  connect();
  show(tabFromPath(location.pathname));
})();
