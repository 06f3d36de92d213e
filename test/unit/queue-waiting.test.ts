// The wait index against a real LMDB queue: a deferral caused by a destination ties the
// message to it (persisted: a reopen keeps the tie), releaseWaiting makes the tied messages
// due now and leaves deferrals for the message's own reasons alone, the counters and the
// check follow, and a record written before the index existed still loads and can be tied.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { open as openLmdb } from 'lmdb';
import type { EnvelopeInput, Queue } from '../../src/queue/store.js';
import { checkQueueFolder } from '../../src/queue/check-queue.js';
import { decodeRecord, encodeRecord } from '../../src/queue/records.js';
import { dueKey, waitKey } from '../../src/queue/keys.js';
import { queueHarness, type QueueHarness } from '../helpers/queue-harness.js';

const T0 = 1_700_000_000_000;
const MIN = 60_000;
const D = 'smtp:127.0.0.1:2525';
const E = 'smtp:127.0.0.2:2525';

const harness = (t: TestContext): QueueHarness => queueHarness(t, T0);

const env = (...recipients: string[]): EnvelopeInput => ({ sender: 's@example.org', recipients: recipients.map((address) => ({ address })) });
const owner = 'test';

/** Lease everything due and defer it as given; returns the ids leased. */
async function leaseAndDefer(q: Queue, retryAt: number, waitFor: (address: string) => string | undefined): Promise<string[]> {
  const got = await q.lease({ limit: 100, owner });
  for (const m of got) {
    await q.settle(m.id, m.recipients.map((r) => {
      const w = waitFor(r.address);
      return { address: r.address, kind: 'deferred' as const, retryAt, ...(w !== undefined ? { waitFor: w } : {}) };
    }), owner);
  }
  return got.map((m) => m.id);
}

/** Two messages, a and b, both deferred by the destination D. */
async function twoTied(q: Queue): Promise<[string, string]> {
  const a = await q.enqueue(env('a@down.test'), Buffer.from('x'));
  const b = await q.enqueue(env('b@down.test'), Buffer.from('x'));
  await leaseAndDefer(q, T0 + 5 * MIN, () => D);
  return [a, b];
}

test('a destination deferral ties the message: released due now, leased, the tie gone; own-reason deferrals stay scheduled', async (t) => {
  const h = harness(t);
  const q = h.open();
  const down = await q.enqueue(env('a@down.test'), Buffer.from('x'));
  const own = await q.enqueue(env('b@down.test'), Buffer.from('y'));
  await leaseAndDefer(q, T0 + 5 * MIN, (a) => (a === 'a@down.test' ? D : undefined));
  assert.deepEqual(q.get(down)!.waitFor, [D]);
  assert.equal(q.get(own)!.waitFor, undefined);
  assert.deepEqual(q.waitingCounts(), { [D]: 1 });
  h.clock.t += 10_000;
  assert.deepEqual(await q.lease({ limit: 10, owner }), [], 'nothing due before the release');
  assert.deepEqual(await q.releaseWaiting(D, 100), [down]);
  assert.deepEqual(q.waitingCounts(), {});
  assert.equal(q.get(down)!.nextAttemptAt, h.clock.t, 'due now');
  assert.equal(q.get(down)!.waitFor, undefined);
  assert.equal(q.get(own)!.nextAttemptAt, T0 + 5 * MIN, 'the own-reason deferral keeps its schedule');
  const leased = await q.lease({ limit: 10, owner });
  assert.deepEqual(leased.map((m) => m.id), [down]);
  assert.deepEqual(await q.releaseWaiting(D, 100), [], 'released once');
  assert.equal(checkQueueFolder(h.dir, { repair: false }).problems.length, 0);
});

