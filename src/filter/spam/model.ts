// The spam model: tokens hashed into 2^bits buckets, two learners over the same buckets.
//   lr   logistic regression on L2-normalised binary features, trained with Adagrad SGD
//        (seeded shuffles: deterministic), score = sigmoid(w.x + b)
//   chi  Robinson-Fisher chi-square combining as bogofilter does (document counts per bucket,
//        parameters s, x, min_dev, at most `maxTokens` most significant buckets)
//   combo  the mean of the two learners' log-odds (chi clipped)
// The lr weights are the average of `ensemble` differently seeded LRs (= averaged log-odds).
// The default decision threshold is chosen by k-fold cross-validation inside the training
// set (never on test data), repeated cvReps times with the out-of-fold scores pooled: by
// default the point most likely to meet both targets (maxFPR, maxFNR) on a sample as large as
// the training set, error counts taken as Poisson (see thresholdMode).
// Two views (views = 2, the default since model format 3): one LR on the content tokens
// (body and subject words, links, structure), one on the header tokens (tokenize.ts
// tokenView), each normalised by its own token count; their log-odds are combined by a
// stacking LR over seven terms (the two log-odds, apart for list mail, and weighed by each
// view's token count: see Stack) fitted to the out-of-fold log-odds of the same
// cross-validation, ham weighted as in training. The threshold is then that stacker's own
// decision point, 0.5 ('half'); one-view models keep the Poisson rule by default.
// Model files: format version 2 records the tokenizer's feature set (tokenize.ts); version 1
// files load as feature set 1, the tokens they were trained on; version 3 adds `views`.
import { tokenBuckets, hashToken, tokenView, LIST_TOKEN, FEATURE_SET, type TokenizeOptions } from './tokenize.js';

export type ModelKind = 'lr' | 'chi' | 'combo';

export interface TrainOptions {
  kind?: ModelKind;
  bits?: number;
  seed?: number;
  epochs?: number;
  lr?: number;
  l2?: number;
  hamWeight?: number;
  /** feature value of each present token: (number of tokens)^-norm (0.5 = L2-normalised) */
  norm?: number;
  /** Robinson-Fisher */
  robS?: number;
  robX?: number;
  minDev?: number;
  maxTokens?: number;
  /** Threshold selection */
  folds?: number;
  /** cross-validation repetitions (different fold assignments), out-of-fold scores pooled */
  cvReps?: number;
  costFP?: number;
  /**
   * threshold rule on the pooled out-of-fold scores:
   *   'cost'     minimise costFP * FP + FN
   *   'fpr'      lowest threshold with ham FPR <= maxFPR (best recall under that cap)
   *   'minimax'  minimise max(FPR / maxFPR, FNR / maxFNR): the most slack against both targets
   *   'poisson'  maximise the probability that a sample as large as the training set meets
   *              both targets, FP and FN counts taken as Poisson with the out-of-fold rates
   *   'half'     0.5: the decision point of the (ham-weighted) learner itself; with two views,
   *              of the stacker fitted by cross-validation
   */
  thresholdMode?: 'cost' | 'fpr' | 'minimax' | 'poisson' | 'half';
  maxFPR?: number;
  maxFNR?: number;
  /** number of differently seeded LRs averaged (their log-odds, i.e. their weights) */
  ensemble?: number;
  bigrams?: boolean;
  /** tokens to use (tokenize.ts FEATURE_SET); 1 = those of model format version 1 */
  featureSet?: number;
  /** 2: content and header tokens learned apart and stacked (lr only); 1: one LR over all */
  views?: number;
}

export const DEFAULTS: Required<TrainOptions> = {
  kind: 'lr',
  bits: 20,
  seed: 1,
  epochs: 12,
  lr: 0.3,
  l2: 1e-6,
  hamWeight: 3,
  norm: 0.2,
  robS: 0.1,
  robX: 0.5,
  minDev: 0.1,
  maxTokens: 150,
  folds: 5,
  cvReps: 3,
  costFP: 3,
  thresholdMode: 'half',
  maxFPR: 0.0032,
  maxFNR: 0.016,
  ensemble: 3,
  bigrams: false,
  featureSet: FEATURE_SET,
  views: 2,
};

/** A message as the learners see it: unique bucket indices (featurize sorts them; features need not). */
export type Features = Uint32Array;

export const hash = hashToken;

/**
 * Buckets of token strings (sorted, unique); with two views, header tokens' offset by 2^bits
 * and LIST_TOKEN as bucket 2^(bits+1).
 */
export function featurize(tokens: Iterable<string>, bits: number, views = 1): Features {
  const mask = (1 << bits) - 1;
  const list = tokens instanceof Set ? tokens : new Set(tokens);
  const a = new Uint32Array(list.size);
  let n = 0;
  for (const t of list) {
    if (t === LIST_TOKEN) {
      if (views > 1) a[n++] = 2 * (mask + 1); // the list fact, past both views
      continue;
    }
    a[n++] = (hashToken(t) & mask) + (views > 1 && tokenView(t) ? mask + 1 : 0);
  }
  const b = a.subarray(0, n).sort();
  // drop duplicates (hash collisions) in place
  let k = 0;
  for (let i = 0; i < n; i++) if (i === 0 || b[i] !== b[i - 1]) b[k++] = b[i]!;
  return b.subarray(0, k);
}

