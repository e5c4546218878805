// herd-sim's command line and environment: --help, --version, bad
// options, OLLAMA_* variables, --model/--catalog, signals.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startSim, runBin, freePort, get, post, parseJson, ps, openStream } from './lib/harness.mjs';

const M = 'llama3.2:3b';

describe('herd-sim command line', () => {
  it('--help prints the options and exits 0', async () => {
    const r = await runBin(['--help']);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout + r.stderr;
    for (const opt of ['--host', '--port', '--ready-file', '--profile', '--model', '--catalog', '--no-default-models', '--time-scale',
      '--num-parallel', '--max-loaded-models', '--max-queue', '--keep-alive', '--context-length', '--origins', '--seed',
      '--no-tool-calls', '--max-body', '--fault', '--log-level', '--version']) {
      assert.ok(out.includes(opt), `--help mentions ${opt}`);
    }
  });

  it('--version prints a version and exits 0', async () => {
    const r = await runBin(['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /\d+\.\d+\.\d+/);
  });

  for (const bad of [['--no-such-option'], ['--profile', 'toaster'], ['--time-scale', 'fast'], ['--model', 'x:1,size=4.7QB'], ['--port']]) {
    it(`${bad.join(' ')} → non-zero exit with a message`, async () => {
      const r = await runBin(['--port', '0', ...bad]);
      assert.notEqual(r.code, 0);
      assert.ok(r.stderr.length > 0, 'says why on stderr');
    });
  }

  it('OLLAMA_HOST host:port is honoured', async () => {
    const port = await freePort();
    const sim = await startSim({ hostArgs: false, args: ['--time-scale', '0'], env: { OLLAMA_HOST: `127.0.0.1:${port}` } });
    try {
      assert.equal(sim.port, port);
      assert.equal((await get(sim.url, '/')).body, 'Ollama is running');
    } finally {
      await sim.stop();
    }
  });

  it('--model SPEC replaces the defaults in /api/tags and /api/show', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--model', 'tiny:1b,size=700MB,params=1B,quant=Q8_0,family=llama,ctx=8192,tools',
      '--model', 'emb:v1,embed'] });
    try {
      const { models } = parseJson(await get(sim.url, '/api/tags'));
      assert.deepEqual(models.map((m) => m.name).sort(), ['emb:v1', 'tiny:1b']);
      const t = models.find((m) => m.name === 'tiny:1b');
      assert.equal(t.size, 700e6);
      assert.equal(t.details.quantization_level, 'Q8_0');
      assert.equal(t.details.family, 'llama');
      const s = parseJson(await post(sim.url, '/api/show', { model: 'tiny:1b' }));
      assert.ok(s.capabilities.includes('tools') && s.capabilities.includes('completion'));
      assert.equal(s.model_info[`${s.model_info['general.architecture']}.context_length`], 8192);
      const e = parseJson(await post(sim.url, '/api/show', { model: 'emb:v1' }));
      assert.ok(e.capabilities.includes('embedding'));
    } finally {
      await sim.stop();
    }
  });

  it('--catalog FILE', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-e2e-cat-'));
    const file = path.join(dir, 'catalog.json');
    fs.writeFileSync(file, JSON.stringify([{ name: 'cat-a:7b', params: '7B', quant: 'Q4_K_M' }, { name: 'cat-b:latest', embed: true }]));
    const sim = await startSim({ args: ['--time-scale', '0', '--catalog', file] });
    try {
      const { models } = parseJson(await get(sim.url, '/api/tags'));
      assert.deepEqual(models.map((m) => m.name).sort(), ['cat-a:7b', 'cat-b:latest']);
    } finally {
      await sim.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('OLLAMA_CONTEXT_LENGTH and --context-length set the default num_ctx', async () => {
    const a = await startSim({ args: ['--time-scale', '0'], env: { OLLAMA_CONTEXT_LENGTH: '8192' } });
    const b = await startSim({ args: ['--time-scale', '0', '--context-length', '2048'] });
    const c = await startSim({ args: ['--time-scale', '0', '--profile', 'mac-mini'] });
    try {
      for (const [s, want] of [[a, 8192], [b, 2048], [c, 32768]]) {
        await post(s.url, '/api/generate', { model: M, stream: false });
        assert.equal((await ps(s.url)).find((e) => e.name === M).context_length, want);
      }
    } finally {
      await a.stop();
      await b.stop();
      await c.stop();
    }
  });

  it('--no-tool-calls: tools given, but the model answers in text', async () => {
    const sim = await startSim({ args: ['--time-scale', '0', '--no-tool-calls'] });
    try {
      const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'string' } } } } }];
      const r = parseJson(await post(sim.url, '/api/chat', { model: 'qwen3:8b', messages: [{ role: 'user', content: 'x' }], tools, think: false, stream: false }));
      assert.ok(!r.message.tool_calls || r.message.tool_calls.length === 0);
      assert.ok(r.message.content.length > 0);
    } finally {
      await sim.stop();
    }
  });

  it('--seed changes the text; the same seed repeats it across processes', async () => {
    const [a, b, c] = await Promise.all([
      startSim({ args: ['--time-scale', '0', '--seed', '1'] }),
      startSim({ args: ['--time-scale', '0', '--seed', '1'] }),
      startSim({ args: ['--time-scale', '0', '--seed', '2'] }),
    ]);
    try {
      const body = { model: M, prompt: 'Tell me something', stream: false };
      const [ra, rb, rc] = await Promise.all([a, b, c].map(async (s) => parseJson(await post(s.url, '/api/generate', body)).response));
      assert.equal(ra, rb);
      assert.notEqual(ra, rc);
    } finally {
      await a.stop();
      await b.stop();
      await c.stop();
    }
  });

  it('SIGINT exits 0 too; SIGTERM ends open streams and exits 0', async () => {
    const sim = await startSim({ args: ['--time-scale', '1'] });
    const exited = sim.exited;
    process.kill(sim.pid, 'SIGINT');
    const info = await exited;
    assert.deepEqual(info, { code: 0, signal: null }, sim.logs());
    await sim.kill(); // already gone: just cleans up

    const s2 = await startSim({ args: ['--time-scale', '1', '--fault', 'slow:1000x'] });
    // A long stream in progress while SIGTERM arrives.
    const st = openStream(s2.url, { path: '/api/generate', json: { model: M, prompt: 'long', options: { num_predict: 500 } } });
    assert.equal((await st.response).status, 200);
    assert.ok(await st.next({ timeoutMs: 15000 }), 'the stream has started');
    await s2.stop();
    const res = await st.done;
    assert.equal(res.status, 200);
  });
});
