// Fuzz: DataScanner against the per-byte model (scanner-model.ts) on random streams, whole and
// split at every position and at random positions; dotStuff/DataScanner round trip; random bytes
// never throw and hold bounded memory. RFC 5321 §4.1.1.4, §4.5.2, §4.5.3.1.6-7.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DataScanner } from '../../src/protocol/data-scanner.js';
import { dotStuff } from '../../src/protocol/dot-stuff.js';
import { modelData, type DataResult } from './scanner-model.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

/**
 * A copy of src at byte `shift` of a fresh ArrayBuffer whose other bytes are LF, so a read
 * outside the chunk, or a word-alignment slip, shows up as a bare LF.
 */
function chunkAt(src: Buffer, shift: number): Buffer {
  const ab = Buffer.alloc(src.length + shift + 8, 0x0a);
  src.copy(ab, shift);
  return ab.subarray(shift, shift + src.length);
}

/** Feed the stream cut at `cuts`; the result in stream offsets. */
function run(ds: DataScanner, stream: Buffer, cuts: number[], shift = 0): DataResult {
  ds.begin();
  const bounds = [0, ...[...new Set(cuts)].filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b), stream.length];
  let end = -1;
  for (let i = 0; i + 1 < bounds.length && end < 0; i++) {
    const chunk = chunkAt(stream.subarray(bounds[i], bounds[i + 1]), (shift + i) & 7);
    const r = ds.feed(chunk, 0);
    if (r >= 0) end = bounds[i]! + r;
  }
  const status = ds.status;
  const size = ds.size;
  return { end, status, size, body: ds.takeBody() };
}

const same = (a: DataResult, b: DataResult): boolean =>
  a.end === b.end && a.status === b.status && a.size === b.size && a.body.equals(b.body);
const show = (r: DataResult): string => JSON.stringify({ ...r, body: r.body.toString('latin1') });

/** Pieces that make interesting DATA streams: fake and real ends, stuffing, bare CR/LF, long runs. */
const token = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('\r\n', '\r\n.', '.', '..', 'a', 'xyz', ' ', '\t') },
  { weight: 1, arbitrary: fc.constant('\0') },
  { weight: 2, arbitrary: fc.constantFrom('\r', '\n', '\n.\n', '\r\n.\n', '\n.\r\n', '\r.\r\n', '\r\n.\r') },
  { weight: 1, arbitrary: fc.constantFrom('\r\n.\r\n', '.\r\n') },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 120 }).map((n) => 'q'.repeat(n)) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 6 }).map((u) => Buffer.from(u).toString('latin1')) },
);
const stream = fc.array(token, { maxLength: 40, size: 'max' }).map((t) => Buffer.from(t.join(''), 'latin1'));
const limits = fc.record({
  maxMessageBytes: fc.oneof(fc.integer({ min: 0, max: 80 }), fc.constant(1 << 20)),
  maxLineBytes: fc.oneof(fc.integer({ min: 2, max: 40 }), fc.constant(1000)),
});

test('DataScanner equals the per-byte model, whole and split at every position', () => {
  fc.assert(
    fc.property(stream, limits, fc.nat(7), (s, lim, shift) => {
      const want = modelData(s, lim.maxMessageBytes, lim.maxLineBytes);
      const ds = new DataScanner(lim);
      const whole = run(ds, s, [], shift);
      assert.ok(same(whole, want), `whole: ${show(whole)} != model ${show(want)}`);
      for (let i = 1; i < s.length; i++) {
        const r = run(ds, s, [i], shift);
        assert.ok(same(r, want), `cut at ${i}: ${show(r)} != model ${show(want)}`);
      }
    }),
    { numRuns: RUNS },
  );
});

test('DataScanner equals the model at random multi-split positions', () => {
  fc.assert(
    fc.property(
      stream.chain((s) => fc.tuple(fc.constant(s), fc.array(fc.integer({ min: 0, max: Math.max(0, s.length) }), { maxLength: 12, size: 'max' }))),
      limits,
      fc.nat(7),
      ([s, cuts], lim, shift) => {
        const want = modelData(s, lim.maxMessageBytes, lim.maxLineBytes);
        const r = run(new DataScanner(lim), s, cuts, shift);
        assert.ok(same(r, want), `cuts ${cuts}: ${show(r)} != model ${show(want)}`);
      },
    ),
    { numRuns: RUNS * 3 },
  );
});

