// herd when nodes fail: herd-sim's fault injection on real processes.
// Before the first byte a node fault is retried on another node (and the
// node is ejected for a while); a 503 "server busy" is retried without
// penalty; a 4xx is the request's fault and is returned as is; after the
// first byte the failure reaches the client in-band. Every attempt is in
// the trace.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';
import { get, post, ndjson, sseFrames, parseJson, waitFor } from './lib/harness.mjs';
import { startFleet } from './lib/fleet.mjs';

const M = 'llama3.2:3b';

function sql(db, query) {
  const out = execFileSync('sqlite3', ['-json', db, query], { encoding: 'utf8' });
  return out.trim() === '' ? [] : JSON.parse(out);
}

async function rowsFor(herd, rid, n) {
  return waitFor(() => {
    const rows = sql(herd.db, `SELECT * FROM request_traces WHERE request_id='${rid}' ORDER BY id`);
    return rows.length >= n ? rows : null;
  }, { timeoutMs: 10000, what: `${n} trace rows for ${rid}` });
}

async function fault(sim, spec) {
  const r = await post(sim.url, '/_sim/fault', spec);
  assert.equal(r.status, 200, r.body);
}

async function clearFaults(sim) {
  const r = await post(sim.url, '/_sim/fault', { kind: 'none' });
  assert.equal(r.status, 200, r.body);
}

const chat = (herd, extra = {}) => post(herd.url, '/api/chat', {
  model: M, messages: [{ role: 'user', content: 'hello' }], stream: false, ...extra,
});

