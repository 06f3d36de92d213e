// Bulk shaping (docs/shaping.md): which provider "site" a destination belongs to (by the
// recipient domain, else by the suffix of its MX hosts), the limits the shaping file gives that
// source × site, and the adaptive back-off that lowers them when the site throttles. The
// scheduler asks it to admit each transaction, tells it the results, and asks it when a
// deferral caused by throttling or a suspension comes back (seconds, paced by the lowered
// rate, not the retry schedule; and never as a failure for the circuit breaker). It also picks
// the egress source of a message: the pool a trusted client named (X-Postern-Pool, the API's
// "pool"), else the one its sender domain names, else the default pool; one source of it by
// weight, the same for every transaction of the message; and, in a pool that spills, another
// source while that one has spent its warm-up budget at the site. Warm-up counts are kept in
// the queue's LMDB environment when a store is given (queue/warmup-counts.ts).
import type { ShapingFile, ShapingLimits, ShapingPool, ShapingSite, ShapingSource } from '../../config/shaping.js';
import type { ReplyRecord } from '../../queue/store.js';
import type { Logger } from '../../log/logger.js';
import { normalizeDomain } from '../../lib/domain-name.js';
import { siteKey } from '../mx.js';
import { nextRetryAt } from '../backoff.js';
import type { Destination, RecipientResult } from '../types.js';
import type { DeliveryShaper, ShaperAdmission, RouteResult } from '../scheduler.js';
import { classifyReply, SHAPING_COMMAND } from './reply-class.js';
import { failure, success } from '../../lib/result.js';
import { SiteState, MAX_WAIT_MS, type SiteCeilings } from './site-state.js';

/** The source of mail no pool applies to: no address is bound, the EHLO name is POSTERN_HOSTNAME. */
export const DEFAULT_SOURCE = 'default';

/** What route() needs of the message to pick its source. */
export interface RoutedMessage {
  id: string;
  sender: string;
  /** The pool a trusted client named (the queue record's `pool`): it wins over the sender's domain. */
  pool?: string;
}

/** Where warm-up counts persist (queue/warmup-counts.ts); without one they live in memory only. */
export interface WarmupStore {
  /** The count of `key` ("source|site") on UTC day `day` (days since the epoch); 0 when none. */
  get(day: number, key: string): number;
  /** The count of `key` on `day` is now `n` (the store may write it a moment later). */
  set(day: number, key: string, n: number): void;
}
/** How long a suspend_on pattern or a blocklist listing suspends, when the file does not say. */
export const DEFAULT_SUSPEND_MS = 30 * 60_000;
export const DEFAULT_BLOCKLIST_SUSPEND_MS = 4 * 3_600_000;
/** States and destination entries kept before idle ones are swept. */
const SWEEP_AT = 4096;

/** The POSTERN_DEST_* settings: the limits of a site the file says nothing about. */
export interface ShaperDefaults {
  maxConnections: number;
  messagesPerConnection: number;
  /** Messages per ms; null: unlimited. */
  rate: number | null;
}

/** The alert hook: a source × site was suspended (the alerts step will route these further). */
export interface ShapingAlert {
  type: 'shaping.suspended';
  source: string;
  site: string;
  reason: 'pattern' | 'blocklist';
  until: number;
  reply: ReplyRecord;
}

/**
 * Limits shared by the nodes of a cluster (cluster/cluster-limiter.ts, with POSTERN_REDIS_URL):
 * asked after this node's own pacer and slot, with the ceilings of the source × site, so the
 * cluster as a whole keeps them. Never waits on Redis: down or slow, it answers from this
 * node's share of the limits.
 */
export interface SharedLimits {
  admit(key: string, limits: { rate: number | null; maxConnections: number }): Promise<{ ok: true; release: () => void } | { ok: false; waitMs: number }>;
}

/** Warm-up counts per UTC day and "source|site" added up over the cluster (cluster/shared-warmup.ts). */
export interface SharedWarmup {
  add(day: number, key: string, delta: 1 | -1): Promise<number | null>;
}

