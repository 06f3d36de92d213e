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
// what the model uses, hashToken(token) & (2^bits - 1) for each, sorted and unique, and
// computes the header-order ones without building their strings.
import { extract, type Extracted } from './extract.js';

export interface TokenizeOptions {
  bigrams?: boolean;
  /** feature set: 1 = the tokens of model format version 1, 2 = FEATURE_SET (the default) */
  featureSet?: number;
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

// a run of letters/digits/currency, inner ' _ - allowed (so edges come trimmed)
const WORD = /[\p{L}\p{N}$€£¥%!]+(?:['_-]+[\p{L}\p{N}$€£¥%!]+)*/gu;
const MIN_LEN = 2;
const MAX_LEN = 24;
const MAX_WORDS = 6000;

function words(text: string, prefix: string, into: Set<string>, bigrams: boolean, limit = MAX_WORDS): void {
  const s = text.toLowerCase();
  WORD.lastIndex = 0;
  let m: RegExpExecArray | null;
  let prev = '';
  let n = 0;
  while ((m = WORD.exec(s)) !== null) {
    const w = m[0];
    if (w.length > MAX_LEN) {
      into.add(prefix + 'long:' + Math.min(10, Math.floor(w.length / 10)));
      prev = '';
      continue;
    }
    if (w.length < MIN_LEN) { prev = ''; continue; }
    into.add(prefix + w);
    if (bigrams && prev) into.add(prefix + prev + ' ' + w);
    prev = w;
    if (++n >= limit) break;
  }
}

/** "a.b.example.com" -> ["a.b.example.com", "b.example.com", "example.com"] (stops at 2 labels). */
function hostAndParents(host: string, prefix: string, into: Set<string>): void {
  let h = host.toLowerCase();
  if (h.charCodeAt(h.length - 1) === 0x2e) h = h.replace(/\.+$/, '');
  if (!h || h.length > 253) return;
  into.add(prefix + h);
  const last = h.charCodeAt(h.length - 1);
  if (last >= 0x30 && last <= 0x39 && /^\d+\.\d+\.\d+\.\d+$/.test(h)) {
    into.add(prefix + 'ip');
    into.add(prefix + h.slice(0, h.lastIndexOf('.')));
    return;
  }
  for (let k = 0; k < 4; k++) {
    const dot = h.indexOf('.');
    if (dot < 0) return;
    const rest = h.slice(dot + 1);
    if (rest.indexOf('.') < 0) return;
    h = rest;
    into.add(prefix + h);
  }
}

const ADDR = /[A-Za-z0-9._%+-]+@([A-Za-z0-9.-]+\.[A-Za-z]{2,})/g;
const HOSTISH = /\b([a-z0-9-]+(?:\.[a-z0-9-]+)+)\b/gi;
const TEXT_HEADERS: Record<string, string> = {
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
};

const GENERIC_HEADERS = process.env.SPAM_GENERIC !== '0';
const SKIP_GENERIC = new Set(['received', 'date', 'message-id', 'content-length', 'lines', 'x-uid', 'status', 'x-status', 'x-keywords', 'content-disposition', 'references', 'in-reply-to', 'delivery-date']);

/** The tokens of feature set 1 (all but the header order). */
function baseTokens(x: Extracted, opts: TokenizeOptions): Set<string> {
  const t = new Set<string>();
  const bigrams = opts.bigrams ?? false;
  let subject = '';
  let haveDate = false, haveMsgId = false, haveFrom = false, haveTo = false;
  let rcpts = 0;
  let received = 0;
  for (const [name, value] of x.headers) {
    if (name.startsWith('x-') || ['received', 'date', 'message-id', 'subject', 'from', 'to', 'cc', 'content-type', 'mime-version', 'reply-to', 'return-path'].includes(name)) {
      t.add('hdr:' + name);
    }
    const pre = TEXT_HEADERS[name];
    if (!pre && GENERIC_HEADERS && !SKIP_GENERIC.has(name)) words(value, 'h:' + name + ':', t, false, 40);
    if (pre) {
      words(value, pre, t, false, 200);
      ADDR.lastIndex = 0;
      let m: RegExpExecArray | null;
      while ((m = ADDR.exec(value)) !== null) hostAndParents(m[1]!, pre + '@', t);
    }
    switch (name) {
      case 'subject':
        subject = value;
        words(value, '', t, bigrams, 200); // subject words count as body words too
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
  // x.mboxLine is deliberately not a feature: an SMTP server never sees that line
  return t;
}

/** Tokens of an already extracted message. */
export function tokensOf(x: Extracted, opts: TokenizeOptions = {}): Set<string> {
  const t = baseTokens(x, opts);
  if ((opts.featureSet ?? FEATURE_SET) >= 2) {
    let prev1 = '', prev2 = '';
    for (const [name] of x.headers) {
      t.add('hseq:' + prev1 + '>' + name);
      t.add('hseq3:' + prev2 + '>' + prev1 + '>' + name);
      prev2 = prev1;
      prev1 = name;
    }
  }
  return t;
}

// header order, hashed: FNV states of "hseq:" and "hseq3:", and a state continued with '>'
const HSEQ = fnv(FNV_OFFSET, 'hseq:');
const HSEQ3 = fnv(FNV_OFFSET, 'hseq3:');
const gt = (h: number): number => Math.imul(h ^ 0x3e, 0x01000193);

/**
 * The buckets of the header-order tokens of tokensOf, written to out[n...]; returns the new n.
 * One pass over each name continues the five FNV states that need it.
 */
function headerOrderBuckets(headers: Array<[string, string]>, mask: number, out: Uint32Array, n: number): number {
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
    out[n++] = mix(a) & mask;
    out[n++] = mix(b) & mask;
    pre3 = gt(c);
    q = gt(d);
    pre2 = gt(e);
  }
  return n;
}

/** The tokens of raw message bytes as sorted unique buckets in [0, 2^bits). Never throws. */
export function tokenBuckets(buf: Uint8Array, bits: number, opts: TokenizeOptions = {}): Uint32Array {
  const mask = (1 << bits) - 1;
  let set: Set<string>;
  let headers: Array<[string, string]> = [];
  try {
    const x = extract(buf);
    set = baseTokens(x, opts);
    if ((opts.featureSet ?? FEATURE_SET) >= 2) headers = x.headers;
  } catch {
    set = new Set(['meta:unparsable']);
  }
  const a = new Uint32Array(set.size + 2 * headers.length);
  let n = 0;
  for (const t of set) a[n++] = hashToken(t) & mask;
  n = headerOrderBuckets(headers, mask, a, n);
  a.sort();
  let k = 0;
  for (let i = 0; i < n; i++) if (k === 0 || a[i] !== a[k - 1]) a[k++] = a[i]!;
  return a.subarray(0, k);
}

/** Tokens of raw message bytes. Never throws. */
export function tokenize(buf: Uint8Array, opts: TokenizeOptions = {}): Set<string> {
  try {
    return tokensOf(extract(buf), opts);
  } catch {
    return new Set(['meta:unparsable']);
  }
}
