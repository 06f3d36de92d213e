// A fresh temporary folder per test, removed (recursively) in the test's t.after hook.
// Hooks run in registration order, so register anything that must close first (a queue, a
// server) before calling tmpdir(t).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir as osTmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export function tmpdir(t: TestContext, prefix = 'postern-test-'): string {
  const dir = mkdtempSync(join(osTmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 3 }));
  return dir;
}
