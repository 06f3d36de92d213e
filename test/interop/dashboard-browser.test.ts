// The dashboard's message browser in a real headless Chromium (playwright-core) against a real
// node with POSTERN_API_TOKEN: search by sender, recipient, domain, state and id, page with
// the cursor, open a message, and hold → release → delete (and bounce, retry now), each
// through its confirmation, checking the queue through the API after each step. A message
// whose sender, recipients, headers and replies carry markup must show as text and inject
// nothing; the message page lists each recipient's kept attempts, oldest first. A
// page of another origin in the same browser cannot make the token-less API act.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { startTestNode } from '../helpers/node.js';
import type { PosternNode } from '../../src/main.js';
import { chromiumSkip, openPage, testIdText, waitForTestIdText } from '../helpers/chromium.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const skip = chromiumSkip;
const TOKEN = 'browser-test-token-0123456789';

interface Node {
  base: string;
  /** The node's own queue (for attempts no delivery made: delivery is off). */
  queue: PosternNode['queue'];
  call(method: string, path: string, json?: unknown): Promise<{ status: number; json: any }>;
  inject(from: string, to: string[], extra?: Record<string, unknown>): Promise<string>;
}

async function start(t: TestContext): Promise<Node> {
  const node = await startTestNode(t, { POSTERN_HTTP_PORT: '0', POSTERN_API_TOKEN: TOKEN });
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  const n: Node = {
    base,
    queue: node.queue,
    async call(method, path, json) {
      const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
      if (json !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(base + path, { method, headers, ...(json !== undefined ? { body: JSON.stringify(json) } : {}) });
      const text = await res.text();
      return { status: res.status, json: text === '' ? null : JSON.parse(text) };
    },
    async inject(from, to, extra = {}) {
      const r = await n.call('POST', '/v1/messages', { from, to, raw: 'Subject: browser test\r\n\r\nhello\r\n', ...extra });
      assert.equal(r.status, 202, JSON.stringify(r.json));
      return r.json.id as string;
    },
  };
  return n;
}

async function open(t: TestContext, n: Node): Promise<{ page: Page; problems: string[] }> {
  const o = await openPage(t);
  await o.page.goto(`${n.base}/#token=${encodeURIComponent(TOKEN)}`);
  await waitForTestIdText(o.page, 'page-info', (s) => s.startsWith('page 1:'), 'the first page of messages');
  return o;
}

/** Fill the search form (fields not given are cleared) and wait for the answer. */
async function search(page: Page, f: { id?: string; sender?: string; recipient?: string; domain?: string; state?: string; limit?: string }): Promise<string> {
  for (const k of ['id', 'sender', 'recipient', 'domain'] as const) await page.getByTestId(`search-${k}`).fill(f[k] ?? '');
  await page.getByTestId('search-state').selectOption(f.state ?? '');
  await page.getByTestId('search-limit').selectOption(f.limit ?? '50');
  await page.getByTestId('page-info').evaluate((e) => (e.textContent = ''));
  await page.getByTestId('search-id').press('Enter');
  let info = '';
  await waitFor('the search result', async () => (info = await testIdText(page, 'page-info')).startsWith('page ') || (await page.getByTestId('browse-error').isVisible()), { timeoutMs: 5000, intervalMs: 50 });
  return info;
}

const rowIds = (page: Page): Promise<string[]> => page.getByTestId('message-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id') ?? ''));

async function shot(t: TestContext, page: Page, name: string): Promise<void> {
  const file = join(tmpdir(t, 'postern-browser-'), name);
  await page.screenshot({ path: file, fullPage: true });
  t.diagnostic(`screenshot: ${file}`);
}

/** Click an action, check the confirmation names the message, confirm, wait for the result. */
async function act(page: Page, action: string, id: string, done: RegExp): Promise<void> {
  await page.getByTestId(`action-${action}`).click();
  assert.ok(await page.getByTestId('confirm').isVisible(), `${action}: a confirmation first`);
  assert.match(await testIdText(page, 'confirm-text'), new RegExp(id));
  await page.getByTestId('confirm-yes').click();
  await waitForTestIdText(page, 'action-result', (s) => done.test(s), `the result of ${action}`);
  assert.equal(await page.getByTestId('confirm').isVisible(), false);
}

