// The SMTP and LMTP transport: one DestinationPool per destination key, one transaction per
// deliver(). A failure to open a connection (connect, greeting, EHLO/LHLO, STARTTLS) makes
// every recipient deferred with that reason recorded; after that the SmtpConnection's
// per-recipient results are returned as they are (RFC 5321 §4.2.5 codes → delivered,
// deferred or failed), except that recipients refused for the server's recipient limit
// (452 4.5.3) go at once in further transactions.
// AUTH: a destination with a credentials file (a route's /auth=, the smarthost's file) gets
// each host's user and password from it at connection time (re-read when it changes). After a
// 535 the same credentials are not tried on that host again for AUTH_HOLD_MS, unless the file
// changes them (Postfix's smtp_sasl_auth_cache): a provider locks an account that keeps failing.
// Opportunistic TLS that fails (tls-fallback.ts): the host is retried in clear within the same
// open (one pool slot, one connection counted), then held in clear for a while.
import { notDelivered, type Destination, type DeliveryRequest, type RecipientResult, type TlsAuth, type TlsPolicy, type Transport } from './types.js';
import type { ReplyRecord } from '../queue/types.js';
import { DestinationPool, type PoolCounts } from './destination-pool.js';
import { DEFAULT_TIMEOUTS, SmtpConnection, type SmtpTimeouts, type TlsFallbackKind } from './smtp-client.js';
import { TlsFallback, tlsFallbackAllowed, tlsFallbackKey } from './tls-fallback.js';
import type { TlsOutcomeSink } from './tls-outcome.js';
import { CredentialsFile, type SmtpCredentials } from '../config/smtp-credentials.js';
import { replyRecord } from './types.js';
import { createHash } from 'node:crypto';
import { failure } from '../lib/result.js';

export interface SmtpTransportOptions {
  heloName: string;
  /** Default 10. */
  maxConnectionsPerDestination?: number;
  /** Default 100. */
  maxMessagesPerConnection?: number;
  /** Default 30_000 (well under the 5 minutes a server waits for the next command). */
  idleTimeoutMs?: number;
  timeouts?: Partial<SmtpTimeouts>;
  /** rejectUnauthorized false: tests only (AUTH still refuses an unverified connection); ca: PEM trusted besides Node's roots. */
  tls?: { rejectUnauthorized?: boolean; ca?: readonly string[] };
  /** A credentials file could not be re-read (the previous version stays in use). */
  onCredentialsError?: (err: Error) => void;
  now?: () => number;
  /** Each TLS attempt to a destination with a TLS policy (MTA-STS, DANE, none found). */
  tlsOutcomes?: TlsOutcomeSink;
  /** Each connection opened in clear under opportunistic TLS because TLS failed (tls-fallback.ts). */
  onTlsFallback?: (e: TlsFallbackEvent) => void;
}

/** A connection in clear though opportunistic TLS was wanted: for the metric, and a log line when `heldUntil` is set. */
export interface TlsFallbackEvent {
  kind: TlsFallbackKind;
  destination: string;
  host: string;
  port: number;
  address?: string;
  /** 'retry': why the handshake failed. */
  detail?: string;
  /** 'retry' that starts holding the host in clear: until when (ms). Once per host per hold. */
  heldUntil?: number;
}

/** How long credentials a server refused with 535 are not offered to it again (unless the file changes them). */
export const AUTH_HOLD_MS = 5 * 60_000;
const MAX_AUTH_HOLDS = 1000;

export class SmtpTransport implements Transport {
  readonly #o: SmtpTransportOptions;
  readonly #pools = new Map<string, DestinationPool>();
  /** Pools with nothing open are dropped when the map reaches this size (then twice what is left). */
  #sweepAt = MIN_SWEEP_AT;
  #closed = false;
  readonly #credentials = new Map<string, CredentialsFile>();
  /** host:port + user + password hash → until when a 535 holds them back. */
  readonly #authHolds = new Map<string, number>();
  /** Hosts whose opportunistic TLS failed lately: connected to in clear at once. */
  readonly #tlsFallback = new TlsFallback();

  constructor(opts: SmtpTransportOptions) {
    this.#o = opts;
  }

