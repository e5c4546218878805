// herd's routing pipeline beyond the plain case: fallback chains, the VRAM
// fallback, and context protection, on real herd-sim nodes with real
// herd-node agents; what reached each node is read back from herd-sim.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { get, post, parseJson, waitFor } from './lib/harness.mjs';
import { startFleet } from './lib/fleet.mjs';

function sql(db, query) {
  const out = execFileSync('sqlite3', ['-json', db, query], { encoding: 'utf8' });
  return out.trim() === '' ? [] : JSON.parse(out);
}

async function row(herd, rid) {
  return waitFor(() => sql(herd.db, `SELECT * FROM request_traces WHERE request_id='${rid}' AND status != 'retried'`)[0],
    { what: `trace row ${rid}` });
}

async function lastSeen(sim) {
  const r = JSON.parse((await get(sim.url, '/_sim/requests')).body).requests;
  return r.at(-1);
}

async function load(fleet, id, model, numCtx) {
  const body = { model, prompt: '', keep_alive: -1 };
  if (numCtx) body.options = { num_ctx: numCtx };
  assert.equal((await post(fleet.byId[id].sim.url, '/api/generate', body)).status, 200);
  await fleet.until((st) => st.nodes.find((n) => n.node_id === id).ollama.models_loaded
    .some((m) => m.name === model && (!numCtx || m.context_length === numCtx)), `${model} loaded on ${id}`);
}

describe('fallback chains', () => {
  it('an unknown primary falls to the first fallback that exists; a hot fallback beats a cold primary', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a' }] });
    try {
      let r = await post(fleet.herd.url, '/api/chat', { model: 'ghost:1b', fallback_models: ['phantom:2b', 'llama3.2:3b'], messages: [{ role: 'user', content: 'x' }], stream: false });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.headers['x-fleet-fallback'], 'llama3.2:3b');
      assert.equal(parseJson(r).model, 'llama3.2:3b');
      let t = await row(fleet.herd, r.headers['x-request-id']);
      assert.equal(t.original_model, 'ghost:1b');
      assert.equal(t.model, 'llama3.2:3b');
      assert.equal(t.fallback_used, 1);
      await load(fleet, 'a', 'gemma3:4b');
      // llama3.1:8b is on disk (cold); gemma3:4b is hot: the hot fallback wins
      r = await post(fleet.herd.url, '/v1/chat/completions', { model: 'llama3.1:8b', fallback_models: ['gemma3:4b'], messages: [{ role: 'user', content: 'x' }] });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.headers['x-fleet-fallback'], 'gemma3:4b');
      assert.equal(parseJson(r).model, 'gemma3:4b');
      // a cold primary with no hot fallback: the primary is loaded
      r = await post(fleet.herd.url, '/api/chat', { model: 'qwen3:8b', fallback_models: ['ghost:1b'], messages: [{ role: 'user', content: 'x' }], stream: false });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-fleet-fallback'], undefined);
      t = await row(fleet.herd, r.headers['x-request-id']);
      assert.equal(t.fallback_used, 0);
    } finally {
      await fleet.stop();
    }
  });
});

