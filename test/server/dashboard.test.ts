/**
 * The web console in a real headless Chromium (Debian's chromium, driven by playwright-core) over a real gateway and
 * the embedded broker: the test publishes through the bus and watches the numbers and charts change, browses a
 * message, proves a body with HTML and script in it is shown as text, dead-letters a message through a failing
 * handler, redrives it from the page and sees it consumed, sees a lagging group marked, and keeps working across a
 * gateway restart. Screenshots (laptop and phone) go to test-output/dashboard/; BUSBAR_UPDATE_SCREENSHOT=1 also
 * writes docs/img/dashboard.png for the README. Every wait is for an event on the page, bounded.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { MessageBus, message } from '../../src/index.ts';
import { type RunningServer, startServer } from '../../src/server/index.ts';

const CHROMIUM = process.env.BUSBAR_CHROMIUM ?? '/usr/bin/chromium';
const OUT = new URL('../../test-output/dashboard/', import.meta.url).pathname;
const TOKEN = 'console-admin-token';
const tokens = [{ name: 'ops', token: TOKEN, publish: ['*'], consume: ['*'], admin: ['*'] }];
const WAIT = { timeout: 30_000 };

/** Reads `check` (page state) until it holds; fails after WAIT.timeout. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + WAIT.timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Waits until the console's cell of `type` in column `col` reads `text`. */
function cellIs(page: Page, type: string, col: string, text: string): Promise<void> {
  return page
    .locator(`#types tr[data-type="${type}"] td[data-col="${col}"]`, { hasText: new RegExp(`^${text}$`) })
    .waitFor();
}

const skip = existsSync(CHROMIUM) ? undefined : `no Chromium at ${CHROMIUM} (.ci/run installs Debian's chromium)`;

