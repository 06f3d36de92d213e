// The stacker of a two-view spam model (format 3): one LR on the content tokens, one on the
// header tokens (token-view.ts), each normalised by its own token count, their log-odds combined
// by a stacking LR over seven terms (STACK_TERMS) fitted to the out-of-fold log-odds of the
// training's cross-validation, ham weighted as in training. Also: splitting featurised messages
// by view, and joining the two view LRs and the stacker into one model.
import assert from 'node:assert/strict';
import type { Features } from './features.js';
import { sigmoid, trainEnsemble, type LR } from './logistic-regression.js';
import type { TrainOptions } from './train-options.js';

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
export interface Stack {
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

export function stackLogOdds(st: Stack, z0: number, z1: number, n0: number, n1: number, list: number): number {
  const c = st.coef;
  if (c.length === 2) return st.bias + c[0]! * z0 + c[1]! * z1;
  const t = stackTerms(z0, z1, n0, n1, list, termScratch);
  let z = st.bias;
  for (let k = 0; k < 7; k++) z += c[k]! * t[k]!;
  return z;
}

/** The stacker's terms as columns (for fitting it); row i is message i % n0.length. */
export function stackColumns(z0: Float64Array, z1: Float64Array, n0: ArrayLike<number>, n1: ArrayLike<number>, list: ArrayLike<number>): Float64Array[] {
  const n = z0.length, m = n0.length;
  const cols = Array.from({ length: 7 }, () => new Float64Array(n));
  for (let i = 0; i < n; i++) {
    const t = stackTerms(z0[i]!, z1[i]!, n0[i % m]!, n1[i % m]!, list[i % m]!, termScratch);
    for (let k = 0; k < 7; k++) cols[k]![i] = t[k]!;
  }
  return cols;
}

/** Log-odds of a two-view model: each view's sum normalised by its own count, then stacked. */
export function viewsLogOdds(m: LR, x: Features, o: Required<TrainOptions>): number {
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
export interface ViewSplit {
  parts: Features[][];
  list: Uint8Array;
}

export function byView(xs: Features[], o: Required<TrainOptions>): ViewSplit {
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
export function trainViews(views: Features[][], ys: Uint8Array, o: Required<TrainOptions>): LR[] {
  return views.map((xs) => trainEnsemble(xs, ys, o));
}

/** Two view LRs and their stacker as one model: both weight vectors end to end. */
export function joinViews(parts: LR[], st: Stack, bits: number): LR {
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
  assert.ok(Number.isFinite(current), 'stacker inputs are not all finite');
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
