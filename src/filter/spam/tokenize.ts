// Tokens for the spam classifier: a set of strings per message (presence, not counts).
//   body words      lower-cased, 2..24 characters ("w" prefix-free: the bare word)
//   header tokens   "<h>:" + word for Subject, From, To/Cc, Reply-To, Return-Path, X-Mailer,
//                   User-Agent, Content-Type...; Received "rcvd:" hosts; Message-ID host
//   link hosts      "url:" + host, and its parent domains
//   structure       "meta:..." (HTML only, image count, recipients, all-caps subject,
//                   missing Date/Message-ID, charsets, transfer encodings, attachment types)
//   bigrams         "w1 w2" of adjacent body words (optional)
// Feature set 2 (the default since model format version 2) adds what wrote the message:
//   header order    "hseq:a>b" and "hseq3:a>b>c" for consecutive (lower-case) header names,
//                   "" before the first: every mail client, bulk mailer, MTA and list manager
//                   writes or adds its headers in its own order
// tokenize/tokensOf give the tokens as strings (readable: tests, debugging); tokenBuckets gives
// what the model uses, hashToken(token) & (2^bits - 1) for each, unique, and hashes
// words as it scans them and the header order as it walks it, without building their strings.
// Two views (model format 3): every token is either content (body and subject words, link
// hosts, structure: tokenView 0) or header (the other header tokens, Received, Message-ID,
// header order: tokenView 1); with views = 2 a header token's bucket is offset by 2^bits, so
// the model can weigh the two sides apart. With two views, a message that came through a
// mailing list (List-Id, Mailing-List, X-Mailman-Version... headers) also gets the fact
// LIST_TOKEN (bucket 2^(bits+1), not hashed): the model's stacker trusts the two sides
// differently there.
import { extract, type Extracted } from './extract.js';

export interface TokenizeOptions {
  bigrams?: boolean;
  /** feature set: 1 = the tokens of model format version 1, 2 = FEATURE_SET (the default) */
  featureSet?: number;
  /** 2: header-view buckets offset by 2^bits (see tokenView); 1 (the default): one space */
  views?: number;
}

// prefixes of tokens on the content side besides the bare (prefix-free) words
const CONTENT_PREFIXES = new Set(['long', 'url', 'meta', 'part', 'cs', 'enc', 'file']);
/**
 * The token (with two views) of a message that came through a mailing list; no word or
 * header token can be this string (NUL is never part of one).
 */
export const LIST_TOKEN = '\0list';
const LIST_HEADERS = new Set(['list-id', 'list-unsubscribe', 'list-post', 'list-help', 'mailing-list', 'x-mailman-version', 'x-beenthere', 'x-loop', 'x-ml-name']);

/**
 * The view of a token string: 0 content (body and subject words, "long:", link hosts,
 * structure), 1 header (everything else). tokenBuckets does not look at the strings: it knows
 * the side from where it is in the message, and a test holds it to this rule.
 */
export function tokenView(token: string): 0 | 1 {
  const c = token.indexOf(':');
  return c < 0 || CONTENT_PREFIXES.has(token.slice(0, c)) ? 0 : 1;
}

/** The feature set new models are trained with. */
export const FEATURE_SET = 2;

const FNV_OFFSET = 0x811c9dc5;

