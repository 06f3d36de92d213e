// The shaping file (POSTERN_SHAPING, TOML, see docs/shaping.md): limits per provider "site"
// (the recipient domains and MX host suffixes one provider serves) and per egress source
// within a site. Parsed and checked here, once per read: every problem is reported together,
// each naming file:line. The file is polled and re-read when it changes; a broken new version
// is reported and the previous one kept (as the recipient map, config/recipient-map.ts).
// It also names the egress sources (a local address and its EHLO name) and the weighted pools
// of them a message leaves from, chosen by the sender's domain (or named by a trusted client).
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { PolledFile } from './polled-file.js';
import { PosternError } from '../errors.js';
import { parse as parseToml, TomlError } from 'smol-toml';
import { parseDuration, parseDurationList } from '../lib/duration.js';
import { parseRate } from '../lib/rate.js';
import { isDomainName, normalizeDomain } from '../lib/domain-name.js';
import { failure, success, type Result } from '../lib/result.js';

type TlsPolicy = 'opportunistic' | 'required' | 'none';

/** What one rule may set; an unset key falls back to [defaults], then to the POSTERN_DEST_* settings. */
export interface ShapingLimits {
  maxConnections?: number;
  messagesPerConnection?: number;
  /** Messages per ms. */
  rate?: number;
  recipientsPerTransaction?: number;
  tls?: TlsPolicy;
  /** Delays in ms before attempt 2, 3, ...; the last repeats. */
  retry?: readonly number[];
  pipelining?: boolean;
  chunking?: boolean;
  /** Adaptive back-off on throttling replies (default on). */
  adaptive?: boolean;
  /** Reply texts (case-insensitive substrings) that suspend the source × site. */
  suspendOn?: readonly string[];
  suspendForMs?: number;
  /** How long a blocklist reply ("5.7.1 ... blocked using ...") suspends the source × site. */
  blocklistSuspendForMs?: number;
}

export interface ShapingSite {
  readonly name: string;
  /** Exact recipient domains ("gmail.com") and subdomain patterns ("*.example.com"), lower case. */
  readonly domains: readonly string[];
  /** MX host suffixes on a label boundary ("google.com" matches "alt1.aspmx.l.google.com"). */
  readonly mx: readonly string[];
  readonly limits: ShapingLimits;
  /** Overrides per source: a [source.NAME] name, or "default" (mail outside every pool). */
  readonly sources: ReadonlyMap<string, ShapingLimits>;
}

/** A named egress source: connections bind its local address and greet with its EHLO name. */
export interface ShapingSource {
  readonly name: string;
  readonly address: string;
  readonly ehlo: string;
  /** A new address's warm-up: on day 1 (from `startMs`, UTC days) `first` messages per site, times `factor` each day after. */
  readonly warmup?: { readonly startMs: number; readonly first: number; readonly factor: number };
}

/** A weighted set of sources; a message whose sender domain the pool names (or any, for the default pool) leaves from one of them. */
export interface ShapingPool {
  readonly name: string;
  readonly sources: readonly { readonly source: string; readonly weight: number }[];
  /** Exact sender domains and "*.domain" patterns, lower case. */
  readonly senderDomains: readonly string[];
  readonly isDefault: boolean;
  /**
   * What becomes of a message whose source has spent its warm-up budget at a site today:
   * 'defer' (it waits for the next UTC day) or 'spill' (it leaves from another source of the
   * pool that still has budget there, by weight; it waits only when none has).
   */
  readonly warmupOverflow: 'defer' | 'spill';
}

/** The [alerts] table: anomaly-alert thresholds (docs/alerts.md) over the POSTERN_ALERT_* settings. */
export interface ShapingAlerts {
  windowMs?: number;
  /** Rates 0-1 (the file says percent). */
  deferralRate?: number;
  bounceRate?: number;
  minSamples?: number;
  baselineFactor?: number;
  tlsFailures?: number;
  queueWindowMs?: number;
  queueGrowth?: number;
  queueAgeMs?: number;
  /** 0-1 (the file says percent). */
  filterUtilization?: number;
  filterWaitMs?: number;
  filterForMs?: number;
}

