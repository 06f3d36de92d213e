// concurrency: durable accept with 1, 10, 100 and 1,000 client connections
// (BENCH_CONCURRENCY_LEVELS). postern's per-IP and total connection limits are raised by env
// (POSTERN_MAX_CONNECTIONS_PER_IP, POSTERN_MAX_CONNECTIONS); Postfix's default_process_limit
// (smtpd processes, default 100) is raised the same way, as an administrator would for the job.
// Messages per run: max(BENCH_MESSAGES, 2 × connections), so every connection sends some.
import { acceptRun, allTargets, interleave, kib, type Knobs, type Scenario } from './common.js';

export function concurrencyMessages(k: Knobs, c: number): number {
  return Math.max(k.messages, 2 * c);
}

export const concurrency: Scenario = {
  name: 'concurrency',
  describe: (k) => `durable accept by client connections: ${k.concurrencyLevels.join(', ')} (${kib(k.size)}, max(${k.messages}, 2 × connections) messages)`,
  targets: allTargets,
  run: (k) =>
    interleave(k, 'concurrency', k.concurrencyLevels, allTargets(k), (c) => `${c} conns`, (c, t, run) =>
      acceptRun(k, {
        scenario: 'concurrency',
        variant: `${c} conns`,
        x: c,
        target: t,
        run,
        messages: concurrencyMessages(k, c),
        size: k.size,
        connections: c,
        postfixOverrides: { default_process_limit: String(Math.max(100, c + 10)) },
        posternEnv: { POSTERN_MAX_CONNECTIONS_PER_IP: String(Math.max(1000, 2 * c)), POSTERN_MAX_CONNECTIONS: String(Math.max(1000, 2 * c)) },
      }),
    ),
};
