// DANE for SMTP (RFC 7672): the MX set and its TLSA records, from a validating resolver (a
// local unbound: POSTERN_DNSSEC_RESOLVER) whose AD bit is what is trusted. DANE applies only when
// the MX answer is validated (§2.2.1), and then that answer is the MX set delivered to (node's
// resolver, which gave the first one, is not trusted to); per MX host whose A/AAAA answers are
// validated too (§2.2.2; else no TLSA lookup), by its TLSA answer at `_25._tcp.<base>`: the
// CNAME-expanded host name first, then the MX host name; a TLSA name that is a CNAME is followed
// (RFC 7671 §7), chains bounded. Only DANE-TA(2) and DANE-EE(3) with selectors 0/1 and matching
// types 0/1/2 are usable (§3.1). A SERVFAIL (the resolver's answer for a bogus validation) or no
// answer defers the delivery (§2.1.1): an attacker who breaks a lookup must not turn DANE off.
import { query as dnsQuery, RCODE, TYPE, type DnsAnswer, type DnsRecord, type DnsServerAddress } from './dns-wire.js';
import { normalizeDomain, toAsciiDomain } from '../lib/domain-name.js';
import type { MxExchange } from './mx.js';
import type { TlsaRecord } from './types.js';

export type DaneResult =
  /** Validated TLSA records for at least one host of the validated MX set (host name → its usable records). */
  | { kind: 'dane'; mx: MxExchange[]; tlsa: Record<string, TlsaRecord[]> }
  /**
   * No DANE. `mx` present: the MX answer is validated (the set to deliver to) but no host of it
   * has validated, usable TLSA records; absent: the MX answer is not validated.
   */
  | { kind: 'none'; reason: string; mx?: MxExchange[] }
  /**
   * Try later: a validation failure (bogus) or a lookup that failed (RFC 7672 §2.1.1), 4.7.5;
   * or a validated answer that the domain has no such name or accepts no mail while node's
   * resolver gave MX hosts (the two disagree), 4.4.3.
   */
  | { kind: 'defer'; reason: string; enhanced: '4.7.5' | '4.4.3' };

export interface DaneLookup {
  lookup(domain: string): Promise<DaneResult>;
}

export interface DaneResolverOptions {
  server: DnsServerAddress;
  /** One question within this (default 5 s). */
  timeoutMs?: number;
  /** Bounds on how long an answer is kept (default 30 s .. 1 h, by its TTL). */
  minTtlMs?: number;
  maxTtlMs?: number;
  /** Answers kept (default 10000). */
  maxEntries?: number;
  now?: () => number;
}

/** The query function (tests may pass their own). */
export type DnsQuery = (server: DnsServerAddress, name: string, type: number, timeoutMs: number) => Promise<DnsAnswer>;

type Step = { kind: 'secure'; answer: DnsAnswer } | { kind: 'insecure' } | { kind: 'fail'; reason: string };
/** A name's records after its CNAME chain: `name` is where the chain ends. */
type Chased = { kind: 'secure'; name: string; records: DnsRecord[]; rcode: number } | { kind: 'insecure' } | { kind: 'fail'; reason: string };

/** CNAME links followed from one name (RFC 7672 §2.2.2 does not bound them; this does). */
const MAX_CNAME = 8;

/** MX hosts taken from a validated MX answer, by preference (MxResolver's own bound). */
const MAX_MX = 10;

const HASH_LEN: Record<number, number> = { 1: 32, 2: 64 };

/** The usable records of a validated TLSA answer (RFC 7672 §3.1). */
export function usableTlsa(answer: DnsAnswer, owner: string): TlsaRecord[] {
  const out: TlsaRecord[] = [];
  for (const r of answer.answers) {
    if (r.type !== TYPE.TLSA || !r.tlsa || r.name !== owner) continue;
    const { usage, selector, matching, data } = r.tlsa;
    if (usage !== 2 && usage !== 3) continue;
    if (selector !== 0 && selector !== 1) continue;
    if (matching !== 0 && matching !== 1 && matching !== 2) continue;
    const want = HASH_LEN[matching];
    if (want !== undefined && data.length !== want * 2) continue;
    if (matching === 0 && (data.length === 0 || data.length > 16_384)) continue;
    out.push({ usage, selector, matching, data });
    if (out.length >= 16) break;
  }
  return out;
}

