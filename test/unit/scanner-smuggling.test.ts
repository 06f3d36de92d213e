// SMTP smuggling at the parser level (CVE-2023-51764, SEC Consult, Dec 2023): only "\r\n.\r\n"
// ends DATA (RFC 5321 §4.1.1.4), so a fake end made with bare LF/CR never ends the message, and
// the smuggled transaction after it stays inside the first, refused message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataScanner } from '../../src/protocol/data-scanner.js';
import { LineScanner } from '../../src/protocol/line-scanner.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const FAKES = ['\n.\n', '\r\n.\n', '\n.\r\n', '\r.\r\n', '\r\n.\r.\r\n', '\n.\r\r\n'];
const SMUGGLED = 'MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nsmuggled';
const REAL_END = '\r\n.\r\n';
const AFTER = 'QUIT\r\n';

/** What a session would see: DATA content, then command lines. Returns the ends and the commands. */
function drive(stream: Buffer, cuts: number[]): { ends: number[]; status: string[]; commands: string[] } {
  const ds = new DataScanner({ maxMessageBytes: 1 << 20 });
  const ls = new LineScanner(512);
  const ends: number[] = [];
  const status: string[] = [];
  const commands: string[] = [];
  let mode: 'data' | 'command' = 'data';
  ds.begin();
  const bounds = [0, ...cuts.filter((c) => c > 0 && c < stream.length), stream.length];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const chunk = Buffer.from(stream.subarray(bounds[i], bounds[i + 1]));
    let pos = 0;
    while (pos < chunk.length) {
      if (mode === 'data') {
        const end = ds.feed(chunk, pos);
        if (end < 0) break;
        ends.push(bounds[i]! + end);
        status.push(ds.status);
        pos = end;
        mode = 'command';
      } else {
        const k = ls.scan(chunk, pos);
        if (k === 'partial') break;
        pos = ls.end;
        commands.push(k === 'line' ? ls.line.toString('latin1') : `<${k}>`);
        if (k === 'line' && ls.line.toString('latin1') === 'DATA') {
          ds.begin();
          mode = 'data';
        }
      }
    }
  }
  return { ends, status, commands };
}

for (const fake of FAKES) {
  test(`fake end ${JSON.stringify(fake)}: one end, the real one, status bad-newline`, () => {
    const text = 'Subject: hi\r\n\r\nbody' + fake + SMUGGLED + REAL_END + AFTER;
    const stream = b(text);
    const realEnd = text.indexOf(REAL_END, text.indexOf('smuggled')) + REAL_END.length;
    const want = { ends: [realEnd], status: ['bad-newline'], commands: ['QUIT'] };
    assert.deepEqual(drive(stream, []), want);
    for (let i = 1; i < stream.length; i++) assert.deepEqual(drive(stream, [i]), want, `cut at ${i}`);
    for (let i = 1; i + 3 < stream.length; i += 3) assert.deepEqual(drive(stream, [i, i + 1, i + 3]), want, `cuts at ${i}..`);
  });
}

test('as literally given: "...smuggled\\r\\n.\\r\\n" then another "\\r\\n.\\r\\n"', () => {
  for (const fake of FAKES) {
    const text = 'body' + fake + SMUGGLED + '\r\n.\r\n' + '\r\n.\r\n';
    const stream = b(text);
    const ds = new DataScanner({ maxMessageBytes: 1 << 20 });
    for (let cut = 0; cut < stream.length; cut++) {
      ds.begin();
      const parts = cut === 0 ? [stream] : [stream.subarray(0, cut), stream.subarray(cut)];
      const ends: number[] = [];
      let base = 0;
      for (const part of parts) {
        if (ds.ended) {
          assert.equal(ds.feed(Buffer.from(part), 0), 0, 'after its end the scanner consumes nothing');
          break;
        }
        const e = ds.feed(Buffer.from(part), 0);
        if (e >= 0) ends.push(base + e);
        base += part.length;
      }
      // The first genuine CRLF.CRLF, after the smuggled block: the fake one and the smuggled
      // commands are inside the refused message; nothing after the first end is taken as data.
      assert.deepEqual(ends, [text.indexOf('\r\n.\r\n', text.indexOf('smuggled')) + 5], `${JSON.stringify(fake)} cut ${cut}`);
      assert.equal(ds.status, 'bad-newline');
      assert.equal(ds.pieces.length, 0);
    }
  }
});

test('a message with no fake end and the same commands in it is fine (the checks are not over-eager)', () => {
  const text = 'Subject: hi\r\n\r\nbody\r\n..\r\n' + SMUGGLED + REAL_END + AFTER;
  const r = drive(b(text), []);
  assert.deepEqual(r.status, ['ok']);
  assert.deepEqual(r.commands, ['QUIT']);
});
