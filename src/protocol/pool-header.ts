// The X-Postern-Pool header field (docs/shaping.md "Choosing the pool"): a trusted client's
// choice of the shaping pool its message leaves from. It is taken out of every message at
// acceptance, whoever sent it, so it never leaves the node and no filter or DKIM signature
// sees it; this file finds and removes it in the header section (RFC 5322 §2.2: a field is its
// first line and every continuation line) and says what it held. Bytes only; copies only when
// a field goes.

import { fieldColon, forEachField, withoutFields } from './header-fields.js';

const CR = 0x0d;
const LF = 0x0a;
const NAME = 'x-postern-pool';
/** A pool name is at most 63 characters (config/shaping.ts); a longer value names no pool. */
export const MAX_POOL_NAME_CHARS = 63;
/** A pool name as the shaping file allows it. */
export const POOL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** What the header said: absent, one value (unfolded, trimmed), or a value no pool can have. */
export type PoolHeaderValue =
  | { kind: 'none' }
  | { kind: 'one'; value: string }
  | { kind: 'repeated'; count: number }
  | { kind: 'too-long' }
  | { kind: 'bad'; value: string };

export interface PoolHeaderResult {
  /** The message without any X-Postern-Pool field (the input itself when there was none). */
  readonly body: Buffer;
  /** How many fields were removed. */
  readonly removed: number;
  readonly header: PoolHeaderValue;
}

/**
 * Remove every X-Postern-Pool field of the header section that starts at `from` (bytes before
 * it, our own trace field, are kept). The header section ends at the first empty line; a line
 * that looks like the field in the body is body text and stays. Only the first field's value
 * is read, and only its first MAX_POOL_NAME_CHARS + 1 characters count: a hostile value costs
 * the scan of its bytes and nothing more.
 */
export function takePoolHeader(msg: Buffer, from: number): PoolHeaderResult {
  let drop: Array<[number, number]> | null = null;
  let first: PoolHeaderValue = { kind: 'none' };
  forEachField(msg, from, (pos, end) => {
    if ((msg[pos]! | 0x20) !== 0x78 /* x */) return;
    const colon = fieldColon(msg, pos, end, NAME);
    if (colon < 0) return;
    if (drop === null) first = valueOf(msg, colon + 1, end);
    (drop ??= []).push([pos, end]);
  });
  if (drop === null) return { body: msg, removed: 0, header: first };
  const n = (drop as Array<[number, number]>).length;
  return { body: withoutFields(msg, drop), removed: n, header: n > 1 ? { kind: 'repeated', count: n } : first };
}

/** The value between `from` and `end`, unfolded and trimmed, checked against the pool-name form. */
function valueOf(msg: Buffer, from: number, end: number): PoolHeaderValue {
  let v = '';
  // White space is kept back until a character follows it: trailing space is trimmed, and a
  // long run of it costs a count, not a string.
  let space = 0;
  for (let i = from; i < end; i++) {
    const c = msg[i]!;
    if (c === CR || c === LF) continue; // unfolding (RFC 5322 §2.2.3)
    if (c === 0x20 || c === 0x09) {
      if (v !== '') space++;
      continue;
    }
    if (space > 0) v += ' '.repeat(Math.min(space, MAX_POOL_NAME_CHARS + 1));
    space = 0;
    v += String.fromCharCode(c);
    if (v.length > MAX_POOL_NAME_CHARS) return { kind: 'too-long' };
  }
  return POOL_NAME.test(v) ? { kind: 'one', value: v } : { kind: 'bad', value: v };
}