/**
 * The MX set of a validated answer, by preference (lowest per exchange, at most MAX_MX); no MX
 * records: the domain itself, the implicit MX (RFC 5321 §5.1, RFC 7672 §2.2.1); a lone "."
 * (RFC 7505): null.
 */
export function validatedMx(domain: string, records: readonly DnsRecord[]): MxExchange[] | null {
  const mx = records.filter((r) => r.type === TYPE.MX && typeof r.exchange === 'string' && typeof r.priority === 'number');
  if (mx.length === 0) return [{ host: domain, preference: 0 }];
  const best = new Map<string, number>();
  for (const r of mx) {
    const host = normalizeDomain(r.exchange!);
    // A "." among real MX records cannot be connected to: skipped, as MxResolver does.
    if (host === '') continue;
    const prev = best.get(host);
    if (prev === undefined || r.priority! < prev) best.set(host, r.priority!);
  }
  if (best.size === 0) return null;
  return [...best].sort((x, y) => x[1] - y[1]).slice(0, MAX_MX).map(([host, preference]) => ({ host, preference }));
}

export class DaneResolver implements DaneLookup {
  readonly #o: DaneResolverOptions;
  readonly #q: DnsQuery;
  readonly #cache = new Map<string, { step: Step; expiresAt: number }>();
  readonly #now: () => number;

  constructor(opts: DaneResolverOptions, q: DnsQuery = dnsQuery) {
    this.#o = opts;
    this.#q = q;
    this.#now = opts.now ?? Date.now;
  }

  async lookup(domain: string): Promise<DaneResult> {
    const d = toAsciiDomain(domain);
    if (d === null) return { kind: 'none', reason: `${JSON.stringify(domain.slice(0, 100))} is not a DNS name` };
    // A domain that is a CNAME: the MX records are its target's, secure only if the chain is.
    const mx = await this.#chase(d, TYPE.MX);
    if (mx.kind === 'fail') return { kind: 'defer', enhanced: '4.7.5', reason: `DANE: MX lookup for ${d} failed DNSSEC validation or did not answer (${mx.reason})` };
    if (mx.kind === 'insecure') return { kind: 'none', reason: `the MX records of ${d} are not DNSSEC-validated` };
    // Node's resolver gave MX hosts (or the caller would not be here): the two resolvers disagree.
    if (mx.rcode === RCODE.NXDOMAIN) return { kind: 'defer', enhanced: '4.4.3', reason: `the DNSSEC-validating resolver answers that ${d} does not exist; not sent while the resolvers disagree` };
    const set = validatedMx(d, mx.records);
    if (set === null) return { kind: 'defer', enhanced: '4.4.3', reason: `the DNSSEC-validating resolver answers that ${d} accepts no mail (null MX); not sent while the resolvers disagree` };
    const tlsa: Record<string, TlsaRecord[]> = {};
    let any = false;
    for (const { host } of set) {
      const addr = await this.#addresses(host);
      if (addr.kind === 'fail') return { kind: 'defer', enhanced: '4.7.5', reason: `DANE: address lookup for ${host} failed DNSSEC validation or did not answer (${addr.reason})` };
      // Insecure addresses: an attacker could point the name elsewhere, so no TLSA lookup (§2.2.2).
      if (addr.kind === 'insecure') continue;
      const bases = addr.name !== host ? [addr.name, host] : [host];
      for (const base of bases) {
        const owner = `_25._tcp.${base}`;
        const r = await this.#chase(owner, TYPE.TLSA);
        if (r.kind === 'fail') return { kind: 'defer', enhanced: '4.7.5', reason: `DANE: TLSA lookup for ${owner} failed DNSSEC validation or did not answer (${r.reason})` };
        // None at the expanded name (or not validated there): the MX host name is asked next.
        if (r.kind === 'insecure' || r.records.length === 0) continue;
        const recs = usableTlsa({ rcode: 0, ad: true, answers: r.records }, r.name);
        if (recs.length > 0) {
          tlsa[host] = recs;
          any = true;
        }
        break;
      }
    }
    return any ? { kind: 'dane', mx: set, tlsa } : { kind: 'none', mx: set, reason: `no validated, usable TLSA records for the MX hosts of ${d}` };
  }

