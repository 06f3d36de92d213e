// Two postern nodes sharing one real redis-server (POSTERN_REDIS_URL) and one loopback sink:
// a destination limited to 10/s gets about 10 a second from both together; Redis stopped
// mid-run leaves delivery going on local shares with one redis-down alert, cleared (and the
// limits shared again) once Redis is back; a suppression added on one node is refused on the
// other; AUTH failures of one client address count on every node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { startTestNode } from '../helpers/node.js';
import { startScriptedServer, type ScriptedServer } from '../helpers/scripted-server.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { REDIS_SKIP, startRedis } from '../helpers/redis-server.js';
import type { PosternNode } from '../../src/main.js';
import { join } from 'node:path';
import { RawClient } from '../helpers/smtp-client.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { addUser } from '../../src/auth/users.js';

async function twoNodes(t: TestContext, url: string, port: number, env: Record<string, string> = {}): Promise<[PosternNode, PosternNode]> {
  const e = { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `sink.example=smtp:127.0.0.1:${port}`, POSTERN_TLS_POLICY: 'none', POSTERN_REDIS_URL: url, POSTERN_REDIS_LEASE_MS: '3s', POSTERN_REDIS_TIMEOUT_MS: '1s', ...env };
  // A deadline of 1 s: on a loaded test machine 100 ms answers can be late, and a late answer is a local decision.
  const a = await startTestNode(t, e, { delivery: { pollIntervalMs: 50 } });
  const b = await startTestNode(t, e, { delivery: { pollIntervalMs: 50 } });
  await waitFor('both nodes connected and seeing each other', () => a.cluster!.link.up && b.cluster!.link.up && a.cluster!.limiter.liveNodes === 2 && b.cluster!.limiter.liveNodes === 2, 10_000);
  return [a, b];
}

/** When the sink saw each message (sampled every 5 ms), until it has `n` or `timeoutMs` passes. */
async function arrivals(srv: ScriptedServer, n: number, timeoutMs: number): Promise<number[]> {
  const at: number[] = [];
  await waitFor(`${n} messages at the sink`, () => {
    const now = Date.now();
    while (at.length < srv.messages().length) at.push(now);
    return at.length >= n;
  }, { timeoutMs, intervalMs: 5 });
  return at;
}

