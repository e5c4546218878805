// herd-sim fault injection: every kind via --fault SPEC and via
// POST /_sim/fault, the count and model filters, and GET /_sim/state.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import {
  startSim, request, post, get, parseJson, ndjson, sseFrames, openStream, waitFor, simState,
  assertNativeError, assertOpenAIError,
} from './lib/harness.mjs';

const M = 'llama3.2:3b';
const OTHER = 'qwen2.5-coder:7b';
const EMBED = 'nomic-embed-text';
const BUSY = 'server busy, please try again.  maximum pending requests exceeded';

const genBody = (extra = {}) => ({ model: M, prompt: 'hello there', options: { num_predict: 20 }, ...extra });
const chatBody = (extra = {}) => ({ model: M, messages: [{ role: 'user', content: 'hello there' }], options: { num_predict: 20 }, ...extra });

async function setFault(url, f) {
  const r = await post(url, '/_sim/fault', f);
  assert.ok(r.status >= 200 && r.status < 300, `POST /_sim/fault ${JSON.stringify(f)}: ${r.status} ${r.body}`);
  return r;
}
async function clearFaults(url) {
  const r = await request(url, { method: 'DELETE', path: '/_sim/fault' });
  assert.ok(r.status >= 200 && r.status < 300, `DELETE /_sim/fault: ${r.status} ${r.body}`);
}
function isConnError(e) {
  return ['ECONNREFUSED', 'ECONNRESET'].includes(e);
}