describe('VRAM fallback', () => {
  it('a cold model is answered by a loaded one of the same category; never another category by default', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a' }], herdEnv: { FLEET_VRAM_FALLBACK: 'true' } });
    try {
      await load(fleet, 'a', 'llama3.1:8b');
      let r = await post(fleet.herd.url, '/api/chat', { model: 'llama3.2:3b', messages: [{ role: 'user', content: 'x' }], stream: false });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-fleet-fallback'], 'llama3.1:8b');
      assert.equal(parseJson(r).model, 'llama3.1:8b');
      assert.equal((await lastSeen(fleet.byId.a.sim)).model, 'llama3.1:8b');
      const t = await row(fleet.herd, r.headers['x-request-id']);
      assert.ok(JSON.parse(t.events).some((e) => e.event === 'vram_fallback' && e.detail === 'llama3.1:8b'));
      assert.equal(t.fallback_used, 1);
      // a coding model: no loaded coding model, so no substitution: it loads
      r = await post(fleet.herd.url, '/api/chat', { model: 'qwen2.5-coder:7b', messages: [{ role: 'user', content: 'x' }], stream: false });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-fleet-fallback'], undefined);
      assert.equal(parseJson(r).model, 'qwen2.5-coder:7b');
    } finally {
      await fleet.stop();
    }
  });

  it('cross-category only with FLEET_VRAM_FALLBACK_CROSS_CATEGORY=true', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a' }], herdEnv: { FLEET_VRAM_FALLBACK: 'true', FLEET_VRAM_FALLBACK_CROSS_CATEGORY: 'true' } });
    try {
      await load(fleet, 'a', 'llama3.1:8b');
      const r = await post(fleet.herd.url, '/api/chat', { model: 'qwen2.5-coder:7b', messages: [{ role: 'user', content: 'x' }], stream: false });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-fleet-fallback'], 'llama3.1:8b');
    } finally {
      await fleet.stop();
    }
  });
});

describe('context protection', () => {
  it('strips a num_ctx the loaded copy covers, moves a bigger one to a bigger loaded model on the node that has it', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'small' }, { id: 'big' }] });
    try {
      await load(fleet, 'small', 'llama3.2:3b', 4096);
      await load(fleet, 'big', 'llama3.1:8b', 32768);
      const before = JSON.parse((await get(fleet.byId.small.sim.url, '/_sim/state')).body).stats.reloads;
      // 2048 <= 4096: stripped, no reload
      let r = await post(fleet.herd.url, '/api/chat', { model: 'llama3.2:3b', messages: [{ role: 'user', content: 'x' }], stream: false, options: { num_ctx: 2048 } });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-fleet-node'], 'small');
      assert.equal((await lastSeen(fleet.byId.small.sim)).num_ctx, 4096, "num_ctx set to the loaded runner's");
      const after = JSON.parse((await get(fleet.byId.small.sim.url, '/_sim/state')).body).stats.reloads;
      assert.equal(after, before, 'no reload');
      let t = await row(fleet.herd, r.headers['x-request-id']);
      assert.ok(JSON.parse(t.events).some((e) => e.event === 'context_stripped'));
      // 16384 > 4096: upgraded to llama3.1:8b, served by "big", which has it loaded
      r = await post(fleet.herd.url, '/api/chat', { model: 'llama3.2:3b', messages: [{ role: 'user', content: 'x' }], stream: false, options: { num_ctx: 16384 } });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.headers['x-fleet-node'], 'big');
      assert.equal(r.headers['x-fleet-fallback'], 'llama3.1:8b');
      const seen = await lastSeen(fleet.byId.big.sim);
      assert.equal(seen.model, 'llama3.1:8b');
      assert.equal(seen.num_ctx, 32768, "num_ctx set to the upgrade's loaded runner's");
      const ps = JSON.parse((await get(fleet.byId.big.sim.url, '/api/ps')).body).models;
      assert.equal(ps.find((m) => m.name === 'llama3.1:8b').context_length, 32768);
      t = await row(fleet.herd, r.headers['x-request-id']);
      assert.ok(JSON.parse(t.events).some((e) => e.event === 'context_upgraded'));
      assert.equal(t.original_model, 'llama3.2:3b');
      assert.equal(t.model, 'llama3.1:8b');
    } finally {
      await fleet.stop();
    }
  });

  it('passthrough leaves num_ctx alone', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a' }], herdEnv: { FLEET_CONTEXT_PROTECTION: 'passthrough' } });
    try {
      await load(fleet, 'a', 'llama3.2:3b', 4096);
      const r = await post(fleet.herd.url, '/api/chat', { model: 'llama3.2:3b', messages: [{ role: 'user', content: 'x' }], stream: false, options: { num_ctx: 2048 } });
      assert.equal(r.status, 200);
      assert.equal((await lastSeen(fleet.byId.a.sim)).num_ctx, 2048);
    } finally {
      await fleet.stop();
    }
  });
});