/** Unique buckets of raw message bytes: the same set as featurize(tokenize(buf, opts), bits). */
export function features(buf: Uint8Array, bits: number, opts: TokenizeOptions = {}): Features {
  return tokenBuckets(buf, bits, opts);
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));
const logit = (p: number): number => Math.log(p / (1 - p));

// ---- learners ---------------------------------------------------------------------------

interface LR {
  w: Float32Array;
  bias: number;
  /** two views: w holds both views' weights (header view from 2^bits), combined by this */
  stack?: Stack;
}

function trainLR(xs: Features[], ys: Uint8Array, o: Required<TrainOptions>): LR {
  const size = 1 << o.bits;
  const w = new Float32Array(size);
  const g2 = new Float32Array(size);
  let bias = 0, gb = 0;
  const order = Array.from(xs.keys());
  const rnd = mulberry32(o.seed);
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      const t = order[i]!; order[i] = order[j]!; order[j] = t;
    }
    for (const k of order) {
      const x = xs[k]!;
      if (!x.length) continue;
      const v = Math.pow(x.length, -o.norm);
      let z = bias;
      for (let i = 0; i < x.length; i++) z += w[x[i]!]! * v;
      const y = ys[k]!;
      const g = (sigmoid(z) - y) * (y ? 1 : o.hamWeight);
      for (let i = 0; i < x.length; i++) {
        const f = x[i]!;
        const gi = g * v + o.l2 * w[f]!;
        g2[f]! += gi * gi;
        w[f]! -= (o.lr * gi) / Math.sqrt(g2[f]! + 1e-8);
      }
      gb += g * g;
      bias -= (o.lr * g) / Math.sqrt(gb + 1e-8);
    }
  }
  return { w, bias };
}

/**
 * `ensemble` LRs trained with different shuffle seeds, averaged. The model is linear, so
 * the mean of their log-odds is the log-odds of the mean weights: one weight vector,
 * no extra classification cost.
 */
function trainEnsemble(xs: Features[], ys: Uint8Array, o: Required<TrainOptions>): LR {
  const n = Math.max(1, Math.floor(o.ensemble));
  if (n === 1) return trainLR(xs, ys, o);
  const acc = new Float64Array(1 << o.bits);
  let bias = 0;
  for (let e = 0; e < n; e++) {
    const m = trainLR(xs, ys, { ...o, seed: (o.seed + e * 1000003) >>> 0 });
    for (let i = 0; i < acc.length; i++) if (m.w[i] !== 0) acc[i]! += m.w[i]!;
    bias += m.bias;
  }
  const w = new Float32Array(acc.length);
  for (let i = 0; i < acc.length; i++) if (acc[i] !== 0) w[i] = acc[i]! / n;
  return { w, bias: bias / n };
}

function lrLogOdds(m: LR, x: Features, o: Required<TrainOptions>): number {
  if (o.views > 1) return viewsLogOdds(m, x, o);
  if (!x.length) return m.bias;
  const v = Math.pow(x.length, -o.norm);
  let z = m.bias;
  for (let i = 0; i < x.length; i++) z += m.w[x[i]!]! * v;
  return z;
}

/**
 * The stacker of a two-view model: log-odds = bias + the sum of coef[k] * term k, the terms
 * (STACK_TERMS) made from the two views' log-odds (z0 content, z1 header), their bucket
 * counts (n0, n1) and L = 1 for a message that came through a mailing list:
 *   z0, z1, L·z0, L·z1, L, z0·len(n0), z1·len(n1)      len(n) = log2(1 + n) / 8
 * A view's log-odds says more the more tokens it rests on, and list mail is where the two
 * sides disagree most (list headers look like ham; spam posted to a list has spam content).
 * `viewBias` are the view LRs' own biases. A stacker without `terms` (the first format-3
 * files) has coef [c0, c1] only, and its view LRs were folded into the weights.
 */
interface Stack {
  coef: number[];
  bias: number;
  terms?: string;
  viewBias?: number[];
}

export const STACK_TERMS = 'z0,z1,L*z0,L*z1,L,z0*len0,z1*len1';
const stackLen = (n: number): number => Math.log2(1 + n) / 8;

/** The seven terms of STACK_TERMS, into out (the one place they are defined). */
function stackTerms(z0: number, z1: number, n0: number, n1: number, list: number, out: Float64Array): Float64Array {
  out[0] = z0;
  out[1] = z1;
  out[2] = list * z0;
  out[3] = list * z1;
  out[4] = list;
  out[5] = z0 * stackLen(n0);
  out[6] = z1 * stackLen(n1);
  return out;
}
const termScratch = new Float64Array(7);

