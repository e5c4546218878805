// mDNS for the e2e suite: a network namespace of the test's own with a
// private dbus-daemon and avahi-daemon, so that herd and herd-node can
// publish and browse for real while no multicast packet ever reaches the
// machine's interfaces (shared/design/mdns-testing.md).
//
//   import { canUseNetns, netnsSkipReason, startMdnsNamespace } from './lib/mdns.mjs';
//   test('discovery', { skip: netnsSkipReason() ?? false }, async () => {
//     const ns = await startMdnsNamespace();
//     try {
//       const p = ns.exec([`${binDir()}/herd`, '--port', '0'], { stdio: 'pipe' });
//       ...                       // or spawn(ns.wrap(argv)[0], ns.wrap(argv).slice(1), { env: { ...process.env, ...ns.env } })
//     } finally {
//       await ns.stop();
//     }
//   });
//
// The namespace (herd-mdns-<pid>-<n>) holds lo and a veth pair va/vb with
// 10.99.0.1/24 and 10.99.0.2/24; avahi-daemon is allowed on va and vb only,
// IPv4. Everything started here is tracked by pid; stop() kills it (and any
// process still inside the namespace: ours by construction), deletes the
// namespace and its directory. A namespace not stopped is torn down when
// the process exits.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const NS_ADDRS = ['10.99.0.1', '10.99.0.2'];

const live = new Set(); // namespaces not yet stopped
let counter = 0;
let netnsCheck = null; // cached canUseNetns() answer

function findProg(name) {
  const dirs = [...(process.env.PATH || '').split(':'), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return null;
}

function run(argv, { quiet = false } = {}) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  if (!quiet && r.status !== 0) {
    throw new Error(`${argv.join(' ')} failed (status ${r.status}${r.error ? `, ${r.error.message}` : ''}): ${(r.stderr || '').trim()}`);
  }
  return r;
}

/**
 * Whether this process may create network namespaces: {ok: true} or
 * {ok: false, reason}. Needs root, `ip` and a kernel and container that
 * allow `ip netns add`; avahi-daemon, dbus-daemon and unshare must be
 * installed (scripts/bootstrap). The answer is cached.
 */
export function canUseNetns() {
  if (netnsCheck) return netnsCheck;
  const no = (reason) => (netnsCheck = { ok: false, reason });
  if (typeof process.geteuid !== 'function' || process.geteuid() !== 0) return no('not root (ip netns needs root)');
  const ip = findProg('ip');
  if (!ip) return no('no ip command (apt-get install iproute2)');
  for (const p of ['avahi-daemon', 'dbus-daemon', 'unshare']) {
    if (!findProg(p)) return no(`${p} is not installed (run scripts/bootstrap)`);
  }
  const probe = `herd-mdns-probe-${process.pid}`;
  const r = run([ip, 'netns', 'add', probe], { quiet: true });
  if (r.status !== 0) return no(`ip netns add was refused: ${(r.stderr || r.error?.message || '').trim()}`);
  run([ip, 'netns', 'del', probe], { quiet: true });
  return (netnsCheck = { ok: true });
}

/** null when namespaces can be used, else the reason (for node:test's skip). */
export function netnsSkipReason() {
  const c = canUseNetns();
  return c.ok ? null : `mDNS namespace tests skipped: ${c.reason}`;
}

