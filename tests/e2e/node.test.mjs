// herd-node end to end: a real herd-sim (the node's Ollama), a real herd
// (the coordinator) and the agent, all on loopback, heartbeats every
// 0.2 s. Checks what the coordinator sees in /fleet/status, Ollama going
// down and coming back, the drain on SIGTERM, a coordinator restart on the
// same port, the token, the capacity override file, and the CLI.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startSim, get, post, parseJson, waitFor } from './lib/harness.mjs';
import {
  haveHerd, startHerd, startNode, runNode, fleetNode, startDropper, countLines,
  mdnsNamespace, readyPort,
} from './lib/node.mjs';

const INTERVAL = 0.2;
const skip = haveHerd() ? false : 'the coordinator (herd) is not built';
const ARCH = { x64: 'x86_64', arm64: 'aarch64' }[process.arch] || process.arch;

async function loadModel(sim, model) {
  const r = await post(sim.url, '/api/generate', { model, prompt: 'hi', stream: false });
  assert.equal(r.status, 200, `load ${model}: ${r.body}`);
}

async function stopAll(...procs) {
  for (const p of procs) {
    if (p) await p.stop();
  }
}

test('the coordinator sees the node\'s metrics, models, num_parallel and override', { skip }, async () => {
  const sim = await startSim({ args: ['--time-scale', '0'] });
  const herd = await startHerd();
  const node = startNode({ nodeId: 'e2e-metrics', routerUrl: herd.url, ollamaUrl: sim.url,
    interval: INTERVAL, args: ['--num-parallel', '3'] });
  try {
    await loadModel(sim, 'llama3.2:3b');
    const tags = parseJson(await get(sim.url, '/api/tags')).models.map((m) => m.name);
    const version = parseJson(await get(sim.url, '/api/version')).version;
    await node.waitReady();
    const n = await waitFor(async () => {
      const e = await fleetNode(herd.url, 'e2e-metrics');
      return e && e.ollama.models_loaded.some((m) => m.name === 'llama3.2:3b') && e;
    }, { what: 'the node with llama3.2:3b loaded in /fleet/status' });

    assert.equal(n.status, 'online');
    assert.equal(n.num_parallel, 3);
    assert.equal(n.hardware.arch, ARCH);
    assert.ok(n.hardware.cores_physical >= 1);
    assert.ok(n.hardware.memory_total_gb > 0);
    assert.ok(n.cpu.utilization_pct >= 0 && n.cpu.utilization_pct <= 100);
    assert.ok(n.memory.total_gb > 0 && n.memory.available_gb <= n.memory.total_gb);
    assert.ok(['normal', 'warn', 'critical'].includes(n.memory.pressure));
    assert.ok(n.disk && n.disk.total_gb > 0, `disk: ${JSON.stringify(n.disk)}`);
    assert.ok(['unknown', 'nominal', 'warning'].includes(n.thermal.state));
    assert.ok(Math.abs(n.timestamp - Date.now() / 1000) < 60, `timestamp ${n.timestamp}`);
    assert.deepEqual([...n.ollama.models_available].sort(), [...tags].sort());
    const m = n.ollama.models_loaded.find((x) => x.name === 'llama3.2:3b');
    assert.ok(m.size_gb > 0);
    assert.equal(m.parameter_size, '3.2B');
    assert.equal(m.quantization, 'Q4_K_M');
    assert.ok(m.context_length > 0);
    assert.equal(n.ollama_healthy, true);
    assert.equal(n.ollama_version, version);
    assert.equal(n.agent_version.length > 0, true);
    assert.equal(n.connection_failures, 0);
    assert.equal(n.capacity, null);
    // Heartbeats from loopback: the coordinator reaches Ollama on localhost.
    assert.equal(n.ollama_url, `http://localhost:${sim.port}`);

    // The override file, written by the subcommand, applied at the next
    // heartbeat; "clear" undoes it.
    const ov = await runNode(['override', 'paused', '--node-id', 'e2e-metrics',
      '--data-dir', node.dataDir, '--hours', '1']);
    assert.equal(ov.code, 0, ov.stderr);
    await waitFor(async () => {
      const e = await fleetNode(herd.url, 'e2e-metrics');
      return e.capacity && e.capacity.mode === 'paused' && e.capacity.override_active === true &&
        e.capacity.reason === 'manual_override';
    }, { what: 'capacity paused by the override' });
    const clr = await runNode(['override', 'clear', '--node-id', 'e2e-metrics', '--data-dir', node.dataDir]);
    assert.equal(clr.code, 0, clr.stderr);
    await waitFor(async () => (await fleetNode(herd.url, 'e2e-metrics')).capacity === null,
      { what: 'capacity back to null after clear' });

    // The JSONL log.
    const jsonl = path.join(node.dataDir, 'logs', 'herd-node.jsonl');
    const lines = fs.readFileSync(jsonl, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => /node e2e-metrics, Ollama/.test(l.msg)), 'startup line in the JSONL log');
  } finally {
    const ex = await node.stop();
    assert.deepEqual(ex, { code: 0, signal: null }, node.logs());
    node.cleanup();
    await stopAll(herd, sim);
  }
});

