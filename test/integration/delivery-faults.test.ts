// Delivery faults through the whole node (SMTP in → LMDB queue → scheduler → SMTP out), all on
// loopback: a sink that answers slowly, a sink that drops the connection in the middle of the
// data, a connection cap per destination, PIPELINING on the wire, and MX-style failover past a
// 421 greeting. Every peer is the scripted server (test/helpers/scripted-server.ts).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { startTestNode } from '../helpers/node.js';
import { startScriptedServer, type ScriptedMessage, type ScriptedServer, type ScriptSession } from '../helpers/scripted-server.js';

// ---- helpers -----------------------------------------------------------------------------

const send = (port: number, from: string, rcpts: string[], body: string) => sendMessage(port, from, rcpts, body, 'faults.example');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const fast = { delivery: { pollIntervalMs: 50 } };

/** The EHLO keywords of the sink these tests were written against (no DSN, no SMTPUTF8). */
const SINK_CAPS = ['PIPELINING', '8BITMIME', 'ENHANCEDSTATUSCODES', 'SIZE 52428800'];

/** A sink (the scripted server with SINK_CAPS) whose reply to the final "." comes after `finalDelayMs`. */
function startSink(t: TestContext, o: { finalDelayMs?: number; cutMidData?: (s: ScriptSession) => boolean } = {}): Promise<ScriptedServer> {
  const delayMs = o.finalDelayMs;
  return startScriptedServer(t, {
    capabilities: SINK_CAPS,
    ...(delayMs ? { reply: (cmd: string) => (cmd === '.' ? { delayMs } : undefined) } : {}),
    ...(o.cutMidData ? { cutMidData: o.cutMidData } : {}),
  });
}

/** The message data (still dot-stuffed) as latin1 text. */
const data = (m: ScriptedMessage): string => m.raw.toString('latin1');

/** How many complete messages the sink holds with this marker in the body. */
function count(sink: ScriptedServer, marker: string): number {
  return sink.messages().filter((m) => data(m).includes(marker)).length;
}

// ---- tests -------------------------------------------------------------------------------

test('a slow sink (final reply after 1 s): delivered exactly once, no deferral, a second message is not held behind it', async (t) => {
  const sink = await startSink(t, { finalDelayMs: 1000 });
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${sink.port}`, POSTERN_RETRY_SCHEDULE: '300ms' }, fast);
  const started = Date.now();
  const id1 = await send(node.ports.smtpPort, 'me@home.test', ['a@far.test'], 'Subject: slow 1\n\nMARKER-SLOW-1\n');
  const id2 = await send(node.ports.smtpPort, 'me@home.test', ['b@far.test'], 'Subject: slow 2\n\nMARKER-SLOW-2\n');
  await waitFor('the first transaction under way', () => sink.sessions.some((s) => s.dataBytes > 0));
  assert.equal(node.queue.get(id1)?.state ?? 'gone', 'leased', 'leased (not re-queued) while the sink thinks');
  await waitFor('both delivered', () => node.queue.counts().total === 0, 10_000);
  const took = Date.now() - started;
  assert.ok(took >= 1000, `the 1 s final reply was waited for (${took} ms)`);
  assert.ok(took < 1950, `the two slow transactions ran side by side (${took} ms)`);
  assert.equal(sink.maxOpen, 2, 'a second connection for the second message');
  assert.equal(count(sink, 'MARKER-SLOW-1'), 1);
  assert.equal(count(sink, 'MARKER-SLOW-2'), 1);
  const c = node.delivery!.counters;
  assert.equal(c.delivered, 2);
  assert.equal(c.deferred, 0, 'slow is not a failure');
  assert.equal(c.attempts, 2);
  void id2;
});

test('a sink that cuts the connection mid-DATA: transient (deferred, not lost, not bounced); the next attempt delivers exactly once', async (t) => {
  let healthy = false;
  const sink = await startSink(t, { cutMidData: (s) => !healthy && s.dataBytes > 0 });
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${sink.port}`, POSTERN_RETRY_SCHEDULE: '300ms' }, fast);
  // Big enough to take several writes, so the cut lands inside the data.
  const filler = Array.from({ length: 4000 }, (_, i) => `line ${i} ${'x'.repeat(60)}`).join('\n');
  const id = await send(node.ports.smtpPort, 'me@home.test', ['cut@far.test'], `Subject: cut\n\nMARKER-CUT\n${filler}\nEND-OF-MARKER-CUT\n`);
  await waitFor('a failed attempt recorded', () => (node.queue.get(id)?.recipients[0]!.attempts ?? 0) >= 1);
  assert.ok(sink.sessions.some((s) => s.cut), 'the sink did cut a session mid-data');
  const m = node.queue.get(id)!;
  const r = m.recipients[0]!;
  assert.equal(r.state, 'pending', 'deferred, not failed');
  assert.equal(r.lastReply?.transient, true);
  assert.equal(r.lastReply?.command, 'END-OF-DATA');
  assert.equal(r.lastReply?.enhanced, '4.4.2');
  assert.equal(r.lastReply?.code, undefined, 'no reply was received');
  assert.equal(count(sink, 'MARKER-CUT'), 0, 'nothing complete reached the sink');
  const c = node.delivery!.counters;
  assert.equal(c.bounced, 0);
  assert.equal(c.bouncesSent, 0);
  assert.equal(c.delivered, 0);
  assert.equal(node.queue.counts().total, 1, 'only the message itself: no DSN queued');

  healthy = true;
  await waitFor('delivered on a later attempt', () => node.queue.counts().total === 0);
  assert.equal(count(sink, 'MARKER-CUT'), 1, 'exactly once');
  const session = sink.sessions.find((x) => x.messages.some((m) => data(m).includes('MARKER-CUT')))!;
  const got = session.messages.find((m) => data(m).includes('MARKER-CUT'))!;
  assert.ok(data(got).includes('END-OF-MARKER-CUT'), 'the whole body');
  assert.ok(session.id > 1, 'on a new connection (the cut one is not reused)');
  assert.equal(node.delivery!.counters.delivered, 1);
  assert.equal(node.delivery!.counters.bounced, 0);
});

