// Shared pieces of the reliability suite (test/reliability): the real node as a child process
// (`node dist/cli.js start`, fixed loopback ports so it can restart on the same data folder,
// killed by PID), a recording SMTP sink that keeps a hash per delivered message, a client that
// sends tagged messages and records every 250 with its queue id, a seeded PRNG, and /proc
// memory readings. Everything is loopback only and bounded in count and time.
import { spawn, type ChildProcess } from 'node:child_process';
import { mulberry32 } from '../../src/lib/random.js';
import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir as osTmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestContext } from 'node:test';
import { CLI, cleanEnv } from './cli.js';
import { RawClient } from './smtp-client.js';
import { freePort, onLines, pidAlive, statusKiB, waitForPort } from '../../bench/lib/proc.js';

export { freePort };

/** Print one figure line of the suite (`reliability: <name>: <figures>`). */
export function report(t: TestContext, name: string, figures: Record<string, unknown>): void {
  const line = `reliability: ${name}: ${JSON.stringify(figures)}`;
  t.diagnostic(line);
}

/** Seeded PRNG (mulberry32): the same seed gives the same run. */
export const prng = mulberry32;

/** The seed of a run: RELIABILITY_SEED when set (to replay one), else a fresh one. */
export function seedFromEnv(): number {
  const s = process.env.RELIABILITY_SEED;
  return s !== undefined && /^\d+$/.test(s) ? Number(s) : Math.floor(Math.random() * 2 ** 31);
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

// ------------------------------------------------------------------ the node as a child process

export interface NodeChild {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  alive(): boolean;
  /** Log lines at error level or above (pino level >= 50), and the last lines of stderr. */
  errors: string[];
  stderrTail(): string;
  /** SIGKILL by PID and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM (graceful), SIGKILL after timeoutMs; resolves with how it ended. */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: string | null }>;
  rssKiB(): number | null;
  /** Peak RSS since start (VmHWM). */
  hwmKiB(): number | null;
}

export interface NodeChildOptions {
  smtpPort: number;
  /** Fixed HTTP port for /v1/stats; omitted → no HTTP API. */
  httpPort?: number;
  dataDir: string;
  env?: Record<string, string>;
  /** Raise the open-file limit of the child to this (a shell's `ulimit -n` before exec). */
  nofile?: number;
  startTimeoutMs?: number;
}

