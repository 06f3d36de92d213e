// MTA-STS policy discovery (RFC 8461 §3, §5.1): the `_mta-sts` TXT record through the node's
// resolver, the policy from https://mta-sts.<domain>/.well-known/mta-sts.txt through undici
// (certificate verified, 64 KiB, a time bound, no redirects, text/plain, the address policy
// applied to the addresses it connects to), a cache per max_age kept in a file of the data
// dir, and the refresh: in the background when the TXT id changes or the policy nears its
// end. A failed refresh keeps the cached policy until it expires (§10.2: no downgrade).
//
// The cache file is JSON lines, one policy a line, the unexpired enforce and testing policies
// first; it is written behind (debounced, asynchronous, temp file then rename), never on the
// fetch path. A line that does not parse is skipped alone; a file past MAX_CACHE_FILE_BYTES
// is read up to that bound, so what is lost is the `none` tail, not the enforce policies.
//
// Eviction (what a sender of mail to many hostile domains can push out): a new policy may take
// the place of an expired entry or of a `none` one (oldest first), never of an unexpired
// enforce or testing policy. When every place holds one, the new policy is still used but kept
// only in a small memory-only overflow (OVERFLOW_ENTRIES, oldest out first), and fetched again
// once it is out of it. An attacker with many domains can so fill the cache and deny a new
// domain persistence across a restart (that domain is then as protected as with no cache:
// trust on first use), but cannot remove a policy already kept, which is what §10.2 rests on.
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { mkdir, writeFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Agent, request } from 'undici';
import { AddressPolicy, policyLookup } from './address-policy.js';
import { isDomainName, normalizeDomain } from '../lib/domain-name.js';
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
  /** Policies kept (default 10000); see the header for which one makes room for a new one. */
  maxEntries?: number;
  /** How long after a new policy the cache file is written (default 2 s): one write for a burst of fetches. */
  saveDelayMs?: number;
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

/** Persisted form, one JSON object a line; `lines` are the policy's known lines, parsed again at load. */
interface StoredEntry {
  d: string;
  id: string;
  lines: string[];
  fetchedAt: number;
  expiresAt: number;
}

/**
 * The most read at load: 10,000 policies of the largest size (3 + 64 lines of at most 257
 * characters, about 17 KiB with the JSON) would be 170 MiB, so a full file of the largest
 * policies is read in part; the enforce and testing ones come first in it.
 */
const MAX_CACHE_FILE_BYTES = 64 * 1024 * 1024;
/** New policies kept in memory only when the cache holds nothing that may make room for them. */
const OVERFLOW_ENTRIES = 1000;
const WELL_KNOWN = '/.well-known/mta-sts.txt';

