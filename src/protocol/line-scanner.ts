// LineScanner: splits the command stream into lines (RFC 5321 §2.3.8: only CRLF ends a line;
// §4.1.1 commands; §4.5.3.1.4 command line limit, 512 octets including CRLF, more with
// extensions/AUTH). Lines are views of the socket chunk; a line split across chunks is kept as
// views plus a byte count and copied once to finish it. Bounded memory, never throws.
// A bare LF does not end a line: "NOOP<LF>MAIL FROM:<x><CRLF>" is one line, refused whole, so
// its tail never runs as a command (SMTP smuggling in the command stream).
import { invalidArgument } from '../lib/invalid-argument.js';

const CR = 0x0d;
const LF = 0x0a;
const EMPTY = Buffer.alloc(0);

/**
 * 'line': a complete line is in `line` (without CRLF), `end` is just after its LF.
 * 'partial': all of the chunk was consumed (`end` = chunk.length); feed the next with from = 0.
 * 'bad-newline': the line held a bare CR, or has a bare LF (reply 500 5.5.2). Reported once,
 *   at its CRLF for a bare CR, at the first bare LF otherwise: `end` is just after that LF, and
 *   the rest of the line, up to its CRLF, is skipped silently (still counted: past
 *   maxLineBytes it is also 'too-long').
 * 'too-long': the line passed maxLineBytes; `end` is just after the LF where that was seen, or
 *   chunk.length if it came without one. Unless that LF was the line's CRLF, the rest of the
 *   line is skipped silently up to its CRLF.
 */
export type LineKind = 'line' | 'partial' | 'bad-newline' | 'too-long';

/*
 * State between scan() calls (a line that spans chunks):
 *
 *            chunk without LF                         CRLF found
 *   [idle] ─────────────────────▶ [pending: views, ───────────▶ 'line' | 'bad-newline' (bare CR)
 *      ▲                            #pending bytes,              | 'too-long'
 *      │                            #lastCr, #bareCr]
 *      │                             │ bare LF: 'bad-newline'  │ #pending ≥ maxLineBytes, or an
 *      │  CRLF                       ▼                         │ LF past it: 'too-long'
 *      ├─────────────── [SKIP_COUNT: #skipped bytes] ──────────┤
 *      │  CRLF                                                 ▼  ('too-long' once more, at most)
 *      └──────────────────────── [SKIP_ALL] ◀──────────────────┘
 *
 * #pending ≥ maxLineBytes already proves the line too long (its LF is one byte more), so
 * #pending stays < maxLineBytes and a flood without CRLF holds no memory. While skipping,
 * #lastCr says whether the last byte consumed was a CR (a CRLF may straddle two chunks).
 */
/** Not skipping. */
const SKIP_NONE = 0;
/** Skipping a line refused for a bare LF, counting its bytes (#skipped) against maxLineBytes. */
const SKIP_COUNT = 1;
/** Skipping a line already reported too long. */
const SKIP_ALL = 2;

export class LineScanner {
  readonly #maxLineBytes: number;
  #parts: Buffer[] = [];
  /** The buffer a line in three chunks or more is gathered in (see #gather); #parts is then one view of it. */
  #acc: Buffer | null = null;
  #pending = 0;
  /** The last pending byte is a CR (valid only if the next chunk starts with LF). */
  #lastCr = false;
  /** A bare CR was seen in the pending part of the line. */
  #bareCr = false;
  /** Skipping the rest of a refused line, up to its CRLF (SKIP_*). */
  #skip = SKIP_NONE;
  /** SKIP_COUNT: bytes of the refused line so far. */
  #skipped = 0;
  /*
   * Next CR at or after #crFrom in #crChunk (-1: none up to the chunk's end). Without this
   * cache, a search that finds no CR before a line's LF would run on to the chunk's end once
   * per line, which is quadratic; with it every byte is searched at most once.
   */
  #crChunk: Buffer | null = null;
  #crFrom = 0;
  #crAt = -1;

