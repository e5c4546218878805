// herd in operation: API keys on the inference endpoints, a graceful drain
// on SIGTERM (held requests get 503 at once, streams in flight finish,
// every trace row is flushed, exit 0), a node that drains, and the
// remaining bad-input rules.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';
import { get, post, openStream, parseJson, waitFor, ndjson } from './lib/harness.mjs';
import { startFleet } from './lib/fleet.mjs';

const M = 'llama3.2:3b';

function sql(db, query) {
  const out = execFileSync('sqlite3', ['-json', db, query], { encoding: 'utf8' });
  return out.trim() === '' ? [] : JSON.parse(out);
}

describe('API keys', () => {
  it('FLEET_API_KEYS gates inference with 401 in each API format; listings stay open', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a' }], herdEnv: { FLEET_API_KEYS: 'k1, k2' } });
    try {
      let r = await post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'x' }], stream: false });
      assert.equal(r.status, 401);
      assert.match(parseJson(r).error, /API key/);
      r = await post(fleet.herd.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }] }, { headers: { authorization: 'Bearer nope' } });
      assert.equal(r.status, 401);
      assert.equal(parseJson(r).error.type, 'invalid_request_error');
      r = await post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'x' }], stream: false }, { headers: { authorization: 'Bearer k2' } });
      assert.equal(r.status, 200);
      const oa = new OpenAI({ baseURL: `${fleet.herd.url}/v1`, apiKey: 'k1', maxRetries: 0 });
      const c = await oa.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'x' }] });
      assert.equal(c.object, 'chat.completion');
      assert.equal((await get(fleet.herd.url, '/api/tags')).status, 200);
    } finally {
      await fleet.stop();
    }
  });
});

describe('graceful drain', () => {
  it('SIGTERM: held requests get 503 at once, the stream in flight finishes, traces are flushed, exit 0', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a', numParallel: 1, timeScale: '1' }] });
    let stopped = false;
    try {
      const s = openStream(fleet.herd.url, { path: '/api/chat', json: { model: M, messages: [{ role: 'user', content: 'long' }], options: { num_predict: 40 } } });
      assert.equal((await s.response).status, 200);
      assert.ok(await s.next(), 'streaming');
      const held = post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'held' }], stream: false });
      await waitFor(async () => parseJson(await get(fleet.herd.url, '/fleet/queue')).pending === 1, { what: 'one request held' });
      fleet.herd.proc.kill('SIGTERM');
      const h = await held;
      assert.equal(h.status, 503);
      assert.match(parseJson(h).error, /shutting down/);
      const done = await s.done;
      assert.equal(done.complete, true);
      const lines = ndjson(done.body);
      assert.equal(lines.at(-1).done, true, 'the stream in flight finished');
      const exit = await fleet.herd.exited;
      assert.deepEqual(exit, { code: 0, signal: null });
      stopped = true;
      const rows = sql(fleet.herd.db, 'SELECT status FROM request_traces ORDER BY id');
      assert.deepEqual(rows.map((r) => r.status).sort(), ['completed', 'failed']);
    } finally {
      if (stopped) {
        for (const a of fleet.agents) await a.stop();
        for (const sm of fleet.sims) await sm.stop();
      } else {
        await fleet.stop();
      }
    }
  });

  it('a draining node takes nothing new; its request in flight finishes', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'leaving', timeScale: '1' }, { id: 'staying', timeScale: '1' }] });
    try {
      assert.equal((await post(fleet.byId.leaving.sim.url, '/api/generate', { model: M, prompt: '', keep_alive: -1 })).status, 200);
      await fleet.until((st) => st.nodes.find((n) => n.node_id === 'leaving').ollama.models_loaded.some((m) => m.name === M), 'hot on leaving');
      const s = openStream(fleet.herd.url, { path: '/api/chat', json: { model: M, messages: [{ role: 'user', content: 'x' }], options: { num_predict: 30 } } });
      const head = await s.response;
      assert.equal(head.headers['x-fleet-node'], 'leaving');
      const r = await fleet.byId.leaving.agent.stop();
      assert.equal(r.code, 0);
      await fleet.until((st) => st.nodes.find((n) => n.node_id === 'leaving').status === 'offline', 'leaving offline');
      const n = await post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'y' }], stream: false });
      assert.equal(n.headers['x-fleet-node'], 'staying');
      const done = await s.done;
      assert.equal(ndjson(done.body).at(-1).done, true);
    } finally {
      fleet.agents.splice(fleet.agents.indexOf(fleet.byId.leaving.agent), 1);
      await fleet.stop();
    }
  });
});