test('the model agrees with hand-checked cases (so the model itself is tested)', () => {
  const m = (s: string, max = 1000, line = 1000) => {
    const r = modelData(Buffer.from(s, 'latin1'), max, line);
    return { end: r.end, status: r.status, size: r.size, body: r.body.toString('latin1') };
  };
  assert.deepEqual(m('.\r\n'), { end: 3, status: 'ok', size: 0, body: '' });
  assert.deepEqual(m('..a\r\n.\r\n'), { end: 8, status: 'ok', size: 4, body: '.a\r\n' });
  assert.deepEqual(m('a\n.\r\n'), { end: -1, status: 'bad-newline', size: 1, body: '' });
  assert.deepEqual(m('a\n\r\n.\r\n'), { end: 7, status: 'bad-newline', size: 1, body: '' });
  assert.deepEqual(m('abcd\r\n.\r\n', 3), { end: 9, status: 'too-big', size: 3, body: '' });
  assert.deepEqual(m('abcd\r\n.\r\n', 100, 5), { end: 9, status: 'line-too-long', size: 5, body: '' });
  assert.deepEqual(m('abc\r\n.\r\n', 100, 5), { end: 8, status: 'ok', size: 5, body: 'abc\r\n' });
  assert.deepEqual(m('a\0b\r\n.\r\n'), { end: 8, status: 'nul-byte', size: 1, body: '' });
  assert.deepEqual(m('..\0\r\n.\r\n'), { end: 8, status: 'nul-byte', size: 1, body: '' });
  assert.deepEqual(m('abcde\0\r\n.\r\n', 100, 5), { end: 11, status: 'nul-byte', size: 5, body: '' });
  assert.deepEqual(m('abcdef\0\r\n.\r\n', 100, 5), { end: 12, status: 'line-too-long', size: 5, body: '' });
  assert.deepEqual(m('ab\0\r\n.\r\n', 2), { end: 8, status: 'nul-byte', size: 2, body: '' });
});

// Bodies as stored: lines of any bytes but CR, LF and NUL (many starting with "."), each ended by CRLF.
const line = fc.oneof(
  fc.uint8Array({ maxLength: 60, size: 'max' }).map((u) => Buffer.from(u.filter((c) => c !== 13 && c !== 10 && c !== 0))),
  fc.constantFrom('', '.', '..', '...', '.x', '..x', ' .', 'x.').map((s) => Buffer.from(s, 'latin1')),
);
const body = fc.array(line, { maxLength: 30, size: 'max' }).map((lines) => Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\r\n')])));

test('unstuff(stuff(body)) == body, whatever the split', () => {
  fc.assert(
    fc.property(body, fc.array(fc.nat(2000), { maxLength: 8, size: 'max' }), fc.nat(7), (b, cuts, shift) => {
      const wire = Buffer.concat(dotStuff(b));
      const r = run(new DataScanner({ maxMessageBytes: 1 << 20 }), wire, cuts, shift);
      assert.equal(r.status, 'ok');
      assert.equal(r.end, wire.length);
      assert.ok(r.body.equals(b), `${JSON.stringify(r.body.toString('latin1'))} != ${JSON.stringify(b.toString('latin1'))}`);
      assert.equal(r.size, b.length);
    }),
    { numRuns: RUNS * 2 },
  );
});

test('random bytes never throw; pieces stay within maxMessageBytes and bounded in number', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 4096, size: 'max' }),
      fc.array(fc.nat(4096), { maxLength: 40, size: 'max' }),
      fc.integer({ min: 0, max: 3000 }),
      fc.integer({ min: 2, max: 1200 }),
      (u, cuts, maxMessageBytes, maxLineBytes) => {
        const s = Buffer.from(u);
        const ds = new DataScanner({ maxMessageBytes, maxLineBytes });
        ds.begin();
        const bounds = [0, ...[...new Set(cuts)].filter((c) => c > 0 && c < s.length).sort((a, b) => a - b), s.length];
        for (let i = 0; i + 1 < bounds.length; i++) {
          const r = ds.feed(Buffer.from(s.subarray(bounds[i], bounds[i + 1])), 0);
          const held = ds.pieces.reduce((n, p) => n + p.length, 0);
          assert.ok(held <= maxMessageBytes, `holds ${held} > ${maxMessageBytes}`);
          assert.equal(held, ds.status === 'ok' ? ds.size : 0);
          assert.ok(ds.pieces.length <= (2 * held) / 256 + held / 7000 + 3, `${ds.pieces.length} pieces for ${held} bytes`);
          if (r >= 0) break;
        }
      },
    ),
    { numRuns: RUNS },
  );
});

test('a long random stream fed one byte at a time holds bounded memory', () => {
  const ds = new DataScanner({ maxMessageBytes: 1 << 20 });
  ds.begin();
  // lines of 40 bytes, none starting with a dot: never ends
  const text = Buffer.from('0123456789012345678901234567890123456\r\n'.repeat(5000), 'latin1');
  for (let i = 0; i < text.length; i++) {
    assert.equal(ds.feed(text.subarray(i, i + 1), 0), -1);
    if ((i & 1023) === 0) assert.ok(ds.pieces.length <= (2 * ds.size) / 256 + ds.size / 7000 + 3);
  }
  assert.equal(ds.size, text.length);
  assert.ok(ds.pieces.length <= 40, `${ds.pieces.length} pieces`);
});