/** The most arrivals in any window of `ms`. */
function peak(at: readonly number[], ms: number): number {
  let best = 0;
  for (let i = 0, j = 0; i < at.length; i++) {
    while (at[i]! - at[j]! >= ms) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

test('two nodes sharing POSTERN_DEST_RATE=10/s deliver about 10 a second together', { skip: REDIS_SKIP }, async (t) => {
  const redis = await startRedis(t);
  const srv = await startScriptedServer(t);
  const [a, b] = await twoNodes(t, redis.url, srv.port, { POSTERN_DEST_RATE: '10/s' });
  const n = 30;
  const sends: Array<Promise<string>> = [];
  for (let i = 0; i < n; i++) sends.push(sendMessage((i % 2 === 0 ? a : b).ports.smtpPort, 's@example.org', [`r${i}@sink.example`], `Subject: ${i}\r\n\r\nhello\r\n`));
  await Promise.all(sends);
  const at = await arrivals(srv, n, 30_000);
  const span = at[n - 1]! - at[0]!;
  // 30 at 10/s: 2.9 s from first to last; each node on its own 10/s would take ~1.5 s.
  assert.ok(span >= 2400, `first to last in ${span} ms`);
  assert.ok(peak(at, 1000) <= 12, `at most ~10 in any second, saw ${peak(at, 1000)}`);
  assert.ok(a.cluster!.limiter.counts.shared > 0 && b.cluster!.limiter.counts.shared > 0, 'both nodes asked Redis');
  assert.equal(a.cluster!.limiter.counts.local + b.cluster!.limiter.counts.local, 0, 'no local decision while Redis was up');
});

test('Redis stopped mid-run: delivery goes on with one redis-down alert; Redis back: the alert clears and the limits are shared again', { skip: REDIS_SKIP }, async (t) => {
  const redis = await startRedis(t);
  const srv = await startScriptedServer(t);
  const [a, b] = await twoNodes(t, redis.url, srv.port, { POSTERN_DEST_RATE: '40/s' });
  const send = async (from: number, count: number): Promise<void> => {
    const sends: Array<Promise<string>> = [];
    for (let i = from; i < from + count; i++) sends.push(sendMessage((i % 2 === 0 ? a : b).ports.smtpPort, 's@example.org', [`r${i}@sink.example`], `Subject: ${i}\r\n\r\nhello\r\n`));
    await Promise.all(sends);
  };
  await send(0, 6);
  await waitFor('the first six delivered', () => srv.messages().length === 6, 10_000);
  const sharedBefore = a.cluster!.limiter.counts.shared + b.cluster!.limiter.counts.shared;
  assert.ok(sharedBefore > 0);

  const raisedBefore = [a.alerts!.engine.raised, b.alerts!.engine.raised];
  await redis.stop();
  await waitFor('both nodes see Redis down', () => a.cluster!.link.state === 'down' && b.cluster!.link.state === 'down', 10_000);
  await send(6, 10);
  await waitFor('delivered on local limits while Redis is down', () => srv.messages().length === 16, 15_000);
  assert.ok(a.cluster!.limiter.counts.local + b.cluster!.limiter.counts.local >= 10, 'decided locally');
  for (const [i, node] of [a, b].entries()) {
    const alerts = node.alerts!.engine;
    assert.deepEqual(alerts.active.filter((x) => x.rule === 'redis-down').map((x) => x.id), ['redis-down:cluster']);
    assert.equal(alerts.raised - raisedBefore[i]!, 1, 'one alert, however many calls failed');
  }

  await redis.start();
  await waitFor('both nodes see Redis back', () => a.cluster!.link.up && b.cluster!.link.up, 10_000);
  for (const [i, node] of [a, b].entries()) {
    assert.equal(node.alerts!.engine.active.filter((x) => x.rule === 'redis-down').length, 0, 'the alert cleared');
    assert.equal(node.alerts!.engine.raised - raisedBefore[i]!, 1, 'no second alert');
  }
  const sharedAtReturn = a.cluster!.limiter.counts.shared + b.cluster!.limiter.counts.shared;
  await send(16, 6);
  await waitFor('delivered after Redis returned', () => srv.messages().length === 22, 10_000);
  assert.ok(a.cluster!.limiter.counts.shared + b.cluster!.limiter.counts.shared >= sharedAtReturn + 6, 'the limits are decided by Redis again');
  assert.equal(a.alerts!.engine.raised - raisedBefore[0]!, 1, 'still the one alert');
});

test('a suppression added on node A is refused on node B (and kept in B\'s own list)', { skip: REDIS_SKIP }, async (t) => {
  const redis = await startRedis(t);
  const srv = await startScriptedServer(t);
  const [a, b] = await twoNodes(t, redis.url, srv.port);
  await a.queue.suppressions.add('Blocked@Sink.example', 'complaint');
  // The copy to Redis is not awaited by add(): wait for it.
  await waitFor('the suppression copied to redis', async () => (await b.cluster!.suppressions.suppressed(['nobody@sink.example', 'blocked@sink.example'])).size === 1, 5000);
  assert.equal(b.queue.suppressions.has('blocked@sink.example'), true, 'kept in B\'s list by the lookup');
  await b.queue.suppressions.remove('blocked@sink.example');
  // Removed on B: removed everywhere.
  await waitFor('the removal copied to redis', async () => (await a.cluster!.suppressions.suppressed(['blocked@sink.example'])).size === 0, 5000);
  await a.queue.suppressions.add('other@sink.example');
  await waitFor('copied', async () => (await a.cluster!.suppressions.suppressed(['other@sink.example'])).size === 1, 5000);
  assert.equal(b.queue.suppressions.has('other@sink.example'), false, 'B has no local copy yet');
  await sendMessage(b.ports.smtpPort, 's@example.org', ['fine@sink.example', 'Other@sink.example'], 'Subject: x\r\n\r\nhello\r\n');
  await waitFor('B settled both recipients', () => b.delivery!.counters.delivered === 1 && b.delivery!.counters.bounced === 1, 10_000);
  assert.deepEqual(srv.messages().flatMap((m) => m.rcptTo), ['RCPT TO:<fine@sink.example>'], 'the suppressed recipient never reached the sink');
  assert.equal(b.queue.suppressions.has('other@sink.example'), true);
});

/** One AUTH PLAIN in a fresh session from `from`: the reply code. */
async function tryAuth(port: number, from: string, password: string): Promise<number> {
  const c = await RawClient.connect(port, { localAddress: from });
  try {
    await c.read();
    await c.cmd('EHLO c');
    return (await c.cmd('AUTH PLAIN ' + Buffer.from(`\0alice\0${password}`).toString('base64'), 30_000)).code;
  } finally {
    c.end();
  }
}

test('AUTH failures of one client count on every node: a guesser spread over two nodes is refused at the threshold', { skip: REDIS_SKIP }, async (t) => {
  const redis = await startRedis(t);
  const users = join(tmpdir(t), 'users');
  await addUser(users, 'alice', 'right pass');
  // Loopback is not trusted here: trusted clients are exempt from the per-client count.
  const env = { POSTERN_AUTH_USERS: users, POSTERN_REQUIRE_TLS_FOR_AUTH: 'false', POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24', POSTERN_AUTH_MAX_FAILURES: '3', POSTERN_AUTH_MAX_DELAY_MS: '0', POSTERN_AUTH_USER_MAX_FAILURES: '100', POSTERN_REDIS_URL: redis.url };
  const a = await startTestNode(t, env);
  const b = await startTestNode(t, env);
  await waitFor('both connected', () => a.cluster!.link.up && b.cluster!.link.up, 10_000);
  // Two failures on A, one on B: three for the cluster.
  assert.equal(await tryAuth(a.ports.smtpPort, '127.0.0.5', 'guess1'), 535);
  assert.equal(await tryAuth(a.ports.smtpPort, '127.0.0.5', 'guess2'), 535);
  await waitFor('counted in redis', async () => (await b.cluster!.auth.failures('127.0.0.5')) === 2, 5000);
  assert.equal(await tryAuth(b.ports.smtpPort, '127.0.0.5', 'guess3'), 535);
  await waitFor('counted in redis', async () => (await a.cluster!.auth.failures('127.0.0.5')) === 3, 5000);
  // B alone has seen one failure, the cluster three: refused, even with the right password.
  assert.equal(await tryAuth(b.ports.smtpPort, '127.0.0.5', 'right pass'), 454);
  assert.equal(await tryAuth(a.ports.smtpPort, '127.0.0.5', 'right pass'), 454);
  // Another client is not held to it.
  assert.equal(await tryAuth(b.ports.smtpPort, '127.0.0.6', 'right pass'), 235);
});
