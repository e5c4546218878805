// herd-sim through the official `ollama` npm client: the native API.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Ollama } from 'ollama';
import {
  startSim, post, get, parseJson, request, waitFor, assertMetricsShape, RFC3339_NANO, l2norm,
} from './lib/harness.mjs';

const M = 'llama3.2:3b';
const THINK = 'qwen3:8b';
const EMBED = 'nomic-embed-text';
const DEFAULTS = ['llama3.2:3b', 'llama3.1:8b', 'qwen3:8b', 'qwen2.5-coder:7b', 'gemma3:4b', 'nomic-embed-text:latest', 'llama3.3:70b'];
const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const WEATHER = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['C', 'F'] } }, required: ['city'] },
  },
}];

async function collect(it_) {
  const parts = [];
  for await (const p of it_) parts.push(p);
  return parts;
}

describe('native API via the ollama client', () => {
  let sim;
  let ol;
  before(async () => {
    sim = await startSim({ args: ['--time-scale', '0'] });
    ol = new Ollama({ host: sim.url });
  });
  after(async () => { await sim?.stop(); });

  it('version', async () => {
    const v = await ol.version();
    assert.match(v.version, /^\d+\.\d+\.\d+/);
  });

  it('list: the default models with Ollama\'s entry fields, newest first', async () => {
    const { models } = await ol.list();
    assert.deepEqual(models.map((m) => m.name).sort(), [...DEFAULTS].sort());
    for (const m of models) {
      assert.equal(m.model, m.name);
      assert.match(m.modified_at, LOCAL_TIME);
      assert.ok(Number.isInteger(m.size) && m.size > 0);
      assert.match(m.digest, /^[0-9a-f]{64}$/);
      const d = m.details;
      assert.equal(d.parent_model, '');
      assert.equal(d.format, 'gguf');
      assert.equal(typeof d.family, 'string');
      assert.ok(d.families === null || Array.isArray(d.families));
      assert.match(d.parameter_size, /^\d+(\.\d+)?[MB]$/);
      assert.match(d.quantization_level, /^[A-Z0-9_]+$/);
    }
    const times = models.map((m) => Date.parse(m.modified_at.replace(/(\.\d{3})\d+/, '$1')));
    for (let i = 1; i < times.length; i++) assert.ok(times[i - 1] >= times[i], 'sorted by modified_at, newest first');
    const l = models.find((m) => m.name === 'llama3.1:8b');
    assert.equal(l.details.parameter_size, '8.0B');
    assert.equal(l.details.quantization_level, 'Q4_K_M');
  });

  it('show: capabilities, model_info with the training context, details; does not load', async () => {
    const s = await ol.show({ model: THINK });
    for (const c of ['completion', 'tools', 'thinking']) assert.ok(s.capabilities.includes(c), `qwen3 has ${c}: ${s.capabilities}`);
    assert.equal(typeof s.model_info, 'object');
    const arch = s.model_info['general.architecture'];
    assert.equal(typeof arch, 'string');
    assert.ok(Number.isInteger(s.model_info[`${arch}.context_length`]) && s.model_info[`${arch}.context_length`] > 0);
    assert.equal(typeof s.details.family, 'string');
    assert.match(s.modified_at, LOCAL_TIME);
    const e = await ol.show({ model: EMBED });
    assert.ok(e.capabilities.includes('embedding'));
    assert.ok(!e.capabilities.includes('completion'));
    assert.ok((await ol.show({ model: 'gemma3:4b' })).capabilities.includes('vision'));
    assert.ok((await ol.show({ model: 'qwen2.5-coder:7b' })).capabilities.includes('insert'));
    assert.deepEqual((await ol.ps()).models, [], 'show does not load a model');
    // The deprecated "name" field works too.
    const r = await post(sim.url, '/api/show', { name: M });
    assert.equal(r.status, 200, r.body);
  });

  it('generate, not streaming', async () => {
    const r = await ol.generate({ model: M, prompt: 'Why is the sky blue?', options: { seed: 1 } });
    assert.equal(r.model, M);
    assert.match(String(r.created_at), RFC3339_NANO);
    assert.ok(r.response.length > 0);
    assert.equal(r.done, true);
    assert.equal(r.done_reason, 'stop');
    assert.ok(Array.isArray(r.context));
    assertMetricsShape(r);
  });

  it('generate, streaming: same text as not streaming', async () => {
    const whole = await ol.generate({ model: M, prompt: 'Tell me about llamas', options: { seed: 2 } });
    const parts = await collect(await ol.generate({ model: M, prompt: 'Tell me about llamas', options: { seed: 2 }, stream: true }));
    const last = parts.at(-1);
    assert.equal(last.done, true);
    assert.equal(last.done_reason, 'stop');
    for (const p of parts.slice(0, -1)) assert.equal(p.done, false);
    assert.equal(parts.map((p) => p.response).join(''), whole.response);
    assert.equal(last.eval_count, whole.eval_count);
    assertMetricsShape(last);
  });

  it('generate with a suffix on an insert model; format json and a JSON schema', async () => {
    const fim = await ol.generate({ model: 'qwen2.5-coder:7b', prompt: 'def add(a, b):', suffix: '    return c' });
    assert.equal(fim.done, true);
    const j = await ol.generate({ model: M, prompt: 'Give me JSON', format: 'json' });
    assert.doesNotThrow(() => JSON.parse(j.response), `format json: ${j.response}`);
    const schema = { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer' }, ok: { type: 'boolean' } }, required: ['name', 'age', 'ok'] };
    const s = await ol.generate({ model: M, prompt: 'A person', format: schema });
    const o = JSON.parse(s.response);
    assert.equal(typeof o.name, 'string');
    assert.ok(Number.isInteger(o.age));
    assert.equal(typeof o.ok, 'boolean');
  });

  it('chat, not streaming and streaming', async () => {
    const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }];
    const r = await ol.chat({ model: M, messages, options: { seed: 3 } });
    assert.equal(r.message.role, 'assistant');
    assert.ok(r.message.content.length > 0);
    assert.equal(r.done_reason, 'stop');
    assert.ok(!('context' in r));
    assertMetricsShape(r);
    const parts = await collect(await ol.chat({ model: M, messages, options: { seed: 3 }, stream: true }));
    assert.equal(parts.map((p) => p.message.content).join(''), r.message.content);
    assert.equal(parts.at(-1).done, true);
    assert.equal(parts.at(-1).message.content, '');
  });

  it('chat with thinking', async () => {
    const r = await ol.chat({ model: THINK, messages: [{ role: 'user', content: 'What is 2+2?' }], think: true });
    assert.ok(r.message.thinking.length > 0);
    assert.ok(r.message.content.length > 0);
    const low = await ol.chat({ model: THINK, messages: [{ role: 'user', content: 'What is 2+2?' }], think: 'low' });
    assert.ok(low.message.thinking.length > 0);
    const off = await ol.chat({ model: THINK, messages: [{ role: 'user', content: 'What is 2+2?' }], think: false });
    assert.ok(!off.message.thinking);
  });

  it('chat with tools → tool_calls with object arguments and call_ ids (streaming too)', async () => {
    const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const r = await ol.chat({ model: THINK, messages, tools: WEATHER, think: false });
    assert.equal(r.done, true);
    assert.ok(Array.isArray(r.message.tool_calls) && r.message.tool_calls.length >= 1, JSON.stringify(r.message));
    const tc = r.message.tool_calls[0];
    assert.equal(tc.function.name, 'get_weather');
    assert.equal(typeof tc.function.arguments, 'object');
    assert.equal(typeof tc.function.arguments.city, 'string');
    assert.match(tc.id, /^call_[a-z0-9]{8}$/);
    const parts = await collect(await ol.chat({ model: THINK, messages, tools: WEATHER, think: false, stream: true }));
    const calls = parts.flatMap((p) => p.message.tool_calls ?? []);
    assert.ok(calls.length >= 1);
    assert.equal(calls[0].function.name, 'get_weather');
    // The tool result goes back in a follow-up turn.
    const follow = await ol.chat({
      model: THINK, think: false, tools: WEATHER,
      messages: [...messages, r.message, { role: 'tool', tool_name: 'get_weather', content: '{"temp": 21}' }],
    });
    assert.equal(follow.done, true);
  });

  it('chat with an image on a vision model', async () => {
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
    const r = await ol.chat({ model: 'gemma3:4b', messages: [{ role: 'user', content: 'What is this?', images: [png] }] });
    assert.equal(r.done, true);
  });

  it('embed: normalised vectors, order kept, dimensions', async () => {
    const one = await ol.embed({ model: EMBED, input: 'hello world' });
    assert.equal(one.model, EMBED);
    assert.equal(one.embeddings.length, 1);
    const v = one.embeddings[0];
    assert.ok(v.length > 0);
    assert.ok(Math.abs(l2norm(v) - 1) < 1e-6, `L2-normalised: ${l2norm(v)}`);
    assert.ok(Number.isInteger(one.total_duration) && Number.isInteger(one.load_duration) && one.prompt_eval_count > 0);
    const many = await ol.embed({ model: EMBED, input: ['hello world', 'goodbye moon'] });
    assert.equal(many.embeddings.length, 2);
    assert.deepEqual(many.embeddings[0], v, 'same text, same vector, order kept');
    assert.notDeepEqual(many.embeddings[1], v);
    const d = await ol.embed({ model: EMBED, input: 'hello world', dimensions: 64 });
    assert.equal(d.embeddings[0].length, 64);
    assert.ok(Math.abs(l2norm(d.embeddings[0]) - 1) < 1e-6, 're-normalised after truncation');
    const s = await ol.show({ model: EMBED });
    const arch = s.model_info['general.architecture'];
    if (s.model_info[`${arch}.embedding_length`]) assert.equal(v.length, s.model_info[`${arch}.embedding_length`]);
  });

  it('embeddings (legacy): {"embedding":[…]} not normalised, via the client and raw HTTP', async () => {
    const r = await post(sim.url, '/api/embeddings', { model: EMBED, prompt: 'hello world' });
    assert.equal(r.status, 200, r.body);
    const o = parseJson(r);
    assert.deepEqual(Object.keys(o), ['embedding']);
    assert.ok(o.embedding.length > 0 && o.embedding.every((x) => typeof x === 'number'));
    assert.ok(Math.abs(l2norm(o.embedding) - 1) > 1e-3, `legacy embeddings are not normalised (norm ${l2norm(o.embedding)})`);
    const c = await ol.embeddings({ model: EMBED, prompt: 'hello world' });
    assert.deepEqual(c.embedding, o.embedding);
  });

  it('ps after loading: entry fields', async () => {
    const { models } = await ol.ps();
    assert.ok(models.length >= 1);
    for (const m of models) {
      assert.equal(m.name, m.model);
      assert.ok(m.size > 0 && m.size_vram >= 0 && m.size_vram <= m.size);
      assert.match(m.digest, /^[0-9a-f]{64}$/);
      assert.match(String(m.expires_at), LOCAL_TIME);
      assert.ok(Number.isInteger(m.context_length) && m.context_length > 0);
    }
  });

  it('load and unload probes', async () => {
    const g = await ol.generate({ model: 'llama3.1:8b', prompt: '' });
    assert.equal(g.done_reason, 'load');
    assert.ok((await ol.ps()).models.some((m) => m.name === 'llama3.1:8b'));
    const u = await ol.generate({ model: 'llama3.1:8b', prompt: '', keep_alive: 0 });
    assert.equal(u.done_reason, 'unload');
    await waitFor(async () => !(await ol.ps()).models.some((m) => m.name === 'llama3.1:8b'), { what: 'unload' });
    const c = await ol.chat({ model: 'llama3.1:8b', messages: [] });
    assert.equal(c.done_reason, 'load');
    const cu = await ol.chat({ model: 'llama3.1:8b', messages: [], keep_alive: 0 });
    assert.equal(cu.done_reason, 'unload');
  });

  it('pull: progress events in Ollama\'s order, then the model is listed', async () => {
    const parts = await collect(await ol.pull({ model: 'phi3:mini', stream: true }));
    assert.deepEqual(parts[0], { status: 'pulling manifest' });
    assert.deepEqual(parts.at(-1), { status: 'success' });
    const statuses = parts.map((p) => p.status);
    const iVerify = statuses.indexOf('verifying sha256 digest');
    const iWrite = statuses.indexOf('writing manifest');
    assert.ok(iVerify > 0 && iWrite > iVerify, `order: ${statuses}`);
    const layers = parts.filter((p) => p.status.startsWith('pulling ') && p.status !== 'pulling manifest');
    assert.ok(layers.length >= 1);
    const byDigest = new Map();
    for (const p of layers) {
      assert.match(p.digest, /^sha256:[0-9a-f]{64}$/);
      assert.equal(p.status, `pulling ${p.digest.slice(7, 19)}`);
      assert.ok(Number.isInteger(p.total) && p.total > 0);
      if ('completed' in p) assert.ok(p.completed > 0 && p.completed <= p.total);
      byDigest.set(p.digest, p);
    }
    for (const p of byDigest.values()) assert.equal(p.completed, p.total, 'each layer ends complete');
    assert.ok(statuses.indexOf(layers.at(-1).status) < iVerify);
    const { models } = await ol.list();
    assert.ok(models.some((m) => m.name === 'phi3:mini'));
    // Not streaming.
    const one = await ol.pull({ model: 'phi3:mini' });
    assert.deepEqual(one, { status: 'success' });
  });

  it('pull of an unknown model fails in-band with Ollama\'s text', async () => {
    await assert.rejects(async () => collect(await ol.pull({ model: 'missing-thing', stream: true })),
      { message: 'pull model manifest: file does not exist' });
    await assert.rejects(ol.pull({ model: 'missing-thing' }),
      (e) => e.name === 'ResponseError' && e.status_code === 500 && e.error === 'pull model manifest: file does not exist');
  });

  it('copy: 200 with an empty body; then listed; unknown source → 404', async () => {
    const r = await post(sim.url, '/api/copy', { source: M, destination: 'my-llama:copy' });
    assert.equal(r.status, 200);
    assert.equal(r.body, '');
    assert.deepEqual(await ol.copy({ source: M, destination: 'other/llama:v2' }), { status: 'success' });
    const names = (await ol.list()).models.map((m) => m.name);
    assert.ok(names.includes('my-llama:copy'));
    assert.ok(names.includes('other/llama:v2'));
    await assert.rejects(ol.copy({ source: 'nope:1', destination: 'x:1' }),
      (e) => e.status_code === 404 && e.error === 'model "nope:1" not found');
    // Copies answer like the original.
    const g = await ol.generate({ model: 'my-llama:copy', prompt: 'hi' });
    assert.equal(g.model, 'my-llama:copy');
  });

  it('delete: 200 with an empty body; then gone; again → 404; a loaded copy stays loaded', async () => {
    await ol.generate({ model: 'my-llama:copy', prompt: '', keep_alive: '10m' });
    const r = await request(sim.url, { method: 'DELETE', path: '/api/delete', json: { model: 'my-llama:copy' } });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, '');
    assert.ok(!(await ol.list()).models.some((m) => m.name === 'my-llama:copy'));
    assert.ok((await ol.ps()).models.some((m) => m.name === 'my-llama:copy'), 'deleting does not unload a running copy');
    await assert.rejects(ol.delete({ model: 'my-llama:copy' }),
      (e) => e.status_code === 404 && e.error === "model 'my-llama:copy' not found");
    assert.deepEqual(await ol.delete({ model: 'other/llama:v2' }), { status: 'success' });
    await assert.rejects(ol.generate({ model: 'other/llama:v2', prompt: 'x' }), (e) => e.status_code === 404);
  });

  it('create (minimal): from an existing model, streaming and not', async () => {
    const parts = await collect(await ol.create({ model: 'mini', from: M, stream: true }));
    assert.deepEqual(parts.at(-1), { status: 'success' });
    assert.ok(parts.some((p) => p.status === 'writing manifest'), parts.map((p) => p.status).join(', '));
    assert.ok((await ol.list()).models.some((m) => m.name === 'mini:latest'));
    assert.equal((await ol.generate({ model: 'mini', prompt: 'hi' })).done, true);
    assert.deepEqual(await ol.create({ model: 'mini2', from: 'mini' }), { status: 'success' });
    await assert.rejects(ol.create({ model: 'x', from: 'nope:1' }), (e) => e.status_code >= 400);
  });

  it('create with system and parameters: shown by show, and num_ctx used when loading', async () => {
    const parts = await collect(await ol.create({
      model: 'terse', from: M, system: 'You are terse.', parameters: { num_ctx: 2048, temperature: 0.1 }, stream: true,
    }));
    assert.deepEqual(parts.at(-1), { status: 'success' });
    const s = await ol.show({ model: 'terse' });
    assert.equal(s.system, 'You are terse.');
    assert.match(s.parameters, /^num_ctx\s+2048$/m);
    assert.match(s.parameters, /^temperature\s+0\.1$/m);
    // Its Modelfile num_ctx is what a request without options loads with
    // (the official way to set num_ctx for /v1 clients).
    const g = await ol.generate({ model: 'terse', prompt: 'hi' });
    assert.equal(g.done, true);
    const e = (await ol.ps()).models.find((m) => m.name === 'terse:latest');
    assert.equal(e.context_length, 2048);
  });

  it('errors via the client: ResponseError with status_code and Ollama\'s message', async () => {
    await assert.rejects(ol.generate({ model: 'nope:1', prompt: 'x' }),
      (e) => e.name === 'ResponseError' && e.status_code === 404 && e.error === "model 'nope:1' not found");
    await assert.rejects(ol.chat({ model: 'nope:1', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e.status_code === 404 && e.error === "model 'nope:1' not found");
    await assert.rejects(ol.embed({ model: 'nope:1', input: 'x' }),
      (e) => e.status_code === 404 && e.error === 'model "nope:1" not found, try pulling it first');
    await assert.rejects(ol.show({ model: 'nope:1' }),
      (e) => e.status_code === 404 && e.error === "model 'nope:1' not found");
    await assert.rejects(ol.generate({ model: M, prompt: 'x', stream: true }).then(collect).then(() => ol.generate({ model: M, prompt: 'x', keep_alive: '10' })),
      (e) => e.status_code === 400 && e.error === 'time: missing unit in duration "10"');
  });

  it('model names: case-insensitive match, tag defaults to latest', async () => {
    const r = await ol.generate({ model: 'LLAMA3.2:3B', prompt: 'hi' });
    assert.equal(r.done, true);
    const e = await ol.embed({ model: 'nomic-embed-text:latest', input: 'x' });
    assert.equal(e.embeddings.length, 1);
    await assert.rejects(ol.generate({ model: 'llama3.2', prompt: 'x' }), (err) => err.status_code === 404 && err.error === "model 'llama3.2' not found");
    const tags = await get(sim.url, '/api/tags');
    assert.equal(tags.status, 200);
  });
});
