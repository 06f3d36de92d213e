// Where a recipient domain's mail goes: a route, else the smarthost, else its MX site.
// MX resolution follows RFC 5321 §5.1 (preference order, equal preferences spread at random,
// implicit MX from A/AAAA when there is no MX, unusable MX hosts refused) and RFC 7505 (a lone
// MX "." means the domain accepts no mail: bounce at once with 556 5.1.10). NXDOMAIN is
// permanent (5.1.2); SERVFAIL, refusals and timeouts are transient (4.4.3, RFC 3463).
// Every address an MX host or an address literal yields passes the AddressPolicy, and the
// hosts handed out carry the exact addresses that passed: the connector never looks a name up
// again, so a DNS answer cannot change between the check and the connection (rebinding).
import { isIP } from 'node:net';
import { AddressPolicy } from './address-policy.js';
import { matchRoute, formatHostPort, parseHostPort, type RouteTable } from '../config/routes.js';
import { normalizeDomain } from '../lib/domain-name.js';
import { createHash } from 'node:crypto';
import { replyRecord, type Destination, type HostPort, type TlsAuth, type TlsPolicy } from './types.js';
import type { ReplyRecord } from '../queue/store.js';
import { redactUrl } from '../lib/redact-url.js';

/** The part of node:dns/promises' `Resolver` used here; tests pass a fake. */
export interface DnsResolver {
  resolveMx(hostname: string): Promise<Array<{ exchange: string; priority: number }>>;
  resolve4(hostname: string, options: { ttl: true }): Promise<Array<{ address: string; ttl: number }>>;
  resolve6(hostname: string, options: { ttl: true }): Promise<Array<{ address: string; ttl: number }>>;
}

/** One MX record: the exchange's name (lower case, no trailing dot) and its preference. */
export interface MxExchange {
  host: string;
  preference: number;
}

export type MxResult =
  /** Preference order; equal preferences shuffled on every call. `ttlMs`: how long the answer stays cached. */
  | { kind: 'hosts'; hosts: HostPort[]; ttlMs: number }
  /** RFC 7505: the domain accepts no mail. */
  | { kind: 'null-mx' }
  /** NXDOMAIN. */
  | { kind: 'no-domain' }
  /** The domain exists but no MX host (or implicit MX) has a usable address. Permanent. */
  | { kind: 'no-hosts'; reason: string }
  | { kind: 'temp-error'; reason: string };

export interface MxResolverOptions {
  /** TTL for a positive answer without an address TTL (default 300 s). */
  defaultTtlMs?: number;
  /** Bounds on the TTL of positive answers (default 30 s .. 1 h). */
  minTtlMs?: number;
  maxTtlMs?: number;
  /** How long NXDOMAIN, null MX and "no usable host" are cached (default 60 s). */
  negativeTtlMs?: number;
  /** How long a transient failure is cached (default 5 s): one bad DNS second should not cost every message a lookup. */
  tempErrorTtlMs?: number;
  /** At most this many MX hosts are looked up and returned (default 10), bounding the fan-out of one lookup. */
  maxHosts?: number;
  /** Cache entries kept (default 10000); the oldest is evicted first. */
  maxEntries?: number;
  /** A lookup that has not settled after this long is a transient failure (default 20 s). */
  timeoutMs?: number;
  /** Accept MX hosts on loopback addresses (default false: an MX at 127.0.0.1 mails ourselves). Ignored with `policy`. */
  allowLoopback?: boolean;
  /** Which addresses may be connected to (default: public ones, loopback per allowLoopback, no knowledge of the node's own addresses; the engine passes the full policy). */
  policy?: AddressPolicy;
  /** Addresses used per MX host, in the order DNS gave them (default 4). */
  maxAddressesPerHost?: number;
  now?: () => number;
  random?: () => number;
}

/** What is cached: the hosts as preference groups, shuffled when handed out. */
type Answer = { kind: 'groups'; groups: HostPort[][] } | Exclude<MxResult, { kind: 'hosts' }>;

interface Entry {
  answer: Answer;
  expiresAt: number;
}


// c-ares codes for "the name has no such records" (ENODATA) and "no such name" (ENOTFOUND).
// Everything else (ESERVFAIL, ETIMEOUT, ECONNREFUSED, EREFUSED, ...) is transient.
const NO_DATA = 'ENODATA';
const NOT_FOUND = 'ENOTFOUND';

function codeOf(err: unknown): string {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : String((err as { message?: unknown } | null)?.message ?? err);
}

