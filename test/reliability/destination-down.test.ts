// Reliability: the smarthost goes down under load (connections reset, then refused) for
// RELIABILITY_OUTAGE_S seconds (default 60, the figure; a shorter value makes a quick
// local run), then comes back on the same port. Clients keep getting 250 meanwhile; nothing is
// lost, nothing bounces, and the queue drains after the destination returns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, Load, nodeStats, prng, RecordingSink, report, scratchDir, seedFromEnv, startNodeChild, taggedMessage, until } from '../helpers/reliability.js';

const OUTAGE_MS = Number(process.env.RELIABILITY_OUTAGE_S ?? 60) * 1000;

test(`destination down for ${OUTAGE_MS / 1000} s under load, then back: nothing lost, no bounces, drained after`, async (t) => {
  const seed = seedFromEnv();
  const dir = scratchDir(t, 'postern-rel-down-');
  const sink = new RecordingSink();
  await sink.listen(0);
  t.after(() => sink.close());
  const smtpPort = await freePort();
  const httpPort = await freePort();
  const node = await startNodeChild(t, {
    smtpPort,
    httpPort,
    dataDir: join(dir, 'queue'),
    env: { POSTERN_DELIVERY: 'routes', POSTERN_SMARTHOST: `127.0.0.1:${sink.port}`, POSTERN_RETRY_SCHEDULE: '2s', POSTERN_DEST_IDLE_TIMEOUT_MS: '2s' },
  });
  const upMs = 4000;
  const afterMs = 4000;
  // Paced: about 8 connections × 20 messages/s, for up + outage + after.
  const load = new Load({ port: smtpPort, connections: 8, pauseMs: 50, maxMessages: 20_000, timeLimitMs: upMs + OUTAGE_MS + afterMs, make: (n) => taggedMessage(`d${seed}-${n}`, 500 + Math.floor(prng(seed + n)() * 8000), prng(seed * 7 + n)) });
  t.after(() => load.stop());

  await sleep(upMs);
  const beforeDown = await nodeStats(httpPort);
  const downAt = Date.now();
  await sink.close();
  const acceptedBeforeOutage = load.acked().length;
  await sleep(OUTAGE_MS);
  const duringDown = await nodeStats(httpPort);
  const ackedDuringOutage = load.acked().length - acceptedBeforeOutage;
  await sink.listen(sink.port);
  const upAgainAt = Date.now();
  await load.done;
  const acked = load.acked();
  const drained = await until(async () => acked.every((a) => sink.byTag.has(a.tag)) && (await nodeStats(httpPort)).queue?.total === 0, 120_000, 250);
  const drainedAfterMs = Date.now() - upAgainAt;
  const end = await nodeStats(httpPort);
  const stop = await node.stop();

  let lost = 0;
  let torn = 0;
  for (const a of acked) {
    const got = sink.byTag.get(a.tag);
    if (got === undefined) lost++;
    else if (got.hash !== a.hash) torn++;
  }
  const figures = {
    seed,
    outageMs: OUTAGE_MS,
    acked: acked.length,
    ackedDuringOutage,
    refusedToClients: load.sent.length - acked.length,
    queuedAtEndOfOutage: duringDown.queue?.total ?? null,
    deferredDuringOutage: (duringDown.delivery?.deferred ?? 0) - (beforeDown.delivery?.deferred ?? 0),
    attempts: end.delivery?.attempts ?? null,
    deferred: end.delivery?.deferred ?? null,
    bounced: end.delivery?.bounced ?? null,
    bouncesSent: end.delivery?.bouncesSent ?? null,
    lost,
    torn,
    duplicates: sink.duplicates(),
    drainedAfterMs,
    downForMs: upAgainAt - downAt,
    replies: load.replies,
  };
  report(t, 'destination-down', figures);
  assert.ok(ackedDuringOutage >= 100, `the node kept accepting during the outage: ${ackedDuringOutage}`);
  assert.equal(load.sent.length, acked.length, 'every message was accepted (the outage is not the clients\' problem)');
  assert.ok((duringDown.queue?.total ?? 0) > 0, 'messages waited in the queue during the outage');
  assert.equal(lost, 0, `${lost} acknowledged messages never delivered`);
  assert.equal(torn, 0);
  assert.equal(end.delivery?.bounced, 0, 'no message bounced');
  assert.equal(end.delivery?.bouncesSent, 0, 'no DSN queued');
  assert.equal(sink.nullSender + sink.untagged, 0, 'no DSN reached the sink');
  assert.ok(drained, `queue not drained 120 s after the destination came back: ${JSON.stringify(end.queue)}`);
  assert.equal(stop.code, 0);
  assert.deepEqual(node.errors, []);
});
