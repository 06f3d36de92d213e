// LineScanner: command lines (RFC 5321 §2.3.8 CRLF only; §4.5.3.1.4 line limit).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineScanner, type LineKind } from '../../src/protocol/line-scanner.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Scan one chunk to its end; returns [kind, line text | undefined, end] per result. */
function scanAll(ls: LineScanner, chunk: Buffer): Array<[LineKind, string | undefined, number]> {
  const out: Array<[LineKind, string | undefined, number]> = [];
  let pos = 0;
  for (;;) {
    const k = ls.scan(chunk, pos);
    out.push([k, k === 'line' ? ls.line.toString('latin1') : undefined, ls.end]);
    if (k === 'partial') return out;
    pos = ls.end;
    if (pos >= chunk.length) return out;
  }
}

test('pipelined lines in one chunk are views of the chunk', () => {
  const ls = new LineScanner(512);
  const chunk = b('EHLO a.example\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n');
  const r = scanAll(ls, chunk);
  assert.deepEqual(r, [
    ['line', 'EHLO a.example', 16],
    ['line', 'MAIL FROM:<a@b>', 33],
    ['line', 'RCPT TO:<c@d>', 48],
    ['line', 'DATA', 54],
  ]);
  ls.scan(chunk, 0);
  assert.ok(ls.line.buffer === chunk.buffer, 'a line within one chunk is a view');
  assert.equal(ls.line.byteOffset, chunk.byteOffset);
});

test('an empty line is a line', () => {
  const ls = new LineScanner(512);
  assert.deepEqual(scanAll(ls, b('\r\n')), [['line', '', 2]]);
});

test('a line split across 3 chunks is joined once; pendingBytes counts it', () => {
  const ls = new LineScanner(512);
  assert.equal(ls.scan(b('MAIL FR'), 0), 'partial');
  assert.equal(ls.end, 7);
  assert.equal(ls.pendingBytes, 7);
  assert.equal(ls.scan(b('OM:<a@b'), 0), 'partial');
  assert.equal(ls.pendingBytes, 14);
  const third = b('>\r\nNOOP\r\n');
  assert.equal(ls.scan(third, 0), 'line');
  assert.equal(ls.line.toString(), 'MAIL FROM:<a@b>');
  assert.equal(ls.end, 3);
  assert.equal(ls.pendingBytes, 0);
  assert.equal(ls.scan(third, ls.end), 'line');
  assert.equal(ls.line.toString(), 'NOOP');
});

test('CR at the end of one chunk and LF at the start of the next is a CRLF', () => {
  const ls = new LineScanner(512);
  assert.equal(ls.scan(b('QUIT\r'), 0), 'partial');
  assert.equal(ls.scan(b('\nNOOP\r\n'), 0), 'line');
  assert.equal(ls.line.toString(), 'QUIT');
  assert.equal(ls.end, 1);
  assert.equal(ls.scan(b('\nNOOP\r\n'), 1), 'line');
  // just the CR held, then the LF alone
  assert.equal(ls.scan(b('\r'), 0), 'partial');
  assert.equal(ls.scan(b('\n'), 0), 'line');
  assert.equal(ls.line.length, 0);
});

test('a bare CR gives bad-newline at the CRLF, and the next line is fine', () => {
  for (const bad of ['NO\rOP\r\n', 'NOOP\r\r\n', '\rNOOP\r\n']) {
    const ls = new LineScanner(512);
    const chunk = b(bad + 'RSET\r\n');
    assert.equal(ls.scan(chunk, 0), 'bad-newline', JSON.stringify(bad));
    assert.equal(ls.end, bad.length);
    assert.equal(ls.scan(chunk, ls.end), 'line');
    assert.equal(ls.line.toString(), 'RSET');
  }
});

