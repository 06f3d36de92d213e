// Which authenticated-TLS policy applies to an MX delivery, and what it does to the
// destination: with DANE on and a DNSSEC-validated MX answer, the hosts are that answer's
// (node's resolver, which gave the destination's, is not validated: a host only it names is
// dropped, one only the validated answer names is added); DANE (RFC 7672) when those hosts have
// validated TLSA records (and then no MTA-STS: RFC 8461 §2), else MTA-STS (RFC 8461 §5):
// `enforce` keeps only the MX hosts the policy names (none left: 451 4.7.0) and requires
// STARTTLS with a certificate verified for the MX host name; `testing` delivers as before and
// reports. Routes, the smarthost and address literals are the operator's choice: no policy of
// the recipient domain applies to them.
// RFC 8689: a REQUIRETLS message ('yes') needs an authenticated path (DANE, or MTA-STS, whose
// `testing` then counts as `enforce`), else it is returned with 5.7.30; "TLS-Required: No"
// ('no') turns a policy's failures into reports only (§4.3), STARTTLS still tried.
import { mxMatches } from './mta-sts-policy.js';
import type { MtaSts } from './mta-sts.js';
import { siteKey, type DestinationResult, type MxExchange, type MxResult } from './mx.js';
import { replyRecord, type Destination, type HostPort, type TlsAuth } from './types.js';
import type { DaneLookup } from './dane.js';
import { toAsciiDomain } from '../lib/domain-name.js';

export interface TlsPolicies {
  sts: MtaSts | null;
  dane: DaneLookup | null;
  /**
   * The addresses of validated MX hosts that node's resolver did not name (MxResolver, with
   * the address policy). Without it such hosts are left out.
   */
  mx?: { resolveExchanges(domain: string, exchanges: readonly MxExchange[]): Promise<MxResult> } | null;
}

type SmtpDest = Extract<Destination, { kind: 'smtp' }>;

export async function applyTlsPolicy(recipientDomain: string, dest: SmtpDest, p: TlsPolicies, tlsRequired?: 'yes' | 'no'): Promise<DestinationResult> {
  if (!dest.viaMx) return requireTlsRoute(recipientDomain, dest, tlsRequired);
  const relax = tlsRequired === 'no';
  const needed = tlsRequired === 'yes';
  // Policies are published, looked up, cached and reported under the domain's A-labels: an
  // SMTPUTF8 recipient's domain may come in U-labels (münchen.example), which the DNS wire
  // client, the MTA-STS host name and the TLS report's policy-domain all need as xn--.
  const domain = toAsciiDomain(recipientDomain);
  if (domain === null) {
    if (needed) return noPath(recipientDomain, `${recipientDomain} is not a DNS name: no DANE or MTA-STS policy can authenticate its MX hosts`);
    return dest;
  }
  if (p.dane) {
    const r = await p.dane.lookup(domain);
    if (r.kind === 'defer') return { kind: 'defer', key: `defer:${domain}`, reply: replyRecord(451, r.enhanced, r.reason, undefined, domain) };
    if (r.mx) {
      const v = await validatedHosts(domain, dest, r.mx, p.mx ?? null);
      if (v.kind === 'defer') return v;
      dest = v;
    }
    if (r.kind === 'dane') {
      const auth: TlsAuth = { policyDomain: domain, type: 'tlsa', enforce: !relax, tlsa: r.tlsa };
      // Hosts with TLSA records are required to match them (the transport sets 'required' per
      // host); the others of the set stay opportunistic (RFC 7672 §2.2), except for a REQUIRETLS
      // message, which only the authenticated hosts may carry.
      const hosts = needed ? dest.hosts.filter((h) => (r.tlsa[h.host]?.length ?? 0) > 0) : dest.hosts;
      if (hosts.length === 0) return { kind: 'defer', key: `defer:${domain}`, reply: replyRecord(451, '4.4.3', `REQUIRETLS: no MX host of ${domain} with TLSA records has a usable address; not sent`, undefined, domain) };
      return { ...dest, hosts, key: siteKey('smtp', hosts, dest.tlsPolicy, { auth: dest.auth, tlsAuth: auth }), tlsAuth: auth };
    }
  }
  const none: TlsAuth = { policyDomain: domain, type: 'no-policy-found', enforce: false };
  const s = p.sts ? await p.sts.policyFor(domain) : null;
  if (s === null || s.kind === 'none' || s.policy.mode === 'none') {
    if (needed) return noPath(domain, `${domain} has no DANE or MTA-STS policy to authenticate its MX hosts`);
    return { ...dest, tlsAuth: none };
  }
  const pol = s.policy;
  if ((pol.mode === 'testing' && !needed) || relax) {
    const auth: TlsAuth = { policyDomain: domain, type: 'sts', enforce: false, strings: pol.lines, mxHosts: pol.mx };
    // The pool key: "TLS-Required: No" mail must not ride a connection held to the enforcing rules, nor the reverse.
    return { ...dest, key: siteKey('smtp', dest.hosts, dest.tlsPolicy, { auth: dest.auth, tlsAuth: auth }), tlsAuth: auth };
  }
  const hosts = dest.hosts.filter((h) => mxMatches(h.host, pol.mx));
  if (hosts.length === 0) {
    const names = [...new Set(dest.hosts.map((h) => h.host))].slice(0, 4).join(', ');
    return { kind: 'defer', key: `defer:${domain}`, reply: replyRecord(451, '4.7.0', `no MX host of ${domain} (${names}) matches its MTA-STS policy (mx: ${pol.mx.slice(0, 4).join(', ')}); not sent`, undefined, domain) };
  }
  const auth: TlsAuth = { policyDomain: domain, type: 'sts', enforce: true, strings: pol.lines, mxHosts: pol.mx };
  // 'required': STARTTLS or nothing; the certificate is checked for each MX host name.
  const rest = { ...dest };
  delete rest.domain;
  return { ...rest, hosts, tlsPolicy: 'required', key: siteKey('smtp', hosts, 'required', { auth: rest.auth, tlsAuth: auth }), tlsAuth: auth };
}

