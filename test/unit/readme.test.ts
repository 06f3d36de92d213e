// The README's configuration table stays in step with the schema.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SETTINGS } from '../../src/config/schema.js';

test('README documents every POSTERN_* variable', () => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const missing = SETTINGS.filter((s) => !readme.includes(`| \`${s.env}\` |`)).map((s) => s.env);
  assert.deepEqual(missing, [], 'regenerate the table with `node dist/cli.js config --markdown`');
});
