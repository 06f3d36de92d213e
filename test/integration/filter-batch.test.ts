// The filter pool's batches (src/filter/pool.ts): behind busy workers, messages travel many to
// a Piscina task; each still gets its own verdict and its own composed body, a throw stays that
// message's tempfail, and a worker that dies or a batch past the timeout tempfails only the
// messages that worker held (at most two batches). A message never waits for a batch to fill.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { FilterPool, type FilterOutcome } from '../../src/filter/pool.js';
import type { FilterEnvelope } from '../../src/filter/messages.js';
import { RawClient } from '../helpers/smtp-client.js';
import { startTestNode } from '../helpers/node.js';

const FILTER = fileURLToPath(new URL('../../../test/fixtures/batch-filter.mjs', import.meta.url));
const ENVELOPE: FilterEnvelope = { sender: 'a@example.com', recipients: ['b@example.com'], client: { ip: '192.0.2.1', helo: 'c.example', tls: false, trusted: false } };

function pool(t: import('node:test').TestContext, o: { workers?: number; maxBatch?: number; timeoutMs?: number } = {}): FilterPool {
  const p = new FilterPool({ workers: o.workers ?? 1, modules: [FILTER], timeoutMs: o.timeoutMs ?? 10_000, maxQueue: 1000, ...(o.maxBatch !== undefined ? { maxBatch: o.maxBatch } : {}) });
  t.after(() => p.close());
  return p;
}

/** A body that owns its whole ArrayBuffer (as DataScanner.takeBody gives it), so it is transferred. */
function body(text: string): Buffer {
  const ab = new ArrayBuffer(Buffer.byteLength(text, 'latin1'));
  Buffer.from(ab).write(text, 'latin1');
  return Buffer.from(ab);
}

const msg = (i: number, word = ''): string => `line ${i}${word ? ' ' + word : ''}\r\n${'x'.repeat(i % 97)}\r\n`;

test('behind a busy worker, messages travel in batches and each gets its own verdict and body', async (t) => {
  const p = pool(t, { workers: 1, maxBatch: 16 });
  // the first message keeps the worker busy while the rest arrive
  const all: Array<Promise<FilterOutcome>> = [p.filter('m0', ENVELOPE, 'Received: zero\r\n', body(msg(0, 'SLOWME')))];
  const bodies: Buffer[] = [];
  for (let i = 1; i <= 100; i++) {
    const b = body(msg(i));
    bodies.push(b);
    all.push(p.filter(`m${i}`, ENVELOPE, `Received: ${i}\r\n`, b));
  }
  assert.equal(p.inFlight, 101);
  const out = await Promise.all(all);
  assert.equal(p.inFlight, 0);
  assert.ok(bodies.every((b) => b.buffer.byteLength === 0), 'owned bodies were transferred, not copied');
  for (let i = 0; i <= 100; i++) {
    const r = out[i]!;
    const m = msg(i, i === 0 ? 'SLOWME' : '');
    assert.equal(r.verdict.action, 'accept', `m${i}`);
    assert.equal(r.verdict.score, m.length);
    assert.equal(r.body.toString('latin1'), `Received: ${i === 0 ? 'zero' : i}\r\nX-Seen: m${i} ${m.length} ${m.slice(0, m.indexOf('\r\n'))}\r\n${m}`);
  }
  const { batches, messages } = p.batchStats;
  assert.equal(messages, 101);
  assert.ok(batches < 20, `101 messages behind a busy worker went in ${batches} tasks`);
  assert.ok(out.some((r) => r.batch === 16), 'batches fill up to maxBatch');
  assert.ok(out.every((r) => r.batch <= 16), 'and no further');
});

test('an idle pool sends a message at once, alone (no waiting for a batch to fill)', async (t) => {
  const p = pool(t, { workers: 1 });
  for (let i = 0; i < 3; i++) {
    const r = await p.filter(`s${i}`, ENVELOPE, '', body(msg(i)));
    assert.equal(r.batch, 1);
    assert.equal(r.verdict.action, 'accept');
  }
  assert.deepEqual([p.batchStats.batches, p.batchStats.messages], [3, 3]);
  assert.ok(p.batchStats.busyMs > 0, 'the workers report their time');
});

