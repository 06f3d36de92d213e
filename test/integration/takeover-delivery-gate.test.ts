// A takeover's successor accepts mail at once but delivers only once the node it replaces has
// exited (main.ts deliveryAfter): the scheduler takes back every lease when it starts, so two
// deliverers on one queue would send the old node's messages in flight a second time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { startTestNode } from '../helpers/node.js';
import { RecordingSink, taggedMessage, prng } from '../helpers/reliability.js';

test('delivery waits for deliveryAfter; mail is accepted meanwhile and goes once it settles', async (t) => {
  const sink = new RecordingSink();
  await sink.listen(0);
  t.after(() => sink.close());
  let replacedExited!: () => void;
  const gate = new Promise<void>((r) => (replacedExited = r));
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_SMARTHOST: `127.0.0.1:${sink.port}` }, { delivery: { pollIntervalMs: 50 }, deliveryAfter: gate });
  const m = taggedMessage('gate-1', 600, prng(7));
  await sendMessage(node.ports.smtpPort, 'me@home.test', ['you@far.test'], m.bytes.toString('latin1'), 'home.test');
  await sleep(500);
  assert.equal(node.queue.counts().total, 1, 'accepted and kept');
  assert.equal(sink.messages, 0, 'not delivered while the node replaced may still deliver');
  replacedExited();
  await waitFor('delivered', () => node.queue.counts().total === 0, 10_000);
  assert.equal(sink.byTag.get('gate-1')?.count, 1);
});

test('a node closed before deliveryAfter settles never starts delivering', async (t) => {
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_SMARTHOST: '127.0.0.1:9' }, { deliveryAfter: new Promise<void>(() => {}) });
  await node.close(); // must not wait for the gate
});