/** Every inference endpoint, native and /v1, with a valid body. */
const INFERENCE = [
  ['/api/generate', genBody({ stream: false })],
  ['/api/chat', chatBody({ stream: false })],
  ['/api/embed', { model: EMBED, input: 'x' }],
  ['/api/embeddings', { model: EMBED, prompt: 'x' }],
  ['/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }] }],
  ['/v1/completions', { model: M, prompt: 'x' }],
  ['/v1/embeddings', { model: EMBED, input: 'x' }],
];

// ---------------------------------------------------------------------------
describe('/_sim control API', () => {
  let sim;
  before(async () => { sim = await startSim({ args: ['--time-scale', '0'] }); });
  after(async () => { await sim?.stop(); });

  it('GET /_sim/state has runners, pending, stats and faults', async () => {
    const st = await simState(sim.url);
    assert.ok(Array.isArray(st.runners));
    assert.equal(st.pending, 0);
    for (const k of ['loads', 'unloads', 'evictions', 'reloads', 'rejected']) {
      assert.ok(Number.isInteger(st.stats[k]), `stats.${k}`);
      assert.equal(st.stats[k], 0, `stats.${k} starts at 0`);
    }
    assert.deepEqual(st.faults, []);
    const g = await post(sim.url, '/api/generate', { model: M, stream: false });
    assert.equal(g.status, 200);
    const st2 = await simState(sim.url);
    assert.equal(st2.stats.loads, 1);
    assert.equal(st2.runners.length, 1);
  });

  it('POST adds rules shown in state; {"kind":"none"} and DELETE clear them', async () => {
    await setFault(sim.url, { kind: '500', count: 3 });
    await setFault(sim.url, { kind: 'slow', factor: 10, model: OTHER });
    let st = await simState(sim.url);
    assert.equal(st.faults.length, 2);
    await setFault(sim.url, { kind: 'none' });
    st = await simState(sim.url);
    assert.deepEqual(st.faults, []);
    await setFault(sim.url, { kind: 'hang' });
    assert.equal((await simState(sim.url)).faults.length, 1);
    await clearFaults(sim.url);
    assert.deepEqual((await simState(sim.url)).faults, []);
    // The "hang" rule is gone: inference answers again.
    assert.equal((await post(sim.url, '/api/generate', genBody({ stream: false }))).status, 200);
  });

  it('an unknown fault kind is refused with 400', async () => {
    const r = await post(sim.url, '/_sim/fault', { kind: 'bogus' });
    assert.equal(r.status, 400, r.body);
    assert.equal(typeof parseJson(r).error, 'string');
    assert.deepEqual((await simState(sim.url)).faults, []);
  });

  it('an unknown --fault SPEC makes herd-sim exit non-zero at start-up', async () => {
    await assert.rejects(startSim({ args: ['--time-scale', '0', '--fault', 'bogus:1'] }), /failed to start/);
  });
});

// ---------------------------------------------------------------------------
describe('fault "500"', () => {
  it('--fault 500: every inference endpoint answers 500 before streaming; others are untouched', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--fault', '500'] });
    try {
      for (const [p, body] of INFERENCE) {
        const r = await post(sim.url, p, body);
        if (p.startsWith('/v1/')) assertOpenAIError(r, 500, 'simulated failure', 'api_error', p);
        else assertNativeError(r, 500, 'simulated failure', p);
      }
      // Streaming requests too: the error comes before any byte of stream.
      assertNativeError(await post(sim.url, '/api/generate', genBody()), 500, 'simulated failure', 'streaming generate');
      assertOpenAIError(await post(sim.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }], stream: true }),
        500, 'simulated failure', 'api_error', 'streaming /v1 chat');
      for (const p of ['/', '/api/version', '/api/tags', '/api/ps', '/v1/models', '/_sim/state']) {
        assert.equal((await get(sim.url, p)).status, 200, `GET ${p} is not an inference endpoint`);
      }
      assert.equal((await post(sim.url, '/api/show', { model: M })).status, 200);
      // The official clients see the 500.
      const ol = new Ollama({ host: sim.url });
      await assert.rejects(ol.generate({ model: M, prompt: 'x' }), (e) => e.name === 'ResponseError' && e.status_code === 500 && e.error === 'simulated failure');
      const oa = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'ollama', maxRetries: 0 });
      await assert.rejects(oa.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'x' }] }),
        (e) => e.status === 500 && e.type === 'api_error' && /simulated failure/.test(e.message));
    } finally {
      await sim.stop();
    }
  });

  it('POST /_sim/fault with count and model', async () => {
    const sim = await startSim({ args: ['--time-scale', '0'] });
    try {
      await setFault(sim.url, { kind: '500', count: 2 });
      assertNativeError(await post(sim.url, '/api/generate', genBody({ stream: false })), 500, 'simulated failure');
      assert.equal((await get(sim.url, '/api/tags')).status, 200, 'non-inference requests do not use up the count');
      assert.equal((await get(sim.url, '/_sim/state')).status, 200);
      assertNativeError(await post(sim.url, '/api/chat', chatBody({ stream: false })), 500, 'simulated failure');
      assert.equal((await post(sim.url, '/api/generate', genBody({ stream: false }))).status, 200, 'count used up');
      assert.deepEqual((await simState(sim.url)).faults, []);

      await setFault(sim.url, { kind: '500', model: OTHER });
      assert.equal((await post(sim.url, '/api/generate', genBody({ stream: false }))).status, 200, `${M} unaffected`);
      assertNativeError(await post(sim.url, '/api/generate', { model: OTHER, prompt: 'x', stream: false }), 500, 'simulated failure');
      assertNativeError(await post(sim.url, '/api/generate', { model: OTHER, prompt: 'x', stream: false }), 500, 'simulated failure', 'unlimited count');
    } finally {
      await sim.stop();
    }
  });

  it('--fault SPEC accepts ,count=N and ,model=NAME', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--fault', `500,count=1,model=${OTHER}`] });
    try {
      assert.equal((await post(sim.url, '/api/generate', genBody({ stream: false }))).status, 200);
      assertNativeError(await post(sim.url, '/api/generate', { model: OTHER, prompt: 'x', stream: false }), 500, 'simulated failure');
      assert.equal((await post(sim.url, '/api/generate', { model: OTHER, prompt: 'x', stream: false })).status, 200);
    } finally {
      await sim.stop();
    }
  });
});

