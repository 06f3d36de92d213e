// Word scanning for the spam tokens: the words of a text (lower-cased, 2..24 characters; longer
// runs become "long:N"), optionally with bigrams of adjacent words, hashed as they are scanned
// so the bucket sink never builds a word's string.
import { FNV_OFFSET, fnv } from './token-hash.js';
import { StringSink, type Sink } from './token-sink.js';

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

/** The words of text as tokens prefix + word. */
export function words(text: string, prefix: string, into: Sink, bigrams: boolean, limit = MAX_WORDS): void {
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
