import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mxMatches, parseStsPolicy, parseStsTxt, MAX_STS_AGE_S } from '../../src/delivery/mta-sts-policy.js';

test('TXT: exactly one v=STSv1 record with an id of 1 to 32 letters and digits', () => {
  assert.deepEqual(parseStsTxt([['v=STSv1; id=20160831085700Z;']]), { kind: 'record', id: '20160831085700Z' });
  assert.deepEqual(parseStsTxt([['v=STSv1;', ' id=ab', 'c']]), { kind: 'record', id: 'abc' });
  assert.deepEqual(parseStsTxt([['v=spf1 -all'], ['v=STSv1; id=x; ext=1']]), { kind: 'record', id: 'x' });
  for (const bad of [[['v=STSv1; id=a'], ['v=STSv1; id=b']], [['v=STSv1']], [['v=STSv1; id=']], [['v=STSv1; id=' + 'a'.repeat(33)]], [['v=STSv1; id=a-b']], [['v=STSv1; id=a; id=b']], [['v=STSv1; junk']], [[]], [['v=STSv2; id=a']]]) {
    assert.equal(parseStsTxt(bad).kind, 'none', JSON.stringify(bad));
  }
});

test('policy: version, mode, mx, max_age; strict on the rest', () => {
  const p = parseStsPolicy('version: STSv1\r\nmode: enforce\r\nmx: MX1.Example.org\r\nmx: *.example.net\r\nmax_age: 604800\r\nfuture: 1\r\n');
  assert.ok(p.ok);
  assert.deepEqual(p.ok && [p.policy.mode, p.policy.mx, p.policy.maxAgeS], ['enforce', ['mx1.example.org', '*.example.net'], 604800]);
  const capped = parseStsPolicy('version: STSv1\nmode: none\nmax_age: 9999999999\n');
  assert.equal(capped.ok && capped.policy.maxAgeS, MAX_STS_AGE_S);
  for (const bad of [
    'mode: enforce\nmx: a.b\nmax_age: 1\n',
    'version: STSv1\nmode: enforce\nmax_age: 1\n',
    'version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n',
    'version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n',
    'version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 12345678901\n',
    'version: STSv1\nmode: enforce\nmode: none\nmx: a.b\nmax_age: 1\n',
    'version: STSv1\nmode: enforce\nmx: *.*.b\nmax_age: 1\n',
    'version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n',
    'version: STSv1\nmode: enforce\nmx: a.b\n\nmax_age: 1\n',
    'version: STSv1\nmode: enforce\nmx: a.b\nmax_age 1\n',
    'version: STSv1\nmode: enforce\nmx: a.b\u0001\nmax_age: 1\n',
    'version: STSv1\nmode: testing\nmax_age: 1\n',
  ]) {
    assert.equal(parseStsPolicy(bad).ok, false, JSON.stringify(bad));
  }
  assert.equal(parseStsPolicy('version: STSv1\nmode: enforce\n' + 'mx: a.b\n'.repeat(65) + 'max_age: 1\n').ok, false);
});

test('mx patterns: a leading *. matches exactly one label', () => {
  const p = ['mail.example.org', '*.example.net'];
  assert.ok(mxMatches('mail.example.org', p));
  assert.ok(mxMatches('MAIL.example.org.', p));
  assert.ok(mxMatches('mx1.example.net', p));
  assert.ok(!mxMatches('example.net', p));
  assert.ok(!mxMatches('a.mx1.example.net', p));
  assert.ok(!mxMatches('other.example.org', p));
  assert.ok(!mxMatches('mail.example.org.evil.test', p));
});
