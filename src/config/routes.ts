// The grammar of POSTERN_ROUTES and POSTERN_SMARTHOST and the lookup of a route by domain,
// parsed once at load (STYLE §7) into plain frozen data the delivery side reads. A route or smarthost replaces the MX lookup of RFC 5321 §5.1 the way Postfix
// transport(5) and relayhost do: the listed hosts are connected to directly (A/AAAA only).
// Host syntax follows RFC 5321 §4.1.3 address literals: IPv6 only inside brackets, because
// "::1:25" cannot be split into host and port.
//
// POSTERN_ROUTES grammar (entries separated by ";" or newlines; whitespace around entries,
// around "=" and after "," is ignored; empty entries are skipped):
//
//   entry    = pattern "=" target
//   pattern  = domain            exact match             example.org
//            | "*." domain       any subdomain, longest  *.corp.test  (not corp.test itself)
//            | "*"               catch-all
//   target   = "smtp:" hosts *( "/" smtp-opt )      default port 25
//            | "lmtp:" hosts [ "/tls=" policy ]     default port 24
//            | "maildir:" absolute-path             maildir:/var/mail
//            | "webhook:" http(s)-url               webhook:http://127.0.0.1:9000/in
//            | "pipe:" *( option " " ) program *( " " arg )
//                                                   pipe:user=vmail /usr/bin/maildrop -d {local}
//   hosts    = hostport *( "," hostport )           in preference order
//   hostport = host [ ":" port ] | "[" host-or-ip "]" [ ":" port ]  ("[IPv6:...]" also accepted)
//   policy   = "opportunistic" | "required" | "none"  (omitted: the global policy applies, except
//              on port 465, where it means "implicit")
//   smtp-opt = "tls=" ( policy | "implicit" )      implicit: TLS from the first byte (RFC 8314)
//            | "auth=" absolute-path               credentials file (smtp-credentials.ts); the
//              path runs to the next "/tls=" or "/auth=" or the end, so it may hold "/"
//   option   = "user=" name-or-uid | "group=" name-or-gid | "timeout=" duration | "max=" 1-256
//   program  = an absolute path; arg = any run of non-blank characters, in which {sender},
//              {recipient}, {domain} and {local} are replaced at delivery (any other {name}
//              is refused). Arguments are split on blanks only: no quotes, no shell.
//
// A "/tls=" suffix is only recognised on smtp and lmtp targets: on maildir and webhook it would
// be part of a path or URL. Port 465 is implicit TLS (RFC 8314 §3.3): a route whose hosts are
// all on 465 gets /tls=implicit unless it says otherwise, and any other policy there, or 465
// mixed with other ports without a /tls=, is refused (a STARTTLS client on 465 would wait five
// minutes for a greeting that never comes). A webhook URL or a pipe argument cannot contain ";" (it separates
// entries); the values substituted into pipe arguments can contain anything.
import { isIP } from 'node:net';
import { isDomainName, normalizeDomain } from '../lib/domain-name.js';
import { failure, success, type Result } from '../lib/result.js';
import { redactUrl } from '../lib/redact-url.js';
import { parseDuration } from '../lib/duration.js';

export type TlsPolicy = 'opportunistic' | 'required' | 'none' | 'implicit';

/** RFC 8314 §7.3: the submissions port, where TLS starts at once. */
export const IMPLICIT_TLS_PORT = 465;

export interface HostPort {
  /** A name or an IP address: what logs, keys and TLS (SNI) use. */
  host: string;
  port: number;
  /** The checked address to connect to (set for MX hosts); without it `host` is connected to. */
  address?: string;
}

export type RouteTarget =
  | { kind: 'smtp'; hosts: readonly HostPort[]; tlsPolicy?: TlsPolicy; /** The credentials file for AUTH (smtp-credentials.ts). */ auth?: string }
  | { kind: 'lmtp'; hosts: readonly HostPort[]; tlsPolicy?: TlsPolicy }
  | { kind: 'maildir'; root: string }
  | { kind: 'webhook'; url: string }
  | PipeTarget;

