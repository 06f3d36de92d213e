// The built-in authres filter, run in the filter workers: checks SPF, DKIM and DMARC (and ARC)
// for inbound mail with mailauth and prepends the Authentication-Results header (RFC 8601,
// authserv-id = POSTERN_HOSTNAME) and Received-SPF (RFC 7208 section 9.1). With enforceDmarc a
// DMARC failure under p=reject is refused (550 5.7.1). Only untrusted, unauthenticated clients
// are checked: a submission (AUTH or a trusted network) gets nothing. DNS trouble becomes
// temperror in the header, never a throw (a throw would tempfail the whole message).
//
// createAuthFilter() is the testable core (a resolver can be injected); the default export is
// the worker entry, built once from workerData.builtin.authres with the system resolver.
import { authenticate } from 'mailauth';
import { workerData } from 'piscina';
import { PosternError } from '../../errors.js';
import type { FilterInput, Verdict } from '../messages.js';
import { createSystemResolver, withDeadline, type DnsResolver } from './resolver.js';

/** What the lead passes as workerData.builtin.authres (plain data: it crosses into workers). */
export interface AuthResSettings {
  /** authserv-id of our Authentication-Results (RFC 8601 section 2.5): POSTERN_HOSTNAME. */
  hostname: string;
  /** Refuse a DMARC failure whose (effective) policy is reject. Default false: tag only. */
  enforceDmarc: boolean;
  /** Budget for all DNS work of one message, in ms (default 10 000); late lookups become temperror. */
  timeoutMs?: number;
  /** DNS servers to ask instead of the system's. */
  dnsServers?: string[];
}

export interface AuthFilterOptions extends AuthResSettings {
  /** mailauth-shaped DNS function; default: node:dns with a per-query timeout. */
  resolver?: DnsResolver;
  /** For pct sampling (RFC 7489 section 6.6.4); default Math.random. */
  random?: () => number;
}

export const DEFAULT_TIMEOUT_MS = 10_000;
/** After the DNS deadline, how long mailauth may take to finish before we stop waiting. */
const GRACE_MS = 1_000;
/** RFC 5322 section 2.1.1: a line is at most 998 characters. */
const MAX_LINE = 998;

export type AuthFilter = (input: FilterInput) => Promise<Verdict>;

/**
 * DKIM-Signature fields verified per message: the first ones (a message passing through lists
 * and forwarders gathers a few). mailauth hashes the whole body once per distinct l= value, so
 * 100 signatures on a 4 MiB body cost a filter worker 14 s, with no DNS (found by review).
 */
export const MAX_DKIM_SIGNATURES = 8;

/**
 * The message with only its first `max` DKIM-Signature fields (the others dropped, for the
 * verification only); the same Buffer when it has no more than that.
 */
export function keepFirstSignatures(body: Buffer, max = MAX_DKIM_SIGNATURES): Buffer {
  const end = body.indexOf('\r\n\r\n');
  const headEnd = end < 0 ? body.length : end + 2;
  const head = body.toString('latin1', 0, headEnd);
  const starts = [...head.matchAll(/(?:^|\r?\n)(dkim-signature[ \t]*:)/gi)];
  if (starts.length <= max) return body;
  const lines = head.split(/(?<=\n)/);
  const kept: string[] = [];
  let seen = 0;
  let dropping = false;
  for (const line of lines) {
    const continuation = line[0] === ' ' || line[0] === '\t';
    if (!continuation) dropping = /^dkim-signature[ \t]*:/i.test(line) && ++seen > max;
    if (!dropping) kept.push(line);
  }
  return Buffer.concat([Buffer.from(kept.join(''), 'latin1'), body.subarray(headEnd)]);
}