/** FNV-1a state after `s` (UTF-16 code units), starting from state h. */
function fnv(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

function mix(h: number): number {
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

/** The 32-bit hash of a token (FNV-1a over UTF-16 code units, then a final mix). */
export function hashToken(s: string): number {
  return mix(fnv(FNV_OFFSET, s));
}

// A word: a run of letters/digits/currency, inner ' _ - allowed (so edges come trimmed), i.e.
// /[\p{L}\p{N}$€£¥%!]+(?:['_-]+[\p{L}\p{N}$€£¥%!]+)*/u over the lower-cased text. The scanner
// below matches exactly that without a regex and without building a string per word.
const MIN_LEN = 2;
const MAX_LEN = 24;
const MAX_WORDS = 6000;

const WORD_CHAR = /^[\p{L}\p{N}$€£¥%!]$/u;
const ASCII_WORD = new Uint8Array(128);
for (let c = 0; c < 128; c++) ASCII_WORD[c] = WORD_CHAR.test(String.fromCharCode(c)) ? 1 : 0;
/** BMP code units above ASCII: 0 = not looked at yet, 1 = word character, 2 = not */
const BMP_WORD = new Uint8Array(65536);

/** Length in code units (1 or 2) of the word character at s[i], or 0 if s[i] starts none. */
function wordCharLen(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c < 128) return ASCII_WORD[c]!;
  if (c >= 0xd800 && c <= 0xdfff) {
    // a surrogate pair is one code point; a lone surrogate is never a word character
    if (c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) return WORD_CHAR.test(s.slice(i, i + 2)) ? 2 : 0;
    }
    return 0;
  }
  let k = BMP_WORD[c]!;
  if (k === 0) BMP_WORD[c] = k = WORD_CHAR.test(String.fromCharCode(c)) ? 1 : 2;
  return k === 1 ? 1 : 0;
}

const isJoiner = (c: number): boolean => c === 0x27 || c === 0x5f || c === 0x2d; // ' _ -

/**
 * Where tokens go: their strings into a Set (tokenize, tokensOf: readable, for tests and
 * debugging), or straight into hashed buckets (tokenBuckets: what the model uses), without
 * building the strings of words.
 */
interface Sink {
  add(token: string): void;
  /** the token prefix + s.slice(start, end), without building it in the bucket sink */
  addSlice(prefix: string, s: string, start: number, end: number): void;
  /** the token prefix + s.slice(start, end), whose FNV state (before the final mix) is h */
  addWord(prefix: string, h: number, s: string, start: number, end: number): void;
  /** the token prefix + s.slice(a, b) + ' ' + s.slice(c, d) */
  addPair(prefix: string, ph: number, s: string, a: number, b: number, c: number, d: number): void;
  /** the view of the tokens that follow (0 content, 1 header) */
  view: 0 | 1;
  /** the message came through a mailing list (LIST_TOKEN) */
  list(): void;
}

class StringSink implements Sink {
  readonly set = new Set<string>();
  view: 0 | 1 = 0;
  add(token: string): void {
    this.set.add(token);
  }
  addSlice(prefix: string, s: string, start: number, end: number): void {
    this.set.add(prefix + s.slice(start, end));
  }
  addWord(prefix: string, _h: number, s: string, start: number, end: number): void {
    this.set.add(prefix + s.slice(start, end));
  }
  addPair(prefix: string, _ph: number, s: string, a: number, b: number, c: number, d: number): void {
    this.set.add(prefix + s.slice(a, b) + ' ' + s.slice(c, d));
  }
  list(): void {
    this.set.add(LIST_TOKEN);
  }
}

/**
 * Buckets into an array, each once. Repeats (a message repeats its words) are dropped as they
 * come by a small open-addressing set (slots stamped with a generation, so nothing is cleared
 * between messages) that stays in the CPU cache, unlike a table of 2^bits entries. The arrays
 * are reused from message to message (tokenBuckets is synchronous; each worker thread has its own).
 */
class BucketSink implements Sink {
  private static out = new Uint32Array(1024);
  private static keys = new Uint32Array(2048);
  private static stamps = new Uint32Array(2048);
  private static generation = 0;

  n = 0;
  /** the view of the tokens that follow; with two views, header buckets are offset by mask + 1 */
  view: 0 | 1 = 0;
  /** the message came through a mailing list (with two views: one fact bucket past both) */
  private isList = false;
  private gen = 0;
  constructor(readonly mask: number, private readonly views = 1) {
    this.reset();
  }

