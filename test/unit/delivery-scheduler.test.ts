// The delivery Scheduler driven directly: a real LMDB Queue in a temp folder, one controllable
// clock shared by the queue and the scheduler, and an in-test Transport whose deliver() answers
// scripted per-recipient results (the unit-level stand-in for the network). Covered: retry
// timing from the schedule, lifetime expiry into a bounce, 5xx at once, mixed outcomes in one
// message, grouping per destination key, the gate (circuit breaker) path, and stop().
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Queue, type MessageRecord, type Recipient, type ReplyRecord } from '../../src/queue/store.js';
import { Scheduler, type BounceSink, type DestinationGate, type RouteResult, type SchedulerOptions } from '../../src/delivery/scheduler.js';
import { CircuitBreakerMap } from '../../src/delivery/circuit-breaker.js';
import { notDelivered, replyRecord, type Destination, type DeliveryRequest, type RecipientResult, type Transport } from '../../src/delivery/types.js';
import { silentLogger } from '../../src/log/logger.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';

const T0 = Date.UTC(2026, 0, 1, 0, 0, 0);
const MIN = 60_000;

interface Call {
  key: string;
  kind: Destination['kind'];
  id: string;
  rcpts: string[];
  body: string;
  at: number;
}

type Respond = (dest: Destination, req: DeliveryRequest) => RecipientResult[] | Promise<RecipientResult[]>;

class FakeTransport implements Transport {
  readonly calls: Call[] = [];
  closed = 0;
  constructor(
    private readonly clock: () => number,
    public respond: Respond,
  ) {}
  async deliver(dest: Destination, req: DeliveryRequest): Promise<RecipientResult[]> {
    this.calls.push({ key: dest.key, kind: dest.kind, id: req.message.id, rcpts: req.recipients.map((r) => r.address), body: req.body.toString('latin1'), at: this.clock() });
    return this.respond(dest, req);
  }
  async close(): Promise<void> {
    this.closed++;
  }
}

/** One result per recipient from an SMTP-like code; 4xx transient, 5xx permanent. */
function result(dest: Destination, address: string, code: number | undefined, enhanced?: string, command = 'RCPT', text = 'scripted'): RecipientResult {
  const reply = replyRecord(code, enhanced, `${code ?? ''} ${text}`.trim(), command, dest.key);
  return code !== undefined && code >= 200 && code < 300 ? { kind: 'delivered', address, reply } : notDelivered(address, reply);
}

/** Respond per address with a code table; unknown addresses get 250. */
function byCode(table: Record<string, number | [number, string]>): Respond {
  return (dest, req) =>
    req.recipients.map((r) => {
      const v = table[r.address] ?? 250;
      const [code, enh] = Array.isArray(v) ? v : [v, undefined];
      return result(dest, r.address, code, enh ?? (code >= 500 ? '5.1.1' : code >= 400 ? '4.3.0' : '2.0.0'));
    });
}

interface BounceCall {
  message: MessageRecord;
  items: Array<{ recipient: Recipient; reply: ReplyRecord; action: 'failed' | 'delayed' }>;
  original: string;
}

class BounceSpy implements BounceSink {
  readonly calls: BounceCall[] = [];
  async bounce(message: MessageRecord, items: BounceCall['items'], originalBody: Buffer): Promise<string | null> {
    this.calls.push({ message, items, original: originalBody.toString('latin1') });
    return `BOUNCE${this.calls.length}`;
  }
}

function smtpDest(host: string): Destination {
  return { kind: 'smtp', key: `smtp:${host}:25`, hosts: [{ host, port: 25 }], tlsPolicy: 'none' };
}

interface Harness {
  clock: { t: number };
  queue: Queue;
  sched: Scheduler;
  transport: FakeTransport;
  bounces: BounceSpy;
  enqueue(rcpts: string[], body?: string, sender?: string): Promise<string>;
  /** Set the clock and wake the scheduler. */
  at(t: number): void;
}

