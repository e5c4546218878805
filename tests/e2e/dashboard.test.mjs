// The dashboard in a real browser (Debian's chromium, headless, driven by
// playwright-core): a fleet with real traffic, every tab opened, the
// content that traffic must produce asserted, the live views seen to
// update, no console error anywhere, and a screenshot of each tab saved
// under $HERD_BUILD_DIR/dashboard-screenshots/.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { get, post, parseJson, openStream, waitFor } from './lib/harness.mjs';
import { startFleet } from './lib/fleet.mjs';
import { browserMissing, openBrowser } from './lib/browser.mjs';

const M = 'llama3.2:3b';
const XSS = '<img src=x onerror=alert(1)>';
const SHOTS = path.join(process.env.HERD_BUILD_DIR || process.env.HERD_BIN_DIR || '.', 'dashboard-screenshots');
const missing = browserMissing();

async function api(herd, p) {
  const r = await get(herd.url, p);
  assert.equal(r.status, 200, `${p}: ${r.body}`);
  return parseJson(r);
}

async function chat(herd, body) {
  const r = await post(herd.url, '/api/chat', { model: M, messages: [{ role: 'user', content: 'hello' }], stream: false, options: { num_predict: 8 }, ...body });
  assert.equal(r.status, 200, r.body);
}