export interface ShaperOptions {
  file: ShapingFile;
  /** Cluster-wide limits (Redis); without it the limits are this node's. */
  shared?: SharedLimits;
  /** Cluster-wide warm-up day counts (Redis): `add` returns the cluster's count after it, or null when Redis is away. */
  sharedWarmup?: SharedWarmup;
  defaults: ShaperDefaults;
  log?: Logger;
  onAlert?: (a: ShapingAlert) => void;
  /** Called by close() (the engine stops watching the file). */
  onClose?: () => void;
  /** Persist the warm-up counts here (a restart then keeps the day's spending). */
  warmup?: WarmupStore;
  now?: () => number;
  random?: () => number;
}

/** The limits in force for one source × site: the settings, then [defaults], the site, its source. */
export interface EffectiveLimits extends ShapingLimits {
  maxConnections: number;
  messagesPerConnection: number;
  adaptive: boolean;
  suspendOn: readonly string[];
  suspendForMs: number;
  blocklistSuspendForMs: number;
}

interface Entry {
  state: SiteState;
  limits: EffectiveLimits;
  source: string;
  site: string;
  /** The key of the state: "source|site" (the warm-up counts use it too). */
  key: string;
}

const DAY_MS = 86_400_000;

/** A source × site's messages on one UTC day: this node's, and the cluster's as the last INCR returned. */
interface DayCount {
  day: number;
  n: number;
  cluster?: number;
}
/** Pool names remembered as warned about (a stored pool the file no longer has): bounded, they come from records. */
const MAX_WARNED_POOLS = 1000;

/** A source's warm-up budget for day `now` (UTC days from its start, day 1 = `first`); Infinity once it passes any real volume. */
export function warmupBudget(w: { startMs: number; first: number; factor: number }, now: number): number {
  const day = Math.max(0, Math.floor((now - w.startMs) / DAY_MS));
  const b = w.first * Math.pow(w.factor, day);
  return b >= 1e9 ? Infinity : Math.floor(b);
}

/** RFC 3463 X.4.5, mail system congestion: the site's limits are full, the transaction was not tried. */
const BUSY = '4.4.5';

export class Shaper implements DeliveryShaper {
  #file: ShapingFile;
  readonly #defaults: ShaperDefaults;
  readonly #o: ShaperOptions;
  readonly #now: () => number;
  readonly #random: () => number;
  #exact = new Map<string, ShapingSite>();
  #wildcard = new Map<string, ShapingSite>();
  #mx = new Map<string, ShapingSite>();
  #senderExact = new Map<string, ShapingPool>();
  #senderWildcard = new Map<string, ShapingPool>();
  #defaultPool: ShapingPool | null = null;
  #poolsByName = new Map<string, ShapingPool>();
  /** Stored pool names this version of the file lacks, already logged (once per name). */
  readonly #missingPools = new Set<string>();
  /** Deferral replies of a spent source whose pool spills: due again in seconds, to be routed to a source with budget. */
  readonly #respill = new WeakSet<ReplyRecord>();
  readonly #states = new Map<string, SiteState>();
  /** Destination key → its source × site: how a reply (which names the destination) finds its state. */
  readonly #byDest = new Map<string, Entry>();
  /** "source|site" → the UTC day and the messages sent on it, for warm-up budgets (persisted through `warmup` when given). */
  readonly #sentToday = new Map<string, DayCount>();
  #closed = false;

  constructor(o: ShaperOptions) {
    this.#o = o;
    this.#defaults = o.defaults;
    this.#now = o.now ?? Date.now;
    this.#random = o.random ?? Math.random;
    this.#file = o.file;
    this.setFile(o.file);
  }

  /** Take a new version of the file; states keep what they learned, below the new ceilings. */
  setFile(file: ShapingFile): void {
    this.#file = file;
    this.#exact = new Map();
    this.#wildcard = new Map();
    this.#mx = new Map();
    for (const s of file.sites) {
      for (const d of s.domains) {
        if (d.startsWith('*.')) this.#wildcard.set(d.slice(2), s);
        else this.#exact.set(d, s);
      }
      for (const m of s.mx) this.#mx.set(m, s);
    }
    this.#senderExact = new Map();
    this.#senderWildcard = new Map();
    this.#defaultPool = null;
    this.#poolsByName = new Map(file.pools.map((p) => [p.name, p]));
    this.#missingPools.clear();
    for (const p of file.pools) {
      for (const d of p.senderDomains) {
        if (d.startsWith('*.')) this.#senderWildcard.set(d.slice(2), p);
        else this.#senderExact.set(d, p);
      }
      if (p.isDefault) this.#defaultPool = p;
    }
    this.#byDest.clear();
  }

