// The pipe route grammar (config/routes.ts) and its start-up checks (config/pipe-routes.ts):
// options, program, argument templates and every refusal; the program must be an executable
// file; root must name a user that is not root; a non-root postern may not name another user.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from '../helpers/tmpdir.js';
import { formatRoutes, parseRoutes, type PipeTarget, type RouteTable } from '../../src/config/routes.js';
import { checkPipeRoutes, type PipeCheckOptions } from '../../src/config/pipe-routes.js';

function table(spec: string): RouteTable {
  const r = parseRoutes(spec);
  assert.ok(r.ok, r.ok ? '' : r.error);
  return r.value;
}

function pipeOf(spec: string): PipeTarget {
  return table(spec).routes[0]!.target as PipeTarget;
}

test('pipe routes: options, program and argument templates; written back in the same grammar', () => {
  assert.deepEqual(pipeOf('example.com=pipe:/usr/bin/maildrop -d {local}'), { kind: 'pipe', program: '/usr/bin/maildrop', args: ['-d', '{local}'], timeoutMs: 60_000, maxProcesses: 4 });
  const t = pipeOf('*.lists.test = pipe:user=vmail  group=mail timeout=2m max=16 /usr/lib/dovecot/dovecot-lda -f {sender} -d {recipient} -a x{domain}@{local}');
  assert.deepEqual(t, { kind: 'pipe', program: '/usr/lib/dovecot/dovecot-lda', args: ['-f', '{sender}', '-d', '{recipient}', '-a', 'x{domain}@{local}'], user: 'vmail', group: 'mail', timeoutMs: 120_000, maxProcesses: 16 });
  const spec = 'a.test=pipe:/bin/true;b.test=pipe:user=1001 timeout=90s max=1 /bin/cat --x={recipient};c.test=maildir:/var/mail';
  const text = formatRoutes(table(spec));
  assert.equal(text, 'a.test=pipe:/bin/true;b.test=pipe:user=1001 timeout=90000ms max=1 /bin/cat --x={recipient};c.test=maildir:/var/mail');
  assert.equal(formatRoutes(table(text)), text, 'round trip');
});

test('pipe routes: a bad pipe target is refused, naming the route and what is allowed', () => {
  const bad: Array<[string, RegExp]> = [
    ['x.test=pipe:', /pipe needs an absolute program path/],
    ['x.test=pipe:bin/maildrop -d {local}', /"bin\/maildrop" is neither a pipe option \(user=, group=, timeout=, max=\) nor an absolute program path/],
    ['x.test=pipe:user=vmail', /pipe needs an absolute program path/],
    ['x.test=pipe:/bin/cat {user}', /pipe argument "\{user\}" has \{user\}; expected \{sender\}, \{recipient\}, \{domain\}, \{local\}/],
    ['x.test=pipe:/bin/cat {}', /has \{\}/],
    ['x.test=pipe:max=0 /bin/cat', /pipe max "0" is not 1-256/],
    ['x.test=pipe:max=999 /bin/cat', /pipe max "999" is not 1-256/],
    ['x.test=pipe:timeout=5 /bin/cat', /pipe timeout: duration "5" is not a number with a unit/],
    ['x.test=pipe:timeout=10ms /bin/cat', /pipe timeout "10ms" is under 1s/],
    ['x.test=pipe:user=-oQ /bin/cat', /pipe user "-oQ" is not a user or group name or number/],
    ['x.test=pipe:group=a$b /bin/cat', /pipe group "a\$b" is not a user or group name or number/],
    ['x.test=pipe:nice=5 /bin/cat', /"nice=5" is neither a pipe option/],
  ];
  for (const [spec, re] of bad) {
    const r = parseRoutes(spec);
    assert.equal(r.ok, false, spec);
    if (!r.ok) {
      assert.match(r.error, re, spec);
      assert.ok(r.error.startsWith(`route "${spec}": `), r.error);
    }
  }
  const unknown = parseRoutes('x.test=ftp:h');
  assert.ok(!unknown.ok && /expected smtp, lmtp, maildir, webhook or pipe/.test(unknown.error));
});

const PASSWD: Record<string, string[]> = { vmail: ['vmail', 'x', '5000', '5001', '', '/var/vmail', '/bin/false'], root: ['root', 'x', '0', '0'], me: ['me', 'x', '1000', '1000'], '1000': ['me', 'x', '1000', '1000'] };
const GROUP: Record<string, string[]> = { mail: ['mail', 'x', '8', ''], staff: ['staff', 'x', '50', ''] };
const lookup: PipeCheckOptions['lookup'] = (db, key) => (db === 'passwd' ? PASSWD[key] : GROUP[key]) ?? null;