/** A pipe route: run `program` with `args` (templates) once per recipient, the message on its stdin. */
export interface PipeTarget {
  kind: 'pipe';
  /** Absolute; `postern config` and start check that it is an executable file. */
  program: string;
  /** Argument templates, each one argv element after substitution (PIPE_VARIABLES). */
  args: readonly string[];
  /** Run as this user / group (a name or a number), resolved and checked at start-up. */
  user?: string;
  group?: string;
  timeoutMs: number;
  /** Programs of this route running at once. */
  maxProcesses: number;
}

/** The substitutions of pipe arguments, each replaced by one value and never split. */
export const PIPE_VARIABLES: readonly string[] = ['sender', 'recipient', 'domain', 'local'];
export const PIPE_DEFAULT_TIMEOUT_MS = 60_000;
export const PIPE_DEFAULT_MAX_PROCESSES = 4;
const PIPE_MAX_PROCESSES = 256;

export interface Route {
  /** The pattern as normalised: "example.org", "*.corp.test" or "*". */
  readonly pattern: string;
  readonly target: RouteTarget;
}

/**
 * Plain data (Maps and arrays; structured-clone safe). Look up with `matchRoute`.
 *
 *   exact     "example.org"  → Route
 *   wildcard  "corp.test"    → Route   (from "*.corp.test"; keyed by the suffix)
 *   catchAll  Route | undefined        (from "*")
 */
export interface RouteTable {
  readonly exact: ReadonlyMap<string, Route>;
  readonly wildcard: ReadonlyMap<string, Route>;
  readonly catchAll: Route | undefined;
  /** Every route in spec order, for display (`postern config`). */
  readonly routes: readonly Route[];
}

/** The policies of POSTERN_TLS_POLICY and of lmtp routes; smtp routes also take 'implicit'. */
export const TLS_POLICIES: readonly TlsPolicy[] = ['opportunistic', 'required', 'none'];
const SMTP_TLS_POLICIES: readonly TlsPolicy[] = [...TLS_POLICIES, 'implicit'];
const KINDS = 'smtp, lmtp, maildir, webhook or pipe';

export const EMPTY_ROUTES: RouteTable = Object.freeze({ exact: new Map(), wildcard: new Map(), catchAll: undefined, routes: Object.freeze([]) });

/**
 * "host", "host:port", "[ip]", "[ip]:port", "[host]:port" or "[IPv6:ip]:port". Host names are
 * lower-cased and lose a trailing dot; brackets are dropped (HostPort.host is what net.connect
 * takes). Brackets on a name or IPv4 address are accepted (Postfix habit) and mean nothing more.
 */
export function parseHostPort(text: string, defaultPort = 25): Result<HostPort, string> {
  const s = text.trim();
  let host: string;
  let portText: string | undefined;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return failure(`"${s}" has no closing "]"`);
    host = s.slice(1, close);
    if (/^ipv6:/i.test(host)) host = host.slice(5);
    const rest = s.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return failure(`"${s}" has "${rest}" after "]"; expected ":port" or nothing`);
      portText = rest.slice(1);
    }
  } else {
    const colon = s.indexOf(':');
    if (colon >= 0 && s.indexOf(':', colon + 1) >= 0) return failure(`"${s}": an IPv6 address needs brackets, like [::1]:25`);
    host = colon < 0 ? s : s.slice(0, colon);
    if (colon >= 0) portText = s.slice(colon + 1);
  }
  host = host.toLowerCase();
  if (isIP(host) === 0) {
    if (host.endsWith('.')) host = host.slice(0, -1);
    if (!isDomainName(host)) return failure(`"${s}": "${host}" is not a host name or IP address`);
  }
  let port = defaultPort;
  if (portText !== undefined) {
    port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) return failure(`"${s}": port "${portText}" is not 1-65535`);
  }
  return success({ host, port });
}

