// herd-sim against the emulator conformance checklist of
// shared/reference/ollama-api.md §7, point by point, over raw HTTP.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import {
  startSim, request, post, get, parseJson, ndjson, sseFrames, openStream, waitFor, simState, ps, rawExchange,
  assertNativeError, assertOpenAIError, assertMetricsShape, METRICS, RFC3339_NANO, words, parseTime,
} from './lib/harness.mjs';

const M = 'llama3.2:3b';
const THINK = 'qwen3:8b';
const EMBED = 'nomic-embed-text';
const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function yearOf(s) {
  return Number(s.slice(0, s.indexOf('-')));
}
function expiresInMs(entry) {
  return parseTime(entry.expires_at) - Date.now();
}
async function psEntry(url, name) {
  return (await ps(url)).find((e) => e.name === name);
}
async function gen(url, body) {
  const r = await post(url, '/api/generate', { stream: false, ...body });
  assert.equal(r.status, 200, `generate ${JSON.stringify(body).slice(0, 200)}: ${r.status} ${r.body}`);
  return parseJson(r);
}
async function chat(url, body) {
  const r = await post(url, '/api/chat', { stream: false, ...body });
  assert.equal(r.status, 200, `chat: ${r.status} ${r.body}`);
  return parseJson(r);
}

// ---------------------------------------------------------------------------
describe('§7.1 health and discovery', () => {
  let sim;
  before(async () => { sim = await startSim({ args: ['--time-scale', '0'] }); });
  after(async () => { await sim?.stop(); });

  it('GET / answers 200 "Ollama is running" as text/plain', async () => {
    const r = await get(sim.url, '/');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'Ollama is running');
    assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  });

  it('HEAD / answers 200 with no body', async () => {
    const r = await request(sim.url, { method: 'HEAD', path: '/' });
    assert.equal(r.status, 200);
    assert.equal(r.body, '');
  });

  it('GET and HEAD /api/version', async () => {
    const r = await get(sim.url, '/api/version');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^application\/json/);
    const v = parseJson(r);
    assert.deepEqual(Object.keys(v), ['version']);
    assert.match(v.version, /^\d+\.\d+\.\d+/);
    const h = await request(sim.url, { method: 'HEAD', path: '/api/version' });
    assert.equal(h.status, 200);
    assert.equal(h.body, '');
  });

  it('GET and HEAD /api/tags', async () => {
    const r = await get(sim.url, '/api/tags');
    assert.equal(r.status, 200);
    assert.ok(Array.isArray(parseJson(r).models));
    const h = await request(sim.url, { method: 'HEAD', path: '/api/tags' });
    assert.equal(h.status, 200);
  });

  for (const [method, p] of [['GET', '/api/nope'], ['GET', '/nope'], ['POST', '/api/nope'], ['GET', '/v1/nope'],
    ['GET', '/api/generate/extra'], ['DELETE', '/v1/chat']]) {
    it(`${method} ${p} → 404 "404 page not found"`, async () => {
      const r = await request(sim.url, { method, path: p, ...(method === 'POST' ? { json: {} } : {}) });
      assert.equal(r.status, 404);
      assert.equal(r.body, '404 page not found');
      assert.match(String(r.headers['content-type']), /^text\/plain/);
    });
  }

  for (const [method, p] of [['GET', '/api/generate'], ['GET', '/api/chat'], ['GET', '/api/embed'],
    ['GET', '/api/embeddings'], ['POST', '/api/tags'], ['POST', '/api/ps'], ['GET', '/api/show'],
    ['GET', '/api/pull'], ['GET', '/api/delete'], ['POST', '/api/version'], ['POST', '/'],
    ['DELETE', '/api/generate'], ['GET', '/v1/chat/completions'], ['GET', '/v1/completions'],
    ['GET', '/v1/embeddings'], ['POST', '/v1/models']]) {
    it(`${method} ${p} → 405 "405 method not allowed"`, async () => {
      const r = await request(sim.url, { method, path: p, ...(method === 'POST' ? { json: {} } : {}) });
      assert.equal(r.status, 405);
      assert.equal(r.body, '405 method not allowed');
      assert.match(String(r.headers['content-type']), /^text\/plain/);
    });
  }
});