// ---------------------------------------------------------------------------
describe('fault "503"', () => {
  it('--fault 503: the exact server-busy body, native and /v1', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--fault', '503'] });
    try {
      for (const [p, body] of INFERENCE) {
        const r = await post(sim.url, p, body);
        if (p.startsWith('/v1/')) assertOpenAIError(r, 503, BUSY, 'api_error', p);
        else assertNativeError(r, 503, BUSY, p);
      }
      assert.equal(parseJson(await get(sim.url, '/api/version')).version.length > 0, true);
    } finally {
      await sim.stop();
    }
  });

  it('POST /_sim/fault {"kind":"503","count":1}', async () => {
    const sim = await startSim({ args: ['--time-scale', '0'] });
    try {
      await setFault(sim.url, { kind: '503', count: 1 });
      const r = await post(sim.url, '/api/chat', chatBody());
      assert.equal(r.status, 503);
      assert.equal(r.body.trim(), `{"error":"${BUSY}"}`);
      assert.equal((await post(sim.url, '/api/chat', chatBody({ stream: false }))).status, 200);
    } finally {
      await sim.stop();
    }
  });
});

// ---------------------------------------------------------------------------
describe('fault "hang"', () => {
  it('--fault hang: never answers; other requests and SIGTERM still work', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--fault', 'hang'] });
    try {
      const hung = openStream(sim.url, { path: '/api/generate', json: genBody() });
      let answered = false;
      hung.response.then((r) => { answered = r.status !== undefined; });
      const r = await post(sim.url, '/api/chat', chatBody({ stream: false }), { timeoutMs: 700 });
      assert.equal(r.error, 'timeout', `hang should not answer: ${r.status} ${r.body}`);
      const t0 = Date.now();
      assert.equal((await get(sim.url, '/api/version')).status, 200);
      assert.equal((await get(sim.url, '/_sim/state')).status, 200);
      assert.ok(Date.now() - t0 < 2000, 'non-inference requests are not blocked by a hanging one');
      assert.equal(answered, false, 'the hung request is still unanswered');
      hung.abort();
    } finally {
      await sim.stop(); // must still exit 0 within 10 s with a hung connection
    }
  });

  it('--fault hang:1s answers normally after the hang', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--fault', 'hang:1s'] });
    try {
      const r = await post(sim.url, '/api/generate', genBody({ stream: false }));
      assert.equal(r.status, 200, r.body);
      assert.ok(r.ms >= 900, `answered after ${r.ms} ms`);
      assert.equal(parseJson(r).done, true);
    } finally {
      await sim.stop();
    }
  });

  it('POST {"kind":"hang","duration_ms":800,"count":1}', async () => {
    const sim = await startSim({ args: ['--time-scale', '0'] });
    try {
      await setFault(sim.url, { kind: 'hang', duration_ms: 800, count: 1 });
      const [a, b] = await Promise.all([
        post(sim.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }] }),
        (async () => {
          // Poll until the first request is counted as consumed, then send the second.
          await waitFor(async () => (await simState(sim.url)).faults.length === 0, { what: 'the hang rule to be used' });
          return post(sim.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }] });
        })(),
      ]);
      assert.equal(a.status, 200, a.body);
      assert.ok(a.ms >= 700, `hung for ${a.ms} ms`);
      assert.equal(b.status, 200);
      assert.ok(b.ms < a.ms, 'the second request is not hung');
    } finally {
      await sim.stop();
    }
  });
});

