// The delivery scheduler: leases due messages from the queue, routes each pending recipient
// to a Destination, delivers the recipients of one message that share a destination in one
// transaction, and settles every outcome back into the queue: delivered, deferred with
// backoff (4xx, timeouts, network errors) until the queue lifetime ends, or failed (5xx) with
// one RFC 3464 bounce per message for all its failed recipients.
//
// Where delivery runs: sockets live in this one I/O thread (the event loop multiplexes
// thousands of connections, and a destination's pool must be shared by every message bound
// there); CPU work (signing, filtering) belongs in the worker pool, behind `prepareBody`,
// the seam where the worker stage's additions are applied to the bytes sent.
import { hostname as osHostname } from 'node:os';
import type { Queue, MessageRecord, Recipient, RecipientOutcome, ReplyRecord } from '../queue/store.js';
import type { Logger } from '../log/logger.js';
import { countReceived } from '../protocol/hop-count.js';
import type { Destination, DestinationShape, RecipientResult, Transport } from './types.js';
import type { MailEvent } from '../queue/events.js';
import { DestinationStatsTable, type DestinationStats } from './destination-stats.js';
import type { BounceStatsView } from './failure-tally.js';
import { CONNECTION_COMMANDS, destinationCaused } from './deferral-cause.js';
import type { Result } from '../lib/result.js';
import type { ShapingView } from './shaping/shaping-view.js';

/** A route lookup: a destination, or a transient problem (DNS SERVFAIL, …) for the domain. */
export type RouteResult = Destination | { kind: 'defer'; reply: ReplyRecord };

export interface DestinationGate {
  /** ms to wait before the next message may go to this destination (throttle); 0 = now. */
  delayMs(key: string, now: number): number;
  /** False while the destination's circuit is open: defer without trying. */
  canAttempt(key: string, now: number): boolean;
  /** When a destination that canAttempt refused will let a probe through (0: unknown). */
  retryAt?(key: string): number;
  /** After a delivery: connection-level failures (connect, greeting 421, timeout) trip the breaker. */
  record(key: string, outcome: 'ok' | 'connection-failure' | 'other', now: number): void;
}

/** What the scheduler tells about destinations coming back (DestinationRecovery). */
export interface WaitTracker {
  /** After the queue's leases are returned at start: probe what waits from before. */
  start(): void;
  stop(): void;
  /** A delivery to this destination key succeeded. */
  up(key: string): void;
  /** A leased message's attempt ended; `tiedTo`: the destinations it now waits for. */
  settled(id: string, tiedTo: readonly string[]): void;
}

/** A transaction admitted by the shaper, or the reply saying why not (suspended, busy, stopping): deferred untried. */
export type ShaperAdmission = Result<{ maxRecipients: number; done(results: readonly RecipientResult[]): boolean }, ReplyRecord>;

/** Bulk shaping per source × site (delivery/shaping/shaper.ts). */
export interface DeliveryShaper {
  /** Wait for the site's rate and a connection slot; done() after the transaction says whether every failure was a throttle. */
  admit(dest: Destination): Promise<ShaperAdmission>;
  /** When a deferred recipient is due again, when shaping decides (throttled, suspended, a site's retry schedule); null: the default. */
  retryAt(reply: ReplyRecord, attempts: number, tried: boolean, now: number): number | null;
  /** Release the waiting transactions: delivery is stopping. */
  close(): void;
}

export interface BounceSink {
  /** Build and enqueue the DSN for these recipients (null sender, never for a null-sender message). */
  bounce(message: MessageRecord, items: Array<{ recipient: Recipient; reply: ReplyRecord; action: 'failed' | 'delayed' }>, originalBody: Buffer): Promise<string | null>;
}

export interface DeliveryCounters {
  attempts: number;
  delivered: number;
  deferred: number;
  bounced: number;
  bouncesSent: number;
  inFlight: number;
  /** Bytes of the messages being delivered now (their bodies are in memory). */
  inFlightBytes: number;
  /** Connections in clear under opportunistic TLS (tls-fallback.ts): after a failed handshake, and to a host held in clear. */
  tlsFallbackRetries: number;
  tlsFallbackClear: number;
}

