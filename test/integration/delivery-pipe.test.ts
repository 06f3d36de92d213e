// PipeTransport with real programs (small sh and node scripts written by each test): argv and
// stdin exactly as the program sees them, hostile substituted values reaching it verbatim as
// one argument each with nothing interpreted, the sysexits mapping, the time limit killing the
// whole process group, the bound on captured output and the per-route process limit.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from '../helpers/tmpdir.js';
import { deliveryRequest } from '../helpers/scripted-server.js';
import { PipeTransport, crlfToLf, firstLine } from '../../src/delivery/pipe-transport.js';
import { startTestNode } from '../helpers/node.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { runCli } from '../helpers/cli.js';
import { parseRoutes, type PipeTarget } from '../../src/config/routes.js';
import type { Destination } from '../../src/delivery/types.js';

/** A route's destination as mx.ts builds it, from route text after "pipe:". */
function dest(spec: string): Extract<Destination, { kind: 'pipe' }> {
  const parsed = parseRoutes(`example.com=pipe:${spec}`);
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.error);
  const target = parsed.value.routes[0]!.target as PipeTarget;
  return { kind: 'pipe', key: `pipe:${target.program}@example.com`, route: 'example.com', target };
}

function script(t: TestContext, dir: string, name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, 0o755);
  return p;
}

/** A node program that writes {argv, env, stdin} as JSON to <dir>/rec-<pid>.json, then exits 0. */
function recorder(t: TestContext, dir: string): string {
  return script(t, dir, 'record.mjs', `#!${process.execPath}
import { writeFileSync } from 'node:fs';
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
writeFileSync(${JSON.stringify(dir)} + '/rec-' + process.pid + '.json', JSON.stringify({ argv: process.argv.slice(2), env: process.env, stdin: Buffer.concat(chunks).toString('base64') }));
`);
}

interface Record {
  argv: string[];
  env: { [k: string]: string };
  stdin: string;
}

function records(dir: string): Record[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith('rec-'))
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Record);
}

const BODY = 'Subject: pipe\r\nFrom: s@sender.test\r\n\r\nline 1\r\n.dot\r\nlone\rCR\r\n';

test('pipe: the program gets the argument list with values substituted, the message on stdin in LF, and a clean environment', async (t) => {
  const dir = tmpdir(t);
  const prog = recorder(t, dir);
  process.env.POSTERN_PIPE_TEST_SECRET = 'not for children';
  t.after(() => delete process.env.POSTERN_PIPE_TEST_SECRET);
  const tr = new PipeTransport();
  const res = await tr.deliver(dest(`${prog} -f {sender} --to={recipient} {local} {domain} x{local}y{local}z`), deliveryRequest('s@sender.test', ['Alice@Example.COM'], BODY));
  assert.deepEqual(res.map((r) => [r.kind, r.reply.code, r.reply.enhanced]), [['delivered', 250, '2.0.0']]);
  assert.match(res[0]!.reply.text, /^delivered by record\.mjs$/);
  const [rec, ...more] = records(dir);
  assert.equal(more.length, 0);
  assert.deepEqual(rec!.argv, ['-f', 's@sender.test', '--to=Alice@Example.COM', 'Alice', 'example.com', 'xAliceyAlicez']);
  assert.equal(Buffer.from(rec!.stdin, 'base64').toString('latin1'), 'Return-Path: <s@sender.test>\nDelivered-To: Alice@Example.COM\nSubject: pipe\nFrom: s@sender.test\n\nline 1\n.dot\nlone\rCR\n');
  // NODE_V8_COVERAGE: Node itself hands it to every child while coverage is collected (npm test).
  assert.deepEqual(Object.keys(rec!.env).filter((k) => !/^(PWD|SHLVL|_|NODE_V8_COVERAGE)$/.test(k)).sort(), ['DOMAIN', 'LOCAL', 'PATH', 'RECIPIENT', 'SENDER']);
  assert.deepEqual([rec!.env.SENDER, rec!.env.RECIPIENT, rec!.env.LOCAL, rec!.env.DOMAIN], ['s@sender.test', 'Alice@Example.COM', 'Alice', 'example.com']);
});

