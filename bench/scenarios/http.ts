// http: the HTTP injection API under autocannon — BENCH_HTTP_REQUESTS (default BENCH_MESSAGES)
// POST /v1/messages of a ~1 KiB raw message to one recipient, over BENCH_CONNECTIONS
// connections, bounded by count and by the time limit. postern only (the peers have no such
// API). The figure is 202s per second (messages queued per second).
import { startPostern } from '../lib/postern.js';
import { freePort } from '../lib/proc.js';
import { failed, interleave, type Knobs, type Scenario } from './common.js';

interface AutocannonResult {
  duration: number;
  requests: { total: number; average: number };
  latency: { p50: number; p99: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
}
/** autocannon's tracker: a promise of the result, and an emitter of each response. */
type Tracker = Promise<AutocannonResult> & { on(event: 'response', f: () => void): void };
type Autocannon = (opts: Record<string, unknown>) => Tracker;

export const http: Scenario = {
  name: 'http',
  describe: (k) => `HTTP injection: ${k.httpRequests} POST /v1/messages (~1 KiB raw, 1 rcpt) over ${Math.min(k.connections, k.httpRequests)} connections (autocannon, postern only)`,
  targets: () => ['postern'],
  run: (k: Knobs) =>
    interleave(k, 'http', [''], ['postern'], () => '', async (_v, _t, run) => {
      const base = { scenario: 'http', variant: '', x: null, target: 'postern' as const, run, messages: k.httpRequests };
      let p: Awaited<ReturnType<typeof startPostern>> | null = null;
      try {
        const autocannon = ((await import('autocannon' as string)) as { default: Autocannon }).default;
        const port = await freePort();
        const httpPort = await freePort();
        p = await startPostern({ port, env: { POSTERN_HTTP_PORT: String(httpPort), POSTERN_HTTP_HOST: '127.0.0.1' } });
        const url = `http://127.0.0.1:${httpPort}`;
        for (let i = 0; ; i++) {
          const up = await fetch(`${url}/health`).then((r) => r.ok, () => false);
          if (up) break;
          if (i > 100) throw new Error('HTTP API did not come up');
          await new Promise((r) => setTimeout(r, 100));
        }
        const raw = `From: Bench <bench@sender.example>\r\nTo: r@rcpt.example\r\nSubject: bench\r\n\r\n${'x'.repeat(900)}\r\n`;
        const t0 = performance.now();
        // Timed to the last response (autocannon's own duration is rounded up to its 1 s tick).
        let tLast = t0;
        const tracker = autocannon({
          url: `${url}/v1/messages`,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ from: 'bench@sender.example', to: ['r@rcpt.example'], raw }),
          connections: Math.max(1, Math.min(k.connections, k.httpRequests)),
          amount: k.httpRequests,
          // amount bounds the count; duration bounds the time should the count not be reached.
          duration: Math.max(1, Math.ceil(k.timeLimitMs / 1000)),
          timeout: 30,
        });
        tracker.on('response', () => (tLast = performance.now()));
        const ac = await tracker;
        const ms = Math.max(1, tLast - t0);
        const stop = await p.stop();
        const counts = p.queueCounts();
        p.remove();
        p = null;
        const ok = ac['2xx'] === k.httpRequests && ac.non2xx === 0 && ac.errors === 0 && counts?.total === ac['2xx'] && stop.exitCode === 0;
        return {
          ...base,
          ok,
          ...(ok ? {} : { error: `2xx ${ac['2xx']}/${k.httpRequests}, non-2xx ${ac.non2xx}, errors ${ac.errors}, queue ${counts?.total ?? '?'}` }),
          msgsPerSec: (ac['2xx'] * 1000) / ms,
          mbPerSec: null,
          elapsedMs: ms,
          accepted: ac['2xx'],
          cpuMsPerMsg: null,
          peakMemMiB: null,
          detail: { latencyMs: { p50: ac.latency.p50, p99: ac.latency.p99 }, requests: ac.requests.total, timeouts: ac.timeouts },
        };
      } catch (err) {
        if (p) {
          await p.stop(5000).catch(() => undefined);
          p.remove();
        }
        return failed(base, (err as Error).message);
      }
    }),
};
