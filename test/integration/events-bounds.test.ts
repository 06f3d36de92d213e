// The event log on the open Internet: a client refusing DATA in a loop while the receiver is
// down costs one summary event per client per interval (not one commit per rejection), the
// log is bounded in size and age with the drops counted in /metrics, and the sender
// authenticates (POSTERN_EVENTS_TOKEN as Bearer, URL userinfo as Basic).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startTestNode } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { startHttpReceiver, type ReceivedRequest } from '../helpers/http-receiver.js';
import { RawClient } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { Queue } from '../../src/queue/store.js';
import type { MailEvent } from '../../src/queue/events.js';
import type { PosternNode } from '../../src/main.js';

/** Nothing listens on the discard port of loopback: every POST fails at once. */
const DEAD_RECEIVER = 'http://127.0.0.1:9/events';

/** `n` messages over the size limit in one session from `localAddress`: n × 552. */
async function refuseMany(node: PosternNode, n: number, localAddress: string): Promise<void> {
  const c = await RawClient.connect(node.ports.smtpPort, { localAddress });
  await c.read();
  await c.cmd('EHLO flood.example');
  const big = `Subject: big\r\n\r\n${`${'x'.repeat(70)}\r\n`.repeat(30)}.`;
  for (let i = 0; i < n; i++) {
    assert.equal((await c.cmd('MAIL FROM:<a@flood.example>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<b@local.test>')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    assert.equal((await c.cmd(big)).code, 552);
  }
  c.end();
}

function logged(node: PosternNode): MailEvent[] {
  return node.queue.events.peek(100_000).map((e) => e.event);
}

test('rejections from untrusted clients become one summary per client per interval, written in one commit', async (t) => {
  const node = await startTestNode(t, {
    POSTERN_EVENTS_URL: DEAD_RECEIVER,
    POSTERN_EVENTS_REJECTED_INTERVAL: '1s',
    // Loopback is not trusted here (no traffic goes to this network: it only configures).
    POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24',
    POSTERN_LOCAL_DOMAINS: 'local.test',
    POSTERN_MAX_MESSAGE_BYTES: '1K',
    POSTERN_MAX_ERRORS: '1000',
  });
  const commits0 = node.queue.stats().commits;
  const t0 = Date.now();
  await Promise.all([refuseMany(node, 150, '127.0.0.1'), refuseMany(node, 30, '127.0.0.2')]);
  const floodMs = Date.now() - t0;
  assert.equal(node.ctx.counters.messagesRejected, 180);
  if (floodMs < 900) {
    assert.equal(node.queue.stats().commits - commits0, 0, 'no commit for the rejections themselves');
    assert.equal(node.queue.events.pending, 0);
  }
  await waitFor('the summaries', () => {
    const byClient = new Map<string, number>();
    for (const e of logged(node)) byClient.set(e.client!, (byClient.get(e.client!) ?? 0) + (e.count ?? 0));
    return byClient.get('127.0.0.1') === 150 && byClient.get('127.0.0.2') === 30;
  }, 5000);
  const events = logged(node);
  // One per client per interval: the flood took at most a couple of intervals.
  const intervals = Math.ceil(floodMs / 1000) + 1;
  assert.ok(events.length <= 2 * intervals, `${events.length} summaries`);
  assert.ok(node.queue.stats().commits - commits0 <= intervals, 'one commit per interval');
  const s = events.find((e) => e.client === '127.0.0.1')!;
  assert.equal(s.type, 'rejected');
  assert.equal(s.source, 'smtp');
  assert.equal(s.code, 552);
  assert.ok(s.count! >= 1);
  assert.ok(Date.parse(s.since!) <= Date.parse(s.time));
  assert.match(s.reply!, /rejections?; the last: message refused: too-big/);
});

test('a trusted client\'s rejections are still events of their own', async (t) => {
  const node = await startTestNode(t, { POSTERN_EVENTS_URL: DEAD_RECEIVER, POSTERN_MAX_MESSAGE_BYTES: '1K', POSTERN_LOCAL_DOMAINS: 'local.test' });
  await refuseMany(node, 3, '127.0.0.1');
  await waitFor('three events', () => logged(node).length === 3, 5000);
  assert.deepEqual(logged(node).map((e) => [e.type, e.client, e.count]), Array(3).fill(['rejected', '127.0.0.1', undefined]));
});

test('the log keeps at most POSTERN_EVENTS_MAX events, dropping the oldest; /metrics counts the drops', async (t) => {
  const node = await startTestNode(t, { POSTERN_EVENTS_URL: DEAD_RECEIVER, POSTERN_EVENTS_MAX: '100', POSTERN_HTTP_PORT: '0' });
  for (let i = 0; i < 250; i++) node.ctx.onEvent!({ type: 'received', time: new Date().toISOString(), id: `e${i}` });
  await waitFor('the log trimmed to 100', () => node.queue.events.pending === 100 && logged(node).length === 100, 5000);
  const ids = logged(node).map((e) => Number(e.id!.slice(1)));
  assert.deepEqual(ids, Array.from({ length: 100 }, (_, i) => 150 + i), 'the newest 100 are kept, in order');
  const metrics = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  assert.match(metrics, /^postern_events_dropped_total 150$/m);
  assert.match(metrics, /^postern_events_pending 100$/m);
  assert.match(metrics, /^postern_events_post_failures_total \d+$/m);
});

test('EventLog.trim drops events past the age bound, and only those', async (t) => {
  const dir = tmpdir(t);
  const q = Queue.open({ path: join(dir, 'q'), mapSizeBytes: 64 * 1024 * 1024 });
  t.after(() => q.close());
  await q.events.appendMany([1, 2, 3].map((i) => ({ type: 'received', time: new Date().toISOString(), id: `a${i}` })));
  const bounds = { maxEvents: 1000, maxAgeMs: 60_000 };
  assert.equal(await q.events.trim(bounds), 0, 'nothing is a minute old yet');
  assert.equal(q.events.pending, 3);
  // Two minutes on: all three are past the minute.
  assert.equal(await q.events.trim(bounds, Date.now() + 120_000), 3);
  assert.equal(q.events.pending, 0);
  assert.equal(q.events.dropped, 3);
  assert.deepEqual(q.events.peek(10), []);
});

/** A receiver and its address without the scheme, to put userinfo in front. */
async function receiver(t: TestContext): Promise<{ url: string; requests: ReceivedRequest[] }> {
  const r = await startHttpReceiver(t);
  return { url: `127.0.0.1:${r.port}/events`, requests: r.requests };
}

test('the event sender authenticates: POSTERN_EVENTS_TOKEN as Bearer, URL userinfo as Basic, not both', async (t) => {
  const bearer = await receiver(t);
  const a = await startTestNode(t, { POSTERN_EVENTS_URL: `http://${bearer.url}`, POSTERN_EVENTS_TOKEN: 'ev-token-123' });
  a.ctx.onEvent!({ type: 'received', time: new Date().toISOString(), id: 'x1' });
  await waitFor('a POST', () => bearer.requests.length > 0, 5000);
  assert.equal(bearer.requests[0]!.headers.authorization, 'Bearer ev-token-123');

  const basic = await receiver(t);
  const b = await startTestNode(t, { POSTERN_EVENTS_URL: `http://evuser:p%40ss@${basic.url}` });
  b.ctx.onEvent!({ type: 'received', time: new Date().toISOString(), id: 'x2' });
  await waitFor('a POST', () => basic.requests.length > 0, 5000);
  assert.equal(basic.requests[0]!.headers.authorization, `Basic ${Buffer.from('evuser:p@ss').toString('base64')}`);

  await assert.rejects(
    startTestNode(t, { POSTERN_EVENTS_URL: `http://evuser:Secret-Pa55@${basic.url}`, POSTERN_EVENTS_TOKEN: 'ev-token-123' }),
    (err: Error) => {
      assert.match(err.message, /POSTERN_EVENTS_URL=.* has credentials and POSTERN_EVENTS_TOKEN is set: use one of them/);
      assert.doesNotMatch(err.message, /Secret-Pa55/);
      return true;
    },
  );
});
