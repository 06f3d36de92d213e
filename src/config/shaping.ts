// The shaping file (POSTERN_SHAPING, TOML, see docs/shaping.md): limits per provider "site"
// (the recipient domains and MX host suffixes one provider serves) and per source address
// within a site. Parsed and checked here, once per read: every problem is reported together,
// each naming file:line. The file is polled and re-read when it changes; a broken new version
// is reported and the previous one kept (as the recipient map, config/recipient-map.ts).
import { readFileSync, statSync } from 'node:fs';
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
  /** Overrides per source address ("default" until source pools exist). */
  readonly sources: ReadonlyMap<string, ShapingLimits>;
}

/** The [alerts] table: anomaly-alert thresholds (docs/alerts.md) over the POSTERN_ALERT_* settings. */
export interface ShapingAlerts {
  windowMs?: number;
  /** Rates 0-1 (the file says percent). */
  deferralRate?: number;
  bounceRate?: number;
  minSamples?: number;
  baselineFactor?: number;
}

export interface ShapingFile {
  readonly path: string;
  readonly defaults: ShapingLimits;
  readonly sites: readonly ShapingSite[];
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

export const EMPTY_SHAPING: ShapingFile = Object.freeze({ path: '', defaults: Object.freeze({}), sites: Object.freeze([]) });

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
    if (k !== 'defaults' && k !== 'site' && k !== 'alerts') errors.push(`${at([], k)}: unknown key "${k}" (expected [defaults], [site.NAME] and [alerts] tables)`);
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
          if (!isTable(v.source)) errors.push(`${at(tpath, 'source')}: "source" must hold tables [site.${name}.source."ADDRESS"]`);
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
  if (errors.length > 0) return failure(errors);
  return success(Object.freeze({ path, defaults, sites: Object.freeze(sites), ...(alerts ? { alerts } : {}) }));
}

const ALERT_KEYS = new Set(['window', 'deferral_percent', 'bounce_percent', 'min_recipients', 'baseline_factor']);

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
  if (t.window !== undefined) {
    const d = typeof t.window === 'string' ? parseDuration(t.window) : null;
    if (d === null || !d.ok || d.value < 1000 || d.value > 86_400_000) errors.push(`${at(['alerts'], 'window')}: window must be a duration from "1s" to "1d", got ${JSON.stringify(t.window)}`);
    else out.windowMs = d.value;
  }
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

function claim(owners: Map<string, string>, item: string, site: string, what: string, tpath: string[], key: string, errors: string[], at: (t: string[], k?: string) => string): void {
  const prev = owners.get(item);
  if (prev !== undefined && prev !== site) errors.push(`${at(tpath, key)}: ${what} "${item}" is already in site "${prev}"`);
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
