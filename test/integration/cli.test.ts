// The `postern` command line: config printing and errors, user add, queue counts, the queue
// check on a data dir damaged in several ways, and a node started with `postern start` that
// takes a message and stops on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { spawnSync } from 'node:child_process';
import { CLI, runCli, startCliNode } from '../helpers/cli.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { RawClient } from '../helpers/smtp-client.js';
import { UserDb } from '../../src/auth/users.js';
import { open as openLmdb } from 'lmdb';
import { Queue } from '../../src/queue/store.js';
import { seqOfId } from '../../src/queue/ids.js';

test('postern config prints every variable; a bad value exits 78 naming them all', async () => {
  const ok = await runCli(['config'], { POSTERN_SMTP_PORT: '2600' });
  assert.equal(ok.code, 0);
  assert.match(ok.stdout, /^POSTERN_SMTP_PORT\s+2600$/m);
  assert.match(ok.stdout, /^POSTERN_TRUSTED_NETWORKS\s+127\.0\.0\.0\/8,::1\/128$/m);
  const bad = await runCli(['config'], { POSTERN_SMTP_PORT: '99999', POSTERN_REQUIRE_TLS_FOR_AUTH: 'maybe' });
  assert.equal(bad.code, 78);
  assert.match(bad.stderr, /POSTERN_SMTP_PORT="99999" is invalid: expected an integer port 0-65535/);
  assert.match(bad.stderr, /POSTERN_REQUIRE_TLS_FOR_AUTH="maybe" is invalid: expected true or false/);
  // The files the settings name, as start checks them, every problem at once.
  const files = await runCli(['config'], { POSTERN_DKIM_KEYS: 'example.com:s1:/nonexistent/k.pem', POSTERN_SHAPING: '/nonexistent/shaping.toml', POSTERN_SPAM_MODEL: '/nonexistent/spam.model' });
  assert.equal(files.code, 78);
  assert.match(files.stderr, /POSTERN_DKIM_KEYS is invalid: DKIM key example\.com:s1 \(\/nonexistent\/k\.pem\): ENOENT/);
  assert.match(files.stderr, /POSTERN_SHAPING="\/nonexistent\/shaping\.toml" is invalid: ENOENT/);
  assert.match(files.stderr, /POSTERN_SPAM_MODEL="\/nonexistent\/spam\.model" is invalid: /);
  const usage = await runCli(['frobnicate'], {});
  assert.equal(usage.code, 64);
  assert.match(usage.stderr, /unknown command "frobnicate"/);
});

