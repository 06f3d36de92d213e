// Logistic regression for the spam model: binary features, each present token's value
// (number of tokens)^-norm (0.5 = L2-normalised), trained with Adagrad SGD over seeded
// shuffles (deterministic), score = sigmoid(w.x + b). The weights of `ensemble` differently
// seeded LRs are averaged (= averaged log-odds). Two-view models (stacker.ts) hold one such
// weight vector per view, end to end.
import type { Features } from './features.js';
import { mulberry32 } from '../../lib/random.js';
import type { Stack } from './stacker.js';
import type { TrainOptions } from './train-options.js';

export const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));
export const logit = (p: number): number => Math.log(p / (1 - p));

export interface LR {
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
export function trainEnsemble(xs: Features[], ys: Uint8Array, o: Required<TrainOptions>): LR {
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

/** Log-odds of a one-view LR (a two-view model's are stacker.ts viewsLogOdds). */
export function lrLogOdds(m: LR, x: Features, o: Required<TrainOptions>): number {
  if (!x.length) return m.bias;
  const v = Math.pow(x.length, -o.norm);
  let z = m.bias;
  for (let i = 0; i < x.length; i++) z += m.w[x[i]!]! * v;
  return z;
}
