// single: durable accept over one client session (BENCH_MESSAGES × BENCH_SIZE, 1 connection,
// pipelining) — applications, cron jobs and a single upstream relay talk to an MTA this way.
// Nothing can be batched: each message is one commit, so the figure is the latency of one
// durable commit plus a session's round trips, not throughput under load (bench/accept.ts's
// timedRun, fresh target per run, every 250 checked against the queue). The line under the
// table splits postern's CPU per message into its main thread and its other threads.
import { acceptRun, allTargets, interleave, kib, type Measurement, type Scenario } from './common.js';

function summary(m: Measurement): string | undefined {
  const main = m.detail?.mainThreadCpuMsPerMsg;
  const other = m.detail?.otherThreadsCpuMsPerMsg;
  if (!m.ok || m.target !== 'postern' || typeof main !== 'number' || typeof other !== 'number') return undefined;
  return `single postern run ${m.run}: ${Math.round(m.msgsPerSec)} msg/s, CPU ms/msg main thread ${main.toFixed(2)} + other threads ${other.toFixed(2)}`;
}

export const single: Scenario = {
  name: 'single',
  describe: (k) => `durable accept over one session: ${k.messages} × ${kib(k.size)} (${k.client})`,
  targets: allTargets,
  run: async (k) => {
    const ms = await interleave(k, 'single', ['1 conn'], allTargets(k), (v) => v, (v, t, run) => acceptRun(k, { scenario: 'single', variant: v, x: 1, target: t, run, messages: k.messages, size: k.size, connections: 1 }));
    for (const m of ms) {
      const s = summary(m);
      if (s !== undefined && m.detail) m.detail.summary = s;
    }
    return ms;
  },
};
