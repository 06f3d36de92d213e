// A real redis-server for a test, on a free loopback port, with nothing written to disk
// (--save '' --appendonly no); stopped by its PID in t.after. Tests skip with this reason when
// the program is not installed (.ci/run installs the redis-server package).
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import type { TestContext } from 'node:test';
import { freePort } from '../../bench/lib/proc.js';
import { spawnDaemon, waitUntilReady, type OutsideDaemon } from './outside-daemon.js';

const CANDIDATES = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'];

/** The path of redis-server, or null when it is not installed. */
export function redisServerPath(): string | null {
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

/** Why a Redis test is skipped, or false when it can run. */
export const REDIS_SKIP: string | false = redisServerPath() === null ? 'redis-server is not installed (Debian package redis-server)' : false;

/** PING over a raw socket: true when +PONG comes back within `ms`. */
function ping(port: number, ms = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => done(d.toString().startsWith('+PONG')));
    s.on('error', () => done(false));
  });
}

export interface TestRedis {
  port: number;
  url: string;
  /** Stop it (SIGTERM to its PID) and wait for the exit. */
  stop(): Promise<void>;
  /** Start it again on the same port, empty. */
  start(): Promise<void>;
  /** SIGSTOP / SIGCONT: alive but silent (a Redis that is slow, not down). */
  pause(): void;
  resume(): void;
}

export async function startRedis(t: TestContext): Promise<TestRedis> {
  const bin = redisServerPath();
  if (bin === null) throw new Error('redis-server is not installed');
  const port = await freePort();
  let daemon: OutsideDaemon | null = null;
  const start = async (): Promise<void> => {
    const d = spawnDaemon([bin, '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { quiet: true });
    daemon = d;
    await waitUntilReady(d, () => ping(port), { timeoutMs: 10_000, intervalMs: 50, failure: () => new Error(`redis-server did not start on port ${port}`) });
  };
  const stop = async (): Promise<void> => {
    const d = daemon;
    daemon = null;
    if (!d || d.exited() || d.child.pid === undefined) return;
    // A paused server (pause()) must run again to act on SIGTERM.
    process.kill(d.child.pid, 'SIGCONT');
    await d.stop();
  };
  await start();
  t.after(stop);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    pause: () => {
      if (daemon?.child.pid !== undefined) process.kill(daemon.child.pid, 'SIGSTOP');
    },
    resume: () => {
      if (daemon?.child.pid !== undefined) process.kill(daemon.child.pid, 'SIGCONT');
    },
  };
}
