// A tiny scripted SMTP/LMTP server on 127.0.0.1:0 for the delivery tests: the test sets the
// greeting, the EHLO/LHLO capabilities and any reply per command; the server records every
// command line, which lines arrived in one read (to see PIPELINING), and each message, sent
// with DATA or with BDAT chunks (RFC 3030; the chunk's reply comes once its bytes are in).
// It can also be slow or hostile: a reply can come after a delay, the connection can be cut
// (at a command, or in the middle of the message data), and a Flood writes bytes without end
// (replies nobody asked for, an endless multi-line reply, a line without CRLF), bounded in
// time and bytes; it records when the client closed the connection. Its TLS can be broken
// (brokenTls): a 220 to STARTTLS, then garbage, a close, a reset or silence for the handshake,
// or a real handshake that offers only protocol versions a client refuses.
import { createServer, type Server, type Socket } from 'node:net';
import { TLSSocket, type SecureVersion } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import type { DeliveryRequest } from '../../src/delivery/types.js';
import type { MessageRecord, Recipient } from '../../src/queue/types.js';

export interface ScriptedMessage {
  mailFrom: string;
  rcptTo: string[];
  /** Recipients whose RCPT got a 2xx. */
  accepted: string[];
  /** The bytes after DATA as sent (still dot-stuffed), without the final ".\r\n". */
  raw: Buffer;
  /** Unstuffed. */
  body: Buffer;
  /** The sizes of the BDAT chunks it came in (absent: it came with DATA). */
  chunks?: number[];
}

export interface ScriptSession {
  id: number;
  /** The client's address as the server saw it (an egress source's bound address). */
  remoteAddress: string;
  commands: string[];
  /** Command lines per socket read: several in one read means the client pipelined. */
  batches: string[][];
  messages: ScriptedMessage[];
  tls: boolean;
  /** The TLS version negotiated ("TLSv1.3"), once the handshake is done. */
  tlsProtocol: string | null;
  /** The transaction being built (MAIL seen). */
  current: ScriptedMessage | null;
  /** Bytes a Flood has handed to the socket so far. */
  flooded: number;
  /** Bytes of message data received after a 354 (complete message or not). */
  dataBytes: number;
  /** The server cut this connection (a Cut, or cutMidData). */
  cut: boolean;
  /** Date.now() when the connection closed (either side), or null while open. */
  closedAt: number | null;
  /** Resolves when the connection has closed. */
  closed: Promise<void>;
  /** Write raw text (nothing added) or start a Flood, now, whatever the client is doing. */
  write(what: string | Flood): void;
}

/** Drop the connection at once, without a reply: a peer that crashed or lost the link. */
export interface Cut {
  cut: true;
}

/**
 * Answer after `delayMs` (the session keeps reading meanwhile). `reply` is what to send then:
 * the default reply when left out, or null for nothing.
 */
export interface Delayed {
  delayMs: number;
  reply?: string | Flood | Cut | null;
}

/**
 * Hostile output: `prefix` once, then `data` repeated (in blocks of about 64 KiB, waiting for
 * the socket to drain) until the client closes, `forMs` passes (default 3000) or `maxBytes`
 * is written (default 2 GiB). E.g. data "250 ok\r\n" floods replies; "250-x\r\n" is a
 * multi-line reply without end; prefix "250 " with data "x" is a line without CRLF.
 */
export interface Flood {
  flood: string;
  prefix?: string;
  forMs?: number;
  maxBytes?: number;
}

export type BrokenTls = 'garbage' | 'close' | 'reset' | 'silent';

/** What the server does in answer to a command. */
export type ReplyAction = string | Flood | Cut | Delayed;

/**
 * Return a raw reply (lines joined by CRLF, no final CRLF) to override the default, `null` to
 * send nothing (the client then times out), a Flood, a Cut, a Delayed reply, or undefined for
 * the default. `cmd` is the command line, or "." for the end of the data (for LMTP, return one
 * reply line per accepted recipient).
 */
export type ReplyScript = (cmd: string, s: ScriptSession) => ReplyAction | null | undefined;

export interface ScriptedServerOptions {
  mode?: 'smtp' | 'lmtp';
  /** Default "220 scripted.test ESMTP". A 421 greeting closes the connection after it; null sends nothing. */
  greeting?: string | Flood | null;
  /** EHLO/LHLO keyword lines; null → EHLO is 502 (the client must fall back to HELO). */
  capabilities?: string[] | null;
  reply?: ReplyScript;
  tls?: { cert: string; key: string; minVersion?: SecureVersion; maxVersion?: SecureVersion; ciphers?: string };
  /**
   * A 220 to STARTTLS (the default reply, even without `tls`), then, once the client's first
   * TLS bytes arrive: 'garbage' answers them in clear ("500 …"), 'close' ends the connection,
   * 'reset' destroys it, 'silent' never answers (the handshake times out). A function picks
   * per session (undefined: STARTTLS as usual).
   */
  brokenTls?: BrokenTls | ((s: ScriptSession) => BrokenTls | undefined);
  /** Asked after each read of message data (s.dataBytes counts it): true cuts the connection there. */
  cutMidData?: (s: ScriptSession) => boolean;
}

