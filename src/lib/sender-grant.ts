// What a sender login map grants, in the one form both sides compare: an address as
// "local@domain" (local part lower-cased, domain as lower-case ASCII, IDNs as A-labels) or a
// whole domain as "@domain". The acceptor checks MAIL FROM with it, and the DKIM filter the
// From: address, against the grants the map gives the logged-in user.
import { toAsciiDomain } from './domain-name.js';

/** "local@domain" in its compared form; null when it has no '@' or no valid domain name. */
export function grantKey(address: string): string | null {
  const at = address.lastIndexOf('@');
  if (at <= 0) return null;
  const domain = toAsciiDomain(address.slice(at + 1));
  if (domain === null) return null;
  return `${address.slice(0, at).toLowerCase()}@${domain}`;
}

/** True when `grants` (grantKey forms and "@domain" entries) cover `address`. */
export function isGranted(grants: ReadonlySet<string>, address: string): boolean {
  const key = grantKey(address);
  if (key === null) return false;
  return grants.has(key) || grants.has(key.slice(key.lastIndexOf('@')));
}