test('Ollama going down is reported as unhealthy, and coming back as healthy', { skip }, async () => {
  let sim = await startSim({ args: ['--time-scale', '0'] });
  const herd = await startHerd();
  const node = startNode({ nodeId: 'e2e-ollama', routerUrl: herd.url, ollamaUrl: sim.url, interval: INTERVAL });
  try {
    await loadModel(sim, 'llama3.2:3b');
    await node.waitReady();
    await waitFor(async () => {
      const e = await fleetNode(herd.url, 'e2e-ollama');
      return e && e.ollama_healthy === true && e.ollama.models_loaded.length === 1;
    }, { what: 'healthy node with one model' });
    const port = sim.port;
    await sim.stop();
    const down = await waitFor(async () => {
      const e = await fleetNode(herd.url, 'e2e-ollama');
      return e && e.ollama_healthy === false && e;
    }, { what: 'ollama_healthy false after herd-sim stopped' });
    assert.equal(down.status, 'online', 'the node itself still reports');
    assert.deepEqual(down.ollama.models_loaded, []);
    assert.deepEqual(down.ollama.models_available, []);
    assert.equal(down.ollama_version, null);

    sim = await startSim({ hostArgs: false, args: ['--host', '127.0.0.1', '--port', String(port), '--time-scale', '0'] });
    await waitFor(async () => {
      const e = await fleetNode(herd.url, 'e2e-ollama');
      return e.ollama_healthy === true && e.ollama.models_available.length > 0;
    }, { what: 'healthy again once herd-sim is back' });
    // Said once each way, not once per heartbeat.
    const log = node.logs();
    assert.equal(countLines(log, /Ollama at .* is not answering/), 1, log);
    assert.equal(countLines(log, /Ollama at .* answers again/), 1, log);
  } finally {
    const ex = await node.stop();
    assert.deepEqual(ex, { code: 0, signal: null }, node.logs());
    node.cleanup();
    await stopAll(herd, sim);
  }
});

test('SIGTERM drains: offline at once, capacity state saved, exit 0', { skip }, async () => {
  const sim = await startSim({ args: ['--time-scale', '0'] });
  const herd = await startHerd();
  const node = startNode({ nodeId: 'e2e-drain', routerUrl: herd.url, ollamaUrl: sim.url,
    interval: INTERVAL, args: ['--learn-capacity'] });
  try {
    await node.waitReady();
    const before = await fleetNode(herd.url, 'e2e-drain');
    assert.equal(before.status, 'online');
    assert.equal(before.capacity.mode, 'learning', 'the learner reports, routable, during its first week');
    const ex = await node.stop();
    assert.deepEqual(ex, { code: 0, signal: null }, node.logs());
    // No polling: the drain message went out before the process exited.
    const after = await fleetNode(herd.url, 'e2e-drain');
    assert.equal(after.status, 'offline');
    assert.equal(after.reason, 'drained');
    assert.ok(fs.existsSync(path.join(node.dataDir, 'herd-capacity-e2e-drain.json')), 'capacity state saved');
    assert.match(node.logs(), /coordinator took the drain message/);
  } finally {
    await node.kill();
    node.cleanup();
    await stopAll(herd, sim);
  }
});

