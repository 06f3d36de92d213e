// ReplyReader (RFC 5321 §4.2 replies, RFC 2034 enhanced codes) on its own: single and
// multi-line replies, the enhanced code taken off each line, replies split anywhere across
// chunks, and the errors (malformed line, a line or a reply over its bound).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ReplyReader, type ReplyReadResult, type SmtpReply } from '../../src/protocol/reply-reader.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

/** Push each chunk, collect results until 'partial' (or an error). */
function readAll(r: ReplyReader, chunks: Buffer[]): Array<SmtpReply | Exclude<ReplyReadResult, { kind: 'reply' | 'partial' }>> {
  const out: Array<SmtpReply | Exclude<ReplyReadResult, { kind: 'reply' | 'partial' }>> = [];
  for (const c of chunks) {
    r.push(c);
    for (;;) {
      const x = r.next();
      if (x.kind === 'partial') break;
      if (x.kind !== 'reply') {
        out.push(x);
        return out;
      }
      out.push(x.reply);
    }
  }
  return out;
}

test('single and multi-line replies; enhanced code taken off every line of its class', () => {
  const r = new ReplyReader();
  const got = readAll(r, [b('220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n550-5.1.1 No such\r\n550 5.1.1 user\r\n')]);
  assert.deepEqual(got, [
    { code: 220, lines: ['mx.example ESMTP'], text: 'mx.example ESMTP' },
    { code: 250, lines: ['mx.example', 'PIPELINING', 'SIZE 1000'], text: 'mx.example PIPELINING SIZE 1000' },
    { code: 550, enhanced: '5.1.1', lines: ['No such', 'user'], text: 'No such user' },
  ]);
  assert.equal(r.idle, true);
  assert.equal(r.bufferedBytes, 0);
});

test('an enhanced code of another class is text; a bare LF ends a line too; a code alone is a reply', () => {
  const got = readAll(new ReplyReader(), [b('451 5.1.1 odd\n250\r\n250 2.0.0\r\n')]);
  assert.deepEqual(got, [
    { code: 451, lines: ['5.1.1 odd'], text: '5.1.1 odd' },
    { code: 250, lines: [''], text: '' },
    { code: 250, enhanced: '2.0.0', lines: [''], text: '' },
  ]);
});

test('a reply split across chunks: partial until its last line ends; the rest is held, not the chunk', () => {
  const r = new ReplyReader();
  r.push(b('250-a\r\n250 b'));
  assert.deepEqual(r.next(), { kind: 'partial' });
  assert.equal(r.idle, false);
  assert.equal(r.bufferedBytes, 5);
  r.push(b('\r\n'));
  const x = r.next();
  assert.equal(x.kind, 'reply');
  assert.deepEqual(x.kind === 'reply' && x.reply.lines, ['a', 'b']);
  assert.deepEqual(r.next(), { kind: 'partial' });
  assert.equal(r.idle, true);
});

test('a line that is not a reply line is malformed; the reader stays failed', () => {
  const r = new ReplyReader();
  assert.deepEqual(readAll(r, [b('250 ok\r\nHTTP/1.1 400 Bad Request\r\n')]), [{ code: 250, lines: ['ok'], text: 'ok' }, { kind: 'malformed', line: 'HTTP/1.1 400 Bad Request' }]);
  r.push(b('250 ok\r\n'));
  assert.equal(r.next().kind, 'malformed');
});