export function createAuthFilter(o: AuthFilterOptions): AuthFilter {
  const hostname = o.hostname;
  if (!hostname || /[\s;()]/.test(hostname)) throw new PosternError('PST_ERR_CONFIG_INVALID', `authres: invalid hostname ${JSON.stringify(hostname)}`);
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const base = o.resolver ?? createSystemResolver({ timeoutMs: Math.min(timeoutMs, 3_000), tries: 2, ...(o.dnsServers ? { servers: o.dnsServers } : {}) });
  const random = o.random ?? Math.random;

  return async function authresFilter({ envelope, body }: FilterInput): Promise<Verdict> {
    const { client } = envelope;
    if (client.trusted || client.authUser) return { action: 'accept' };

    const deadline = performance.now() + timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    let res: Awaited<ReturnType<typeof authenticate>>;
    try {
      const run = authenticate(keepFirstSignatures(body), {
        ip: client.ip,
        ...(client.helo ? { helo: client.helo } : {}),
        // '' (the null reverse-path) makes mailauth check postmaster@<helo>, as RFC 7208 section 2.4 says.
        sender: envelope.sender,
        mta: hostname,
        resolver: withDeadline(base, deadline),
        disableBimi: true, // we show no logos; skip its lookups
        trustReceived: false,
      });
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEOUT' })), timeoutMs + GRACE_MS);
      });
      run.catch(() => {}); // abandoned after the grace period: don't let it reject unhandled
      res = await Promise.race([run, late]);
    } catch (err) {
      const why = (err as Error)?.message === 'timeout' ? 'timeout' : 'internal error';
      return { action: 'accept', headers: fallbackHeader(hostname, why) };
    } finally {
      clearTimeout(timer);
    }

    const headers = cleanHeaders(res.headers);
    const dmarc = res.dmarc;
    if (o.enforceDmarc && dmarc && dmarc.status?.result === 'fail' && (dmarc.policy ?? '').toLowerCase() === 'reject' && sampled(dmarc.pct, random)) {
      return { action: 'reject', reason: 'DMARC policy', headers };
    }
    return { action: 'accept', headers };
  };
}

/** pct= sampling: absent or >= 100 always applies; else pct% of failures (RFC 7489 6.6.4). */
function sampled(pct: number | undefined, random: () => number): boolean {
  if (pct === undefined || !Number.isFinite(pct) || pct >= 100) return true;
  return random() * 100 < pct;
}

/** When mailauth itself failed or stalled: say so, as temperror (RFC 8601 section 2.7). */
function fallbackHeader(hostname: string, why: string): string {
  return `Authentication-Results: ${hostname};\r\n spf=temperror (${why});\r\n dkim=temperror (${why});\r\n dmarc=temperror (${why})\r\n`;
}

/**
 * mailauth's block, made safe to prepend: CRLF only, no empty line (it would end the header
 * section), every line either a field start or a continuation (leading WSP), at most 998
 * characters (folded at a space, else cut), CRLF after the last line.
 */
export function cleanHeaders(raw: string): string {
  const out: string[] = [];
  for (let line of raw.split(/\r\n|\r|\n/)) {
    // eslint-disable-next-line no-control-regex
    line = line.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, ' ').replace(/\s+$/, '');
    if (line.trim() === '') continue;
    if (!/^[ \t]/.test(line) && !/^[!-9;-~]+:/.test(line)) line = ' ' + line; // stray text: keep it inside the field
    if (out.length === 0 && /^[ \t]/.test(line)) continue; // a continuation with no field
    while (line.length > MAX_LINE) {
      const cut = line.lastIndexOf(' ', MAX_LINE);
      const at = cut > 1 ? cut : MAX_LINE;
      out.push(line.slice(0, at));
      line = cut > 1 ? line.slice(at) : ' ' + line.slice(at);
    }
    out.push(line);
  }
  return out.length === 0 ? '' : out.join('\r\n') + '\r\n';
}

// ---- the worker entry ----

const settings = (workerData as { builtin?: { authres?: AuthResSettings } } | undefined)?.builtin?.authres;
let instance: AuthFilter | null = null;

export default function authres(input: FilterInput): Promise<Verdict> | Verdict {
  if (!settings) return { action: 'accept' };
  instance ??= createAuthFilter(settings);
  return instance(input);
}
