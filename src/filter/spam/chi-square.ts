// Robinson-Fisher chi-square combining for the spam model, as bogofilter does: document
// counts per bucket, each bucket's spam probability shrunk towards robX by robS, buckets
// within minDev of 0.5 ignored, at most `maxTokens` most significant ones combined.
import type { Features } from './features.js';
import type { TrainOptions } from './train-options.js';

export interface Counts {
  spam: Uint32Array;
  ham: Uint32Array;
  nSpam: number;
  nHam: number;
}

export function countDocs(xs: Features[], ys: Uint8Array, bits: number): Counts {
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

export function chiScore(c: Counts, x: Features, o: Required<TrainOptions>): number {
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
