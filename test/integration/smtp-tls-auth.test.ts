// STARTTLS (RFC 3207) with a certificate made in the test, the pipelined-injection defence,
// implicit TLS (RFC 8314), AUTH PLAIN/LOGIN (RFC 4954/4616) and the Received header's
// protocol keywords (RFC 3848).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawClient } from '../helpers/smtp-client.js';
import { startTestNode, makeCert } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { addUser } from '../../src/auth/users.js';
import { join } from 'node:path';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

async function tlsNode(t: Parameters<typeof startTestNode>[0], extra: Record<string, string> = {}) {
  const { cert, key } = makeCert(t);
  const users = join(tmpdir(t), 'users');
  await addUser(users, 'alice', 's3cret pass');
  return startTestNode(t, { POSTERN_TLS_CERT: cert, POSTERN_TLS_KEY: key, POSTERN_AUTH_USERS: users, POSTERN_SMTPS_PORT: '0', ...extra });
}

test('STARTTLS upgrades, forgets the plaintext EHLO, then offers AUTH', async (t) => {
  const node = await tlsNode(t);
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  const e1 = await c.cmd('EHLO c');
  assert.ok(e1.lines.includes('STARTTLS'));
  assert.ok(!e1.lines.some((l) => l.startsWith('AUTH')), 'AUTH is not offered in plaintext');
  const a = await c.cmd('AUTH PLAIN ' + b64('\0alice\0s3cret pass'));
  assert.equal(a.code, 538);
  assert.match(a.text, /^5\.7\.11 /);
  const r = await c.cmd('STARTTLS');
  assert.equal(r.code, 220);
  await c.startTls();
  assert.equal((await c.cmd('MAIL FROM:<a@example.com>')).code, 503, 'EHLO must be repeated after TLS');
  const e2 = await c.cmd('EHLO c');
  assert.ok(!e2.lines.includes('STARTTLS'));
  assert.ok(e2.lines.includes('AUTH PLAIN LOGIN'));
  assert.equal((await c.cmd('STARTTLS')).code, 503);
});

test('STARTTLS discards commands pipelined after it before the handshake (CVE-2011-0411)', async (t) => {
  const node = await tlsNode(t);
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  await c.cmd('EHLO c');
  c.write('STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\nRCPT TO:<x@example.com>\r\n');
  const r = await c.read();
  assert.equal(r.code, 220);
  await c.startTls();
  await c.cmd('EHLO c');
  // If the injected MAIL had been kept, this would be 503 "sender already specified".
  assert.equal((await c.cmd('MAIL FROM:<real@example.com>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<y@example.com>')).code, 250);
  await c.cmd('DATA');
  const q = await c.cmd('Subject: t\r\n\r\nx\r\n.');
  assert.equal(q.code, 250);
  const id = /queued as (\S+)/.exec(q.text)![1]!;
  const m = node.queue.get(id)!;
  assert.equal(m.sender, 'real@example.com');
  assert.deepEqual(m.recipients.map((x) => x.address), ['y@example.com']);
  assert.equal(c.pending(), 0, 'no reply to the injected commands');
});

