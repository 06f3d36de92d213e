// The spam tokenizer's word scanner (a hand-written loop that hashes words without building
// their strings) against the regular expression it replaces, on arbitrary text: ASCII
// joiners and punctuation, Latin-1, scripts whose lower-casing changes the length, digits of
// other scripts, letters outside the BMP and lone surrogates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { tokenBuckets, tokenize } from '../../src/filter/spam/tokenize.js';
import { wordTokens } from '../../src/filter/spam/word-scanner.js';
import { hashToken } from '../../src/filter/spam/token-hash.js';
import { tokenView, LIST_TOKEN } from '../../src/filter/spam/token-view.js';

const WORD = /[\p{L}\p{N}$€£¥%!]+(?:['_-]+[\p{L}\p{N}$€£¥%!]+)*/gu;

/** The reference: what format version 1 did with a regex (MIN_LEN 2, MAX_LEN 24). */
function reference(text: string, prefix: string, bigrams: boolean, limit: number): Set<string> {
  const into = new Set<string>();
  const s = text.toLowerCase();
  WORD.lastIndex = 0;
  let m: RegExpExecArray | null;
  let prev = '';
  let n = 0;
  while ((m = WORD.exec(s)) !== null) {
    const w = m[0];
    if (w.length > 24) {
      into.add(prefix + 'long:' + Math.min(10, Math.floor(w.length / 10)));
      prev = '';
      continue;
    }
    if (w.length < 2) { prev = ''; continue; }
    into.add(prefix + w);
    if (bigrams && prev) into.add(prefix + prev + ' ' + w);
    prev = w;
    if (++n >= limit) break;
  }
  return into;
}

const piece = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'Ab', 'word', 'x1', '42', "'", '_', '-', '--', "''", ' ', '\n', '.', ',', '$', '€', '%', '!', '<', ':') },
  { weight: 3, arbitrary: fc.constantFrom('É', 'ß', 'İ', 'ǅ', 'ﬃ', '١٢', '²', 'Ⅻ', '中文', 'ą', '\u0301', '\u200d', '\u00a0') },
  { weight: 2, arbitrary: fc.constantFrom('𝐀', '😀', '\ud800', '\udc00', '\ud835\udc00x', 'a\udc00b') },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 4 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom('x'.repeat(24), 'y'.repeat(25), 'z'.repeat(103)) },
);
const text = fc.array(piece, { maxLength: 60 }).map((p) => p.join(''));

test('word scanner = the regex, on arbitrary text (also bigrams, prefixes and the word limit)', () => {
  fc.assert(
    fc.property(text, fc.boolean(), fc.constantFrom('', 's:', 'h:x-mailer:'), fc.integer({ min: 1, max: 50 }), (s, bigrams, prefix, limit) => {
      assert.deepEqual([...wordTokens(s, prefix, bigrams, limit)].sort(), [...reference(s, prefix, bigrams, limit)].sort());
    }),
    { numRuns: 3000 },
  );
});

test('hashed buckets = the hashes of the token strings, on arbitrary message bodies (one view and two)', () => {
  fc.assert(
    fc.property(text, text, fc.boolean(), fc.constantFrom(1, 2), fc.constantFrom('X-Note', 'List-Id'), (body0, header, bigrams, views, name) => {
      const body = body0.replace('?', ' !list '); // the list token is no word
      const line = (s: string): string => s.replace(/[\r\n]/g, ' ');
      const raw = Buffer.from(`Subject: ${line(body)}\n${name}: ${line(header)}\nContent-Type: text/plain; charset=utf-8\n\n${body}\n`, 'utf8');
      const opts = { bigrams, views };
      // with two views, a header-side token's bucket is in the upper half, the list fact past it
      const bucket = (t: string): number => (t === LIST_TOKEN ? 0x20000 : (hashToken(t) & 0xffff) + (views === 2 && tokenView(t) ? 0x10000 : 0));
      const want = [...new Set([...tokenize(raw, opts)].map(bucket))].sort((a, b) => a - b);
      assert.deepEqual(Array.from(tokenBuckets(raw, 16, opts)).sort((a, b) => a - b), want);
    }),
    { numRuns: 500 },
  );
});