// ---------------------------------------------------------------------------
describe('§7.2 NDJSON streaming and §7.3 final chunk', () => {
  let sim;
  before(async () => { sim = await startSim({ args: ['--time-scale', '0'] }); });
  after(async () => { await sim?.stop(); });

  it('/api/generate streams NDJSON by default; final chunk has done_reason, context and six ns metrics', async () => {
    const body = { model: M, prompt: 'Why is the sky blue?', options: { seed: 42 } };
    const r = await post(sim.url, '/api/generate', body);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['content-type'], 'application/x-ndjson');
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    assert.ok(r.complete);
    const lines = ndjson(r.body);
    assert.ok(lines.length >= 2, 'at least one token chunk and the final chunk');
    const last = lines.at(-1);
    for (const c of lines.slice(0, -1)) {
      assert.deepEqual(Object.keys(c), ['model', 'created_at', 'response', 'done']);
      assert.equal(c.model, M);
      assert.match(c.created_at, RFC3339_NANO);
      assert.ok(c.created_at.endsWith('Z'), `created_at is UTC: ${c.created_at}`);
      assert.equal(typeof c.response, 'string');
      assert.equal(c.done, false);
    }
    assert.deepEqual(Object.keys(last).slice(0, 5), ['model', 'created_at', 'response', 'done', 'done_reason']);
    assert.equal(last.done, true);
    assert.equal(last.response, '');
    assert.equal(last.done_reason, 'stop');
    assert.ok(!('thinking' in last));
    assert.ok(Array.isArray(last.context) && last.context.length > 0 && last.context.every(Number.isInteger));
    assertMetricsShape(last);
    assert.ok(last.total_duration >= last.load_duration + last.prompt_eval_duration + last.eval_duration,
      `total_duration ${last.total_duration} < load+prompt_eval+eval`);
    assert.equal(last.eval_count, lines.length - 1, 'one chunk per generated token');

    // stream:false gives one application/json object equal to the final chunk with the full text.
    const r2 = await post(sim.url, '/api/generate', { ...body, stream: false });
    assert.equal(r2.status, 200);
    assert.equal(r2.headers['content-type'], 'application/json; charset=utf-8');
    const one = parseJson(r2);
    assert.equal(one.done, true);
    assert.equal(one.done_reason, 'stop');
    assert.equal(one.response, lines.slice(0, -1).map((c) => c.response).join(''), 'same seed, same text');
    assert.ok(one.response.length > 0);
    assert.ok(Array.isArray(one.context));
    assertMetricsShape(one);
  });

  it('/api/chat streams NDJSON by default; final chunk has no context', async () => {
    const body = { model: M, messages: [{ role: 'user', content: 'Hello there' }], options: { seed: 7 } };
    const r = await post(sim.url, '/api/chat', body);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['content-type'], 'application/x-ndjson');
    const lines = ndjson(r.body);
    const last = lines.at(-1);
    for (const c of lines.slice(0, -1)) {
      assert.deepEqual(Object.keys(c), ['model', 'created_at', 'message', 'done']);
      assert.equal(c.message.role, 'assistant');
      assert.equal(typeof c.message.content, 'string');
      assert.equal(c.done, false);
    }
    assert.equal(last.done, true);
    assert.equal(last.done_reason, 'stop');
    assert.deepEqual(last.message, { role: 'assistant', content: '' });
    assert.ok(!('context' in last), 'chat has no context');
    assertMetricsShape(last);

    const r2 = await post(sim.url, '/api/chat', { ...body, stream: false });
    assert.equal(r2.headers['content-type'], 'application/json; charset=utf-8');
    const one = parseJson(r2);
    assert.equal(one.message.content, lines.slice(0, -1).map((c) => c.message.content).join(''));
    assert.equal(one.done_reason, 'stop');
    assert.ok(!('context' in one));
    assertMetricsShape(one);
  });

  it('thinking models stream "thinking" first; the final chunk and think:false carry none', async () => {
    const r = await post(sim.url, '/api/generate', { model: THINK, prompt: 'Think about it' });
    assert.equal(r.status, 200, r.body);
    const lines = ndjson(r.body);
    const thinking = lines.filter((c) => 'thinking' in c);
    assert.ok(thinking.length > 0, 'unset think on a thinking model means true');
    const firstContent = lines.findIndex((c) => c.response !== '' && !c.done);
    const lastThinking = lines.findLastIndex((c) => 'thinking' in c);
    assert.ok(firstContent === -1 || lastThinking < firstContent, 'thinking comes before content');
    assert.ok(!('thinking' in lines.at(-1)));
    for (const c of thinking) assert.ok(c.thinking.length > 0, 'thinking left out when empty');

    const one = await gen(sim.url, { model: THINK, prompt: 'Think about it' });
    assert.equal(one.thinking, thinking.map((c) => c.thinking).join(''));
    const off = await gen(sim.url, { model: THINK, prompt: 'Think about it', think: false });
    assert.ok(!('thinking' in off));
    const c = await chat(sim.url, { model: THINK, messages: [{ role: 'user', content: 'hm' }] });
    assert.ok(c.message.thinking.length > 0);
  });

  it('done_reason "length" when num_predict is reached', async () => {
    const g = await gen(sim.url, { model: M, prompt: 'Count to one hundred', options: { num_predict: 3 } });
    assert.equal(g.done_reason, 'length');
    assert.equal(g.eval_count, 3);
    const c = await chat(sim.url, { model: M, messages: [{ role: 'user', content: 'Count' }], options: { num_predict: 2 } });
    assert.equal(c.done_reason, 'length');
    assert.equal(c.eval_count, 2);
  });

  it('a stop string ends the output before it with done_reason "stop"', async () => {
    const base = { model: M, prompt: 'Tell me a story about routers', options: { seed: 99, num_predict: 60 } };
    const full = (await gen(sim.url, base)).response;
    const ws = full.split(' ').filter((w) => /^[a-z]+$/i.test(w));
    assert.ok(ws.length >= 4, `need some words to stop on: ${full}`);
    const stop = ` ${ws[Math.floor(ws.length / 2)]}`;
    const cut = await gen(sim.url, { ...base, options: { ...base.options, stop: [stop] } });
    assert.equal(cut.done_reason, 'stop');
    assert.ok(!cut.response.includes(stop), `output still contains the stop string ${JSON.stringify(stop)}`);
    assert.equal(cut.response, full.slice(0, full.indexOf(stop)));
  });

  it('raw generate carries no context', async () => {
    const g = await gen(sim.url, { model: M, prompt: 'raw text', raw: true });
    assert.ok(!('context' in g));
  });

  it('/api/pull streams NDJSON by default; stream:false gives only {"status":"success"}', async () => {
    const r = await post(sim.url, '/api/pull', { model: M });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['content-type'], 'application/x-ndjson');
    const lines = ndjson(r.body);
    assert.deepEqual(lines[0], { status: 'pulling manifest' });
    assert.deepEqual(lines.at(-1), { status: 'success' });
    const r2 = await post(sim.url, '/api/pull', { model: M, stream: false });
    assert.equal(r2.status, 200);
    assert.deepEqual(parseJson(r2), { status: 'success' });
  });
});

// ---------------------------------------------------------------------------
describe('§7.4 load and unload probes', () => {
  let sim;
  before(async () => { sim = await startSim({ args: ['--time-scale', '0'] }); });
  after(async () => { await sim?.stop(); });

  it('generate with an empty prompt loads: done_reason "load", no metrics', async () => {
    const r = await post(sim.url, '/api/generate', { model: M });
    assert.equal(r.status, 200, r.body);
    const o = ndjson(r.body.endsWith('\n') ? r.body : `${r.body}\n`);
    assert.equal(o.length, 1, 'one object');
    assert.deepEqual(Object.keys(o[0]), ['model', 'created_at', 'response', 'done', 'done_reason']);
    assert.equal(o[0].response, '');
    assert.equal(o[0].done, true);
    assert.equal(o[0].done_reason, 'load');
    assert.ok(await psEntry(sim.url, M), 'model is loaded');
  });

  it('generate with an empty prompt and keep_alive 0 unloads at once', async () => {
    const g = await gen(sim.url, { model: M, prompt: '', keep_alive: 0 });
    assert.deepEqual(Object.keys(g), ['model', 'created_at', 'response', 'done', 'done_reason']);
    assert.equal(g.done_reason, 'unload');
    await waitFor(async () => !(await psEntry(sim.url, M)), { what: `${M} to leave /api/ps` });
  });

  it('chat with no messages loads; with keep_alive 0 unloads', async () => {
    const c = await chat(sim.url, { model: M, messages: [] });
    assert.deepEqual(Object.keys(c), ['model', 'created_at', 'message', 'done', 'done_reason']);
    assert.deepEqual(c.message, { role: 'assistant', content: '' });
    assert.equal(c.done_reason, 'load');
    assert.ok(await psEntry(sim.url, M));
    const u = await chat(sim.url, { model: M, messages: [], keep_alive: 0 });
    assert.deepEqual(Object.keys(u), ['model', 'created_at', 'message', 'done', 'done_reason']);
    assert.equal(u.done_reason, 'unload');
    await waitFor(async () => !(await psEntry(sim.url, M)), { what: `${M} to leave /api/ps` });
  });

  it('the unload probe on a model that is not loaded loads nothing', async () => {
    const before_ = (await simState(sim.url)).stats.loads;
    const g = await gen(sim.url, { model: 'gemma3:4b', keep_alive: 0 });
    assert.equal(g.done_reason, 'unload');
    assert.equal((await simState(sim.url)).stats.loads, before_);
    assert.ok(!(await psEntry(sim.url, 'gemma3:4b')));
  });

  it('a real prompt with keep_alive 0 is served, then the model unloads when idle', async () => {
    const g = await gen(sim.url, { model: M, prompt: 'hello', keep_alive: 0 });
    assert.equal(g.done_reason, 'stop');
    assert.ok(g.response.length > 0);
    await waitFor(async () => !(await psEntry(sim.url, M)), { what: `${M} to unload after keep_alive 0` });
  });

  it('embed with no input loads and returns {"model","embeddings":[]}', async () => {
    const r = await post(sim.url, '/api/embed', { model: EMBED });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(parseJson(r), { model: EMBED, embeddings: [] });
    assert.ok(await psEntry(sim.url, 'nomic-embed-text:latest'));
    const r2 = await post(sim.url, '/api/embeddings', { model: EMBED, prompt: '' });
    assert.equal(r2.status, 200, r2.body);
    assert.deepEqual(parseJson(r2), { embedding: [] });
  });
});

