// The cluster bench (issue 17, "Tested as a cluster"): end-to-end throughput through HAProxy
// (TCP mode, send-proxy-v2, /ready checks) in front of 1, 2 and 3 postern node processes sharing
// one redis-server, to a discarding sink with no limit; and postern direct (one node, no HAProxy,
// no Redis) as the peer in the same run. Each run: fresh nodes, `messages` injected by the
// loadgen client, timed from the first injection to the last message at the sink. On a 2-core
// machine this shows the overhead of the balancer and of Redis, not scaling.
//   node build/bench/cluster.js            (BENCH_CLUSTER_MESSAGES 2000, BENCH_SIZE 10240,
//                                           BENCH_CONNECTIONS 20, BENCH_CLUSTER_NODES 1,2,3)
// Loopback only; every load is bounded by its count and a time limit; every process started
// here is stopped by its PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startSink } from './lib/sink.js';
import { inject } from './lib/relay-inject.js';
import { startPostern, type PosternProcess } from './lib/postern.js';
import { freePort, waitForPort } from './lib/proc.js';
import { HAPROXY, haproxyConfig } from '../test/helpers/haproxy.js';
import { redisServerPath } from '../test/helpers/redis-server.js';

export interface ClusterRun {
  /** 'direct' (one node, no HAProxy, no Redis) or the number of nodes behind HAProxy. */
  setup: 'direct' | number;
  messages: number;
  delivered: number;
  /** Messages per second, first injection to last delivery. */
  msgsPerSec: number;
  /** Messages per second accepted (the injection alone). */
  acceptPerSec: number;
  elapsedMs: number;
  timedOut: boolean;
}

export interface ClusterOptions {
  messages: number;
  size: number;
  connections: number;
  timeLimitMs: number;
}

/** A child process stopped by its PID: SIGTERM, SIGKILL after 5 s. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid!, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
  }, 5000);
  await exited;
  clearTimeout(timer);
}

export async function clusterOnce(setup: 'direct' | number, o: ClusterOptions): Promise<ClusterRun> {
  const dir = mkdtempSync(join(tmpdir(), 'postern-cluster-bench-'));
  const sink = await startSink({ port: 0 });
  const children: ChildProcess[] = [];
  const nodes: PosternProcess[] = [];
  try {
    const count = setup === 'direct' ? 1 : setup;
    let redisUrl = '';
    if (setup !== 'direct') {
      const bin = redisServerPath();
      if (bin === null) throw new Error('redis-server is not installed');
      const port = await freePort();
      const redis = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      children.push(redis);
      await waitForPort(port, 10_000);
      redisUrl = `redis://127.0.0.1:${port}`;
    }
    const backends: Array<{ smtpPort: number; httpPort: number }> = [];
    for (let i = 0; i < count; i++) {
      const smtpPort = await freePort();
      const httpPort = await freePort();
      const env: Record<string, string> = {
        POSTERN_DELIVERY: 'routes',
        POSTERN_SMARTHOST: `127.0.0.1:${sink.port}`,
        POSTERN_TLS_POLICY: 'none',
        POSTERN_STATS_INTERVAL_MS: '0',
      };
      if (setup !== 'direct') {
        Object.assign(env, { POSTERN_PROXY_TRUSTED: '127.0.0.1/32', POSTERN_REDIS_URL: redisUrl, POSTERN_REDIS_TIMEOUT_MS: '1s', POSTERN_HTTP_PORT: String(httpPort), POSTERN_HTTP_HOST: '127.0.0.1' });
      }
      nodes.push(await startPostern({ port: smtpPort, env, parent: dir }));
      backends.push({ smtpPort, httpPort });
    }
    let port = nodes[0]!.port;
    if (setup !== 'direct') {
      port = await freePort();
      const cfg = join(dir, 'haproxy.cfg');
      writeFileSync(cfg, haproxyConfig(port, backends, 'send-proxy-v2'));
      const haproxy = spawn(HAPROXY, ['-f', cfg, '-db'], { stdio: 'ignore' });
      children.push(haproxy);
      await waitForPort(port, 10_000);
      for (const b of backends) await waitForPort(b.httpPort, 10_000);
      // One check interval (200 ms) so every server has passed its first check.
      await new Promise((r) => setTimeout(r, 500));
    }
    const t0 = performance.now();
    const deadline = Date.now() + o.timeLimitMs;
    const r = await inject('loadgen', { port, messages: o.messages, size: o.size, connections: o.connections, recipients: 1, to: 'user@dest.example', timeLimitMs: o.timeLimitMs });
    if (r.errors.length > 0) throw new Error(`injection failed: ${r.errors.slice(0, 3).join('; ')}`);
    while (sink.stats.messages < r.accepted && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    const elapsedMs = performance.now() - t0;
    return {
      setup,
      messages: r.accepted,
      delivered: sink.stats.messages,
      msgsPerSec: Math.round(sink.stats.messages / (elapsedMs / 1000)),
      acceptPerSec: Math.round(r.accepted / (r.elapsedMs / 1000)),
      elapsedMs: Math.round(elapsedMs),
      timedOut: sink.stats.messages < r.accepted,
    };
  } finally {
    for (const n of nodes) await n.stop(15_000);
    for (const c of children.reverse()) await stopChild(c);
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function envNum(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${v}: a positive integer`);
  return n;
}

async function main(): Promise<void> {
  const o: ClusterOptions = {
    messages: envNum('BENCH_CLUSTER_MESSAGES', 2000),
    size: envNum('BENCH_SIZE', 10240),
    connections: envNum('BENCH_CONNECTIONS', 20),
    timeLimitMs: envNum('BENCH_TIME_LIMIT_S', 300) * 1000,
  };
  const counts = (process.env.BENCH_CLUSTER_NODES ?? '1,2,3').split(',').map((s) => Number(s.trim()));
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 5)) throw new Error('BENCH_CLUSTER_NODES: a comma list of 1 to 5');
  const runs: ClusterRun[] = [await clusterOnce('direct', o)];
  for (const n of counts) runs.push(await clusterOnce(n, o));
  const direct = runs[0]!.msgsPerSec;
  console.log(`${o.messages} × ${o.size} B over ${o.connections} connections, end to end (injection to the sink)\n`);
  console.log('| setup | msg/s end to end | accepted msg/s | / direct |');
  console.log('| --- | --- | --- | --- |');
  for (const r of runs) {
    const name = r.setup === 'direct' ? 'postern direct (1 node, no HAProxy, no Redis)' : `HAProxy + Redis, ${r.setup} node${r.setup > 1 ? 's' : ''}`;
    console.log(`| ${name} | ${r.msgsPerSec}${r.timedOut ? ' (timed out)' : ''} | ${r.acceptPerSec} | ${(r.msgsPerSec / direct).toFixed(2)}× |`);
  }
  console.log(`\n${JSON.stringify(runs)}`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
