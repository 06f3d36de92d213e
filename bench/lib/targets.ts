// The targets of the accept benchmark behind one interface: postern (durable, LMDB queue),
// a private Postfix (durable, its queue files), and two discarding sinks that store nothing —
// ours (bench/lib/sink.ts, in its own node process) and Postfix's smtp-sink — which measure the
// client's ceiling; and the npm peers from bench/.peers (scripts/install-peers.sh): Haraka
// (durable: its outbound queue folder, bench/lib/haraka.ts) and nodemailer's smtp-server writing
// each message to a file with fsync (bench/lib/smtp-server-peer.ts, in its own node process).
// Every server binds 127.0.0.1 on a free port and is ended by its PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostern } from './postern.js';
import { lmdbLastTxnId } from './lmdb-stats.js';
import { startPostfix, havePostfix } from './postfix.js';
import { haveHaraka, peerPackage, startHaraka } from './haraka.js';
import { freePort, mainThreadCpuSeconds, pidAlive, statusKiB, treeCpuSeconds, waitForPort } from './proc.js';

export type TargetName = 'postern' | 'postfix' | 'haraka' | 'smtp-server' | 'sink' | 'smtp-sink';

export const SMTP_SINK = '/usr/sbin/smtp-sink';

export function targetAvailable(name: TargetName): boolean {
  switch (name) {
    case 'postern':
    case 'sink':
      return true;
    case 'postfix':
      return havePostfix();
    case 'smtp-sink':
      return existsSync(SMTP_SINK);
    case 'haraka':
      return haveHaraka();
    case 'smtp-server':
      return peerPackage('smtp-server') !== null;
  }
}

export interface Finished {
  /** Messages the target holds after the run (queue count), or null where it stores nothing. */
  stored: number | null;
  /** Messages the target says it took (sinks), or null. */
  reported: number | null;
  /** postern: the LMDB environment's last transaction id after the run (write transactions). */
  lastTxnId: number | null;
  /** Warnings and errors from the target's own log. */
  problems: string[];
  detail: Record<string, unknown>;
}

export interface Target {
  readonly name: TargetName;
  readonly durable: boolean;
  readonly port: number;
  /** The PID to trace for sync calls (postern's node, Postfix's master). */
  readonly mainPid: number;
  /** The processes whose memory counts (sampled during the run). */
  pids(): number[];
  cpuSeconds(): number | null;
  /** CPU seconds of the main thread, for a one-process target (absent for the others). */
  mainThreadCpuSeconds?(): number | null;
  /** VmHWM of the main process, KiB (for single-process targets it is their peak RSS). */
  hwmKiB(): number | null;
  /** Stop the target, check what it stored, remove its files. */
  finish(): Promise<Finished>;
}

export interface TargetOptions {
  posternEnv?: Record<string, string>;
  postfixOverrides?: Record<string, string>;
}

function childExited(c: ChildProcess): Promise<void> {
  return c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', () => r()));
}

async function killAndWait(c: ChildProcess, signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
  const pid = c.pid;
  if (pid === undefined) return;
  if (c.exitCode === null && c.signalCode === null) process.kill(pid, signal);
  const timer = setTimeout(() => {
    if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
  }, timeoutMs);
  await childExited(c);
  clearTimeout(timer);
}

/** mainPid, pids, cpuSeconds and hwmKiB of a target that runs as one process. */
function singleProcess(pid: number): Pick<Target, 'mainPid' | 'pids' | 'cpuSeconds' | 'mainThreadCpuSeconds' | 'hwmKiB'> {
  return {
    mainPid: pid,
    pids: () => (pidAlive(pid) ? [pid] : []),
    cpuSeconds: () => treeCpuSeconds(pid, false),
    mainThreadCpuSeconds: () => mainThreadCpuSeconds(pid),
    hwmKiB: () => statusKiB(pid, 'VmHWM'),
  };
}