/** "host:port" or "[v6]:port" (IPv6 bracketed), as used in destination keys and logs. */
export function formatHostPort(hp: HostPort): string {
  return isIP(hp.host) === 6 ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** A comma-separated list of hostports, in preference order. */
function parseHostList(text: string, defaultPort: number): Result<HostPort[], string> {
  const items = text.split(',').map((x) => x.trim());
  if (items.some((x) => x === '')) return failure(`empty host in "${text}"`);
  const hosts: HostPort[] = [];
  for (const item of items) {
    const hp = parseHostPort(item, defaultPort);
    if (!hp.ok) return hp;
    hosts.push(Object.freeze(hp.value));
  }
  return success(hosts);
}

/**
 * POSTERN_SMARTHOST: one or more comma-separated hostports in preference order, default port 25,
 * e.g. "relay.example.net:587" or "[10.0.0.1]:25,[2001:db8::1]:25". The empty string means no
 * smarthost (null). Hosts are connected to directly; there is no MX lookup of the smarthost.
 */
export function parseSmarthost(text: string, defaultPort = 25): Result<readonly HostPort[] | null, string> {
  if (text.trim() === '') return success(null);
  const hosts = parseHostList(text, defaultPort);
  if (!hosts.ok) return failure(`${hosts.error}; expected host:port or [host]:port, comma-separated`);
  return success(Object.freeze(hosts.value));
}

function parsePattern(raw: string): Result<string, string> {
  const p = normalizeDomain(raw);
  const d = p.startsWith('*.') ? p.slice(2) : p;
  if (p === '*' || isDomainName(d)) return success(p);
  return failure(`domain "${raw}" is not a domain, "*.domain" or "*"`);
}

function parseTarget(raw: string): Result<RouteTarget, string> {
  const colon = raw.indexOf(':');
  const kind = colon < 0 ? raw : raw.slice(0, colon).trim().toLowerCase();
  const rest = colon < 0 ? '' : raw.slice(colon + 1).trim();
  switch (kind) {
    case 'smtp':
    case 'lmtp': {
      // Hosts never hold "/": the first one starts the options.
      const slash = rest.indexOf('/');
      const hostsText = slash < 0 ? rest : rest.slice(0, slash);
      let tlsPolicy: TlsPolicy | undefined;
      let auth: string | undefined;
      if (slash >= 0) {
        const allowed = kind === 'smtp' ? SMTP_TLS_POLICIES : TLS_POLICIES;
        for (const opt of rest.slice(slash + 1).split(/\/(?=(?:tls|auth)=)/i)) {
          const eq = opt.indexOf('=');
          const name = eq < 0 ? '' : opt.slice(0, eq).toLowerCase();
          const value = opt.slice(eq + 1);
          if (name === 'tls') {
            const p = value.trim().toLowerCase();
            if (!allowed.includes(p as TlsPolicy)) return failure(`"/${opt}" is not a TLS policy; expected /tls=${allowed.join('|')}`);
            tlsPolicy = p as TlsPolicy;
          } else if (name === 'auth' && kind === 'smtp') {
            if (!value.startsWith('/') || value.includes('\0')) return failure(`"/${opt}" needs an absolute path to a credentials file, like /auth=/etc/postern/relay.auth`);
            auth = value.trim();
          } else {
            return failure(`"/${opt}" is not an option of ${kind}; expected ${kind === 'smtp' ? '/tls=policy or /auth=/path' : `/tls=${TLS_POLICIES.join('|')}`}`);
          }
        }
      }
      if (hostsText.trim() === '') return failure(`${kind} needs one or more host[:port], comma-separated`);
      const hosts = parseHostList(hostsText, kind === 'smtp' ? 25 : 24);
      if (!hosts.ok) return failure(`${hosts.error}; ${kind} takes host[:port] or [host]:port, comma-separated`);
      if (kind === 'smtp') {
        const implicit = implicitByPort(hosts.value, tlsPolicy);
        if (!implicit.ok) return implicit;
        tlsPolicy = implicit.value;
      }
      const t = { kind, hosts: Object.freeze(hosts.value) } as RouteTarget & { tlsPolicy?: TlsPolicy; auth?: string };
      if (tlsPolicy !== undefined) t.tlsPolicy = tlsPolicy;
      if (auth !== undefined) t.auth = auth;
      return success(t);
    }
    case 'maildir':
      // Absolute, so the meaning does not depend on the working directory of the daemon.
      if (!rest.startsWith('/') || rest.includes('\0')) return failure(`maildir needs an absolute path, like maildir:/var/mail`);
      return success({ kind: 'maildir', root: rest });
    case 'webhook': {
      let url: URL | undefined;
      try {
        url = new URL(rest);
      } catch {
        url = undefined;
      }
      if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) return failure(`webhook needs an http:// or https:// URL`);
      return success({ kind: 'webhook', url: url.href });
    }
    case 'pipe':
      return parsePipe(rest);
    default:
      return failure(`unknown kind "${kind}"; expected ${KINDS}`);
  }
}

