// The npm lifecycle scripts around dist/: `npm start`'s check (scripts/check-dist.mjs) names a
// missing or stale dist/ instead of failing on a missing module or running old code, and
// passes an installed package (no src/); `prepare` (scripts/prepare.mjs) without TypeScript
// warns and keeps dist/ so that `npm ci --omit=dev` still installs. package.json wires them so.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpdir } from '../helpers/tmpdir.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** A package folder with a copy of `script` in scripts/ and the given files (path → age in s). */
function fakePackage(t: TestContext, script: string, files: Record<string, number>): string {
  const root = tmpdir(t);
  mkdirSync(join(root, 'scripts'));
  copyFileSync(join(REPO, 'scripts', script), join(root, 'scripts', script));
  const now = Date.now() / 1000;
  for (const [f, age] of Object.entries(files)) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    writeFileSync(join(root, f), '');
    utimesSync(join(root, f), now - age, now - age);
  }
  return root;
}

function run(root: string, script: string): { status: number | null; output: string } {
  const r = spawnSync(process.execPath, [join(root, 'scripts', script)], { cwd: root, encoding: 'utf8' });
  return { status: r.status, output: r.stdout + r.stderr };
}

test('check-dist: a missing dist/ is named with the command that builds it', (t) => {
  const r = run(fakePackage(t, 'check-dist.mjs', { 'src/cli.ts': 10 }), 'check-dist.mjs');
  assert.equal(r.status, 1);
  assert.match(r.output, /dist\/ is missing: build it with `npm run build`/);
});

test('check-dist: a source newer than its compiled file, or never compiled, is named', (t) => {
  const stale = run(fakePackage(t, 'check-dist.mjs', { 'src/cli.ts': 100, 'dist/cli.js': 50, 'src/smtp/session.ts': 10, 'dist/smtp/session.js': 50 }), 'check-dist.mjs');
  assert.equal(stale.status, 1);
  assert.match(stale.output, /dist\/ is older than src\/ \(src\/smtp\/session\.ts changed after the last build\): run `npm run build`/);
  const added = run(fakePackage(t, 'check-dist.mjs', { 'src/cli.ts': 100, 'dist/cli.js': 50, 'src/new.ts': 100 }), 'check-dist.mjs');
  assert.equal(added.status, 1);
  assert.match(added.output, /src\/new\.ts changed/);
});

test('check-dist: a fresh build, and an installed package without src/, start', (t) => {
  const fresh = run(fakePackage(t, 'check-dist.mjs', { 'src/cli.ts': 100, 'src/types.d.ts': 1, 'dist/cli.js': 50 }), 'check-dist.mjs');
  assert.deepEqual(fresh, { status: 0, output: '' });
  const installed = run(fakePackage(t, 'check-dist.mjs', { 'dist/cli.js': 50 }), 'check-dist.mjs');
  assert.deepEqual(installed, { status: 0, output: '' });
});

test('prepare without TypeScript: says so, exits 0, leaves dist/ alone', (t) => {
  const root = fakePackage(t, 'prepare.mjs', { 'dist/cli.js': 50 });
  const r = run(root, 'prepare.mjs');
  assert.equal(r.status, 0);
  assert.match(r.output, /TypeScript is not installed .*keeping the dist\/ already there/);
  assert.equal(readFileSync(join(root, 'dist', 'cli.js'), 'utf8'), '');
  const bare = run(fakePackage(t, 'prepare.mjs', {}), 'prepare.mjs');
  assert.equal(bare.status, 0);
  assert.match(bare.output, /there is no dist\/, so `npm start` cannot run/);
});

test('package.json: npm start runs dist/ after the check and never compiles; prepare builds; the package ships its types', () => {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string>; files: string[]; types: string; exports: Record<string, unknown>; bin: Record<string, string>; license: string };
  assert.equal(pkg.scripts.start, 'node dist/cli.js start');
  assert.equal(pkg.scripts.prestart, 'node scripts/check-dist.mjs');
  assert.equal(pkg.scripts.prepare, 'node scripts/prepare.mjs');
  assert.equal(pkg.types, 'dist/index.d.ts');
  assert.deepEqual(pkg.exports['.'], { types: './dist/index.d.ts', import: './dist/index.js' });
  assert.equal(pkg.bin.postern, 'dist/cli.js');
  for (const f of ['dist', 'scripts/check-dist.mjs', 'LICENSE']) assert.ok(pkg.files.includes(f), f);
  assert.equal(pkg.license, 'MIT');
  assert.match(readFileSync(join(REPO, 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) 2026 the postern authors\n/);
  const tsconfig = JSON.parse(readFileSync(join(REPO, 'tsconfig.json'), 'utf8')) as { compilerOptions: { declaration: boolean } };
  assert.equal(tsconfig.compilerOptions.declaration, true);
});
