// sizes: durable accept at payloads of 1 KiB, 10 KiB, 100 KiB and 1 MiB (BENCH_SIZES, bytes).
// Messages per run shrink with the size so a run moves at most BENCH_MESSAGES × 10 KiB:
// n = min(BENCH_MESSAGES, max(20, BENCH_MESSAGES × 10240 / size)).
import { acceptRun, allTargets, interleave, kib, type Knobs, type Scenario } from './common.js';

export function sizeMessages(k: Knobs, size: number): number {
  return Math.min(k.messages, Math.max(20, Math.floor((k.messages * 10240) / Math.max(1, size))));
}

export const sizes: Scenario = {
  name: 'sizes',
  describe: (k) => `durable accept by size: ${k.sizes.map((s) => `${sizeMessages(k, s)} × ${kib(s)}`).join(', ')} over ${k.connections} sessions`,
  targets: allTargets,
  run: (k) => interleave(k, 'sizes', k.sizes, allTargets(k), kib, (size, t, run) => acceptRun(k, { scenario: 'sizes', variant: kib(size), x: size, target: t, run, messages: sizeMessages(k, size), size, connections: k.connections })),
};
