// SMTP TLS reporting (RFC 8460): a TlsOutcomeSink that counts every outbound TLS attempt per
// policy domain per UTC day (successes, failures by result type, up to MAX_DETAILS failure
// details per policy), keeps the counts in a file under the data folder (written behind, at
// most every WRITE_BEHIND_MS, so a restart keeps the day), and once a day after 00:00 UTC
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
// Bounds: at most maxDomainsPerDay domains a day (past it an outcome for a new domain is
// counted in `dropped` and lost: the domains already in keep being counted), MAX_POLICIES
// policies a domain, MAX_DETAILS details a policy (past it only the counts grow).
import { gzipSync } from 'node:zlib';
import { readFileSync, writeFileSync, renameSync, mkdirSync } from 'node:fs';
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
const WRITE_BEHIND_MS = 5000;
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
  #dirty = false;
  #writeTimer: NodeJS.Timeout | null = null;
  #sendTimer: NodeJS.Timeout | null = null;
  #dropped = 0;
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
    } catch {
      /* none yet, or unreadable: start empty */
    }
  }

  /** Outcomes for new domains refused today because the day was full. */
  get dropped(): number {
    return this.#dropped;
  }

  record(o: TlsOutcome): void {
    const domain = normalizeDomain(o.policyDomain);
    if (!isDomainName(domain)) return;
    const day = utcDay(o.at);
    const d = (this.#days[day] ??= {});
    let dd = d[domain];
    if (!dd) {
      if (Object.keys(d).length >= this.#maxDomains) {
        this.#dropped++;
        return;
      }
      dd = d[domain] = {};
    }
    const strings = o.policy.strings?.slice(0, MAX_STRINGS).map((s) => s.slice(0, MAX_STRING));
    const mxHosts = o.policy.mxHosts?.slice(0, MAX_STRINGS).map((s) => s.slice(0, MAX_STRING));
    const key = `${o.policy.type}|${(strings ?? []).join('\n')}`;
    let p = dd[key];
    if (!p) {
      if (Object.keys(dd).length >= MAX_POLICIES) return;
      p = dd[key] = { policy: { type: o.policy.type, ...(strings ? { strings } : {}), ...(mxHosts ? { mxHosts } : {}) }, success: 0, failures: {}, details: {} };
    }
    if (o.result === 'success') p.success++;
    else {
      const t = o.result.failure;
      p.failures[t] = (p.failures[t] ?? 0) + 1;
      const dk = `${t}|${o.mxHost.slice(0, 255)}|${o.receivingIp ?? ''}`;
      if (dk in p.details || Object.keys(p.details).length < MAX_DETAILS) p.details[dk] = (p.details[dk] ?? 0) + 1;
    }
    this.#touch();
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

  /** Send every finished day's reports (the days before today, UTC), then forget them. */
  async sendDue(): Promise<void> {
    const today = utcDay(this.#now());
    for (const day of Object.keys(this.#days).sort()) {
      if (day >= today) continue;
      for (const domain of Object.keys(this.#days[day] ?? {})) {
        try {
          await this.#sendOne(day, domain);
        } catch (err) {
          this.#o.onError?.(`report for ${domain} of ${day}`, err);
        }
      }
      delete this.#days[day];
      this.#touch();
    }
    this.flush();
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

  /** Write the counts now (the write-behind's last write). */
  flush(): void {
    if (this.#writeTimer) clearTimeout(this.#writeTimer);
    this.#writeTimer = null;
    if (!this.#dirty) return;
    this.#dirty = false;
    try {
      mkdirSync(this.#o.dataDir, { recursive: true });
      const tmp = `${this.#file}.tmp`;
      writeFileSync(tmp, JSON.stringify({ days: this.#days }));
      renameSync(tmp, this.#file);
    } catch (err) {
      this.#o.onError?.('writing the TLS report counts', err);
    }
  }

  close(): void {
    if (this.#sendTimer) clearTimeout(this.#sendTimer);
    this.#sendTimer = null;
    this.flush();
  }

  #touch(): void {
    this.#dirty = true;
    this.#writeTimer ??= setTimeout(() => this.flush(), WRITE_BEHIND_MS).unref();
  }

  async #sendOne(day: string, domain: string): Promise<void> {
    const report = this.report(day, domain);
    if (!report) return;
    const rua = await this.#rua(domain);
    if (rua.length === 0) return;
    const gz = gzipSync(JSON.stringify(report));
    for (const uri of rua) {
      try {
        if (uri.startsWith('mailto:')) await this.#mail(uri, domain, day, report['report-id'] as string, gz);
        else await this.#post(uri, gz);
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
  async #post(uri: string, gz: Buffer): Promise<void> {
    const url = new URL(uri);
    const policy = this.#o.addressPolicy ?? new AddressPolicy();
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) !== 0) {
      const v = policy.check(host);
      if (!v.ok) throw new Error(`refusing ${url.origin}: ${v.error.reason}`);
    }
    const agent = new Agent({
      headersTimeout: HTTPS_TIMEOUT_MS,
      bodyTimeout: HTTPS_TIMEOUT_MS,
      connect: {
        timeout: HTTPS_TIMEOUT_MS,
        ...(this.#o.ca ? { ca: [...this.#o.ca] } : {}),
        // Every address a name resolves to passes the policy; the one connected to is one of them (no rebinding).
        lookup: policyLookup(policy),
      },
    });
    const timer = AbortSignal.timeout(HTTPS_TIMEOUT_MS);
    try {
      const res = await request(url, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/tlsrpt+gzip' }, body: gz, signal: timer });
      let seen = 0;
      for await (const chunk of res.body) {
        seen += (chunk as Buffer).length;
        if (seen > MAX_RESPONSE_BYTES) break;
      }
      if (seen > MAX_RESPONSE_BYTES) res.body.destroy();
      if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`${url.origin} answered ${res.statusCode}`);
    } finally {
      await agent.close().catch(() => {});
    }
  }
}
