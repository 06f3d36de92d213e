// Delivery to a program (POSTERN_ROUTES "pipe:", as Postfix pipe(8) and Exim's pipe transport):
// once per recipient, the message on the program's standard input, run without a shell, its
// exit status read as sendmail's sysexits.h (0 delivered, EX_TEMPFAIL and EX_OSERR retried,
// other codes bounced with the program's first output line), within a time limit after which
// its whole process group is killed and the recipient retried. The programs of one route run
// at most `max` at a time.
import { spawn } from 'node:child_process';
import { basename } from 'node:path';
import assert from 'node:assert/strict';
import type { DeliveryRequest, Destination, RecipientResult, Transport } from './types.js';
import { replyRecord } from './types.js';
import type { PipeIdentity } from '../config/pipe-routes.js';
import type { PipeTarget } from '../config/routes.js';

/*
 * Why no shell: the substituted values (sender, recipient, its local part and domain) come from
 * the network and may hold spaces, quotes, ";", "$(...)" or a leading "-". Each template word
 * is one argv element after substitution, whatever the value holds, and execve(2) takes the
 * list as it is: nothing is split, expanded or interpreted on the way. A value with a leading
 * "-" still reaches the program as an argument, so a route should put values after the option
 * that takes them (maildrop -d {local}, dovecot-lda -d {recipient}) or after "--".
 *
 * What the program reads: "Return-Path: <sender>" and "Delivered-To: <recipient>" (Postfix's
 * flags=DR, which its maildrop and dovecot-lda examples use), then the message, with CRLF
 * line ends turned into LF as Postfix and Exim do for pipes: local programs expect UNIX text.
 *
 * Exit statuses (sysexits.h, classified as Postfix's sys_exits.c does):
 *
 *   0                       delivered
 *   71 EX_OSERR, 75 EX_TEMPFAIL                 deferred (retried)   4.3.0
 *   64..78 (the others)     failed (bounced), enhanced status from the table below
 *   any other non-zero      failed (bounced)    5.3.0
 *   killed by a signal, time limit, cannot start  deferred
 */

export interface PipeTransportOptions {
  /** The uid/gid per route pattern (config/pipe-routes.ts); a route not in it runs as postern. */
  identities?: ReadonlyMap<string, PipeIdentity>;
  /** Output (stdout and stderr together) kept for the reply; the rest is read and dropped (default 4096). */
  maxOutputBytes?: number;
}

const SYSEXITS: Readonly<Record<number, { enhanced: string; text: string }>> = {
  64: { enhanced: '5.3.0', text: 'command line usage error' },
  65: { enhanced: '5.6.0', text: 'data format error' },
  66: { enhanced: '5.3.0', text: 'cannot open input' },
  67: { enhanced: '5.1.1', text: 'user unknown' },
  68: { enhanced: '5.1.2', text: 'host name unknown' },
  69: { enhanced: '5.3.0', text: 'service unavailable' },
  70: { enhanced: '5.3.0', text: 'internal software error' },
  71: { enhanced: '4.3.0', text: 'system resource problem' },
  72: { enhanced: '5.3.0', text: 'critical OS file missing' },
  73: { enhanced: '5.2.0', text: "can't create user output file" },
  74: { enhanced: '5.3.0', text: 'input/output error' },
  75: { enhanced: '4.3.0', text: 'temporary failure' },
  76: { enhanced: '5.5.0', text: 'remote error in protocol' },
  77: { enhanced: '5.7.0', text: 'permission denied' },
  78: { enhanced: '5.3.5', text: 'local configuration error' },
};

/** A bounded reply text: the first non-empty line, printable ASCII only, at most 200 characters. */
export function firstLine(out: Buffer): string {
  for (const line of out.toString('latin1').split('\n')) {
    const clean = line.replace(/[^\x20-\x7e]/g, '?').replace(/\?+$/, '').trim();
    if (clean !== '') return clean.length > 200 ? clean.slice(0, 200) : clean;
  }
  return '';
}

/** Every CRLF as LF; a lone CR stays (it is data). */
export function crlfToLf(b: Buffer): Buffer {
  let at = b.indexOf('\r\n');
  if (at < 0) return b;
  const out = Buffer.allocUnsafe(b.length);
  let n = 0;
  let from = 0;
  for (; at >= 0; at = b.indexOf('\r\n', from)) {
    n += b.copy(out, n, from, at);
    out[n++] = 0x0a;
    from = at + 2;
  }
  n += b.copy(out, n, from);
  return out.subarray(0, n);
}

/** Replace {sender} {recipient} {domain} {local}: one argument in, one out, the value verbatim. */
export function pipeArgs(templates: readonly string[], values: Readonly<Record<string, string>>): string[] {
  // A replacer function: the value is inserted as it is ("$&" and friends mean nothing there).
  return templates.map((a) => a.replace(/\{(sender|recipient|domain|local)\}/g, (_m, name: string) => values[name] ?? ''));
}

interface Limiter {
  active: number;
  waiting: Array<() => void>;
}

/** Strip what could end a header line. */
function headerValue(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f]/g, '?');
}

export class PipeTransport implements Transport {
  readonly #identities: ReadonlyMap<string, PipeIdentity>;
  readonly #maxOutput: number;
  readonly #limits = new Map<string, Limiter>();

  constructor(o: PipeTransportOptions = {}) {
    this.#identities = o.identities ?? new Map();
    this.#maxOutput = o.maxOutputBytes ?? 4096;
  }

