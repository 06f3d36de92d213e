// POSTERN_MAX_BODY_MEMORY on real sockets: past the limit a session stops reading its body
// (TCP holds the client back) until the body ahead of it is answered, without its data
// deadline running; the body begun first always goes on; many sessions at once all finish
// (nobody waits for good), the bytes held stay near the limit, and /metrics shows it.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startTestNode } from '../helpers/node.js';
import { RawClient } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import type { PosternNode } from '../../src/main.js';
import type { BodyBudget } from '../../src/smtp/body-budget.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** `bytes` of message text in 78-character lines (CRLF), starting with a Subject. */
function text(subject: string, bytes: number): string {
  const line = 'z'.repeat(76) + '\r\n';
  return `Subject: ${subject}\r\n\r\n` + line.repeat(Math.ceil(bytes / line.length));
}

async function openData(port: number, from: string): Promise<RawClient> {
  const c = await RawClient.connect(port);
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
  assert.equal((await c.cmd('RCPT TO:<rcpt@example.net>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  return c;
}

/**
 * A node with a 1 MiB bound and session A in the middle of a 1.5 MiB body, read whole: past
 * the bound on its own, as the body begun first may be.
 */
async function withFirstBody(t: TestContext, env: Record<string, string> = {}): Promise<{ node: PosternNode; budget: BodyBudget; port: number; a: RawClient }> {
  const node = await startTestNode(t, { POSTERN_MAX_BODY_MEMORY: '1M', ...env });
  const budget = node.ctx.bodyBudget!;
  const port = node.ports.smtpPort;
  const a = await openData(port, 'first@example.org');
  t.after(() => a.end());
  const first = text('first', 1.5 * MiB);
  a.write(first);
  await waitFor('A read whole', () => budget.stats().held === first.length, 10_000);
  assert.equal(budget.stats().waiting, 0, 'the first body never waits');
  return { node, budget, port, a };
}

test('past the limit a second body waits, unread, until the first is answered; its data deadline does not run meanwhile', async (t) => {
  // A 3 s data timeout and a minimum data rate so high that the whole body must come within
  // it: B waits ~1.2 s, then takes 2.2 s more. It is not timed out only if the wait is not
  // counted against it (3.4 s in all since its DATA).
  const { node, budget, port, a } = await withFirstBody(t, { POSTERN_DATA_TIMEOUT_MS: '3s', POSTERN_MIN_DATA_RATE: '1000000000' });

  const b = await openData(port, 'second@example.org');
  t.after(() => b.end());
  b.write(text('second', 512 * KiB));
  await waitFor('B waits', () => budget.stats().waiting === 1, 10_000);
  const heldWhileWaiting = budget.stats().held;
  assert.ok(heldWhileWaiting < 1.5 * MiB + 256 * KiB + 1024, `B read at most a few socket reads before it stopped: ${heldWhileWaiting} held`);
  for (let i = 0; i < 6; i++) {
    await new Promise((r) => setTimeout(r, 200));
    a.write('more of the first\r\n');
  }
  await waitFor('A\'s lines read, and nothing more of B', () => budget.stats().held === heldWhileWaiting + 6 * 19, 5000);
  assert.equal(b.pending(), 0, 'B got no reply while it waited');

  const ra = await a.cmd('.', 10_000);
  assert.equal(ra.code, 250, ra.text);
  // B is read again: its bytes come in; it ends 2.2 s later.
  await waitFor('B reading again', () => budget.stats().waiting === 0, 10_000);
  await new Promise((r) => setTimeout(r, 2200));
  assert.equal(b.closed, false, 'B not timed out: its wait did not count');
  const rb = await b.cmd('.', 10_000);
  assert.equal(rb.code, 250, rb.text);
  assert.deepEqual(budget.stats().held, 0, 'every byte released once answered');
  assert.ok(budget.stats().waits >= 1);
  const sizes = node.queue.list().map((m) => m.size).sort((x, y) => x - y);
  assert.equal(sizes.length, 2);
  assert.ok(sizes[0]! > 512 * KiB && sizes[1]! > 1.5 * MiB, JSON.stringify(sizes));
});

test('a wait for memory has a deadline of its own (the data timeout): 421 4.3.2 and close, its bytes given back', async (t) => {
  const { node, budget, port, a } = await withFirstBody(t, { POSTERN_DATA_TIMEOUT_MS: '1s' });
  const heldByA = budget.stats().held;
  const b = await openData(port, 'second@example.org');
  t.after(() => b.end());
  b.write(text('second', 512 * KiB));
  await waitFor('B waits', () => budget.stats().waiting === 1, 10_000);
  // A, first, dribbles on (at the minimum data rate, 500 bytes/s, it may for hours: here 100
  // bytes every 150 ms); B is not held back for good.
  const started = Date.now();
  const dribble = setInterval(() => a.write('more of the first'.padEnd(98, '.') + '\r\n'), 150);
  t.after(() => clearInterval(dribble));
  const rb = await b.read(10_000);
  assert.equal(rb.code, 421, rb.text);
  assert.match(rb.text, /^4\.3\.2 .*Too busy to take message data now, try again later/);
  assert.ok(Date.now() - started >= 800, `after the data timeout (1 s), not before: ${Date.now() - started} ms`);
  assert.ok(await b.closedByServer(5000), 'B closed');
  await waitFor('B\'s bytes given back', () => budget.stats().held < heldByA + 64 * KiB && budget.stats().waiting === 0, 5000);
  clearInterval(dribble);
  const ra = await a.cmd('.', 10_000);
  assert.equal(ra.code, 250, ra.text);
  assert.equal(node.queue.counts().total, 1, 'only A was queued');
  assert.equal(budget.stats().held, 0);
});

test('twelve sessions × 600 KiB against a 1 MiB limit: all are queued, none waits for good, the bytes held stay bounded', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_BODY_MEMORY: '1M', POSTERN_HTTP_PORT: '0' });
  const budget = node.ctx.bodyBudget!;
  const port = node.ports.smtpPort;
  const clients = await Promise.all(Array.from({ length: 12 }, (_, i) => openData(port, `s${i}@example.org`)));
  t.after(() => clients.forEach((c) => c.end()));
  const replies = await Promise.all(clients.map((c, i) => c.cmd(text(`m${i}`, 600 * KiB) + '.', 30_000)));
  for (const r of replies) assert.equal(r.code, 250, r.text);
  assert.equal(node.queue.counts().total, 12);
  const st = budget.stats();
  assert.equal(st.held, 0);
  assert.equal(st.waiting, 0);
  assert.ok(st.waits > 0, 'some sessions had to wait');
  // Without the limit all 12 bodies (7.2 MiB) would be in memory at once. With it: the limit,
  // the first body past it, and what each session read before it stopped (socket reads of at
  // most 64 KiB, a few of them while data was already in flight).
  assert.ok(st.peak <= 1 * MiB + 600 * KiB + 12 * 256 * KiB, `peak ${st.peak}`);

  const metrics = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  assert.match(metrics, /^postern_smtp_body_memory_bytes 0$/m);
  assert.match(metrics, new RegExp(`^postern_smtp_body_memory_limit_bytes ${MiB}$`, 'm'));
  assert.match(metrics, new RegExp(`^postern_smtp_body_memory_peak_bytes ${st.peak}$`, 'm'));
  assert.match(metrics, /^postern_smtp_sessions_waiting_for_memory 0$/m);
  assert.match(metrics, new RegExp(`^postern_smtp_body_memory_waits_total ${st.waits}$`, 'm'));
});