// ---------------------------------------------------------------------------
describe('§7.5 error wording per endpoint', () => {
  let sim;
  before(async () => { sim = await startSim({ args: ['--time-scale', '0'] }); });
  after(async () => { await sim?.stop(); });
  const X = 'no-such-model:1b';

  it("generate, chat, show, delete → 404 model 'X' not found", async () => {
    assertNativeError(await post(sim.url, '/api/generate', { model: X, prompt: 'hi' }), 404, `model '${X}' not found`, 'generate');
    assertNativeError(await post(sim.url, '/api/generate', { model: X, prompt: 'hi', stream: false }), 404, `model '${X}' not found`, 'generate stream:false');
    assertNativeError(await post(sim.url, '/api/chat', { model: X, messages: [{ role: 'user', content: 'hi' }] }), 404, `model '${X}' not found`, 'chat');
    assertNativeError(await post(sim.url, '/api/show', { model: X }), 404, `model '${X}' not found`, 'show');
    assertNativeError(await request(sim.url, { method: 'DELETE', path: '/api/delete', json: { model: X } }), 404, `model '${X}' not found`, 'delete');
  });

  it('embed, embeddings → 404 model "X" not found, try pulling it first', async () => {
    assertNativeError(await post(sim.url, '/api/embed', { model: X, input: 'hi' }), 404, `model "${X}" not found, try pulling it first`, 'embed');
    assertNativeError(await post(sim.url, '/api/embeddings', { model: X, prompt: 'hi' }), 404, `model "${X}" not found, try pulling it first`, 'embeddings');
  });

  it('copy → 404 model "X" not found', async () => {
    assertNativeError(await post(sim.url, '/api/copy', { source: X, destination: 'dest:1' }), 404, `model "${X}" not found`, 'copy');
  });

  it('capability errors', async () => {
    assertNativeError(await post(sim.url, '/api/generate', { model: EMBED, prompt: 'hi' }), 400, `"${EMBED}" does not support generate`);
    assertNativeError(await post(sim.url, '/api/chat', { model: EMBED, messages: [{ role: 'user', content: 'x' }] }), 400, `"${EMBED}" does not support chat`);
    assertNativeError(await post(sim.url, '/api/generate', { model: M, prompt: 'hi', think: true }), 400, `"${M}" does not support thinking`);
    assertNativeError(await post(sim.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'x' }], think: 'high' }), 400, `"${M}" does not support thinking`);
    assertNativeError(await post(sim.url, '/api/generate', { model: THINK, prompt: 'hi', think: 'x' }), 400,
      'invalid think value: "x" (must be "high", "medium", "low", "max", true, or false)');
    assertNativeError(await post(sim.url, '/api/generate', { model: M, prompt: 'def f(', suffix: 'return 1' }), 400,
      `registry.ollama.ai/library/${M} does not support insert`);
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } }];
    assertNativeError(await post(sim.url, '/api/chat', { model: 'gemma3:4b', messages: [{ role: 'user', content: 'x' }], tools }), 400,
      'registry.ollama.ai/library/gemma3:4b does not support tools');
  });

  it('request validation errors', async () => {
    assertNativeError(await post(sim.url, '/api/generate', { model: M, prompt: 'hi', raw: true, system: 'be nice' }), 400,
      'raw mode does not support template, system, or context');
    assertNativeError(await post(sim.url, '/api/generate', { model: M, prompt: 'hi', logprobs: true, top_logprobs: 21 }), 400,
      'top_logprobs must be between 0 and 20');
    assertNativeError(await post(sim.url, '/api/generate', { model: M, prompt: 'hi', options: { num_ctx: 'big' } }), 500,
      'option "num_ctx" must be of type integer');
    assertNativeError(await post(sim.url, '/api/embed', { model: EMBED, input: 5 }), 400, 'invalid input type');
  });

  it('pull of an unknown model: 200 then an in-band error line; stream:false gives 500', async () => {
    const r = await post(sim.url, '/api/pull', { model: 'missing-model' });
    assert.equal(r.status, 200);
    const lines = ndjson(r.body);
    assert.deepEqual(lines.at(-1), { error: 'pull model manifest: file does not exist' });
    assertNativeError(await post(sim.url, '/api/pull', { model: 'missing-model', stream: false }), 500,
      'pull model manifest: file does not exist');
  });
});

describe('§7.5 error after streaming started', () => {
  let sim;
  before(async () => { sim = await startSim({ args: ['--time-scale', '0', '--fault', 'error-after:3'] }); });
  after(async () => { await sim?.stop(); });

  for (const [p, body] of [['/api/generate', { model: M, prompt: 'hello', options: { num_predict: 20 } }],
    ['/api/chat', { model: M, messages: [{ role: 'user', content: 'hello' }], options: { num_predict: 20 } }]]) {
    it(`${p}: status stays 200, three chunks, then one {"error":…} line and a clean end`, async () => {
      const r = await post(sim.url, p, body);
      assert.equal(r.status, 200, r.body);
      assert.ok(r.complete, 'the stream ends cleanly');
      const lines = ndjson(r.body);
      assert.equal(lines.length, 4, r.body);
      for (const c of lines.slice(0, 3)) assert.equal(c.done, false);
      const e = lines[3];
      assert.deepEqual(Object.keys(e), ['error']);
      assert.equal(typeof e.error, 'string');
      assert.ok(e.error.length > 0);
    });
  }
});

