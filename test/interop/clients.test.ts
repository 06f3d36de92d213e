// Interop with real clients: swaks (plain, STARTTLS + AUTH, pipelining) and Postfix's
// smtp-source (many sessions, connection reuse). .ci/run installs both, and swaks's TLS
// modules; outside CI a missing tool, or a swaks without TLS, skips its test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startTestNode, makeCert } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { addUser } from '../../src/auth/users.js';

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, out: stdout + stderr });
    });
  });
}

function which(path: string): boolean {
  return existsSync(path);
}

const SWAKS = '/usr/bin/swaks';
const SMTP_SOURCE = '/usr/sbin/smtp-source';
const missing = (tool: string) => (process.env.CI ? false : !which(tool) && `${tool} not installed`);

/**
 * swaks does STARTTLS only with Perl's Net::SSLeay and IO::Socket::SSL; without them `--tls`
 * fails the run ("*** TLS not available: requires Net::SSLeay"). `swaks --support` lists
 * "=== TLS supported" when it has them.
 */
function swaksTlsMissing(): string | false {
  if (process.env.CI) return false;
  const notThere = missing(SWAKS);
  if (notThere) return notThere;
  const r = spawnSync(SWAKS, ['--support'], { encoding: 'utf8', timeout: 30_000 });
  if (/^=== TLS supported$/m.test(r.stdout ?? '')) return false;
  const why = /\*\*\* TLS not available[^\n]*/.exec(`${r.stdout}${r.stderr}`)?.[0] ?? 'swaks --support does not list TLS';
  return `swaks cannot do STARTTLS here (${why}): install libnet-ssleay-perl and libio-socket-ssl-perl`;
}

test('swaks delivers a message', { skip: missing(SWAKS) }, async (t) => {
  const node = await startTestNode(t);
  const r = await run(SWAKS, ['--to', 'user@example.com', '--from', 'me@example.org', '--server', `127.0.0.1:${node.ports.smtpPort}`, '--header', 'Subject: swaks test', '--body', 'hello from swaks']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /<[-~] {2}250 2\.0\.0 Ok: queued as/);
  const c = node.queue.counts();
  assert.equal(c.total, 1);
  assert.equal(c.byDomain['example.com'], 1);
});

test('swaks with STARTTLS, AUTH PLAIN and PIPELINING', { skip: swaksTlsMissing() }, async (t) => {
  const { cert, key } = makeCert(t);
  const users = join(tmpdir(t), 'users');
  await addUser(users, 'alice', 'pw-for-swaks');
  const node = await startTestNode(t, { POSTERN_TLS_CERT: cert, POSTERN_TLS_KEY: key, POSTERN_AUTH_USERS: users, POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24' });
  const r = await run(SWAKS, ['--to', 'user@far.example', '--from', 'alice@example.org', '--server', `127.0.0.1:${node.ports.smtpPort}`, '--tls', '--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'pw-for-swaks', '--pipeline']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /235 2\.7\.0/);
  assert.equal(node.queue.counts().total, 1);
});

test('Postfix smtp-source: 200 messages over 4 reused sessions', { skip: missing(SMTP_SOURCE) }, async (t) => {
  const node = await startTestNode(t);
  const r = await run(SMTP_SOURCE, ['-d', '-s', '4', '-m', '200', '-l', '2048', '-f', 'src@example.org', '-t', 'dst@example.com', `127.0.0.1:${node.ports.smtpPort}`]);
  assert.equal(r.code, 0, r.out);
  assert.equal(node.queue.counts().total, 200);
});
