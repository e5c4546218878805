// herd, the coordinator, in front of real herd-sim servers with real
// herd-node agents, driven by the official `ollama` and `openai` clients
// and checked in its SQLite trace file with real queries.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import fs from 'node:fs';
import path from 'node:path';
import { startSim, get, post, ndjson, sseFrames, openStream, parseJson, request, waitFor, decodeFloat32Base64, runBin, freePort } from './lib/harness.mjs';
import { startFleet, startHerd, tmpDir } from './lib/fleet.mjs';

const M = 'llama3.2:3b';
const TOOLS_MODEL = 'qwen3:8b';
const EMBED = 'nomic-embed-text';
const WEATHER = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}];

function sql(db, query) {
  const out = execFileSync('sqlite3', ['-json', db, query], { encoding: 'utf8' });
  return out.trim() === '' ? [] : JSON.parse(out);
}

/** Rows of request_traces once herd's writer has committed n of them. */
async function traceRows(herd, where, n) {
  return waitFor(() => {
    const rows = sql(herd.db, `SELECT * FROM request_traces WHERE ${where} ORDER BY id`);
    return rows.length >= n ? rows : null;
  }, { timeoutMs: 10000, what: `${n} trace rows where ${where}` });
}

async function simState(sim) {
  return JSON.parse((await get(sim.url, '/_sim/state')).body);
}