test('a coordinator restarted on the same port has the node back within two intervals', { skip }, async () => {
  const sim = await startSim({ args: ['--time-scale', '0'] });
  let herd = await startHerd();
  const port = herd.port;
  const node = startNode({ nodeId: 'e2e-restart', routerUrl: herd.url, ollamaUrl: sim.url, interval: INTERVAL });
  try {
    await node.waitReady();
    await herd.kill();
    // Something that takes connections and drops them: count the node's
    // attempts, so that we know it failed at least twice.
    const dropper = await startDropper(port);
    await waitFor(() => dropper.attempts() >= 2, { what: 'two failed heartbeats' });
    await dropper.close();
    herd = await startHerd({ port });
    const readyAt = Date.now();
    const back = await waitFor(async () => {
      const e = await fleetNode(herd.url, 'e2e-restart');
      return e && e.status === 'online' && { e, at: Date.now() };
    }, { what: 'the node back in the restarted coordinator' });
    // When the coordinator first heard from it, by its own clock.
    const firstSeenAt = back.at - back.e.first_seen_age_s * 1000;
    if (process.env.HERD_E2E_VERBOSE) console.log(`back ${Math.round(firstSeenAt - readyAt)} ms after ready`);
    assert.ok(firstSeenAt - readyAt <= 2 * INTERVAL * 1000 + 20,
      `first heartbeat ${Math.round(firstSeenAt - readyAt)} ms after the coordinator was ready`);

    // The outage was logged once, the recovery once, with the count.
    const log = node.logs();
    assert.equal(countLines(log, /coordinator unreachable: /), 1, log);
    assert.equal(countLines(log, /coordinator reachable again after \d+ failures/), 1, log);
    const failed = Number(/reachable again after (\d+) failures/.exec(log)[1]);
    assert.ok(failed >= 2, `failures ${failed}`);
    await waitFor(async () => (await fleetNode(herd.url, 'e2e-restart')).connection_failures === 0,
      { what: 'connection_failures back to 0' });
    assert.equal((await fleetNode(herd.url, 'e2e-restart')).connection_failures_total, failed);
  } finally {
    const ex = await node.stop();
    assert.deepEqual(ex, { code: 0, signal: null }, node.logs());
    node.cleanup();
    await stopAll(herd, sim);
  }
});

