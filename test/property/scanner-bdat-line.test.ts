// Fuzz: BdatReader (RFC 3030) and LineScanner (RFC 5321 §2.3.8, §4.5.3.1.4) against per-byte
// models, over random BDAT chunkings and socket splits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BdatReader } from '../../src/protocol/bdat-reader.js';
import { LineScanner, type LineKind } from '../../src/protocol/line-scanner.js';
import { modelBdat, modelLines, type LineEvent } from './scanner-model.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

const token = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('\r\n', 'a', 'xyz', '.', ' ') },
  { weight: 2, arbitrary: fc.constantFrom('\r', '\n', '\r\r', '\n\n') },
  { weight: 1, arbitrary: fc.constant('\0') },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 90 }).map((n) => 'q'.repeat(n)) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 6 }).map((u) => Buffer.from(u).toString('latin1')) },
);
const stream = fc.array(token, { maxLength: 40, size: 'max' }).map((t) => Buffer.from(t.join(''), 'latin1'));
const cutsFor = (n: number) => fc.array(fc.integer({ min: 0, max: n }), { maxLength: 10, size: 'max' });

function bounds(len: number, cuts: number[]): number[] {
  return [0, ...[...new Set(cuts)].filter((c) => c > 0 && c < len).sort((a, b) => a - b), len];
}

test('BdatReader equals the model over any BDAT chunking and socket split', () => {
  fc.assert(
    fc.property(
      stream.chain((s) => fc.tuple(fc.constant(s), cutsFor(s.length), cutsFor(s.length), fc.boolean())),
      fc.oneof(fc.integer({ min: 0, max: 80 }), fc.constant(1 << 20)),
      fc.oneof(fc.integer({ min: 2, max: 30 }), fc.constant(1000)),
      fc.boolean(),
      ([s, bdatCuts, socketCuts, zeroLast], maxMessageBytes, maxLineBytes, binary) => {
        const want = modelBdat(s, maxMessageBytes, maxLineBytes, binary);
        // BDAT chunk sizes (some may be 0), optionally a final "BDAT 0 LAST"
        const bb = bounds(s.length, bdatCuts);
        const sizes = bb.slice(1).map((e, i) => e - bb[i]!);
        if (zeroLast) sizes.push(0);
        const r = new BdatReader({ maxMessageBytes, maxLineBytes });
        r.begin(binary);
        let next = 0; // next BDAT chunk to announce
        r.chunk(sizes[next]!, next === sizes.length - 1);
        next++;
        const sb = bounds(s.length, socketCuts);
        for (let i = 0; i + 1 < sb.length; i++) {
          const chunk = Buffer.from(s.subarray(sb[i], sb[i + 1]));
          let pos = 0;
          for (;;) {
            const e = r.feed(chunk, pos);
            if (e < 0) break;
            assert.ok(e >= pos && e <= chunk.length);
            pos = e;
            if (next === sizes.length) break;
            r.chunk(sizes[next]!, next === sizes.length - 1);
            next++;
            if (pos === chunk.length && sizes[next - 1] !== 0) break;
          }
        }
        while (next < sizes.length) {
          assert.equal(r.remaining, 0);
          r.chunk(sizes[next]!, next === sizes.length - 1); // trailing BDAT 0 [LAST]
          next++;
        }
        assert.equal(r.remaining, 0);
        const size = r.size;
        const status = r.status;
        const got = r.takeBody();
        assert.equal(status, want.status, `status; model ${JSON.stringify(want.body.toString('latin1'))}`);
        assert.equal(size, want.size);
        assert.ok(got.equals(want.body));
      },
    ),
    { numRuns: RUNS * 3 },
  );
});

/** Run the LineScanner over the stream cut at `cuts`; events in stream offsets. */
function lines(s: Buffer, cuts: number[], max: number): Array<LineEvent & { early?: boolean }> {
  const ls = new LineScanner(max);
  const out: Array<LineEvent & { early?: boolean }> = [];
  const b = bounds(s.length, cuts);
  for (let i = 0; i + 1 < b.length; i++) {
    const chunk = Buffer.from(s.subarray(b[i], b[i + 1]));
    let pos = 0;
    while (pos < chunk.length) {
      const k: LineKind = ls.scan(chunk, pos);
      assert.ok(ls.pendingBytes < max, `pendingBytes ${ls.pendingBytes}`);
      if (k === 'partial') {
        assert.equal(ls.end, chunk.length);
        break;
      }
      const lfBefore = ls.end > pos && chunk[ls.end - 1] === 0x0a;
      if (k === 'too-long' && !lfBefore) out.push({ kind: k, early: true });
      else if (k === 'line') out.push({ kind: k, line: ls.line.toString('latin1'), end: b[i]! + ls.end });
      else out.push({ kind: k, end: b[i]! + ls.end });
      pos = ls.end;
    }
  }
  return out;
}

