// postern as the bench's target: a child process `node dist/cli.js start` on a free loopback
// port with a fresh data folder, stopped with SIGTERM (its graceful shutdown) and, should it
// not exit in time, SIGKILL by PID. Its log (JSON lines on stdout) is kept for the report:
// lines at warn or above are counted by message. After it has stopped, `postern queue --json`
// on the same data folder tells how many messages the queue holds.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onLines, pidAlive, waitForPort } from './proc.js';

/** The repository root: the first folder above this file holding package.json and dist/cli.js. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'src'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('repository root not found above ' + fileURLToPath(import.meta.url));
}

export interface PosternOptions {
  port: number;
  /** Extra POSTERN_* variables (they win over the bench's). */
  env?: Record<string, string>;
  parent?: string;
  startTimeoutMs?: number;
}

export interface PosternStop {
  exitCode: number | null;
  signal: string | null;
  killed: boolean;
  shutdownMs: number;
}

export interface PosternProcess {
  readonly pid: number;
  readonly port: number;
  readonly dataDir: string;
  readonly child: ChildProcess;
  /** Log lines at warn level or above, counted by their msg. */
  readonly problems: Record<string, number>;
  /** The first few such lines, verbatim. */
  readonly problemLines: string[];
  stderrTail(): string;
  stop(timeoutMs?: number): Promise<PosternStop>;
  /** `postern queue --json` on the data folder (run after stop: LMDB allows it alongside, too). */
  queueCounts(): { total: number; [k: string]: unknown } | null;
  remove(): void;
}

export async function startPostern(opts: PosternOptions): Promise<PosternProcess> {
  const root = repoRoot();
  const cli = join(root, 'dist', 'cli.js');
  if (!existsSync(cli)) throw new Error(`${cli} not found: run npm run build first`);
  const dir = mkdtempSync(join(opts.parent ?? tmpdir(), 'postern-bench-'));
  const dataDir = join(dir, 'queue');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    POSTERN_SMTP_HOST: '127.0.0.1',
    POSTERN_SMTP_PORT: String(opts.port),
    POSTERN_DATA_DIR: dataDir,
    POSTERN_LOG_LEVEL: 'warn',
    POSTERN_HOSTNAME: 'postern-bench.localdomain',
    POSTERN_MAX_CONNECTIONS_PER_IP: '100000',
    POSTERN_MAX_CONNECTIONS: '100000',
    POSTERN_DELIVERY: 'off', // accept only: the bench measures the durable accept path
    POSTERN_HTTP_PORT: '',
    ...opts.env,
  };
  const child = spawn(process.execPath, [cli, 'start'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const problems: Record<string, number> = {};
  const problemLines: string[] = [];
  let stderr = '';
  onLines(child.stdout!, (line) => {
    try {
      const rec = JSON.parse(line) as { level?: number; msg?: string };
      if ((rec.level ?? 0) >= 40) {
        const k = rec.msg ?? '?';
        problems[k] = (problems[k] ?? 0) + 1;
        if (problemLines.length < 10) problemLines.push(line.slice(0, 500));
      }
    } catch {
      if (problemLines.length < 10) problemLines.push(line.slice(0, 500));
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-8192);
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const pid = child.pid!;

  const proc: PosternProcess = {
    pid,
    port: opts.port,
    dataDir,
    child,
    problems,
    problemLines,
    stderrTail: () => stderr.trim(),
    async stop(timeoutMs = 60_000) {
      const t0 = performance.now();
      let killed = false;
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (pidAlive(pid)) {
          killed = true;
          process.kill(pid, 'SIGKILL');
        }
      }, timeoutMs);
      const r = await exited;
      clearTimeout(timer);
      return { exitCode: r.code, signal: r.signal, killed, shutdownMs: Math.round(performance.now() - t0) };
    },
    queueCounts() {
      const r = spawnSync(process.execPath, [cli, 'queue', '--json'], { cwd: root, env: { ...env, POSTERN_LOG_LEVEL: 'silent' }, encoding: 'utf8', timeout: 120_000 });
      if (r.status !== 0) return null;
      try {
        return JSON.parse(r.stdout) as { total: number };
      } catch {
        return null;
      }
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    await waitForPort(opts.port, opts.startTimeoutMs ?? 30_000, () => child.exitCode === null && child.signalCode === null);
  } catch (err) {
    await proc.stop(5_000);
    proc.remove();
    throw new Error(`postern did not start: ${(err as Error).message}\n${stderr.trim()}\n${problemLines.join('\n')}`, { cause: err });
  }
  return proc;
}
