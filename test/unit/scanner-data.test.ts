// DataScanner: DATA content (RFC 5321 §4.1.1.4 end, §4.5.2 dot-stuffing, strict line ends,
// §4.5.3.1.6 line length, §4.5.3.1.7 size).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataScanner, type DataStatus } from '../../src/protocol/data-scanner.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
/** A Buffer with an ArrayBuffer of its own, as a socket chunk has (Buffer.from of a short string shares a pool). */
function own(s: string): Buffer {
  const out = Buffer.allocUnsafeSlow(Buffer.byteLength(s, 'latin1'));
  out.write(s, 'latin1');
  return out;
}

interface Fed {
  /** Stream offset just after the terminator, or -1. */
  end: number;
  status: DataStatus;
  body: string;
  size: number;
}

/** Feed `stream` cut at `cuts` (offsets), each piece a fresh Buffer; stop at the end of DATA. */
function feed(ds: DataScanner, stream: Buffer, cuts: number[] = []): Fed {
  ds.begin();
  const bounds = [0, ...cuts.filter((c) => c > 0 && c < stream.length), stream.length];
  let end = -1;
  for (let i = 0; i + 1 < bounds.length && end < 0; i++) {
    const chunk = Buffer.from(stream.subarray(bounds[i], bounds[i + 1]));
    const r = ds.feed(chunk, 0);
    if (r >= 0) end = bounds[i]! + r;
  }
  const size = ds.size;
  const status = ds.status;
  return { end, status, size, body: ds.takeBody().toString('latin1') };
}

test('an empty message: ".\\r\\n" at once', () => {
  const ds = new DataScanner({ maxMessageBytes: 100 });
  assert.deepEqual(feed(ds, b('.\r\nQUIT\r\n')), { end: 3, status: 'ok', size: 0, body: '' });
});

test('a simple body ends with the CRLF before ".\\r\\n"; pipelined commands follow', () => {
  const ds = new DataScanner({ maxMessageBytes: 100 });
  const chunk = b('Subject: x\r\n\r\nhello\r\n.\r\nMAIL FROM:<a@b>\r\n');
  ds.begin();
  const end = ds.feed(chunk, 0);
  assert.equal(end, 24);
  assert.equal(chunk.subarray(end).toString(), 'MAIL FROM:<a@b>\r\n');
  assert.equal(ds.size, 21);
  assert.equal(ds.takeBody().toString(), 'Subject: x\r\n\r\nhello\r\n');
  assert.equal(ds.feed(chunk, end), end, 'after the end, feed consumes nothing until begin()');
});

test('feed honours `from`', () => {
  const ds = new DataScanner({ maxMessageBytes: 100 });
  const chunk = b('DATA\r\nabc\r\n.\r\n');
  ds.begin();
  assert.equal(ds.feed(chunk, 6), chunk.length);
  assert.equal(ds.takeBody().toString(), 'abc\r\n');
});

test('dot-unstuffing: "..x" -> ".x", a line of only ".." -> ".", "..." -> ".."', () => {
  const ds = new DataScanner({ maxMessageBytes: 1000 });
  assert.deepEqual(feed(ds, b('..x\r\na\r\n..\r\n...\r\nb.c\r\n .\r\n.\r\n')), {
    end: 29,
    status: 'ok',
    size: 23,
    body: '.x\r\na\r\n.\r\n..\r\nb.c\r\n .\r\n',
  });
  // a dot not at a line start stays
  assert.equal(feed(ds, b('a.\r\n.a.\r\n.\r\n')).body, 'a.\r\na.\r\n');
});

test('the terminator split across chunks at every offset', () => {
  const ds = new DataScanner({ maxMessageBytes: 1000 });
  const stream = b('line one\r\n..dot\r\nlast\r\n.\r\nNOOP\r\n');
  const want = { end: 26, status: 'ok' as DataStatus, size: 22, body: 'line one\r\n.dot\r\nlast\r\n' };
  for (let i = 1; i < stream.length; i++) {
    assert.deepEqual(feed(ds, stream, [i]), want, `cut at ${i}`);
    for (let j = i + 1; j < stream.length; j++) assert.deepEqual(feed(ds, stream, [i, j]), want, `cuts at ${i},${j}`);
  }
  // one byte per chunk
  assert.deepEqual(feed(ds, stream, Array.from(stream.keys())), want);
});

