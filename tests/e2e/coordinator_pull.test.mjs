// Pulls and deletes through herd, and auto-pull: herd-sim "downloads"
// any name that does not start with "missing" (which fails like an
// unknown model), so every path runs against a real node.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Ollama } from 'ollama';
import { get, post, request, parseJson, ndjson, waitFor, runBin } from './lib/harness.mjs';
import { startFleet } from './lib/fleet.mjs';

function sql(db, query) {
  const out = execFileSync('sqlite3', ['-json', db, query], { encoding: 'utf8' });
  return out.trim() === '' ? [] : JSON.parse(out);
}

async function simTags(sim) {
  return JSON.parse((await get(sim.url, '/api/tags')).body).models.map((m) => m.name);
}


describe('auto-pull', () => {
  it('a model no node has is pulled once, onto one node, while concurrent requests wait for it', async () => {
    // time scale 0.1: the pull takes ~0.3 s, so the three requests surely
    // arrive while it runs
    const fleet = await startFleet({ nodes: [{ id: 'a', timeScale: '0.1' }, { id: 'b', timeScale: '0.1' }], herdEnv: { FLEET_AUTO_PULL: 'true' } });
    try {
      const M = 'fresh-model:1b';
      const rs = await Promise.all([0, 1, 2].map((i) => post(fleet.herd.url, '/api/chat', {
        model: M, messages: [{ role: 'user', content: `q${i}` }], stream: false,
      })));
      for (const r of rs) assert.equal(r.status, 200, r.body);
      const holders = [];
      for (const id of ['a', 'b']) if ((await simTags(fleet.byId[id].sim)).includes(M)) holders.push(id);
      assert.equal(holders.length, 1, `pulled onto exactly one node (${holders})`);
      for (const r of rs) assert.equal(r.headers['x-fleet-node'], holders[0]);
      const m = (await get(fleet.herd.url, '/metrics')).body;
      assert.match(m, /herd_pulls_total\{result="success"\} 1\n/);
      const rows = await waitFor(() => {
        const x = sql(fleet.herd.db, `SELECT events FROM request_traces WHERE model='${M}'`);
        return x.length === 3 ? x : null;
      }, { what: 'three traces' });
      for (const r of rows) assert.ok(JSON.parse(r.events).some((e) => e.event === 'auto_pull'));
      // a name the node cannot pull: 404 with the reason
      const bad = await post(fleet.herd.url, '/api/chat', { model: 'missing-model', messages: [{ role: 'user', content: 'x' }] });
      assert.equal(bad.status, 404);
      assert.match(parseJson(bad).error, /^model\(s\) 'missing-model:latest' not found on any node\. .*Auto-pull failed: /);
    } finally {
      await fleet.stop();
    }
  });
});

describe('pull and delete through herd', () => {
  it('the ollama client pulls with progress (relayed from the node) and deletes fleet-wide', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a' }, { id: 'b' }] });
    try {
      const ol = new Ollama({ host: fleet.herd.url });
      const statuses = [];
      for await (const p of await ol.pull({ model: 'tiny-thing:1b', stream: true })) statuses.push(p.status);
      assert.equal(statuses[0], 'pulling manifest');
      assert.equal(statuses.at(-1), 'success');
      // herd knows at once, before the next heartbeat
      const tags = JSON.parse((await get(fleet.herd.url, '/api/tags')).body).models;
      const t = tags.find((m) => m.name === 'tiny-thing:1b');
      assert.equal(t.details.fleet_nodes.length, 1);
      // onto a named node, not streamed
      const one = await post(fleet.herd.url, '/api/pull', { model: 'tiny-thing:1b', node_id: 'b', stream: false });
      assert.equal(one.status, 200, one.body);
      assert.deepEqual(parseJson(one), { status: 'success' });
      assert.equal(one.headers['x-fleet-node'], 'b');
      assert.ok((await simTags(fleet.byId.b.sim)).includes('tiny-thing:1b'));
      // errors: unknown node, a failing pull relayed in-band
      const nn = await post(fleet.herd.url, '/api/pull', { model: 'x:1b', node_id: 'nope' });
      assert.equal(nn.status, 404);
      const fail = await post(fleet.herd.url, '/api/pull', { model: 'missing-thing' });
      assert.equal(fail.status, 200);
      const lines = ndjson(fail.body);
      assert.match(lines.at(-1).error, /Pull failed on node/);
      // delete everywhere
      const del = await ol.delete({ model: 'tiny-thing:1b' });
      assert.equal(del.status, 'success');
      for (const id of ['a', 'b']) assert.ok(!(await simTags(fleet.byId[id].sim)).includes('tiny-thing:1b'));
      const after = JSON.parse((await get(fleet.herd.url, '/api/tags')).body).models;
      assert.ok(!after.some((m) => m.name === 'tiny-thing:1b'));
      const again = await request(fleet.herd.url, { method: 'DELETE', path: '/api/delete', json: { model: 'tiny-thing:1b' } });
      assert.equal(again.status, 404);
    } finally {
      await fleet.stop();
    }
  });

  it('with FLEET_ADMIN_KEY: pull, delete and the dashboard endpoints need it', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a' }], herdEnv: { FLEET_ADMIN_KEY: 'k3y' } });
    try {
      let r = await post(fleet.herd.url, '/api/pull', { model: 'x:1b' });
      assert.equal(r.status, 401);
      r = await post(fleet.herd.url, '/dashboard/api/pull', { model: 'x:1b', node_id: 'a' }, { headers: { authorization: 'Bearer wrong' } });
      assert.equal(r.status, 403);
      r = await post(fleet.herd.url, '/dashboard/api/pull', { model: 'x:1b' }, { headers: { authorization: 'Bearer k3y' } });
      assert.equal(r.status, 400, 'node_id is required');
      r = await post(fleet.herd.url, '/dashboard/api/pull', { model: 'x:1b', node_id: 'a' }, { headers: { authorization: 'Bearer k3y' } });
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(parseJson(r), { ok: true, node_id: 'a', model: 'x:1b' });
      r = await post(fleet.herd.url, '/dashboard/api/delete', { model: 'x:1b', node_id: 'a' }, { headers: { 'x-admin-key': 'k3y' } });
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(parseJson(r), { ok: true, node_id: 'a', model: 'x:1b' });
      r = await request(fleet.herd.url, { method: 'DELETE', path: '/api/delete', json: { model: 'llama3.2:3b' } });
      assert.equal(r.status, 401);
    } finally {
      await fleet.stop();
    }
  });

  it('herd pull MODEL [--node ID]: progress, the node, exit codes', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a' }, { id: 'b' }] });
    try {
      const ok = await runBin(['pull', 'cli-model:1b', '--node', 'b', '--url', fleet.herd.url], { bin: 'herd', timeoutMs: 30000 });
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /pulling manifest\n/);
      assert.match(ok.stdout, /pulled cli-model:1b onto b\n$/);
      assert.ok((await simTags(fleet.byId.b.sim)).includes('cli-model:1b'));
      const bad = await runBin(['pull', 'missing-model', '--url', fleet.herd.url], { bin: 'herd', timeoutMs: 30000 });
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /herd pull: Pull failed on node/);
      const usage = await runBin(['pull'], { bin: 'herd' });
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /usage: herd pull MODEL/);
      const down = await runBin(['pull', 'x', '--url', 'http://127.0.0.1:1'], { bin: 'herd' });
      assert.equal(down.code, 1);
    } finally {
      await fleet.stop();
    }
  });
});
