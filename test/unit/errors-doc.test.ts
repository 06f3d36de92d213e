// docs/errors.md lists every error code (STYLE: one page lists every error code).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERRORS } from '../../src/errors.js';
import { HTTP_ERRORS } from '../../src/http/respond.js';

test('docs/errors.md lists every PST_ERR_* and PST_HTTP_* code', () => {
  const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
  const missing = [...Object.keys(ERRORS), ...Object.keys(HTTP_ERRORS)].filter((c) => !doc.includes(`\`${c}\``));
  assert.deepEqual(missing, []);
});

test('an invalid argument is the built-in RangeError or TypeError, carrying PST_ERR_INVALID_ARGUMENT', async () => {
  const { invalidArgument } = await import('../../src/lib/invalid-argument.js');
  const { Throttle } = await import('../../src/delivery/throttle.js');
  assert.throws(() => new Throttle(-1, 1), (e: unknown) => e instanceof RangeError && (e as { code?: string }).code === 'PST_ERR_INVALID_ARGUMENT');
  const t = invalidArgument('x must be a string', 'type');
  assert.ok(t instanceof TypeError);
  assert.equal(t.code, 'PST_ERR_INVALID_ARGUMENT');
  assert.equal(t.message, 'x must be a string');
});
