// Who may call the API: a Bearer token (RFC 6750 §2.1) compared in constant time, and the
// rule that a token-less API only listens on loopback.
import { createHash, timingSafeEqual } from 'node:crypto';

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

export { isLoopbackHost } from '../lib/networks.js';
