// Malformed and hostile input: herd-sim answers like Ollama (Go's decode
// errors, "missing request body", exact wordings), never crashes, and
// keeps answering afterwards.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startSim, request, post, get, parseJson, assertNativeError, assertOpenAIError, rawExchange,
} from './lib/harness.mjs';

const M = 'llama3.2:3b';

describe('bad input', () => {
  let sim;
  before(async () => { sim = await startSim({ args: ['--time-scale', '0', '--max-body', '64KiB'] }); });
  after(async () => {
    // Still alive and well after everything below.
    const r = await get(sim.url, '/api/version');
    assert.equal(r.status, 200);
    await sim?.stop();
  });

  const raw = (p, body, method = 'POST') => request(sim.url, { method, path: p, body, headers: { 'content-type': 'application/json' } });

  it('malformed JSON → 400 with Go\'s decoder text', async () => {
    for (const p of ['/api/generate', '/api/chat', '/api/embed', '/api/embeddings', '/api/show', '/api/pull', '/api/copy', '/api/create']) {
      assertNativeError(await raw(p, 'x'), 400, "invalid character 'x' looking for beginning of value", p);
    }
    assertNativeError(await raw('/api/generate', '{"model":"a",}'), 400, "invalid character '}' looking for beginning of object key string");
    assertNativeError(await raw('/api/generate', '{"model":'), 400, 'unexpected EOF');
    assertNativeError(await raw('/api/chat', '{"model" "a"}'), 400, "invalid character '\"' after object key");
    assertNativeError(await request(sim.url, { method: 'DELETE', path: '/api/delete', body: 'x', headers: { 'content-type': 'application/json' } }),
      400, "invalid character 'x' looking for beginning of value", 'delete');
  });

  it('malformed JSON on /v1 → 400 in the OpenAI error shape', async () => {
    assertOpenAIError(await raw('/v1/chat/completions', 'x'), 400, "invalid character 'x' looking for beginning of value", 'invalid_request_error');
    assertOpenAIError(await raw('/v1/completions', '{"model":'), 400, 'unexpected EOF', 'invalid_request_error');
    assertOpenAIError(await raw('/v1/embeddings', 'x'), 400, "invalid character 'x' looking for beginning of value", 'invalid_request_error');
  });

  it('an empty body → 400 "missing request body"', async () => {
    for (const p of ['/api/generate', '/api/chat', '/api/embed', '/api/embeddings', '/api/show', '/api/pull', '/api/copy', '/api/create']) {
      assertNativeError(await raw(p, ''), 400, 'missing request body', p);
      assertNativeError(await request(sim.url, { method: 'POST', path: p }), 400, 'missing request body', `${p} without Content-Length`);
    }
    assertNativeError(await request(sim.url, { method: 'DELETE', path: '/api/delete', body: '' }), 400, 'missing request body', 'delete');
  });

  it('wrong JSON types → 400 json: cannot unmarshal …', async () => {
    const cases = [
      ['/api/generate', { model: M, prompt: 5 }, 'json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string'],
      ['/api/generate', { model: 5, prompt: 'x' }, 'json: cannot unmarshal number into Go struct field GenerateRequest.model of type string'],
      ['/api/generate', { model: M, prompt: 'x', stream: 'yes' }, 'json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool'],
      ['/api/generate', { model: M, prompt: 'x', context: 'abc' }, 'json: cannot unmarshal string into Go struct field GenerateRequest.context of type []int'],
      ['/api/chat', { model: M, messages: 'hi' }, 'json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message'],
      ['/api/chat', { model: true, messages: [] }, 'json: cannot unmarshal bool into Go struct field ChatRequest.model of type string'],
      ['/api/embeddings', { model: 'nomic-embed-text', prompt: 5 }, 'json: cannot unmarshal number into Go struct field EmbeddingRequest.prompt of type string'],
      ['/api/show', { model: [] }, 'json: cannot unmarshal array into Go struct field ShowRequest.model of type string'],
      ['/api/copy', { source: 1, destination: 'x' }, 'json: cannot unmarshal number into Go struct field CopyRequest.source of type string'],
    ];
    for (const [p, body, msg] of cases) assertNativeError(await post(sim.url, p, body), 400, msg, `${p} ${JSON.stringify(body)}`);
    assertNativeError(await post(sim.url, '/api/generate', [1, 2]), 400, 'json: cannot unmarshal array into Go value of type api.GenerateRequest');
    assertNativeError(await post(sim.url, '/api/chat', 'str'), 400, 'json: cannot unmarshal string into Go value of type api.ChatRequest');
  });

  it('missing model: wording per endpoint', async () => {
    assertNativeError(await post(sim.url, '/api/generate', { prompt: 'x' }), 404, "model '' not found", 'generate');
    assertNativeError(await post(sim.url, '/api/chat', { messages: [] }), 400, 'model is required', 'chat');
    assertNativeError(await post(sim.url, '/api/embed', { input: 'x' }), 404, "model '' not found", 'embed');
    assertNativeError(await post(sim.url, '/api/embeddings', { prompt: 'x' }), 400, 'model is required', 'embeddings');
    assertNativeError(await post(sim.url, '/api/show', {}), 400, 'model is required', 'show');
    assertNativeError(await post(sim.url, '/api/push', {}), 400, 'model is required', 'push');
    assertOpenAIError(await post(sim.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }] }), 400,
      'model is required', 'invalid_request_error', '/v1 chat');
  });

  it('invalid names', async () => {
    assertNativeError(await post(sim.url, '/api/copy', { source: M, destination: 'bad name!!' }), 400, 'destination "bad name!!" is invalid');
    assertNativeError(await post(sim.url, '/api/copy', { source: 'bad name!!', destination: 'x:1' }), 400, 'source "bad name!!" is invalid');
    assertNativeError(await request(sim.url, { method: 'DELETE', path: '/api/delete', json: { model: 'bad name!!' } }), 400, 'name "bad name!!" is invalid');
    assertNativeError(await post(sim.url, '/api/generate', { model: 'bad name!!', prompt: 'x' }), 404, "model 'bad name!!' not found");
  });

  it('unknown paths → 404 "404 page not found"', async () => {
    for (const p of ['/api/generat', '/api', '/api/', '/v1', '/v2/chat/completions', '/%00', '/api/../../etc/passwd']) {
      const r = await post(sim.url, p, { model: M });
      assert.equal(r.status, 404, p);
      assert.equal(r.body, '404 page not found', p);
    }
  });

  it('a body over --max-body → 413 with a JSON error, with or without Content-Length', async () => {
    const big = JSON.stringify({ model: M, prompt: 'a'.repeat(100 * 1024) });
    let r = await raw('/api/generate', big);
    assert.equal(r.status, 413, r.body);
    assert.match(String(r.headers['content-type']), /^application\/json/);
    assert.equal(typeof parseJson(r).error, 'string');
    // Chunked, no Content-Length.
    r = await request(sim.url, {
      method: 'POST', path: '/api/chat', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      body: (req) => {
        for (let i = 0; i < 20; i++) req.write('a'.repeat(8192));
        req.end();
      },
    });
    assert.equal(r.status, 413, r.body);
    assert.equal(typeof parseJson(r).error, 'string');
    r = await raw('/v1/chat/completions', big);
    assert.equal(r.status, 413);
    assert.equal(typeof parseJson(r).error.message, 'string', '/v1 error shape');
    // Just under the limit is fine.
    const ok = await post(sim.url, '/api/generate', { model: M, prompt: 'word '.repeat(10000), stream: false, options: { num_predict: 2 } });
    assert.equal(ok.status, 200, ok.body.slice(0, 300));
  });

  it('the default --max-body is 32 MiB', async () => {
    const s = await startSim({ args: ['--time-scale', '0'] });
    try {
      const body = JSON.stringify({ model: M, prompt: 'a'.repeat(33 * 1024 * 1024) });
      const r = await request(s.url, { method: 'POST', path: '/api/generate', body, headers: { 'content-type': 'application/json' }, timeoutMs: 30000 });
      assert.equal(r.status, 413);
      assert.equal((await get(s.url, '/')).status, 200);
    } finally {
      await s.stop();
    }
  });

  it('junk never crashes the server', async () => {
    const junk = [
      '[' .repeat(100000),
      '{"model":"' + '\\u'.repeat(100) + '"}',
      '\u0000\u0001\u0002',
      Buffer.from([0xff, 0xfe, 0xfd, 0x7b]).toString('latin1'),
      '{"model":"llama3.2:3b","prompt":"\ud800"}',
      '{"model":"llama3.2:3b","messages":[{"role":"user","content":{"a":1}}]}',
      '{"model":"llama3.2:3b","messages":[null, 1, "x"]}',
      '{"model":"llama3.2:3b","options":[]}',
      '{"model":"llama3.2:3b","options":{"num_predict":1e308}}',
      '{"model":"llama3.2:3b","tools":"x"}',
      '{"model":"llama3.2:3b","format":5}',
      `{"model":"${'a'.repeat(5000)}"}`,
      '1e999999',
      '""',
      'null',
    ];
    for (const p of ['/api/generate', '/api/chat', '/api/embed', '/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/_sim/fault']) {
      for (const j of junk) {
        const r = await raw(p, j);
        assert.ok(r.status >= 400 && r.status < 500 || r.status === 200 || r.status === 500,
          `${p} ${JSON.stringify(j.slice(0, 40))}: status ${r.status} error ${r.error}`);
        assert.ok(r.status !== undefined, `${p} ${JSON.stringify(j.slice(0, 40))}: no answer (${r.error})`);
      }
    }
    assert.equal((await get(sim.url, '/api/version')).status, 200);
  });

  it('truncated requests and raw garbage on the socket: answered or closed, never left open', async () => {
    const cases = [
      ['a body shorter than its Content-Length, then FIN', 'POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{"model":'],
      ['a request line that is not HTTP', 'GARBAGE\r\n\r\n'],
      ['a 100 kB header', `GET / HTTP/1.1\r\nHost: localhost\r\nX-Long: ${'a'.repeat(100000)}\r\n\r\n`],
      ['a bad chunk size', 'POST /api/chat HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
      ['headers cut short, then FIN', 'POST /api/chat HTTP/1.1\r\nHost: loc'],
    ];
    for (const [what, data] of cases) {
      // Ten at once: a race in the server shows up far more reliably so.
      const rs = await Promise.all(Array.from({ length: 10 }, () => rawExchange(sim.port, data, { halfClose: true, timeoutMs: 5000 })));
      const open = rs.filter((r) => r.error === 'timeout').length;
      assert.equal(open, 0, `${what}: the server kept ${open} of 10 connections open for 5 s after the client's FIN`);
      for (const r of rs) {
        if (r.status !== undefined) assert.ok(r.status >= 400 && r.status < 500, `${what}: ${r.text.slice(0, 100)}`);
      }
    }
    assert.equal((await get(sim.url, '/')).status, 200);
  });
});
