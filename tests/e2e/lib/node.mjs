// Helpers for the herd-node e2e tests: start the coordinator (`herd`) and
// the agent (`herd-node`) on loopback, read /fleet/status, and a stand-in
// "coordinator" that accepts connections and drops them (to count the
// agent's attempts while the real one is away).
//
// Processes started here are tracked by pid and killed when the test
// process exits, whatever happened to the test (harness.mjs does the same
// for its own).

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import assert from 'node:assert/strict';

import { binDir, startSim, get, parseJson, waitFor } from './harness.mjs';

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

/** Environment for our children: no OLLAMA_* or FLEET_* leaking in from
 * the shell, no env file, sanitizers strict. */
function isolatedEnv(env) {
  const out = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('OLLAMA_') && !k.startsWith('FLEET_')) out[k] = v;
  }
  out.FLEET_ENV_FILE = '/nonexistent/herd-e2e-env';
  if (!out.ASAN_OPTIONS) out.ASAN_OPTIONS = 'detect_leaks=1:abort_on_error=0';
  if (!out.UBSAN_OPTIONS) out.UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1';
  return { ...out, ...env };
}

/** True when the coordinator binary was built (tests skip without it). */
export function haveHerd() {
  return fs.existsSync(path.join(binDir(), 'herd'));
}

/**
 * Starts the coordinator on 127.0.0.1 (port 0 = any; a number to reuse
 * one), mDNS off, its own data directory. Resolves once its ready file
 * says where it listens: {url, port, stop(), kill(), logs()}.
 */
export async function startHerd({ port = 0, args = [], env = {}, dataDir } = {}) {
  const dir = dataDir || fs.mkdtempSync(path.join(os.tmpdir(), 'herd-coord-'));
  const h = await startSim({
    bin: 'herd',
    hostArgs: false,
    args: ['--host', '127.0.0.1', '--port', String(port), '--data-dir', dir, '--no-mdns', ...args],
    env: isolatedEnv(env),
  });
  h.dataDir = dir;
  return h;
}

/** GET /fleet/status as an object. */
export async function fleetStatus(base) {
  const r = await get(base, '/fleet/status');
  assert.equal(r.status, 200, `GET /fleet/status: ${r.status} ${r.body}`);
  return parseJson(r);
}

/** The node's entry in /fleet/status, or undefined. */
export async function fleetNode(base, nodeId) {
  const s = await fleetStatus(base);
  return s.nodes.find((n) => n.node_id === nodeId);
}

/**
 * Starts herd-node. Does not wait: the ready file only appears once a
 * coordinator accepted a heartbeat (see waitReady()).
 * Returns {proc, pid, nodeId, dataDir, readyFile, logs(), waitReady(),
 * waitLog(re), stop(), kill(), exited}.
 */