  /** The last complete line, without CRLF (valid after 'line'). */
  line: Buffer = EMPTY;
  /** Offset in the chunk just after what the last scan() consumed. */
  end = 0;

  /** maxLineBytes: the limit including CRLF (RFC 5321: 512; e.g. 4096 with AUTH). */
  constructor(maxLineBytes: number) {
    if (!Number.isInteger(maxLineBytes) || maxLineBytes < 2) {
      throw invalidArgument(`maxLineBytes must be an integer >= 2, got ${maxLineBytes}`);
    }
    this.#maxLineBytes = maxLineBytes;
  }

  /** Bytes of an unfinished line held from earlier chunks (< maxLineBytes). */
  get pendingBytes(): number {
    return this.#pending;
  }

  /**
   * True between lines: no partial line held and no refused line being skipped. A scanner at
   * rest carries nothing from one chunk to the next (the CR cache is keyed by the chunk), so
   * one can serve any number of streams in turn; only a stream that stops mid-line needs its own.
   */
  get atRest(): boolean {
    return this.#pending === 0 && this.#skip === SKIP_NONE && !this.#lastCr;
  }

  /** Forget any partial line (e.g. after STARTTLS, or when DATA takes over the stream). */
  reset(): void {
    this.#dropLine();
    this.#skip = SKIP_NONE;
    this.#skipped = 0;
    this.#crChunk = null;
    this.line = EMPTY;
    this.end = 0;
  }

  /** Scan chunk[from..] for the next line. Never throws. */
  scan(chunk: Buffer, from: number): LineKind {
    const len = chunk.length;
    if (!(from > 0)) from = 0;
    if (this.#skip !== SKIP_NONE) {
      const k = this.#skipLine(chunk, from);
      if (k !== null) return k;
      from = this.end;
    }
    if (from >= len) {
      this.end = len;
      return 'partial';
    }
    const lf = chunk.indexOf(LF, from);
    if (lf < 0) {
      const n = len - from;
      this.end = len;
      if (this.#pending + n >= this.#maxLineBytes) {
        this.#dropLine();
        this.#skip = SKIP_ALL;
        this.#lastCr = chunk[len - 1] === CR;
        return 'too-long';
      }
      // Keep a view. A CR here is bare unless it is the chunk's last byte (then it's decided by
      // the next chunk's first byte); a CR carried in #lastCr is bare, as this byte is no LF.
      const cr = this.#nextCr(chunk, from);
      if (this.#lastCr || (cr >= 0 && cr < len - 1)) this.#bareCr = true;
      this.#lastCr = chunk[len - 1] === CR;
      if (this.#parts.length === 0) this.#parts.push(chunk.subarray(from, len));
      else this.#gather(chunk, from, len);
      this.#pending += n;
      return 'partial';
    }
    this.end = lf + 1;
    // Whether this LF is a CRLF's (the CR may have ended the previous chunk).
    const crlf = lf > from ? chunk[lf - 1] === CR : this.#lastCr;
    if (this.#pending + (lf - from) + 1 > this.#maxLineBytes) {
      this.#dropLine();
      if (!crlf) this.#skip = SKIP_ALL;
      return 'too-long';
    }
    let ok: boolean;
    if (lf === from) {
      ok = this.#lastCr && !this.#bareCr; // the CR, if any, ended the previous chunk
    } else {
      // chunk[lf-1] must be the CR, and the first CR from `from` must be that one.
      ok = chunk[lf - 1] === CR && !this.#bareCr && !this.#lastCr && this.#nextCr(chunk, from) === lf - 1;
    }
    if (!ok) {
      const n = this.#pending + (lf - from) + 1;
      this.#dropLine();
      if (!crlf) {
        // A bare LF: the line goes on to its CRLF, and all of it is refused with this reply.
        this.#skip = SKIP_COUNT;
        this.#skipped = n;
      }
      return 'bad-newline';
    }
    if (this.#pending === 0) {
      this.line = chunk.subarray(from, lf - 1);
    } else {
      // The one copy, for a line split across chunks.
      const size = this.#pending + (lf - from) - 1;
      const out = Buffer.allocUnsafe(size);
      const parts = this.#parts;
      let pos = 0;
      for (let i = 0; i < parts.length && pos < size; i++) {
        const part = parts[i]!;
        pos += part.copy(out, pos, 0, Math.min(part.length, size - pos));
      }
      if (pos < size) chunk.copy(out, pos, from, from + (size - pos));
      this.line = out;
      this.#dropLine();
    }
    return 'line';
  }

  /**
   * Skip the rest of a refused line, up to its CRLF. Returns null when it ended there (`end` just
   * after its LF), else 'partial' (all of the chunk skipped) or 'too-long' (SKIP_COUNT only).
   */
  #skipLine(chunk: Buffer, from: number): LineKind | null {
    const len = chunk.length;
    if (from >= len) {
      this.end = len;
      return 'partial';
    }
    const max = this.#maxLineBytes;
    let p = from;
    for (;;) {
      const lf = p < len ? chunk.indexOf(LF, p) : -1;
      if (lf < 0) {
        this.end = len;
        this.#lastCr = chunk[len - 1] === CR;
        if (this.#skip === SKIP_COUNT) {
          this.#skipped += len - from;
          // As for a pending line: this many bytes and no LF yet is already too long. (After a
          // chunk that ends with a bare LF, the next byte decides: that LF is not the report's.)
          if (this.#skipped >= max && p < len) return this.#tooLongSkipping();
        }
        return 'partial';
      }
      const crlf = lf > from ? chunk[lf - 1] === CR : this.#lastCr;
      if (this.#skip === SKIP_COUNT && this.#skipped + (lf - from) + 1 > max) {
        this.end = lf + 1;
        if (crlf) this.#endSkip();
        else this.#tooLongSkipping();
        this.#lastCr = false; // the last byte consumed is this LF
        return 'too-long';
      }
      if (crlf) {
        this.end = lf + 1;
        this.#endSkip();
        return null;
      }
      p = lf + 1;
    }
  }

  /** A line skipped for a bare LF turned out too long too: skip the rest without counting. */
  #tooLongSkipping(): 'too-long' {
    this.#skip = SKIP_ALL;
    this.#skipped = 0;
    return 'too-long';
  }

  #endSkip(): void {
    this.#skip = SKIP_NONE;
    this.#skipped = 0;
    this.#lastCr = false;
  }

