// MaildirTransport against the real file system in a temp folder: the tmp → new commit, the
// exact bytes written, and every path trick refused (5.1.3) without a byte outside the root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { tmpdir } from '../helpers/tmpdir.js';
import { MaildirTransport, crlfToLf, mailboxPath, uniqueName } from '../../src/delivery/maildir-transport.js';
import type { Destination } from '../../src/delivery/types.js';
import type { MessageRecord, Recipient } from '../../src/queue/store.js';

function rcpt(address: string): Recipient {
  const at = address.lastIndexOf('@');
  return { address, domain: at < 0 ? '' : address.slice(at + 1).toLowerCase(), state: 'pending', attempts: 0 };
}

function message(sender: string, recipients: string[]): MessageRecord {
  return {
    id: 'MSG1', seq: 1, priority: 1, sender, recipients: recipients.map(rcpt), state: 'leased',
    receivedAt: Date.now(), nextAttemptAt: 0, attempts: 0, size: 0,
  };
}

/** Every file (not folder) under dir, as paths relative to dir. */
function walk(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p, base));
    else out.push(relative(base, p));
  }
  return out.sort();
}

const BODY = Buffer.from('Subject: hi\r\nFrom: s@sender.example\r\n\r\nline 1\r\n\xff\x00 binary-ish\r\n.\r\n', 'latin1');
const UNIQUE_RE = /^\d+\.M\d+P\d+Q\d+\.[^/:]+$/;

test('two recipients: files in new/ with the exact bytes plus Return-Path and Delivered-To, tmp/ empty', async (t) => {
  const base = tmpdir(t);
  const root = join(base, 'mail');
  mkdirSync(root);
  const tr = new MaildirTransport({ hostname: 'mx/1:a' });
  t.after(() => tr.close());
  const dest: Destination = { kind: 'maildir', key: `maildir:${root}`, root };
  const msg = message('s@sender.example', ['alice@example.org', 'Bob+news@Example.ORG']);
  const res = await tr.deliver(dest, { message: msg, recipients: msg.recipients, body: BODY });

  assert.deepEqual(res.map((r) => [r.address, r.kind, r.reply.code, r.reply.enhanced]), [
    ['alice@example.org', 'delivered', 250, '2.0.0'],
    ['Bob+news@Example.ORG', 'delivered', 250, '2.0.0'],
  ]);
  for (const [dir, rcptAddr] of [['example.org/alice', 'alice@example.org'], ['example.org/bob', 'Bob+news@Example.ORG']] as const) {
    const mbox = join(root, dir);
    assert.deepEqual(readdirSync(mbox).sort(), ['cur', 'new', 'tmp']);
    assert.deepEqual(readdirSync(join(mbox, 'tmp')), [], 'nothing left in tmp/');
    assert.deepEqual(readdirSync(join(mbox, 'cur')), []);
    const files = readdirSync(join(mbox, 'new'));
    assert.equal(files.length, 1);
    assert.match(files[0]!, UNIQUE_RE);
    assert.ok(files[0]!.endsWith('.mx\\0571\\072a'), `host name escaped per the Maildir spec: ${files[0]}`);
    const expected = Buffer.concat([Buffer.from(`Return-Path: <s@sender.example>\r\nDelivered-To: ${rcptAddr}\r\n`), BODY]);
    assert.deepEqual(readFileSync(join(mbox, 'new', files[0]!)), expected);
    assert.equal(statSync(join(mbox, 'new', files[0]!)).mode & 0o777, 0o600);
  }
  assert.deepEqual(walk(base).map((p) => p.split('/').slice(0, 4).join('/')), [
    'mail/example.org/alice/new', 'mail/example.org/bob/new',
  ]);

  // A second delivery to the same mailbox gets a distinct name; null sender is Return-Path: <>.
  const bounce = message('', ['alice@example.org']);
  const res2 = await tr.deliver(dest, { message: bounce, recipients: bounce.recipients, body: BODY });
  assert.equal(res2[0]!.kind, 'delivered');
  const files = readdirSync(join(root, 'example.org/alice/new'));
  assert.equal(files.length, 2);
  const contents = files.map((f) => readFileSync(join(root, 'example.org/alice/new', f)).toString('latin1'));
  assert.ok(contents.some((c) => c.startsWith('Return-Path: <>\r\nDelivered-To: alice@example.org\r\n')));
});

test('path tricks are refused permanently (553 5.1.3) and nothing is written outside the root', async (t) => {
  const base = tmpdir(t);
  const root = join(base, 'mail');
  mkdirSync(root);
  const tr = new MaildirTransport();
  const dest: Destination = { kind: 'maildir', key: 'maildir:test', root };
  const bad = [
    '../x@example.org', '..@example.org', 'a/b@example.org', '.hidden@example.org', 'a\0b@example.org',
    'a\\b@example.org', 'a..b@example.org', `${'x'.repeat(300)}@example.org`, '"q r"@example.org',
    'ü@example.org', '+ext@example.org', 'a b@example.org', 'a\r\nb@example.org', 'tab\t@example.org',
    'a@..', 'a@../../etc', 'a@example.org/../../x', 'a@exa mple.org', 'a@[127.0.0.1]', 'a@-bad.org',
    'a@example..org', `a@${'d'.repeat(64)}.org`, 'a@.', 'a@%2e%2e', 'postmaster', '@example.org',
    'a@exa\0mple.org', 'a@exa\u2024mple.org', 'a@EXAMPLE.org\\..',
  ];
  const good = 'ok@example.org';
  const msg = message('s@sender.example', [...bad, good]);
  const res = await tr.deliver(dest, { message: msg, recipients: msg.recipients, body: BODY });
  assert.equal(res.length, bad.length + 1);
  for (const r of res.slice(0, bad.length)) {
    assert.equal(r.kind, 'failed', JSON.stringify(r.address));
    assert.equal(r.reply.code, 553, JSON.stringify(r.address));
    assert.equal(r.reply.enhanced, '5.1.3');
    assert.equal(r.reply.transient, false);
  }
  assert.equal(res[bad.length]!.kind, 'delivered');
  const files = walk(base);
  assert.equal(files.length, 1, files.join('\n'));
  assert.match(files[0]!, /^mail\/example\.org\/ok\/new\/[^/]+$/);
  assert.deepEqual(readdirSync(base), ['mail']);
  assert.deepEqual(readdirSync(root), ['example.org']);
});