function stackLogOdds(st: Stack, z0: number, z1: number, n0: number, n1: number, list: number): number {
  const c = st.coef;
  if (c.length === 2) return st.bias + c[0]! * z0 + c[1]! * z1;
  const t = stackTerms(z0, z1, n0, n1, list, termScratch);
  let z = st.bias;
  for (let k = 0; k < 7; k++) z += c[k]! * t[k]!;
  return z;
}

/** The stacker's terms as columns (for fitting it); row i is message i % n0.length. */
function stackColumns(z0: Float64Array, z1: Float64Array, n0: ArrayLike<number>, n1: ArrayLike<number>, list: ArrayLike<number>): Float64Array[] {
  const n = z0.length, m = n0.length;
  const cols = Array.from({ length: 7 }, () => new Float64Array(n));
  for (let i = 0; i < n; i++) {
    const t = stackTerms(z0[i]!, z1[i]!, n0[i % m]!, n1[i % m]!, list[i % m]!, termScratch);
    for (let k = 0; k < 7; k++) cols[k]![i] = t[k]!;
  }
  return cols;
}

/** Log-odds of a two-view model: each view's sum normalised by its own count, then stacked. */
function viewsLogOdds(m: LR, x: Features, o: Required<TrainOptions>): number {
  const size = 1 << o.bits;
  let s0 = 0, s1 = 0, n1 = 0, list = 0;
  for (let i = 0; i < x.length; i++) {
    const b = x[i]!;
    if (b < size) s0 += m.w[b]!;
    else if (b < 2 * size) { s1 += m.w[b]!; n1++; }
    else list = 1;
  }
  const n0 = x.length - n1 - list;
  const st = m.stack!;
  const vb = st.viewBias ?? [0, 0];
  const z0 = vb[0]! + (n0 ? s0 * Math.pow(n0, -o.norm) : 0);
  const z1 = vb[1]! + (n1 ? s1 * Math.pow(n1, -o.norm) : 0);
  return stackLogOdds(st, z0, z1, n0, n1, list);
}

/** Messages split by view: each view's buckets (header buckets brought back to [0, 2^bits)) and the list fact. */
interface ViewSplit {
  parts: Features[][];
  list: Uint8Array;
}

function byView(xs: Features[], o: Required<TrainOptions>): ViewSplit {
  const list = new Uint8Array(xs.length);
  if (o.views <= 1) return { parts: [xs], list };
  const size = 1 << o.bits;
  const content: Features[] = [], header: Features[] = [];
  xs.forEach((x, k) => {
    let n1 = 0;
    for (let i = 0; i < x.length; i++) {
      if (x[i]! >= 2 * size) list[k] = 1;
      else if (x[i]! >= size) n1++;
    }
    const a = new Uint32Array(x.length - n1 - list[k]!), b = new Uint32Array(n1);
    let i0 = 0, i1 = 0;
    for (let i = 0; i < x.length; i++) {
      const f = x[i]!;
      if (f < size) a[i0++] = f; else if (f < 2 * size) b[i1++] = f - size;
    }
    content.push(a);
    header.push(b);
  });
  return { parts: [content, header], list };
}

/** One LR per view (an ensemble each), on byView's buckets. */
function trainViews(views: Features[][], ys: Uint8Array, o: Required<TrainOptions>): LR[] {
  return views.map((xs) => trainEnsemble(xs, ys, o));
}

/** Two view LRs and their stacker as one model: both weight vectors end to end. */
function joinViews(parts: LR[], st: Stack, bits: number): LR {
  const size = 1 << bits;
  const w = new Float32Array(size * parts.length);
  parts.forEach((p, k) => w.set(p.w, k * size));
  return { w, bias: 0, stack: { coef: st.coef, bias: st.bias, terms: STACK_TERMS, viewBias: parts.map((p) => p.bias) } };
}

/**
 * Logistic regression on a few dense features (the views' out-of-fold log-odds), ham
 * weighted by hamWeight, a small L2 on the coefficients, by Newton's method with step
 * halving (from zero; the weighted loss never goes up).
 */
