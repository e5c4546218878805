// Test harness for the e2e suite: starts herd-sim processes on ephemeral
// loopback ports and talks raw HTTP to them (exact status codes, headers,
// bodies, NDJSON lines and SSE frames), next to the official npm clients.
//
// Every process started here is tracked by pid and killed when the test
// process exits, whatever happened to the test.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import assert from 'node:assert/strict';

const live = new Set(); // child processes not yet reaped

function killAll() {
  for (const p of live) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    killAll();
    process.exit(130);
  });
}

/** The directory holding the built binaries (set by CMake for ctest). */
export function binDir() {
  const d = process.env.HERD_BIN_DIR;
  if (!d) throw new Error('HERD_BIN_DIR is not set (the build directory holding herd-sim)');
  return d;
}

/** Environment for a child: ours, minus every OLLAMA_* variable, plus env. */
function childEnv(env) {
  const out = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('OLLAMA_')) out[k] = v;
  }
  // Sanitizer builds: fail the exit code on leaks/errors, keep output short.
  if (!out.ASAN_OPTIONS) out.ASAN_OPTIONS = 'detect_leaks=1:abort_on_error=0';
  if (!out.UBSAN_OPTIONS) out.UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1';
  return { ...out, ...env };
}

/** Polls fn() until it returns a truthy value or the deadline passes. */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
        (last instanceof Error ? `: ${last.message}` : last !== undefined ? `: last ${JSON.stringify(last)}` : ''));
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Starts herd-sim. Resolves once its ready file appears:
 * {url, host, port, proc, logs(), stop(), kill()}.
 */
