// Queue benchmark (src/queue): durable enqueue msg/s with concurrent producers and messages
// per commit (= per fsync), lease+settle throughput, lease latency at depth 100 vs 100k.
// Run: npx tsc -p tsconfig.test.json && node build/bench/queue.js. Knobs: BENCH_MESSAGES (20000),
// BENCH_SIZE (10240), BENCH_CONCURRENCY (50), BENCH_DEPTH (100000), BENCH_LEASE (lease batch,
// 100). Everything lives in a temporary folder that is removed at the end.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, type EnvelopeInput } from '../src/queue/store.js';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000);
const SIZE = Number(process.env.BENCH_SIZE ?? 10_240);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);
const DEPTH = Number(process.env.BENCH_DEPTH ?? 100_000);
const LEASE_BATCH = Number(process.env.BENCH_LEASE ?? 100);

function envelope(i: number, extra: Partial<EnvelopeInput> = {}): EnvelopeInput {
  return {
    sender: 'bench@example.org',
    recipients: [{ address: `rcpt${i}@d${i % 50}.example` }],
    priority: (i % 10 === 0 ? 0 : i % 10 < 8 ? 1 : 2) as 0 | 1 | 2,
    client: { ip: '192.0.2.1', helo: 'bench.example', tls: true },
    ...extra,
  };
}

/** LMDB's own count of write transactions since the environment was created. */
function lastTxnId(q: Queue): number {
  return ((q as unknown as { env: { getStats(): { lastTxnId: number } } }).env.getStats()).lastTxnId;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

async function enqueuePhase(q: Queue): Promise<Record<string, number>> {
  const body = Buffer.alloc(SIZE, 0x61);
  const s0 = q.stats();
  const tx0 = lastTxnId(q);
  let next = 0;
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < MESSAGES) {
        const i = next++;
        const start = performance.now();
        await q.enqueue(envelope(i), body);
        latencies.push(performance.now() - start);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const s1 = q.stats();
  const commits = s1.commits - s0.commits;
  const txns = lastTxnId(q) - tx0;
  latencies.sort((a, b) => a - b);
  const r = {
    messages: MESSAGES,
    seconds: secs,
    msgPerSec: MESSAGES / secs,
    mbPerSec: (MESSAGES * SIZE) / secs / 1e6,
    commits,
    lmdbTxns: txns,
    msgPerCommit: (s1.messagesCommitted - s0.messagesCommitted) / commits,
    ackP50ms: pct(latencies, 50),
    ackP99ms: pct(latencies, 99),
  };
  console.log(
    `enqueue   ${fmt(r.msgPerSec)} msg/s (${fmt(r.mbPerSec, 1)} MB/s) with ${CONCURRENCY} concurrent producers, ` +
      `${fmt(MESSAGES)} x ${fmt(SIZE)} B in ${fmt(secs, 2)} s`,
  );
  console.log(
    `          ${fmt(commits)} commits (LMDB txns: ${fmt(txns)}) = ${fmt(r.msgPerCommit, 1)} messages per commit/fsync; ` +
      `ack latency p50 ${fmt(r.ackP50ms, 2)} ms, p99 ${fmt(r.ackP99ms, 2)} ms`,
  );
  return r;
}

async function drainPhase(q: Queue): Promise<Record<string, number>> {
  const s0 = q.stats();
  let done = 0;
  let leases = 0;
  const t0 = performance.now();
  for (;;) {
    const batch = await q.lease({ limit: LEASE_BATCH, owner: 'bench' });
    if (batch.length === 0) break;
    leases++;
    await Promise.all(batch.map((m) => q.complete(m.id, m.recipients.map((r) => r.address), { code: 250, text: 'ok' })));
    done += batch.length;
  }
  const secs = (performance.now() - t0) / 1000;
  const commits = q.stats().commits - s0.commits;
  const r = { messages: done, seconds: secs, msgPerSec: done / secs, leases, commits };
  console.log(
    `drain     ${fmt(r.msgPerSec)} msg/s lease+settle (lease ${LEASE_BATCH}, settle all in parallel): ` +
      `${fmt(done)} messages, ${fmt(leases)} leases, ${fmt(commits)} commits in ${fmt(secs, 2)} s`,
  );
  return r;
}

/** Fill with small messages, many per turn (one commit each 1000), to reach a depth fast. */
async function fill(q: Queue, n: number, extra: (i: number) => Partial<EnvelopeInput>): Promise<void> {
  const body = Buffer.alloc(256, 0x62);
  for (let i = 0; i < n; i += 1000) {
    const k = Math.min(1000, n - i);
    await Promise.all(Array.from({ length: k }, (_, j) => q.enqueue(envelope(i + j, extra(i + j)), body)));
  }
}

/** lease(limit 10) then hand the messages back (defer to now) so the depth stays constant. */
async function leaseLatency(q: Queue, rounds: number): Promise<{ p50: number; p99: number; mean: number }> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const got = await q.lease({ limit: 10, owner: 'lat' });
    times.push(performance.now() - t0);
    // Due again at once, behind every message that has been due longer.
    const now = Date.now();
    await Promise.all(got.map((m) => q.defer(m.id, m.recipients.map((r) => r.address), now)));
  }
  times.sort((a, b) => a - b);
  return { p50: pct(times, 50), p99: pct(times, 99), mean: times.reduce((a, b) => a + b, 0) / times.length };
}

