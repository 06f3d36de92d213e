// Reliability: the drain after a destination outage (issue 21). 20 client sessions send
// 10 KiB messages steadily; a smarthost goes down (connections reset, then refused) for
// RELIABILITY_RETURN_OUTAGE_S seconds (default 30) and comes back on the same port. The retry
// schedule is the default one (5 minutes first), so a message delivered soon after the return
// was released because its destination answered again, not retried on its own schedule.
// Must hold: every accepted message delivered within 30 s of the return, none lost, none
// bounced. A second test routes to 3 destinations of which only one goes down: the other two
// keep flowing during the outage. Each prints its drain time.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Load, nodeStats, prng, RecordingSink, report, scratchDir, seedFromEnv, startNodeOnFreePorts, taggedMessage, type Sent } from '../helpers/reliability.js';

const OUTAGE_MS = Number(process.env.RELIABILITY_RETURN_OUTAGE_S ?? 30) * 1000;
/** The bound: every accepted message delivered within this long of the return. */
const DRAIN_BOUND_MS = 30_000;
const UP_MS = 4000;
const AFTER_MS = 4000;
const SESSIONS = 20;
/** Pause between two messages of a session: about 20 × 8 = 160 messages/s in all. */
const PAUSE_MS = 100;

/** Poll every 100 ms until every acknowledged message reached its sink; ms since `from`, or null past the bound + 30 s. */
async function drained(acked: () => Sent[], sinks: RecordingSink[], from: number): Promise<number | null> {
  const deadline = from + DRAIN_BOUND_MS + 30_000;
  for (;;) {
    const all = acked().every((a) => sinks.some((s) => s.byTag.has(a.tag)));
    if (all) return Date.now() - from;
    if (Date.now() > deadline) return null;
    await sleep(100);
  }
}

/** ms from `from` until the sink receives its next message (the destination was seen up), polled every 50 ms. */
async function firstArrival(sink: RecordingSink, from: number, timeoutMs: number): Promise<number | null> {
  const n = sink.messages;
  while (sink.messages === n) {
    if (Date.now() - from > timeoutMs) return null;
    await sleep(50);
  }
  return Date.now() - from;
}

/** postern_destination_waiting samples of a node's /metrics. */
async function waitingGauge(httpPort: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^postern_destination_waiting\{destination="([^"]*)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

function lostAndTorn(acked: Sent[], sinks: RecordingSink[]): { lost: number; torn: number } {
  let lost = 0;
  let torn = 0;
  for (const a of acked) {
    const got = sinks.map((s) => s.byTag.get(a.tag)).find((g) => g !== undefined);
    if (got === undefined) lost++;
    else if (got.hash !== a.hash) torn++;
  }
  return { lost, torn };
}

async function startSinks(t: TestContext, n: number): Promise<RecordingSink[]> {
  const sinks: RecordingSink[] = [];
  for (let i = 0; i < n; i++) {
    const s = new RecordingSink();
    await s.listen(0);
    t.after(() => s.close());
    sinks.push(s);
  }
  return sinks;
}

test(`smarthost down for ${OUTAGE_MS / 1000} s under load, then back: every accepted message delivered within 30 s of the return, none lost, none bounced`, async (t) => {
  const seed = seedFromEnv();
  const dir = scratchDir(t, 'postern-rel-return-');
  const [sink] = await startSinks(t, 1);
  // The default retry schedule (5 min first) and probe interval (10 s) on purpose.
  const { node, smtpPort, httpPort } = await startNodeOnFreePorts(t, join(dir, 'queue'), { POSTERN_DELIVERY: 'routes', POSTERN_SMARTHOST: `127.0.0.1:${sink!.port}` });
  const load = new Load({ port: smtpPort, connections: SESSIONS, pauseMs: PAUSE_MS, maxMessages: 40_000, timeLimitMs: UP_MS + OUTAGE_MS + AFTER_MS, make: (n) => taggedMessage(`r${seed}-${n}`, 10 * 1024, prng(seed * 7 + n)) });
  t.after(() => load.stop());

  await sleep(UP_MS);
  const downAt = Date.now();
  await sink!.close();
  const ackedBefore = load.acked().length;
  await sleep(OUTAGE_MS);
  const during = await nodeStats(httpPort);
  const gauge = await waitingGauge(httpPort);
  const undeliveredAtReturn = load.acked().filter((a) => !sink!.byTag.has(a.tag)).length;
  await sink!.listen(sink!.port);
  const backAt = Date.now();
  const backlog = load.acked();
  const seenUp = firstArrival(sink!, backAt, DRAIN_BOUND_MS);
  const backlogMs = await drained(() => backlog, [sink!], backAt);
  const seenUpMs = await seenUp;
  await load.done;
  const acked = load.acked();
  const drainAllMs = await drained(() => acked, [sink!], backAt);
  const end = await nodeStats(httpPort);
  const stop = await node.stop();
  const { lost, torn } = lostAndTorn(acked, [sink!]);
  report(t, 'destination-return', {
    seed,
    outageMs: backAt - downAt,
    acked: acked.length,
    ackedDuringOutage: acked.length - ackedBefore,
    queuedAtReturn: during.queue?.total ?? null,
    waitingGaugeAtReturn: gauge,
    undeliveredAtReturn,
    firstDeliveryAfterReturnMs: seenUpMs,
    backlogDrainedAfterReturnMs: backlogMs,
    allDrainedAfterReturnMs: drainAllMs,
    attempts: end.delivery?.attempts ?? null,
    deferred: end.delivery?.deferred ?? null,
    bounced: end.delivery?.bounced ?? null,
    lost,
    torn,
    duplicates: sink!.duplicates(),
    replies: load.replies,
  });
  assert.ok(acked.length - ackedBefore >= 500, `the node kept accepting during the outage: ${acked.length - ackedBefore}`);
  assert.equal(load.sent.length, acked.length, 'every message was accepted');
  assert.ok((gauge[Object.keys(gauge)[0] ?? ''] ?? 0) > 0, `/metrics showed messages waiting for the smarthost: ${JSON.stringify(gauge)}`);
  assert.equal(lost, 0, `${lost} acknowledged messages not delivered`);
  assert.equal(torn, 0);
  assert.ok(drainAllMs !== null && drainAllMs <= DRAIN_BOUND_MS, `every accepted message delivered within ${DRAIN_BOUND_MS / 1000} s of the return: ${drainAllMs} ms`);
  assert.equal(end.delivery?.bounced, 0, 'no message bounced');
  assert.equal(sink!.nullSender + sink!.untagged, 0, 'no DSN reached the sink');
  assert.equal(stop.code, 0);
  assert.deepEqual(node.errors, []);
});

