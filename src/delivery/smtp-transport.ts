// The SMTP and LMTP transport: one DestinationPool per destination key, one transaction per
// deliver(). A failure to open a connection (connect, greeting, EHLO/LHLO, STARTTLS) makes
// every recipient deferred with that reason recorded; after that the SmtpConnection's
// per-recipient results are returned as they are (RFC 5321 §4.2.5 codes → delivered,
// deferred or failed), except that recipients refused for the server's recipient limit
// (452 4.5.3) go at once in further transactions.
import { notDelivered, type Destination, type DeliveryRequest, type RecipientResult, type TlsAuth, type TlsPolicy, type Transport } from './types.js';
import type { ReplyRecord } from '../queue/types.js';
import { DestinationPool, type PoolCounts } from './destination-pool.js';
import { SmtpConnection, type SmtpTimeouts } from './smtp-client.js';
import type { TlsOutcomeSink } from './tls-outcome.js';

export interface SmtpTransportOptions {
  heloName: string;
  /** Default 10. */
  maxConnectionsPerDestination?: number;
  /** Default 100. */
  maxMessagesPerConnection?: number;
  /** Default 30_000 (well under the 5 minutes a server waits for the next command). */
  idleTimeoutMs?: number;
  timeouts?: Partial<SmtpTimeouts>;
  /** ca: trust anchors for verified TLS instead of the system's (tests: a test CA). */
  tls?: { rejectUnauthorized?: boolean; ca?: string[] };
  /** Each TLS attempt to a destination with a TLS policy (MTA-STS, DANE, none found). */
  tlsOutcomes?: TlsOutcomeSink;
}

export class SmtpTransport implements Transport {
  readonly #o: SmtpTransportOptions;
  readonly #pools = new Map<string, DestinationPool>();
  /** Pools with nothing open are dropped when the map reaches this size (then twice what is left). */
  #sweepAt = MIN_SWEEP_AT;
  #closed = false;

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
      connect: (h) =>
        SmtpConnection.open({
          host: h.host,
          port: h.port,
          ...(h.address !== undefined ? { address: h.address } : {}),
          protocol: dest.kind,
          heloName: dest.shape?.heloName ?? o.heloName,
          ...(dest.shape?.localAddress !== undefined ? { localAddress: dest.shape.localAddress } : {}),
          ...tlsFor(dest, h.host),
          destination: dest.key,
          ...(servername !== undefined ? { servername } : {}),
          ...(o.tlsOutcomes ? { onTlsOutcome: (out) => o.tlsOutcomes!.record(out) } : {}),
          ...(o.tls?.ca ? { ca: o.tls.ca } : {}),
          ...(dest.shape?.pipelining === false ? { pipelining: false } : {}),
          ...(dest.shape?.chunking === false ? { chunking: false } : {}),
          ...(o.tls?.rejectUnauthorized !== undefined ? { rejectUnauthorized: o.tls.rejectUnauthorized } : {}),
          ...(o.timeouts ? { timeouts: o.timeouts } : {}),
        }),
    });
    // Every MX set ever delivered to (bounces to forged senders included) would otherwise keep
    // its pool for the life of the process.
    if (this.#pools.size >= this.#sweepAt) this.#sweep();
    this.#pools.set(dest.key, p);
    return p;
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

function failAll(req: DeliveryRequest, reply: ReplyRecord): RecipientResult[] {
  return req.recipients.map((r) => notDelivered(r.address, reply));
}
