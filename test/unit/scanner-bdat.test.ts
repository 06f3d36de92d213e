// BdatReader: RFC 3030 CHUNKING, exact byte counts, DATA's line checks carried across chunks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BdatReader } from '../../src/protocol/bdat-reader.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

test('exact counts across socket chunks; the offset after the chunk is returned', () => {
  const r = new BdatReader({ maxMessageBytes: 1000 });
  r.begin();
  r.chunk(10);
  assert.equal(r.feed(b('0123'), 0), -1);
  assert.equal(r.remaining, 6);
  const c = b('456789BDAT 3 LAST\r\n');
  assert.equal(r.feed(c, 0), 6, 'stops at the count; the next command follows');
  assert.equal(r.remaining, 0);
  r.chunk(3, true);
  assert.equal(r.feed(b('xyzQUIT\r\n'), 0), 3);
  assert.equal(r.status, 'ok');
  assert.equal(r.size, 13);
  assert.equal(r.takeBody(b('P:')).toString(), 'P:0123456789xyz');
});

test('feed honours `from`; the pieces are views', () => {
  const r = new BdatReader({ maxMessageBytes: 1000 });
  r.begin();
  const text = 'hello '.repeat(50) + '\r\n';
  const c = Buffer.allocUnsafeSlow(15 + text.length); // an ArrayBuffer of its own, as from a socket
  c.write('BDAT 302 LAST\r\n' + text, 'latin1');
  r.chunk(302, true);
  assert.equal(r.feed(c, 15), c.length);
  assert.equal(r.pieces.length, 1);
  assert.ok(r.pieces[0]!.buffer === c.buffer, 'a view of the chunk');
  assert.equal(r.takeBody().toString(), text);
});

test('BDAT 0 (LAST): nothing is read, feed returns from', () => {
  const r = new BdatReader({ maxMessageBytes: 1000 });
  r.begin();
  r.chunk(4);
  assert.equal(r.feed(b('ab\r\n'), 0), 4);
  r.chunk(0, true);
  const c = b('QUIT\r\n');
  assert.equal(r.feed(c, 0), 0);
  assert.equal(r.feed(c, 2), 2);
  assert.equal(r.status, 'ok');
  assert.equal(r.takeBody().toString(), 'ab\r\n');
});

test('a CRLF split across BDAT chunks (and socket chunks) is valid', () => {
  const r = new BdatReader({ maxMessageBytes: 1000 });
  r.begin();
  r.chunk(4);
  assert.equal(r.feed(b('abc\r'), 0), 4);
  assert.equal(r.status, 'ok');
  r.chunk(6, true);
  assert.equal(r.feed(b('\n'), 0), -1);
  assert.equal(r.feed(b('def\r\nQUIT\r\n'), 0), 5, '5 more bytes complete the 6');
  assert.equal(r.status, 'ok');
  assert.equal(r.takeBody().toString(), 'abc\r\ndef\r\n');
});

test('a CR at the end of one BDAT chunk and not LF next is bare', () => {
  const r = new BdatReader({ maxMessageBytes: 1000 });
  r.begin();
  r.chunk(4);
  r.feed(b('abc\r'), 0);
  r.chunk(4, true);
  assert.equal(r.feed(b('def\n'), 0), 4);
  assert.equal(r.status, 'bad-newline');
  assert.equal(r.size, 4);
  assert.equal(r.pieces.length, 0);
});

test('a CR that ends the message (LAST) is bare; chunk(n, true) and finish() see it', () => {
  const r = new BdatReader({ maxMessageBytes: 1000 });
  r.begin();
  r.chunk(4, true);
  assert.equal(r.feed(b('abc\r'), 0), 4);
  assert.equal(r.status, 'bad-newline');
  // the same via BDAT 0 LAST
  r.begin();
  r.chunk(4);
  r.feed(b('abc\r'), 0);
  assert.equal(r.status, 'ok');
  r.chunk(0, true);
  assert.equal(r.status, 'bad-newline');
  // and via an explicit finish()
  r.begin();
  r.chunk(4);
  r.feed(b('abc\r'), 0);
  assert.equal(r.finish(), 'bad-newline');
  // a body without a final CRLF is not a newline problem
  r.begin();
  r.chunk(3, true);
  r.feed(b('abc'), 0);
  assert.equal(r.status, 'ok');
});