test('releaseWaiting: oldest first, at most limit; a message waiting for two destinations leaves both', async (t) => {
  const h = harness(t);
  const q = h.open();
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await q.enqueue(env(`r${i}@down.test`), Buffer.from('x')));
  const both = await q.enqueue(env('x@down.test', 'y@e.test'), Buffer.from('z'));
  await leaseAndDefer(q, T0 + 5 * MIN, (a) => (a.endsWith('@e.test') ? E : D));
  assert.deepEqual(q.waitingCounts(), { [D]: 6, [E]: 1 });
  assert.deepEqual(await q.releaseWaiting(D, 2), ids.slice(0, 2));
  assert.deepEqual(q.waitingCounts(), { [D]: 4, [E]: 1 });
  assert.deepEqual(await q.releaseWaiting(E, 10), [both]);
  assert.deepEqual(q.waitingCounts(), { [D]: 3 }, 'the message left the index under both destinations');
  assert.deepEqual(await q.releaseWaiting(D, 10), ids.slice(2));
  assert.deepEqual(await q.releaseWaiting('smtp:unknown:25', 10), []);
  assert.equal(q.counts().byState.ready, 6);
  assert.equal(checkQueueFolder(h.dir, { repair: false }).problems.length, 0);
});

test('the tie survives a reopen (restart), and holding a tied message drops it from the index', async (t) => {
  const h = harness(t);
  let q = h.open();
  const [a, b] = await twoTied(q);
  await q.close();
  q = h.open();
  assert.deepEqual(q.waitingCounts(), { [D]: 2 });
  await q.hold(b);
  assert.deepEqual(q.waitingCounts(), { [D]: 1 });
  assert.deepEqual(await q.releaseWaiting(D, 10), [a]);
  assert.equal(checkQueueFolder(h.dir, { repair: false }).problems.length, 0);
});

test('check finds and repairs stale and missing wait entries and counters', async (t) => {
  const h = harness(t);
  const q = h.open();
  const a = await q.enqueue(env('a@down.test'), Buffer.from('x'));
  await leaseAndDefer(q, T0 + 5 * MIN, () => D);
  const seq = q.get(a)!.seq;
  await q.close();
  const raw = openLmdb({ path: h.dir, maxDbs: 16 });
  const waits = raw.openDB<string, [string, number]>({ name: 'wait', encoding: 'string' });
  waits.removeSync(waitKey(D, seq));
  waits.putSync(waitKey(E, 999), 'nobody');
  await raw.close();
  const found = checkQueueFolder(h.dir, { repair: true });
  assert.deepEqual(found.problems.map((p) => p.kind).sort(), ['missing-wait-entry', 'stale-wait-entry']);
  assert.equal(found.remaining, 0);
  const q2 = h.open();
  assert.deepEqual(await q2.releaseWaiting(D, 10), [a]);
});

// A record as the code before the wait index wrote it (msgpackr structure 0, no waitFor key):
// a message with two recipients, one deferred by a refused connection.
const OLD_ID = '0p2f1c3ag000001q';
const OLD_RECORD_HEX =
  '40b0307032663163336167303030303031713a01a57265616479cb4279af232b200000cb4279af23745e000001cd04d2ad61406578616d706c652e6f72679241ab6240646573742e74657374a9646573742e74657374d40000d40000a770656e64696e670142d40000a5342e342e31b4636f6e6e6563742045434f4e4e52454655534544a7434f4e4e454354c3b3736d74703a3132372e302e302e313a32353235cb4279af232b20000041ac63406f746865722e74657374aa6f746865722e7465737491a74641494c555245d40000a770656e64696e6700d40000d40000d40000d40000d40000d40000d4000043a93132372e302e302e31a178d40000d40000d40000d40000d40000';

