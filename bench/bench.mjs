// bench.mjs - the benchmark of issue 7, driven by bench/run.
//
// Starts real herd-sim, herd, herd-node and nginx processes on loopback,
// measures herd next to a direct connection and nginx in the same run,
// samples CPU and RSS from /proc, and writes bench/results/latest.md and
// latest.json. Every figure keeps the exact command that produced it.
// See bench/README.md for the method.
//
// Fails loudly: a request that failed, a load generator that reported
// errors or a process that died make the exit status 1 (the results are
// still written, with the failures listed first).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');

// --- options ----------------------------------------------------------------

const SECTIONS = ['latency', 'throughput', 'ttfb', 'streaming', 'heartbeat', 'idle'];

function parseArgs(argv) {
  const o = { bin: path.join(ROOT, 'build-bench'), only: null, quick: false, reps: null, out: null, render: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--bin') o.bin = v();
    else if (a === '--only') o.only = v().split(',').map((s) => s.trim()).filter(Boolean);
    else if (a === '--quick') o.quick = true;
    else if (a === '--reps') o.reps = Number(v());
    else if (a === '--out') o.out = v();
    else if (a === '--render') o.render = v();
    else if (a === '-h' || a === '--help') usage();
    else usage(`unknown option ${a}`);
  }
  for (const s of o.only ?? []) if (!SECTIONS.includes(s)) usage(`unknown section ${s}`);
  return o;
}

function usage(msg) {
  if (msg) console.error(`bench: ${msg}`);
  console.error(`usage: bench/run [--only ${SECTIONS.join(',')}] [--quick] [--reps N] [--out BASENAME]`);
  console.error('       node bench/bench.mjs --render results/X.json   (rewrite X.md from X.json)');
  process.exit(2);
}

const opt = parseArgs(process.argv.slice(2));
const only = new Set(opt.only ?? SECTIONS);
const partial = opt.only !== null || opt.quick;
const Q = opt.quick;
// Durations and repetitions: the full run stays under 15 minutes on 2 cores.
const CFG = {
  reps: opt.reps ?? (Q ? 1 : 3),
  latencyRates: [100, 1000, 5000],
  latencySecs: Q ? 2 : 5,
  latencyWarmup: 1,
  wrkConns: [64, 256],
  wrkSecs: Q ? 2 : 5,
  ttfbRate: 200,
  ttfbSecs: Q ? 2 : 4,
  streamLevels: Q ? [500] : [500, 2000, 5000],
  streamTps: 20,
  streamHold: Q ? 4 : 8, // seconds every stream is open at once
  streamModels: 7, // coprime with the 4 sims: every sim:model gets streams
  streamSims: 4,
  simSlots: 256, // herd-sim's cap on --num-parallel
  hbNodes: 1000,
  hbInterval: 5,
  hbSecs: Q ? 15 : 60,
  hbChatRate: 50,
  hbChatSecs: Q ? 5 : 10,
  hbKeepSecs: Q ? 10 : 30,
  idleSecs: Q ? 15 : 60,
};

const BIN = path.resolve(opt.bin);
const LOADGEN = path.join(BIN, 'bench', 'loadgen');
const RESULTS = path.join(ROOT, 'bench', 'results');
const OUTBASE = opt.out ?? (partial ? 'dev' : 'latest');
const RUN = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-bench-'));
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim()) || 100;
const PAGE = 4096;

const results = {
  started: new Date().toISOString(),
  partial,
  quick: Q,
  config: CFG,
  machine: {},
  sections: {},
  failures: [],
  notes: [],
};
const failures = results.failures;

function log(...a) {
  const t = ((Date.now() - T_START) / 1000).toFixed(1).padStart(6);
  console.error(`[${t}s]`, ...a);
}
const T_START = Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fail(where, msg) {
  failures.push({ where, msg });
  log(`FAILED: ${where}: ${msg}`);
}

// --- processes --------------------------------------------------------------

const procs = new Set();
let aborting = false;

// Environment for our children: no OLLAMA_* or FLEET_* from the caller,
// and no ~/.fleet-manager/env, so that only the flags shown count.
function childEnv(extra = {}) {
  const e = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('OLLAMA_') && !k.startsWith('FLEET_') && !k.startsWith('HERD_')) e[k] = v;
  }
  return { ...e, FLEET_ENV_FILE: '/nonexistent', ...extra };
}

function shellQuote(s) {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${String(s).replace(/'/g, `'\\''`)}'`;
}

function cmdline(exe, args, env = {}) {
  const pre = Object.entries(env).map(([k, v]) => `${k}=${shellQuote(v)} `).join('');
  return pre + [exe, ...args].map(shellQuote).join(' ');
}

function short(p) {
  if (p.startsWith(BIN + '/')) return path.relative(ROOT, p) || p;
  return p;
}

// A long-lived process (herd, herd-sim, herd-node, nginx). Its death is a
// failure unless we stopped it.
class Proc {
  constructor(name, exe, args, { env = {}, cwd } = {}) {
    this.name = name;
    this.log = path.join(RUN, `${name}.log`);
    this.cmd = cmdline(short(exe), args, env);
    const fd = fs.openSync(this.log, 'a');
    this.child = spawn(exe, args, { env: childEnv(env), cwd, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    this.pid = this.child.pid;
    this.stopping = false;
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        procs.delete(this);
        this.exit = { code, signal };
        if (!this.stopping && !aborting) {
          abort(`${name} (pid ${this.pid}) died: ${signal ? `signal ${signal}` : `exit ${code}`}` +
            `\n--- last lines of ${this.log} ---\n${tail(this.log, 20)}`);
        }
        resolve(this.exit);
      });
    });
    procs.add(this);
    sampler.watch(this);
  }

  async stop(sig = 'SIGTERM', timeoutMs = 15000) {
    if (this.exit) return this.exit;
    this.stopping = true;
    try { process.kill(this.pid, sig); } catch { /* gone */ }
    const t = setTimeout(() => {
      log(`${this.name} (pid ${this.pid}) did not exit after ${sig}; SIGKILL`);
      fail(this.name, `did not exit within ${timeoutMs} ms of ${sig}`);
      try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs);
    const r = await this.exited;
    clearTimeout(t);
    if (sig === 'SIGTERM' && r.code !== 0 && r.signal == null && this.name.startsWith('herd')) {
      fail(this.name, `exit status ${r.code} after SIGTERM; see ${this.log}`);
    }
    return r;
  }
}

function tail(file, n) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-n - 1).join('\n');
  } catch {
    return '(no log)';
  }
}

async function stopAll() {
  await Promise.all([...procs].map((p) => p.stop('SIGTERM', 10000)));
}