export interface ShapingFile {
  readonly path: string;
  readonly defaults: ShapingLimits;
  readonly sites: readonly ShapingSite[];
  readonly sources: ReadonlyMap<string, ShapingSource>;
  readonly pools: readonly ShapingPool[];
  /** Absent when the file has no [alerts] table. */
  readonly alerts?: Readonly<ShapingAlerts>;
}

/** The file is read whole; bigger is refused before parsing. */
const MAX_FILE_BYTES = 1024 * 1024;
/** Bounds what one rule may hold (the patterns are matched against every throttling reply). */
const MAX_LIST_ITEMS = 1000;
const MAX_PATTERNS = 100;
const MAX_PATTERN_CHARS = 200;
const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const TLS_POLICIES: readonly string[] = ['opportunistic', 'required', 'none'];

const LIMIT_KEYS = new Set(['max_connections', 'messages_per_connection', 'rate', 'recipients_per_transaction', 'tls', 'retry', 'pipelining', 'chunking', 'adaptive', 'suspend_on', 'suspend_for', 'blocklist_suspend_for']);
const SITE_KEYS = new Set([...LIMIT_KEYS, 'domains', 'mx', 'source']);
const SOURCE_KEYS = new Set(['address', 'ehlo', 'warmup_start', 'warmup_first', 'warmup_factor']);
const POOL_KEYS = new Set(['sources', 'sender_domains', 'default', 'warmup_overflow']);
/** Bounds the sources of one pool and their weights (a pick walks the list). */
const MAX_POOL_SOURCES = 256;
const MAX_WEIGHT = 1000;
/** The name shaping uses when no pool applies; a [source] may not take it. */
const RESERVED_SOURCE = 'default';