test('AUTH PLAIN and LOGIN over TLS; bad password 535 5.7.8; Received says ESMTPSA', async (t) => {
  const node = await tlsNode(t, { POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24' });
  const c = await RawClient.connect(node.ports.smtpsPort!, { tls: true });
  t.after(() => c.end());
  assert.equal((await c.read()).code, 220);
  const e = await c.cmd('EHLO c');
  assert.ok(e.lines.includes('AUTH PLAIN LOGIN'));
  assert.equal((await c.cmd('AUTH CRAM-MD5')).code, 504);
  const bad = await c.cmd('AUTH PLAIN ' + b64('\0alice\0wrong'));
  assert.equal(bad.code, 535);
  assert.match(bad.text, /^5\.7\.8 /);
  assert.equal((await c.cmd('AUTH PLAIN ' + b64('\0nobody\0x'))).code, 535);
  assert.equal((await c.cmd('AUTH PLAIN !!!')).code, 501);
  assert.equal((await c.cmd('AUTH LOGIN')).code, 334);
  assert.equal((await c.cmd('*')).code, 501, 'cancelled');
  // Untrusted and not yet authenticated: relaying is denied.
  await c.cmd('MAIL FROM:<alice@example.com>');
  assert.equal((await c.cmd('RCPT TO:<x@far.example>')).code, 550);
  await c.cmd('RSET');
  const u = await c.cmd('AUTH LOGIN');
  assert.equal(u.code, 334);
  assert.equal(u.text, 'VXNlcm5hbWU6');
  assert.equal((await c.cmd(b64('alice'))).code, 334);
  const ok = await c.cmd(b64('s3cret pass'));
  assert.equal(ok.code, 235);
  assert.match(ok.text, /^2\.7\.0 /);
  assert.equal((await c.cmd('AUTH PLAIN ' + b64('\0alice\0s3cret pass'))).code, 503, 'already authenticated');
  await c.cmd('MAIL FROM:<alice@example.com>');
  assert.equal((await c.cmd('RCPT TO:<x@far.example>')).code, 250, 'authenticated clients may relay');
  await c.cmd('DATA');
  const q = await c.cmd('Subject: t\r\n\r\nx\r\n.');
  const id = /queued as (\S+)/.exec(q.text)![1]!;
  const body = node.queue.withBody(id, (b) => b.toString('latin1'));
  assert.match(body, /\(using TLSv1\.[23] with cipher \S+; authenticated as alice\)/);
  assert.match(body, /with ESMTPSA id/);
  assert.equal(node.queue.get(id)!.client?.authUser, 'alice');
});

test('AUTH PLAIN with the initial response sent after a 334', async (t) => {
  const node = await tlsNode(t);
  const c = await RawClient.connect(node.ports.smtpsPort!, { tls: true });
  t.after(() => c.end());
  await c.read();
  await c.cmd('EHLO c');
  const p = await c.cmd('AUTH PLAIN');
  assert.equal(p.code, 334);
  assert.equal((await c.cmd(b64('alice\0alice\0s3cret pass'))).code, 235);
});

test('POSTERN_REQUIRE_TLS_FOR_AUTH=false offers AUTH in plaintext', async (t) => {
  const users = join(tmpdir(t), 'users');
  await addUser(users, 'bob', 'pw');
  const node = await startTestNode(t, { POSTERN_AUTH_USERS: users, POSTERN_REQUIRE_TLS_FOR_AUTH: 'false' });
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  const e = await c.cmd('EHLO c');
  assert.ok(e.lines.includes('AUTH PLAIN LOGIN'));
  assert.equal((await c.cmd('AUTH PLAIN ' + b64('\0bob\0pw'))).code, 235);
});

test('STARTTLS forgets an AUTH done in plaintext (RFC 3207 §4.2): no relay, AUTH offered again', async (t) => {
  const { cert, key } = makeCert(t);
  const users = join(tmpdir(t), 'users');
  await addUser(users, 'bob', 'pw');
  const node = await startTestNode(t, {
    POSTERN_TLS_CERT: cert, POSTERN_TLS_KEY: key, POSTERN_AUTH_USERS: users,
    POSTERN_REQUIRE_TLS_FOR_AUTH: 'false', POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24',
  });
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  await c.cmd('EHLO c');
  assert.equal((await c.cmd('AUTH PLAIN ' + b64('\0bob\0pw'))).code, 235);
  assert.equal((await c.cmd('STARTTLS')).code, 220);
  await c.startTls();
  const e = await c.cmd('EHLO c');
  assert.ok(e.lines.includes('AUTH PLAIN LOGIN'), 'AUTH is offered again: the plaintext login is gone');
  await c.cmd('MAIL FROM:<bob@example.com>');
  const r = await c.cmd('RCPT TO:<x@far.example>');
  assert.equal(r.code, 550, 'the plaintext authentication must not allow relaying after TLS');
  await c.cmd('RSET');
  assert.equal((await c.cmd('AUTH PLAIN ' + b64('\0bob\0pw'))).code, 235, 'a new AUTH over TLS works');
  await c.cmd('MAIL FROM:<bob@example.com>');
  assert.equal((await c.cmd('RCPT TO:<x@far.example>')).code, 250);
});

test('AUTH cancelled with * is 501 5.7.0 (RFC 4954 §4)', async (t) => {
  const node = await tlsNode(t);
  const c = await RawClient.connect(node.ports.smtpsPort!, { tls: true });
  t.after(() => c.end());
  await c.read();
  await c.cmd('EHLO c');
  assert.equal((await c.cmd('AUTH PLAIN')).code, 334);
  const r = await c.cmd('*');
  assert.equal(r.code, 501);
  assert.match(r.text, /^5\.7\.0 /);
  assert.equal((await c.cmd('AUTH LOGIN')).code, 334);
  assert.equal((await c.cmd(b64('alice'))).code, 334);
  const r2 = await c.cmd('*');
  assert.equal(r2.code, 501);
  assert.match(r2.text, /^5\.7\.0 /);
  assert.equal((await c.cmd('NOOP')).code, 250, 'back in command mode');
});

test('half-close over TLS (implicit and STARTTLS): the 250 and 221 still reach the client', async (t) => {
  const node = await tlsNode(t);
  const txn = 'EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n';
  const c = await RawClient.connect(node.ports.smtpsPort!, { tls: true });
  t.after(() => c.end());
  await c.read();
  c.socket.end(txn);
  assert.deepEqual((await c.readN(6)).map((r) => r.code), [250, 250, 250, 354, 250, 221]);
  const d = await RawClient.connect(node.ports.smtpPort);
  t.after(() => d.end());
  await d.read();
  await d.cmd('EHLO c');
  assert.equal((await d.cmd('STARTTLS')).code, 220);
  await d.startTls();
  d.socket.end(txn);
  assert.deepEqual((await d.readN(6)).map((r) => r.code), [250, 250, 250, 354, 250, 221]);
  assert.equal(node.queue.counts().total, 2);
});
