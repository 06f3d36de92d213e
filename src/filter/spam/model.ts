// The spam model: its header (model-file.ts), the learners over the token buckets (features.ts)
// and the threshold chosen in training (train.ts). kind 'lr': logistic regression
// (logistic-regression.ts), with two views one per view, stacked (stacker.ts); 'chi':
// Robinson-Fisher chi-square (chi-square.ts); 'combo': the mean of both log-odds (chi clipped).
import { chiScore, type Counts } from './chi-square.js';
import { features, type Features } from './features.js';
import { logit, lrLogOdds, sigmoid, type LR } from './logistic-regression.js';
import { deserializeModel, serializeModel, type ModelHeader } from './model-file.js';
import { viewsLogOdds } from './stacker.js';
import type { TokenizeOptions } from './tokenize.js';

export type { ModelHeader } from './model-file.js';

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
    const z = o.views > 1 ? viewsLogOdds(this.lr!, x, o) : lrLogOdds(this.lr!, x, o);
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

  /** The model file's bytes (model-file.ts). */
  serialize(): Buffer {
    return serializeModel({ header: this.header, lr: this.lr, counts: this.counts });
  }

  /** Load a model file; throws if it is not one this version can use. */
  static deserialize(buf: Buffer): SpamModel {
    const { header, lr, counts } = deserializeModel(buf);
    return new SpamModel(header, lr, counts);
  }
}