test(`3 destinations, one down for ${OUTAGE_MS / 1000} s: the other two keep flowing at full speed, and the one that came back drains within 30 s`, async (t) => {
  const seed = seedFromEnv();
  const dir = scratchDir(t, 'postern-rel-return3-');
  const sinks = await startSinks(t, 3);
  const domains = ['down.test', 'up1.test', 'up2.test'];
  const { node, smtpPort, httpPort } = await startNodeOnFreePorts(t, join(dir, 'queue'), { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: domains.map((d, i) => `${d}=smtp:127.0.0.1:${sinks[i]!.port}`).join(';') });
  const rcpt = (n: number): string => `rcpt${n}@${domains[n % 3]}`;
  const load = new Load({ port: smtpPort, connections: SESSIONS, pauseMs: PAUSE_MS, maxMessages: 40_000, timeLimitMs: UP_MS + OUTAGE_MS + AFTER_MS, rcpt, make: (n) => taggedMessage(`t${seed}-${n}`, 10 * 1024, prng(seed * 11 + n), rcpt(n)) });
  t.after(() => load.stop());
  const [down, ...up] = sinks as [RecordingSink, RecordingSink, RecordingSink];
  const upDelivered = (): number => up.reduce((a, s) => a + s.byTag.size, 0);
  const upAcked = (): Sent[] => load.acked().filter((a) => Number(a.tag.split('-')[1]) % 3 !== 0);

  await sleep(UP_MS);
  const upRateBefore = upDelivered() / (UP_MS / 1000);
  const downAt = Date.now();
  const upAtDown = upDelivered();
  await down.close();
  await sleep(OUTAGE_MS);
  const outageS = (Date.now() - downAt) / 1000;
  const upRateDuring = (upDelivered() - upAtDown) / outageS;
  // Messages for the healthy destinations accepted during the outage and not delivered by its end.
  const upBehind = upAcked().filter((a) => !up.some((s) => s.byTag.has(a.tag))).length;
  const gauge = await waitingGauge(httpPort);
  await down.listen(down.port);
  const backAt = Date.now();
  await load.done;
  const acked = load.acked();
  const drainMs = await drained(() => acked, sinks, backAt);
  const end = await nodeStats(httpPort);
  const stop = await node.stop();
  const { lost, torn } = lostAndTorn(acked, sinks);
  report(t, 'destination-return-3', {
    seed,
    acked: acked.length,
    upRateBeforePerS: Math.round(upRateBefore),
    upRateDuringOutagePerS: Math.round(upRateDuring),
    upBehindAtEndOfOutage: upBehind,
    waitingGaugeAtReturn: gauge,
    drainedAfterReturnMs: drainMs,
    bounced: end.delivery?.bounced ?? null,
    lost,
    torn,
    duplicates: sinks.reduce((a, s) => a + s.duplicates(), 0),
  });
  assert.equal(load.sent.length, acked.length, 'every message was accepted');
  assert.ok(upRateDuring >= 0.8 * upRateBefore, `the healthy destinations kept their pace during the outage: ${upRateDuring.toFixed(0)}/s against ${upRateBefore.toFixed(0)}/s before`);
  assert.ok(upBehind <= 60, `at most about one second of their mail behind at the end of the outage: ${upBehind}`);
  const waitingFor = Object.keys(gauge);
  assert.ok(waitingFor.length === 1 && waitingFor[0]!.endsWith(`:${down.port}`), `only the down destination has mail waiting: ${JSON.stringify(gauge)}`);
  assert.equal(lost, 0);
  assert.equal(torn, 0);
  assert.ok(drainMs !== null && drainMs <= DRAIN_BOUND_MS, `every accepted message delivered within ${DRAIN_BOUND_MS / 1000} s of the return: ${drainMs} ms`);
  assert.equal(end.delivery?.bounced, 0, 'no message bounced');
  assert.equal(stop.code, 0);
  assert.deepEqual(node.errors, []);
});
