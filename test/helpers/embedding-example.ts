// The TypeScript example of docs/embedding.md as a program: taken from the page, compiled with
// tsc against the package's declarations (the checkout's own, imported by the package's name,
// or an installed copy's), run, sent a message over SMTP and stopped with SIGTERM.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { cleanEnv } from './cli.js';
import { sendMessage } from './smtp-client.js';
import { waitFor } from './wait-for.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const TSC = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');

export function exampleSource(): string {
  const m = /```ts\n([\s\S]*?)```/.exec(readFileSync(join(REPO, 'docs', 'embedding.md'), 'utf8'));
  assert.ok(m, 'docs/embedding.md has a ```ts block');
  return m[1]!;
}

/**
 * Write the example as dir/example.mts and compile it as a user would (NodeNext, strict);
 * `postern` resolves from dir upwards. Returns the compiled file.
 */
export function compileExample(dir: string): string {
  writeFileSync(join(dir, 'example.mts'), exampleSource());
  const args = ['--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--strict', '--skipLibCheck'];
  // @types/node from the checkout: an installed package brings no dev dependencies.
  args.push('--typeRoots', join(REPO, 'node_modules', '@types'), '--types', 'node', '--rootDir', dir, '--outDir', dir, join(dir, 'example.mts'));
  const r = spawnSync(process.execPath, [TSC, ...args], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `tsc failed on the example of docs/embedding.md:\n${r.stdout}${r.stderr}`);
  return join(dir, 'example.mjs');
}

/** Run the compiled example on a free loopback port, queue one message, stop it with SIGTERM. */
export async function runExample(t: TestContext, file: string, dataDir: string): Promise<void> {
  const child = spawn(process.execPath, [file], { cwd: dirname(file), env: cleanEnv({ POSTERN_SMTP_PORT: '0', POSTERN_DATA_DIR: dataDir, POSTERN_HOSTNAME: 'embed.test.example' }), stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit');
  await waitFor('the example to listen', () => /listening on SMTP port \d+/.test(out) || child.exitCode !== null, { timeoutMs: 30_000, diag: () => out });
  const port = Number(/listening on SMTP port (\d+), 0 messages queued/.exec(out)?.[1]);
  assert.ok(port > 0, out);
  await sendMessage(port, 's@sender.example', ['r@rcpt.example'], 'Subject: embedded\r\n\r\nhello\r\n');
  child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  assert.equal(code, 0, out);
  assert.match(out, /stopped \(1 queued in this run\)/);
}
