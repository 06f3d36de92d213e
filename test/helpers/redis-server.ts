// A real redis-server for a test, on a free loopback port, with nothing written to disk
// (--save '' --appendonly no); stopped by its PID in t.after. Tests skip with this reason when
// the program is not installed (.ci/run installs the redis-server package).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import type { TestContext } from 'node:test';

const CANDIDATES = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'];

/** The path of redis-server, or null when it is not installed. */
export function redisServerPath(): string | null {
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

/** Why a Redis test is skipped, or false when it can run. */
export const REDIS_SKIP: string | false = redisServerPath() === null ? 'redis-server is not installed (Debian package redis-server)' : false;

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

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
  let child: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    const c = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { stdio: 'ignore' });
    child = c;
    const until = Date.now() + 10_000;
    while (!(await ping(port))) {
      if (c.exitCode !== null || Date.now() > until) throw new Error(`redis-server did not start on port ${port}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.pid === undefined) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    process.kill(c.pid, 'SIGCONT');
    process.kill(c.pid, 'SIGTERM');
    await exited;
  };
  await start();
  t.after(stop);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    pause: () => {
      if (child?.pid !== undefined) process.kill(child.pid, 'SIGSTOP');
    },
    resume: () => {
      if (child?.pid !== undefined) process.kill(child.pid, 'SIGCONT');
    },
  };
}