test('--env-file: systemd EnvironmentFile lines under the environment, for config and queue; a bad line exits 78 naming it', async (t) => {
  const dir = tmpdir(t);
  const file = join(dir, 'postern.env');
  writeFileSync(file, `# the unit's file\nPOSTERN_SMTP_PORT=2601\nPOSTERN_HOSTNAME="mx.file.example"\nPOSTERN_DATA_DIR=${join(dir, 'nothere')}\n`);
  const r = await runCli(['config', '--env-file', file], { POSTERN_HOSTNAME: 'mx.env.example' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^POSTERN_SMTP_PORT\s+2601$/m);
  assert.match(r.stdout, /^POSTERN_HOSTNAME\s+mx\.env\.example$/m, 'the environment wins over the file');
  const q = await runCli(['queue', '--env-file', file], {});
  assert.equal(q.code, 78, 'the file\'s data dir is the one looked at');
  assert.match(q.stderr, /nothere/);
  writeFileSync(file, 'POSTERN_SMTP_PORT=2601\nthis is not a setting\n');
  const bad = await runCli(['config', '--env-file', file], {});
  assert.equal(bad.code, 78);
  assert.match(bad.stderr, /postern\.env:2: not KEY=VALUE/);
});

test('postern spam and version dispatch to their commands (loaded on demand)', async () => {
  const usage = await runCli(['spam', 'classify'], {});
  assert.equal(usage.code, 64);
  assert.match(usage.stderr, /usage: postern spam classify --model FILE/);
  const v = await runCli(['version'], {});
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
});

test('postern spam train, then spam classify through the real command line: paths on stdin, the eval.sh TSV on stdout', async (t) => {
  const dir = tmpdir(t);
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
  assert.match(tr.stderr, /^postern spam: trained lr on 40 spam \+ 40 ham in [^\n]*\n$/, 'piped: the result line only, no progress');
  // On a terminal (script(1) gives the child one): the progress, redrawn in place, then cleared.
  const script = spawnSync('script', ['-qec', `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} spam train ${JSON.stringify(join(dir, 'spam'))} ${JSON.stringify(join(dir, 'ham'))} --model ${JSON.stringify(model + '.tty')}`, '/dev/null'], { encoding: 'latin1', timeout: 60_000 });
  if (script.error === undefined) {
    assert.equal(script.status, 0, script.stdout);
    for (const stage of ['reading spam 0/40', 'reading ham 0/40', 'tokenising 0/80', 'cross-validation 0/', 'fitting']) assert.ok(script.stdout.includes(`\r\x1b[2Kpostern spam: ${stage}`), stage);
    assert.ok(script.stdout.includes('\r\x1b[2Kpostern spam: trained lr'), 'the line cleared before the result');
  }
  const tests = [...write('test-spam', 3, spamWords), ...write('test-ham', 3, hamWords)];
  const r = await runCli(['spam', 'classify', '--model', model], {}, tests.join('\n') + '\n');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n').map((l) => l.split('\t'));
  assert.deepEqual(lines.map((l) => l[0]), tests, 'one line per path, as given');
  assert.deepEqual(lines.map((l) => l[1]), ['spam', 'spam', 'spam', 'ham', 'ham', 'ham']);
  for (const l of lines) assert.ok(Number.isFinite(Number(l[2])), `score ${l[2]}`);
});

test('postern user add writes an scrypt user that verifies', async (t) => {
  const file = join(tmpdir(t), 'users');
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
  assert.equal(bad.code, 64);
});

test('postern start takes a message, postern queue shows it, SIGTERM stops cleanly', async (t) => {
  const dir = tmpdir(t);
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

test('postern queue check finds every kind of damage, --repair fixes it, and the queue works after', async (t) => {
  const dir = join(tmpdir(t), 'q');
  const env = { POSTERN_DATA_DIR: dir, POSTERN_QUEUE_MAP_BYTES: '64M' };
  // A queue of 8 messages: ready, leased, held.
  let q = Queue.open({ path: dir });
  const ids: string[] = [];
  for (let i = 0; i < 8; i++) ids.push(await q.enqueue({ sender: 's@x.example', recipients: [{ address: `r${i}@d${i % 3}.example` }] }, Buffer.from(`body ${i}`)));
  await q.lease({ limit: 2, owner: 'w' }); // ids 0, 1
  await q.hold(ids[7]!);
  await q.close();
  const clean = await runCli(['queue', 'check'], env);
  assert.equal(clean.code, 0, clean.stdout + clean.stderr);
  assert.match(clean.stdout, /^queue .*: 8 records$/m);
  assert.match(clean.stdout, /^no problems$/m);

  // Damage it behind the queue's back, one way per message or structure.
  const lmdb = openLmdb({ path: dir, maxDbs: 16 });
  const db = <V>(name: string, encoding: 'binary' | 'string' | 'ordered-binary') => lmdb.openDB<V, any>({ name, encoding });
  const msg = db<Buffer>('msg', 'binary');
  const body = db<Buffer>('body', 'binary');
  const due = db<string>('due', 'string');
  const lease = db<string>('lease', 'string');
  const count = db<number>('count', 'ordered-binary');
  const meta = db<number>('meta', 'ordered-binary');
  const dueOf = (id: string) => Array.from(due.getRange({})).find((e) => e.value === id)!.key;
  msg.putSync(ids[2]!, Buffer.from([0xc1, 0xde, 0xad])); // undecodable (ready)
  due.removeSync(dueOf(ids[3]!)); // ready, no due entry
  due.putSync([1, 1, 999_999], '0000000000000zzz'); // due entry without a record
  lease.removeSync(Array.from(lease.getRange({})).find((e) => e.value === ids[0])!.key); // leased, no lease entry
  count.putSync('s:ready', 42);
  count.putSync('d:gone.example', 3);
  body.putSync('00000000000000zz', Buffer.from('orphan')); // body without record
  body.removeSync(ids[5]!); // record without body
  meta.putSync('seq', 1);
  await lmdb.close();

  const sha = () => createHash('sha256').update(readFileSync(join(dir, 'data.mdb'))).digest('hex');
  const before = sha();
  const found = await runCli(['queue', 'check'], env);
  assert.equal(found.code, 1, 'problems: exit 1');
  for (const re of [
    new RegExp(`^problem: record ${ids[2]} cannot be decoded: `, 'm'),
    new RegExp(`^problem: record ${ids[3]} is ready but its due entry .* is missing$`, 'm'),
    /^problem: due entry \[1,1,999999\] -> 0000000000000zzz has no ready record$/m,
    new RegExp(`^problem: record ${ids[0]} is leased but its lease entry .* is missing$`, 'm'),
    /^problem: counter s:ready is 42, the records give 3$/m,
    /^problem: counter d:gone.example is 3, the records give 0$/m,
    /^problem: body 00000000000000zz has no record$/m,
    new RegExp(`^problem: record ${ids[5]} has no body$`, 'm'),
    /^problem: stored seq 1 is below the highest in use, 8$/m,
    /problems; postern queue check --repair fixes them/,
  ]) assert.match(found.stdout, re);
  assert.equal(sha(), before, 'the check alone writes nothing');

  const json = await runCli(['queue', 'check', '--json'], env);
  assert.equal(json.code, 1);
  const report = JSON.parse(json.stdout);
  assert.equal(report.ok, false);
  assert.equal(report.records, 6, '8 minus the undecodable one and the one without a body');
  const kinds = new Set(report.problems.map((p: { kind: string }) => p.kind));
  for (const k of ['undecodable-record', 'record-without-body', 'body-without-record', 'stale-due-entry', 'missing-due-entry', 'missing-lease-entry', 'counter', 'seq']) assert.ok(kinds.has(k), k);

  const usage = await runCli(['queue', 'check', '--fix'], env);
  assert.equal(usage.code, 64);
  assert.match(usage.stderr, /usage: postern queue check \[--repair\] \[--json\]/);

  const repaired = await runCli(['queue', 'check', '--repair'], env);
  assert.equal(repaired.code, 0, repaired.stdout + repaired.stderr);
  assert.match(repaired.stdout, /^\d+ problems repaired$/m);
  assert.match(repaired.stdout, /^set aside as corrupt \(sub-database 'corrupt'\): 3$/m);

  const after = await runCli(['queue', 'check'], env);
  assert.equal(after.code, 0, after.stdout);
  assert.match(after.stdout, /^queue .*: 6 records$/m);
  assert.match(after.stdout, /^no problems$/m);
  assert.match(after.stdout, new RegExp(`^  ${ids[2]}  \\S+  record 3 B, body 6 B  undecodable: `, 'm'), 'the corrupt record is kept with its body');
  assert.match(after.stdout, new RegExp(`^  ${ids[5]}  \\S+  record \\d+ B, body 0 B  record without body$`, 'm'));
  assert.match(after.stdout, /^  00000000000000zz  \S+  record 0 B, body 6 B  body without record$/m);
  const counts = await runCli(['queue', '--json'], env);
  const c = JSON.parse(counts.stdout);
  assert.equal(c.total, 6);
  assert.deepEqual(c.byState, { ready: 3, scheduled: 0, leased: 2, held: 1 });
  assert.equal(c.corruptRecords, 3);
  assert.match((await runCli(['queue'], env)).stdout, /^corrupt records set aside: 3 \(postern queue check lists them\)$/m);

  // The repaired queue: every good message can be leased (the leases of 0 and 1 once they expire).
  q = Queue.open({ path: dir, now: () => Date.now() + 3_600_000 });
  t.after(() => q.close());
  const leased = await q.lease({ limit: 20, owner: 'w2' });
  assert.deepEqual(leased.map((r) => r.id).sort(), [ids[0], ids[1], ids[3], ids[4], ids[6]].sort());
  assert.equal(seqOfId(q.reserveId()), 9, 'the seq continues past the highest in use');
});

test('postern queue check on a folder without a queue fails and creates nothing', async (t) => {
  const dir = join(tmpdir(t), 'none');
  const r = await runCli(['queue', 'check'], { POSTERN_DATA_DIR: dir });
  assert.equal(r.code, 78, 'no queue there: a configuration error');
  assert.match(r.stderr, /holds no queue \(no data\.mdb\)/);
  assert.throws(() => readFileSync(join(dir, 'data.mdb')));
});
