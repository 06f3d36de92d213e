// The LMDB queue against a real environment in a temporary folder: round trips, durability
// across reopen, group commit, priority order and fairness, due-ness, leases and their expiry,
// per-recipient settling, hold/release, counters through every transition, and error codes.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Database } from 'lmdb';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { PosternError, type ErrorCode } from '../../src/errors.js';
import { valueOf } from '../../src/lib/result.js';
import {
  FAIRNESS_CYCLE,
  PRIORITY,
  Queue,
  STARVATION_BOUND,
  type EnvelopeInput,
  type MessageRecord,
  type Priority,
  type QueueCounts,
  type QueueOptions,
} from '../../src/queue/store.js';
import { tmpdir } from '../helpers/tmpdir.js';

const T0 = 1_700_000_000_000;

class Clock {
  t = T0;
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

interface Harness {
  dir: string;
  clock: Clock;
  open(extra?: Partial<QueueOptions>): Queue;
}

/** Queues opened through the harness are closed before the folder is removed. */
function harness(t: TestContext, opts: Partial<QueueOptions> = {}): Harness {
  const queues: Queue[] = [];
  t.after(async () => {
    for (const q of queues) await q.close();
  });
  const dir = tmpdir(t);
  const clock = new Clock();
  return {
    dir,
    clock,
    open(extra = {}) {
      const q = Queue.open({ path: dir, now: clock.now, ...opts, ...extra });
      queues.push(q);
      return q;
    },
  };
}

function env(recipients: string[], extra: Partial<EnvelopeInput> = {}): EnvelopeInput {
  return { sender: 'sender@example.org', recipients: recipients.map((address) => ({ address })), ...extra };
}

function isCode(code: ErrorCode): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof PosternError, `expected a PosternError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  };
}

/** counts() recomputed from the records themselves (an independent path). */
function countsFromRecords(q: Queue, nowMs: number): QueueCounts {
  const c: QueueCounts = {
    total: 0,
    byPriority: { urgent: 0, normal: 0, bulk: 0 },
    byState: { ready: 0, scheduled: 0, leased: 0, held: 0 },
    byDomain: {},
  };
  const names = ['urgent', 'normal', 'bulk'] as const;
  for (const r of q.list()) {
    c.total++;
    c.byPriority[names[r.priority]]++;
    if (r.state === 'ready') {
      if (r.nextAttemptAt <= nowMs) c.byState.ready++;
      else c.byState.scheduled++;
    } else c.byState[r.state]++;
    for (const rc of r.recipients) {
      if (rc.state === 'pending') c.byDomain[rc.domain] = (c.byDomain[rc.domain] ?? 0) + 1;
    }
  }
  return c;
}

/** The sub-databases (record-store.ts) behind the Queue. */
type Internals = { due: Database<string, number[]>; leases: Database<string, number[]> };

/** The invariants of store.ts: ready <-> one due key, leased <-> one lease key, counters exact. */
function assertConsistent(q: Queue, clock: Clock): void {
  assert.deepEqual(q.counts(), countsFromRecords(q, clock.t), 'counters match the records');
  const { due, leases } = (q as unknown as { store: Internals }).store;
  const recs = q.list();
  const dueKeys = Array.from(due.getRange({}), (e) => JSON.stringify([e.key, e.value])).sort();
  const wantDue = recs
    .filter((r) => r.state === 'ready')
    .map((r) => JSON.stringify([[r.priority, r.nextAttemptAt, r.seq], r.id]))
    .sort();
  assert.deepEqual(dueKeys, wantDue, 'due index = ready messages');
  const leaseKeys = Array.from(leases.getRange({}), (e) => JSON.stringify([e.key, e.value])).sort();
  const wantLease = recs
    .filter((r) => r.state === 'leased')
    .map((r) => JSON.stringify([[r.lease!.expiresAt, r.seq], r.id]))
    .sort();
  assert.deepEqual(leaseKeys, wantLease, 'lease index = leased messages');
}

test('enqueue/get/withBody round trip keeps every field and the exact body bytes', async (t) => {
  const h = harness(t);
  const q = h.open();
  const parts = [Buffer.from('Received: x\r\n'), Buffer.alloc(0), Buffer.from([0, 255, 13, 10, 46, 46]), Buffer.alloc(70_000, 0xab)];
  const input: EnvelopeInput = {
    sender: '',
    recipients: [
      { address: 'Alice@Example.COM', notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;alice@example.com' },
      { address: 'bob@a@weird.example' },
      { address: 'postmaster' },
    ],
    priority: PRIORITY.urgent,
    mtPriority: -3,
    ret: 'HDRS',
    envid: 'QQ314159',
    bodyType: '8BITMIME',
    smtputf8: true,
    declaredSize: 70_020,
    client: { ip: '192.0.2.7', helo: 'mx.example.net', tls: true, authUser: 'alice', hostname: 'mx.example.net' },
  };
  const id = await q.enqueue(input, parts);
  const rec = q.get(id)!;
  assert.ok(rec, 'record is readable after enqueue resolves');
  assert.equal(rec.id, id);
  assert.equal(rec.seq, 1);
  assert.equal(rec.state, 'ready');
  assert.equal(rec.priority, 0);
  assert.equal(rec.receivedAt, T0);
  assert.equal(rec.nextAttemptAt, T0);
  assert.equal(rec.attempts, 0);
  assert.equal(rec.size, Buffer.concat(parts).length);
  for (const k of ['sender', 'mtPriority', 'ret', 'envid', 'bodyType', 'smtputf8', 'declaredSize', 'client'] as const) {
    assert.deepEqual(rec[k], input[k], k);
  }
  assert.deepEqual(
    rec.recipients.map((r) => [r.address, r.domain, r.notify, r.orcpt, r.state, r.attempts]),
    [
      ['Alice@Example.COM', 'example.com', ['SUCCESS', 'FAILURE'], 'rfc822;alice@example.com', 'pending', 0],
      ['bob@a@weird.example', 'weird.example', undefined, undefined, 'pending', 0],
      ['postmaster', '', undefined, undefined, 'pending', 0],
    ],
  );
  const same = q.withBody(id, (b) => b.equals(Buffer.concat(parts)));
  assert.equal(same, true, 'body bytes are exact');
  const single = Buffer.from('one buffer body\r\n');
  const id2 = await q.enqueue(env(['x@y.example']), single);
  assert.equal(q.withBody(id2, (b) => b.toString('latin1')), single.toString('latin1'));
  assert.ok(id2 > id, 'ids sort by arrival');
  assert.match(id2, /^[0-9a-v]{16}$/);
  // The view is lmdb-js's reusable buffer: reading the queue inside fn is refused.
  assert.throws(() => q.withBody(id, () => q.get(id2)), /withBody/);
  assertConsistent(q, h.clock);
});

test('enqueue validates its input', async (t) => {
  const q = harness(t).open();
  await assert.rejects(q.enqueue(env([]), Buffer.from('x')), TypeError);
  await assert.rejects(q.enqueue({ ...env(['a@b']), priority: 7 as Priority }, Buffer.from('x')), RangeError);
  assert.equal(q.counts().total, 0);
});

test('acknowledged messages survive close and reopen; seq and ids keep growing', async (t) => {
  const h = harness(t);
  let q = h.open();
  const sent = new Map<string, Buffer>();
  for (let i = 0; i < 40; i++) {
    const body = Buffer.from(`message ${i}\r\n`.repeat(i + 1));
    sent.set(await q.enqueue(env([`r${i}@d${i % 4}.example`], { priority: (i % 3) as Priority }), body), body);
  }
  const before = q.counts();
  await q.close();
  h.clock.advance(1000);
  q = h.open();
  assert.deepEqual(q.counts(), before);
  for (const [id, body] of sent) {
    assert.equal(q.get(id)?.id, id);
    assert.ok(q.withBody(id, (b) => b.equals(body)), `body of ${id}`);
  }
  const maxSeq = Math.max(...q.list().map((r) => r.seq));
  const next = await q.enqueue(env(['late@d0.example']), Buffer.from('late'));
  assert.equal(q.get(next)!.seq, maxSeq + 1);
  assert.ok([...sent.keys()].every((id) => id < next));
  assertConsistent(q, h.clock);
});

test('group commit: 200 concurrent enqueues share a handful of fsyncs', async (t) => {
  const q = harness(t).open();
  const s0 = q.stats();
  const body = Buffer.alloc(10_240, 0x41);
  const ids = await Promise.all(Array.from({ length: 200 }, (_, i) => q.enqueue(env([`r${i}@example.com`]), body)));
  const s1 = q.stats();
  assert.equal(new Set(ids).size, 200);
  assert.equal(s1.messagesCommitted - s0.messagesCommitted, 200);
  const commits = s1.commits - s0.commits;
  assert.ok(commits >= 1 && commits <= 5, `200 same-turn enqueues took ${commits} commits`);
  assert.equal(s1.enqueueCommits - s0.enqueueCommits, commits, 'each of those carried enqueues');
  // a lease is a commit without an enqueue: messages per commit counts only the enqueue ones
  const sl = q.stats();
  await q.lease({ limit: 5, owner: 'w' });
  const sl2 = q.stats();
  assert.ok(sl2.commits > sl.commits);
  assert.equal(sl2.enqueueCommits, sl.enqueueCommits);
  // 50 concurrent producers that each wait for their ack before sending the next one.
  const s2 = q.stats();
  await Promise.all(
    Array.from({ length: 50 }, async (_, w) => {
      for (let i = 0; i < 10; i++) await q.enqueue(env([`w${w}@example.com`]), body);
    }),
  );
  const s3 = q.stats();
  const c2 = s3.commits - s2.commits;
  assert.equal(s3.messagesCommitted - s2.messagesCommitted, 500);
  assert.ok(c2 <= 100, `500 acked enqueues from 50 producers took ${c2} commits (want <= 100)`);
  assert.ok(s3.bytesCommitted - s2.bytesCommitted >= 500 * 10_240);
  assert.equal(q.counts().total, 700);
});

test('lease takes the highest priority first, oldest first within a priority', async (t) => {
  const h = harness(t);
  const q = h.open();
  const bulk = await q.enqueue(env(['a@x.example'], { priority: PRIORITY.bulk }), Buffer.from('b'));
  const normal = await q.enqueue(env(['a@x.example'], { priority: PRIORITY.normal }), Buffer.from('n'));
  const urgentA = await q.enqueue(env(['a@x.example'], { priority: PRIORITY.urgent, notBefore: T0 + 3 }), Buffer.from('u1'));
  h.clock.advance(5);
  const urgentB = await q.enqueue(env(['a@x.example'], { priority: PRIORITY.urgent }), Buffer.from('u2'));
  const urgentC = await q.enqueue(env(['a@x.example'], { priority: PRIORITY.urgent }), Buffer.from('u3'));
  const got: string[] = [];
  for (let i = 0; i < 5; i++) {
    const [r] = await q.lease({ limit: 1, owner: 'w' });
    got.push(r!.id);
  }
  // Within a priority: nextAttemptAt, then seq. Across: slots 0, 1 prefer urgent, slot 2
  // normal, slot 3 urgent again; slot 4 prefers urgent but only bulk is left.
  assert.deepEqual(got, [urgentA, urgentB, normal, urgentC, bulk]);
  // Slot 5 prefers normal, slot 6 urgent: with only normal and bulk due, normal comes first.
  const bulk2 = await q.enqueue(env(['a@x.example'], { priority: PRIORITY.bulk }), Buffer.from('b2'));
  const normal2 = await q.enqueue(env(['a@x.example'], { priority: PRIORITY.normal }), Buffer.from('n2'));
  const normal3 = await q.enqueue(env(['a@x.example'], { priority: PRIORITY.normal }), Buffer.from('n3'));
  assert.deepEqual((await q.lease({ limit: 3, owner: 'w' })).map((r) => r.id), [normal2, normal3, bulk2]);
  assert.deepEqual(await q.lease({ limit: 5, owner: 'w' }), []);
  assertConsistent(q, h.clock);
});

test('fairness: bulk and normal are leased within a bounded number of picks under an urgent flood', async (t) => {
  const h = harness(t);
  const q = h.open();
  assert.equal(FAIRNESS_CYCLE.length, 12);
  const body = Buffer.from('flood');
  await Promise.all(Array.from({ length: 100 }, () => q.enqueue(env(['u@x.example'], { priority: PRIORITY.urgent }), body)));
  const bulk = await q.enqueue(env(['b@x.example'], { priority: PRIORITY.bulk }), body);
  const normal = await q.enqueue(env(['n@x.example'], { priority: PRIORITY.normal }), body);
  let picks = 0;
  let bulkAt = -1;
  let normalAt = -1;
  // More urgent mail keeps arriving while we lease one at a time.
  while (bulkAt < 0 || normalAt < 0) {
    await q.enqueue(env(['u@x.example'], { priority: PRIORITY.urgent }), body);
    const [r] = await q.lease({ limit: 1, owner: 'w' });
    picks++;
    if (r!.id === bulk) bulkAt = picks;
    if (r!.id === normal) normalAt = picks;
    assert.ok(picks <= 24, 'no starvation');
  }
  assert.ok(bulkAt <= STARVATION_BOUND.bulk, `bulk leased at pick ${bulkAt}`);
  assert.ok(normalAt <= STARVATION_BOUND.normal, `normal leased at pick ${normalAt}`);

  // One big lease: the share of each priority follows the 8:3:1 cycle when all are backed up.
  await Promise.all([
    ...Array.from({ length: 30 }, () => q.enqueue(env(['n@x.example'], { priority: PRIORITY.normal }), body)),
    ...Array.from({ length: 30 }, () => q.enqueue(env(['b@x.example'], { priority: PRIORITY.bulk }), body)),
  ]);
  const batch = await q.lease({ limit: 48, owner: 'w' });
  const share = [0, 0, 0];
  for (const r of batch) share[r.priority]!++;
  assert.deepEqual(share, [32, 12, 4]);
  assertConsistent(q, h.clock);
});

test('messages that are not due are not leased until their time', async (t) => {
  const h = harness(t);
  const q = h.open();
  const later = await q.enqueue(env(['a@x.example'], { notBefore: T0 + 60_000 }), Buffer.from('later'));
  const now = await q.enqueue(env(['a@x.example'], { priority: PRIORITY.bulk }), Buffer.from('now'));
  assert.equal(q.get(later)!.nextAttemptAt, T0 + 60_000);
  assert.deepEqual(q.counts().byState, { ready: 1, scheduled: 1, leased: 0, held: 0 });
  assert.deepEqual((await q.lease({ limit: 10, owner: 'w' })).map((r) => r.id), [now]);
  h.clock.advance(59_999);
  assert.deepEqual(await q.lease({ limit: 10, owner: 'w' }), [], 'one ms early');
  assertConsistent(q, h.clock);
  h.clock.advance(1);
  assert.deepEqual((await q.lease({ limit: 10, owner: 'w' })).map((r) => r.id), [later], 'due at exactly notBefore');
  assertConsistent(q, h.clock);
});

test('leases expire: reclaimExpired and reopen return them to ready', async (t) => {
  const h = harness(t);
  let q = h.open({ leaseMs: 10_000 });
  const a = await q.enqueue(env(['a@x.example']), Buffer.from('a'));
  const b = await q.enqueue(env(['b@x.example']), Buffer.from('b'));
  const leased = await q.lease({ limit: 1, owner: 'w1' });
  assert.equal(leased[0]!.id, a);
  assert.equal(leased[0]!.state, 'leased');
  assert.deepEqual(leased[0]!.lease, { owner: 'w1', expiresAt: T0 + 10_000 });
  const short = await q.lease({ limit: 1, owner: 'w2', leaseMs: 500 });
  assert.equal(short[0]!.id, b);
  assert.deepEqual(q.counts().byState, { ready: 0, scheduled: 0, leased: 2, held: 0 });
  assert.deepEqual(await q.lease({ limit: 5, owner: 'w3' }), [], 'leased messages are not leased twice');
  h.clock.advance(499);
  assert.equal(await q.reclaimExpired(), 0);
  h.clock.advance(1);
  assert.equal(await q.reclaimExpired(), 1, 'the 500 ms lease expired');
  assert.equal(q.get(b)!.state, 'ready');
  assert.equal(q.get(b)!.lease, undefined);
  assertConsistent(q, h.clock);
  const again = await q.lease({ limit: 5, owner: 'w3' });
  assert.deepEqual(again.map((r) => r.id), [b]);
  // The old owner's settle is refused now that w3 holds the lease; w3's is accepted.
  await assert.rejects(q.settle(b, [{ address: 'b@x.example', kind: 'delivered' }], 'w2'), isCode('PST_ERR_QUEUE_LEASE_LOST'));
  assert.equal(q.get(b)!.state, 'leased');
  await q.close();
  // Crash-like restart after both leases ran out: open() reclaims them.
  h.clock.advance(20_000);
  q = h.open({ leaseMs: 10_000 });
  assert.deepEqual(q.counts().byState, { ready: 2, scheduled: 0, leased: 0, held: 0 });
  assertConsistent(q, h.clock);
  assert.equal((await q.lease({ limit: 5, owner: 'w4' })).length, 2);
});

test('settle per recipient: partial delivery, deferral, failure, then removal with the body', async (t) => {
  const h = harness(t);
  const q = h.open();
  const id = await q.enqueue(
    env(['a@one.example', 'b@two.example', 'c@two.example', 'd@three.example']),
    Buffer.from('multi'),
  );
  assert.deepEqual(q.counts().byDomain, { 'one.example': 1, 'two.example': 2, 'three.example': 1 });
  const [m] = await q.lease({ limit: 1, owner: 'w' });
  assert.equal(m!.id, id);
  h.clock.advance(10);
  const after = await q.settle(
    id,
    [
      { address: 'a@one.example', kind: 'delivered', reply: { code: 250, enhanced: '2.0.0', text: 'ok', destination: 'mx.one.example' } },
      { address: 'b@two.example', kind: 'deferred', retryAt: T0 + 60_000, reply: { code: 451, text: 'later', transient: true } },
      { address: 'c@two.example', kind: 'deferred', retryAt: T0 + 30_000 },
      { address: 'd@three.example', kind: 'failed', reply: { code: 550, enhanced: '5.1.1', text: 'no such user' } },
    ],
    'w',
  );
  assert.ok(after);
  assert.equal(after.state, 'ready');
  assert.equal(after.attempts, 1);
  assert.equal(after.nextAttemptAt, T0 + 30_000, 'earliest retryAt');
  assert.equal(after.lease, undefined);
  assert.deepEqual(
    after.recipients.map((r) => [r.address, r.state, r.attempts, r.lastReply?.code]),
    [
      ['a@one.example', 'delivered', 1, 250],
      ['b@two.example', 'pending', 1, 451],
      ['c@two.example', 'pending', 1, undefined],
      ['d@three.example', 'failed', 1, 550],
    ],
  );
  assert.equal(after.recipients[0]!.lastReply!.at, T0 + 10, 'reply time defaults to now');
  assert.deepEqual(q.get(id), after, 'returned record = stored record');
  assert.deepEqual(q.counts().byDomain, { 'two.example': 2 });
  assert.deepEqual(q.counts().byState, { ready: 0, scheduled: 1, leased: 0, held: 0 });
  assertConsistent(q, h.clock);

  assert.deepEqual(await q.lease({ limit: 1, owner: 'w' }), []);
  h.clock.advance(30_000);
  const [m2] = await q.lease({ limit: 1, owner: 'w' });
  assert.equal(m2!.id, id);
  // An outcome for a recipient that is already final is ignored; unknown recipients are refused.
  await assert.rejects(q.settle(id, [{ address: 'zz@two.example', kind: 'delivered' }]), isCode('PST_ERR_QUEUE_NOT_FOUND'));
  assert.equal(q.get(id)!.state, 'leased', 'a refused settle changes nothing');
  const partial = await q.complete(id, ['b@two.example', 'a@one.example']);
  assert.equal(partial!.recipients[0]!.attempts, 1, 'final recipient untouched');
  assert.equal(partial!.recipients[1]!.state, 'delivered');
  assert.equal(partial!.nextAttemptAt, h.clock.t, 'pending recipient without a deferral: due now');
  assertConsistent(q, h.clock);

  const [m3] = await q.lease({ limit: 1, owner: 'w' });
  assert.equal(m3!.id, id);
  const last = await q.fail(id, ['c@two.example'], { code: 554, text: 'rejected' });
  assert.ok(last);
  assert.deepEqual(last.recipients.map((r) => r.state), ['delivered', 'delivered', 'failed', 'failed']);
  assert.equal(last.attempts, 3);
  assert.equal(q.get(id), undefined, 'all final: record removed');
  assert.throws(() => q.withBody(id, (b) => b.length), isCode('PST_ERR_QUEUE_NOT_FOUND'), 'body removed');
  assert.deepEqual(q.counts(), { total: 0, byPriority: { urgent: 0, normal: 0, bulk: 0 }, byState: { ready: 0, scheduled: 0, leased: 0, held: 0 }, byDomain: {} });
  assertConsistent(q, h.clock);
});

test('defer moves nextAttemptAt and keeps the message queued', async (t) => {
  const h = harness(t);
  const q = h.open();
  const id = await q.enqueue(env(['a@x.example'], { priority: PRIORITY.bulk }), Buffer.from('x'));
  await q.lease({ limit: 1, owner: 'w' });
  const r = await q.defer(id, ['a@x.example'], T0 + 5_000.4, { code: 421, text: 'busy' });
  assert.equal(r!.nextAttemptAt, T0 + 5_001, 'rounded up, never early');
  assert.equal(r!.recipients[0]!.attempts, 1);
  assert.equal(r!.state, 'ready');
  assertConsistent(q, h.clock);
  h.clock.advance(5_001);
  assert.equal((await q.lease({ limit: 1, owner: 'w' }))[0]!.id, id);
});

test('hold and release: held messages are never leased; release makes them due now', async (t) => {
  const h = harness(t);
  const q = h.open();
  const a = await q.enqueue(env(['a@x.example']), Buffer.from('a'));
  const b = await q.enqueue(env(['b@x.example'], { notBefore: T0 + 3_600_000 }), Buffer.from('b'));
  const c = await q.enqueue(env(['c@x.example']), Buffer.from('c'));
  await q.hold(a);
  await q.hold(a); // idempotent
  await q.hold(b);
  assert.deepEqual(q.counts().byState, { ready: 1, scheduled: 0, leased: 0, held: 2 });
  assertConsistent(q, h.clock);
  const [lc] = await q.lease({ limit: 10, owner: 'w' });
  assert.equal(lc!.id, c);
  await q.hold(c); // holding a leased message drops its lease
  assert.equal(q.get(c)!.lease, undefined);
  assertConsistent(q, h.clock);
  h.clock.advance(10 * 3_600_000);
  assert.equal(await q.reclaimExpired(), 0, 'held messages are not reclaimed');
  assert.deepEqual(await q.lease({ limit: 10, owner: 'w' }), [], 'held messages are never leased');
  h.clock.advance(1);
  await q.release(b);
  assert.equal(q.get(b)!.nextAttemptAt, h.clock.t, 'released = due now');
  assertConsistent(q, h.clock);
  assert.deepEqual((await q.lease({ limit: 10, owner: 'w' })).map((r) => r.id), [b]);
  await q.release(b); // leased: left alone
  assert.equal(q.get(b)!.state, 'leased');
  // A message scheduled for later can be released to go now.
  const d = await q.enqueue(env(['d@x.example'], { notBefore: h.clock.t + 1_000 }), Buffer.from('d'));
  await q.release(d);
  assert.equal(q.get(d)!.nextAttemptAt, h.clock.t);
  assertConsistent(q, h.clock);
});

test('remove deletes a message in any state', async (t) => {
  const h = harness(t);
  const q = h.open();
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push(await q.enqueue(env([`r${i}@x.example`]), Buffer.from(`m${i}`)));
  await q.lease({ limit: 1, owner: 'w' });
  await q.hold(ids[2]!);
  for (const id of ids) await q.remove(id);
  assert.equal(q.counts().total, 0);
  assert.deepEqual(q.list(), []);
  for (const id of ids) assert.throws(() => q.withBody(id, () => 0), isCode('PST_ERR_QUEUE_NOT_FOUND'));
  assertConsistent(q, h.clock);
});

test('failRecipients: one mechanism for a whole message and for one domain; a leased message is left alone', async (t) => {
  const h = harness(t);
  const q = h.open();
  const reply = { code: 550, enhanced: '5.0.0', text: 'bounced by administrator', command: 'ADMIN' };
  const a = await q.enqueue(env(['x@one.example', 'y@two.example', 'z@One.Example']), Buffer.from('a'));
  const b = await q.enqueue(env(['w@two.example']), Buffer.from('b'));
  const c = await q.enqueue(env(['v@one.example']), Buffer.from('c'));
  await q.hold(b);
  // One domain: its pending recipients fail, the message stays with the others pending.
  const r1 = valueOf(await q.failRecipients(a, reply, 'ONE.example'));
  assert.deepEqual(r1.failed.map((r) => r.address), ['x@one.example', 'z@One.Example']);
  assert.equal(r1.removed, false);
  assert.equal(r1.failed[0]!.lastReply?.at, h.clock.t);
  assert.equal(r1.failed[0]!.attempts, 0, 'nothing was tried');
  assert.deepEqual(q.get(a)!.recipients.map((r) => r.state), ['failed', 'pending', 'failed']);
  assert.deepEqual(q.counts().byDomain, { 'two.example': 2, 'one.example': 1 });
  assertConsistent(q, h.clock);
  // The whole message (held): every pending recipient fails, message and body go.
  const r2 = valueOf(await q.failRecipients(b, reply));
  assert.equal(r2.removed, true);
  assert.equal(r2.record.state, 'held', 'the final record as it was');
  assert.equal(q.get(b), undefined);
  assert.throws(() => q.withBody(b, () => 0), isCode('PST_ERR_QUEUE_NOT_FOUND'));
  assertConsistent(q, h.clock);
  // The last pending domain of a message removes it too.
  assert.equal(valueOf(await q.failRecipients(a, reply, 'two.example')).removed, true);
  assert.equal(q.get(a), undefined);
  // Leased: nothing changes.
  await q.lease({ limit: 1, owner: 'w' });
  assert.deepEqual(await q.failRecipients(c, reply), { ok: false, error: 'leased' });
  assert.equal(q.get(c)!.recipients[0]!.state, 'pending');
  await assert.rejects(q.failRecipients('0000000000000000', reply), isCode('PST_ERR_QUEUE_NOT_FOUND'));
  assertConsistent(q, h.clock);
});

test('counters stay exact through every transition and after reopen', async (t) => {
  const h = harness(t);
  let q = h.open({ leaseMs: 1_000 });
  const ids: string[] = [];
  for (let i = 0; i < 30; i++) {
    const recipients = [`a${i}@d${i % 3}.example`, `b${i}@D${(i + 1) % 3}.EXAMPLE`];
    ids.push(await q.enqueue(env(recipients, { priority: (i % 3) as Priority, notBefore: i % 5 === 0 ? T0 + 10_000 : undefined }), Buffer.from(`m${i}`)));
    assertConsistent(q, h.clock);
  }
  const leased = await q.lease({ limit: 10, owner: 'w' });
  assertConsistent(q, h.clock);
  await q.complete(leased[0]!.id, [leased[0]!.recipients[0]!.address]);
  assertConsistent(q, h.clock);
  await q.fail(leased[1]!.id, leased[1]!.recipients.map((r) => r.address));
  assertConsistent(q, h.clock);
  await q.defer(leased[2]!.id, [leased[2]!.recipients[1]!.address], T0 + 500);
  assertConsistent(q, h.clock);
  await q.hold(ids[29]!);
  await q.hold(leased[3]!.id);
  assertConsistent(q, h.clock);
  await q.remove(ids[28]!);
  assertConsistent(q, h.clock);
  h.clock.advance(1_000);
  assert.equal(await q.reclaimExpired(), 6);
  assertConsistent(q, h.clock);
  await q.release(ids[29]!);
  assertConsistent(q, h.clock);
  const before = q.counts();
  await q.close();
  q = h.open({ leaseMs: 1_000 });
  assert.deepEqual(q.counts(), before);
  assertConsistent(q, h.clock);
  h.clock.advance(10_000);
  assert.equal(q.counts().byState.scheduled, 0, 'scheduled messages become ready as time passes');
  assertConsistent(q, h.clock);
});

test('counters stay exact when enqueues arrive from socket reads while leases run (large bodies: lmdb-js runs a callback mid-turn)', async (t) => {
  // lmdb-js's writer thread can reach a transaction callback before the event turn that
  // queued it has ended. The enqueue counter callback used to be queued by a turn's first
  // enqueue, so the turn's later enqueues (socket reads in the same poll phase, after lmdb-js
  // had run the callback) were never counted: here 6-37 of 200 per round, in half the rounds.
  // 1 MiB bodies keep the writer busy enough for it to happen; SMTP sessions enqueue this way.
  const h = harness(t);
  const q = h.open();
  const body = Buffer.alloc(1024 * 1024, 0x78);
  const perRound = 200;
  const sessions = 20;
  for (let round = 0; round < 4; round++) {
    let started = 0;
    let done = 0;
    const server = createServer((s) => {
      s.on('data', () => {
        if (started >= perRound) return;
        started++;
        void q.enqueue(env(['c@relay.example']), Buffer.from(body)).then(() => s.write('k'));
      });
    });
    t.after(() => server.close());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const clients = await Promise.all(
      Array.from({ length: sessions }, () =>
        new Promise<Socket>((resolve) => {
          const c = connect(port, '127.0.0.1', () => {
            c.setNoDelay(true);
            c.write('x');
            resolve(c);
          });
          c.on('data', () => c.write('x'));
          c.on('error', () => {});
        }),
      ),
    );
    const deliverer = async (k: number): Promise<void> => {
      while (done < perRound) {
        const got = await q.lease({ limit: 2, owner: `w${k}` });
        if (got.length === 0) await new Promise((r) => setTimeout(r, 1));
        for (const m of got) {
          await q.complete(m.id, m.recipients.map((r) => r.address));
          done++;
        }
      }
    };
    await Promise.all(Array.from({ length: sessions }, (_, k) => deliverer(k)));
    for (const c of clients) c.destroy();
    server.close();
    assert.equal(done, perRound);
    assert.deepEqual(q.counts().byState, { ready: 0, scheduled: 0, leased: 0, held: 0 }, `round ${round}: counters after every message was enqueued and delivered`);
    assert.equal(q.counts().total, 0, `round ${round}`);
    assertConsistent(q, h.clock);
  }
});

test('lease with maxBytes stops before the message that would pass it; the first is always leased; the rest stay due', async (t) => {
  const h = harness(t);
  const q = h.open();
  const ids: string[] = [];
  for (const size of [100, 200, 300, 400]) ids.push(await q.enqueue(env([`s${size}@example.net`]), Buffer.alloc(size, 0x61)));
  const first = await q.lease({ limit: 10, owner: 'w', maxBytes: 350 });
  assert.deepEqual(first.map((m) => m.size), [100, 200], '100 + 200 fit in 350; + 300 would not');
  assertConsistent(q, h.clock);
  assert.equal(q.counts().byState.ready, 2, 'the others are still due');
  const big = await q.lease({ limit: 10, owner: 'w', maxBytes: 1 });
  assert.deepEqual(big.map((m) => m.id), [ids[2]], 'one message always, whatever its size');
  assert.deepEqual(await q.lease({ limit: 10, owner: 'w', maxBytes: 399, atLeastOne: false }), [], 'atLeastOne false: not even the first when it does not fit');
  assert.equal(q.counts().byState.ready, 1, 'it stays due');
  const rest = await q.lease({ limit: 10, owner: 'w', maxBytes: 0 });
  assert.deepEqual(rest.map((m) => m.id), [ids[3]]);
  assert.deepEqual(await q.lease({ limit: 10, owner: 'w' }), []);
  assertConsistent(q, h.clock);
});

test('lease with maxBytes keeps the fairness rotation: leasing in two steps takes the same messages in the same order as in one', async (t) => {
  const order = async (steps: { maxBytes?: number }[]): Promise<string[]> => {
    const h = harness(t);
    const q = h.open();
    for (let i = 0; i < 6; i++) {
      await q.enqueue(env([`u${i}@example.net`], { priority: 0 }), Buffer.alloc(100, 0x61));
      await q.enqueue(env([`b${i}@example.net`], { priority: 2 }), Buffer.alloc(100, 0x61));
      await q.enqueue(env([`n${i}@example.net`], { priority: 1 }), Buffer.alloc(100, 0x61));
    }
    const out: string[] = [];
    for (const s of steps) out.push(...(await q.lease({ limit: 18, owner: 'w', ...s })).map((m) => m.recipients[0]!.address[0]!));
    return out;
  };
  const once = await order([{}]);
  assert.equal(once.length, 18);
  const stepped = await order([{ maxBytes: 250 }, { maxBytes: 350 }, {}]);
  assert.deepEqual(stepped, once);
});

test('unknown ids and a closed queue give their error codes', async (t) => {
  const h = harness(t);
  const q = h.open();
  const nf = isCode('PST_ERR_QUEUE_NOT_FOUND');
  assert.equal(q.get('0000000000000000'), undefined);
  assert.throws(() => q.withBody('nope', () => 0), nf);
  await assert.rejects(q.settle('nope', []), nf);
  await assert.rejects(q.complete('nope', ['a@b']), nf);
  await assert.rejects(q.defer('nope', ['a@b'], T0), nf);
  await assert.rejects(q.fail('nope', ['a@b']), nf);
  await assert.rejects(q.hold('nope'), nf);
  await assert.rejects(q.release('nope'), nf);
  await assert.rejects(q.remove('nope'), nf);

  const id = await q.enqueue(env(['a@x.example']), Buffer.from('a'));
  const pending = q.enqueue(env(['b@x.example']), Buffer.from('b'));
  const closing = q.close();
  assert.equal(closing, q.close(), 'close is idempotent');
  await closing;
  assert.match(await pending, /^[0-9a-v]{16}$/, 'close waited for the write in flight');
  const closed = isCode('PST_ERR_QUEUE_CLOSED');
  await assert.rejects(q.enqueue(env(['c@x.example']), Buffer.from('c')), closed);
  await assert.rejects(q.lease({ limit: 1, owner: 'w' }), closed);
  await assert.rejects(q.settle(id, []), closed);
  await assert.rejects(q.hold(id), closed);
  await assert.rejects(q.release(id), closed);
  await assert.rejects(q.remove(id), closed);
  await assert.rejects(q.reclaimExpired(), closed);
  assert.throws(() => q.get(id), closed);
  assert.throws(() => q.withBody(id, () => 0), closed);
  assert.throws(() => q.counts(), closed);
  const q2 = h.open();
  assert.equal(q2.counts().total, 2);
});

test('the map grows past a tiny initial mapSize', async (t) => {
  const h = harness(t);
  const q = h.open({ mapSizeBytes: 128 * 1024 });
  const body = Buffer.alloc(256 * 1024, 7);
  const ids = await Promise.all(Array.from({ length: 24 }, (_, i) => q.enqueue(env([`r${i}@x.example`]), body)));
  assert.equal(q.counts().total, 24);
  for (const id of ids) assert.equal(q.withBody(id, (b) => b.length), body.length);
});

test('records of every shape round-trip (structures are a code constant, other shapes go inline)', async (t) => {
  const h = harness(t);
  let q = h.open();
  const id = await q.enqueue(env(['a@x.example']), Buffer.from('a'));
  await q.lease({ limit: 1, owner: 'worker-with-a-long-name' });
  const r = await q.defer(id, ['a@x.example'], T0 + 1, {
    code: 452,
    enhanced: '4.3.1',
    text: 'Insufficient system storage ünïcödé',
    command: 'RCPT',
    transient: true,
    destination: '[2001:db8::1]:25',
    at: T0 + 2 ** 40 + 1,
  });
  await q.close();
  q = h.open();
  const back = q.get(id) as MessageRecord;
  assert.deepEqual(back, r);
  assert.equal(back.recipients[0]!.lastReply!.at, T0 + 2 ** 40 + 1, 'large integers survive');
});

test('reserveId: the id named before the body is complete is the id stored', async (t) => {
  const { Queue } = await import('../../src/queue/store.js');
  const dir = (await import('../helpers/tmpdir.js')).tmpdir(t);
  const q = Queue.open({ path: dir });
  t.after(() => q.close());
  const reserved = q.reserveId();
  const other = await q.enqueue({ sender: '', recipients: [{ address: 'a@x.example' }] }, Buffer.from('first'));
  const id = await q.enqueue({ sender: '', recipients: [{ address: 'b@x.example' }] }, Buffer.from('second'), reserved);
  assert.equal(id, reserved);
  assert.notEqual(other, reserved);
  assert.equal(q.withBody(reserved, (b) => b.toString()), 'second');
  await assert.rejects(q.enqueue({ sender: '', recipients: [{ address: 'b@x.example' }] }, Buffer.from('x'), 'zzz'), RangeError);
});

test('releaseAllLeases returns every leased message to ready at once', async (t) => {
  const { Queue } = await import('../../src/queue/store.js');
  const dir = (await import('../helpers/tmpdir.js')).tmpdir(t);
  const q = Queue.open({ path: dir });
  t.after(() => q.close());
  for (let i = 0; i < 3; i++) await q.enqueue({ sender: '', recipients: [{ address: `r${i}@x.example` }] }, Buffer.from('m'));
  const leased = await q.lease({ limit: 2, owner: 'dead-node' });
  assert.equal(leased.length, 2);
  assert.equal(q.counts().byState.leased, 2);
  assert.equal(await q.releaseAllLeases(), 2);
  assert.deepEqual(q.counts().byState, { ready: 3, scheduled: 0, leased: 0, held: 0 });
  assert.equal((await q.lease({ limit: 5, owner: 'new-node' })).length, 3);
});

test('enqueue with hold stores the message held: counted, never leased until released', async (t) => {
  const { Queue } = await import('../../src/queue/store.js');
  const dir = (await import('../helpers/tmpdir.js')).tmpdir(t);
  const q = Queue.open({ path: dir });
  t.after(() => q.close());
  const id = await q.enqueue({ sender: '', recipients: [{ address: 'q@x.example' }], hold: true }, Buffer.from('quarantined'));
  assert.equal(q.get(id)!.state, 'held');
  assert.equal(q.counts().byState.held, 1);
  assert.equal((await q.lease({ limit: 5, owner: 'w' })).length, 0);
  await q.release(id);
  assert.deepEqual((await q.lease({ limit: 5, owner: 'w' })).map((m) => m.id), [id]);
});

test('settle: a deferral that was not tried (an open circuit) keeps the reply but counts no attempt', async (t) => {
  const h = harness(t);
  const q = h.open();
  const id = await q.enqueue(env(['a@one.example', 'b@one.example']), Buffer.from('x'));
  await q.lease({ limit: 1, owner: 'w' });
  const reply = { text: 'destination backing off', enhanced: '4.4.1', transient: true };
  const after = await q.settle(id, [
    { address: 'a@one.example', kind: 'deferred', retryAt: T0 + 5_000, reply, tried: false },
    { address: 'b@one.example', kind: 'deferred', retryAt: T0 + 9_000, reply },
  ], 'w');
  assert.deepEqual(after!.recipients.map((r) => [r.attempts, r.lastReply?.enhanced]), [[0, '4.4.1'], [1, '4.4.1']]);
  assert.equal(after!.nextAttemptAt, T0 + 5_000);
  assertConsistent(q, h.clock);
});

test('backlog: the queued count without held messages, and the arrival of the oldest one not held, within a bounded read', async (t) => {
  const h = harness(t);
  const q = h.open();
  assert.deepEqual(q.backlog(), { queued: 0, oldestAt: null });
  const a = await q.enqueue(env(['a@x.example']), Buffer.from('a'));
  h.clock.advance(1000);
  const b = await q.enqueue(env(['b@x.example']), Buffer.from('b'));
  h.clock.advance(1000);
  await q.enqueue(env(['c@x.example']), Buffer.from('c'));
  assert.deepEqual(q.backlog(), { queued: 3, oldestAt: T0 });
  await q.hold(a); // quarantined: it stays on purpose, it is not the queue's age
  assert.deepEqual(q.backlog(), { queued: 2, oldestAt: T0 + 1000 });
  await q.lease({ limit: 1, owner: 'w' }); // leased (b, the oldest due) still counts: it is not delivered yet
  assert.deepEqual(q.backlog(), { queued: 2, oldestAt: T0 + 1000 });
  await q.hold(b);
  assert.deepEqual(q.backlog(2), { queued: 1, oldestAt: null }, 'the two oldest are held: unknown within a read of two');
  assert.deepEqual(q.backlog(3), { queued: 1, oldestAt: T0 + 2000 });
});

test('lease renewal: only the owner\'s leases are extended; a lease nobody renews (a dead process) still expires; skip passes over ids in flight; a settle after a takeover is refused', async (t) => {
  const h = harness(t);
  const q = h.open({ leaseMs: 1000 });
  const a = await q.enqueue(env(['a@x.example']), Buffer.from('a'));
  const b = await q.enqueue(env(['b@x.example']), Buffer.from('b'));
  const [la, lb] = await q.lease({ limit: 2, owner: 'live' });
  assert.deepEqual([la!.id, lb!.id], [a, b]);
  // b's deliverer "dies": it renews nothing. a's renews every 400 ms.
  for (let i = 0; i < 5; i++) {
    h.clock.advance(400);
    assert.deepEqual(await q.renewLeases([a], 'live'), []);
    await q.reclaimExpired();
  }
  assert.equal(q.get(a)!.state, 'leased', 'renewed: still leased after 2 s of a 1 s lease');
  assert.equal(q.get(a)!.lease!.expiresAt, h.clock.t + 1000);
  assert.equal(q.get(b)!.state, 'ready', 'not renewed: expired and returned');
  assertConsistent(q, h.clock);
  // Someone else's lease, a ready message and an unknown id are not renewed: reported lost.
  const [lb2] = await q.lease({ limit: 1, owner: 'other' });
  assert.equal(lb2!.id, b);
  const before = q.get(b)!.lease!.expiresAt;
  h.clock.advance(100);
  assert.deepEqual(await q.renewLeases([a, b, 'nope'], 'live'), [b, 'nope']);
  assert.equal(q.get(b)!.lease!.expiresAt, before, 'the other owner\'s lease is untouched');
  assert.equal(q.get(b)!.lease!.owner, 'other');

  // a's lease expires under its delivery (renewals stopped); the same deliverer skips it.
  h.clock.advance(1000);
  assert.equal(await q.reclaimExpired(), 2);
  const c = await q.enqueue(env(['c@x.example']), Buffer.from('c'));
  const got = await q.lease({ limit: 1, owner: 'live', skip: new Set([a, b]) });
  assert.deepEqual(got.map((r) => r.id), [c], 'the ids in flight are read past, not counted against the limit');
  assert.equal(q.get(a)!.state, 'ready', 'a skipped id stays due');
  // Another deliverer takes a over and settles it; the first attempt's settle is then refused,
  // even though the message is ready again and the owner would match.
  const [la2] = await q.lease({ limit: 1, owner: 'taker' });
  assert.equal(la2!.id, a);
  await q.settle(a, [{ address: 'a@x.example', kind: 'deferred', retryAt: h.clock.t + 60_000 }], 'taker', la2!.attempts);
  await assert.rejects(q.settle(a, [{ address: 'a@x.example', kind: 'delivered' }], 'live', la!.attempts), isCode('PST_ERR_QUEUE_LEASE_LOST'));
  assert.equal(q.get(a)!.recipients[0]!.state, 'pending');
  assert.equal(q.get(a)!.attempts, 1, 'one attempt settled, not two');
  // Expired and not taken over: the late settle still counts (no outcome is thrown away).
  h.clock.advance(2000);
  await q.reclaimExpired();
  assert.equal(q.get(b)!.state, 'ready');
  await q.settle(b, [{ address: 'b@x.example', kind: 'delivered' }], 'other', lb2!.attempts);
  assert.equal(q.get(b), undefined, 'delivered and removed');
  assertConsistent(q, h.clock);
});