// ---------------------------------------------------------------------------
describe('§7.6 queue', () => {
  const BIG = 'llama3.1:8b';
  let loadNs;

  before(async () => {
    // The modelled load time of BIG, to pick a time scale that makes its
    // real load last about 4 s.
    const s0 = await startSim({ args: ['--time-scale', '0'] });
    try {
      loadNs = (await gen(s0.url, { model: BIG, prompt: 'x', options: { num_predict: 1 } })).load_duration;
    } finally {
      await s0.stop();
    }
    assert.ok(loadNs > 100e6, `a cold load of ${BIG} should be modelled as taking a while, got load_duration ${loadNs}`);
  });

  it('more than --max-queue requests waiting to be scheduled → 503 with the exact body', async () => {
    // While BIG loads (about 4 s real), the one scheduler is busy: requests
    // for another cold model wait in the pending queue. (Requests for BIG
    // itself attach to the loading runner and are not queued, §4.2/§4.3.)
    const ts = (4e9 / loadNs).toFixed(4);
    const sim = await startSim({ args: ['--time-scale', ts, '--max-queue', '2'] });
    const streams = [];
    try {
      const first = openStream(sim.url, { path: '/api/generate', json: { model: BIG, prompt: 'load me', stream: false, options: { num_predict: 2 } } });
      streams.push(first);
      await waitFor(async () => (await simState(sim.url)).runners.some((r) => r.loading), { what: `${BIG} to be loading` });
      const body = { model: M, prompt: 'queued', stream: false, options: { num_predict: 2 } };
      let got503 = null;
      for (let i = 0; i < 5 && !got503; i++) {
        const pendingBefore = (await simState(sim.url)).pending;
        const s = openStream(sim.url, { path: '/api/generate', json: body });
        streams.push(s);
        let answered = null;
        s.response.then((r) => { answered = r; });
        let outcome = null;
        await waitFor(async () => {
          if (answered && answered.status !== undefined) { outcome = { status: answered.status }; return true; }
          const st = await simState(sim.url);
          if (st.pending > pendingBefore) { outcome = { pending: st.pending }; return true; }
          return false;
        }, { timeoutMs: 3000, what: `request ${i} to be answered or queued` });
        if (outcome.status !== undefined) {
          assert.equal(outcome.status, 503, `request ${i} answered ${outcome.status} while ${BIG} loads`);
          assert.equal(pendingBefore, 2, `503 came with only ${pendingBefore} pending (max-queue 2)`);
          const res = await s.done;
          assertNativeError(res, 503, 'server busy, please try again.  maximum pending requests exceeded');
          got503 = res;
        }
      }
      assert.ok(got503, 'no 503 after max-queue was reached');
      assert.ok((await simState(sim.url)).runners.some((r) => r.loading), 'still loading: the test ran inside the load');
      // The /v1 shape of the same answer.
      const v1 = await post(sim.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }] });
      assertOpenAIError(v1, 503, 'server busy, please try again.  maximum pending requests exceeded', 'api_error', '/v1 503');
      assert.equal((await simState(sim.url)).stats.rejected, 2);
      // The accepted ones all complete once the models are loaded.
      for (const s of streams.slice(0, -1)) {
        const res = await s.done;
        assert.equal(res.status, 200, res.body);
        assert.equal(parseJson(res).done, true);
      }
    } finally {
      for (const s of streams) s.abort();
      await sim.stop();
    }
  });

  it('requests waiting for a parallel slot are never rejected; the wait is in total_duration only', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--max-queue', '1', '--num-parallel', '1'] });
    let perTok;
    try {
      const warm = await gen(sim.url, { model: M, prompt: 'warm', keep_alive: -1, options: { num_predict: 10 } });
      perTok = warm.eval_duration / warm.eval_count;
    } finally {
      await sim.stop();
    }
    // About 400 ms of modelled generation per request, 1/8 of it real.
    const n = Math.max(5, Math.ceil(400e6 / perTok));
    const sim2 = await startSim({ args: ['--time-scale', '0.125', '--max-queue', '1', '--num-parallel', '1'] });
    try {
      await gen(sim2.url, { model: M, keep_alive: -1 });
      const body = { model: M, prompt: 'slot', options: { num_predict: n } };
      const rs = await Promise.all(Array.from({ length: 6 }, () => post(sim2.url, '/api/generate', { ...body, stream: false })));
      for (const r of rs) assert.equal(r.status, 200, `a slot waiter was answered ${r.status} ${r.body}`);
      const st = await simState(sim2.url);
      assert.equal(st.stats.rejected, 0);
      const os_ = rs.map(parseJson);
      const minEval = Math.min(...os_.map((o) => o.eval_duration));
      const waited = os_.map((o) => o.total_duration - (o.load_duration + o.prompt_eval_duration + o.eval_duration));
      const maxWait = Math.max(...waited);
      assert.ok(maxWait >= 3 * minEval, `the last of 6 requests on 1 slot should wait for several others: waits ${waited}, eval ${minEval}`);
      for (const o of os_) {
        assert.ok(o.load_duration < minEval, `load_duration ${o.load_duration} must not include the slot wait (eval ${minEval})`);
      }
    } finally {
      await sim2.stop();
    }
  });
});

// ---------------------------------------------------------------------------
describe('§7.7 runner state', () => {
  let sim;
  before(async () => {
    sim = await startSim({ args: ['--time-scale', '0', '--model', 'smallctx:1b,params=1B,ctx=8192', '--model', M] });
  });
  after(async () => { await sim?.stop(); });

  it('/api/ps with nothing loaded is {"models":[]}', async () => {
    const r = await get(sim.url, '/api/ps');
    assert.equal(r.status, 200);
    assert.deepEqual(parseJson(r), { models: [] });
  });

  it('a different num_ctx unloads and reloads: load_duration large, cache cleared, context_length changes', async () => {
    const prompt = words(200, 3);
    const s0 = (await simState(sim.url)).stats;
    const cold = await gen(sim.url, { model: M, prompt, keep_alive: -1, options: { num_ctx: 2048, num_predict: 4 } });
    const warm = await gen(sim.url, { model: M, prompt, options: { num_ctx: 2048, num_predict: 4 } });
    assert.ok(warm.load_duration > 0 && warm.load_duration * 10 < cold.load_duration,
      `warm load_duration ${warm.load_duration} vs cold ${cold.load_duration}`);
    let e = await psEntry(sim.url, M);
    assert.equal(e.context_length, 2048);
    const reload = await gen(sim.url, { model: M, prompt, options: { num_ctx: 4096, num_predict: 4 } });
    assert.ok(reload.load_duration >= cold.load_duration * 0.9,
      `reload load_duration ${reload.load_duration} should hold a full load (cold ${cold.load_duration})`);
    assert.ok(reload.prompt_eval_duration >= cold.prompt_eval_duration * 0.9,
      `cache cleared by reload: prompt_eval_duration ${reload.prompt_eval_duration} vs cold ${cold.prompt_eval_duration}`);
    assert.equal(reload.prompt_eval_count, cold.prompt_eval_count);
    e = await psEntry(sim.url, M);
    assert.equal(e.context_length, 4096);
    const s1 = (await simState(sim.url)).stats;
    assert.equal(s1.reloads - s0.reloads, 1, 'one reload');
    assert.equal(s1.loads - s0.loads, 2, 'two loads');
    assert.equal(s1.unloads - s0.unloads, 1, 'one unload');
    // Same options again: no reload.
    const again = await gen(sim.url, { model: M, prompt, options: { num_ctx: 4096, num_predict: 4 } });
    assert.ok(again.load_duration * 10 < cold.load_duration);
    assert.equal((await simState(sim.url)).stats.reloads, s1.reloads);
  });

  it('num_ctx above the training context is capped before comparing (no reload)', async () => {
    await gen(sim.url, { model: 'smallctx:1b', prompt: 'a', options: { num_ctx: 100000, num_predict: 1 } });
    const e = await psEntry(sim.url, 'smallctx:1b');
    assert.equal(e.context_length, 8192);
    const r0 = (await simState(sim.url)).stats.reloads;
    await gen(sim.url, { model: 'smallctx:1b', prompt: 'a', options: { num_ctx: 200000, num_predict: 1 } });
    await gen(sim.url, { model: 'smallctx:1b', prompt: 'a', options: { num_ctx: 8192, num_gpu: -1, num_predict: 1 } });
    assert.equal((await simState(sim.url)).stats.reloads, r0);
  });

  it('/api/ps entries: fields, sizes, expires_at and order (furthest first)', async () => {
    // (The reload above started a new runner with the default keep-alive.)
    await gen(sim.url, { model: M, keep_alive: -1, options: { num_ctx: 4096 } });
    await gen(sim.url, { model: 'smallctx:1b', keep_alive: '10m' });
    const list = await ps(sim.url);
    assert.ok(list.length >= 2);
    for (const e of list) {
      for (const k of ['name', 'model', 'size', 'digest', 'details', 'expires_at', 'size_vram', 'context_length']) {
        assert.ok(k in e, `ps entry lacks ${k}: ${JSON.stringify(e)}`);
      }
      assert.equal(e.name, e.model);
      assert.ok(Number.isInteger(e.size) && e.size > 0);
      assert.ok(Number.isInteger(e.size_vram) && e.size_vram >= 0 && e.size_vram <= e.size);
      assert.match(e.digest, /^[0-9a-f]{64}$/);
      assert.match(e.expires_at, LOCAL_TIME);
      assert.ok(Number.isInteger(e.context_length) && e.context_length > 0);
      assert.equal(typeof e.details.family, 'string');
    }
    const forever = list.find((e) => e.name === M);
    assert.ok(yearOf(forever.expires_at) >= 2310 && yearOf(forever.expires_at) <= 2330,
      `keep_alive -1 gives expires_at around year 2318, got ${forever.expires_at}`);
    const ten = list.find((e) => e.name === 'smallctx:1b');
    const left = expiresInMs(ten);
    assert.ok(left > 9 * 60e3 && left <= 10 * 60e3 + 5e3, `keep_alive 10m: expires in ${left} ms`);
    const times = list.map((e) => e.expires_at);
    assert.ok(yearOf(times[0]) >= 2310, `sorted by expires_at, furthest first: ${times}`);
    // Small models fit a 24 GB GPU: 100% GPU.
    assert.equal(ten.size_vram, ten.size);
  });

  it('on the cpu profile size_vram is 0', async () => {
    const s = await startSim({ args: ['--time-scale', '0', '--profile', 'cpu'] });
    try {
      await gen(s.url, { model: M });
      const e = await psEntry(s.url, M);
      assert.equal(e.size_vram, 0);
      assert.ok(e.size > 0);
    } finally {
      await s.stop();
    }
  });
});