function harness(t: TestContext, o: { respond?: Respond; route?: SchedulerOptions['route']; gate?: DestinationGate; maxQueueLifetimeMs?: number } = {}): Harness {
  const clock = { t: T0 };
  const now = (): number => clock.t;
  let queue: Queue | null = null;
  let sched: Scheduler | null = null;
  // Registered before tmpdir(t): the scheduler and queue close before the folder goes.
  t.after(async () => {
    await sched?.stop();
    await queue?.close();
  });
  const dir = tmpdir(t, 'postern-sched-');
  queue = Queue.open({ path: dir, now, mapSizeBytes: 64 * 1024 * 1024 });
  const transport = new FakeTransport(now, o.respond ?? byCode({}));
  const bounces = new BounceSpy();
  sched = new Scheduler({
    queue,
    log: silentLogger(),
    route: o.route ?? (async (domain) => smtpDest(`mx.${domain}`)),
    transports: { smtp: transport },
    ...(o.gate ? { gate: o.gate } : {}),
    bounces,
    // Deterministic schedule: attempts × 1 minute.
    retryAt: (attempts, n) => n + attempts * MIN,
    maxQueueLifetimeMs: o.maxQueueLifetimeMs ?? 60 * MIN,
    maxConcurrency: 16,
    leaseMs: 10 * MIN,
    pollIntervalMs: 20,
    now,
    owner: 'test-owner',
  });
  const q = queue;
  const s = sched;
  return {
    clock,
    queue: q,
    sched: s,
    transport,
    bounces,
    enqueue: async (rcpts, body = 'Subject: t\r\n\r\nbody\r\n', sender = 'me@home.test') => {
      const id = await q.enqueue({ sender, recipients: rcpts.map((address) => ({ address })) }, Buffer.from(body, 'latin1'));
      s.wake();
      return id;
    },
    at: (time) => {
      clock.t = time;
      s.wake();
    },
  };
}

