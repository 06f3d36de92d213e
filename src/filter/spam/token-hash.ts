// Token hashing for the spam classifier: FNV-1a over a token's UTF-16 code units, then a final
// mix; the model's bucket is hashToken(token) & (2^bits - 1). The FNV state is exported so the
// word scanner and the bucket sink can hash a token as they walk it, without building its string.

/** FNV-1a's offset basis: the state before the first code unit. */
export const FNV_OFFSET = 0x811c9dc5;

/** FNV-1a state after `s` (UTF-16 code units), starting from state h. */
export function fnv(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

/** The final mix of an FNV state into the token's 32-bit hash. */
export function mix(h: number): number {
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

/** The 32-bit hash of a token (FNV-1a over UTF-16 code units, then a final mix). */
export function hashToken(s: string): number {
  return mix(fnv(FNV_OFFSET, s));
}