/** RFC 7505 §3: a null MX is a lone "." (node reports it as ""). */
const isNullMx = (e: string): boolean => e === '' || e === '.';

type AddressResult = { kind: 'ok'; addresses: string[]; ttlS: number | undefined } | { kind: 'none'; reason: string } | { kind: 'temp'; reason: string };

export class MxResolver {
  readonly #dns: DnsResolver;
  readonly #cache = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<Entry>>();
  readonly #defaultTtlMs: number;
  readonly #minTtlMs: number;
  readonly #maxTtlMs: number;
  readonly #negativeTtlMs: number;
  readonly #tempErrorTtlMs: number;
  readonly #maxHosts: number;
  readonly #maxEntries: number;
  readonly #timeoutMs: number;
  readonly #policy: AddressPolicy;
  readonly #maxAddresses: number;
  readonly #now: () => number;
  readonly #random: () => number;

  constructor(dns: DnsResolver, opts: MxResolverOptions = {}) {
    this.#dns = dns;
    this.#defaultTtlMs = opts.defaultTtlMs ?? 300_000;
    this.#minTtlMs = opts.minTtlMs ?? 30_000;
    this.#maxTtlMs = opts.maxTtlMs ?? 3_600_000;
    this.#negativeTtlMs = opts.negativeTtlMs ?? 60_000;
    this.#tempErrorTtlMs = opts.tempErrorTtlMs ?? 5_000;
    this.#maxHosts = opts.maxHosts ?? 10;
    this.#maxEntries = opts.maxEntries ?? 10_000;
    this.#timeoutMs = opts.timeoutMs ?? 20_000;
    this.#policy = opts.policy ?? new AddressPolicy({ allowLoopback: opts.allowLoopback ?? false, ownAddresses: [] });
    this.#maxAddresses = opts.maxAddressesPerHost ?? 4;
    this.#now = opts.now ?? Date.now;
    this.#random = opts.random ?? Math.random;
  }

  /** Concurrent calls for one domain share one lookup; answers are cached (see options). */
  async resolve(domain: string): Promise<MxResult> {
    const d = normalizeDomain(domain);
    if (d === '') return { kind: 'no-domain' };
    return this.#cached(d, () => this.#lookup(d));
  }

  async #cached(key: string, lookup: () => Promise<{ answer: Answer; ttlMs: number }>): Promise<MxResult> {
    const cached = this.#cache.get(key);
    const now = this.#now();
    if (cached && cached.expiresAt > now) return this.#hand(cached, now);
    let p = this.#inflight.get(key);
    if (!p) {
      p = lookup().then((answer) => this.#store(key, answer));
      this.#inflight.set(key, p);
      const clear = (): void => void this.#inflight.delete(key);
      p.then(clear, clear);
    }
    return this.#hand(await p, this.#now());
  }

