// herd-sim through the official `openai` npm client: the /v1 API.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startSim, post, get, parseJson, assertOpenAIError, decodeFloat32Base64, l2norm } from './lib/harness.mjs';

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

describe('/v1 via the openai client', () => {
  let sim;
  let oa;
  before(async () => {
    sim = await startSim({ args: ['--time-scale', '0'] });
    oa = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'ollama', maxRetries: 0, timeout: 20000 });
  });
  after(async () => { await sim?.stop(); });

  it('chat streaming with include_usage: role first, stable id/created, finish delta {}, usage chunk with choices []', async () => {
    const stream = await oa.chat.completions.create({
      model: M, messages: [{ role: 'user', content: 'Say something' }], stream: true, stream_options: { include_usage: true }, seed: 4,
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.ok(chunks.length >= 3);
    const { id, created } = chunks[0];
    assert.match(id, /^chatcmpl-\d+$/);
    for (const c of chunks) {
      assert.equal(c.id, id, 'stable id');
      assert.equal(c.created, created, 'stable created');
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.system_fingerprint, 'fp_ollama');
      assert.equal(c.model, M);
    }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const usage = chunks.at(-1);
    const finish = chunks.at(-2);
    assert.deepEqual(usage.choices, []);
    assert.ok(usage.usage.prompt_tokens > 0 && usage.usage.completion_tokens > 0);
    assert.equal(usage.usage.total_tokens, usage.usage.prompt_tokens + usage.usage.completion_tokens);
    assert.deepEqual(finish.choices[0].delta, {});
    assert.equal(finish.choices[0].finish_reason, 'stop');
    const content = chunks.slice(0, -2);
    for (const c of content) {
      assert.equal(c.choices[0].finish_reason, null);
      assert.ok(!('usage' in c) || c.usage === undefined, 'no usage key on content chunks');
    }
    // Same text as non-streaming with the same seed.
    const whole = await oa.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'Say something' }], seed: 4 });
    assert.equal(content.map((c) => c.choices[0].delta.content ?? '').join(''), whole.choices[0].message.content);
    assert.equal(usage.usage.completion_tokens, whole.usage.completion_tokens);
  });

  it('chat non-streaming with usage', async () => {
    const r = await oa.chat.completions.create({ model: M, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }] });
    assert.match(r.id, /^chatcmpl-\d+$/);
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.system_fingerprint, 'fp_ollama');
    assert.equal(r.model, M);
    assert.ok(Number.isInteger(r.created));
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].index, 0);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.ok(r.choices[0].message.content.length > 0);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  });

  it('max_tokens → finish_reason "length"; max_completion_tokens too', async () => {
    const r = await oa.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'Count' }], max_tokens: 3 });
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 3);
    const r2 = await oa.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'Count' }], max_completion_tokens: 2 });
    assert.equal(r2.choices[0].finish_reason, 'length');
    assert.equal(r2.usage.completion_tokens, 2);
  });

  it('seed makes output repeatable; stop cuts it', async () => {
    const q = { model: M, messages: [{ role: 'user', content: 'Tell a story' }], seed: 11, max_tokens: 60 };
    const a = (await oa.chat.completions.create(q)).choices[0].message.content;
    const b = (await oa.chat.completions.create(q)).choices[0].message.content;
    assert.equal(a, b);
    const ws = a.split(' ').filter((w) => /^[a-z]+$/i.test(w));
    assert.ok(ws.length >= 4, a);
    const stop = ` ${ws[Math.floor(ws.length / 2)]}`;
    const c = await oa.chat.completions.create({ ...q, stop: [stop] });
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.equal(c.choices[0].message.content, a.slice(0, a.indexOf(stop)));
  });

  it('tools → tool_calls with JSON-string arguments and finish_reason "tool_calls"', async () => {
    const r = await oa.chat.completions.create({
      model: TOOLS_MODEL, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: WEATHER, reasoning_effort: 'none',
    });
    const ch = r.choices[0];
    assert.equal(ch.finish_reason, 'tool_calls');
    assert.ok(ch.message.tool_calls.length >= 1);
    const tc = ch.message.tool_calls[0];
    assert.equal(tc.type, 'function');
    assert.match(tc.id, /^call_[a-z0-9]{8}$/);
    assert.equal(tc.function.name, 'get_weather');
    assert.equal(typeof tc.function.arguments, 'string');
    assert.equal(typeof JSON.parse(tc.function.arguments).city, 'string');
    // Streaming: complete tool calls in a delta, then finish_reason tool_calls.
    const stream = await oa.chat.completions.create({
      model: TOOLS_MODEL, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: WEATHER, stream: true, reasoning_effort: 'none',
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const calls = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
    assert.ok(calls.length >= 1);
    assert.equal(calls[0].function.name, 'get_weather');
    assert.doesNotThrow(() => JSON.parse(calls[0].function.arguments));
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(chunks.at(-1).choices[0].delta, {});
    // The tool result goes back.
    const follow = await oa.chat.completions.create({
      model: TOOLS_MODEL, reasoning_effort: 'none', tools: WEATHER,
      messages: [{ role: 'user', content: 'Weather in Paris?' }, ch.message, { role: 'tool', tool_call_id: tc.id, content: '{"temp":21}' }],
    });
    assert.ok(['stop', 'tool_calls', 'length'].includes(follow.choices[0].finish_reason));
  });

  it('thinking models put reasoning in "reasoning"; reasoning_effort "none" turns it off', async () => {
    const r = await oa.chat.completions.create({ model: TOOLS_MODEL, messages: [{ role: 'user', content: 'Why?' }] });
    assert.ok(typeof r.choices[0].message.reasoning === 'string' && r.choices[0].message.reasoning.length > 0, JSON.stringify(r.choices[0].message));
    const off = await oa.chat.completions.create({ model: TOOLS_MODEL, messages: [{ role: 'user', content: 'Why?' }], reasoning_effort: 'none' });
    assert.ok(!off.choices[0].message.reasoning);
    const stream = await oa.chat.completions.create({ model: TOOLS_MODEL, messages: [{ role: 'user', content: 'Why?' }], stream: true });
    let reasoning = '';
    for await (const c of stream) reasoning += c.choices[0]?.delta?.reasoning ?? '';
    assert.ok(reasoning.length > 0);
  });

  it('response_format json_object gives parseable JSON; json_schema follows the schema', async () => {
    const r = await oa.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'JSON please' }], response_format: { type: 'json_object' } });
    assert.doesNotThrow(() => JSON.parse(r.choices[0].message.content), r.choices[0].message.content);
    const s = await oa.chat.completions.create({
      model: M, messages: [{ role: 'user', content: 'A city' }],
      response_format: { type: 'json_schema', json_schema: { name: 'city', schema: { type: 'object', properties: { name: { type: 'string' }, population: { type: 'integer' } }, required: ['name', 'population'] } } },
    });
    const o = JSON.parse(s.choices[0].message.content);
    assert.equal(typeof o.name, 'string');
    assert.ok(Number.isInteger(o.population));
  });

  it('completions, not streaming and streaming', async () => {
    const r = await oa.completions.create({ model: M, prompt: 'Once upon a time', seed: 8 });
    assert.match(r.id, /^cmpl-\d+$/);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.system_fingerprint, 'fp_ollama');
    assert.equal(r.choices[0].index, 0);
    assert.ok(r.choices[0].text.length > 0);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    const stream = await oa.completions.create({ model: M, prompt: 'Once upon a time', seed: 8, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, r.usage);
    const text = chunks.slice(0, -1).map((c) => c.choices[0].text).join('');
    assert.equal(text, r.choices[0].text);
    assert.equal(chunks.at(-2).choices[0].finish_reason, 'stop');
    for (const c of chunks) assert.equal(c.id, chunks[0].id);
    const len = await oa.completions.create({ model: M, prompt: 'Count', max_tokens: 2 });
    assert.equal(len.choices[0].finish_reason, 'length');
  });

  it('models list and retrieve; unknown model → 404 NotFoundError', async () => {
    const list = await oa.models.list();
    const ids = list.data.map((m) => m.id);
    for (const id of ['llama3.2:3b', 'qwen3:8b', 'nomic-embed-text:latest']) assert.ok(ids.includes(id), `${id} in ${ids}`);
    for (const m of list.data) {
      assert.equal(m.object, 'model');
      assert.ok(Number.isInteger(m.created) && m.created > 1.5e9);
      assert.equal(m.owned_by, 'library');
    }
    const raw = parseJson(await get(sim.url, '/v1/models'));
    assert.equal(raw.object, 'list');
    const one = await oa.models.retrieve('llama3.2:3b');
    assert.deepEqual(Object.keys(one).sort(), ['created', 'id', 'object', 'owned_by']);
    assert.equal(one.id, 'llama3.2:3b');
    assert.equal(one.object, 'model');
    assert.equal(one.owned_by, 'library');
    await assert.rejects(oa.models.retrieve('nope:1b'), (e) => e instanceof OpenAI.NotFoundError && e.status === 404 &&
      e.type === 'not_found_error' && e.error.message === "model 'nope:1b' not found" && e.param === null && e.code === null);
    assertOpenAIError(await get(sim.url, '/v1/models/nope:1b'), 404, "model 'nope:1b' not found", 'not_found_error');
  });

  it('embeddings: float, base64 (little-endian float32), and the client default', async () => {
    const input = ['hello world', 'goodbye moon'];
    const f = await oa.embeddings.create({ model: EMBED, input, encoding_format: 'float' });
    assert.equal(f.object, 'list');
    assert.equal(f.model, EMBED);
    assert.equal(f.data.length, 2);
    f.data.forEach((d, i) => {
      assert.equal(d.object, 'embedding');
      assert.equal(d.index, i);
      assert.ok(Array.isArray(d.embedding) && d.embedding.length > 0);
    });
    assert.ok(f.usage.prompt_tokens > 0);
    assert.equal(f.usage.total_tokens, f.usage.prompt_tokens);
    const b = await oa.embeddings.create({ model: EMBED, input, encoding_format: 'base64' });
    assert.equal(typeof b.data[0].embedding, 'string');
    const dec = decodeFloat32Base64(b.data[0].embedding);
    assert.equal(dec.length, f.data[0].embedding.length);
    dec.forEach((x, i) => assert.ok(Math.abs(x - f.data[0].embedding[i]) < 1e-6, `component ${i}: ${x} vs ${f.data[0].embedding[i]}`));
    const d = await oa.embeddings.create({ model: EMBED, input: 'hello world' });
    assert.equal(d.data[0].embedding.length, f.data[0].embedding.length);
    assert.ok(Math.abs(l2norm(Array.from(d.data[0].embedding)) - 1) < 1e-4);
    const dims = await oa.embeddings.create({ model: EMBED, input: 'hello world', dimensions: 32, encoding_format: 'float' });
    assert.equal(dims.data[0].embedding.length, 32);
    const empty = await oa.embeddings.create({ model: EMBED, input: '', encoding_format: 'float' });
    assert.equal(empty.data.length, 1, '"" is treated as [""]');
  });

  it('errors come back as {"error":{"message","type","param":null,"code":null}}', async () => {
    await assert.rejects(oa.chat.completions.create({ model: 'nope:1b', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.type === 'not_found_error' &&
        e.error.message === "model 'nope:1b' not found");
    await assert.rejects(oa.chat.completions.create({ model: M, messages: [] }),
      (e) => e instanceof OpenAI.BadRequestError && e.type === 'invalid_request_error' && e.error.message === "[] is too short - 'messages'");
    await assert.rejects(oa.chat.completions.create({ model: EMBED, messages: [{ role: 'user', content: 'x' }] }),
      (e) => e.status === 400 && e.type === 'invalid_request_error' && e.error.message === `"${EMBED}" does not support chat`);
    await assert.rejects(oa.embeddings.create({ model: EMBED, input: [] }),
      (e) => e.status === 400 && e.error.message === 'invalid input');
    await assert.rejects(oa.embeddings.create({ model: 'nope:1b', input: 'x' }),
      (e) => e.status === 404 && e.type === 'not_found_error');
    assertOpenAIError(await post(sim.url, '/v1/chat/completions', { model: 'nope:1b', messages: [{ role: 'user', content: 'x' }] }),
      404, "model 'nope:1b' not found", 'not_found_error');
    assertOpenAIError(await post(sim.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }] }),
      400, 'image URLs are not currently supported, please use base64 encoded data instead', 'invalid_request_error');
    assertOpenAIError(await post(sim.url, '/v1/chat/completions', { model: M, messages: [{ role: 'user', content: 'x' }], reasoning_effort: 'x' }),
      400, 'invalid reasoning value: "x" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")', 'invalid_request_error');
  });

  it('the Authorization header is accepted and ignored', async () => {
    const other = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'anything-at-all', maxRetries: 0 });
    const r = await other.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'x' }] });
    assert.equal(r.choices[0].message.role, 'assistant');
  });
});
