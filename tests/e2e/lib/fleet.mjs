// A whole fleet on loopback for the coordinator's e2e tests: herd-sim
// servers (the Ollamas), one herd-node agent beside each, and herd, the
// coordinator they report to. Everything is a real process; the agents
// heartbeat every 0.2 s so that tests wait for state, never for time.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binDir, get, startSim, waitFor } from './harness.mjs';

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

/** A fresh directory for herd's latency.db and logs. */
export function tmpDir(prefix = 'herd-fleet-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Starts the coordinator: {url, port, dataDir, stop(), kill(), logs()}. */
export async function startHerd({ args = [], env = {}, dataDir = tmpDir() } = {}) {
  const h = await startSim({
    bin: 'herd',
    args: ['--data-dir', dataDir, '--no-mdns', ...args],
    // The VRAM fallback (on by default, as in ollama-herd) answers a cold
    // model with another loaded one; most tests want the model they ask
    // for, so it is off unless a test turns it on.
    // Auto-pull likewise (herd-sim "downloads" any name not starting with
    // "missing"): tests of unknown models would otherwise get one.
    env: { FLEET_ENV_FILE: '/nonexistent', FLEET_VRAM_FALLBACK: 'false', FLEET_AUTO_PULL: 'false', ...env },
  });
  return { ...h, dataDir, db: path.join(dataDir, 'latency.db') };
}

/**
 * Starts herd-node in front of a sim, reporting to herd. Resolves once
 * herd accepted its first heartbeat (the agent's ready file).
 */
export async function startNode({ herdUrl, simUrl, id, numParallel = 1, interval = 0.2, args = [], env = {}, waitReady = true, timeoutMs = 20000 }) {
  const exe = path.join(binDir(), 'herd-node');
  if (!fs.existsSync(exe)) throw new Error(`${exe} does not exist (build it first)`);
  const tmp = tmpDir('herd-node-');
  const ready = path.join(tmp, 'ready');
  const argv = ['--node-id', id, '--ollama-host', simUrl, '--data-dir', tmp,
    '--heartbeat-interval', String(interval), '--num-parallel', String(numParallel),
    '--ready-file', ready, ...(herdUrl ? ['--router-url', herdUrl] : []), ...args];
  const childEnv = { ...process.env, FLEET_ENV_FILE: '/nonexistent', ...env };
  for (const k of Object.keys(childEnv)) if (k.startsWith('OLLAMA_')) delete childEnv[k];
  const proc = spawn(exe, argv, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  let exitInfo = null;
  const exited = new Promise((resolve) => proc.on('close', (code, signal) => {
    exitInfo = { code, signal };
    live.delete(proc);
    resolve(exitInfo);
  }));
  if (waitReady) {
    await waitFor(() => {
      if (exitInfo) throw new Error(`herd-node exited early (${JSON.stringify(exitInfo)}):\n${out}`);
      return fs.existsSync(ready);
    }, { timeoutMs, what: `herd-node ${id} accepted by herd` }).catch((e) => {
      throw new Error(`${e.message}\n--- herd-node log ---\n${out}`);
    });
  }
  return {
    id, proc, logs: () => out, exited,
    async stop() {
      if (!exitInfo) proc.kill('SIGTERM');
      const r = await exited;
      fs.rmSync(tmp, { recursive: true, force: true });
      return r;
    },
    kill() { if (!exitInfo) proc.kill('SIGKILL'); return exited; },
  };
}

/** GET /fleet/status as JSON. */
export async function fleetStatus(herd) {
  const r = await get(herd.url, '/fleet/status');
  return JSON.parse(r.body);
}

/**
 * herd + one herd-sim and one herd-node per entry of nodes:
 * [{id, profile, numParallel, simArgs}]. Resolves when every node is
 * online in /fleet/status with its models listed.
 */
export async function startFleet({ nodes, herdArgs = [], herdEnv = {}, timeScale = '0.01' }) {
  const herd = await startHerd({ args: herdArgs, env: herdEnv });
  const sims = [];
  const agents = [];
  try {
    for (const n of nodes) {
      const np = n.numParallel ?? 1;
      const sim = await startSim({
        args: ['--profile', n.profile ?? 'rtx-4090', '--time-scale', String(n.timeScale ?? timeScale),
          '--num-parallel', String(np), ...(n.simArgs ?? [])],
      });
      sims.push(sim);
      agents.push(await startNode({ herdUrl: herd.url, simUrl: sim.url, id: n.id, numParallel: np }));
    }
    await waitFor(async () => {
      const st = await fleetStatus(herd);
      return nodes.every((n) => st.nodes.some((x) => x.node_id === n.id && x.status === 'online' &&
        x.ollama.models_available.length > 0));
    }, { timeoutMs: 20000, what: 'every node online with its models' });
  } catch (e) {
    for (const a of agents) await a.kill();
    for (const s of sims) await s.kill?.();
    await herd.kill?.();
    throw e;
  }
  const byId = Object.fromEntries(nodes.map((n, i) => [n.id, { sim: sims[i], agent: agents[i] }]));
  return {
    herd, sims, agents, byId,
    /** Waits until /fleet/status satisfies pred(status). */
    async until(pred, what = 'fleet state') {
      return waitFor(async () => pred(await fleetStatus(herd)), { timeoutMs: 20000, what });
    },
    async stop() {
      for (const a of agents) {
        const r = await a.stop();
        if (r.code !== 0) throw new Error(`herd-node exited ${JSON.stringify(r)}:\n${a.logs()}`);
      }
      for (const s of sims) await s.stop();
      await herd.stop();
      fs.rmSync(herd.dataDir, { recursive: true, force: true });
    },
  };
}