// ---------------------------------------------------------------------------
describe('fault "die_after"', () => {
  it('--fault die-after:5: five chunks, then the connection is cut with no final chunk', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--fault', 'die-after:5'] });
    try {
      for (const [p, body] of [['/api/generate', genBody()], ['/api/chat', chatBody()]]) {
        const r = await post(sim.url, p, body);
        assert.equal(r.status, 200, p);
        assert.equal(r.complete, false, `${p}: the response must be cut, not ended`);
        const lines = ndjson(r.body);
        assert.equal(lines.length, 5, `${p}: ${r.body}`);
        for (const c of lines) {
          assert.equal(c.done, false);
          assert.ok(!('error' in c));
        }
      }
      // /v1 SSE: five chunks, no finish chunk, no [DONE].
      const r = await post(sim.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 20 });
      assert.equal(r.status, 200);
      assert.equal(r.complete, false);
      const frames = sseFrames(r.body);
      assert.equal(frames.length, 5, r.body);
      assert.ok(!frames.includes('[DONE]'));
      for (const f of frames) assert.equal(JSON.parse(f).choices[0].finish_reason, null);
      // The official client reports the failure.
      const ol = new Ollama({ host: sim.url });
      await assert.rejects(async () => {
        for await (const part of await ol.chat({ ...chatBody(), stream: true })) void part;
      });
      const oa = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'ollama', maxRetries: 0 });
      await assert.rejects(async () => {
        const s = await oa.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 20 });
        for await (const c of s) void c;
      });
    } finally {
      await sim.stop();
    }
  });

  it('POST {"kind":"die_after","after_tokens":3,"count":1}: then the next stream is whole', async () => {
    const sim = await startSim({ args: ['--time-scale', '0'] });
    try {
      await setFault(sim.url, { kind: 'die_after', after_tokens: 3, count: 1 });
      const r = await post(sim.url, '/api/generate', genBody());
      assert.equal(r.status, 200);
      assert.equal(r.complete, false);
      assert.equal(ndjson(r.body).length, 3);
      const ok = await post(sim.url, '/api/generate', genBody());
      assert.ok(ok.complete);
      assert.equal(ndjson(ok.body).at(-1).done, true);
    } finally {
      await sim.stop();
    }
  });
});

// ---------------------------------------------------------------------------
describe('fault "error_after"', () => {
  it('--fault error-after:3: 200, three chunks, one {"error":…} line, clean end', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--fault', 'error-after:3'] });
    try {
      for (const [p, body] of [['/api/generate', genBody()], ['/api/chat', chatBody()]]) {
        const r = await post(sim.url, p, body);
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-type'], 'application/x-ndjson');
        assert.ok(r.complete);
        const lines = ndjson(r.body);
        assert.equal(lines.length, 4, r.body);
        assert.deepEqual(Object.keys(lines[3]), ['error']);
        assert.ok(lines[3].error.length > 0);
      }
      // Non-streaming: the error arrives before the answer → 500.
      const ns = await post(sim.url, '/api/generate', genBody({ stream: false }));
      assert.equal(ns.status, 500, ns.body);
      assert.equal(typeof parseJson(ns).error, 'string');
      // /v1 stream: no finish chunk and no [DONE].
      const v = await post(sim.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 20 });
      assert.equal(v.status, 200);
      assert.ok(!v.body.includes('data: [DONE]'), v.body);
      const frames = sseFrames(v.body, { requireComplete: false }).filter((f) => f.startsWith('{'));
      for (const f of frames) {
        const c = JSON.parse(f);
        if (c.choices?.length) assert.equal(c.choices[0].finish_reason, null, 'no finish chunk');
      }
      // The ollama client throws with the server's message.
      const ol = new Ollama({ host: sim.url });
      let seen = 0;
      await assert.rejects(async () => {
        for await (const part of await ol.generate({ ...genBody(), stream: true })) { void part; seen++; }
      }, (e) => e instanceof Error && e.message.length > 0);
      assert.equal(seen, 3);
    } finally {
      await sim.stop();
    }
  });

  it('POST {"kind":"error_after","after_tokens":2,"count":1}', async () => {
    const sim = await startSim({ args: ['--time-scale', '0'] });
    try {
      await setFault(sim.url, { kind: 'error_after', after_tokens: 2, count: 1 });
      const lines = ndjson((await post(sim.url, '/api/chat', chatBody())).body);
      assert.equal(lines.length, 3);
      assert.ok('error' in lines[2]);
      const ok = ndjson((await post(sim.url, '/api/chat', chatBody())).body);
      assert.equal(ok.at(-1).done, true);
    } finally {
      await sim.stop();
    }
  });
});