test('N messages to one destination with POSTERN_DEST_MAX_CONNECTIONS=2: the sink sees at most 2 connections', async (t) => {
  const N = 8;
  const sink = await startSink(t, { finalDelayMs: 150 });
  const node = await startTestNode(
    t,
    { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${sink.port}`, POSTERN_DEST_MAX_CONNECTIONS: '2', POSTERN_RETRY_SCHEDULE: '300ms' },
    fast,
  );
  for (let i = 0; i < N; i++) await send(node.ports.smtpPort, 'me@home.test', [`r${i}@far.test`], `Subject: pool ${i}\n\nMARKER-POOL-${i}-END\n`);
  await waitFor('all delivered', () => node.queue.counts().total === 0, 15_000);
  for (let i = 0; i < N; i++) assert.equal(count(sink, `MARKER-POOL-${i}-END`), 1, `message ${i} exactly once`);
  assert.equal(sink.maxOpen, 2, 'the cap was reached, never passed');
  assert.ok(sink.sessions.length <= 2, `at most 2 connections in all: reused, not reopened (saw ${sink.sessions.length})`);
  assert.equal(node.delivery!.counters.delivered, N);
  assert.equal(node.delivery!.counters.deferred, 0, 'waiting for a connection is not a deferral');
});

test('PIPELINING: MAIL, every RCPT and DATA arrive in one read', async (t) => {
  const peer = await startScriptedServer(t);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${peer.port}` }, fast);
  await send(node.ports.smtpPort, 'me@home.test', ['a@far.test', 'b@far.test', 'c@far.test'], 'Subject: pipelined\n\nbody\n');
  await waitFor('delivered', () => node.queue.counts().total === 0);
  assert.equal(peer.messages().length, 1);
  const s = peer.sessions.find((x) => x.messages.length === 1)!;
  const batch = s.batches.find((b) => b.some((l) => /^MAIL FROM:/i.test(l)));
  assert.ok(batch, JSON.stringify(s.batches));
  assert.deepEqual(
    batch.map((l) => l.split(' ')[0]!.toUpperCase() + (l.startsWith('RCPT') ? ` ${/<([^>]*)>/.exec(l)![1]}` : '')),
    ['MAIL', 'RCPT a@far.test', 'RCPT b@far.test', 'RCPT c@far.test', 'DATA'],
    'the whole envelope in one read',
  );
});

test('without PIPELINING in EHLO the envelope goes one command per read', async (t) => {
  const peer = await startScriptedServer(t, { capabilities: ['8BITMIME', 'ENHANCEDSTATUSCODES'] });
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${peer.port}` }, fast);
  await send(node.ports.smtpPort, 'me@home.test', ['a@far.test', 'b@far.test'], 'Subject: lockstep\n\nbody\n');
  await waitFor('delivered', () => node.queue.counts().total === 0);
  const s = peer.sessions.find((x) => x.messages.length === 1)!;
  for (const b of s.batches) assert.equal(b.length, 1, `one command per read: ${JSON.stringify(b)}`);
});

test('a 421 greeting on the first host: delivered via the second host of the route, no deferral', async (t) => {
  const busy = await startScriptedServer(t, { greeting: '421 4.3.2 too busy, try later' });
  const good = await startScriptedServer(t);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${busy.port},127.0.0.1:${good.port}`, POSTERN_RETRY_SCHEDULE: '300ms' }, fast);
  await send(node.ports.smtpPort, 'me@home.test', ['x@far.test'], 'Subject: failover\n\nMARKER-FAILOVER\n');
  await waitFor('delivered', () => node.queue.counts().total === 0);
  assert.ok(busy.sessions.length >= 1, 'the first host was tried first');
  assert.equal(busy.messages().length, 0);
  assert.deepEqual(busy.sessions.flatMap((s) => s.commands), [], 'nothing sent after a 421 greeting');
  assert.equal(good.messages().length, 1);
  assert.ok(good.messages()[0]!.body.toString('latin1').includes('MARKER-FAILOVER'));
  const c = node.delivery!.counters;
  assert.equal(c.delivered, 1);
  assert.equal(c.deferred, 0);
  await sleep(100);
  assert.equal(good.messages().length, 1, 'exactly once');
});

