// Message ids: 16 characters of lower-case base32hex (0-9 a-v), 9 for the arrival time in ms
// and 7 for the persisted sequence number. Fixed width, so ids sort by (time, seq) as strings,
// i.e. by arrival while the clock does not step back; unique across restarts because seq is
// persisted and never reused, and across re-created queues because of the time part.

const DIGITS = '0123456789abcdefghijklmnopqrstuv';
const TIME_CHARS = 9; // 32^9 ms ≈ 1115 years
const SEQ_CHARS = 7; // 32^7 ≈ 3.4e10 messages before the width grows (ids stay unique)

function base32(n: number, width: number): string {
  let s = '';
  let v = Math.max(0, Math.floor(n));
  do {
    s = DIGITS[v % 32]! + s;
    v = Math.floor(v / 32);
  } while (v > 0);
  return s.length >= width ? s : '0'.repeat(width - s.length) + s;
}

export function makeId(timeMs: number, seq: number): string {
  return base32(timeMs, TIME_CHARS) + base32(seq, SEQ_CHARS);
}

/** The sequence number inside an id made by makeId (undefined when it is not one). */
export function seqOfId(id: string): number | undefined {
  if (!/^[0-9a-v]{16,}$/.test(id)) return undefined;
  let n = 0;
  for (let i = TIME_CHARS; i < id.length; i++) n = n * 32 + DIGITS.indexOf(id[i]!);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Cheap shape check for ids handed in from outside (CLI, admin tools). */
export function isId(s: string): boolean {
  return /^[0-9a-v]{16,}$/.test(s);
}