test('the pieces are views of the input; takeBody is one exact-size copy with the prefix', () => {
  const ds = new DataScanner({ maxMessageBytes: 1 << 20 });
  const lineA = 'a'.repeat(600) + '\r\n';
  const lineB = '.' + 'b'.repeat(600) + '\r\n'; // stuffed
  const c1 = own(lineA + lineA);
  const c2 = own('.' + lineB + lineA + '.\r\n');
  ds.begin();
  assert.equal(ds.feed(c1, 0), -1);
  assert.equal(ds.feed(c2, 0), c2.length);
  const pieces = ds.pieces;
  assert.ok(pieces.length >= 2);
  for (const p of pieces) assert.ok(p.buffer === c1.buffer || p.buffer === c2.buffer, 'every piece is a view of a chunk');
  assert.ok(pieces[0]!.buffer === c1.buffer);
  assert.equal(pieces[0]!.byteOffset, c1.byteOffset);
  assert.ok(pieces[pieces.length - 1]!.buffer === c2.buffer);
  const prefix = b('Received: by test\r\n');
  const body = ds.takeBody(prefix);
  assert.equal(body.toString(), prefix.toString() + lineA + lineA + lineB + lineA);
  assert.equal(body.length, prefix.length + ds.size);
  assert.equal(body.byteOffset, 0, 'owns its ArrayBuffer (transferable)');
  assert.equal(body.buffer.byteLength, body.length);
  assert.ok(body.buffer !== c1.buffer);
  assert.equal(ds.pieces.length, 0, 'takeBody clears the pieces');
});

test('no per-chunk copy: the body is not copied until takeBody', () => {
  const ds = new DataScanner({ maxMessageBytes: 1 << 20 });
  const c = own('x'.repeat(500) + '\r\n' + 'y'.repeat(500) + '\r\n');
  ds.begin();
  ds.feed(c, 0);
  c[0] = 0x5a; // a view sees the change; a copy would not
  assert.equal(ds.pieces[0]![0], 0x5a);
});

const SMUGGLE_NEXT = 'MAIL FROM:<a@b>\r\n';

test('each problem sets its status, keeps no pieces, and the scanner stays in sync', () => {
  const cases: Array<[string, DataStatus, number]> = [
    // [content before the real end, status, body bytes before the problem]
    ['a\nb\r\n', 'bad-newline', 1], // bare LF
    ['a\rb\r\n', 'bad-newline', 2], // bare CR (judged at the byte after it)
    ['abc\r\r\n', 'bad-newline', 4],
    ['\n\r\n', 'bad-newline', 0], // (a bare LF before ".\r\n" would not make an end)
    ['.\n\r\n', 'bad-newline', 0], // "\r\n.\n" is not an end, and is a bare LF
    ['.\rx\r\n', 'bad-newline', 1], // ".\r" then not LF
    ['x'.repeat(999) + '\r\n', 'line-too-long', 1000], // 1001 with CRLF
    ['y'.repeat(2000) + '\r\n', 'line-too-long', 1000],
    ['z'.repeat(90) + '\r\n', 'too-big', 64],
  ];
  const ds = new DataScanner({ maxMessageBytes: 64 });
  const ds1000 = new DataScanner({ maxMessageBytes: 1 << 20 });
  for (const [content, status, size] of cases) {
    const s = status === 'too-big' ? ds : ds1000;
    const stream = b(content + '.\r\n' + SMUGGLE_NEXT);
    const whole = feed(s, stream);
    assert.deepEqual(whole, { end: content.length + 3, status, size, body: '' }, JSON.stringify(content.slice(0, 12)));
    for (let i = 1; i < stream.length; i += 7) assert.deepEqual(feed(s, stream, [i]), whole, `cut at ${i}`);
    // and the next message on the same scanner is fine
    assert.deepEqual(feed(s, b('ok\r\n.\r\n')), { end: 7, status: 'ok', size: 4, body: 'ok\r\n' });
  }
});

