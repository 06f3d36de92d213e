// Checks a finished TLS handshake against the policy of the destination: MTA-STS (RFC 8461
// §4.2: a chain to a trusted CA, unexpired, valid for the MX host name) or DANE (RFC 7672 §3.1
// and RFC 7671: DANE-EE(3) matches the leaf's certificate or key, name and dates unchecked;
// DANE-TA(2) matches a certificate of the presented chain the leaf chains up to, and the leaf
// is valid for the MX host name). The result is what TLS reporting (RFC 8460) calls it.
import { checkServerIdentity, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import { createHash, X509Certificate } from 'node:crypto';
import type { TlsFailureType } from './tls-outcome.js';
import type { TlsAuth, TlsaRecord } from './types.js';
import { mxMatches } from './mta-sts-policy.js';

export type PeerCheck = { ok: true } | { ok: false; failure: TlsFailureType; detail: string };

/** Chains longer than this are not walked (a real one has 2 to 4 certificates). */
const MAX_CHAIN = 10;

export function verifyPeer(sock: TLSSocket, host: string, auth: TlsAuth): PeerCheck {
  if (auth.type === 'tlsa') return verifyDane(sock, host, auth.tlsa?.[host] ?? []);
  // An MX host the policy does not name (only delivered to under 'testing').
  if (auth.mxHosts && !mxMatches(host, auth.mxHosts)) return { ok: false, failure: 'validation-failure', detail: `${host} is not an mx of the MTA-STS policy` };
  return verifyWebPki(sock, host);
}

/** RFC 8461 §4.2: the system's (or the configured) trust anchors, and the MX host name. */
export function verifyWebPki(sock: TLSSocket, host: string): PeerCheck {
  const err = sock.authorizationError as unknown as string | Error | null;
  const code = err === null || err === undefined ? null : typeof err === 'string' ? err : ((err as { code?: string }).code ?? err.message);
  if (code !== null) {
    if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return { ok: false, failure: 'certificate-expired', detail: `${host}: ${code}` };
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return { ok: false, failure: 'certificate-host-mismatch', detail: `${host}: the certificate is not valid for this name` };
    return { ok: false, failure: 'certificate-not-trusted', detail: `${host}: ${code}` };
  }
  const cert = sock.getPeerCertificate(true);
  if (!cert || !cert.raw) return { ok: false, failure: 'certificate-not-trusted', detail: `${host}: no certificate` };
  const bad = checkServerIdentity(host, cert);
  if (bad) return { ok: false, failure: 'certificate-host-mismatch', detail: `${host}: ${bad.message}`.slice(0, 200) };
  return { ok: true };
}

/** The presented chain, leaf first, as Node links it (bounded, no loops). */
function chainOf(sock: TLSSocket): DetailedPeerCertificate[] {
  const out: DetailedPeerCertificate[] = [];
  let c: DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
  while (c && c.raw && out.length < MAX_CHAIN) {
    out.push(c);
    const next: DetailedPeerCertificate | undefined = c.issuerCertificate;
    if (!next || next === c || next.fingerprint256 === c.fingerprint256) break;
    c = next;
  }
  return out;
}

function matches(rec: TlsaRecord, der: Buffer, spki: Buffer): boolean {
  const data = rec.selector === 0 ? der : rec.selector === 1 ? spki : null;
  if (data === null) return false;
  let v: Buffer;
  if (rec.matching === 0) v = data;
  else if (rec.matching === 1) v = createHash('sha256').update(data).digest();
  else if (rec.matching === 2) v = createHash('sha512').update(data).digest();
  else return false;
  return v.toString('hex') === rec.data.toLowerCase();
}

function spkiOf(x: X509Certificate): Buffer {
  return x.publicKey.export({ type: 'spki', format: 'der' }) as Buffer;
}

export function verifyDane(sock: TLSSocket, host: string, records: readonly TlsaRecord[]): PeerCheck {
  const chain = chainOf(sock);
  if (chain.length === 0) return { ok: false, failure: 'validation-failure', detail: `${host}: no certificate` };
  let x509: X509Certificate[];
  try {
    x509 = chain.map((c) => new X509Certificate(c.raw));
  } catch {
    return { ok: false, failure: 'validation-failure', detail: `${host}: a certificate could not be parsed` };
  }
  const leaf = x509[0]!;
  // DANE-EE(3): the leaf's certificate or key; RFC 7672 §3.1.1: no name, no dates.
  for (const r of records) {
    if (r.usage === 3 && matches(r, chain[0]!.raw, spkiOf(leaf))) return { ok: true };
  }
  // DANE-TA(2): a certificate of the chain is the trust anchor; each link below it is signed by
  // the next, dates hold, and the leaf names the MX host (RFC 7672 §3.2.3).
  const ta = records.filter((r) => r.usage === 2);
  if (ta.length > 0) {
    for (let i = 1; i < x509.length; i++) {
      const anchor = x509[i]!;
      if (!ta.some((r) => matches(r, chain[i]!.raw, spkiOf(anchor)))) continue;
      const now = Date.now();
      let linked = true;
      for (let j = 0; j < i && linked; j++) {
        const c = x509[j]!;
        const up = x509[j + 1]!;
        if (!c.checkIssued(up) || !c.verify(up.publicKey)) linked = false;
        if (Date.parse(c.validFrom) > now || Date.parse(c.validTo) < now) {
          return { ok: false, failure: 'certificate-expired', detail: `${host}: a certificate below the DANE-TA anchor is out of its dates` };
        }
      }
      if (!linked) continue;
      const bad = checkServerIdentity(host, chain[0]!);
      if (bad) return { ok: false, failure: 'certificate-host-mismatch', detail: `${host}: ${bad.message}`.slice(0, 200) };
      return { ok: true };
    }
  }
  return { ok: false, failure: 'validation-failure', detail: `${host}: no TLSA record matches the certificate chain` };
}
