// loadConfig(): the only code that reads process.env. Each POSTERN_* value is parsed once
// against its declaration in schema.ts into its typed form (routes, rates, schedules, keys);
// then the rules that tie settings together are checked. Every problem is collected and
// reported together, naming the variable, the value and what is allowed. The result is frozen.
// What needs the file system (certificates, keys, the spam model) is checked by resources.ts.
import { isIP } from 'node:net';
import { PosternError } from '../errors.js';
import { parseDuration, parseDurationList, formatDuration } from '../lib/duration.js';
import { parseRate, formatRate } from '../lib/rate.js';
import { isDomainName } from '../lib/domain-name.js';
import { isLoopbackHost } from '../lib/networks.js';
import { failure, success, type Result } from '../lib/result.js';
import { redactUrl, redactUrls } from '../lib/redact-url.js';
import { parseRoutes, parseSmarthost, formatRoutes, formatHostPort, implicitByPort, EMPTY_ROUTES, type RouteTable, type HostPort } from './routes.js';
import { parseDkimKeys, type DkimKeySpec } from './dkim-keys.js';
import { BOUNCE_CATEGORIES } from '../lib/bounce-class.js';
import { mapKey } from './recipient-map.js';
import { SETTINGS, type Config, type Setting, type SettingType } from './schema.js';

export type Env = Readonly<Record<string, string | undefined>>;