/** Start `node dist/cli.js start`, resolve once the SMTP (and HTTP) ports accept connections. */
export async function startNodeChild(t: TestContext, o: NodeChildOptions): Promise<NodeChild> {
  if (!existsSync(CLI)) throw new Error(`${CLI} not found: run npm run build first`);
  const env = cleanEnv({
    POSTERN_SMTP_HOST: '127.0.0.1',
    POSTERN_SMTP_PORT: String(o.smtpPort),
    POSTERN_HTTP_PORT: o.httpPort === undefined ? '' : String(o.httpPort),
    POSTERN_HOSTNAME: 'node.rel.test',
    POSTERN_DATA_DIR: o.dataDir,
    POSTERN_QUEUE_MAP_BYTES: '256M',
    POSTERN_LOG_LEVEL: 'warn',
    POSTERN_STATS_INTERVAL_MS: '0',
    POSTERN_SHUTDOWN_TIMEOUT_MS: '2000',
    POSTERN_WORKERS: '1',
    ...o.env,
  });
  const child =
    o.nofile === undefined
      ? spawn(process.execPath, [CLI, 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
      : // exec: the shell's PID becomes the node's, so a kill by PID reaches the node.
        spawn('bash', ['-c', `ulimit -n ${o.nofile} && exec "$0" "$1" start`, process.execPath, CLI], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid!;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let ended = false;
  void exited.then(() => (ended = true));
  const errors: string[] = [];
  let stderr = '';
  onLines(child.stdout!, (line) => {
    if (/"level":(5|6)\d/.test(line) && errors.length < 50) errors.push(line.slice(0, 600));
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-8192);
  });
  const node: NodeChild = {
    pid,
    child,
    exited,
    errors,
    alive: () => !ended && pidAlive(pid),
    stderrTail: () => stderr.trim(),
    async kill() {
      if (!ended) process.kill(pid, 'SIGKILL');
      await exited;
    },
    async stop(timeoutMs = 15_000) {
      if (!ended) process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (!ended) process.kill(pid, 'SIGKILL');
      }, timeoutMs);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
    rssKiB: () => statusKiB(pid, 'VmRSS'),
    hwmKiB: () => statusKiB(pid, 'VmHWM'),
  };
  live.add(node);
  void exited.then(() => live.delete(node));
  t.after(() => node.kill());
  try {
    await waitForPort(o.smtpPort, o.startTimeoutMs ?? 30_000, node.alive);
    if (o.httpPort !== undefined) await waitForPort(o.httpPort, 10_000, node.alive);
  } catch (err) {
    await node.kill();
    throw new Error(`postern did not start: ${(err as Error).message}\n${stderr.trim()}\n${errors.join('\n')}`, { cause: err });
  }
  return node;
}

/** A node on two fresh loopback ports (SMTP and HTTP) with its queue in `dataDir`. */
export async function startNodeOnFreePorts(t: TestContext, dataDir: string, env: Record<string, string>): Promise<{ node: NodeChild; smtpPort: number; httpPort: number }> {
  const smtpPort = await freePort();
  const httpPort = await freePort();
  const node = await startNodeChild(t, { smtpPort, httpPort, dataDir, env });
  return { node, smtpPort, httpPort };
}

/** Nodes started and not yet exited: scratchDir's cleanup kills them before removing the folder. */
const live = new Set<NodeChild>();

/**
 * A fresh folder for a test, removed in t.after once every node child this file started is
 * dead (killed by PID), whatever the order the hooks were registered in; `beforeRemove` runs
 * between the two (e.g. to unmount a file system mounted inside).
 */
export function scratchDir(t: TestContext, prefix: string, beforeRemove?: (dir: string) => void): string {
  const dir = mkdtempSync(join(osTmpdir(), prefix));
  t.after(async () => {
    await Promise.all([...live].map((n) => n.kill()));
    beforeRemove?.(dir);
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  });
  return dir;
}

export interface NodeStats {
  smtp: Record<string, number>;
  delivery: { attempts: number; delivered: number; deferred: number; bounced: number; bouncesSent: number; inFlight: number } | null;
  queue: { total: number; byState: Record<string, number> } | null;
  rssBytes: number;
}

/** GET /v1/stats of a node (loopback, no token). */
export async function nodeStats(httpPort: number): Promise<NodeStats> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/v1/stats`, { signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`/v1/stats: ${res.status}`);
  return (await res.json()) as NodeStats;
}

// ------------------------------------------------------------------ tagged messages

export interface TaggedMessage {
  tag: string;
  /** The message as the node must deliver it after its own Received header (not dot-stuffed). */
  bytes: Buffer;
  hash: string;
}

const TAG_HEADER = 'X-Rel-Tag: ';

/**
 * A message of about `size` bytes whose first line is `X-Rel-Tag: <tag>`: printable ASCII
 * lines of random length, some starting with "." (dot-stuffing on both hops), CRLF-ended.
 */
export function taggedMessage(tag: string, size: number, rnd: () => number, rcpt = 'rcpt@dest.test'): TaggedMessage {
  const head = `${TAG_HEADER}${tag}\r\nFrom: <sender@rel.test>\r\nTo: <${rcpt}>\r\nSubject: reliability ${tag}\r\nMessage-ID: <${tag}@rel.test>\r\n\r\n`;
  const parts: string[] = [head];
  let n = head.length;
  while (n < size) {
    const len = 1 + Math.floor(rnd() * 120);
    let line = '';
    if (rnd() < 0.05) line = '.';
    for (let i = line.length; i < len; i++) line += String.fromCharCode(33 + Math.floor(rnd() * 94));
    line += '\r\n';
    parts.push(line);
    n += line.length;
  }
  const bytes = Buffer.from(parts.join(''), 'latin1');
  return { tag, bytes, hash: sha256(bytes) };
}

/** RFC 5321 §4.5.2 dot-stuffing plus the terminator, for a CRLF-ended message. */
export function stuffed(msg: Buffer): Buffer {
  const s = msg.toString('latin1').replace(/^\./gm, '..');
  return Buffer.from(s + '.\r\n', 'latin1');
}

/** The tag and the hash of what follows the node's Received header(s), from a delivered body. */
export function readTagged(body: Buffer): { tag: string; hash: string; prefixOk: boolean } | null {
  const at = body.indexOf(TAG_HEADER);
  if (at < 0 || (at > 0 && body[at - 1] !== 0x0a)) return null;
  const eol = body.indexOf('\r\n', at);
  if (eol < 0) return null;
  const tag = body.toString('latin1', at + TAG_HEADER.length, eol);
  // What comes before our first line must be the node's own header(s): Received and its folds.
  const prefix = body.toString('latin1', 0, at);
  const prefixOk = /^Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*$/.test(prefix);
  return { tag, hash: sha256(body.subarray(at)), prefixOk };
}

// ------------------------------------------------------------------ the recording sink

export interface SinkRecord {
  hash: string;
  count: number;
}

/**
 * A smarthost that records what arrives: per tag the hash of the message and how many times
 * it arrived; messages without a tag (bounces) and with a null sender counted apart. It
 * listens on a given port (0 = any) and can close and listen again on the same port, which
 * is how a test takes the destination down and brings it back.
 */
export class RecordingSink {
  readonly byTag = new Map<string, SinkRecord>();
  /** Arrivals whose bytes differ from an earlier arrival of the same tag. */
  mismatched = 0;
  /** Messages with no tag line, or whose header block does not start with the node's Received. */
  untagged = 0;
  badPrefix = 0;
  nullSender = 0;
  messages = 0;
  /** When each message's end of data arrived (Date.now()), in order: rates per second. */
  readonly arrivals: number[] = [];
  connections = 0;
  port = 0;
  #server: Server | null = null;
  readonly #sockets = new Set<Socket>();

  async listen(port = this.port): Promise<number> {
    const server = createServer((s) => this.#session(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port }, () => resolve());
    });
    this.#server = server;
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  /** Stop listening and reset every open connection (a destination that went down). */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #session(socket: Socket): void {
    this.connections++;
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.write('220 sink.rel.test ESMTP\r\n');
    let buf: Buffer = Buffer.alloc(0);
    let inData = false;
    let scanned = 0;
    let sender = '';
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      let out = '';
      for (;;) {
        if (inData) {
          // The data starts right after the DATA line's CRLF: an empty message is ".\r\n".
          if (buf.length >= 3 && buf[0] === 0x2e && buf[1] === 0x0d && buf[2] === 0x0a) {
            this.#arrived(Buffer.alloc(0), sender);
            buf = buf.subarray(3);
            inData = false;
            out += '250 2.0.0 Ok: stored\r\n';
            continue;
          }
          const end = buf.indexOf('\r\n.\r\n', Math.max(0, scanned - 4));
          if (end < 0) {
            scanned = buf.length;
            if (buf.length > 64 * 1024 * 1024) socket.destroy();
            break;
          }
          this.#arrived(unstuffBody(buf.subarray(0, end + 2)), sender);
          buf = buf.subarray(end + 5);
          inData = false;
          scanned = 0;
          out += '250 2.0.0 Ok: stored\r\n';
          continue;
        }
        const nl = buf.indexOf(0x0a);
        if (nl < 0) {
          if (buf.length > 4096) socket.destroy();
          break;
        }
        const line = buf.toString('latin1', 0, nl).replace(/\r$/, '');
        buf = buf.subarray(nl + 1);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') out += '250-sink.rel.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n';
        else if (verb === 'HELO') out += '250 sink.rel.test\r\n';
        else if (verb === 'MAIL') {
          sender = /<([^>]*)>/.exec(line)?.[1] ?? '';
          out += '250 2.1.0 Ok\r\n';
        } else if (verb === 'DATA') {
          inData = true;
          scanned = 0;
          out += '354 go ahead\r\n';
        } else if (verb === 'QUIT') {
          socket.end(out + '221 2.0.0 Bye\r\n');
          return;
        } else out += '250 2.0.0 Ok\r\n';
      }
      if (out !== '') socket.write(out);
    });
  }

  #arrived(body: Buffer, sender: string): void {
    this.messages++;
    this.arrivals.push(Date.now());
    if (sender === '') this.nullSender++;
    const r = readTagged(body);
    if (r === null) {
      this.untagged++;
      return;
    }
    if (!r.prefixOk) this.badPrefix++;
    const seen = this.byTag.get(r.tag);
    if (seen === undefined) this.byTag.set(r.tag, { hash: r.hash, count: 1 });
    else {
      seen.count++;
      if (seen.hash !== r.hash) this.mismatched++;
    }
  }

  /** Deliveries beyond the first of each tag (at-least-once). */
  duplicates(): number {
    let n = 0;
    for (const r of this.byTag.values()) n += r.count - 1;
    return n;
  }
}

/** Undo dot-stuffing: a line that starts with "." loses that dot. */
export function unstuffBody(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let start = raw[0] === 0x2e ? 1 : 0;
  for (let at = raw.indexOf('\n.', start); at >= 0; at = raw.indexOf('\n.', at + 2)) {
    parts.push(raw.subarray(start, at + 1));
    start = at + 2;
  }
  parts.push(raw.subarray(start));
  return Buffer.concat(parts);
}

// ------------------------------------------------------------------ the sending client

export interface Sent {
  tag: string;
  hash: string;
  size: number;
  /** The final reply code, or 0 when the connection died before a reply to the end of data. */
  code: number;
  /** The queue id from "queued as <id>" (250 only). */
  id: string | null;
  /** The text of the final reply (enhanced code first). */
  text: string;
}

export interface LoadOptions {
  port: number;
  connections: number;
  /** At most this many messages in all. */
  maxMessages: number;
  /** No message is started after this (ms from start). */
  timeLimitMs: number;
  /** Builds message number n. */
  make: (n: number) => TaggedMessage;
  rcpt?: (n: number) => string;
  /** Pause between two messages of one connection (pacing); default 0. */
  pauseMs?: number;
  /** Reply wait for each step (a node being killed never answers). */
  replyTimeoutMs?: number;
}

/**
 * Closed-loop senders: each connection sends MAIL, RCPT and DATA pipelined, then the message,
 * and records the reply to the end of data. A connection that dies (the node was killed)
 * reconnects after 50 ms until the time limit; connection refusals are retried the same way.
 * `stop()` makes every sender finish after its current message.
 */
export class Load {
  readonly sent: Sent[] = [];
  readonly replies: Record<string, number> = {};
  connectFailures = 0;
  drops = 0;
  #next = 0;
  #stopped = false;
  readonly #deadline: number;
  readonly done: Promise<void>;
  readonly #clients = new Set<RawClient>();

  constructor(readonly o: LoadOptions) {
    this.#deadline = Date.now() + o.timeLimitMs;
    this.done = Promise.all(Array.from({ length: o.connections }, () => this.#loop())).then(() => {});
  }

  stop(): Promise<void> {
    this.#stopped = true;
    return this.done;
  }

  acked(): Sent[] {
    return this.sent.filter((s) => s.code === 250);
  }

  #claim(): number | null {
    if (this.#stopped || this.#next >= this.o.maxMessages || Date.now() >= this.#deadline) return null;
    return this.#next++;
  }

  #more(): boolean {
    return !this.#stopped && this.#next < this.o.maxMessages && Date.now() < this.#deadline;
  }

  async #loop(): Promise<void> {
    const timeout = this.o.replyTimeoutMs ?? 15_000;
    while (this.#more()) {
      let c: RawClient;
      try {
        c = await RawClient.connect(this.o.port);
      } catch {
        this.connectFailures++;
        await sleep(50);
        continue;
      }
      this.#clients.add(c);
      let current: Sent | null = null;
      try {
        const g = await c.read(timeout);
        this.#count('greeting', g.code);
        if (g.code !== 220) throw new Error(`greeting ${g.code}`);
        const e = await c.cmd('EHLO client.rel.test', timeout);
        if (e.code !== 250) throw new Error(`EHLO ${e.code}`);
        for (;;) {
          const n = this.#claim();
          if (n === null) break;
          const m = this.o.make(n);
          current = { tag: m.tag, hash: m.hash, size: m.bytes.length, code: 0, id: null, text: '' };
          this.sent.push(current);
          c.write(`MAIL FROM:<sender@rel.test>\r\nRCPT TO:<${this.o.rcpt?.(n) ?? 'rcpt@dest.test'}>\r\nDATA\r\n`);
          const mail = await c.read(timeout);
          if (mail.code === 421) {
            // A draining node closes a session between two transactions with 421 (RFC 5321
            // 3.8): not a drop; the message was not taken, and the client connects again.
            this.#count('mail', 421);
            current.code = 421;
            current.text = mail.text;
            current = null;
            break;
          }
          const [rcpt, data] = await c.readN(2, timeout);
          this.#count('mail', mail.code);
          this.#count('rcpt', rcpt!.code);
          this.#count('data', data!.code);
          if (data!.code !== 354) {
            current.code = data!.code;
            current.text = data!.text;
            current = null;
            if (data!.code === 421) break;
            continue;
          }
          c.write(stuffed(m.bytes));
          const end = await c.read(timeout);
          this.#count('end', end.code);
          current.code = end.code;
          current.text = end.text;
          if (end.code === 250) current.id = /queued as (\S+)/.exec(end.text)?.[1] ?? null;
          current = null;
          if (end.code === 421) break;
          if (this.o.pauseMs) await sleep(this.o.pauseMs);
        }
        c.write('QUIT\r\n');
      } catch {
        this.drops++;
        if (current) this.#count('end', 0);
      } finally {
        c.end();
        this.#clients.delete(c);
      }
      if (this.#more()) await sleep(50);
    }
  }

  #count(stage: string, code: number): void {
    const k = `${stage}:${code}`;
    this.replies[k] = (this.replies[k] ?? 0) + 1;
  }
}

/** Poll `pred` (async allowed) every `everyMs` until it holds or timeoutMs passes; returns whether it held. */
export async function until(pred: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await pred()) return true;
    } catch {
      // e.g. the HTTP API not up yet: try again
    }
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}

/** The build folder's path of a helper script (test/helpers/<name>.ts compiled to .js). */
export function helperScript(name: string): string {
  return join(dirname(fileURLToPath(import.meta.url)), `${name}.js`);
}
