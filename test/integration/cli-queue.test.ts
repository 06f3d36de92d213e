// The command line as an operator meets it, through the built dist/cli.js: --help on every
// command and subcommand, an unknown option is exit 64, a data dir that does not exist is an
// error (78) and is never created, and queue list/show/flush/hold/release/delete/bounce run
// against a real node with messages in its queue (read-only commands read the data dir, the
// others go through the node's HTTP API with its token).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { startTestNode } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';

const COMMANDS = [
  [], ['start'], ['config'], ['user'], ['version'], ['help'],
  ['queue'], ['queue', 'list'], ['queue', 'show'], ['queue', 'flush'], ['queue', 'hold'], ['queue', 'release'],
  ['queue', 'delete'], ['queue', 'bounce'], ['queue', 'check'],
  ['sendmail'], ['spam'], ['spam', 'train'], ['spam', 'classify'], ['spam', 'eval'],
];

/** Run `jobs` two at a time (the machine is shared). */
async function inPairs<T>(jobs: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < jobs.length; i += 2) out.push(...(await Promise.all(jobs.slice(i, i + 2).map((j) => j()))));
  return out;
}

test('--help on every command and subcommand prints its usage (exit 0); an unknown option is exit 64 with the usage', async (t) => {
  const dir = join(tmpdir(t), 'never');
  const env = { POSTERN_DATA_DIR: dir, POSTERN_SMTP_PORT: '1', POSTERN_HTTP_PORT: '' };
  const help = await inPairs(COMMANDS.map((c) => () => runCli([...c, '--help'], env)));
  help.forEach((r, i) => {
    const name = COMMANDS[i]!.join(' ');
    assert.equal(r.code, 0, `${name} --help: ${r.stderr}`);
    assert.match(r.stdout, /^usage: postern/m, `${name} --help`);
  });
  assert.match(help[0]!.stdout, /exit status \(sysexits\): 0 ok, 1 .*64 usage, 65 bad input data,\n69 the node is not running, 75 temporary failure \(retry\), 78 configuration/);
  const topic = await runCli(['help', 'queue'], env);
  assert.equal(topic.code, 0);
  assert.match(topic.stdout, /^usage: postern queue \[COMMAND\]/);
  const unknown = await inPairs(COMMANDS.filter((c) => c.length > 0).map((c) => () => runCli([...c, '--frobnicate'], env)));
  unknown.forEach((r, i) => {
    const name = COMMANDS.filter((c) => c.length > 0)[i]!.join(' ');
    assert.equal(r.code, 64, `${name} --frobnicate: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /frobnicate/, name);
    assert.match(r.stderr, /usage: postern/, name);
  });
  for (const [args, re] of [
    [['queue', 'list', '--state'], /option '?--state'? needs a value/],
    [['queue', 'list', '--limit', 'x'], /--limit: "x" is not a valid number/],
    [['queue', 'show'], /missing message id/],
    [['queue', 'show', 'a', 'b'], /unexpected argument "b"/],
    [['queue', 'hold'], /which messages\?/],
    [['queue', 'hold', 'x', '--all'], /one of them/],
    [['queue', 'frob'], /unknown queue command "frob"/],
    [['config', '--json', '--markdown'], /--json or --markdown, not both/],
    [['frobnicate'], /unknown command "frobnicate"/],
  ] as const) {
    const r = await runCli([...args], env);
    assert.equal(r.code, 64, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
  const bare = await runCli([], env);
  assert.equal(bare.code, 64, 'no command: the usage on stderr, exit 64');
  assert.equal(existsSync(dir), false, 'nothing of this created the data dir');
});

test('a data dir that does not exist: every command but start says so (exit 78) and creates nothing; changes need the running node (69)', async (t) => {
  const dir = join(tmpdir(t), 'elsewhere', 'data');
  const env = { POSTERN_DATA_DIR: dir, POSTERN_HTTP_PORT: '', POSTERN_SMTP_PORT: '1' };
  for (const args of [['queue'], ['queue', 'list'], ['queue', 'show', '0000000000000001'], ['queue', 'check'], ['sendmail', '-bp']]) {
    const r = await runCli(args, env);
    assert.equal(r.code, 78, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /(no queue in .*elsewhere\/data|holds no queue)/, args.join(' '));
    assert.equal(existsSync(dir), false, `${args.join(' ')} created the data dir`);
  }
  // The HTTP API off: changes cannot be made, and the message says why.
  const off = await runCli(['queue', 'hold', '--all'], env);
  assert.equal(off.code, 78);
  assert.match(off.stderr, /POSTERN_HTTP_PORT is empty: the HTTP API is off/);
  // Nothing listening there: the node is not running.
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  const down = await runCli(['queue', 'flush'], { ...env, POSTERN_HTTP_PORT: String(port) });
  assert.equal(down.code, 69, down.stderr);
  assert.match(down.stderr, /the node is not running, or not reachable: .*ECONNREFUSED/);
});

test('queue list, show, flush, hold, release, delete, bounce against a running node', async (t) => {
  const node = await startTestNode(t, { POSTERN_HTTP_PORT: '0', POSTERN_API_TOKEN: 'cli-token' });
  const q = node.queue;
  const body = (subject: string) => Buffer.from(`From: s@a.example\r\nSubject: ${subject}\r\n\r\nhello\r\n`);
  const m1 = await q.enqueue({ sender: 's1@a.example', recipients: [{ address: 'r1@dest1.example' }] }, body('one'));
  const m2 = await q.enqueue({ sender: 's2@b.example', recipients: [{ address: 'r2@dest2.example' }, { address: 'r3@dest1.example' }] }, body('two'));
  const m3 = await q.enqueue({ sender: 's3@a.example', recipients: [{ address: 'r4@dest3.example' }], notBefore: Date.now() + 3_600_000 }, body('three'));
  // one attempt already made: the remote's reply (hostile text: an escape sequence) is the last reply
  await q.defer(m3, ['r4@dest3.example'], Date.now() + 3_600_000, { code: 451, enhanced: '4.3.0', text: 'greylisted\x1b[2J', command: 'RCPT', destination: 'mx.dest3.example' });
  const env = {
    POSTERN_DATA_DIR: node.config.dataDir,
    POSTERN_QUEUE_MAP_BYTES: '64M',
    POSTERN_HTTP_PORT: String(node.ports.httpPort),
    POSTERN_API_TOKEN: 'cli-token',
  };
  const cli = async (...args: string[]) => {
    const r = await runCli(args, env);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };

  // Read-only, beside the running node.
  const list = await cli('queue', 'list');
  assert.match(list, /^ID\s+SIZE\s+AGE\s+STATE\s+SENDER$/m);
  assert.match(list, new RegExp(`^${m1}\\s+\\d+\\s+\\d+s\\s+ready\\s+s1@a\\.example\\n    r1@dest1\\.example  pending$`, 'm'));
  assert.match(list, new RegExp(`^${m2} .*\\n    r2@dest2\\.example  pending\\n    r3@dest1\\.example  pending$`, 'm'));
  assert.match(list, new RegExp(`^${m3}\\s+\\d+\\s+\\d+s\\s+scheduled\\s+s3@a\\.example\\n    r4@dest3\\.example  pending, 1 attempt: 451 4\\.3\\.0 greylisted\\\\x1b\\[2J \\(RCPT, mx\\.dest3\\.example\\)$`, 'm'));
  assert.match(list, /^-- 3 messages, \d+ bytes$/m);
  const ids = (out: string) => (JSON.parse(out) as { id: string }[]).map((m) => m.id);
  assert.deepEqual(ids(await cli('queue', 'list', '--domain', 'dest1.example', '--json')), [m1, m2]);
  assert.deepEqual(ids(await cli('queue', 'list', '--state', 'scheduled', '--json')), [m3]);
  assert.deepEqual(ids(await cli('queue', 'list', '--sender', '@a.example', '--json')), [m1, m3]);
  assert.deepEqual(ids(await cli('queue', 'list', '--sender', 'S2@B.example', '--json')), [m2]);
  assert.deepEqual(ids(await cli('queue', 'list', '--limit', '1', '--json')), [m1]);
  assert.deepEqual(ids(await cli('queue', 'list', '--state', 'held', '--json')), []);

  const show = await cli('queue', 'show', m2);
  assert.match(show, new RegExp(`^id:\\s+${m2}$`, 'm'));
  assert.match(show, /^sender:\s+<s2@b\.example>$/m);
  assert.match(show, /^  r2@dest2\.example: pending, 0 attempts$/m);
  assert.match(show, /^headers:\n  From: s@a\.example\n  Subject: two$/m);
  const shown3 = await cli('queue', 'show', m3);
  assert.match(shown3, /^  r4@dest3\.example: pending, 1 attempt\n    last reply at \d{4}-\d\d-\d\dT[\d:.]+Z: 451 4\.3\.0 greylisted\\x1b\[2J \(RCPT, mx\.dest3\.example\)$/m);
  assert.match(shown3, /^    history \(last 1 attempt, oldest first\):\n      \d{4}-\d\d-\d\dT[\d:.]+Z  451 4\.3\.0 greylisted\\x1b\[2J \(mx\.dest3\.example\)$/m);
  assert.ok(!shown3.includes('\x1b'), 'no escape character reaches the terminal');
  // The list's JSON says the state --state matched, as the text view and the HTTP list do.
  const listed = JSON.parse(await cli('queue', 'list', '--json')) as { id: string; state: string; queue_state: string }[];
  assert.deepEqual(listed.map((m) => [m.id, m.state, m.queue_state]), [[m1, 'ready', 'ready'], [m2, 'ready', 'ready'], [m3, 'ready', 'scheduled']]);
  const shown = JSON.parse(await cli('queue', 'show', m2, '--json'));
  assert.equal(shown.sender, 's2@b.example');
  assert.deepEqual(shown.recipients.map((r: { address: string }) => r.address), ['r2@dest2.example', 'r3@dest1.example']);
  assert.equal(shown.headers, 'From: s@a.example\r\nSubject: two\r\n');
  const missing = await runCli(['queue', 'show', 'nosuchid'], env);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no message "nosuchid"/);
  assert.match(await cli('queue'), /^messages: 3\nby state: ready 2, scheduled 1, leased 0, held 0$/m);

  // Changes, through the node.
  assert.match(await cli('queue', 'hold', m1), new RegExp(`^${m1}: held$`, 'm'));
  assert.equal(q.get(m1)!.state, 'held');
  assert.deepEqual(ids(await cli('queue', 'list', '--state', 'held', '--json')), [m1]);
  assert.match(await cli('queue', 'release', m1), new RegExp(`^${m1}: released$`, 'm'));
  assert.equal(q.get(m1)!.state, 'ready');
  assert.match(await cli('queue', 'flush', '--domain', 'dest3.example'), /^1 message with recipients in dest3\.example: due now$/m);
  assert.ok(q.get(m3)!.nextAttemptAt <= Date.now(), 'flushed: due now');
  assert.match(await cli('queue', 'hold', '--domain', 'dest1.example'), /^2 messages with recipients in dest1\.example: held$/m);
  assert.deepEqual([q.get(m1)!.state, q.get(m2)!.state, q.get(m3)!.state], ['held', 'held', 'ready']);
  assert.match(await cli('queue', 'release', '--all'), /^3 messages released$/m);
  assert.deepEqual([q.get(m1)!.state, q.get(m2)!.state], ['ready', 'ready']);
  // What it counted: the recipient domains retried and the messages made due (all were due already).
  assert.match(await cli('queue', 'flush'), /^3 recipient domains retried: 0 messages made due now$/m);
  await q.defer(m3, ['r4@dest3.example'], Date.now() + 3_600_000);
  assert.match(await cli('queue', 'flush'), /^3 recipient domains retried: 1 message made due now$/m);
  assert.ok(q.get(m3)!.nextAttemptAt <= Date.now(), 'flushed: due now');

  const refused = await runCli(['queue', 'hold', m1, 'nosuchid'], env);
  assert.equal(refused.code, 1, 'refused for one of them: exit 1');
  assert.match(refused.stdout, new RegExp(`^${m1}: held$`, 'm'));
  assert.match(refused.stderr, /^postern: nosuchid: no message "nosuchid" in the queue/m);
  await cli('queue', 'release', m1);

  assert.match(await cli('queue', 'delete', m1), new RegExp(`^${m1}: deleted$`, 'm'));
  assert.equal(q.get(m1), undefined);
  const bounced = await cli('queue', 'bounce', m2);
  const dsn = new RegExp(`^${m2}: bounced \\(DSN (\\w+)\\)$`, 'm').exec(bounced)?.[1];
  assert.ok(dsn, bounced);
  assert.equal(q.get(m2), undefined, 'every recipient failed: the message is gone');
  const afterBounce = JSON.parse(await cli('queue', 'list', '--sender', '<>', '--json')) as { id: string; recipients: { address: string }[] }[];
  assert.deepEqual(afterBounce.map((m) => [m.id, m.recipients.map((r) => r.address)]), [[dsn, ['s2@b.example']]], 'the DSN goes to the sender');
  assert.match(await cli('queue', 'delete', '--domain', 'dest3.example'), /^1 message with recipients in dest3\.example: deleted$/m);
  assert.match(await cli('queue', 'delete', '--all'), /^1 message deleted$/m);
  assert.match(await cli('queue'), /^messages: 0$/m);

  const badToken = await runCli(['queue', 'flush'], { ...env, POSTERN_API_TOKEN: 'wrong' });
  assert.equal(badToken.code, 78);
  assert.match(badToken.stderr, /the node refused the token \(HTTP 401\)/);
});

test('queue show: a line per kept attempt, oldest first, with its time and reply, escaped and bounded', async (t) => {
  const node = await startTestNode(t);
  const q = node.queue;
  const id = await q.enqueue({ sender: 's@a.example', recipients: [{ address: 'r@b.example' }, { address: 'x@c.example' }] }, Buffer.from('Subject: h\r\n\r\nh\r\n'));
  const t0 = Date.parse('2026-01-02T03:04:05.000Z');
  for (let i = 1; i <= 6; i++) {
    await q.settle(id, [{ address: 'r@b.example', kind: 'deferred', retryAt: Date.now() + 3_600_000, reply: { code: 451, enhanced: '4.7.1', text: `busy ${i}\x1b[31m\r\nX`, command: 'RCPT', destination: 'smtp:mx.b.example:25', at: t0 + i * 60_000 } }]);
  }
  await q.settle(id, [{ address: 'r@b.example', kind: 'deferred', retryAt: Date.now() + 3_600_000, reply: { code: 452, text: 'z'.repeat(10 * 1024), at: t0 + 7 * 60_000 } }]);
  const r = await runCli(['queue', 'show', id], { POSTERN_DATA_DIR: node.config.dataDir, POSTERN_QUEUE_MAP_BYTES: '64M', POSTERN_HTTP_PORT: '' });
  assert.equal(r.code, 0, r.stderr);
  const at = (i: number) => new Date(t0 + i * 60_000).toISOString();
  const expected = [
    '  r@b.example: pending, 7 attempts',
    `    last reply at ${at(7)}: 452 ${'z'.repeat(2047)}…`, // cut at LAST_REPLY_TEXT_CHARS
    '    history (last 5 attempts, oldest first; 2 earlier not kept):',
    ...[3, 4, 5, 6].map((i) => `      ${at(i)}  451 4.7.1 busy ${i}\\x1b[31m\\x0d\\x0aX (smtp:mx.b.example:25)`),
    `      ${at(7)}  452 ${'z'.repeat(255)}…`,
    '  x@c.example: pending, 0 attempts',
  ].join('\n');
  assert.ok(r.stdout.includes(expected), r.stdout.replace(/z{300,}/g, '<zs>'));
  // eslint-disable-next-line no-control-regex
  assert.ok(!/[\x00-\x08\x0b-\x1f\x7f]/.test(r.stdout), 'no control character reaches the terminal');
});