export function fitStacker(zs: Float64Array[], ys: Uint8Array, hamWeight: number, l2 = 1e-3): { coef: number[]; bias: number } {
  const k = zs.length, d = k + 1, n = ys.length;
  const w = new Float64Array(d); // coefficients, then the bias
  const x = new Float64Array(d);
  const loss = (v: Float64Array): number => {
    let sum = 0;
    for (let i = 0; i < n; i++) {
      let z = v[k]!;
      for (let j = 0; j < k; j++) z += v[j]! * zs[j]![i]!;
      // -log p(y), stable for large |z|
      const m = ys[i] ? -z : z;
      sum += (ys[i] ? 1 : hamWeight) * (m > 0 ? m + Math.log1p(Math.exp(-m)) : Math.log1p(Math.exp(m)));
    }
    for (let j = 0; j < k; j++) sum += 0.5 * l2 * n * v[j]! * v[j]!;
    return sum;
  };
  let current = loss(w);
  if (!Number.isFinite(current)) throw new Error('stacker inputs are not all finite');
  for (let it = 0; it < 50; it++) {
    const g = new Float64Array(d);
    const h = Array.from({ length: d }, () => new Float64Array(d + 1));
    for (let i = 0; i < n; i++) {
      let z = w[k]!;
      for (let j = 0; j < k; j++) { x[j] = zs[j]![i]!; z += w[j]! * x[j]!; }
      x[k] = 1;
      const p = sigmoid(z), c = ys[i] ? 1 : hamWeight;
      const r = c * (p - ys[i]!), q = c * p * (1 - p);
      for (let a = 0; a < d; a++) {
        g[a]! += r * x[a]!;
        for (let b = 0; b < d; b++) h[a]![b]! += q * x[a]! * x[b]!;
      }
    }
    for (let a = 0; a < k; a++) { g[a]! += l2 * n * w[a]!; h[a]![a]! += l2 * n; }
    for (let a = 0; a < d; a++) { h[a]![a]! += 1e-9; h[a]![d] = g[a]!; }
    // solve h * step = g (Gauss-Jordan, partial pivoting)
    for (let c = 0; c < d; c++) {
      let piv = c;
      for (let r = c + 1; r < d; r++) if (Math.abs(h[r]![c]!) > Math.abs(h[piv]![c]!)) piv = r;
      [h[c], h[piv]] = [h[piv]!, h[c]!];
      for (let r = 0; r < d; r++) {
        if (r === c) continue;
        const f = h[r]![c]! / h[c]![c]!;
        for (let m = c; m <= d; m++) h[r]![m]! -= f * h[c]![m]!;
      }
    }
    const step = Float64Array.from({ length: d }, (_, a) => h[a]![d]! / h[a]![a]!);
    const next = new Float64Array(d);
    let t = 1, value = Infinity;
    for (let halvings = 0; halvings < 30; halvings++, t /= 2) {
      for (let a = 0; a < d; a++) next[a] = w[a]! - t * step[a]!;
      value = loss(next);
      if (value <= current) break;
    }
    if (!(value <= current)) break;
    let moved = 0;
    for (let a = 0; a < d; a++) moved += Math.abs(next[a]! - w[a]!);
    w.set(next);
    current = value;
    if (!(moved > 1e-10)) break;
  }
  return { coef: Array.from(w.subarray(0, k)), bias: w[k]! };
}

interface Counts {
  spam: Uint32Array;
  ham: Uint32Array;
  nSpam: number;
  nHam: number;
}

function countDocs(xs: Features[], ys: Uint8Array, bits: number): Counts {
  const spam = new Uint32Array(1 << bits), ham = new Uint32Array(1 << bits);
  let nSpam = 0, nHam = 0;
  xs.forEach((x, k) => {
    const c = ys[k] ? spam : ham;
    if (ys[k]) nSpam++; else nHam++;
    for (let i = 0; i < x.length; i++) c[x[i]!]!++;
  });
  return { spam, ham, nSpam, nHam };
}

/** Upper tail of chi-square with v (even) degrees of freedom, computed in log space. */
function chi2Q(x2: number, v: number): number {
  const m = x2 / 2;
  if (m <= 0) return 1;
  let logTerm = -m;
  let sum = Math.exp(logTerm);
  const lm = Math.log(m);
  for (let i = 1; i < v / 2; i++) {
    logTerm += lm - Math.log(i);
    sum += Math.exp(logTerm);
  }
  return Math.min(sum, 1);
}

function chiScore(c: Counts, x: Features, o: Required<TrainOptions>): number {
  const ps: Array<[number, number]> = [];
  const nS = Math.max(c.nSpam, 1), nH = Math.max(c.nHam, 1);
  for (let i = 0; i < x.length; i++) {
    const b = c.spam[x[i]!]!, g = c.ham[x[i]!]!;
    const n = b + g;
    if (!n) continue;
    const bs = b / nS, gs = g / nH;
    const f = bs / (bs + gs);
    const p = (o.robS * o.robX + n * f) / (o.robS + n);
    const dev = Math.abs(p - 0.5);
    if (dev >= o.minDev) ps.push([dev, p]);
  }
  if (!ps.length) return 0.5;
  if (ps.length > o.maxTokens) {
    ps.sort((a, b) => b[0] - a[0]);
    ps.length = o.maxTokens;
  }
  let lnP = 0, ln1P = 0;
  for (const [, p] of ps) {
    const q = Math.min(Math.max(p, 1e-6), 1 - 1e-6);
    lnP += Math.log(q);
    ln1P += Math.log(1 - q);
  }
  const v = 2 * ps.length;
  const S = 1 - chi2Q(-2 * ln1P, v);
  const H = 1 - chi2Q(-2 * lnP, v);
  return (1 + S - H) / 2;
}

// ---- the model ----------------------------------------------------------------------------