  /** Whether the host's A and AAAA answers are both validated, and where their CNAME chain ends. */
  async #addresses(host: string): Promise<Chased> {
    const [a, aaaa] = await Promise.all([this.#chase(host, TYPE.A), this.#chase(host, TYPE.AAAA)]);
    if (a.kind === 'fail') return a;
    if (aaaa.kind === 'fail') return aaaa;
    if (a.kind === 'insecure' || aaaa.kind === 'insecure') return { kind: 'insecure' };
    return a.name !== host.toLowerCase() || a.records.length > 0 ? a : aaaa;
  }

  /**
   * The records of `type` at `name` after its CNAME chain, secure only when every answer on the
   * way is. The resolver usually sends the whole chain in one answer; where it stops short
   * (records of the type missing at the last target), the last target is asked itself.
   */
  async #chase(name: string, type: number): Promise<Chased> {
    let cur = name.toLowerCase().replace(/\.$/, '');
    const seen = new Set([cur]);
    for (;;) {
      const s = await this.#ask(cur, type);
      if (s.kind !== 'secure') return s;
      const asked = cur;
      for (;;) {
        const c = s.answer.answers.find((r) => r.type === TYPE.CNAME && r.name === cur && r.target);
        if (!c) break;
        if (seen.has(c.target!) || seen.size > MAX_CNAME) return { kind: 'fail', reason: `the CNAME chain from ${name} loops or has more than ${MAX_CNAME} links` };
        seen.add(c.target!);
        cur = c.target!;
      }
      const records = s.answer.answers.filter((r) => r.type === type && r.name === cur);
      if (records.length > 0 || cur === asked) return { kind: 'secure', name: cur, records, rcode: s.answer.rcode };
    }
  }

  async #ask(name: string, type: number): Promise<Step> {
    const key = `${type}/${name}`;
    const now = this.#now();
    const hit = this.#cache.get(key);
    if (hit && hit.expiresAt > now) return hit.step;
    let step: Step;
    let ttlS = 300;
    try {
      const a = await this.#q(this.#o.server, name, type, this.#o.timeoutMs ?? 5000);
      if (a.rcode === RCODE.SERVFAIL) step = { kind: 'fail', reason: 'SERVFAIL' };
      else if (a.rcode !== RCODE.NOERROR && a.rcode !== RCODE.NXDOMAIN) step = { kind: 'fail', reason: `rcode ${a.rcode}` };
      else if (!a.ad) step = { kind: 'insecure' };
      else {
        step = { kind: 'secure', answer: a };
        if (a.answers.length > 0) ttlS = Math.min(...a.answers.map((r) => r.ttl));
      }
    } catch (err) {
      step = { kind: 'fail', reason: (err as Error).message.slice(0, 120) };
    }
    // Failures are asked again soon; answers live for their TTL within the bounds.
    const ms = step.kind === 'fail' ? 5000 : Math.min(this.#o.maxTtlMs ?? 3_600_000, Math.max(this.#o.minTtlMs ?? 30_000, ttlS * 1000));
    this.#cache.delete(key);
    this.#cache.set(key, { step, expiresAt: now + ms });
    if (this.#cache.size > (this.#o.maxEntries ?? 10_000)) this.#cache.delete(this.#cache.keys().next().value!);
    return step;
  }
}