test('a line over maxLineBytes (CRLF included) is refused, finished or not; a reply over maxLines or maxReplyBytes too', () => {
  const limits = { maxLineBytes: 10, maxLines: 3, maxReplyBytes: 20 };
  assert.equal(readAll(new ReplyReader(limits), [b('250 123456\r\n')]).length, 1, 'exactly maxLineBytes with its CRLF is fine');
  assert.deepEqual(readAll(new ReplyReader(limits), [b('250 1234567\r\n')]), [{ kind: 'line-too-long' }], 'complete, in one chunk');
  const long = new ReplyReader(limits);
  assert.deepEqual(readAll(long, [b('250 12'), b('345')]), [], 'nine bytes without LF: it may still end in time');
  assert.deepEqual(readAll(long, [b('6')]), [{ kind: 'line-too-long' }], 'ten bytes without LF: refused before its end');
  const many = new ReplyReader({ ...limits, maxReplyBytes: 100 });
  assert.equal(readAll(many, [b('250-a\r\n250-b\r\n250 c\r\n')]).length, 1, 'exactly maxLines is fine');
  assert.deepEqual(readAll(many, [b('250-a\r\n250-b\r\n250-c\r\n250 d\r\n')]), [{ kind: 'too-many-lines' }]);
  const big = new ReplyReader(limits);
  assert.equal(readAll(big, [b('250-12\r\n250 1234\r\n')]).length, 1, '18 bytes in all is fine');
  assert.deepEqual(readAll(big, [b('250-1234\r\n250-1234\r\n250 1\r\n')]), [{ kind: 'reply-too-long' }]);
  assert.deepEqual(readAll(new ReplyReader(limits), [b('250-1234\r\n250-1234\r\n2')]), [{ kind: 'reply-too-long' }], 'found before the last line ends');
});

test('the default bounds: 2048-byte lines, 100 lines, 64 KiB per reply', () => {
  const line = (code: string, sep: string, n: number) => `${code}${sep}${'x'.repeat(n - 6)}\r\n`;
  assert.equal(readAll(new ReplyReader(), [b(line('250', ' ', 2048))]).length, 1);
  assert.deepEqual(readAll(new ReplyReader(), [b(line('250', ' ', 2049))]), [{ kind: 'line-too-long' }]);
  assert.equal(readAll(new ReplyReader(), [b(line('250', '-', 10).repeat(99) + line('250', ' ', 10))]).length, 1);
  assert.deepEqual(readAll(new ReplyReader(), [b(line('250', '-', 10).repeat(100) + line('250', ' ', 10))]), [{ kind: 'too-many-lines' }]);
  assert.deepEqual(readAll(new ReplyReader(), [b(line('250', '-', 2000).repeat(33) + line('250', ' ', 10))]), [{ kind: 'reply-too-long' }]);
  // A flood without LF holds at most a line's worth, whatever the chunking.
  const r = new ReplyReader();
  let res: ReplyReadResult = { kind: 'partial' };
  for (let i = 0; i < 100 && res.kind === 'partial'; i++) {
    r.push(b('y'.repeat(100)));
    res = r.next();
    assert.ok(r.bufferedBytes < 2048);
  }
  assert.equal(res.kind, 'line-too-long');
});

test('any split of a transcript yields the same replies', () => {
  const line = fc.tuple(fc.constantFrom('220', '250', '354', '451', '550'), fc.constantFrom('', ' 2.0.0', ' 4.7.1', ' 5.1.1'), fc.string({ maxLength: 20 }).map((s) => s.replace(/[\r\n]/g, ' ')));
  const reply = fc.array(line, { minLength: 1, maxLength: 4 }).map((ls) => ls.map(([, enh, text], i) => `${ls[0]![0]}${i === ls.length - 1 ? ' ' : '-'}${enh.trimStart()}${enh && text ? ' ' : ''}${text}\r\n`).join(''));
  fc.assert(
    fc.property(fc.array(reply, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 8 }), (replies, cuts) => {
      const all = b(replies.join(''));
      const want = readAll(new ReplyReader(), [all]);
      assert.equal(want.length, replies.length);
      const at = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((x, y) => x - y);
      const chunks: Buffer[] = [];
      let prev = 0;
      for (const c of [...at, all.length]) {
        chunks.push(Buffer.from(all.subarray(prev, c)));
        prev = c;
      }
      assert.deepEqual(readAll(new ReplyReader(), chunks), want);
    }),
    { numRuns: 300 },
  );
});