// ---------------------------------------------------------------------------
describe('fault "slow"', () => {
  const body = genBody({ stream: false, options: { num_predict: 20, seed: 5 } });

  it('--fault slow:10x makes tokens ten times slower (real time and eval_duration)', async () => {
    const [plain, slowSim] = await Promise.all([
      startSim({ args: ['--time-scale', '1'] }),
      startSim({ args: ['--time-scale', '1', '--fault', 'slow:10x'] }),
    ]);
    try {
      await Promise.all([plain, slowSim].map((s) => post(s.url, '/api/generate', { model: M, stream: false })));
      const base = await post(plain.url, '/api/generate', body);
      assert.equal(base.status, 200, base.body);
      const b = parseJson(base);
      const slow = await post(slowSim.url, '/api/generate', body);
      assert.equal(slow.status, 200, slow.body);
      const s = parseJson(slow);
      assert.equal(s.eval_count, b.eval_count);
      assert.equal(s.response, b.response, 'same seed, same text');
      assert.ok(slow.ms >= 8 * (b.eval_duration / 1e6), `slow request took ${slow.ms} ms, baseline eval ${b.eval_duration / 1e6} ms`);
      // A slow server reports its slowness: tokens/s = eval_count / eval_duration.
      assert.ok(s.eval_duration >= 8 * b.eval_duration, `eval_duration ${s.eval_duration} vs baseline ${b.eval_duration}`);
    } finally {
      await plain.stop();
      await slowSim.stop();
    }
  });

  it('POST {"kind":"slow","factor":20,"model":…} slows only that model', async () => {
    const sim = await startSim({ args: ['--time-scale', '1'] });
    try {
      await Promise.all([M, OTHER].map((m) => post(sim.url, '/api/generate', { model: m, stream: false, keep_alive: -1 })));
      const b = parseJson(await post(sim.url, '/api/generate', body));
      await setFault(sim.url, { kind: 'slow', factor: 20, model: M });
      const slow = await post(sim.url, '/api/generate', body);
      const s = parseJson(slow);
      assert.ok(slow.ms >= 15 * (b.eval_duration / 1e6), `took ${slow.ms} ms`);
      const other = await post(sim.url, '/api/generate', { model: OTHER, prompt: 'x', stream: false, options: { num_predict: 20 } });
      assert.equal(other.status, 200);
      assert.ok(other.ms < slow.ms / 2, `${OTHER} is not slowed (${other.ms} ms vs ${slow.ms} ms)`);
      assert.ok(s.eval_duration >= 15 * b.eval_duration, `eval_duration ${s.eval_duration} vs ${b.eval_duration}`);
      await clearFaults(sim.url);
      const again = parseJson(await post(sim.url, '/api/generate', body));
      assert.ok(again.eval_duration < 3 * b.eval_duration, 'back to normal speed');
    } finally {
      await sim.stop();
    }
  });
});

// ---------------------------------------------------------------------------
describe('fault "refuse"', () => {
  async function connectOutcome(url) {
    const r = await get(url, '/api/version', { timeoutMs: 2000 });
    return r.status === 200 ? 'ok' : (isConnError(r.error) ? 'refused' : `other:${r.error}:${r.status}`);
  }

  it('POST {"kind":"refuse","duration_ms":1000}: connections refused, then served again on the same port', async () => {
    const sim = await startSim({ args: ['--time-scale', '0'] });
    try {
      const t0 = Date.now();
      await setFault(sim.url, { kind: 'refuse', duration_ms: 1000 });
      await waitFor(async () => (await connectOutcome(sim.url)) === 'refused', { timeoutMs: 900, intervalMs: 10, what: 'a refused connection' });
      await waitFor(async () => (await connectOutcome(sim.url)) === 'ok', { timeoutMs: 10000, intervalMs: 50, what: 'listening again' });
      assert.ok(Date.now() - t0 >= 900, `listening again after ${Date.now() - t0} ms`);
      assert.equal((await post(sim.url, '/api/generate', genBody({ stream: false }))).status, 200);
      assert.deepEqual((await simState(sim.url)).faults, []);
    } finally {
      await sim.stop();
    }
  });

  it('--fault refuse:2s refuses from the start, then listens', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--fault', 'refuse:2s'] });
    try {
      assert.equal(await connectOutcome(sim.url), 'refused');
      await waitFor(async () => (await connectOutcome(sim.url)) === 'ok', { timeoutMs: 10000, intervalMs: 50, what: 'listening again' });
    } finally {
      await sim.stop();
    }
  });
});