test('a bare LF does not end the line: bad-newline at the LF, the rest up to the CRLF is skipped', () => {
  for (const bad of ['NOOP\n', '\n', 'NOOP\n\n', 'NO\rOP\n']) {
    const ls = new LineScanner(512);
    const tail = 'MAIL FROM:<x@example.com>\r\n';
    const chunk = b(bad + tail + 'RSET\r\n');
    assert.equal(ls.scan(chunk, 0), 'bad-newline', JSON.stringify(bad));
    assert.equal(ls.end, bad.indexOf('\n') + 1, 'reported at the first bare LF');
    assert.equal(ls.scan(chunk, ls.end), 'line');
    assert.equal(ls.line.toString(), 'RSET', 'the tail never comes out as a line');
    assert.equal(ls.end, chunk.length);
  }
  // The same, split across chunks, with the CRLF of the refused line split too.
  const ls = new LineScanner(512);
  assert.equal(ls.scan(b('NO'), 0), 'partial');
  assert.equal(ls.scan(b('OP\nMAIL FROM:<x'), 0), 'bad-newline');
  assert.equal(ls.end, 3);
  assert.equal(ls.scan(b('OP\nMAIL FROM:<x'), 3), 'partial');
  assert.equal(ls.scan(b('@example.com>\nRCPT TO:<y@example.com>\r'), 0), 'partial', 'another bare LF changes nothing');
  assert.equal(ls.pendingBytes, 0, 'nothing of a refused line is kept');
  assert.equal(ls.scan(b('\nQUIT\r\n'), 0), 'line');
  assert.equal(ls.line.toString(), 'QUIT');
  // A CR that is not the CRLF's does not end the skip either; an LF right after a bare LF is bare.
  const ls2 = new LineScanner(512);
  const c2 = b('x\n\r\r\n\nQUIT\r\nNOOP\r\n');
  assert.equal(ls2.scan(c2, 0), 'bad-newline');
  assert.equal(ls2.scan(c2, ls2.end), 'bad-newline', 'the line after the CRLF starts with a bare LF');
  assert.equal(ls2.scan(c2, ls2.end), 'line');
  assert.equal(ls2.line.toString(), 'NOOP');
});

test('a line refused for a bare LF is still held to maxLineBytes, up to its CRLF', () => {
  const ls = new LineScanner(16);
  const chunk = b('NOOP\n' + 'x'.repeat(20) + '\r\nQUIT\r\n');
  assert.equal(ls.scan(chunk, 0), 'bad-newline');
  assert.equal(ls.scan(chunk, ls.end), 'too-long', 'the line is 27 bytes with its CRLF');
  assert.equal(ls.end, 27);
  assert.equal(ls.scan(chunk, ls.end), 'line');
  assert.equal(ls.line.toString(), 'QUIT');
  // Without its LF yet: too long as soon as 16 bytes have come; then skipped to the CRLF.
  const ls2 = new LineScanner(16);
  assert.equal(ls2.scan(b('NOOP\nxxxxxx'), 0), 'bad-newline');
  assert.equal(ls2.scan(b('NOOP\nxxxxxx'), 5), 'partial');
  assert.equal(ls2.scan(b('yyyyy'), 0), 'too-long');
  assert.equal(ls2.scan(b('z\nMAIL FROM:<x@example.com>\r'), 0), 'partial');
  assert.equal(ls2.scan(b('\nNOOP\r\n'), 0), 'line');
  assert.equal(ls2.line.toString(), 'NOOP');
  // Exactly 16 bytes with the CRLF is fine for a line, and the limit is the same for a refused one.
  const ls3 = new LineScanner(16);
  const c3 = b('ab\n' + 'c'.repeat(11) + '\r\nQUIT\r\n');
  assert.equal(ls3.scan(c3, 0), 'bad-newline');
  assert.equal(ls3.scan(c3, ls3.end), 'line', '16 bytes: skipped silently');
  assert.equal(ls3.line.toString(), 'QUIT');
});

test('bare CR split across chunks is still caught', () => {
  const ls = new LineScanner(512);
  assert.equal(ls.scan(b('NO\r'), 0), 'partial'); // could still be a CRLF
  assert.equal(ls.scan(b('OP\r\n'), 0), 'bad-newline');
  const ls2 = new LineScanner(512);
  assert.equal(ls2.scan(b('N\rO'), 0), 'partial');
  assert.equal(ls2.scan(b('OP\r\n'), 0), 'bad-newline');
  const ls3 = new LineScanner(512);
  assert.equal(ls3.scan(b('NOOP'), 0), 'partial');
  assert.equal(ls3.scan(b('\n'), 0), 'bad-newline', 'bare LF after a partial');
});