describe('herd under node faults', () => {
  let fleet;
  let hot;
  let other;
  before(async () => {
    fleet = await startFleet({
      nodes: [{ id: 'hot' }, { id: 'other' }],
      herdArgs: ['--first-byte-timeout', '0.5'],
    });
    hot = fleet.byId.hot.sim;
    other = fleet.byId.other.sim;
    // make "hot" the scorer's first choice: the model is loaded there only
    assert.equal((await post(hot.url, '/api/generate', { model: M, prompt: '', keep_alive: -1 })).status, 200);
    await fleet.until((st) => st.nodes.find((n) => n.node_id === 'hot').ollama.models_loaded.some((m) => m.name === M), 'model hot on "hot"');
  });
  after(async () => { await fleet?.stop(); });

  /**
   * Back to the start: no fault, "hot" not ejected, the model loaded on
   * "hot" only (unloaded from "other", which served the retries), so that
   * "hot" is the scorer's clear first choice again.
   */
  async function hotServesAgain() {
    await clearFaults(hot);
    await clearFaults(other);
    await fleet.until((st) => st.node_health.hot?.state !== 'ejected' &&
      st.nodes.find((n) => n.node_id === 'hot')?.status === 'online', '"hot" not ejected');
    assert.equal((await post(other.url, '/api/generate', { model: M, keep_alive: 0 })).status, 200);
    await fleet.until((st) => !st.nodes.find((n) => n.node_id === 'other').ollama.models_loaded.some((m) => m.name === M) &&
      st.nodes.find((n) => n.node_id === 'hot').ollama.models_loaded.some((m) => m.name === M), 'model on "hot" only');
    const r = await chat(fleet.herd);
    assert.equal(r.headers['x-fleet-node'], 'hot', 'hot serves again');
  }

  it('a 500 before the first byte: retried on the next node; the trace has both attempts', async () => {
    await fault(hot, { kind: '500', count: 1 });
    const r = await chat(fleet.herd);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-fleet-node'], 'other');
    assert.equal(r.headers['x-fleet-retries'], '1');
    const rows = await rowsFor(fleet.herd, r.headers['x-request-id'], 2);
    assert.deepEqual(rows.map((x) => x.status), ['retried', 'completed']);
    assert.equal(rows[0].node_id, 'hot');
    assert.equal(rows[1].node_id, 'other');
    assert.equal(rows[1].retry_count, 1);
    assert.deepEqual(JSON.parse(rows[1].excluded_nodes), ['hot']);
    const att = JSON.parse(rows[1].attempts);
    assert.deepEqual(att.map((a) => [a.node, a.reason, a.status]), [['hot', 'http_5xx', 500], ['other', 'ok', 200]]);
    const events = JSON.parse(rows[1].events).map((e) => e.event);
    assert.ok(events.includes('node_fault'));
    // the node is ejected for a while: the next request does not try it
    const r2 = await chat(fleet.herd);
    assert.equal(r2.headers['x-fleet-node'], 'other');
    assert.equal(r2.headers['x-fleet-retries'], '0');
    const rows2 = await rowsFor(fleet.herd, r2.headers['x-request-id'], 1);
    const hotCand = JSON.parse(rows2[0].scored_candidates).find((c) => c.node_id === 'hot');
    assert.equal(hotCand.breakdown.eliminated, 'excluded');
    await hotServesAgain();
  });

  it('503 "server busy": retried elsewhere and not held against the node', async () => {
    await fault(hot, { kind: '503', count: 1 });
    const r = await chat(fleet.herd);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-fleet-node'], 'other');
    assert.equal(r.headers['x-fleet-retries'], '1');
    const rows = await rowsFor(fleet.herd, r.headers['x-request-id'], 2);
    assert.equal(JSON.parse(rows[1].attempts)[0].reason, 'busy');
    // not ejected: the very next request goes to "hot" again
    const r2 = await chat(fleet.herd);
    assert.equal(r2.headers['x-fleet-node'], 'hot');
    await hotServesAgain();
  });

  it('a 4xx from the node is returned as it is, never retried', async () => {
    const r = await post(fleet.herd.url, '/api/chat', { model: M, messages: 'not a list', stream: false });
    assert.equal(r.status, 400);
    assert.equal(typeof parseJson(r).error, 'string');
    const rows = await rowsFor(fleet.herd, r.headers['x-request-id'], 1);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].status, 'failed');
    assert.equal(rows[0].retry_count, 0);
    assert.equal(JSON.parse(rows[0].attempts)[0].reason, 'client_error');
    // a wrong-typed field is refused before any node sees it
    const o = await post(fleet.herd.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }], temperature: 'hot' });
    assert.equal(o.status, 400);
    assert.equal(parseJson(o).error.type, 'invalid_request_error');
    assert.match(parseJson(o).error.message, /ChatCompletionRequest\.temperature/);
    await hotServesAgain();
  });

  it('no first byte in time (a hang): the next node answers', async () => {
    await fault(hot, { kind: 'hang', count: 1 });
    const r = await chat(fleet.herd);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-fleet-node'], 'other');
    const rows = await rowsFor(fleet.herd, r.headers['x-request-id'], 2);
    assert.equal(JSON.parse(rows[1].attempts)[0].reason, 'first_byte_timeout');
    await hotServesAgain();
  });

  it('a stream cut after the first byte: an in-band error line (NDJSON) and the trace says why', async () => {
    await fault(hot, { kind: 'die_after', after_tokens: 3, count: 1 });
    const r = await post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'x' }], options: { num_predict: 50 } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-fleet-node'], 'hot');
    const lines = ndjson(r.body);
    assert.ok(lines.length >= 2);
    assert.equal(typeof lines.at(-1).error, 'string');
    assert.ok(!lines.some((l) => l.done === true));
    const rows = await rowsFor(fleet.herd, r.headers['x-request-id'], 1);
    assert.equal(rows[0].status, 'failed');
    assert.match(rows[0].error_message, /hot/);
    await hotServesAgain();
  });

  it('OpenAI stream: an error after the first byte is an SSE error event and no [DONE]; the client raises', async () => {
    await fault(hot, { kind: 'error_after', after_tokens: 2, count: 1 });
    const r = await post(fleet.herd.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 50 });
    assert.equal(r.status, 200);
    const frames = sseFrames(r.body);
    assert.notEqual(frames.at(-1), '[DONE]');
    assert.ok(JSON.parse(frames.at(-1)).error);
    await fault(hot, { kind: 'error_after', after_tokens: 2, count: 1 });
    const oa = new OpenAI({ baseURL: `${fleet.herd.url}/v1`, apiKey: 'x', maxRetries: 0 });
    await assert.rejects(async () => {
      const s = await oa.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 50 });
      for await (const c of s) { void c; }
    });
    await hotServesAgain();
  });

  it('every node failing: the client gets the last error, once, after max retries', async () => {
    await fault(hot, { kind: '500' });
    await fault(other, { kind: '500' });
    const r = await chat(fleet.herd);
    assert.equal(r.status, 500);
    assert.equal(typeof parseJson(r).error, 'string');
    const rows = await rowsFor(fleet.herd, r.headers['x-request-id'], 3);
    assert.deepEqual(rows.map((x) => x.status), ['retried', 'retried', 'failed'].slice(0, rows.length));
    await clearFaults(hot);
    await clearFaults(other);
    const m = (await get(fleet.herd.url, '/metrics')).body;
    assert.match(m, /herd_retries_total [1-9]/);
    await hotServesAgain();
  });
  it('a node killed for real: its requests go to the other node (retried, or avoided once its agent reports Ollama down)', async () => {
    await fleet.byId.hot.sim.kill();
    const r1 = await chat(fleet.herd);
    assert.equal(r1.status, 200, r1.body);
    assert.equal(r1.headers['x-fleet-node'], 'other');
    if (r1.headers['x-fleet-retries'] === '1') {
      const rows = await rowsFor(fleet.herd, r1.headers['x-request-id'], 2);
      assert.match(JSON.parse(rows[1].attempts)[0].reason, /connect_refused|connection_reset/);
    }
    // the agent keeps reporting, with Ollama down: the node stays listed, not routed
    await fleet.until((st) => {
      const n = st.nodes.find((x) => x.node_id === 'hot');
      return n.ollama_healthy === false;
    }, 'hot reported unhealthy');
    const r2 = await chat(fleet.herd);
    assert.equal(r2.headers['x-fleet-node'], 'other');
    assert.equal(r2.headers['x-fleet-retries'], '0');
  });
});
