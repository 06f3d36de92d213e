#!/usr/bin/env node
// Runs `node --test` on every compiled *.test.js file under the folders given, so the same
// command works on Node 20, 22 and 24: Node 20 reads a folder argument as "every test in it",
// while 22+ takes arguments as files or globs and no longer walks a bare folder.
//
//   node scripts/run-tests.mjs [--node-test-option ...] FOLDER|FILE ...
//
// Options (anything starting with "--") go to `node --test` as they are; the exit code is
// node's. A folder with no test file is an error, so a renamed folder cannot silently run
// nothing.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const options = [];
const files = [];

/** Every *.test.js under `dir`, sorted, so runs list the files in the same order. */
function testFiles(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...testFiles(p));
    else if (entry.isFile() && entry.name.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

for (const arg of process.argv.slice(2)) {
  if (arg.startsWith('--')) {
    options.push(arg);
    continue;
  }
  const found = statSync(arg, { throwIfNoEntry: false });
  if (found === undefined) {
    console.error(`run-tests: ${arg} does not exist (did the build run?)`);
    process.exit(2);
  }
  const list = found.isDirectory() ? testFiles(arg) : [arg];
  if (list.length === 0) {
    console.error(`run-tests: no *.test.js file under ${arg}`);
    process.exit(2);
  }
  files.push(...list);
}
if (files.length === 0) {
  console.error('usage: node scripts/run-tests.mjs [--option ...] FOLDER|FILE ...');
  process.exit(2);
}

const child = spawn(process.execPath, ['--test', ...options, ...files], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
