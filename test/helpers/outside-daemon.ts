// A program from outside the project run as a test's daemon (Cyrus's master, Exim, Dovecot,
// unbound, redis-server): spawned as a child of the test with its standard error kept, ready
// once its ports listen (or a probe of its own answers), stopped by its PID with SIGTERM and
// SIGKILL after a grace time. The MTAs that need a private namespace (Sendmail, OpenSMTPD) are
// started by private-namespace.ts and stopped by process group instead.
import { spawn, type ChildProcess } from 'node:child_process';
import type { TestContext } from 'node:test';
import { waitForPort } from '../../bench/lib/proc.js';
import { removeTmpdir } from './tmpdir.js';

export interface OutsideDaemon {
  child: ChildProcess;
  /** What it wrote on its standard error so far (the last `stderrTail` characters when given). */
  stderr(): string;
  exited(): boolean;
  /** SIGTERM to its PID, SIGKILL after the grace time; resolves once it has exited. */
  stop(): Promise<void>;
}

export interface SpawnOptions {
  /** How long SIGTERM has before SIGKILL; 3000 ms unless given. */
  graceMs?: number;
  /** Keep only this many characters of the standard error (a chatty daemon). */
  stderrTail?: number;
  /** Its standard error goes nowhere (nothing to keep). */
  quiet?: boolean;
}

/** `argv[0]` spawned with `argv[1..]`, standard input and output ignored. */
export function spawnDaemon(argv: readonly [string, ...string[]], o: SpawnOptions = {}): OutsideDaemon {
  const [bin, ...args] = argv;
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', o.quiet === true ? 'ignore' : 'pipe'] });
  let stderr = '';
  const tail = o.stderrTail;
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = tail === undefined ? stderr + d : (stderr + d).slice(-tail)));
  let exited = false;
  const gone = new Promise<void>((r) => child.once('exit', () => {
    exited = true;
    r();
  }));
  const stop = async (): Promise<void> => {
    if (exited || child.pid === undefined) return;
    process.kill(child.pid, 'SIGTERM');
    const killer = setTimeout(() => !exited && child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), o.graceMs ?? 3000);
    await gone;
    clearTimeout(killer);
  };
  return { child, stderr: () => stderr, exited: () => exited, stop };
}

/**
 * Spawns the daemon, registers one t.after hook that stops it and then removes `dir` (the temp
 * folder it runs in), and waits (10 s each) for every one of `ports` on 127.0.0.1 to listen.
 * When one does not, or the daemon exits first, throws `failure(its standard error)`.
 */
export async function startDaemon(t: TestContext, o: SpawnOptions & { argv: readonly [string, ...string[]]; dir: string; ports: number[]; failure: (stderr: string) => string }): Promise<OutsideDaemon> {
  const d = spawnDaemon(o.argv, o);
  t.after(async () => {
    await d.stop();
    removeTmpdir(o.dir);
  });
  try {
    for (const port of o.ports) await waitForPort(port, 10_000, () => !d.exited());
  } catch {
    throw new Error(o.failure(d.stderr()));
  }
  return d;
}

/**
 * Polls `probe` every `intervalMs` until it answers true. Once the daemon has exited or
 * `timeoutMs` has passed, throws `failure(what the last probe threw, if it threw)`.
 */
export async function waitUntilReady(d: OutsideDaemon, probe: () => Promise<boolean>, o: { timeoutMs: number; intervalMs: number; failure: (cause: unknown) => Error }): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    let cause: unknown;
    try {
      if (await probe()) return;
    } catch (err) {
      cause = err;
    }
    if (d.exited() || Date.now() > deadline) throw o.failure(cause);
    await new Promise((r) => setTimeout(r, o.intervalMs));
  }
}