describe('bad input (fault-tolerance rules)', () => {
  it('num_ctx not a positive integer, fallback_models over 8, an invalid pull name: 400; an unknown node_id: 404', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a' }] });
    try {
      for (const v of [0, -1, 1.5, 'big', true]) {
        const r = await post(fleet.herd.url, '/api/chat', { model: M, messages: [], options: { num_ctx: v } });
        assert.equal(r.status, 400, `num_ctx ${JSON.stringify(v)}`);
        assert.match(parseJson(r).error, /num_ctx/);
      }
      let r = await post(fleet.herd.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }], fallback_models: Array.from({ length: 9 }, (_, i) => `m${i}`) });
      assert.equal(r.status, 400);
      assert.match(parseJson(r).error.message, /at most 8/);
      r = await post(fleet.herd.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }], fallback_models: Array.from({ length: 8 }, (_, i) => `m${i}:1b`) });
      assert.equal(r.status, 200, 'eight fallbacks are fine');
      for (const name of ['bad name', '../etc', 'a//b', ':tag', 'x:', 'ü']) {
        r = await post(fleet.herd.url, '/api/pull', { model: name });
        assert.equal(r.status, 400, `pull ${JSON.stringify(name)}`);
        assert.match(parseJson(r).error, /invalid model name/);
      }
      r = await post(fleet.herd.url, '/api/pull', { model: 'ok-name:1b', node_id: 'nope' });
      assert.equal(r.status, 404);
    } finally {
      await fleet.stop();
    }
  });
});

describe('deadlines and the reaper', () => {
  it('a stream that stalls past FLEET_STREAM_IDLE_TIMEOUT ends with an in-band error; the slot is freed; the trace says why', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a', timeScale: '0.01' }], herdArgs: ['--stream-idle-timeout', '0.5'] });
    try {
      // 2,000x slower: a token every few seconds, so the stream stalls
      assert.equal((await post(fleet.byId.a.sim.url, '/_sim/fault', { kind: 'slow', factor: 2000, count: 1 })).status, 200);
      const r = await post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'x' }], options: { num_predict: 50 } }, { timeoutMs: 30000 });
      assert.equal(r.status, 200);
      const lines = ndjson(r.body);
      assert.match(lines.at(-1).error, /stalled/);
      await waitFor(async () => parseJson(await get(fleet.herd.url, '/fleet/queue')).in_flight === 0, { what: 'slot freed' });
      const row = await waitFor(() => sql(fleet.herd.db, `SELECT * FROM request_traces WHERE request_id='${r.headers['x-request-id']}'`)[0], { what: 'trace' });
      assert.equal(row.status, 'failed');
      assert.ok(JSON.parse(row.events).some((e) => e.event === 'reaped'));
    } finally {
      await post(fleet.byId.a.sim.url, '/_sim/fault', { kind: 'none' }).catch(() => {});
      await fleet.stop();
    }
  });

  it('a request past FLEET_REQUEST_TIMEOUT is ended: 504 when nothing was sent yet', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a', timeScale: '1' }], herdArgs: ['--request-timeout', '1'] });
    try {
      // 100x slower tokens: the answer would take many seconds
      assert.equal((await post(fleet.byId.a.sim.url, '/_sim/fault', { kind: 'slow', factor: 100, count: 1 })).status, 200);
      const r = await post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'x' }], stream: false, options: { num_predict: 60 } }, { timeoutMs: 30000 });
      assert.equal(r.status, 504);
      assert.match(parseJson(r).error, /deadline exceeded/);
      await waitFor(async () => parseJson(await get(fleet.herd.url, '/fleet/queue')).in_flight === 0, { what: 'slot freed' });
      await waitFor(async () => JSON.parse((await get(fleet.byId.a.sim.url, '/_sim/state')).body).active === 0, { what: 'the node saw the abort' });
    } finally {
      await fleet.stop();
    }
  });
});