describe('herd with the official clients', () => {
  let fleet;
  let ol;
  let oa;
  before(async () => {
    fleet = await startFleet({ nodes: [{ id: 'alpha', profile: 'rtx-4090' }, { id: 'beta', profile: 'mac-studio' }] });
    ol = new Ollama({ host: fleet.herd.url });
    oa = new OpenAI({ baseURL: `${fleet.herd.url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 30000 });
  });
  after(async () => { await fleet?.stop(); });

  it('ollama chat, streaming and not; the headers name the node that served', async () => {
    const r = await ol.chat({ model: M, messages: [{ role: 'user', content: 'hello' }] });
    assert.equal(r.done, true);
    assert.equal(r.message.role, 'assistant');
    assert.ok(r.message.content.length > 0);
    assert.ok(r.eval_count > 0 && r.prompt_eval_count > 0);
    assert.equal(r.response, undefined, 'a chat answer has no "response" field');
    let text = '';
    let last;
    for await (const part of await ol.chat({ model: M, messages: [{ role: 'user', content: 'hello' }], stream: true })) {
      text += part.message.content;
      last = part;
    }
    assert.equal(last.done, true);
    assert.ok(text.length > 0);
    const raw = await post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(raw.status, 200);
    assert.match(raw.headers['content-type'], /application\/x-ndjson/);
    assert.ok(['alpha', 'beta'].includes(raw.headers['x-fleet-node']));
    assert.match(raw.headers['x-fleet-score'], /^-?\d+$/);
    assert.equal(raw.headers['x-fleet-retries'], '0');
    const lines = ndjson(raw.body);
    assert.equal(lines.at(-1).done, true);
    // the node that the header names really served it
    const reqs = JSON.parse((await get(fleet.byId[raw.headers['x-fleet-node']].sim.url, '/_sim/requests')).body);
    assert.ok(reqs.requests.some((q) => q.endpoint === '/api/chat' && q.model === M));
  });

  it('ollama generate, embed, embeddings, list, ps, show, version', async () => {
    const g = await ol.generate({ model: M, prompt: 'Why is the sky blue?' });
    assert.equal(g.done, true);
    assert.ok(g.response.length > 0);
    const e = await ol.embed({ model: EMBED, input: ['one', 'two'] });
    assert.equal(e.embeddings.length, 2);
    assert.ok(e.embeddings[0].length > 0);
    const legacy = await ol.embeddings({ model: EMBED, prompt: 'one' });
    assert.ok(legacy.embedding.length > 0);
    const tags = await ol.list();
    const llama = tags.models.find((m) => m.name === M);
    assert.ok(llama, 'the model is listed');
    assert.deepEqual([...llama.details.fleet_nodes].sort(), ['alpha', 'beta']);
    const ps = await waitFor(async () => {
      const p = await ol.ps();
      return p.models.length > 0 ? p : null;
    }, { what: 'the agents to report the models the requests above loaded' });
    for (const m of ps.models) assert.ok(['alpha', 'beta'].includes(m.fleet_node));
    const show = await ol.show({ model: M });
    assert.ok(show.details && show.modelfile !== undefined);
    const v = parseJson(await get(fleet.herd.url, '/api/version'));
    assert.match(v.version, /^\d+\.\d+/);
    assert.ok(v.herd_version);
    const root = await get(fleet.herd.url, '/');
    assert.equal(root.body, 'Ollama is running');
  });

  it('openai chat: stream with usage, stable id, role delta, [DONE]; non-stream usage', async () => {
    const stream = await oa.chat.completions.create({
      model: M, messages: [{ role: 'user', content: 'Say something' }], stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const id = chunks[0].id;
    assert.match(id, /^chatcmpl-/);
    assert.ok(chunks.every((c) => c.id === id && c.created === chunks[0].created));
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const fin = chunks.find((c) => c.choices[0]?.finish_reason);
    assert.equal(fin.choices[0].finish_reason, 'stop');
    const usage = chunks.at(-1);
    assert.deepEqual(usage.choices, []);
    assert.ok(usage.usage.completion_tokens > 0);
    const raw = await post(fleet.herd.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }], stream: true });
    assert.equal(sseFrames(raw.body).at(-1), '[DONE]');
    const one = await oa.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
    assert.equal(one.object, 'chat.completion');
    assert.equal(one.choices[0].finish_reason, 'length');
    assert.equal(one.usage.completion_tokens, 5);
    assert.equal(one.usage.total_tokens, one.usage.prompt_tokens + 5);
  });

  it('openai tools: streamed tool-call deltas and a non-streamed tool call', async () => {
    const one = await oa.chat.completions.create({
      model: TOOLS_MODEL, messages: [{ role: 'user', content: 'What is the weather in Paris?' }], tools: WEATHER,
    });
    assert.equal(one.choices[0].finish_reason, 'tool_calls');
    const call = one.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, 'get_weather');
    assert.equal(typeof JSON.parse(call.function.arguments), 'object');
    const stream = await oa.chat.completions.create({
      model: TOOLS_MODEL, messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools: WEATHER, stream: true,
    });
    const deltas = [];
    let finish;
    for await (const c of stream) {
      for (const tc of c.choices[0]?.delta?.tool_calls ?? []) deltas.push(tc);
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    assert.ok(deltas.length > 0);
    assert.equal(deltas[0].function.name, 'get_weather');
    assert.equal(finish, 'tool_calls');
    // the native API keeps tool_calls in a non-streamed answer too
    const nat = await ol.chat({ model: TOOLS_MODEL, messages: [{ role: 'user', content: 'Weather in Rome?' }], tools: WEATHER });
    assert.equal(nat.message.tool_calls[0].function.name, 'get_weather');
  });

  it('openai completions, embeddings (base64 by default and float), models', async () => {
    const c = await oa.completions.create({ model: M, prompt: 'Once upon a time', max_tokens: 8 });
    assert.equal(c.object, 'text_completion');
    assert.ok(c.choices[0].text.length > 0);
    const e = await oa.embeddings.create({ model: EMBED, input: ['a', 'b'] });
    assert.equal(e.data.length, 2);
    assert.ok(Array.isArray(e.data[0].embedding) && e.data[0].embedding.length > 0);
    const f = parseJson(await post(fleet.herd.url, '/v1/embeddings', { model: EMBED, input: 'a', encoding_format: 'float' }));
    assert.equal(f.data[0].embedding.length, e.data[0].embedding.length);
    const b64 = parseJson(await post(fleet.herd.url, '/v1/embeddings', { model: EMBED, input: 'a', encoding_format: 'base64' }));
    const dec = decodeFloat32Base64(b64.data[0].embedding);
    assert.equal(dec.length, f.data[0].embedding.length);
    for (let i = 0; i < dec.length; i++) assert.ok(Math.abs(dec[i] - f.data[0].embedding[i]) < 1e-6);
    const models = await oa.models.list();
    const ids = models.data.map((m) => m.id);
    assert.deepEqual(ids, [...ids].sort());
    assert.ok(ids.includes(M));
    const one = await oa.models.retrieve(M);
    assert.equal(one.id, M);
    await assert.rejects(oa.models.retrieve('no-such-model:1b'), (err) => err.status === 404);
  });

  it('tags, X-Herd-Tags and user land in the trace', async () => {
    const r = await post(fleet.herd.url, '/api/chat', {
      model: M, messages: [{ role: 'user', content: 'tagged' }], stream: false, metadata: { tags: ['app-1', 'prod'] }, user: 'bob',
    }, { headers: { 'X-Herd-Tags': 'extra, app-1 ,' } });
    assert.equal(r.status, 200);
    const rid = r.headers['x-request-id'];
    const rows = await traceRows(fleet.herd, `request_id='${rid}'`, 1);
    assert.deepEqual(JSON.parse(rows[0].tags), ['app-1', 'prod', 'extra', 'user:bob']);
    // metadata and fallback_models are not forwarded to Ollama
    const sim = fleet.byId[r.headers['x-fleet-node']].sim;
    const seen = JSON.parse((await get(sim.url, '/_sim/requests')).body).requests;
    assert.ok(seen.length > 0);
  });
});

describe('herd routing', () => {
  it('the node where the model is hot wins', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'cold', profile: 'rtx-4090' }, { id: 'hot', profile: 'rtx-4090' }] });
    try {
      // load the model on "hot" directly, then wait for its agent to report it
      const warm = await post(fleet.byId.hot.sim.url, '/api/generate', { model: M, prompt: '', keep_alive: -1 });
      assert.equal(warm.status, 200);
      await fleet.until((st) => st.nodes.find((n) => n.node_id === 'hot').ollama.models_loaded.some((m) => m.name === M), 'model loaded on hot');
      for (let i = 0; i < 3; i++) {
        const r = await post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: `q${i}` }], stream: false });
        assert.equal(r.status, 200);
        assert.equal(r.headers['x-fleet-node'], 'hot');
      }
      const rows = await traceRows(fleet.herd, "status='completed'", 3);
      const cands = JSON.parse(rows[0].scored_candidates);
      assert.equal(cands.length, 2, 'every candidate is recorded');
      const hot = cands.find((c) => c.node_id === 'hot');
      const cold = cands.find((c) => c.node_id === 'cold');
      assert.equal(hot.breakdown.thermal, 50);
      assert.equal(cold.breakdown.thermal, 10);
      assert.ok(hot.score > cold.score);
    } finally {
      await fleet.stop();
    }
  });

  it('num_parallel 1 on two nodes: four concurrent requests use both, never two at once on one node', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'n1', numParallel: 1, timeScale: '0.3' }, { id: 'n2', numParallel: 1, timeScale: '0.3' }] });
    try {
      const results = await Promise.all([0, 1, 2, 3].map((i) =>
        post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: `c${i}` }], stream: false, options: { num_predict: 20 } })));
      for (const r of results) assert.equal(r.status, 200, r.body);
      const used = new Set(results.map((r) => r.headers['x-fleet-node']));
      assert.deepEqual([...used].sort(), ['n1', 'n2']);
      for (const id of ['n1', 'n2']) {
        const st = await simState(fleet.byId[id].sim);
        assert.equal(st.peak_active, 1, `${id} never ran two requests at once`);
      }
      const rows = await traceRows(fleet.herd, "status='completed'", 4);
      assert.ok(rows.some((r) => r.queue_wait_ms > 0), 'some requests waited in herd for a slot');
      const q = parseJson(await get(fleet.herd.url, '/fleet/queue'));
      assert.equal(q.in_flight, 0);
      assert.equal(q.completed, 4);
    } finally {
      await fleet.stop();
    }
  });

  it('a held request gets 503 with Retry-After when no slot frees in time', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'only', numParallel: 1, timeScale: '1' }], herdArgs: ['--hold-timeout', '0.3'] });
    try {
      const long = post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'long' }], stream: false, options: { num_predict: 400 } });
      await waitFor(async () => parseJson(await get(fleet.herd.url, '/fleet/queue')).in_flight === 1, { what: 'first request in flight' });
      const r = await post(fleet.herd.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'short' }] });
      assert.equal(r.status, 503);
      assert.match(r.headers['retry-after'], /^\d+$/);
      assert.equal(parseJson(r).error.type, 'model_not_available');
      assert.equal((await long).status, 200);
    } finally {
      await fleet.stop();
    }
  });
});

describe('herd traces', () => {
  it('one row per request with status, tokens and TTFT; the seed queries run unchanged', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a' }, { id: 'b' }] });
    try {
      const n = 12;
      for (let i = 0; i < n; i++) {
        const r = await post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: `t${i}` }], stream: i % 2 === 0 });
        assert.equal(r.status, 200);
      }
      const e = await post(fleet.herd.url, '/api/embed', { model: EMBED, input: 'x' });
      assert.equal(e.status, 200);
      const rows = await traceRows(fleet.herd, '1=1', n + 1);
      assert.equal(rows.length, n + 1, 'one row per request, embeddings included');
      for (const r of rows) {
        assert.equal(r.status, 'completed');
        assert.ok(['a', 'b'].includes(r.node_id));
        assert.equal(r.client_ip, '127.0.0.1');
        assert.ok(r.latency_ms > 0);
        assert.ok(r.time_to_first_token_ms > 0 && r.time_to_first_token_ms <= r.latency_ms);
        assert.equal(r.original_format, 'ollama');
        assert.equal(typeof JSON.parse(r.scores_breakdown).total, 'number');
        assert.equal(JSON.parse(r.attempts).length, 1);
      }
      const chats = rows.filter((r) => r.endpoint === '/api/chat');
      assert.ok(chats.every((r) => r.prompt_tokens > 0 && r.completion_tokens > 0));
      // the seed's "Trace Analysis" query
      const last = sql(fleet.herd.db, 'SELECT request_id, model, node_id, score, scores_breakdown FROM request_traces ORDER BY timestamp DESC LIMIT 1');
      assert.equal(last.length, 1);
      assert.equal(last[0].request_id, rows.at(-1).request_id);
      assert.equal(typeof JSON.parse(last[0].scores_breakdown).thermal, 'number');
      // the seed's "Node Performance" query (HAVING n > 10: all 12 chats on one node would pass; check the math instead)
      const perf = sql(fleet.herd.db, "SELECT node_id, model, COUNT(*) as n, ROUND(AVG(latency_ms)/1000.0, 1) as avg_s, ROUND(AVG(COALESCE(completion_tokens,0) * 1000.0 / NULLIF(latency_ms,0)), 1) as tok_per_s FROM request_traces WHERE status='completed' GROUP BY node_id, model HAVING n > 0 ORDER BY tok_per_s DESC");
      const byKey = {};
      for (const r of chats) {
        const k = `${r.node_id}|${r.model}`;
        (byKey[k] ??= []).push(r.completion_tokens * 1000 / r.latency_ms);
      }
      for (const p of perf.filter((x) => x.model === M)) {
        const v = byKey[`${p.node_id}|${p.model}`];
        assert.equal(p.n, v.length);
        assert.ok(Math.abs(p.tok_per_s - v.reduce((s, x) => s + x, 0) / v.length) < 0.06);
      }
      const seedQuery = sql(fleet.herd.db, "SELECT node_id, model, COUNT(*) as n FROM request_traces WHERE status='completed' GROUP BY node_id, model HAVING n > 10");
      assert.ok(Array.isArray(seedQuery));
    } finally {
      await fleet.stop();
    }
  });
});

describe('herd bad input', () => {
  let fleet;
  before(async () => {
    fleet = await startFleet({ nodes: [{ id: 'solo', timeScale: '1' }], herdArgs: ['--max-body', '4096', '--max-header', '2048'] });
  });
  after(async () => { await fleet?.stop(); });

  it('malformed JSON, missing model, wrong types: 400 in each API format', async () => {
    let r = await request(fleet.herd.url, { method: 'POST', path: '/api/chat', body: '{"model":', headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 400);
    assert.equal(typeof parseJson(r).error, 'string');
    r = await request(fleet.herd.url, { method: 'POST', path: '/v1/chat/completions', body: 'nope', headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 400);
    assert.equal(parseJson(r).error.type, 'invalid_request_error');
    r = await post(fleet.herd.url, '/api/chat', { messages: [] });
    assert.equal(r.status, 400);
    assert.equal(parseJson(r).error, 'model is required');
    r = await post(fleet.herd.url, '/v1/chat/completions', { model: M, messages: 'hi' });
    assert.equal(r.status, 400);
    r = await post(fleet.herd.url, '/api/chat', { model: M, fallback_models: 'x' });
    assert.equal(r.status, 400);
    r = await post(fleet.herd.url, '/api/chat', [1, 2]);
    assert.equal(r.status, 400);
  });

  it('an unknown model: 404 with the reference wording in each format', async () => {
    let r = await post(fleet.herd.url, '/api/chat', { model: 'ghost', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(r.status, 404);
    assert.equal(parseJson(r).error, "model(s) 'ghost:latest' not found on any node. Run 'ollama pull <model>' on a fleet device.");
    r = await post(fleet.herd.url, '/v1/chat/completions', { model: 'ghost', messages: [{ role: 'user', content: 'x' }], fallback_models: ['phantom:7b'] });
    assert.equal(r.status, 404);
    const err = parseJson(r).error;
    assert.equal(err.type, 'model_not_found');
    assert.equal(err.message, "Model(s) 'ghost:latest', 'phantom:7b' not available on any node. Run 'ollama pull <model>' on a fleet device, then try again.");
  });

  it('a body over the limit: 413; headers over the limit: refused', async () => {
    const big = 'x'.repeat(8000);
    let r = await post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: big }] });
    assert.equal(r.status, 413);
    r = await post(fleet.herd.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: big }] });
    assert.equal(r.status, 413);
    assert.equal(typeof parseJson(r).error.message, 'string');
    r = await request(fleet.herd.url, { method: 'GET', path: '/api/tags', headers: { 'x-big': 'y'.repeat(100000) } });
    assert.ok((r.status >= 400 && r.status < 500) || r.error, `status ${r.status} error ${r.error}`);
    // still serving
    assert.equal((await get(fleet.herd.url, '/api/tags')).status, 200);
  });

  it('heartbeats: missing or wrong-typed fields get 400 naming the field, huge or deep bodies are refused', async () => {
    let r = await post(fleet.herd.url, '/heartbeat', { node_id: 'x', cpu: { cores_physical: 4, utilization_pct: 1 }, ollama: { models_loaded: [], models_available: [] } });
    assert.equal(r.status, 400);
    assert.match(parseJson(r).error, /"memory"/);
    r = await post(fleet.herd.url, '/heartbeat', { node_id: 'x', cpu: { cores_physical: 'four', utilization_pct: 1 }, memory: { total_gb: 8, used_gb: 1, available_gb: 7, pressure: 'normal' }, ollama: { models_loaded: [], models_available: [] } });
    assert.equal(r.status, 400);
    assert.match(parseJson(r).error, /cpu\.cores_physical/);
    r = await request(fleet.herd.url, { method: 'POST', path: '/heartbeat', body: '['.repeat(5000) + ']'.repeat(5000), headers: { 'content-type': 'application/json' } });
    assert.ok(r.status === 400 || r.status === 413, `deep body: ${r.status}`);
    const st = parseJson(await get(fleet.herd.url, '/fleet/status'));
    assert.ok(!st.nodes.some((n) => n.node_id === 'x'), 'a refused heartbeat registers nothing');
  });

  it('a client that leaves mid-stream: upstream aborted, slot freed, trace client_disconnected', async () => {
    const s = openStream(fleet.herd.url, { path: '/api/chat', json: { model: M, messages: [{ role: 'user', content: 'long story' }], options: { num_predict: 500 } } });
    const head = await s.response;
    assert.equal(head.status, 200);
    const rid = head.headers['x-request-id'];
    assert.ok(await s.next(), 'a first line arrived');
    s.abort();
    await waitFor(async () => parseJson(await get(fleet.herd.url, '/fleet/queue')).in_flight === 0, { what: 'slot freed' });
    const sim = fleet.byId.solo.sim;
    await waitFor(async () => (await simState(sim)).active === 0, { what: 'herd-sim saw the upstream abort' });
    const rows = await traceRows(fleet.herd, `request_id='${rid}'`, 1);
    assert.equal(rows[0].status, 'client_disconnected');
    assert.equal(rows[0].node_id, 'solo');
  });
});

describe('herd command line and logs', () => {
  it('--help, --version, a bad flag, a bad variable', async () => {
    const help = await runBin(['--help'], { bin: 'herd' });
    assert.equal(help.code, 0);
    for (const want of ['--port', 'FLEET_PORT', '--data-dir', 'FLEET_DATA_DIR', '--log-level', 'FLEET_HOLD_TIMEOUT', 'FLEET_TOKEN', '[default: 11435]']) {
      assert.ok(help.stdout.includes(want), `--help mentions ${want}`);
    }
    const v = await runBin(['--version'], { bin: 'herd' });
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^herd \d+\.\d+\.\d+\n$/);
    const bad = await runBin(['--port', 'x'], { bin: 'herd' });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--port 'x'/);
    const env = await runBin([], { bin: 'herd', env: { FLEET_PORT: '99999', FLEET_ENV_FILE: '/nonexistent' } });
    assert.equal(env.code, 2);
    assert.match(env.stderr, /FLEET_PORT='99999'/);
  });

  it('FLEET_PORT is honoured (a typed --port wins); the banner names the URLs; JSONL lines carry request ids', async () => {
    const port = await freePort();
    const dataDir = tmpDir();
    const herd = await startSim({ bin: 'herd', hostArgs: false, args: ['--host', '127.0.0.1', '--data-dir', dataDir, '--no-mdns'], env: { FLEET_PORT: String(port), FLEET_ENV_FILE: '/nonexistent' } });
    try {
      assert.equal(herd.port, port);
      assert.ok(herd.logs().includes(`http://localhost:${port}/v1`));
      const r = await post(herd.url, '/api/chat', { model: 'ghost', messages: [] });
      assert.equal(r.status, 404);
      const rid = r.headers['x-request-id'];
      const log = path.join(dataDir, 'logs', 'herd.jsonl');
      const line = await waitFor(() => fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
        .find((o) => o.request_id === rid), { what: 'a JSONL line with the request id' });
      assert.equal(line.level, 'INFO');
      assert.match(line.msg, /ghost/);
    } finally {
      await herd.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('herd admission', () => {
  it('FLEET_MIN_NODE_MEMORY_GB: a smaller node is listed as rejected with the reason, never routed', async () => {
    const { startHerd } = await import('./lib/fleet.mjs');
    const { startNode } = await import('./lib/fleet.mjs');
    const herd = await startHerd({ env: { FLEET_MIN_NODE_MEMORY_GB: '100000' } });
    const sim = await startSim({ args: ['--time-scale', '0'] });
    const node = await startNode({ herdUrl: herd.url, simUrl: sim.url, id: 'tiny', waitReady: false });
    try {
      const n = await waitFor(async () => parseJson(await get(herd.url, '/fleet/status')).nodes.find((x) => x.node_id === 'tiny'), { what: 'the node listed' });
      assert.equal(n.status, 'rejected');
      assert.match(n.reason, /memory/);
      const r = await post(herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'x' }], stream: false });
      assert.ok(r.status === 404 || r.status === 503, `not routed: ${r.status}`);
      assert.equal(r.headers['x-fleet-node'], undefined);
    } finally {
      await node.stop();
      await sim.stop();
      await herd.stop();
    }
  });
});
