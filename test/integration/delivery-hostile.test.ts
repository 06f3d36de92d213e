// The SMTP/LMTP client against hostile servers on 127.0.0.1 (issue 13, "a server that floods
// replies"): replies nobody asked for (after the greeting, during a transaction, on an idle
// pooled connection, after LMTP's per-recipient replies), an endless multi-line reply, a reply
// line without end, lines and replies over their bounds, bytes injected after the STARTTLS
// reply. Each closes the connection at once, keeps memory bounded, and records a transient
// failure naming the command, code and enhanced code. Floods are bounded by the server helper
// (3 s, 2 GiB at most). Also: success codes where none can end a transaction deliver nothing.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startScriptedServer, deliveryRequest, type ScriptedServerOptions, type ScriptSession } from '../helpers/scripted-server.js';
import { makeCert } from '../helpers/node.js';
import { SmtpTransport } from '../../src/delivery/smtp-transport.js';
import { MAX_REPLY_BYTES, MAX_REPLY_LINE_BYTES, MAX_REPLY_LINES } from '../../src/protocol/reply-reader.js';
import type { Destination, RecipientResult, TlsPolicy } from '../../src/delivery/types.js';
import { LAST_REPLY_TEXT_CHARS } from '../../src/queue/records.js';

const TIMEOUTS = { connectMs: 2000, greetingMs: 5000, commandMs: 5000, dataInitMs: 5000, dataBlockMs: 5000, finalMs: 5000, tlsMs: 2000 };
const MSG = 'Subject: t\r\n\r\nhello\r\n';
/** Heap growth allowed while a flood runs (the unbounded client grew by hundreds of MB). */
const MAX_HEAP_GROWTH = 48 * 1024 * 1024;
/** The client must close a flooding connection within this time. */
const CLOSE_WITHIN_MS = 2000;

function dest(port: number, kind: 'smtp' | 'lmtp' = 'smtp', tlsPolicy: TlsPolicy = 'none'): Destination {
  return { kind, key: `${kind}:127.0.0.1:${port}`, hosts: [{ host: '127.0.0.1', port }], tlsPolicy } as Destination;
}

function transport(t: TestContext, extra: Partial<ConstructorParameters<typeof SmtpTransport>[0]> = {}): SmtpTransport {
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts: TIMEOUTS, maxConnectionsPerDestination: 1, ...extra });
  t.after(() => tr.close());
  return tr;
}