test('POSTERN_MAX_DELIVERY_MEMORY: 6 × 600 KiB and one 2 MiB message to a slow sink under a 1.5 MiB bound: never past it with two in flight, the large one alone', async (t) => {
  const sink = await startSink(t, { finalDelayMs: 300 });
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${sink.port}`, POSTERN_MAX_DELIVERY_MEMORY: '1536K' }, fast);
  // Queued held, then released together: all are due at once. The large one is in the middle.
  const line = 'w'.repeat(76) + '\r\n';
  const ids: string[] = [];
  for (let i = 0; i < 7; i++) {
    const lines = i === 3 ? 27_000 : 7_900;
    ids.push(await node.queue.enqueue({ sender: 'a@example.org', recipients: [{ address: `r${i}@far.test` }], hold: true }, Buffer.from(`Subject: big-${i}\r\n\r\n${line.repeat(lines)}`)));
  }
  const counters = node.delivery!.counters;
  let peakShared = 0; // the most bytes in flight while two or more messages were
  let peakAlone = 0;
  let peakMessages = 0;
  const sample = setInterval(() => {
    if (counters.inFlight > 1) peakShared = Math.max(peakShared, counters.inFlightBytes);
    else peakAlone = Math.max(peakAlone, counters.inFlightBytes);
    peakMessages = Math.max(peakMessages, counters.inFlight);
  }, 2);
  t.after(() => clearInterval(sample));
  await Promise.all(ids.map((id) => node.queue.release(id)));
  await waitFor('all 7 delivered', () => count(sink, 'Subject: big-') === 7, 30_000);
  await waitFor('every delivery settled', () => counters.inFlight === 0, 5000);
  clearInterval(sample);
  assert.equal(peakMessages, 2, 'two 600 KiB messages fit in 1.5 MiB, three do not');
  assert.ok(peakShared <= 1536 * 1024, `never past the bound with more than one in flight: ${peakShared}`);
  assert.ok(peakAlone > 2 * 1024 * 1024, `the 2 MiB message went, alone: ${peakAlone}`);
  assert.equal(counters.inFlightBytes, 0);
});

test('POSTERN_DEST_TRANSACTION_TIMEOUT_MS: a server answering each RCPT just in time is cut at the transaction deadline; the recipients are deferred 4.4.2, nothing delivered', async (t) => {
  // Each RCPT answered after 400 ms, well inside its own 5-minute timeout, one command at a
  // time (no PIPELINING): 6 recipients take 2.4 s, past the 1 s bound on the whole transaction.
  const sink = await startScriptedServer(t, { capabilities: ['8BITMIME', 'ENHANCEDSTATUSCODES'], reply: (cmd: string) => (/^RCPT /i.test(cmd) ? { delayMs: 400 } : undefined) });
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${sink.port}`, POSTERN_DEST_TRANSACTION_TIMEOUT_MS: '1s' }, fast);
  const rcpts = Array.from({ length: 6 }, (_, i) => `r${i}@far.test`);
  const id = await send(node.ports.smtpPort, 'me@home.test', rcpts, 'Subject: tarpit\n\nMARKER-TARPIT\n');
  await waitFor('the attempt settled', () => (node.queue.get(id)?.attempts ?? 1) >= 1, 5000);
  const m = node.queue.get(id);
  assert.ok(m, 'still queued (not delivered)');
  for (const r of m.recipients) {
    assert.equal(r.state, 'pending', `${r.address} deferred`);
    assert.equal(r.lastReply?.enhanced, '4.4.2');
    assert.match(r.lastReply?.text ?? '', /transaction not finished after 1000 ms/);
  }
  assert.equal(m.recipients[0]!.lastReply?.command, 'RCPT', 'cut while the RCPT replies were still coming');
  assert.equal(count(sink, 'MARKER-TARPIT'), 0, 'no data sent');
  const s = sink.sessions[0]!;
  await s.closed;
  assert.ok(s.commands.filter((c) => /^RCPT /i.test(c)).length < 6, `cut before the last RCPT: ${JSON.stringify(s.commands)}`);
});