export async function startTarget(name: TargetName, opts: TargetOptions = {}): Promise<Target> {
  const port = await freePort();
  switch (name) {
    case 'postern': {
      const p = await startPostern({ port, env: opts.posternEnv ?? {} });
      return {
        name,
        durable: true,
        port,
        ...singleProcess(p.pid),
        async finish() {
          const stop = await p.stop();
          const counts = p.queueCounts();
          const lastTxnId = await lmdbLastTxnId(p.dataDir);
          const problems = Object.entries(p.problems).map(([msg, n]) => `${n}× ${msg}`);
          if (stop.killed) problems.push('did not exit within 60 s of SIGTERM: killed');
          if (stop.exitCode !== 0 && !stop.killed) problems.push(`exit code ${stop.exitCode} signal ${stop.signal}: ${p.stderrTail().slice(-500)}`);
          p.remove();
          return { stored: counts?.total ?? null, reported: null, lastTxnId, problems, detail: { shutdownMs: stop.shutdownMs, exitCode: stop.exitCode, queue: counts, logSamples: p.problemLines } };
        },
      };
    }
    case 'postfix': {
      const pf = await startPostfix({ port, overrides: opts.postfixOverrides ?? {} });
      const master = pf.masterPid()!;
      return {
        name,
        durable: true,
        port,
        mainPid: master,
        pids: () => pf.pids(),
        cpuSeconds: () => pf.cpuSeconds(),
        hwmKiB: () => null,
        async finish() {
          const files = pf.queueFiles();
          await pf.stop();
          const problems = pf.problems();
          pf.remove();
          return { stored: files.total, reported: null, lastTxnId: null, problems, detail: { queueFiles: files } };
        },
      };
    }
    case 'haraka': {
      const h = await startHaraka({ port });
      return {
        name,
        durable: true,
        port,
        ...singleProcess(h.pid),
        async finish() {
          const stored = h.queueFiles();
          const stop = await h.stop();
          const problems = h.problems();
          if (stop.killed) problems.push('did not exit within 15 s of SIGTERM: killed');
          h.remove();
          return { stored, reported: null, lastTxnId: null, problems, detail: { queueFiles: stored } };
        },
      };
    }
    case 'smtp-server': {
      const script = join(dirname(fileURLToPath(import.meta.url)), 'smtp-server-peer.js');
      const dir = mkdtempSync(join(tmpdir(), 'postern-bench-smtp-server-'));
      const child = spawn(process.execPath, [script, '--port', String(port), '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
      try {
        await waitForPort(port, 15_000, () => child.exitCode === null);
      } catch (e) {
        if (child.exitCode === null) child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`smtp-server peer did not listen: ${(e as Error).message}: ${err.slice(-800)}`, { cause: e });
      }
      const pid = child.pid!;
      return {
        name,
        durable: true,
        port,
        ...singleProcess(pid),
        async finish() {
          const stored = readdirSync(dir).filter((f) => f.endsWith('.eml')).length;
          await killAndWait(child, 'SIGTERM', 10_000);
          let reported: number | null = null;
          try {
            reported = (JSON.parse(out.trim().split('\n').pop() ?? '') as { messages: number }).messages;
          } catch {
            /* killed before it could say */
          }
          rmSync(dir, { recursive: true, force: true });
          const problems = err
            .split('\n')
            .filter((l) => l.trim() && !l.includes('listening on'))
            .slice(0, 5);
          return { stored, reported, lastTxnId: null, problems, detail: { files: stored } };
        },
      };
    }
    case 'sink': {
      const script = join(dirname(fileURLToPath(import.meta.url)), 'sink.js');
      const child = spawn(process.execPath, [script, '--port', String(port), '--max-seconds', '3600'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      await waitForPort(port, 15_000, () => child.exitCode === null);
      const pid = child.pid!;
      return {
        name,
        durable: false,
        port,
        ...singleProcess(pid),
        async finish() {
          await killAndWait(child, 'SIGTERM', 10_000);
          const last = out.trim().split('\n').pop() ?? '';
          let reported: number | null = null;
          try {
            reported = (JSON.parse(last) as { messages: number }).messages;
          } catch {
            /* killed before it could say */
          }
          return { stored: null, reported, lastTxnId: null, problems: [], detail: {} };
        },
      };
    }
    case 'smtp-sink': {
      // -u nobody: it refuses to run as root without dropping privileges; -m: more than the
      // default 256 simultaneous connections, never reached here. backlog 1024.
      const child = spawn(SMTP_SINK, ['-u', 'nobody', '-m', '1024', `127.0.0.1:${port}`, '1024'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
      await waitForPort(port, 15_000, () => child.exitCode === null);
      const pid = child.pid!;
      return {
        name,
        durable: false,
        port,
        ...singleProcess(pid),
        async finish() {
          await killAndWait(child, 'SIGTERM', 10_000);
          return { stored: null, reported: null, lastTxnId: null, problems: err.trim() ? [err.trim().slice(0, 500)] : [], detail: {} };
        },
      };
    }
  }
}
