// What the spam learners see of a message: its tokens' buckets (unique indices into 2^bits
// weights; with two views, header tokens' offset by 2^bits and the list fact at 2^(bits+1)).
import { tokenBuckets, type TokenizeOptions } from './tokenize.js';
import { hashToken } from './token-hash.js';
import { tokenView, LIST_TOKEN } from './token-view.js';

/** A message as the learners see it: unique bucket indices (featurize sorts them; features need not). */
export type Features = Uint32Array;

export const hash = hashToken;

/**
 * Buckets of token strings (sorted, unique); with two views, header tokens' offset by 2^bits
 * and LIST_TOKEN as bucket 2^(bits+1).
 */
export function featurize(tokens: Iterable<string>, bits: number, views = 1): Features {
  const mask = (1 << bits) - 1;
  const list = tokens instanceof Set ? tokens : new Set(tokens);
  const a = new Uint32Array(list.size);
  let n = 0;
  for (const t of list) {
    if (t === LIST_TOKEN) {
      if (views > 1) a[n++] = 2 * (mask + 1); // the list fact, past both views
      continue;
    }
    a[n++] = (hashToken(t) & mask) + (views > 1 && tokenView(t) ? mask + 1 : 0);
  }
  const b = a.subarray(0, n).sort();
  // drop duplicates (hash collisions) in place
  let k = 0;
  for (let i = 0; i < n; i++) if (i === 0 || b[i] !== b[i - 1]) b[k++] = b[i]!;
  return b.subarray(0, k);
}

/** Unique buckets of raw message bytes: the same set as featurize(tokenize(buf, opts), bits). */
export function features(buf: Uint8Array, bits: number, opts: TokenizeOptions = {}): Features {
  return tokenBuckets(buf, bits, opts);
}