test('a queue written before the wait index (old record form, no wait sub-database) checks clean, loads, and can be tied and released', async (t) => {
  const h = harness(t);
  const bytes = Buffer.from(OLD_RECORD_HEX, 'hex');
  const old = decodeRecord(bytes, OLD_ID);
  assert.equal(old.waitFor, undefined);
  assert.equal(old.recipients[0]!.lastReply!.destination, D);
  // The old layout: these sub-databases only, written directly.
  const raw = openLmdb({ path: h.dir, maxDbs: 16 });
  raw.openDB<Buffer, string>({ name: 'msg', encoding: 'binary' }).putSync(OLD_ID, bytes);
  raw.openDB<Buffer, string>({ name: 'body', encoding: 'binary' }).putSync(OLD_ID, Buffer.from('Subject: old\r\n\r\nbody\r\n'));
  raw.openDB<string, number[]>({ name: 'due', encoding: 'string' }).putSync(dueKey(old.priority, old.nextAttemptAt, old.seq), OLD_ID);
  raw.openDB<string, number[]>({ name: 'lease', encoding: 'string' });
  const count = raw.openDB<number, string>({ name: 'count', encoding: 'ordered-binary' });
  for (const [k, v] of Object.entries({ total: 1, p1: 1, 's:ready': 1, 'd:dest.test': 1, 'd:other.test': 1 })) count.putSync(k, v);
  const meta = raw.openDB<number, string>({ name: 'meta', encoding: 'ordered-binary' });
  meta.putSync('layout', 1);
  meta.putSync('seq', old.seq);
  await raw.close();

  const report = checkQueueFolder(h.dir, { repair: false });
  assert.deepEqual(report.problems, [], 'read-only check of the old folder (no wait sub-database)');
  const q = h.open();
  h.clock.t = old.nextAttemptAt;
  const [m] = await q.lease({ limit: 1, owner });
  assert.equal(m!.id, OLD_ID);
  await q.settle(OLD_ID, [{ address: 'b@dest.test', kind: 'deferred', retryAt: h.clock.t + 5 * MIN, waitFor: D }, { address: 'c@other.test', kind: 'delivered' }], owner);
  assert.deepEqual(q.waitingCounts(), { [D]: 1 });
  assert.deepEqual(await q.releaseWaiting(D, 1), [OLD_ID]);
  assert.equal(q.get(OLD_ID)!.recipients[0]!.attempts, 2);
  assert.equal(checkQueueFolder(h.dir, { repair: false }).problems.length, 0);
});

test('records encode with the structure of their shape: without waitFor as before, with it in the new one', () => {
  const old = decodeRecord(Buffer.from(OLD_RECORD_HEX, 'hex'), OLD_ID);
  assert.equal(encodeRecord(old)[0], 0x40, 'an old record re-encodes in structure 0');
  const tied = { ...old, waitFor: [D] };
  const b = encodeRecord(tied);
  assert.equal(b[0], 0x45, 'the record with waitFor uses the appended structure');
  assert.deepEqual(decodeRecord(b, OLD_ID).waitFor, [D]);
  assert.throws(() => decodeRecord(encodeRecord({ ...old, waitFor: [1 as unknown as string] }), OLD_ID), /bad waitFor/);
});

test('releaseWaiting: a stale wait entry is dropped, bad arguments are refused, a closed queue rejects', async (t) => {
  const h = harness(t);
  let q = h.open();
  const [a, b] = await twoTied(q);
  await q.hold(b);
  const heldSeq = q.get(b)!.seq;
  await q.close();
  // Entries naming nothing, and a held message (which waits for nothing), written behind the queue's back.
  const raw = openLmdb({ path: h.dir, maxDbs: 16 });
  const waits = raw.openDB<string, [string, number]>({ name: 'wait', encoding: 'string' });
  waits.putSync(waitKey(D, 0), 'nobody');
  waits.putSync(waitKey(D, heldSeq), b);
  await raw.close();
  q = h.open();
  assert.deepEqual(await q.releaseWaiting(D, 10), [a], 'only the message that waits');
  assert.deepEqual(await q.releaseWaiting(D, 10), [], 'the stale entries are gone');
  assert.deepEqual(await q.releaseWaiting(D, 0), []);
  await assert.rejects(q.releaseWaiting(42 as unknown as string, 1), TypeError);
  await q.close();
  await assert.rejects(q.releaseWaiting(D, 1), (e: unknown) => (e as { code?: string }).code === 'PST_ERR_QUEUE_CLOSED');
  assert.throws(() => q.waitingCounts(), (e: unknown) => (e as { code?: string }).code === 'PST_ERR_QUEUE_CLOSED');
});