export function startNode({ nodeId, routerUrl, ollamaUrl, interval = 0.2, args = [], env = {} } = {}) {
  const exe = path.join(binDir(), 'herd-node');
  if (!fs.existsSync(exe)) throw new Error(`${exe} does not exist (build it first)`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-node-'));
  const readyFile = path.join(tmp, 'ready');
  const dataDir = path.join(tmp, 'data');
  const argv = ['--node-id', nodeId, '--heartbeat-interval', String(interval),
    '--data-dir', dataDir, '--ready-file', readyFile, '--log-level', 'debug'];
  if (ollamaUrl) argv.push('--ollama-host', ollamaUrl);
  if (routerUrl) argv.push('--router-url', routerUrl);
  argv.push(...args);
  const proc = spawn(exe, argv, { env: isolatedEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let out = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.on('close', (code, signal) => {
      exitInfo = { code, signal };
      live.delete(proc);
      resolve(exitInfo);
    });
  });
  proc.on('exit', () => live.delete(proc));
  const logs = () => out;
  const describe = () => `herd-node ${argv.join(' ')}`;

  async function waitLog(re, { timeoutMs = 10000 } = {}) {
    return waitFor(() => {
      if (exitInfo) throw new Error(`herd-node exited (code ${exitInfo.code}, signal ${exitInfo.signal})\n${out}`);
      return re.test(out);
    }, { timeoutMs, what: `herd-node log line ${re}\n--- log ---\n${out}` });
  }
  async function waitReady({ timeoutMs = 15000 } = {}) {
    await waitFor(() => {
      if (exitInfo) throw new Error(`exited before ready (code ${exitInfo.code})\n${out}`);
      return fs.existsSync(readyFile) && fs.readFileSync(readyFile, 'utf8') === 'ok\n';
    }, { timeoutMs, what: `${describe()} ready file\n--- log ---\n${out}` });
  }
  /** SIGTERM; resolves the exit info once it is gone (asserts nothing). */
  async function stop({ timeoutMs = 10000 } = {}) {
    if (!exitInfo) {
      try { process.kill(proc.pid, 'SIGTERM'); } catch { /* gone */ }
    }
    let timer;
    const res = await Promise.race([exited, new Promise((r) => { timer = setTimeout(() => r(null), timeoutMs); })]);
    clearTimeout(timer);
    if (!res) {
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
      await exited;
      throw new Error(`herd-node did not exit within ${timeoutMs} ms of SIGTERM\n${out}`);
    }
    return res;
  }
  async function kill() {
    if (!exitInfo) {
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await exited;
  }
  function cleanup() {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return { proc, pid: proc.pid, nodeId, dataDir, readyFile, logs, waitLog, waitReady, stop, kill, exited, cleanup, exitInfo: () => exitInfo };
}

/** Runs herd-node to completion (for the override subcommand). */
export function runNode(args, { env = {}, timeoutMs = 10000 } = {}) {
  const exe = path.join(binDir(), 'herd-node');
  return new Promise((resolve, reject) => {
    const p = spawn(exe, args, { env: isolatedEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => {
      try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
      reject(new Error(`herd-node ${args.join(' ')} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    p.on('exit', () => live.delete(p));
    p.on('error', (e) => { clearTimeout(t); reject(e); });
    p.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * A TCP listener on 127.0.0.1:port that accepts every connection and
 * drops it at once: a coordinator that is "there" but never answers.
 * {attempts(), close()}.
 */
export async function startDropper(port) {
  let n = 0;
  const sockets = new Set();
  const srv = net.createServer((s) => {
    n++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.destroy();
  });
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', resolve);
  });
  return {
    attempts: () => n,
    close: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      srv.close(() => resolve());
    }),
  };
}

/** Count of lines matching re in text. */
export function countLines(text, re) {
  return text.split('\n').filter((l) => re.test(l)).length;
}

// ---------------------------------------------------------------------------
// mDNS: a private avahi-daemon in a network namespace of the test's own

/** The full path of prog on PATH (or in /usr/sbin, /sbin), or null. */
function which(prog) {
  const dirs = (process.env.PATH || '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  for (const d of dirs) {
    const p = path.join(d, prog);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* not here */ }
  }
  return null;
}

/** A process whose output is collected: {proc, pid, logs(), waitLog(re),
 * stop() (SIGTERM, resolves the exit info), kill(), exited}. */
function spawnTracked(argv, env, label) {
  const proc = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let out = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  proc.on('error', (e) => { out += `\n[spawn error] ${e.message}`; });
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.on('close', (code, signal) => {
      exitInfo = { code, signal };
      live.delete(proc);
      resolve(exitInfo);
    });
  });
  proc.on('exit', () => live.delete(proc));
  const logs = () => out;
  return {
    proc,
    pid: proc.pid,
    logs,
    exited,
    exitInfo: () => exitInfo,
    waitLog: (re, { timeoutMs = 15000 } = {}) => waitFor(() => {
      if (exitInfo) throw new Error(`${label} exited (code ${exitInfo.code}, signal ${exitInfo.signal})\n${out}`);
      return re.test(out);
    }, { timeoutMs, what: `${label} log line ${re}\n--- ${label} log ---\n${out}` }),
    async stop({ timeoutMs = 10000 } = {}) {
      if (!exitInfo) {
        try { process.kill(proc.pid, 'SIGTERM'); } catch { /* gone */ }
      }
      let timer;
      const res = await Promise.race([exited, new Promise((r) => { timer = setTimeout(() => r(null), timeoutMs); })]);
      clearTimeout(timer);
      if (!res) {
        try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
        await exited;
        throw new Error(`${label} did not exit within ${timeoutMs} ms of SIGTERM\n${out}`);
      }
      return res;
    },
    async kill() {
      if (!exitInfo) {
        try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
      }
      await exited;
    },
  };
}

/**
 * A network namespace whose only interfaces are lo and a veth pair
 * (10.97.0.1, 10.97.0.2), with a private dbus-daemon and avahi-daemon, so
 * that no multicast ever leaves it. Needs root, ip, dbus-daemon and
 * avahi-daemon; resolves {skip: reason} otherwise. Else {name, dir,
 * run(bin, args) (a binary of the build, inside), close()}.
 */
export async function mdnsNamespace() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { skip: 'not root (ip netns needs it)' };
  const ip = which('ip');
  const dbus = which('dbus-daemon');
  const avahi = which('avahi-daemon');
  const unshare = which('unshare');
  if (!ip || !dbus || !avahi || !unshare) return { skip: 'ip, unshare, dbus-daemon or avahi-daemon is missing (scripts/bootstrap installs them)' };
  const name = `herd-node-e2e-${process.pid}`;
  try {
    execFileSync(ip, ['netns', 'add', name], { stdio: 'ignore' });
  } catch {
    return { skip: '`ip netns add` was refused' };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-node-mdns-'));
  const procs = [];
  const inNs = (cmd) => execFileSync(ip, ['netns', 'exec', name, ...cmd], { stdio: 'ignore' });
  const env = { ...isolatedEnv({}), DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${dir}/bus` };
  async function close() {
    for (const p of procs.reverse()) await p.kill();
    try {
      const pids = execFileSync(ip, ['netns', 'pids', name], { encoding: 'utf8' }).split('\n').filter(Boolean);
      for (const pid of pids) {
        try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
      }
    } catch { /* no namespace */ }
    try { execFileSync(ip, ['netns', 'del', name], { stdio: 'ignore' }); } catch { /* gone */ }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  try {
    inNs([ip, 'link', 'set', 'lo', 'up']);
    inNs([ip, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb']);
    inNs([ip, 'addr', 'add', '10.97.0.1/24', 'dev', 'va']);
    inNs([ip, 'addr', 'add', '10.97.0.2/24', 'dev', 'vb']);
    inNs([ip, 'link', 'set', 'va', 'up']);
    inNs([ip, 'link', 'set', 'vb', 'up']);
    fs.writeFileSync(path.join(dir, 'dbus.conf'), `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${dir}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/> <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`);
    fs.writeFileSync(path.join(dir, 'avahi.conf'), `[server]
host-name=herd-node-e2e
use-ipv4=yes
use-ipv6=no
allow-interfaces=va,vb
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
`);
    const d = spawnTracked([ip, 'netns', 'exec', name, dbus, `--config-file=${dir}/dbus.conf`,
      '--nofork', '--nopidfile', '--print-address=1'], env, 'dbus-daemon');
    procs.push(d);
    await d.waitLog(/unix:path=/);
    // A mount namespace of its own with a tmpfs on /run: avahi's pid file
    // and socket stay private.
    const a = spawnTracked([ip, 'netns', 'exec', name, unshare, '-m', '--propagation', 'private', 'sh', '-c',
      'mount -t tmpfs herd-node-e2e /run && exec "$0" "$@"', avahi, '-f', path.join(dir, 'avahi.conf'),
      '--no-drop-root', '--no-chroot', '--no-rlimits'], env, 'avahi-daemon');
    procs.push(a);
    await a.waitLog(/Server startup complete/);
  } catch (e) {
    await close();
    throw e;
  }
  return {
    name,
    dir,
    /** Runs a binary of the build inside the namespace. */
    run(bin, args, extraEnv = {}) {
      const p = spawnTracked([ip, 'netns', 'exec', name, path.join(binDir(), bin), ...args], { ...env, ...extraEnv }, bin);
      procs.push(p);
      return p;
    },
    close,
  };
}

/** Reads "host:port" from a ready file once it is there. */
export async function readyPort(file, what) {
  const txt = await waitFor(() => {
    try {
      const c = fs.readFileSync(file, 'utf8');
      return c.endsWith('\n') && c;
    } catch {
      return false;
    }
  }, { timeoutMs: 15000, what });
  return Number(/:(\d+)\n$/.exec(txt)[1]);
}