  /** Forget what was added. */
  reset(): void {
    this.n = 0;
    this.isList = false;
    if (BucketSink.generation === 0xffffffff) {
      BucketSink.stamps.fill(0);
      BucketSink.generation = 0;
    }
    this.gen = ++BucketSink.generation;
  }

  list(): void {
    this.isList = true;
  }

  /** The buckets added, each once, in the order they came (then the list fact, if any). */
  result(): Uint32Array {
    if (!this.isList) return BucketSink.out.slice(0, this.n);
    const a = new Uint32Array(this.n + 1);
    a.set(BucketSink.out.subarray(0, this.n));
    a[this.n] = 2 * (this.mask + 1);
    return a;
  }

  push(h: number): void {
    const b = this.view && this.views > 1 ? (mix(h) & this.mask) + this.mask + 1 : mix(h) & this.mask;
    const keys = BucketSink.keys, stamps = BucketSink.stamps, slots = keys.length - 1;
    let i = b & slots;
    while (stamps[i] === this.gen) {
      if (keys[i] === b) return;
      i = (i + 1) & slots;
    }
    stamps[i] = this.gen;
    keys[i] = b;
    let out = BucketSink.out;
    if (this.n === out.length) {
      out = new Uint32Array(out.length * 2);
      out.set(BucketSink.out);
      BucketSink.out = out;
    }
    out[this.n++] = b;
    if (this.n * 2 > slots) this.grow();
  }

  /** Twice the slots, the buckets so far re-inserted (under a new generation). */
  private grow(): void {
    const size = BucketSink.keys.length * 2;
    BucketSink.keys = new Uint32Array(size);
    BucketSink.stamps = new Uint32Array(size);
    BucketSink.generation = 0;
    this.gen = ++BucketSink.generation;
    const keys = BucketSink.keys, stamps = BucketSink.stamps, out = BucketSink.out;
    for (let k = 0; k < this.n; k++) {
      const b = out[k]!;
      let i = b & (size - 1);
      while (stamps[i] === this.gen) i = (i + 1) & (size - 1);
      stamps[i] = this.gen;
      keys[i] = b;
    }
  }

