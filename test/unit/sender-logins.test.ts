// The sender login map (src/auth/sender-logins.ts) and its grants (src/lib/sender-grant.ts):
// addresses and whole domains per user, compared case-insensitively with IDNs as A-labels;
// parse errors name file:line; and the DKIM signer's From check against a user's grants.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { SenderLogins } from '../../src/auth/sender-logins.js';
import { grantKey, isGranted } from '../../src/lib/sender-grant.js';
import { fromAddress, signMessage } from '../../src/filter/dkim/sign.js';
import type { DkimKey } from '../../src/filter/dkim/keys.js';

const MAP = `# who may send as what
alice@example.com        alice
@example.org             alice, bob
postmaster@example.com   alice bob
@bücher.example          carol
`;

test('mayUse: addresses and whole domains, case-insensitive, IDN domains as A-labels, subdomains not included', () => {
  const m = SenderLogins.parse(MAP, 'logins');
  assert.equal(m.size, 6);
  assert.equal(m.mayUse('alice', 'alice@example.com'), true);
  assert.equal(m.mayUse('alice', 'Alice@EXAMPLE.com'), true);
  assert.equal(m.mayUse('bob', 'alice@example.com'), false);
  assert.equal(m.mayUse('alice', 'bob@example.com'), false, 'an address entry is not the domain');
  assert.equal(m.mayUse('bob', 'anyone@example.org'), true);
  assert.equal(m.mayUse('bob', 'anyone@sub.example.org'), false, 'a domain entry does not cover subdomains');
  assert.equal(m.mayUse('bob', 'postmaster@example.com'), true);
  assert.equal(m.mayUse('carol', 'c@xn--bcher-kva.example'), true);
  assert.equal(m.mayUse('carol', 'c@BÜCHER.example'), true);
  assert.equal(m.mayUse('dave', 'dave@example.com'), false, 'a user the map does not name may use nothing');
  assert.equal(m.mayUse('alice', 'alice@[192.0.2.1]'), false);
  assert.equal(m.mayUse('alice', 'no-at-sign'), false);
  assert.deepEqual([...m.grantsOf('alice')].sort(), ['@example.org', 'alice@example.com', 'postmaster@example.com']);
  assert.deepEqual(m.grantsOf('dave'), []);
});

test('isGranted and grantKey: the forms both sides compare', () => {
  assert.equal(grantKey('Ann@Example.COM.'), 'ann@example.com');
  assert.equal(grantKey('@example.com'), null);
  const g = new Set(['@example.org', 'ann@example.com']);
  assert.equal(isGranted(g, 'ANN@example.com'), true);
  assert.equal(isGranted(g, 'x@example.org'), true);
  assert.equal(isGranted(g, 'x@example.com'), false);
  assert.equal(isGranted(g, 'x@example.org.evil'), false);
});

test('parse errors name the file and line', () => {
  const bad: Array<[string, RegExp]> = [
    ['alice@example.com', /^logins:1: expected "address-or-@domain user/],
    ['# ok\n@exa_mple.com alice', /^logins:2: "@exa_mple\.com" is not an address \(local@domain\) or a domain \(@domain\)/],
    ['a@b@example.com alice', /^logins:1: "a@b@example\.com" is not an address/],
    ['alice alice', /^logins:1: "alice" is not an address/],
    ['@example.com al:ice', /^logins:1: "al:ice" is not a user name/],
    ['@example.com alice\n\n@EXAMPLE.com bob', /^logins:3: @EXAMPLE\.com is already listed at line 1/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => SenderLogins.parse(text, 'logins'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'PST_ERR_AUTH_SENDER_LOGINS');
      assert.match(err.message, re);
      return true;
    });
  }
});

test('fromAddress: the single From address, display names and comments dropped', () => {
  assert.deepEqual(fromAddress('From: "Bob, the <boss>" <Bob@Example.COM> (work)'), { local: 'Bob', domain: 'example.com' });
  assert.deepEqual(fromAddress('From: ann@example.org'), { local: 'ann', domain: 'example.org' });
  assert.equal(fromAddress('From: a@example.com, b@example.com'), null);
});

test('signMessage with fromAllowed: signs only a From the sender may use', () => {
  const key: DkimKey = { domain: 'example.com', selector: 's', keyFile: '-', algorithm: 'ed25519-sha256', key: generateKeyPairSync('ed25519').privateKey };
  const keys = new Map([['example.com', key]]);
  const msg = (from: string) => Buffer.from(`From: ${from}\r\nSubject: x\r\n\r\nbody\r\n`);
  const grants = new Set(['alice@example.com']);
  const allowed = { fromAllowed: (a: string) => isGranted(grants, a) };
  assert.notEqual(signMessage(msg('Alice <ALICE@example.com>'), keys, allowed), null);
  assert.equal(signMessage(msg('Boss <boss@example.com>'), keys, allowed), null);
  assert.notEqual(signMessage(msg('Boss <boss@example.com>'), keys), null, 'without the check, any From with a key');
});
