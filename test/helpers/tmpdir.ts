// Temporary folders for the tests, one way everywhere. tmpdir(t) makes one and removes it
// (recursively) in the test's t.after hook; hooks run in registration order, so register
// anything that must close first (a queue, a server) before calling tmpdir(t). A helper
// whose own single hook must stop something before the folder goes (a node, a Dovecot) uses
// makeTmpdir and removeTmpdir instead.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir as osTmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export function tmpdir(t: TestContext, prefix = 'postern-test-'): string {
  const dir = makeTmpdir(prefix);
  t.after(() => removeTmpdir(dir));
  return dir;
}

/** A fresh folder under the OS temp folder; the caller removes it with removeTmpdir. */
export function makeTmpdir(prefix = 'postern-test-'): string {
  return mkdtempSync(join(osTmpdir(), prefix));
}

export function removeTmpdir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}
