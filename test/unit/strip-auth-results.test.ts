// RFC 8601 §5: incoming Authentication-Results fields with our authserv-id are removed,
// whatever their case, folding or comments; others, and the body, are left byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stripAuthResults, authservIdOf } from '../../src/protocol/strip-auth-results.js';

const strip = (msg: string, from = 0) => {
  const r = stripAuthResults(Buffer.from(msg, 'latin1'), from, 'mx.test.example');
  return { text: r.body.toString('latin1'), removed: r.removed, body: r.body };
};

test('authservIdOf: token, quoted string, comments and folding', () => {
  assert.equal(authservIdOf('Authentication-Results: mx.test.example; spf=pass'), 'mx.test.example');
  assert.equal(authservIdOf('Authentication-Results: mx.test.example 1; none'), 'mx.test.example');
  assert.equal(authservIdOf('Authentication-Results:\r\n (a (nested) comment)\r\n\t"MX.test.example"; dkim=pass'), 'MX.test.example');
  assert.equal(authservIdOf('Authentication-Results: (unclosed comment'), null);
  assert.equal(authservIdOf('Authentication-Results: ;'), null);
});

test('removes ours in any spelling, keeps others, the body and the bytes before `from`', () => {
  const msg = [
    'Received: from x by y',
    'Authentication-Results: mx.test.example; spf=pass smtp.mailfrom=evil.example',
    'authentication-results : MX.TEST.EXAMPLE;',
    '  dkim=pass header.d=bank.example',
    'Authentication-Results: other.example; spf=fail',
    'AUTHENTICATION-RESULTS: (forged) "mx.test.example"; dmarc=pass',
    'Authentication-Results-Extra: mx.test.example',
    'Subject: hi',
    '',
    'Authentication-Results: mx.test.example; in the body stays',
    '',
  ].join('\r\n');
  const r = strip(msg);
  assert.equal(r.removed, 3);
  assert.equal(r.text, [
    'Received: from x by y',
    'Authentication-Results: other.example; spf=fail',
    'Authentication-Results-Extra: mx.test.example',
    'Subject: hi',
    '',
    'Authentication-Results: mx.test.example; in the body stays',
    '',
  ].join('\r\n'));
  assert.equal(r.body.byteOffset, 0);
  assert.equal(r.body.buffer.byteLength, r.body.length, 'the copy owns its ArrayBuffer (transferable)');
  const prefix = 'Authentication-Results: mx.test.example; ours, before from\r\n';
  const p = strip(prefix + 'Authentication-Results: mx.test.example; x\r\n\r\nb', prefix.length);
  assert.equal(p.text, prefix + '\r\nb');
});

test('nothing to remove: the same buffer comes back', () => {
  const b = Buffer.from('Subject: x\r\nAuthentication-Results: other.example; none\r\n\r\nbody');
  const r = stripAuthResults(b, 0, 'mx.test.example');
  assert.equal(r.body, b);
  assert.equal(r.removed, 0);
});