/** Resolves when the session closed, or after `ms` (then closedAt is still null). */
async function closedOrAfter(s: ScriptSession, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([s.closed, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

/** Every result is the protocol failure: transient, 421 4.5.0, the given command(s). */
function assertProtocolFailure(res: RecipientResult[], commands: string[], text: RegExp): void {
  assert.ok(res.length > 0);
  for (const r of res) {
    assert.deepEqual([r.kind, r.reply.transient, r.reply.code, r.reply.enhanced], ['deferred', true, 421, '4.5.0'], JSON.stringify(r));
    assert.ok(commands.includes(r.reply.command!), `command ${r.reply.command} not in ${commands.join(',')}`);
    assert.match(r.reply.text, text);
  }
}

/** One delivery to a scripted server; then waits (up to 3 s) for the connection to close, unless it is expected to stay open. */
async function flooded(t: TestContext, o: ScriptedServerOptions, rcpts: string[], kind: 'smtp' | 'lmtp' = 'smtp', staysOpen = false) {
  const srv = await startScriptedServer(t, { mode: kind, ...o });
  const tr = transport(t);
  const d = dest(srv.port, kind);
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = Date.now();
  const res = await tr.deliver(d, deliveryRequest('s@example.org', rcpts, MSG));
  const s = srv.sessions[0]!;
  if (!staysOpen) await closedOrAfter(s, 3000);
  const grown = process.memoryUsage().heapUsed - heap0;
  return { srv, tr, d, res, s, t0, grown };
}

test('replies flooded in answer to MAIL: every recipient transient (421 4.5.0, MAIL), the connection closed at once', async (t) => {
  const { res, s, t0, grown, tr, d } = await flooded(t, { capabilities: ['SIZE 1000000', '8BITMIME'], reply: (cmd) => (cmd.startsWith('MAIL') ? { flood: '250 2.0.0 ok\r\n' } : undefined) }, ['a@example.net', 'b@example.net']);
  assertProtocolFailure(res, ['MAIL'], /unexpected data after the MAIL reply/);
  assert.ok(s.closedAt !== null && s.closedAt - t0 < CLOSE_WITHIN_MS, `closed after ${s.closedAt === null ? 'never' : s.closedAt - t0} ms`);
  assert.ok(grown < MAX_HEAP_GROWTH, `heap grew by ${grown} bytes`);
  assert.equal(tr.counts()[d.key]!.open, 0, 'the connection is discarded, not pooled');
  assert.equal(s.messages.length, 0, 'no data was sent');
});

test('replies flooded right after the greeting: the open fails transiently (421 4.5.0), the connection closed at once', async (t) => {
  const { res, s, t0, grown } = await flooded(t, { greeting: { prefix: '220 hostile.test ESMTP\r\n', flood: '250 ok\r\n' } }, ['a@example.net']);
  assertProtocolFailure(res, ['CONNECT', 'EHLO'], /unexpected data after the (CONNECT|EHLO) reply/);
  assert.ok(s.closedAt !== null && s.closedAt - t0 < CLOSE_WITHIN_MS);
  assert.ok(grown < MAX_HEAP_GROWTH, `heap grew by ${grown} bytes`);
  assert.ok(!s.commands.some((c) => c.startsWith('MAIL')), 'no transaction was started');
});

test('a flood on an idle pooled connection closes it at once; the heap stays bounded; the next message opens a new one', async (t) => {
  const srv = await startScriptedServer(t);
  const tr = transport(t);
  const d = dest(srv.port);
  assert.equal((await tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], MSG)))[0]!.kind, 'delivered');
  assert.equal(tr.counts()[d.key]!.idle, 1);
  const s = srv.sessions[0]!;
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = Date.now();
  s.write({ flood: '250 ok\r\n' });
  await closedOrAfter(s, 3000);
  const grown = process.memoryUsage().heapUsed - heap0;
  assert.ok(s.closedAt !== null && s.closedAt - t0 < CLOSE_WITHIN_MS, `closed after ${s.closedAt === null ? 'never' : s.closedAt - t0} ms (flooded ${s.flooded} bytes)`);
  assert.ok(grown < MAX_HEAP_GROWTH, `heap grew by ${grown} bytes`);
  for (let i = 0; i < 50 && tr.counts()[d.key]!.open > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual([tr.counts()[d.key]!.idle, tr.counts()[d.key]!.open], [0, 0]);
  assert.equal((await tr.deliver(d, deliveryRequest('s@example.org', ['b@example.net'], MSG)))[0]!.kind, 'delivered');
  assert.equal(srv.sessions.length, 2);
});

test('a few bytes without CRLF on an idle pooled connection close it too (nothing is owed, nothing is read)', async (t) => {
  const srv = await startScriptedServer(t);
  const tr = transport(t);
  const d = dest(srv.port);
  assert.equal((await tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], MSG)))[0]!.kind, 'delivered');
  const s = srv.sessions[0]!;
  const t0 = Date.now();
  s.write('2');
  await closedOrAfter(s, 3000);
  assert.ok(s.closedAt !== null && s.closedAt - t0 < CLOSE_WITHIN_MS);
});

test('LMTP: a flood after the per-recipient replies fails every recipient of the transaction transiently (421 4.5.0, END-OF-DATA)', async (t) => {
  const { res, s, t0, grown } = await flooded(t, { reply: (cmd) => (cmd === '.' ? { flood: '250 2.0.0 ok\r\n' } : undefined) }, ['a@example.net', 'b@example.net', 'c@example.net'], 'lmtp');
  assertProtocolFailure(res, ['END-OF-DATA'], /unexpected data after the END-OF-DATA reply/);
  assert.ok(s.closedAt !== null && s.closedAt - t0 < CLOSE_WITHIN_MS);
  assert.ok(grown < MAX_HEAP_GROWTH, `heap grew by ${grown} bytes`);
});

test('an endless multi-line final reply: transient (421 4.5.0, END-OF-DATA) once the reply passes its bound', async (t) => {
  const { res, s, t0 } = await flooded(t, { reply: (cmd) => (cmd === '.' ? { flood: '250-still going\r\n' } : undefined) }, ['a@example.net']);
  assertProtocolFailure(res, ['END-OF-DATA'], /reply has more than 100 lines/);
  assert.ok(s.closedAt !== null && s.closedAt - t0 < CLOSE_WITHIN_MS);
});

test('a final reply line without end: transient (421 4.5.0, END-OF-DATA) once the line passes its bound', async (t) => {
  const { res, s, t0 } = await flooded(t, { reply: (cmd) => (cmd === '.' ? { prefix: '250 ', flood: 'x' } : undefined) }, ['a@example.net']);
  assertProtocolFailure(res, ['END-OF-DATA'], /reply line longer than 2048 bytes/);
  assert.ok(s.closedAt !== null && s.closedAt - t0 < CLOSE_WITHIN_MS);
});

