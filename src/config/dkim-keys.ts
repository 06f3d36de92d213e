// The grammar of POSTERN_DKIM_KEYS: domain:selector:/path/key.pem[,domain2:selector2:/path2].
// Syntax only, no I/O; filter/dkim/keys.ts reads the PEM files (RFC 6376 §3.1 selectors are
// dot-separated labels, the signing domain d= is an A-label name).
import { isDomainName, toAsciiDomain } from '../lib/domain-name.js';
import { failure, success, type Result } from '../lib/result.js';

export interface DkimKeySpec {
  /** The signing domain (d=), lower-case ASCII (IDNs converted to A-labels). */
  domain: string;
  /** The selector (s=): the key is published at <selector>._domainkey.<domain>. */
  selector: string;
  keyFile: string;
}

/**
 * Parses the key list. Entries are comma-separated; each is domain:selector:path, split at
 * the first two colons (so the path may itself contain colons). An empty spec is no keys.
 * One key per domain: a second entry for the same domain is an error (which one to sign with
 * would be ambiguous). Errors name the entry (1-based) and quote it.
 */
export function parseDkimKeys(spec: string): Result<DkimKeySpec[], string> {
  const out: DkimKeySpec[] = [];
  const entries = spec.split(',').map((e) => e.trim());
  if (entries.length === 1 && entries[0] === '') return success(out);
  for (const [i, entry] of entries.entries()) {
    const where = `entry ${i + 1} (${JSON.stringify(entry)})`;
    if (entry === '') return failure(`${where} is empty`);
    const a = entry.indexOf(':');
    const b = a < 0 ? -1 : entry.indexOf(':', a + 1);
    if (a < 0 || b < 0) return failure(`${where}: expected domain:selector:/path/to/key.pem`);
    const domain = toAsciiDomain(entry.slice(0, a));
    const selectorRaw = entry.slice(a + 1, b).trim();
    const keyFile = entry.slice(b + 1).trim();
    if (domain === null) return failure(`${where}: ${JSON.stringify(entry.slice(0, a))} is not a domain name`);
    if (!isDomainName(selectorRaw)) return failure(`${where}: ${JSON.stringify(selectorRaw)} is not a valid selector (dot-separated letters, digits, hyphens)`);
    if (keyFile === '') return failure(`${where}: the key file path is empty`);
    if (out.some((k) => k.domain === domain)) return failure(`${where}: a second key for ${domain} (one key per domain)`);
    out.push({ domain, selector: selectorRaw.toLowerCase(), keyFile });
  }
  return success(out);
}