test('search by sender, recipient, domain, state and id; page with the cursor; open a message', { skip }, async (t) => {
  const n = await start(t);
  const bulk: string[] = [];
  for (let i = 0; i < 27; i++) bulk.push(await n.inject(`news${i}@bulk.example`, [`reader${i}@readers.test`]));
  const held = await n.inject('alice@shop.example', ['bob@x.test', 'carol@y.test', 'dave@y.test', 'erin@z.test']);
  assert.equal((await n.call('POST', `/v1/queue/messages/${held}/hold`)).status, 200);
  const later = await n.inject('alice@shop.example', ['frank@y.test'], { send_at: new Date(Date.now() + 3_600_000).toISOString() });

  const { page, problems } = await open(t, n);
  assert.deepEqual(await rowIds(page), [...bulk, held, later], 'every message, oldest first');

  // Paging: 27 matches at 25 a page.
  assert.equal(await search(page, { sender: 'BULK.example', limit: '25' }), 'page 1: 25 messages');
  assert.deepEqual(await rowIds(page), bulk.slice(0, 25));
  assert.equal(await page.getByTestId('page-prev').isDisabled(), true);
  await page.getByTestId('page-next').click();
  await waitForTestIdText(page, 'page-info', (s) => s === 'page 2: 2 messages', 'page 2');
  assert.deepEqual(await rowIds(page), bulk.slice(25));
  assert.equal(await page.getByTestId('page-next').isDisabled(), true);
  await page.getByTestId('page-prev').click();
  await waitForTestIdText(page, 'page-info', (s) => s === 'page 1: 25 messages', 'back to page 1');
  assert.deepEqual(await rowIds(page), bulk.slice(0, 25));

  // Each filter, checked against the API's answer for the same query.
  const api = async (q: string): Promise<string[]> => (await n.call('GET', `/v1/queue/messages?${q}`)).json.messages.map((m: any) => m.id);
  await search(page, { recipient: 'reader7@' });
  assert.deepEqual(await rowIds(page), [bulk[7]]);
  await search(page, { domain: 'y.test' });
  assert.deepEqual(await rowIds(page), [held, later]);
  assert.deepEqual(await rowIds(page), await api('domain=y.test'));
  await search(page, { state: 'held' });
  assert.deepEqual(await rowIds(page), [held]);
  await search(page, { state: 'scheduled', sender: 'alice' });
  assert.deepEqual(await rowIds(page), [later]);
  await search(page, { id: later });
  assert.deepEqual(await rowIds(page), [later]);
  await search(page, { state: 'leased' });
  assert.deepEqual(await rowIds(page), []);
  assert.equal(await testIdText(page, 'messages'), 'no message matches');

  // The row: truncated recipients, the state, the size.
  await search(page, { id: held });
  const cells = await page.getByTestId('message-row').locator('td').allInnerTexts();
  assert.equal(cells[0], held);
  assert.equal(cells[3], 'alice@shop.example');
  assert.equal(cells[4], 'bob@x.test, carol@y.test, dave@y.test +1 more');
  assert.equal(cells[5], 'held');
  assert.match(cells[1]!, /^\d+s$/);

  // A bad value is the API's 400, shown in the page.
  await search(page, { id: 'not!an-id' });
  assert.match(await waitForTestIdText(page, 'browse-error', (s) => s !== '', 'the 400 reason'), /^id: must be a message id/);

  // Open the message: envelope, per-recipient state, headers.
  await search(page, { sender: 'alice' });
  await page.getByTestId('message-row').filter({ hasText: held }).getByTestId('open-message').click();
  await waitForTestIdText(page, 'message-id', (s) => s === held, 'the message page');
  const env = await testIdText(page, 'envelope');
  assert.match(env, /state\s+held/);
  assert.match(env, /sender\s+<alice@shop\.example>/);
  assert.match(env, /client\s+127\.0\.0\.1/);
  const rcpts = await page.getByTestId('recipient-row').locator('td:first-child').allInnerTexts();
  assert.deepEqual(rcpts, ['bob@x.test', 'carol@y.test', 'dave@y.test', 'erin@z.test']);
  assert.equal(await testIdText(page, 'recipient-count'), '4 (4 pending)');
  const headers = await page.getByTestId('header-row').allInnerTexts();
  assert.ok(headers.some((h) => /^Received\s/.test(h)), JSON.stringify(headers));
  assert.ok(headers.some((h) => /^Subject\s+browser test$/.test(h)), JSON.stringify(headers));
  assert.equal(await page.getByTestId('action-hold').isDisabled(), true, 'already held');
  assert.equal(await page.getByTestId('action-release').isDisabled(), false);
  await shot(t, page, 'browser-message.png');
  assert.deepEqual(problems.filter((p) => !/status of 400/.test(p)), []);
});