export class ConfigError extends PosternError {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super('PST_ERR_CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

/** Kinds whose grammar writes its own sentence ("rate "x" is not a count per period; …"). */
const GRAMMAR_KINDS: ReadonlySet<SettingType['kind']> = new Set(['durations', 'rate', 'routes', 'hosts', 'dkim-keys']);

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

function withUnit(raw: string, units: Record<string, number>): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(raw);
  if (!m) return undefined;
  const unit = units[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(Math.round(n)) ? Math.round(n) : undefined;
}

function parseCidr(s: string): boolean {
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const fam = isIP(addr);
  if (fam === 0) return false;
  if (slash < 0) return true;
  const bits = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (fam === 4 ? 32 : 128);
}

function list(raw: string): string[] {
  return raw.split(/[\s,]+/).map((x) => x.trim()).filter((x) => x.length > 0);
}

/** The typed value, or what is allowed (a grammar's own sentence for GRAMMAR_KINDS). */
function parseValue(raw: string, t: SettingType): Result<unknown, string> {
  switch (t.kind) {
    case 'string':
      return success(raw);
    case 'host':
      return isIP(raw) !== 0 || isDomainName(raw) ? success(raw) : failure('an IP address or a host name');
    case 'path':
      if (raw === '' && !t.optional) return failure('a file system path');
      return raw.includes('\0') ? failure('a path without NUL') : success(raw);
    case 'port': {
      if (raw === '' && t.optional) return success(null);
      const n = /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
      const min = t.allowZero ? 0 : 1;
      return n >= min && n <= 65535 ? success(n) : failure(`an integer port ${min}-65535`);
    }
    case 'int': {
      const n = /^-?\d+$/.test(raw) ? Number(raw) : NaN;
      return n >= t.min && n <= t.max ? success(n) : failure(`an integer ${t.min}-${t.max}`);
    }
    case 'bytes': {
      if (raw === '' && t.optional) return success(null);
      const n = withUnit(raw, BYTE_UNITS);
      return n !== undefined && n >= t.min && n <= t.max ? success(n) : failure(`a byte count ${t.min}-${t.max} (suffix K, M, G, T allowed)${t.optional ? ', or empty' : ''}`);
    }
    case 'duration': {
      const n = parseDuration(raw, { bareMs: true });
      return n.ok && n.value >= t.min && n.value <= t.max ? success(n.value) : failure(`milliseconds ${t.min}-${t.max} (suffix ms, s, m, h, d, w allowed)`);
    }
    case 'durations': {
      return parseDurationList(raw, 'retry schedule');
    }
    case 'rate': {
      if (raw === '') return success(null);
      const r = parseRate(raw);
      return r.ok ? r : failure(`${r.error}, or empty for unlimited`);
    }
    case 'score': {
      if (raw === '') return success(null);
      const n = /^\d+(?:\.\d+)?$/.test(raw) ? Number(raw) : NaN;
      return n >= 0 && n <= 1 ? success(n) : failure('a score from 0 to 1, or empty');
    }
    case 'url': {
      if (raw === '') return success('');
      const url = urlOf(raw);
      return url && (url.protocol === 'http:' || url.protocol === 'https:') ? success(raw) : failure('an http:// or https:// URL, or empty');
    }
    case 'redis-url': {
      if (raw === '') return success('');
      const url = urlOf(raw);
      if (!url || (url.protocol !== 'redis:' && url.protocol !== 'rediss:') || url.hostname === '') return failure('a redis:// or rediss:// URL with a host, or empty');
      if (url.pathname !== '' && url.pathname !== '/' && !/^\/\d{1,2}$/.test(url.pathname)) return failure('a database number 0-99 as the path (redis://host:6379/0)');
      return success(raw);
    }
    case 'list':
      return success(Object.freeze(raw.split(',').map((x) => x.trim()).filter((x) => x !== '')));
    case 'routes': {
      if (raw === '') return success(EMPTY_ROUTES);
      return parseRoutes(raw);
    }
    case 'hosts':
      return parseSmarthost(raw, t.defaultPort);
    case 'dkim-keys': {
      const k = parseDkimKeys(raw);
      return k.ok ? success(Object.freeze(k.value.map((x) => Object.freeze(x)))) : k;
    }
    case 'bool': {
      const v = raw.toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return success(true);
      if (['0', 'false', 'no', 'off'].includes(v)) return success(false);
      return failure('true or false (also 1/0, yes/no, on/off)');
    }
    case 'enum':
      return t.values.includes(raw) ? success(raw) : failure(`one of ${t.values.join(', ')}`);
    case 'domains': {
      const items = list(raw.toLowerCase());
      const bad = items.filter((d) => !isDomainName(d));
      return bad.length === 0 ? success(items) : failure(`comma-separated domain names (bad: ${bad.join(', ')})`);
    }
    case 'cidrs': {
      const items = list(raw);
      const bad = items.filter((c) => !parseCidr(c));
      return bad.length === 0 ? success(items) : failure(`comma-separated CIDRs like 10.0.0.0/8 or ::1/128 (bad: ${bad.join(', ')})`);
    }
  }
}

/** Parse every POSTERN_* variable; throws ConfigError listing all problems at once. */
export function loadConfig(env: Env = process.env): Readonly<Config> {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  const known = new Set(SETTINGS.map((s) => s.env));
  for (const s of SETTINGS) {
    const given = env[s.env];
    const raw = (given ?? s.default).trim();
    const r = parseValue(raw, s.type);
    if (r.ok) out[s.key] = r.value;
    // Masked: a bad webhook route or events URL must not print its password on stderr.
    else problems.push(redactUrls(`${s.env}=${JSON.stringify(s.type.kind === 'redis-url' ? redactUrl(given ?? s.default) : (given ?? s.default))}${given === undefined ? ' (default)' : ''} is invalid: ${GRAMMAR_KINDS.has(s.type.kind) ? '' : 'expected '}${r.error}`));
  }
  for (const name of Object.keys(env)) {
    if (name.startsWith('POSTERN_') && !known.has(name)) problems.push(`${name} is not a postern setting (see \`postern config\`)`);
  }
  if (problems.length === 0) {
    const c = out as unknown as Config;
    if ((c.tlsCert === '') !== (c.tlsKey === '')) problems.push('POSTERN_TLS_CERT and POSTERN_TLS_KEY must be set together');
    if (c.smtpsPort !== null && c.tlsCert === '') problems.push(`POSTERN_SMTPS_PORT=${c.smtpsPort} needs POSTERN_TLS_CERT and POSTERN_TLS_KEY`);
    if (c.smtpsPort !== null && c.smtpsPort !== 0 && c.smtpsPort === c.smtpPort) problems.push(`POSTERN_SMTPS_PORT=${c.smtpsPort} is the same as POSTERN_SMTP_PORT`);
    // A client's share of the body memory: a quarter unless set, never more than the whole.
    const perClient = c.maxBodyMemoryPerClient as number | null;
    if (perClient === null) c.maxBodyMemoryPerClient = Math.floor(c.maxBodyMemory / 4);
    else if (perClient > c.maxBodyMemory) {
      const given = (name: string, bytes: number): string => (env[name] === undefined ? `${name}=${bytes} (the default)` : `${name}=${JSON.stringify(env[name])} (${bytes} bytes)`);
      problems.push(`${given('POSTERN_MAX_BODY_MEMORY_PER_CLIENT', perClient)} is more than ${given('POSTERN_MAX_BODY_MEMORY', c.maxBodyMemory)}: a client's share is at most the whole (equal: no share)`);
    }
    if (c.dmarcEnforce && !c.authResults) problems.push('POSTERN_DMARC_ENFORCE=true needs POSTERN_AUTH_RESULTS=true');
    if (c.senderLogins !== '' && c.authUsers === '') problems.push(`POSTERN_SENDER_LOGINS=${JSON.stringify(c.senderLogins)} needs POSTERN_AUTH_USERS (it maps AUTH users to addresses)`);
    if (c.eventsUrl !== '' && c.eventsToken !== '') {
      const u = new URL(c.eventsUrl);
      if (u.username !== '' || u.password !== '') problems.push(`POSTERN_EVENTS_URL=${JSON.stringify(redactUrl(c.eventsUrl))} has credentials and POSTERN_EVENTS_TOKEN is set: use one of them`);
    }
    // Outbound AUTH only where the password cannot be read or phished: TLS whose certificate is verified.
    for (const r of c.routes.routes) {
      const t = r.target;
      if (t.kind !== 'smtp' || t.auth === undefined) continue;
      const policy = t.tlsPolicy ?? c.tlsPolicy;
      if (policy !== 'required' && policy !== 'implicit') problems.push(`POSTERN_ROUTES: route "${r.pattern}" has /auth= but its TLS is ${policy}${t.tlsPolicy === undefined ? ' (POSTERN_TLS_POLICY)' : ''}: AUTH needs verified TLS, add /tls=required or /tls=implicit`);
    }
    const smarthostTls = c.smarthost === null ? success(undefined) : implicitByPort(c.smarthost, undefined);
    if (!smarthostTls.ok) problems.push(`POSTERN_SMARTHOST=${JSON.stringify(formatValue(c.smarthost, { kind: 'hosts' }))} is invalid: ${smarthostTls.error.replace(/; say .*$/, '; use one port')}`);
    if (c.smarthostAuthFile !== '') {
      if (c.smarthost === null) problems.push(`POSTERN_SMARTHOST_AUTH_FILE=${JSON.stringify(c.smarthostAuthFile)} needs POSTERN_SMARTHOST`);
      else if (c.tlsPolicy !== 'required' && !(smarthostTls.ok && smarthostTls.value === 'implicit')) problems.push(`POSTERN_SMARTHOST_AUTH_FILE=${JSON.stringify(c.smarthostAuthFile)} needs verified TLS to the smarthost: set POSTERN_TLS_POLICY=required, or use port 465 (implicit TLS) (it is ${c.tlsPolicy})`);
    }
    if (c.rcptVerify === 'lmtp' && !c.routes.routes.some((r) => r.target.kind === 'lmtp')) problems.push('POSTERN_RCPT_VERIFY=lmtp needs an lmtp route in POSTERN_ROUTES (it asks the LMTP server of the recipient\'s route)');
    if (c.verpDomain !== '') {
      c.verpDomain = c.verpDomain.toLowerCase().replace(/\.$/, '');
      if (!isDomainName(c.verpDomain)) problems.push(`POSTERN_VERP=${JSON.stringify(c.verpDomain)} is invalid: expected a domain name, like bounces.example.com`);
    }
    // The prefix goes inside keys with hash tags ({…}, Redis Cluster): no braces, no spaces.
    if (!/^[A-Za-z0-9_.:|-]{1,64}$/.test(c.redisPrefix)) problems.push(`POSTERN_REDIS_PREFIX=${JSON.stringify(c.redisPrefix)} is invalid: expected 1-64 letters, digits or _ . : | -`);
    if (c.verpSecret !== '' && c.verpSecret.length < 16) problems.push('POSTERN_VERP_SECRET is too short: at least 16 characters');
    const badBounce = c.bounceAddresses.filter((a) => mapKey(a) === null);
    if (badBounce.length > 0) problems.push(`POSTERN_BOUNCE_ADDRESSES has ${badBounce.map((a) => JSON.stringify(a)).join(', ')}: expected addresses (local@domain)`);
    const outside = c.bounceAddresses.filter((a) => mapKey(a) !== null && !c.localDomains.includes(mapKey(a)!.slice(mapKey(a)!.lastIndexOf('@') + 1)));
    if (outside.length > 0) problems.push(`POSTERN_BOUNCE_ADDRESSES has ${outside.join(', ')}: not in POSTERN_LOCAL_DOMAINS (reports arrive from anyone, so the domain must be local)`);
    c.bounceAddresses = Object.freeze(c.bounceAddresses.map((a) => mapKey(a) ?? a));
    const badCat = c.suppressOn.filter((x) => x !== 'complaint' && !(BOUNCE_CATEGORIES as readonly string[]).includes(x));
    if (badCat.length > 0) problems.push(`POSTERN_SUPPRESS_ON has ${badCat.join(', ')}: expected categories among ${BOUNCE_CATEGORIES.join(', ')}, or complaint`);
    if (c.httpPort !== null && c.apiToken === '' && !isLoopbackHost(c.httpHost)) {
      problems.push(`POSTERN_HTTP_HOST=${c.httpHost} without POSTERN_API_TOKEN: the HTTP API serves a non-loopback address only with a token (set one, or bind 127.0.0.1 or ::1)`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(out as unknown as Config);
}

/**
 * The configuration from an environment file's variables and the process environment; a
 * variable set in the environment wins over the file's (as with Node's --env-file).
 */
export function loadConfigWithFile(fileVars: Env): Readonly<Config> {
  return loadConfig({ ...fileVars, ...process.env });
}

/** A parsed value written back in the grammar of its setting, for `postern config`. */
export function formatValue(value: unknown, type: SettingType): string {
  if (value === null || value === undefined) return '';
  switch (type.kind) {
    case 'durations':
      return (value as readonly number[]).map(formatDuration).join(',');
    case 'rate':
      return formatRate(value as number);
    case 'routes':
      return formatRoutes(value as RouteTable);
    case 'hosts':
      return (value as readonly HostPort[]).map(formatHostPort).join(',');
    case 'dkim-keys':
      return (value as readonly DkimKeySpec[]).map((k) => `${k.domain}:${k.selector}:${k.keyFile}`).join(',');
    case 'url':
    case 'redis-url':
      return redactUrl(value as string);
    default:
      // Any other text may still hold a URL with credentials.
      return Array.isArray(value) ? value.join(',') : typeof value === 'string' ? redactUrls(value) : String(value);
  }
}

/** The effective configuration as env-style lines, for `postern config`. */
export function describeConfig(config: Readonly<Config>): Array<{ env: string; value: string; doc: string; setting: Setting }> {
  return SETTINGS.map((s) => {
    const v = config[s.key];
    // Secrets are shown as set or not, never printed.
    if (/TOKEN|PASSWORD|SECRET/.test(s.env)) return { env: s.env, value: v ? '(set)' : '', doc: s.doc, setting: s };
    return { env: s.env, value: formatValue(v, s.type), doc: s.doc, setting: s };
  });
}

/** The configuration table of docs/configuration.md (`postern config --markdown`): one row per setting. */
export function configMarkdown(): string {
  const rows = SETTINGS.map((s) => {
    const def = s.shownDefault ?? (s.default === '' ? '*(unset)*' : `\`${s.default}\``);
    return `| \`${s.env}\` | ${def} | ${s.doc.replace(/\|/g, '\\|')} |`;
  });
  return ['| Variable | Default | Description |', '| --- | --- | --- |', ...rows].join('\n');
}

/** The URL `raw` parses to, or null when it is not one. */
function urlOf(raw: string): URL | null {
  try {
    return new URL(raw);
  } catch {
    return null;
  }
}