export interface ScriptedServer {
  port: number;
  sessions: ScriptSession[];
  /** Every message of every session. */
  messages(): ScriptedMessage[];
  /** Connections open now, and the most ever open at once. */
  readonly open: number;
  readonly maxOpen: number;
  close(): Promise<void>;
}

export const DEFAULT_CAPS = ['PIPELINING', 'SIZE 10485760', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'DSN'];

export async function startScriptedServer(t: TestContext, o: ScriptedServerOptions = {}): Promise<ScriptedServer> {
  const sessions: ScriptSession[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let open = 0;
  let maxOpen = 0;
  const mode = o.mode ?? 'smtp';
  const caps = o.capabilities === undefined ? DEFAULT_CAPS : o.capabilities;
  const tlsCreds = o.tls ? { cert: readFileSync(o.tls.cert), key: readFileSync(o.tls.key) } : null;

  const server: Server = createServer((plain) => {
    sockets.add(plain);
    open++;
    maxOpen = Math.max(maxOpen, open);
    plain.on('close', () => {
      sockets.delete(plain);
      open--;
    });
    plain.on('error', () => {});
    let closeResolve!: () => void;
    const s: ScriptSession = {
      id: sessions.length + 1, remoteAddress: plain.remoteAddress ?? '', commands: [], batches: [], messages: [], tls: false, tlsProtocol: null, current: null,
      flooded: 0, dataBytes: 0, cut: false, closedAt: null, closed: new Promise<void>((r) => (closeResolve = r)),
      write: (what) => (typeof what === 'string' ? void (sock.destroyed || sock.write(what)) : flood(what)),
    };
    plain.on('close', () => {
      s.closedAt = Date.now();
      closeResolve();
    });
    sessions.push(s);
    let sock: Socket = plain;
    let buf: Buffer = Buffer.alloc(0);
    let inData = false;
    /** A BDAT chunk being read: its command line, bytes still owed, and what came so far. */
    let bdat: { line: string; left: number; last: boolean; parts: Buffer[] } | null = null;
    const bdatParts: Buffer[] = [];
    const bdatSizes: number[] = [];
    const flood = (f: Flood): void => {
      if (f.prefix !== undefined && !sock.destroyed) sock.write(f.prefix);
      const unit = Buffer.from(f.flood, 'utf8');
      const block = Buffer.alloc(unit.length * Math.max(1, Math.floor(65536 / unit.length)), unit);
      const until = Date.now() + (f.forMs ?? 3000);
      const maxBytes = f.maxBytes ?? 2 ** 31;
      const target = sock;
      const pump = (): void => {
        while (!target.destroyed && Date.now() < until && s.flooded < maxBytes) {
          s.flooded += block.length;
          if (!target.write(block)) {
            target.once('drain', pump);
            return;
          }
        }
      };
      pump();
    };
    const cut = (): void => {
      s.cut = true;
      sock.destroy();
    };
    const send = (r: ReplyAction | null, dflt?: string): void => {
      if (r === null || sock.destroyed) return;
      if (typeof r === 'string') sock.write(r + '\r\n');
      else if ('cut' in r) cut();
      else if ('delayMs' in r) {
        const later = r.reply === undefined ? (dflt ?? null) : r.reply;
        const tm = setTimeout(() => {
          timers.delete(tm);
          send(later);
        }, r.delayMs);
        timers.add(tm);
      } else flood(r);
    };
    /** The text of a reply, to look at its code ('' for a Flood or a Cut; a Delayed one's own). */
    const txt = (r: ReplyAction | null, dflt: string): string | null => {
      if (r === null || typeof r === 'string') return r;
      if ('delayMs' in r) return r.reply === undefined ? dflt : txt(r.reply, dflt);
      return '';
    };
    /** The script's answer to `cmd`, the default in its place, and the text that decides. */
    const pick = (cmd: string, dflt: string): { r: ReplyAction | null; text: string | null; dflt: string } => {
      const got = o.reply?.(cmd, s);
      const r = got === undefined ? dflt : got;
      return { r, text: txt(r, dflt), dflt };
    };
    const answer = (p: { r: ReplyAction | null; dflt: string }): void => send(p.r, p.dflt);

    const greeting = o.greeting === undefined ? '220 scripted.test ESMTP' : o.greeting;
    if (greeting !== null) send(greeting);
    if (greeting !== null && txt(greeting, '')?.startsWith('421')) {
      sock.end();
      return;
    }

    const onCommand = (line: string): void => {
      s.commands.push(line);
      const verb = line.slice(0, 4).toUpperCase();
      if ((verb === 'EHLO' && mode === 'smtp') || (verb === 'LHLO' && mode === 'lmtp')) {
        const dflt = caps === null ? '502 5.5.1 EHLO not implemented' : ['scripted.test', ...caps].map((l, i, a) => `250${i === a.length - 1 ? ' ' : '-'}${l}`).join('\r\n');
        answer(pick(line, dflt));
      } else if (verb === 'HELO' && mode === 'smtp') {
        answer(pick(line, '250 scripted.test'));
      } else if (line.toUpperCase() === 'STARTTLS') {
        const broken = typeof o.brokenTls === 'function' ? o.brokenTls(s) : o.brokenTls;
        const r = pick(line, tlsCreds || broken ? '220 2.0.0 Ready to start TLS' : '502 5.5.1 no TLS');
        answer(r);
        if (broken && typeof r.r === 'string' && r.r.startsWith('220')) {
          sock.off('data', onData);
          const target = sock;
          target.once('data', () => {
            if (broken === 'garbage') target.write('500 5.5.1 What is this?\r\n');
            else if (broken === 'close') target.end();
            else if (broken === 'reset') target.resetAndDestroy();
          });
          return;
        }
        // Only a 220 sent now starts TLS: the handshake must follow that very reply.
        if (typeof r.r === 'string' && r.r.startsWith('220') && tlsCreds) {
          sock.off('data', onData);
          const v = o.tls!;
          const tls = new TLSSocket(sock, { isServer: true, cert: tlsCreds.cert, key: tlsCreds.key, ...(v.minVersion ? { minVersion: v.minVersion } : {}), ...(v.maxVersion ? { maxVersion: v.maxVersion } : {}), ...(v.ciphers ? { ciphers: v.ciphers } : {}) });
          tls.on('error', () => {});
          tls.on('secure', () => (s.tlsProtocol = tls.getProtocol()));
          tls.on('data', onData);
          sock = tls;
          s.tls = true;
        }
      } else if (verb === 'MAIL') {
        const r = pick(line, '250 2.1.0 Sender ok');
        if (r.text?.startsWith('2')) s.current = { mailFrom: line, rcptTo: [], accepted: [], raw: Buffer.alloc(0), body: Buffer.alloc(0) };
        answer(r);
      } else if (verb === 'RCPT') {
        const r = pick(line, s.current ? '250 2.1.5 Recipient ok' : '503 5.5.1 Need MAIL');
        if (s.current) {
          s.current.rcptTo.push(line);
          if (r.text?.startsWith('2')) s.current.accepted.push(line);
        }
        answer(r);
      } else if (verb === 'DATA') {
        const ok = s.current !== null && s.current.accepted.length > 0;
        const r = pick(line, ok ? '354 go ahead' : '554 5.5.1 No valid recipients');
        if (r.text?.startsWith('354')) inData = true;
        answer(r);
      } else if (verb === 'BDAT') {
        const m = /^BDAT (\d{1,9})( LAST)?$/i.exec(line);
        if (!m) answer(pick(line, '501 5.5.4 Syntax: BDAT size [LAST]'));
        // The chunk is read whatever happens; its reply comes after it (chunkDone).
        else bdat = { line, left: Number(m[1]), last: m[2] !== undefined, parts: [] };
      } else if (verb === 'RSET') {
        s.current = null;
        answer(pick(line, '250 2.0.0 Reset'));
      } else if (verb === 'NOOP') {
        answer(pick(line, '250 2.0.0 Ok'));
      } else if (verb === 'QUIT') {
        answer(pick(line, '221 2.0.0 Bye'));
        sock.end();
      } else {
        answer(pick(line, '500 5.5.1 Unknown command'));
      }
    };

    const endOfData = (raw: Buffer): void => {
      const m = s.current ?? { mailFrom: '', rcptTo: [], accepted: [], raw, body: raw };
      m.raw = raw;
      m.body = unstuff(raw);
      s.messages.push(m);
      s.current = null;
      const dflt = mode === 'lmtp' ? m.accepted.map(() => '250 2.0.0 delivered').join('\r\n') : '250 2.0.0 Ok: queued';
      const r = pick('.', dflt);
      if (r.r === '') return;
      answer(r);
    };

    const chunkDone = (c: { line: string; last: boolean; parts: Buffer[] }): void => {
      const data = Buffer.concat(c.parts);
      if (s.current === null || s.current.accepted.length === 0) {
        bdatParts.length = 0;
        bdatSizes.length = 0;
        answer(pick(c.line, s.current === null ? '503 5.5.1 Need MAIL' : '554 5.5.1 No valid recipients'));
        return;
      }
      bdatParts.push(data);
      bdatSizes.push(data.length);
      if (!c.last) {
        answer(pick(c.line, `250 2.0.0 ${data.length} octets received`));
        return;
      }
      const m = s.current;
      m.raw = m.body = Buffer.concat(bdatParts);
      m.chunks = [...bdatSizes];
      bdatParts.length = 0;
      bdatSizes.length = 0;
      s.messages.push(m);
      s.current = null;
      answer(pick(c.line, mode === 'lmtp' ? m.accepted.map(() => '250 2.0.0 delivered').join('\r\n') : '250 2.0.0 Ok: queued'));
    };

    const onData = (chunk: Buffer): void => {
      if (inData) {
        // Data is sent only after the 354, so all of this read is message data.
        s.dataBytes += chunk.length;
        if (o.cutMidData?.(s)) return cut();
      }
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const batch: string[] = [];
      for (let guard = 0; guard < 100_000; guard++) {
        if (bdat !== null) {
          if (bdat.left > 0 && buf.length === 0) break;
          const take = Math.min(bdat.left, buf.length);
          bdat.parts.push(buf.subarray(0, take));
          s.dataBytes += take;
          buf = buf.subarray(take);
          bdat.left -= take;
          if (bdat.left > 0) break;
          const done = bdat;
          bdat = null;
          chunkDone(done);
          continue;
        }
        if (inData) {
          // The data starts right after a CRLF (the DATA line), so look for CRLF "." CRLF with
          // a virtual CRLF in front.
          const view = Buffer.concat([Buffer.from('\r\n'), buf]);
          const at = view.indexOf('\r\n.\r\n');
          if (at < 0) break;
          const raw = at === 0 ? Buffer.alloc(0) : view.subarray(2, at + 2);
          buf = view.subarray(at + 5);
          inData = false;
          endOfData(raw);
          continue;
        }
        const nl = buf.indexOf(0x0a);
        if (nl < 0) break;
        const line = buf.toString('utf8', 0, nl > 0 && buf[nl - 1] === 0x0d ? nl - 1 : nl);
        buf = buf.subarray(nl + 1);
        batch.push(line);
        onCommand(line);
      }
      if (batch.length > 0) s.batches.push(batch);
    };
    sock.on('data', onData);
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      for (const tm of timers) clearTimeout(tm);
      for (const so of sockets) so.destroy();
      server.close(() => resolve());
    });
    return closed;
  };
  t.after(close);
  return {
    port: addr.port,
    sessions,
    messages: () => sessions.flatMap((x) => x.messages),
    get open() {
      return open;
    },
    get maxOpen() {
      return maxOpen;
    },
    close,
  };
}