export interface SchedulerOptions {
  queue: Queue;
  log: Logger;
  /** The message is passed so that shaping can pick its egress source (its sender's pool). */
  route: (domain: string, message: MessageRecord) => Promise<RouteResult>;
  transports: Partial<Record<Destination['kind'], Transport>>;
  gate?: DestinationGate;
  shaper?: DeliveryShaper;
  bounces?: BounceSink;
  /** Retry time for a recipient that has now failed `attempts` times. */
  retryAt: (attempts: number, now: number) => number;
  maxQueueLifetimeMs: number;
  /** More Received: headers than this is a loop: bounced 5.4.6 instead of sent (default 50). */
  maxHops?: number;
  /** Messages delivered at once, across all destinations. */
  maxConcurrency: number;
  /**
   * Bytes of messages delivered at once (POSTERN_MAX_DELIVERY_MEMORY): each body is in memory
   * while it is delivered. Leasing stops short of it; a larger message goes alone.
   */
  maxInFlightBytes?: number;
  leaseMs: number;
  pollIntervalMs?: number;
  /** The seam for the worker stage (DKIM signature, …): returns the bytes to send. */
  prepareBody?: (message: MessageRecord, body: Buffer) => Buffer | Promise<Buffer>;
  now?: () => number;
  owner?: string;
  /** Suppression list lookup (Queue.suppressions.has): such recipients are never sent to. */
  isSuppressed?: (address: string) => boolean;
  /**
   * The addresses (of those given) the other nodes of a cluster suppressed: asked once per
   * message for the recipients the local list lets through (one Redis round trip, bounded by
   * its deadline; an empty set when Redis is away).
   */
  sharedSuppressed?: (addresses: readonly string[]) => Promise<ReadonlySet<string>>;
  /** Event webhooks: one event per recipient outcome. */
  onEvent?: (e: MailEvent) => void;
  /**
   * Releases the messages waiting for a destination when it works again. With it, a deferral
   * not tried (open circuit) falls back to the retry schedule: the release makes it due.
   */
  recovery?: WaitTracker;
  // Connection-pool counts per destination key (the SMTP transport's), for /v1/stats.
  poolCounts?: () => Record<string, { open: number; idle: number; busy: number; waiting: number }>;
  /** The bounce category of a failed or deferred recipient (engine.ts: the rules, and the tally). */
  classify?: (reply: ReplyRecord, outcome: 'failed' | 'deferred') => string;
  /** Failures by category and the bounce processor's counters, for /metrics and /v1/stats. */
  bounceStats?: () => BounceStatsView;
  /** Shaping state per source × site, the most active `limit` (shaper.ts view), for /v1/stats. */
  shapingView?: (limit: number) => ShapingView;
  /** Destinations whose circuit breaker is open now, for /metrics. */
  openCircuits?: () => number;
}

/** "45 s", "12 min", "5 h", "5 d": for the expiry text a person reads in a bounce. */
export function formatAge(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 172_800_000) return `${Math.round(ms / 3_600_000)} h`;
  return `${Math.round(ms / 86_400_000)} d`;
}

export class Scheduler {
  readonly #stats = new DestinationStatsTable();
  readonly counters: DeliveryCounters = { attempts: 0, delivered: 0, deferred: 0, bounced: 0, bouncesSent: 0, inFlight: 0, inFlightBytes: 0, tlsFallbackRetries: 0, tlsFallbackClear: 0 };
  readonly #o: SchedulerOptions;
  readonly #owner: string;
  readonly #now: () => number;
  readonly #maxHops: number;
  #running = false;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #reclaimTimer: NodeJS.Timeout | null = null;
  #renewTimer: NodeJS.Timeout | null = null;
  #renewing = false;
  readonly #inflight = new Set<Promise<void>>();
  /**
   * The ids of the messages this scheduler is delivering now. Their leases are renewed while
   * they run, and lease() passes them over: should a lease expire under its delivery anyway
   * (renewals failing, the event loop stalled), one process never sends the same message twice
   * at once.
   */
  readonly #inflightIds = new Set<string>();
  #slotFreed: (() => void) | null = null;

  /** Counters and transaction latency per destination key, for /metrics and /v1/stats. */
  get destinations(): ReadonlyMap<string, DestinationStats> {
    return this.#stats.series;
  }