export const EMPTY_SHAPING: ShapingFile = Object.freeze({ path: '', defaults: Object.freeze({}), sites: Object.freeze([]), sources: new Map(), pools: Object.freeze([]) });

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Parse the text of a shaping file; the error lists every problem as "path:line: what". */
export function parseShaping(text: string, path: string): Result<ShapingFile, string[]> {
  let doc: Table;
  try {
    doc = parseToml(text) as Table;
  } catch (err) {
    if (err instanceof TomlError) return failure([`${path}:${err.line}: ${err.message.split('\n')[0]}`]);
    return failure([`${path}: ${(err as Error).message}`]);
  }
  const errors: string[] = [];
  const at = (table: string[], key?: string): string => `${path}:${lineOf(text, table, key)}`;
  for (const k of Object.keys(doc)) {
    if (k !== 'defaults' && k !== 'site' && k !== 'source' && k !== 'pool' && k !== 'alerts') errors.push(`${at([], k)}: unknown key "${k}" (expected [defaults], [site.NAME], [source.NAME], [pool.NAME] and [alerts] tables)`);
  }
  let alerts: ShapingAlerts | undefined;
  if (doc.alerts !== undefined) {
    if (!isTable(doc.alerts)) errors.push(`${at([], 'alerts')}: "alerts" must be a table`);
    else alerts = alertsOf(doc.alerts, errors, at);
  }
  let defaults: ShapingLimits = {};
  if (doc.defaults !== undefined) {
    if (!isTable(doc.defaults)) errors.push(`${at([], 'defaults')}: "defaults" must be a table`);
    else defaults = limitsOf(doc.defaults, ['defaults'], LIMIT_KEYS, errors, at);
  }
  const sites: ShapingSite[] = [];
  const domainOwner = new Map<string, string>();
  const mxOwner = new Map<string, string>();
  if (doc.site !== undefined) {
    if (!isTable(doc.site)) errors.push(`${at([], 'site')}: "site" must hold tables [site.NAME]`);
    else {
      for (const [name, v] of Object.entries(doc.site)) {
        const tpath = ['site', name];
        if (!isTable(v)) {
          errors.push(`${at(['site'], name)}: site "${name}" must be a table`);
          continue;
        }
        if (!SITE_NAME.test(name)) errors.push(`${at(tpath)}: site name "${name}" must be 1-63 letters, digits, "_", "." or "-"`);
        const limits = limitsOf(v, tpath, SITE_KEYS, errors, at);
        const domains = stringList(v.domains, tpath, 'domains', errors, at).map((d) => d.toLowerCase());
        for (const d of domains) {
          const bare = d.startsWith('*.') ? d.slice(2) : d;
          if (!isDomainName(bare)) errors.push(`${at(tpath, 'domains')}: "${d}" is not a domain name or *.domain pattern`);
          else claim(domainOwner, normalizeDomain(d), name, 'domain', tpath, 'domains', errors, at);
        }
        const mx = stringList(v.mx, tpath, 'mx', errors, at).map((d) => normalizeDomain(d.replace(/^\.+/, '')));
        for (const s of mx) {
          if (!isDomainName(s)) errors.push(`${at(tpath, 'mx')}: "${s}" is not a host name suffix`);
          else claim(mxOwner, s, name, 'mx suffix', tpath, 'mx', errors, at);
        }
        if (domains.length === 0 && mx.length === 0) errors.push(`${at(tpath)}: site "${name}" matches nothing: give "domains" or "mx"`);
        const sources = new Map<string, ShapingLimits>();
        if (v.source !== undefined) {
          if (!isTable(v.source)) errors.push(`${at(tpath, 'source')}: "source" must hold tables [site.${name}.source."SOURCE"]`);
          else {
            for (const [src, sv] of Object.entries(v.source)) {
              const spath = [...tpath, 'source', src];
              if (!isTable(sv)) errors.push(`${at([...tpath, 'source'], src)}: source "${src}" must be a table`);
              else sources.set(src, limitsOf(sv, spath, LIMIT_KEYS, errors, at));
            }
          }
        }
        sites.push(Object.freeze({ name, domains: Object.freeze(domains.map((d) => normalizeDomain(d))), mx: Object.freeze(mx), limits, sources }));
      }
    }
  }
  const sources = sourcesOf(doc.source, errors, at);
  const pools = poolsOf(doc.pool, sources, errors, at);
  if (errors.length > 0) return failure(errors);
  return success(Object.freeze({ path, defaults, sites: Object.freeze(sites), sources, pools, ...(alerts ? { alerts } : {}) }));
}

const ALERT_KEYS = new Set(['window', 'deferral_percent', 'bounce_percent', 'min_recipients', 'baseline_factor', 'tls_failures', 'queue_window', 'queue_growth', 'queue_age', 'filter_utilization_percent', 'filter_wait', 'filter_for']);

