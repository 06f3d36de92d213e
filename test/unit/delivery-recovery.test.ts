// Messages waiting for a destination, end to end inside one process: a real LMDB queue, the
// Scheduler with a real CircuitBreakerMap and DestinationRecovery, and an in-test transport
// whose destinations are switched down (connection refused), up, or answering 451 to RCPT.
// Real time with short probe intervals; the retry schedule is 5 minutes, so anything
// delivered within the test was released, not retried. Covered: release on a delivery's
// success, release on the breaker's probe, own-reason deferrals left on their schedule,
// the tie kept across a restart, the pacing window, and which deferrals tie at all.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Queue } from '../../src/queue/store.js';
import { Scheduler } from '../../src/delivery/scheduler.js';
import { breakerGate, CircuitBreakerMap } from '../../src/delivery/circuit-breaker.js';
import { DestinationRecovery } from '../../src/delivery/destination-recovery.js';
import { destinationCaused } from '../../src/delivery/deferral-cause.js';
import { recoveryWindow } from '../../src/delivery/engine.js';
import { notDelivered, replyRecord, type Destination, type DeliveryRequest, type RecipientResult, type Transport } from '../../src/delivery/types.js';
import { silentLogger } from '../../src/log/logger.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';

const MIN = 60_000;
type Mode = 'down' | 'up' | 'rcpt451';

class SwitchTransport implements Transport {
  readonly mode = new Map<string, Mode>();
  /** deliver() calls per destination key, and the most in flight at once. */
  readonly calls = new Map<string, number>();
  inFlight = 0;
  maxInFlight = 0;
  delayMs = 0;
  async deliver(dest: Destination, req: DeliveryRequest): Promise<RecipientResult[]> {
    this.calls.set(dest.key, (this.calls.get(dest.key) ?? 0) + 1);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      const mode = this.mode.get(dest.key) ?? 'up';
      return req.recipients.map((r) => {
        const reply =
          mode === 'down' ? replyRecord(undefined, '4.4.1', 'connect ECONNREFUSED', 'CONNECT', dest.key)
            : mode === 'rcpt451' ? replyRecord(451, '4.7.1', 'greylisted, try later', 'RCPT', dest.key)
              : replyRecord(250, '2.0.0', 'ok', 'END-OF-DATA', dest.key);
        return mode === 'up' ? { kind: 'delivered' as const, address: r.address, reply } : notDelivered(r.address, reply);
      });
    } finally {
      this.inFlight--;
    }
  }
  async close(): Promise<void> {}
}

const destOf = (domain: string): Destination => ({ kind: 'smtp', key: `smtp:mx.${domain}:25`, hosts: [{ host: `mx.${domain}`, port: 25 }], tlsPolicy: 'none' });

interface NodeOptions {
  probeBaseMs?: number;
  probeMaxMs?: number;
  window?: number;
  threshold?: number;
  maxConcurrency?: number;
}

interface TestNode {
  queue: Queue;
  sched: Scheduler;
  recovery: DestinationRecovery;
  breakers: CircuitBreakerMap;
  enqueue(rcpt: string): Promise<string>;
  stop(): Promise<void>;
}

/** A queue in `dir` with a scheduler delivering through `transport`; stopped in t.after (and by stop()). */
function startNode(t: TestContext, dir: string, transport: SwitchTransport, o: NodeOptions = {}): TestNode {
  const queue = Queue.open({ path: dir, mapSizeBytes: 64 * 1024 * 1024 });
  const breakers = new CircuitBreakerMap({ threshold: o.threshold ?? 3, baseOpenMs: o.probeBaseMs ?? 50, maxOpenMs: o.probeMaxMs ?? 200, jitter: 0 });
  const gate = breakerGate(breakers);
  let sched: Scheduler | null = null;
  const recovery = new DestinationRecovery({
    queue,
    log: silentLogger(),
    window: o.window ?? 8,
    probeBaseMs: o.probeBaseMs ?? 50,
    probeMaxMs: o.probeMaxMs ?? 200,
    openUntil: (key) => breakers.retryAt(key),
    wake: () => sched?.wake(),
  });
  sched = new Scheduler({
    queue,
    log: silentLogger(),
    route: async (domain) => destOf(domain),
    transports: { smtp: transport },
    gate,
    recovery,
    retryAt: (_attempts, now) => now + 5 * MIN,
    maxQueueLifetimeMs: 24 * 60 * MIN,
    maxConcurrency: o.maxConcurrency ?? 16,
    leaseMs: 10 * MIN,
    pollIntervalMs: 20,
  });
  const s = sched;
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => (stopped ??= (async () => {
    await s.stop();
    await queue.close();
  })());
  t.after(stop);
  return {
    queue,
    sched: s,
    recovery,
    breakers,
    async enqueue(rcpt) {
      const id = await queue.enqueue({ sender: 's@home.test', recipients: [{ address: rcpt }] }, Buffer.from('Subject: t\r\n\r\nbody\r\n'));
      s.wake();
      return id;
    },
    stop,
  };
}