/**
 * The destination with the hosts of the validated MX set, in its preference order: those node's
 * resolver also named keep their checked addresses, the others are looked up; a host only node's
 * resolver named is dropped. None left: deferred.
 */
async function validatedHosts(domain: string, dest: SmtpDest, mx: readonly MxExchange[], lookup: TlsPolicies['mx']): Promise<SmtpDest | Extract<DestinationResult, { kind: 'defer' }>> {
  const pref = new Map(mx.map((e) => [e.host, e.preference]));
  const kept = dest.hosts.filter((h) => pref.has(h.host));
  const named = new Set(kept.map((h) => h.host));
  const missing = mx.filter((e) => !named.has(e.host));
  let added: HostPort[] = [];
  let why = '';
  if (missing.length > 0 && lookup) {
    const r = await lookup.resolveExchanges(domain, missing);
    if (r.kind === 'hosts') added = r.hosts.filter((h) => pref.has(h.host));
    else why = r.kind === 'temp-error' || r.kind === 'no-hosts' ? `: ${r.reason}` : '';
  }
  // A stable sort: within one preference, the order the hosts came in (shuffled by MxResolver).
  const hosts = [...kept, ...added].sort((a, b) => pref.get(a.host)! - pref.get(b.host)!);
  if (hosts.length === 0) {
    const names = mx.slice(0, 4).map((e) => e.host).join(', ');
    return { kind: 'defer', key: `defer:${domain}`, reply: replyRecord(451, '4.4.3', `no host of the DNSSEC-validated MX set of ${domain} (${names}) has a usable address${why.slice(0, 300)}; not sent`, undefined, domain) };
  }
  return { ...dest, hosts, key: siteKey('smtp', hosts, dest.tlsPolicy, { auth: dest.auth }) };
}

function noPath(domain: string, why: string): DestinationResult {
  return { kind: 'bounce', key: `bounce:${domain}`, reply: replyRecord(550, '5.7.30', `REQUIRETLS: ${why}; not sent`, undefined, domain) };
}

/** A route, the smarthost or an address literal carries REQUIRETLS mail only with TLS required and verified. */
function requireTlsRoute(domain: string, dest: SmtpDest, tlsRequired: 'yes' | 'no' | undefined): DestinationResult {
  if (tlsRequired !== 'yes' || dest.tlsPolicy === 'required' || dest.tlsPolicy === 'implicit') return dest;
  return noPath(domain, `the route to ${domain} does not require TLS (tls=${dest.tlsPolicy})`);
}
