// HTTP queue administration against a real node: the suppression list (add, list, remove,
// durable, case-insensitive) and its effect on delivery (a suppressed recipient is never sent
// to and is reported in a bounce while the other recipient is delivered), retry of a scheduled
// message, the per-destination view and hold/release/retry, and the administrator's bounce.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestNode } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';
import type { PosternNode } from '../../src/main.js';

const TOKEN = 'admin-token-0123456789';
const fast = { delivery: { pollIntervalMs: 50 } };
const RAW = 'From: me@home.test\nTo: you@x.test\nSubject: admin test\n\nhello\n';

interface Admin {
  node: PosternNode;
  call(method: string, path: string, json?: unknown): Promise<{ status: number; json: any }>;
  inject(to: string[], extra?: Record<string, unknown>): Promise<string>;
}

async function start(t: TestContext, env: Record<string, string> = {}, withDelivery = false): Promise<Admin> {
  const node = await startTestNode(t, { POSTERN_HTTP_PORT: '0', POSTERN_API_TOKEN: TOKEN, ...env }, withDelivery ? fast : {});
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  const a: Admin = {
    node,
    async call(method, path, json) {
      const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
      if (json !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(base + path, { method, headers, ...(json !== undefined ? { body: JSON.stringify(json) } : {}) });
      const text = await res.text();
      return { status: res.status, json: text === '' ? null : JSON.parse(text) };
    },
    async inject(to, extra = {}) {
      const r = await a.call('POST', '/v1/messages', { from: 'me@home.test', to, raw: RAW, ...extra });
      assert.equal(r.status, 202, JSON.stringify(r.json));
      return r.json.ids[0] as string;
    },
  };
  return a;
}

function maildirFiles(root: string, domain: string, local: string): string[] {
  const dir = join(root, domain, local, 'new');
  return existsSync(dir) ? readdirSync(dir).map((f) => readFileSync(join(dir, f), 'latin1')) : [];
}

test('suppression list: add (201/200), list with pagination, has() case-insensitive, remove (200/404), auth', async (t) => {
  const a = await start(t);
  const put = await a.call('PUT', '/v1/suppressions/Bob%40Example.COM', { reason: 'complaint' });
  assert.equal(put.status, 201, JSON.stringify(put.json));
  assert.equal(put.json.address, 'bob@example.com');
  assert.equal(put.json.reason, 'complaint');
  assert.equal(put.json.created, true);
  const again = await a.call('PUT', '/v1/suppressions/bob@example.com.');
  assert.equal(again.status, 200);
  assert.equal(again.json.reason, 'complaint', 'no body keeps the reason');
  for (const x of ['c@a.test', 'a@a.test', 'b@a.test']) assert.equal((await a.call('PUT', `/v1/suppressions/${x}`)).status, 201);

  assert.ok(a.node.queue.suppressions.has('BOB@example.com'));
  assert.ok(a.node.queue.suppressions.has('bob@EXAMPLE.com'));
  assert.ok(!a.node.queue.suppressions.has('bob2@example.com'));

  const p1 = await a.call('GET', '/v1/suppressions?limit=2');
  assert.equal(p1.status, 200);
  assert.deepEqual(p1.json.suppressions.map((s: any) => s.address), ['a@a.test', 'b@a.test']);
  assert.equal(p1.json.count, 4);
  assert.equal(p1.json.next, 'b@a.test');
  const p2 = await a.call('GET', `/v1/suppressions?limit=2&after=${encodeURIComponent(p1.json.next)}`);
  assert.deepEqual(p2.json.suppressions.map((s: any) => s.address), ['bob@example.com', 'c@a.test'].sort());
  assert.equal(p2.json.next, null);
  assert.equal((await a.call('GET', '/v1/suppressions?limit=0')).status, 400);

  assert.equal((await a.call('PUT', '/v1/suppressions/not-an-address')).status, 400);
  assert.equal((await a.call('PUT', '/v1/suppressions/x@y.test', { reason: 'a\r\nb' })).status, 400);
  assert.equal((await a.call('PUT', '/v1/suppressions/x@y.test', { nope: 1 })).status, 400);

  const del = await a.call('DELETE', '/v1/suppressions/BOB@example.com');
  assert.equal(del.status, 200);
  assert.equal((await a.call('DELETE', '/v1/suppressions/bob@example.com')).status, 404);
  assert.ok(!a.node.queue.suppressions.has('bob@example.com'));

  const noAuth = await fetch(`http://127.0.0.1:${a.node.ports.httpPort}/v1/suppressions`);
  assert.equal(noAuth.status, 401);
});

test('a suppressed recipient is never delivered and is reported in the bounce; the other one is delivered', async (t) => {
  const root = tmpdir(t, 'postern-admin-maildir-');
  const a = await start(t, { POSTERN_DELIVERY: 'routes', POSTERN_MAILDIR_CREATE: 'true', POSTERN_ROUTES: `local.test=maildir:${root};home.test=maildir:${root}` }, true);
  // Injection refuses a suppressed recipient, so the message is queued first (scheduled, not
  // yet due), then the recipient suppressed, then the message made due: the scheduler's check.
  const id = await a.inject(['bob@local.test', 'Carol@LOCAL.test'], { send_at: new Date(Date.now() + 3_600_000).toISOString() });
  assert.equal((await a.call('PUT', '/v1/suppressions/carol@local.test', { reason: 'unsubscribed' })).status, 201);
  assert.equal((await a.call('POST', '/v1/messages', { from: 'me@home.test', to: ['carol@local.test'], raw: RAW })).status, 422, 'refused at injection now');
  assert.equal((await a.call('POST', `/v1/queue/messages/${id}/retry`)).status, 200);
  await waitFor('bob delivered', () => maildirFiles(root, 'local.test', 'bob').length === 1);
  await waitFor('the bounce to the sender', () => maildirFiles(root, 'home.test', 'me').length === 1);
  await waitFor('queue empty', () => a.node.queue.counts().total === 0);
  assert.equal(maildirFiles(root, 'local.test', 'carol').length, 0, 'never sent to the suppressed recipient');
  const dsn = maildirFiles(root, 'home.test', 'me')[0]!;
  assert.match(dsn, /Final-Recipient: rfc822;\s*Carol@LOCAL\.test/i);
  assert.match(dsn, /Status: 5\.7\.1/);
  assert.match(dsn, /recipient suppressed/);
  assert.doesNotMatch(dsn, /Final-Recipient: rfc822;\s*bob@local\.test/i);
  assert.equal(a.node.delivery!.counters.attempts, 2, 'one attempt for bob, one for the bounce, none for carol');
});

test('retry makes a scheduled message due now; 409 when held; 404 unknown', async (t) => {
  const a = await start(t);
  const sendAt = new Date(Date.now() + 3_600_000).toISOString();
  const id = await a.inject(['you@x.test'], { send_at: sendAt });
  assert.equal(a.node.queue.counts().byState.scheduled, 1);
  const r = await a.call('POST', `/v1/queue/messages/${id}/retry`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.ok(Date.parse(r.json.next_attempt_at) <= Date.now());
  assert.deepEqual(a.node.queue.counts().byState, { ready: 1, scheduled: 0, leased: 0, held: 0 });

  assert.equal((await a.call('POST', `/v1/queue/messages/${id}/hold`)).status, 200);
  const held = await a.call('POST', `/v1/queue/messages/${id}/retry`);
  assert.equal(held.status, 409);
  assert.equal(held.json.error.code, 'PST_HTTP_CONFLICT');
  assert.equal((await a.call('POST', '/v1/queue/messages/nope/retry')).status, 404);
  await a.node.queue.remove(id);
  assert.equal((await a.call('POST', `/v1/queue/messages/${id}/retry`)).status, 404);
});

test('destinations: pending per domain sorted; hold/release/retry a whole destination with counts', async (t) => {
  const a = await start(t);
  const later = new Date(Date.now() + 3_600_000).toISOString();
  await a.inject(['a@x.test']);
  await a.inject(['b@x.test', 'c@x.test', 'd@y.test']);
  await a.inject(['e@y.test'], { send_at: later });
  await a.inject(['f@x.test'], { send_at: later });
  await a.inject(['g@z.test']);

  const d = await a.call('GET', '/v1/queue/destinations');
  assert.equal(d.status, 200);
  assert.deepEqual(d.json.destinations, [
    { domain: 'x.test', pending: 4 },
    { domain: 'y.test', pending: 2 },
    { domain: 'z.test', pending: 1 },
  ]);
  assert.equal(d.json.total_domains, 3);
  const top = await a.call('GET', '/v1/queue/destinations?limit=1');
  assert.deepEqual(top.json.destinations, [{ domain: 'x.test', pending: 4 }]);
  assert.equal(top.json.truncated, true);

  // retry: only the scheduled x.test message changes.
  const rt = await a.call('POST', '/v1/queue/destinations/X.test/retry');
  assert.equal(rt.status, 200);
  assert.deepEqual(rt.json, { domain: 'x.test', action: 'retry', messages: 1 });
  assert.equal(a.node.queue.counts().byState.scheduled, 1, 'the y.test one is still scheduled');

  const h = await a.call('POST', '/v1/queue/destinations/y.test/hold');
  assert.equal(h.json.messages, 2);
  assert.equal(a.node.queue.counts().byState.held, 2);
  assert.equal((await a.call('POST', '/v1/queue/destinations/y.test/hold')).json.messages, 0, 'already held');
  assert.equal((await a.call('POST', '/v1/queue/destinations/y.test/retry')).json.messages, 0, 'held ones are not retried');
  const rel = await a.call('POST', '/v1/queue/destinations/y.test/release');
  assert.equal(rel.json.messages, 2);
  assert.deepEqual(a.node.queue.counts().byState, { ready: 5, scheduled: 0, leased: 0, held: 0 });
  assert.equal((await a.call('POST', '/v1/queue/destinations/none.test/hold')).json.messages, 0);
  assert.equal((await a.call('POST', '/v1/queue/destinations/a%40b/hold')).status, 400);
});

test('destination actions work across several write batches', async (t) => {
  const a = await start(t);
  const ids: string[] = [];
  for (let i = 0; i < 30; i++) ids.push(await a.inject([`u${i}@many.test`]));
  // Through the Queue with a batch of 7: 5 transactions (7+7+7+7+2).
  assert.equal(await a.node.queue.applyToDomain('many.test', 'hold', 7), 30);
  assert.equal(a.node.queue.counts().byState.held, 30);
  assert.equal(await a.node.queue.applyToDomain('MANY.test', 'release', 7), 30);
  assert.equal(a.node.queue.counts().byState.held, 0);
});

test('bounce: every pending recipient failed 5.0.0, the DSN queued to the sender, the message gone', async (t) => {
  const a = await start(t);
  const id = await a.inject(['a@x.test', 'b@y.test']);
  const r = await a.call('POST', `/v1/queue/messages/${id}/bounce`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.deepEqual(r.json.bounced, ['a@x.test', 'b@y.test']);
  assert.equal(typeof r.json.dsn_id, 'string');
  assert.equal(a.node.queue.get(id), undefined, 'the bounced message is removed');
  const dsn = a.node.queue.get(r.json.dsn_id)!;
  assert.equal(dsn.sender, '');
  assert.deepEqual(dsn.recipients.map((x) => x.address), ['me@home.test']);
  const text = a.node.queue.withBody(dsn.id, (b) => b.toString('latin1'));
  assert.match(text, /Status: 5\.0\.0/);
  assert.match(text, /bounced by administrator/);
  assert.match(text, /Final-Recipient: rfc822;\s*a@x\.test/);
  assert.match(text, /Final-Recipient: rfc822;\s*b@y\.test/);
  assert.equal((await a.call('POST', `/v1/queue/messages/${id}/bounce`)).status, 404);

  // A null-sender message is bounced without a DSN (never bounce a bounce).
  const nid = await a.inject(['c@x.test'], { from: '' });
  const n = await a.call('POST', `/v1/queue/messages/${nid}/bounce`);
  assert.equal(n.status, 200);
  assert.equal(n.json.dsn_id, null);
  assert.equal(a.node.queue.get(nid), undefined);
});

test('destination bounce and delete: only that domain\'s pending recipients fail; one DSN per message for bounce, none for delete', async (t) => {
  const a = await start(t);
  const q = a.node.queue;
  const onlyA = await a.inject(['x@a.test']);
  const mixed = await a.inject(['y@a.test', 'z@b.test']);
  const onlyB = await a.inject(['w@b.test']);
  const bounce = await a.call('POST', '/v1/queue/destinations/A.test/bounce');
  assert.equal(bounce.status, 200, JSON.stringify(bounce.json));
  assert.deepEqual([bounce.json.messages, bounce.json.recipients, bounce.json.dsns, bounce.json.more], [2, 2, 2, false]);
  assert.equal(q.get(onlyA), undefined, 'a message with only a.test recipients is gone');
  const m = q.get(mixed)!;
  assert.deepEqual(m.recipients.map((r) => [r.address, r.state]), [['y@a.test', 'failed'], ['z@b.test', 'pending']]);
  assert.equal(m.recipients[0]!.lastReply?.text, 'bounced by administrator');
  const dsns = q.list().filter((r) => r.sender === '');
  assert.equal(dsns.length, 2, 'one DSN per bounced message, to the sender');
  assert.deepEqual(dsns.map((d) => d.recipients[0]!.address), ['me@home.test', 'me@home.test']);
  assert.equal(q.counts().byDomain['a.test'] ?? 0, 0);
  const del = await a.call('DELETE', '/v1/queue/destinations/b.test');
  assert.equal(del.status, 200);
  assert.deepEqual([del.json.messages, del.json.recipients, del.json.dsns], [2, 2, 0]);
  assert.equal(q.get(mixed), undefined);
  assert.equal(q.get(onlyB), undefined);
  assert.equal(q.list().filter((r) => r.sender === '').length, 2, 'delete sends no DSN');
  assert.equal((await a.call('POST', '/v1/queue/destinations/bad%20domain/bounce')).status, 400);
});