test('998 octets + CRLF is the longest line; a stuffing dot does not count', () => {
  const ds = new DataScanner({ maxMessageBytes: 1 << 20 });
  assert.equal(feed(ds, b('x'.repeat(998) + '\r\n.\r\n')).status, 'ok');
  assert.equal(feed(ds, b('.' + '.'.repeat(998) + '\r\n.\r\n')).status, 'ok');
  assert.equal(feed(ds, b('.' + '.'.repeat(999) + '\r\n.\r\n')).status, 'line-too-long');
  const small = new DataScanner({ maxMessageBytes: 100, maxLineBytes: 10 });
  assert.equal(feed(small, b('12345678\r\n.\r\n')).status, 'ok');
  assert.equal(feed(small, b('123456789\r\n.\r\n')).status, 'line-too-long');
});

test('a line too long is reported as it arrives, before its end', () => {
  const ds = new DataScanner({ maxMessageBytes: 1 << 30 });
  ds.begin();
  assert.equal(ds.feed(b('x'.repeat(1001)), 0), -1);
  assert.equal(ds.status, 'line-too-long');
});

test('too-big: counted as bytes arrive, no pieces kept, the terminator still found', () => {
  const ds = new DataScanner({ maxMessageBytes: 1000 });
  ds.begin();
  const line = b('x'.repeat(98) + '\r\n');
  let fedBytes = 0;
  for (let i = 0; i < 10; i++) {
    assert.equal(ds.feed(line, 0), -1);
    fedBytes += line.length;
  }
  assert.equal(ds.status, 'ok');
  assert.equal(ds.size, 1000, 'exactly at the limit is fine');
  assert.equal(ds.feed(b('y'), 0), -1);
  assert.equal(ds.status, 'too-big');
  assert.equal(ds.pieces.length, 0);
  for (let i = 0; i < 1000; i++) {
    assert.equal(ds.feed(line, 0), -1);
    assert.equal(ds.pieces.length, 0);
  }
  const last = b('\r\n.\r\nQUIT\r\n');
  assert.equal(ds.feed(last, 0), 5);
  assert.equal(ds.status, 'too-big');
  assert.equal(ds.size, 1000);
  assert.equal(ds.takeBody().length, 0);
  assert.ok(fedBytes > 0);
});

test('a message that is exactly maxMessageBytes (with the final CRLF) is ok; one more is too big', () => {
  const ds = new DataScanner({ maxMessageBytes: 12 });
  assert.deepEqual(feed(ds, b('0123456789\r\n.\r\n')), { end: 15, status: 'ok', size: 12, body: '0123456789\r\n' });
  assert.equal(feed(ds, b('01234567890\r\n.\r\n')).status, 'too-big');
  assert.equal(feed(ds, b('.0123456789\r\n.\r\n')).status, 'ok', 'a stuffing dot is not counted');
});

test('the first problem wins, wherever the chunks are cut', () => {
  // bare LF before a too-long line
  const ds = new DataScanner({ maxMessageBytes: 1 << 20 });
  const s1 = b('a\n' + 'x'.repeat(1200) + '\r\n.\r\n');
  // too-long line that also holds a bare CR after byte 1000
  const s2 = b('y'.repeat(1100) + '\rz\r\n.\r\n');
  // bare CR before the line reaches 1000
  const s3 = b('y'.repeat(500) + '\rz' + 'y'.repeat(600) + '\r\n.\r\n');
  for (const [s, want] of [
    [s1, 'bad-newline'],
    [s2, 'line-too-long'],
    [s3, 'bad-newline'],
  ] as const) {
    const whole = feed(ds, s);
    assert.equal(whole.status, want);
    for (let i = 1; i < s.length; i += 13) assert.deepEqual(feed(ds, s, [i]), whole, `cut at ${i}`);
  }
});