export class MtaSts {
  readonly #o: MtaStsOptions;
  readonly #cache = new Map<string, Cached>();
  readonly #overflow = new Map<string, Cached>();
  readonly #negative = new Map<string, { reason: string; until: number }>();
  readonly #inflight = new Map<string, Promise<StsLookup>>();
  readonly #agent: Agent;
  readonly #now: () => number;
  #saveTimer: NodeJS.Timeout | null = null;
  #writing: Promise<void> | null = null;
  #dirty = false;
  #closed = false;
  #closing: Promise<void> | null = null;
  #writes = 0;

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
    const c = this.#cache.get(d) ?? this.#overflow.get(d);
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
    const d = normalizeDomain(domain);
    const c = this.#cache.get(d) ?? this.#overflow.get(d);
    return c ? { kind: 'policy', id: c.id, policy: c.policy, expiresAt: c.expiresAt } : null;
  }

  /** Cache file writes done so far (tests, metrics). */
  get cacheWrites(): number {
    return this.#writes;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#inflight.values()]);
      await this.#agent.close();
      // The last write: policies fetched since the previous one survive the restart.
      await this.flushed();
      this.#closed = true;
    })();
    return this.#closing;
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
    const c = this.#cache.get(d) ?? this.#overflow.get(d);
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
    this.#keep(d, entry);
    this.#negative.delete(d);
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

  /** Puts a new policy in the cache, making room as the header says, or in the overflow. */
  #keep(d: string, entry: Cached): void {
    const max = this.#o.maxEntries ?? 10_000;
    this.#overflow.delete(d);
    if (this.#cache.delete(d) || this.#cache.size < max || this.#makeRoom(entry.fetchedAt)) {
      this.#cache.set(d, entry);
      this.#save();
      return;
    }
    this.#overflow.set(d, entry);
    if (this.#overflow.size > OVERFLOW_ENTRIES) this.#overflow.delete(this.#overflow.keys().next().value!);
  }

  /** Drops the first expired entry, else the oldest `none` one; false when every entry is an unexpired enforce or testing policy. */
  #makeRoom(now: number): boolean {
    let none: string | undefined;
    for (const [d, c] of this.#cache) {
      if (c.expiresAt <= now) {
        this.#cache.delete(d);
        return true;
      }
      if (none === undefined && c.policy.mode === 'none') none = d;
    }
    if (none === undefined) return false;
    this.#cache.delete(none);
    return true;
  }

  #load(file: string): void {
    let text: string;
    try {
      const fd = openSync(file, 'r');
      try {
        // Read up to the bound: past it only whole lines before it count (the last one is cut).
        const size = Math.min(fstatSync(fd).size, MAX_CACHE_FILE_BYTES);
        const buf = Buffer.alloc(size);
        let n = 0;
        while (n < size) {
          const r = readSync(fd, buf, n, size - n, n);
          if (r === 0) break;
          n += r;
        }
        text = buf.toString('utf8', 0, n);
      } finally {
        closeSync(fd);
      }
    } catch {
      return; // none yet
    }
    const now = this.#now();
    const max = this.#o.maxEntries ?? 10_000;
    for (const e of storedEntries(text)) {
      if (this.#cache.size >= max) break;
      if (typeof e !== 'object' || e === null) continue;
      const { d, id, lines, fetchedAt, expiresAt } = e as Partial<StoredEntry>;
      if (typeof d !== 'string' || typeof id !== 'string' || !/^[A-Za-z0-9]{1,32}$/.test(id) || !Array.isArray(lines) || lines.length > 80) continue;
      if (typeof fetchedAt !== 'number' || typeof expiresAt !== 'number' || !Number.isFinite(expiresAt) || !Number.isFinite(fetchedAt) || expiresAt <= now) continue;
      if (lines.some((l) => typeof l !== 'string')) continue;
      const domain = normalizeDomain(d);
      if (!isDomainName(domain)) continue;
      // Parsed again: the file is ours, but a policy is only ever used in its checked form.
      const p = parseStsPolicy(lines.join('\n'));
      if (!p.ok) continue;
      const exp = Math.min(expiresAt, fetchedAt + p.policy.maxAgeS * 1000);
      if (exp <= now) continue;
      // checkedAt 0: the TXT id is compared again at the first use after a restart.
      this.#cache.set(domain, { id, policy: p.policy, fetchedAt, expiresAt: exp, checkedAt: 0 });
    }
  }

  /** A write is due: once, saveDelayMs after the first change, whatever the number of changes. */
  #save(): void {
    if (!this.#o.cacheFile || this.#closed) return;
    this.#dirty = true;
    this.#saveTimer ??= setTimeout(() => {
      this.#saveTimer = null;
      void this.#write();
    }, this.#o.saveDelayMs ?? 2000).unref();
  }

  /**
   * Writes the cache (temp file, then rename) when changed, one write at a time. The text is
   * built on this thread (a JSON line a policy: bounded, a few ms for a full cache), the I/O is not.
   */
  #write(): Promise<void> {
    const file = this.#o.cacheFile;
    if (!file) return Promise.resolve();
    if (this.#writing) return this.#writing.then(() => this.#write());
    if (!this.#dirty) return Promise.resolve();
    this.#dirty = false;
    const now = this.#now();
    const first: string[] = [];
    const rest: string[] = [];
    for (const [d, c] of this.#cache) {
      if (c.expiresAt <= now) continue;
      const line = JSON.stringify({ d, id: c.id, lines: c.policy.lines, fetchedAt: c.fetchedAt, expiresAt: c.expiresAt } satisfies StoredEntry);
      (c.policy.mode === 'none' ? rest : first).push(line);
    }
    const text = first.concat(rest).join('\n') + '\n';
    const tmp = `${file}.tmp`;
    this.#writing = (async () => {
      try {
        await mkdir(dirname(file), { recursive: true });
        await writeFile(tmp, text);
        await rename(tmp, file);
        this.#writes++;
      } catch {
        // A cache that cannot be written costs a fetch after a restart, nothing else.
      } finally {
        this.#writing = null;
      }
    })();
    return this.#writing;
  }

  /** Writes the pending change now (if any) and resolves once the file is written (close, tests). */
  async flushed(): Promise<void> {
    if (this.#saveTimer) clearTimeout(this.#saveTimer);
    this.#saveTimer = null;
    await this.#write();
  }
}

/** The entries of a cache file: JSON lines, each parsed alone; a file of the older form (one JSON array) is read whole. */
function storedEntries(text: string): unknown[] {
  if (text.startsWith('[')) {
    try {
      const data: unknown = JSON.parse(text);
      return Array.isArray(data) ? data : [];
    } catch {
      return [];
    }
  }
  const out: unknown[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // A torn or corrupt line: that policy is fetched again, the others stand.
    }
  }
  return out;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`timed out after ${ms} ms`), { code: 'ETIMEOUT' })), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
