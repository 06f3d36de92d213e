// MTA-STS policy discovery (RFC 8461 §3, §5.1): the `_mta-sts` TXT record through the node's
// resolver, the policy from https://mta-sts.<domain>/.well-known/mta-sts.txt through undici
// (certificate verified, 64 KiB, a time bound, no redirects, text/plain, the address policy
// applied to the addresses it connects to), a cache per max_age kept in a file of the data
// dir, and the refresh: in the background when the TXT id changes or the policy nears its
// end. A failed refresh keeps the cached policy until it expires (§10.2: no downgrade).
import { readFileSync, writeFileSync, renameSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Agent, request } from 'undici';
import { AddressPolicy, policyLookup } from './address-policy.js';
import { normalizeDomain } from '../lib/domain-name.js';
import { MAX_STS_POLICY_BYTES, parseStsPolicy, parseStsTxt, type StsPolicy } from './mta-sts-policy.js';
import type { TlsFailureType } from './tls-outcome.js';

export interface TxtResolver {
  resolveTxt(hostname: string): Promise<string[][]>;
}

export interface MtaStsOptions {
  /** The node's resolver (the one MX lookups use). */
  dns: TxtResolver;
  /** The addresses the HTTPS fetch may connect to (the delivery's policy). */
  policy: AddressPolicy;
  /** Where the policies are kept across restarts; none: memory only. */
  cacheFile?: string;
  /** The origin fetched for a domain (default `https://mta-sts.<domain>`); tests give a loopback port. */
  origin?: (domain: string) => string;
  /** The addresses of the policy host (default the system's lookup); every one passes `policy`. */
  resolveHost?: (hostname: string) => Promise<string[]>;
  /** Certificate authorities trusted for the fetch instead of the system's (tests: a test CA). */
  ca?: string[];
  /** The whole fetch (connect, headers, body) within this (default 15 s). */
  fetchTimeoutMs?: number;
  /** The TXT lookup within this (default 10 s). */
  txtTimeoutMs?: number;
  /** How often the TXT id of a cached policy is checked again (default 1 h). */
  txtRecheckMs?: number;
  /** A domain with no usable policy is asked again after this (default 5 min). */
  negativeTtlMs?: number;
  /** Policies kept (default 10000): the oldest fetched goes first. */
  maxEntries?: number;
  /** Told of each failed fetch or bad policy (TLS reporting and the log). */
  onFailure?: (domain: string, failure: TlsFailureType, detail: string) => void;
  now?: () => number;
}

export type StsLookup =
  | { kind: 'policy'; id: string; policy: StsPolicy; expiresAt: number }
  | { kind: 'none'; reason: string };

interface Cached {
  id: string;
  policy: StsPolicy;
  fetchedAt: number;
  expiresAt: number;
  /** When the TXT id was last compared with the cached one. */
  checkedAt: number;
}

type FetchResult = { ok: true; policy: StsPolicy } | { ok: false; failure: TlsFailureType; detail: string };

/** Persisted form: one line a policy would be simpler to append, but the file is small and rewritten whole. */
interface StoredEntry {
  d: string;
  id: string;
  lines: string[];
  fetchedAt: number;
  expiresAt: number;
}

const MAX_CACHE_FILE_BYTES = 32 * 1024 * 1024;
const WELL_KNOWN = '/.well-known/mta-sts.txt';

export class MtaSts {
  readonly #o: MtaStsOptions;
  readonly #cache = new Map<string, Cached>();
  readonly #negative = new Map<string, { reason: string; until: number }>();
  readonly #inflight = new Map<string, Promise<StsLookup>>();
  readonly #agent: Agent;
  readonly #now: () => number;
  #writing = false;
  #dirty = false;
  #closed = false;