test('hold → release → delete, bounce and retry now, each confirmed in the page, the queue checked through the API', { skip }, async (t) => {
  const n = await start(t);
  const id = await n.inject('ops@shop.example', ['a@x.test', 'b@x.test']);
  const other = await n.inject('ops@shop.example', ['c@y.test']);
  const later = await n.inject('ops@shop.example', ['d@y.test'], { send_at: new Date(Date.now() + 3_600_000).toISOString() });
  const state = async (mid: string): Promise<string | number> => {
    const r = await n.call('GET', `/v1/queue/messages/${mid}`);
    return r.status === 200 ? (r.json.queue_state as string) : r.status;
  };
  const { page, problems } = await open(t, n);
  await page.getByTestId('message-row').filter({ hasText: id }).getByTestId('open-message').click();
  await waitForTestIdText(page, 'message-id', (s) => s === id, 'the message page');

  // Cancel leaves the message as it was.
  await page.getByTestId('action-hold').click();
  assert.match(await testIdText(page, 'confirm-text'), new RegExp(`Hold message ${id}`));
  await page.getByTestId('confirm-no').click();
  assert.equal(await page.getByTestId('confirm').isVisible(), false);
  assert.equal(await state(id), 'ready', 'cancelled: nothing changed');
  // So does Escape.
  await page.getByTestId('action-delete').click();
  await page.keyboard.press('Escape');
  assert.equal(await page.getByTestId('confirm').isVisible(), false);
  assert.equal(await state(id), 'ready');

  await act(page, 'hold', id, /: held$/);
  assert.equal(await state(id), 'held');
  await waitForTestIdText(page, 'envelope', (s) => /state\s+held/.test(s), 'the message page refreshed');
  await waitForTestIdText(page, 'messages', (s) => new RegExp(`${id}[^\\n]*held`).test(s), 'the list refreshed');

  await act(page, 'release', id, /released: due now$/);
  assert.equal(await state(id), 'ready');
  await waitForTestIdText(page, 'envelope', (s) => /state\s+ready/.test(s), 'the message page refreshed after release');

  await act(page, 'delete', id, /: deleted$/);
  assert.equal(await state(id), 404);
  assert.equal(await page.getByTestId('actions').isVisible(), false, 'nothing left to act on');
  await waitForTestIdText(page, 'page-info', (s) => s === 'page 1: 2 messages', 'the list without it');
  assert.deepEqual(await rowIds(page), [other, later]);

  // Retry now: the scheduled message becomes due.
  await page.getByTestId('message-row').filter({ hasText: later }).getByTestId('open-message').click();
  await waitForTestIdText(page, 'message-id', (s) => s === later, 'the scheduled message');
  assert.equal(await state(later), 'scheduled');
  await act(page, 'retry', later, /: due now$/);
  assert.equal(await state(later), 'ready');

  // Bounce: the recipient fails, the sender gets a DSN (a new message from <>).
  await page.getByTestId('message-row').filter({ hasText: other }).getByTestId('open-message').click();
  await waitForTestIdText(page, 'message-id', (s) => s === other, 'the other message');
  await act(page, 'bounce', other, /: bounced \(1 recipient, DSN [0-9a-v]+ queued\)$/);
  assert.equal(await state(other), 404, 'its only recipient failed: removed');
  const dsn = (await n.call('GET', '/v1/queue/messages?sender=%3C%3E')).json.messages;
  assert.equal(dsn.length, 1);
  assert.deepEqual(dsn[0].recipient_addresses, ['ops@shop.example']);
  await waitForTestIdText(page, 'page-info', (s) => s === 'page 1: 2 messages', 'the list with the DSN');
  await shot(t, page, 'browser-actions.png');
  assert.deepEqual(problems, []);

  // A refusal shows the API's reason: the message was deleted behind the page's back.
  await page.getByTestId('message-row').filter({ hasText: later }).getByTestId('open-message').click();
  await waitForTestIdText(page, 'message-id', (s) => s === later, 'the message again');
  assert.equal((await n.call('DELETE', `/v1/queue/messages/${later}`)).status, 200);
  await act(page, 'hold', later, new RegExp(`^hold refused: no message ${later} in the queue$`));
  assert.equal(await page.getByTestId('actions').isVisible(), false, 'nothing left to act on');
  assert.equal(await state(later), 404, 'and nothing was created');
  assert.ok(problems.every((p) => /status of 404/.test(p)), JSON.stringify(problems));
});