describe('web console in headless Chromium', { timeout: 240_000, skip }, () => {
  let dir: string;
  let bus: MessageBus;
  let server: RunningServer;
  let port: number;
  let browser: BrowserContext;
  let userData: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'busbar-console-'));
    userData = mkdtempSync(join(tmpdir(), 'busbar-chromium-'));
    mkdirSync(OUT, { recursive: true });
    bus = await MessageBus.connect(`embedded:${join(dir, 'bus.db')}`);
    server = await startServer({ bus, port: 0, tokens });
    port = server.port;
    // A fresh profile (--user-data-dir) each run: playwright passes it as the persistent context's directory.
    browser = await chromium.launchPersistentContext(userData, {
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
      timeout: 60_000,
    });
  });

  after(async () => {
    await browser?.close();
    await server?.close();
    await bus?.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(userData, { recursive: true, force: true });
  });

  async function open(viewport: { width: number; height: number }): Promise<Page> {
    const page = await browser.newPage();
    await page.setViewportSize(viewport);
    page.setDefaultTimeout(WAIT.timeout);
    await page.goto(`http://127.0.0.1:${port}/`);
    // No token yet: the first poll is refused and the page asks for one.
    await page.locator('#token-form').waitFor({ state: 'visible' });
    await page.getByLabel('Bearer token').fill(TOKEN);
    await page.getByRole('button', { name: 'Use token' }).press('Enter');
    await page.locator('#token-form').waitFor({ state: 'hidden' });
    return page;
  }

  it('shows depth, charts and laggards; browses safely; redrives a dead letter; survives a restart', async () => {
    const page = await open({ width: 1280, height: 900 });
    const type = 'orders';
    const lagging = 'audit';

    // Publish through the bus: the depth the page shows follows.
    await bus.sendBatch(type, ['one', 'two', 'three']);
    await cellIs(page, type, 'depth', '3');
    await bus.sendBatch(type, ['four', 'five']);
    await cellIs(page, type, 'depth', '5');
    // The depth chart has a line for the type whose last point is above its first.
    await until(async () => {
      const points = await page.locator(`#chart-depth polyline[data-series="${type}"]`).getAttribute('points');
      const ys = (points ?? '')
        .split(' ')
        .filter(Boolean)
        .map((p) => Number(p.split(',')[1]));
      return ys.length >= 2 && ys.at(-1)! < ys[0]!; // SVG y grows downwards
    }, 'the depth chart to rise');

    // A group that has not read 150 messages stands out.
    const idle = bus.consumer({ consumerGroup: 'slow-readers', messageTypes: lagging });
    await idle.ready;
    await idle.close();
    await bus.sendBatch(
      lagging,
      Array.from({ length: 150 }, (_, i) => `audit ${i}`),
    );
    await page.locator(`#groups tr.lagging[data-group="${lagging}/slow-readers"]`).waitFor();
    assert.equal(
      await page.locator(`#groups tr[data-group="${lagging}/slow-readers"] td.state`).textContent(),
      'falling behind',
    );

    // Untrusted content: HTML and script in a body and a header are shown as text and never run.
    const evil = '<img src=x onerror="window.__owned=1"><script>window.__owned=2</script><b>bold?</b>';
    await bus.sendBatch(type, [
      message(evil, { contentType: 'text/plain', headers: { 'x-evil': '<script>window.__owned=3</script>' } }),
    ]);
    await bus.sendBatch(type, [new Uint8Array([0, 1, 2, 255, 254])]);
    await page.getByRole('button', { name: `browse ${type}` }).click();
    await page.locator('#browse-list li').nth(6).waitFor();
    const bodies = await page.locator('#browse-list pre.body').allTextContents();
    assert.equal(bodies[0], 'one');
    assert.equal(bodies[5], evil, 'the body is shown exactly, as text');
    assert.match(bodies[6]!, /^binary, 5 bytes \(base64\): AAEC\/\/4=$/);
    assert.equal(
      await page.locator('#browse-list script, #browse-list img, #browse-list b').count(),
      0,
      'no markup from the message',
    );
    assert.equal(await page.evaluate('window.__owned'), undefined, 'no script from the message ran');
    assert.ok((await page.locator('#browse-list dd').allTextContents()).includes('<script>window.__owned=3</script>'));
    await page.screenshot({ path: join(OUT, 'browse.png'), fullPage: true });

    // Dead-letter one message through a failing handler; list it on the page, redrive it, see it consumed.
    const failing = bus.handle(type, { group: 'billing', maxAttempts: 1 }, async (m) => {
      if (m.body === 'poison') throw new Error('billing cannot digest <poison>');
    });
    await failing.ready;
    const [poisonId] = await bus.sendBatch(type, ['poison']);
    await cellIs(page, type, 'dlq', '1');
    await failing.close();
    await page.getByRole('button', { name: `dead letters of ${type}` }).click();
    const item = page.locator(`#dlq-list li[data-id="${poisonId}"]`);
    await item.waitFor();
    assert.match((await item.textContent()) ?? '', /1 attempt\(s\) · group billing .*billing cannot digest <poison>/);
    await page.screenshot({ path: join(OUT, 'laptop.png'), fullPage: true });
    if (process.env.BUSBAR_UPDATE_SCREENSHOT) {
      mkdirSync(new URL('../../docs/img/', import.meta.url).pathname, { recursive: true });
      copyFileSync(join(OUT, 'laptop.png'), new URL('../../docs/img/dashboard.png', import.meta.url).pathname);
    }
    const consumed = new Promise<string>((resolve) => {
      const fixed = bus.handle(type, { group: 'billing' }, async (m) => {
        if (m.body === 'poison') {
          resolve(m.headers['busbar-redriven-from'] ?? '');
          setImmediate(() => void fixed.close());
        }
      });
    });
    await page.getByLabel(/select · 1 attempt/).check();
    await page.getByRole('button', { name: 'Redrive selected' }).click();
    await page.locator('#status', { hasText: 'redrove 1 dead letter(s)' }).waitFor();
    assert.equal(await consumed, poisonId, 'the redriven message was consumed by the fixed handler');
    await page.locator('#dlq-note', { hasText: '0 dead letter(s)' }).waitFor();

    // Send a test message and create a type from the page.
    await page.getByLabel('Type', { exact: true }).first().fill('from-page');
    await page.locator('#send-type').fill('from-page');
    await page.locator('#send-form button').click();
    await page.locator('#status', { hasText: 'sent ' }).waitFor();
    await cellIs(page, 'from-page', 'depth', '1');
    await page.locator('#create-type').fill('made-here');
    await page.locator('#create-partitions').fill('2');
    await page.getByRole('button', { name: 'Create or grow' }).click();
    await page.locator('#types tr[data-type="made-here"]').waitFor();

    // Restart the gateway on the same port: the page reports the gap, then carries on with its charts.
    const pollsBefore = Number(await page.locator('body').getAttribute('data-polls'));
    const points = await page.locator(`#chart-depth polyline[data-series="${type}"]`).getAttribute('points');
    await server.close();
    await page.locator('#status.bad').waitFor();
    server = await startServer({ bus, port, tokens });
    await page.locator('#status', { hasText: 'connected again' }).waitFor();
    await until(
      async () => Number(await page.locator('body').getAttribute('data-polls')) > pollsBefore,
      'a poll after the restart',
    );
    const pointsAfter = await page.locator(`#chart-depth polyline[data-series="${type}"]`).getAttribute('points');
    assert.ok((pointsAfter?.split(' ').length ?? 0) >= (points?.split(' ').length ?? 0), 'the chart kept its history');
    await page.close();

    // A phone-sized screen: the same page, nothing wider than the screen but the tables' own scroll areas.
    const phone = await open({ width: 390, height: 844 });
    await phone.locator(`#types tr[data-type="${type}"]`).waitFor();
    const overflow = await phone.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
    assert.ok(overflow <= 1, `the page is ${overflow}px wider than a phone screen`);
    await phone.screenshot({ path: join(OUT, 'phone.png'), fullPage: true });
    await phone.close();
  });
});
