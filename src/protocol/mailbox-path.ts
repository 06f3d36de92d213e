// Which Maildir folder a recipient address names, or why it names none: the one mapping both
// the Maildir transport (delivery) and RCPT (smtp) use, so an address the transport would refuse
// later is refused at RCPT instead of becoming a bounce (backscatter). Pure: no file system
// access (path.resolve only). The mapping rules are described in delivery/maildir-transport.ts.
import { resolve, join, sep } from 'node:path';
import { domainToASCII } from 'node:url';
import { isDomainName } from '../lib/domain-name.js';
import { failure, success, type Result } from '../lib/result.js';

/** The folder, or why the address names none. */
export type MailboxPathResult = Result<{ domain: string; local: string; dir: string }, string>;

const LOCAL_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * Map a recipient address to its Maildir folder under `root`, or say why it can't be.
 * Pure apart from path.resolve.
 */
export function mailboxPath(root: string, address: string): MailboxPathResult {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(address)) return failure('control character in address');
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return failure('no local part or domain');
  let local = address.slice(0, at);
  const rawDomain = address.slice(at + 1);

  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(local)) return failure('non-ASCII local part');
  if (local.startsWith('"')) return failure('quoted local part');
  const plus = local.indexOf('+');
  if (plus === 0) return failure('empty local part before +');
  if (plus > 0) local = local.slice(0, plus);
  local = local.toLowerCase();
  if (!LOCAL_RE.test(local) || local.includes('..')) return failure('local part is not a plain name');

  if (rawDomain.startsWith('[')) return failure('address literal domain');
  // Whitelist before IDNA: domainToASCII parses like a URL host, so it would cut
  // "example.org/../x" at the '/' and decode "%2e%2e" to "..". Only letters, digits, '-', '.'
  // and non-ASCII (for IDNA) may reach it; then an ASCII domain must come back unchanged.
  if (!/^[A-Za-z0-9.\-\u0080-\u{10FFFF}]+$/u.test(rawDomain)) return failure('domain is not a plain name');
  const domain = domainToASCII(rawDomain).toLowerCase();
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(rawDomain) && domain !== rawDomain.toLowerCase()) return failure('domain is not a plain name');
  if (!isDomainName(domain)) return failure('domain is not a plain name');

  const base = resolve(root);
  const dir = resolve(base, domain, local);
  if (!dir.startsWith(base + sep) || dir !== join(base, domain, local)) return failure('path escapes the root');
  return success({ domain, local, dir });
}