test('markup in the sender, recipients and headers is shown as text: no element, no script', { skip }, async (t) => {
  const n = await start(t);
  const script = '<script>window.__xss = 1</script>';
  const img = '"><img src=x onerror="window.__xss = 2">';
  const sender = `"${script}"@evil.example`;
  const rcpt = '"\\"><img src=x onerror=window.__xss=3>"@evil.example';
  const raw = `From: "${img}" <${script}@evil.example>\r\nSubject: ${script} ${img}\r\nX-${'Img'}: <img src=x onerror=alert(1)><svg onload=alert(2)>\r\n\r\nbody\r\n`;
  const id = await n.inject(sender, [rcpt], { raw });
  // A reply with markup, as a remote server could send it.
  assert.equal((await n.call('DELETE', `/v1/queue/destinations/evil.example`)).status, 200);
  const id2 = await n.inject(sender, [rcpt, 'ok@fine.test'], { raw });
  assert.equal((await n.call('POST', `/v1/queue/destinations/evil.example/bounce`)).status, 200);

  const { page, problems } = await open(t, n);
  await search(page, { sender: 'script' });
  assert.deepEqual(await rowIds(page), [id2], 'the first one was deleted with its only recipient');
  const cells = await page.getByTestId('message-row').locator('td').allInnerTexts();
  assert.equal(cells[3], sender, 'the sender as text');
  assert.equal(cells[4], `${rcpt}, ok@fine.test`);
  await page.getByTestId('open-message').click();
  await waitForTestIdText(page, 'message-id', (s) => s === id2, 'the message page');
  const headers = await page.getByTestId('header-row').allInnerTexts();
  assert.ok(headers.includes(`Subject\t${script} ${img}`), JSON.stringify(headers));
  assert.ok(headers.includes(`From\t"${img}" <${script}@evil.example>`), JSON.stringify(headers));
  assert.match(await testIdText(page, 'envelope'), new RegExp(`sender\\s+<${sender.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}>`));
  const rcptRows = await page.getByTestId('recipient-row').locator('td:first-child').allInnerTexts();
  assert.deepEqual(rcptRows, [rcpt, 'ok@fine.test']);

  // Nothing of it became markup: no element but the page's own, no script ran.
  const found = await page.evaluate(() => {
    // This runs in the page (the test's tsconfig has no DOM types).
    const w = globalThis as unknown as { __xss?: number; document: { querySelectorAll(s: string): { length: number } } };
    const d = w.document;
    return { img: d.querySelectorAll('img').length, svg: d.querySelectorAll('main svg:not(.chart)').length, scripts: d.querySelectorAll('script').length, xss: w.__xss ?? null };
  });
  assert.deepEqual(found, { img: 0, svg: 0, scripts: 1, xss: null });
  await shot(t, page, 'browser-hostile.png');
  assert.deepEqual(problems, [], 'no CSP violation either');
  assert.equal(id < id2, true);
});

