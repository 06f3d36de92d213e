// Drive a target with Postfix's own load generator, /usr/sbin/smtp-source (Debian package
// `postfix`), and time it. The flags (smtp-source(1), Postfix 3.7):
//   -s N   N sessions in parallel          -m N   N messages in total
//   -l N   N bytes of payload per message  -d     don't disconnect after a message: reuse the
//   -M H   HELO name (and default domain)         session for the next one (connection reuse)
//   -f/-t  envelope sender / recipient     -c     print a running counter of DATA completions
// smtp-source does NOT pipeline (its man page: "No SMTP command pipelining support"): each
// command waits for its reply. Without -A it aborts (exit 1) on the first unexpected reply, so a
// clean exit means every message got its 250. The run is bounded by -m and by a time limit
// after which the process is killed (by its PID).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isLoopback } from './loadgen.js';

export const SMTP_SOURCE = '/usr/sbin/smtp-source';

export function haveSmtpSource(): boolean {
  return existsSync(SMTP_SOURCE);
}

export interface SmtpSourceOptions {
  host?: string;
  port: number;
  messages: number;
  size: number;
  connections: number;
  timeLimitMs?: number;
  from?: string;
  to?: string;
  helo?: string;
  /** Reuse each session for many messages (-d, the default); false = a new connection per message. */
  reuse?: boolean;
}

export interface SmtpSourceResult {
  argv: string[];
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  elapsedMs: number;
  /** Messages smtp-source's -c counter reached (DATA completions). */
  completed: number;
  /** completed / elapsed seconds. */
  msgsPerSec: number;
  mbPerSec: number;
  stderr: string;
}

export function smtpSourceArgs(o: SmtpSourceOptions): string[] {
  const host = o.host ?? '127.0.0.1';
  return [
    '-c',
    ...(o.reuse === false ? [] : ['-d']),
    '-s', String(o.connections),
    '-m', String(o.messages),
    '-l', String(o.size),
    '-M', o.helo ?? 'bench.example',
    '-f', o.from ?? 'bench@bench.example',
    '-t', o.to ?? 'sink@example.com',
    `${host}:${o.port}`,
  ];
}

export function runSmtpSource(o: SmtpSourceOptions): Promise<SmtpSourceResult> {
  const host = o.host ?? '127.0.0.1';
  if (!isLoopback(host)) return Promise.reject(new Error(`smtp-source is pointed at loopback only, not ${host}`));
  const argv = smtpSourceArgs(o);
  const timeLimitMs = o.timeLimitMs ?? 600_000;
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(SMTP_SOURCE, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timedOut = false;
    child.stdout.setEncoding('latin1').on('data', (d: string) => {
      // -c prints the counter as "\r<n>" again and again: keep only the tail.
      out = (out + d).slice(-256);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (err.length < 16384) err += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, timeLimitMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const elapsedMs = performance.now() - start;
      const nums = out.match(/\d+/g);
      const completed = nums ? Number(nums[nums.length - 1]) : 0;
      const secs = elapsedMs / 1000;
      resolve({
        argv: [SMTP_SOURCE, ...argv],
        exitCode: code,
        signal,
        timedOut,
        elapsedMs: Math.round(elapsedMs * 10) / 10,
        completed,
        msgsPerSec: secs > 0 ? completed / secs : 0,
        mbPerSec: secs > 0 ? (completed * o.size) / 1e6 / secs : 0,
        stderr: err.trim(),
      });
    });
  });
}
