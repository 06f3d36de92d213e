// Injection for the relay bench: N messages of SIZE bytes, each with R recipients, over C
// reused sessions, by Postfix's smtp-source (`-r R`: R recipients per message, named
// "sink@D", "2sink@D", ... "Rsink@D") or by our own pipelining client. bench/lib/loadgen.ts
// sends exactly one RCPT per message, so for R > 1 this file has a small pipelining client of
// its own (same payload as loadgen, MAIL + R × RCPT + DATA in one write). Loopback only, bounded
// by the message count and by a time limit after which the client is killed / its sockets
// destroyed.
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { makePayload, runLoad } from './loadgen.js';
import { SMTP_SOURCE, haveSmtpSource } from './smtp-source.js';

export type ClientName = 'smtp-source' | 'loadgen';

export interface InjectOptions {
  port: number;
  messages: number;
  size: number;
  connections: number;
  recipients: number;
  /** The first recipient; the others are "2" + it, "3" + it, ... as smtp-source names them. */
  to: string;
  from?: string;
  timeLimitMs: number;
}

export interface InjectResult {
  client: ClientName;
  argv: string[] | null;
  accepted: number;
  failed: number;
  elapsedMs: number;
  timedOut: boolean;
  errors: string[];
}

export { haveSmtpSource };

export function recipientList(to: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? to : `${i + 1}${to}`));
}

function runSmtpSourceR(o: InjectOptions): Promise<InjectResult> {
  const argv = ['-c', '-d', '-s', String(o.connections), '-m', String(o.messages), '-l', String(o.size), '-r', String(o.recipients), '-M', 'bench.example', '-f', o.from ?? 'bench@bench.example', '-t', o.to, `127.0.0.1:${o.port}`];
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(SMTP_SOURCE, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timedOut = false;
    child.stdout.setEncoding('latin1').on('data', (d: string) => (out = (out + d).slice(-256)));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (err.length < 8192) err += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, o.timeLimitMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const nums = out.match(/\d+/g);
      const completed = nums ? Number(nums[nums.length - 1]) : 0;
      const errors = err.trim() ? [err.trim().slice(0, 1000)] : [];
      if (code !== 0) errors.push(`smtp-source exit ${code} signal ${signal}`);
      // Without -A smtp-source stops at the first unexpected reply: a clean exit = every 250.
      const accepted = code === 0 ? o.messages : completed;
      resolve({ client: 'smtp-source', argv: [SMTP_SOURCE, ...argv], accepted, failed: o.messages - accepted, elapsedMs: performance.now() - t0, timedOut, errors });
    });
  });
}

/** Our pipelining client with R recipients per message (R >= 1). */
async function runMultiRcpt(o: InjectOptions): Promise<InjectResult> {
  if (o.recipients === 1) {
    const r = await runLoad({ port: o.port, messages: o.messages, size: o.size, connections: o.connections, to: o.to, timeLimitMs: o.timeLimitMs });
    return { client: 'loadgen', argv: null, accepted: r.accepted, failed: r.failed, elapsedMs: r.elapsedMs, timedOut: r.timedOut, errors: r.errors };
  }
  const from = o.from ?? 'bench@bench.example';
  const rcpts = recipientList(o.to, o.recipients);
  const envelope = Buffer.from(`MAIL FROM:<${from}>\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join('')}DATA\r\n`, 'latin1');
  const payload = makePayload(o.size);
  const tail = Buffer.concat([payload, Buffer.from(payload.length === 0 || payload[payload.length - 1] === 10 ? '.\r\n' : '\r\n.\r\n', 'latin1')]);
  const runId = randomBytes(4).toString('hex');
  const date = new Date().toUTCString().replace('GMT', '+0000');
  const header = (i: number) => Buffer.from(`From: <${from}>\r\nTo: <${o.to}>\r\nSubject: relay bench ${i}\r\nDate: ${date}\r\nMessage-ID: <${runId}.${i}@bench.example>\r\n\r\n`, 'latin1');
  const t0 = performance.now();
  const deadline = t0 + o.timeLimitMs;
  const errors: string[] = [];
  const sockets = new Set<Socket>();
  let next = 0;
  let accepted = 0;
  let failed = 0;
  let timedOut = false;
  const hard = setTimeout(() => {
    timedOut = true;
    for (const s of sockets) s.destroy(new Error('time limit'));
  }, o.timeLimitMs + 5000);

  async function session(): Promise<void> {
    const socket = connect({ host: '127.0.0.1', port: o.port });
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    let buf = '';
    const codes: number[] = [];
    let wake: (() => void) | null = null;
    let closed: Error | null = null;
    socket.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (line.charAt(3) !== '-') codes.push(Number(line.slice(0, 3)) || 0);
      }
      wake?.();
    });
    const onEnd = (e?: Error) => {
      closed ??= e ?? new Error('connection closed');
      wake?.();
    };
    socket.on('error', onEnd);
    socket.on('close', () => onEnd());
    const replies = async (n: number): Promise<number[]> => {
      while (codes.length < n) {
        if (closed) throw closed;
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
      return codes.splice(0, n);
    };
    let current: number | null = null;
    try {
      if ((await replies(1))[0] !== 220) throw new Error('no 220 greeting');
      socket.write('EHLO bench.example\r\n');
      if ((await replies(1))[0] !== 250) throw new Error('EHLO refused');
      for (;;) {
        if (next >= o.messages) break;
        if (performance.now() >= deadline) {
          timedOut = true;
          break;
        }
        current = next++;
        socket.write(envelope);
        const env = await replies(2 + rcpts.length);
        if (env[env.length - 1] !== 354) {
          failed++;
          if (errors.length < 10) errors.push(`message ${current}: envelope replies ${env.join(',')}`);
          current = null;
          continue;
        }
        socket.cork();
        socket.write(header(current));
        socket.write(tail);
        socket.uncork();
        const [end] = await replies(1);
        if (end! >= 200 && end! < 300 && env.every((c, i) => i === env.length - 1 || (c >= 200 && c < 300))) accepted++;
        else {
          failed++;
          if (errors.length < 10) errors.push(`message ${current}: end of data ${end}, envelope ${env.join(',')}`);
        }
        current = null;
      }
      socket.write('QUIT\r\n');
      await replies(1).catch(() => undefined);
      socket.end();
    } catch (e) {
      if (current !== null) failed++;
      if (errors.length < 10) errors.push(`session: ${(e as Error).message}`);
      socket.destroy();
    } finally {
      sockets.delete(socket);
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(o.connections, o.messages)) }, () => session()));
  } finally {
    clearTimeout(hard);
  }
  return { client: 'loadgen', argv: null, accepted, failed, elapsedMs: performance.now() - t0, timedOut, errors };
}

export function inject(client: ClientName, o: InjectOptions): Promise<InjectResult> {
  if (!(o.recipients >= 1 && o.messages >= 1 && o.connections >= 1)) throw new Error('messages, connections and recipients must be >= 1');
  return client === 'smtp-source' ? runSmtpSourceR(o) : runMultiRcpt(o);
}