  constructor(opts: MtaStsOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    // The policy host is a name of the recipient's choosing: it must not reach our own network.
    const lookup = policyLookup(opts.policy, opts.resolveHost);
    const timeout = opts.fetchTimeoutMs ?? 15_000;
    this.#agent = new Agent({
      connect: { lookup, timeout, ...(opts.ca ? { ca: opts.ca } : {}), rejectUnauthorized: true },
      headersTimeout: timeout,
      bodyTimeout: timeout,
      maxResponseSize: MAX_STS_POLICY_BYTES,
      // One fetch now and then per domain: no reason to keep sockets open.
      pipelining: 0,
      keepAliveTimeout: 1000,
    });
    if (opts.cacheFile) this.#load(opts.cacheFile);
  }

  /**
   * The policy for `domain` now: a valid cached one at once (refreshed in the background
   * when due), else a lookup and fetch; none when the domain has none or it cannot be had.
   */
  async policyFor(domain: string): Promise<StsLookup> {
    const d = normalizeDomain(domain);
    const now = this.#now();
    const c = this.#cache.get(d);
    if (c && c.expiresAt > now) {
      if (this.#due(c, now)) void this.#refresh(d);
      return { kind: 'policy', id: c.id, policy: c.policy, expiresAt: c.expiresAt };
    }
    const neg = this.#negative.get(d);
    if (neg && neg.until > now) return { kind: 'none', reason: neg.reason };
    return this.#refresh(d);
  }

  /** The cached policy without any lookup (tests, the CLI). */
  cached(domain: string): StsLookup | null {
    const c = this.#cache.get(normalizeDomain(domain));
    return c ? { kind: 'policy', id: c.id, policy: c.policy, expiresAt: c.expiresAt } : null;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#inflight.values()]);
    await this.#agent.close();
  }

  /** A check of the TXT id is due, or the policy has less than a fifth of its life left (at most a day). */
  #due(c: Cached, now: number): boolean {
    if (now - c.checkedAt >= (this.#o.txtRecheckMs ?? 3_600_000)) return true;
    const life = c.expiresAt - c.fetchedAt;
    return c.expiresAt - now < Math.min(life / 5, 86_400_000);
  }

  #refresh(d: string): Promise<StsLookup> {
    let p = this.#inflight.get(d);
    if (!p) {
      p = this.#discover(d).catch((err: Error) => ({ kind: 'none' as const, reason: `MTA-STS lookup failed: ${err.message}` }));
      this.#inflight.set(d, p);
      const clear = (): void => void this.#inflight.delete(d);
      p.then(clear, clear);
    }
    return p;
  }

  async #discover(d: string): Promise<StsLookup> {
    const now = this.#now();
    const c = this.#cache.get(d);
    const valid = c && c.expiresAt > now ? c : undefined;
    const keep = (why: string): StsLookup => {
      if (valid) {
        valid.checkedAt = now;
        return { kind: 'policy', id: valid.id, policy: valid.policy, expiresAt: valid.expiresAt };
      }
      this.#negative.set(d, { reason: why, until: now + (this.#o.negativeTtlMs ?? 300_000) });
      if (this.#negative.size > (this.#o.maxEntries ?? 10_000)) this.#negative.delete(this.#negative.keys().next().value!);
      return { kind: 'none', reason: why };
    };
    let txt: string[][];
    try {
      txt = await withTimeout(this.#o.dns.resolveTxt(`_mta-sts.${d}`), this.#o.txtTimeoutMs ?? 10_000);
    } catch (err) {
      // §3.3/§5.1: no record (or none to be had) with a cached policy: keep using it.
      return keep(`no MTA-STS TXT record (${(err as { code?: string }).code ?? (err as Error).message})`);
    }
    const rec = parseStsTxt(txt);
    if (rec.kind === 'none') return keep(rec.reason);
    // Same id and not near its end: the cached policy stands.
    if (valid && valid.id === rec.id && !(valid.expiresAt - now < Math.min((valid.expiresAt - valid.fetchedAt) / 5, 86_400_000))) return keep('');
    const f = await this.#fetch(d);
    if (!f.ok) {
      this.#o.onFailure?.(d, f.failure, f.detail);
      return keep(`MTA-STS policy of ${d} not usable: ${f.detail}`);
    }
    const fetchedAt = this.#now();
    const entry: Cached = { id: rec.id, policy: f.policy, fetchedAt, expiresAt: fetchedAt + f.policy.maxAgeS * 1000, checkedAt: fetchedAt };
    this.#cache.delete(d);
    this.#cache.set(d, entry);
    if (this.#cache.size > (this.#o.maxEntries ?? 10_000)) this.#cache.delete(this.#cache.keys().next().value!);
    this.#negative.delete(d);
    this.#save();
    return { kind: 'policy', id: entry.id, policy: entry.policy, expiresAt: entry.expiresAt };
  }

  async #fetch(d: string): Promise<FetchResult> {
    const origin = this.#o.origin?.(d) ?? `https://mta-sts.${d}`;
    const timeoutMs = this.#o.fetchTimeoutMs ?? 15_000;
    const signal = AbortSignal.timeout(timeoutMs);
    let res: Awaited<ReturnType<typeof request>>;
    try {
      // undici's request() follows no redirect: a 3xx is just a status that is not 200 (§3.3).
      res = await request(`${origin}${WELL_KNOWN}`, { method: 'GET', dispatcher: this.#agent, signal, headers: { accept: 'text/plain' } });
    } catch (err) {
      const e = err as { code?: string; message: string };
      const tlsCodes = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT_ALTNAME|UNABLE_TO_GET_ISSUER/;
      if (e.code && tlsCodes.test(e.code)) return { ok: false, failure: 'sts-webpki-invalid', detail: `${origin}: ${e.code}` };
      return { ok: false, failure: 'sts-policy-fetch-error', detail: `${origin}: ${e.code ? `${e.code} ` : ''}${e.message}`.slice(0, 200) };
    }
    const body = res.body;
    try {
      if (res.statusCode !== 200) return { ok: false, failure: 'sts-policy-fetch-error', detail: `${origin}${WELL_KNOWN} answered HTTP ${res.statusCode}` };
      const type = String(res.headers['content-type'] ?? '').toLowerCase();
      if (!/^text\/plain\s*(;|$)/.test(type)) return { ok: false, failure: 'sts-policy-invalid', detail: `content-type ${JSON.stringify(type.slice(0, 60))} is not text/plain` };
      const len = Number(res.headers['content-length'] ?? 0);
      if (len > MAX_STS_POLICY_BYTES) return { ok: false, failure: 'sts-policy-invalid', detail: `policy of ${len} bytes is over 64 KiB` };
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        n += chunk.length;
        if (n > MAX_STS_POLICY_BYTES) return { ok: false, failure: 'sts-policy-invalid', detail: 'policy over 64 KiB' };
        chunks.push(chunk);
      }
      const text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
      const p = parseStsPolicy(text);
      if (!p.ok) return { ok: false, failure: 'sts-policy-invalid', detail: p.reason };
      return { ok: true, policy: p.policy };
    } catch (err) {
      const e = err as { code?: string; message: string };
      if (e.code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') return { ok: false, failure: 'sts-policy-invalid', detail: 'policy over 64 KiB' };
      if (err instanceof TypeError) return { ok: false, failure: 'sts-policy-invalid', detail: 'policy is not UTF-8' };
      return { ok: false, failure: 'sts-policy-fetch-error', detail: `${origin}: ${e.code ?? e.message}` };
    } finally {
      // Destroying an unread body makes undici emit an abort error: it is expected here.
      body.on('error', () => {});
      body.destroy();
    }
  }

  #load(file: string): void {
    let text: string;
    try {
      const buf = readFileSync(file);
      if (buf.length > MAX_CACHE_FILE_BYTES) return;
      text = buf.toString('utf8');
    } catch {
      return; // none yet
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      return; // a torn or foreign file is an empty cache: policies are fetched again
    }
    if (!Array.isArray(data)) return;
    const now = this.#now();
    for (const e of data as StoredEntry[]) {
      if (typeof e?.d !== 'string' || typeof e.id !== 'string' || !Array.isArray(e.lines) || !Number.isFinite(e.expiresAt) || !Number.isFinite(e.fetchedAt)) continue;
      if (e.expiresAt <= now || e.lines.some((l) => typeof l !== 'string')) continue;
      // Parsed again: the file is ours, but a policy is only ever used in its checked form.
      const p = parseStsPolicy(e.lines.join('\n'));
      if (!p.ok) continue;
      const expiresAt = Math.min(e.expiresAt, e.fetchedAt + p.policy.maxAgeS * 1000);
      // checkedAt 0: the TXT id is compared again at the first use after a restart.
      this.#cache.set(normalizeDomain(e.d), { id: e.id, policy: p.policy, fetchedAt: e.fetchedAt, expiresAt, checkedAt: 0 });
    }
  }

  /** Write the whole cache (temp file, then rename) behind the change; one write at a time. */
  #save(): void {
    const file = this.#o.cacheFile;
    if (!file || this.#closed) return;
    if (this.#writing) {
      this.#dirty = true;
      return;
    }
    this.#writing = true;
    setImmediate(() => {
      try {
        do {
          this.#dirty = false;
          const out: StoredEntry[] = [];
          for (const [d, c] of this.#cache) out.push({ d, id: c.id, lines: c.policy.lines, fetchedAt: c.fetchedAt, expiresAt: c.expiresAt });
          mkdirSync(dirname(file), { recursive: true });
          const tmp = `${file}.tmp`;
          writeFileSync(tmp, JSON.stringify(out));
          renameSync(tmp, file);
        } while (this.#dirty);
      } catch {
        // A cache that cannot be written costs a fetch after a restart, nothing else.
      } finally {
        this.#writing = false;
      }
    });
  }

  /** Resolves once the pending cache write (if any) is done (tests). */
  async flushed(): Promise<void> {
    while (this.#writing) await new Promise((r) => setTimeout(r, 5));
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`timed out after ${ms} ms`), { code: 'ETIMEOUT' })), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