export async function startSim({ args = [], env = {}, timeoutMs = 20000, bin = 'herd-sim', hostArgs = true } = {}) {
  const exe = path.join(binDir(), bin);
  if (!fs.existsSync(exe)) throw new Error(`${exe} does not exist (build it first)`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-e2e-'));
  const readyFile = path.join(tmp, 'ready');
  // hostArgs false leaves --host/--port out (to test OLLAMA_HOST).
  const argv = [...(hostArgs ? ['--host', '127.0.0.1', '--port', '0'] : []), '--ready-file', readyFile, ...args];
  const proc = spawn(exe, argv, { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { stdout += d; });
  proc.stderr.on('data', (d) => { stderr += d; });
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.on('close', (code, signal) => {
      exitInfo = { code, signal };
      live.delete(proc);
      resolve(exitInfo);
    });
  });
  proc.on('exit', () => live.delete(proc)); // never signal a reaped pid
  proc.on('error', (e) => { stderr += `\n[spawn error] ${e.message}`; });
  const logs = () => stdout + stderr;
  const cleanupTmp = () => fs.rmSync(tmp, { recursive: true, force: true });

  const describe = () => `${bin} ${argv.join(' ')}`;
  let content = null;
  let failure = null;
  const deadline = Date.now() + timeoutMs;
  while (content === null) {
    if (exitInfo) {
      failure = `exited before it was ready (code ${exitInfo.code}, signal ${exitInfo.signal})`;
      break;
    }
    try {
      const c = fs.readFileSync(readyFile, 'utf8');
      if (c.endsWith('\n')) content = c; // written atomically, but be strict
    } catch {
      /* not there yet */
    }
    if (content !== null) break;
    if (Date.now() > deadline) {
      failure = `no ready file within ${timeoutMs} ms`;
      break;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  if (failure) {
    if (!exitInfo) {
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await exited;
    cleanupTmp();
    throw new Error(`${describe()} failed to start: ${failure}\n--- stderr ---\n${stderr}\n--- stdout ---\n${stdout}`);
  }
  const m = /^(.*):(\d+)\n$/.exec(content);
  if (!m) {
    try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
    await exited;
    cleanupTmp();
    throw new Error(`bad ready file content ${JSON.stringify(content)}`);
  }
  const host = m[1];
  const port = Number(m[2]);
  assert.ok(port > 0 && port < 65536, `ready file port ${port}`);
  let connectHost = host.replace(/^\[|\]$/g, '');
  if (connectHost === '0.0.0.0' || connectHost === '') connectHost = '127.0.0.1';
  if (connectHost === '::') connectHost = '::1';
  const url = connectHost.includes(':') ? `http://[${connectHost}]:${port}` : `http://${connectHost}:${port}`;

  let stopped = false;
  /** SIGTERM; asserts a clean exit 0 within 10 s. */
  async function stop({ timeoutMs: stopMs = 10000 } = {}) {
    if (stopped) return exitInfo;
    stopped = true;
    if (!exitInfo) {
      try { process.kill(proc.pid, 'SIGTERM'); } catch { /* gone */ }
      let timer;
      const timedOut = new Promise((r) => { timer = setTimeout(() => r(null), stopMs); });
      const res = await Promise.race([exited, timedOut]);
      clearTimeout(timer);
      if (!res) {
        try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
        await exited;
        cleanupTmp();
        throw new Error(`${bin} (pid ${proc.pid}) did not exit within ${stopMs} ms of SIGTERM\n--- stderr ---\n${stderr}`);
      }
    } else {
      cleanupTmp();
      throw new Error(`${bin} (pid ${proc.pid}) had already exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before stop()\n--- stderr ---\n${stderr}`);
    }
    cleanupTmp();
    if (exitInfo.code !== 0 || exitInfo.signal !== null) {
      throw new Error(`${bin} (pid ${proc.pid}) exited with code ${exitInfo.code}, signal ${exitInfo.signal} after SIGTERM (want 0)\n--- stderr ---\n${stderr}`);
    }
    return exitInfo;
  }
  /** SIGKILL, no assertion (for tests that kill for real). */
  async function kill() {
    stopped = true;
    if (!exitInfo) {
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
      await exited;
    }
    cleanupTmp();
  }
  return { url, host, port, proc, pid: proc.pid, logs, stop, kill, exited, exitInfo: () => exitInfo };
}

// ---------------------------------------------------------------------------
// Raw HTTP

function buildRequest(base, { method = 'GET', path: p = '/', headers = {}, body, json, setHost = true }) {
  const u = new URL(p, base);
  const hdrs = { ...headers };
  let payload = body;
  if (json !== undefined) {
    payload = JSON.stringify(json);
    if (!Object.keys(hdrs).some((k) => k.toLowerCase() === 'content-type')) hdrs['content-type'] = 'application/json';
  }
  if (payload !== undefined && typeof payload !== 'function' &&
      !Object.keys(hdrs).some((k) => k.toLowerCase() === 'content-length' || k.toLowerCase() === 'transfer-encoding')) {
    hdrs['content-length'] = Buffer.byteLength(payload);
  }
  const opts = {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port,
    path: u.pathname + u.search,
    method,
    headers: hdrs,
    agent: false, // a fresh connection per request
    setHost,
  };
  return { opts, payload };
}

/**
 * One HTTP request on a fresh connection. Never rejects for HTTP or socket
 * trouble: resolves {status, headers, body, complete, error, ms}.
 *  - complete: the response ended properly (false when the connection was
 *    cut mid-body).
 *  - error: a socket error code (ECONNREFUSED, ECONNRESET, 'timeout', ...).
 * payload may be a function(req) that writes the body itself.
 */
export function request(base, spec = {}) {
  const { timeoutMs = 15000 } = spec;
  const { opts, payload } = buildRequest(base, spec);
  const t0 = Date.now();
  return new Promise((resolve) => {
    let done = false;
    const out = { status: undefined, headers: {}, rawHeaders: [], body: '', complete: false, error: null, ms: 0 };
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      out.ms = Date.now() - t0;
      resolve(out);
    };
    const req = http.request(opts, (res) => {
      out.status = res.statusCode;
      out.headers = res.headers;
      out.rawHeaders = res.rawHeaders;
      res.setEncoding('utf8');
      res.on('data', (d) => { out.body += d; });
      res.on('end', () => { out.complete = true; });
      res.on('aborted', () => { out.error = out.error || 'aborted'; });
      res.on('error', (e) => { out.error = out.error || e.code || e.message; });
      res.on('close', () => {
        if (!res.complete) out.complete = false;
        finish();
      });
    });
    const timer = setTimeout(() => {
      out.error = 'timeout';
      req.destroy();
      finish();
    }, timeoutMs);
    req.on('error', (e) => {
      out.error = out.error || e.code || e.message;
      if (out.status === undefined) finish();
    });
    if (typeof payload === 'function') {
      payload(req);
    } else {
      if (payload !== undefined) req.write(payload);
      req.end();
    }
  });
}

/** POST json. */
export function post(base, p, json, extra = {}) {
  return request(base, { method: 'POST', path: p, json, ...extra });
}

export function get(base, p, extra = {}) {
  return request(base, { method: 'GET', path: p, ...extra });
}

/** Parses a JSON body, failing with the body in the message. */
export function parseJson(res) {
  try {
    return JSON.parse(res.body);
  } catch (e) {
    throw new Error(`body is not JSON (status ${res.status}): ${JSON.stringify(res.body).slice(0, 500)}`);
  }
}

/** Splits an NDJSON body strictly: every line one JSON object, ending in \n. */
export function ndjson(body, { requireTrailingNewline = true } = {}) {
  if (body === '') return [];
  if (requireTrailingNewline) assert.ok(body.endsWith('\n'), `NDJSON body does not end with \\n: ${JSON.stringify(body.slice(-200))}`);
  const lines = body.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l, i) => {
    try {
      return JSON.parse(l);
    } catch {
      throw new Error(`NDJSON line ${i} is not JSON: ${JSON.stringify(l)}`);
    }
  });
}