async function depthPhase(dir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const q = Queue.open({ path: join(dir, 'depth') });
  try {
    await fill(q, 100, () => ({}));
    const small = await leaseLatency(q, 200);
    let t0 = performance.now();
    await fill(q, DEPTH, (i) => (i % 2 === 0 ? {} : { notBefore: Date.now() + 3_600_000 }));
    const fillSecs = (performance.now() - t0) / 1000;
    const big = await leaseLatency(q, 200);
    t0 = performance.now();
    const c = q.counts();
    const countsMs = performance.now() - t0;
    out['leaseP50msAt100'] = small.p50;
    out['leaseP99msAt100'] = small.p99;
    out['leaseP50msAtDepth'] = big.p50;
    out['leaseP99msAtDepth'] = big.p99;
    out['countsMsAtDepth'] = countsMs;
    console.log(
      `lease     limit 10, p50/p99: ${fmt(small.p50, 3)}/${fmt(small.p99, 3)} ms at depth 100; ` +
        `${fmt(big.p50, 3)}/${fmt(big.p99, 3)} ms at depth ${fmt(c.total)} ` +
        `(${fmt(c.byState.ready)} due, ${fmt(c.byState.scheduled)} scheduled; filled in ${fmt(fillSecs, 1)} s)`,
    );
    console.log(`counts()  ${fmt(countsMs, 2)} ms at depth ${fmt(c.total)} (scheduled part is a cursor count)`);
    await q.close();
    t0 = performance.now();
    const q2 = Queue.open({ path: join(dir, 'depth') });
    const openMs = performance.now() - t0;
    out['openMsAtDepth'] = openMs;
    console.log(`open      ${fmt(openMs, 1)} ms at depth ${fmt(q2.counts().total)} (counters are stored: no scan)`);
    await q2.close();
  } finally {
    await q.close();
  }
  return out;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'postern-bench-queue-'));
  try {
    console.log(`postern queue bench: node ${process.version}, folder ${dir}`);
    const q = Queue.open({ path: join(dir, 'main') });
    const enq = await enqueuePhase(q);
    const drain = await drainPhase(q);
    await q.close();
    const depth = await depthPhase(dir);
    console.log(JSON.stringify({ bench: 'queue', messages: MESSAGES, size: SIZE, concurrency: CONCURRENCY, enqueue: enq, drain, depth }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