/** The scheduler runs on a test clock in milliseconds: look often, give up early. */
const POLL = { timeoutMs: 5000, intervalMs: 5 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Settled = back in 'ready' (or gone) with `attempts` attempts recorded. */
function settled(q: Queue, id: string, attempts: number): () => boolean {
  return () => {
    const m = q.get(id);
    return m === undefined || (m.state === 'ready' && m.attempts >= attempts);
  };
}

test('4xx: deferred with retryAt from the schedule; not leased before the clock reaches it, leased at it', async (t) => {
  const h = harness(t, { respond: byCode({ 'later@far.test': 451 }) });
  await h.sched.start();
  const id = await h.enqueue(['later@far.test']);
  await waitFor('first attempt settled', settled(h.queue, id, 1), POLL);
  let m = h.queue.get(id)!;
  assert.equal(h.transport.calls.length, 1);
  assert.equal(m.state, 'ready');
  assert.equal(m.recipients[0]!.state, 'pending');
  assert.equal(m.recipients[0]!.attempts, 1);
  assert.equal(m.recipients[0]!.lastReply?.code, 451);
  assert.equal(m.recipients[0]!.lastReply?.enhanced, '4.3.0');
  assert.equal(m.nextAttemptAt, T0 + 1 * MIN, 'retryAt(1, now)');
  assert.equal(h.queue.counts().byState.scheduled, 1);
  assert.equal(h.sched.counters.deferred, 1);
  assert.equal(h.bounces.calls.length, 0, 'a deferral bounces nothing');

  // One millisecond early: never leased, however often the scheduler looks.
  h.at(T0 + MIN - 1);
  await sleep(150);
  h.sched.wake();
  await sleep(50);
  assert.equal(h.transport.calls.length, 1, 'not leased before nextAttemptAt');

  h.at(T0 + MIN);
  await waitFor('second attempt settled', settled(h.queue, id, 2), POLL);
  assert.equal(h.transport.calls.length, 2);
  assert.equal(h.transport.calls[1]!.at, T0 + MIN);
  m = h.queue.get(id)!;
  assert.equal(m.recipients[0]!.attempts, 2);
  assert.equal(m.nextAttemptAt, T0 + MIN + 2 * MIN, 'retryAt(2, now): the schedule advances');

  // Third attempt succeeds: the message leaves the queue.
  h.transport.respond = byCode({});
  h.at(T0 + 3 * MIN);
  await waitFor('delivered and removed', () => h.queue.get(id) === undefined, POLL);
  assert.equal(h.transport.calls.length, 3);
  assert.equal(h.sched.counters.delivered, 1);
  assert.equal(h.sched.counters.deferred, 2);
  assert.equal(h.bounces.calls.length, 0);
  assert.equal(h.queue.counts().total, 0);
});

test('lifetime: a transient failure at or past maxQueueLifetimeMs fails with 4.4.7 and one bounce; just before, it is deferred', async (t) => {
  const h = harness(t, { respond: byCode({ 'later@far.test': 451 }), maxQueueLifetimeMs: 60 * MIN });
  await h.sched.start();
  const body = 'Subject: expiring\r\nMessage-ID: <x@home.test>\r\n\r\nhello\r\n';
  const id = await h.enqueue(['later@far.test'], body);
  await waitFor('first attempt', settled(h.queue, id, 1), POLL);

  // 1 ms before the lifetime ends: still deferred.
  h.at(T0 + 60 * MIN - 1);
  await waitFor('second attempt', settled(h.queue, id, 2), POLL);
  const m = h.queue.get(id)!;
  assert.equal(m.recipients[0]!.state, 'pending');
  assert.equal(h.bounces.calls.length, 0);

  // At the retry, past the lifetime: failed, bounced, removed.
  h.at(m.nextAttemptAt);
  await waitFor('expired and removed', () => h.queue.get(id) === undefined, POLL);
  assert.equal(h.transport.calls.length, 3, 'the last attempt is still made');
  assert.equal(h.bounces.calls.length, 1);
  const b = h.bounces.calls[0]!;
  assert.equal(b.message.id, id);
  assert.equal(b.original, body, 'the bounce gets the queued body');
  assert.equal(b.items.length, 1);
  assert.equal(b.items[0]!.recipient.address, 'later@far.test');
  assert.equal(b.items[0]!.action, 'failed');
  assert.equal(b.items[0]!.reply.enhanced, '4.4.7');
  assert.equal(b.items[0]!.reply.transient, false);
  assert.match(b.items[0]!.reply.text, /^delivery time expired after 6\d min; last error: 451/);
  assert.equal(h.sched.counters.bounced, 1);
  assert.equal(h.sched.counters.bouncesSent, 1);
});

test('5xx: failed at once with a bounce, never retried', async (t) => {
  const h = harness(t, { respond: byCode({ 'nobody@far.test': 550 }) });
  await h.sched.start();
  const id = await h.enqueue(['nobody@far.test']);
  await waitFor('failed and removed', () => h.queue.get(id) === undefined, POLL);
  assert.equal(h.transport.calls.length, 1);
  assert.equal(h.bounces.calls.length, 1);
  assert.equal(h.bounces.calls[0]!.items[0]!.reply.code, 550);
  assert.equal(h.bounces.calls[0]!.items[0]!.reply.enhanced, '5.1.1');
  assert.equal(h.sched.counters.deferred, 0);
  h.at(T0 + 24 * 60 * MIN);
  await sleep(100);
  assert.equal(h.transport.calls.length, 1, 'nothing left to retry');
});

test('mixed results in one message: delivered, deferred and failed per recipient; only the pending one is retried', async (t) => {
  const h = harness(t, { respond: byCode({ 'later@far.test': 452, 'bad@far.test': 550 }) });
  await h.sched.start();
  const id = await h.enqueue(['ok@far.test', 'later@far.test', 'bad@far.test']);
  await waitFor('first attempt', settled(h.queue, id, 1), POLL);
  assert.equal(h.transport.calls.length, 1, 'one transaction for the three (same destination)');
  assert.deepEqual(h.transport.calls[0]!.rcpts, ['ok@far.test', 'later@far.test', 'bad@far.test']);
  const m = h.queue.get(id)!;
  const st = Object.fromEntries(m.recipients.map((r) => [r.address, r.state]));
  assert.deepEqual(st, { 'ok@far.test': 'delivered', 'later@far.test': 'pending', 'bad@far.test': 'failed' });
  assert.equal(m.nextAttemptAt, T0 + MIN);
  assert.equal(h.bounces.calls.length, 1);
  assert.deepEqual(h.bounces.calls[0]!.items.map((i) => i.recipient.address), ['bad@far.test'], 'the bounce names only the failed one');

  h.transport.respond = byCode({});
  h.at(T0 + MIN);
  await waitFor('retry delivered', () => h.queue.get(id) === undefined, POLL);
  assert.deepEqual(h.transport.calls[1]!.rcpts, ['later@far.test'], 'only the pending recipient is retried');
  assert.equal(h.bounces.calls.length, 1, 'no second bounce');
  assert.equal(h.sched.counters.delivered, 2);
});

test('recipients are grouped per destination key: one deliver() per destination, with the right recipients', async (t) => {
  const hub = smtpDest('hub.example');
  const other = smtpDest('other.example');
  const route = async (domain: string): Promise<RouteResult> => {
    switch (domain) {
      case 'x.test':
      case 'y.test':
        return hub; // two domains, one destination
      case 'z.test':
        return other;
      case 'wait.test':
        return { kind: 'defer', reply: { text: 'DNS SERVFAIL for wait.test', enhanced: '4.4.3', transient: true, command: 'ROUTE' } };
      case 'dead.test':
        return { kind: 'bounce', key: 'bounce:dead.test', reply: { text: 'domain has a null MX', code: 556, enhanced: '5.1.10', transient: false } };
      case 'lm.test':
        return { kind: 'lmtp', key: 'lmtp:127.0.0.1:24', hosts: [{ host: '127.0.0.1', port: 24 }], tlsPolicy: 'none' };
      default:
        throw new Error(`resolver exploded for ${domain}`);
    }
  };
  const h = harness(t, { route });
  await h.sched.start();
  const rcpts = ['a@x.test', 'b@y.test', 'c@z.test', 'd@x.test', 'e@broken.test', 'f@wait.test', 'g@dead.test', 'h@lm.test'];
  const body = 'Subject: grouped\r\n\r\nsame bytes for everyone\r\n';
  const id = await h.enqueue(rcpts, body);
  await waitFor('first attempt', settled(h.queue, id, 1), POLL);

  assert.equal(h.transport.calls.length, 2, 'hub and other; the rest never reach a transport');
  const byKey = new Map(h.transport.calls.map((c) => [c.key, c]));
  assert.deepEqual([...byKey.keys()].sort(), [hub.key, other.key].sort());
  assert.deepEqual(byKey.get(hub.key)!.rcpts.sort(), ['a@x.test', 'b@y.test', 'd@x.test']);
  assert.deepEqual(byKey.get(other.key)!.rcpts, ['c@z.test']);
  for (const c of h.transport.calls) {
    assert.equal(c.id, id);
    assert.equal(c.body, body);
  }

  const m = h.queue.get(id)!;
  const r = Object.fromEntries(m.recipients.map((x) => [x.address, x]));
  for (const a of ['a@x.test', 'b@y.test', 'c@z.test', 'd@x.test']) assert.equal(r[a]!.state, 'delivered', a);
  assert.equal(r['e@broken.test']!.state, 'pending', 'a routing exception defers');
  assert.equal(r['e@broken.test']!.lastReply?.enhanced, '4.4.3');
  assert.match(r['e@broken.test']!.lastReply!.text, /routing failed: resolver exploded/);
  assert.equal(r['f@wait.test']!.state, 'pending');
  assert.match(r['f@wait.test']!.lastReply!.text, /SERVFAIL/);
  assert.equal(r['g@dead.test']!.state, 'failed', 'a bounce destination fails the recipient');
  assert.equal(r['h@lm.test']!.state, 'pending', 'no transport for the kind: deferred, not lost');
  assert.equal(r['h@lm.test']!.lastReply?.enhanced, '4.3.5');
  assert.equal(h.bounces.calls.length, 1);
  assert.deepEqual(h.bounces.calls[0]!.items.map((i) => i.recipient.address), ['g@dead.test']);
});

test('gate: an open circuit defers without calling the transport; connection failures trip it, a success closes it', async (t) => {
  const breakers = new CircuitBreakerMap({ threshold: 2, baseOpenMs: 30 * MIN, jitter: 0 });
  const records: Array<{ key: string; outcome: string }> = [];
  let forcedClosed = false;
  const gate: DestinationGate = {
    delayMs: () => 0,
    canAttempt: (key, now) => !forcedClosed && breakers.canAttempt(key, now),
    retryAt: (key) => breakers.retryAt(key),
    record: (key, outcome, now) => {
      records.push({ key, outcome });
      if (outcome === 'connection-failure') breakers.recordFailure(key, now);
      else if (outcome === 'ok') breakers.recordSuccess(key);
    },
  };
  // A 421 greeting is a connection failure; so is a refused connect (no code, CONNECT).
  let mode: 'greeting421' | 'refused' | 'ok' | 'rcpt550' = 'greeting421';
  const respond: Respond = (dest, req) =>
    req.recipients.map((r) =>
      mode === 'greeting421' ? result(dest, r.address, 421, '4.3.2', 'CONNECT', 'busy')
        : mode === 'refused' ? result(dest, r.address, undefined, undefined, 'CONNECT', 'ECONNREFUSED')
          : mode === 'rcpt550' ? result(dest, r.address, 550, '5.1.1')
            : result(dest, r.address, 250, '2.0.0'),
    );
  const h = harness(t, { respond, gate, maxQueueLifetimeMs: 10 * 24 * 60 * MIN });
  await h.sched.start();
  const key = smtpDest('mx.far.test').key;

  // canAttempt false (forced): deferred with 4.4.1, transport untouched, nothing recorded.
  forcedClosed = true;
  const id = await h.enqueue(['u@far.test']);
  await waitFor('deferred by the gate', settled(h.queue, id, 1), POLL);
  assert.equal(h.transport.calls.length, 0, 'the transport is not called while the gate says no');
  assert.equal(records.length, 0);
  let rc = h.queue.get(id)!.recipients[0]!;
  assert.equal(rc.state, 'pending');
  assert.equal(rc.lastReply?.enhanced, '4.4.1');
  assert.equal(rc.lastReply?.command, 'CONNECT');
  assert.match(rc.lastReply!.text, /backing off/);
  assert.equal(rc.attempts, 0, 'nothing was tried: no attempt counted');
  forcedClosed = false;

  // Two connection failures open the real breaker (threshold 2).
  h.at(h.queue.get(id)!.nextAttemptAt);
  await waitFor('attempt 2', settled(h.queue, id, 2), POLL);
  mode = 'refused';
  h.at(h.queue.get(id)!.nextAttemptAt);
  await waitFor('attempt 3', settled(h.queue, id, 3), POLL);
  assert.equal(h.transport.calls.length, 2);
  assert.deepEqual(records, [{ key, outcome: 'connection-failure' }, { key, outcome: 'connection-failure' }]);
  assert.equal(breakers.state(key, h.clock.t), 'open');

  // While open: the next retry and a new message to the same destination skip the transport.
  mode = 'ok';
  h.at(h.queue.get(id)!.nextAttemptAt);
  const id2 = await h.enqueue(['v@far.test']);
  await waitFor('attempt 4 and the new message', () => settled(h.queue, id, 4)() && settled(h.queue, id2, 1)(), POLL);
  assert.equal(h.transport.calls.length, 2, 'no attempt while the circuit is open');
  rc = h.queue.get(id2)!.recipients[0]!;
  assert.equal(rc.lastReply?.enhanced, '4.4.1');
  // not counted, and due when the circuit lets its probe through (not after a grown backoff)
  assert.equal(rc.attempts, 0);
  assert.equal(h.queue.get(id)!.recipients[0]!.attempts, 2, 'the two real attempts only');
  assert.equal(h.queue.get(id2)!.nextAttemptAt, breakers.retryAt(key));
  assert.equal(h.queue.get(id)!.nextAttemptAt, breakers.retryAt(key));

  // After the open interval, half-open: one probe goes through (the other message, due at the
  // same moment, still waits), succeeds, and the circuit closes.
  h.at(Math.max(h.clock.t + 30 * MIN, h.queue.get(id)!.nextAttemptAt, h.queue.get(id2)!.nextAttemptAt));
  await waitFor('the probe delivered', () => h.queue.get(id) === undefined || h.queue.get(id2) === undefined, POLL);
  await waitFor('both settled', () => settled(h.queue, id, 5)() && settled(h.queue, id2, 2)(), POLL);
  assert.equal(h.transport.calls.length, 3, 'exactly one probe in half-open');
  assert.equal(breakers.state(key, h.clock.t), 'closed');
  const rest = h.queue.get(id) ?? h.queue.get(id2);
  if (rest) {
    h.at(rest.nextAttemptAt);
    await waitFor('the other delivered once the circuit is closed', () => h.queue.get(rest.id) === undefined, POLL);
  }
  assert.equal(h.queue.counts().total, 0);
  assert.ok(records.slice(2).every((r) => r.outcome === 'ok'), JSON.stringify(records));

  // A 5xx per recipient is not a connection failure.
  mode = 'rcpt550';
  const id3 = await h.enqueue(['w@far.test']);
  await waitFor('failed', () => h.queue.get(id3) === undefined, POLL);
  assert.equal(records.at(-1)!.outcome, 'other');
});

test('stop() waits for deliveries in flight and settles them; nothing is leased after it', async (t) => {
  const pending: Array<(r: RecipientResult[]) => void> = [];
  const requests: Array<{ dest: Destination; req: DeliveryRequest }> = [];
  const h = harness(t, {
    respond: (dest, req) =>
      new Promise<RecipientResult[]>((resolve) => {
        requests.push({ dest, req });
        pending.push(resolve);
      }),
  });
  await h.sched.start();
  const ok = await h.enqueue(['ok@a.test']);
  const later = await h.enqueue(['later@b.test']);
  await waitFor('both in flight', () => pending.length === 2, POLL);
  assert.equal(h.sched.counters.inFlight, 2);
  assert.equal(h.queue.get(ok)!.state, 'leased');

  let stopped = false;
  const stopping = h.sched.stop().then(() => {
    stopped = true;
  });
  await sleep(150);
  assert.equal(stopped, false, 'stop() waits for the deliveries in flight');
  assert.equal(h.transport.closed, 0, 'transports are closed only after in-flight work');

  for (let i = 0; i < requests.length; i++) {
    const { dest, req } = requests[i]!;
    const addr = req.recipients[0]!.address;
    pending[i]!([result(dest, addr, addr.startsWith('ok') ? 250 : 451, addr.startsWith('ok') ? '2.0.0' : '4.3.0')]);
  }
  await stopping;
  assert.equal(stopped, true);
  assert.equal(h.transport.closed, 1);
  assert.equal(h.sched.counters.inFlight, 0);
  assert.equal(h.queue.get(ok), undefined, 'the delivered message was settled (removed)');
  const m = h.queue.get(later)!;
  assert.equal(m.state, 'ready', 'the deferred message was settled, not left leased');
  assert.equal(m.lease, undefined);
  assert.equal(m.recipients[0]!.attempts, 1);
  assert.equal(m.nextAttemptAt, T0 + MIN);

  // After stop: nothing more is leased, even when due.
  await h.enqueue(['after@c.test']);
  h.at(T0 + 10 * MIN);
  await sleep(150);
  assert.equal(requests.length, 2);
});

test('formatAge: the age a person reads in an expiry bounce', async () => {
  const { formatAge } = await import('../../src/delivery/scheduler.js');
  assert.equal(formatAge(45_000), '45 s');
  assert.equal(formatAge(25 * 60_000), '25 min');
  assert.equal(formatAge(5 * 3_600_000), '5 h');
  assert.equal(formatAge(5 * 86_400_000), '5 d');
});