export interface ModelHeader {
  format: 'postern-spam';
  /**
   * 1: feature set 1 implied; 2: `featureSet` says which tokens the model was trained on;
   * 3: and `views` (2: weights over [0, 2^(bits+1)), header tokens in the upper half)
   */
  version: 1 | 2 | 3;
  kind: ModelKind;
  bits: number;
  bigrams: boolean;
  featureSet?: number;
  views?: number;
  /** two views: the stacker fitted by cross-validation (see Stack) */
  stack?: Stack;
  threshold: number;
  bias: number;
  nSpam: number;
  nHam: number;
  params: Required<TrainOptions>;
  cv?: { folds: number; fpr: number; recall: number; fp: number; fn: number; nSpam: number; nHam: number };
}

export class SpamModel {
  constructor(
    readonly header: ModelHeader,
    private readonly lr: LR | null,
    private readonly counts: Counts | null,
  ) {}

  get threshold(): number {
    return this.header.threshold;
  }

  /** Probability-like spam score in [0,1] of a featurised message. */
  scoreFeatures(x: Features): number {
    const o = this.header.params;
    if (this.header.kind === 'chi') return chiScore(this.counts!, x, o);
    const z = lrLogOdds(this.lr!, x, o);
    if (this.header.kind === 'lr') return sigmoid(z);
    const c = chiScore(this.counts!, x, o);
    const zc = logit(Math.min(Math.max(c, 1e-6), 1 - 1e-6));
    return sigmoid((z + zc) / 2);
  }

  /** The tokenizer settings the model was trained with. */
  get tokenizeOptions(): TokenizeOptions {
    return { bigrams: this.header.bigrams, featureSet: this.header.featureSet ?? 1, views: this.header.views ?? 1 };
  }

  /** Score of raw message bytes. */
  score(buf: Uint8Array): number {
    return this.scoreFeatures(features(buf, this.header.bits, this.tokenizeOptions));
  }

  classify(buf: Uint8Array): { spam: boolean; score: number } {
    const score = this.score(buf);
    return { spam: score >= this.header.threshold, score };
  }

  // -- serialisation: "PSPAM1\n", u32 LE header length, JSON header, then sections of
  // -- (u32 count, u32[count] indices, f32/u32[count] values...), 4-byte aligned.
  serialize(): Buffer {
    const json = Buffer.from(JSON.stringify(this.header), 'utf8');
    const pad = (4 - ((8 + 4 + json.length) % 4)) % 4;
    const chunks: Buffer[] = [Buffer.from('PSPAM1\n\0', 'latin1'), u32(json.length), json, Buffer.alloc(pad)];
    if (this.lr) {
      const idx: number[] = [];
      const w = this.lr.w;
      for (let i = 0; i < w.length; i++) if (w[i] !== 0) idx.push(i);
      const vals = new Float32Array(idx.length);
      idx.forEach((k, j) => (vals[j] = w[k]!));
      chunks.push(u32(idx.length), Buffer.from(Uint32Array.from(idx).buffer), Buffer.from(vals.buffer));
    } else chunks.push(u32(0));
    if (this.counts) {
      const idx: number[] = [];
      const { spam, ham } = this.counts;
      for (let i = 0; i < spam.length; i++) if (spam[i] || ham[i]) idx.push(i);
      const s = new Uint32Array(idx.length), h = new Uint32Array(idx.length);
      idx.forEach((k, j) => { s[j] = spam[k]!; h[j] = ham[k]!; });
      chunks.push(u32(idx.length), Buffer.from(Uint32Array.from(idx).buffer), Buffer.from(s.buffer), Buffer.from(h.buffer));
    } else chunks.push(u32(0));
    return Buffer.concat(chunks);
  }

