// Reliability: SIGKILL at random moments under load, restarted on the same data folder, six
// rounds. Every message a client got 250 for must reach the smarthost whole (hash of the bytes
// after the node's Received header) — none lost, none torn; duplicates (a delivery the node
// could not record before it died) are counted and reported: delivery is at-least-once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, Load, scratchDir, nodeStats, prng, RecordingSink, report, seedFromEnv, startNodeChild, taggedMessage, until, type NodeChild } from '../helpers/reliability.js';

const ROUNDS = 6;

test('SIGKILL at random moments under load, 6 restarts on the same data folder: no acknowledged message lost or torn', async (t) => {
  const seed = seedFromEnv();
  const rnd = prng(seed);
  const dir = scratchDir(t, 'postern-rel-kill-');
  const sink = new RecordingSink();
  await sink.listen(0);
  t.after(() => sink.close());
  const smtpPort = await freePort();
  const httpPort = await freePort();
  const opts = {
    smtpPort,
    httpPort,
    dataDir: join(dir, 'queue'),
    env: {
      POSTERN_DELIVERY: 'routes',
      POSTERN_SMARTHOST: `127.0.0.1:${sink.port}`,
      POSTERN_RETRY_SCHEDULE: '1s',
      // Leases of a killed node expire soon, so its in-flight messages come back quickly.
      POSTERN_QUEUE_LEASE_MS: '3s',
    },
  };
  // Sizes from 300 B to 64 KiB, one in twenty of 256 KiB (several write calls, several pages).
  const sizes = (n: number) => (n % 20 === 7 ? 256 * 1024 : 300 + Math.floor(prng(seed + n)() * 64 * 1024));
  const load = new Load({ port: smtpPort, connections: 8, maxMessages: 20_000, timeLimitMs: 120_000, make: (n) => taggedMessage(`k${seed}-${n}`, sizes(n), prng(seed * 31 + n)) });
  t.after(() => load.stop());

  const kills: Array<{ round: number; afterMs: number; ackedSoFar: number }> = [];
  let node: NodeChild | null = null;
  for (let round = 1; round <= ROUNDS; round++) {
    node = await startNodeChild(t, opts);
    const afterMs = 800 + Math.floor(rnd() * 2200);
    await sleep(afterMs);
    await node.kill();
    kills.push({ round, afterMs, ackedSoFar: load.acked().length });
  }
  await load.stop();
  // The last life: no more load; it must deliver everything that is left.
  const started = Date.now();
  node = await startNodeChild(t, opts);
  const acked = load.acked();
  const drained = await until(async () => acked.every((a) => sink.byTag.has(a.tag)) && (await nodeStats(httpPort)).queue?.total === 0, 90_000, 250);
  const drainMs = Date.now() - started;
  const stats = await nodeStats(httpPort).catch(() => null);
  const stop = await node.stop();

  let lost = 0;
  let torn = 0;
  for (const a of acked) {
    const got = sink.byTag.get(a.tag);
    if (got === undefined) lost++;
    else if (got.hash !== a.hash) torn++;
  }
  const ackedTags = new Set(acked.map((a) => a.tag));
  const unackedDelivered = [...sink.byTag.keys()].filter((tag) => !ackedTags.has(tag)).length;
  const figures = {
    seed,
    rounds: ROUNDS,
    killAfterMs: kills.map((k) => k.afterMs),
    attempted: load.sent.length,
    acked: acked.length,
    lost,
    torn,
    mismatchedRedeliveries: sink.mismatched,
    duplicates: sink.duplicates(),
    unackedButDelivered: unackedDelivered,
    sinkMessages: sink.messages,
    bounces: sink.nullSender,
    lastLifeDrainMs: drainMs,
    queueLeft: stats?.queue?.total ?? null,
    clientDrops: load.drops,
    replies: load.replies,
  };
  report(t, 'sigkill-restart', figures);
  assert.ok(acked.length >= 200, `too few messages acknowledged to mean anything: ${acked.length}`);
  assert.ok(kills.filter((k, i) => k.ackedSoFar > (i === 0 ? 0 : kills[i - 1]!.ackedSoFar)).length >= ROUNDS - 1, 'load ran in (almost) every round');
  assert.equal(lost, 0, `${lost} acknowledged messages never delivered`);
  assert.equal(torn, 0, `${torn} acknowledged messages delivered with other bytes`);
  assert.equal(sink.mismatched, 0);
  assert.equal(sink.untagged, 0, 'no bounce or foreign message reached the sink');
  assert.equal(sink.badPrefix, 0, 'only the node\'s Received header precedes the message');
  assert.ok(drained, `not drained within 90 s: ${JSON.stringify(stats?.queue)}`);
  assert.equal(stop.code, 0, `the last life shut down cleanly: ${node.stderrTail()}`);
  assert.deepEqual(node.errors, []);
});