  /** The site of a recipient domain and MX hosts: a domain rule first, then the longest MX suffix. */
  siteFor(domain: string, hosts: readonly { host: string }[]): ShapingSite | null {
    const d = normalizeDomain(domain);
    const exact = this.#exact.get(d);
    if (exact) return exact;
    for (let i = d.indexOf('.'); i >= 0; i = d.indexOf('.', i + 1)) {
      const w = this.#wildcard.get(d.slice(i + 1));
      if (w) return w;
    }
    if (this.#mx.size === 0) return null;
    for (const h of hosts) {
      const name = normalizeDomain(h.host);
      for (let i = -1; i < name.length; i = name.indexOf('.', i + 1)) {
        const s = this.#mx.get(name.slice(i + 1));
        if (s) return s;
        if (name.indexOf('.', i + 1) < 0) break;
      }
    }
    return null;
  }

  /** The pool of a sender address: its domain's pool (exact, then "*.parent"), else the default pool. */
  poolFor(sender: string): ShapingPool | null {
    const at = sender.lastIndexOf('@');
    if (at >= 0) {
      const d = normalizeDomain(sender.slice(at + 1));
      const exact = this.#senderExact.get(d);
      if (exact) return exact;
      for (let i = d.indexOf('.'); i >= 0; i = d.indexOf('.', i + 1)) {
        const w = this.#senderWildcard.get(d.slice(i + 1));
        if (w) return w;
      }
    }
    return this.#defaultPool;
  }

  /**
   * The pool of a message: the one it names (X-Postern-Pool, the API), else its sender's. A
   * named pool the file no longer has (re-read since) falls back to the sender's rule, never
   * stuck or lost, with one warning per name and version of the file.
   */
  poolOf(m: RoutedMessage): ShapingPool | null {
    if (m.pool !== undefined) {
      const p = this.#poolsByName.get(m.pool);
      if (p) return p;
      if (!this.#missingPools.has(m.pool) && this.#missingPools.size < MAX_WARNED_POOLS) {
        this.#missingPools.add(m.pool);
        this.#o.log?.warn({ pool: m.pool, id: m.id }, 'shaping: a queued message names a pool the shaping file no longer has; it and the others naming it use their sender domain\'s pool');
      }
    }
    return this.poolFor(m.sender);
  }

  /**
   * The source a message leaves from: one of its pool's sources by weight, picked by a hash of
   * the message id, so every transaction and every retry of the message uses the same one
   * (while the file stays the same); null when no pool applies.
   */
  sourceFor(m: RoutedMessage): ShapingSource | null {
    const pool = this.poolOf(m);
    return pool ? this.#pick(pool.sources, fnv1a(m.id)) : null;
  }

  /** One of `members` by weight, at the point `hash` of their total. */
  #pick(members: readonly { source: string; weight: number }[], hash: number): ShapingSource | null {
    const total = members.reduce((n, s) => n + s.weight, 0);
    if (total === 0) return null;
    let pick = hash % total;
    for (const s of members) {
      if (pick < s.weight) return this.#file.sources.get(s.source) ?? null;
      pick -= s.weight;
    }
    return null;
  }

