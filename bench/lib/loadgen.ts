// Our own SMTP load generator: raw `net` sockets, C connections each reused for many
// messages, and RFC 2920 PIPELINING — MAIL, RCPT and DATA go out in one write, then (after the
// 354) the message and its CRLF.CRLF in one more. Bounded by message count AND by a time limit:
// no message is started after the deadline, and every socket is destroyed a grace period
// later, so a run always stops by itself. Loopback targets only.
//
// A message is "accepted" when the reply to its CRLF.CRLF is 2xx; anything else (a 4xx/5xx at
// any step, a dropped connection, a timeout) counts it as failed. Failed messages are not
// retried, so accepted + failed = attempted <= messages.
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';

export interface LoadOptions {
  host?: string;
  port: number;
  /** Messages to send in total (over all connections). */
  messages: number;
  /** Payload bytes per message, headers excluded (like smtp-source -l). */
  size: number;
  /** Concurrent connections (sessions); each sends messages until none are left. */
  connections: number;
  /** No message is started after this; sockets are destroyed graceMs later. Default 10 min. */
  timeLimitMs?: number;
  graceMs?: number;
  from?: string;
  to?: string;
  helo?: string;
  /** Use PIPELINING when the server offers it (default true). */
  pipelining?: boolean;
  /** Messages per connection before QUIT and a new connection (default: unlimited, i.e. reuse). */
  messagesPerConnection?: number;
  /** Reconnections allowed per connection slot after a drop (default 3). */
  maxReconnects?: number;
  /** A reply that takes longer than this fails the connection (default 60 s). */
  replyTimeoutMs?: number;
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export interface LoadResult {
  messages: number;
  attempted: number;
  accepted: number;
  failed: number;
  connectionsOpened: number;
  connectionErrors: number;
  timedOut: boolean;
  elapsedMs: number;
  msgsPerSec: number;
  /** Payload megabytes (10^6 bytes of `size`) accepted per second. */
  mbPerSec: number;
  /** Bytes on the wire per message (headers, payload, terminator). */
  wireBytesPerMessage: number;
  /** Milliseconds from a message's MAIL FROM write to its 250, over accepted messages. */
  latencyMs: Percentiles;
  /** Reply codes counted per stage, e.g. {"data-end:250": 1000, "rcpt:452": 3}. */
  replies: Record<string, number>;
  /** The first few error descriptions, for a report. */
  errors: string[];
}

interface Reply {
  code: number;
  text: string;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
  const v = Float64Array.from(values).sort();
  const at = (q: number) => v[Math.min(v.length - 1, Math.floor(q * v.length))]!;
  let sum = 0;
  for (const x of v) sum += x;
  const r = (x: number) => Math.round(x * 100) / 100;
  return { p50: r(at(0.5)), p90: r(at(0.9)), p99: r(at(0.99)), max: r(v[v.length - 1]!), mean: r(sum / v.length) };
}

/** The payload: exactly `size` bytes of CRLF-ended lines of 78 (at most 79) characters. */
export function makePayload(size: number): Buffer {
  const buf = Buffer.alloc(size, 'x');
  if (size < 2) return buf;
  let pos = 0;
  while (pos < size) {
    const rem = size - pos;
    let line = Math.min(80, rem); // with its CRLF
    if (rem - line === 1) line = 81; // never leave one byte over
    buf[pos + line - 2] = 13;
    buf[pos + line - 1] = 10;
    pos += line;
  }
  return buf;
}

class ReplyReader {
  #buf = '';
  /** Where the next unread line of the reply being received starts in #buf. */
  #scan = 0;
  #waiting: Array<{ resolve: (r: Reply) => void; reject: (e: Error) => void }> = [];
  #ready: Reply[] = [];
  #error: Error | null = null;