async function abort(msg) {
  if (aborting) return;
  aborting = true;
  fail('run', msg);
  for (const p of procs) {
    p.stopping = true;
    // nginx's workers outlive a SIGKILLed master: kill them by pid too.
    for (const w of p.workers ?? []) {
      try { process.kill(w, 'SIGKILL'); } catch { /* gone */ }
    }
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  for (const c of liveTools) {
    try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  finish(1);
}

process.on('SIGINT', () => abort('interrupted (SIGINT)'));
process.on('SIGTERM', () => abort('terminated (SIGTERM)'));
process.on('uncaughtException', (e) => abort(`bench.mjs: ${e.stack ?? e}`));
process.on('unhandledRejection', (e) => abort(`bench.mjs: ${e?.stack ?? e}`));

async function waitFile(file, proc, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (proc?.exit) throw new Error(`${proc.name} exited before writing ${file}`);
    try {
      const s = fs.readFileSync(file, 'utf8').trim();
      if (s) return s;
    } catch { /* not yet */ }
    await sleep(20);
  }
  throw new Error(`${proc?.name ?? 'process'} did not write ${file} within ${timeoutMs} ms; see ${proc?.log}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitListen(port, proc, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (proc.exit) throw new Error(`${proc.name} exited; see ${proc.log}`);
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${proc.name} is not listening on ${port}; see ${proc.log}`);
}

let seq = 0;
function dir(name) {
  const d = path.join(RUN, `${name}-${++seq}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

async function startSim(name, args) {
  const d = dir(name);
  const ready = path.join(d, 'ready');
  const p = new Proc(name, path.join(BIN, 'herd-sim'),
    ['--host', '127.0.0.1', '--port', '0', '--ready-file', ready, '--log-level', 'warn', ...args]);
  p.addr = await waitFile(ready, p);
  p.url = `http://${p.addr}`;
  return p;
}

async function startHerd(name, args = []) {
  const d = dir(name);
  const ready = path.join(d, 'ready');
  const p = new Proc(name, path.join(BIN, 'herd'),
    ['--host', '127.0.0.1', '--port', '0', '--ready-file', ready, '--data-dir', path.join(d, 'data'),
      '--no-mdns', ...args]);
  p.addr = await waitFile(ready, p);
  p.url = `http://${p.addr}`;
  return p;
}

async function startNode(name, herd, sim, { numParallel, interval = 5, args = [] }) {
  const d = dir(name);
  const ready = path.join(d, 'ready');
  const p = new Proc(name, path.join(BIN, 'herd-node'),
    ['--node-id', name, '--router-url', herd.url, '--ollama-host', sim.url,
      '--heartbeat-interval', String(interval), '--num-parallel', String(numParallel),
      '--data-dir', path.join(d, 'data'), '--ready-file', ready, ...args]);
  await waitFile(ready, p, 30000);
  return p;
}

// nginx as the reference proxy: proxy_pass to the same herd-sim, keep-alive
// to the upstream, no buffering of streams, no access log, one worker (herd
// is one event loop too; see README).
async function startNginx(name, sim) {
  const sims = Array.isArray(sim) ? sim : [sim];
  const d = dir(name);
  const port = await freePort();
  for (const t of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) fs.mkdirSync(path.join(d, t));
  const conf = path.join(d, 'nginx.conf');
  const user = os.userInfo().username;
  fs.writeFileSync(conf, `# written by bench/bench.mjs
${process.getuid?.() === 0 ? `user ${user};` : ''}
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid ${d}/nginx.pid;
error_log ${d}/error.log warn;
events {
    worker_connections 20000;
    use epoll;
}
http {
    access_log off;
    client_body_temp_path ${d}/body;
    proxy_temp_path ${d}/proxy;
    fastcgi_temp_path ${d}/fastcgi;
    uwsgi_temp_path ${d}/uwsgi;
    scgi_temp_path ${d}/scgi;
    client_body_buffer_size 64k;
    client_max_body_size 32m;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream herdsim {
${sims.map((x) => `        server ${x.addr};`).join('\n')}
        keepalive 1024;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:${port} backlog=4096;
        location / {
            proxy_pass http://herdsim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # herd-sim checks Host on loopback, as Ollama does.
            proxy_set_header Host ${sims.length === 1 ? sims[0].addr : '127.0.0.1'};
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }
    }
}
`);
  const exe = findExe('nginx');
  const p = new Proc(name, exe, ['-p', d, '-c', conf, '-e', path.join(d, 'error.log')]);
  p.conf = conf;
  await waitListen(port, p);
  // The master only supervises: the CPU is the worker's.
  for (let i = 0; i < 100 && !(p.workers = childrenOf(p.pid)).length; i++) await sleep(50);
  if (p.workers.length !== 1) throw new Error(`nginx: expected one worker, found ${p.workers.length}`);
  for (const w of p.workers) sampler.watch({ pid: w, name: `${name}-worker` });
  p.addr = `127.0.0.1:${port}`;
  p.url = `http://${p.addr}`;
  return p;
}

function childrenOf(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    const out = [];
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
        if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
      } catch { /* gone */ }
    }
    return out;
  }
}

function findExe(name) {
  for (const d of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const f = path.join(d, name);
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return f;
    } catch { /* next */ }
  }
  throw new Error(`${name} not found`);
}

// --- /proc sampling ---------------------------------------------------------

const sampler = {
  watched: new Map(), // pid -> {name, samples: [{t, ticks, rss}]}
  timer: null,
  watch(p) {
    this.watched.set(p.pid, { name: p.name, samples: [] });
    this.sampleOne(p.pid);
    if (!this.timer) this.timer = setInterval(() => this.sampleAll(), 250);
  },
  sampleOne(pid) {
    const w = this.watched.get(pid);
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields 14 and 15 of stat: utime, stime (f[0] is field 3)
      const ticks = Number(f[11]) + Number(f[12]);
      const rssPages = Number(f[21]);
      // The main thread's time on a CPU and waiting for one (ns).
      let run = null;
      let wait = null;
      try {
        [run, wait] = fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
      } catch { /* no schedstats */ }
      w.samples.push({ t: Date.now(), ticks, rss: rssPages * PAGE, run, wait });
    } catch { /* exited */ }
  },
  sampleAll() {
    for (const pid of this.watched.keys()) this.sampleOne(pid);
  },
  // CPU % of one core between wall times a and b (ms), from the samples
  // closest inside the window.
  cpu(pid, a, b) {
    const s = this.watched.get(pid)?.samples ?? [];
    const inside = s.filter((x) => x.t >= a && x.t <= b);
    if (inside.length < 2) return null;
    const x = inside[0];
    const y = inside[inside.length - 1];
    if (y.t - x.t < 200) return null;
    return ((y.ticks - x.ticks) / CLK_TCK) / ((y.t - x.t) / 1000) * 100;
  },
  // Share of the window the main thread spent runnable but waiting for a
  // CPU (the machine is busy), in %.
  waitPct(pid, a, b) {
    const s = (this.watched.get(pid)?.samples ?? []).filter((x) => x.t >= a && x.t <= b && x.wait != null);
    if (s.length < 2) return null;
    const x = s[0];
    const y = s[s.length - 1];
    return (y.t - x.t) > 200 ? ((y.wait - x.wait) / 1e6) / (y.t - x.t) * 100 : null;
  },
  rssMax(pid, a, b) {
    const s = (this.watched.get(pid)?.samples ?? []).filter((x) => x.t >= a && x.t <= b);
    return s.length ? Math.max(...s.map((x) => x.rss)) : null;
  },
  rssLast(pid, b) {
    const s = (this.watched.get(pid)?.samples ?? []).filter((x) => x.t <= b);
    return s.length ? s[s.length - 1].rss : null;
  },
};

function procStatus(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number((s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm')) ?? [])[1] ?? NaN) * 1024;
    const threads = Number((s.match(/^Threads:\s+(\d+)/m) ?? [])[1] ?? NaN);
    let pss = null;
    try {
      const r = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      pss = Number((r.match(/^Pss:\s+(\d+) kB/m) ?? [])[1] ?? NaN) * 1024;
    } catch { /* older kernel */ }
    return { vmrss: kb('VmRSS'), vmhwm: kb('VmHWM'), rss_anon: kb('RssAnon'), rss_file: kb('RssFile'), pss, threads };
  } catch {
    return null;
  }
}

function fdCount(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

// --- tools: loadgen and wrk --------------------------------------------------

const liveTools = new Set();

// Runs a tool to completion: {code, stdout, stderr, t0, t1, cmd}.
function runTool(exe, args, { env = {}, cmd } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const c = spawn(exe, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    liveTools.add(c);
    sampler.watch({ pid: c.pid, name: path.basename(exe) });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { err += d; });
    c.on('close', (code, signal) => {
      liveTools.delete(c);
      resolve({ code, signal, pid: c.pid, stdout: out, stderr: err, t0, t1: Date.now(), cmd: cmd ?? cmdline(short(exe), args, env) });
    });
  });
}

const LOADGEN_SHOWN = 'build-bench/bench/loadgen';

async function loadgen(where, args) {
  const r = await runTool(LOADGEN, args, { cmd: cmdline(LOADGEN_SHOWN, args) });
  if (r.code === 2 || r.signal || !r.stdout.trim()) {
    throw new Error(`${where}: loadgen failed (${r.signal ?? r.code}): ${r.stderr.trim()}\ncommand: ${r.cmd}`);
  }
  const j = JSON.parse(r.stdout.trim().split('\n').pop());
  if (j.errors > 0) {
    fail(where, `${j.errors} of ${j.sent} requests failed (first: ${j.first_error}); command: ${r.cmd}`);
  }
  return { ...j, cmd: r.cmd, t0: r.t0, t1: r.t1, pid: r.pid };
}

function wrkUnit(v, u) {
  const x = Number(v);
  return u === 'us' ? x : u === 'ms' ? x * 1e3 : u === 's' ? x * 1e6 : u === 'm' ? x * 6e7 : NaN;
}

