// DNS for the authres filter, in the function shape mailauth wants: (name, rrtype) => records,
// throwing errors that carry node's DNS codes (ENOTFOUND/ENODATA = no such record, anything
// else = a temporary error, reported as temperror). The production resolver is node's c-ares
// Resolver with a per-query timeout; every message also gets a deadline wrapper, so a slow
// server turns into temperror before the filter pool's own timeout would tempfail the message.
import { promises as dns } from 'node:dns';

export type DnsResolver = (name: string, rrtype: string) => Promise<unknown>;

/** An Error shaped like node's DNS errors (what mailauth switches on). */
export function dnsError(code: string, name: string, rrtype: string): Error & { code: string; hostname: string } {
  const syscall = `query${rrtype.charAt(0).toUpperCase()}${rrtype.slice(1).toLowerCase()}`;
  return Object.assign(new Error(`${syscall} ${code} ${name}`), { code, hostname: name, syscall });
}

export interface SystemResolverOptions {
  /** Per-attempt timeout in ms (c-ares; later attempts back off). */
  timeoutMs: number;
  tries?: number;
  /** DNS servers ("1.2.3.4", "[::1]:53"); default: the system's (/etc/resolv.conf). */
  servers?: string[];
}

/** node:dns (c-ares) in mailauth's shape. */
export function createSystemResolver(o: SystemResolverOptions): DnsResolver {
  const r = new dns.Resolver({ timeout: Math.max(1, Math.round(o.timeoutMs)), tries: o.tries ?? 2 });
  if (o.servers && o.servers.length > 0) r.setServers(o.servers);
  return (name, rrtype) => r.resolve(name, rrtype as 'TXT') as Promise<unknown>;
}

/**
 * `inner` bounded by an absolute deadline (performance.now() ms): a query still pending at
 * the deadline, or started after it, fails with ETIMEOUT. Also turns non-Error throws and
 * synchronous throws into rejections with a code, so mailauth never sees something odd.
 */
export function withDeadline(inner: DnsResolver, deadline: number): DnsResolver {
  return (name, rrtype) => {
    const left = deadline - performance.now();
    if (left <= 0) return Promise.reject(dnsError('ETIMEOUT', name, rrtype));
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => reject(dnsError('ETIMEOUT', name, rrtype)), left);
      let p: Promise<unknown>;
      try {
        p = Promise.resolve(inner(name, rrtype));
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : dnsError('ESERVFAIL', name, rrtype));
        },
      );
    });
  };
}

/**
 * A resolver over a fixed map, for tests and tools: keys are "TYPE name" (e.g.
 * "TXT _dmarc.example.com"), values are the records as node returns them (TXT: string[][]).
 * A missing key is ENOTFOUND; a value that is an Error is thrown.
 */
export function createMapResolver(records: Record<string, unknown>): DnsResolver {
  const table = new Map(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v] as const));
  return async (name, rrtype) => {
    const v = table.get(`${rrtype} ${name}`.toLowerCase().replace(/\.$/, ''));
    if (v === undefined) throw dnsError('ENOTFOUND', name, rrtype);
    if (v instanceof Error) throw v;
    return v;
  };
}
