// Recipient verification at RCPT time by asking the LMTP server that will take the message
// (POSTERN_RCPT_VERIFY=lmtp): LHLO, MAIL FROM:<>, RCPT TO:<address>, RSET, QUIT on a connection
// of its own (RFC 2033 §4.1; Dovecot answers each RCPT from its user database). It lives on
// the smtp side and opens its own socket with protocol/'s reply reader: smtp never imports
// delivery (they meet in the queue). Answers are cached briefly, in-flight probes are shared,
// and probes at once are bounded, so RCPT floods cannot turn into a connection flood.
import { connect, type Socket } from 'node:net';
import { ReplyReader, type SmtpReply } from '../protocol/reply-reader.js';
import { parseCapabilities } from '../protocol/capabilities.js';
import type { HostPort } from '../config/routes.js';

/** exists: RCPT got 2xx. unknown: 5xx. temp: 4xx, a timeout, a refused connection, garbage. */
export type VerifyResult = { kind: 'exists' } | { kind: 'unknown'; reply: SmtpReply } | { kind: 'temp'; why: string; reply?: SmtpReply };

export interface LmtpVerifierOptions {
  /** Our name in LHLO. */
  hostname: string;
  /** The whole probe (connect to QUIT) must answer within this. */
  timeoutMs: number;
  /** A positive answer is kept this long (default 10 minutes). */
  positiveTtlMs?: number;
  /** A negative answer (5xx) is kept this long (default 1 minute): new users appear quickly. */
  negativeTtlMs?: number;
  /** Cached answers (default 10,000); the oldest goes first. */
  maxEntries?: number;
  /** Probes in flight at once (default 32); past it RCPT gets a temporary failure. */
  maxInFlight?: number;
}

interface Entry {
  result: VerifyResult;
  expiresAt: number;
}

export class LmtpVerifier {
  readonly #o: Required<LmtpVerifierOptions>;
  /** Insertion order is age order: re-set entries are deleted first. */
  readonly #cache = new Map<string, Entry>();
  readonly #inFlight = new Map<string, Promise<VerifyResult>>();
  /** Probes made (cache misses), for tests and stats. */
  probes = 0;

  constructor(o: LmtpVerifierOptions) {
    this.#o = { positiveTtlMs: 600_000, negativeTtlMs: 60_000, maxEntries: 10_000, maxInFlight: 32, ...o };
  }

  /** The cached answer for `address` at `hosts`, or a probe's. */
  verify(hosts: readonly HostPort[], address: string): VerifyResult | Promise<VerifyResult> {
    const key = `${hosts.map((h) => `${h.host}:${h.port}`).join(',')} ${address.toLowerCase()}`;
    const hit = this.#cache.get(key);
    if (hit !== undefined) {
      if (hit.expiresAt > Date.now()) return hit.result;
      this.#cache.delete(key);
    }
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) return pending;
    if (this.#inFlight.size >= this.#o.maxInFlight) return { kind: 'temp', why: 'too many verifications in progress' };
    this.probes++;
    const p = probe(hosts, address, this.#o).then((r) => {
      this.#inFlight.delete(key);
      if (r.kind !== 'temp') {
        if (this.#cache.size >= this.#o.maxEntries) this.#cache.delete(this.#cache.keys().next().value!);
        this.#cache.set(key, { result: r, expiresAt: Date.now() + (r.kind === 'exists' ? this.#o.positiveTtlMs : this.#o.negativeTtlMs) });
      }
      return r;
    });
    this.#inFlight.set(key, p);
    return p;
  }
}

async function probe(hosts: readonly HostPort[], address: string, o: Required<LmtpVerifierOptions>): Promise<VerifyResult> {
  // The address comes from the RCPT parser; still, nothing that could end a command goes out.
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f<>]/.test(address)) return { kind: 'temp', why: 'address not sendable' };
  const deadline = Date.now() + o.timeoutMs;
  let last: VerifyResult = { kind: 'temp', why: 'no LMTP host' };
  for (const h of hosts) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    last = await probeOne(h, address, o.hostname, left);
    // Another host is tried only when this one could not be reached or answered nothing usable.
    if (last.kind !== 'temp' || last.reply !== undefined) return last;
  }
  return last;
}

function probeOne(h: HostPort, address: string, hostname: string, timeoutMs: number): Promise<VerifyResult> {
  return new Promise((resolve) => {
    const sock: Socket = connect({ host: h.address ?? h.host, port: h.port });
    const reader = new ReplyReader();
    let step = 0;
    let done = false;
    const finish = (r: VerifyResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (r.kind !== 'temp' || r.reply !== undefined) sock.end('RSET\r\nQUIT\r\n');
      else sock.destroy();
      // Whatever the server does after our verdict, the socket goes within a second.
      setTimeout(() => sock.destroy(), 1000).unref();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ kind: 'temp', why: 'timeout' }), timeoutMs);
    sock.on('error', (err: NodeJS.ErrnoException) => finish({ kind: 'temp', why: err.code ?? err.message }));
    sock.on('close', () => finish({ kind: 'temp', why: 'connection closed' }));
    sock.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      for (;;) {
        const r = reader.next();
        if (r.kind === 'partial') return;
        if (r.kind !== 'reply') return finish({ kind: 'temp', why: `bad reply (${r.kind})` });
        const rep = r.reply;
        if (step === 3) {
          if (rep.code >= 200 && rep.code < 300) return finish({ kind: 'exists' });
          if (rep.code >= 500 && rep.code < 600) return finish({ kind: 'unknown', reply: rep });
          return finish({ kind: 'temp', why: `RCPT ${rep.code}`, reply: rep });
        }
        if (rep.code < 200 || rep.code >= 300) return finish({ kind: 'temp', why: `${['greeting', 'LHLO', 'MAIL'][step]} ${rep.code}` });
        if (step === 0) {
          sock.write(`LHLO ${hostname}\r\n`);
        } else if (step === 1) {
          // eslint-disable-next-line no-control-regex
          const utf8 = /[^\x00-\x7f]/.test(address);
          // A UTF-8 address the server cannot take would fail at delivery too.
          if (utf8 && !parseCapabilities(rep.lines).smtputf8) return finish({ kind: 'unknown', reply: { code: 553, enhanced: '5.6.7', lines: ['no SMTPUTF8'], text: 'no SMTPUTF8' } });
          sock.write(`MAIL FROM:<>${utf8 ? ' SMTPUTF8' : ''}\r\n`);
        } else if (step === 2) {
          sock.write(`RCPT TO:<${address}>\r\n`);
        }
        step++;
      }
    });
  });
}