function alertsOf(t: Table, errors: string[], at: (t: string[], k?: string) => string): Readonly<ShapingAlerts> {
  const out: ShapingAlerts = {};
  for (const k of Object.keys(t)) {
    if (!ALERT_KEYS.has(k)) errors.push(`${at(['alerts'], k)}: unknown key "${k}"`);
  }
  const num = (key: string, min: number, max: number, whole: boolean): number | undefined => {
    const v = t[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || (whole && !Number.isInteger(v)) || v < min || v > max) {
      errors.push(`${at(['alerts'], key)}: ${key} must be a ${whole ? 'whole number' : 'number'} from ${min} to ${max}, got ${JSON.stringify(v)}`);
      return undefined;
    }
    return v;
  };
  const duration = (key: string, min: number, max: number, range: string): number | undefined => {
    const v = t[key];
    if (v === undefined) return undefined;
    const d = typeof v === 'string' ? parseDuration(v) : null;
    if (d === null || !d.ok || d.value < min || d.value > max) {
      errors.push(`${at(['alerts'], key)}: ${key} must be a duration from ${range}, got ${JSON.stringify(v)}`);
      return undefined;
    }
    return d.value;
  };
  const set = <K extends keyof ShapingAlerts>(k: K, v: ShapingAlerts[K] | undefined): void => {
    if (v !== undefined) out[k] = v;
  };
  set('windowMs', duration('window', 1000, 86_400_000, '"1s" to "1d"'));
  set('queueWindowMs', duration('queue_window', 1000, 86_400_000, '"1s" to "1d"'));
  set('queueAgeMs', duration('queue_age', 0, 31_536_000_000, '"0s" (off) to "365d"'));
  set('filterWaitMs', duration('filter_wait', 0, 3_600_000, '"0s" (off) to "1h"'));
  set('filterForMs', duration('filter_for', 1000, 3_600_000, '"1s" to "1h"'));
  set('tlsFailures', num('tls_failures', 0, 1_000_000, true));
  set('queueGrowth', num('queue_growth', 0, 100_000_000, true));
  const util = num('filter_utilization_percent', 0, 100, false);
  if (util !== undefined) out.filterUtilization = util / 100;
  const deferral = num('deferral_percent', 1, 100, false);
  if (deferral !== undefined) out.deferralRate = deferral / 100;
  const bounce = num('bounce_percent', 1, 100, false);
  if (bounce !== undefined) out.bounceRate = bounce / 100;
  const min = num('min_recipients', 1, 1_000_000, true);
  if (min !== undefined) out.minSamples = min;
  const factor = num('baseline_factor', 1, 100, false);
  if (factor !== undefined) out.baselineFactor = factor;
  return Object.freeze(out);
}

type At = (t: string[], k?: string) => string;

function sourcesOf(v: unknown, errors: string[], at: At): Map<string, ShapingSource> {
  const out = new Map<string, ShapingSource>();
  if (v === undefined) return out;
  if (!isTable(v)) {
    errors.push(`${at([], 'source')}: "source" must hold tables [source.NAME]`);
    return out;
  }
  for (const [name, t] of Object.entries(v)) {
    const tpath = ['source', name];
    if (!isTable(t)) {
      errors.push(`${at(['source'], name)}: source "${name}" must be a table`);
      continue;
    }
    let ok = true;
    const bad = (key: string | undefined, what: string): void => {
      ok = false;
      errors.push(`${at(tpath, key)}: ${what}`);
    };
    if (!SITE_NAME.test(name)) bad(undefined, `source name "${name}" must be 1-63 letters, digits, "_", "." or "-"`);
    if (name === RESERVED_SOURCE) bad(undefined, `source name "${RESERVED_SOURCE}" is reserved (mail outside every pool leaves from it)`);
    for (const k of Object.keys(t)) if (!SOURCE_KEYS.has(k)) bad(k, `unknown key "${k}" (a source has "address", "ehlo", "warmup_start", "warmup_first" and "warmup_factor")`);
    const address = t.address;
    if (typeof address !== 'string' || isIP(address) === 0) bad('address', `address must be an IPv4 or IPv6 address, got ${JSON.stringify(address)}`);
    const ehlo = t.ehlo;
    if (typeof ehlo !== 'string' || !isDomainName(ehlo)) bad('ehlo', `ehlo must be a host name, got ${JSON.stringify(ehlo)}`);
    let warmup: ShapingSource['warmup'];
    if (t.warmup_start !== undefined || t.warmup_first !== undefined || t.warmup_factor !== undefined) {
      const start = t.warmup_start;
      // A TOML date (2026-12-01) parses as a Date; a quoted "2026-12-01" is accepted too.
      const startMs = start instanceof Date ? start.getTime() : typeof start === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(start) ? Date.parse(`${start}T00:00:00Z`) : NaN;
      if (!Number.isFinite(startMs)) bad('warmup_start', `warmup_start must be a date like 2026-12-01, got ${JSON.stringify(start)}`);
      const first = t.warmup_first;
      if (typeof first !== 'number' || !Number.isInteger(first) || first < 1 || first > 10_000_000) bad('warmup_first', `warmup_first must be a whole number from 1 to 10000000, got ${JSON.stringify(first)}`);
      const factor = t.warmup_factor ?? 2;
      if (typeof factor !== 'number' || !(factor >= 1 && factor <= 10)) bad('warmup_factor', `warmup_factor must be a number from 1 to 10, got ${JSON.stringify(factor)}`);
      if (ok) warmup = Object.freeze({ startMs, first: first as number, factor: factor as number });
    }
    if (ok) out.set(name, Object.freeze({ name, address: address as string, ehlo: ehlo as string, ...(warmup ? { warmup } : {}) }));
  }
  return out;
}

