// The relay bench's parts, checked for behaviour at a tiny size (not timed): messages injected
// into an in-process postern that relays to our discarding sink all arrive there and the queue
// empties; with several recipients per message, each message arrives as one transaction; and
// (when Postfix's smtp-source and smtp-sink are installed) the bench's smtp-source driver with
// -r and the smtp-sink counter agree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from './lib/sink.js';
import { inject, haveSmtpSource, recipientList } from './lib/relay-inject.js';
import { startRelaySink, haveSmtpSink } from './lib/relay-sink.js';
import { startTestNode } from '../test/helpers/node.js';
import { waitFor } from '../test/helpers/wait-for.js';

test('relay path: 30 messages over 2 sessions reach the sink through postern and the queue empties', async (t) => {
  const sink = await startSink({ port: 0 });
  t.after(() => sink.close());
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_SMARTHOST: `127.0.0.1:${sink.port}`, POSTERN_TLS_POLICY: 'none' }, { delivery: { pollIntervalMs: 50 } });
  const r = await inject('loadgen', { port: node.ports.smtpPort, messages: 30, size: 2048, connections: 2, recipients: 1, to: 'sink@relay-sink.example', timeLimitMs: 30_000 });
  assert.deepEqual(r.errors, []);
  assert.equal(r.accepted, 30);
  await waitFor('30 messages at the sink', () => sink.stats.messages >= 30, 30_000);
  await waitFor('an empty queue', () => node.queue.counts().total === 0, 30_000);
  assert.equal(sink.stats.messages, 30);
  assert.ok(sink.stats.connections >= 1);
});

test('relay path with 5 recipients per message: one transaction per message at the sink', async (t) => {
  const sink = await startSink({ port: 0 });
  t.after(() => sink.close());
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_SMARTHOST: `127.0.0.1:${sink.port}`, POSTERN_TLS_POLICY: 'none' }, { delivery: { pollIntervalMs: 50 } });
  assert.deepEqual(recipientList('s@x.example', 3), ['s@x.example', '2s@x.example', '3s@x.example']);
  const r = await inject('loadgen', { port: node.ports.smtpPort, messages: 12, size: 500, connections: 2, recipients: 5, to: 'sink@relay-sink.example', timeLimitMs: 30_000 });
  assert.deepEqual(r.errors, []);
  assert.equal(r.accepted, 12);
  await waitFor('12 messages at the sink', () => sink.stats.messages >= 12, 30_000);
  await waitFor('an empty queue', () => node.queue.counts().total === 0, 30_000);
  assert.equal(sink.stats.messages, 12);
});

test('smtp-source -r against smtp-sink -c: counted by the bench sink', { skip: (!haveSmtpSource() || !haveSmtpSink()) && 'smtp-source/smtp-sink not installed' }, async (t) => {
  const sink = await startRelaySink('smtp-sink');
  t.after(() => sink.close());
  const reached = sink.reached(20, Date.now() + 20_000);
  const r = await inject('smtp-source', { port: sink.port, messages: 20, size: 1000, connections: 2, recipients: 3, to: 'sink@relay-sink.example', timeLimitMs: 20_000 });
  assert.deepEqual(r.errors, []);
  assert.equal(r.accepted, 20);
  assert.notEqual(await reached, null);
  assert.equal(sink.messages(), 20);
  await waitFor('2 sessions ended', () => sink.sessions() >= 2, 5000);
  assert.equal(sink.sessions(), 2);
});
