// parseCapabilities: the EHLO/LHLO reply (RFC 5321 §4.1.1.1) as the delivery client reads it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { noCapabilities, parseCapabilities } from '../../src/protocol/capabilities.js';

test('keywords in any case, with or without arguments; the greeting line is not a keyword', () => {
  const c = parseCapabilities(['PIPELINING hello', 'pipelining', 'Size 35882577', '8bitmime', 'SMTPUTF8', 'CHUNKING', 'BINARYMIME', 'STARTTLS', 'DSN', 'ENHANCEDSTATUSCODES', 'AUTH PLAIN LOGIN', 'REQUIRETLS', 'X-UNKNOWN']);
  assert.deepEqual(c, { esmtp: true, pipelining: true, size: 35882577, eightBitMime: true, smtputf8: true, chunking: true, binaryMime: true, starttls: true, dsn: true, enhancedStatusCodes: true, requireTls: true, auth: ['PLAIN', 'LOGIN'] });
  assert.equal(parseCapabilities(['PIPELINING']).pipelining, false, 'the first line is the server name');
});

test('SIZE: no argument or a bad one means no limit (0); not offered means undefined', () => {
  assert.equal(parseCapabilities(['mx', 'SIZE']).size, 0);
  assert.equal(parseCapabilities(['mx', 'SIZE -5']).size, 0);
  assert.equal(parseCapabilities(['mx', 'SIZE lots']).size, 0);
  assert.equal(parseCapabilities(['mx', '  SIZE   1000  ']).size, 1000);
  assert.equal(parseCapabilities(['mx']).size, undefined);
  assert.equal('size' in parseCapabilities(['mx']), false);
});

test('an EHLO reply with only the name is ESMTP without extensions; noCapabilities is not ESMTP', () => {
  assert.deepEqual(parseCapabilities(['mx.example']), { ...noCapabilities(), esmtp: true });
  assert.equal(noCapabilities().esmtp, false);
});

test('AUTH: mechanisms upper-cased, the old "AUTH=" form too, bounded and checked (RFC 4422 names)', () => {
  assert.deepEqual(parseCapabilities(['mx', 'AUTH login Plain CRAM-MD5']).auth, ['LOGIN', 'PLAIN', 'CRAM-MD5']);
  assert.deepEqual(parseCapabilities(['mx', 'AUTH=LOGIN PLAIN']).auth, ['LOGIN', 'PLAIN']);
  assert.deepEqual(parseCapabilities(['mx', 'AUTH PLAIN', 'AUTH=PLAIN']).auth, ['PLAIN'], 'no duplicates');
  assert.deepEqual(parseCapabilities(['mx', 'AUTH PL\u00c4IN ' + 'X'.repeat(21) + ' PLAIN']).auth, ['PLAIN'], 'names that are not SASL names are skipped');
  const many = Array.from({ length: 1000 }, (_v, i) => `M${i}`).join(' ');
  assert.equal(parseCapabilities(['mx', `AUTH ${many}`]).auth.length, 16);
  assert.deepEqual(parseCapabilities(['mx']).auth, []);
});