function dbusConf(dir) {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${dir}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/> <allow own="*"/> <allow send_type="method_call"/>
    <allow send_destination="*"/> <allow receive_sender="*"/>
  </policy>
</busconfig>
`;
}

const AVAHI_CONF = `[server]
host-name=herd-e2e-host
use-ipv4=yes
use-ipv6=no
allow-interfaces=va,vb
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
`;

function netnsNames(ip) {
  const r = run([ip, 'netns', 'list'], { quiet: true });
  return new Set((r.stdout || '').split('\n').map((l) => l.split(' ')[0]).filter(Boolean));
}

/** Pids of every process inside the namespace (all ours). */
function netnsPids(ip, name) {
  const r = run([ip, 'netns', 'pids', name], { quiet: true });
  return (r.stdout || '').split('\n').map((l) => Number(l.trim())).filter((n) => Number.isInteger(n) && n > 1 && n !== process.pid);
}

function killPid(pid, sig) {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

/** Resolves when out (accumulated output) matches re, rejects on exit or timeout. */
function waitOutput(proc, re, timeoutMs, what, logs) {
  return new Promise((resolve, reject) => {
    let timer;
    const check = () => {
      if (re.test(logs())) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code, signal) => {
      cleanup();
      reject(new Error(`${what} exited (code ${code}, signal ${signal}) before it was ready:\n${logs()}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      proc.stdout?.off('data', check);
      proc.stderr?.off('data', check);
      proc.off('exit', onExit);
    };
    timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what} not ready within ${timeoutMs} ms:\n${logs()}`));
    }, timeoutMs);
    proc.stdout?.on('data', check);
    proc.stderr?.on('data', check);
    proc.on('exit', onExit);
    check();
  });
}

function startDaemon(argv, env, what) {
  const proc = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  proc.on('error', (e) => { out += `\n[spawn error] ${e.message}`; });
  const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  return { proc, exited, logs: () => out, what };
}

async function stopDaemon(d, timeoutMs = 10000) {
  if (!d || d.proc.exitCode !== null || d.proc.signalCode !== null) return;
  killPid(d.proc.pid, 'SIGTERM');
  let timer;
  const timedOut = new Promise((r) => { timer = setTimeout(() => r(null), timeoutMs); });
  const res = await Promise.race([d.exited, timedOut]);
  clearTimeout(timer);
  if (!res) {
    killPid(d.proc.pid, 'SIGKILL');
    await d.exited;
  }
}

/** Synchronous last resort (process 'exit'): kill by pid, delete the namespace. */
function teardownSync(ns) {
  for (const p of [...ns.procs, ...ns.daemons]) killPid(p.pid, 'SIGKILL');
  for (const pid of netnsPids(ns.ip, ns.name)) killPid(pid, 'SIGKILL');
  run([ns.ip, 'netns', 'del', ns.name], { quiet: true });
  fs.rmSync(ns.dir, { recursive: true, force: true });
}

process.on('exit', () => {
  for (const ns of live) teardownSync(ns);
  live.clear();
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    for (const ns of live) teardownSync(ns);
    live.clear();
    process.exit(130);
  });
}

/**
 * Creates the namespace, starts dbus-daemon and avahi-daemon in it and
 * resolves once avahi-daemon has completed its start-up:
 * {name, dir, addrs, env, exec(argv, opts), wrap(argv), logs(), stop()}.
 *  - env: {DBUS_SYSTEM_BUS_ADDRESS} to give every process that uses mDNS.
 *  - exec(argv, opts): spawns argv inside the namespace (child_process.spawn
 *    options; opts.env is added to process.env and env); the process is
 *    killed by stop().
 *  - wrap(argv): ['ip', 'netns', 'exec', name, ...argv], to spawn yourself.
 *  - logs(): what dbus-daemon and avahi-daemon printed.
 *  - stop(): kills our processes by pid (daemons with SIGTERM first),
 *    deletes the namespace and its directory. Idempotent.
 */
export async function startMdnsNamespace({ timeoutMs = 20000 } = {}) {
  const check = canUseNetns();
  if (!check.ok) throw new Error(`cannot run mDNS in a network namespace: ${check.reason}`);
  const ip = findProg('ip');
  const avahi = findProg('avahi-daemon');
  const dbus = findProg('dbus-daemon');
  const unshare = findProg('unshare');

  const taken = netnsNames(ip);
  let name;
  do {
    name = `herd-mdns-${process.pid}-${counter++}`;
  } while (taken.has(name));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-mdns-'));
  const ns = { name, dir, ip, procs: new Set(), daemons: [], stopped: false };
  run([ip, 'netns', 'add', name]);
  live.add(ns);
  const inNs = (argv) => [ip, 'netns', 'exec', name, ...argv];
  const env = { DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${dir}/bus` };
  const childEnv = { ...process.env, ...env };
  let dbusD = null;
  let avahiD = null;

  async function stop() {
    if (ns.stopped) return;
    ns.stopped = true;
    const gone = [...ns.procs].map((p) => new Promise((r) => {
      if (p.exitCode !== null || p.signalCode !== null) r();
      else p.once('exit', r);
    }));
    for (const p of ns.procs) killPid(p.pid, 'SIGKILL');
    await Promise.all(gone);
    await stopDaemon(avahiD);
    await stopDaemon(dbusD);
    for (const pid of netnsPids(ip, name)) killPid(pid, 'SIGKILL');
    run([ip, 'netns', 'del', name], { quiet: true });
    fs.rmSync(dir, { recursive: true, force: true });
    live.delete(ns);
  }

  try {
    fs.writeFileSync(path.join(dir, 'dbus.conf'), dbusConf(dir));
    fs.writeFileSync(path.join(dir, 'avahi.conf'), AVAHI_CONF);
    // lo, and a veth pair whose two ends both live in the namespace.
    run(inNs(['ip', 'link', 'set', 'lo', 'up']));
    run(inNs(['ip', 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb']));
    run(inNs(['ip', 'addr', 'add', `${NS_ADDRS[0]}/24`, 'dev', 'va']));
    run(inNs(['ip', 'addr', 'add', `${NS_ADDRS[1]}/24`, 'dev', 'vb']));
    run(inNs(['ip', 'link', 'set', 'va', 'up']));
    run(inNs(['ip', 'link', 'set', 'vb', 'up']));

    dbusD = startDaemon(inNs([dbus, `--config-file=${dir}/dbus.conf`, '--nofork', '--nopidfile', '--print-address=1']),
      childEnv, 'dbus-daemon');
    ns.daemons.push(dbusD.proc);
    await waitOutput(dbusD.proc, /unix:path=/, timeoutMs, 'dbus-daemon', dbusD.logs);

    // A private /run in a mount namespace of its own: avahi-daemon's pid
    // file and socket live there, apart from any other avahi-daemon.
    avahiD = startDaemon(inNs([unshare, '--mount', '--propagation', 'private', 'sh', '-c',
      'mount -t tmpfs herd-mdns /run && exec "$0" -f "$1" --no-drop-root --no-chroot --no-rlimits',
      avahi, path.join(dir, 'avahi.conf')]), childEnv, 'avahi-daemon');
    ns.daemons.push(avahiD.proc);
    await waitOutput(avahiD.proc, /Server startup complete/, timeoutMs, 'avahi-daemon', avahiD.logs);
  } catch (e) {
    await stop();
    throw e;
  }

  function exec(argv, opts = {}) {
    const p = spawn(ip, ['netns', 'exec', name, ...argv], { ...opts, env: { ...childEnv, ...(opts.env || {}) } });
    ns.procs.add(p);
    p.on('exit', () => ns.procs.delete(p));
    return p;
  }

  return {
    name,
    dir,
    addrs: [...NS_ADDRS],
    env,
    exec,
    wrap: (argv) => inNs(argv),
    logs: () => `--- dbus-daemon ---\n${dbusD.logs()}\n--- avahi-daemon ---\n${avahiD.logs()}`,
    stop,
  };
}