test('pipe: hostile values (spaces, quotes, ;, $(...), backticks, a leading -) reach the program verbatim as one argument each, nothing interpreted', async (t) => {
  const dir = tmpdir(t);
  const prog = recorder(t, dir);
  const pwned = join(dir, 'pwned');
  const hostile = [
    '"two words"@example.com',
    `it's"q"\\@example.com`,
    `a;touch ${pwned}-semi;@example.com`,
    `$(touch ${pwned}-subst)@example.com`,
    `\`touch ${pwned}-tick\`@example.com`,
    '-oQ/tmp/evil@example.com',
    '--help@example.com',
    '$HOME|cat>x&&y*@example.com',
    '{local}@example.com',
  ];
  const sender = `$(touch ${pwned}-sender) x@y`;
  const tr = new PipeTransport();
  const res = await tr.deliver(dest(`${prog} -- {recipient} {local} {sender} pre{local}post`), deliveryRequest(sender, hostile, 'Subject: x\r\n\r\nx\r\n'));
  assert.deepEqual(res.map((r) => r.kind), hostile.map(() => 'delivered'));
  const got = records(dir).map((r) => r.argv).sort((a, b) => (a[1]! < b[1]! ? -1 : 1));
  const want = hostile
    .map((a) => {
      const local = a.slice(0, a.lastIndexOf('@'));
      // {local} in a value is not expanded again: the value is inserted once, as it is.
      return ['--', a, local, sender, `pre${local}post`];
    })
    .sort((a, b) => (a[1]! < b[1]! ? -1 : 1));
  assert.deepEqual(got, want);
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('pwned')), [], 'no command in a value ran');
});

test('pipe: exit codes map as sysexits: 0 delivered, 75 and 71 deferred, 67 bounced 5.1.1 with the first output line, others bounced, a signal deferred', async (t) => {
  const dir = tmpdir(t);
  // The local part is the exit code; the program says something first (on stderr for 67).
  const prog = script(t, dir, 'exit.sh', `#!/bin/sh
case "$1" in
  67) echo "" >&2; echo "  user $1 unknown here" >&2 ;;
  sig) kill -TERM $$ ;;
  *) echo "status $1 from the program"; echo "second line" ;;
esac
exit "$1"
`);
  const tr = new PipeTransport();
  const res = await tr.deliver(dest(`${prog} {local}`), deliveryRequest('s@x.test', ['0@example.com', '75@example.com', '71@example.com', '67@example.com', '1@example.com', '78@example.com', 'sig@example.com'], 'x\r\n'));
  const view = res.map((r) => [r.address.split('@')[0], r.kind, r.reply.code, r.reply.enhanced, r.reply.transient]);
  assert.deepEqual(view, [
    ['0', 'delivered', 250, '2.0.0', false],
    ['75', 'deferred', 451, '4.3.0', true],
    ['71', 'deferred', 451, '4.3.0', true],
    ['67', 'failed', 550, '5.1.1', false],
    ['1', 'failed', 554, '5.3.0', false],
    ['78', 'failed', 554, '5.3.5', false],
    ['sig', 'deferred', 451, '4.3.0', true],
  ]);
  assert.equal(res[0]!.reply.text, 'delivered by exit.sh: status 0 from the program');
  assert.equal(res[1]!.reply.text, 'status 75 from the program (exit.sh exited 75)');
  assert.equal(res[3]!.reply.text, 'user 67 unknown here (exit.sh exited 67)');
  assert.equal(res[4]!.reply.text, 'status 1 from the program (exit.sh exited 1)');
  assert.match(res[6]!.reply.text, /^exit\.sh was killed by SIGTERM$/);
});

test('pipe: past its time limit the program and everything in its process group are killed, and the recipient is deferred', async (t) => {
  const dir = tmpdir(t);
  const pidFile = join(dir, 'bg.pid');
  const prog = script(t, dir, 'slow.sh', `#!/bin/sh
sleep 60 &
echo $! > ${pidFile}
echo "started"
wait
`);
  const tr = new PipeTransport();
  const t0 = Date.now();
  const res = await tr.deliver(dest(`timeout=1s ${prog}`), deliveryRequest('s@x.test', ['a@example.com'], 'x\r\n'));
  const took = Date.now() - t0;
  assert.deepEqual(res.map((r) => [r.kind, r.reply.code, r.reply.enhanced]), [['deferred', 451, '4.3.0']]);
  assert.equal(res[0]!.reply.text, 'slow.sh did not finish within 1s and was killed: started');
  assert.ok(took >= 900 && took < 5000, `took ${took} ms`);
  const bg = Number(readFileSync(pidFile, 'utf8'));
  // The background sleep was in the group: gone (a zombie is reaped by init soon after).
  let alive = true;
  for (let i = 0; i < 50 && alive; i++) {
    try {
      process.kill(bg, 0);
      const stat = readFileSync(`/proc/${bg}/stat`, 'utf8');
      if (/^\d+ \([^)]*\) Z/.test(stat)) alive = false;
      else await new Promise((r) => setTimeout(r, 50));
    } catch {
      alive = false;
    }
  }
  assert.equal(alive, false, `the background child ${bg} was killed with the group`);
});

