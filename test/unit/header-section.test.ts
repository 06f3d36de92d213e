// The header section of a stored message and its fields (lib/header-section.ts): cut at the
// first empty line, bounded at MAX_HEADER_BYTES with `truncated` saying so, folded lines
// joined, a line without a colon kept with an empty name, bad UTF-8 replaced, not thrown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { headerFields, headerSection, MAX_HEADER_BYTES } from '../../src/lib/header-section.js';

test('the section ends at the first empty line and is a copy', () => {
  const body = Buffer.from('A: 1\r\nB: 2\r\n\r\nC: not a header\r\n');
  const s = headerSection(body);
  assert.equal(s.bytes.toString(), 'A: 1\r\nB: 2\r\n');
  assert.equal(s.truncated, false);
  body.fill(0x78);
  assert.equal(s.bytes.toString(), 'A: 1\r\nB: 2\r\n', 'not a view of the body');
  assert.deepEqual(headerSection(Buffer.from('A: 1\r\n')), { bytes: Buffer.from('A: 1\r\n'), truncated: false }, 'no body: all of it');
});

test('a section longer than MAX_HEADER_BYTES is cut and says so; one just inside is not', () => {
  const long = Buffer.from(`X: ${'y'.repeat(MAX_HEADER_BYTES)}\r\n\r\nbody`);
  const s = headerSection(long);
  assert.equal(s.bytes.length, MAX_HEADER_BYTES);
  assert.equal(s.truncated, true);
  const endless = headerSection(Buffer.from(`X: ${'y'.repeat(MAX_HEADER_BYTES + 10)}`));
  assert.equal(endless.bytes.length, MAX_HEADER_BYTES);
  assert.equal(endless.truncated, true);
  const fits = Buffer.from(`X: ${'y'.repeat(MAX_HEADER_BYTES - 7)}\r\n\r\nbody`);
  const f = headerSection(fits);
  assert.equal(f.bytes.length, MAX_HEADER_BYTES - 2);
  assert.equal(f.truncated, false);
});

test('fields: unfolded, names as written, a line without a colon, bare LF, bad UTF-8', () => {
  const raw = Buffer.concat([
    Buffer.from('Subject: one\r\n two\r\n\tthree\r\nX-Spaced : v \r\nno colon here\r\n: empty name\r\nBare: lf\nX-Bytes: '),
    Buffer.from([0xff, 0x41]),
    Buffer.from('\r\n'),
  ]);
  assert.deepEqual(headerFields(raw), [
    { name: 'Subject', value: 'one two\tthree' },
    { name: 'X-Spaced', value: 'v' },
    { name: '', value: 'no colon here' },
    { name: '', value: ': empty name' },
    { name: 'Bare', value: 'lf' },
    { name: 'X-Bytes', value: '\uFFFDA' },
  ]);
  assert.deepEqual(headerFields(Buffer.from(' leading continuation\r\nA: b\r\n')), [
    { name: '', value: ' leading continuation' },
    { name: 'A', value: 'b' },
  ]);
});