describe('the dashboard in chromium', { skip: missing || false }, () => {
  let fleet;
  let herd;
  let b;
  let page;
  const N = 10;
  const dialogs = [];

  /** Opens a tab by its nav link, as a person would, and waits for sel. */
  async function tab(name, sel) {
    await page.click(`#nav a[data-tab="${name}"]`);
    await page.waitForSelector(`#main[data-tab="${name}"]`);
    if (sel) await page.waitForSelector(sel, { timeout: 15000 });
  }
  async function shot(name) {
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  }
  const text = (sel) => page.$eval(sel, (e) => e.textContent);
  function noProblems(where) {
    assert.deepEqual(b.problems, [], `${where}: console errors, page errors or failed requests`);
  }

  before(async () => {
    fs.mkdirSync(SHOTS, { recursive: true });
    fleet = await startFleet({ nodes: [{ id: 'alpha', profile: 'rtx-4090' }, { id: 'beta', profile: 'mac-studio' }] });
    herd = fleet.herd;
    for (const s of fleet.sims) assert.equal((await post(s.url, '/api/generate', { model: M, keep_alive: -1 })).status, 200);
    await waitFor(async () => (await api(herd, '/dashboard/api/fleet')).nodes
      .every((n) => n.ollama.models_loaded.some((m) => m.name === M)), { timeoutMs: 15000, what: `${M} loaded on both nodes` });
    for (let i = 0; i < N - 2; i++) await chat(herd, { metadata: { tags: ['app-one'] } });
    await chat(herd, { metadata: { tags: [XSS] } });
    await chat(herd, { user: 'alice' });
    await waitFor(async () => (await api(herd, '/dashboard/api/overview')).total_requests >= N, { timeoutMs: 15000, what: 'traces' });
    b = await openBrowser();
    page = b.page;
    page.on('dialog', (d) => { dialogs.push(`${d.type()}: ${d.message()}`); });
    await page.goto(`${herd.url}/dashboard`);
  });
  after(async () => {
    await b?.close();
    await fleet?.stop();
  });

  it('Fleet: node cards, models, queues, and the live stream updates', async () => {
    await page.waitForSelector('.node-card[data-node="alpha"]');
    await page.waitForSelector('.node-card[data-node="beta"]');
    assert.equal(await text('.node-card[data-node="alpha"] .node-name'), 'alpha');
    assert.match(await text('.node-card[data-node="beta"] .badge'), /online/);
    assert.ok(await page.$(`.node-card[data-node="alpha"] .model-chip[data-model="${M}"]`), 'alpha shows its loaded model');
    assert.ok(await page.$(`.queue-card[data-queue="alpha:${M}"]`));
    assert.match(await text('[data-stat="nodes"] .v'), /^2 \/ 2$/);
    assert.equal(await text('[data-stat="completed"] .v'), String(N));
    // the SSE stream keeps coming: the counter moves on
    const n0 = Number(await page.$eval('#conn', (e) => e.dataset.updates || 0));
    await page.waitForFunction((n) => Number(document.querySelector('#conn').dataset.updates || 0) > n, n0, { timeout: 8000 });
    // and a new request shows in the numbers without a reload
    await chat(herd, { metadata: { tags: ['app-one'] } });
    await page.waitForFunction((n) => document.querySelector('[data-stat="completed"] .v').textContent === String(n), N + 1, { timeout: 8000 });
    await shot('fleet');
    noProblems('fleet');
  });

  it('Requests: the list, one decision in full, filters, and streams in flight', async () => {
    // trace rows are written in batches by a writer thread: the last
    // request's row may still be on its way
    await waitFor(async () => (await api(herd, '/dashboard/api/overview')).total_requests >= N + 1, { what: 'every request traced' });
    await tab('requests', '#trace-list tr[data-request-id]');
    const rows = await page.$$('#trace-list tr[data-request-id]');
    assert.equal(rows.length, N + 1);
    await rows[0].click();
    await page.waitForSelector('#candidates tr[data-candidate="alpha"]');
    assert.ok(await page.$('#candidates tr[data-candidate="beta"]'), 'every candidate is listed');
    assert.ok(await page.$('#candidates tr.winner'), 'the winner is marked');
    assert.match(await text('#verdict'), /(won with|only eligible|served with)/);
    assert.ok(await page.$('#attempts tr[data-attempt="1"]'));
    assert.ok(await page.$('#events li[data-event="dispatch"]'));
    assert.match(await text('[data-field="status"]'), /completed/);
    assert.match(await text('[data-field="tps"]'), /\d/);
    await shot('requests-decision');
    // filter on a node
    await page.fill('#trace-filters input[name="node_id"]', 'alpha');
    await page.click('#trace-filters button[type="submit"]');
    await page.waitForFunction(() => [...document.querySelectorAll('#trace-list tr[data-request-id] td:nth-child(4)')]
      .every((td) => td.textContent === 'alpha'));
    const alpha = (await api(herd, '/dashboard/api/traces?node_id=alpha&limit=1000')).traces.length;
    assert.equal((await page.$$('#trace-list tr[data-request-id]')).length, alpha);
    // a slow stream: it shows in flight, its token count grows, then it goes
    for (const s of fleet.sims) await post(s.url, '/_sim/fault', { kind: 'slow', factor: 200, count: 1 });
    const stream = openStream(herd.url, { path: '/api/chat', json: { model: M, messages: [{ role: 'user', content: 'tell me a long story' }], options: { num_predict: 150 } } });
    await page.waitForSelector('#explorer-live [data-live]', { timeout: 10000 });
    const tokens = async () => Number((await text('#explorer-live [data-live] .tokens-count')).replace(/\D/g, ''));
    const t0 = await tokens();
    await page.waitForFunction((n) => {
      const e = document.querySelector('#explorer-live [data-live] .tokens-count');
      return e && Number(e.textContent.replace(/\D/g, '')) > n;
    }, t0, { timeout: 10000 });
    await shot('requests-live');
    await stream.done;
    await page.waitForSelector('#explorer-live #live-empty', { timeout: 10000 });
    for (const s of fleet.sims) await fetch(`${s.url}/_sim/fault`, { method: 'DELETE' });
    noProblems('requests');
  });

  it('Trends: charts drawn by uPlot with the traffic', async () => {
    await tab('trends', '.chart[data-chart="Requests per hour"] canvas');
    const total = (await api(herd, '/dashboard/api/overview')).total_requests;
    assert.equal(await text('[data-stat="requests"] .v'), String(total));
    assert.equal((await page.$$('.uplot')).length, 3);
    await shot('trends');
    noProblems('trends');
  });

  it('Models: the table and the daily chart', async () => {
    await tab('models', `#models-table tr[data-model="${M}"]`);
    const total = (await api(herd, '/dashboard/api/models?days=7')).summary[0].total_requests;
    assert.equal(await page.$eval(`#models-table tr[data-model="${M}"] td:nth-child(2)`, (e) => e.textContent), String(total));
    assert.ok(await page.$('.chart canvas'));
    await shot('models');
    noProblems('models');
  });

  it('Apps / Tags: counts per tag; a hostile tag stays text', async () => {
    await tab('tags', '#tags-table tr[data-tag="app-one"]');
    const one = (await api(herd, '/dashboard/api/tags?days=7')).data.find((t) => t.tag === 'app-one').request_count;
    assert.equal(await page.$eval('#tags-table tr[data-tag="app-one"] td:nth-child(2)', (e) => e.textContent), String(one));
    assert.ok(await page.$('#tags-table tr[data-tag="user:alice"]'));
    const shown = await page.$$eval('#tags-table tr[data-tag] td:first-child', (tds) => tds.map((t) => t.textContent));
    assert.ok(shown.includes(XSS), 'the tag is shown as the text it is');
    assert.equal(await page.$('img[src="x"]'), null, 'no element was made from it');
    assert.deepEqual(dialogs, [], 'no script ran');
    await shot('tags');
    noProblems('tags');
  });

  it('Benchmarks: a run from the page, its progress and its history', async () => {
    await tab('benchmarks', '#bench-form');
    await page.fill('#bench-form input[name="duration"]', '2');
    await page.fill('#bench-form input[name="num_predict"]', '8');
    await page.click('#bench-start');
    await page.waitForSelector('#bench-progress[data-status="completed"]', { timeout: 20000 });
    await page.waitForSelector('#bench-runs tr[data-run]', { timeout: 10000 });
    const runs = (await api(herd, '/dashboard/api/benchmarks')).runs;
    assert.equal(runs.length, 1);
    assert.ok(runs[0].total_requests > 0);
    assert.ok(await page.$(`#bench-runs tr[data-run="${runs[0].run_id}"]`));
    await shot('benchmarks');
    noProblems('benchmarks');
  });

  it('Health: the score and the checks of this fleet', async () => {
    await tab('health', '#health-score');
    const h = await api(herd, '/dashboard/api/health');
    assert.equal(await text('#health-score'), String(h.vitals.health_score));
    assert.equal(await text('[data-vital="nodes"] .v'), '2 / 2');
    for (const r of h.recommendations) assert.ok(await page.$(`#health-recs [data-check="${r.check_id}"]`), r.check_id);
    await shot('health');
    noProblems('health');
  });

  it('Recommendations: plans per node, a pull with progress, pins and deletes', async () => {
    await tab('recommendations', '#rec-nodes [data-rec-node="alpha"]');
    assert.ok(await page.$('#rec-nodes [data-rec-node="beta"]'));
    await page.waitForSelector(`#model-management [data-mm-node="alpha"] tr[data-mm-model="${M}"]`);
    assert.match(await page.$eval(`[data-mm-node="alpha"] tr[data-mm-model="${M}"]`, (e) => e.textContent), /loaded/);
    // pull a recommended model that is not on the node yet
    const btn = await page.$('#rec-nodes [data-rec-node="alpha"] button[data-pull]');
    assert.ok(btn, 'something to pull onto alpha');
    const target = (await btn.getAttribute('data-pull')).split('/').slice(1).join('/');
    await btn.click();
    await page.waitForFunction((t) => [...document.querySelectorAll('.pull-progress')].some((e) => e.textContent === 'pulled'), target, { timeout: 20000 });
    await fleet.until((st) => st.nodes.find((n) => n.node_id === 'alpha').ollama.models_available.includes(target), `${target} on alpha`);
    // pin a model on beta
    await page.click(`[data-mm-node="beta"] input[data-pin="beta/${M}"]`);
    await waitFor(async () => (await api(herd, '/dashboard/api/pinned-models')).per_node.beta?.includes(M), { what: 'the pin' });
    // delete one from beta (the confirmation is accepted)
    await page.check('[data-mm-node="beta"] tr[data-mm-model="gemma3:4b"] input[type="checkbox"]:not([data-pin])');
    await page.click('[data-mm-node="beta"] button[data-delete="beta"]');
    await fleet.until((st) => !st.nodes.find((n) => n.node_id === 'beta').ollama.models_available.includes('gemma3:4b'), 'gemma3:4b gone from beta');
    assert.ok(dialogs.some((d) => d.startsWith('confirm')), 'asked first');
    await page.waitForSelector('[data-mm-node="beta"]');
    await shot('recommendations');
    noProblems('recommendations');
  });

  it('Settings: the configuration, a toggle that changes herd, node versions', async () => {
    await tab('settings', '#settings-nodes tr[data-node="alpha"]');
    const s = await api(herd, '/dashboard/api/settings');
    assert.match(await page.$eval('#settings-nodes tr[data-node="alpha"]', (e) => e.textContent), new RegExp(s.router_version.replace(/\./g, '\\.')));
    assert.equal(await page.$eval('[data-config="score_model_hot"]', (e) => e.textContent), '50');
    assert.equal(s.config.toggles.vram_fallback, false);
    await page.click('input[data-setting="vram_fallback"]');
    await page.waitForSelector('#settings-msg .msg.ok');
    assert.equal((await api(herd, '/dashboard/api/settings')).config.toggles.vram_fallback, true);
    await page.click('input[data-setting="vram_fallback"]');
    await waitFor(async () => (await api(herd, '/dashboard/api/settings')).config.toggles.vram_fallback === false, { what: 'toggle back' });
    await page.waitForSelector('#context-usage tr[data-ctx-model]');
    await shot('settings');
    noProblems('settings');
  });

  it('every tab by its own URL, without errors', async () => {
    for (const p of ['', '/requests', '/trends', '/models', '/apps', '/benchmarks', '/health', '/recommendations', '/settings']) {
      await page.goto(`${herd.url}/dashboard${p}`);
      await page.waitForSelector('#main > h1');
      assert.equal(await page.$$eval('#nav a', (as) => as.length), 9);
    }
    noProblems('direct URLs');
    assert.deepEqual(dialogs.filter((d) => !d.startsWith('confirm')), []);
  });
});
