// HTTP injection bench: a postern child (dist/cli.js, delivery off, fresh data folder) with its
// HTTP API on a free loopback port, and in the same run:
//   (a) POST /v1/messages, a small raw message to one recipient, autocannon for DURATION s at
//       CONNECTIONS connections: requests/s, latency p50/p99, messages/s queued (202s / s);
//   (b) one campaign request: 1,000 recipients with substitutions (1,000 messages), timed;
//   (c) the SMTP accept path for comparison: bench/lib/loadgen runLoad, 5,000 × 1 KiB over 50
//       connections.
// Prints a markdown table. Loopback only; every stage is bounded in time.
//   npm run bench:http            (BENCH_HTTP_DURATION=10 BENCH_HTTP_CONNECTIONS=50 by default)
import { cpus } from 'node:os';
import { startPostern } from './lib/postern.js';
import { freePort } from './lib/proc.js';
import { runLoad } from './lib/loadgen.js';

// autocannon ships no type declarations: the little used here.
interface AutocannonResult {
  duration: number;
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number; max: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<AutocannonResult>;
const autocannon = ((await import('autocannon' as string)) as { default: Autocannon }).default;

const DURATION = Number(process.env.BENCH_HTTP_DURATION ?? 10);
const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 50);
const CAMPAIGN = 1000;
const CAMPAIGN_RUNS = 3;
const SMTP_MESSAGES = 5000;

const port = await freePort();
const httpPort = await freePort();
const pst = await startPostern({ port, env: { POSTERN_HTTP_PORT: String(httpPort), POSTERN_HTTP_HOST: '127.0.0.1' } });
const base = `http://127.0.0.1:${httpPort}`;
const rows: string[][] = [];
let queuedExpected = 0;
try {
  // Wait for the HTTP listener too (the SMTP port is what startPostern waits for).
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/health`)).ok) break;
    } catch {
      if (i > 100) throw new Error('HTTP API did not come up');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  // (c) SMTP accept, first, on an empty queue like the HTTP stage after it.
  const smtp = await runLoad({ port, messages: SMTP_MESSAGES, size: 1024, connections: 50, timeLimitMs: 120_000 });
  queuedExpected += smtp.accepted;
  rows.push([
    `SMTP accept (loadgen, ${SMTP_MESSAGES} × 1 KiB, 50 conns)`,
    `${smtp.accepted}/${smtp.attempted}`,
    '—',
    `${smtp.latencyMs.p50.toFixed(1)} / ${smtp.latencyMs.p99.toFixed(1)}`,
    smtp.msgsPerSec.toFixed(0),
  ]);

  // (a) raw injection under autocannon.
  const raw = `From: Bench <bench@sender.example>\r\nTo: r@rcpt.example\r\nSubject: bench\r\n\r\n${'x'.repeat(900)}\r\n`;
  const body = JSON.stringify({ from: 'bench@sender.example', to: ['r@rcpt.example'], raw });
  const ac = await autocannon({
    url: `${base}/v1/messages`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: CONNECTIONS,
    duration: DURATION,
    timeout: 30,
  });
  queuedExpected += ac['2xx'];
  rows.push([
    `HTTP POST /v1/messages raw ~1 KiB, 1 rcpt (autocannon ${DURATION} s, ${CONNECTIONS} conns)`,
    `${ac['2xx']}/${ac.requests.total} (non-2xx ${ac.non2xx}, errors ${ac.errors})`,
    ac.requests.average.toFixed(0),
    `${ac.latency.p50} / ${ac.latency.p99}`,
    (ac['2xx'] / ac.duration).toFixed(0),
  ]);

  // (b) campaign: 1,000 recipients with substitutions, one request, timed (a few runs).
  const to = Array.from({ length: CAMPAIGN }, (_, i) => `user${i}@rcpt${i % 20}.example`);
  const substitutions = Object.fromEntries(to.map((a, i) => [a, { name: `User ${i}`, code: `C${i}` }]));
  const campaign = JSON.stringify({
    from: 'news@sender.example',
    to,
    subject: 'Hello {{name}}',
    text: `Dear {{name}}, your code is {{code}}.\n${'lorem ipsum '.repeat(60)}`,
    html: `<p>Dear {{name}}, your code is <b>{{code}}</b>.</p><p>${'lorem ipsum '.repeat(60)}</p>`,
    substitutions,
    priority: 'bulk',
  });
  const times: number[] = [];
  for (let r = 0; r < CAMPAIGN_RUNS; r++) {
    const t0 = performance.now();
    const res = await fetch(`${base}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: campaign, signal: AbortSignal.timeout(60_000) });
    const j = (await res.json()) as { count?: number };
    const ms = performance.now() - t0;
    if (res.status !== 202 || j.count !== CAMPAIGN) throw new Error(`campaign: ${res.status} ${JSON.stringify(j).slice(0, 300)}`);
    queuedExpected += CAMPAIGN;
    times.push(ms);
  }
  times.sort((x, y) => x - y);
  const med = times[Math.floor(times.length / 2)]!;
  rows.push([
    `HTTP campaign: 1 request, ${CAMPAIGN} rcpts with substitutions → ${CAMPAIGN} messages (median of ${CAMPAIGN_RUNS})`,
    `${CAMPAIGN_RUNS * CAMPAIGN}/${CAMPAIGN_RUNS * CAMPAIGN}`,
    '—',
    `request ${med.toFixed(0)} ms (min ${times[0]!.toFixed(0)}, max ${times[times.length - 1]!.toFixed(0)})`,
    ((CAMPAIGN * 1000) / med).toFixed(0),
  ]);
} finally {
  const stop = await pst.stop();
  const counts = pst.queueCounts();
  console.log(`\n## postern HTTP injection bench (${new Date().toISOString()}, ${cpus().length} CPUs, ${cpus()[0]?.model ?? '?'}, node ${process.version})\n`);
  console.log('| Stage | Accepted (2xx) / sent | Requests/s | Latency p50 / p99 (ms) | Messages/s queued |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  console.log(`\nQueue after stop: ${counts?.total ?? '?'} messages (counted 2xx: ${queuedExpected}; up to ${CONNECTIONS} more are requests autocannon had in flight at its deadline, committed but not counted); shutdown ${stop.shutdownMs} ms, exit ${stop.exitCode ?? stop.signal}${stop.killed ? ' (SIGKILL)' : ''}.`);
  if (Object.keys(pst.problems).length > 0) console.log(`Warnings/errors in postern's log: ${JSON.stringify(pst.problems)}`);
  pst.remove();
}