test('bare LF, bare CR, long lines: status set, bytes still consumed by count', () => {
  const cases: Array<[string, string]> = [
    ['a\nb', 'bad-newline'],
    ['a\rb', 'bad-newline'],
    ['a\0b', 'nul-byte'],
    ['a\r\0b', 'bad-newline'],
    ['x'.repeat(999) + '\r\n', 'line-too-long'],
    ['x'.repeat(1500), 'line-too-long'],
  ];
  for (const [text, status] of cases) {
    const r = new BdatReader({ maxMessageBytes: 1 << 20 });
    r.begin();
    const data = b(text + 'tail\r\n');
    r.chunk(data.length, true);
    const c = Buffer.concat([data, b('NOOP\r\n')]);
    assert.equal(r.feed(c, 0), data.length, text.slice(0, 10));
    assert.equal(r.status, status);
    assert.equal(r.pieces.length, 0);
  }
  const ok = new BdatReader({ maxMessageBytes: 1 << 20 });
  ok.begin();
  ok.chunk(1000, true);
  ok.feed(b('x'.repeat(998) + '\r\n'), 0);
  assert.equal(ok.status, 'ok');
});

test('the size limit is counted over all chunks; later chunks are still read and dropped', () => {
  const r = new BdatReader({ maxMessageBytes: 10 });
  r.begin();
  r.chunk(6);
  assert.equal(r.feed(b('12345\n'.replace('\n', '6')), 0), 6);
  r.chunk(4);
  assert.equal(r.feed(b('7890'), 0), 4);
  assert.equal(r.status, 'ok');
  assert.equal(r.size, 10);
  r.chunk(1);
  assert.equal(r.feed(b('!'), 0), 1);
  assert.equal(r.status, 'too-big');
  assert.equal(r.pieces.length, 0);
  r.chunk(1 << 20, true);
  const big = Buffer.alloc(1 << 16, 0x41);
  for (let i = 0; i < 15; i++) assert.equal(r.feed(big, 0), -1);
  assert.equal(r.feed(Buffer.concat([big, b('QUIT\r\n')]), 0), 1 << 16);
  assert.equal(r.status, 'too-big');
  assert.equal(r.pieces.length, 0);
  assert.equal(r.size, 10);
});

test('a NUL octet refuses the message, in any chunk; the bytes before it are counted', () => {
  for (const [chunks, size] of [[['ab\r\nc\0d\r\n'], 5], [['ab\r\nc', '\0d\r\n'], 5], [['\0'], 0], [['x'.repeat(40) + '\0' + 'y'.repeat(40)], 40]] as const) {
    const r = new BdatReader({ maxMessageBytes: 1 << 20 });
    r.begin();
    const total = chunks.reduce((n, c) => n + c.length, 0);
    r.chunk(total + 6, true);
    for (const c of chunks) assert.equal(r.feed(b(c), 0), -1);
    assert.equal(r.feed(b('tail\r\n'), 0), 6);
    assert.equal(r.status, 'nul-byte', JSON.stringify(chunks));
    assert.equal(r.size, size);
    assert.equal(r.pieces.length, 0);
  }
  // The first problem wins: a line already too long before the NUL is 'line-too-long'.
  const r = new BdatReader({ maxMessageBytes: 1 << 20, maxLineBytes: 10 });
  r.begin();
  r.chunk(20, true);
  r.feed(b('x'.repeat(11) + '\0' + 'y'.repeat(6) + '\r\n'), 0);
  assert.equal(r.status, 'line-too-long');
});

test('BODY=BINARYMIME turns off the line checks, not the size limit', () => {
  const r = new BdatReader({ maxMessageBytes: 8 });
  r.begin(true);
  r.chunk(6);
  r.feed(b('\r\r\n\n\0\r'), 0);
  assert.equal(r.status, 'ok');
  r.chunk(2, true);
  r.feed(b('\xff\n'), 0);
  assert.equal(r.status, 'ok');
  assert.deepEqual([...r.takeBody()], [13, 13, 10, 10, 0, 13, 255, 10]);
  r.begin(true);
  r.chunk(9, true);
  r.feed(b('123456789'), 0);
  assert.equal(r.status, 'too-big');
});

test('session bugs throw; client bytes never do', () => {
  const r = new BdatReader({ maxMessageBytes: 10 });
  r.begin();
  assert.throws(() => r.chunk(-1), RangeError);
  assert.throws(() => r.chunk(1.5), RangeError);
  r.chunk(3);
  assert.throws(() => r.chunk(3), /unread/);
  assert.equal(r.feed(b(''), 0), -1);
  assert.equal(r.feed(b('ab'), 5), -1);
  assert.equal(r.feed(b('abc'), -2), 3);
});
