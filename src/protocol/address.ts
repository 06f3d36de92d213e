// Parsing of MAIL FROM / RCPT TO arguments (RFC 5321 §4.1.2 Path, Mailbox, Esmtp-param;
// RFC 6531 for SMTPUTF8 addresses; RFC 3461 §4 xtext). Works on the short argument string of
// one command, never on message data.
import { isDomainName } from '../lib/domain-name.js';
import { failure, success, type Result } from '../lib/result.js';

export interface PathArgs {
  /** The mailbox without angle brackets; '' for the null path <>. */
  readonly address: string;
  /** Upper-cased keyword → value (undefined for a keyword without '='). */
  readonly params: Map<string, string | undefined>;
  readonly nonAscii: boolean;
}

export type PathResult = Result<PathArgs, 'syntax' | 'duplicate-param' | 'too-long'>;

const ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]+$/u;
const QTEXT = /^"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\u{10FFFF}]|\\[\x20-\x7e])*"$/u;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isDomain(d: string): boolean {
  if (d.length === 0 || d.length > 255) return false;
  if (d.startsWith('[') && d.endsWith(']')) {
    const lit = d.slice(1, -1);
    if (IPV4.test(lit)) return true;
    return /^IPv6:[0-9A-Fa-f:.]+$/i.test(lit);
  }
  return isDomainName(d, { utf8: true, maxLength: 255 });
}

export function isMailbox(m: string): boolean {
  const at = m.lastIndexOf('@');
  if (at <= 0 || at === m.length - 1) return false;
  const local = m.slice(0, at);
  const domain = m.slice(at + 1);
  if (Buffer.byteLength(local) > 64) return false;
  const localOk = local.startsWith('"') ? QTEXT.test(local) : local.split('.').every((a) => a.length > 0 && ATEXT.test(a));
  return localOk && isDomain(domain);
}

/**
 * Parse "FROM:<path> params" (keyword 'FROM') or "TO:<path> params" (keyword 'TO').
 * Tolerates one space after the colon, as deployed servers do.
 */
export function parsePathArgs(args: string, keyword: 'FROM' | 'TO', allowNull: boolean): PathResult {
  const kl = keyword.length;
  if (args.length < kl + 3 || args.slice(0, kl).toUpperCase() !== keyword || args[kl] !== ':') return failure('syntax');
  let i = kl + 1;
  if (args[i] === ' ') i++;
  if (args[i] !== '<') return failure('syntax');
  // Find the closing '>' outside a quoted local part.
  let j = i + 1;
  let quoted = false;
  for (; j < args.length; j++) {
    const c = args.charCodeAt(j);
    if (quoted && c === 0x5c) { j++; continue; }
    if (c === 0x22) quoted = !quoted;
    else if (c === 0x3e && !quoted) break;
  }
  if (j >= args.length) return failure('syntax');
  let path = args.slice(i + 1, j);
  if (Buffer.byteLength(path) > 256) return failure('too-long');
  // A source route (@a,@b:user@host) is accepted and ignored (RFC 5321 §4.1.2, Appendix C).
  if (path.startsWith('@')) {
    const colon = path.indexOf(':');
    if (colon < 0) return failure('syntax');
    path = path.slice(colon + 1);
  }
  if (path === '') {
    if (!allowNull) return failure('syntax');
  } else if (!isMailbox(path) && !(keyword === 'TO' && path.toLowerCase() === 'postmaster')) {
    return failure('syntax');
  }
  const params = new Map<string, string | undefined>();
  const rest = args.slice(j + 1);
  if (rest.length > 0) {
    if (rest[0] !== ' ') return failure('syntax');
    for (const p of rest.split(' ')) {
      if (p === '') continue;
      const eq = p.indexOf('=');
      const key = (eq < 0 ? p : p.slice(0, eq)).toUpperCase();
      if (!/^[A-Z0-9][A-Z0-9-]*$/.test(key)) return failure('syntax');
      if (params.has(key)) return failure('duplicate-param');
      params.set(key, eq < 0 ? undefined : p.slice(eq + 1));
    }
  }
  // eslint-disable-next-line no-control-regex
  return success({ address: path, params, nonAscii: /[^\x00-\x7f]/.test(path) });
}

/** RFC 3461 §4 xtext: "+HH" escapes; returns undefined when malformed. */
export function decodeXtext(s: string): string | undefined {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2b) {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) return undefined;
      out += String.fromCharCode(parseInt(hex, 16));
      i += 2;
    } else if (c < 0x21 || c > 0x7e || c === 0x3d) {
      return undefined;
    } else {
      out += s[i];
    }
  }
  return out;
}

/**
 * True when the local part routes mail on by itself: the %-hack (user%other@here), a UUCP
 * bang path (other!user@here) or a quoted '@' ("user@other"@here). Passed on unchanged, such
 * an address makes us a relay wherever the next hop still honours these forms.
 */
export function hasRoutingLocalPart(address: string): boolean {
  const at = address.lastIndexOf('@');
  if (at <= 0) return false;
  let local = address.slice(0, at);
  if (local.charCodeAt(0) === 0x22) local = local.slice(1, -1).replace(/\\(.)/g, '$1');
  return /[%!@]/.test(local);
}

/** RFC 3461 §4 xtext, the inverse of decodeXtext; characters beyond one byte go as their UTF-8 bytes. */
export function encodeXtext(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c >= 0x21 && c <= 0x7e && c !== 0x2b && c !== 0x3d) out += ch;
    else if (c <= 0xff) out += '+' + c.toString(16).toUpperCase().padStart(2, '0');
    else for (const b of Buffer.from(ch, 'utf8')) out += '+' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}