// ---------------------------------------------------------------------------
describe('§7.8 keep_alive', () => {
  let sim;
  before(async () => { sim = await startSim({ args: ['--time-scale', '0'] }); });
  after(async () => { await sim?.stop(); });

  it('a number is seconds', async () => {
    await gen(sim.url, { model: M, keep_alive: 120 });
    const left = expiresInMs(await psEntry(sim.url, M));
    assert.ok(left > 100e3 && left <= 125e3, `keep_alive 120: expires in ${left} ms`);
  });

  it('negative numbers and negative durations mean forever', async () => {
    for (const ka of [-1, -5.5, '-1m', '-1s']) {
      await gen(sim.url, { model: M, keep_alive: ka });
      const e = await psEntry(sim.url, M);
      assert.ok(yearOf(e.expires_at) >= 2310 && yearOf(e.expires_at) <= 2330, `keep_alive ${JSON.stringify(ka)}: ${e.expires_at}`);
    }
  });

  it('omitted keeps the runner\'s current value; a later explicit value replaces it', async () => {
    await gen(sim.url, { model: M, keep_alive: '1h' });
    await gen(sim.url, { model: M, prompt: 'no keep_alive here', options: { num_predict: 2 } });
    let left = expiresInMs(await psEntry(sim.url, M));
    assert.ok(left > 55 * 60e3, `omitted keep_alive should keep 1h, expires in ${left} ms`);
    await post(sim.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'hi' }], stream: false });
    left = expiresInMs(await psEntry(sim.url, M));
    assert.ok(left > 55 * 60e3, `chat without keep_alive should keep 1h, expires in ${left} ms`);
    await gen(sim.url, { model: M, keep_alive: '10m' });
    left = expiresInMs(await psEntry(sim.url, M));
    assert.ok(left > 9 * 60e3 && left <= 10 * 60e3 + 5e3, `10m: ${left}`);
  });

  it('a new load without keep_alive uses the server default (5m)', async () => {
    await gen(sim.url, { model: 'gemma3:4b' });
    const left = expiresInMs(await psEntry(sim.url, 'gemma3:4b'));
    assert.ok(left > 4 * 60e3 && left <= 5 * 60e3 + 5e3, `default 5m: ${left}`);
  });

  it('the string "0" is accepted and unloads; fractional seconds work', async () => {
    const g = await gen(sim.url, { model: 'gemma3:4b', keep_alive: '0' });
    assert.equal(g.done_reason, 'unload');
    await waitFor(async () => !(await psEntry(sim.url, 'gemma3:4b')), { what: 'unload after keep_alive "0"' });
    const t0 = Date.now();
    const r = await gen(sim.url, { model: 'gemma3:4b', prompt: 'short stay', keep_alive: 0.3, options: { num_predict: 2 } });
    assert.equal(r.done, true);
    await waitFor(async () => !(await psEntry(sim.url, 'gemma3:4b')), { timeoutMs: 5000, what: 'unload 0.3 s after idle' });
    assert.ok(Date.now() - t0 >= 250, 'not before its keep-alive');
  });

  it('bad keep_alive values → 400 with Go\'s wording', async () => {
    assertNativeError(await post(sim.url, '/api/generate', { model: M, prompt: 'x', keep_alive: '10' }), 400, 'time: missing unit in duration "10"');
    assertNativeError(await post(sim.url, '/api/generate', { model: M, prompt: 'x', keep_alive: '-1' }), 400, 'time: missing unit in duration "-1"');
    assertNativeError(await post(sim.url, '/api/generate', { model: M, prompt: 'x', keep_alive: true }), 400, "Unsupported type: 'bool'");
    assertNativeError(await post(sim.url, '/api/chat', { model: M, messages: [], keep_alive: '10' }), 400, 'time: missing unit in duration "10"');
    assertNativeError(await post(sim.url, '/api/embed', { model: EMBED, input: 'x', keep_alive: false }), 400, "Unsupported type: 'bool'");
  });

  it('--keep-alive and OLLAMA_KEEP_ALIVE (integer seconds allowed there) set the default', async () => {
    const a = await startSim({ args: ['--time-scale', '0', '--keep-alive', '7m'] });
    const b = await startSim({ args: ['--time-scale', '0'], env: { OLLAMA_KEEP_ALIVE: '90' } });
    try {
      await gen(a.url, { model: M });
      let left = expiresInMs(await psEntry(a.url, M));
      assert.ok(left > 6 * 60e3 && left <= 7 * 60e3 + 5e3, `--keep-alive 7m: ${left}`);
      await gen(b.url, { model: M });
      left = expiresInMs(await psEntry(b.url, M));
      assert.ok(left > 60e3 && left <= 95e3, `OLLAMA_KEEP_ALIVE=90: ${left}`);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});

// ---------------------------------------------------------------------------
describe('§7.9 eviction', () => {
  const A = 'llama3.2:3b';
  const B = 'gemma3:4b';
  const C = 'qwen2.5-coder:7b';
  const D = 'llama3.1:8b';
  const names = async (url) => (await ps(url)).map((e) => e.name).sort();

  it('at --max-loaded-models, the shortest keep-alive goes first (not LRU)', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--profile', 'mac-studio', '--context-length', '4096', '--max-loaded-models', '2'] });
    try {
      await gen(sim.url, { model: A, keep_alive: '10m' });
      await gen(sim.url, { model: B, keep_alive: '1h' });
      await gen(sim.url, { model: A, prompt: 'most recent', options: { num_predict: 2 } }); // LRU would now pick B
      const e0 = (await simState(sim.url)).stats.evictions;
      await gen(sim.url, { model: C, keep_alive: '30m' });
      assert.deepEqual(await names(sim.url), [C, B].sort(), 'A (10m) evicted, B (1h) kept');
      assert.equal((await simState(sim.url)).stats.evictions - e0, 1);
      // Forever sorts last.
      await gen(sim.url, { model: B, keep_alive: -1 });
      await gen(sim.url, { model: D, keep_alive: '2h' });
      assert.deepEqual(await names(sim.url), [B, D].sort(), 'C (30m) evicted before B (forever)');
      await gen(sim.url, { model: A, keep_alive: '1m' });
      assert.deepEqual(await names(sim.url), [A, B].sort(), 'D (2h) evicted before B (forever)');
    } finally {
      await sim.stop();
    }
  });

  it('idle runners are preferred over a busy one with a shorter keep-alive', async () => {
    const ts = 0.05;
    const sim = await startSim({ args: ['--time-scale', String(ts), '--profile', 'mac-studio', '--context-length', '4096', '--max-loaded-models', '2'] });
    let stream;
    try {
      const a = await gen(sim.url, { model: A, prompt: 'measure', keep_alive: '10m', options: { num_predict: 4 } });
      await gen(sim.url, { model: B, keep_alive: '1h' });
      // Make A's tokens take ~300 ms each of real time, and keep A busy.
      const factor = Math.ceil(300e6 / ((a.eval_duration / a.eval_count) * ts));
      const f = await post(sim.url, '/_sim/fault', { kind: 'slow', factor, model: A });
      assert.ok(f.status >= 200 && f.status < 300, `POST /_sim/fault: ${f.status} ${f.body}`);
      stream = openStream(sim.url, { path: '/api/generate', json: { model: A, prompt: 'busy', options: { num_predict: 100 } } });
      assert.equal((await stream.response).status, 200);
      assert.ok(await stream.next({ timeoutMs: 5000 }), 'A is generating');
      await gen(sim.url, { model: C });
      assert.deepEqual(await names(sim.url), [A, C].sort(), 'idle B (1h) evicted, busy A (10m) kept');
    } finally {
      stream?.abort();
      await sim.stop();
    }
  });
});