/** Undo dot-stuffing: a line that starts with "." loses that dot. */
export function unstuff(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  if (raw[0] === 0x2e) start = 1;
  for (let at = raw.indexOf('\n.', start); at >= 0; at = raw.indexOf('\n.', at + 2)) {
    parts.push(raw.subarray(start, at + 1));
    start = at + 2;
  }
  parts.push(raw.subarray(start));
  return Buffer.concat(parts);
}

/** A DeliveryRequest for the delivery tests: the given envelope, all recipients pending. */
export function deliveryRequest(
  sender: string,
  recipients: Array<string | { address: string; notify?: string[]; orcpt?: string }>,
  body: Buffer | string,
  extra: Partial<Omit<MessageRecord, 'recipients' | 'sender'>> = {},
): DeliveryRequest {
  const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const rcpts: Recipient[] = recipients.map((r) => {
    const x = typeof r === 'string' ? { address: r } : r;
    const at = x.address.lastIndexOf('@');
    return { ...x, domain: at < 0 ? '' : x.address.slice(at + 1).toLowerCase(), state: 'pending', attempts: 0 };
  });
  const message: MessageRecord = {
    id: 'T' + Math.random().toString(36).slice(2, 10),
    seq: 1,
    priority: 1,
    sender,
    recipients: rcpts,
    state: 'leased',
    receivedAt: Date.now(),
    nextAttemptAt: Date.now(),
    attempts: 0,
    size: b.length,
    ...extra,
  };
  return { message, recipients: rcpts, body: b };
}