/**
 * Splits an SSE body strictly into the data of its events. Each event must
 * be exactly "data: <payload>\n\n" (no event:, id: or comment lines).
 * Returns the payload strings; JSON payloads are not parsed here.
 */
export function sseFrames(body, { requireComplete = true } = {}) {
  if (body === '') return [];
  const parts = body.split('\n\n');
  const tail = parts.pop();
  if (requireComplete) assert.equal(tail, '', `SSE body does not end with a blank line: ${JSON.stringify(body.slice(-200))}`);
  return parts.map((f, i) => {
    assert.ok(f.startsWith('data: '), `SSE frame ${i} is not "data: ...": ${JSON.stringify(f)}`);
    assert.ok(!f.includes('\n'), `SSE frame ${i} has more than one line: ${JSON.stringify(f)}`);
    return f.slice('data: '.length);
  });
}

/**
 * A streaming request read incrementally. Returns
 *  { response: Promise<{status, headers}>, next(): Promise<string|null>
 *    (next NDJSON line / null at end), body(), abort(), done: Promise<result> }
 * where result is {status, headers, body, complete, error}.
 */
export function openStream(base, spec = {}) {
  const { opts, payload } = buildRequest(base, { method: 'POST', ...spec });
  const out = { status: undefined, headers: {}, body: '', complete: false, error: null };
  let buf = '';
  const lines = [];
  let waiters = [];
  let ended = false;
  let resolveResp, resolveDone;
  const response = new Promise((r) => { resolveResp = r; });
  const done = new Promise((r) => { resolveDone = r; });
  const wake = () => {
    const w = waiters;
    waiters = [];
    w.forEach((f) => f());
  };
  const end = () => {
    if (ended) return;
    ended = true;
    resolveResp(out);
    resolveDone(out);
    wake();
  };
  const req = http.request(opts, (res) => {
    out.status = res.statusCode;
    out.headers = res.headers;
    resolveResp(out);
    res.setEncoding('utf8');
    res.on('data', (d) => {
      out.body += d;
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      wake();
    });
    res.on('end', () => { out.complete = true; });
    res.on('aborted', () => { out.error = out.error || 'aborted'; });
    res.on('error', (e) => { out.error = out.error || e.code || e.message; });
    res.on('close', () => {
      if (!res.complete) out.complete = false;
      end();
    });
  });
  req.on('error', (e) => {
    out.error = out.error || e.code || e.message;
    if (out.status === undefined) end();
  });
  if (payload !== undefined) req.write(payload);
  req.end();
  return {
    response,
    done,
    /** Next complete line (without \n), or null once the stream ended. */
    async next({ timeoutMs = 10000 } = {}) {
      const deadline = Date.now() + timeoutMs;
      while (lines.length === 0 && !ended) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no line within ${timeoutMs} ms (body so far ${JSON.stringify(out.body.slice(-300))})`);
        await new Promise((r) => {
          const t = setTimeout(r, left);
          waiters.push(() => { clearTimeout(t); r(); });
        });
      }
      return lines.length ? lines.shift() : null;
    },
    body: () => out.body,
    abort() {
      out.error = out.error || 'aborted-by-client';
      req.destroy();
    },
  };
}

// ---------------------------------------------------------------------------
// Helpers shared by the test files

/** GET /_sim/state as an object. */
export async function simState(base) {
  const r = await get(base, '/_sim/state');
  assert.equal(r.status, 200, `GET /_sim/state: ${r.status} ${r.body}`);
  return parseJson(r);
}

/** GET /api/ps models. */
export async function ps(base) {
  const r = await get(base, '/api/ps');
  assert.equal(r.status, 200, `GET /api/ps: ${r.status} ${r.body}`);
  return parseJson(r).models;
}

/** Asserts status and a JSON error body {"error": msg} exactly. */
export function assertNativeError(res, status, message, what = '') {
  assert.equal(res.status, status, `${what} status (body ${res.body})`);
  assert.match(String(res.headers['content-type']), /^application\/json/, `${what} content-type`);
  assert.deepEqual(parseJson(res), { error: message }, `${what} body`);
}

/** Asserts the /v1 error shape exactly. */
export function assertOpenAIError(res, status, message, type, what = '') {
  assert.equal(res.status, status, `${what} status (body ${res.body})`);
  assert.match(String(res.headers['content-type']), /^application\/json/, `${what} content-type`);
  assert.deepEqual(parseJson(res), { error: { message, type, param: null, code: null } }, `${what} body`);
}

export const METRICS = ['total_duration', 'load_duration', 'prompt_eval_count', 'prompt_eval_duration', 'eval_count', 'eval_duration'];

/** Every metric present is a positive integer (Go omitempty: 0 is left out). */
export function assertMetricsShape(obj, { required = METRICS } = {}) {
  for (const k of METRICS) {
    if (k in obj) {
      assert.ok(Number.isInteger(obj[k]) && obj[k] > 0, `${k} must be a positive integer when present, got ${JSON.stringify(obj[k])}`);
    }
  }
  for (const k of required) assert.ok(k in obj, `${k} missing from ${JSON.stringify(obj)}`);
}

/** RFC 3339 with up to 9 fractional digits (trailing zeros trimmed), UTC Z or an offset. */
export const RFC3339_NANO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])?(Z|[+-]\d{2}:\d{2})$/;

/** A long deterministic English-ish text of about n words. */
export function words(n, seed = 1) {
  const vocab = ['the', 'router', 'sends', 'every', 'request', 'to', 'a', 'node', 'with', 'free', 'memory',
    'and', 'loaded', 'model', 'while', 'streaming', 'tokens', 'back', 'quickly', 'under', 'load', 'fleet',
    'server', 'queue', 'slot', 'cache', 'prompt', 'context', 'window', 'answer'];
  let x = seed >>> 0;
  const out = [];
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out.push(vocab[(x >>> 8) % vocab.length]);
  }
  return out.join(' ');
}

/** Parses Go's RFC 3339 timestamp to ms since epoch, years > 9999 excluded. */
export function parseTime(s) {
  const t = Date.parse(s.replace(/(\.\d{3})\d+/, '$1'));
  assert.ok(!Number.isNaN(t), `unparseable time ${s}`);
  return t;
}

export function l2norm(v) {
  return Math.sqrt(v.reduce((a, x) => a + x * x, 0));
}

export function decodeFloat32Base64(s) {
  const b = Buffer.from(s, 'base64');
  assert.equal(b.length % 4, 0, 'base64 embedding length is not a multiple of 4');
  const out = [];
  for (let i = 0; i < b.length; i += 4) out.push(b.readFloatLE(i));
  return out;
}

/** Runs a binary to completion: {code, signal, stdout, stderr}. */
export function runBin(args, { env = {}, timeoutMs = 10000, bin = 'herd-sim' } = {}) {
  const exe = path.join(binDir(), bin);
  return new Promise((resolve, reject) => {
    const p = spawn(exe, args, { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => {
      try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
      reject(new Error(`${bin} ${args.join(' ')} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    p.on('exit', () => live.delete(p));
    p.on('error', (e) => { clearTimeout(t); reject(e); });
    p.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A port that was free a moment ago (for OLLAMA_HOST tests). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Sends raw bytes on a fresh TCP connection and collects everything the
 * server sends until it closes (or timeoutMs): {status, text, error}.
 */
export function rawExchange(port, data, { host = '127.0.0.1', timeoutMs = 5000, halfClose = false } = {}) {
  return new Promise((resolve) => {
    let text = '';
    let error = null;
    // halfClose: send FIN after the data (shutdown(SHUT_WR)), as a client
    // that gives up mid-request does.
    const s = net.connect(port, host, () => (halfClose ? s.end(data) : s.write(data)));
    const t = setTimeout(() => { error = 'timeout'; s.destroy(); }, timeoutMs);
    s.setEncoding('latin1');
    s.on('data', (d) => { text += d; });
    s.on('error', (e) => { error = error || e.code || e.message; });
    s.on('close', () => {
      clearTimeout(t);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : undefined, text, error });
    });
  });
}
