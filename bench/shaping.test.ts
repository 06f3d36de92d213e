// The shaping bench's parts at a tiny size (not timed): the throttling sink really refuses a
// session past its connection limit with 421 4.7.0 and a message past its rate with 451 4.7.1,
// and counts both; shapingOnce delivers a few messages through a node and reports the figures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { startSink } from './lib/sink.js';
import { shapingOnce } from './shaping.js';

/** A tiny line client: send a line, read until a reply line that ends (code + space). */
async function session(port: number): Promise<{ sock: Socket; greeting: string; say(line: string): Promise<string> }> {
  const sock = connect(port, '127.0.0.1');
  sock.setEncoding('latin1');
  let buf = '';
  const waiters: Array<() => void> = [];
  sock.on('data', (d: string) => {
    buf += d;
    for (const w of waiters.splice(0)) w();
  });
  const next = async (): Promise<string> => {
    for (;;) {
      const m = /^(\d{3}) [^\r\n]*\r\n/m.exec(buf);
      if (m) {
        const end = m.index + m[0].length;
        const out = buf.slice(0, end);
        buf = buf.slice(end);
        return out;
      }
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  await once(sock, 'connect');
  const greeting = await next();
  return { sock, greeting, say: (line) => (sock.write(line + '\r\n'), next()) };
}

test('throttling sink: 421 4.7.0 past maxConnections, 451 4.7.1 past ratePerSec, both counted', async (t) => {
  const sink = await startSink({ port: 0, maxConnections: 1, ratePerSec: 1 });
  t.after(() => sink.close());
  const a = await session(sink.port);
  t.after(() => a.sock.destroy());
  assert.match(a.greeting, /^220 /);
  const b = await session(sink.port);
  t.after(() => b.sock.destroy());
  assert.match(b.greeting, /^421 4\.7\.0 Too many connections/);
  assert.match(await a.say('EHLO x'), /^250/m);
  const send = async (): Promise<string> => {
    await a.say('MAIL FROM:<a@x.example>');
    await a.say('RCPT TO:<b@y.example>');
    assert.match(await a.say('DATA'), /^354/);
    return a.say('Subject: x\r\n\r\nbody\r\n.');
  };
  assert.match(await send(), /^250 /);
  assert.match(await send(), /^451 4\.7\.1 Rate limit exceeded/);
  assert.deepEqual({ ...sink.stats, bytes: 0 }, { connections: 2, messages: 1, bytes: 0, refused: 1, rateRefused: 1, maxOpen: 1 });
});

test('shapingOnce: a few messages through a node to a throttling sink, with the figures', async () => {
  const r = await shapingOnce({ messages: 12, maxConnections: 2, ratePerSec: 20, timeLimitMs: 30_000, pollIntervalMs: 50 });
  assert.equal(r.delivered, 12);
  assert.equal(r.bounced, 0);
  assert.equal(r.timedOut, false);
  assert.equal(r.idealMs, 600);
  assert.ok(r.maxOpen <= 2 && r.elapsedMs > 0 && r.ratio > 0);
});