  /**
   * A line in three chunks or more is gathered into one buffer of its own (#acc), growing by
   * doubling up to maxLineBytes: a view per chunk would cost a Buffer object (about 300 bytes
   * of heap) per chunk, so a client sending a byte per packet would make a 2 KiB line hold
   * about 700 KB. The first part stays a view: a line split in two chunks copies nothing more.
   */
  #gather(chunk: Buffer, from: number, end: number): void {
    const size = this.#pending + (end - from);
    let acc = this.#acc;
    if (acc === null || size > acc.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.#maxLineBytes, Math.max(256, size * 2)));
      let pos = 0;
      for (const part of this.#parts) pos += part.copy(grown, pos);
      acc = this.#acc = grown;
    }
    chunk.copy(acc, this.#pending, from, end);
    this.#parts = [acc.subarray(0, size)];
  }

  #dropLine(): void {
    this.#acc = null;
    if (this.#pending !== 0) this.#parts = [];
    this.#pending = 0;
    this.#lastCr = false;
    this.#bareCr = false;
  }

  #nextCr(chunk: Buffer, from: number): number {
    if (chunk !== this.#crChunk || from < this.#crFrom) {
      this.#crChunk = chunk;
      this.#crFrom = from;
      this.#crAt = chunk.indexOf(CR, from);
    } else if (this.#crAt >= 0 && this.#crAt < from) {
      this.#crFrom = from;
      this.#crAt = chunk.indexOf(CR, from);
    }
    return this.#crAt;
  }
}
