// The queue's part of source pools: the record's optional `pool` (an appended msgpackr
// structure: records of the older forms load unchanged, without it) and the 'warmup'
// sub-database of warm-up counts (written behind, kept across a reopen, old days pruned).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { decodeRecord, encodeRecord } from '../../src/queue/records.js';
import { messageView } from '../../src/http/message-view.js';
import { WRITE_BEHIND_MS } from '../../src/queue/warmup-counts.js';
import { queueHarness, type QueueHarness } from '../helpers/queue-harness.js';

const T0 = 1_700_000_000_000;
const harness = (t: TestContext): QueueHarness => queueHarness(t, T0);

// A record as the code before the wait index wrote it (structure 0: no waitFor, no pool).
const OLD_ID = '0p2f1c3ag000001q';
const OLD_RECORD_HEX =
  '40b0307032663163336167303030303031713a01a57265616479cb4279af232b200000cb4279af23745e000001cd04d2ad61406578616d706c652e6f72679241ab6240646573742e74657374a9646573742e74657374d40000d40000a770656e64696e670142d40000a5342e342e31b4636f6e6e6563742045434f4e4e52454655534544a7434f4e4e454354c3b3736d74703a3132372e302e302e313a32353235cb4279af232b20000041ac63406f746865722e74657374aa6f746865722e7465737491a74641494c555245d40000a770656e64696e6700d40000d40000d40000d40000d40000d40000d4000043a93132372e302e302e31a178d40000d40000d40000d40000d40000';

test('records of the older forms load without a pool and keep their form; a record with a pool uses the appended structure', () => {
  const old = decodeRecord(Buffer.from(OLD_RECORD_HEX, 'hex'), OLD_ID);
  assert.equal(old.pool, undefined);
  assert.equal(encodeRecord(old)[0], 0x40, 'structure 0 re-encodes as it was');
  const waiting = encodeRecord({ ...old, waitFor: ['smtp:x:25'] });
  assert.equal(waiting[0], 0x45, 'the waitFor form (structure 5) is unchanged');
  assert.equal(decodeRecord(waiting, OLD_ID).pool, undefined);
  const pooled = encodeRecord({ ...old, waitFor: undefined, pool: 'bulk' });
  assert.equal(pooled[0], 0x46, 'the pool form is structure 6');
  assert.equal(decodeRecord(pooled, OLD_ID).pool, 'bulk');
  assert.throws(() => decodeRecord(encodeRecord({ ...old, waitFor: undefined, pool: 7 as unknown as string }), OLD_ID), /bad pool/);
  assert.equal(messageView(old).pool, null);
  assert.equal(messageView(old).recipients[0]!.source, null, 'a destination key without a source');
});

test('the pool is stored with the message, survives a reopen and shows in the view with the source of the last attempt', async (t) => {
  const h = harness(t);
  const q = h.open();
  const id = await q.enqueue({ sender: 's@shop.example', recipients: [{ address: 'r@gmail.com' }], pool: 'bulk' }, Buffer.from('Subject: x\r\n\r\nx\r\n'));
  const plain = await q.enqueue({ sender: 's@shop.example', recipients: [{ address: 'r@gmail.com' }] }, Buffer.from('Subject: y\r\n\r\ny\r\n'));
  await assert.rejects(q.enqueue({ sender: 's@a.example', recipients: [{ address: 'r@b.example' }], pool: 1 as unknown as string }, Buffer.from('x')), /pool must be a string/);
  const [m] = await q.lease({ limit: 1, owner: 'o' });
  assert.equal(m!.id, id);
  await q.settle(id, [{ address: 'r@gmail.com', kind: 'deferred', retryAt: T0 + 60_000, reply: { text: 'later', code: 451, destination: 'smtp:mx.gmail.example:25@google~ip3' } }], 'o');
  await q.close();
  const q2 = h.open();
  assert.equal(q2.get(id)!.pool, 'bulk');
  assert.equal(q2.get(plain)!.pool, undefined);
  const v = messageView(q2.get(id)!);
  assert.equal(v.pool, 'bulk');
  assert.equal(v.recipients[0]!.source, 'ip3');
});

test('warm-up counts: written behind within the window, kept across a reopen, days before yesterday pruned', async (t) => {
  const h = harness(t);
  const q = h.open();
  const day = 20_000;
  q.warmup.set(day - 3, 'a|google', 9);
  q.warmup.set(day, 'a|google', 1);
  q.warmup.set(day, 'a|google', 2);
  const long = `b|smtp:${'mx.example:25,'.repeat(40)}~b`;
  q.warmup.set(day, long, 5);
  assert.equal(q.warmup.get(day, 'a|google'), 2, 'the newest value, before it is written');
  await new Promise((r) => setTimeout(r, WRITE_BEHIND_MS + 500));
  assert.deepEqual(q.warmup.entries().filter((e) => e.key === 'a|google').map((e) => [e.day, e.n]), [[day, 2]], 'written; the day 3 days back pruned');
  q.warmup.set(day - 1, 'a|google', 4);
  q.warmup.set(day, 'a|google', 3);
  await q.close(); // writes what is pending
  const q2 = h.open();
  assert.equal(q2.warmup.get(day, 'a|google'), 3);
  assert.equal(q2.warmup.get(day - 1, 'a|google'), 4, 'yesterday is kept');
  assert.equal(q2.warmup.get(day, long), 5, 'a long key is stored hashed and found again');
  assert.equal(q2.warmup.get(day + 1, 'a|google'), 0);
});