test('too-long with the LF in the same chunk: end is after the LF', () => {
  const ls = new LineScanner(16);
  const ok = 'x'.repeat(14) + '\r\n'; // exactly 16 with CRLF
  const long = 'y'.repeat(15) + '\r\n'; // 17
  const chunk = b(ok + long + 'QUIT\r\n');
  assert.equal(ls.scan(chunk, 0), 'line');
  assert.equal(ls.scan(chunk, ls.end), 'too-long');
  assert.equal(ls.end, 33);
  assert.equal(ls.scan(chunk, ls.end), 'line');
  assert.equal(ls.line.toString(), 'QUIT');
});

test('too-long without an LF is reported at once, then the rest of the line is skipped (to its CRLF)', () => {
  const ls = new LineScanner(16);
  assert.equal(ls.scan(b('z'.repeat(10)), 0), 'partial');
  assert.equal(ls.scan(b('z'.repeat(6)), 0), 'too-long', '16 bytes and no LF: the line is at least 17');
  assert.equal(ls.end, 6);
  assert.equal(ls.pendingBytes, 0);
  assert.equal(ls.scan(b('z'.repeat(100)), 0), 'partial');
  assert.equal(ls.pendingBytes, 0);
  const last = b('zz\r\nNOOP\r\n');
  assert.equal(ls.scan(last, 0), 'line', 'the skipped line ends at its LF, then scanning goes on');
  assert.equal(ls.line.toString(), 'NOOP');
  assert.equal(ls.end, last.length);
  // A bare LF in the skipped part does not end it; a CRLF split across chunks does.
  assert.equal(ls.scan(b('z'.repeat(20)), 0), 'too-long');
  assert.equal(ls.scan(b('z\nMAIL FROM:<a@b>\r'), 0), 'partial');
  assert.equal(ls.scan(b('\nNOOP\r\n'), 0), 'line');
  assert.equal(ls.line.toString(), 'NOOP');
  // Too long at a bare LF: skipped up to the CRLF.
  const c = b('y'.repeat(20) + '\nRSET\r\nQUIT\r\n');
  assert.equal(ls.scan(c, 0), 'too-long');
  assert.equal(ls.end, 21);
  assert.equal(ls.scan(c, ls.end), 'line');
  assert.equal(ls.line.toString(), 'QUIT');
  // 15 bytes then CRLF is one too many; 15 bytes ending in CR is still possibly fine
  const ls2 = new LineScanner(16);
  assert.equal(ls2.scan(b('a'.repeat(14) + '\r'), 0), 'partial');
  assert.equal(ls2.scan(b('\n'), 0), 'line');
});

test('a 10 MB flood without CRLF keeps pendingBytes bounded', () => {
  const ls = new LineScanner(512);
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  let tooLong = 0;
  let maxPending = 0;
  for (let sent = 0; sent < 10 * 1024 * 1024; sent += chunk.length) {
    let pos = 0;
    for (;;) {
      const k = ls.scan(chunk, pos);
      if (k === 'too-long') tooLong++;
      maxPending = Math.max(maxPending, ls.pendingBytes);
      if (k === 'partial') break;
      pos = ls.end;
      if (pos >= chunk.length) break;
    }
  }
  assert.equal(tooLong, 1, 'reported once');
  assert.ok(maxPending < 512, `pendingBytes ${maxPending}`);
  // Many small chunks: pending stays under the limit too.
  const ls2 = new LineScanner(512);
  const kinds = new Set<LineKind>();
  for (let i = 0; i < 100_000; i++) {
    kinds.add(ls2.scan(b('abc'), 0));
    assert.ok(ls2.pendingBytes < 512);
  }
  assert.deepEqual([...kinds].sort(), ['partial', 'too-long']);
});

