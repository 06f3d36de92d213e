// single: durable accept over one client session (BENCH_MESSAGES × BENCH_SIZE, 1 connection,
// pipelining) — applications, cron jobs and a single upstream relay talk to an MTA this way.
// Nothing can be batched: each message is one commit, so the figure is the latency of one
// durable commit plus a session's round trips, not throughput under load (bench/accept.ts's
// timedRun, fresh target per run, every 250 checked against the queue).
import { acceptRun, allTargets, interleave, kib, type Scenario } from './common.js';

export const single: Scenario = {
  name: 'single',
  describe: (k) => `durable accept over one session: ${k.messages} × ${kib(k.size)} (${k.client})`,
  targets: allTargets,
  run: (k) => interleave(k, 'single', ['1 conn'], allTargets(k), (v) => v, (v, t, run) => acceptRun(k, { scenario: 'single', variant: v, x: 1, target: t, run, messages: k.messages, size: k.size, connections: 1 })),
};