  constructor(socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => this.#onData(d));
    socket.on('close', () => this.#fail(new Error('connection closed')));
    socket.on('error', (err) => this.#fail(err));
  }

  #onData(d: string): void {
    this.#buf += d;
    for (;;) {
      const nl = this.#buf.indexOf('\r\n', this.#scan);
      if (nl < 0) return;
      const lineStart = this.#scan;
      // "250-..." continues the reply; a line with a space (or nothing) after the code ends it.
      if (nl - lineStart >= 4 && this.#buf.charCodeAt(lineStart + 3) === 45 /* '-' */) {
        this.#scan = nl + 2;
        continue;
      }
      const reply: Reply = { code: Number(this.#buf.slice(lineStart, lineStart + 3)) || 0, text: this.#buf.slice(0, nl) };
      this.#buf = this.#buf.slice(nl + 2);
      this.#scan = 0;
      const w = this.#waiting.shift();
      if (w) w.resolve(reply);
      else this.#ready.push(reply);
    }
  }

  #fail(err: Error): void {
    if (this.#error) return;
    this.#error = err;
    for (const w of this.#waiting.splice(0)) w.reject(err);
  }

  next(): Promise<Reply> {
    const r = this.#ready.shift();
    if (r) return Promise.resolve(r);
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const host = opts.host ?? '127.0.0.1';
  if (!isLoopback(host)) throw new Error(`the load generator sends only to loopback, not ${host}`);
  if (!(opts.messages >= 0 && opts.connections >= 1 && opts.size >= 0)) throw new Error('messages >= 0, connections >= 1 and size >= 0 required');
  const timeLimitMs = opts.timeLimitMs ?? 600_000;
  const graceMs = opts.graceMs ?? 10_000;
  const from = opts.from ?? 'bench@bench.example';
  const to = opts.to ?? 'sink@example.com';
  const helo = opts.helo ?? 'bench.example';
  const pipelining = opts.pipelining ?? true;
  const maxReconnects = opts.maxReconnects ?? 3;
  const perConnection = opts.messagesPerConnection ?? Infinity;
  const replyTimeoutMs = opts.replyTimeoutMs ?? 60_000;
  const runId = randomBytes(4).toString('hex');

  const envelope = Buffer.from(`MAIL FROM:<${from}>\r\nRCPT TO:<${to}>\r\nDATA\r\n`, 'latin1');
  const mailCmd = Buffer.from(`MAIL FROM:<${from}>\r\n`, 'latin1');
  const rcptCmd = Buffer.from(`RCPT TO:<${to}>\r\n`, 'latin1');
  const dataCmd = Buffer.from('DATA\r\n', 'latin1');
  const payload = makePayload(opts.size);
  // The payload ends in CRLF (or is empty after the header block's blank line), so ".\r\n" ends
  // it; a 1-byte payload gets a CRLF of its own.
  const endsInCrlf = payload.length === 0 || (payload.length >= 2 && payload[payload.length - 1] === 10);
  const bodyTail = Buffer.concat([payload, Buffer.from(endsInCrlf ? '.\r\n' : '\r\n.\r\n', 'latin1')]);
  const date = new Date().toUTCString().replace('GMT', '+0000');
  const headerFor = (i: number) =>
    Buffer.from(`From: <${from}>\r\nTo: <${to}>\r\nSubject: bench ${i}\r\nDate: ${date}\r\nMessage-ID: <${runId}.${i}@bench.example>\r\n\r\n`, 'latin1');
  const wireBytesPerMessage = headerFor(0).length + bodyTail.length;

  const replies: Record<string, number> = {};
  const errors: string[] = [];
  const latencies: number[] = [];
  const sockets = new Set<Socket>();
  let next = 0;
  let accepted = 0;
  let failed = 0;
  let connectionsOpened = 0;
  let connectionErrors = 0;
  let timedOut = false;

  const count = (stage: string, code: number) => {
    const k = `${stage}:${code}`;
    replies[k] = (replies[k] ?? 0) + 1;
  };
  const note = (msg: string) => {
    if (errors.length < 10) errors.push(msg);
  };

  const start = performance.now();
  const deadline = start + timeLimitMs;
  const hardStop = setTimeout(() => {
    timedOut = true;
    for (const s of sockets) s.destroy(new Error('time limit reached'));
  }, timeLimitMs + graceMs);

  const claim = (): number | null => {
    if (next >= opts.messages) return null;
    if (performance.now() >= deadline) {
      timedOut = true;
      return null;
    }
    return next++;
  };

  async function session(slot: number): Promise<'done' | 'dropped'> {
    const socket = connect({ host, port: opts.port });
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.setTimeout(replyTimeoutMs, () => socket.destroy(new Error(`no reply within ${replyTimeoutMs} ms`)));
    const reader = new ReplyReader(socket);
    connectionsOpened++;
    let current: number | null = null;
    try {
      const greeting = await reader.next();
      count('greeting', greeting.code);
      if (greeting.code !== 220) throw new Error(`greeting ${greeting.text}`);
      socket.write(`EHLO ${helo}\r\n`);
      const ehlo = await reader.next();
      count('ehlo', ehlo.code);
      if (ehlo.code !== 250) throw new Error(`EHLO ${ehlo.text}`);
      const pipe = pipelining && /^250[ -]PIPELINING\b/im.test(ehlo.text);
      for (let sent = 0; sent < perConnection; sent++) {
        current = claim();
        if (current === null) break;
        const t0 = performance.now();
        let mail: Reply;
        let rcpt: Reply;
        let data: Reply;
        if (pipe) {
          socket.write(envelope);
          mail = await reader.next();
          rcpt = await reader.next();
          data = await reader.next();
        } else {
          socket.write(mailCmd);
          mail = await reader.next();
          socket.write(rcptCmd);
          rcpt = await reader.next();
          socket.write(dataCmd);
          data = await reader.next();
        }
        count('mail', mail.code);
        count('rcpt', rcpt.code);
        count('data', data.code);
        if (data.code === 354) {
          socket.cork();
          socket.write(headerFor(current));
          socket.write(bodyTail);
          socket.uncork();
          const end = await reader.next();
          count('data-end', end.code);
          if (end.code >= 200 && end.code < 300 && mail.code === 250 && rcpt.code < 300) {
            accepted++;
            latencies.push(performance.now() - t0);
          } else {
            failed++;
            note(`message ${current}: ${end.code >= 300 ? end.text : `MAIL ${mail.code} RCPT ${rcpt.code} but end of data ${end.code}`}`);
          }
          if (end.code === 421) throw new Error(`421 after data: ${end.text}`);
        } else {
          failed++;
          note(`message ${current}: MAIL ${mail.text} / RCPT ${rcpt.text} / DATA ${data.text}`);
          if (data.code === 421 || mail.code === 421 || rcpt.code === 421) throw new Error('421');
        }
        current = null;
      }
      socket.write('QUIT\r\n');
      const bye = await reader.next().catch(() => null);
      if (bye) count('quit', bye.code);
      socket.end();
      return 'done';
    } catch (err) {
      if (current !== null) {
        failed++;
        note(`message ${current}: ${(err as Error).message}`);
      }
      connectionErrors++;
      note(`connection slot ${slot}: ${(err as Error).message}`);
      socket.destroy();
      return 'dropped';
    } finally {
      sockets.delete(socket);
    }
  }

  async function slotLoop(slot: number): Promise<void> {
    let drops = 0;
    while (drops <= maxReconnects) {
      if (next >= opts.messages || performance.now() >= deadline) return;
      const how = await session(slot);
      if (how === 'dropped') drops++;
    }
  }

  try {
    await Promise.all(Array.from({ length: Math.min(opts.connections, Math.max(1, opts.messages)) }, (_, i) => slotLoop(i)));
  } finally {
    clearTimeout(hardStop);
  }
  const elapsedMs = performance.now() - start;
  const secs = elapsedMs / 1000;
  return {
    messages: opts.messages,
    attempted: next,
    accepted,
    failed,
    connectionsOpened,
    connectionErrors,
    timedOut,
    elapsedMs: Math.round(elapsedMs * 10) / 10,
    msgsPerSec: secs > 0 ? accepted / secs : 0,
    mbPerSec: secs > 0 ? (accepted * opts.size) / 1e6 / secs : 0,
    wireBytesPerMessage,
    latencyMs: percentiles(latencies),
    replies,
    errors,
  };
}
