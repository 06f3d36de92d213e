// DKIM signing keys: POSTERN_DKIM_KEYS = domain:selector:/path/key.pem[,domain2:selector2:/path2].
// parseDkimKeys() checks the syntax (no I/O); loadKeys() reads each PEM once and detects the
// algorithm from the key itself (RSA → rsa-sha256, Ed25519 → ed25519-sha256, RFC 8463).
import { readFileSync } from 'node:fs';
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { domainToASCII } from 'node:url';

export interface DkimKeySpec {
  /** The signing domain (d=), lower-case ASCII (IDNs converted to A-labels). */
  domain: string;
  /** The selector (s=): the key is published at <selector>._domainkey.<domain>. */
  selector: string;
  keyFile: string;
}

export type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256';

export interface DkimKey extends DkimKeySpec {
  algorithm: DkimAlgorithm;
  key: KeyObject;
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/** A domain name in lower-case ASCII, or null when it is not one. */
export function normalizeDomain(raw: string): string | null {
  const s = raw.trim().replace(/\.$/, '');
  if (s === '') return null;
  const ascii = /^[\x00-\x7f]*$/.test(s) ? s.toLowerCase() : domainToASCII(s);
  if (ascii === '' || ascii.length > 253) return null;
  const labels = ascii.split('.');
  return labels.length >= 1 && labels.every((l) => LABEL.test(l)) ? ascii : null;
}

/**
 * Parses the key list. Entries are comma-separated; each is domain:selector:path, split at
 * the first two colons (so the path may itself contain colons). An empty spec is no keys.
 * One key per domain: a second entry for the same domain is an error (which one to sign with
 * would be ambiguous). Errors name the entry (1-based) and quote it.
 */
export function parseDkimKeys(spec: string): DkimKeySpec[] | { error: string } {
  const out: DkimKeySpec[] = [];
  const entries = spec.split(',').map((e) => e.trim());
  if (entries.length === 1 && entries[0] === '') return out;
  for (const [i, entry] of entries.entries()) {
    const where = `entry ${i + 1} (${JSON.stringify(entry)})`;
    if (entry === '') return { error: `${where} is empty` };
    const a = entry.indexOf(':');
    const b = a < 0 ? -1 : entry.indexOf(':', a + 1);
    if (a < 0 || b < 0) return { error: `${where}: expected domain:selector:/path/to/key.pem` };
    const domain = normalizeDomain(entry.slice(0, a));
    const selectorRaw = entry.slice(a + 1, b).trim();
    const keyFile = entry.slice(b + 1).trim();
    if (domain === null) return { error: `${where}: ${JSON.stringify(entry.slice(0, a))} is not a domain name` };
    if (selectorRaw === '' || !selectorRaw.split('.').every((l) => LABEL.test(l))) return { error: `${where}: ${JSON.stringify(selectorRaw)} is not a valid selector (dot-separated letters, digits, hyphens)` };
    if (keyFile === '') return { error: `${where}: the key file path is empty` };
    if (out.some((k) => k.domain === domain)) return { error: `${where}: a second key for ${domain} (one key per domain)` };
    out.push({ domain, selector: selectorRaw.toLowerCase(), keyFile });
  }
  return out;
}

/** Reads and checks one key; throws an Error naming the entry's domain, selector and file. */
export function loadKey(spec: DkimKeySpec): DkimKey {
  const where = `DKIM key ${spec.domain}:${spec.selector} (${spec.keyFile})`;
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(spec.keyFile));
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`, { cause: err });
  }
  if (key.asymmetricKeyType === 'ed25519') return { ...spec, algorithm: 'ed25519-sha256', key };
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    // Verifiers ignore RSA keys under 1024 bits (RFC 8301 §3.2); 2048 is the norm.
    if (bits < 1024) throw new Error(`${where}: RSA key of ${bits} bits; verifiers require at least 1024 (use 2048)`);
    return { ...spec, algorithm: 'rsa-sha256', key };
  }
  throw new Error(`${where}: unsupported key type ${key.asymmetricKeyType ?? 'unknown'} (expected an RSA or Ed25519 private key)`);
}

/** Loads every key (each file read once). Throws on the first bad one. */
export function loadKeys(specs: readonly DkimKeySpec[]): DkimKey[] {
  return specs.map(loadKey);
}

/**
 * The TXT record to publish at <selector>._domainkey.<domain>: `v=DKIM1; k=rsa; p=<SPKI DER>`
 * or `v=DKIM1; k=ed25519; p=<raw 32-byte key>` (RFC 8463 §4.2).
 */
export function dkimDnsRecord(key: DkimKey | KeyObject): string {
  const k = 'key' in key && 'algorithm' in key ? key.key : (key as KeyObject);
  const pub = k.type === 'private' ? createPublicKey(k) : k;
  if (pub.asymmetricKeyType === 'ed25519') {
    const spki = pub.export({ type: 'spki', format: 'der' });
    return `v=DKIM1; k=ed25519; p=${spki.subarray(spki.length - 32).toString('base64')}`;
  }
  return `v=DKIM1; k=rsa; p=${pub.export({ type: 'spki', format: 'der' }).toString('base64')}`;
}
