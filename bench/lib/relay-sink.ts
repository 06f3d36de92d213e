// The receiving end of the relay bench, the same for every target: Postfix's smtp-sink
// (`/usr/sbin/smtp-sink -c`, its own process, C, PIPELINING) when installed, else our in-process
// discarding sink (bench/lib/sink.ts). Both discard what they get. The bench asks it for:
//   - messages received (smtp-sink: the "mesg=" counter of -c, one per "."; ours: stats.messages),
//   - the moment the count reached N (the last receipt),
//   - connections: smtp-sink counts sessions as they END ("sess=", updated when a session ends),
//     so that figure is read after the target has been stopped and its connections are closed;
//     ours counts them as they are accepted.
// A fresh sink per run; 127.0.0.1 on a free port; ended by its PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { startSink, type Sink } from './sink.js';
import { freePort, pidAlive, treeCpuSeconds, waitForPort } from './proc.js';

export const SMTP_SINK = '/usr/sbin/smtp-sink';
export type SinkName = 'smtp-sink' | 'ours';

export function haveSmtpSink(): boolean {
  return existsSync(SMTP_SINK);
}

export interface RelaySink {
  readonly name: SinkName;
  readonly port: number;
  readonly pid: number;
  messages(): number;
  /** Bytes of message data received (ours; null for smtp-sink, which does not say). */
  bytes(): number | null;
  /** Sessions: opened (ours) or ended so far (smtp-sink). */
  sessions(): number;
  /** performance.now() when the message count first reached n, waiting at most until deadline (Date.now() ms); null if it didn't. */
  reached(n: number, deadline: number): Promise<number | null>;
  cpuSeconds(): number | null;
  close(): Promise<void>;
}

export async function startRelaySink(name: SinkName): Promise<RelaySink> {
  return name === 'smtp-sink' ? startSmtpSink() : startOurs();
}

async function startOurs(): Promise<RelaySink> {
  const sink: Sink = await startSink({ host: '127.0.0.1', port: 0 });
  return {
    name: 'ours',
    port: sink.port,
    pid: process.pid,
    messages: () => sink.stats.messages,
    bytes: () => sink.stats.bytes,
    sessions: () => sink.stats.connections,
    async reached(n, deadline) {
      while (sink.stats.messages < n) {
        if (Date.now() > deadline) return null;
        await new Promise((r) => setTimeout(r, 2));
      }
      return performance.now();
    },
    cpuSeconds: () => null, // shares the bench's process
    close: () => sink.close(),
  };
}

async function startSmtpSink(): Promise<RelaySink> {
  const port = await freePort();
  // -c counters on stdout; -u nobody (it will not run as root); -m 1024 simultaneous sessions;
  // backlog 1024. No -d/-D: nothing is written anywhere.
  const child: ChildProcess = spawn(SMTP_SINK, ['-c', '-u', 'nobody', '-m', '1024', `127.0.0.1:${port}`, '1024'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let sess = 0;
  let mesg = 0;
  let partial = '';
  let err = '';
  const waiters: Array<{ n: number; resolve: (t: number) => void }> = [];
  child.stdout!.setEncoding('latin1').on('data', (d: string) => {
    const now = performance.now();
    partial += d;
    const cut = partial.lastIndexOf('\r');
    if (cut < 0) return;
    const last = partial.slice(0, cut).split('\r').pop()!;
    partial = partial.slice(cut + 1);
    const m = /sess=(\d+) quit=(\d+) mesg=(\d+)/.exec(last);
    if (!m) return;
    sess = Number(m[1]);
    mesg = Number(m[3]);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (mesg >= waiters[i]!.n) {
        waiters[i]!.resolve(now);
        waiters.splice(i, 1);
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-2000)));
  try {
    await waitForPort(port, 15_000, () => child.exitCode === null);
  } catch (e) {
    if (child.pid !== undefined && pidAlive(child.pid)) process.kill(child.pid, 'SIGKILL');
    throw new Error(`smtp-sink did not start: ${(e as Error).message} ${err}`, { cause: e });
  }
  const pid = child.pid!;
  // waitForPort's probe connection ended a session: count from here.
  await new Promise((r) => setTimeout(r, 100));
  const base = sess;
  return {
    name: 'smtp-sink',
    port,
    pid,
    messages: () => mesg,
    bytes: () => null,
    sessions: () => sess - base,
    reached(n, deadline) {
      if (mesg >= n) return Promise.resolve(performance.now());
      return new Promise((resolve) => {
        const w = { n, resolve: (t: number | null) => resolve(t) };
        waiters.push(w as { n: number; resolve: (t: number) => void });
        const timer = setInterval(() => {
          if (Date.now() > deadline) {
            clearInterval(timer);
            const i = waiters.indexOf(w as { n: number; resolve: (t: number) => void });
            if (i >= 0) waiters.splice(i, 1);
            resolve(null);
          } else if (!waiters.includes(w as { n: number; resolve: (t: number) => void })) clearInterval(timer);
        }, 200);
      });
    },
    cpuSeconds: () => treeCpuSeconds(pid, false),
    async close() {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
      }, 5000);
      if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
      clearTimeout(timer);
    },
  };
}