  static deserialize(buf: Buffer): SpamModel {
    if (buf.length < 12 || buf.toString('latin1', 0, 8) !== 'PSPAM1\n\0') throw new Error('not a postern spam model');
    const hlen = buf.readUInt32LE(8);
    const header = JSON.parse(buf.toString('utf8', 12, 12 + hlen)) as ModelHeader;
    if (header.format !== 'postern-spam' || ![1, 2, 3].includes(header.version)) throw new Error('unsupported spam model version');
    if (header.version === 1) header.featureSet = 1;
    else if (!(Number.isInteger(header.featureSet) && header.featureSet! >= 1 && header.featureSet! <= FEATURE_SET)) {
      throw new Error(`unsupported spam model feature set ${header.featureSet}`);
    }
    const views = header.version >= 3 ? header.views : 1;
    if (views !== 1 && !(views === 2 && header.kind === 'lr')) throw new Error(`unsupported spam model views ${String(header.views)}`);
    header.views = views;
    const finite = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
    if (!(Number.isInteger(header.bits) && header.bits >= 8 && header.bits <= 24) || (header.params && header.params.bits !== header.bits)) {
      throw new Error(`bad spam model bits ${String(header.bits)}`);
    }
    if (!finite(header.threshold) || !finite(header.bias) || (header.params && !finite(header.params.norm))) throw new Error('bad spam model header: a number is not finite');
    if (header.params && header.params.featureSet === undefined) header.params.featureSet = header.featureSet!;
    if (header.params) header.params.views = views;
    let pos = 12 + hlen;
    pos += (4 - (pos % 4)) % 4;
    // copy into an aligned buffer so typed-array views are legal
    const al = new Uint8Array(buf.length - pos);
    al.set(buf.subarray(pos));
    const dv = new DataView(al.buffer);
    let p = 0;
    const size = 1 << header.bits;
    const section = (): number => { const n = dv.getUint32(p, true); p += 4; return n; };
    const arr = (n: number): Uint32Array => { const a = new Uint32Array(al.buffer, p, n); p += 4 * n; return a; };
    let lr: LR | null = null;
    const nw = section();
    if (nw || header.kind !== 'chi') {
      const idx = arr(nw);
      const vals = new Float32Array(al.buffer, p, nw); p += 4 * nw;
      const w = new Float32Array(size * views);
      for (let j = 0; j < nw; j++) w[idx[j]!] = vals[j]!;
      lr = { w, bias: header.bias };
      if (views > 1) {
        const st = header.stack;
        if (st?.terms !== undefined) {
          if (st.terms !== STACK_TERMS || st.coef?.length !== 7 || st.viewBias?.length !== 2) throw new Error(`unsupported spam model stacker ${String(st.terms)}`);
          if (![...st.coef, ...st.viewBias, st.bias].every(finite)) throw new Error('bad spam model stacker: a number is not finite');
          lr.stack = st;
        } else {
          // the first format-3 files: the stacker folded into the weights and the bias
          lr.stack = { coef: [1, 1], bias: header.bias, viewBias: [0, 0] };
        }
      }
    }
    let counts: Counts | null = null;
    const nc = section();
    if (nc || header.kind !== 'lr') {
      const idx = arr(nc), s = arr(nc), h = arr(nc);
      const spam = new Uint32Array(size), ham = new Uint32Array(size);
      for (let j = 0; j < nc; j++) { spam[idx[j]!] = s[j]!; ham[idx[j]!] = h[j]!; }
      counts = { spam, ham, nSpam: header.nSpam, nHam: header.nHam };
    }
    return new SpamModel(header, lr, counts);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function fit(xs: Features[], ys: Uint8Array, o: Required<TrainOptions>, threshold: number, st?: Stack, split?: ViewSplit): SpamModel {
  const lr = o.kind === 'chi' ? null
    : o.views > 1 ? joinViews(trainViews((split ?? byView(xs, o)).parts, ys, o), st ?? { coef: [1, 1, 0, 0, 0, 0, 0], bias: 0 }, o.bits)
    : trainEnsemble(xs, ys, o);
  const counts = o.kind === 'lr' ? null : countDocs(xs, ys, o.bits);
  let nSpam = 0;
  for (const y of ys) nSpam += y;
  const header: ModelHeader = {
    format: 'postern-spam', version: o.views > 1 ? 3 : 2, kind: o.kind, bits: o.bits, bigrams: o.bigrams, featureSet: o.featureSet,
    ...(lr?.stack ? { views: o.views, stack: lr.stack } : {}), threshold,
    bias: lr ? lr.bias : 0, nSpam, nHam: ys.length - nSpam, params: o,
  };
  return new SpamModel(header, lr, counts);
}

/**
 * Out-of-fold figures by k-fold cross-validation (folds assigned by a seeded shuffle,
 * stratified by label): with two views, one array per view of that view's own LR's log-odds
 * (before stacking); with one, one array of the model's scores in [0, 1].
 */
export function crossValidate(xs: Features[], ys: Uint8Array, o: Required<TrainOptions>, rep = 0, split = byView(xs, o)): Float64Array[] {
  const views = split.parts;
  const k = Math.max(2, o.folds);
  const fold = new Uint8Array(xs.length);
  const rnd = mulberry32((o.seed ^ 0x9e3779b9) + rep * 7919);
  for (const label of [0, 1]) {
    const idx = Array.from(xs.keys()).filter((i) => ys[i] === label);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      const t = idx[i]!; idx[i] = idx[j]!; idx[j] = t;
    }
    idx.forEach((i, n) => (fold[i] = n % k));
  }
  const stacked = o.kind === 'lr' && o.views > 1;
  const out = Array.from({ length: stacked ? views.length : 1 }, () => new Float64Array(xs.length));
  const one = { ...o, views: 1 };
  for (let f = 0; f < k; f++) {
    const trY: number[] = [];
    ys.forEach((y, i) => { if (fold[i] !== f) trY.push(y); });
    const pick = (a: Features[]): Features[] => a.filter((_, i) => fold[i] !== f);
    if (stacked) {
      const parts = trainViews(views.map(pick), Uint8Array.from(trY), o);
      for (let i = 0; i < xs.length; i++) {
        if (fold[i] === f) parts.forEach((p, v) => (out[v]![i] = lrLogOdds(p, views[v]![i]!, one)));
      }
    } else {
      const m = fit(pick(xs), Uint8Array.from(trY), o, 0.5);
      for (let i = 0; i < xs.length; i++) if (fold[i] === f) out[0]![i] = m.scoreFeatures(xs[i]!);
    }
  }
  return out;
}

export interface ThresholdChoice {
  threshold: number;
  fp: number;
  fn: number;
}

/** The scores' indices in ascending score order, and the class counts. */
function ranked(scores: ArrayLike<number>, ys: Uint8Array): { idx: number[]; nSpam: number; nHam: number } {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let nSpam = 0;
  for (const y of ys) nSpam += y;
  return { idx, nSpam, nHam: ys.length - nSpam };
}

/**
 * Walk the threshold down from above every score (all ham: FP 0, FN = every spam), one
 * distinct score at a time (ties cannot be split; each threshold sits midway to the next
 * lower score), and keep the one whose (FP, FN) has the lowest `objective` (the first, i.e.
 * the highest threshold, on ties).
 */
function sweep(scores: ArrayLike<number>, ys: Uint8Array, idx: number[], nSpam: number, objective: (fp: number, fn: number) => number): ThresholdChoice {
  let fp = 0, fn = nSpam;
  let best = { v: objective(fp, fn), threshold: 1, fp, fn };
  for (let j = idx.length - 1; j >= 0; j--) {
    if (ys[idx[j]!]) fn--; else fp++;
    const s = scores[idx[j]!]!;
    const below = j > 0 ? scores[idx[j - 1]!]! : 0;
    if (below === s) continue;
    const v = objective(fp, fn);
    if (v < best.v) best = { v, threshold: (s + below) / 2, fp, fn };
  }
  return { threshold: best.threshold, fp: best.fp, fn: best.fn };
}

/** Threshold minimising costFP * FP + FN over scores (midpoint between neighbours). */
export function chooseThreshold(scores: ArrayLike<number>, ys: Uint8Array, costFP: number): ThresholdChoice {
  const { idx, nSpam } = ranked(scores, ys);
  return sweep(scores, ys, idx, nSpam, (fp, fn) => costFP * fp + fn);
}

/**
 * Lowest threshold whose ham false-positive rate on the scores is <= maxFPR (the best
 * recall under that constraint), placed midway to the next lower score.
 */
export function chooseThresholdFPR(scores: ArrayLike<number>, ys: Uint8Array, maxFPR: number): ThresholdChoice {
  const { idx, nSpam, nHam } = ranked(scores, ys);
  const allowed = Math.floor(maxFPR * nHam + 1e-9);
  let fp = 0, fn = nSpam;
  let best = { threshold: 1, fp, fn };
  for (let j = idx.length - 1; j >= 0; j--) {
    if (ys[idx[j]!]) fn--; else fp++;
    if (fp > allowed) break;
    const s = scores[idx[j]!]!;
    const below = j > 0 ? scores[idx[j - 1]!]! : 0;
    if (below === s) continue;
    best = { threshold: (s + below) / 2, fp, fn };
  }
  return best;
}

/**
 * Threshold minimising max(FPR / maxFPR, FNR / maxFNR): both error rates measured against
 * their targets, the worse one made as small as possible (ties: lower FPR first).
 */
export function chooseThresholdMinimax(scores: ArrayLike<number>, ys: Uint8Array, maxFPR: number, maxFNR: number): ThresholdChoice {
  const { idx, nSpam, nHam } = ranked(scores, ys);
  return sweep(scores, ys, idx, nSpam, (fp, fn) => Math.max(nHam ? fp / nHam / maxFPR : 0, nSpam ? fn / nSpam / maxFNR : 0));
}

/** log P(X <= k) for X ~ Poisson(mu), k a non-negative integer. */
export function logPoissonCdf(k: number, mu: number): number {
  if (mu <= 0) return 0;
  // sum in log space relative to the largest term, so a large mu cannot underflow
  let logTerm = -mu, m = -mu;
  const terms = [logTerm];
  for (let i = 1; i <= k; i++) {
    logTerm += Math.log(mu / i);
    terms.push(logTerm);
    if (logTerm > m) m = logTerm;
  }
  let sum = 0;
  for (const t of terms) sum += Math.exp(t - m);
  return Math.min(0, m + Math.log(sum));
}

/**
 * Threshold maximising P(FP <= maxFPR * nHam) * P(FN <= maxFNR * nSpam) when FP and FN are
 * Poisson with the rates seen on the scores, for a sample of `sample.nHam` ham and
 * `sample.nSpam` spam (default: as many as the scores have). Unlike minimax, it knows that a
 * handful of expected false positives is much noisier, relative to its limit, than a dozen
 * false negatives, and places the threshold where both targets are likeliest to hold.
 */
export function chooseThresholdPoisson(
  scores: ArrayLike<number>, ys: Uint8Array, maxFPR: number, maxFNR: number, sample?: { nHam: number; nSpam: number },
): ThresholdChoice {
  const { idx, nSpam, nHam } = ranked(scores, ys);
  const sH = sample?.nHam ?? nHam, sS = sample?.nSpam ?? nSpam;
  const kFP = Math.floor(maxFPR * sH + 1e-9), kFN = Math.floor(maxFNR * sS + 1e-9);
  // minus the log of the probability, so lower is better
  return sweep(scores, ys, idx, nSpam, (fp, fn) =>
    -((nHam ? logPoissonCdf(kFP, (sH * fp) / nHam) : 0) + (nSpam ? logPoissonCdf(kFN, (sS * fn) / nSpam) : 0)));
}

/** FP and FN at a threshold (spam when score >= threshold). */
function errorsAt(scores: ArrayLike<number>, ys: Uint8Array, threshold: number): ThresholdChoice {
  let fp = 0, fn = 0;
  for (let i = 0; i < ys.length; i++) {
    if (ys[i] && scores[i]! < threshold) fn++;
    else if (!ys[i] && scores[i]! >= threshold) fp++;
  }
  return { threshold, fp, fn };
}

/** The options as training uses them: two views only for the LR. */
function resolve(opts: TrainOptions): Required<TrainOptions> {
  const o: Required<TrainOptions> = { ...DEFAULTS, ...opts };
  if (o.kind !== 'lr' || !(o.views > 1)) {
    o.views = 1;
    // 'half' is the stacker's decision point; one-view models keep format 2's rule
    if (opts.thresholdMode === undefined) o.thresholdMode = 'poisson';
  } else o.views = 2;
  return o;
}

/**
 * Train a model on featurised messages (ys: 1 = spam; buckets as features() gives them for
 * the same `views`). Cross-validation on them fits the stacker (two views) and chooses the
 * threshold (thresholdMode).
 */
export function trainFeatures(xs: Features[], ys: Uint8Array, opts: TrainOptions = {}): SpamModel {
  const o = resolve(opts);
  const size = 1 << o.bits;
  const beyond = xs.some((x) => x.some((b) => b >= size));
  if (o.views === 1 && beyond) throw new Error(`features have buckets past 2^${o.bits}: made for two views, training one`);
  if (o.views > 1 && !beyond && xs.length) throw new Error('features have no header-view buckets: make them with features(buf, bits, { views: 2 })');
  let threshold = 0.5;
  let cv: ModelHeader['cv'];
  let st: Stack | undefined;
  const split = byView(xs, o);
  if (o.folds >= 2) {
    const reps = Math.max(1, o.cvReps);
    const n = xs.length;
    let zs: Float64Array[] = [];
    const ysAll = new Uint8Array(n * reps);
    for (let r = 0; r < reps; r++) {
      const z = crossValidate(xs, ys, o, r, split);
      if (!zs.length) zs = z.map(() => new Float64Array(n * reps));
      z.forEach((a, v) => zs[v]!.set(a, r * n));
      ysAll.set(ys, r * n);
    }
    const scores = new Float64Array(n * reps);
    if (o.views > 1) {
      const n0 = split.parts[0]!.map((x) => x.length), n1 = split.parts[1]!.map((x) => x.length);
      st = fitStacker(stackColumns(zs[0]!, zs[1]!, n0, n1, split.list), ysAll, o.hamWeight);
      for (let i = 0; i < scores.length; i++) scores[i] = sigmoid(stackLogOdds(st, zs[0]![i]!, zs[1]![i]!, n0[i % n]!, n1[i % n]!, split.list[i % n]!));
    } else {
      scores.set(zs[0]!);
    }
    let nSpam = 0;
    for (const y of ys) nSpam += y;
    const nHam = n - nSpam;
    const t0 = o.thresholdMode === 'half' ? errorsAt(scores, ysAll, 0.5)
      : o.thresholdMode === 'fpr' ? chooseThresholdFPR(scores, ysAll, o.maxFPR)
      : o.thresholdMode === 'minimax' ? chooseThresholdMinimax(scores, ysAll, o.maxFPR, o.maxFNR)
      : o.thresholdMode === 'poisson' ? chooseThresholdPoisson(scores, ysAll, o.maxFPR, o.maxFNR, { nHam, nSpam })
      : chooseThreshold(scores, ysAll, o.costFP);
    threshold = t0.threshold;
    const fp = Math.round(t0.fp / reps), fn = Math.round(t0.fn / reps);
    cv = { folds: o.folds, fp, fn, nSpam, nHam, fpr: nHam ? fp / nHam : 0, recall: nSpam ? 1 - fn / nSpam : 0 };
  }
  const m = fit(xs, ys, o, threshold, st, split);
  if (cv) m.header.cv = cv;
  return m;
}

/** Train on raw messages. */
export function train(spam: Uint8Array[], ham: Uint8Array[], opts: TrainOptions = {}): SpamModel {
  const o = resolve(opts);
  const xs = [...spam, ...ham].map((b) => features(b, o.bits, { bigrams: o.bigrams, featureSet: o.featureSet, views: o.views }));
  const ys = new Uint8Array(xs.length);
  ys.fill(1, 0, spam.length);
  return trainFeatures(xs, ys, o);
}