  constructor(options: SchedulerOptions) {
    this.#o = options;
    this.#owner = options.owner ?? `${osHostname()}:${process.pid}:${Date.now().toString(36)}`;
    this.#now = options.now ?? Date.now;
    this.#maxHops = options.maxHops ?? 50;
  }

  // Pool counts per destination key; {} when the transport does not expose them.
  poolCounts(): Record<string, { open: number; idle: number; busy: number; waiting: number }> {
    return this.#o.poolCounts?.() ?? {};
  }

  bounceStats(): BounceStatsView | null {
    return this.#o.bounceStats?.() ?? null;
  }

  shapingView(limit: number): ShapingView | null {
    return this.#o.shapingView?.(limit) ?? null;
  }

  openCircuits(): number {
    return this.#o.openCircuits?.() ?? 0;
  }

  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    // This node is the only deliverer of its folder: leases of a previous run are dead.
    const back = await this.#o.queue.releaseAllLeases();
    if (back > 0) this.#o.log.info({ messages: back }, 'leases of the previous run returned to the queue');
    this.#reclaimTimer = setInterval(() => void this.#o.queue.reclaimExpired().catch(() => {}), Math.max(1000, this.#o.leaseMs / 4)).unref();
    // A third of the lease: two renewals may fail or come late before a lease can expire.
    this.#renewTimer = setInterval(() => void this.#renewLeases(), Math.max(100, this.#o.leaseMs / 3)).unref();
    this.#o.recovery?.start();
    this.#loop = this.#run();
  }

  /** New mail was queued: look now instead of at the next poll. */
  wake(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** Stop leasing, wait for deliveries in flight (their outcomes are settled), close transports. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    if (this.#reclaimTimer) clearInterval(this.#reclaimTimer);
    this.#o.recovery?.stop();
    this.#o.shaper?.close();
    this.wake();
    this.#slotFreed?.();
    await this.#loop;
    await Promise.allSettled([...this.#inflight]);
    // Renewals go on until the last delivery in flight has settled.
    if (this.#renewTimer) clearInterval(this.#renewTimer);
    await Promise.allSettled(Object.values(this.#o.transports).map((t) => t!.close()));
  }

  async #run(): Promise<void> {
    const poll = this.#o.pollIntervalMs ?? 1000;
    while (this.#running) {
      const free = this.#o.maxConcurrency - this.#inflight.size;
      const room = (this.#o.maxInFlightBytes ?? Infinity) - this.counters.inFlightBytes;
      if (free <= 0 || (room <= 0 && this.#inflight.size > 0)) {
        await new Promise<void>((r) => (this.#slotFreed = r));
        continue;
      }
      let batch: MessageRecord[] = [];
      // Past the bytes bound only when nothing else is in flight: a message larger than the
      // bound goes alone.
      const bytesBound = Number.isFinite(room);
      try {
        batch = await this.#o.queue.lease({ limit: Math.min(free, 100), owner: this.#owner, leaseMs: this.#o.leaseMs, skip: this.#inflightIds, ...(bytesBound ? { maxBytes: Math.max(0, room), atLeastOne: this.#inflight.size === 0 } : {}) });
      } catch (err) {
        if (!this.#running) break;
        this.#o.log.error({ err }, 'lease failed');
      }
      for (const m of batch) {
        this.#inflightIds.add(m.id);
        const p = this.#deliverMessage(m).catch((err: unknown) => {
          this.#o.log.error({ err, id: m.id }, 'delivery crashed; the lease will expire and the message return');
          this.#o.recovery?.settled(m.id, []);
        });
        this.#inflight.add(p);
        void p.finally(() => {
          this.#inflight.delete(p);
          this.#inflightIds.delete(m.id);
          const f = this.#slotFreed;
          this.#slotFreed = null;
          f?.();
        });
      }
      if (batch.length === 0 && this.#running) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, poll);
          const go = (): void => {
            clearTimeout(t);
            r();
          };
          this.#wake = go;
          // Perhaps held back by the bytes in flight rather than an empty queue: a delivery that
          // ends makes room.
          if (bytesBound && this.#inflight.size > 0) this.#slotFreed = go;
        });
      }
    }
  }

  /** Extend the leases of the deliveries in flight, all in one write transaction. */
  async #renewLeases(): Promise<void> {
    if (this.#renewing || this.#inflightIds.size === 0) return;
    this.#renewing = true;
    try {
      const lost = await this.#o.queue.renewLeases([...this.#inflightIds], this.#owner, this.#o.leaseMs);
      // Settled between the snapshot and the write: not a loss.
      for (const id of lost) if (this.#inflightIds.has(id)) this.#o.log.warn({ id }, 'lease lost while its delivery runs; its settle will be refused if another attempt settled first');
    } catch (err) {
      this.#o.log.warn({ err }, 'lease renewal failed; trying again in a third of the lease time');
    } finally {
      this.#renewing = false;
    }
  }

  async #deliverMessage(m: MessageRecord): Promise<void> {
    const o = this.#o;
    this.counters.inFlight++;
    this.counters.inFlightBytes += m.size;
    try {
      // Suppression check: a suppressed recipient is never tried; it fails 5.7.1 and the
      // bounce path reports it (settled with the rest below).
      const suppressed: RecipientResult[] = [];
      const refuse = (address: string): void => {
        suppressed.push({ kind: 'failed', address, reply: { code: 550, enhanced: '5.7.1', text: 'recipient suppressed', command: 'SUPPRESSED' } });
      };
      let pending = m.recipients.filter((r) => {
        if (r.state !== 'pending') return false;
        if (!o.isSuppressed?.(r.address)) return true;
        refuse(r.address);
        return false;
      });
      if (o.sharedSuppressed && pending.length > 0) {
        const elsewhere = await o.sharedSuppressed(pending.map((r) => r.address));
        if (elsewhere.size > 0) {
          pending = pending.filter((r) => {
            if (!elsewhere.has(r.address)) return true;
            refuse(r.address);
            return false;
          });
        }
      }
      // Route per domain, then group by destination key: one transaction per destination.
      const byDomain = new Map<string, Recipient[]>();
      for (const r of pending) {
        const list = byDomain.get(r.domain);
        if (list) list.push(r);
        else byDomain.set(r.domain, [r]);
      }
      const groups = new Map<string, { dest: RouteResult; recipients: Recipient[] }>();
      await Promise.all(
        [...byDomain].map(async ([domain, rcpts]) => {
          let dest: RouteResult;
          try {
            dest = await o.route(domain, m);
          } catch (err) {
            dest = { kind: 'defer', reply: { text: `routing failed: ${(err as Error).message}`, transient: true, enhanced: '4.4.3', command: 'ROUTE' } };
          }
          const key = dest.kind === 'defer' ? `defer:${domain}` : dest.key;
          const g = groups.get(key);
          if (g) g.recipients.push(...rcpts);
          else groups.set(key, { dest, recipients: rcpts });
        }),
      );
      let body: Buffer | null = null;
      const getBody = async (): Promise<Buffer> => {
        if (body === null) {
          const copy = o.queue.withBody(m.id, (b) => Buffer.from(b)); // the view dies with the call: one copy
          body = o.prepareBody ? await o.prepareBody(m, copy) : copy;
        }
        return body;
      };
      const results = await Promise.all([...groups.values()].map((g) => this.#deliverGroup(m, g.dest, g.recipients, getBody)));
      // The shaping site, egress source and pool of each destination, for the recipients' events (and the alerts per site and source).
      const shapes = new Map<string, DestinationShape>();
      for (const g of groups.values()) if ((g.dest.kind === 'smtp' || g.dest.kind === 'lmtp') && g.dest.shape) shapes.set(g.dest.key, g.dest.shape);
      await this.#settle(m, [...suppressed, ...results.flat()], shapes);
    } finally {
      this.counters.inFlight--;
      this.counters.inFlightBytes -= m.size;
    }
  }

  async #deliverGroup(m: MessageRecord, dest: RouteResult, recipients: Recipient[], getBody: () => Promise<Buffer>): Promise<RecipientResult[]> {
    const all = (kind: 'deferred' | 'failed', reply: ReplyRecord): RecipientResult[] => recipients.map((r) => ({ kind, address: r.address, reply }));
    if (dest.kind === 'defer') return all('deferred', dest.reply);
    if (dest.kind === 'bounce') return all('failed', dest.reply);
    const transport = this.#o.transports[dest.kind];
    if (!transport) return all('deferred', { text: `no transport for ${dest.kind} destinations`, enhanced: '4.3.5', transient: true, destination: dest.key });
    const gate = this.#o.gate;
    let now = this.#now();
    if (gate && !gate.canAttempt(dest.key, now)) {
      const reply: ReplyRecord = { text: `destination ${dest.key} is backing off after repeated connection failures`, enhanced: '4.4.1', transient: true, destination: dest.key, command: 'CONNECT' };
      return recipients.map((r) => ({ kind: 'deferred', address: r.address, reply, tried: false }));
    }
    if (gate) {
      for (let wait = gate.delayMs(dest.key, now); wait > 0 && this.#running; wait = gate.delayMs(dest.key, (now = this.#now()))) {
        await new Promise((r) => setTimeout(r, Math.min(wait, 1000)));
      }
    }
    const body = await getBody();
    if (countReceived(body, this.#maxHops) > this.#maxHops) {
      return all('failed', { text: `Too many hops (more than ${this.#maxHops} Received headers): mail loop`, code: 554, enhanced: '5.4.6', transient: false, destination: dest.key, at: this.#now() });
    }
    const admission = this.#o.shaper ? await this.#o.shaper.admit(dest) : null;
    if (admission && !admission.ok) return recipients.map((r) => ({ kind: 'deferred', address: r.address, reply: admission.error, tried: false }));
    this.counters.attempts++;
    const t0 = performance.now();
    // A site's recipients_per_transaction: one transaction per slice, one after the other.
    const max = admission?.value.maxRecipients ?? Infinity;
    const results: RecipientResult[] = [];
    let throttled = false;
    try {
      for (let i = 0; i < recipients.length; i += max) results.push(...(await transport.deliver(dest, { message: m, recipients: max < recipients.length ? recipients.slice(i, i + max) : recipients, body })));
    } finally {
      throttled = admission?.value.done(results) ?? false;
    }
    this.#stats.record(dest.key, (performance.now() - t0) / 1000, results, this.#now());
    if (gate) {
      // A throttle (421 too many connections) is a site that is up and says "slower": not a breaker failure.
      const connFail = !throttled && results.length > 0 && results.every((r) => r.kind === 'deferred' && (r.reply.code === 421 || CONNECTION_COMMANDS.has(r.reply.command ?? '')));
      gate.record(dest.key, connFail ? 'connection-failure' : results.some((r) => r.kind === 'delivered') ? 'ok' : 'other', this.#now());
    }
    if (results.some((r) => r.kind === 'delivered')) this.#o.recovery?.up(dest.key);
    return results;
  }

  async #settle(m: MessageRecord, results: RecipientResult[], shapes: ReadonlyMap<string, DestinationShape> = new Map()): Promise<void> {
    const o = this.#o;
    const now = this.#now();
    const expired = now - m.receivedAt >= o.maxQueueLifetimeMs;
    const byAddress = new Map(m.recipients.map((r) => [r.address, r]));
    const outcomes: RecipientOutcome[] = [];
    const tiedTo: string[] = [];
    const failed: Array<{ recipient: Recipient; reply: ReplyRecord; action: 'failed' }> = [];
    for (const r of results) {
      const rcpt = byAddress.get(r.address)!;
      let reply = r.reply;
      let outcome: RecipientOutcome['kind'] = r.kind;
      if (r.kind === 'deferred' && expired) {
        outcome = 'failed';
        reply = { ...reply, transient: false, enhanced: '4.4.7', text: `delivery time expired after ${formatAge(now - m.receivedAt)}; last error: ${reply.text}` };
      }
      const tried = r.kind !== 'deferred' || r.tried !== false;
      const category = outcome === 'delivered' ? undefined : o.classify?.(reply, outcome);
      if (outcome === 'deferred') {
        // The destination's outage deferred it: it waits for the destination (released when
        // it is seen working again) as well as for its retry time, whichever comes first.
        const waitFor = reply.destination !== undefined && destinationCaused(r) ? reply.destination : undefined;
        if (waitFor !== undefined && !tiedTo.includes(waitFor)) tiedTo.push(waitFor);
        // Not tried (an open circuit): no attempt is counted and the backoff does not grow.
        // Without a recovery to release it, it is due when the circuit lets a probe through;
        // with one, the release makes it due, and its own retry is never before the circuit
        // reopens (a short schedule would otherwise lease and defer it again and again).
        const reopens = tried ? 0 : (o.gate?.retryAt?.(reply.destination ?? '') ?? 0);
        // Shaping decides when a throttled, held back or suspended recipient is due (paced by the
        // site's lowered rate), and a site's own retry schedule; otherwise the default below.
        const shaped = o.shaper?.retryAt(reply, rcpt.attempts + 1, tried, now) ?? null;
        const retryAt = shaped ?? (tried ? o.retryAt(rcpt.attempts + 1, now)
          : o.recovery ? Math.max(reopens, o.retryAt(Math.max(rcpt.attempts, 1), now))
            : reopens > now ? reopens : o.retryAt(Math.max(rcpt.attempts, 1), now));
        outcomes.push({ address: r.address, kind: outcome, retryAt, reply, ...(tried ? {} : { tried: false }), ...(waitFor !== undefined ? { waitFor } : {}) });
        this.counters.deferred++;
      } else {
        outcomes.push({ address: r.address, kind: outcome, reply });
        if (outcome === 'delivered') this.counters.delivered++;
        else {
          this.counters.bounced++;
          failed.push({ recipient: rcpt, reply, action: 'failed' });
        }
      }
      const shape = reply.destination === undefined ? undefined : shapes.get(reply.destination);
      o.onEvent?.({
        type: outcome === 'failed' ? 'bounced' : outcome,
        time: new Date(now).toISOString(),
        id: m.id,
        sender: m.sender,
        recipient: r.address,
        ...(reply.destination !== undefined ? { destination: reply.destination } : {}),
        ...(reply.code !== undefined ? { code: reply.code } : {}),
        ...(reply.enhanced !== undefined ? { enhanced: reply.enhanced } : {}),
        ...(category !== undefined ? { category } : {}),
        ...(shape !== undefined ? { ...(shape.site !== '' ? { site: shape.site } : {}), egress: shape.source, ...(shape.pool !== undefined ? { pool: shape.pool } : {}) } : {}),
        reply: reply.text,
        attempts: rcpt.attempts + (tried ? 1 : 0),
        ...(tried ? {} : { tried: false }),
      });
      o.log.info(
        { id: m.id, rcpt: r.address, outcome, destination: reply.destination, code: reply.code, enhanced: reply.enhanced, category, reply: reply.text, attempts: rcpt.attempts + (tried ? 1 : 0), queuedMs: now - m.receivedAt },
        outcome,
      );
    }
    // The bounce is queued before the outcomes are settled: a crash in between can send a
    // bounce twice, never lose one (settling last deletes the body the bounce quotes).
    if (failed.length > 0 && o.bounces) {
      try {
        const original = o.queue.withBody(m.id, (b) => Buffer.from(b));
        const id = await o.bounces.bounce(m, failed, original);
        if (id !== null) {
          this.counters.bouncesSent++;
          o.log.info({ id: m.id, bounce: id, rcpts: failed.length }, 'bounce queued');
          this.wake();
        }
      } catch (err) {
        // Keep the failures pending rather than lose the bounce: try again later.
        o.log.error({ err, id: m.id }, 'bounce could not be queued; recipients deferred');
        const retryAt = now + 300_000;
        for (let i = 0; i < outcomes.length; i++) {
          const oc = outcomes[i]!;
          if (oc.kind === 'failed') outcomes[i] = { address: oc.address, kind: 'deferred', retryAt, ...(oc.reply ? { reply: oc.reply } : {}) };
        }
      }
    }
    try {
      // m.attempts as leased: an attempt settled since means the lease was taken over.
      await o.queue.settle(m.id, outcomes, this.#owner, m.attempts);
      o.recovery?.settled(m.id, tiedTo);
    } catch (err) {
      // Our lease was lost (expired and taken): the other owner's outcome stands.
      o.log.warn({ err, id: m.id }, 'settle refused');
      o.recovery?.settled(m.id, []);
    }
  }
}
