// Where the spam tokens go: their strings into a Set (StringSink: readable, for tests and
// debugging), or straight into hashed buckets (BucketSink: what the model uses), without
// building the strings of words. With two views, BucketSink offsets header-view buckets by
// 2^bits and puts the list fact at 2^(bits+1) (token-view.ts).
import { FNV_OFFSET, fnv, mix } from './token-hash.js';
import { LIST_TOKEN } from './token-view.js';

/** What the tokenizers write to (StringSink for tokenize and tokensOf, BucketSink for tokenBuckets). */
export interface Sink {
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

export class StringSink implements Sink {
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
export class BucketSink implements Sink {
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