test('BDAT in small chunks, each answered before the next: past the bound the next chunk is not read until there is room', async (t) => {
  const { node, budget, port, a } = await withFirstBody(t);
  const b = await RawClient.connect(port);
  t.after(() => b.end());
  await b.read();
  await b.cmd('EHLO client.test');
  assert.equal((await b.cmd('MAIL FROM:<small-chunks@example.org>')).code, 250);
  assert.equal((await b.cmd('RCPT TO:<rcpt@example.net>')).code, 250);
  const chunk = ('y'.repeat(76) + '\r\n').repeat(52); // 4 KiB: one socket read
  b.write(`BDAT ${chunk.length}\r\n${chunk}`);
  assert.equal((await b.read()).code, 250, 'the chunk is answered; then B waits');
  await waitFor('B waits', () => budget.stats().waiting === 1, 5000);
  b.write(`BDAT ${chunk.length}\r\n${chunk}`);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(b.pending(), 0, 'the next chunk is not read while past the bound');
  assert.equal((await a.cmd('.', 10_000)).code, 250);
  assert.equal((await b.read()).code, 250, 'read once A was answered');
  const last = await b.cmd('BDAT 0 LAST');
  assert.equal(last.code, 250, last.text);
  assert.equal(budget.stats().held, 0);
  assert.equal(node.queue.counts().total, 2);
});

test('a session that closes or resets while holding body bytes gives them back', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_BODY_MEMORY: '1M' });
  const budget = node.ctx.bodyBudget!;
  const port = node.ports.smtpPort;
  // Closed mid-body.
  const a = await openData(port, 'gone@example.org');
  a.write(text('gone', 300 * KiB));
  await waitFor('A read', () => budget.stats().held >= 300 * KiB, 10_000);
  a.end();
  await waitFor('released on close', () => budget.stats().held === 0, 10_000);
  // BDAT chunks, then RSET: the transaction and its bytes go.
  const b = await RawClient.connect(port);
  t.after(() => b.end());
  await b.read();
  await b.cmd('EHLO client.test');
  assert.equal((await b.cmd('MAIL FROM:<bdat@example.org>')).code, 250);
  assert.equal((await b.cmd('RCPT TO:<rcpt@example.net>')).code, 250);
  const chunk = text('bdat', 200 * KiB);
  b.write(`BDAT ${Buffer.byteLength(chunk)}\r\n${chunk}`);
  assert.equal((await b.read()).code, 250);
  assert.ok(budget.stats().held >= 200 * KiB, 'held between chunks');
  assert.equal((await b.cmd('RSET')).code, 250);
  assert.equal(budget.stats().held, 0, 'released by RSET');
  // A refused BDAT chunk (no transaction) is read, dropped and released.
  b.write(`BDAT ${Buffer.byteLength(chunk)} LAST\r\n${chunk}`);
  assert.equal((await b.read()).code, 503);
  assert.equal(budget.stats().held, 0, 'released after the refusal');
});
