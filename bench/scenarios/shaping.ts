// shaping: adaptive back-off against a throttling provider (issue 14) — BENCH_SHAPING_MESSAGES
// (5000) messages through a postern node with the default settings and one route to a sink
// that allows BENCH_SHAPING_CONNECTIONS (5) sessions ("421 4.7.0 Too many connections" past
// them) and BENCH_SHAPING_RATE (50) messages a second ("451 4.7.1" past it). bench/shaping.ts's
// shapingOnce. postern only. Reported: delivery time against the ideal (messages / rate),
// connection attempts refused, messages refused for rate, bounces (a run with any, or not done
// within the time limit, fails).
import { shapingOnce } from '../shaping.js';
import { failed, interleave, type Scenario } from './common.js';

export const shaping: Scenario = {
  name: 'shaping',
  describe: (k) => `throttling provider: ${k.shaping.messages} messages, the provider allowing ${k.shaping.connections} connections and ${k.shaping.ratePerSec} msg/s (ideal ${(k.shaping.messages / k.shaping.ratePerSec).toFixed(1)} s), default settings (postern only)`,
  targets: () => ['postern'],
  run: (k) =>
    interleave(k, 'shaping', [''], ['postern'], () => '', async (_v, _t, run) => {
      const s = k.shaping;
      const base = { scenario: 'shaping', variant: '', x: null, target: 'postern' as const, run, messages: s.messages };
      try {
        const idealMs = (s.messages / s.ratePerSec) * 1000;
        const r = await shapingOnce({ messages: s.messages, maxConnections: s.connections, ratePerSec: s.ratePerSec, timeLimitMs: Math.max(k.timeLimitMs, 3 * idealMs + 30_000) });
        const summary = `shaping: ${r.delivered}/${r.messages} delivered in ${(r.elapsedMs / 1000).toFixed(1)} s = ${r.ratio.toFixed(2)}x the ideal ${(r.idealMs / 1000).toFixed(1)} s; ${r.refused} of ${r.connections} connection attempts refused; ${r.rateRefused} messages refused for rate; ${r.bounced} bounced`;
        const ok = !r.timedOut && r.bounced === 0;
        return {
          ...base,
          ok,
          ...(ok ? {} : { error: summary }),
          msgsPerSec: r.delivered / (r.elapsedMs / 1000),
          mbPerSec: null,
          elapsedMs: r.elapsedMs,
          accepted: r.messages,
          cpuMsPerMsg: null,
          peakMemMiB: null,
          detail: { summary, ...r },
        };
      } catch (err) {
        return failed(base, err instanceof Error ? err.message : String(err));
      }
    }),
};