test('a wrong token gets 401 and the node never appears; the right one does', { skip }, async () => {
  const sim = await startSim({ args: ['--time-scale', '0'] });
  const herd = await startHerd({ env: { FLEET_TOKEN: 'right-token' } });
  const bad = startNode({ nodeId: 'e2e-badtoken', routerUrl: herd.url, ollamaUrl: sim.url,
    interval: INTERVAL, args: ['--token', 'wrong-token'] });
  let good;
  try {
    // The coordinator itself answers 401 to that token.
    const r = await post(herd.url, '/heartbeat', { node_id: 'probe', draining: true },
      { headers: { authorization: 'Bearer wrong-token' } });
    assert.equal(r.status, 401);
    await bad.waitLog(/coordinator refused our token \(HTTP 401/);
    good = startNode({ nodeId: 'e2e-goodtoken', routerUrl: herd.url, ollamaUrl: sim.url,
      interval: INTERVAL, env: { FLEET_NODE_TOKEN: 'right-token' } });
    await good.waitReady();
    const s = parseJson(await get(herd.url, '/fleet/status'));
    assert.deepEqual(s.nodes.map((n) => n.node_id), ['e2e-goodtoken']);
    assert.equal(fs.existsSync(bad.readyFile), false, 'no ready file: nothing was accepted');
    assert.equal(countLines(bad.logs(), /refused our token/), 1, bad.logs());
    assert.equal(bad.exitInfo(), null, 'the refused node keeps retrying');
  } finally {
    const ex = await bad.stop();
    assert.deepEqual(ex, { code: 0, signal: null }, bad.logs());
    bad.cleanup();
    if (good) {
      assert.deepEqual(await good.stop(), { code: 0, signal: null }, good.logs());
      good.cleanup();
    }
    await stopAll(herd, sim);
  }
});

test('mDNS: found without --router-url, the newest coordinator wins, the other takes over', { skip }, async (t) => {
  const ns = await mdnsNamespace();
  if (ns.skip) {
    t.skip(ns.skip);
    return;
  }
  const f = (n) => path.join(ns.dir, n);
  let node;
  try {
    ns.run('herd-sim', ['--host', '127.0.0.1', '--port', '0', '--ready-file', f('sim.ready'), '--time-scale', '0']);
    const simPort = await readyPort(f('sim.ready'), 'herd-sim in the namespace');
    const herd1 = ns.run('herd', ['--host', '0.0.0.0', '--port', '0', '--ready-file', f('h1.ready'),
      '--data-dir', f('h1'), '--mdns-name', 'First Router']);
    const p1 = await readyPort(f('h1.ready'), 'the first herd');
    node = ns.run('herd-node', ['--node-id', 'e2e-mdns', '--ollama-host', `http://127.0.0.1:${simPort}`,
      '--heartbeat-interval', String(INTERVAL), '--data-dir', f('node'), '--ready-file', f('node.ready'),
      '--log-level', 'debug']);
    // Either the node's ready file (found and accepted), or a coordinator
    // that does not publish at all.
    await waitFor(() => fs.existsSync(f('node.ready')) || /mDNS: built without avahi/.test(herd1.logs()),
      { timeoutMs: 15000, what: `discovery\n--- herd-node ---\n${node.logs()}\n--- herd ---\n${herd1.logs()}` });
    if (!fs.existsSync(f('node.ready'))) {
      t.skip('this herd was built without mDNS publishing');
      return;
    }
    assert.match(node.logs(), new RegExp(`reporting to coordinator "First Router" at http://10\\.97\\.0\\.[12]:${p1} `));
    await herd1.waitLog(/node e2e-mdns joined/);

    // A second coordinator appears: the newest answer wins.
    const herd2 = ns.run('herd', ['--host', '0.0.0.0', '--port', '0', '--ready-file', f('h2.ready'),
      '--data-dir', f('h2'), '--mdns-name', 'Second Router']);
    const p2 = await readyPort(f('h2.ready'), 'the second herd');
    await node.waitLog(new RegExp(`reporting to coordinator "Second Router" at http://10\\.97\\.0\\.[12]:${p2} `));
    await herd2.waitLog(/node e2e-mdns joined/);

    // It leaves: back to the first, which is still advertised. (Heartbeats
    // may fail a few times before the goodbye arrives; that is fine.)
    assert.deepEqual(await herd2.stop(), { code: 0, signal: null }, herd2.logs());
    await node.waitLog(/"Second Router" at \S+ left mDNS/);
    const last = (re) => node.logs().split('\n').filter((l) => re.test(l)).pop() || '';
    await waitFor(() => /"First Router"/.test(last(/reporting to coordinator/)) &&
      !/unreachable/.test(last(/coordinator (unreachable|reachable again|\S+ accepted)/)),
    { what: `the node reporting to the first coordinator again\n${node.logs()}` });
    // The drain goes to the first one: it is the one in use.
    assert.deepEqual(await node.stop(), { code: 0, signal: null }, node.logs());
    await herd1.waitLog(/node e2e-mdns: \w+ -> offline: drained/);
  } finally {
    await ns.close();
  }
});

test('CLI: --version, --help, bad options, the override subcommand', async () => {
  const v = await runNode(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^herd-node \d+\.\d+\.\d+/);
  const h = await runNode(['--help']);
  assert.equal(h.code, 0);
  for (const flag of ['--node-id', '--ollama-host', '--router-url', 'learn-capacity', '--data-dir',
    '--token', '--num-parallel', '--heartbeat-interval', '--log-level', '--ready-file']) {
    assert.ok(h.stdout.includes(flag), `--help lists ${flag}`);
  }
  assert.match(h.stdout, /FLEET_NODE_HEARTBEAT_INTERVAL/);
  const bad = await runNode(['--heartbeat-interval', 'soon']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--heartbeat-interval 'soon'/);
  const badEnv = await runNode(['--router-url', 'http://127.0.0.1:1'], { env: { FLEET_NODE_HEARTBEAT_INTERVAL: '0' } });
  assert.equal(badEnv.code, 2);
  assert.match(badEnv.stderr, /FLEET_NODE_HEARTBEAT_INTERVAL='0': out of range/);
  const ov = await runNode(['override', 'turbo', '--data-dir', '/tmp']);
  assert.equal(ov.code, 2);
  assert.match(ov.stderr, /use full, paused or clear/);
});