  async deliver(dest: Destination, req: DeliveryRequest): Promise<RecipientResult[]> {
    assert.equal(dest.kind, 'pipe', 'PipeTransport got a non-pipe destination');
    const d = dest as Extract<Destination, { kind: 'pipe' }>;
    // LF once for every recipient; the per-recipient headers go in front.
    const body = crlfToLf(req.body);
    return Promise.all(req.recipients.map((rc) => this.#limited(d.key, d.target.maxProcesses, () => this.#runOne(d, req, rc.address, body))));
  }

  async #limited<T>(key: string, max: number, run: () => Promise<T>): Promise<T> {
    let l = this.#limits.get(key);
    if (!l) this.#limits.set(key, (l = { active: 0, waiting: [] }));
    const lim = l;
    if (lim.active >= max) await new Promise<void>((r) => lim.waiting.push(r));
    else lim.active++;
    try {
      return await run();
    } finally {
      // The slot passes straight to the next waiter (active unchanged), or is given back.
      const next = lim.waiting.shift();
      if (next) next();
      else if (--lim.active === 0) this.#limits.delete(key);
    }
  }

  #runOne(d: Extract<Destination, { kind: 'pipe' }>, req: DeliveryRequest, address: string, body: Buffer): Promise<RecipientResult> {
    const t: PipeTarget = d.target;
    const where = d.key;
    const name = basename(t.program);
    const at = address.lastIndexOf('@');
    const values = { sender: req.message.sender, recipient: address, local: at < 0 ? address : address.slice(0, at), domain: at < 0 ? '' : address.slice(at + 1).toLowerCase() };
    const deferred = (enhanced: string, text: string): RecipientResult => ({ kind: 'deferred', address, reply: replyRecord(451, enhanced, text, undefined, where) });
    // execve cannot carry a NUL; the SMTP parser refuses one anyway.
    if (Object.values(values).some((v) => v.includes('\0'))) return Promise.resolve({ kind: 'failed', address, reply: replyRecord(553, '5.1.3', 'address contains NUL', undefined, where) });
    const id = this.#identities.get(d.route);
    const head = Buffer.from(`Return-Path: <${headerValue(values.sender)}>\nDelivered-To: ${headerValue(address)}\n`, 'utf8');
    return new Promise<RecipientResult>((resolve) => {
      let child;
      try {
        child = spawn(t.program, pipeArgs(t.args, values), {
          shell: false,
          // Its own process group, so the time limit kills what it started too.
          detached: true,
          stdio: ['pipe', 'pipe', 'pipe'],
          cwd: '/',
          // Not postern's environment (it may hold credentials): the values, as Postfix and Exim set them.
          env: { PATH: '/usr/local/bin:/usr/bin:/bin', SENDER: values.sender, RECIPIENT: address, LOCAL: values.local, DOMAIN: values.domain },
          ...(id ? { uid: id.uid, gid: id.gid } : {}),
        });
      } catch (err) {
        resolve(deferred('4.3.5', `${name} could not be started: ${(err as { code?: string }).code ?? (err as Error).message}`));
        return;
      }
      const pid = child.pid;
      const kept: Buffer[] = [];
      let keptBytes = 0;
      const take = (chunk: Buffer): void => {
        // Read everything (a full pipe would stall the program); keep only the first bytes.
        if (keptBytes >= this.#maxOutput) return;
        const part = chunk.subarray(0, this.#maxOutput - keptBytes);
        kept.push(part);
        keptBytes += part.length;
      };
      child.stdout.on('data', take);
      child.stderr.on('data', take);
      // EPIPE when the program exits without reading all of its input: its status decides.
      child.stdin.on('error', () => undefined);
      let timedOut = false;
      let spawnError: string | null = null;
      const killGroup = (): void => {
        if (pid === undefined) return;
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      };
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup();
        // A descendant that left the group may hold the pipes open: stop waiting for them.
        setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
        }, 1000).unref();
      }, t.timeoutMs);
      child.on('error', (err: NodeJS.ErrnoException) => {
        spawnError = err.code ?? err.message;
      });
      child.on('exit', () => {
        // The program is done; a background child still holding stdout gets a moment, not forever.
        setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
        }, 1000).unref();
      });
      child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(timer);
        const line = firstLine(Buffer.concat(kept));
        const said = line !== '' ? `: ${line}` : '';
        if (spawnError !== null) return resolve(deferred('4.3.5', `${name} could not be started: ${spawnError}`));
        if (timedOut) return resolve(deferred('4.3.0', `${name} did not finish within ${Math.round(t.timeoutMs / 1000)}s and was killed${said}`));
        if (signal !== null || code === null) return resolve(deferred('4.3.0', `${name} was killed by ${signal ?? 'a signal'}${said}`));
        if (code === 0) return resolve({ kind: 'delivered', address, reply: replyRecord(250, '2.0.0', `delivered by ${name}${said}`, undefined, where) });
        const sx = SYSEXITS[code];
        const enhanced = sx?.enhanced ?? '5.3.0';
        const text = `${line !== '' ? line : (sx?.text ?? 'failed')} (${name} exited ${code})`;
        if (enhanced.startsWith('4')) return resolve(deferred(enhanced, text));
        resolve({ kind: 'failed', address, reply: replyRecord(enhanced.startsWith('5.1.') ? 550 : 554, enhanced, text, undefined, where) });
      });
      child.stdin.end(Buffer.concat([head, body]));
    });
  }

  async close(): Promise<void> {
    // Programs in flight finish (or meet their time limit); the scheduler waits for them.
  }
}
