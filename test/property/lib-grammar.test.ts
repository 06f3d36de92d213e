// The duration grammar (src/lib/duration.ts) as a property: formatDuration writes what
// parseDuration reads back, for any millisecond count up to 2^40.
import { test } from 'node:test';
import fc from 'fast-check';
import { parseDuration, formatDuration } from '../../src/lib/duration.js';
import { valueOf } from '../../src/lib/result.js';

test('formatDuration writes what parseDuration reads back (any ms)', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (ms) => valueOf(parseDuration(formatDuration(ms))) === ms));
});
