// The accept benchmark's parts, checked for behaviour at a tiny size (not timed): the load
// generator and the discarding sink agree on every message, every 250 postern gives the load
// generator is in its queue, failures and a silent server are counted and bounded, and (when
// Postfix's smtp-source is installed) the smtp-source driver counts what it sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { runLoad, makePayload, isLoopback } from './lib/loadgen.js';
import { startSink } from './lib/sink.js';
import { haveSmtpSource, runSmtpSource } from './lib/smtp-source.js';
import { startTestNode } from '../test/helpers/node.js';
import { waitFor } from '../test/helpers/wait-for.js';
import { startScriptedServer } from '../test/helpers/scripted-server.js';

test('the payload is exactly the size asked for, in CRLF lines, with no line starting with a dot', () => {
  for (const size of [0, 1, 2, 3, 79, 80, 81, 82, 161, 1024, 10240]) {
    const p = makePayload(size);
    assert.equal(p.length, size);
    if (size >= 2) assert.equal(p.subarray(-2).toString('latin1'), '\r\n');
    const text = p.toString('latin1');
    assert.ok(!text.includes('\n.'));
    if (size >= 2) for (const line of text.split('\r\n')) assert.ok(line.length <= 79 && !line.includes('\r'), `size ${size}`);
  }
  assert.ok(isLoopback('127.0.0.1') && isLoopback('127.1.2.3') && isLoopback('::1'));
  assert.ok(!isLoopback('10.0.0.1') && !isLoopback('192.168.1.1') && !isLoopback('example.com'));
});

test('loadgen against the discarding sink: 50 messages over 2 reused connections, every one gets its 250', async (t) => {
  const sink = await startSink({ port: 0 });
  t.after(() => sink.close());
  const r = await runLoad({ port: sink.port, messages: 50, size: 1024, connections: 2, timeLimitMs: 30_000 });
  assert.equal(r.accepted, 50);
  assert.equal(r.failed, 0);
  assert.equal(r.attempted, 50);
  assert.equal(r.connectionsOpened, 2);
  assert.equal(r.replies['data-end:250'], 50);
  assert.equal(r.replies['quit:221'], 2);
  assert.equal(r.timedOut, false);
  assert.ok(r.msgsPerSec > 0 && r.latencyMs.max >= r.latencyMs.p50);
  assert.equal(sink.stats.messages, 50);
  assert.equal(sink.stats.connections, 2);
});

test('loadgen without pipelining gets the same result', async (t) => {
  const sink = await startSink({ port: 0 });
  t.after(() => sink.close());
  const r = await runLoad({ port: sink.port, messages: 20, size: 300, connections: 3, pipelining: false, timeLimitMs: 30_000 });
  assert.equal(r.accepted, 20);
  assert.equal(sink.stats.messages, 20);
});

test('loadgen with one message per connection opens a connection for each', async (t) => {
  const sink = await startSink({ port: 0 });
  t.after(() => sink.close());
  const r = await runLoad({ port: sink.port, messages: 12, size: 200, connections: 3, messagesPerConnection: 1, timeLimitMs: 30_000 });
  assert.equal(r.accepted, 12);
  assert.equal(r.connectionsOpened, 12);
  assert.equal(r.replies['quit:221'], 12);
  assert.equal(sink.stats.connections, 12);
});

test('the sink finds CRLF.CRLF split across reads, and after an empty message', async (t) => {
  const sink = await startSink({ port: 0 });
  t.after(() => sink.close());
  const socket: Socket = connect({ host: '127.0.0.1', port: sink.port });
  t.after(() => socket.destroy());
  socket.setEncoding('latin1');
  let got = '';
  socket.on('data', (d: string) => (got += d));
  const discarded = (n: number) =>
    waitFor(`${n} discarded replies`, () => (got.match(/^250 2\.0\.0 Ok: discarded/gm) ?? []).length >= n, { timeoutMs: 5000, intervalMs: 10, diag: () => `got ${JSON.stringify(got)}` });
  await once(socket, 'connect');
  socket.write('EHLO t\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n');
  // One byte at a time through the terminator, with a ".." line (dot-stuffed) before it.
  const msg = 'Subject: x\r\n\r\n..not the end\r\nbody\r\n.\r\n';
  for (const ch of msg) {
    socket.write(ch);
    await new Promise((r) => setTimeout(r, 1));
  }
  await discarded(1);
  // An empty message: the CRLF ending the DATA line is the first CRLF of CRLF.CRLF.
  socket.write('MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\n');
  await discarded(2);
  assert.equal(sink.stats.messages, 2);
});

test('loadgen against postern: every 250 is in the queue', async (t) => {
  const node = await startTestNode(t);
  const r = await runLoad({ port: node.ports.smtpPort, messages: 50, size: 10240, connections: 2, timeLimitMs: 60_000 });
  assert.deepEqual(r.errors, []);
  assert.equal(r.accepted, 50);
  assert.equal(r.failed, 0);
  assert.equal(r.replies['data-end:250'], 50);
  assert.equal(node.queue.counts().total, 50);
});

test('loadgen counts refusals as failures and postern queues none of them', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_MESSAGE_BYTES: '4096' });
  const r = await runLoad({ port: node.ports.smtpPort, messages: 10, size: 8192, connections: 2, timeLimitMs: 30_000 });
  assert.equal(r.accepted, 0);
  assert.ok(r.failed >= 1);
  assert.equal(r.accepted + r.failed, r.attempted);
  assert.equal(node.queue.counts().total, 0);
});

test('loadgen stops by itself at its time limit when the server never answers', async (t) => {
  const { port } = await startScriptedServer(t, { greeting: null }); // accepts, says nothing
  const t0 = Date.now();
  const r = await runLoad({ port, messages: 1000, size: 100, connections: 2, timeLimitMs: 300, graceMs: 300 });
  assert.ok(Date.now() - t0 < 5000, 'bounded in time');
  assert.equal(r.timedOut, true);
  assert.equal(r.accepted, 0);
  assert.ok(r.attempted <= 2);
});

test('loadgen refuses a target outside loopback', async () => {
  await assert.rejects(runLoad({ host: '192.0.2.1', port: 25, messages: 1, size: 10, connections: 1 }), /loopback/);
});

test('smtp-source (Postfix) against the sink: counted and bounded', { skip: !haveSmtpSource() && '/usr/sbin/smtp-source is not installed' }, async (t) => {
  const sink = await startSink({ port: 0 });
  t.after(() => sink.close());
  const r = await runSmtpSource({ port: sink.port, messages: 50, size: 1024, connections: 2, timeLimitMs: 30_000 });
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.completed, 50);
  assert.equal(sink.stats.messages, 50);
  assert.equal(sink.stats.connections, 2); // -d: sessions reused
});