test('pipe: output is read to the end but only its first bytes are kept; the reply is one printable line of at most 200 characters', async (t) => {
  const dir = tmpdir(t);
  // 8 MiB on stdout (more than any pipe buffer): a program not drained would block forever.
  const prog = script(t, dir, 'loud.sh', `#!/bin/sh
printf 'first\\001line \\033[31mred\\033[0m %0300d\\n' 0
head -c 8388608 /dev/zero | tr '\\0' 'y'
exit 65
`);
  const tr = new PipeTransport({ maxOutputBytes: 1024 });
  const t0 = Date.now();
  const res = await tr.deliver(dest(`timeout=20s ${prog}`), deliveryRequest('s@x.test', ['a@example.com'], 'x\r\n'));
  assert.ok(Date.now() - t0 < 15_000);
  assert.deepEqual(res.map((r) => [r.kind, r.reply.code, r.reply.enhanced]), [['failed', 554, '5.6.0']]);
  const text = res[0]!.reply.text;
  assert.match(text, /^first\?line \?\[31mred\?\[0m 0+ \(loud\.sh exited 65\)$/);
  assert.equal(text.length, 200 + ' (loud.sh exited 65)'.length);
  assert.equal(firstLine(Buffer.from('\n\r\n  \x01\n  hello\r\nworld')), 'hello');
});

test('pipe: a program that exits without reading its input is judged by its status; a program that cannot start is deferred', async (t) => {
  const dir = tmpdir(t);
  const prog = script(t, dir, 'deaf.sh', '#!/bin/sh\nexit 0\n');
  const tr = new PipeTransport();
  const big = 'x'.repeat(1000) + '\r\n';
  const res = await tr.deliver(dest(prog), deliveryRequest('s@x.test', ['a@example.com'], big.repeat(4000)));
  assert.deepEqual(res.map((r) => r.kind), ['delivered']);
  const gone = await tr.deliver(dest(join(dir, 'missing')), deliveryRequest('s@x.test', ['a@example.com'], 'x\r\n'));
  assert.deepEqual(gone.map((r) => [r.kind, r.reply.enhanced]), [['deferred', '4.3.5']]);
  assert.match(gone[0]!.reply.text, /missing could not be started: ENOENT/);
});

test('pipe: one program per recipient, at most max= of a route at once', async (t) => {
  const dir = tmpdir(t);
  const prog = script(t, dir, 'busy.sh', `#!/bin/sh
touch ${dir}/run.$$
ls ${dir} | grep -c '^run\\.' >> ${dir}/counts
sleep 0.3
rm ${dir}/run.$$
`);
  const tr = new PipeTransport();
  const rcpts = ['a', 'b', 'c', 'd', 'e', 'f'].map((l) => `${l}@example.com`);
  const t0 = Date.now();
  const res = await tr.deliver(dest(`max=2 ${prog} {recipient}`), deliveryRequest('s@x.test', rcpts, 'x\r\n'));
  const took = Date.now() - t0;
  assert.deepEqual(res.map((r) => r.kind), rcpts.map(() => 'delivered'));
  const counts = readFileSync(join(dir, 'counts'), 'utf8').trim().split('\n').map(Number);
  assert.equal(counts.length, 6);
  assert.ok(Math.max(...counts) <= 2, `at most 2 at once: ${counts.join(',')}`);
  // Six runs of 0.3 s two at a time take three rounds at least.
  assert.ok(took >= 850, `took ${took} ms`);
  assert.equal(existsSync(join(dir, 'run.x')), false);
});

test('pipe: CRLF to LF keeps lone CRs and LFs', () => {
  assert.equal(crlfToLf(Buffer.from('a\r\nb\rc\nd\r\n\r\n')).toString(), 'a\nb\rc\nd\n\n');
  const plain = Buffer.from('no crlf\n');
  assert.equal(crlfToLf(plain), plain);
});

test('pipe: through a node, SMTP in, a pipe route delivers and a program\'s refusal comes back to the sender as an RFC 3464 bounce', async (t) => {
  const dir = tmpdir(t);
  // As root (CI) a pipe route must name a user: nobody, who then needs to reach the folder.
  const asRoot = (process.getuid?.() ?? 0) === 0;
  if (asRoot) chmodSync(dir, 0o777);
  // A sh recorder, not the node one: `nobody` may not reach the node binary (CI may install it
  // under a folder only root can enter).
  const prog = script(t, dir, 'record.sh', `#!/bin/sh\nprintf '%s\\n' "$@" > ${dir}/argv.$$\ncat > ${dir}/stdin.$$\nmv ${dir}/argv.$$ ${dir}/rec-$$\n`);
  const refuse = script(t, dir, 'refuse.sh', '#!/bin/sh\necho "no mailbox for $1" >&2\nexit 67\n');
  if (asRoot) {
    const reach = spawnSync('/bin/sh', ['-c', 'test -x "$0" && test -w "$1"', prog, dir], { uid: Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' })) });
    assert.equal(reach.status, 0, `nobody cannot run ${prog} or write ${dir}: a parent folder of the temp folder is closed to other users (set TMPDIR)`);
  }
  const root = join(dir, 'mail');
  mkdirSync(root);
  const user = asRoot ? 'user=nobody ' : '';
  const node = await startTestNode(t, {
    POSTERN_DELIVERY: 'routes',
    POSTERN_MAILDIR_CREATE: 'true',
    POSTERN_ROUTES: `pipe.test=pipe:${user}${prog} -d {recipient};bad.test=pipe:${user}${refuse} {local};home.test=maildir:${root}`,
    POSTERN_HOSTNAME: 'a.mx.test',
  }, { delivery: { pollIntervalMs: 50 } });
  await sendMessage(node.ports.smtpPort, 'me@home.test', ['Ann@pipe.test', 'ghost@bad.test'], 'Subject: piped\nMessage-ID: <p1@home.test>\n\nhello\n', 'client.test');
  const recs = (): string[] => readdirSync(dir).filter((f) => f.startsWith('rec-'));
  await waitFor('the pipe delivery and the bounce', () => recs().length === 1 && existsSync(join(root, 'home.test', 'me', 'new')) && readdirSync(join(root, 'home.test', 'me', 'new')).length === 1);
  await waitFor('queue empty', () => node.queue.counts().total === 0);
  const pid = recs()[0]!.slice('rec-'.length);
  assert.deepEqual(readFileSync(join(dir, `rec-${pid}`), 'utf8').split('\n'), ['-d', 'Ann@pipe.test', '']);
  const stdin = readFileSync(join(dir, `stdin.${pid}`), 'latin1');
  assert.match(stdin, /^Return-Path: <me@home\.test>\nDelivered-To: Ann@pipe\.test\nReceived: from client\.test/);
  assert.ok(stdin.endsWith('Subject: piped\nMessage-ID: <p1@home.test>\n\nhello\n'), stdin);
  assert.ok(!stdin.includes('\r'));
  const newDir = join(root, 'home.test', 'me', 'new');
  const dsn = readFileSync(join(newDir, readdirSync(newDir)[0]!), 'latin1');
  assert.match(dsn, /^Return-Path: <>\r\n/m);
  assert.match(dsn, /Content-Type: multipart\/report; report-type=delivery-status/i);
  assert.match(dsn, /Final-Recipient: rfc822; ?ghost@bad\.test/i);
  assert.match(dsn, /Status: 5\.1\.1/);
  assert.match(dsn, /Diagnostic-Code: smtp; 550 5\.1\.1 no mailbox for ghost \(refuse\.sh exited 67\)/);
  assert.ok(!/Final-Recipient: rfc822; ?Ann@pipe\.test/i.test(dsn));
});

test('pipe: postern config refuses a pipe route whose program is not an executable file, naming POSTERN_ROUTES', async (t) => {
  const dir = tmpdir(t);
  const plain = join(dir, 'plain');
  writeFileSync(plain, 'x');
  const r = await runCli(['config'], { POSTERN_ROUTES: `x.test=pipe:user=nobody ${plain} {local};y.test=pipe:/nonexistent/deliver` });
  assert.equal(r.code, 78, r.stderr);
  assert.match(r.stderr, new RegExp(`POSTERN_ROUTES route x\\.test=pipe:${plain}: ${plain} is not executable`));
  assert.match(r.stderr, /POSTERN_ROUTES route y\.test=pipe:\/nonexistent\/deliver: \/nonexistent\/deliver cannot be used: ENOENT/);
  const bad = await runCli(['config'], { POSTERN_ROUTES: 'x.test=pipe:/bin/cat {user}' });
  assert.equal(bad.code, 78);
  assert.match(bad.stderr, /POSTERN_ROUTES=.* is invalid: route "x\.test=pipe:\/bin\/cat \{user\}": pipe argument "\{user\}" has \{user\}/);
});