function poolsOf(v: unknown, sources: ReadonlyMap<string, ShapingSource>, errors: string[], at: At): ShapingPool[] {
  const out: ShapingPool[] = [];
  if (v === undefined) return out;
  if (!isTable(v)) {
    errors.push(`${at([], 'pool')}: "pool" must hold tables [pool.NAME]`);
    return out;
  }
  const senderOwner = new Map<string, string>();
  let defaultPool: string | null = null;
  for (const [name, t] of Object.entries(v)) {
    const tpath = ['pool', name];
    if (!isTable(t)) {
      errors.push(`${at(['pool'], name)}: pool "${name}" must be a table`);
      continue;
    }
    if (!SITE_NAME.test(name)) errors.push(`${at(tpath)}: pool name "${name}" must be 1-63 letters, digits, "_", "." or "-"`);
    for (const k of Object.keys(t)) if (!POOL_KEYS.has(k)) errors.push(`${at(tpath, k)}: unknown key "${k}" (a pool has "sources", "sender_domains", "default" and "warmup_overflow")`);
    const members: { source: string; weight: number }[] = [];
    if (!isTable(t.sources) || Object.keys(t.sources).length === 0) {
      errors.push(`${at(tpath, 'sources')}: sources must be a table of source names and weights, like { ip2 = 1, ip3 = 2 }`);
    } else if (Object.keys(t.sources).length > MAX_POOL_SOURCES) {
      errors.push(`${at(tpath, 'sources')}: sources has ${Object.keys(t.sources).length} members (at most ${MAX_POOL_SOURCES})`);
    } else {
      for (const [src, w] of Object.entries(t.sources)) {
        if (!sources.has(src)) errors.push(`${at(tpath, 'sources')}: source "${src}" has no valid [source.${src}] table`);
        else if (typeof w !== 'number' || !Number.isInteger(w) || w < 1 || w > MAX_WEIGHT) errors.push(`${at(tpath, 'sources')}: the weight of "${src}" must be a whole number from 1 to ${MAX_WEIGHT}, got ${JSON.stringify(w)}`);
        else members.push({ source: src, weight: w });
      }
    }
    const senderDomains = stringList(t.sender_domains, tpath, 'sender_domains', errors, at).map((d) => d.toLowerCase());
    for (const d of senderDomains) {
      const bare = d.startsWith('*.') ? d.slice(2) : d;
      if (!isDomainName(bare)) errors.push(`${at(tpath, 'sender_domains')}: "${d}" is not a domain name or *.domain pattern`);
      else claim(senderOwner, normalizeDomain(d), name, 'sender domain', tpath, 'sender_domains', errors, at, 'pool');
    }
    let isDefault = false;
    if (t.default !== undefined) {
      if (typeof t.default !== 'boolean') errors.push(`${at(tpath, 'default')}: default must be true or false, got ${JSON.stringify(t.default)}`);
      else if (t.default && defaultPool !== null) errors.push(`${at(tpath, 'default')}: pool "${defaultPool}" is already the default pool`);
      else if (t.default) {
        isDefault = true;
        defaultPool = name;
      }
    }
    let warmupOverflow: ShapingPool['warmupOverflow'] = 'defer';
    if (t.warmup_overflow !== undefined) {
      if (t.warmup_overflow !== 'defer' && t.warmup_overflow !== 'spill') errors.push(`${at(tpath, 'warmup_overflow')}: warmup_overflow must be "defer" or "spill", got ${JSON.stringify(t.warmup_overflow)}`);
      else warmupOverflow = t.warmup_overflow;
    }
    // A pool no sender domain names is still chosen by X-Postern-Pool or the API's "pool".
    out.push(Object.freeze({ name, sources: Object.freeze(members.map((m) => Object.freeze(m))), senderDomains: Object.freeze(senderDomains.map((d) => normalizeDomain(d))), isDefault, warmupOverflow }));
  }
  return out;
}