  /**
   * The hosts of an MX set the caller already holds (DANE: the one the validating resolver
   * gave, tls-policy.ts), their addresses looked up and checked as resolve() does. Cached by
   * the domain and the set, apart from the domain's own answer.
   */
  async resolveExchanges(domain: string, exchanges: readonly MxExchange[]): Promise<MxResult> {
    const d = normalizeDomain(domain);
    const set = exchanges.slice(0, this.#maxHosts).map((e) => ({ exchange: normalizeDomain(e.host), priority: e.preference }));
    if (set.length === 0) return { kind: 'no-hosts', reason: 'no MX hosts given' };
    // "\0" cannot occur in a domain name: these keys never meet resolve()'s.
    const key = `${d}\0${set.map((e) => `${e.priority} ${e.exchange}`).join(',')}`;
    return this.#cached(key, () => this.#fromExchanges(set));
  }

  /** The policy every address passes (also applied to address literals by destinationFor). */
  get policy(): AddressPolicy {
    return this.#policy;
  }

  /** Forget every cached answer (e.g. on reload). */
  clear(): void {
    this.#cache.clear();
  }

  get size(): number {
    return this.#cache.size;
  }

  #hand(entry: Entry, now: number): MxResult {
    const a = entry.answer;
    if (a.kind !== 'groups') return a;
    const hosts: HostPort[] = [];
    for (const g of a.groups) hosts.push(...this.#shuffle(g));
    return { kind: 'hosts', hosts, ttlMs: Math.max(0, entry.expiresAt - now) };
  }

  #shuffle(group: readonly HostPort[]): HostPort[] {
    const g = group.slice();
    for (let i = g.length - 1; i > 0; i--) {
      const j = Math.floor(this.#random() * (i + 1));
      [g[i], g[j]] = [g[j]!, g[i]!];
    }
    return g;
  }

  #store(d: string, r: { answer: Answer; ttlMs: number }): Entry {
    const entry: Entry = { answer: r.answer, expiresAt: this.#now() + r.ttlMs };
    this.#cache.delete(d); // re-insert at the end: Map order is the eviction order
    if (this.#cache.size >= this.#maxEntries) {
      const oldest = this.#cache.keys().next();
      if (!oldest.done) this.#cache.delete(oldest.value);
    }
    this.#cache.set(d, entry);
    return entry;
  }

  #clampTtl(ttlS: number | undefined): number {
    if (ttlS === undefined) return this.#defaultTtlMs;
    return Math.min(this.#maxTtlMs, Math.max(this.#minTtlMs, ttlS * 1000));
  }

  #withTimeout<T>(p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, reject) => {
      // Not unref'd: the lookup it guards is pending work, and the timer is cleared when it settles.
      timer = setTimeout(() => reject(Object.assign(new Error('DNS lookup timed out'), { code: 'ETIMEOUT' })), this.#timeoutMs);
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
  }

  async #lookup(d: string): Promise<{ answer: Answer; ttlMs: number }> {
    const neg = (answer: Answer): { answer: Answer; ttlMs: number } => this.#negative(answer);
    let mx: Array<{ exchange: string; priority: number }>;
    try {
      mx = await this.#withTimeout(this.#dns.resolveMx(d));
    } catch (err) {
      const code = codeOf(err);
      if (code === NOT_FOUND) return neg({ kind: 'no-domain' });
      if (code !== NO_DATA) return neg({ kind: 'temp-error', reason: `MX lookup for ${d}: ${code}` });
      mx = [];
    }

    if (mx.length === 0) {
      // RFC 5321 §5.1: no MX records → the domain itself is the implicit MX (preference 0).
      const a = await this.#addresses(d);
      if (a.kind === 'none') return neg({ kind: 'no-hosts', reason: `no MX records and ${a.reason}` });
      if (a.kind === 'temp') return neg({ kind: 'temp-error', reason: a.reason });
      return { answer: { kind: 'groups', groups: [a.addresses.map((address) => ({ host: d, port: 25, address }))] }, ttlMs: this.#clampTtl(a.ttlS) };
    }

    if (mx.every((r) => isNullMx(r.exchange))) return neg({ kind: 'null-mx' });
    return this.#fromExchanges(mx);
  }

  #negative(answer: Answer): { answer: Answer; ttlMs: number } {
    return { answer, ttlMs: answer.kind === 'temp-error' ? this.#tempErrorTtlMs : this.#negativeTtlMs };
  }

  /**
   * The usable hosts of a non-empty MX set, by preference. A "." among real MX records is a
   * misconfiguration; it cannot be connected to, so it is simply skipped.
   */
  async #fromExchanges(mx: ReadonlyArray<{ exchange: string; priority: number }>): Promise<{ answer: Answer; ttlMs: number }> {
    const neg = (answer: Answer): { answer: Answer; ttlMs: number } => this.#negative(answer);
    // Lowest preference per exchange, then preference order; only the first maxHosts are looked up.
    const best = new Map<string, number>();
    for (const r of mx) {
      if (isNullMx(r.exchange)) continue;
      const host = normalizeDomain(r.exchange);
      const prev = best.get(host);
      if (prev === undefined || r.priority < prev) best.set(host, r.priority);
    }
    const ranked = [...best].sort((x, y) => x[1] - y[1]).slice(0, this.#maxHosts);

    const checked = await Promise.all(ranked.map(([host]) => this.#addresses(host)));
    const groups: HostPort[][] = [];
    const refused: string[] = [];
    const temps: string[] = [];
    let ttlS: number | undefined;
    let partial = false;
    let lastPref: number | undefined;
    ranked.forEach(([host, pref], i) => {
      const a = checked[i]!;
      if (a.kind === 'none') {
        refused.push(`${host}: ${a.reason}`);
        return;
      }
      // A host whose address lookup failed transiently is left out of this answer (only checked
      // addresses are ever connected to), and the answer is re-checked soon; if no host is
      // left, the whole lookup is transient, so a healthy domain never looks undeliverable.
      if (a.kind === 'temp') {
        partial = true;
        temps.push(a.reason);
        return;
      }
      if (a.ttlS !== undefined) ttlS = ttlS === undefined ? a.ttlS : Math.min(ttlS, a.ttlS);
      if (pref !== lastPref) groups.push([]);
      groups[groups.length - 1]!.push(...a.addresses.map((address) => ({ host, port: 25, address })));
      lastPref = pref;
    });
    if (groups.length === 0 && temps.length > 0) return neg({ kind: 'temp-error', reason: temps.join('; ') });
    if (groups.length === 0) return neg({ kind: 'no-hosts', reason: refused.join('; ') });
    let ttlMs = this.#clampTtl(ttlS);
    // A partial answer is re-checked soon rather than trusted for a full TTL.
    if (partial) ttlMs = Math.min(ttlMs, this.#negativeTtlMs);
    return { answer: { kind: 'groups', groups }, ttlMs };
  }

  /** The addresses of `host` that the policy lets us connect to, and the smallest TTL seen (seconds). */
  async #addresses(host: string): Promise<AddressResult> {
    if (isIP(host) !== 0) {
      // An MX naming an address is against RFC 5321 §5.1 but common; take it at its word.
      const v = this.#policy.check(host);
      return v.ok ? { kind: 'ok', addresses: [host], ttlS: undefined } : { kind: 'none', reason: `unusable address ${v.error.reason}` };
    }
    const [v4, v6] = await Promise.allSettled([this.#withTimeout(this.#dns.resolve4(host, { ttl: true })), this.#withTimeout(this.#dns.resolve6(host, { ttl: true }))]);
    let ttlS: number | undefined;
    const usable: string[] = [];
    const unusable: string[] = [];
    let temp: string | undefined;
    for (const [r, type] of [[v4, 'A'], [v6, 'AAAA']] as const) {
      if (r.status === 'rejected') {
        const code = codeOf(r.reason);
        if (code !== NO_DATA && code !== NOT_FOUND) temp ??= `${type} lookup for ${host}: ${code}`;
        continue;
      }
      // Bounded: a hostile zone may answer with thousands of records.
      for (const rec of r.value.slice(0, 64)) {
        if (typeof rec?.address !== 'string' || !this.#policy.check(rec.address).ok) {
          unusable.push(String(rec?.address));
          continue;
        }
        if (usable.length < this.#maxAddresses) usable.push(rec.address);
        if (Number.isFinite(rec.ttl)) ttlS = ttlS === undefined ? rec.ttl : Math.min(ttlS, rec.ttl);
      }
    }
    if (usable.length > 0) return { kind: 'ok', addresses: usable, ttlS };
    if (temp !== undefined) return { kind: 'temp', reason: temp };
    return { kind: 'none', reason: unusable.length > 0 ? `only unusable addresses (${unusable.slice(0, 8).join(', ')})` : `no A/AAAA records for ${host}` };
  }
}

/** A Destination, or "try later" when the next hop cannot be known yet (DNS trouble). */
export type DestinationResult = Destination | { kind: 'defer'; key: string; reply: ReplyRecord };

export interface RoutingContext {
  routes: RouteTable;
  /** From parseSmarthost; null when unset. */
  smarthost: readonly HostPort[] | null;
  /** The global policy; a route's "/tls=" overrides it. */
  tlsPolicy: TlsPolicy;
  /** The smarthost's credentials file (POSTERN_SMARTHOST_AUTH_FILE). */
  smarthostAuth?: string;
  /** The smarthost's own policy ('implicit' on port 465); else the global one. */
  smarthostTlsPolicy?: TlsPolicy;
  mx: MxResolver;
}

/**
 * The pooling key of an smtp/lmtp site: the sorted host list, so domains that share an MX set
 * share one pool, throttle and circuit breaker whatever order DNS returned. A non-default TLS
* policy, a credentials file and an MTA-STS or DANE policy (with a digest of its content: a
 * changed policy gets new connections) are part of the key: a pool must not mix connections
 * held to different rules, or logged in as different users.
 */
export function siteKey(kind: 'smtp' | 'lmtp', hosts: readonly HostPort[], tlsPolicy: TlsPolicy, o: { auth?: string | undefined; tlsAuth?: TlsAuth | undefined } = {}): string {
  const names = [...new Set(hosts.map(formatHostPort))].sort();
  return `${kind}:${names.join(',')}${tlsPolicy === 'opportunistic' ? '' : `/tls=${tlsPolicy}`}${o.auth === undefined ? '' : `/auth=${o.auth}`}${authSuffix(o.tlsAuth)}`;
}

function authSuffix(auth: TlsAuth | undefined): string {
  if (!auth || auth.type === 'no-policy-found') return '';
  const digest = createHash('sha256').update(JSON.stringify([auth.strings ?? null, auth.tlsa ?? null])).digest('hex').slice(0, 10);
  if (auth.type === 'sts') return `/sts=${auth.enforce ? 'enforce' : 'testing'}@${auth.policyDomain}#${digest}`;
  return `/dane#${digest}`;
}

/** Order: a route, else the smarthost, else an address literal, else MX (RFC 5321 §5.1). */
export async function destinationFor(domain: string, ctx: RoutingContext): Promise<DestinationResult> {
  const d = normalizeDomain(domain);
  const route = matchRoute(ctx.routes, d);
  if (route) {
    const t = route.target;
    switch (t.kind) {
      case 'smtp': {
        const tlsPolicy = t.tlsPolicy ?? ctx.tlsPolicy;
        return { kind: 'smtp', key: siteKey('smtp', t.hosts, tlsPolicy, { auth: t.auth }), hosts: [...t.hosts], tlsPolicy, ...(t.auth !== undefined ? { auth: t.auth } : {}) };
      }
      case 'lmtp': {
        const tlsPolicy = t.tlsPolicy ?? ctx.tlsPolicy;
        return { kind: 'lmtp', key: siteKey('lmtp', t.hosts, tlsPolicy), hosts: [...t.hosts], tlsPolicy };
      }
      case 'maildir':
        return { kind: 'maildir', key: `maildir:${t.root}`, root: t.root };
      case 'webhook':
        // The key names the destination in metrics, /v1/stats, logs and replies: no credentials.
        return { kind: 'webhook', key: `webhook:${redactUrl(t.url)}`, url: t.url };
      case 'pipe':
        // One key per route: its process limit and its stats are the route's.
        return { kind: 'pipe', key: `pipe:${t.program}@${route.pattern}`, route: route.pattern, target: t };
    }
  }
  if (ctx.smarthost && ctx.smarthost.length > 0) {
    const auth = ctx.smarthostAuth;
    const tlsPolicy = ctx.smarthostTlsPolicy ?? ctx.tlsPolicy;
    return { kind: 'smtp', key: siteKey('smtp', ctx.smarthost, tlsPolicy, { auth }), hosts: [...ctx.smarthost], tlsPolicy, ...(auth !== undefined ? { auth } : {}) };
  }
  const bounce = (code: number, enhanced: string, text: string): DestinationResult => ({ kind: 'bounce', key: `bounce:${d}`, reply: replyRecord(code, enhanced, text, undefined, d) });
  if (d.startsWith('[')) {
    // RFC 5321 §5.1: an address literal is the host to connect to; no MX lookup.
    const parsed = parseHostPort(d, 25);
    if (!parsed.ok || isIP(parsed.value.host) === 0 || parsed.value.port !== 25 || !d.endsWith(']')) return bounce(550, '5.1.2', `Bad address literal ${d}`);
    const hp = parsed.value;
    const v = ctx.mx.policy.check(hp.host);
    if (!v.ok) {
      const loop = v.error.cls === 'self' || v.error.cls === 'loopback';
      return bounce(loop ? 554 : 550, loop ? '5.4.6' : '5.4.4', `Refusing to deliver to ${d}: ${v.error.reason}`);
    }
    return { kind: 'smtp', key: siteKey('smtp', [hp], ctx.tlsPolicy), hosts: [hp], tlsPolicy: ctx.tlsPolicy };
  }
  const r = await ctx.mx.resolve(d);
  switch (r.kind) {
    case 'hosts':
      return { kind: 'smtp', key: siteKey('smtp', r.hosts, ctx.tlsPolicy), hosts: r.hosts, tlsPolicy: ctx.tlsPolicy, viaMx: true };
    case 'null-mx':
      return bounce(556, '5.1.10', `Domain ${d} accepts no mail (null MX, RFC 7505)`);
    case 'no-domain':
      return bounce(550, '5.1.2', `Domain ${d} does not exist (NXDOMAIN)`);
    case 'no-hosts':
      return bounce(550, '5.4.4', `No usable mail exchanger for ${d}: ${r.reason}`);
    case 'temp-error':
      return { kind: 'defer', key: `defer:${d}`, reply: replyRecord(451, '4.4.3', `DNS lookup failed for ${d}: ${r.reason}`, undefined, d) };
  }
}
