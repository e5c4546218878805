// GET /metrics: the Prometheus text format, checked by Prometheus's own
// promtool (Debian package prometheus), and the numbers the traffic must
// produce.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { get, post, waitFor } from './lib/harness.mjs';
import { startFleet } from './lib/fleet.mjs';

const M = 'llama3.2:3b';

function promtool(text) {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error) throw new Error(`promtool: ${r.error.message} (scripts/bootstrap installs the prometheus package)`);
  return r;
}

function value(text, series) {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('/metrics', () => {
  it('passes promtool check metrics and counts the traffic', async () => {
    const fleet = await startFleet({ nodes: [{ id: 'a' }, { id: 'b' }] });
    try {
      for (let i = 0; i < 5; i++) {
        const r = await post(fleet.herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: `m${i}` }], stream: false });
        assert.equal(r.status, 200);
      }
      const bad = await post(fleet.herd.url, '/api/chat', { model: 'missing-model', messages: [] });
      assert.equal(bad.status, 404);
      const text = await waitFor(async () => {
        const t = (await get(fleet.herd.url, '/metrics')).body;
        return value(t, 'herd_trace_rows_written_total') >= 6 ? t : null;
      }, { what: 'trace rows counted' });
      const r = promtool(text);
      assert.equal(r.status, 0, `promtool check metrics:\n${r.stdout}${r.stderr}`);
      let done = 0;
      for (const n of ['a', 'b']) done += value(text, `herd_requests_total{model="${M}",node="${n}",status="completed"}`) ?? 0;
      assert.equal(done, 5);
      assert.equal(value(text, 'herd_requests_total{model="missing-model:latest",node="",status="failed"}'), 1);
      assert.equal(value(text, 'herd_node_up{node="a",status="online"}'), 1);
      assert.equal(value(text, 'herd_request_duration_seconds_count'), 5);
      assert.equal(value(text, 'herd_requests_in_flight'), 0);
      assert.ok(value(text, 'herd_heartbeats_total{result="accepted"}') >= 2);
      assert.ok(value(text, 'herd_scoring_seconds_count') >= 5);
      assert.match((await get(fleet.herd.url, '/metrics')).headers['content-type'], /^text\/plain; version=0\.0\.4/);
    } finally {
      await fleet.stop();
    }
  });
});
