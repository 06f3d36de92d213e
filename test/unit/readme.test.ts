// The README's configuration table stays in step with the schema: every variable, its default
// and its description, exactly as `postern config --markdown` prints them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SETTINGS } from '../../src/config/schema.js';
import { configMarkdown } from '../../src/config/load.js';

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

test('README documents every POSTERN_* variable', () => {
  const missing = SETTINGS.filter((s) => !readme.includes(`| \`${s.env}\` |`)).map((s) => s.env);
  assert.deepEqual(missing, [], 'regenerate the table with `node dist/cli.js config --markdown`');
});

test("README's configuration table is the generated one: defaults and descriptions too", () => {
  const stale = configMarkdown().split('\n').filter((row) => !readme.split('\n').includes(row));
  assert.deepEqual(stale, [], 'regenerate the table with `node dist/cli.js config --markdown`');
});
