// POSTERN_MAX_BODY_MEMORY_PER_CLIENT on real sockets, clients told apart by their loopback
// address (127.0.0.x; none of them trusted unless a test says so): one client holding several
// sessions of large bodies sent slowly stops being read past its share, so another client's
// message gets its 250 at once instead of waiting out the data timeout; the client's own
// sessions go on as its bodies are answered, and a session held back past the data timeout
// gets 421 4.3.2; BDAT chunks held between commands count in the share as DATA does; behind a
// trusted balancer the share is the carried address's, every address of an IPv6 prefix sharing
// one; trusted clients have none.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startTestNode } from '../helpers/node.js';
import { RawClient } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import type { PosternNode } from '../../src/main.js';
import type { BodyBudget } from '../../src/smtp/body-budget.js';
import { proxyV1, proxyV2 } from '../helpers/proxy-header.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const HOSTILE = '127.0.0.2';
const OTHER = '127.0.0.3';

/** `bytes` of message text in 78-character lines (CRLF), starting with a Subject. */
function text(subject: string, bytes: number): string {
  const line = 'z'.repeat(76) + '\r\n';
  return `Subject: ${subject}\r\n\r\n` + line.repeat(Math.ceil(bytes / line.length));
}

/** header: a PROXY header to send first (from a balancer in POSTERN_PROXY_TRUSTED). */
async function openTransaction(port: number, from: string, localAddress: string, header?: Buffer): Promise<RawClient> {
  const c = await RawClient.connect(port, { localAddress });
  if (header !== undefined) c.write(header);
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
  const r = await c.cmd('RCPT TO:<rcpt@example.net>');
  assert.equal(r.code, 250, r.text);
  return c;
}

async function openData(port: number, from: string, localAddress: string, header?: Buffer): Promise<RawClient> {
  const c = await openTransaction(port, from, localAddress, header);
  assert.equal((await c.cmd('DATA')).code, 354);
  return c;
}

/**
 * A node with 2 MiB of body memory (a client's share: the default quarter, 512 KiB), a data
 * timeout of 8 s, loopback untrusted (mail to the local domain example.net, so no relaying).
 */
async function shareNode(t: TestContext, env: Record<string, string> = {}): Promise<{ node: PosternNode; budget: BodyBudget; port: number }> {
  const node = await startTestNode(t, {
    POSTERN_MAX_BODY_MEMORY: '2M',
    POSTERN_DATA_TIMEOUT_MS: '8s',
    POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24',
    POSTERN_LOCAL_DOMAINS: 'example.net',
    POSTERN_HTTP_PORT: '0',
    ...env,
  });
  const budget = node.ctx.bodyBudget!;
  assert.equal(budget.perClient, 512 * KiB);
  return { node, budget, port: node.ports.smtpPort };
}

/** Every `ms`, one more line on each of `clients` (a body sent slowly, well above any minimum data rate). */
function trickle(t: TestContext, clients: RawClient[], ms: number): () => void {
  const timer = setInterval(() => {
    // 200 bytes a turn: at 250 ms, 800 bytes/s, above POSTERN_MIN_DATA_RATE's 500 (the time a
    // fast start buys is capped, so a slower dribble would be cut for its rate, not its share).
    for (const c of clients) if (!c.closed) c.write('still coming, slowly'.padEnd(198, '.') + '\r\n');
  }, ms);
  const stop = (): void => clearInterval(timer);
  t.after(stop);
  return stop;
}

test('one client\'s sessions of slow large bodies cannot make another client\'s message wait: past its share it is not read, the other gets its 250 at once', async (t) => {
  const { node, budget, port } = await shareNode(t);
  // Four sessions of the hostile client, 700 KiB each sent at once and then more slowly: 2.8 MiB,
  // past the whole 2 MiB if all were read.
  const hostile = await Promise.all(Array.from({ length: 4 }, (_, i) => openData(port, `h${i}@example.org`, HOSTILE)));
  t.after(() => hostile.forEach((c) => c.end()));
  for (const [i, c] of hostile.entries()) c.write(text(`hostile ${i}`, 700 * KiB));
  const stop = trickle(t, hostile, 250);
  // Settled: with its share, three sessions wait (the first goes on); without it, the total is full.
  await waitFor('the hostile client settled', () => budget.stats().waiting === 3 || budget.stats().held > 2 * MiB, { timeoutMs: 10_000, diag: () => JSON.stringify(budget.stats()) });
  const heldByHostile = budget.stats().held;
  assert.ok(heldByHostile <= 700 * KiB + 3 * 256 * KiB, `the client held its first body and a few socket reads more, not 2 MiB: ${heldByHostile}`);
  assert.equal(budget.stats().clients, 1);

  // The other client's message: read at once, 250 well before the data timeout (8 s).
  const other = await openData(port, 'other@example.org', OTHER);
  t.after(() => other.end());
  const started = Date.now();
  const r = await other.cmd(text('other', 300 * KiB) + '.', 3000);
  assert.equal(r.code, 250, r.text);
  assert.ok(Date.now() - started < 3000, `${Date.now() - started} ms`);
  assert.equal(node.queue.counts().total, 1);
  assert.equal(budget.stats().waiting, 3, 'the hostile client\'s other sessions still wait');
  assert.ok(budget.stats().shareWaits >= 3, JSON.stringify(budget.stats()));

  const metrics = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  assert.match(metrics, new RegExp(`^postern_smtp_body_memory_client_limit_bytes ${512 * KiB}$`, 'm'));
  assert.match(metrics, /^postern_smtp_body_memory_clients 1$/m);
  assert.match(metrics, new RegExp(`^postern_smtp_body_memory_share_waits_total ${budget.stats().shareWaits}$`, 'm'));
  stop();
});