/** The folder is removed after every node using it stopped (hooks run in registration order). */
function folder(t: TestContext): string {
  return tmpdir(t, 'postern-recovery-');
}

const waiting = (q: Queue, key: string): number => q.waitingCounts()[key] ?? 0;

/** A started node whose destination down.test refuses connections, with `count` messages tied to it. */
async function downWithWaiting(t: TestContext, count: number, o: NodeOptions, dir = folder(t)): Promise<{ n: TestNode; transport: SwitchTransport; D: string; ids: string[] }> {
  const transport = new SwitchTransport();
  const D = destOf('down.test').key;
  transport.mode.set(D, 'down');
  const n = startNode(t, dir, transport, o);
  await n.sched.start();
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push(await n.enqueue(`r${i}@down.test`));
  await waitFor(`${count} tied to the destination`, () => waiting(n.queue, D) === count);
  return { n, transport, D, ids };
}

test('release on success: messages deferred by a down destination are delivered as soon as a delivery to it succeeds', async (t) => {
  // Probes far off and a high breaker threshold: only a delivery's success can release them.
  const { n, transport, D, ids } = await downWithWaiting(t, 5, { probeBaseMs: 60_000, probeMaxMs: 60_000, threshold: 100 });
  for (const id of ids) assert.ok(n.queue.get(id)!.nextAttemptAt > Date.now() + 4 * MIN, 'their own retry is minutes away');
  assert.equal(n.recovery.state(D), 'down');
  transport.mode.set(D, 'up');
  const started = Date.now();
  await n.enqueue('new@down.test');
  await waitFor('all delivered', () => n.queue.counts().total === 0, 5000);
  t.diagnostic(`released and delivered in ${Date.now() - started} ms`);
  assert.equal(transport.calls.get(D), 5 + 1 + 5, 'each waiting message tried once more, once');
  assert.equal(n.recovery.stats.drains, 1);
});

test('release on the breaker probe: with no new mail, one probe goes through the half-open circuit and, once it is delivered, the rest follow', async (t) => {
  const E = destOf('fine.test').key;
  const { n, transport, D } = await downWithWaiting(t, 20, { probeBaseMs: 50, probeMaxMs: 200, threshold: 3 });
  assert.notEqual(n.breakers.state(D), 'closed', 'the circuit opened');
  const tries = transport.calls.get(D)!;
  // While down: a probe every 50-200 ms, one message each.
  await new Promise((r) => setTimeout(r, 600));
  const probes = transport.calls.get(D)! - tries;
  t.diagnostic(`probes while down in 600 ms: ${probes}`);
  assert.ok(probes >= 1 && probes <= 8, `probes while down: ${probes}`);
  // A probe in flight is out of the index until it settles (tied again): wait for a moment between probes.
  await waitFor('the probes came back tied', () => waiting(n.queue, D) === 20, { timeoutMs: 3000, intervalMs: 5, diag: () => `waiting ${waiting(n.queue, D)}` });
  // Another destination is not held up meanwhile.
  const other = await n.enqueue('x@fine.test');
  await waitFor('the other destination delivers', () => (transport.calls.get(E) ?? 0) === 1 && n.queue.get(other) === undefined, { diag: () => `calls ${JSON.stringify([...transport.calls])}, total ${n.queue.counts().total}` });
  transport.mode.set(D, 'up');
  const started = Date.now();
  await waitFor('all delivered after the probe', () => n.queue.counts().total === 0, { timeoutMs: 5000, diag: () => `total ${n.queue.counts().total}, waiting ${waiting(n.queue, D)}, state ${n.recovery.state(D)}, breaker ${n.breakers.state(D)}, ${JSON.stringify(n.recovery.stats)}` });
  t.diagnostic(`drained ${Date.now() - started} ms after the destination came back (probe interval ≤ 200 ms)`);
  assert.equal(n.breakers.state(D), 'closed');
  assert.ok(n.recovery.stats.probes >= probes, `probes sent ${n.recovery.stats.probes}, attempts seen while down ${probes}`);
});

test('own-reason deferrals (a 451 to RCPT) are not released: they keep their retry time while the tied ones go', async (t) => {
  const transport = new SwitchTransport();
  const D = destOf('down.test').key;
  const n = startNode(t, folder(t), transport, { probeBaseMs: 60_000, probeMaxMs: 60_000, threshold: 100 });
  await n.sched.start();
  transport.mode.set(D, 'rcpt451');
  const grey = await n.enqueue('grey@down.test');
  await waitFor('greylisted', () => n.queue.get(grey)?.attempts === 1);
  const greyAt = n.queue.get(grey)!.nextAttemptAt;
  assert.equal(n.queue.get(grey)!.waitFor, undefined, 'not tied');
  transport.mode.set(D, 'down');
  const tied = await n.enqueue('tied@down.test');
  await waitFor('tied', () => waiting(n.queue, D) === 1);
  transport.mode.set(D, 'up');
  await n.enqueue('new@down.test');
  await waitFor('the tied one delivered', () => n.queue.get(tied) === undefined);
  await new Promise((r) => setTimeout(r, 100));
  const g = n.queue.get(grey)!;
  assert.equal(g.attempts, 1, 'the greylisted message was not tried again');
  assert.equal(g.nextAttemptAt, greyAt, 'and keeps its own schedule');
  assert.equal(n.queue.counts().total, 1);
});

