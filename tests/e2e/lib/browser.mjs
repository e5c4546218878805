// Headless Chromium for the dashboard tests, driven by playwright-core.
// Debian's chromium (/usr/bin/chromium, or CHROMIUM) is used as it is: no
// browser is downloaded. Every console message of level error, every
// uncaught page error and every failed request is collected, so that a
// test can assert that a page produced none.

import fs from 'node:fs';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Whether a browser can be started here (tests skip with the reason). */
export function browserMissing() {
  if (!fs.existsSync(CHROMIUM)) return `${CHROMIUM} is missing: apt-get install chromium (scripts/bootstrap does)`;
  return null;
}

/**
 * Starts the browser: {browser, page, problems, close()}. problems holds
 * the console errors, page errors and failed requests seen so far.
 */
export async function openBrowser({ width = 1440, height = 1000 } = {}) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // An EventSource or fetch cut by navigation is not a failure.
    const f = r.failure();
    if (f && /ERR_ABORTED/.test(f.errorText)) return;
    problems.push(`request failed: ${r.url()} ${f ? f.errorText : ''}`);
  });
  page.on('dialog', (d) => d.accept());
  return {
    browser, context, page, problems,
    async close() { await browser.close(); },
  };
}