test('TAB and other control bytes are text', () => {
  const ds = new DataScanner({ maxMessageBytes: 1000 });
  const body = 'Subject: a\r\n\tfolded\r\n\x01\x0b\x0c\x7f\xff\r\n' + '\t'.repeat(70) + '\r\n';
  assert.deepEqual(feed(ds, b(body + '.\r\n')), { end: body.length + 3, status: 'ok', size: body.length, body });
});

test('a NUL octet refuses the message (status nul-byte), wherever it is; the end is still found', () => {
  for (const [text, size] of [['a\x00b\r\n', 1], ['\x00\r\n', 0], ['ab\r\n.\x00\r\n', 4], ['x'.repeat(60) + '\x00\r\n', 60], ['ok\r\n\x00', 4]] as const) {
    const ds = new DataScanner({ maxMessageBytes: 1000 });
    const wire = b(text + (text.endsWith('\n') ? '' : '\r\n') + '.\r\n');
    for (let cut = 0; cut <= wire.length; cut++) {
      ds.begin();
      assert.equal(ds.feed(wire.subarray(0, cut), 0), cut === wire.length ? wire.length : -1);
      if (cut < wire.length) assert.equal(ds.feed(wire.subarray(cut), 0), wire.length - cut);
      assert.equal(ds.status, 'nul-byte', `${JSON.stringify(text)} cut at ${cut}`);
      assert.equal(ds.size, size);
      assert.equal(ds.pieces.length, 0);
    }
  }
  // A NUL after a bare CR: the bare CR comes first.
  const ds = new DataScanner({ maxMessageBytes: 1000 });
  assert.equal(feed(ds, b('a\r\x00\r\n.\r\n')).status, 'bad-newline');
});

test('unaligned chunks (odd byteOffset) scan the same', () => {
  const ds = new DataScanner({ maxMessageBytes: 1 << 20 });
  const text = 'abc\r\n'.repeat(40) + '..d\r\n' + 'e'.repeat(300) + '\r\n.\r\n';
  for (let shift = 0; shift < 8; shift++) {
    const big = Buffer.alloc(text.length + 16, 0x0a); // LF around it: would be bare LFs if read
    big.write(text, shift, 'latin1');
    const chunk = big.subarray(shift, shift + text.length);
    ds.begin();
    assert.equal(ds.feed(chunk, 0), text.length, `shift ${shift}`);
    assert.equal(ds.status, 'ok');
    assert.equal(ds.takeBody().toString('latin1'), 'abc\r\n'.repeat(40) + '.d\r\n' + 'e'.repeat(300) + '\r\n');
  }
});

test('one-byte chunks: memory stays bounded (small pieces are coalesced)', () => {
  const ds = new DataScanner({ maxMessageBytes: 1 << 20 });
  ds.begin();
  const text = b('..x\r\n'.repeat(20_000));
  for (let i = 0; i < text.length; i++) assert.equal(ds.feed(text.subarray(i, i + 1), 0), -1);
  assert.equal(ds.size, 80_000);
  assert.ok(ds.pieces.length <= 20, `${ds.pieces.length} pieces for 80000 bytes in 1-byte chunks`);
  assert.equal(ds.feed(b('.\r\n'), 0), 3);
  assert.equal(ds.takeBody().toString(), '.x\r\n'.repeat(20_000));
});

test('never throws on odd arguments', () => {
  const ds = new DataScanner({ maxMessageBytes: 10 });
  ds.begin();
  assert.equal(ds.feed(b(''), 0), -1);
  assert.equal(ds.feed(b('abc'), 99), -1);
  assert.equal(ds.feed(b('a\r\n.\r\n'), -5), 6);
  assert.throws(() => new DataScanner({ maxMessageBytes: -1 }), RangeError);
  assert.throws(() => new DataScanner({ maxMessageBytes: 1, maxLineBytes: 1 }), RangeError);
});
