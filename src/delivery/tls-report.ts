// SMTP TLS reporting (RFC 8460): a TlsOutcomeSink that counts every outbound TLS attempt per
// policy domain per UTC day (successes, failures by result type, up to MAX_DETAILS failure
// details per policy), keeps the counts in a file under the data folder (written behind,
// asynchronously and only when changed, at most every WRITE_BEHIND_MS, so a restart keeps the
// day), and once a day after 00:00 UTC
// (plus a random delay, §4.4 asks reporters to spread) sends each domain's report of the
// previous day(s) to the rua of its `_smtp._tls` TXT record (§3): gzip'd JSON (§4), mailto:
// as a multipart/report message enqueued in the node's own queue (§5.3), https: as a POST
// through undici (§5.4), time and size bounded, redirects refused (undici's request follows
// none: a 3xx is a failure), the address checked.
//
//   days: Map<"YYYY-MM-DD", Map<policy domain, DomainDay>>
//   DomainDay.policies: Map<policy key (type + strings), PolicyDay>
//   PolicyDay: { policy, success, failures by result-type, details: Map<detail key, count> }
//
// Bounds: at most maxDomainsPerDay domains and about MAX_DAY_BYTES a day (past them an outcome
// for a new domain or policy is counted in `dropped` and lost: what is already in keeps being
// counted), MAX_POLICIES policies a domain, MAX_POLICY_CHARS of policy strings and as many of
// MX names a policy, MAX_DETAILS details a policy (past it only the counts grow).
// A run sends SEND_CONCURRENCY domains at a time within runLimitMs; what it leaves is tried in
// the next run, and a day still unsent after the run that follows its own is dropped (logged):
// endpoints that stall cannot hold the reports of other domains, nor let days pile up.
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'undici';
import type { TlsOutcome, TlsOutcomeSink, TlsPolicyType } from './tls-outcome.js';
import { AddressPolicy, policyLookup } from './address-policy.js';
import { isDomainName, normalizeDomain } from '../lib/domain-name.js';

const MAX_POLICIES = 8;
const MAX_DETAILS = 20;
const MAX_STRINGS = 64;
const MAX_STRING = 512;
/** Policy strings (and, apart, MX names) kept a policy: an MTA-STS policy's known lines fit well within. */
const MAX_POLICY_CHARS = 4096;
/** About this much kept a day (strings, names, detail keys): 10,000 domains of 8 full policies would be 1 GiB. */
const MAX_DAY_BYTES = 8 * 1024 * 1024;
const WRITE_BEHIND_MS = 5000;
/** Domains sent at once in a run. */
const SEND_CONCURRENCY = 8;
/** A run stops starting sends (and cuts those in flight) after this. */
const RUN_LIMIT_MS = 3600_000;
/** A TXT answer longer than this, or more records than MAX_TXT_RECORDS, is not read. */
const MAX_TXT_BYTES = 4096;
const MAX_TXT_RECORDS = 16;
/** rua URIs used per domain (§3: a list; a hostile one may be long). */
const MAX_RUA = 4;
const HTTPS_TIMEOUT_MS = 30_000;
const MAX_RESPONSE_BYTES = 16 * 1024;
/** The random delay after 00:00 UTC before the day's reports go (§4.4: spread the load). */
const MAX_SEND_DELAY_MS = 4 * 3600_000;
const DAY_MS = 86_400_000;

interface PolicyDay {
  policy: { type: TlsPolicyType; strings?: string[]; mxHosts?: string[] };
  success: number;
  failures: Record<string, number>;
  /** "result-type|mx|ip" → count. */
  details: Record<string, number>;
}
type DomainDay = Record<string, PolicyDay>;
type Days = Record<string, Record<string, DomainDay>>;

export interface TxtResolver {
  resolveTxt(name: string): Promise<string[][]>;
}