  /** Counts per destination key (for metrics). */
  counts(): Record<string, PoolCounts> {
    const out: Record<string, PoolCounts> = {};
    for (const [k, p] of this.#pools) out[k] = p.counts;
    return out;
  }

  async deliver(dest: Destination, req: DeliveryRequest): Promise<RecipientResult[]> {
    if (dest.kind !== 'smtp' && dest.kind !== 'lmtp') {
      return failAll(req, { text: `SmtpTransport cannot deliver to a ${dest.kind} destination`, transient: true, destination: dest.key, at: Date.now() });
    }
    if (this.#closed) return failAll(req, { text: 'transport closed', command: 'CONNECT', transient: true, destination: dest.key, at: Date.now() });
    const pool = this.#pool(dest);
    const results = await this.#send(pool, req);
    // RFC 5321 §4.5.3.1.10: a server past its recipient limit answers 452 to the RCPTs over it,
    // and the client sends those in a later transaction (Exchange: "452 4.5.3 Too many
    // recipients"). Send them now, on a pooled connection, while each transaction settles at
    // least one recipient otherwise; so a 452 for every recipient (a server out of storage)
    // stays a plain deferral, and each round is smaller than the last.
    let round = req.recipients.map((_r, i) => i);
    while (!this.#closed) {
      const over = round.filter((i) => overLimit(results[i]!));
      if (over.length === 0 || over.length === round.length) break;
      const more = await this.#send(pool, { ...req, recipients: over.map((i) => req.recipients[i]!) });
      over.forEach((i, k) => (results[i] = more[k]!));
      round = over;
    }
    return results;
  }

  /** One transaction on a pooled connection. */
  async #send(pool: DestinationPool, req: DeliveryRequest): Promise<RecipientResult[]> {
    const acq = await pool.acquire();
    if (!acq.ok) return failAll(req, { ...acq.error, transient: true });
    const conn = acq.value;
    let results: RecipientResult[];
    try {
      results = await conn.send(req);
    } catch (err) {
      // send() does not reject; this is a bug, but never leak the connection slot.
      pool.release(conn, false);
      throw err;
    }
    pool.release(conn, conn.usable);
    return results;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
    this.#pools.clear();
  }

  #pool(dest: Extract<Destination, { kind: 'smtp' | 'lmtp' }>): DestinationPool {
    let p = this.#pools.get(dest.key);
    if (p) {
      p.setHosts(dest.hosts);
      return p;
    }
    const o = this.#o;
    const servername = dest.kind === 'smtp' ? dest.domain : undefined;
    p = new DestinationPool({
      key: dest.key,
      hosts: dest.hosts,
      maxConnections: dest.shape?.maxConnections ?? o.maxConnectionsPerDestination ?? 10,
      maxMessagesPerConnection: dest.shape?.maxMessagesPerConnection ?? o.maxMessagesPerConnection ?? 100,
      idleTimeoutMs: o.idleTimeoutMs ?? 30_000,
      openBudgetMs: o.timeouts?.transactionMs ?? DEFAULT_TIMEOUTS.transactionMs,
      connect: async (h) => {
        let auth: SmtpCredentials | undefined;
        let held = '';
        if (dest.kind === 'smtp' && dest.auth !== undefined) {
          const found = this.#credentialsFile(dest.auth).lookup(h.host, h.port);
          if (!found.ok) return failure(authRecord(found.error, undefined, dest.key));
          auth = found.value;
          held = holdKey(h.host, h.port, auth);
          const until = this.#authHolds.get(held) ?? 0;
          if (until > this.#now()) return failure(authRecord(`${h.host}:${h.port} refused these credentials (535); not offered again before ${new Date(until).toISOString()} unless the credentials file changes them`, 535, dest.key));
          this.#authHolds.delete(held);
        }
        const tls = tlsFor(dest, h.host);
        // The hold is asked only where falling back is allowed: a host held in clear for
        // opportunistic mail is never skipped by a delivery that demands TLS.
        const fallbackKey = tlsFallbackKey(h.host, h.port, h.address);
        const plaintext = !tlsFallbackAllowed({ ...tls, auth }) ? undefined : this.#tlsFallback.held(fallbackKey, this.#now()) ? 'clear' : 'retry';
        const opened = await SmtpConnection.open({
          host: h.host,
          port: h.port,
          ...(h.address !== undefined ? { address: h.address } : {}),
          protocol: dest.kind,
          heloName: dest.shape?.heloName ?? o.heloName,
          ...(dest.shape?.localAddress !== undefined ? { localAddress: dest.shape.localAddress } : {}),
          ...tls,
          ...(plaintext !== undefined ? { plaintext } : {}),
          destination: dest.key,
          ...(servername !== undefined ? { servername } : {}),
          ...(o.tlsOutcomes ? { onTlsOutcome: (out) => o.tlsOutcomes!.record(out) } : {}),
          ...(dest.shape?.pipelining === false ? { pipelining: false } : {}),
          ...(dest.shape?.chunking === false ? { chunking: false } : {}),
          ...(o.tls?.rejectUnauthorized !== undefined ? { rejectUnauthorized: o.tls.rejectUnauthorized } : {}),
          ...(o.tls?.ca !== undefined ? { ca: o.tls.ca } : {}),
          ...(o.timeouts ? { timeouts: o.timeouts } : {}),
          ...(auth !== undefined ? { auth } : {}),
        });
        if (!opened.ok && auth !== undefined && opened.error.command === 'AUTH' && opened.error.code === 535) {
          if (this.#authHolds.size >= MAX_AUTH_HOLDS) this.#authHolds.delete(this.#authHolds.keys().next().value!);
          this.#authHolds.set(held, this.#now() + AUTH_HOLD_MS);
        }
        const fellBack = opened.ok ? opened.value.tlsFallback : null;
        if (fellBack !== null) {
          const e: TlsFallbackEvent = { kind: fellBack, destination: dest.key, host: h.host, port: h.port, ...(h.address !== undefined ? { address: h.address } : {}) };
          if (fellBack === 'retry') {
            // Held only once the clear retry worked: a host that fails in clear too keeps trying TLS first.
            const until = this.#tlsFallback.hold(fallbackKey, this.#now());
            if (until !== null) e.heldUntil = until;
            const why = opened.ok ? opened.value.tlsFailure : null;
            if (why !== null) e.detail = why.slice(0, 300);
          }
          o.onTlsFallback?.(e);
        }
        return opened;
      },
    });
    // Every MX set ever delivered to (bounces to forged senders included) would otherwise keep
    // its pool for the life of the process.
    if (this.#pools.size >= this.#sweepAt) this.#sweep();
    this.#pools.set(dest.key, p);
    return p;
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  #credentialsFile(path: string): CredentialsFile {
    let f = this.#credentials.get(path);
    if (!f) this.#credentials.set(path, (f = new CredentialsFile(path, { ...(this.#o.onCredentialsError ? { onError: this.#o.onCredentialsError } : {}), now: () => this.#now() })));
    return f;
  }

  #sweep(): void {
    for (const [k, pool] of this.#pools) {
      if (!pool.unused) continue;
      this.#pools.delete(k);
      void pool.close();
    }
    this.#sweepAt = Math.max(MIN_SWEEP_AT, this.#pools.size * 2);
  }
}

const MIN_SWEEP_AT = 256;

/**
 * The TLS rules of one host of the destination. DANE is per MX host (RFC 7672 §2.2): a host
 * with TLSA records gets 'required' and their check; one without stays as the destination says.
 */
function tlsFor(dest: Extract<Destination, { kind: 'smtp' | 'lmtp' }>, host: string): { tlsPolicy: TlsPolicy; tlsAuth?: TlsAuth } {
  const auth = dest.kind === 'smtp' ? dest.tlsAuth : undefined;
  if (!auth) return { tlsPolicy: dest.tlsPolicy };
  if (auth.type !== 'tlsa') return { tlsPolicy: dest.tlsPolicy, tlsAuth: auth };
  if ((auth.tlsa?.[host]?.length ?? 0) === 0) return { tlsPolicy: dest.tlsPolicy };
  return { tlsPolicy: auth.enforce ? 'required' : dest.tlsPolicy, tlsAuth: auth };
}

/** A 452 to RCPT that means "too many recipients" (4.5.3, or no enhanced code: RFC 5321's own meaning). */
function overLimit(r: RecipientResult): boolean {
  return r.kind === 'deferred' && r.reply.command === 'RCPT' && r.reply.code === 452 && (r.reply.enhanced === undefined || r.reply.enhanced === '4.5.3');
}

/** A failure to authenticate found before connecting: transient, as every AUTH failure. */
function authRecord(text: string, code: number | undefined, destination: string): ReplyRecord {
  const r = replyRecord(code, code === undefined ? '4.7.0' : '5.7.8', text, 'AUTH', destination);
  r.transient = true;
  return r;
}

/** The hold's key: the password only as a hash, so the map never holds it in clear. */
function holdKey(host: string, port: number, c: SmtpCredentials): string {
  return `${host}:${port}\0${c.user}\0${createHash('sha256').update(c.password).digest('base64')}`;
}

function failAll(req: DeliveryRequest, reply: ReplyRecord): RecipientResult[] {
  return req.recipients.map((r) => notDelivered(r.address, reply));
}
