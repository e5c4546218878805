// Chaos: a fleet of three nodes under steady traffic from both APIs while
// faults are injected at random (500, 503, hangs, streams cut or failing
// mid-way, refused connections) and one node's Ollama is killed and
// restarted. Whatever happens, every request must end: a complete answer,
// or an error the client can see (a 4xx/5xx body, or an in-band error
// line/event); herd must end with nothing in flight, one final trace row
// per request, and exit 0 under the sanitizers.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import { get, post, openStream, ndjson, sseFrames, parseJson, waitFor, startSim } from './lib/harness.mjs';
import { startFleet } from './lib/fleet.mjs';

const M = 'llama3.2:3b';
const REQUESTS = 400;
const CONCURRENCY = 50;

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

function sql(db, query) {
  const out = execFileSync('sqlite3', ['-json', db, query], { encoding: 'utf8' });
  return out.trim() === '' ? [] : JSON.parse(out);
}

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

/** Through an official client: ok, or an error the client raised. */
async function viaClient(herd, i) {
  try {
    if (i % 2 === 0) {
      const oa = new OpenAI({ baseURL: `${herd.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 60000 });
      const s = await oa.chat.completions.create({ model: M, messages: [{ role: 'user', content: `c${i}` }], stream: true, max_tokens: 12 });
      for await (const c of s) void c;
    } else {
      const ol = new Ollama({ host: herd.url });
      const r = await ol.chat({ model: M, messages: [{ role: 'user', content: `c${i}` }], options: { num_predict: 12 } });
      assert.equal(r.done, true);
    }
    return { rid: null, outcome: 'ok' };
  } catch (e) {
    assert.ok(e.message && e.message.length > 0, `request ${i}: an error without a message`);
    return { rid: null, outcome: 'error' };
  }
}

/** One request; returns {rid, outcome} where outcome is ok|error|aborted. */
async function one(herd, i, rand) {
  if (i % 5 === 4) return viaClient(herd, i);
  const kind = i % 4;
  const stream = kind === 0 || kind === 2;
  const openai = kind >= 2;
  const path = openai ? '/v1/chat/completions' : '/api/chat';
  const body = openai
    ? { model: M, messages: [{ role: 'user', content: `chaos ${i}` }], stream, max_tokens: 12 }
    : { model: M, messages: [{ role: 'user', content: `chaos ${i}` }], stream, options: { num_predict: 12 } };
  if (stream && rand() < 0.08) {
    // a client that leaves after the first line
    const s = openStream(herd.url, { path, json: body });
    const head = await s.response;
    if (head.status === 200) await s.next();
    s.abort();
    return { rid: head.headers['x-request-id'], outcome: 'aborted' };
  }
  const r = await post(herd.url, path, body, { timeoutMs: 60000 });
  assert.notEqual(r.error, 'timeout', `request ${i} hung`);
  const rid = r.headers['x-request-id'];
  assert.ok(rid, `request ${i}: no X-Request-Id (status ${r.status}, error ${r.error})`);
  if (r.status !== 200) {
    assert.ok(r.status >= 400 && r.status < 600, `request ${i}: status ${r.status}`);
    const e = parseJson(r).error;
    assert.ok(typeof e === 'string' || typeof e?.message === 'string', `request ${i}: error body ${r.body}`);
    return { rid, outcome: 'error' };
  }
  assert.equal(r.complete, true, `request ${i}: truncated body`);
  if (!stream) {
    const j = parseJson(r);
    assert.ok(openai ? j.choices[0].message : j.done === true, `request ${i}: incomplete answer ${r.body.slice(0, 200)}`);
    return { rid, outcome: 'ok' };
  }
  if (openai) {
    const frames = sseFrames(r.body);
    if (frames.at(-1) === '[DONE]') return { rid, outcome: 'ok' };
    assert.ok(JSON.parse(frames.at(-1)).error, `request ${i}: SSE ended with neither [DONE] nor an error`);
    return { rid, outcome: 'error' };
  }
  const lines = ndjson(r.body);
  if (lines.at(-1).done === true) return { rid, outcome: 'ok' };
  assert.equal(typeof lines.at(-1).error, 'string', `request ${i}: NDJSON ended with neither done nor an error`);
  return { rid, outcome: 'error' };
}

const FAULTS = [
  { kind: '500', count: 2 },
  { kind: '503', count: 2 },
  { kind: 'hang', duration_ms: 400, count: 1 },
  { kind: 'die_after', after_tokens: 3, count: 2 },
  { kind: 'error_after', after_tokens: 2, count: 2 },
  { kind: 'refuse', duration_ms: 300 },
  { kind: 'slow', factor: 5, count: 3 },
];

describe('chaos', () => {
  it(`${REQUESTS} requests from ${CONCURRENCY} clients through faults and a node restart: every request ends visibly, nothing is lost or leaks`, async () => {
    const rand = rng(20261122);
    const fleet = await startFleet({
      nodes: [{ id: 'n1', numParallel: 2 }, { id: 'n2', numParallel: 2 }, { id: 'n3', numParallel: 2 }],
      herdArgs: ['--first-byte-timeout', '1', '--hold-timeout', '20'],
      // a small ASan quarantine, so that RSS shows real growth, not freed
      // memory ASan keeps poisoned (still detects leaks and use after free)
      herdEnv: { ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0:quarantine_size_mb=4' },
      timeScale: '0.05',
    });
    let stopChaos = false;
    let reborn = null;
    let warmRss = 0;
    const results = [];
    let next = 0;
    // The named faults of the issue at a quarter of the run (one node killed,
    // one hanging before its first byte, one busy, one dying mid-stream),
    // everything back at 60 %, random faults from the table throughout.
    const chaos = (async () => {
      let phase = 0;
      while (!stopChaos) {
        if (phase === 0 && next >= REQUESTS / 4) {
          phase = 1;
          warmRss = rssKb(fleet.herd.pid);
          await fleet.byId.n3.sim.kill();
          await post(fleet.byId.n1.sim.url, '/_sim/fault', { kind: 'hang', duration_ms: 1500, count: 3 }).catch(() => {});
          await post(fleet.byId.n2.sim.url, '/_sim/fault', { kind: '503', count: 4 }).catch(() => {});
          await post(fleet.byId.n1.sim.url, '/_sim/fault', { kind: 'die_after', after_tokens: 3, count: 3 }).catch(() => {});
        } else if (phase === 1 && next >= REQUESTS * 0.6) {
          phase = 2;
          for (const id of ['n1', 'n2']) await post(fleet.byId[id].sim.url, '/_sim/fault', { kind: 'none' }).catch(() => {});
          reborn = await startSim({ args: ['--host', '127.0.0.1', '--port', String(fleet.byId.n3.sim.port), '--time-scale', '0.05', '--num-parallel', '2'], hostArgs: false });
        } else {
          const id = ['n1', 'n2'][Math.floor(rand() * 2)];
          const f = FAULTS[Math.floor(rand() * FAULTS.length)];
          await post(fleet.byId[id].sim.url, '/_sim/fault', f).catch(() => {});
        }
        await new Promise((r) => setTimeout(r, 40 + rand() * 80)); // pacing the chaos, not synchronising
      }
    })();
    try {
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
        while (next < REQUESTS) {
          const i = next++;
          results.push(await one(fleet.herd, i, rand));
        }
      }));
    } finally {
      stopChaos = true;
      await chaos;
      for (const id of ['n1', 'n2', 'n3']) await post(fleet.byId[id].sim.url, '/_sim/fault', { kind: 'none' }).catch(() => {});
    }
    const ok = results.filter((r) => r.outcome === 'ok').length;
    assert.equal(results.length, REQUESTS);
    assert.ok(ok >= REQUESTS * 0.5, `only ${ok} of ${REQUESTS} completed`);
    // nothing left in flight or held
    await waitFor(async () => {
      const q = parseJson(await get(fleet.herd.url, '/fleet/queue'));
      return q.in_flight === 0 && q.pending === 0;
    }, { what: 'every slot given back' });
    // one final trace row per request; retried rows only for retried attempts
    const rows = await waitFor(() => {
      const r = sql(fleet.herd.db, "SELECT request_id, status, retry_count FROM request_traces WHERE status != 'retried'");
      return r.length >= REQUESTS ? r : null;
    }, { timeoutMs: 15000, what: 'a final trace row per request' });
    const byId = new Map(rows.map((r) => [r.request_id, r]));
    assert.equal(byId.size, rows.length, 'no request has two final rows');
    assert.equal(rows.length, REQUESTS, 'one final trace row per request: nothing lost');
    for (const r of results.filter((x) => x.rid)) {
      const t = byId.get(r.rid);
      assert.ok(t, `no trace row for ${r.rid}`);
      if (r.outcome === 'ok') assert.equal(t.status, 'completed');
      if (r.outcome === 'error') assert.ok(['failed', 'incomplete'].includes(t.status), `${r.rid}: ${t.status}`);
      if (r.outcome === 'aborted') assert.ok(['client_disconnected', 'completed', 'failed'].includes(t.status), `${r.rid}: ${t.status}`);
    }
    const retried = sql(fleet.herd.db, "SELECT COUNT(*) AS n FROM request_traces WHERE status='retried'")[0].n;
    assert.ok(retried > 0, 'the faults caused retries');
    assert.ok(reborn, 'n3 was killed and restarted during the run');
    const endRss = rssKb(fleet.herd.pid);
    assert.ok(endRss < warmRss + 16 * 1024, `herd's RSS grew from ${warmRss} kB after warm-up to ${endRss} kB`);
    const count = (o) => results.filter((r) => r.outcome === o).length;
    console.log(`chaos: ${count('ok')} completed, ${count('error')} failed visibly, ${count('aborted')} abandoned by the client, ${retried} attempts retried; herd RSS ${warmRss} kB after warm-up, ${endRss} kB at the end`);
    await fleet.stop(); // herd and every agent exit 0 (no leak under ASan)
    await reborn?.stop();
  });
});
