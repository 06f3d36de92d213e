// Reference models for the protocol scanners: slow, per-byte, written from the rules and not
// from the fast code, so that the property tests can compare the two on random streams.
// Rules (RFC 5321 §4.1.1.4, §4.5.2, §4.5.3.1.6; RFC 3030): see docs/parser.md "Exact semantics".

import type { DataStatus } from '../../src/protocol/data-scanner.js';
import type { LineKind } from '../../src/protocol/line-scanner.js';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

export interface BodyResult {
  status: DataStatus;
  /** The body when status is 'ok', else empty. */
  body: Buffer;
  size: number;
}
export interface DataResult extends BodyResult {
  /** Offset in the stream just after CRLF.CRLF, or -1. */
  end: number;
}

/** Per-byte body checks shared by the DATA and BDAT models. Each byte is judged at its position. */
class BodyModel {
  status: DataStatus = 'ok';
  bytes: number[] = [];
  size = 0;
  #lineLen = 0;
  #prevCr = false;
  constructor(
    readonly maxMessageBytes: number,
    readonly maxLineBytes: number,
    readonly binary = false,
  ) {}
  /** A body byte arrives (in stream order). The first problem wins; at one position the order is bare CR/LF, NUL, line length, size. */
  add(c: number): void {
    if (this.status !== 'ok') return;
    if (!this.binary) {
      if (this.#prevCr && c !== LF) return this.#fail('bad-newline');
      if (!this.#prevCr && c === LF) return this.#fail('bad-newline');
      if (c === 0) return this.#fail('nul-byte');
      if (this.#lineLen >= this.maxLineBytes) return this.#fail('line-too-long');
    }
    if (this.size >= this.maxMessageBytes) return this.#fail('too-big');
    this.bytes.push(c);
    this.size++;
    this.#lineLen = c === LF ? 0 : this.#lineLen + 1;
    this.#prevCr = c === CR;
  }
  /** The end of the message (BDAT): a CR as the last byte is bare. */
  finish(): void {
    if (this.status === 'ok' && !this.binary && this.#prevCr) this.#fail('bad-newline');
  }
  result(): BodyResult {
    return { status: this.status, body: this.status === 'ok' ? Buffer.from(this.bytes) : Buffer.alloc(0), size: this.size };
  }
  #fail(s: DataStatus): void {
    this.status = s;
    this.bytes = [];
  }
}

/**
 * DATA: the stream from the first byte after "354". The start counts as a line start. A "." at a
 * line start is dropped unless it begins "\r\n.\r\n" (the end); the end is found by matching
 * "\r\n.\r\n" on the raw bytes, whatever the status.
 */
export function modelData(stream: Buffer, maxMessageBytes: number, maxLineBytes = 1000): DataResult {
  const body = new BodyModel(maxMessageBytes, maxLineBytes);
  // Raw-byte matcher: the last (up to) 4 bytes and whether we are at a line start.
  const recent: number[] = [CR, LF];
  let heldDot = false; // a dot at a line start, not yet known to be stuffing or the end
  let heldCr = false; // "\r" right after such a dot
  for (let i = 0; i < stream.length; i++) {
    const c = stream[i]!;
    recent.push(c);
    if (recent.length > 5) recent.shift();
    if (recent.length === 5 && recent[0] === CR && recent[1] === LF && recent[2] === DOT && recent[3] === CR && recent[4] === LF) {
      return { ...body.result(), end: i + 1 };
    }
    if (heldCr) {
      // ".\r" then not LF: the CR was body (a bare one), then this byte.
      heldDot = heldCr = false;
      body.add(CR);
      body.add(c);
      continue;
    }
    if (heldDot) {
      if (c === CR) {
        heldCr = true;
        continue;
      }
      heldDot = false; // stuffing: dropped
      body.add(c);
      continue;
    }
    const atLineStart = recent.length >= 3 && recent[recent.length - 3] === CR && recent[recent.length - 2] === LF;
    if (c === DOT && atLineStart) {
      heldDot = true;
      continue;
    }
    body.add(c);
  }
  return { ...body.result(), end: -1 };
}

/** BDAT: the concatenation of all chunks of one message, then finish(). */
export function modelBdat(stream: Buffer, maxMessageBytes: number, maxLineBytes = 1000, binary = false): BodyResult {
  const body = new BodyModel(maxMessageBytes, maxLineBytes, binary);
  for (const c of stream) body.add(c);
  body.finish();
  return body.result();
}

export interface LineEvent {
  kind: Exclude<LineKind, 'partial'>;
  /** The line without CRLF, for 'line'. */
  line?: string;
  /** Stream offset after the LF; absent for a 'too-long' reported before its LF. */
  end?: number;
}

/**
 * Command lines: only CRLF ends a line. A line that reaches maxLineBytes bytes without an LF, or
 * whose bytes up to an LF pass maxLineBytes, is 'too-long' (reported once: before its LF, then
 * without `end`, or at that LF). Else, at its first bare LF (an LF not right after a CR) it is
 * 'bad-newline' (and can still be 'too-long' later); else, at its CRLF, it is a 'line' if it
 * holds no other CR, or 'bad-newline'. A refused line yields nothing more up to its CRLF.
 */
export function modelLines(stream: Buffer, maxLineBytes: number): LineEvent[] {
  const out: LineEvent[] = [];
  let start = 0;
  for (;;) {
    let p = start;
    let refused = false;
    let tooLong = false;
    for (;;) {
      const lf = stream.indexOf(LF, p);
      if (lf < 0) {
        // Reported before the LF arrived if maxLineBytes bytes came without one (and the last
        // bytes are not an LF's: the byte after it decides); the model cannot know the chunking,
        // so the test compares `end` only when the scanner had the LF.
        if (!tooLong && stream.length > p && stream.length - start >= maxLineBytes) out.push({ kind: 'too-long' });
        return out;
      }
      const crlf = lf > start && stream[lf - 1] === CR;
      if (!tooLong && lf + 1 - start > maxLineBytes) {
        out.push({ kind: 'too-long', end: lf + 1 });
        tooLong = refused = true;
      } else if (!refused && !crlf) {
        out.push({ kind: 'bad-newline', end: lf + 1 });
        refused = true;
      }
      if (crlf) {
        if (!refused) {
          const line = stream.subarray(start, lf - 1);
          if (line.indexOf(CR) >= 0) out.push({ kind: 'bad-newline', end: lf + 1 });
          else out.push({ kind: 'line', line: line.toString('latin1'), end: lf + 1 });
        }
        start = lf + 1;
        break;
      }
      p = lf + 1;
    }
  }
}
