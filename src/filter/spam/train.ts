// Training the spam model. Cross-validation inside the training set (k folds, repeated cvReps
// times with the out-of-fold scores pooled) fits the two-view stacker and chooses the decision
// threshold (threshold.ts; never on test data): with two views, the stacker's own decision
// point, 0.5 ('half'); one-view models keep the Poisson rule by default (the point most likely
// to meet both targets, maxFPR and maxFNR, on a sample as large as the training set).
import assert from 'node:assert/strict';
import { countDocs } from './chi-square.js';
import { features, type Features } from './features.js';
import { lrLogOdds, sigmoid, trainEnsemble } from './logistic-regression.js';
import { mulberry32 } from '../../lib/random.js';
import type { ModelHeader } from './model-file.js';
import { SpamModel } from './model.js';
import { byView, fitStacker, joinViews, stackColumns, stackLogOdds, trainViews, type Stack, type ViewSplit } from './stacker.js';
import { chooseThreshold, chooseThresholdFPR, chooseThresholdMinimax, chooseThresholdPoisson, errorsAt } from './threshold.js';
import { resolveOptions, type TrainOptions } from './train-options.js';

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
  for (let f = 0; f < k; f++) {
    const trY: number[] = [];
    ys.forEach((y, i) => { if (fold[i] !== f) trY.push(y); });
    const pick = (a: Features[]): Features[] => a.filter((_, i) => fold[i] !== f);
    if (stacked) {
      const parts = trainViews(views.map(pick), Uint8Array.from(trY), o);
      for (let i = 0; i < xs.length; i++) {
        if (fold[i] === f) parts.forEach((p, v) => (out[v]![i] = lrLogOdds(p, views[v]![i]!, o)));
      }
    } else {
      const m = fit(pick(xs), Uint8Array.from(trY), o, 0.5);
      for (let i = 0; i < xs.length; i++) if (fold[i] === f) out[0]![i] = m.scoreFeatures(xs[i]!);
    }
  }
  return out;
}

/**
 * Train a model on featurised messages (ys: 1 = spam; buckets as features() gives them for
 * the same `views`). Cross-validation on them fits the stacker (two views) and chooses the
 * threshold (thresholdMode).
 */
export function trainFeatures(xs: Features[], ys: Uint8Array, opts: TrainOptions = {}, progress?: TrainProgress): SpamModel {
  const o = resolveOptions(opts);
  const size = 1 << o.bits;
  const beyond = xs.some((x) => x.some((b) => b >= size));
  assert.ok(o.views !== 1 || !beyond, `features have buckets past 2^${o.bits}: made for two views, training one`);
  assert.ok(o.views <= 1 || beyond || xs.length === 0, 'features have no header-view buckets: make them with features(buf, bits, { views: 2 })');
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
      progress?.('cross-validation', r, reps);
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
  progress?.('fitting', 0, 0);
  const m = fit(xs, ys, o, threshold, st, split);
  if (cv) m.header.cv = cv;
  return m;
}

/** Where training is: a stage, and done of total when the stage counts (0 of 0 when not). */
export type TrainProgress = (stage: string, done: number, total: number) => void;

/** Train on raw messages. */
export function train(spam: Uint8Array[], ham: Uint8Array[], opts: TrainOptions = {}, progress?: TrainProgress): SpamModel {
  const o = resolveOptions(opts);
  const all = [...spam, ...ham];
  const xs = all.map((b, i) => {
    if (progress && i % 256 === 0) progress('tokenising', i, all.length);
    return features(b, o.bits, { bigrams: o.bigrams, featureSet: o.featureSet, views: o.views });
  });
  const ys = new Uint8Array(xs.length);
  ys.fill(1, 0, spam.length);
  return trainFeatures(xs, ys, o, progress);
}