function claim(owners: Map<string, string>, item: string, site: string, what: string, tpath: string[], key: string, errors: string[], at: (t: string[], k?: string) => string, owner = 'site'): void {
  const prev = owners.get(item);
  if (prev !== undefined && prev !== site) errors.push(`${at(tpath, key)}: ${what} "${item}" is already in ${owner} "${prev}"`);
  else owners.set(item, site);
}

function stringList(v: unknown, tpath: string[], key: string, errors: string[], at: (t: string[], k?: string) => string): string[] {
  if (v === undefined) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.some((x) => typeof x !== 'string' || x.length === 0)) {
    errors.push(`${at(tpath, key)}: "${key}" must be a list of non-empty strings`);
    return [];
  }
  if (list.length > MAX_LIST_ITEMS) {
    errors.push(`${at(tpath, key)}: "${key}" has ${list.length} items (at most ${MAX_LIST_ITEMS})`);
    return [];
  }
  return list as string[];
}

function limitsOf(t: Table, tpath: string[], allowed: Set<string>, errors: string[], at: (t: string[], k?: string) => string): ShapingLimits {
  const out: ShapingLimits = {};
  const bad = (key: string, what: string): void => void errors.push(`${at(tpath, key)}: ${key} ${what}`);
  const int = (key: string, min: number, max: number): number | undefined => {
    const v = t[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      bad(key, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
      return undefined;
    }
    return v;
  };
  const bool = (key: string): boolean | undefined => {
    const v = t[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') {
      bad(key, `must be true or false, got ${JSON.stringify(v)}`);
      return undefined;
    }
    return v;
  };
  const duration = (key: string): number | undefined => {
    const v = t[key];
    if (v === undefined) return undefined;
    const d = typeof v === 'string' ? parseDuration(v) : null;
    if (d === null || !d.ok || !(d.value > 0)) {
      bad(key, `must be a duration like "30m" or "4h", got ${JSON.stringify(v)}`);
      return undefined;
    }
    return d.value;
  };
  for (const k of Object.keys(t)) {
    if (!allowed.has(k)) errors.push(`${at(tpath, k)}: unknown key "${k}"`);
  }
  const set = <K extends keyof ShapingLimits>(k: K, v: ShapingLimits[K] | undefined): void => {
    if (v !== undefined) out[k] = v;
  };
  set('maxConnections', int('max_connections', 1, 10_000));
  set('messagesPerConnection', int('messages_per_connection', 1, 1_000_000));
  set('recipientsPerTransaction', int('recipients_per_transaction', 1, 100_000));
  if (t.rate !== undefined) {
    const r = typeof t.rate === 'string' ? parseRate(t.rate) : failure('must be a string like "20/s", "1000/h" or "50000/d"');
    if (!r.ok) errors.push(`${at(tpath, 'rate')}: rate ${r.error.replace(/^rate /, '')}`);
    else out.rate = r.value;
  }
  if (t.tls !== undefined) {
    if (typeof t.tls !== 'string' || !TLS_POLICIES.includes(t.tls)) bad('tls', `must be one of ${TLS_POLICIES.join(', ')}, got ${JSON.stringify(t.tls)}`);
    else out.tls = t.tls as TlsPolicy;
  }
  if (t.retry !== undefined) {
    const r = typeof t.retry === 'string' ? parseDurationList(t.retry, 'retry schedule') : failure('must be a string like "1m,5m,15m,1h"');
    if (!r.ok) errors.push(`${at(tpath, 'retry')}: retry ${r.error.replace(/^retry schedule /, '')}`);
    else out.retry = r.value;
  }
  set('pipelining', bool('pipelining'));
  set('chunking', bool('chunking'));
  set('adaptive', bool('adaptive'));
  if (t.suspend_on !== undefined) {
    const list = stringList(t.suspend_on, tpath, 'suspend_on', errors, at);
    if (list.length > MAX_PATTERNS || list.some((p) => p.length > MAX_PATTERN_CHARS)) bad('suspend_on', `takes at most ${MAX_PATTERNS} patterns of at most ${MAX_PATTERN_CHARS} characters`);
    else out.suspendOn = Object.freeze(list.map((p) => p.toLowerCase()));
  }
  set('suspendForMs', duration('suspend_for'));
  set('blocklistSuspendForMs', duration('blocklist_suspend_for'));
  return Object.freeze(out);
}

/**
 * The line of `key` inside the table `table` (or of the table's header when `key` is absent or
 * not found), 1-based; 1 when nothing is found. A line scan rather than a parser with
 * positions: smol-toml gives positions only for syntax errors, and the file has just parsed,
 * so headers and `key =` lines are well formed.
 */
export function lineOf(text: string, table: readonly string[], key?: string): number {
  const lines = text.split('\n');
  const want = table.join('\u0000');
  let current = '';
  let header = table.length === 0 ? 1 : 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const h = /^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$/.exec(line);
    if (h) {
      current = splitDotted(h[1]!).join('\u0000');
      if (current === want && header === 0) header = i + 1;
      // A header naming the key as a subtable ([site.google] for key "google" in [site]).
      if (key !== undefined && current === [...table, key].join('\u0000')) return i + 1;
      continue;
    }
    if (key !== undefined && current === want) {
      const k = /^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*[.=]/.exec(line);
      if (k && unquote(k[1]!) === key) return i + 1;
    }
  }
  return header > 0 ? header : 1;
}