/**
 * The TLS policy of smtp hosts given `given` (the "/tls=" option, if any): port 465 means
 * implicit TLS (RFC 8314 §3.3), so all hosts on 465 and no option → 'implicit'; another policy
 * on 465, or 465 mixed with other ports and no option, is refused. Also used for the smarthost.
 */
export function implicitByPort(hosts: readonly HostPort[], given: TlsPolicy | undefined): Result<TlsPolicy | undefined, string> {
  const on465 = hosts.filter((h) => h.port === IMPLICIT_TLS_PORT).length;
  if (on465 === 0 || given === 'implicit') return success(given);
  if (given !== undefined) return failure(`port ${IMPLICIT_TLS_PORT} is implicit TLS (RFC 8314), not /tls=${given}; use /tls=implicit or another port`);
  if (on465 < hosts.length) return failure(`port ${IMPLICIT_TLS_PORT} (implicit TLS) is mixed with other ports; say /tls=implicit or /tls=required`);
  return success('implicit');
}

/** "pipe:" [options] /program args… (grammar in the header). */
function parsePipe(rest: string): Result<PipeTarget, string> {
  const words = rest.split(/[ \t]+/).filter((w) => w !== '');
  const t: { -readonly [K in keyof PipeTarget]: PipeTarget[K] } = { kind: 'pipe', program: '', args: [], timeoutMs: PIPE_DEFAULT_TIMEOUT_MS, maxProcesses: PIPE_DEFAULT_MAX_PROCESSES };
  let i = 0;
  for (; i < words.length && !words[i]!.startsWith('/'); i++) {
    const w = words[i]!;
    const eq = w.indexOf('=');
    const name = eq < 0 ? w : w.slice(0, eq).toLowerCase();
    const value = eq < 0 ? '' : w.slice(eq + 1);
    switch (name) {
      case 'user':
      case 'group':
        if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(value)) return failure(`pipe ${name} "${value}" is not a user or group name or number`);
        t[name] = value;
        break;
      case 'timeout': {
        const d = parseDuration(value);
        if (!d.ok) return failure(`pipe timeout: ${d.error}`);
        if (d.value < 1000) return failure(`pipe timeout "${value}" is under 1s`);
        t.timeoutMs = d.value;
        break;
      }
      case 'max': {
        const n = /^\d{1,3}$/.test(value) ? Number(value) : NaN;
        if (!(n >= 1 && n <= PIPE_MAX_PROCESSES)) return failure(`pipe max "${value}" is not 1-${PIPE_MAX_PROCESSES}`);
        t.maxProcesses = n;
        break;
      }
      default:
        return failure(`"${w}" is neither a pipe option (user=, group=, timeout=, max=) nor an absolute program path`);
    }
  }
  const program = words[i];
  if (program === undefined || program.includes('\0')) return failure(`pipe needs an absolute program path, like pipe:/usr/bin/maildrop -d {local}`);
  t.program = program;
  t.args = Object.freeze(words.slice(i + 1));
  for (const a of t.args) {
    for (const m of a.matchAll(/\{([^{}]*)\}/g)) {
      if (!PIPE_VARIABLES.includes(m[1]!)) return failure(`pipe argument "${a}" has {${m[1]}}; expected ${PIPE_VARIABLES.map((v) => `{${v}}`).join(', ')}`);
    }
  }
  return success(t);
}

