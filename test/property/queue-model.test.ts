// Model-based test: random sequences of queue operations (fast-check) run against a real
// queue and against a plain in-memory model of the documented rules. After every step the
// queue must agree with the model (which messages exist, their state, schedule and pending
// recipients), lease must return exactly the due messages it is allowed to, oldest first per
// priority, and counters and indexes must match the records (also across reopen).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { Database } from 'lmdb';
import { FAIRNESS_CYCLE, Queue, type MessageState, type Priority, type QueueCounts, type RecipientOutcome } from '../../src/queue/store.js';
import { tmpdir } from '../helpers/tmpdir.js';

type Op =
  | { op: 'enqueue'; n: number; priority: Priority; delay: number }
  | { op: 'lease'; limit: number; leaseMs: number }
  | { op: 'settle'; pick: number; outcomes: ('delivered' | 'deferred' | 'failed' | 'skip')[]; retry: number }
  | { op: 'hold' | 'release' | 'remove'; pick: number }
  | { op: 'advance'; ms: number }
  | { op: 'reclaim' }
  | { op: 'reopen' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('enqueue' as const), n: fc.integer({ min: 1, max: 3 }), priority: fc.constantFrom<Priority>(0, 1, 2), delay: fc.constantFrom(0, 0, 500, 5000) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('lease' as const), limit: fc.integer({ min: 1, max: 5 }), leaseMs: fc.constantFrom(100, 1000) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('settle' as const), pick: fc.nat(), outcomes: fc.array(fc.constantFrom('delivered' as const, 'deferred' as const, 'failed' as const, 'skip' as const), { minLength: 1, maxLength: 4 }), retry: fc.constantFrom(0, 300, 3000) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('hold' as const, 'release' as const, 'remove' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.constantFrom(1, 100, 1000, 5000) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('reclaim' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('reopen' as const) }) },
);

interface ModelMsg {
  id: string;
  seq: number;
  priority: Priority;
  state: MessageState;
  nextAttemptAt: number;
  expiresAt: number;
  addresses: string[];
  pending: Set<string>;
}

/** The sub-databases (record-store.ts) behind the Queue. */
type Internals = { due: Database<string, number[]>; leases: Database<string, number[]>; counters: Database<number, string> };

function assertConsistent(q: Queue, nowMs: number): void {
  const recs = q.list();
  const c: QueueCounts = { total: 0, byPriority: { urgent: 0, normal: 0, bulk: 0 }, byState: { ready: 0, scheduled: 0, leased: 0, held: 0 }, byDomain: {} };
  const names = ['urgent', 'normal', 'bulk'] as const;
  for (const r of recs) {
    c.total++;
    c.byPriority[names[r.priority]]++;
    if (r.state === 'ready') c.byState[r.nextAttemptAt <= nowMs ? 'ready' : 'scheduled']++;
    else c.byState[r.state]++;
    for (const rc of r.recipients) if (rc.state === 'pending') c.byDomain[rc.domain] = (c.byDomain[rc.domain] ?? 0) + 1;
  }
  assert.deepEqual(q.counts(), c);
  const { due, leases } = (q as unknown as { store: Internals }).store;
  assert.deepEqual(
    Array.from(due.getRange({}), (e) => JSON.stringify([e.key, e.value])).sort(),
    recs.filter((r) => r.state === 'ready').map((r) => JSON.stringify([[r.priority, r.nextAttemptAt, r.seq], r.id])).sort(),
  );
  assert.deepEqual(
    Array.from(leases.getRange({}), (e) => JSON.stringify([e.key, e.value])).sort(),
    recs.filter((r) => r.state === 'leased').map((r) => JSON.stringify([[r.lease!.expiresAt, r.seq], r.id])).sort(),
  );
}

function assertMatchesModel(q: Queue, model: Map<string, ModelMsg>): void {
  const recs = q.list();
  assert.deepEqual(recs.map((r) => r.id).sort(), [...model.keys()].sort(), 'same messages');
  for (const r of recs) {
    const m = model.get(r.id)!;
    assert.equal(r.state, m.state, `state of ${r.id}`);
    assert.equal(r.nextAttemptAt, m.nextAttemptAt, `nextAttemptAt of ${r.id}`);
    if (m.state === 'leased') assert.equal(r.lease?.expiresAt, m.expiresAt);
    assert.deepEqual(r.recipients.filter((x) => x.state === 'pending').map((x) => x.address).sort(), [...m.pending].sort());
  }
}

function reclaimModel(model: Map<string, ModelMsg>, nowMs: number): number {
  let n = 0;
  for (const m of model.values()) {
    if (m.state === 'leased' && m.expiresAt <= nowMs) {
      m.state = 'ready';
      n++;
    }
  }
  return n;
}

