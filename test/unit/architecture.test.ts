// The dependency rules of docs/architecture.md, checked on the relative imports (static,
// dynamic and re-exports) of every file in src/: smtp and delivery never import each other,
// lib imports nothing from postern, protocol only lib, config only lib and errors.ts (except
// its resources step).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, posix, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));

/** Every .ts file under src/, as a path relative to src/ with forward slashes. */
function sources(dir = SRC): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(relative(SRC, p).split(sep).join('/'));
  }
  return out.sort();
}

/** The src-relative targets of a file's relative imports ("x.js" → "x.ts"). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(SRC, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)'(\.{1,2}\/[^']+)'/gm)) {
    out.push(posix.normalize(posix.join(dirname(file), m[1]!)).replace(/\.js$/, '.ts'));
  }
  return out;
}

/** The top folder of a src-relative path ("smtp/commands/data.ts" → "smtp"; "main.ts" → "main.ts"). */
const area = (p: string): string => p.split('/')[0]!;

const FILES = sources();
const EDGES = FILES.flatMap((from) => importsOf(from).map((to) => ({ from, to })));

function violations(rule: (from: string, to: string) => boolean): string[] {
  return EDGES.filter(({ from, to }) => area(from) !== area(to) && rule(from, to)).map(({ from, to }) => `${from} → ${to}`);
}

test('the import scan sees the files and their imports', () => {
  assert.ok(FILES.includes('main.ts') && FILES.includes('smtp/session.ts'), FILES.join(' '));
  assert.ok(EDGES.some((e) => e.from === 'main.ts' && area(e.to) === 'smtp'), 'main.ts imports smtp/');
  assert.ok(EDGES.some((e) => e.from === 'delivery/scheduler.ts' && area(e.to) === 'queue'), 'the scheduler imports queue/');
});

test('smtp and delivery never import each other: they meet only in the queue', () => {
  assert.deepEqual(
    violations((from, to) => (area(from) === 'smtp' && area(to) === 'delivery') || (area(from) === 'delivery' && area(to) === 'smtp')),
    [],
  );
});

test('lib imports nothing from postern', () => {
  assert.deepEqual(violations((from) => area(from) === 'lib'), []);
});

test('protocol imports only lib', () => {
  assert.deepEqual(violations((from, to) => area(from) === 'protocol' && area(to) !== 'lib'), []);
});

test('config imports only lib and errors.ts, except its resources step', () => {
  assert.deepEqual(violations((from, to) => area(from) === 'config' && from !== 'config/resources.ts' && !['lib', 'errors.ts'].includes(area(to))), []);
});