// ---------------------------------------------------------------------------
describe('§7.10 prefix cache', () => {
  let sim;
  before(async () => { sim = await startSim({ args: ['--time-scale', '0'] }); });
  after(async () => { await sim?.stop(); });

  it('a follow-up turn evaluates only the new tail but reports the full prompt; unload clears the cache', async () => {
    const sys = { role: 'system', content: 'You are a careful assistant.' };
    const u1 = { role: 'user', content: words(400, 11) };
    const t1 = await chat(sim.url, { model: M, messages: [sys, u1], options: { num_predict: 8 } });
    const rate = t1.prompt_eval_duration / t1.prompt_eval_count;
    const turn2 = [sys, u1, { role: 'assistant', content: t1.message.content }, { role: 'user', content: 'And then?' }];
    const t2 = await chat(sim.url, { model: M, messages: turn2, options: { num_predict: 8 } });
    assert.ok(t2.prompt_eval_count > t1.prompt_eval_count, `full prompt counted: ${t2.prompt_eval_count} vs ${t1.prompt_eval_count}`);
    assert.ok(t2.prompt_eval_duration < t1.prompt_eval_duration / 4,
      `cached prefix: prompt_eval_duration ${t2.prompt_eval_duration} vs first turn ${t1.prompt_eval_duration}`);
    const tail = t2.prompt_eval_count - t1.prompt_eval_count;
    assert.ok(t2.prompt_eval_duration <= rate * (tail + 8) * 1.5,
      `proportional to the uncached tail (~${tail} tokens at ${rate} ns): ${t2.prompt_eval_duration}`);
    // The whole prompt cached: still one token evaluated, metric non-zero.
    const t2b = await chat(sim.url, { model: M, messages: turn2, options: { num_predict: 8 } });
    assert.ok(t2b.prompt_eval_duration > 0 && t2b.prompt_eval_duration <= rate * 4,
      `fully cached prompt: ${t2b.prompt_eval_duration} (rate ${rate})`);
    assert.equal(t2b.prompt_eval_count, t2.prompt_eval_count);
    // Unload clears it.
    await chat(sim.url, { model: M, messages: [], keep_alive: 0 });
    await waitFor(async () => !(await psEntry(sim.url, M)), { what: 'unload' });
    const t3 = await chat(sim.url, { model: M, messages: turn2, options: { num_predict: 8 } });
    assert.ok(t3.prompt_eval_duration >= rate * t3.prompt_eval_count * 0.8,
      `after unload the whole prompt is evaluated again: ${t3.prompt_eval_duration} vs ${rate * t3.prompt_eval_count}`);
  });
});