test('a chunk of many bare LFs is one refused line, scanned in linear time', () => {
  const ls = new LineScanner(512);
  const chunk = Buffer.alloc(1 << 20, 0x0a); // 1 Mi bare LFs, no CR at all
  const t0 = process.hrtime.bigint();
  const kinds: LineKind[] = [];
  for (let pos = 0; pos < chunk.length; pos = ls.end) kinds.push(ls.scan(chunk, pos));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  assert.deepEqual(kinds, ['bad-newline', 'too-long', 'partial'], 'one line: refused at its first LF, too long at its 513th byte');
  assert.equal(ls.scan(b('\r\nNOOP\r\n'), 0), 'line');
  assert.equal(ls.line.toString(), 'NOOP');
  // "x\n" lines, and "x\r\n" lines with a bare CR each: no search runs to the end of the chunk
  // once per line (the CR search is cached).
  const chunk2 = Buffer.from('x\n'.repeat(1 << 18), 'latin1');
  const chunk3 = Buffer.from('\rx\r\n'.repeat(1 << 18), 'latin1');
  const t1 = process.hrtime.bigint();
  for (let pos = 0; pos < chunk2.length; pos = ls.end) ls.scan(chunk2, pos);
  let bad = 0;
  for (let pos = 0; pos < chunk3.length; pos = ls.end) if (ls.scan(chunk3, pos) === 'bad-newline') bad++;
  const ms2 = Number(process.hrtime.bigint() - t1) / 1e6;
  assert.equal(bad, (1 << 18) - 1, 'the first of those lines ends the skipped one');
  assert.ok(ms < 2000 && ms2 < 2000, `took ${ms} / ${ms2} ms`);
});

test('reset() forgets a partial line and the discard state; from past the end is partial', () => {
  const ls = new LineScanner(16);
  ls.scan(b('MAIL'), 0);
  ls.reset();
  assert.equal(ls.pendingBytes, 0);
  assert.equal(ls.scan(b('NOOP\r\n'), 0), 'line');
  assert.equal(ls.line.toString(), 'NOOP');
  ls.scan(b('x'.repeat(40)), 0);
  ls.reset();
  assert.equal(ls.scan(b('RSET\r\n'), 0), 'line');
  assert.equal(ls.scan(b('RSET\r\n'), 6), 'partial');
  assert.equal(ls.end, 6);
  assert.equal(ls.scan(b(''), 0), 'partial');
});

test('invalid maxLineBytes is a programming error', () => {
  assert.throws(() => new LineScanner(0), RangeError);
  assert.throws(() => new LineScanner(1.5), RangeError);
});

test('a line dribbled a byte per chunk holds no chunk: the pieces are gathered, not kept as a view each', async () => {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const max = 2048;
  const s = new LineScanner(max);
  const refs: WeakRef<ArrayBufferLike>[] = [];
  const text = 'MAIL FROM:<' + 'a'.repeat(1500) + '@example.org>';
  for (let i = 0; i < text.length; i++) {
    const chunk = Buffer.allocUnsafeSlow(1); // its own ArrayBuffer, as a socket read gives
    chunk[0] = text.charCodeAt(i);
    refs.push(new WeakRef(chunk.buffer)); // a view pins the ArrayBuffer, not the Buffer object
    assert.equal(s.scan(chunk, 0), 'partial');
  }
  await new Promise((r) => setImmediate(r));
  gc();
  await new Promise((r) => setImmediate(r));
  const alive = refs.filter((r) => r.deref() !== undefined).length;
  assert.ok(alive <= 2, `${alive} of ${refs.length} one-byte chunks still held by the scanner`);
  assert.equal(s.scan(Buffer.from('\r\n'), 0), 'line');
  assert.equal(s.line.toString('latin1'), text, 'the gathered line is intact');
  // And one split in two, three and many chunks of assorted sizes still reads back whole.
  for (const cuts of [[5], [5, 9], [1, 2, 3, 50, 51, 300, 301, 1200]]) {
    const whole = Buffer.from(text + '\r\n');
    let at = 0;
    let kind = '';
    for (const c of [...cuts, whole.length]) {
      kind = s.scan(whole.subarray(at, c), 0);
      at = c;
    }
    assert.equal(kind, 'line');
    assert.equal(s.line.toString('latin1'), text, String(cuts));
  }
});