test('a client past its share goes on as its own bodies are answered, its sessions in turn, while the total has room', async (t) => {
  const { node, budget, port } = await shareNode(t);
  const sessions = await Promise.all(Array.from({ length: 3 }, (_, i) => openData(port, `s${i}@example.org`, HOSTILE)));
  t.after(() => sessions.forEach((c) => c.end()));
  const [first, second, third] = sessions as [RawClient, RawClient, RawClient];
  first.write(text('first', 600 * KiB));
  await waitFor('the first body read whole', () => budget.stats().held >= 600 * KiB, 10_000);
  second.write(text('second', 600 * KiB));
  await waitFor('the second waits', () => budget.stats().waiting === 1, 10_000);
  third.write(text('third', 600 * KiB));
  await waitFor('the third waits', () => budget.stats().waiting === 2, 10_000);
  // The total has plenty of room (about 0.8 of 2 MiB): only the share holds them back.
  assert.ok(budget.stats().held < MiB, JSON.stringify(budget.stats()));
  assert.equal(budget.stats().shareWaits, 2);
  assert.equal((await first.cmd('.', 10_000)).code, 250);
  // The second is the client's first body now: read on. The third still waits (the client is
  // past its share again with the second's 600 KiB).
  await waitFor('the second read whole', () => budget.stats().held >= 600 * KiB && budget.stats().waiting === 1, 10_000);
  assert.equal(third.pending(), 0);
  assert.equal((await second.cmd('.', 10_000)).code, 250);
  const r3 = await third.cmd('.', 10_000);
  assert.equal(r3.code, 250, r3.text);
  assert.equal(node.queue.counts().total, 3);
  assert.deepEqual([budget.stats().held, budget.stats().waiting, budget.stats().clients], [0, 0, 0]);
});

test('a session held back by its client\'s share for the data timeout gets 421 4.3.2, its bytes given back', async (t) => {
  const { node, budget, port } = await shareNode(t, { POSTERN_DATA_TIMEOUT_MS: '2s' });
  const [a, b] = await Promise.all([openData(port, 'a@example.org', HOSTILE), openData(port, 'b@example.org', HOSTILE)]);
  t.after(() => {
    a.end();
    b.end();
  });
  a.write(text('a', 600 * KiB));
  await waitFor('a read whole', () => budget.stats().held >= 600 * KiB, 10_000);
  const stop = trickle(t, [a], 200); // the client's first body, dribbling on
  b.write(text('b', 200 * KiB));
  await waitFor('b waits', () => budget.stats().waiting === 1, 10_000);
  const waitStarted = Date.now();
  const rb = await b.read(10_000);
  assert.equal(rb.code, 421, rb.text);
  assert.match(rb.text, /^4\.3\.2 .*Too busy to take message data now/);
  assert.ok(Date.now() - waitStarted >= 1500, `after the data timeout (2 s): ${Date.now() - waitStarted} ms`);
  assert.ok(await b.closedByServer(5000));
  await waitFor('b\'s bytes given back', () => budget.stats().held < 700 * KiB && budget.stats().waiting === 0, 5000);
  stop();
  assert.equal((await a.cmd('.', 10_000)).code, 250);
  assert.equal(budget.stats().held, 0);
  assert.equal(node.queue.counts().total, 1);
});

test('BDAT chunks held between commands count in the client\'s share: its next session is not read, another client\'s is', async (t) => {
  const { node, budget, port } = await shareNode(t);
  const a = await openTransaction(port, 'bdat@example.org', HOSTILE);
  t.after(() => a.end());
  const chunk = text('bdat', 600 * KiB);
  const size = Buffer.byteLength(chunk);
  a.write(`BDAT ${size}\r\n${chunk}`);
  const ra = await a.read(10_000);
  assert.equal(ra.code, 250, ra.text);
  assert.ok(budget.stats().held >= 600 * KiB, 'the chunk is held until the last one');
  // The same client's second session, by BDAT too: its chunk stops being read.
  const b = await openTransaction(port, 'bdat2@example.org', HOSTILE);
  t.after(() => b.end());
  b.write(`BDAT ${size} LAST\r\n${chunk}`);
  await waitFor('the second session waits', () => budget.stats().waiting === 1, 10_000);
  assert.equal(b.pending(), 0);
  // Another client, by BDAT: read and answered at once.
  const o = await openTransaction(port, 'other@example.org', OTHER);
  t.after(() => o.end());
  const small = text('other', 100 * KiB);
  o.write(`BDAT ${Buffer.byteLength(small)} LAST\r\n${small}`);
  const ro = await o.read(3000);
  assert.equal(ro.code, 250, ro.text);
  // The first session ends its message: the second is read on.
  assert.equal((await a.cmd('BDAT 0 LAST', 10_000)).code, 250);
  const rb = await b.read(10_000);
  assert.equal(rb.code, 250, rb.text);
  assert.equal(node.queue.counts().total, 3);
  assert.equal(budget.stats().held, 0);
});