  add(token: string): void {
    this.push(fnv(FNV_OFFSET, token));
  }
  addSlice(prefix: string, s: string, start: number, end: number): void {
    let h = fnv(FNV_OFFSET, prefix);
    for (let i = start; i < end; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    this.push(h);
  }
  addWord(_prefix: string, h: number): void {
    this.push(h);
  }
  addPair(_prefix: string, ph: number, s: string, a: number, b: number, c: number, d: number): void {
    let h = ph;
    for (let i = a; i < b; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ 0x20, 0x01000193);
    for (let i = c; i < d; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    this.push(h);
  }
}

/** The words of text as tokens prefix + word. */
function words(text: string, prefix: string, into: Sink, bigrams: boolean, limit = MAX_WORDS): void {
  const ph = fnv(FNV_OFFSET, prefix);
  const s = text.toLowerCase();
  const len = s.length;
  let prevStart = -1, prevEnd = -1; // the previous word, for bigrams
  let n = 0;
  let i = 0;
  while (i < len) {
    let c = s.charCodeAt(i);
    let k = wordCharLen(s, i);
    if (k === 0) { i++; continue; }
    const start = i;
    let h = ph; // FNV of prefix + the word so far: the scan hashes as it goes
    for (;;) {
      // a run of word characters; s[i] starts one, k code units long
      for (;;) {
        h = Math.imul(h ^ c, 0x01000193);
        if (k === 2) h = Math.imul(h ^ s.charCodeAt(i + 1), 0x01000193);
        i += k;
        if (i >= len) break;
        c = s.charCodeAt(i);
        k = wordCharLen(s, i);
        if (k === 0) break;
      }
      // joiners belong to the word only when a word character follows them
      let j = i, hj = h;
      while (j < len && isJoiner((c = s.charCodeAt(j)))) {
        hj = Math.imul(hj ^ c, 0x01000193);
        j++;
      }
      if (j > i && j < len && (k = wordCharLen(s, j)) > 0) {
        c = s.charCodeAt(j);
        i = j;
        h = hj;
        continue;
      }
      break;
    }
    const w = i - start;
    if (w > MAX_LEN) {
      into.add(prefix + 'long:' + Math.min(10, Math.floor(w / 10)));
      prevStart = -1;
      continue;
    }
    if (w < MIN_LEN) { prevStart = -1; continue; }
    into.addWord(prefix, h, s, start, i);
    if (bigrams && prevStart >= 0) into.addPair(prefix, ph, s, prevStart, prevEnd, start, i);
    prevStart = start;
    prevEnd = i;
    if (++n >= limit) break;
  }
}

/** The word tokens of a text (as tokenize makes them from a body): for tests and debugging. */
export function wordTokens(text: string, prefix = '', bigrams = false, limit = MAX_WORDS): Set<string> {
  const sink = new StringSink();
  words(text, prefix, sink, bigrams, limit);
  return sink.set;
}

/** "a.b.example.com" -> ["a.b.example.com", "b.example.com", "example.com"] (stops at 2 labels). */
function hostAndParents(host: string, prefix: string, into: Sink): void {
  let h = host.toLowerCase();
  if (h.charCodeAt(h.length - 1) === 0x2e) h = h.replace(/\.+$/, '');
  if (!h || h.length > 253) return;
  into.addSlice(prefix, h, 0, h.length);
  const last = h.charCodeAt(h.length - 1);
  if (last >= 0x30 && last <= 0x39 && IPV4.test(h)) {
    into.add(prefix + 'ip');
    into.addSlice(prefix, h, 0, h.lastIndexOf('.'));
    return;
  }
  // parents while they keep two labels, at most four
  let start = 0;
  for (let k = 0; k < 4; k++) {
    const dot = h.indexOf('.', start);
    if (dot < 0 || h.indexOf('.', dot + 1) < 0) return;
    start = dot + 1;
    into.addSlice(prefix, h, start, h.length);
  }
}

const IPV4 = /^\d+\.\d+\.\d+\.\d+$/;
const ADDR = /[A-Za-z0-9._%+-]+@([A-Za-z0-9.-]+\.[A-Za-z]{2,})/g;
const HOSTISH = /\b([a-z0-9-]+(?:\.[a-z0-9-]+)+)\b/gi;
const TEXT_HEADERS = new Map(Object.entries({
  subject: 's:',
  from: 'f:',
  to: 't:',
  cc: 't:',
  'reply-to': 'rt:',
  'return-path': 'rp:',
  'x-mailer': 'xm:',
  'user-agent': 'xm:',
  'content-type': 'ct:',
  'mime-version': 'mv:',
  'content-transfer-encoding': 'cte:',
  'x-priority': 'xp:',
  'x-msmail-priority': 'xp:',
  organization: 'org:',
  'list-id': 'lid:',
  precedence: 'prec:',
  'sender': 'snd:',
  'errors-to': 'et:',
}));
// headers whose presence is a token ("hdr:" + name), besides every X- header
const PRESENCE_HEADERS = new Set(['received', 'date', 'message-id', 'subject', 'from', 'to', 'cc', 'content-type', 'mime-version', 'reply-to', 'return-path']);

// other headers' words, prefixed with the header's name, except those that only carry noise
const SKIP_GENERIC = new Set(['received', 'date', 'message-id', 'content-length', 'lines', 'x-uid', 'status', 'x-status', 'x-keywords', 'content-disposition', 'references', 'in-reply-to', 'delivery-date']);

/** The tokens of feature set 1 (all but the header order). */
function baseTokens(x: Extracted, opts: TokenizeOptions, t: Sink): void {
  const bigrams = opts.bigrams ?? false;
  let subject = '';
  let haveDate = false, haveMsgId = false, haveFrom = false, haveTo = false;
  let rcpts = 0;
  let received = 0;
  let list = false;
  const facts = (opts.views ?? 1) > 1;
  t.view = 1;
  for (const [name, value] of x.headers) {
    if (facts && LIST_HEADERS.has(name)) list = true;
    if (name.startsWith('x-') || PRESENCE_HEADERS.has(name)) {
      t.addSlice('hdr:', name, 0, name.length);
    }
    const pre = TEXT_HEADERS.get(name);
    if (!pre && !SKIP_GENERIC.has(name)) words(value, 'h:' + name + ':', t, false, 40);
    if (pre) {
      words(value, pre, t, false, 200);
      ADDR.lastIndex = 0;
      let m: RegExpExecArray | null;
      while ((m = ADDR.exec(value)) !== null) hostAndParents(m[1]!, pre + '@', t);
    }
    switch (name) {
      case 'subject':
        subject = value;
        t.view = 0;
        words(value, '', t, bigrams, 200); // subject words count as body words too
        t.view = 1;
        break;
      case 'date':
        haveDate = true;
        break;
      case 'message-id': {
        haveMsgId = true;
        const at = /@([^>\s]+)/.exec(value);
        if (at) hostAndParents(at[1]!, 'mid:', t);
        else t.add('mid:nohost');
        break;
      }
      case 'from':
        haveFrom = true;
        break;
      case 'to':
      case 'cc':
        haveTo = true;
        rcpts += (value.match(/@/g) ?? []).length;
        break;
      case 'received': {
        if (++received > 8) break;
        HOSTISH.lastIndex = 0;
        let m: RegExpExecArray | null;
        let n = 0;
        while ((m = HOSTISH.exec(value)) !== null && n++ < 12) {
          const h = m[1]!;
          if (h.indexOf('.') > 0 && /[a-z]/i.test(h) ? /\.[a-z]{2,}$/i.test(h) : /^\d+\.\d+\.\d+\.\d+$/.test(h)) hostAndParents(h, 'rcvd:', t);
        }
        if (/\bwith (e?smtpa?|local|http|esmtpsa?)\b/i.test(value)) t.add('rcvd:with:' + /\bwith (\S+)/i.exec(value)![1]!.toLowerCase());
        break;
      }
    }
  }
  // structure
  t.view = 0;
  if (!haveDate) t.add('meta:nodate');
  if (!haveMsgId) t.add('meta:nomsgid');
  if (!haveFrom) t.add('meta:nofrom');
  if (!haveTo) t.add('meta:noto');
  t.add('meta:rcpts:' + (rcpts > 10 ? 'many' : rcpts > 3 ? 'some' : String(rcpts)));
  t.add('meta:received:' + Math.min(received, 8));
  const letters = subject.replace(/[^A-Za-z]/g, '');
  if (letters.length >= 6 && letters === letters.toUpperCase()) t.add('meta:subjcaps');
  if (/[!]{1,}/.test(subject)) t.add('meta:subjbang');
  if (/\$\d/.test(subject)) t.add('meta:subjdollar');
  if (/\d{3,}\s*$/.test(subject)) t.add('meta:subjtrailnum');
  if (x.html.length && !x.text.length) t.add('meta:htmlonly');
  if (x.html.length && x.text.length) t.add('meta:html+text');
  t.add('meta:img:' + Math.min(x.images, 5));
  t.add('meta:parts:' + Math.min(x.parts.length, 6));
  for (const p of x.parts) {
    t.add('part:' + p.type);
    if (p.charset) t.add('cs:' + p.charset);
    if (p.encoding) t.add('enc:' + p.encoding);
    if (p.filename) {
      const ext = /\.([a-z0-9]{1,5})$/i.exec(p.filename);
      t.add('file:' + (ext ? ext[1]!.toLowerCase() : 'noext'));
    }
  }
  for (const h of x.hosts) hostAndParents(h, 'url:', t);
  t.add('meta:urls:' + (x.hosts.length > 20 ? 'many' : x.hosts.length > 5 ? 'some' : String(x.hosts.length)));
  // body
  let bodyChars = 0;
  for (const s of x.text) { words(s, '', t, bigrams); bodyChars += s.length; }
  for (const s of x.html) { words(s, '', t, bigrams); bodyChars += s.length; }
  t.add('meta:len:' + Math.min(12, Math.floor(Math.log2(bodyChars + 1))));
  if (list) t.list();
  // x.mboxLine is deliberately not a feature: an SMTP server never sees that line
}

/** Tokens of an already extracted message. */
export function tokensOf(x: Extracted, opts: TokenizeOptions = {}): Set<string> {
  const sink = new StringSink();
  baseTokens(x, opts, sink);
  if ((opts.featureSet ?? FEATURE_SET) >= 2) headerOrder(x.headers, sink);
  return sink.set;
}

/** Feature set 2: the order of the header names, in pairs and triples. */
function headerOrder(headers: Array<[string, string]>, t: Sink): void {
  let prev1 = '', prev2 = '';
  for (let k = 0; k < headers.length; k++) {
    const name = headers[k]![0];
    t.add('hseq:' + prev1 + '>' + name);
    t.add('hseq3:' + prev2 + '>' + prev1 + '>' + name);
    prev2 = prev1;
    prev1 = name;
  }
}

// headerOrder's tokens, hashed: FNV states of "hseq:" and "hseq3:", and a state continued with '>'
const HSEQ = fnv(FNV_OFFSET, 'hseq:');
const HSEQ3 = fnv(FNV_OFFSET, 'hseq3:');
const gt = (h: number): number => Math.imul(h ^ 0x3e, 0x01000193);
/**
 * headerOrder into the bucket sink without building the tokens' strings (measurably cheaper
 * in a short-lived `spam classify`): one pass over each name continues the five FNV states
 * that need it.
 */
function headerOrderBuckets(headers: Array<[string, string]>, out: BucketSink): void {
  out.view = 1;
  let pre2 = gt(HSEQ); // "hseq:" + prev1 + ">"
  let pre3 = gt(gt(HSEQ3)); // "hseq3:" + prev2 + ">" + prev1 + ">"
  let q = gt(HSEQ3); // "hseq3:" + prev1 + ">"
  for (let k = 0; k < headers.length; k++) {
    const name = headers[k]![0];
    let a = pre2, b = pre3, c = q, d = HSEQ3, e = HSEQ;
    for (let i = 0; i < name.length; i++) {
      const ch = name.charCodeAt(i);
      a = Math.imul(a ^ ch, 0x01000193);
      b = Math.imul(b ^ ch, 0x01000193);
      c = Math.imul(c ^ ch, 0x01000193);
      d = Math.imul(d ^ ch, 0x01000193);
      e = Math.imul(e ^ ch, 0x01000193);
    }
    out.push(a);
    out.push(b);
    pre3 = gt(c);
    q = gt(d);
    pre2 = gt(e);
  }
}

/**
 * The tokens of raw message bytes as unique buckets in [0, 2^bits) (with opts.views = 2:
 * header tokens in [2^bits, 2^(bits+1))), in no particular order. Never throws.
 */
export function tokenBuckets(buf: Uint8Array, bits: number, opts: TokenizeOptions = {}): Uint32Array {
  const sink = new BucketSink((1 << bits) - 1, opts.views ?? 1);
  try {
    const x = extract(buf);
    baseTokens(x, opts, sink);
    if ((opts.featureSet ?? FEATURE_SET) >= 2) headerOrderBuckets(x.headers, sink);
  } catch {
    sink.reset();
    sink.view = 0;
    sink.add('meta:unparsable');
  }
  return sink.result();
}

/** Tokens of raw message bytes. Never throws. */
export function tokenize(buf: Uint8Array, opts: TokenizeOptions = {}): Set<string> {
  try {
    return tokensOf(extract(buf), opts);
  } catch {
    return new Set(['meta:unparsable']);
  }
}
