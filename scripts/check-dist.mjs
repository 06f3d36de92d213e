#!/usr/bin/env node
// `npm start`'s prestart check: dist/ exists and, in a checkout (src/ present), no source file
// is newer than its compiled file. npm start no longer compiles (a production install has no
// TypeScript), so a missing or stale dist/ is named here instead of failing as a missing module
// or running old code.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The first src/ file (relative path) whose dist/ .js is missing or older, or null. */
export function staleSource(rootDir) {
  const src = join(rootDir, 'src');
  if (!existsSync(src)) return null; // an installed package: dist/ only
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        const r = walk(p);
        if (r) return r;
      } else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
        const rel = relative(src, p);
        const out = join(rootDir, 'dist', rel.replace(/\.ts$/, '.js'));
        if (!existsSync(out) || statSync(out).mtimeMs < statSync(p).mtimeMs) return rel;
      }
    }
    return null;
  };
  return walk(src);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (!existsSync(join(root, 'dist', 'cli.js'))) {
    console.error('postern: dist/ is missing: build it with `npm run build` (`npm ci` builds it when the dev dependencies are installed).');
    process.exit(1);
  }
  const stale = staleSource(root);
  if (stale) {
    console.error(`postern: dist/ is older than src/ (src/${stale} changed after the last build): run \`npm run build\`.`);
    process.exit(1);
  }
}