test('a trusted client has no share: its sessions are all read while the total has room; an untrusted one\'s are not', async (t) => {
  const TRUSTED = '127.0.0.4';
  const { node, budget, port } = await shareNode(t, { POSTERN_TRUSTED_NETWORKS: `${TRUSTED}/32` });
  const trusted = await Promise.all(Array.from({ length: 3 }, (_, i) => openData(port, `t${i}@example.org`, TRUSTED)));
  t.after(() => trusted.forEach((c) => c.end()));
  for (const [i, c] of trusted.entries()) c.write(text(`trusted ${i}`, 400 * KiB));
  await waitFor('all three read whole', () => budget.stats().held >= 3 * 400 * KiB, { timeoutMs: 10_000, diag: () => JSON.stringify(budget.stats()) });
  assert.equal(budget.stats().waiting, 0, '1.2 MiB from one trusted client, past a share of 512 KiB: nobody waits');
  assert.equal(budget.stats().clients, 0, 'trusted bytes are in no client\'s share');
  // The same from an untrusted client: its second session waits (the total, 1.6 MiB, has room).
  const untrusted = await Promise.all(Array.from({ length: 2 }, (_, i) => openData(port, `u${i}@example.org`, HOSTILE)));
  t.after(() => untrusted.forEach((c) => c.end()));
  untrusted[0]!.write(text('untrusted 0', 400 * KiB));
  await waitFor('the first read whole', () => budget.stats().held >= 3 * 400 * KiB + 400 * KiB, 10_000);
  untrusted[1]!.write(text('untrusted 1', 400 * KiB));
  await waitFor('the second waits', () => budget.stats().waiting === 1, { timeoutMs: 10_000, diag: () => JSON.stringify(budget.stats()) });
  const replies = await Promise.all(trusted.map((c) => c.cmd('.', 10_000)));
  for (const r of replies) assert.equal(r.code, 250, r.text);
  assert.equal((await untrusted[0]!.cmd('.', 10_000)).code, 250);
  assert.equal((await untrusted[1]!.cmd('.', 10_000)).code, 250);
  assert.equal(node.queue.counts().total, 5);
  assert.equal(budget.stats().held, 0);
});

test('behind a balancer (PROXY protocol) the share is the carried client\'s: every address of one IPv6 /64 shares one, another /64 or address has its own', async (t) => {
  const BALANCER = '127.0.0.5';
  const { node, budget, port } = await shareNode(t, { POSTERN_PROXY_TRUSTED: `${BALANCER}/32` });
  const open: RawClient[] = [];
  t.after(() => open.forEach((c) => c.end()));
  const via = async (source: string, from: string, v2 = false): Promise<RawClient> => {
    const c = await openData(port, from, BALANCER, v2 ? proxyV2({ source }) : proxyV1(source));
    open.push(c);
    return c;
  };
  const a1 = await via('2001:db8:1::a', 'a1@example.org');
  a1.write(text('a1', 600 * KiB));
  await waitFor('a1 read whole', () => budget.stats().held >= 600 * KiB, 10_000);
  // Another address of the same /64: the same client, past its share.
  const a2 = await via('2001:db8:1::ffff:1', 'a2@example.org', true);
  a2.write(text('a2', 200 * KiB));
  await waitFor('a2 waits', () => budget.stats().waiting === 1, 10_000);
  assert.equal(budget.stats().clients, 1);
  // Another /64, and an IPv4 client, through the same balancer: read at once.
  for (const [source, v2] of [['2001:db8:2::a', false], ['192.0.2.50', true]] as const) {
    const c = await via(source, `${source.replace(/[:.]/g, '-')}@example.org`, v2);
    const r = await c.cmd(text(source, 200 * KiB) + '.', 3000);
    assert.equal(r.code, 250, `${source}: ${r.text}`);
  }
  assert.equal(budget.stats().waiting, 1, 'a2 still waits');
  assert.equal((await a1.cmd('.', 10_000)).code, 250);
  assert.equal((await a2.cmd('.', 10_000)).code, 250);
  assert.equal(node.queue.counts().total, 4);
  assert.equal(budget.stats().held, 0);
});