test('POSTERN_FILTER_BATCH=1 semantics: maxBatch 1 sends one task per message', async (t) => {
  const p = pool(t, { workers: 1, maxBatch: 1 });
  const out = await Promise.all(Array.from({ length: 20 }, (_, i) => p.filter(`o${i}`, ENVELOPE, '', body(msg(i, i === 0 ? 'SLOWME' : '')))));
  assert.ok(out.every((r) => r.batch === 1 && r.verdict.action === 'accept'));
  assert.deepEqual([p.batchStats.batches, p.batchStats.messages], [20, 20]);
});

test('in a batch, a filter that throws tempfails its own message only; a reject stays a reject', async (t) => {
  const p = pool(t, { workers: 1 });
  const words = ['SLOWME', '', 'THROWME', '', 'REJECTME', ''];
  const out = await Promise.all(words.map((w, i) => p.filter(`t${i}`, ENVELOPE, '', body(msg(i, w)))));
  assert.ok(out[3]!.batch > 1, 'the messages behind the slow one shared a task');
  assert.deepEqual(out.map((r) => r.verdict.action), ['accept', 'accept', 'tempfail', 'accept', 'reject', 'accept']);
  assert.match(out[2]!.verdict.reason!, /filter error: filter bug in t2/);
  assert.equal(out[4]!.verdict.reason, 'no line 4 REJECTME');
  assert.equal(out[4]!.body.length, 0, 'a refused message is not composed');
  // the verdicts cross back as data: a verdict without a score has none, one with a score keeps it
  assert.deepEqual(out[4]!.verdict, { action: 'reject', reason: 'no line 4 REJECTME' });
  assert.deepEqual(out[1]!.verdict, { action: 'accept', score: msg(1).length });
});

test('a worker that dies tempfails the messages it holds (at most its two batches); later batches are served', async (t) => {
  const p = pool(t, { workers: 1, maxBatch: 4 });
  // c0 occupies the worker; behind it c1 alone (the second task a worker holds, which may be
  // mid-way when the crash comes), then batches of four: [2..5] with the crash, [6..9] maybe
  // still on the dying worker, and the rest on its replacement
  const out = await Promise.all(Array.from({ length: 20 }, (_, i) => p.filter(`c${i}`, ENVELOPE, '', body(msg(i, i === 0 ? 'SLOWME' : i === 2 ? 'CRASHME' : '')))));
  const actions = out.map((r) => r.verdict.action);
  assert.equal(actions[2], 'tempfail', 'the crashing message is a tempfail, never an accept');
  assert.match(out[2]!.verdict.reason!, /filter failed/);
  assert.equal(actions[0], 'accept', 'done before the crash');
  for (let i = 1; i < 10; i++) if (actions[i] === 'tempfail') assert.match(out[i]!.verdict.reason!, /filter failed/);
  assert.ok(actions.slice(10).every((a) => a === 'accept'), `the batches after it are served by a new worker (${actions.join(',')})`);
  assert.equal((await p.filter('after', ENVELOPE, '', body(msg(1)))).verdict.action, 'accept');
});

test('a batch past the timeout tempfails its messages with the timeout reason; the pool keeps serving', async (t) => {
  const p = pool(t, { workers: 1, maxBatch: 8, timeoutMs: 1500 });
  const started = performance.now();
  const out = await Promise.all(['HANGME', '', ''].map((w, i) => p.filter(`h${i}`, ENVELOPE, '', body(msg(i, w)))));
  assert.ok(performance.now() - started < 5000);
  assert.equal(out[0]!.verdict.action, 'tempfail');
  assert.match(out[0]!.verdict.reason!, /filter timeout after 1500 ms/);
  // the others ran (a hung async filter leaves the worker free for its second task) or failed
  // with the worker when the timeout ended it; an accept is always a filtered one
  for (const r of out.slice(1)) {
    if (r.verdict.action === 'accept') assert.match(r.body.toString('latin1'), /^X-Seen: h\d /);
    else assert.equal(r.verdict.action, 'tempfail');
  }
  assert.equal((await p.filter('later', ENVELOPE, '', body(msg(3)))).verdict.action, 'accept');
});