export interface TlsReporterOptions {
  /** Where the counts are kept (the node's data folder). */
  dataDir: string;
  organization: string;
  contact: string;
  /** The node's name: report-id suffix, Message-ID, From domain. */
  hostname: string;
  resolver: TxtResolver;
  /** Puts a mailto: report in the node's queue. */
  enqueue(sender: string, recipient: string, body: Buffer): Promise<string>;
  /** Who https: rua may be reached at (default: public addresses only). */
  addressPolicy?: AddressPolicy;
  /** Extra CAs for https: rua (tests). */
  ca?: readonly string[];
  maxDomainsPerDay?: number;
  /** A run's whole time (default 1 h). */
  runLimitMs?: number;
  /** One https: rua's whole exchange (default 30 s). */
  httpsTimeoutMs?: number;
  now?: () => number;
  random?: () => number;
  onError?: (what: string, err: unknown) => void;
  onSent?: (domain: string, rua: string) => void;
}

export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export class TlsReporter implements TlsOutcomeSink {
  readonly #o: TlsReporterOptions;
  readonly #file: string;
  #days: Days = {};
  /** The estimated size kept of each day (MAX_DAY_BYTES). */
  readonly #dayBytes = new Map<string, number>();
  #dirty = false;
  #writeTimer: NodeJS.Timeout | null = null;
  #writing: Promise<void> = Promise.resolve();
  #run: Promise<void> | null = null;
  #runAbort: AbortController | null = null;
  #closed = false;
  #sendTimer: NodeJS.Timeout | null = null;
  #dropped = 0;
  readonly #droppedDays = new Set<string>();
  readonly #maxDomains: number;
  readonly #now: () => number;

  constructor(o: TlsReporterOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#maxDomains = o.maxDomainsPerDay ?? 10_000;
    this.#file = join(o.dataDir, 'tlsrpt.json');
    try {
      const parsed = JSON.parse(readFileSync(this.#file, 'utf8')) as { days?: Days };
      if (parsed && typeof parsed.days === 'object' && parsed.days !== null) this.#days = parsed.days;
      for (const [day, d] of Object.entries(this.#days)) this.#dayBytes.set(day, JSON.stringify(d).length);
    } catch {
      /* none yet, or unreadable: start empty */
    }
  }

  /** Outcomes for new domains or policies refused because the day was full. */
  get dropped(): number {
    return this.#dropped;
  }

  record(o: TlsOutcome): void {
    const domain = normalizeDomain(o.policyDomain);
    if (!isDomainName(domain)) return;
    const day = utcDay(o.at);
    const d = (this.#days[day] ??= {});
    let bytes = this.#dayBytes.get(day) ?? 0;
    let dd = d[domain];
    if (!dd) {
      if (Object.keys(d).length >= this.#maxDomains || bytes >= MAX_DAY_BYTES) {
        this.#drop(day);
        return;
      }
      dd = d[domain] = {};
      bytes += domain.length + 8;
    }
    const strings = o.policy.strings && bounded(o.policy.strings);
    const mxHosts = o.policy.mxHosts && bounded(o.policy.mxHosts);
    const key = `${o.policy.type}|${(strings ?? []).join('\n')}`;
    let p = dd[key];
    if (!p) {
      if (Object.keys(dd).length >= MAX_POLICIES) return;
      if (bytes >= MAX_DAY_BYTES) {
        this.#drop(day);
        return;
      }
      p = dd[key] = { policy: { type: o.policy.type, ...(strings ? { strings } : {}), ...(mxHosts ? { mxHosts } : {}) }, success: 0, failures: {}, details: {} };
      // The key holds the strings again (the file has both).
      bytes += 2 * key.length + (mxHosts ?? []).reduce((n, h) => n + h.length + 3, 0) + 100;
    }
    if (o.result === 'success') p.success++;
    else {
      const t = o.result.failure;
      p.failures[t] = (p.failures[t] ?? 0) + 1;
      const dk = `${t}|${o.mxHost.slice(0, 255)}|${o.receivingIp ?? ''}`;
      if (dk in p.details) p.details[dk]!++;
      else if (Object.keys(p.details).length < MAX_DETAILS && bytes < MAX_DAY_BYTES) {
        p.details[dk] = 1;
        bytes += dk.length + 12;
      }
    }
    this.#dayBytes.set(day, bytes);
    this.#touch();
  }

  #drop(day: string): void {
    // Told once a day: the first refused outcome of a day (the count is in `dropped`).
    if (!this.#droppedDays.has(day)) {
      this.#droppedDays.add(day);
      this.#o.onError?.(`counts of ${day}`, new Error('the day is full: outcomes for new domains are not counted'));
    }
    this.#dropped++;
  }

  /** The RFC 8460 §4 report of one domain's day, or null when there is nothing for it. */
  report(day: string, domain: string): Record<string, unknown> | null {
    const dd = this.#days[day]?.[domain];
    if (!dd) return null;
    const start = `${day}T00:00:00Z`;
    const end = new Date(Date.parse(start) + DAY_MS).toISOString().replace('.000Z', 'Z');
    return {
      'organization-name': this.#o.organization,
      'date-range': { 'start-datetime': start, 'end-datetime': end },
      'contact-info': this.#o.contact,
      'report-id': `${start}_${domain}@${this.#o.hostname}`,
      policies: Object.values(dd).map((p) => ({
        policy: { 'policy-type': p.policy.type, ...(p.policy.strings ? { 'policy-string': p.policy.strings } : {}), 'policy-domain': domain, ...(p.policy.mxHosts ? { 'mx-host': p.policy.mxHosts } : {}) },
        summary: { 'total-successful-session-count': p.success, 'total-failure-session-count': Object.values(p.failures).reduce((a, b) => a + b, 0) },
        ...(Object.keys(p.details).length > 0
          ? {
              'failure-details': Object.entries(p.details).map(([k, n]) => {
                const [type, mx, ip] = k.split('|');
                return { 'result-type': type, 'receiving-mx-hostname': mx, ...(ip ? { 'receiving-ip': ip } : {}), 'failed-session-count': n };
              }),
            }
          : {}),
      })),
    };
  }

  /**
   * Send every finished day's reports (the days before today, UTC), yesterday's first,
   * SEND_CONCURRENCY domains at a time, within runLimitMs. A domain is forgotten once tried
   * (a failed send is not retried); those not reached wait for the next run, but a day before
   * yesterday is dropped at the end of the run: it had its own run and this one.
   */
  sendDue(): Promise<void> {
    this.#run ??= this.#sendRun().finally(() => {
      this.#run = null;
    });
    return this.#run;
  }

  async #sendRun(): Promise<void> {
    const now = this.#now();
    const today = utcDay(now);
    const yesterday = utcDay(now - DAY_MS);
    const work: Array<[string, string]> = [];
    for (const day of Object.keys(this.#days).sort().reverse()) {
      if (day >= today) continue;
      for (const domain of Object.keys(this.#days[day] ?? {})) work.push([day, domain]);
    }
    const abort = new AbortController();
    this.#runAbort = abort;
    const limitMs = this.#o.runLimitMs ?? RUN_LIMIT_MS;
    const timer = setTimeout(() => abort.abort(new Error(`the run's ${limitMs} ms are over`)), limitMs).unref();
    const aborted = new Promise<void>((resolve) => abort.signal.addEventListener('abort', () => resolve(), { once: true }));
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < work.length && !abort.signal.aborted) {
        const [day, domain] = work[next++]!;
        const report = this.report(day, domain);
        // Tried once: forgotten before the send, so a run cut in the middle does not send it twice.
        this.#forget(day, domain);
        if (!report) continue;
        try {
          await Promise.race([this.#sendOne(day, domain, report, abort.signal), aborted]);
          if (abort.signal.aborted) this.#o.onError?.(`report for ${domain} of ${day}`, new Error(`cut: the run's ${limitMs} ms are over`));
        } catch (err) {
          this.#o.onError?.(`report for ${domain} of ${day}`, err);
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(SEND_CONCURRENCY, work.length) }, worker));
    } finally {
      clearTimeout(timer);
      abort.abort();
      this.#runAbort = null;
    }
    for (const day of Object.keys(this.#days)) {
      if (day >= yesterday) continue;
      const left = Object.keys(this.#days[day] ?? {}).length;
      if (left > 0) this.#o.onError?.(`reports of ${day}`, new Error(`${left} domain(s) not sent by the run after the day's own: dropped`));
      delete this.#days[day];
      this.#dayBytes.delete(day);
      this.#droppedDays.delete(day);
      this.#touch();
    }
    await this.flush();
  }

  #forget(day: string, domain: string): void {
    const d = this.#days[day];
    if (!d) return;
    delete d[domain];
    if (Object.keys(d).length === 0) {
      delete this.#days[day];
      this.#dayBytes.delete(day);
      this.#droppedDays.delete(day);
    }
    this.#touch();
  }

  /** Send at the next 00:00 UTC plus a random delay, every day, until close(). */
  start(): void {
    const now = this.#now();
    const next = Math.floor(now / DAY_MS) * DAY_MS + DAY_MS + Math.floor((this.#o.random ?? Math.random)() * MAX_SEND_DELAY_MS);
    this.#sendTimer = setTimeout(() => {
      void this.sendDue().finally(() => {
        if (this.#sendTimer !== null) this.start();
      });
    }, next - now).unref();
  }

  /**
   * Write the counts now if they changed since the last write: the text is built here, the
   * I/O is asynchronous (temp file, then rename), one write at a time.
   */
  flush(): Promise<void> {
    if (this.#writeTimer) clearTimeout(this.#writeTimer);
    this.#writeTimer = null;
    if (!this.#dirty) return this.#writing;
    this.#dirty = false;
    const text = JSON.stringify({ days: this.#days });
    const tmp = `${this.#file}.tmp`;
    this.#writing = this.#writing.then(async () => {
      try {
        await mkdir(this.#o.dataDir, { recursive: true });
        await writeFile(tmp, text);
        await rename(tmp, this.#file);
      } catch (err) {
        this.#o.onError?.('writing the TLS report counts', err);
      }
    });
    return this.#writing;
  }

  /** Stops the daily sends (a run in progress is cut) and writes the counts. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#sendTimer) clearTimeout(this.#sendTimer);
    this.#sendTimer = null;
    this.#runAbort?.abort(new Error('closing'));
    await this.#run?.catch(() => {});
    await this.flush();
  }

  #touch(): void {
    this.#dirty = true;
    if (this.#closed) return;
    this.#writeTimer ??= setTimeout(() => void this.flush(), WRITE_BEHIND_MS).unref();
  }

  async #sendOne(day: string, domain: string, report: Record<string, unknown>, signal: AbortSignal): Promise<void> {
    const rua = await this.#rua(domain);
    if (rua.length === 0 || signal.aborted) return;
    const gz = gzipSync(JSON.stringify(report));
    for (const uri of rua) {
      if (signal.aborted) return;
      try {
        if (uri.startsWith('mailto:')) await this.#mail(uri, domain, day, report['report-id'] as string, gz);
        else await this.#post(uri, gz, signal);
        this.#o.onSent?.(domain, uri);
      } catch (err) {
        this.#o.onError?.(`report for ${domain} to ${uri}`, err);
      }
    }
  }

  /** §3: the one TXT record starting "v=TLSRPTv1" at _smtp._tls.<domain>; its rua URIs (mailto:, https:). */
  async #rua(domain: string): Promise<string[]> {
    let records: string[][];
    try {
      records = await this.#o.resolver.resolveTxt(`_smtp._tls.${domain}`);
    } catch {
      return [];
    }
    const texts = records.slice(0, MAX_TXT_RECORDS).map((r) => r.join('')).filter((t) => t.length <= MAX_TXT_BYTES && /^v=TLSRPTv1\s*(;|$)/.test(t));
    if (texts.length !== 1) return []; // none, or more than one: §3 says no report
    const rua = /(?:^|;)\s*rua\s*=\s*([^;]*)/.exec(texts[0]!)?.[1] ?? '';
    return rua
      .split(',')
      .map((u) => u.trim())
      .filter((u) => /^mailto:[^\s@,;]+@[^\s@,;]+$/i.test(u) || /^https:\/\/[^\s]+$/i.test(u))
      .slice(0, MAX_RUA);
  }

  async #mail(uri: string, domain: string, day: string, reportId: string, gz: Buffer): Promise<void> {
    const to = decodeURIComponent(uri.slice(7).split('?')[0]!);
    const at = to.lastIndexOf('@');
    if (at < 1 || !isDomainName(normalizeDomain(to.slice(at + 1))) || /[\s<>"\\]/.test(to)) throw new Error(`bad mailto address ${JSON.stringify(to.slice(0, 100))}`);
    const from = `tlsrpt-noreply@${this.#o.hostname}`;
    const boundary = `tlsrpt-${randomUUID()}`;
    const name = `${this.#o.hostname}!${domain}!${Date.parse(`${day}T00:00:00Z`) / 1000}!${Date.parse(`${day}T00:00:00Z`) / 1000 + 86400}.json.gz`;
    const b64 = gz.toString('base64').replace(/.{1,76}/g, '$&\r\n');
    const body = [
      `From: ${from}`,
      `To: ${to}`,
      `Subject: Report Domain: ${domain} Submitter: ${this.#o.organization.replace(/[\r\n]/g, ' ')} Report-ID: <${reportId}>`,
      `Date: ${new Date(this.#now()).toUTCString().replace('GMT', '+0000')}`,
      `Message-ID: <${randomUUID()}@${this.#o.hostname}>`,
      `TLS-Report-Domain: ${domain}`,
      `TLS-Report-Submitter: ${this.#o.organization.replace(/[\r\n]/g, ' ')}`,
      'MIME-Version: 1.0',
      `Content-Type: multipart/report; report-type="tlsrpt"; boundary="${boundary}"`,
      '',
      `--${boundary}`,
      'Content-Type: text/plain; charset=us-ascii',
      '',
      `This is an aggregate TLS report from ${this.#o.organization.replace(/[\r\n]/g, ' ')} for ${domain}, ${day} (RFC 8460).`,
      '',
      `--${boundary}`,
      'Content-Type: application/tlsrpt+gzip',
      'Content-Transfer-Encoding: base64',
      `Content-Disposition: attachment; filename="${name}"`,
      '',
      b64.trimEnd(),
      `--${boundary}--`,
      '',
    ].join('\r\n');
    await this.#o.enqueue(from, to, Buffer.from(body, 'utf8'));
  }

  /** §5.4: POST application/tlsrpt+gzip; 2xx is success. Bounded in time and size, no redirects, the address checked. */
  async #post(uri: string, gz: Buffer, runSignal: AbortSignal): Promise<void> {
    const url = new URL(uri);
    const policy = this.#o.addressPolicy ?? new AddressPolicy();
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) !== 0) {
      const v = policy.check(host);
      if (!v.ok) throw new Error(`refusing ${url.origin}: ${v.error.reason}`);
    }
    const timeoutMs = this.#o.httpsTimeoutMs ?? HTTPS_TIMEOUT_MS;
    const agent = new Agent({
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      connect: {
        timeout: timeoutMs,
        ...(this.#o.ca ? { ca: [...this.#o.ca] } : {}),
        // Every address a name resolves to passes the policy; the one connected to is one of them (no rebinding).
        lookup: policyLookup(policy),
      },
    });
    // The exchange's own limit or the run's end, whichever first (AbortSignal.any is newer than Node 20.0).
    const ac = new AbortController();
    const stop = (): void => ac.abort();
    const timer = setTimeout(stop, timeoutMs);
    runSignal.addEventListener('abort', stop, { once: true });
    try {
      const res = await request(url, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/tlsrpt+gzip' }, body: gz, signal: ac.signal });
      let seen = 0;
      for await (const chunk of res.body) {
        seen += (chunk as Buffer).length;
        if (seen > MAX_RESPONSE_BYTES) break;
      }
      if (seen > MAX_RESPONSE_BYTES) res.body.destroy();
      if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`${url.origin} answered ${res.statusCode}`);
    } finally {
      clearTimeout(timer);
      runSignal.removeEventListener('abort', stop);
      await agent.destroy().catch(() => {});
    }
  }
}

/** At most MAX_STRINGS strings of at most MAX_STRING characters, MAX_POLICY_CHARS in all (the rest cut). */
function bounded(list: readonly string[]): string[] {
  const out: string[] = [];
  let n = 0;
  for (const x of list.slice(0, MAX_STRINGS)) {
    if (n >= MAX_POLICY_CHARS) break;
    const s = String(x).slice(0, Math.min(MAX_STRING, MAX_POLICY_CHARS - n));
    out.push(s);
    n += s.length;
  }
  return out;
}
