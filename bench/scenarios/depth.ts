// depth: durable accept rate with 0, 100,000 (and, with BENCH_DEPTH_1M=1, 1,000,000) messages
// already queued (BENCH_DEPTH_LEVELS overrides the list). postern only: the queue is pre-filled
// in this process with src/queue/store.ts's Queue (small bodies, enqueued in large concurrent
// batches so LMDB commits thousands per transaction), closed, and postern then starts on that
// data folder (delivery off, so the queued mail stays put) and takes BENCH_MESSAGES more. The
// runs of one level share its folder: run r starts at depth + (r-1) × BENCH_MESSAGES.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, type EnvelopeInput } from '../../src/queue/store.js';
import { startPostern } from '../lib/postern.js';
import { runLoad } from '../lib/loadgen.js';
import { freePort, statusKiB, treeCpuSeconds } from '../lib/proc.js';
import { failed, kib, type Knobs, type Measurement, type Scenario } from './common.js';

/** Fill a new queue folder with n small messages; returns enqueues/s. */
export async function prefill(path: string, n: number, onProgress?: (done: number) => void): Promise<number> {
  const q = Queue.open({ path });
  const body = Buffer.alloc(200, 0x62);
  const batch = 5000;
  const t0 = performance.now();
  try {
    for (let i = 0; i < n; i += batch) {
      const m = Math.min(batch, n - i);
      const ps: Promise<string>[] = [];
      for (let j = 0; j < m; j++) {
        const id = i + j;
        const env: EnvelopeInput = { sender: 'fill@bench.example', recipients: [{ address: `r${id}@d${id % 97}.example` }], priority: 1, client: { ip: '127.0.0.1', helo: 'bench.example', tls: false } };
        ps.push(q.enqueue(env, body));
      }
      await Promise.all(ps);
      onProgress?.(i + m);
    }
  } finally {
    await q.close();
  }
  return n / ((performance.now() - t0) / 1000 || 1e-9);
}

export const depth: Scenario = {
  name: 'depth',
  describe: (k) => `accept at queue depth ${k.depthLevels.join(', ')}: ${k.messages} × ${kib(k.size)} over ${k.connections} sessions into a pre-filled queue (postern only)`,
  targets: () => ['postern'],
  async run(k: Knobs): Promise<Measurement[]> {
    const out: Measurement[] = [];
    const total = k.depthLevels.length * k.runs;
    let step = 0;
    for (const d of k.depthLevels) {
      const dir = mkdtempSync(join(tmpdir(), 'postern-bench-depth-'));
      const dataDir = join(dir, 'queue');
      try {
        k.progress.stage(`depth ${d} · pre-filling`);
        const fillRate = d > 0 ? await prefill(dataDir, d, (n) => k.progress.stage(`depth ${d} · pre-filling ${n}/${d}`)) : null;
        for (let run = 1; run <= k.runs; run++) {
          step++;
          k.progress.stage(`depth ${d} · postern run ${run}/${k.runs} · step ${step}/${total}`);
          const base = { scenario: 'depth', variant: `depth ${d}`, x: d, target: 'postern' as const, run, messages: k.messages };
          let m: Measurement;
          try {
            const port = await freePort();
            const p = await startPostern({ port, env: { POSTERN_DATA_DIR: dataDir } });
            const cpu0 = treeCpuSeconds(p.pid, false);
            const r = await runLoad({ port, messages: k.messages, size: k.size, connections: k.connections, timeLimitMs: k.timeLimitMs });
            const cpu1 = treeCpuSeconds(p.pid, false);
            const hwm = statusKiB(p.pid, 'VmHWM');
            const stop = await p.stop();
            const counts = p.queueCounts();
            p.remove();
            const expected = d + (run - 1) * k.messages + r.accepted;
            const problems: string[] = [];
            if (r.accepted !== k.messages || r.failed !== 0) problems.push(`${r.accepted}/${k.messages} accepted, ${r.failed} failed: ${r.errors.slice(0, 2).join(' | ')}`);
            if (counts?.total !== expected) problems.push(`queue holds ${counts?.total ?? '?'}, expected ${expected}`);
            if (stop.exitCode !== 0) problems.push(`postern exit ${stop.exitCode ?? stop.signal}`);
            m = {
              ...base,
              ok: problems.length === 0,
              ...(problems.length ? { error: problems.join('; ') } : {}),
              msgsPerSec: r.msgsPerSec,
              mbPerSec: r.mbPerSec,
              elapsedMs: r.elapsedMs,
              accepted: r.accepted,
              cpuMsPerMsg: cpu0 !== null && cpu1 !== null && r.accepted > 0 ? ((cpu1 - cpu0) * 1000) / r.accepted : null,
              peakMemMiB: hwm !== null ? hwm / 1024 : null,
              detail: { depthBefore: d + (run - 1) * k.messages, queueAfter: counts?.total ?? null, prefillPerSec: fillRate, latencyMs: r.latencyMs },
            };
          } catch (err) {
            m = failed(base, (err as Error).message);
          }
          out.push(m);
          k.progress.done(m);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return out;
  },
};