function unquote(s: string): string {
  if (s.startsWith('"') && s.endsWith('"')) {
    try {
      return JSON.parse(s) as string;
    } catch {
      return s.slice(1, -1);
    }
  }
  if (s.startsWith("'") && s.endsWith("'")) return s.slice(1, -1);
  return s;
}

function splitDotted(s: string): string[] {
  const parts: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^.\s]+)\s*(?:\.|$)/y;
  for (let m = re.exec(s); m && m[0] !== ''; m = re.exec(s)) parts.push(unquote(m[1]!));
  return parts;
}

/** Read and parse the file; throws an Error whose message lists every problem (file:line). */
export function readShaping(path: string): ShapingFile {
  const st = statSync(path);
  if (st.size > MAX_FILE_BYTES) throw new PosternError('PST_ERR_CONFIG_SHAPING', `${path} is larger than ${MAX_FILE_BYTES} bytes`);
  const r = parseShaping(readFileSync(path, 'utf8'), path);
  if (!r.ok) throw new PosternError('PST_ERR_CONFIG_SHAPING', r.error.join('; '));
  return r.value;
}

/** The shaping file, re-read when it changes (config/polled-file.ts); a broken new version is reported and the previous one kept. */
export class ShapingFileWatcher extends PolledFile<ShapingFile> {
  constructor(path: string, file: ShapingFile, onReload: (err: Error | null, file: ShapingFile) => void) {
    super(path, file, readShaping, onReload);
  }
}