test('restart keeps the tie: a new node probes what waits and delivers it once the destination answers', async (t) => {
  const dir = folder(t);
  const { n: first, transport, D } = await downWithWaiting(t, 6, { probeBaseMs: 60_000, probeMaxMs: 60_000 }, dir);
  await first.stop();
  transport.mode.set(D, 'up');
  const second = startNode(t, dir, transport, { probeBaseMs: 50, probeMaxMs: 200 });
  assert.equal(waiting(second.queue, D), 6, 'the tie is in the queue');
  const started = Date.now();
  await second.sched.start();
  await waitFor('all delivered after the restart', () => second.queue.counts().total === 0, 5000);
  t.diagnostic(`delivered ${Date.now() - started} ms after the restart`);
  assert.equal(second.recovery.stats.probes, 1, 'one probe, then the release');
});

test('a probe answered for the message itself (451 to RCPT) shows the destination answers: the rest are released and tried, then keep their own schedule', async (t) => {
  const { n, transport, D } = await downWithWaiting(t, 5, { probeBaseMs: 50, probeMaxMs: 200, threshold: 100 });
  transport.mode.set(D, 'rcpt451');
  await waitFor('all tried against the answering destination', () => n.queue.list().every((m) => m.recipients[0]!.lastReply?.code === 451), 5000);
  assert.equal(waiting(n.queue, D), 0, 'none waits for the destination any more');
  assert.ok(n.queue.list().every((m) => m.nextAttemptAt > Date.now() + 4 * MIN), 'each on its own retry schedule now');
  await waitFor('the recovery forgot the destination', () => n.recovery.state(D) === null, 2000);
  assert.equal(n.recovery.stats.drains, 1, 'released as a whole after the probe, not probed one by one');
});

test('pacing: a long wait list is released a window at a time, never more in flight than the window', async (t) => {
  const { n, transport, D } = await downWithWaiting(t, 40, { probeBaseMs: 60_000, probeMaxMs: 60_000, threshold: 1000, window: 4, maxConcurrency: 64 });
  transport.mode.set(D, 'up');
  transport.delayMs = 10;
  transport.maxInFlight = 0;
  await n.enqueue('new@down.test');
  await waitFor('all delivered', () => n.queue.counts().total === 0, 10_000);
  // The window's 4 released plus the new message that triggered the release.
  assert.ok(transport.maxInFlight <= 5, `at most the window in flight: ${transport.maxInFlight}`);
});

test('recoveryWindow: a few times the connection cap, at most half the delivery slots', () => {
  assert.equal(recoveryWindow(20, 200), 80);
  assert.equal(recoveryWindow(2, 200), 32);
  assert.equal(recoveryWindow(20, 50), 25);
  assert.equal(recoveryWindow(1, 1), 1);
});

test('destinationCaused: the destination\'s own failures tie, the message\'s do not', () => {
  const key = 'smtp:mx:25';
  const r = (code: number | undefined, enhanced: string | undefined, command: string, tried?: false): RecipientResult => {
    const reply = replyRecord(code, enhanced, 'x', command, key);
    const res = notDelivered('a@b', reply);
    return res.kind === 'deferred' && tried === false ? { ...res, tried } : res;
  };
  assert.equal(destinationCaused(r(undefined, '4.4.1', 'CONNECT')), true, 'refused / timed out');
  assert.equal(destinationCaused(r(421, '4.3.2', 'CONNECT')), true, '421 at greeting');
  assert.equal(destinationCaused(r(421, '4.7.0', 'MAIL')), true, '421 later: closing the channel');
  assert.equal(destinationCaused(r(undefined, '4.4.2', 'STARTTLS')), true, 'TLS handshake');
  assert.equal(destinationCaused(r(undefined, '4.4.2', 'END-OF-DATA')), true, 'connection lost mid-transaction');
  assert.equal(destinationCaused(r(undefined, '4.4.1', 'CONNECT', false)), true, 'open circuit');
  assert.equal(destinationCaused(r(451, '4.7.1', 'RCPT')), false, 'greylisting');
  assert.equal(destinationCaused(r(452, '4.2.2', 'RCPT')), false, 'mailbox full');
  assert.equal(destinationCaused(r(451, '4.3.0', 'END-OF-DATA')), false, 'content check');
  assert.equal(destinationCaused(r(550, '5.1.1', 'RCPT')), false, 'permanent');
  assert.equal(destinationCaused({ kind: 'delivered', address: 'a@b', reply: replyRecord(250, '2.0.0', 'ok', 'END-OF-DATA', key) }), false);
  assert.equal(destinationCaused(r(undefined, '4.4.3', 'ROUTE')), false, 'no route: not a destination answering');
});
