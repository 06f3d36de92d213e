// AUTH under attack, over real sockets from several loopback addresses (127.0.0.x): one
// client's failures are delayed then refused with 454 4.7.0 while another client still logs
// in; a user name's failures from many clients lock the name but not the client its owner
// logged in from; trusted clients escape the per-client count only; and no more password
// checks run at once than POSTERN_AUTH_CONCURRENCY, with 454 4.7.0 past POSTERN_AUTH_QUEUE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { RawClient } from '../helpers/smtp-client.js';
import { startTestNode } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { addUser } from '../../src/auth/users.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
type T = Parameters<typeof startTestNode>[0];

async function authNode(t: T, env: Record<string, string>) {
  const users = join(tmpdir(t), 'users');
  await addUser(users, 'alice', 'right pass');
  return startTestNode(t, {
    POSTERN_AUTH_USERS: users,
    POSTERN_REQUIRE_TLS_FOR_AUTH: 'false',
    POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24',
    ...env,
  });
}

/** One AUTH PLAIN in a fresh session from `from`; the reply and how long it took. */
async function tryAuth(port: number, from: string, user: string, password: string): Promise<{ code: number; text: string; ms: number }> {
  const c = await RawClient.connect(port, { localAddress: from });
  try {
    await c.read();
    await c.cmd('EHLO c');
    const t0 = Date.now();
    const r = await c.cmd('AUTH PLAIN ' + b64(`\0${user}\0${password}`), 30_000);
    return { code: r.code, text: r.text, ms: Date.now() - t0 };
  } finally {
    c.end();
  }
}

test('one client: failures are delayed, then 454 4.7.0 even with the right password; another client still logs in', async (t) => {
  const node = await authNode(t, { POSTERN_AUTH_MAX_FAILURES: '3', POSTERN_AUTH_MAX_DELAY_MS: '1s', POSTERN_AUTH_USER_MAX_FAILURES: '100' });
  const port = node.ports.smtpPort;
  const first = await tryAuth(port, '127.0.0.2', 'alice', 'guess1');
  assert.equal(first.code, 535);
  // After a failure, the next attempt waits (2 s capped at 1 s) before it is even checked.
  for (const guess of ['guess2', 'guess3']) {
    const r = await tryAuth(port, '127.0.0.2', 'alice', guess);
    assert.equal(r.code, 535);
    assert.ok(r.ms >= 1000 + 250, `attempt after a failure took ${r.ms} ms`);
  }
  for (const [user, pass] of [['alice', 'right pass'], ['nobody', 'x']]) {
    const locked = await tryAuth(port, '127.0.0.2', user!, pass!);
    assert.equal(locked.code, 454, locked.text);
    assert.match(locked.text, /^4\.7\.0 Too many authentication failures/);
  }
  const ok = await tryAuth(port, '127.0.0.3', 'alice', 'right pass');
  assert.equal(ok.code, 235, ok.text);
  assert.equal((await tryAuth(port, '127.0.0.2', 'alice', 'right pass')).code, 454, 'the other client\'s success does not unlock this one');
  assert.equal(node.ctx.passwords!.checks, 4, 'a locked client costs no password check');
});

test('one user name: failures from many clients lock it, but not where its owner logged in; trusted clients escape only the per-client count', async (t) => {
  const node = await authNode(t, { POSTERN_AUTH_MAX_FAILURES: '2', POSTERN_AUTH_USER_MAX_FAILURES: '3', POSTERN_AUTH_MAX_DELAY_MS: '0', POSTERN_TRUSTED_NETWORKS: '127.0.0.1/32' });
  const port = node.ports.smtpPort;
  assert.equal((await tryAuth(port, '127.0.0.9', 'alice', 'right pass')).code, 235, 'alice at her usual place');
  for (const from of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) assert.equal((await tryAuth(port, from, 'alice', 'wrong')).code, 535);
  const elsewhere = await tryAuth(port, '127.0.0.5', 'alice', 'right pass');
  assert.equal(elsewhere.code, 454, 'the name is locked for new clients, right password or not');
  assert.equal((await tryAuth(port, '127.0.0.1', 'alice', 'right pass')).code, 454, 'trusted clients too');
  assert.equal((await tryAuth(port, '127.0.0.9', 'alice', 'right pass')).code, 235, 'her known client still gets in');
  // A name that does not exist locks the same way: the answers do not tell which names exist.
  for (const from of ['127.0.0.2', '127.0.0.6', '127.0.0.7']) assert.equal((await tryAuth(port, from, 'nobody', 'wrong')).code, 535);
  assert.equal((await tryAuth(port, '127.0.0.8', 'nobody', 'wrong')).code, 454);
  // The trusted client fails as many different names as it likes (a webmail logs many users in).
  for (let i = 0; i < 5; i++) assert.equal((await tryAuth(port, '127.0.0.1', `user${i}`, 'wrong')).code, 535);
  // An untrusted one does not: its third try is refused.
  assert.equal((await tryAuth(port, '127.0.0.10', 'u1', 'wrong')).code, 535);
  assert.equal((await tryAuth(port, '127.0.0.10', 'u2', 'wrong')).code, 535);
  assert.equal((await tryAuth(port, '127.0.0.10', 'u3', 'wrong')).code, 454);
});

test('no more checks at once than POSTERN_AUTH_CONCURRENCY; past POSTERN_AUTH_QUEUE, 454 4.7.0', async (t) => {
  const node = await authNode(t, { POSTERN_AUTH_CONCURRENCY: '2', POSTERN_AUTH_QUEUE: '2', POSTERN_AUTH_MAX_DELAY_MS: '0' });
  const port = node.ports.smtpPort;
  // Twelve sessions from twelve addresses, ready, then AUTH on all of them in one go.
  const clients = await Promise.all(Array.from({ length: 12 }, (_, i) => RawClient.connect(port, { localAddress: `127.0.1.${i + 1}` })));
  t.after(() => clients.forEach((c) => c.end()));
  for (const c of clients) {
    await c.read();
    await c.cmd('EHLO c');
  }
  for (const [i, c] of clients.entries()) c.write('AUTH PLAIN ' + b64(`\0user${i}\0wrong`) + '\r\n');
  const replies = await Promise.all(clients.map((c) => c.read(30_000)));
  const codes = replies.map((r) => r.code);
  const busy = replies.filter((r) => r.code === 454);
  assert.ok(busy.length >= 1, `some are refused: ${codes.join(' ')}`);
  for (const r of busy) assert.match(r.text, /^4\.7\.0 Temporary authentication failure/);
  assert.equal(codes.filter((c) => c === 535).length + busy.length, 12, codes.join(' '));
  assert.ok(codes.filter((c) => c === 535).length >= 4, `two running and two waiting are checked: ${codes.join(' ')}`);
  assert.equal(node.ctx.passwords!.peakRunning, 2);
  assert.equal(node.ctx.passwords!.checks, 12 - busy.length);
});