  /**
   * A routed destination with its site's connection settings: TLS policy (unless a route set
   * its own), messages per connection, PIPELINING/CHUNKING. A matched site gets a key of its
   * own ("…@site"), so its pool and breaker are not shared with mail outside the rule.
   */
  route(domain: string, dest: RouteResult, globalTls: string, message?: RoutedMessage): RouteResult {
    if (dest.kind !== 'smtp' && dest.kind !== 'lmtp') return dest;
    const site = this.siteFor(domain, dest.hosts);
    const pool = message ? this.poolOf(message) : null;
    const primary = pool && message ? this.#pick(pool.sources, fnv1a(message.id)) : null;
    let out = this.#routeFrom(dest, site, primary, globalTls, pool);
    // A pool that spills: past the day's warm-up budget of its source at this site, another
    // source of the pool that has budget there, by weight (the same one for the message while
    // the set with budget stays the same); none has: it stays, and waits for the next day.
    if (pool?.warmupOverflow === 'spill' && primary && message && this.#spentAt(out) !== null) {
      const now = this.#now();
      const open = pool.sources.filter((m) => m.source !== primary.name && this.#spentAt(this.#routeFrom(dest, site, this.#file.sources.get(m.source) ?? null, globalTls, pool), now) === null);
      const other = this.#pick(open, fnv1a(`${message.id}|spill`));
      if (other) out = this.#routeFrom(dest, site, other, globalTls, pool);
    }
    return out;
  }

  /** The destination `dest` as it leaves from `src` (null: the default source). */
  #routeFrom(dest: Extract<RouteResult, { kind: 'smtp' | 'lmtp' }>, site: ShapingSite | null, src: ShapingSource | null, globalTls: string, pool: ShapingPool | null): Extract<RouteResult, { kind: 'smtp' | 'lmtp' }> {
    const source = src?.name ?? DEFAULT_SOURCE;
    const limits = this.#limits(site, source);
    // A destination that logs in keeps its verified TLS whatever the site says (config/load.ts
    // required it: the password must never go where it could be read); an enforcing MTA-STS or
    // DANE policy is never relaxed by a shaping rule either.
    const auth = dest.kind === 'smtp' ? dest.auth : undefined;
    const tlsAuth = dest.kind === 'smtp' ? dest.tlsAuth : undefined;
    const tlsPolicy = limits.tls !== undefined && dest.tlsPolicy === globalTls && auth === undefined && !tlsAuth?.enforce ? limits.tls : dest.tlsPolicy;
    // The source is part of the key: a pooled connection bound to one address never carries another source's mail.
    const key = `${siteKey(dest.kind, dest.hosts, tlsPolicy, { auth, tlsAuth })}${site ? `@${site.name}` : ''}${src ? `~${src.name}` : ''}`;
    return {
      ...dest,
      key,
      tlsPolicy,
      shape: {
        site: site?.name ?? '',
        source,
        ...(src && pool ? { pool: pool.name } : {}),
        ...(src ? { localAddress: src.address, heloName: src.ehlo } : {}),
        maxConnections: limits.maxConnections,
        maxMessagesPerConnection: limits.messagesPerConnection,
        ...(limits.pipelining !== undefined ? { pipelining: limits.pipelining } : {}),
        ...(limits.chunking !== undefined ? { chunking: limits.chunking } : {}),
      },
    };
  }

