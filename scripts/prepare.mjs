#!/usr/bin/env node
// npm's `prepare` hook: builds a clean dist/ (JavaScript and .d.ts) with TypeScript. npm runs it
// on `npm ci`/`npm install` in a checkout and before `npm pack`, never when the packed package is
// installed elsewhere (that package ships dist/). Without TypeScript (`npm ci --omit=dev` in a
// checkout) it says so and leaves dist/ as it is, so the install itself still succeeds.
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  const what = existsSync(`${root}dist/cli.js`) ? 'keeping the dist/ already there' : 'there is no dist/, so `npm start` cannot run';
  console.warn(`postern prepare: TypeScript is not installed (dev dependencies omitted?): not building dist/, ${what}. Run \`npm ci\` with the dev dependencies, or install the packed package (\`npm pack\`), which ships dist/.`);
  process.exit(0);
}
// Clean first: a module removed from src/ must not linger in dist/ (and in the packed package).
rmSync(`${root}dist`, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', `${root}tsconfig.json`], { stdio: 'inherit', cwd: root });
