// ReplyReader: the outbound twin of reply.ts. It turns the bytes a server sends into replies
// (RFC 5321 §4.2: "250-first", "250 last"; §4.2.1 multi-line replies) and takes the enhanced
// status code off each line (RFC 2034 §4, RFC 3463). Every reply is bounded (line, lines,
// bytes), so a hostile server cannot make it hold more than MAX_REPLY_BYTES plus the chunk in
// hand. Pure: bytes in, values out, no I/O, never throws; the connection decides what an error
// costs (smtp-client closes the link).

/** One reply; `text` is the lines joined by a space, without codes. */
export interface SmtpReply {
  code: number;
  enhanced?: string;
  lines: string[];
  text: string;
}

/*
 * The bounds. RFC 5321 §4.5.3.1.5 allows a reply line 512 octets with its CRLF, but real
 * servers pass it (long 5xx texts with URLs, AUTH lists in EHLO), so we allow four times that.
 * The longest multi-line replies seen in practice are EHLO lists of 10-20 lines and policy
 * texts of a few lines: 100 lines and 64 KiB are far above those and still cap what one reply
 * can make us hold (100 lines of 2048 bytes would be 200 KiB; the byte bound comes first).
 */
/** One reply line, its CRLF included. */
export const MAX_REPLY_LINE_BYTES = 2048;
/** Lines in one (multi-line) reply. */
export const MAX_REPLY_LINES = 100;
/** One reply, every line and CRLF included. */
export const MAX_REPLY_BYTES = 64 * 1024;

export interface ReplyLimits {
  maxLineBytes: number;
  maxLines: number;
  maxReplyBytes: number;
}

export const DEFAULT_REPLY_LIMITS: Readonly<ReplyLimits> = Object.freeze({ maxLineBytes: MAX_REPLY_LINE_BYTES, maxLines: MAX_REPLY_LINES, maxReplyBytes: MAX_REPLY_BYTES });

/**
 * 'reply': a complete reply. 'partial': every byte pushed so far is consumed; push more.
 * The errors leave the reader failed (next() repeats them): 'malformed' (a line that does not
 * start with a 3-digit code), 'line-too-long' (found as soon as the unfinished line reaches
 * the bound, not at its end), 'too-many-lines', 'reply-too-long'.
 */
export type ReplyReadResult =
  | { kind: 'reply'; reply: SmtpReply }
  | { kind: 'partial' }
  | { kind: 'malformed'; line: string }
  | { kind: 'line-too-long' }
  | { kind: 'too-many-lines' }
  | { kind: 'reply-too-long' };

const EMPTY = Buffer.alloc(0);
const PARTIAL: ReplyReadResult = Object.freeze({ kind: 'partial' });
const LINE = /^(\d{3})([ -]?)(.*)$/;
const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)/;

/*
 *   push(chunk) ──► #buf = unread rest + chunk ──► next(): one line at a time from #pos
 *                                                     │ "250-…": kept in #lines
 *                                                     │ "250 …": #lines → 'reply'
 *                                                     └ no LF: the rest is copied (so the
 *                                                       chunk is not pinned) → 'partial'
 */
export class ReplyReader {
  readonly #limits: ReplyLimits;
  #buf: Buffer = EMPTY;
  #pos = 0;
  /** #buf is our own copy (not a view of a pushed chunk). */
  #owned = true;
  #lines: string[] = [];
  /** Bytes of the lines in #lines, CRLFs included. */
  #replyBytes = 0;
  #failed: ReplyReadResult | null = null;

  constructor(limits: Readonly<ReplyLimits> = DEFAULT_REPLY_LIMITS) {
    this.#limits = limits;
  }

  /** Bytes pushed and not yet consumed by next(). */
  get bufferedBytes(): number {
    return this.#buf.length - this.#pos;
  }

  /** Nothing held: no unread byte and no line of an unfinished multi-line reply. */
  get idle(): boolean {
    return this.#buf.length === this.#pos && this.#lines.length === 0;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.#buf.length === this.#pos) {
      this.#buf = chunk;
      this.#owned = false;
    } else {
      this.#buf = Buffer.concat([this.#buf.subarray(this.#pos), chunk]);
      this.#owned = true;
    }
    this.#pos = 0;
  }

  /** The next complete reply, or why there is none. */
  next(): ReplyReadResult {
    if (this.#failed) return this.#failed;
    for (;;) {
      const buf = this.#buf;
      const start = this.#pos;
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) return this.#keepRest();
      const size = nl + 1 - start;
      if (size > this.#limits.maxLineBytes) return this.#fail({ kind: 'line-too-long' });
      this.#replyBytes += size;
      if (this.#replyBytes > this.#limits.maxReplyBytes) return this.#fail({ kind: 'reply-too-long' });
      this.#pos = nl + 1;
      const end = nl > start && buf[nl - 1] === 0x0d ? nl - 1 : nl;
      const line = buf.toString('utf8', start, end);
      const m = LINE.exec(line);
      if (!m) return this.#fail({ kind: 'malformed', line: line.slice(0, 100) });
      this.#lines.push(line);
      if (this.#lines.length > this.#limits.maxLines) return this.#fail({ kind: 'too-many-lines' });
      if (m[2] === '-') continue;
      const lines = this.#lines;
      this.#lines = [];
      this.#replyBytes = 0;
      return { kind: 'reply', reply: toReply(Number(m[1]), lines) };
    }
  }

  #keepRest(): ReplyReadResult {
    const rest = this.#buf.length - this.#pos;
    // Without its LF yet, a line of maxLineBytes is already one byte too long.
    if (rest >= this.#limits.maxLineBytes) return this.#fail({ kind: 'line-too-long' });
    if (this.#replyBytes + rest >= this.#limits.maxReplyBytes) return this.#fail({ kind: 'reply-too-long' });
    if (rest === 0) {
      this.#buf = EMPTY;
      this.#owned = true;
    } else if (this.#pos > 0 || !this.#owned) {
      this.#buf = Buffer.from(this.#buf.subarray(this.#pos));
      this.#owned = true;
    }
    this.#pos = 0;
    return PARTIAL;
  }

  #fail(r: ReplyReadResult): ReplyReadResult {
    this.#failed = r;
    this.#buf = EMPTY;
    this.#pos = 0;
    this.#lines = [];
    this.#replyBytes = 0;
    return r;
  }
}

/** The enhanced code is taken when its class matches the reply's (first one wins). */
function toReply(code: number, lines: string[]): SmtpReply {
  let enhanced: string | undefined;
  const cls = String(code)[0];
  const texts = lines.map((l) => {
    let t = l.slice(4);
    const e = ENHANCED.exec(t);
    if (e && e[1] === cls) {
      enhanced ??= `${e[1]}.${e[2]}.${e[3]}`;
      t = t.slice(e[0].length);
    }
    return t;
  });
  const r: SmtpReply = { code, lines: texts, text: texts.join(' ') };
  if (enhanced !== undefined) r.enhanced = enhanced;
  return r;
}
