// The dashboard's JSON APIs (/dashboard/api/*), its live stream and its
// static files, on a real fleet (herd + herd-sim + herd-node per node) with
// real traffic: every shape of reference §5.5, the numbers the traffic
// must produce, and bad input (400 with a sentence, 404, 405, 413, the
// admin key).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { get, post, request, parseJson, openStream, waitFor } from './lib/harness.mjs';
import { startFleet, startHerd } from './lib/fleet.mjs';

const M = 'llama3.2:3b';
const XSS = '<img src=x onerror=alert(1)>';

async function api(herd, p, status = 200) {
  const r = await get(herd.url, p);
  assert.equal(r.status, status, `GET ${p}: ${r.status} ${r.body.slice(0, 300)}`);
  assert.match(r.headers['content-type'], /application\/json/);
  return parseJson(r);
}

async function chat(herd, { tags = [], user, model = M } = {}) {
  const body = { model, messages: [{ role: 'user', content: 'hello' }], stream: false, options: { num_predict: 8 } };
  if (tags.length) body.metadata = { tags };
  if (user) body.user = user;
  const r = await post(herd.url, '/api/chat', body);
  assert.equal(r.status, 200, r.body);
  return r;
}

function keys(obj, want, what) {
  for (const k of want) assert.ok(k in obj, `${what}: no "${k}" in ${JSON.stringify(obj).slice(0, 300)}`);
}

