// Relay bench: messages injected into postern over SMTP are delivered to a discarding sink
// (POSTERN_SMARTHOST) over pooled, pipelined connections; prints the end-to-end rate (first
// injection to last delivery), the accept rate alongside, and the sink's connection count
// (pool reuse). Knobs: BENCH_MESSAGES (5000), BENCH_SIZE (10240), BENCH_CONNECTIONS (20),
// BENCH_RUNS (3), BENCH_POSTERN_ENV ("K=V,K=V" extra settings, e.g. POSTERN_DEST_MAX_CONNECTIONS=4).
// Loopback only; every wait is bounded in time.
import { readFileSync } from 'node:fs';
import { runLoad } from './lib/loadgen.js';
import { startSink } from './lib/sink.js';
import { startPostern } from './lib/postern.js';
import { freePort } from './lib/proc.js';

const N = Number(process.env.BENCH_MESSAGES ?? 5000);
const SIZE = Number(process.env.BENCH_SIZE ?? 10240);
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 20);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const TIME_LIMIT_MS = Number(process.env.BENCH_TIME_LIMIT_S ?? 300) * 1000;
const EXTRA: Record<string, string> = Object.fromEntries(
  (process.env.BENCH_POSTERN_ENV ?? '')
    .split(',')
    .filter((kv) => kv.includes('='))
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);

interface RunResult {
  acceptPerSec: number;
  relayPerSec: number;
  delivered: number;
  sinkConnections: number;
  elapsedMs: number;
  cpuMsPerMsg: number | null;
}

function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8') as string;
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

async function once(): Promise<RunResult> {
  const sink = await startSink({ host: '127.0.0.1' });
  const port = await freePort();
  const node = await startPostern({
    port,
    env: { POSTERN_DELIVERY: 'routes', POSTERN_SMARTHOST: `127.0.0.1:${sink.port}`, POSTERN_TLS_POLICY: 'none', ...EXTRA },
  });
  try {
    const cpu0 = cpuSeconds(node.pid);
    const t0 = performance.now();
    const load = await runLoad({ port, messages: N, size: SIZE, connections: CONNS, timeLimitMs: TIME_LIMIT_MS });
    const deadline = Date.now() + TIME_LIMIT_MS;
    while (sink.stats.messages < load.accepted && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const elapsedMs = performance.now() - t0;
    const cpu1 = cpuSeconds(node.pid);
    return {
      acceptPerSec: load.msgsPerSec,
      relayPerSec: (sink.stats.messages / elapsedMs) * 1000,
      delivered: sink.stats.messages,
      sinkConnections: sink.stats.connections,
      elapsedMs,
      cpuMsPerMsg: cpu0 !== null && cpu1 !== null ? ((cpu1 - cpu0) * 1000) / Math.max(1, sink.stats.messages) : null,
    };
  } finally {
    await node.stop();
    node.remove();
    await sink.close();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const results: RunResult[] = [];
for (let i = 0; i < RUNS; i++) {
  const r = await once();
  results.push(r);
  process.stderr.write(`run ${i + 1}/${RUNS}: relay ${r.relayPerSec.toFixed(0)} msg/s, accept ${r.acceptPerSec.toFixed(0)} msg/s, ${r.delivered}/${N} delivered over ${r.sinkConnections} connections\n`);
}
const relay = results.map((r) => r.relayPerSec);
console.log(`\n## relay: ${N} messages of ${SIZE} B over ${CONNS} inbound sessions → postern → sink (${RUNS} runs)\n`);
console.log('| figure | median | min–max |\n| --- | --- | --- |');
console.log(`| end-to-end relay msg/s | ${median(relay).toFixed(0)} | ${Math.min(...relay).toFixed(0)}–${Math.max(...relay).toFixed(0)} |`);
console.log(`| accept msg/s (same runs) | ${median(results.map((r) => r.acceptPerSec)).toFixed(0)} | |`);
console.log(`| postern CPU ms per relayed message | ${median(results.map((r) => r.cpuMsPerMsg ?? NaN)).toFixed(3)} | |`);
console.log(`| outbound connections opened | ${median(results.map((r) => r.sinkConnections))} | |`);
console.log(`| delivered / sent | ${median(results.map((r) => r.delivered))} / ${N} | |`);