test('bounds: a complete reply line over the line bound, and a multi-line reply over the byte bound, are refused', async (t) => {
  assert.equal(MAX_REPLY_LINE_BYTES, 2048);
  assert.equal(MAX_REPLY_LINES, 100);
  assert.equal(MAX_REPLY_BYTES, 64 * 1024);
  // One read carries the whole line: the bound holds for complete lines too.
  const long = await flooded(t, { reply: (cmd) => (cmd.startsWith('RCPT') ? '250 ' + 'x'.repeat(3000) : undefined) }, ['a@example.net']);
  assertProtocolFailure(long.res, ['RCPT'], /reply line longer than 2048 bytes/);
  assert.equal(long.s.messages.length, 0);
  // 40 lines of 2000 bytes: few lines, each within its bound, 80 kB in all.
  const ehlo = ['hostile.test', ...Array.from({ length: 39 }, (_, i) => `X-${i} ${'y'.repeat(1990)}`)].map((l, i, a) => `250${i === a.length - 1 ? ' ' : '-'}${l}`).join('\r\n');
  const big = await flooded(t, { reply: (cmd) => (cmd.startsWith('EHLO') ? ehlo : undefined) }, ['a@example.net']);
  assertProtocolFailure(big.res, ['EHLO'], /reply longer than 65536 bytes/);
  // Within the bounds: 100 lines of 600 bytes (60 kB) is an ordinary EHLO reply.
  const okEhlo = ['fine.test', 'PIPELINING', ...Array.from({ length: 98 }, (_, i) => `X-${i} ${'y'.repeat(590)}`)].map((l, i, a) => `250${i === a.length - 1 ? ' ' : '-'}${l}`).join('\r\n');
  const fine = await flooded(t, { reply: (cmd) => (cmd.startsWith('EHLO') ? okEhlo : undefined) }, ['a@example.net'], 'smtp', true);
  assert.equal(fine.res[0]!.kind, 'delivered', JSON.stringify(fine.res));
});

test('STARTTLS: a line injected in clear after the 220 (even an unfinished multi-line reply) fails the open', async (t) => {
  const { cert, key } = makeCert(t);
  const srv = await startScriptedServer(t, { tls: { cert, key }, capabilities: ['PIPELINING', 'STARTTLS', '8BITMIME'], reply: (cmd) => (cmd === 'STARTTLS' ? '220 2.0.0 go\r\n250-SIZE 1' : undefined) });
  const tr = transport(t);
  const res = await tr.deliver(dest(srv.port, 'smtp', 'opportunistic'), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assertProtocolFailure(res, ['STARTTLS'], /unexpected data after the STARTTLS reply/);
  await closedOrAfter(srv.sessions[0]!, 3000);
  assert.notEqual(srv.sessions[0]!.closedAt, null);
  assert.equal(srv.messages().length, 0);
});

test('a success code where none can be final is no delivery: DATA answered 250, RCPT answered 252', async (t) => {
  const data = await flooded(t, { reply: (cmd) => (cmd === 'DATA' ? '250 2.0.0 sure' : undefined) }, ['a@example.net'], 'smtp', true);
  assert.deepEqual(data.res.map((r) => [r.kind, r.reply.transient, r.reply.code, r.reply.command]), [['deferred', true, 250, 'DATA']]);
  const rcpt = await flooded(t, { reply: (cmd) => (cmd.includes('<b@') ? '252 2.1.5 maybe' : undefined) }, ['a@example.net', 'b@example.net'], 'smtp', true);
  assert.deepEqual(rcpt.res.map((r) => [r.address, r.kind, r.reply.code, r.reply.command]), [
    ['a@example.net', 'delivered', 250, 'END-OF-DATA'],
    ['b@example.net', 'deferred', 252, 'RCPT'],
  ]);
});

test('a long reply (60 lines of 1,000 characters to RCPT) is cut to what a record keeps before it reaches the result, the log, the event and the bounce', async (t) => {
  const long = Array.from({ length: 60 }, (_, i) => `450${i === 59 ? ' ' : '-'}4.2.1 ${String(i).padStart(2, '0')}${'x'.repeat(990)}`).join('\r\n');
  const r = await flooded(t, { reply: (cmd) => (cmd.startsWith('RCPT') ? long : undefined) }, ['a@example.net'], 'smtp', true);
  assert.equal(r.res.length, 1);
  const reply = r.res[0]!.reply;
  assert.deepEqual([r.res[0]!.kind, reply.code, reply.enhanced, reply.command], ['deferred', 450, '4.2.1', 'RCPT']);
  assert.ok(reply.text.length <= LAST_REPLY_TEXT_CHARS, `reply text of ${reply.text.length} characters`);
  assert.ok(reply.text.startsWith('00x') && reply.text.endsWith('…'), reply.text.slice(0, 40));
});
