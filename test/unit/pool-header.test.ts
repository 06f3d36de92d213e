// The X-Postern-Pool field (protocol/pool-header.ts): found in any case and folded, removed
// wherever it is in the header section (never from the body, never before `from`), its value
// unfolded and trimmed; repeated, too long or malformed values say so; a hostile value costs
// its bytes and nothing more.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { takePoolHeader } from '../../src/protocol/pool-header.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

test('one field, any case, folded: removed, its value unfolded and trimmed; every other byte kept', () => {
  const msg = b('Subject: hi\r\nx-POSTERN-pool :\r\n  bulk \r\nFrom: a@b.example\r\n\r\nbody\r\n');
  const r = takePoolHeader(msg, 0);
  assert.deepEqual(r.header, { kind: 'one', value: 'bulk' });
  assert.equal(r.removed, 1);
  assert.equal(r.body.toString('latin1'), 'Subject: hi\r\nFrom: a@b.example\r\n\r\nbody\r\n');
  assert.equal(r.body.byteOffset, 0, 'owns its buffer (transferable to a filter worker)');
  assert.equal(r.body.buffer.byteLength, r.body.length);
});

test('no field: the same buffer back; a look-alike in the body or before `from` stays', () => {
  const msg = b('Received: x\r\nSubject: hi\r\n\r\nX-Postern-Pool: bulk\r\n');
  const r = takePoolHeader(msg, 0);
  assert.equal(r.body, msg);
  assert.deepEqual(r.header, { kind: 'none' });
  const prefixed = b('X-Postern-Pool: ours\r\nSubject: hi\r\nX-Postern-Pool: theirs\r\n\r\nx\r\n');
  const p = takePoolHeader(prefixed, 'X-Postern-Pool: ours\r\n'.length);
  assert.deepEqual(p.header, { kind: 'one', value: 'theirs' });
  assert.equal(p.body.toString('latin1'), 'X-Postern-Pool: ours\r\nSubject: hi\r\n\r\nx\r\n');
  assert.equal(takePoolHeader(b('X-Postern-Pools: a\r\nX-Postern-Poo: b\r\n\r\n'), 0).removed, 0, 'other field names');
});

test('repeated, too long, malformed: every copy removed, and the result says why it names no pool', () => {
  const two = takePoolHeader(b('X-Postern-Pool: a\r\nSubject: s\r\nX-Postern-Pool: a\r\n\r\nx'), 0);
  assert.deepEqual(two.header, { kind: 'repeated', count: 2 });
  assert.equal(two.body.toString('latin1'), 'Subject: s\r\n\r\nx');
  assert.deepEqual(takePoolHeader(b(`X-Postern-Pool: ${'p'.repeat(63)}\r\n\r\n`), 0).header, { kind: 'one', value: 'p'.repeat(63) });
  assert.deepEqual(takePoolHeader(b(`X-Postern-Pool: ${'p'.repeat(64)}\r\n\r\n`), 0).header, { kind: 'too-long' });
  assert.deepEqual(takePoolHeader(b('X-Postern-Pool: two words\r\n\r\n'), 0).header, { kind: 'bad', value: 'two words' });
  assert.deepEqual(takePoolHeader(b('X-Postern-Pool:\r\n\r\n'), 0).header, { kind: 'bad', value: '' });
});

test('a hostile value: megabytes of folding white space or text cost one pass', () => {
  const spaces = b(`X-Postern-Pool: bulk${' '.repeat(4_000_000)}\r\n${'\t\r\n'.repeat(100_000)}\r\nbody`);
  const t0 = performance.now();
  const r = takePoolHeader(spaces, 0);
  assert.deepEqual(r.header, { kind: 'one', value: 'bulk' }, 'trailing folding white space is trimmed');
  assert.equal(r.body.toString('latin1'), '\r\nbody');
  const long = takePoolHeader(b(`X-Postern-Pool: ${'a'.repeat(4_000_000)}\r\n\r\n`), 0);
  assert.deepEqual(long.header, { kind: 'too-long' });
  // One pass over 8 MB takes well under a second; a backtracking or quadratic trim of 4,000,000
  // spaces would take hours. The bound is loose so a loaded machine cannot fail it.
  assert.ok(performance.now() - t0 < 20_000, `${performance.now() - t0} ms`);
});
