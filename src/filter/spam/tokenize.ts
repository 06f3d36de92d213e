// Tokens for the spam classifier: a set of strings per message (presence, not counts).
//   body words      lower-cased, 2..24 characters ("w" prefix-free: the bare word; word-scanner.ts)
//   header tokens   "<h>:" + word for Subject, From, To/Cc..., Received "rcvd:" hosts, Message-ID
//                   host (header-tokens.ts)
//   link hosts      "url:" + host, and its parent domains
//   structure       "meta:..." (HTML only, image count, recipients, all-caps subject,
//                   missing Date/Message-ID, charsets, transfer encodings, attachment types)
//   bigrams         "w1 w2" of adjacent body words (optional)
// Feature set 2 (the default since model format version 2) adds what wrote the message:
//   header order    "hseq:a>b" and "hseq3:a>b>c" for consecutive (lower-case) header names,
//                   "" before the first: every mail client, bulk mailer, MTA and list manager
//                   writes or adds its headers in its own order
// tokenize/tokensOf give the tokens as strings (readable: tests, debugging); tokenBuckets gives
// what the model uses, hashToken(token) & (2^bits - 1) for each (token-hash.ts), unique, through
// the bucket sink (token-sink.ts). Two views (model format 3, token-view.ts): with views = 2 a
// header token's bucket is offset by 2^bits, and mail that came through a mailing list gets
// LIST_TOKEN (bucket 2^(bits+1), not hashed): the model's stacker trusts the two sides
// differently there.
import { extract, type Extracted } from './extract.js';
import { headerOrder, headerOrderBuckets, headerTokens, hostAndParents } from './header-tokens.js';
import { BucketSink, StringSink, type Sink } from './token-sink.js';
import { words } from './word-scanner.js';

export interface TokenizeOptions {
  bigrams?: boolean;
  /** feature set: 1 = the tokens of model format version 1, 2 = FEATURE_SET (the default) */
  featureSet?: number;
  /** 2: header-view buckets offset by 2^bits (see tokenView); 1 (the default): one space */
  views?: number;
}

/** The feature set new models are trained with. */
export const FEATURE_SET = 2;

/** The tokens of feature set 1 (all but the header order). */
function baseTokens(x: Extracted, opts: TokenizeOptions, t: Sink): void {
  const bigrams = opts.bigrams ?? false;
  const { subject, haveDate, haveMsgId, haveFrom, haveTo, rcpts, received, list } = headerTokens(x.headers, bigrams, (opts.views ?? 1) > 1, t);
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
