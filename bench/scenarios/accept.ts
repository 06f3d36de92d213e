// accept: durable accept rate — BENCH_MESSAGES × BENCH_SIZE over BENCH_CONNECTIONS sessions,
// a 250 counted only once the target has the message on disk (postern: LMDB commit; Postfix:
// cleanup's fsync of the queue file). bench/accept.ts's timedRun, fresh target per run.
import { acceptRun, allTargets, interleave, kib, type Scenario } from './common.js';

export const accept: Scenario = {
  name: 'accept',
  describe: (k) => `durable accept: ${k.messages} × ${kib(k.size)} over ${k.connections} sessions (${k.client})`,
  targets: allTargets,
  run: (k) => interleave(k, 'accept', [''], allTargets(k), () => '', (_v, t, run) => acceptRun(k, { scenario: 'accept', variant: '', x: null, target: t, run, messages: k.messages, size: k.size, connections: k.connections })),
};
