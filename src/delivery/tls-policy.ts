// Which authenticated-TLS policy applies to an MX delivery, and what it does to the
// destination: DANE (RFC 7672) when the MX hosts have DNSSEC-validated TLSA records (and then
// no MTA-STS: RFC 8461 §2), else MTA-STS (RFC 8461 §5): `enforce` keeps only the MX hosts the
// policy names (none left: 451 4.7.0) and requires STARTTLS with a certificate verified for the
// MX host name; `testing` delivers as before and reports. Routes, the smarthost and address
// literals are the operator's choice: no policy of the recipient domain applies to them.
// RFC 8689: a REQUIRETLS message ('yes') needs an authenticated path (DANE, or MTA-STS, whose
// `testing` then counts as `enforce`), else it is returned with 5.7.30; "TLS-Required: No"
// ('no') turns a policy's failures into reports only (§4.3), STARTTLS still tried.
import { mxMatches } from './mta-sts-policy.js';
import type { MtaSts } from './mta-sts.js';
import { siteKey, type DestinationResult } from './mx.js';
import { replyRecord, type Destination, type TlsAuth } from './types.js';
import type { DaneLookup } from './dane.js';

export interface TlsPolicies {
  sts: MtaSts | null;
  dane: DaneLookup | null;
}

type SmtpDest = Extract<Destination, { kind: 'smtp' }>;

export async function applyTlsPolicy(domain: string, dest: SmtpDest, p: TlsPolicies, tlsRequired?: 'yes' | 'no'): Promise<DestinationResult> {
  if (!dest.viaMx) return requireTlsRoute(domain, dest, tlsRequired);
  const relax = tlsRequired === 'no';
  const needed = tlsRequired === 'yes';
  if (p.dane) {
    const r = await p.dane.lookup(domain, dest.hosts);
    if (r.kind === 'defer') return { kind: 'defer', key: `defer:${domain}`, reply: replyRecord(451, '4.7.5', r.reason, undefined, domain) };
    if (r.kind === 'dane') {
      const auth: TlsAuth = { policyDomain: domain, type: 'tlsa', enforce: !relax, tlsa: r.tlsa };
      // Hosts with TLSA records are required to match them (the transport sets 'required' per
      // host); the others of the set stay opportunistic (RFC 7672 §2.2), except for a REQUIRETLS
      // message, which only the authenticated hosts may carry.
      const hosts = needed ? dest.hosts.filter((h) => (r.tlsa[h.host]?.length ?? 0) > 0) : dest.hosts;
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

function noPath(domain: string, why: string): DestinationResult {
  return { kind: 'bounce', key: `bounce:${domain}`, reply: replyRecord(550, '5.7.30', `REQUIRETLS: ${why}; not sent`, undefined, domain) };
}

/** A route, the smarthost or an address literal carries REQUIRETLS mail only with TLS required and verified. */
function requireTlsRoute(domain: string, dest: SmtpDest, tlsRequired: 'yes' | 'no' | undefined): DestinationResult {
  if (tlsRequired !== 'yes' || dest.tlsPolicy === 'required' || dest.tlsPolicy === 'implicit') return dest;
  return noPath(domain, `the route to ${domain} does not require TLS (tls=${dest.tlsPolicy})`);
}