function parseWrk(out) {
  const num = (re) => Number((out.match(re) ?? [])[1] ?? 0);
  const r = {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    requests: num(/(\d+) requests in/),
    non2xx: num(/Non-2xx or 3xx responses:\s+(\d+)/),
    sock: { connect: 0, read: 0, write: 0, timeout: 0 },
    lat_us: {},
  };
  const se = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  if (se) r.sock = { connect: +se[1], read: +se[2], write: +se[3], timeout: +se[4] };
  for (const p of ['50', '90', '99']) {
    const m = out.match(new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm'));
    if (m) r.lat_us[`p${p}`] = wrkUnit(m[1], m[2]);
  }
  r.errors = r.non2xx + r.sock.connect + r.sock.read + r.sock.write + r.sock.timeout;
  return r;
}

async function wrk(where, url, conns, secs, bodyFile) {
  const lua = path.join(ROOT, 'bench', 'post.lua');
  const args = ['-t2', `-c${conns}`, `-d${secs}s`, '--latency', '-s', lua, url];
  const env = { BENCH_BODY_FILE: bodyFile };
  const r = await runTool('wrk', args, { env, cmd: cmdline('wrk', args.map((a) => (a === lua ? 'bench/post.lua' : a)), { BENCH_BODY_FILE: path.relative(ROOT, bodyFile) }) });
  if (r.code !== 0 || !/Requests\/sec/.test(r.stdout)) {
    throw new Error(`${where}: wrk failed (${r.code}): ${r.stderr.trim()}\n${r.stdout}`);
  }
  const j = parseWrk(r.stdout);
  if (j.errors > 0) {
    fail(where, `wrk: ${j.non2xx} non-2xx, socket errors ${JSON.stringify(j.sock)}; command: ${r.cmd}`);
  }
  return { ...j, cmd: r.cmd, t0: r.t0, t1: r.t1, pid: r.pid };
}

// --- HTTP helpers --------------------------------------------------------------

async function httpGet(url) {
  const r = await fetch(url);
  return { status: r.status, text: await r.text() };
}

async function httpPost(url, body) {
  const r = await fetch(url, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
  return { status: r.status, text: await r.text() };
}

// --- statistics ----------------------------------------------------------------

function median(xs) {
  const v = xs.filter((x) => x != null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// Prometheus histogram quantile (linear inside a bucket), from the
// difference of two scrapes.
function promHistogram(text, name) {
  const b = [];
  let count = 0;
  let sum = 0;
  for (const line of text.split('\n')) {
    let m = line.match(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\}\\s+([\\d.e+-]+)`));
    if (m) b.push({ le: m[1] === '+Inf' ? Infinity : Number(m[1]), n: Number(m[2]) });
    m = line.match(new RegExp(`^${name}_count\\s+([\\d.e+-]+)`));
    if (m) count = Number(m[1]);
    m = line.match(new RegExp(`^${name}_sum\\s+([\\d.e+-]+)`));
    if (m) sum = Number(m[1]);
  }
  return b.length ? { buckets: b, count, sum } : null;
}

function histDiff(a, b) {
  if (!b) return null;
  if (!a) return b;
  return {
    buckets: b.buckets.map((x, i) => ({ le: x.le, n: x.n - (a.buckets[i]?.n ?? 0) })),
    count: b.count - a.count,
    sum: b.sum - a.sum,
  };
}

function histQuantile(h, q) {
  if (!h || h.count <= 0) return null;
  const want = q * h.count;
  let prevLe = 0;
  let prevN = 0;
  for (const { le, n } of h.buckets) {
    if (n >= want) {
      if (le === Infinity) return prevLe;
      return prevLe + (le - prevLe) * ((want - prevN) / Math.max(n - prevN, 1));
    }
    prevLe = le;
    prevN = n;
  }
  return prevLe;
}

// --- bodies ------------------------------------------------------------------------

const BODIES = path.join(RESULTS, 'bodies');

function writeBody(name, obj) {
  fs.mkdirSync(BODIES, { recursive: true });
  const f = path.join(BODIES, `${name}.json`);
  fs.writeFileSync(f, `${JSON.stringify(obj)}\n`);
  return f;
}

const rel = (f) => path.relative(ROOT, f);

const CHAT = {
  model: 'bench:1b',
  messages: [{ role: 'user', content: 'Say hello.' }],
  stream: false,
  options: { num_predict: 8 },
};

// A JSON-schema answer long enough for any stream length: herd-sim's plain
// text stops at 64 tokens, an 8 x 8 x 8 array of strings goes on for about
// 2,000 tokens, and num_predict cuts it where we want. The body stays small
// (about 300 bytes), like a short chat request.
function longSchema() {
  const arr = (items) => ({ type: 'array', minItems: 8, maxItems: 8, items });
  return arr(arr(arr({ type: 'string' })));
}

// --- fleets ----------------------------------------------------------------------

// Fleet A: one instant herd-sim; herd (traces on) with one herd-node agent
// in front of it; nginx in front of the same herd-sim.
async function fleetInstant() {
  const slots = CFG.simSlots;
  const sim = await startSim('sim-instant', ['--time-scale', '0', '--no-default-models',
    '--model', 'bench:1b,size=1GB', '--context-length', '2048', '--vram-gb', '100000', '--memory-gb', '100000',
    '--num-parallel', String(slots), '--max-queue', '10000', '--keep-alive', '-1']);
  const herd = await startHerd('herd-a');
  const node = await startNode('node-a', herd, sim, { numParallel: slots });
  const nginx = await startNginx('nginx-a', sim);
  const targets = { direct: sim.url, nginx: nginx.url, herd: herd.url };
  // First requests: load the model, open the keep-alive pools.
  for (const [name, url] of Object.entries(targets)) {
    const r = await httpPost(`${url}/api/chat`, JSON.stringify(CHAT));
    if (r.status !== 200) throw new Error(`warm-up through ${name}: ${r.status} ${r.text}`);
  }
  return {
    sim, herd, node, nginx, targets,
    setup: [sim.cmd, herd.cmd, node.cmd, `${nginx.cmd}   # config: see nginx section`],
    nginxConf: fs.readFileSync(nginx.conf, 'utf8'),
  };
}

const TARGETS = ['direct', 'nginx', 'herd'];
// Rep r runs the targets in a rotated order so that none is always first.
const rotated = (r) => TARGETS.map((_, i) => TARGETS[(i + r) % TARGETS.length]);

// --- section 1: added latency -------------------------------------------------------

async function sectionLatency(A) {
  const body = writeBody('chat', CHAT);
  const runs = [];
  for (const rate of CFG.latencyRates) {
    for (let rep = 0; rep < CFG.reps; rep++) {
      for (const target of rotated(rep)) {
        const where = `latency ${target} ${rate}/s rep ${rep + 1}`;
        log(where);
        const j = await loadgen(where, ['rate', '--url', `${A.targets[target]}/api/chat`, '--body', `@${rel(body)}`,
          '--rate', String(rate), '--duration', String(CFG.latencySecs), '--warmup', String(CFG.latencyWarmup),
          '--conns', '64']);
        const a = j.t0 + CFG.latencyWarmup * 1000 + 200;
        runs.push({
          rate, rep, target, ...pick(j),
          herd_cpu_pct: target === 'herd' ? sampler.cpu(A.herd.pid, a, j.t1 - 100) : null,
          nginx_cpu_pct: target === 'nginx' ? sampler.cpu(A.nginx.workers[0], a, j.t1 - 100) : null,
          sim_cpu_pct: sampler.cpu(A.sim.pid, a, j.t1 - 100),
        });
      }
    }
  }
  // Per repetition, added = target - direct of the same repetition; the
  // table shows medians over repetitions.
  const rows = [];
  for (const rate of CFG.latencyRates) {
    const row = { rate };
    for (const t of TARGETS) {
      const rs = runs.filter((x) => x.rate === rate && x.target === t);
      row[t] = {
        p50: median(rs.map((x) => x.lat_us.p50)),
        p90: median(rs.map((x) => x.lat_us.p90)),
        p99: median(rs.map((x) => x.lat_us.p99)),
        achieved_rps: median(rs.map((x) => x.achieved_rps)),
        cpu_pct: median(rs.map((x) => x.herd_cpu_pct ?? x.nginx_cpu_pct)),
      };
    }
    for (const q of ['p50', 'p90', 'p99']) {
      const added = (t) => median([...Array(CFG.reps).keys()].map((rep) => {
        const x = runs.find((y) => y.rate === rate && y.rep === rep && y.target === t);
        const d = runs.find((y) => y.rate === rate && y.rep === rep && y.target === 'direct');
        return x && d ? x.lat_us[q] - d.lat_us[q] : null;
      }));
      const ratio = median([...Array(CFG.reps).keys()].map((rep) => {
        const f = (t) => runs.find((y) => y.rate === rate && y.rep === rep && y.target === t)?.lat_us[q];
        const h = f('herd') - f('direct');
        const n = f('nginx') - f('direct');
        return n > 0 ? h / n : null;
      }));
      row[`herd_added_${q}`] = added('herd');
      row[`nginx_added_${q}`] = added('nginx');
      row[`ratio_${q}`] = ratio;
    }
    rows.push(row);
  }
  return { rows, runs };
}

function pick(j) {
  return {
    cmd: j.cmd, sent: j.sent, ok: j.ok, errors: j.errors, first_error: j.first_error,
    lat_us: j.lat_us, ttfb_us: j.ttfb_us, send_lag_us: j.send_lag_us, inflight_peak: j.inflight_peak,
    achieved_rps: j.achieved_rps,
  };
}

// --- section 2: throughput ceiling --------------------------------------------------

async function sectionThroughput(A) {
  const body = writeBody('chat', CHAT);
  const runs = [];
  const order = ['nginx', 'herd', 'direct'];
  for (const conns of CFG.wrkConns) {
    for (let rep = 0; rep < CFG.reps; rep++) {
      for (let i = 0; i < order.length; i++) {
        const target = order[(i + rep) % order.length];
        const where = `throughput ${target} ${conns} conns rep ${rep + 1}`;
        log(where);
        const j = await wrk(where, `${A.targets[target]}/api/chat`, conns, CFG.wrkSecs, body);
        const a = j.t0 + 500;
        const b = j.t1 - 300;
        runs.push({
          conns, rep, target, ...j,
          cpu_pct: {
            herd: sampler.cpu(A.herd.pid, a, b),
            nginx: sampler.cpu(A.nginx.workers[0], a, b),
            sim: sampler.cpu(A.sim.pid, a, b),
            wrk: sampler.cpu(j.pid, a, b),
          },
          herd_wait_pct: target === 'herd' ? sampler.waitPct(A.herd.pid, a, b) : null,
        });
      }
    }
  }
  const rows = [];
  for (const conns of CFG.wrkConns) {
    const row = { conns };
    for (const t of order) {
      const rs = runs.filter((x) => x.conns === conns && x.target === t);
      row[t] = {
        rps: median(rs.map((x) => x.rps)),
        p50_us: median(rs.map((x) => x.lat_us.p50)),
        p99_us: median(rs.map((x) => x.lat_us.p99)),
        errors: rs.reduce((s, x) => s + x.errors, 0),
        non2xx: rs.reduce((s, x) => s + x.non2xx, 0),
        sock: rs.reduce((s, x) => s + x.sock.connect + x.sock.read + x.sock.write + x.sock.timeout, 0),
        proxy_cpu_pct: median(rs.map((x) => (t === 'herd' ? x.cpu_pct.herd : t === 'nginx' ? x.cpu_pct.nginx : null))),
        sim_cpu_pct: median(rs.map((x) => x.cpu_pct.sim)),
        wrk_cpu_pct: median(rs.map((x) => x.cpu_pct.wrk)),
        herd_wait_pct: median(rs.map((x) => x.herd_wait_pct)),
      };
    }
    row.herd_over_nginx = median([...Array(CFG.reps).keys()].map((rep) => {
      const f = (t) => runs.find((x) => x.conns === conns && x.rep === rep && x.target === t)?.rps;
      return f('herd') / f('nginx');
    }));
    rows.push(row);
  }
  return { rows, runs };
}

// --- section 4: time to first byte of a stream -----------------------------------

async function sectionTtfb(A) {
  const body = writeBody('chat-stream', { ...CHAT, stream: true });
  const runs = [];
  for (let rep = 0; rep < CFG.reps; rep++) {
    for (const target of rotated(rep)) {
      const where = `ttfb ${target} rep ${rep + 1}`;
      log(where);
      const j = await loadgen(where, ['rate', '--url', `${A.targets[target]}/api/chat`, '--body', `@${rel(body)}`,
        '--rate', String(CFG.ttfbRate), '--duration', String(CFG.ttfbSecs), '--warmup', '1', '--conns', '64']);
      runs.push({ rep, target, ...pick(j) });
    }
  }
  const row = {};
  for (const t of TARGETS) {
    const rs = runs.filter((x) => x.target === t);
    row[t] = { p50: median(rs.map((x) => x.ttfb_us.p50)), p99: median(rs.map((x) => x.ttfb_us.p99)) };
  }
  for (const q of ['p50', 'p99']) {
    for (const t of ['herd', 'nginx']) {
      row[`${t}_added_${q}`] = median([...Array(CFG.reps).keys()].map((rep) => {
        const f = (x) => runs.find((y) => y.rep === rep && y.target === x)?.ttfb_us[q];
        return f(t) - f('direct');
      }));
    }
  }
  return { row, runs };
}

// --- section 3: streaming ------------------------------------------------------------

async function sectionStreaming() {
  const n = CFG.streamSims;
  const slots = CFG.simSlots;
  const models = [...Array(CFG.streamModels).keys()].map((i) => `bench-${String.fromCharCode(97 + i)}:1b`);
  // 20 tokens/s: herd-sim's decode time is size / (bandwidth * 0.6), so
  // 1 GB at 33.333 GB/s is 50 ms a token (docs/herd-sim.md, profile.c).
  const bw = (1e9 / (0.6 * (1e9 / CFG.streamTps))).toFixed(4);
  const simArgs = ['--profile', 'rtx-4090', '--bandwidth-gbs', bw, '--no-default-models',
    ...models.flatMap((m) => ['--model', `${m},size=1GB`]),
    '--context-length', '2048', '--vram-gb', '100000', '--memory-gb', '100000',
    '--num-parallel', String(slots), '--max-loaded-models', String(models.length),
    '--max-queue', '20000', '--keep-alive', '-1'];
  const sims = [];
  for (let i = 0; i < n; i++) sims.push(await startSim(`sim-stream-${i}`, simArgs));
  // Load every model on every sim before the agents report, so that herd
  // sees them hot from the first heartbeat.
  await Promise.all(sims.flatMap((s) => models.map(async (m) => {
    const r = await httpPost(`${s.url}/api/chat`, JSON.stringify({ model: m, messages: [{ role: 'user', content: 'hi' }], stream: false, options: { num_predict: 1 } }));
    if (r.status !== 200) throw new Error(`loading ${m} on ${s.name}: ${r.status} ${r.text}`);
  })));
  const herd = await startHerd('herd-stream');
  const nodes = [];
  for (let i = 0; i < n; i++) nodes.push(await startNode(`node-stream-${i}`, herd, sims[i], { numParallel: slots }));
  // nginx over the same sims (round robin; every sim has every model):
  // the reference for what proxying a token costs on this machine.
  const nginx = await startNginx('nginx-stream', sims);
  const setup = [sims[0].cmd + '   # x4', herd.cmd, nodes[0].cmd + '   # one per sim',
    `${nginx.cmd}   # upstream: the 4 sims, proxy_buffering off`];

  const runs = [];
  for (const streams of CFG.streamLevels) {
    const ramp = Math.max(1, streams / 1000);
    const tokens = Math.round(CFG.streamTps * (ramp + CFG.streamHold));
    const files = models.map((m) => writeBody(`stream-${streams}-${m.split(':')[0]}`, {
      model: m, messages: [{ role: 'user', content: 'Describe the fleet.' }], stream: true,
      format: longSchema(), options: { num_predict: tokens },
    }));
    for (const target of ['direct', 'nginx', 'herd']) {
      const where = `streaming ${target} ${streams} streams`;
      log(`${where} (ramp ${ramp} s, ${tokens} tokens each)`);
      const urls = target === 'herd' ? [herd.url] : target === 'nginx' ? [nginx.url] : sims.map((s) => s.url);
      const peakBefore = await Promise.all(sims.map(async (s) => JSON.parse((await httpGet(`${s.url}/_sim/state`)).text).peak_active));
      const j = await loadgen(where, ['stream', ...urls.flatMap((u) => ['--url', `${u}/api/chat`]),
        ...files.flatMap((f) => ['--body', `@${rel(f)}`]), '--streams', String(streams), '--ramp', String(ramp),
        '--timeout', String(ramp + CFG.streamHold + 60)]);
      // The window in which every stream is open: after the ramp, before the
      // first stream ends.
      const a = j.t0_wall_ms + (ramp + 1) * 1000;
      const b = j.t0_wall_ms + (ramp + CFG.streamHold - 1) * 1000;
      const st = await Promise.all(sims.map(async (s) => JSON.parse((await httpGet(`${s.url}/_sim/state`)).text)));
      runs.push({
        streams, target, ramp_s: ramp, tokens_per_stream: tokens, cmd: j.cmd,
        ok: j.ok, errors: j.errors, first_error: j.first_error, tokens: j.tokens,
        active_peak: j.active_peak, lag_us: j.lag_us, ttfb_us: j.ttfb_us, tok_interval_us: j.tok_interval_us,
        tok_per_s: j.tok_interval_us.p50 ? 1e6 / j.tok_interval_us.p50 : null,
        window_s: [(a - j.t0_wall_ms) / 1000, (b - j.t0_wall_ms) / 1000],
        herd_cpu_pct: target === 'herd' ? sampler.cpu(herd.pid, a, b) : null,
        herd_wait_pct: target === 'herd' ? sampler.waitPct(herd.pid, a, b) : null,
        herd_us_per_token: target === 'herd' ? (sampler.cpu(herd.pid, a, b) / 100) / (streams * CFG.streamTps) * 1e6 : null,
        herd_rss: target === 'herd' ? sampler.rssMax(herd.pid, j.t0, j.t1) : null,
        nginx_cpu_pct: target === 'nginx' ? sampler.cpu(nginx.workers[0], a, b) : null,
        nginx_us_per_token: target === 'nginx' ? (sampler.cpu(nginx.workers[0], a, b) / 100) / (streams * CFG.streamTps) * 1e6 : null,
        nginx_rss: target === 'nginx' ? sampler.rssMax(nginx.workers[0], j.t0, j.t1) : null,
        herd_fds_after: target === 'herd' ? fdCount(herd.pid) : null,
        sims_cpu_pct: sims.map((s) => sampler.cpu(s.pid, a, b)),
        client_cpu_pct: sampler.cpu(j.pid, a, b),
        sim_peak_active: st.map((s, i) => ({ before: peakBefore[i], after: s.peak_active, rejected: s.counters?.rejected })),
      });
      await sleep(1000);
    }
  }
  const herdStatus = procStatus(herd.pid);
  for (const p of [...nodes, herd, nginx, ...sims]) await p.stop();
  return { runs, setup, herd_status_end: herdStatus };
}

// --- section 5: heartbeats from 1,000 nodes; section 6: idle ---------------------------

async function sectionHeartbeat() {
  const sim = await startSim('sim-hb', ['--time-scale', '0', '--no-default-models', '--model', 'bench:1b,size=1GB',
    '--context-length', '2048', '--vram-gb', '100000', '--memory-gb', '100000', '--num-parallel', '64',
    '--keep-alive', '-1']);
  const herd = await startHerd('herd-hb');
  const warm = CFG.hbInterval + 1;
  const chatStart = warm + CFG.hbSecs + 1;
  const total = chatStart + CFG.hbChatSecs + 2;
  const hbArgs = ['heartbeat', '--url', `${herd.url}/heartbeat`, '--nodes', String(CFG.hbNodes),
    '--interval', String(CFG.hbInterval), '--duration', String(total), '--ollama-host', sim.url,
    '--num-parallel', '64', '--fresh-conn'];
  log(`heartbeat: ${CFG.hbNodes} nodes every ${CFG.hbInterval} s for ${total} s`);
  const hbP = loadgen('heartbeat flood', hbArgs);
  // Scoring over 1,000 nodes: chat requests while every node is registered.
  await sleep(chatStart * 1000);
  const st = JSON.parse((await httpGet(`${herd.url}/fleet/status`)).text);
  const before = (await httpGet(`${herd.url}/metrics`));
  const chatBody = writeBody('chat', CHAT);
  const chat = await loadgen('heartbeat: chat over 1,000 nodes', ['rate', '--url', `${herd.url}/api/chat`,
    '--body', `@${rel(chatBody)}`, '--rate', String(CFG.hbChatRate), '--duration', String(CFG.hbChatSecs),
    '--conns', '16']);
  const after = (await httpGet(`${herd.url}/metrics`));
  const hb = await hbP;
  const t0 = hb.t0_wall_ms;
  const a = t0 + warm * 1000;
  const b = t0 + (warm + CFG.hbSecs) * 1000;
  const name = 'herd_scoring_seconds';
  const h0 = before.status === 200 ? promHistogram(before.text, name) : null;
  const h1 = after.status === 200 ? promHistogram(after.text, name) : null;
  const d = histDiff(h0, h1);
  const out = {
    cmd: hb.cmd, chat_cmd: chat.cmd, sent: hb.sent, ok: hb.ok, errors: hb.errors, first_error: hb.first_error,
    hb_lat_us: hb.lat_us,
    nodes_registered: st.fleet?.nodes_total, nodes_online: st.fleet?.nodes_online,
    window_s: [warm, warm + CFG.hbSecs],
    herd_cpu_pct: sampler.cpu(herd.pid, a, b),
    herd_rss_max: sampler.rssMax(herd.pid, a, b),
    herd_rss_end: sampler.rssLast(herd.pid, b),
    chat: pick(chat),
    metrics_available: h1 !== null,
    scoring: d ? {
      source: `/metrics ${name} (difference of two scrapes around the chat run; quantiles interpolated inside buckets)`,
      decisions: d.count,
      mean_us: d.count ? (d.sum / d.count) * 1e6 : null,
      p50_us: histQuantile(d, 0.5) * 1e6,
      p99_us: histQuantile(d, 0.99) * 1e6,
      buckets: d.buckets,
    } : null,
  };
  // The same nodes over keep-alive connections (an agent that keeps its
  // connection to herd open between heartbeats).
  const kaSecs = CFG.hbKeepSecs;
  log(`heartbeat: keep-alive connections for ${kaSecs + 1} s`);
  const kaArgs = ['heartbeat', '--url', `${herd.url}/heartbeat`, '--nodes', String(CFG.hbNodes),
    '--interval', String(CFG.hbInterval), '--duration', String(kaSecs + 1.5), '--ollama-host', sim.url,
    '--num-parallel', '64', '--conns', '64'];
  const ka = await loadgen('heartbeat flood, keep-alive', kaArgs);
  out.keepalive = {
    cmd: ka.cmd, sent: ka.sent, ok: ka.ok, errors: ka.errors, hb_lat_us: ka.lat_us,
    window_s: [1, 1 + kaSecs],
    herd_cpu_pct: sampler.cpu(herd.pid, ka.t0_wall_ms + 1000, ka.t0_wall_ms + (1 + kaSecs) * 1000),
    herd_rss_max: sampler.rssMax(herd.pid, ka.t0_wall_ms, ka.t1),
  };
  if (!h1) results.notes.push(`herd has no ${name} on /metrics: scoring time not measured`);
  if (out.nodes_registered !== CFG.hbNodes) fail('heartbeat', `herd lists ${out.nodes_registered} nodes, expected ${CFG.hbNodes}`);
  await herd.stop();
  await sim.stop();
  return { ...out, setup: [sim.cmd, herd.cmd] };
}

async function sectionIdle() {
  const sim = await startSim('sim-idle', ['--time-scale', '0']);
  const herd = await startHerd('herd-idle');
  const node = await startNode('node-idle', herd, sim, { numParallel: 1 });
  const settle = 5;
  await sleep(settle * 1000);
  const a = Date.now();
  log(`idle: ${CFG.idleSecs} s`);
  await sleep(CFG.idleSecs * 1000);
  const b = Date.now();
  sampler.sampleAll();
  const r = {
    window_s: CFG.idleSecs,
    herd: { cpu_pct: sampler.cpu(herd.pid, a - 300, b + 300), ...procStatus(herd.pid) },
    node: { cpu_pct: sampler.cpu(node.pid, a - 300, b + 300), ...procStatus(node.pid) },
    sim: { cpu_pct: sampler.cpu(sim.pid, a - 300, b + 300), ...procStatus(sim.pid) },
    setup: [sim.cmd, herd.cmd, node.cmd],
  };
  await node.stop();
  await herd.stop();
  await sim.stop();
  return r;
}

// --- machine facts ---------------------------------------------------------------------

function sh(cmd) {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}

function machine() {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = (cpuinfo.match(/^model name\s*:\s*(.*)$/m) ?? [])[1] ?? os.cpus()[0]?.model;
  return {
    cpu_model: model,
    cores: Number(sh('nproc')),
    kernel: `${os.type()} ${os.release()} ${os.machine?.() ?? ''}`.trim(),
    memory_gib: +(os.totalmem() / 2 ** 30).toFixed(1),
    os: (fs.existsSync('/etc/os-release') ? (fs.readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]*)/m) ?? [])[1] : '') ?? '',
    virt: sh('systemd-detect-virt 2>/dev/null || true') || null,
    loadavg_start: os.loadavg().map((x) => +x.toFixed(2)),
    ulimit_n: sh('ulimit -n'),
    clk_tck: CLK_TCK,
    versions: {
      herd: sh(`${path.join(BIN, 'herd')} --version`),
      'herd-sim': sh(`${path.join(BIN, 'herd-sim')} --version`),
      'herd-node': sh(`${path.join(BIN, 'herd-node')} --version`),
      nginx: sh(`${findExe('nginx')} -v`).replace(/^nginx version: /, ''),
      wrk: (sh('wrk -v').match(/^wrk (\S+)/m) ?? [])[1] ?? sh('wrk -v').split('\n')[0],
      libcurl: sh('curl-config --version 2>/dev/null || pkg-config --modversion libcurl'),
      libmicrohttpd: sh('pkg-config --modversion libmicrohttpd'),
      libuv: sh('pkg-config --modversion libuv'),
      sqlite: sh('pkg-config --modversion sqlite3'),
      node: process.version,
      cc: sh('cc --version | head -1'),
    },
    git: {
      commit: sh(`git -C ${ROOT} rev-parse --short HEAD 2>/dev/null`),
      dirty: sh(`git -C ${ROOT} status --porcelain --untracked-files=no 2>/dev/null | wc -l`) !== '0',
    },
    build: `${path.relative(ROOT, BIN)}: cmake -DCMAKE_BUILD_TYPE=Release -DHERD_TESTS=OFF (no sanitizers)`,
  };
}

// --- report ------------------------------------------------------------------------------

const f1 = (x, d = 1) => (x == null || !Number.isFinite(x) ? '–' : x.toFixed(d));
const us = (x) => (x == null ? '–' : x >= 10000 ? `${(x / 1000).toFixed(1)} ms` : `${x.toFixed(0)} µs`);
const usSigned = (x) => (x == null ? '–' : `${x >= 0 ? '+' : '−'}${us(Math.abs(x))}`);
const mb = (x) => (x == null || !Number.isFinite(x) ? '–' : `${(x / 2 ** 20).toFixed(1)} MiB`);

function verdicts() {
  const s = results.sections;
  const v = [];
  const add = (what, budget, measured, ok) => v.push({ what, budget, measured, verdict: ok == null ? 'n/a' : ok ? 'meets' : 'MISSES' });
  const L = s.latency?.rows.find((r) => r.rate === 1000);
  if (L) {
    add('Added latency at 1,000 req/s, p50', '≤ 0.2 ms', usSigned(L.herd_added_p50), L.herd_added_p50 <= 200);
    add('Added latency at 1,000 req/s, p99', '≤ 1 ms', usSigned(L.herd_added_p99), L.herd_added_p99 <= 1000);
    add('Added latency vs nginx at 1,000 req/s (p50 / p99)', '≤ 1.5× nginx',
      `${f1(L.ratio_p50, 2)}× / ${f1(L.ratio_p99, 2)}×`, L.ratio_p50 <= 1.5 && L.ratio_p99 <= 1.5);
  }
  const T = s.throughput?.rows;
  if (T?.length) {
    const best = Math.max(...T.map((r) => r.herd.rps ?? 0));
    add('Small requests through herd, traces on, 2 cores', '≥ 10,000 req/s', `${f1(best, 0)} req/s (best of ${T.map((r) => r.conns).join('/')} conns)`, best >= 10000);
  }
  const S = s.streaming?.runs?.find((r) => r.target === 'herd' && r.streams === 5000);
  if (S) {
    // herd's CPU is only the budget's figure when herd kept up; when its
    // loop waited for a CPU most of the window (the machine is saturated by
    // the sims and the client), the CPU it got says little, so the cost per
    // token of the least-starved level is extrapolated to 5,000 streams.
    const kept = S.herd_wait_pct != null && S.herd_wait_pct < 25;
    const base = s.streaming.runs.filter((r) => r.target === 'herd' && r.herd_us_per_token != null)
      .sort((a, b) => (a.herd_wait_pct < 25) === (b.herd_wait_pct < 25) ? b.streams - a.streams : (a.herd_wait_pct < 25 ? -1 : 1))[0];
    const cores = base ? (base.herd_us_per_token * 5000 * CFG.streamTps) / 1e6 : null;
    const nginxTok = base ? s.streaming.runs.find((r) => r.target === 'nginx' && r.streams === base.streams && r.nginx_us_per_token != null) : null;
    if (kept) {
      add('5,000 streams at 20 tok/s: herd CPU', '< 1 core', `${f1(S.herd_cpu_pct, 0)} % of a core`, S.herd_cpu_pct < 100);
    } else {
      add('5,000 streams at 20 tok/s: herd CPU', '< 1 core',
        `not measurable here: herd got ${f1(S.herd_cpu_pct, 0)} % and waited ${f1(S.herd_wait_pct, 0)} % of the window for a CPU (lag p50 ${us(S.lag_us.p50)}); at ${base?.streams} streams it cost ${f1(base?.herd_us_per_token, 1)} µs a token, i.e. ≈ ${f1(cores, 2)} cores at 5,000${nginxTok ? ` (nginx in the same run: ${f1(nginxTok.nginx_us_per_token, 1)} µs a token at ${nginxTok.streams}, ≈ ${f1(nginxTok.nginx_us_per_token * 5000 * CFG.streamTps / 1e6, 2)} cores)` : ''}`,
        cores != null ? cores < 1 : null);
    }
    add('5,000 streams at 20 tok/s: herd RSS', '< 150 MB', mb(S.herd_rss), S.herd_rss < 150e6);
  }
  const F = s.ttfb?.row;
  if (F) add('Time to first byte added to a stream, p50', '≤ 0.3 ms', usSigned(F.herd_added_p50), F.herd_added_p50 <= 300);
  const H = s.heartbeat;
  if (H) {
    add('1,000 nodes heartbeating every 5 s: herd CPU (new connection each / keep-alive)', '< 5 % of a core', `${f1(H.herd_cpu_pct, 1)} % / ${f1(H.keepalive?.herd_cpu_pct, 1)} %`, H.herd_cpu_pct < 5);
    add('Scoring decision over 1,000 nodes, p99', '≤ 50 µs', H.scoring ? `${f1(H.scoring.p99_us, 1)} µs (bucketed)` : 'not exposed', H.scoring ? H.scoring.p99_us <= 50 : null);
  }
  const I = s.idle;
  if (I) {
    add('Idle coordinator RSS', '≤ 10 MB', mb(I.herd.vmrss), I.herd.vmrss <= 10e6);
    add('Idle node agent RSS', '≤ 5 MB', mb(I.node.vmrss), I.node.vmrss <= 5e6);
    add('Idle node agent CPU', '≤ 0.5 % of a core', `${f1(I.node.cpu_pct, 2)} %`, I.node.cpu_pct <= 0.5);
  }
  return v;
}

function markdown() {
  const m = results.machine;
  const s = results.sections;
  const L = [];
  const p = (...x) => L.push(...x);
  p(`# herd benchmark${results.partial ? ' (partial run)' : ''}`, '');
  p(`${results.started.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')} · ${m.cpu_model}, ${m.cores} cores, ${m.memory_gib} GiB · ${m.kernel} · ${m.os}${m.virt ? ` (${m.virt})` : ''}`, '');
  p(`Wall time ${f1(results.wall_s, 0)} s. Load average at start ${m.loadavg_start?.join(' ')}, at end ${results.loadavg_end?.join(' ')} (the machine is shared: compare the columns of one table, which were measured in the same run, rather than absolute times).`, '');
  p('| Software | Version |', '|---|---|');
  for (const [k, v] of Object.entries(m.versions ?? {})) p(`| ${k} | ${String(v).split('\n')[0]} |`);
  p(`| herd source | ${m.git?.commit}${m.git?.dirty ? ' + uncommitted changes' : ''} |`, `| build | ${m.build} |`, '');
  if (failures.length) {
    p('## FAILURES', '');
    for (const f of failures) p(`- **${f.where}**: ${f.msg.replace(/\n/g, '\n  ')}`);
    p('');
  }
  const v = verdicts();
  if (v.length) {
    p('## Against the budget (architecture.md §8)', '', '| What | Budget | Measured | |', '|---|---|---|---|');
    for (const x of v) p(`| ${x.what} | ${x.budget} | ${x.measured} | ${x.verdict} |`);
    p('');
  }
  if (s.latency) {
    p('## 1. Added latency: small non-streaming /api/chat, instant herd-sim', '');
    p(`Open-loop constant rate (bench/loadgen, wrk2-style: latency counted from each request's scheduled send time), ${CFG.latencySecs} s after a ${CFG.latencyWarmup} s warm-up, 64 keep-alive connections at most; median of ${CFG.reps} repetitions, the three targets interleaved in each. "Added" is target − direct within the same repetition, then the median.`, '');
    p('| rate | target | achieved req/s | p50 | p90 | p99 | added p50 | added p90 | added p99 | proxy CPU |', '|---|---|---|---|---|---|---|---|---|---|');
    for (const r of s.latency.rows) {
      for (const t of TARGETS) {
        const x = r[t];
        p(`| ${r.rate}/s | ${t} | ${f1(x.achieved_rps, 0)} | ${us(x.p50)} | ${us(x.p90)} | ${us(x.p99)} | ${t === 'direct' ? '' : usSigned(r[`${t}_added_p50`])} | ${t === 'direct' ? '' : usSigned(r[`${t}_added_p90`])} | ${t === 'direct' ? '' : usSigned(r[`${t}_added_p99`])} | ${t === 'direct' ? '' : `${f1(x.cpu_pct, 0)} %`} |`);
      }
      p(`| ${r.rate}/s | **herd-added / nginx-added** | | ${f1(r.ratio_p50, 2)}× | ${f1(r.ratio_p90, 2)}× | ${f1(r.ratio_p99, 2)}× | | | | |`);
    }
    for (const r of s.latency.rows) {
      for (const t of ['nginx', 'herd']) {
        if (r[t].achieved_rps != null && r[t].achieved_rps < 0.98 * r.rate) {
          p('', `At ${r.rate}/s ${t} sustained only ${f1(r[t].achieved_rps, 0)} req/s: it fell behind, and its percentiles are the queue that built up (the requests are counted from their due time).`);
        }
      }
    }
    p('', 'Commands (one repetition; ports are this run\'s):', '', '```');
    for (const rate of CFG.latencyRates) for (const t of TARGETS) p(s.latency.runs.find((x) => x.rate === rate && x.target === t).cmd);
    p('```', '');
  }
  if (s.throughput) {
    p('## 2. Throughput ceiling: wrk, closed loop, 2 threads', '');
    p(`wrk -t2 for ${CFG.wrkSecs} s per run, POST body from bench/post.lua; median req/s of ${CFG.reps} repetitions (order rotated); errors are summed over the repetitions (non-2xx + socket errors). Everything shares the 2 cores: wrk, the proxy and herd-sim.`, '');
    p('| connections | target | req/s | p50 | p99 | non-2xx | socket errors | proxy CPU | herd-sim CPU | wrk CPU | herd waiting for a CPU |', '|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of s.throughput.rows) {
      for (const t of ['direct', 'nginx', 'herd']) {
        const x = r[t];
        p(`| ${r.conns} | ${t} | ${f1(x.rps, 0)} | ${us(x.p50_us)} | ${us(x.p99_us)} | ${x.non2xx} | ${x.sock} | ${t === 'direct' ? '' : `${f1(x.proxy_cpu_pct, 0)} %`} | ${f1(x.sim_cpu_pct, 0)} % | ${f1(x.wrk_cpu_pct, 0)} % | ${t === 'herd' ? `${f1(x.herd_wait_pct, 0)} %` : ''} |`);
      }
      p(`| ${r.conns} | **herd / nginx** | ${f1(r.herd_over_nginx, 2)}× | | | | | | | | |`);
    }
    p('', 'Commands:', '', '```');
    for (const c of CFG.wrkConns) for (const t of ['direct', 'nginx', 'herd']) p(s.throughput.runs.find((x) => x.conns === c && x.target === t).cmd);
    p('```', '');
  }
  if (s.streaming) {
    p(`## 3. Streaming: concurrent streams at ${CFG.streamTps} tokens/s across ${CFG.streamSims} herd-sim nodes`, '');
    p(`Each stream asks for ${CFG.streamTps} × (ramp + ${CFG.streamHold} s) tokens; streams start evenly over the ramp (1 s per 1,000), so all are open together for ${CFG.streamHold} s. herd CPU is measured over that window from /proc/<pid>/stat; RSS is the largest /proc sample during the run. Lag: each NDJSON line's \`created_at\` (herd-sim's wall clock when it emitted the token, ns) against the client's wall clock when the line arrived; direct runs give the floor that herd-sim and the client themselves add on this machine. One run per level (the per-token samples are many).`, '');
    p('| streams | target | ok / failed | open at once | tok/s per stream (p50) | lag p50 | lag p99 | lag max | TTFB p50 | TTFB p99 | proxy CPU | proxy CPU per token | herd waiting for a CPU | proxy RSS (max) |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of s.streaming.runs) {
      const h = r.target === 'herd', n = r.target === 'nginx';
      const cpu = h ? r.herd_cpu_pct : n ? r.nginx_cpu_pct : null;
      const tok = h ? r.herd_us_per_token : n ? r.nginx_us_per_token : null;
      const rss = h ? r.herd_rss : n ? r.nginx_rss : null;
      p(`| ${r.streams} | ${r.target} | ${r.ok} / ${r.errors} | ${r.active_peak} | ${f1(r.tok_per_s, 2)} | ${us(r.lag_us.p50)} | ${us(r.lag_us.p99)} | ${us(r.lag_us.max)} | ${us(r.ttfb_us.p50)} | ${us(r.ttfb_us.p99)} | ${cpu != null ? `${f1(cpu, 0)} %` : ''} | ${tok != null ? `${f1(tok, 1)} µs` : ''} | ${h ? `${f1(r.herd_wait_pct, 0)} %` : ''} | ${rss != null ? mb(rss) : ''} |`);
    }
    p('', '"herd waiting for a CPU": the share of the window herd\'s loop thread was runnable but not running (/proc/<pid>/schedstat): when it is large the machine, not herd, is the limit. "CPU per token": the proxy\'s CPU time in the window (herd\'s process, or nginx\'s one worker) divided by the tokens the streams should have carried (streams × 20/s). On loopback a proxy\'s write also pays for the client socket\'s receive path (softirq in the writer\'s context), so nginx in the same run is the floor for this machine. The TTFB of these streams includes herd-sim\'s modelled prompt evaluation, which depends on its prefix cache (warm after the direct run), so section 4 is the TTFB comparison.');
    p('', 'herd-sim CPU during the window (4 sims, % of a core each): ' +
      s.streaming.runs.map((r) => `${r.streams} ${r.target}: ${r.sims_cpu_pct.map((x) => f1(x, 0)).join('/')}`).join('; ') + '.',
      '', 'The client (bench/loadgen) in the same window: ' +
      s.streaming.runs.map((r) => `${r.streams} ${r.target}: ${f1(r.client_cpu_pct, 0)} %`).join('; ') + '.', '');
    p('Set-up and commands:', '', '```', ...s.streaming.setup);
    for (const r of s.streaming.runs) p(r.cmd);
    p('```', '');
  }
  if (s.ttfb) {
    const r = s.ttfb.row;
    p('## 4. Time to first byte of a stream', '');
    p(`Streaming /api/chat (8 tokens) to the instant herd-sim at ${CFG.ttfbRate} req/s for ${CFG.ttfbSecs} s, open loop; TTFB is the time from the scheduled send to the first body byte; median of ${CFG.reps} repetitions.`, '');
    p('| target | TTFB p50 | TTFB p99 | added p50 | added p99 |', '|---|---|---|---|---|');
    for (const t of TARGETS) p(`| ${t} | ${us(r[t].p50)} | ${us(r[t].p99)} | ${t === 'direct' ? '' : usSigned(r[`${t}_added_p50`])} | ${t === 'direct' ? '' : usSigned(r[`${t}_added_p99`])} |`);
    p('', 'The 20 tokens/s streams of section 3 also give a TTFB (it includes herd-sim\'s modelled prompt time).', '', '```');
    for (const t of TARGETS) p(s.ttfb.runs.find((x) => x.target === t).cmd);
    p('```', '');
  }
  if (s.heartbeat) {
    const h = s.heartbeat;
    p(`## 5. Heartbeats: ${CFG.hbNodes} synthetic nodes every ${CFG.hbInterval} s`, '');
    p(`bench/loadgen heartbeat posts ollama-herd's heartbeat payload (reference §2.5, about 1.4 KB: node-0000..node-${String(CFG.hbNodes - 1).padStart(4, '0')}, 2 models loaded, 7 available) for every node once per interval, spread evenly (${CFG.hbNodes / CFG.hbInterval}/s), first on a new connection each time, as herd-node does today (its client sends \`Connection: close\`), later over keep-alive connections. herd CPU over ${CFG.hbSecs} s after the first full round; then, with the nodes still reporting, /api/chat at ${CFG.hbChatRate} req/s for ${CFG.hbChatSecs} s so that every decision scores all ${CFG.hbNodes} nodes.`, '');
    p('| figure | value |', '|---|---|');
    p(`| heartbeats sent / ok / failed | ${h.sent} / ${h.ok} / ${h.errors} |`);
    p(`| nodes registered in herd | ${h.nodes_registered} (${h.nodes_online} online) |`);
    p(`| heartbeat round trip p50 / p99 | ${us(h.hb_lat_us.p50)} / ${us(h.hb_lat_us.p99)} |`);
    p(`| herd CPU, heartbeats only, a new connection per heartbeat (${CFG.hbSecs} s) | ${f1(h.herd_cpu_pct, 1)} % of a core |`);
    if (h.keepalive) p(`| herd CPU, heartbeats only, keep-alive connections (${CFG.hbKeepSecs} s; ${h.keepalive.ok} / ${h.keepalive.errors} ok / failed) | ${f1(h.keepalive.herd_cpu_pct, 1)} % of a core |`);
    p(`| herd RSS (max / at end of window) | ${mb(h.herd_rss_max)} / ${mb(h.herd_rss_end)} |`);
    if (h.scoring) {
      p(`| scoring decisions measured | ${h.scoring.decisions} |`);
      p(`| scoring time per decision, mean / p50 / p99 | ${f1(h.scoring.mean_us, 1)} / ${f1(h.scoring.p50_us, 1)} / ${f1(h.scoring.p99_us, 1)} µs |`);
    } else {
      p('| scoring time | not exposed by this herd |');
    }
    p(`| /api/chat over ${CFG.hbNodes} nodes, p50 / p99 (end to end) | ${us(h.chat.lat_us.p50)} / ${us(h.chat.lat_us.p99)} |`);
    const one = results.scoring_one_node;
    if (one) p(`| for comparison: scoring over 1 node (sections 1, 2, 4; ${one.decisions} decisions), mean / p50 / p99 | ${f1(one.mean_us, 1)} / ${f1(one.p50_us, 1)} / ${f1(one.p99_us, 1)} µs |`);
    if (h.scoring) p('', `Scoring time source: ${h.scoring.source}. Bucket counts: ${h.scoring.buckets.filter((b) => b.n > 0).map((b) => `≤${b.le}s: ${b.n}`).join(', ')}.`);
    p('', '```', ...h.setup, h.cmd, h.chat_cmd, ...(h.keepalive ? [h.keepalive.cmd] : []), '```', '');
  }
  if (s.idle) {
    const i = s.idle;
    p(`## 6. Idle footprint after ${CFG.idleSecs} s`, '');
    p(`herd (traces on), one herd-node (heartbeat every 5 s) and its herd-sim, no requests; CPU over ${CFG.idleSecs} s after a 5 s settle, RSS from /proc/<pid>/status at the end.`, '');
    p('| process | CPU | VmRSS | VmHWM | RssAnon (private heap, stacks) | RssFile (mapped libraries) | Pss | threads |', '|---|---|---|---|---|---|---|---|');
    for (const [k, x] of [['herd', i.herd], ['herd-node', i.node], ['herd-sim (for reference)', i.sim]]) {
      p(`| ${k} | ${f1(x.cpu_pct, 2)} % | ${mb(x.vmrss)} | ${mb(x.vmhwm)} | ${mb(x.rss_anon)} | ${mb(x.rss_file)} | ${mb(x.pss)} | ${x.threads} |`);
    }
    p('', 'The budget counts RSS (VmRSS), which includes the pages of shared libraries (libcurl, OpenSSL, SQLite, libmicrohttpd, avahi) mapped by the process; RssAnon is what the process itself allocated.');
    p('', '```', ...i.setup, '```', '');
  }
  if (s.latency || s.throughput || s.ttfb) {
    p('## Set-up of sections 1, 2 and 4', '', '```', ...results.setupA, '```', '', 'nginx.conf:', '', '```nginx', results.nginxConf.trim(), '```', '');
  }
  if (results.notes.length) {
    p('## Notes', '');
    for (const n of results.notes) p(`- ${n}`);
    p('');
  }
  return `${L.join('\n')}\n`;
}

let finished = false;
function finish(code) {
  if (finished) return;
  finished = true;
  clearInterval(sampler.timer);
  results.wall_s = (Date.now() - T_START) / 1000;
  results.loadavg_end = os.loadavg().map((x) => +x.toFixed(2));
  results.exit_status = failures.length ? 1 : code;
  fs.mkdirSync(RESULTS, { recursive: true });
  const jf = path.join(RESULTS, `${OUTBASE}.json`);
  const mf = path.join(RESULTS, `${OUTBASE}.md`);
  fs.writeFileSync(jf, `${JSON.stringify(results, null, 1)}\n`);
  try {
    fs.writeFileSync(mf, markdown());
  } catch (e) {
    fs.writeFileSync(mf, `# herd benchmark\n\nThe report could not be rendered: ${e.stack}\n\nSee ${OUTBASE}.json.\n`);
    failures.push({ where: 'report', msg: String(e) });
  }
  log(`wrote ${rel(mf)} and ${rel(jf)}`);
  if (failures.length) {
    console.error(`\nbench: FAILED (${failures.length} problem${failures.length > 1 ? 's' : ''}):`);
    for (const f of failures) console.error(`  - ${f.where}: ${f.msg.split('\n')[0]}`);
    console.error(`bench: logs of this run are kept in ${RUN}`);
    process.exit(1);
  }
  fs.rmSync(RUN, { recursive: true, force: true });
  process.exit(code);
}

// --- main ---------------------------------------------------------------------------------

async function main() {
  for (const f of [path.join(BIN, 'herd'), path.join(BIN, 'herd-sim'), path.join(BIN, 'herd-node'), LOADGEN]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: run bench/run, which builds it`);
  }
  results.machine = machine();
  log(`run directory ${RUN}; sections: ${[...only].join(', ')}${Q ? ' (quick)' : ''}`);
  if (only.has('latency') || only.has('throughput') || only.has('ttfb')) {
    const A = await fleetInstant();
    results.setupA = A.setup;
    results.nginxConf = A.nginxConf;
    if (only.has('latency')) results.sections.latency = await sectionLatency(A);
    if (only.has('ttfb')) results.sections.ttfb = await sectionTtfb(A);
    if (only.has('throughput')) results.sections.throughput = await sectionThroughput(A);
    const m = await httpGet(`${A.herd.url}/metrics`);
    const h = m.status === 200 ? promHistogram(m.text, 'herd_scoring_seconds') : null;
    if (h) {
      results.scoring_one_node = { decisions: h.count, mean_us: (h.sum / h.count) * 1e6, p50_us: histQuantile(h, 0.5) * 1e6, p99_us: histQuantile(h, 0.99) * 1e6 };
    }
    results.herd_a_end = { ...procStatus(A.herd.pid), fds: fdCount(A.herd.pid) };
    for (const p of [A.nginx, A.node, A.herd, A.sim]) await p.stop();
  }
  if (only.has('streaming')) results.sections.streaming = await sectionStreaming();
  const hb = only.has('heartbeat') ? sectionHeartbeat() : null;
  // The idle processes run beside the heartbeat flood: their CPU time is
  // their own, whatever else the machine does.
  const idle = only.has('idle') ? sectionIdle() : null;
  if (hb) results.sections.heartbeat = await hb;
  if (idle) results.sections.idle = await idle;
  await stopAll();
}

if (opt.render) {
  // Re-renders the Markdown of an earlier run from its JSON.
  const j = JSON.parse(fs.readFileSync(opt.render, 'utf8'));
  Object.assign(results, j);
  Object.assign(CFG, j.config);
  failures.splice(0, failures.length, ...j.failures);
  fs.writeFileSync(opt.render.replace(/\.json$/, '.md'), markdown());
  fs.rmSync(RUN, { recursive: true, force: true });
  process.exit(0);
}

main().then(() => finish(0), (e) => abort(e.stack ?? String(e)));