// ---------------------------------------------------------------------------
describe('§7.11 /v1', () => {
  let sim;
  before(async () => { sim = await startSim({ args: ['--time-scale', '0', '--context-length', '4096'] }); });
  after(async () => { await sim?.stop(); });

  function checkEnvelope(c, id, created, object) {
    assert.equal(c.id, id);
    assert.equal(c.created, created);
    assert.equal(c.object, object);
    assert.equal(c.model, M);
    assert.equal(c.system_fingerprint, 'fp_ollama');
  }

  it('chat SSE: role first, stable id/created, finish chunk with delta {}, usage chunk with choices [], [DONE]', async () => {
    const r = await post(sim.url, '/v1/chat/completions', {
      model: M, messages: [{ role: 'user', content: 'Say hi' }], stream: true, stream_options: { include_usage: true },
    });
    assert.equal(r.status, 200, r.body);
    assert.match(r.headers['content-type'], /^text\/event-stream/);
    assert.ok(r.complete);
    const frames = sseFrames(r.body);
    assert.equal(frames.at(-1), '[DONE]');
    const chunks = frames.slice(0, -1).map((f) => JSON.parse(f));
    assert.ok(chunks.length >= 3);
    const { id, created } = chunks[0];
    assert.match(id, /^chatcmpl-\d+$/);
    const n = Number(id.slice('chatcmpl-'.length));
    assert.ok(n >= 0 && n <= 998, `id number in 0..998: ${id}`);
    assert.ok(Number.isInteger(created) && Math.abs(created - Date.now() / 1000) < 300);
    const usage = chunks.at(-1);
    const finish = chunks.at(-2);
    const content = chunks.slice(0, -2);
    assert.equal(content[0].choices[0].delta.role, 'assistant');
    for (const [i, c] of content.entries()) {
      checkEnvelope(c, id, created, 'chat.completion.chunk');
      assert.ok(!('usage' in c), 'content chunks carry no usage key');
      assert.equal(c.choices.length, 1);
      assert.equal(c.choices[0].index, 0);
      assert.equal(c.choices[0].finish_reason, null);
      assert.equal(typeof c.choices[0].delta.content, 'string');
      if (i > 0) assert.ok(!('role' in c.choices[0].delta), 'only the first delta has the role');
    }
    checkEnvelope(finish, id, created, 'chat.completion.chunk');
    assert.deepEqual(finish.choices, [{ index: 0, delta: {}, finish_reason: 'stop' }]);
    checkEnvelope(usage, id, created, 'chat.completion.chunk');
    assert.deepEqual(usage.choices, []);
    const u = usage.usage;
    assert.ok(u.prompt_tokens > 0 && u.completion_tokens > 0);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  });

  it('chat SSE without include_usage: no usage chunk and no usage key', async () => {
    const r = await post(sim.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'Say hi' }], stream: true });
    const frames = sseFrames(r.body);
    assert.equal(frames.at(-1), '[DONE]');
    const chunks = frames.slice(0, -1).map((f) => JSON.parse(f));
    for (const c of chunks) assert.ok(!('usage' in c));
    assert.deepEqual(chunks.at(-1).choices, [{ index: 0, delta: {}, finish_reason: 'stop' }]);
  });

  it('chat SSE with max_tokens ends with finish_reason "length"', async () => {
    const r = await post(sim.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'Count' }], stream: true, max_tokens: 3 });
    const chunks = sseFrames(r.body).slice(0, -1).map((f) => JSON.parse(f));
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
    assert.deepEqual(chunks.at(-1).choices[0].delta, {});
  });

  it('completions SSE: usage zeros on every chunk with include_usage, then choices [] with real usage, [DONE]', async () => {
    const r = await post(sim.url, '/v1/completions', { model: M, prompt: 'Once upon a time', stream: true, stream_options: { include_usage: true } });
    assert.equal(r.status, 200, r.body);
    assert.match(r.headers['content-type'], /^text\/event-stream/);
    const frames = sseFrames(r.body);
    assert.equal(frames.at(-1), '[DONE]');
    const chunks = frames.slice(0, -1).map((f) => JSON.parse(f));
    const { id, created } = chunks[0];
    assert.match(id, /^cmpl-\d+$/);
    const last = chunks.at(-1);
    const content = chunks.slice(0, -1);
    for (const [i, c] of content.entries()) {
      checkEnvelope(c, id, created, 'text_completion');
      assert.deepEqual(c.usage, { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });
      assert.equal(c.choices.length, 1);
      assert.equal(typeof c.choices[0].text, 'string');
      assert.equal(c.choices[0].finish_reason, i === content.length - 1 ? 'stop' : null);
    }
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage.prompt_tokens > 0 && last.usage.completion_tokens > 0);
    assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
  });

  it('errors use {"error":{"message","type","param":null,"code":null}}', async () => {
    assertOpenAIError(await post(sim.url, '/v1/chat/completions', { model: 'nope:1b', messages: [{ role: 'user', content: 'x' }] }),
      404, "model 'nope:1b' not found", 'not_found_error');
    assertOpenAIError(await post(sim.url, '/v1/chat/completions', { model: M, messages: [] }),
      400, "[] is too short - 'messages'", 'invalid_request_error');
    assertOpenAIError(await get(sim.url, '/v1/models/nope:1b'), 404, "model 'nope:1b' not found", 'not_found_error');
    assertOpenAIError(await post(sim.url, '/v1/embeddings', { model: EMBED, input: [] }), 400, 'invalid input', 'invalid_request_error');
    assertOpenAIError(await post(sim.url, '/v1/embeddings', { model: EMBED, input: 'x', encoding_format: 'hex' }), 400,
      "Invalid value for 'encoding_format' = hex. Supported values: ['float', 'base64'].", 'invalid_request_error');
  });

  it('options.num_ctx, num_ctx and keep_alive are ignored on /v1 (no reload, keep-alive kept)', async () => {
    await gen(sim.url, { model: M, keep_alive: -1 });
    const s0 = (await simState(sim.url)).stats;
    const r = await post(sim.url, '/v1/chat/completions', {
      model: M, messages: [{ role: 'user', content: 'hi' }], options: { num_ctx: 8192 }, num_ctx: 8192, keep_alive: 0,
    });
    assert.equal(r.status, 200, r.body);
    const e = await psEntry(sim.url, M);
    assert.ok(e, '/v1 keep_alive 0 ignored: still loaded');
    assert.equal(e.context_length, 4096);
    assert.ok(yearOf(e.expires_at) >= 2310, `keep-alive still forever: ${e.expires_at}`);
    assert.equal((await simState(sim.url)).stats.reloads, s0.reloads);
  });

  it('a /v1 request after a native explicit num_ctx reloads at the default context', async () => {
    await gen(sim.url, { model: M, options: { num_ctx: 2048 } });
    assert.equal((await psEntry(sim.url, M)).context_length, 2048);
    const r0 = (await simState(sim.url)).stats.reloads;
    const r = await post(sim.url, '/v1/completions', { model: M, prompt: 'hi' });
    assert.equal(r.status, 200, r.body);
    assert.equal((await psEntry(sim.url, M)).context_length, 4096);
    assert.equal((await simState(sim.url)).stats.reloads, r0 + 1);
  });

  it('temperature and top_p default to 1.0 on /v1, 0.8/0.9 natively (GET /_sim/requests)', async () => {
    const seen = async () => parseJson(await get(sim.url, '/_sim/requests')).requests.at(-1);
    assert.equal((await post(sim.url, '/v1/chat/completions', {
      model: M, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2,
    })).status, 200);
    let s = await seen();
    assert.equal(s.endpoint, '/v1/chat/completions');
    assert.equal(s.temperature, 1);
    assert.equal(s.top_p, 1);
    assert.equal(s.keep_alive_ns, null);
    assert.equal((await post(sim.url, '/v1/completions', { model: M, prompt: 'hi', temperature: 0.3, max_tokens: 2 })).status, 200);
    s = await seen();
    assert.equal(s.endpoint, '/v1/completions');
    assert.equal(s.temperature, 0.3);
    assert.equal(s.top_p, 1);
    assert.equal((await post(sim.url, '/api/generate', { model: M, prompt: 'hi', stream: false, options: { num_predict: 2 } })).status, 200);
    s = await seen();
    assert.equal(s.temperature, 0.8);
    assert.equal(s.top_p, 0.9);
    assert.equal(s.num_predict, 2);
  });

  it('/_sim/requests keeps the last 64 requests, oldest dropped; DELETE clears', async () => {
    await request(sim.url, { method: 'DELETE', path: '/_sim/requests' });
    for (let i = 0; i < 70; i++)
      assert.equal((await post(sim.url, '/api/generate', { model: M, prompt: `p${i}`, stream: false, options: { num_predict: 1, seed: i } })).status, 200);
    const r = parseJson(await get(sim.url, '/_sim/requests'));
    assert.equal(r.requests.length, 64);
    assert.equal(r.requests.at(-1).seq - r.requests[0].seq, 63);
    assert.ok(r.total >= 70);
    const cleared = parseJson(await request(sim.url, { method: 'DELETE', path: '/_sim/requests' }));
    assert.deepEqual(cleared.requests, []);
  });

  it('/v1/models with no models gives "data": null', async () => {
    const empty = await startSim({ args: ['--time-scale', '0', '--no-default-models'] });
    try {
      const r = await get(empty.url, '/v1/models');
      assert.equal(r.status, 200);
      assert.deepEqual(parseJson(r), { object: 'list', data: null });
      assert.deepEqual(parseJson(await get(empty.url, '/api/tags')), { models: [] });
      assert.deepEqual(parseJson(await get(empty.url, '/api/ps')), { models: [] });
    } finally {
      await empty.stop();
    }
  });
});

