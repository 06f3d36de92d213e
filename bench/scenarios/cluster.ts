// cluster: end-to-end msg/s through HAProxy (TCP, send-proxy-v2) and one shared redis-server in
// front of 1, 2 and 3 postern nodes, and postern direct (one node, neither) as the reference, to a
// discarding sink with no limit — bench/cluster.ts's clusterOnce, BENCH_MESSAGES × BENCH_SIZE over
// BENCH_CONNECTIONS. postern only. Without haproxy or redis-server installed, only the direct run.
// On a 2-core machine it shows the balancer's and Redis's overhead, not scaling.
import { clusterOnce } from '../cluster.js';
import { haproxySkip } from '../../test/helpers/haproxy.js';
import { REDIS_SKIP } from '../../test/helpers/redis-server.js';
import { failed, interleave, type Scenario } from './common.js';

type Setup = 'direct' | number;

function setups(): Setup[] {
  return haproxySkip() || REDIS_SKIP ? ['direct'] : ['direct', 1, 2, 3];
}

const label = (s: Setup): string => (s === 'direct' ? 'direct' : `haproxy ${s} node${s > 1 ? 's' : ''}`);

export const cluster: Scenario = {
  name: 'cluster',
  describe: (k) => `cluster: ${k.messages} × ${k.size} B end to end, postern direct and through HAProxy + Redis with 1, 2, 3 nodes (postern only${setups().length === 1 ? '; haproxy or redis-server missing: direct only' : ''})`,
  targets: () => ['postern'],
  run: (k) =>
    interleave(k, 'cluster', setups(), ['postern'], label, async (setup, _t, run) => {
      const base = { scenario: 'cluster', variant: label(setup), x: setup === 'direct' ? 0 : setup, target: 'postern' as const, run, messages: k.messages };
      try {
        const r = await clusterOnce(setup, { messages: k.messages, size: k.size, connections: k.connections, timeLimitMs: k.timeLimitMs });
        const ok = !r.timedOut && r.delivered === k.messages;
        return {
          ...base,
          ok,
          ...(ok ? {} : { error: `${r.delivered} of ${r.messages} delivered${r.timedOut ? ', timed out' : ''}` }),
          msgsPerSec: r.msgsPerSec,
          mbPerSec: (r.msgsPerSec * k.size) / 1e6,
          elapsedMs: r.elapsedMs,
          accepted: r.messages,
          cpuMsPerMsg: null,
          peakMemMiB: null,
          detail: { ...r },
        };
      } catch (err) {
        return failed(base, err instanceof Error ? err.message : String(err));
      }
    }),
};
