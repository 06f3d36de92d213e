// docs/embedding.md's example, compiled against this checkout's declarations (dist/*.d.ts,
// imported as `postern` through the package's own exports) and run: it starts a node in its
// process, takes a message and stops on SIGTERM. The packed package gets the same check in
// test/package/pack.test.ts.
import { test } from 'node:test';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileExample, runExample } from '../helpers/embedding-example.js';
import { removeTmpdir, tmpdir } from '../helpers/tmpdir.js';

test('the embedding example of docs/embedding.md compiles against the package types and runs a node', async (t) => {
  // Inside the checkout, so that `postern` resolves to this package by its own name.
  const dir = join(fileURLToPath(new URL('../../', import.meta.url)), `embedding-example-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  t.after(() => removeTmpdir(dir));
  const data = tmpdir(t);
  const file = compileExample(dir);
  await runExample(t, file, join(data, 'queue'));
});
