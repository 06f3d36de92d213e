// BdatReader: the bytes of BDAT chunks (RFC 3030 CHUNKING), read by exact count; no dot-stuffing
// and no terminator. Applies DATA's strict checks (body-check.ts: RFC 5321 §4.5.2 bare CR/LF,
// §4.5.3.1.6 line length) carried across BDAT chunks and socket chunks, and maxMessageBytes
// (§4.5.3.1.7) over the whole message. Bytes past a problem are still consumed (counted, not
// kept) to stay in sync.

import assert from 'node:assert/strict';
import { BodyCheck, TEXT_FAIL, TEXT_MID, type DataStatus } from './body-check.js';
import { BodyPieces } from './body-pieces.js';
import { invalidArgument } from '../lib/invalid-argument.js';

export type { DataStatus } from './body-check.js';

export interface BdatReaderOptions {
  /** Largest message accepted, summed over all its BDAT chunks. */
  maxMessageBytes: number;
  /** Longest line, including its CRLF. Default 1000 (998 + CRLF). */
  maxLineBytes?: number;
}

/*
 * Carry state between feeds (socket chunks) and between BDAT chunks, which are one byte stream:
 *
 *   #cr = false ──CR as last byte──▶ #cr = true ──next byte LF──▶ #cr = false (a valid CRLF)
 *                                         └────next byte other──▶ 'bad-newline' (bare CR)
 *   #lineLen: bytes of the current line so far (≥ maxLineBytes + 1 ⇒ 'line-too-long')
 *
 * A CR that is the very last byte of the message (BDAT LAST) is bare: finish() reports it.
 */
export class BdatReader {
  readonly #maxMessageBytes: number;
  readonly #check: BodyCheck;
  readonly #body = new BodyPieces();
  #size = 0;
  #status: DataStatus = 'ok';
  #remaining = 0;
  #cr = false;
  #lineLen = 0;
  #binary = false;
  /** The current BDAT chunk is the LAST one: finish() runs when its last byte is read. */
  #last = false;

  constructor(opts: BdatReaderOptions) {
    if (!(opts.maxMessageBytes >= 0)) throw invalidArgument(`maxMessageBytes must be >= 0, got ${opts.maxMessageBytes}`);
    this.#check = new BodyCheck(opts.maxLineBytes ?? 1000);
    this.#maxMessageBytes = opts.maxMessageBytes;
    this.begin();
  }

  /** The body so far, as views of the input. Empty once status is not 'ok'. */
  get pieces(): Buffer[] {
    return this.#body.list;
  }
  /** Body bytes so far. Once status is not 'ok': the bytes before the problem. */
  get size(): number {
    return this.#size;
  }
  get status(): DataStatus {
    return this.#status;
  }
  /** Bytes of the current BDAT chunk still to be read. */
  get remaining(): number {
    return this.#remaining;
  }

  /**
   * Start a message. `binaryMime` (MAIL FROM ... BODY=BINARYMIME, RFC 3030 §3) turns off the
   * line checks, since such a body may hold any octets; the size limit still applies.
   */
  begin(binaryMime = false): void {
    this.#body.clear();
    this.#size = 0;
    this.#status = 'ok';
    this.#remaining = 0;
    this.#cr = false;
    this.#lineLen = 0;
    this.#binary = binaryMime;
    this.#last = false;
    this.#check.forget();
  }

  /**
   * A "BDAT n [LAST]" command arrived: expect n more bytes. With `last`, finish() runs by itself
   * once they are read (at once for "BDAT 0 LAST"). Throws (a session bug, not client input) if
   * n is not a non-negative safe integer or the previous chunk is not yet fully read.
   */
  chunk(n: number, last = false): void {
    if (!Number.isSafeInteger(n) || n < 0) throw invalidArgument(`BDAT chunk size must be a non-negative safe integer, got ${n}`);
    assert.equal(this.#remaining, 0, `BDAT chunk announced while ${this.#remaining} bytes of the previous one are unread`);
    this.#remaining = n;
    this.#last = last;
    if (last && n === 0) this.finish();
  }

  /**
   * Read up to `remaining` bytes of chunk[from..]. Returns -1 if all of it was consumed and more
   * bytes are expected, else the offset just after this BDAT chunk's last byte (which is `from`
   * when nothing was expected, e.g. after BDAT 0). Never throws.
   */
  feed(chunk: Buffer, from: number): number {
    if (!(from > 0)) from = 0;
    if (this.#remaining === 0) return from;
    const avail = chunk.length - from;
    if (avail <= 0) return -1;
    const n = avail < this.#remaining ? avail : this.#remaining;
    const end = from + n;
    this.#remaining -= n;
    if (this.#status === 'ok') {
      if (this.#binary) this.#keep(chunk, from, end, from);
      else this.#scan(chunk, from, end);
    }
    if (this.#remaining !== 0) return -1;
    if (this.#last) this.finish();
    return end;
  }

  /**
   * The message is complete (after BDAT ... LAST; chunk(n, true) calls this itself): a CR that
   * ended the message is a bare CR. Returns the final status.
   */
  finish(): DataStatus {
    if (this.#status === 'ok' && this.#cr) this.#fail('bad-newline', 0, -this.#lineLen, 0);
    this.#cr = false;
    this.#last = false;
    return this.#status;
  }

  /** The one copy: prefix then the body, in one exact-size Buffer; clears pieces. */
  takeBody(prefix?: Buffer): Buffer {
    return this.#body.take(prefix);
  }

  #scan(buf: Buffer, from: number, end: number): void {
    const check = this.#check;
    const words = check.wordsFor(buf, end - from);
    let p = from;
    check.lineStart = from - this.#lineLen;
    if (this.#cr) {
      this.#cr = false;
      p = check.heldCr(buf, p);
      if (p === TEXT_FAIL) return this.#fail(check.kind, check.at, check.lineStart, from);
    }
    const q = check.text(buf, words, p, end, false);
    if (q === TEXT_FAIL) return this.#fail(check.kind, check.at, check.lineStart, from);
    if (q === TEXT_MID) this.#cr = check.cr;
    const lineStart = check.lineStart;
    if (check.tooLongAt(end)) return this.#fail('line-too-long', lineStart + check.maxLineBytes, lineStart, from);
    this.#lineLen = end - lineStart;
    this.#keep(buf, from, end, lineStart);
  }

  /** Keep buf[from, end) and apply the size limit. */
  #keep(buf: Buffer, from: number, end: number, lineStart: number): void {
    if (this.#size + (end - from) > this.#maxMessageBytes) {
      this.#fail('too-big', end, lineStart, from);
      return;
    }
    this.#body.push(buf, from, end);
    this.#size += end - from;
  }

  /** As DataScanner's #fail: an over-long line or over-size body that began before x wins. */
  #fail(kind: DataStatus, x: number, lineStart: number, pieceStart: number): void {
    const maxLine = this.#check.maxLineBytes;
    if (!this.#binary && x - lineStart > maxLine) {
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
    this.#cr = false;
    this.#check.forget();
  }
}
