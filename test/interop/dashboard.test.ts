// The live dashboard (GET /) in a real browser: Debian's chromium driven by playwright-core.
// The page polls GET /v1/stats; messages sent over SMTP must move its numbers within seconds,
// with and without POSTERN_API_TOKEN (#token=…), under its strict CSP (no console errors).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { chromiumSkip, openPage } from '../helpers/chromium.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { startTestNode } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { startScriptedServer } from '../helpers/scripted-server.js';

// Skipped, with the reason, where chromium or playwright-core is missing (.ci/run installs both).
const skip = chromiumSkip;
const TOKEN = 'dashboard-test-token-0123456789';
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const send = (port: number, from: string, rcpts: string[], body: string) => sendMessage(port, from, rcpts, body, 'dashboard.example');

const text = (page: Page, id: string): Promise<string> => page.getByTestId(id).innerText();

async function waitForText(page: Page, id: string, pred: (s: string) => boolean, what: string, timeoutMs = 5000): Promise<string> {
  let last = '';
  await waitFor(what, async () => pred((last = await text(page, id))), { timeoutMs, intervalMs: 100, diag: () => `[data-testid=${id}] is ${JSON.stringify(last)}` });
  return last;
}

async function screenshot(t: TestContext, page: Page, name: string): Promise<string> {
  const file = join(tmpdir(t, 'postern-dashboard-'), name);
  await page.screenshot({ path: file, fullPage: true });
  const png = readFileSync(file);
  assert.ok(png.length > 1000, `screenshot is ${png.length} bytes`);
  assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE, 'the screenshot is a PNG');
  return file;
}

test('the dashboard shows live counters that move when mail arrives over SMTP', { skip }, async (t) => {
  const node = await startTestNode(t, { POSTERN_HTTP_PORT: '0' });
  const base = `http://127.0.0.1:${node.ports.httpPort}`;

  const res = await fetch(`${base}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
  assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
  await res.text();
  const stats = (await (await fetch(`${base}/v1/stats`)).json()) as Record<string, unknown>;
  for (const k of ['time', 'smtp', 'delivery', 'queue', 'commits', 'enqueueCommits', 'messagesCommitted', 'eventLoopLagMs', 'rssBytes', 'destinations', 'filterUtilization']) assert.ok(k in stats, k);
  assert.deepEqual(stats.destinations, [], 'delivery is off: no destinations');
  assert.equal(stats.filterUtilization, null, 'no filters');

  const { page, problems } = await openPage(t);
  await page.goto(`${base}/`);
  assert.equal(await waitForText(page, 'received-total', (s) => s === '0', 'the first snapshot'), '0');
  await waitForText(page, 'received-rate', (s) => s !== '–', 'a first rate (two snapshots)');

  await send(node.ports.smtpPort, 'alice@sender.example', ['bob@busy.example', 'carol@busy.example', 'dave@quiet.example'], 'Subject: one\n\nbody\n');
  await send(node.ports.smtpPort, 'alice@sender.example', ['erin@busy.example'], 'Subject: two\n\nbody\n');
  await send(node.ports.smtpPort, 'alice@sender.example', ['frank@busy.example'], 'Subject: three\n\nbody\n');

  await waitForText(page, 'received-total', (s) => s === '3', 'received-total to reach 3');
  await waitForText(page, 'queue-total', (s) => s === '3', 'queue-total to reach 3');
  await waitForText(page, 'received-rate', (s) => Number(s) > 0, 'a non-zero received rate');
  assert.equal(await text(page, 'queue-priority-normal'), '3');
  // messages per commit counts the commits that carried enqueues (not leases or settles)
  const after = (await (await fetch(`${base}/v1/stats`)).json()) as { messagesCommitted: number; enqueueCommits: number; commits: number };
  assert.equal(after.messagesCommitted, 3);
  assert.ok(after.enqueueCommits >= 1 && after.enqueueCommits <= 3 && after.enqueueCommits <= after.commits);
  await waitForText(page, 'per-commit', (v) => v === (3 / after.enqueueCommits).toFixed(2), 'messages per enqueue commit');
  const domains = await text(page, 'domains');
  assert.match(domains, /busy\.example\s+4[\s\S]*quiet\.example\s+1/, 'busiest domain first');
  assert.equal(await text(page, 'delivery-state'), 'delivery is off');
  assert.equal(await text(page, 'filter-utilization'), 'no filters');
  assert.match(await text(page, 'destinations'), /no deliveries yet/);
  assert.equal(await page.getByTestId('error').isVisible(), false);

  // Let the chart draw a few points, then keep the picture.
  await page.waitForTimeout(2500);
  const file = await screenshot(t, page, 'dashboard.png');
  t.diagnostic(`screenshot: ${file}`);
  assert.deepEqual(problems, []);
});

test('with POSTERN_API_TOKEN the page loads, says it needs the token, and works with #token=', { skip }, async (t) => {
  const node = await startTestNode(t, { POSTERN_HTTP_PORT: '0', POSTERN_API_TOKEN: TOKEN });
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  // The shell is public (it holds no data); the data needs the token.
  assert.equal((await fetch(`${base}/`)).status, 200);
  assert.equal((await fetch(`${base}/v1/stats`)).status, 401);
  assert.equal((await fetch(`${base}/v1/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);

  const { page, problems } = await openPage(t);
  await page.goto(`${base}/`);
  await waitForText(page, 'error', (s) => s.includes('#token='), 'the token hint');
  assert.equal(await text(page, 'received-total'), '–');

  await page.goto(`${base}/#token=wrong`);
  await waitForText(page, 'error', (s) => s.includes('refused'), 'the wrong-token message');

  await page.goto(`${base}/#token=${encodeURIComponent(TOKEN)}`);
  await waitForText(page, 'received-total', (s) => s === '0', 'the first snapshot with the token');
  assert.equal(new URL(page.url()).hash, '', 'the token leaves the address bar');
  assert.equal(await page.getByTestId('error').isVisible(), false);

  await send(node.ports.smtpPort, 'alice@sender.example', ['bob@tokened.example'], 'Subject: with token\n\nbody\n');
  await waitForText(page, 'received-total', (s) => s === '1', 'received-total to reach 1');

  // A reload keeps working: the token stays in sessionStorage for this tab.
  await page.reload();
  await waitForText(page, 'queue-total', (s) => s === '1', 'queue-total after a reload');
  await screenshot(t, page, 'dashboard-token.png');
  // The 401s above are the browser's own "failed to load resource" console lines: expected.
  assert.deepEqual(problems.filter((p) => !/status of 401/.test(p)), []);
});

