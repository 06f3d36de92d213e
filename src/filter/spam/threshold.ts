// Threshold rules of the spam model, on (out-of-fold) scores and labels: the default decision
// threshold is chosen by cross-validation inside the training set, never on test data
// (train.ts). 'cost', 'fpr', 'minimax' and 'poisson' as TrainOptions.thresholdMode describes;
// 'half' is errorsAt(scores, ys, 0.5).

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
export function errorsAt(scores: ArrayLike<number>, ys: Uint8Array, threshold: number): ThresholdChoice {
  let fp = 0, fn = 0;
  for (let i = 0; i < ys.length; i++) {
    if (ys[i] && scores[i]! < threshold) fn++;
    else if (!ys[i] && scores[i]! >= threshold) fp++;
  }
  return { threshold, fp, fn };
}
