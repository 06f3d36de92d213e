// A tiny discarding SMTP server for measuring a load generator's ceiling: it answers 250 to
// everything (220 greeting, 354 to DATA, 221 to QUIT), reads DATA up to CRLF.CRLF and throws
// the bytes away. It advertises PIPELINING and answers every command found in one read with
// one write, so a pipelining client is limited by itself and by loopback, not by the sink.
// It stores nothing and fsyncs nothing: it is not a peer for durability, only a ceiling.
// Optionally it throttles as a large provider does (the shaping scenario): past
// `maxConnections` open sessions a new one is greeted "421 4.7.0 Too many connections" and
// closed, and past `ratePerSec` messages accepted in the last second a message gets
// "451 4.7.1 Rate limit exceeded, try again later" after its data.
//
// In-process: `const sink = await startSink({ port: 0 })`. As a separate process (so that it
// has its own event loop and the client measured against it doesn't share one):
//   node build/bench/lib/sink.js [--host 127.0.0.1] [--port 0] [--max-seconds 3600]
// prints one JSON line {"sinkPort":N,"pid":P} when listening, and on SIGTERM/SIGINT (or after
// --max-seconds) prints {"messages":N,"bytes":B,"connections":C} and exits.
import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';

export interface SinkStats {
  connections: number;
  messages: number;
  /** Bytes of message data received (between 354 and CRLF.CRLF, dot-stuffing included). */
  bytes: number;
  /** Connections greeted 421 (past maxConnections). */
  refused: number;
  /** Messages answered 451 (past ratePerSec). */
  rateRefused: number;
  /** Most sessions open at once (refused ones not counted). */
  maxOpen: number;
}

export interface SinkOptions {
  host?: string;
  port?: number;
  /** Sessions open at once; more are greeted 421 4.7.0 and closed. Default unlimited. */
  maxConnections?: number;
  /** Messages accepted per second (sliding window); past it 451 4.7.1 after the data. Default unlimited. */
  ratePerSec?: number;
}

/** Acceptance times of the last second, for the rate limit. */
class RateWindow {
  readonly #times: number[] = [];
  constructor(readonly perSec: number) {}
  /** True (and counted) when one more message fits in the last second. */
  take(now: number): boolean {
    while (this.#times.length > 0 && this.#times[0]! <= now - 1000) this.#times.shift();
    if (this.#times.length >= this.perSec) return false;
    this.#times.push(now);
    return true;
  }
}

export interface Sink {
  readonly port: number;
  readonly stats: SinkStats;
  close(): Promise<void>;
}

const CRLF_DOT_CRLF = Buffer.from('\r\n.\r\n', 'latin1');
const GREETING = '220 sink.localdomain ESMTP discard sink\r\n';
const EHLO = '250-sink.localdomain\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 2147483647\r\n250 ENHANCEDSTATUSCODES\r\n';
const OK = '250 2.0.0 Ok\r\n';
const GO = '354 End data with <CR><LF>.<CR><LF>\r\n';
const QUEUED = '250 2.0.0 Ok: discarded\r\n';
const TOO_FAST = '451 4.7.1 Rate limit exceeded, try again later\r\n';
const TOO_MANY = '421 4.7.0 Too many connections, try again later\r\n';
const BYE = '221 2.0.0 Bye\r\n';

/** One connection's state: command lines, or message data until CRLF.CRLF. */
class SinkSession {
  #line = Buffer.alloc(0);
  /** In DATA: the last bytes seen (up to 4), to find CRLF.CRLF across reads. */
  #tail: Buffer | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly stats: SinkStats,
    private readonly rate: RateWindow | null = null,
  ) {
    socket.write(GREETING);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', () => socket.destroy());
  }

  #onData(chunk: Buffer): void {
    let out = '';
    let pos = 0;
    while (pos < chunk.length) {
      if (this.#tail !== null) {
        // Message data: look for CRLF.CRLF, the CRLF possibly ending the previous read (or being
        // the one that ended the DATA line, for an empty message).
        const end = this.#findEnd(chunk, pos);
        if (end < 0) {
          this.stats.bytes += chunk.length - pos;
          this.#tail = chunk.length - pos >= 4 ? chunk.subarray(chunk.length - 4) : Buffer.concat([this.#tail, chunk.subarray(pos)]).subarray(-4);
          pos = chunk.length;
          break;
        }
        this.stats.bytes += end - pos;
        this.#tail = null;
        if (this.rate && !this.rate.take(Date.now())) {
          this.stats.rateRefused++;
          out += TOO_FAST;
        } else {
          this.stats.messages++;
          out += QUEUED;
        }
        pos = end;
        continue;
      }
      const nl = chunk.indexOf(10, pos);
      if (nl < 0) {
        this.#line = Buffer.concat([this.#line, chunk.subarray(pos)]);
        if (this.#line.length > 65536) {
          this.socket.destroy();
          return;
        }
        break;
      }
      const line = this.#line.length > 0 ? Buffer.concat([this.#line, chunk.subarray(pos, nl + 1)]) : chunk.subarray(pos, nl + 1);
      this.#line = Buffer.alloc(0);
      pos = nl + 1;
      const verb = line.toString('latin1', 0, Math.min(4, line.length)).toUpperCase();
      if (verb === 'DATA') {
        out += GO;
        this.#tail = Buffer.from('\r\n', 'latin1');
      } else if (verb === 'EHLO') {
        out += EHLO;
      } else if (verb === 'QUIT') {
        out += BYE;
        this.socket.end(out);
        return;
      } else {
        out += OK;
      }
    }
    if (out !== '') this.socket.write(out);
  }

