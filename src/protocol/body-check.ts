// BodyCheck: what DATA (data-scanner.ts) and BDAT (bdat-reader.ts) both check in message text,
// line end to line end with findControlByte: only CRLF ends a line (RFC 5321 §2.3.8, §4.5.2;
// against SMTP smuggling, CVE-2023-51764), lines of at most maxLineBytes with CRLF (§4.5.3.1.6),
// no NUL (RFC 2045 §2.7-2.8: 7bit and 8bit data, all DATA and 8BITMIME carry, have none; a
// BINARYMIME body may, and BDAT skips this for it). DATA's dots and BDAT's counts stay apart.

import { findControlByte, WORD_SCAN_MIN_BYTES } from './find-control-byte.js';
import { invalidArgument } from '../lib/invalid-argument.js';

/** First problem seen in a message body; the session maps it to a reply (552 5.3.4, 554 ...). */
export type DataStatus = 'ok' | 'too-big' | 'bad-newline' | 'line-too-long' | 'nul-byte';

/** text(): the chunk ended inside a line (`cr`: its last byte is a CR still waiting for its LF). */
export const TEXT_MID = -1;
/** text() or heldCr(): a problem, described by `kind`, `at`, `lineStart`, `resume`, `resumeAtLine`. */
export const TEXT_FAIL = -2;

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

/*
 * One per scanner, reused for every chunk (no closures, no objects per chunk). Offsets are in the
 * chunk being scanned; `lineStart` is negative when the line began in an earlier chunk. The
 * scanner sets `lineStart` before a call and reads it back after; results other than the
 * returned offset are left in the fields, as a native parser would leave them in registers.
 *
 *   text(p) ──CRLF──▶ line start q: returned when q = end, or (untilDot) a "." is at q;
 *     │               otherwise the walk goes on from q
 *     ├──end of chunk──▶ TEXT_MID (cr = the last byte is a CR)
 *     └──bare CR/LF, line too long, NUL──▶ TEXT_FAIL
 */
export class BodyCheck {
  readonly maxLineBytes: number;
  /** Start of the current line (see above). */
  lineStart = 0;
  /** After TEXT_MID: the chunk's last byte is a CR whose LF has not come yet. */
  cr = false;
  /** After TEXT_FAIL: the problem and its position (docs/parser.md "Exact semantics"). */
  kind: DataStatus = 'ok';
  at = 0;
  /** After TEXT_FAIL: where a terminator search may resume, and whether that is a line start. */
  resume = 0;
  resumeAtLine = false;
  /** Word view of the last ArrayBuffer scanned, reused while chunks come from the same one. */
  #ab: ArrayBufferLike | null = null;
  #words: Int32Array | null = null;

  /** maxLineBytes: the longest line, including its CRLF. */
  constructor(maxLineBytes: number) {
    if (!Number.isInteger(maxLineBytes) || maxLineBytes < 2) throw invalidArgument(`maxLineBytes must be an integer >= 2, got ${maxLineBytes}`);
    this.maxLineBytes = maxLineBytes;
  }

  /** The word view for findControlByte over buf's ArrayBuffer, or null when n bytes are too few to be worth it. */
  wordsFor(buf: Buffer, n: number): Int32Array | null {
    if (n < WORD_SCAN_MIN_BYTES) return null;
    const ab = buf.buffer;
    if (ab !== this.#ab || this.#words === null) {
      this.#ab = ab;
      this.#words = new Int32Array(ab, 0, ab.byteLength >>> 2);
    }
    return this.#words;
  }

  /** Drop the cached word view (so the last chunk's ArrayBuffer can be freed). */
  forget(): void {
    this.#ab = null;
    this.#words = null;
  }

  /**
   * The previous chunk ended with a CR: buf[p] must be its LF. Returns the next line start,
   * p + 1 (also in `lineStart`), or TEXT_FAIL.
   */
  heldCr(buf: Buffer, p: number): number {
    const lineStart = this.lineStart;
    if (buf[p] !== LF) return this.#fail('bad-newline', p, lineStart, p, false);
    if (p - lineStart >= this.maxLineBytes) return this.#fail('line-too-long', lineStart + this.maxLineBytes, lineStart, p + 1, true);
    this.lineStart = p + 1;
    return p + 1;
  }

  /**
   * Check text from p (inside the line that began at `lineStart`) towards `end`. Returns a line
   * start q (just after a CRLF; also in `lineStart`) when q = end or, with `untilDot`, when
   * buf[q] is a dot (DATA must look at those); else TEXT_MID or TEXT_FAIL. `words` is
   * wordsFor(buf, ...).
   */
  text(buf: Buffer, words: Int32Array | null, p: number, end: number, untilDot: boolean): number {
    const maxLine = this.maxLineBytes;
    const off = buf.byteOffset;
    let lineStart = this.lineStart;
    for (;;) {
      p = findControlByte(buf, words, off, p, end);
      if (p === end) break;
      const b = buf[p];
      if (b === CR) {
        if (p + 1 === end) {
          this.lineStart = lineStart;
          this.cr = true;
          return TEXT_MID;
        }
        if (buf[p + 1] !== LF) return this.#fail('bad-newline', p + 1, lineStart, p + 1, false);
        p += 2;
        if (p - 1 - lineStart >= maxLine) return this.#fail('line-too-long', lineStart + maxLine, lineStart, p, true);
        lineStart = p;
        if (p === end || (untilDot && buf[p] === DOT)) {
          this.lineStart = lineStart;
          this.cr = false;
          return p;
        }
      } else if (b === LF) {
        return this.#fail('bad-newline', p, lineStart, p + 1, false);
      } else if (b === 0) {
        // Found by the same search as CR and LF (0 < 0x0e), so the check costs nothing per byte.
        return this.#fail('nul-byte', p, lineStart, p + 1, false);
      } else {
        p++; // TAB or another C0 byte: text
      }
    }
    this.lineStart = lineStart;
    this.cr = false;
    return TEXT_MID;
  }

  /** At the end of a chunk: a line that already has more than maxLineBytes bytes is too long now, without waiting for its LF. */
  tooLongAt(end: number): boolean {
    return end - this.lineStart > this.maxLineBytes;
  }

  #fail(kind: DataStatus, at: number, lineStart: number, resume: number, resumeAtLine: boolean): number {
    this.kind = kind;
    this.at = at;
    this.lineStart = lineStart;
    this.resume = resume;
    this.resumeAtLine = resumeAtLine;
    return TEXT_FAIL;
  }
}
