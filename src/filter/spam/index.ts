// Public surface of the spam classifier.
export { extract, type Extracted, type PartInfo } from './extract.js';
export { tokenize, tokensOf, type TokenizeOptions } from './tokenize.js';
export { SpamModel } from './model.js';
export { train, trainFeatures } from './train.js';
export { features } from './features.js';
export { DEFAULTS, type TrainOptions, type ModelKind } from './train-options.js';
export { metrics, formatTable, type Metrics, type Item } from './metrics.js';
export { spamMain, evaluateSplit } from './cli.js';
