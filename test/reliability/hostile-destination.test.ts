// Reliability: hostile outbound servers, through the whole node under load. Three routed
// destinations misbehave at once for HOSTILE_MS: one floods replies after MAIL, one answers
// EHLO with a multi-line reply that never ends, one answers the end of data with a reply line
// that never ends (no CRLF). The node's RSS is sampled throughout: it stays bounded (each
// reply is bounded by the reply reader, 64 KiB, and the connection dropped). The messages are
// deferred, not lost or bounced: once the servers behave, every acknowledged message arrives
// whole. The unit-level cases are in test/integration/delivery-hostile.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startScriptedServer, type Flood } from '../helpers/scripted-server.js';
import { freePort, Load, nodeStats, prng, readTagged, report, scratchDir, seedFromEnv, startNodeChild, taggedMessage, until } from '../helpers/reliability.js';

const HOSTILE_MS = 8000;
/** Each flood lasts at most this long per connection (the node should drop it long before). */
const FLOOD_MS = 10_000;
/**
 * RSS growth allowed over the warmed-up node while the floods run. Bounded parts: a reply
 * (64 KiB) and a socket read (64 KiB) per outbound connection, 20 connections per
 * destination; messages in delivery (at most 200 × 10 KiB). What is left is V8's garbage
 * between collections at loopback flood rates; an unbounded reader grows by the flood's size
 * (hundreds of MiB in a few seconds, see delivery-hostile.test.ts).
 */
const MAX_RSS_GROWTH_KIB = 96 * 1024;

const DOMAINS = ['flood.test', 'multiline.test', 'data.test'] as const;

test('hostile destinations (reply flood, endless multi-line reply, endless DATA reply) under load: memory bounded, messages deferred then delivered', async (t) => {
  const seed = seedFromEnv();
  let hostile = false;
  const flood = (f: Flood): Flood => ({ forMs: FLOOD_MS, ...f });
  const servers = {
    'flood.test': await startScriptedServer(t, { reply: (cmd) => (hostile && cmd.startsWith('MAIL') ? flood({ flood: '250 2.1.0 ok\r\n' }) : undefined) }),
    'multiline.test': await startScriptedServer(t, { reply: (cmd) => (hostile && cmd.startsWith('EHLO') ? flood({ prefix: '250-scripted.test\r\n', flood: '250-PIPELINING\r\n' }) : undefined) }),
    'data.test': await startScriptedServer(t, { reply: (cmd) => (hostile && cmd === '.' ? flood({ prefix: '250 2.0.0 ', flood: 'x' }) : undefined) }),
  };
  const dir = scratchDir(t, 'postern-rel-hostile-');
  const smtpPort = await freePort();
  const httpPort = await freePort();
  const node = await startNodeChild(t, {
    smtpPort,
    httpPort,
    dataDir: join(dir, 'queue'),
    env: {
      POSTERN_DELIVERY: 'routes',
      POSTERN_ROUTES: DOMAINS.map((d) => `${d}=smtp:127.0.0.1:${servers[d].port}`).join(';'),
      POSTERN_RETRY_SCHEDULE: '1s',
      POSTERN_TLS_POLICY: 'none',
      // New connections (and so new greetings and EHLOs) all along, not only the warm-up's.
      POSTERN_DEST_MAX_MESSAGES_PER_CONNECTION: '10',
    },
  });
  const make = (n: number) => taggedMessage(`h${seed}-${n}`, 500 + Math.floor(prng(seed + n)() * 8000), prng(seed * 13 + n), `rcpt@${DOMAINS[n % 3]}`);
  const rcpt = (n: number) => `rcpt@${DOMAINS[n % 3]}`;

  // Warm up with well-behaved servers, then take the baseline.
  const warm = new Load({ port: smtpPort, connections: 2, maxMessages: 60, timeLimitMs: 20_000, make: (n) => make(100_000 + n), rcpt: (n) => rcpt(100_000 + n) });
  await warm.done;
  await until(async () => (await nodeStats(httpPort)).queue?.total === 0, 20_000);
  await sleep(500);
  const rss0 = node.rssKiB()!;

  hostile = true;
  const hostileAt = Date.now();
  let peak = rss0;
  const sampler = setInterval(() => {
    const r = node.rssKiB();
    if (r !== null && r > peak) peak = r;
  }, 100);
  t.after(() => clearInterval(sampler));
  const load = new Load({ port: smtpPort, connections: 4, pauseMs: 20, maxMessages: 3000, timeLimitMs: HOSTILE_MS, make, rcpt });
  await load.done;
  await sleep(Math.max(0, HOSTILE_MS - (Date.now() - hostileAt)));
  const duringHostile = await nodeStats(httpPort);
  const rssHostileEnd = node.rssKiB()!;
  hostile = false;
  const flooded = Object.fromEntries(DOMAINS.map((d) => [d, servers[d].sessions.reduce((a, s) => a + s.flooded, 0)]));
  const floodSessions = Object.fromEntries(DOMAINS.map((d) => [d, servers[d].sessions.filter((s) => s.flooded > 0).length]));

  const acked = load.acked();
  const arrived = new Map<string, string>();
  const torn: string[] = [];
  const scan = () => {
    for (const d of DOMAINS)
      for (const m of servers[d].messages()) {
        const r = readTagged(m.body);
        if (r !== null) arrived.set(r.tag, r.hash);
      }
  };
  const behavedAt = Date.now();
  const drained = await until(async () => {
    scan();
    return acked.every((a) => arrived.has(a.tag)) && (await nodeStats(httpPort)).queue?.total === 0;
  }, 150_000, 500);
  const drainMs = Date.now() - behavedAt;
  clearInterval(sampler);
  const end = await nodeStats(httpPort);
  const rssEnd = node.rssKiB()!;
  let lost = 0;
  for (const a of acked) {
    const h = arrived.get(a.tag);
    if (h === undefined) lost++;
    else if (h !== a.hash) torn.push(a.tag);
  }
  const stop = await node.stop();

  const figures = {
    seed,
    hostileMs: HOSTILE_MS,
    acked: acked.length,
    refused: load.sent.length - acked.length,
    floodedBytes: flooded,
    floodedSessions: floodSessions,
    deferredWhileHostile: duringHostile.delivery?.deferred ?? null,
    rssBaselineKiB: rss0,
    rssPeakKiB: peak,
    rssGrowthKiB: peak - rss0,
    rssEndOfHostileKiB: rssHostileEnd,
    rssAfterDrainKiB: rssEnd,
    drainedAfterMs: drainMs,
    delivered: end.delivery?.delivered ?? null,
    bounced: end.delivery?.bounced ?? null,
    lost,
    torn: torn.length,
  };
  report(t, 'hostile-destination', figures);
  for (const d of DOMAINS) assert.ok(floodSessions[d]! > 0, `${d} flooded at least one connection`);
  assert.ok(acked.length >= 150, `load ran: ${acked.length}`);
  assert.equal(load.sent.length, acked.length, 'clients are not affected by a hostile destination');
  assert.ok((duringHostile.delivery?.deferred ?? 0) > 0, 'messages were deferred');
  assert.ok(peak - rss0 <= MAX_RSS_GROWTH_KIB, `RSS grew by ${peak - rss0} KiB while flooded`);
  assert.equal(lost, 0, `${lost} acknowledged messages never delivered`);
  assert.equal(torn.length, 0);
  assert.equal(end.delivery?.bounced, 0);
  assert.equal(end.delivery?.bouncesSent, 0);
  assert.ok(drained, `not drained 150 s after the servers behaved: ${JSON.stringify(end.queue)}`);
  assert.equal(stop.code, 0);
});