// ---------------------------------------------------------------------------
describe('§7.12 Host check and CORS', () => {
  let sim;
  before(async () => { sim = await startSim({ args: ['--time-scale', '0'] }); });
  after(async () => { await sim?.stop(); });

  for (const host of ['evil.example.com', 'evil.example.com:11434', '8.8.8.8', 'ollama.com:80']) {
    it(`Host: ${host} → 403 with an empty body (bound to 127.0.0.1)`, async () => {
      for (const [method, p, json] of [['GET', '/', undefined], ['GET', '/api/tags', undefined],
        ['POST', '/api/generate', { model: M, prompt: 'x' }], ['POST', '/v1/chat/completions', { model: M, messages: [] }]]) {
        const r = await request(sim.url, { method, path: p, json, headers: { host } });
        assert.equal(r.status, 403, `${method} ${p}`);
        assert.equal(r.body, '', `${method} ${p} body`);
      }
    });
  }

  it('allowed Host values', async () => {
    const hosts = ['localhost', `localhost:${sim.port}`, `127.0.0.1:${sim.port}`, 'foo.localhost', 'printer.local',
      'svc.internal:8080', '10.1.2.3', '192.168.1.5:80', '172.16.0.1', `[::1]:${sim.port}`, '0.0.0.0', os.hostname()];
    for (const host of hosts) {
      const r = await request(sim.url, { method: 'GET', path: '/', headers: { host } });
      assert.equal(r.status, 200, `Host: ${JSON.stringify(host)} → ${r.status}`);
    }
    // An empty Host header (node:http will not send one, so raw bytes).
    const e = await rawExchange(sim.port, 'GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n');
    assert.equal(e.status, 200, `empty Host: ${JSON.stringify(e.text.slice(0, 200))}`);
  });

  it('OPTIONS with an allowed host and no Origin → 204', async () => {
    const r = await request(sim.url, { method: 'OPTIONS', path: '/api/tags', headers: { host: 'localhost' } });
    assert.equal(r.status, 204);
    assert.equal(r.body, '');
  });

  it('bound to 0.0.0.0 the Host check is off', async () => {
    const any = await startSim({ args: ['--time-scale', '0', '--host', '0.0.0.0'] });
    try {
      const r = await request(any.url, { method: 'GET', path: '/', headers: { host: 'evil.example.com' } });
      assert.equal(r.status, 200);
      assert.equal(r.body, 'Ollama is running');
    } finally {
      await any.stop();
    }
  });

  const ALLOW_HEADERS = ['Authorization', 'Content-Type', 'User-Agent', 'Accept', 'X-Requested-With', 'OpenAI-Beta',
    'x-stainless-arch', 'x-stainless-async', 'x-stainless-custom-poll-interval', 'x-stainless-helper-method',
    'x-stainless-lang', 'x-stainless-os', 'x-stainless-package-version', 'x-stainless-poll-helper',
    'x-stainless-retry-count', 'x-stainless-runtime', 'x-stainless-runtime-version', 'x-stainless-timeout'];

  function preflight(url, origin, p = '/api/chat') {
    return request(url, {
      method: 'OPTIONS', path: p,
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization,x-stainless-os' },
    });
  }
  function assertPreflightOk(r, allowOrigin) {
    assert.equal(r.status, 204, `preflight status (body ${r.body})`);
    assert.equal(r.headers['access-control-allow-methods'], 'GET,POST,PUT,PATCH,DELETE,HEAD');
    const allowed = String(r.headers['access-control-allow-headers'] ?? '').split(',').map((h) => h.trim().toLowerCase());
    for (const h of ALLOW_HEADERS) assert.ok(allowed.includes(h.toLowerCase()), `Access-Control-Allow-Headers lacks ${h}: ${allowed}`);
    assert.equal(r.headers['access-control-max-age'], '43200');
    assert.equal(r.headers['access-control-allow-origin'], allowOrigin);
    assert.ok(!('access-control-allow-credentials' in r.headers), 'credentials are not allowed');
  }

  it('preflight from the default allowed origins → 204 with the §5.3 headers', async () => {
    for (const origin of ['http://localhost:3000', 'https://localhost', 'http://127.0.0.1:8080', 'https://127.0.0.1:8443',
      'http://0.0.0.0:1', 'app://obsidian.md', 'file://', 'tauri://localhost', 'vscode-webview://abc123', 'vscode-file://vscode-app']) {
      assertPreflightOk(await preflight(sim.url, origin), origin);
    }
  });

  it('a disallowed Origin → 403 with an empty body (preflight and plain requests)', async () => {
    for (const origin of ['http://evil.example', 'https://localhost.evil.example', 'chrome-extension://abc']) {
      const p = await preflight(sim.url, origin);
      assert.equal(p.status, 403, `preflight from ${origin}`);
      assert.equal(p.body, '');
      const g = await request(sim.url, { method: 'GET', path: '/api/tags', headers: { origin } });
      assert.equal(g.status, 403, `GET from ${origin}`);
      assert.equal(g.body, '');
    }
  });

  it('a plain request from an allowed Origin gets Access-Control-Allow-Origin echoed', async () => {
    const r = await request(sim.url, { method: 'GET', path: '/api/tags', headers: { origin: 'http://localhost:5173' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['access-control-allow-origin'], 'http://localhost:5173');
    assert.ok(!('access-control-allow-credentials' in r.headers));
  });

  it('--origins / OLLAMA_ORIGINS add origins (wildcards too); "*" allows all', async () => {
    const a = await startSim({ args: ['--time-scale', '0', '--origins', 'https://app.example.com,chrome-extension://*'] });
    const b = await startSim({ args: ['--time-scale', '0', '--origins', '*'] });
    const c = await startSim({ args: ['--time-scale', '0'], env: { OLLAMA_ORIGINS: 'https://env.example.org' } });
    try {
      assertPreflightOk(await preflight(a.url, 'https://app.example.com'), 'https://app.example.com');
      assertPreflightOk(await preflight(a.url, 'chrome-extension://abcdef'), 'chrome-extension://abcdef');
      assertPreflightOk(await preflight(a.url, 'http://localhost:3000'), 'http://localhost:3000');
      assert.equal((await preflight(a.url, 'http://evil.example')).status, 403);
      assertPreflightOk(await preflight(b.url, 'http://evil.example'), '*');
      assertPreflightOk(await preflight(c.url, 'https://env.example.org'), 'https://env.example.org');
      assert.equal((await preflight(c.url, 'http://evil.example')).status, 403);
    } finally {
      await a.stop();
      await b.stop();
      await c.stop();
    }
  });
});

// Keep METRICS referenced for readers grepping the list of metric names.
void METRICS;