test('a filter that never yields is ended by the timeout: its worker is replaced and what it held is a tempfail', async (t) => {
  // Long enough for a replacement worker to start on a loaded machine (CI shares 2 cores).
  const p = pool(t, { workers: 1, maxBatch: 8, timeoutMs: 1500 });
  const out = await Promise.all(['SPINME', '', ''].map((w, i) => p.filter(`s${i}`, ENVELOPE, '', body(msg(i, w)))));
  assert.equal(out[0]!.verdict.action, 'tempfail');
  assert.match(out[0]!.verdict.reason!, /filter timeout after 1500 ms/);
  // the others waited behind the spinning batch in the same worker: none ran
  for (const r of out.slice(1)) assert.equal(r.verdict.action, 'tempfail');
  const after = await Promise.all([0, 1, 2].map((i) => p.filter(`a${i}`, ENVELOPE, '', body(msg(i)))));
  assert.deepEqual(after.map((r) => r.verdict.action), ['accept', 'accept', 'accept'], 'served by the replacement worker');
});

test('closing the pool answers every message, waiting or out, with a tempfail', async () => {
  const p = new FilterPool({ workers: 1, modules: [FILTER], timeoutMs: 10_000, maxQueue: 100 });
  const all = Array.from({ length: 10 }, (_, i) => p.filter(`x${i}`, ENVELOPE, '', body(msg(i, 'HANGME'))));
  await new Promise((r) => setTimeout(r, 50));
  await p.close();
  const out = await Promise.all(all);
  assert.deepEqual(out.map((r) => r.verdict.action), Array(10).fill('tempfail'));
  assert.equal(p.inFlight, 0);
});

test('through a whole node: concurrent SMTP sessions are filtered in batches and /metrics counts them', async (t) => {
  const node = await startTestNode(t, { POSTERN_FILTER_MODULES: FILTER, POSTERN_WORKERS: '1', POSTERN_FILTER_BATCH: '8', POSTERN_HTTP_PORT: '0', POSTERN_HTTP_HOST: '127.0.0.1' });
  const clients = await Promise.all(Array.from({ length: 12 }, async () => {
    const c = await RawClient.connect(node.ports.smtpPort);
    await c.read();
    await c.cmd('EHLO batch.example');
    await c.cmd('MAIL FROM:<a@example.com>');
    await c.cmd('RCPT TO:<b@example.com>');
    await c.cmd('DATA');
    return c;
  }));
  t.after(() => clients.forEach((c) => c.end()));
  // the first message is slow: the other eleven end their DATA while it runs
  const first = clients[0]!.cmd('Subject: 0\r\n\r\nSLOWME\r\n.', 10_000);
  await new Promise((r) => setTimeout(r, 10));
  const rest = clients.slice(1).map((c, i) => c.cmd(`Subject: ${i + 1}\r\n\r\nhello ${i + 1}\r\n.`, 10_000));
  const replies = await Promise.all([first, ...rest]);
  for (const r of replies) assert.equal(r.code, 250, r.text);
  for (let i = 1; i < 12; i++) {
    const id = /queued as (\S+)/.exec(replies[i]!.text)![1]!;
    assert.match(node.queue.withBody(id, (b) => b.toString('latin1')), new RegExp(`\\r\\nX-Seen: ${id} \\d+ Subject: ${i}\\r\\nSubject: ${i}\\r\\n\\r\\nhello ${i}\\r\\n$`));
  }
  const metrics = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  const batches = Number(/^postern_filter_batches_total (\d+)$/m.exec(metrics)![1]);
  const messages = Number(/^postern_filter_batched_messages_total (\d+)$/m.exec(metrics)![1]);
  assert.equal(messages, 12);
  assert.ok(batches >= 2 && batches < 12, `12 messages in ${batches} tasks`);
});

