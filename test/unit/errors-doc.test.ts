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