  /** Index just past CRLF.CRLF in chunk (searching from pos, with #tail before it), or -1. */
  #findEnd(chunk: Buffer, pos: number): number {
    const tail = this.#tail!;
    // The terminator may straddle the previous read: check the first few bytes with the tail.
    if (tail.length > 0) {
      const head = chunk.subarray(pos, Math.min(chunk.length, pos + 4));
      const joined = Buffer.concat([tail, head]);
      const i = joined.indexOf(CRLF_DOT_CRLF);
      if (i >= 0) return pos + (i + CRLF_DOT_CRLF.length - tail.length);
    }
    const i = chunk.indexOf(CRLF_DOT_CRLF, pos);
    return i < 0 ? -1 : i + CRLF_DOT_CRLF.length;
  }
}

export async function startSink(opts: SinkOptions = {}): Promise<Sink> {
  const host = opts.host ?? '127.0.0.1';
  if (!host.startsWith('127.') && host !== '::1' && host !== 'localhost') throw new Error(`the sink binds loopback only, not ${host}`);
  const stats: SinkStats = { connections: 0, messages: 0, bytes: 0, refused: 0, rateRefused: 0, maxOpen: 0 };
  const sockets = new Set<Socket>();
  const rate = opts.ratePerSec !== undefined ? new RateWindow(opts.ratePerSec) : null;
  let open = 0;
  const server: Server = createServer((socket) => {
    stats.connections++;
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    if (opts.maxConnections !== undefined && open >= opts.maxConnections) {
      stats.refused++;
      socket.on('error', () => socket.destroy());
      socket.end(TOO_MANY);
      return;
    }
    open++;
    stats.maxOpen = Math.max(stats.maxOpen, open);
    socket.on('close', () => open--);
    new SinkSession(socket, stats, rate);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: opts.port ?? 0, backlog: 1024 }, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function arg(argv: string[], name: string, dflt: string): string {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
}

async function main(argv: string[]): Promise<void> {
  const sink = await startSink({ host: arg(argv, '--host', '127.0.0.1'), port: Number(arg(argv, '--port', '0')) });
  process.stdout.write(JSON.stringify({ sinkPort: sink.port, pid: process.pid }) + '\n');
  const maxMs = Number(arg(argv, '--max-seconds', '3600')) * 1000;
  let done = false;
  const stop = () => {
    if (done) return;
    done = true;
    void sink.close().then(() => {
      process.stdout.write(JSON.stringify(sink.stats) + '\n', () => process.exit(0));
    });
  };
  setTimeout(stop, maxMs).unref();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Keep the process alive until stopped (the server keeps the loop busy anyway).
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
