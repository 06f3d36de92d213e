// Training options of the spam model: what each learner, the stacker and the threshold rule
// take, their defaults (DEFAULTS), and resolveOptions(), the options as training uses them.
import { FEATURE_SET } from './tokenize.js';

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

/** The options as training uses them: two views only for the LR. */
export function resolveOptions(opts: TrainOptions): Required<TrainOptions> {
  const o: Required<TrainOptions> = { ...DEFAULTS, ...opts };
  if (o.kind !== 'lr' || !(o.views > 1)) {
    o.views = 1;
    // 'half' is the stacker's decision point; one-view models keep format 2's rule
    if (opts.thresholdMode === undefined) o.thresholdMode = 'poisson';
  } else o.views = 2;
  return o;
}
