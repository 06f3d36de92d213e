// The `postern` command line: config printing and errors, user add, queue counts, and a
// node started with `postern start` that takes a message and stops on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { runCli, startCliNode } from '../helpers/cli.js';
import { tempDir } from '../helpers/node.js';
import { RawClient } from '../helpers/smtp-client.js';
import { UserDb } from '../../src/auth/users.js';

test('postern config prints every variable; a bad value exits 78 naming them all', async () => {
  const ok = await runCli(['config'], { POSTERN_SMTP_PORT: '2600' });
  assert.equal(ok.code, 0);
  assert.match(ok.stdout, /^POSTERN_SMTP_PORT\s+2600$/m);
  assert.match(ok.stdout, /^POSTERN_TRUSTED_NETWORKS\s+127\.0\.0\.0\/8,::1\/128$/m);
  const bad = await runCli(['config'], { POSTERN_SMTP_PORT: '99999', POSTERN_REQUIRE_TLS_FOR_AUTH: 'maybe' });
  assert.equal(bad.code, 78);
  assert.match(bad.stderr, /POSTERN_SMTP_PORT="99999" is invalid: expected an integer port 0-65535/);
  assert.match(bad.stderr, /POSTERN_REQUIRE_TLS_FOR_AUTH="maybe" is invalid: expected true or false/);
  const usage = await runCli(['frobnicate'], {});
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /unknown command "frobnicate"/);
});

test('postern spam and version dispatch to their commands (loaded on demand)', async () => {
  const usage = await runCli(['spam', 'classify'], {});
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /usage: postern spam classify --model FILE/);
  const v = await runCli(['version'], {});
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
});

test('postern spam train, then spam classify through the real command line: paths on stdin, the eval.sh TSV on stdout', async (t) => {
  const dir = tempDir(t);
  const write = (sub: string, n: number, words: string[]): string[] => {
    mkdirSync(join(dir, sub), { recursive: true });
    return Array.from({ length: n }, (_, i) => {
      const file = join(dir, sub, `${i}.eml`);
      const text = Array.from({ length: 30 }, (_, j) => words[(i + j * 3) % words.length]).join(' ');
      writeFileSync(file, `From: x${i}@${sub}.example\r\nSubject: ${words[i % words.length]}\r\n\r\n${text}\r\n`);
      return file;
    });
  };
  const spamWords = ['winner', 'prize', 'casino', 'cheap', 'loan', 'offer', 'click', 'money'];
  const hamWords = ['meeting', 'patch', 'kernel', 'review', 'agenda', 'release', 'build', 'lunch'];
  write('spam', 40, spamWords);
  write('ham', 40, hamWords);
  const model = join(dir, 'spam.model');
  const tr = await runCli(['spam', 'train', join(dir, 'spam'), join(dir, 'ham'), '--model', model], {});
  assert.equal(tr.code, 0, tr.stderr);
  const tests = [...write('test-spam', 3, spamWords), ...write('test-ham', 3, hamWords)];
  const r = await runCli(['spam', 'classify', '--model', model], {}, tests.join('\n') + '\n');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n').map((l) => l.split('\t'));
  assert.deepEqual(lines.map((l) => l[0]), tests, 'one line per path, as given');
  assert.deepEqual(lines.map((l) => l[1]), ['spam', 'spam', 'spam', 'ham', 'ham', 'ham']);
  for (const l of lines) assert.ok(Number.isFinite(Number(l[2])), `score ${l[2]}`);
});

test('postern user add writes an scrypt user that verifies', async (t) => {
  const file = join(tempDir(t), 'users');
  const r = await runCli(['user', 'add', 'alice', '--file', file], {}, 'correct horse\n');
  assert.equal(r.code, 0, r.stderr);
  assert.match(readFileSync(file, 'utf8'), /^alice:scrypt\$16384\$8\$1\$/);
  await runCli(['user', 'add', 'bob', '--file', file], {}, 'pw2\n');
  const again = await runCli(['user', 'add', 'alice', '--file', file], {}, 'new pass\n');
  assert.match(again.stdout, /replaced/);
  const db = await UserDb.load(file);
  assert.equal(db.size, 2);
  assert.equal(await db.verify('alice', 'new pass'), true);
  assert.equal(await db.verify('alice', 'correct horse'), false);
  assert.equal(await db.verify('bob', 'pw2'), true);
  const bad = await runCli(['user', 'add', 'x:y', '--file', file], {}, 'p\n');
  assert.equal(bad.code, 2);
});

test('postern start takes a message, postern queue shows it, SIGTERM stops cleanly', async (t) => {
  const dir = tempDir(t);
  const env = { POSTERN_SMTP_PORT: '0', POSTERN_DATA_DIR: join(dir, 'q'), POSTERN_HOSTNAME: 'cli.test.example', POSTERN_QUEUE_MAP_BYTES: '64M', POSTERN_DELIVERY: 'off', POSTERN_HTTP_PORT: '0' };
  const { child, port, httpPort } = await startCliNode(env);
  t.after(() => child.kill('SIGKILL'));
  const c = await RawClient.connect(port);
  await c.read();
  await c.cmd('EHLO c');
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<user@example.com>');
  await c.cmd('DATA');
  assert.equal((await c.cmd('Subject: cli\r\n\r\nhello\r\n.')).code, 250);
  const health = await fetch(`http://127.0.0.1:${httpPort}/health`);
  assert.equal(health.status, 200, 'the HTTP API runs beside SMTP');
  const q = await runCli(['queue'], env);
  assert.equal(q.code, 0, q.stderr);
  assert.match(q.stdout, /^messages: 1$/m);
  assert.match(q.stdout, /^\s+1\s+example\.com$/m);
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const closing = await c.read();
  assert.equal(closing.code, 421);
  const [code] = await exited;
  assert.equal(code, 0);
  const q2 = await runCli(['queue', '--json'], env);
  assert.equal(JSON.parse(q2.stdout).total, 1, 'the message survives the restart');
});
