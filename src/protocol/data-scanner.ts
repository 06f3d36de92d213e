// DataScanner: the content of a DATA command (RFC 5321 §4.1.1.4), received as socket chunks.
// Finds the end "\r\n.\r\n", removes dot-stuffing (§4.5.2) and enforces, with BDAT's code
// (body-check.ts), strict line ends (only CRLF; a bare CR or LF refuses the message, against
// SMTP smuggling, CVE-2023-51764) and the 1000-octet line limit (§4.5.3.1.6), and
// maxMessageBytes (§4.5.3.1.7; RFC 1870). No I/O, no copies of chunks: the body is kept as
// views (BodyPieces) and copied once by takeBody().

import { BodyCheck, TEXT_FAIL, TEXT_MID, type DataStatus } from './body-check.js';
import { BodyPieces } from './body-pieces.js';
import { invalidArgument } from '../lib/invalid-argument.js';

export type { DataStatus } from './body-check.js';

export interface DataScannerOptions {
  /** Largest body accepted, after unstuffing, including the final CRLF. */
  maxMessageBytes: number;
  /** Longest line, including its CRLF, not counting a stuffing dot. Default 1000 (998 + CRLF). */
  maxLineBytes?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
/** The one and only end of DATA. Never "\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", ... */
const TERMINATOR = Buffer.from('\r\n.\r\n', 'latin1');

/*
 * The carry state: how much of "\r\n.\r\n" ends the bytes seen so far (the KMP state of that
 * needle). Besides the current line's length it is all that is carried across chunks.
 * begin() starts in S_LINE, as if a CRLF came just before DATA's first byte.
 *
 *       ┌───────────────── other ─────────────────┐
 *       ▼                                          │
 *   S_TEXT ──CR──▶ S_CR ──LF──▶ S_LINE ──"."──▶ S_DOT ──CR──▶ S_DOT_CR ──LF──▶ END
 *     ▲ ▲                        │   │                                 (5th byte consumed)
 *     │ └──────── other ─────────┘   └──CR──▶ S_CR
 *     └── S_DOT + other: the dot was stuffing; it is dropped and the byte is text
 *
 *   Refused (status 'bad-newline'): S_CR + not LF, S_DOT_CR + not LF (bare CR);
 *   LF in S_TEXT, S_LINE or S_DOT (bare LF). Lines over maxLineBytes: 'line-too-long'.
 *
 * In the body, S_TEXT is handled in bulk (BodyCheck.text jumps from line end to line end, and
 * stops only at a dot at a line start); the other states last a byte or two. After a problem the same five states drive a terminator-only
 * search, with the refusals replaced by the plain KMP fallbacks (CR → S_CR, else S_TEXT).
 */
const S_TEXT = 0; // inside a line
const S_CR = 1; // "\r" (a CR, waiting for its LF)
const S_LINE = 2; // "\r\n" (at a line start)
const S_DOT = 3; // "\r\n." (a dot at a line start: stuffing, or the terminator)
const S_DOT_CR = 4; // "\r\n.\r"
const S_MATCH = 5; // "\r\n.\r\n"

/** One step of the needle automaton, used only for the few bytes around chunk edges. */
function step(s: number, b: number): number {
  if (b === CR) return s === S_DOT ? S_DOT_CR : S_CR;
  if (b === LF) return s === S_CR ? S_LINE : s === S_DOT_CR ? S_MATCH : S_TEXT;
  if (b === DOT && s === S_LINE) return S_DOT;
  return S_TEXT;
}

export class DataScanner {
  readonly #maxMessageBytes: number;
  readonly #check: BodyCheck;
  readonly #body = new BodyPieces();
  /** Body bytes: in #body while 'ok'; after a problem, frozen at the bytes before it. */
  #size = 0;
  #status: DataStatus = 'ok';
  #state = S_LINE;
  /** Bytes of the current line received in earlier chunks (not counting a stuffing dot). */
  #lineLen = 0;
  #ended = false;