test('the Destinations panel lists the next hop with its counters and last reply', { skip }, async (t) => {
  const root = tmpdir(t);
  mkdirSync(root, { recursive: true });
  const node = await startTestNode(
    t,
    { POSTERN_HTTP_PORT: '0', POSTERN_DELIVERY: 'routes', POSTERN_MAILDIR_CREATE: 'true', POSTERN_ROUTES: `local.test=maildir:${root}`, POSTERN_LOCAL_DOMAINS: 'local.test' },
    { delivery: { pollIntervalMs: 50 } },
  );
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  const { page, problems } = await openPage(t);
  await page.goto(`${base}/`);
  await waitForText(page, 'received-total', (s) => s === '0', 'the first snapshot');
  assert.match(await text(page, 'destinations'), /no deliveries yet/);

  await send(node.ports.smtpPort, 'alice@sender.example', ['bob@local.test', 'carol@local.test'], 'Subject: to maildir\n\nbody\n');
  await waitForText(page, 'delivered-total', (s) => s === '2', 'delivered-total to reach 2');

  const dest = `maildir:${root}`;
  const stats = (await (await fetch(`${base}/v1/stats`)).json()) as { destinations: Array<Record<string, unknown>> };
  const entry = stats.destinations.find((d) => d.key === dest);
  assert.ok(entry, JSON.stringify(stats.destinations));
  assert.equal(entry.delivered, 2);
  assert.equal(entry.pool, null, 'Maildir has no connection pool');
  assert.equal(typeof entry.meanMs, 'number');
  assert.equal(typeof (entry.lastReply as { text?: unknown } | null)?.text, 'string');

  const row = page.getByTestId('destination-row').filter({ hasText: dest });
  await row.waitFor({ timeout: 5000 });
  const cells = await row.locator('td').allInnerTexts();
  assert.equal(cells.length, 10, JSON.stringify(cells));
  assert.equal(cells[0], dest);
  assert.deepEqual(cells.slice(1, 5), ['–', '–', '–', '–'], 'no pool for Maildir');
  assert.ok(Number(cells[5]) >= 1, `delivered is ${cells[5]}`);
  assert.equal(cells[6], '0');
  assert.equal(cells[7], '0');
  assert.equal(cells[8], '0', 'nothing waits for the destination');
  assert.notEqual(cells[9], '');
  await screenshot(t, page, 'dashboard-destinations.png');
  assert.deepEqual(problems, []);
});

test('the Alerts panel shows an alert while it is up, then none', { skip }, async (t) => {
  const srv = await startScriptedServer(t, { reply: (cmd) => (cmd.startsWith('RCPT') ? '451 4.7.1 try again later' : undefined) });
  const node = await startTestNode(
    t,
    { POSTERN_HTTP_PORT: '0', POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `later.test=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_ALERT_WINDOW_MS: '3s', POSTERN_ALERT_MIN_RECIPIENTS: '3' },
    { delivery: { pollIntervalMs: 50 } },
  );
  const { page, problems } = await openPage(t);
  await page.goto(`http://127.0.0.1:${node.ports.httpPort}/`);
  await waitForText(page, 'alert-count', (s) => s === 'none', 'the first snapshot');
  assert.match(await text(page, 'alerts'), /no alerts/);
  await send(node.ports.smtpPort, 'alice@sender.example', ['a@later.test', 'b@later.test', 'c@later.test'], 'Subject: later\n\nbody\n');
  const row = page.getByTestId('alert-row').filter({ hasText: 'overall' });
  await row.waitFor({ timeout: 10_000 });
  const cells = await row.locator('td').allInnerTexts();
  assert.deepEqual([cells[0], cells[1], cells[3]], ['deferral-rate', 'overall', '100 % > 20 %'], JSON.stringify(cells));
  // The Shaping panel: the default source's state for that destination, throttled ("try again later"): its rate lowered.
  const shaped = page.getByTestId('shaping-row').filter({ hasText: `127.0.0.1:${srv.port}` });
  await shaped.waitFor({ timeout: 10_000 });
  const sc = await shaped.locator('td').allInnerTexts();
  assert.equal(sc[0], 'default', JSON.stringify(sc));
  assert.match(sc[3]!, /^[\d.]+\/s$/, `a learned rate: ${JSON.stringify(sc)}`);
  assert.equal(sc[4], '–', 'not suspended');
  await screenshot(t, page, 'dashboard-alerts.png');
  // Nothing more is sent (the retries are minutes away): the window empties and the alert clears.
  await waitForText(page, 'alert-count', (s) => s === 'none', 'the alerts to clear', 10_000);
  assert.deepEqual(problems, []);
});