/**
 * Parse POSTERN_ROUTES (grammar in the header). Every bad entry is reported, joined by "; ",
 * each as `route "<entry>": <what is wrong and what is allowed>`.
 */
export function parseRoutes(spec: string): Result<RouteTable, string> {
  const exact = new Map<string, Route>();
  const wildcard = new Map<string, Route>();
  let catchAll: Route | undefined;
  const routes: Route[] = [];
  const problems: string[] = [];
  for (const piece of spec.split(/[;\n]/)) {
    const entry = piece.trim();
    if (entry === '') continue;
    const eq = entry.indexOf('=');
    if (eq < 0) {
      problems.push(`route "${entry}": expected domain=kind:target (kind ${KINDS})`);
      continue;
    }
    const parsedPattern = parsePattern(entry.slice(0, eq));
    const parsedTarget = parseTarget(entry.slice(eq + 1).trim());
    if (!parsedPattern.ok || !parsedTarget.ok) {
      for (const r of [parsedPattern, parsedTarget]) if (!r.ok) problems.push(`route "${entry}": ${r.error}`);
      continue;
    }
    const pattern = parsedPattern.value;
    const target = parsedTarget.value;
    const route: Route = Object.freeze({ pattern, target: Object.freeze(target) });
    const taken = pattern === '*' ? catchAll !== undefined : pattern.startsWith('*.') ? wildcard.has(pattern.slice(2)) : exact.has(pattern);
    if (taken) {
      problems.push(`route "${entry}": ${pattern} already has a route; each domain pattern may appear once`);
      continue;
    }
    if (pattern === '*') catchAll = route;
    else if (pattern.startsWith('*.')) wildcard.set(pattern.slice(2), route);
    else exact.set(pattern, route);
    routes.push(route);
  }
  if (problems.length > 0) return failure(problems.join('; '));
  return success(Object.freeze({ exact, wildcard, catchAll, routes: Object.freeze(routes) }));
}

/** Exact domain, then the longest "*.suffix", then "*". */
export function matchRoute(table: RouteTable, domain: string): Route | undefined {
  const d = normalizeDomain(domain);
  const hit = table.exact.get(d);
  if (hit) return hit;
  if (table.wildcard.size > 0) {
    // Walking the dots left to right tries the longest suffix first.
    for (let i = d.indexOf('.'); i >= 0; i = d.indexOf('.', i + 1)) {
      const w = table.wildcard.get(d.slice(i + 1));
      if (w) return w;
    }
  }
  return table.catchAll;
}

function formatTarget(t: RouteTarget): string {
  switch (t.kind) {
    case 'smtp':
    case 'lmtp':
      return `${t.kind}:${t.hosts.map(formatHostPort).join(',')}${t.tlsPolicy ? `/tls=${t.tlsPolicy}` : ''}${t.kind === 'smtp' && t.auth !== undefined ? `/auth=${t.auth}` : ''}`;
    case 'maildir':
      return `maildir:${t.root}`;
    case 'webhook':
      return `webhook:${redactUrl(t.url)}`;
    case 'pipe': {
      const opts = [t.user !== undefined ? `user=${t.user}` : '', t.group !== undefined ? `group=${t.group}` : '', t.timeoutMs !== PIPE_DEFAULT_TIMEOUT_MS ? `timeout=${t.timeoutMs}ms` : '', t.maxProcesses !== PIPE_DEFAULT_MAX_PROCESSES ? `max=${t.maxProcesses}` : ''];
      return `pipe:${[...opts.filter((o) => o !== ''), t.program, ...t.args].join(' ')}`;
    }
  }
}

/** The table written back in the grammar above (webhook credentials masked), for display. */
export function formatRoutes(table: RouteTable): string {
  return table.routes.map((r) => `${r.pattern}=${formatTarget(r.target)}`).join(';');
}
