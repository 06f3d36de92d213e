// dotStuff: RFC 5321 §4.5.2 transparency for the outbound side.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dotStuff } from '../../src/protocol/dot-stuff.js';
import { DataScanner } from '../../src/protocol/data-scanner.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const wire = (body: string): string => Buffer.concat(dotStuff(b(body))).toString('latin1');

test('a dot at a line start gets another dot; the terminator is appended', () => {
  assert.equal(wire('a\r\n.b\r\n..\r\n.\r\nc.d\r\n'), 'a\r\n..b\r\n...\r\n..\r\nc.d\r\n.\r\n');
  assert.equal(wire('.first\r\n'), '..first\r\n.\r\n');
  assert.equal(wire('.'), '..\r\n.\r\n');
});

test('a CRLF is added before the terminator when the body lacks one; empty body is just ".\\r\\n"', () => {
  assert.equal(wire('no newline'), 'no newline\r\n.\r\n');
  assert.equal(wire('ends in cr\r'), 'ends in cr\r\r\n.\r\n');
  assert.equal(wire(''), '.\r\n');
  assert.equal(wire('\r\n'), '\r\n.\r\n');
});

test('a dot after a bare LF is stuffed too', () => {
  assert.equal(wire('a\n.b\r\n'), 'a\n..b\r\n.\r\n');
});

test('zero-copy: the pieces are views of the body plus constants', () => {
  const body = b('x'.repeat(100) + '\r\n.y\r\n' + 'z'.repeat(100) + '\r\n');
  const pieces = dotStuff(body);
  assert.equal(pieces.length, 4);
  assert.ok(pieces[0]!.buffer === body.buffer);
  assert.equal(pieces[0]!.byteOffset, body.byteOffset);
  assert.equal(pieces[1]!.toString(), '.');
  assert.ok(pieces[2]!.buffer === body.buffer);
  assert.equal(pieces[3]!.toString(), '.\r\n');
  const plain = b('abc\r\n');
  assert.ok(dotStuff(plain)[0] === plain, 'a body with no dots is passed through as is');
});

test('DataScanner undoes dotStuff', () => {
  const ds = new DataScanner({ maxMessageBytes: 1 << 20 });
  for (const body of ['', '\r\n', '.\r\n', '..\r\n', 'a\r\n.\r\n.\r\n', '.x\r\n\r\n.\r\n..y\r\n']) {
    ds.begin();
    const w = Buffer.concat(dotStuff(b(body)));
    assert.equal(ds.feed(w, 0), w.length, JSON.stringify(body));
    assert.equal(ds.takeBody().toString('latin1'), body);
  }
});