describe('dashboard APIs', () => {
  let fleet;
  let herd;
  const N = 8;
  before(async () => {
    fleet = await startFleet({ nodes: [{ id: 'alpha', profile: 'rtx-4090' }, { id: 'beta', profile: 'mac-studio' }] });
    herd = fleet.herd;
    // the model loaded on both nodes first, so that routing never waits for
    // a heartbeat to learn where it is hot
    for (const s of fleet.sims) assert.equal((await post(s.url, '/api/generate', { model: M, keep_alive: -1 })).status, 200);
    await waitFor(async () => (await api(herd, '/dashboard/api/fleet')).nodes
      .every((n) => n.ollama.models_loaded.some((m) => m.name === M)), { timeoutMs: 15000, what: `${M} loaded on both nodes` });
    for (let i = 0; i < N - 2; i++) await chat(herd, { tags: ['app-one'] });
    await chat(herd, { tags: ['app-two', XSS] });
    await chat(herd, { user: 'alice' });
    await waitFor(async () => (await api(herd, '/dashboard/api/overview')).total_requests >= N,
      { timeoutMs: 15000, what: `${N} traced requests` });
  });
  after(async () => { await fleet?.stop(); });

  it('overview, usage, trends and models count the traffic', async () => {
    const o = await api(herd, '/dashboard/api/overview');
    keys(o, ['total_requests', 'total_prompt_tokens', 'total_completion_tokens', 'total_tokens', 'models_count'], 'overview');
    assert.equal(o.total_requests, N);
    assert.equal(o.models_count, 1);
    assert.equal(o.total_tokens, o.total_prompt_tokens + o.total_completion_tokens);
    const u = await api(herd, '/dashboard/api/usage?days=7');
    assert.equal(u.days, 7);
    assert.ok(u.data.length >= 1);
    keys(u.data[0], ['node_id', 'model', 'day_bucket', 'request_count', 'completed_count', 'failed_count', 'avg_latency_ms',
      'avg_ttft_ms', 'total_prompt_tokens', 'total_completion_tokens', 'total_retries', 'total_fallbacks'], 'usage row');
    assert.equal(u.data.reduce((a, r) => a + r.request_count, 0), N);
    assert.ok(u.data.every((r) => ['alpha', 'beta'].includes(r.node_id)));
    const t = await api(herd, '/dashboard/api/trends?hours=24');
    assert.equal(t.hours, 24);
    keys(t.data[0], ['hour_bucket', 'request_count', 'avg_latency_ms', 'total_prompt_tokens', 'total_completion_tokens'], 'trend row');
    assert.equal(t.data.reduce((a, r) => a + r.request_count, 0), N);
    const m = await api(herd, '/dashboard/api/models?days=7');
    keys(m, ['days', 'daily', 'summary'], 'models');
    keys(m.summary[0], ['model_name', 'total_requests', 'avg_latency_ms', 'min_latency_ms', 'max_latency_ms',
      'total_prompt_tokens', 'total_completion_tokens', 'first_seen', 'last_seen'], 'model summary');
    assert.equal(m.summary[0].model_name, M);
    assert.equal(m.summary[0].total_requests, N);
  });

  it('tags and their /apps aliases; a tag is data, not markup', async () => {
    const t = await api(herd, '/dashboard/api/tags?days=7');
    keys(t, ['days', 'data', 'summary'], 'tags');
    const by = Object.fromEntries(t.data.map((r) => [r.tag, r]));
    assert.equal(by['app-one'].request_count, N - 2);
    assert.equal(by['app-two'].request_count, 1);
    assert.equal(by[XSS].request_count, 1, 'the tag comes back exactly as sent');
    assert.equal(by['user:alice'].request_count, 1);
    keys(by['app-one'], ['tag', 'request_count', 'completed_count', 'failed_count', 'avg_latency_ms', 'avg_ttft_ms',
      'total_prompt_tokens', 'total_completion_tokens'], 'tag row');
    const apps = await api(herd, '/dashboard/api/apps?days=7');
    assert.deepEqual(apps.data, t.data);
    const d = await api(herd, '/dashboard/api/tags/daily?days=7');
    keys(d.data[0], ['tag', 'day_bucket', 'request_count', 'avg_latency_ms', 'total_tokens'], 'tags/daily row');
    assert.deepEqual((await api(herd, '/dashboard/api/apps/daily?days=7')).data, d.data);
    // escaped in the JSON text itself (Go's encoder escapes < and >)
    const raw = await get(herd.url, '/dashboard/api/tags?days=7');
    assert.ok(!raw.body.includes('<img'), 'no raw markup in the JSON');
  });

  it('traces: newest first, filters, limit', async () => {
    const all = (await api(herd, '/dashboard/api/traces?limit=50')).traces;
    assert.equal(all.length, N);
    keys(all[0], ['request_id', 'model', 'original_model', 'node_id', 'score', 'scores_breakdown', 'status', 'latency_ms',
      'time_to_first_token_ms', 'prompt_tokens', 'completion_tokens', 'retry_count', 'fallback_used', 'excluded_nodes',
      'client_ip', 'original_format', 'error_message', 'timestamp', 'tags'], 'trace');
    for (let i = 1; i < all.length; i++) assert.ok(all[i - 1].timestamp >= all[i].timestamp, 'newest first');
    assert.equal(typeof all[0].fallback_used, 'boolean');
    assert.equal(all[0].client_ip, '127.0.0.1');
    assert.equal((await api(herd, '/dashboard/api/traces?limit=3')).traces.length, 3);
    const alpha = (await api(herd, '/dashboard/api/traces?node_id=alpha')).traces;
    assert.ok(alpha.length > 0 && alpha.every((t) => t.node_id === 'alpha'));
    assert.equal((await api(herd, '/dashboard/api/traces?node=alpha')).traces.length, alpha.length, 'node alias');
    const tagged = (await api(herd, `/dashboard/api/traces?tag=${encodeURIComponent('app-one')}`)).traces;
    assert.equal(tagged.length, N - 2);
    assert.equal((await api(herd, '/dashboard/api/traces?status=failed')).traces.length, 0);
    assert.equal((await api(herd, `/dashboard/api/traces?model=${encodeURIComponent(M)}&status=completed`)).traces.length, N);
    const future = Math.floor(Date.now() / 1000) + 3600;
    assert.equal((await api(herd, `/dashboard/api/traces?since=${future}`)).traces.length, 0);
  });

  it('one request: every candidate with its signals, attempts, events', async () => {
    const [t0] = (await api(herd, '/dashboard/api/traces?limit=1')).traces;
    const d = await api(herd, `/dashboard/api/trace/${t0.request_id}`);
    assert.equal(d.request_id, t0.request_id);
    const t = d.traces.at(-1);
    assert.equal(t.status, 'completed');
    assert.equal(t.scored_candidates.length, 2, 'both nodes were scored');
    for (const c of t.scored_candidates) {
      keys(c, ['node_id', 'score', 'in_flight', 'num_parallel', 'breakdown'], 'candidate');
      keys(c.breakdown, ['thermal', 'memory_fit', 'queue_depth', 'wait_time', 'role_affinity', 'availability_trend',
        'context_fit', 'health', 'slot_free', 'total'], 'breakdown');
    }
    assert.ok(t.scored_candidates.some((c) => c.node_id === t.node_id), 'the winner is among them');
    assert.equal(t.attempts.length, 1);
    keys(t.attempts[0], ['node', 'reason', 'status', 'ms'], 'attempt');
    assert.equal(t.attempts[0].node, t.node_id);
    assert.ok(t.events.some((e) => e.event === 'dispatch' && e.node === t.node_id), JSON.stringify(t.events));
    assert.equal(typeof t.queue_wait_ms, 'number');
    assert.equal(t.endpoint, '/api/chat');
  });

  it('health: vitals, checks, score, 30 s cache', async () => {
    const h = await api(herd, '/dashboard/api/health');
    keys(h, ['vitals', 'recommendations', 'checked_at'], 'health');
    keys(h.vitals, ['nodes_total', 'nodes_online', 'nodes_degraded', 'nodes_offline', 'overall_error_rate_pct',
      'cold_loads_24h', 'avg_ttft_ms', 'total_requests_24h', 'total_retries_24h', 'client_disconnects_24h',
      'incomplete_streams_24h', 'image_generations_24h', 'transcriptions_24h', 'health_score'], 'vitals');
    assert.equal(h.vitals.nodes_online, 2);
    assert.equal(h.vitals.total_requests_24h, N);
    assert.equal(h.vitals.overall_error_rate_pct, 0);
    let crit = 0; let warn = 0; let info = 0;
    for (const r of h.recommendations) {
      keys(r, ['check_id', 'severity', 'title', 'description', 'fix', 'node_id', 'data'], 'recommendation');
      if (r.severity === 'critical') crit++; else if (r.severity === 'warning') warn++; else info++;
    }
    assert.equal(h.vitals.health_score, Math.max(0, 100 - 20 * crit - 10 * warn - 3 * info));
    const again = await api(herd, '/dashboard/api/health');
    assert.equal(again.checked_at, h.checked_at, 'answered from the cache');
  });

  it('recommendations and model management know the nodes and models', async () => {
    const r = await api(herd, '/dashboard/api/recommendations');
    keys(r, ['nodes', 'usage', 'fleet_summary', 'uncovered_categories', 'generated_at'], 'recommendations');
    assert.deepEqual(r.nodes.map((n) => n.node_id).sort(), ['alpha', 'beta']);
    keys(r.nodes[0], ['node_id', 'total_ram_gb', 'usable_ram_gb', 'current_models', 'recommendations', 'disk_total_gb',
      'disk_available_gb', 'total_recommended_ram_gb', 'ram_headroom_gb'], 'node plan');
    assert.ok(r.nodes[0].recommendations.length > 0);
    keys(r.nodes[0].recommendations[0], ['model', 'display_name', 'category', 'ram_gb', 'quality_score', 'reason',
      'priority', 'already_available'], 'pick');
    assert.equal(r.usage.total_requests_24h, N);
    assert.equal(r.usage.top_models[0].model, M);
    const mm = await api(herd, '/dashboard/api/model-management');
    assert.deepEqual(mm.nodes.map((n) => n.node_id).sort(), ['alpha', 'beta']);
    let served = 0;
    for (const n of mm.nodes) {
      keys(n, ['node_id', 'models', 'total_size_gb', 'disk_available_gb', 'disk_total_gb'], 'mm node');
      const m = n.models.find((x) => x.name === M);
      keys(m, ['name', 'display_name', 'category', 'size_gb', 'parameter_size', 'quantization', 'last_used',
        'days_unused', 'total_requests', 'loaded_in_vram', 'unused'], 'mm model');
      assert.equal(m.loaded_in_vram, true);
      assert.ok(m.size_gb > 0, 'sizes come from the node\'s /api/tags');
      assert.equal(n.models[0].loaded_in_vram, true, 'loaded models first');
      served += m.total_requests;
    }
    assert.equal(served, N);
  });

  it('context usage from the traces of each loaded model', async () => {
    const c = await api(herd, '/dashboard/api/context-usage?days=7');
    assert.equal(c.days, 7);
    const m = c.models.find((x) => x.model === M);
    keys(m, ['model', 'allocated_ctx', 'override_ctx', 'request_count', 'prompt_tokens', 'total_tokens',
      'utilization_pct', 'recommended_ctx', 'savings_pct'], 'context usage');
    assert.equal(m.request_count, N);
    assert.ok(m.allocated_ctx > 0);
    assert.ok(m.recommended_ctx >= 4096 && m.recommended_ctx <= m.allocated_ctx);
    keys(m.prompt_tokens, ['avg', 'p50', 'p75', 'p95', 'p99', 'max'], 'prompt tokens');
  });

  it('settings: the effective configuration, run-time toggles', async () => {
    const s = await api(herd, '/dashboard/api/settings');
    keys(s, ['router_version', 'router_hostname', 'config', 'env', 'mutable', 'nodes'], 'settings');
    keys(s.config, ['toggles', 'server', 'heartbeat', 'scoring', 'context_protection', 'auto_pull_config'], 'config');
    assert.equal(s.config.toggles.auto_pull, false, 'fleet.mjs starts herd with FLEET_AUTO_PULL=false');
    assert.equal(s.config.scoring.score_model_hot, 50);
    assert.equal(s.env.auto_pull, 'FLEET_AUTO_PULL');
    assert.equal(s.config.server.port, herd.port, 'the real port');
    assert.deepEqual(s.nodes.map((n) => n.node_id).sort(), ['alpha', 'beta']);
    keys(s.nodes[0], ['node_id', 'status', 'agent_version', 'ollama_version', 'ip', 'models_loaded_count', 'is_router'], 'settings node');
    assert.equal(s.nodes[0].agent_version, s.router_version);
    let r = await post(herd.url, '/dashboard/api/settings', { auto_pull: true, context_protection: 'warn', max_retries: 3 });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(parseJson(r), { status: 'updated', updated: { context_protection: 'warn', auto_pull: true, max_retries: 3 } });
    const s2 = await api(herd, '/dashboard/api/settings');
    assert.equal(s2.config.toggles.auto_pull, true);
    assert.equal(s2.config.context_protection.context_protection, 'warn');
    assert.equal(s2.config.server.max_retries, 3);
    r = await post(herd.url, '/dashboard/api/settings', { score_model_hot: 1 });
    assert.equal(r.status, 200);
    assert.equal(parseJson(r).status, 'no_change');
    assert.deepEqual(parseJson(r).ignored, ['score_model_hot']);
    assert.equal((await api(herd, '/dashboard/api/settings')).config.scoring.score_model_hot, 50);
    r = await post(herd.url, '/dashboard/api/settings', { auto_pull: 'yes' });
    assert.equal(r.status, 400);
    assert.match(parseJson(r).error, /auto_pull: must be true or false/);
    r = await post(herd.url, '/dashboard/api/settings', { max_retries: 99 });
    assert.equal(r.status, 400);
    r = await post(herd.url, '/dashboard/api/settings', { context_protection: 'maybe' });
    assert.equal(r.status, 400);
    assert.equal((await api(herd, '/dashboard/api/settings')).config.server.max_retries, 3, 'a refused change changes nothing');
    await post(herd.url, '/dashboard/api/settings', { auto_pull: false, context_protection: 'strip', max_retries: 2 });
  });

  it('pinned models are kept in <data_dir>/pinned_models.json', async () => {
    let r = await post(herd.url, '/dashboard/api/pinned-models', { node_id: 'alpha', model: 'qwen3:8b', pinned: true });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(parseJson(r), { ok: true, per_node: { alpha: ['qwen3:8b'] } });
    r = await post(herd.url, '/dashboard/api/pinned-models', { node_id: 'alpha', model: 'llama3.2', pinned: true });
    assert.deepEqual(parseJson(r).per_node.alpha, ['llama3.2:latest', 'qwen3:8b'], 'normalised, sorted');
    const file = JSON.parse(fs.readFileSync(path.join(herd.dataDir, 'pinned_models.json'), 'utf8'));
    assert.deepEqual(file.nodes, { alpha: ['llama3.2:latest', 'qwen3:8b'] });
    assert.equal(typeof file.updated_at, 'number');
    const g = await api(herd, '/dashboard/api/pinned-models');
    keys(g, ['env_pins', 'per_node', 'max_count'], 'pins');
    await post(herd.url, '/dashboard/api/pinned-models', { node_id: 'alpha', model: 'llama3.2', pinned: false });
    r = await post(herd.url, '/dashboard/api/pinned-models', { node_id: 'alpha', model: 'qwen3:8b', pinned: false });
    assert.deepEqual(parseJson(r).per_node, {}, 'the last unpin removes the node');
    r = await post(herd.url, '/dashboard/api/pinned-models', { node_id: 'alpha', model: 'qwen3:8b' });
    assert.equal(r.status, 400);
    assert.match(parseJson(r).error, /pinned/);
  });

  it('a benchmark runs through herd and is kept in benchmarks.json', async () => {
    let r = await post(herd.url, '/dashboard/api/benchmarks/cancel', {});
    assert.equal(r.status, 409);
    r = await post(herd.url, '/dashboard/api/benchmarks/start', { duration: 2, concurrency: 2, num_predict: 8, max_requests: 40 });
    assert.equal(r.status, 200, r.body);
    const { run_id: id, models } = parseJson(r);
    assert.equal(models, 1);
    r = await post(herd.url, '/dashboard/api/benchmarks/start', { duration: 2 });
    assert.ok([200, 409].includes(r.status));
    if (r.status === 409) assert.match(parseJson(r).error, /already running/);
    const p = await waitFor(async () => {
      const x = await api(herd, '/dashboard/api/benchmarks/progress');
      return x.run_id === id && !x.running ? x : null;
    }, { timeoutMs: 20000, what: 'the benchmark to end' });
    assert.equal(p.status, 'completed');
    assert.ok(p.total_requests > 0 && p.total_requests <= 40);
    assert.equal(p.total_failures, 0);
    assert.ok(p.tokens_per_sec > 0);
    assert.deepEqual(p.models, [M]);
    assert.ok(Object.keys(p.per_node_results).every((n) => ['alpha', 'beta'].includes(n)));
    const list = await api(herd, '/dashboard/api/benchmarks');
    assert.equal(list.runs[0].run_id, id);
    keys(list.runs[0], ['run_id', 'timestamp', 'duration_s', 'total_requests', 'total_failures', 'total_prompt_tokens',
      'total_completion_tokens', 'requests_per_sec', 'tokens_per_sec', 'latency_p50_ms', 'latency_p95_ms', 'latency_p99_ms',
      'ttft_p50_ms', 'ttft_p95_ms', 'ttft_p99_ms', 'fleet_snapshot', 'per_model_results', 'per_node_results'], 'run');
    assert.equal((await api(herd, `/dashboard/api/benchmarks/${id}`)).run_id, id);
    await api(herd, '/dashboard/api/benchmarks/no-such-run', 404);
    const file = JSON.parse(fs.readFileSync(path.join(herd.dataDir, 'benchmarks.json'), 'utf8'));
    assert.equal(file.runs[0].run_id, id);
    // its requests went through herd: traced, tagged (trace rows are
    // written in batches by the writer thread: wait for the last ones)
    const t = await waitFor(async () => {
      const x = await api(herd, `/dashboard/api/traces?tag=benchmark:${id.slice(0, 8)}&limit=1000`);
      return x.traces.length >= p.total_requests ? x : null;
    }, { what: 'every benchmark request traced' });
    assert.equal(t.traces.length, p.total_requests);
    r = await post(herd.url, '/dashboard/api/benchmarks/start', { duration: 0 });
    assert.equal(r.status, 400);
    r = await post(herd.url, '/dashboard/api/benchmarks/start', { models: 'x' });
    assert.equal(r.status, 400);
  });

  it('the live stream sends the fleet every 2 s; live and fleet snapshots', async () => {
    const s = openStream(herd.url, { method: 'GET', path: '/dashboard/events' });
    const res = await s.response;
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /text\/event-stream/);
    const frames = [];
    while (frames.length < 2) {
      const line = await s.next({ timeoutMs: 6000 });
      if (line && line.startsWith('data: ')) frames.push(JSON.parse(line.slice(6)));
    }
    s.abort();
    keys(frames[0], ['fleet', 'nodes', 'queues', 'live', 'timestamp'], 'snapshot');
    assert.ok(frames[1].timestamp - frames[0].timestamp >= 1.5, 'a new frame every 2 s');
    const n = frames[0].nodes.find((x) => x.node_id === 'alpha');
    keys(n, ['node_id', 'status', 'hardware', 'cpu', 'memory', 'ollama', 'num_parallel', 'in_flight', 'agent_version'], 'node');
    keys(n.memory, ['total_gb', 'used_gb', 'available_gb', 'pressure'], 'memory');
    assert.equal(n.ollama.models_loaded[0].name, M);
    keys(n.ollama.models_loaded[0], ['name', 'size_gb', 'parameter_size', 'quantization', 'context_length'], 'loaded model');
    assert.ok(Object.values(frames[0].queues).some((q) => q.node_id === 'alpha' && q.model === M));
    // HEAD: the head only, and the request ends (it used to stream forever)
    const head = await request(herd.url, { method: 'HEAD', path: '/dashboard/events', timeoutMs: 3000 });
    assert.equal(head.status, 200);
    assert.notEqual(head.error, 'timeout');
    assert.match(head.headers['content-type'], /text\/event-stream/);
    const lv = await api(herd, '/dashboard/api/live');
    keys(lv, ['requests', 'requests_held', 'timestamp'], 'live');
    const f = await api(herd, '/dashboard/api/fleet');
    assert.equal(f.fleet.nodes_online, 2);
  });

  it('bad parameters get 400 with a sentence', async () => {
    const cases = [
      ['/dashboard/api/traces?limit=0', /limit: must be an integer from 1 to 1000/],
      ['/dashboard/api/traces?limit=1001', /limit/],
      ['/dashboard/api/traces?limit=ten', /limit.*"ten"/],
      ['/dashboard/api/usage?days=0', /days: must be an integer from 1 to 365/],
      ['/dashboard/api/models?days=366', /days/],
      ['/dashboard/api/tags?days=-1', /days/],
      ['/dashboard/api/trends?hours=8761', /hours: must be an integer from 1 to 8760/],
      ['/dashboard/api/trends?hours=1.5', /hours/],
      ['/dashboard/api/trends?start_ts=-5&end_ts=10', /start_ts/],
      ['/dashboard/api/trends?start_ts=abc', /start_ts: must be a Unix time/],
      ['/dashboard/api/models?start_ts=200&end_ts=100', /start_ts must not be after end_ts/],
      ['/dashboard/api/traces?since=200&until=100', /since must not be after until/],
      ['/dashboard/api/traces?status=bogus', /status: must be completed, failed/],
      [`/dashboard/api/traces?model=${'m'.repeat(300)}`, /model: longer than 256 bytes/],
      ['/dashboard/api/context-usage?days=0', /days/],
      ['/dashboard/api/recommendations?refresh=maybe', /refresh/],
      ['/dashboard/api/trace/not%20an%20id', /request_id/],
    ];
    for (const [p, re] of cases) {
      const r = await get(herd.url, p);
      assert.equal(r.status, 400, `${p}: ${r.status} ${r.body}`);
      assert.match(parseJson(r).error, re, p);
    }
    await api(herd, '/dashboard/api/trace/00000000-0000-4000-8000-000000000000', 404);
  });

  it('bad bodies, unknown APIs and methods', async () => {
    let r = await request(herd.url, { method: 'POST', path: '/dashboard/api/settings', body: '{"auto_pull":', headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 400);
    assert.match(parseJson(r).error, /invalid JSON/);
    r = await request(herd.url, { method: 'POST', path: '/dashboard/api/settings', body: '[1,2]', headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 400);
    assert.match(parseJson(r).error, /must be a JSON object/);
    r = await request(herd.url, { method: 'POST', path: '/dashboard/api/settings', body: '' });
    assert.equal(r.status, 400);
    r = await post(herd.url, '/dashboard/api/pinned-models', { node_id: 'alpha', model: 'x', pinned: true, pad: 'x'.repeat(70000) });
    assert.equal(r.status, 413);
    r = await post(herd.url, '/dashboard/api/benchmarks/start', { pad: 'x'.repeat(70000) });
    assert.equal(r.status, 413);
    r = await get(herd.url, '/dashboard/api/nope');
    assert.equal(r.status, 404);
    assert.match(parseJson(r).error, /no such dashboard API/);
    r = await request(herd.url, { method: 'DELETE', path: '/dashboard/api/health' });
    assert.equal(r.status, 405);
    r = await post(herd.url, '/dashboard/api/overview', {});
    assert.equal(r.status, 405);
    r = await get(herd.url, '/dashboard/nowhere');
    assert.equal(r.status, 404);
  });

  it('pages and static files come from the binary, with a strict CSP', async () => {
    for (const p of ['/dashboard', '/dashboard/', '/dashboard/trends', '/dashboard/models', '/dashboard/tags', '/dashboard/apps',
      '/dashboard/benchmarks', '/dashboard/health', '/dashboard/recommendations', '/dashboard/settings', '/dashboard/requests']) {
      const r = await get(herd.url, p);
      assert.equal(r.status, 200, p);
      assert.match(r.headers['content-type'], /text\/html/);
      assert.match(r.headers['content-security-policy'], /script-src 'self'/);
      for (const tab of ['Fleet', 'Trends', 'Models', 'Tags', 'Benchmarks', 'Health', 'Recommendations', 'Settings', 'Requests']) {
        assert.ok(r.body.includes(`>${tab}<`) || r.body.includes(`>Apps / ${tab}<`), `${p}: tab ${tab}`);
      }
      assert.ok(!/https?:\/\/(?!localhost)/.test(r.body.replace(/xmlns="[^"]*"/g, '')), 'no external URL');
    }
    const js = await get(herd.url, '/dashboard/static/uplot.js');
    assert.equal(js.status, 200);
    assert.match(js.headers['content-type'], /javascript/);
    assert.match(js.body, /uPlot/);
    for (const p of ['/dashboard/static/app.js', '/dashboard/static/style.css', '/dashboard/static/uplot.css', '/favicon.svg', '/favicon.ico']) {
      assert.equal((await get(herd.url, p)).status, 200, p);
    }
    assert.equal((await get(herd.url, '/dashboard/static/models.json')).status, 404, 'the catalogue is not a page');
    assert.equal((await get(herd.url, '/dashboard/static/../main.c')).status, 404);
  });
});

describe('dashboard admin key and no traces', () => {
  it('mutating endpoints need FLEET_ADMIN_KEY when it is set', async () => {
    const herd = await startHerd({ env: { FLEET_ADMIN_KEY: 'k3y' } });
    try {
      for (const [p, body] of [['/dashboard/api/settings', { auto_pull: true }],
        ['/dashboard/api/pinned-models', { node_id: 'a', model: 'm', pinned: true }],
        ['/dashboard/api/benchmarks/start', {}], ['/dashboard/api/benchmarks/cancel', {}]]) {
        let r = await post(herd.url, p, body);
        assert.equal(r.status, 401, `${p}: ${r.body}`);
        r = await post(herd.url, p, body, { headers: { authorization: 'Bearer nope' } });
        assert.equal(r.status, 403, p);
      }
      const r = await post(herd.url, '/dashboard/api/settings', { auto_pull: true }, { headers: { authorization: 'Bearer k3y' } });
      assert.equal(r.status, 200, r.body);
      const s = await api(herd, '/dashboard/api/settings');
      assert.equal(s.admin_key_required, true);
      assert.equal(s.config.security.admin_key, 'set', 'the key itself is never shown');
      assert.ok(!JSON.stringify(s).includes('k3y'));
      assert.equal((await get(herd.url, '/dashboard/api/health')).status, 200, 'reading needs no key');
    } finally {
      await herd.stop();
      fs.rmSync(herd.dataDir, { recursive: true, force: true });
    }
  });

  it('without traces the history APIs say why, the rest works', async () => {
    const herd = await startHerd({ args: ['--no-traces'] });
    try {
      const r = await get(herd.url, '/dashboard/api/traces');
      assert.equal(r.status, 503);
      assert.match(parseJson(r).error, /traces are off/);
      const h = await api(herd, '/dashboard/api/health');
      assert.equal(h.vitals.traces_available, false);
      await api(herd, '/dashboard/api/recommendations');
      await api(herd, '/dashboard/api/settings');
    } finally {
      await herd.stop();
      fs.rmSync(herd.dataDir, { recursive: true, force: true });
    }
  });
});
