/**
 * `npm run bench:console [-- --loads N]`: how long the web console takes to load from a local gateway, in Debian's
 * headless Chromium (playwright-core), a new page each time (the console's files are served no-cache, so every load
 * fetches them again; the bytes column shows it). The gateway runs
 * on the embedded broker with 20 types, 2 groups each and a dead-letter type, so the first poll has something to draw.
 * Reports medians and ranges of: DOMContentLoaded, the load event, and the first data drawn (the first /v1/stats
 * answer rendered into the tables and charts), plus the bytes the page fetched. Not a test: numbers go to BENCHMARKS.md.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { MessageBus } from '../../src/index.ts';
import { startServer } from '../../src/server/index.ts';

const { values } = parseArgs({ options: { loads: { type: 'string', default: '30' }, json: { type: 'boolean' } } });
const loads = Number(values.loads);
const CHROMIUM = process.env.BUSBAR_CHROMIUM ?? '/usr/bin/chromium';
const TOKEN = 'bench-console-token';

const dir = mkdtempSync(join(tmpdir(), 'busbar-console-bench-'));
const profile = mkdtempSync(join(tmpdir(), 'busbar-console-bench-chromium-'));
const bus = await MessageBus.connect(`embedded:${join(dir, 'bus.db')}`);
const server = await startServer({
  bus,
  port: 0,
  tokens: [{ name: 'bench', token: TOKEN, publish: ['*'], consume: ['*'], admin: ['*'] }],
});
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

const samples = {
  domContentLoadedMs: [] as number[],
  loadMs: [] as number[],
  firstDataMs: [] as number[],
  bytes: [] as number[],
};
try {
  for (let t = 0; t < 20; t++) {
    const type = `bench-type-${t}`;
    await bus.sendBatch(
      type,
      Array.from({ length: 50 }, (_, i) => ({ n: i })),
    );
    for (const group of ['a', 'b']) {
      const c = bus.consumer({ consumerGroup: group, messageTypes: type });
      await c.ready;
      await c.close();
    }
  }
  await bus.sendBatch('bench-type-0.dlq', ['dead']);

  for (let i = 0; i < loads + 1; i++) {
    // A cold page each time: the token is in sessionStorage, set before the page's own script runs.
    const page = await browser.newPage();
    await page.addInitScript(`sessionStorage.setItem('busbar-token', '${TOKEN}')`);
    let bytes = 0;
    page.on('response', (response) => {
      void response.body().then(
        (body) => {
          bytes += body.byteLength;
        },
        () => {},
      );
    });
    const start = Date.now();
    await page.goto(`${server.url}/`, { waitUntil: 'load' });
    await page.locator('#types tr[data-type="bench-type-19"]').waitFor({ timeout: 30_000 });
    const firstData = Date.now() - start;
    const nav = JSON.parse(
      await page.evaluate<string>("JSON.stringify(performance.getEntriesByType('navigation')[0] ?? {})"),
    ) as { domContentLoadedEventEnd?: number; loadEventEnd?: number };
    await page.close();
    if (i === 0) continue; // the first load warms the gateway and Chromium up
    samples.domContentLoadedMs.push(nav.domContentLoadedEventEnd ?? Number.NaN);
    samples.loadMs.push(nav.loadEventEnd ?? Number.NaN);
    samples.firstDataMs.push(firstData);
    samples.bytes.push(bytes);
  }
} finally {
  await browser.close();
  await server.close();
  await bus.close();
  rmSync(dir, { recursive: true, force: true });
  rmSync(profile, { recursive: true, force: true });
}

function summary(list: number[]) {
  const sorted = [...list].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { median: at(0.5), p90: at(0.9), min: sorted[0]!, max: sorted.at(-1)! };
}

const result = {
  loads,
  domContentLoadedMs: summary(samples.domContentLoadedMs),
  loadMs: summary(samples.loadMs),
  firstDataMs: summary(samples.firstDataMs),
  bytes: summary(samples.bytes),
};
if (values.json) console.log(JSON.stringify(result));
else {
  const f = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));
  console.log(`console page load from a local gateway, ${loads} cold loads (median, p90, range):`);
  for (const [name, s] of Object.entries(result)) {
    if (typeof s === 'number') continue;
    console.log(`  ${name.padEnd(20)} ${f(s.median)}  p90 ${f(s.p90)}  (${f(s.min)}–${f(s.max)})`);
  }
}