  constructor(opts: DataScannerOptions) {
    if (!(opts.maxMessageBytes >= 0)) throw invalidArgument(`maxMessageBytes must be >= 0, got ${opts.maxMessageBytes}`);
    this.#check = new BodyCheck(opts.maxLineBytes ?? 1000);
    this.#maxMessageBytes = opts.maxMessageBytes;
    this.begin();
  }

  /** Unstuffed body so far, as views; ends with the CRLF that preceded ".\r\n". Empty once status is not 'ok'. */
  get pieces(): Buffer[] {
    return this.#body.list;
  }
  /** Body bytes so far (after unstuffing). Once status is not 'ok': the body bytes before the problem. */
  get size(): number {
    return this.#size;
  }
  get status(): DataStatus {
    return this.#status;
  }
  /** True once the terminator has been consumed (until the next begin()). */
  get ended(): boolean {
    return this.#ended;
  }

  /** Start a message. The start of DATA counts as if a CRLF came just before it. */
  begin(): void {
    this.#body.clear();
    this.#size = 0;
    this.#status = 'ok';
    this.#state = S_LINE;
    this.#lineLen = 0;
    this.#ended = false;
    this.#check.forget();
  }

  /**
   * Scan chunk[from..]. Returns -1 if all of it was consumed and the message goes on, else the
   * offset just after the terminating CRLF.CRLF (pipelined commands may follow). Once the
   * message has ended, returns `from` (nothing consumed) until begin(). Never throws.
   */
  feed(chunk: Buffer, from: number): number {
    if (!(from > 0)) from = 0;
    if (this.#ended) return from;
    const end = chunk.length;
    if (from >= end) return -1;
    if (this.#status !== 'ok') return this.#skip(chunk, from, end, this.#state);
    return this.#scan(chunk, from, end);
  }

  /** The one copy: prefix (e.g. a Received header) then the body, in one exact-size Buffer; clears pieces. */
  takeBody(prefix?: Buffer): Buffer {
    return this.#body.take(prefix);
  }

  /** The hot path: status is 'ok'. */
  #scan(buf: Buffer, from: number, end: number): number {
    const check = this.#check;
    const maxLine = check.maxLineBytes;
    const words = check.wordsFor(buf, end - from);
    let p = from;
    let pieceStart = from; // start of the body bytes not yet pushed
    let lineStart = from - this.#lineLen; // may be negative: the line began in an earlier chunk
    let s = this.#state;

    // What the previous chunk left open: a CR, or ".\r" at a line start (S_DOT and S_LINE are
    // handled by the loop). Both need one byte.
    if (s === S_CR) {
      check.lineStart = lineStart;
      p = check.heldCr(buf, p);
      if (p === TEXT_FAIL) return this.#failCheck(buf, pieceStart);
      lineStart = p;
      s = S_LINE;
    } else if (s === S_DOT_CR) {
      if (buf[p] === LF) return this.#end(p + 1);
      // The held CR (not in pieces) counts as body byte p - 1 of this line.
      return this.#fail('bad-newline', buf, p, p - 1, p - 1, p, S_TEXT);
    }

    for (;;) {
      if (s === S_LINE) {
        if (p === end) break;
        if (buf[p] !== DOT) {
          s = S_TEXT;
        } else {
          // A dot at a line start: the bytes before it are body either way.
          this.#body.push(buf, pieceStart, p);
          this.#size += p - pieceStart;
          pieceStart = ++p;
          lineStart = p; // the stuffing dot does not count towards the line length
          if (this.#size > this.#maxMessageBytes) return this.#fail('too-big', buf, p, lineStart, p, p, S_DOT);
          s = S_DOT;
        }
      }
      if (s === S_DOT) {
        if (p === end) break;
        if (buf[p] !== CR) {
          s = S_TEXT; // stuffing: the dot is gone, this byte is text
        } else if (p + 1 === end) {
          s = S_DOT_CR;
          break;
        } else if (buf[p + 1] === LF) {
          return this.#end(p + 2);
        } else {
          return this.#fail('bad-newline', buf, p + 1, lineStart, pieceStart, p + 1, S_TEXT);
        }
      }
      // S_TEXT: on to the end of the chunk, or to a line that starts with a dot.
      check.lineStart = lineStart;
      p = check.text(buf, words, p, end, true);
      if (p === TEXT_FAIL) return this.#failCheck(buf, pieceStart);
      lineStart = check.lineStart;
      if (p === TEXT_MID) {
        s = check.cr ? S_CR : S_TEXT;
        p = end;
        break;
      }
      s = S_LINE;
    }

    // The chunk is consumed. A line that already has maxLine bytes and no LF is too long now,
    // without waiting for its end.
    check.lineStart = lineStart;
    if (check.tooLongAt(end)) return this.#fail('line-too-long', buf, lineStart + maxLine, lineStart, pieceStart, end, s);
    // In S_DOT_CR the CR is held back: it is body only if no LF follows.
    const keepEnd = s === S_DOT_CR ? end - 1 : end;
    if (keepEnd > pieceStart) {
      this.#body.push(buf, pieceStart, keepEnd);
      this.#size += keepEnd - pieceStart;
      if (this.#size > this.#maxMessageBytes) return this.#fail('too-big', buf, keepEnd, lineStart, keepEnd, end, s);
    }
    this.#state = s;
    this.#lineLen = end - lineStart;
    return -1;
  }

  /** #fail for the problem BodyCheck reported. */
  #failCheck(buf: Buffer, pieceStart: number): number {
    const c = this.#check;
    return this.#fail(c.kind, buf, c.at, c.lineStart, pieceStart, c.resume, c.resumeAtLine ? S_LINE : S_TEXT);
  }

  /**
   * Record the first problem and go on looking only for the terminator.
   * `x` is where `kind` was seen; an over-long line or an over-size body that began before x
   * wins (so the result does not depend on where the chunks were split). Body bytes before x
   * are this.#size (pushed) + x - pieceStart. Resumes the search at `resume` in state `s`.
   */
  #fail(kind: DataStatus, buf: Buffer, x: number, lineStart: number, pieceStart: number, resume: number, s: number): number {
    const maxLine = this.#check.maxLineBytes;
    if (x - lineStart > maxLine) {
      kind = 'line-too-long';
      x = lineStart + maxLine;
    }
    const before = this.#size + (x - pieceStart);
    if (before > this.#maxMessageBytes) {
      kind = 'too-big';
      this.#size = this.#maxMessageBytes;
    } else {
      this.#size = before;
    }
    this.#status = kind;
    this.#body.clear();
    this.#lineLen = 0;
    return this.#skip(buf, resume, buf.length, s);
  }

  /** Status is not 'ok': only find the terminator, at indexOf speed, keeping nothing. */
  #skip(buf: Buffer, p: number, end: number, s: number): number {
    const from = p;
    // A partial match carried from the last chunk needs at most 4 more bytes.
    if (s !== S_TEXT) {
      const lim = Math.min(end, p + 4);
      while (p < lim) {
        s = step(s, buf[p++]!);
        if (s === S_MATCH) return this.#end(p);
      }
      if (p === end) {
        this.#state = s;
        return -1;
      }
    }
    const at = buf.indexOf(TERMINATOR, from);
    if (at >= 0) return this.#end(at + 5);
    // No match: the carry is the longest suffix that is a prefix of the needle, which lies in
    // the last 4 bytes. (With fewer than 4 bytes and s = S_TEXT, run them all from s.)
    if (end - from >= 4) {
      s = S_TEXT;
      p = end - 4;
    } else {
      p = from;
    }
    while (p < end) s = step(s, buf[p++]!);
    this.#state = s;
    return -1;
  }

  #end(offset: number): number {
    this.#ended = true;
    this.#check.forget();
    return offset;
  }
}