test('pipe routes at start-up: the program must be an executable file', (t) => {
  const dir = tmpdir(t);
  const exe = join(dir, 'deliver');
  writeFileSync(exe, '#!/bin/sh\n');
  chmodSync(exe, 0o755);
  const plain = join(dir, 'plain');
  writeFileSync(plain, 'x');
  chmodSync(plain, 0o644);
  mkdirSync(join(dir, 'folder'));
  const r = checkPipeRoutes(table(`a.test=pipe:${exe};b.test=pipe:${plain};c.test=pipe:${dir}/folder;d.test=pipe:${dir}/nothing`), { uid: 1000, gid: 1000, lookup });
  assert.deepEqual(r.problems, [
    `POSTERN_ROUTES route b.test=pipe:${plain}: ${plain} is not executable`,
    `POSTERN_ROUTES route c.test=pipe:${dir}/folder: ${dir}/folder is not a file`,
    `POSTERN_ROUTES route d.test=pipe:${dir}/nothing: ${dir}/nothing cannot be used: ENOENT`,
  ]);
  assert.equal(r.identities.size, 0);
});

test('pipe routes at start-up: as root a user is required and never root; names and numbers resolve', () => {
  const asRoot = { uid: 0, gid: 0, lookup };
  const r = checkPipeRoutes(table('a.test=pipe:/bin/sh;b.test=pipe:user=root /bin/sh;c.test=pipe:user=vmail /bin/sh;d.test=pipe:user=vmail group=mail /bin/sh;e.test=pipe:user=4242 group=4243 /bin/sh;f.test=pipe:user=4242 /bin/sh;g.test=pipe:user=ghost /bin/sh;h.test=pipe:user=vmail group=nogroup /bin/sh;i.test=pipe:group=staff /bin/sh'), asRoot);
  assert.deepEqual(r.problems, [
    'POSTERN_ROUTES route a.test=pipe:/bin/sh: postern runs as root and a pipe program never does: give user= (e.g. pipe:user=vmail /bin/sh …)',
    'POSTERN_ROUTES route b.test=pipe:/bin/sh: a pipe program never runs as root (uid 0); give another user=',
    'POSTERN_ROUTES route f.test=pipe:/bin/sh: user=4242 has no passwd entry to take a group from; give group=',
    'POSTERN_ROUTES route g.test=pipe:/bin/sh: user=ghost does not exist',
    'POSTERN_ROUTES route h.test=pipe:/bin/sh: group=nogroup does not exist',
    'POSTERN_ROUTES route i.test=pipe:/bin/sh: a pipe program never runs as root (uid 0); give another user=',
  ]);
  assert.deepEqual(Object.fromEntries(r.identities), { 'c.test': { uid: 5000, gid: 5001 }, 'd.test': { uid: 5000, gid: 8 }, 'e.test': { uid: 4242, gid: 4243 } });
});

test('pipe routes at start-up: not root, another user is an error naming POSTERN_ROUTES, postern\'s own user is fine', () => {
  const me = { uid: 1000, gid: 1000, lookup };
  const r = checkPipeRoutes(table('a.test=pipe:/bin/sh;b.test=pipe:user=vmail /bin/sh;c.test=pipe:user=me /bin/sh;d.test=pipe:user=1000 /bin/sh;e.test=pipe:user=me group=staff /bin/sh'), me);
  assert.deepEqual(r.problems, [
    'POSTERN_ROUTES route b.test=pipe:/bin/sh: runs as uid 5000 gid 5001, but postern runs as uid 1000 gid 1000, not root, and cannot change user; drop user=/group= or name postern\'s own',
    'POSTERN_ROUTES route e.test=pipe:/bin/sh: runs as uid 1000 gid 50, but postern runs as uid 1000 gid 1000, not root, and cannot change user; drop user=/group= or name postern\'s own',
  ]);
  assert.deepEqual(Object.fromEntries(r.identities), { 'c.test': { uid: 1000, gid: 1000 }, 'd.test': { uid: 1000, gid: 1000 } });
  // The real getent: "root" exists everywhere.
  const real = checkPipeRoutes(table('a.test=pipe:user=root /bin/sh'));
  assert.match(real.problems[0] ?? '', /uid 0|cannot change user/);
});
