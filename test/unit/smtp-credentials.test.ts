// The credentials file of outbound AUTH: its three line forms, the most specific line wins,
// pinned errors that never hold a password, the mode and owner checks (chmod 600), and the
// re-read when it changes (a broken new version keeps the previous one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CredentialsFile, credentialsFor, fileModeProblem, parseCredentials, readCredentialsFile } from '../../src/config/smtp-credentials.js';
import { tmpdir } from '../helpers/tmpdir.js';

test('the three forms, comments, CRLF; host, host:port and the default, most specific first', () => {
  const r = parseCredentials('# relays\r\nall:pw-all\r\n\r\nrelay.example.net  alice  pass with blanks \n[Relay.Example.NET]:587 bob:p:w:x\n[2001:db8::1]:465 carol c0l0n\n', 'f');
  assert.ok(r.ok, r.ok ? '' : r.error);
  const t = r.value;
  assert.deepEqual(credentialsFor(t, 'relay.example.net', 25), { user: 'alice', password: 'pass with blanks' });
  assert.deepEqual(credentialsFor(t, 'relay.example.net', 587), { user: 'bob', password: 'p:w:x' });
  assert.deepEqual(credentialsFor(t, '2001:db8::1', 465), { user: 'carol', password: 'c0l0n' });
  assert.deepEqual(credentialsFor(t, '2001:db8::1', 25), { user: 'all', password: 'pw-all' });
  assert.deepEqual(credentialsFor(t, 'other.test', 25), { user: 'all', password: 'pw-all' });
  const noDefault = parseCredentials('relay.test u p', 'f');
  assert.ok(noDefault.ok);
  assert.equal(credentialsFor(noDefault.value, 'other.test', 25), undefined);
});

test('bad lines are refused naming file:line, never what they hold (pinned)', () => {
  const cases: Array<[string, string]> = [
    ['secret-without-colon', 'f:1: expected user:password, host user password or host user:password'],
    ['u:p\nrelay.test secret-only', 'f:2: expected host user password or host user:password'],
    ['::1 u p', 'f:1: the first word is not a host, [host] or host:port'],
    ['bad_host! u p', 'f:1: the first word is not a host, [host] or host:port'],
    ['u:', 'f:1: the user name and the password must be 1-255 bytes of text without control characters'],
    [`u:${'s'.repeat(256)}`, 'f:1: the user name and the password must be 1-255 bytes of text without control characters'],
    ['u:se\u0000cret', 'f:1: the user name and the password must be 1-255 bytes of text without control characters'],
    ['a:secret1\nb:secret2', 'f:2: a second entry for every host'],
    ['h.test a secret1\nH.TEST. b secret2', 'f:2: a second entry for h.test'],
  ];
  for (const [text, error] of cases) {
    const r = parseCredentials(text, 'f');
    assert.ok(!r.ok, text);
    assert.equal(r.error, error);
    assert.ok(!/secret/.test(r.error));
  }
});

test('the file: mode 600 and owned by us, else refused with the mode; not a file, too large', (t) => {
  const dir = tmpdir(t);
  const p = join(dir, 'auth');
  writeFileSync(p, 'u:secret\n');
  for (const mode of [0o644, 0o640, 0o604, 0o620, 0o660]) {
    chmodSync(p, mode);
    assert.throws(() => readCredentialsFile(p), (err: Error & { code?: string }) => err.code === 'PST_ERR_CONFIG_SMTP_AUTH' && err.message === `${p} is open to group or others (mode 0${mode.toString(8)}); chmod 600 it`);
  }
  chmodSync(p, 0o600);
  assert.deepEqual(credentialsFor(readCredentialsFile(p), 'x', 25), { user: 'u', password: 'secret' });
  chmodSync(p, 0o400);
  assert.ok(readCredentialsFile(p).size === 1);
  const st = statSync(p);
  assert.equal(fileModeProblem(st, st.uid + 1), st.uid === 0 ? null : `is owned by uid ${st.uid}, neither postern's user (${st.uid + 1}) nor root`);
  assert.throws(() => readCredentialsFile(dir), /is not a regular file/);
  assert.throws(() => readCredentialsFile(join(dir, 'none')), /none cannot be read: ENOENT/);
  const big = join(dir, 'big');
  writeFileSync(big, '#'.repeat(70_000));
  chmodSync(big, 0o600);
  assert.throws(() => readCredentialsFile(big), /is larger than 65536 bytes/);
});

test('CredentialsFile: re-read when it changes (at most once a second); a broken version keeps the last good one', (t) => {
  const p = join(tmpdir(t), 'auth');
  writeFileSync(p, 'u:one\n');
  chmodSync(p, 0o600);
  let now = 1_000_000;
  const errors: string[] = [];
  const f = new CredentialsFile(p, { now: () => now, onError: (e) => errors.push(e.message) });
  assert.deepEqual(f.lookup('h', 25), { ok: true, value: { user: 'u', password: 'one' } });
  writeFileSync(p, 'u:two-longer\n');
  assert.equal(f.lookup('h', 25).ok && f.lookup('h', 25).ok ? (f.lookup('h', 25) as { value: { password: string } }).value.password : '', 'one', 'not looked at within the second');
  now += 1000;
  assert.equal((f.lookup('h', 25) as { value: { password: string } }).value.password, 'two-longer');
  chmodSync(p, 0o644);
  now += 1000;
  assert.equal((f.lookup('h', 25) as { value: { password: string } }).value.password, 'two-longer', 'an open file keeps the previous table');
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /open to group or others/);
  now += 1000;
  f.lookup('h', 25);
  assert.equal(errors.length, 1, 'reported once per version');
  const missing = new CredentialsFile(join(tmpdir(t), 'none'));
  assert.deepEqual(missing.lookup('h', 25), { ok: false, error: `credentials file ${missing.path} cannot be used: ${missing.path} cannot be read: ENOENT` });
});
