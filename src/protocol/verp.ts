// VERP (variable envelope return path): the envelope sender of each outbound transaction names
// the message and the recipient, so a bounce that comes back later says whom it is about
// without anyone trusting its text. The form, all lower case:
//
//   b+<id>.<tag>=<local>=<domain>@<verp domain>
//      id   the queue id (16 base32hex characters)
//      tag  8 base32hex characters of HMAC-SHA256(key, "verp1" 0 id 0 recipient): 40 bits, so a
//           forged bounce cannot name a recipient it did not get from us (each guess costs an
//           SMTP transaction; 2^40 of them)
//      local, domain  the recipient, lower-cased, each byte outside [a-z0-9+-.] (and a dot
//           after a dot) written "_hh" (hex), so the split at the one "=" left is unambiguous
//
// The local part stays within RFC 5321's 64 octets (our own RCPT refuses longer ones): a
// recipient too long for it gets no VERP address (the caller keeps the original sender).
import { createHmac, timingSafeEqual } from 'node:crypto';
import { failure, success, type Result } from '../lib/result.js';

/** RFC 5321 §4.5.3.1.1. */
export const MAX_LOCAL_PART = 64;
const PREFIX = 'b+';
const ID_LEN = 16;
const TAG_LEN = 8;
const ID = /^[0-9a-v]{16}$/;
const B32 = '0123456789abcdefghijklmnopqrstuv';

export interface VerpKey {
  readonly domain: string;
  readonly key: Buffer;
}

function tag(key: Buffer, id: string, rcpt: string): string {
  const mac = createHmac('sha256', key).update(`verp1\0${id}\0${rcpt}`).digest();
  // 8 characters of 5 bits from the first 5 bytes.
  let bits = 0n;
  for (let i = 0; i < 5; i++) bits = (bits << 8n) | BigInt(mac[i]!);
  let out = '';
  for (let i = TAG_LEN - 1; i >= 0; i--) out += B32[Number((bits >> BigInt(i * 5)) & 31n)];
  return out;
}

function escape(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    const plain = (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39) || c === '+' || c === '-' || (c === '.' && !out.endsWith('.'));
    out += plain ? c : `_${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

function unescape(s: string): string | null {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5f) {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(hex)) return null;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (c > 0x7e || c === 0x3d) {
      return null;
    } else {
      bytes.push(c);
    }
  }
  const text = Buffer.from(bytes).toString('utf8');
  // A byte sequence that is not UTF-8 did not come from escape().
  return Buffer.from(text, 'utf8').equals(Buffer.from(bytes)) ? text : null;
}

/** The recipient as VERP carries (and the tag covers) it: lower case, domain without a final dot. */
export function verpRecipient(rcpt: string): string | null {
  const at = rcpt.lastIndexOf('@');
  if (at <= 0 || at === rcpt.length - 1) return null;
  return `${rcpt.slice(0, at)}@${rcpt.slice(at + 1).replace(/\.$/, '')}`.toLowerCase();
}

/** The VERP envelope sender for message `id` to `rcpt`, or null when it would be too long. */
export function encodeVerp(v: VerpKey, id: string, rcpt: string): string | null {
  const r = verpRecipient(rcpt);
  if (r === null || !ID.test(id)) return null;
  const at = r.lastIndexOf('@');
  const local = `${PREFIX}${id}.${tag(v.key, id, r)}=${escape(r.slice(0, at))}=${escape(r.slice(at + 1))}`;
  if (local.length > MAX_LOCAL_PART) return null;
  return `${local}@${v.domain}`;
}

/** The message id and recipient a VERP address names, or why it is not one of ours. */
export type VerpResult = Result<{ id: string; recipient: string }, string>;

/**
 * Read a VERP address back and check its tag. Case-insensitive (some MTAs change case); the
 * domain must be `v.domain`. Never throws.
 */
export function decodeVerp(v: VerpKey, address: string): VerpResult {
  if (address.length > 320) return failure('too long');
  const a = address.toLowerCase();
  const at = a.lastIndexOf('@');
  if (at < 0 || a.slice(at + 1).replace(/\.$/, '') !== v.domain) return failure('not the VERP domain');
  const local = a.slice(0, at);
  if (!local.startsWith(PREFIX) || local.length > MAX_LOCAL_PART) return failure('not a VERP address');
  const id = local.slice(PREFIX.length, PREFIX.length + ID_LEN);
  const rest = local.slice(PREFIX.length + ID_LEN);
  if (!ID.test(id) || rest[0] !== '.' || rest[TAG_LEN + 1] !== '=') return failure('not a VERP address');
  const given = rest.slice(1, TAG_LEN + 1);
  const parts = rest.slice(TAG_LEN + 2).split('=');
  if (parts.length !== 2) return failure('not a VERP address');
  const l = unescape(parts[0]!);
  const d = unescape(parts[1]!);
  if (l === null || d === null || l === '' || d === '') return failure('bad recipient encoding');
  const recipient = `${l}@${d}`;
  const want = tag(v.key, id, recipient);
  if (given.length !== want.length || !timingSafeEqual(Buffer.from(given), Buffer.from(want))) return failure('bad tag');
  return success({ id, recipient });
}
