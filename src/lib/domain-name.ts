// The one grammar for domain and host names: dot-separated labels of 1-63 characters that do
// not start or end with "-" (RFC 1035 §2.3.1 as relaxed by RFC 1123 §2.1 to allow a leading
// digit). Settings and routes take ASCII names (LDH); SMTP addresses may carry U-labels
// (RFC 6531 §3.3), which `utf8` allows. Address literals ("[10.0.0.1]") are not names.
import { domainToASCII } from 'node:url';

const LDH_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;
const UTF8_LABEL = /^(?!-)[A-Za-z0-9\-\u0080-\u{10FFFF}]{1,63}(?<!-)$/u;

export interface DomainNameOptions {
  /** Allow non-ASCII (U-label) characters, as SMTPUTF8 addresses may carry. */
  readonly utf8?: boolean;
  /** Longest whole name in characters (default 253, the longest name DNS can carry). */
  readonly maxLength?: number;
}

export function isDomainName(name: string, options: DomainNameOptions = {}): boolean {
  const max = options.maxLength ?? 253;
  if (name.length === 0 || name.length > max) return false;
  const label = options.utf8 === true ? UTF8_LABEL : LDH_LABEL;
  return name.split('.').every((l) => label.test(l));
}

/** Lower-case, without a trailing dot: the form names are compared in. No validation. */
export function normalizeDomain(domain: string): string {
  const d = domain.trim().toLowerCase();
  return d.endsWith('.') ? d.slice(0, -1) : d;
}

/**
 * A name as lower-case ASCII (an IDN converted to A-labels), without a trailing dot; null
 * when it is not a valid name.
 */
export function toAsciiDomain(raw: string): string | null {
  const s = raw.trim().replace(/\.$/, '');
  if (s === '') return null;
  // eslint-disable-next-line no-control-regex
  const ascii = /^[\x00-\x7f]*$/.test(s) ? s.toLowerCase() : domainToASCII(s);
  return ascii !== '' && isDomainName(ascii) ? ascii : null;
}