  async admit(dest: Destination): Promise<ShaperAdmission> {
    const e = this.#entry(dest);
    const now = this.#now();
    if (this.#closed) return failure(this.#reply(dest, 'delivery is stopping', '4.3.2'));
    if (e.state.suspendedUntil > now) {
      return failure(this.#reply(dest, `source ${e.source} is suspended at ${e.site} until ${new Date(e.state.suspendedUntil).toISOString()}`, '4.7.0'));
    }
    const spent = this.#warmupSpent(e, now);
    if (spent !== null) return failure(this.#spentReply(dest, e, spent, now));
    // Counted before the wait for a slot, so transactions waiting together cannot overshoot the budget.
    const day = this.#countSent(e, now, 1);
    const over = await this.#countShared(e, now, day);
    if (over !== null) {
      this.#countSent(e, now, -1, day);
      return failure(this.#spentReply(dest, e, over, now));
    }
    const a = await e.state.admit();
    if (a !== 'go') {
      this.#countSent(e, now, -1, day);
      this.#uncountShared(e, day);
    }
    if (a === 'closed') return failure(this.#reply(dest, 'delivery is stopping', '4.3.2'));
    if (a === 'busy') {
      const rate = e.state.rate === null ? 'no rate limit' : `${(e.state.rate * 1000).toPrecision(3)} msg/s`;
      return failure(this.#reply(dest, `${e.site} is at its limit for source ${e.source} (${rate}, ${Math.floor(e.state.window)} connections): deferred, paced`, BUSY));
    }
    const release = await this.#admitShared(e, now);
    if (release === null) {
      e.state.leave();
      this.#countSent(e, now, -1, day);
      this.#uncountShared(e, day);
      if (this.#closed) return failure(this.#reply(dest, 'delivery is stopping', '4.3.2'));
      const c = e.state.ceilings;
      const rate = c.rate === null ? 'no rate limit' : `${(c.rate * 1000).toPrecision(3)} msg/s`;
      return failure(this.#reply(dest, `${e.site} is at its cluster-wide limit for source ${e.source} (${rate}, ${c.maxConnections} connections, all nodes together): deferred, paced`, BUSY));
    }
    let left = false;
    return success({
      maxRecipients: e.limits.recipientsPerTransaction ?? Infinity,
      done: (results: readonly RecipientResult[]) => {
        if (left) return false;
        left = true;
        release();
        e.state.leave();
        return this.#observe(e, results);
      },
    });
  }

  /** The deferral of a source that has sent its warm-up budget to the site today. */
  #spentReply(dest: Destination, e: Entry, spent: number, now: number): ReplyRecord {
    // Routed here before the budget ran out (transactions of several messages at once): in a
    // pool that spills, it comes back in seconds and is routed to a source with budget.
    const pool = dest.kind === 'smtp' || dest.kind === 'lmtp' ? this.#poolsByName.get(dest.shape?.pool ?? '') : undefined;
    if (pool?.warmupOverflow === 'spill' && this.#otherHasBudget(pool, e, now)) {
      const r = this.#reply(dest, `source ${e.source} is warming up: its ${spent} messages for ${e.site} today are sent; pool ${pool.name} spills: routed again to another source`, '4.7.0');
      this.#respill.add(r);
      return r;
    }
    return this.#reply(dest, `source ${e.source} is warming up: its ${spent} messages for ${e.site} today are sent; deferred to tomorrow (UTC)`, '4.7.0');
  }

  /**
   * A warming-up source's message counted in the cluster's day too (one INCR): the budget when
   * that passes it (the count is given back), else null. Redis away: null, this node's count decides.
   */
  async #countShared(e: Entry, now: number, day: number): Promise<number | null> {
    const w = this.#file.sources.get(e.source)?.warmup;
    const shared = this.#o.sharedWarmup;
    if (!w || !shared) return null;
    const total = await shared.add(day, e.key, 1);
    if (total === null) return null;
    const c = this.#count(e.key, day);
    c.cluster = Math.max(c.cluster ?? 0, total);
    const budget = warmupBudget(w, now);
    if (total <= budget) return null;
    shared.add(day, e.key, -1).catch(() => {});
    return budget;
  }

  /** Give back a message counted with #countShared that was not sent after all (not awaited). */
  #uncountShared(e: Entry, day: number): void {
    if (this.#o.sharedWarmup && this.#file.sources.get(e.source)?.warmup) this.#o.sharedWarmup.add(day, e.key, -1).catch(() => {});
  }

  /**
   * The cluster's turn, after this node's pacer and slot: the release of what it gave, or null
   * when it would not within MAX_WAIT_MS (the transaction is then deferred, paced, as 'busy').
   */
  async #admitShared(e: Entry, start: number): Promise<(() => void) | null> {
    const shared = this.#o.shared;
    const c = e.state.ceilings;
    if (!shared || (c.rate === null && !Number.isFinite(c.maxConnections))) return () => {};
    for (;;) {
      const r = await shared.admit(e.key, { rate: c.rate, maxConnections: c.maxConnections });
      if (r.ok) return r.release;
      if (this.#closed || this.#now() + r.waitMs - start > MAX_WAIT_MS) return null;
      await new Promise((resolve) => setTimeout(resolve, Math.min(r.waitMs, 1000)));
    }
  }

  retryAt(reply: ReplyRecord, attempts: number, tried: boolean, now: number): number | null {
    const e = this.#byDest.get(reply.destination ?? '');
    if (!e) return null;
    const jitter = (span: number): number => Math.round(span * this.#random());
    if (reply.command === SHAPING_COMMAND) {
      // Spilled: routed again in a few seconds (a spent source of a spilling pool whose other
      // sources are spent too is routed back to it, then waits for the next day as below).
      if (this.#respill.has(reply)) return now + 1000 + jitter(2000);
      // A spent warm-up budget: due when the next UTC day starts, spread over its first 10 minutes.
      if (this.#warmupSpent(e, now) !== null) return (Math.floor(now / DAY_MS) + 1) * DAY_MS + jitter(600_000);
      if (e.state.suspendedUntil > now) return e.state.suspendedUntil + jitter(Math.min(60_000, e.limits.suspendForMs / 10));
      return reply.enhanced === BUSY ? e.state.retrySlot(now, this.#random) : now + jitter(1000);
    }
    if (!tried) return null;
    const cls = classifyReply(reply, e.limits.suspendOn);
    if ((cls === 'suspend' || cls === 'blocklist') && e.state.suspendedUntil > now) return e.state.suspendedUntil + jitter(60_000);
    if ((cls === 'throttle-connection' || cls === 'throttle-rate') && e.limits.adaptive) return e.state.retrySlot(now, this.#random);
    if (e.limits.retry) return nextRetryAt(attempts, now, e.limits.retry, this.#random);
    return null;
  }

  /** Release every waiting transaction (it is deferred, untried): the scheduler is stopping. */
  close(): void {
    this.#closed = true;
    this.#o.onClose?.();
    for (const s of this.#states.values()) s.close();
  }

  /** The states by "source|site", for /v1/stats, tests and the bench. */
  get states(): ReadonlyMap<string, SiteState> {
    return this.#states;
  }

  /** A warming-up source × site ("source|site"): messages counted today and the day's budget; null when not warming up. */
  warmupToday(key: string, now: number): { sent: number; budget: number } | null {
    const w = this.#file.sources.get(key.slice(0, key.indexOf('|')))?.warmup;
    if (!w) return null;
    const budget = warmupBudget(w, now);
    if (budget === Infinity) return null;
    const c = this.#sentToday.get(key);
    return { sent: c && c.day === Math.floor(now / DAY_MS) ? c.n : 0, budget };
  }

  /** The day's budget when the source is warming up and has sent it to this site today, else null. */
  #warmupSpent(e: Entry, now: number): number | null {
    return this.#spent(e.source, e.key, now);
  }

  /** Has another source of `pool` budget left today at the site of `e`? */
  #otherHasBudget(pool: ShapingPool, e: Entry, now: number): boolean {
    // A site no rule names is keyed by the destination key, which ends with "~SOURCE".
    const named = this.#file.sites.some((s) => s.name === e.site);
    const base = named ? '' : e.site.slice(0, e.site.length - e.source.length - 1);
    return pool.sources.some((m) => m.source !== e.source && this.#spent(m.source, `${m.source}|${named ? e.site : `${base}~${m.source}`}`, now) === null);
  }

  /** #warmupSpent for a routed destination, before any transaction to it (route's spill). */
  #spentAt(d: Extract<RouteResult, { kind: 'smtp' | 'lmtp' }>, now = this.#now()): number | null {
    const source = d.shape?.source ?? DEFAULT_SOURCE;
    if (!this.#file.sources.get(source)?.warmup) return null;
    return this.#spent(source, `${source}|${d.shape?.site ? d.shape.site : d.key}`, now);
  }

  #spent(source: string, key: string, now: number): number | null {
    const w = this.#file.sources.get(source)?.warmup;
    if (!w) return null;
    const budget = warmupBudget(w, now);
    if (budget === Infinity) return null;
    const c = this.#count(key, Math.floor(now / DAY_MS));
    // The cluster's count as last seen (it holds this node's too) or this node's, the larger.
    return Math.max(c.n, c.cluster ?? 0) >= budget ? budget : null;
  }

  /** The day's count of a source × site: in memory, else as stored (a restart keeps the day's spending). */
  #count(key: string, day: number): DayCount {
    let c = this.#sentToday.get(key);
    if (!c || c.day !== day) {
      c = { day, n: this.#o.warmup?.get(day, key) ?? 0 };
      this.#sentToday.set(key, c);
    }
    return c;
  }

  /** Add `delta` to the day's count of a warming-up source × site (undo with -1 and the day returned). */
  #countSent(e: Entry, now: number, delta: 1 | -1, day = Math.floor(now / DAY_MS)): number {
    if (!this.#file.sources.get(e.source)?.warmup) return day;
    const c = this.#count(e.key, day);
    const n = Math.max(0, c.n + delta);
    if (n !== c.n) {
      c.n = n;
      this.#o.warmup?.set(day, e.key, n);
    }
    return day;
  }

  #reply(dest: Destination, text: string, enhanced: string): ReplyRecord {
    return { text, enhanced, transient: true, destination: dest.key, command: SHAPING_COMMAND, at: this.#now() };
  }

  #observe(e: Entry, results: readonly RecipientResult[]): boolean {
    const now = this.#now();
    let failed = 0;
    let throttled = 0;
    let conn = false;
    let rate = false;
    if (results.some((r) => r.kind === 'delivered')) e.state.onSuccess(now);
    for (const r of results) {
      if (r.kind === 'delivered') continue;
      failed++;
      const cls = classifyReply(r.reply, e.limits.suspendOn);
      if (cls === 'other') continue;
      throttled++;
      if (cls === 'throttle-connection') conn = true;
      else if (cls === 'throttle-rate') rate = true;
      else this.#suspend(e, cls === 'blocklist' ? 'blocklist' : 'pattern', r.reply, now);
    }
    if (conn) e.state.onConnectionThrottle(now);
    if (rate) e.state.onRateThrottle(now);
    if (conn || rate) this.#o.log?.debug({ site: e.state.key, throttles: e.state.throttles, window: e.state.window, ratePerS: e.state.rate === null ? null : e.state.rate * 1000 }, 'shaping: throttled, limits lowered');
    return failed > 0 && throttled === failed;
  }

  #suspend(e: Entry, reason: 'pattern' | 'blocklist', reply: ReplyRecord, now: number): void {
    const until = now + (reason === 'blocklist' ? e.limits.blocklistSuspendForMs : e.limits.suspendForMs);
    const already = e.state.suspendedUntil > now;
    e.state.suspend(until, { reason, reply: reply.text });
    if (already) return;
    const alert: ShapingAlert = { type: 'shaping.suspended', source: e.source, site: e.site, reason, until, reply };
    this.#o.log?.warn({ source: e.source, site: e.site, reason, until: new Date(until).toISOString(), code: reply.code, enhanced: reply.enhanced, reply: reply.text }, 'shaping: source suspended at site');
    this.#o.onAlert?.(alert);
  }

  #entry(dest: Destination): Entry {
    let e = this.#byDest.get(dest.key);
    if (e) return e;
    const shape = dest.kind === 'smtp' || dest.kind === 'lmtp' ? dest.shape : undefined;
    const siteName = shape?.site ?? '';
    const site = siteName === '' ? null : (this.#file.sites.find((s) => s.name === siteName) ?? null);
    const source = shape?.source ?? DEFAULT_SOURCE;
    const limits = this.#limits(site, source);
    // A site the file names is one state for all its destinations; any other destination is its own site.
    const siteId = site ? site.name : dest.key;
    const key = `${source}|${siteId}`;
    const ceilings: SiteCeilings = { maxConnections: dest.kind === 'smtp' || dest.kind === 'lmtp' ? limits.maxConnections : Infinity, rate: limits.rate ?? null, adaptive: limits.adaptive };
    let state = this.#states.get(key);
    if (!state) {
      if (this.#states.size >= SWEEP_AT) this.#sweep();
      state = new SiteState(key, ceilings, this.#now);
      this.#states.set(key, state);
    } else if (!sameCeilings(state.ceilings, ceilings)) state.setCeilings(ceilings);
    e = { state, limits, source, site: siteId, key };
    if (this.#byDest.size >= SWEEP_AT) this.#sweep();
    this.#byDest.set(dest.key, e);
    return e;
  }

  #limits(site: ShapingSite | null, source: string): EffectiveLimits {
    const d = this.#defaults;
    const merged: ShapingLimits = { ...this.#file.defaults, ...site?.limits, ...site?.sources.get(source) };
    return {
      ...merged,
      maxConnections: merged.maxConnections ?? d.maxConnections,
      messagesPerConnection: merged.messagesPerConnection ?? d.messagesPerConnection,
      ...(merged.rate !== undefined ? { rate: merged.rate } : d.rate !== null ? { rate: d.rate } : {}),
      adaptive: merged.adaptive ?? true,
      suspendOn: merged.suspendOn ?? [],
      suspendForMs: merged.suspendForMs ?? DEFAULT_SUSPEND_MS,
      blocklistSuspendForMs: merged.blocklistSuspendForMs ?? DEFAULT_BLOCKLIST_SUSPEND_MS,
    };
  }

  #sweep(): void {
    const now = this.#now();
    for (const [k, e] of this.#byDest) if (e.state.idle(now)) this.#byDest.delete(k);
    for (const [k, s] of this.#states) if (s.idle(now)) this.#states.delete(k);
    const today = Math.floor(now / DAY_MS);
    for (const [k, c] of this.#sentToday) if (c.day !== today) this.#sentToday.delete(k);
  }
}

/** FNV-1a, 32 bits: a stable spread of message ids over a pool's weights. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function sameCeilings(a: SiteCeilings, b: SiteCeilings): boolean {
  return a.maxConnections === b.maxConnections && a.rate === b.rate && a.adaptive === b.adaptive;
}