test('mapping: lower-case, +extension dropped, IDNA domains; non-ASCII local parts refused', () => {
  const root = '/srv/mail';
  assert.deepEqual(mailboxPath(root, 'John.Doe+Tag+x@Example.ORG'), { ok: true, value: { domain: 'example.org', local: 'john.doe', dir: '/srv/mail/example.org/john.doe' } });
  assert.deepEqual(mailboxPath(root, 'a@bücher.example'), { ok: true, value: { domain: 'xn--bcher-kva.example', local: 'a', dir: '/srv/mail/xn--bcher-kva.example/a' } });
  assert.deepEqual(mailboxPath(root, 'a@BÜCHER.example'), mailboxPath(root, 'a@bücher.example'), 'one spelling per domain');
  assert.equal(mailboxPath(root, 'ü@example.org').ok, false);
  assert.equal(mailboxPath(root, `${'a'.repeat(64)}@example.org`).ok, true, '64 octets is the SMTP limit');
  assert.equal(mailboxPath(root, `${'a'.repeat(65)}@example.org`).ok, false);
});

test('disk errors are transient 4.3.0: missing root, a file where a folder should be', async (t) => {
  const base = tmpdir(t);
  const tr = new MaildirTransport();
  const missing = join(base, 'not-mounted');
  const msg = message('s@sender.example', ['a@example.org', 'b@blocked.example']);
  let res = await tr.deliver({ kind: 'maildir', key: 'maildir:x', root: missing }, { message: msg, recipients: msg.recipients, body: BODY });
  assert.deepEqual(res.map((r) => [r.kind, r.reply.code, r.reply.enhanced]), [['deferred', 451, '4.3.0'], ['deferred', 451, '4.3.0']]);
  assert.match(res[0]!.reply.text, /ENOENT/);
  assert.equal(existsSync(missing), false, 'the root is never created');

  const root = join(base, 'mail');
  mkdirSync(root);
  writeFileSync(join(root, 'blocked.example'), 'not a folder');
  res = await tr.deliver({ kind: 'maildir', key: 'maildir:x', root }, { message: msg, recipients: msg.recipients, body: BODY });
  assert.deepEqual(res.map((r) => r.kind), ['delivered', 'deferred']);
  assert.equal(res[1]!.reply.enhanced, '4.3.0');
  assert.equal(res[1]!.reply.transient, true);
  assert.match(res[1]!.reply.text, /ENOTDIR|EEXIST/);
});

test('unique names follow <sec>.M<usec>P<pid>Q<n>.<host> and do not repeat', () => {
  const names = new Set<string>();
  for (let i = 0; i < 1000; i++) names.add(uniqueName('h', 1_700_000_000_123));
  assert.equal(names.size, 1000);
  const n = [...names][0]!;
  const m = /^(\d+)\.M(\d+)P(\d+)Q(\d+)\.h$/.exec(n);
  assert.ok(m, n);
  assert.equal(m[1], '1700000000');
  assert.ok(Number(m[2]) >= 123_000 && Number(m[2]) < 124_000);
  assert.equal(Number(m[3]), process.pid);
});

test('lineEnds lf: the file in Unix form (each CRLF a LF, a lone CR kept), the added headers too', async (t) => {
  const root = join(tmpdir(t), 'mail');
  mkdirSync(root);
  const tr = new MaildirTransport({ hostname: 'mx1', lineEnds: 'lf' });
  t.after(() => tr.close());
  const dest: Destination = { kind: 'maildir', key: `maildir:${root}`, root };
  const msg = message('s@sender.example', ['alice@example.org']);
  const body = Buffer.from('Subject: hi\r\n\r\na\rb\r\n\r\r\n\xff\r\nlast\r', 'latin1');
  const res = await tr.deliver(dest, { message: msg, recipients: msg.recipients, body });
  assert.equal(res[0]!.kind, 'delivered');
  const dir = join(root, 'example.org', 'alice', 'new');
  const got = readFileSync(join(dir, readdirSync(dir)[0]!), 'latin1');
  assert.equal(got, 'Return-Path: <s@sender.example>\nDelivered-To: alice@example.org\nSubject: hi\n\na\rb\n\r\n\xff\nlast\r');
});

test('crlfToLf: only the CR of a CRLF goes; empty, bare and trailing CRs', () => {
  const lf = (s: string): string => Buffer.concat(crlfToLf(Buffer.from(s, 'latin1'))).toString('latin1');
  assert.equal(lf(''), '');
  assert.equal(lf('\r\n'), '\n');
  assert.equal(lf('\r'), '\r');
  assert.equal(lf('a\r\r\nb\n\rc\r'), 'a\r\nb\n\rc\r');
  assert.equal(lf('no line end'), 'no line end');
});
