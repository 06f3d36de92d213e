// Public surface of the spam classifier.
export { extract, type Extracted, type PartInfo } from './extract.js';
export { tokenize, tokensOf, type TokenizeOptions } from './tokenize.js';
export { SpamModel, train, trainFeatures, features, DEFAULTS, type TrainOptions, type ModelKind } from './model.js';
export { metrics, formatTable, type Metrics, type Item } from './metrics.js';
export { spamMain, evaluateSplit } from './cli.js';