test('random operation sequences agree with the model', async (t) => {
  const root = tmpdir(t);
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async (ops) => {
      const dir = join(root, String(run++));
      mkdirSync(dir);
      let now = 1_700_000_000_000;
      const clock = () => now;
      let q = Queue.open({ path: dir, now: clock });
      const model = new Map<string, ModelMsg>();
      let slot = 0; // the rotation lives in the Queue object: it restarts at reopen
      let k = 0;
      const pick = (i: number): ModelMsg | undefined => {
        const ids = [...model.keys()].sort();
        return ids.length === 0 ? undefined : model.get(ids[i % ids.length]!);
      };
      try {
        for (const o of ops) {
          switch (o.op) {
            case 'enqueue': {
              const addresses = Array.from({ length: o.n }, (_, j) => `r${k}.${j}@d${(k + j) % 3}.example`);
              k++;
              const id = await q.enqueue(
                { sender: '', recipients: addresses.map((address) => ({ address })), priority: o.priority, notBefore: o.delay > 0 ? now + o.delay : undefined },
                Buffer.from(`body ${k}`),
              );
              const rec = q.get(id)!;
              model.set(id, { id, seq: rec.seq, priority: o.priority, state: 'ready', nextAttemptAt: now + o.delay, expiresAt: 0, addresses, pending: new Set(addresses) });
              break;
            }
            case 'lease': {
              // The rule, independently: per slot, the preferred priority of the cycle if it
              // has a due message, else the highest priority that has one; oldest due first.
              const due = [0, 1, 2].map((p) =>
                [...model.values()]
                  .filter((m) => m.priority === p && m.state === 'ready' && m.nextAttemptAt <= now)
                  .sort((a, b) => a.nextAttemptAt - b.nextAttemptAt || a.seq - b.seq),
              );
              const want: string[] = [];
              while (want.length < o.limit && due.some((d) => d.length > 0)) {
                const pref = FAIRNESS_CYCLE[slot % FAIRNESS_CYCLE.length]!;
                slot++;
                const p = due[pref]!.length > 0 ? pref : due.findIndex((d) => d.length > 0);
                want.push(due[p]!.shift()!.id);
              }
              const got = await q.lease({ limit: o.limit, owner: 'w', leaseMs: o.leaseMs });
              assert.deepEqual(got.map((r) => r.id), want, 'lease picks what the fairness rule says, in order');
              for (const r of got) {
                const m = model.get(r.id)!;
                assert.equal(r.state, 'leased');
                m.state = 'leased';
                m.expiresAt = now + o.leaseMs;
              }
              break;
            }
            case 'settle': {
              const m = pick(o.pick);
              if (m === undefined) break;
              const outcomes: RecipientOutcome[] = [];
              o.outcomes.forEach((kind, i) => {
                const address = m.addresses[i % m.addresses.length]!;
                if (kind === 'deferred') outcomes.push({ address, kind: 'deferred', retryAt: now + o.retry });
                else if (kind !== 'skip') outcomes.push({ address, kind });
              });
              const r = await q.settle(m.id, outcomes);
              let retryAt = Infinity;
              for (const x of outcomes) {
                if (!m.pending.has(x.address)) continue;
                if (x.kind === 'deferred') retryAt = Math.min(retryAt, x.retryAt);
                else m.pending.delete(x.address);
              }
              assert.deepEqual(r!.recipients.filter((x) => x.state === 'pending').map((x) => x.address).sort(), [...m.pending].sort());
              if (m.pending.size === 0) model.delete(m.id);
              else {
                if (m.state === 'leased') m.state = 'ready';
                m.nextAttemptAt = Number.isFinite(retryAt) ? retryAt : now;
              }
              break;
            }
            case 'hold': {
              const m = pick(o.pick);
              if (m === undefined) break;
              await q.hold(m.id);
              m.state = 'held';
              break;
            }
            case 'release': {
              const m = pick(o.pick);
              if (m === undefined) break;
              await q.release(m.id);
              if (m.state === 'held' || (m.state === 'ready' && m.nextAttemptAt > now)) {
                m.state = 'ready';
                m.nextAttemptAt = now;
              }
              break;
            }
            case 'remove': {
              const m = pick(o.pick);
              if (m === undefined) break;
              await q.remove(m.id);
              model.delete(m.id);
              break;
            }
            case 'advance':
              now += o.ms;
              break;
            case 'reclaim':
              assert.equal(await q.reclaimExpired(), reclaimModel(model, now));
              break;
            case 'reopen':
              await q.close();
              q = Queue.open({ path: dir, now: clock });
              slot = 0;
              reclaimModel(model, now);
              break;
          }
          assertConsistent(q, now);
          assertMatchesModel(q, model);
        }
      } finally {
        await q.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }),
    { numRuns: 40 },
  );
});