test('without a token, the dashboard acts from its own origin; a page of another origin in the same browser cannot', { skip }, async (t) => {
  const node = await startTestNode(t, { POSTERN_HTTP_PORT: '0' });
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  const call = async (method: string, path: string): Promise<{ status: number; json: any }> => {
    const res = await fetch(base + path, { method });
    return { status: res.status, json: await res.json() };
  };
  const inj = await fetch(`${base}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ from: 'a@b.example', to: ['c@d.test'], raw: 'Subject: x\r\n\r\ny\r\n' }) });
  const id = ((await inj.json()) as { id: string }).id;

  // Another origin: the same address, another port (same-site, cross-origin), as a local web
  // page or a compromised local service would be. It tries a no-cors fetch, a form post and a
  // DELETE (which needs a CORS preflight) against the message, then says it is done.
  const target = `${base}/v1/queue/messages/${id}`;
  const evil = `<!doctype html><title>evil</title><link rel="icon" href="data:,"><iframe name="sink"></iframe>
<form id="f" method="POST" action="${target}/hold" target="sink"></form>
<script>
const done = [];
done.push(fetch('${target}/hold', { method: 'POST', mode: 'no-cors' }).catch(() => null));
done.push(fetch('${target}/release', { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: '{}' }).catch(() => null));
done.push(fetch('${target}', { method: 'DELETE' }).catch(() => null));
done.push(new Promise((r) => { document.querySelector('iframe').addEventListener('load', r, { once: true }); document.getElementById('f').submit(); }));
Promise.all(done).then(() => { document.title = 'done'; });
</script>`;
  const seen: string[] = [];
  const attacker = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.writeHead(200, { 'content-type': 'text/html' }).end(evil);
  });
  await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => attacker.close(() => r())));
  const refused: number[] = [];
  const { page } = await openPage(t);
  page.on('response', (r) => {
    if (r.url().startsWith(target)) refused.push(r.status());
  });
  await page.goto(`http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`);
  await waitFor('the other origin\'s page to finish', async () => (await page.title()) === 'done', { timeoutMs: 10_000, intervalMs: 50 });
  assert.equal(seen[0], 'GET /', 'the page loaded from the other origin');
  assert.ok(refused.length >= 3 && refused.every((s) => s === 403), `the API refused what reached it: ${JSON.stringify(refused)}`);
  const after = await call('GET', `/v1/queue/messages/${id}`);
  assert.equal(after.status, 200, 'not deleted');
  assert.equal(after.json.queue_state, 'ready', 'not held');

  // The dashboard itself, same origin, no token: the same action goes through.
  await page.goto(`${base}/`);
  await waitForTestIdText(page, 'page-info', (s) => s === 'page 1: 1 message', 'the dashboard list');
  await page.getByTestId('open-message').click();
  await waitForTestIdText(page, 'message-id', (s) => s === id, 'the message page');
  await act(page, 'hold', id, /: held$/);
  assert.equal((await call('GET', `/v1/queue/messages/${id}`)).json.queue_state, 'held');
});

test('the message page lists each recipient\'s kept attempts, oldest first, replies with markup as text', { skip }, async (t) => {
  const n = await start(t);
  const id = await n.inject('s@a.example', ['r@b.example', 'x@c.example']);
  const evil = '<img src=x onerror="window.__xss = 4"><script>window.__xss = 5</script>';
  const t0 = Date.parse('2026-01-02T03:04:05.000Z');
  for (let i = 1; i <= 7; i++) {
    await n.queue.settle(id, [{ address: 'r@b.example', kind: 'deferred', retryAt: Date.now() + 3_600_000, reply: { code: 451, enhanced: '4.7.1', text: `${evil} try ${i}`, command: 'RCPT', destination: 'smtp:mx.b.example:25', at: t0 + i * 60_000 } }]);
  }
  const { page, problems } = await open(t, n);
  await search(page, { id });
  await page.getByTestId('open-message').click();
  await waitForTestIdText(page, 'message-id', (s) => s === id, 'the message page');
  const hist = page.getByTestId('recipient-history');
  assert.equal(await hist.count(), 1, 'a history row for the tried recipient only');
  assert.match(await hist.innerText(), /^last 5 attempts, oldest first \(2 earlier not kept\):/);
  const entries = await page.getByTestId('history-entry').allTextContents();
  assert.deepEqual(entries, [3, 4, 5, 6, 7].map((i) => `${new Date(t0 + i * 60_000).toISOString()} 451 4.7.1 ${evil} try ${i} (smtp:mx.b.example:25)`));
  const found = await page.evaluate(() => {
    const w = globalThis as unknown as { __xss?: number; document: { querySelectorAll(s: string): { length: number } } };
    return { img: w.document.querySelectorAll('img').length, scripts: w.document.querySelectorAll('script').length, xss: w.__xss ?? null };
  });
  assert.deepEqual(found, { img: 0, scripts: 1, xss: null });
  await shot(t, page, 'browser-history.png');
  assert.deepEqual(problems, []);
});
