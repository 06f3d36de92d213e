// The word-at-a-time (SWAR) search under the DATA and BDAT scanners: find the next byte below
// 0x0e, which covers CR (0x0d), LF (0x0a) and, as harmless false alarms, TAB and other C0 bytes.
// RFC 5321 §2.3.8 / §4.5.2 strict line ends and §4.5.3.1.6 line length need every CR and LF looked
// at; this finds them 4 bytes per step without a per-byte loop and without copying the chunk.

/**
 * Why SWAR and not `indexOf`: the checks need both CR and LF positions. One native
 * `indexOf(0x0a)` per line runs at ≈4.9 GB/s on our Node 20, but adding the `indexOf(0x0d)`
 * that the bare-CR check needs drops it to ≈2.3 GB/s (two native calls per 78-byte line).
 * Testing one Int32 word for "some byte < 0x0e" is 3 ALU ops, so this loop scans at ≈3.5 GB/s
 * and the whole DATA scanner stays above 2 GB/s (see docs/parser.md for the figures).
 * Why one test (< 0x0e) and not an exact CR-or-LF test: the exact form needs two "has zero
 * byte" tests (8 ops) and measured ≈2.7 GB/s; a TAB in a folded header costs a look, nothing more.
 * Why not WebAssembly SIMD: the bytes would first have to be copied into wasm memory.
 */

/** True on little-endian hosts, where the lowest flagged bit of a word is its first byte. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Below this many bytes the word view is not worth making; a plain byte loop is used. */
export const WORD_SCAN_MIN_BYTES = 32;

/**
 * An Int32Array over the whole ArrayBuffer behind `buf` (no copy), or null when `buf` is too
 * short to be worth it. Word i covers bytes [4i, 4i+4) of the ArrayBuffer, so byte p of `buf`
 * lies in word (buf.byteOffset + p) >> 2.
 */
export function wordView(buf: Buffer): Int32Array | null {
  if (buf.length < WORD_SCAN_MIN_BYTES) return null;
  const ab = buf.buffer;
  return new Int32Array(ab, 0, ab.byteLength >>> 2);
}

/**
 * Index of the first byte in buf[p, end) that is < 0x0e, or `end` if there is none.
 * `words` must be `wordView(buf)` (or null for a byte loop); `off` is `buf.byteOffset`.
 */
export function findControlByte(buf: Buffer, words: Int32Array | null, off: number, p: number, end: number): number {
  if (words === null || end - p < 8) {
    while (p < end && buf[p]! >= 0x0e) p++;
    return p;
  }
  // Head: single bytes until p is 4-aligned in the ArrayBuffer (at most 3).
  while (((off + p) & 3) !== 0) {
    if (buf[p]! < 0x0e) return p;
    p++;
  }
  let wi = (off + p) >>> 2;
  const we = (off + end) >>> 2; // words lying wholly before `end`
  for (; wi < we; wi++) {
    const v = words[wi]!;
    // "has a byte less than n" (n <= 128): exact about whether one exists, and the lowest
    // flagged byte is always a true hit (borrows only run upwards from a true hit).
    const m = (v - 0x0e0e0e0e) & ~v & 0x80808080;
    if (m !== 0) {
      const base = wi * 4 - off;
      if (LITTLE_ENDIAN) return base + ((31 - Math.clz32(m & -m)) >>> 3);
      p = base;
      while (buf[p]! >= 0x0e) p++;
      return p;
    }
  }
  // Tail: fewer than 4 bytes.
  p = wi * 4 - off;
  while (p < end && buf[p]! >= 0x0e) p++;
  return p;
}
