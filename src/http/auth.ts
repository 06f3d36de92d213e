// Who may call the API: a Bearer token (RFC 6750 §2.1) compared in constant time, and the
// rule that a token-less API only listens on loopback.
import { createHash, timingSafeEqual } from 'node:crypto';
import { BlockList, isIP } from 'node:net';

const LOOPBACK6 = new BlockList();
LOOPBACK6.addAddress('::1', 'ipv6');

/**
 * Both sides are hashed first so the comparison takes the same time whatever the length of
 * the presented token (timingSafeEqual itself throws on unequal lengths, which leaks it).
 */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (header === undefined) return false;
  const m = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(header);
  if (m === null) return false;
  const a = createHash('sha256').update(m[1]!).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

/** 127.0.0.0/8, ::1, ::ffff:127.x.y.z and the name localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h.toLowerCase() === 'localhost') return true;
  const v4 = h.toLowerCase().startsWith('::ffff:') ? h.slice(7) : h;
  if (isIP(v4) === 4) return v4.startsWith('127.');
  if (isIP(h) === 6) return LOOPBACK6.check(h, 'ipv6');
  return false;
}