test('LineScanner equals the model, whole and split anywhere', () => {
  fc.assert(
    fc.property(
      stream.chain((s) => fc.tuple(fc.constant(s), cutsFor(s.length))),
      fc.oneof(fc.integer({ min: 2, max: 30 }), fc.constant(512)),
      ([s, cuts], max) => {
        const want = modelLines(s, max);
        for (const c of [[], cuts, [1, 2, 3, 5, 8, 13, 21, 34, 55, 89]]) {
          const got = lines(s, c, max);
          assert.equal(got.length, want.length, `events ${JSON.stringify(got)} vs ${JSON.stringify(want)}`);
          got.forEach((g, i) => {
            const w = want[i]!;
            assert.equal(g.kind, w.kind, `event ${i}`);
            if (g.kind === 'line') assert.equal(g.line, w.line);
            if (!g.early) assert.equal(g.end, w.end, `event ${i} end`);
          });
        }
      },
    ),
    { numRuns: RUNS * 3 },
  );
});

test('the line model agrees with hand-checked cases (so the model itself is tested)', () => {
  const m = (s: string, max = 512): LineEvent[] => modelLines(Buffer.from(s, 'latin1'), max);
  assert.deepEqual(m('NOOP\r\nRSET\r\n'), [{ kind: 'line', line: 'NOOP', end: 6 }, { kind: 'line', line: 'RSET', end: 12 }]);
  assert.deepEqual(m('NOOP\nMAIL FROM:<x>\r\nRSET\r\n'), [{ kind: 'bad-newline', end: 5 }, { kind: 'line', line: 'RSET', end: 26 }]);
  assert.deepEqual(m('NO\rOP\r\n\nx\n\r\n'), [{ kind: 'bad-newline', end: 7 }, { kind: 'bad-newline', end: 8 }]);
  assert.deepEqual(m('ab\ncdefghij\r\nQUIT\r\n', 8), [{ kind: 'bad-newline', end: 3 }, { kind: 'too-long', end: 13 }, { kind: 'line', line: 'QUIT', end: 19 }]);
  assert.deepEqual(m('abcdefgh\nx\r\nQUIT', 8), [{ kind: 'too-long', end: 9 }]);
  assert.deepEqual(m('ab\ncdefgh', 8), [{ kind: 'bad-newline', end: 3 }, { kind: 'too-long' }]);
  assert.deepEqual(m('ab\ncdef\n', 8), [{ kind: 'bad-newline', end: 3 }], 'the next byte decides');
});

test('a line with a bare LF before its CRLF never yields a command from its tail, however it is cut', () => {
  const noCrlf = (t: string): boolean => !t.includes('\r\n');
  const piece = fc.oneof(
    fc.constantFrom('NOOP', 'MAIL FROM:<x@example.com>', 'RCPT TO:<y@example.com>', 'DATA', 'QUIT', ' ', '\r', '\n', '.'),
    fc.string({ maxLength: 12 }),
  );
  const text = fc.array(piece, { maxLength: 8, size: 'max' }).map((a) => a.join('')).filter(noCrlf);
  fc.assert(
    fc.property(
      text,
      fc.constantFrom('NOOP', 'MAIL FROM:<x@example.com>', 'RCPT TO:<y@example.com>', 'DATA', 'QUIT', 'AUTH PLAIN AGFAAGI='),
      text,
      fc.oneof(fc.integer({ min: 2, max: 40 }), fc.constant(512)),
      fc.array(fc.nat(400), { maxLength: 10, size: 'max' }),
      (head, command, tail, max, cuts) => {
        // head + a bare LF + a command, more text, the CRLF; then a line that must come out
        const refused = head + (head.endsWith('\r') ? 'x' : '') + '\n' + command + tail;
        fc.pre(noCrlf(refused + '\r'));
        const s = Buffer.from(refused + '\r\nNOOP\r\n', 'latin1');
        const got = lines(s, cuts.map((c) => c % (s.length + 1)), Math.max(max, 6));
        const found = got.filter((e) => e.kind === 'line');
        assert.deepEqual(found.map((e) => e.line), ['NOOP'], JSON.stringify(got));
        assert.ok(got.length <= 3 && got[0]!.kind !== 'line', 'one or two refusals, then NOOP');
      },
    ),
    { numRuns: RUNS * 3 },
  );
});

test('random bytes never throw in LineScanner or BdatReader', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000, size: 'max' }), fc.array(fc.nat(3000), { maxLength: 30, size: 'max' }), (u, cuts) => {
      const s = Buffer.from(u);
      lines(s, cuts, 64);
      const r = new BdatReader({ maxMessageBytes: 1000 });
      r.begin();
      r.chunk(s.length, true);
      for (let i = 0, b = bounds(s.length, cuts); i + 1 < b.length; i++) r.feed(Buffer.from(s.subarray(b[i], b[i + 1])), 0);
      assert.ok(r.pieces.reduce((n, p) => n + p.length, 0) <= 1000);
    }),
    { numRuns: RUNS },
  );
});