test('a chain of filters: sync and async mixed, in order; the first reject or tempfail stops it', async (t) => {
  const SYNC = fileURLToPath(new URL('../../../test/fixtures/sync-filter.mjs', import.meta.url));
  const chain = (modules: string[]): FilterPool => {
    const p = new FilterPool({ workers: 1, modules, timeoutMs: 10_000, maxQueue: 100 });
    t.after(() => p.close());
    return p;
  };
  const syncFirst = chain([SYNC, FILTER]);
  const asyncFirst = chain([FILTER, SYNC]);
  const run = (p: FilterPool, text: string): Promise<FilterOutcome> => p.filter('c1', ENVELOPE, 'Received: c\r\n', body(text));
  const plain = 'hello\r\n';
  // both run, their headers in chain order, the highest score kept
  const a = await run(syncFirst, plain);
  assert.equal(a.verdict.action, 'accept');
  assert.equal(a.verdict.score, plain.length > 2 ? plain.length : 2);
  assert.equal(a.body.toString('latin1'), `Received: c\r\nX-Sync: seen\r\nX-Seen: c1 ${plain.length} hello\r\n${plain}`);
  const b = await run(asyncFirst, plain);
  assert.equal(b.body.toString('latin1'), `Received: c\r\nX-Seen: c1 ${plain.length} hello\r\nX-Sync: seen\r\n${plain}`);
  // a sync reject, a sync throw, an async reject, an async throw, wherever they stand
  assert.equal((await run(syncFirst, 'SYNCREJECT\r\n')).verdict.action, 'reject');
  assert.equal((await run(asyncFirst, 'SYNCREJECT\r\n')).verdict.action, 'reject');
  const thrown = await run(asyncFirst, 'SYNCTHROW\r\n');
  assert.equal(thrown.verdict.action, 'tempfail');
  assert.match(thrown.verdict.reason ?? '', /sync filter bug/);
  assert.equal((await run(syncFirst, 'SYNCTHROW\r\n')).verdict.action, 'tempfail');
  assert.equal((await run(syncFirst, 'REJECTME\r\n')).verdict.action, 'reject');
  assert.equal((await run(syncFirst, 'THROWME\r\n')).verdict.action, 'tempfail');
  // a thenable that is not a native Promise is awaited, never taken for an accept
  const th = await run(syncFirst, 'THENABLE\r\n');
  assert.equal(th.verdict.action, 'reject');
  assert.equal(th.verdict.reason, 'thenable says no');
});

test('each message of a batch gets its own envelope, intact whatever its fields hold; bare LFs in filter headers become CRLF', async (t) => {
  const SYNC = fileURLToPath(new URL('../../../test/fixtures/sync-filter.mjs', import.meta.url));
  const p = new FilterPool({ workers: 1, modules: [SYNC], timeoutMs: 10_000, maxQueue: 100, maxBatch: 8 });
  t.after(() => p.close());
  const envelopes: FilterEnvelope[] = [
    ENVELOPE,
    { sender: '', recipients: ['a@example.com', 'b@example.net', 'ü@例え.jp'], client: { ip: '::1', helo: '', tls: true, trusted: true, authUser: 'user' } },
    // an AUTH identity may hold anything, line breaks included (sent as JSON)
    { sender: 'x@example.com', recipients: [], client: { ip: '192.0.2.9', helo: 'h\r\nX', tls: false, trusted: false, authUser: 'we\nird"\\user' } },
    { sender: 'y@example.com', recipients: ['c@example.com'], client: { ip: '192.0.2.10', helo: 'h.example', tls: false, trusted: true, authUser: '' } },
  ];
  // sent at once behind a busy worker, so they share batches
  const outs = await Promise.all([
    p.filter('slow', ENVELOPE, 'Received: s\r\n', body('SLOWME\r\n')),
    ...envelopes.map((e, i) => p.filter(`e${i}`, e, 'Received: e\r\n', body(`SHOWENVELOPE ${i}\r\n`))),
  ]);
  assert.ok(outs.slice(1).some((o) => o.batch > 1), 'the envelopes travelled together');
  for (let i = 0; i < envelopes.length; i++) {
    const text = outs[i + 1]!.body.toString('utf8');
    const m = /^Received: e\r\nX-Envelope: (.*)\r\nSHOWENVELOPE \d+\r\n$/.exec(text);
    assert.ok(m, text);
    assert.deepEqual(JSON.parse(m[1]!), envelopes[i], `envelope ${i}`);
  }
  const bare = await p.filter('b', ENVELOPE, 'Received: b\r\n', body('BARELF\r\n'));
  assert.equal(bare.body.toString('latin1'), 'Received: b\r\nX-Bare: 1\r\nX-Crlf: 2\r\nX-Bare-Too: 3\r\nBARELF\r\n');
});
