// postern against a scripted server speaking Microsoft Exchange's dialect (docs/interop.md,
// "Exchange"): its EHLO keywords (X-ANONYMOUSTLS, XEXCH50, X-EXPS, AUTH NTLM, CHUNKING,
// BINARYMIME, XRDST, XSHADOWREQUEST), STARTTLS at TLS 1.2 or later, the body sent with BDAT
// because CHUNKING is offered, "452 4.5.3 Too many recipients" past its recipient limit (the
// rest go in further transactions at once) and 421 4.3.2 / 4.4.2 / 4.7.x under load
// (deferred, never bounced).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startScriptedServer, deliveryRequest, type ReplyScript, type ScriptedServerOptions } from '../helpers/scripted-server.js';
import { makeCert, startTestNode } from '../helpers/node.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { SmtpTransport } from '../../src/delivery/smtp-transport.js';
import type { Destination } from '../../src/delivery/types.js';

/** The EHLO of an Exchange Server 2019 frontend receive connector, with Exchange Online's SMTPUTF8. */
const EXCHANGE_EHLO = ['SIZE 37748736', 'PIPELINING', 'DSN', 'ENHANCEDSTATUSCODES', 'STARTTLS', 'X-ANONYMOUSTLS', 'AUTH NTLM', 'X-EXPS GSSAPI NTLM', '8BITMIME', 'BINARYMIME', 'CHUNKING', 'XEXCH50', 'XRDST', 'XSHADOWREQUEST', 'SMTPUTF8'];
const GREETING = '220 EX01.corp.example Microsoft ESMTP MAIL Service ready at Mon, 7 Dec 2026 13:00:00 +0000';

const TIMEOUTS = { connectMs: 2000, greetingMs: 3000, commandMs: 3000, dataInitMs: 3000, dataBlockMs: 3000, finalMs: 5000, tlsMs: 3000 };

function exchange(t: TestContext, reply?: ReplyScript, extra: ScriptedServerOptions = {}) {
  // A 250 to EHLO names the client as Exchange does ("Hello [ip]").
  return startScriptedServer(t, { greeting: GREETING, capabilities: EXCHANGE_EHLO, tls: makeCert(t), ...(reply ? { reply } : {}), ...extra });
}

function dest(port: number, tlsPolicy: 'opportunistic' | 'none' = 'opportunistic'): Destination {
  return { kind: 'smtp', key: `smtp:127.0.0.1:${port}`, hosts: [{ host: '127.0.0.1', port }], tlsPolicy };
}

function transport(t: TestContext): SmtpTransport {
  const tr = new SmtpTransport({ heloName: 'out.postern.test', timeouts: TIMEOUTS });
  t.after(() => tr.close());
  return tr;
}

const BODY = 'From: a@postern.test\r\nTo: x@corp.example\r\nSubject: to Exchange\r\n\r\n.a line with a leading dot\r\n..two\r\n.\r\nend\r\n';

test('exchange dialect: the Exchange EHLO is understood: STARTTLS at TLS 1.2+, MAIL and RCPTs pipelined, the body in one BDAT LAST chunk, byte for byte, no AUTH or Exchange-only verb', async (t) => {
  const ex = await exchange(t);
  const tr = transport(t);
  const res = await tr.deliver(dest(ex.port), deliveryRequest('a@postern.test', ['x@corp.example', 'y@corp.example'], BODY));
  assert.deepEqual(res.map((r) => [r.kind, r.reply.code, r.reply.command]), [
    ['delivered', 250, 'BDAT'],
    ['delivered', 250, 'BDAT'],
  ]);
  const s = ex.sessions[0]!;
  assert.equal(s.tls, true);
  assert.ok(s.tlsProtocol === 'TLSv1.2' || s.tlsProtocol === 'TLSv1.3', String(s.tlsProtocol));
  const verbs = s.commands.map((c) => c.split(/[ :]/)[0]!.toUpperCase());
  assert.deepEqual(verbs, ['EHLO', 'STARTTLS', 'EHLO', 'MAIL', 'RCPT', 'RCPT', 'BDAT']);
  assert.equal(s.commands.at(-1), `BDAT ${Buffer.byteLength(BODY)} LAST`);
  // SIZE, DSN and SMTPUTF8-free: MAIL carries SIZE only (the message is 7-bit).
  assert.equal(s.commands[3], `MAIL FROM:<a@postern.test> SIZE=${Buffer.byteLength(BODY)}`);
  assert.ok(s.batches.some((b) => b.length === 3 && b[0]!.startsWith('MAIL')), `MAIL and both RCPTs in one write: ${JSON.stringify(s.batches)}`);
  const [m] = ex.messages();
  assert.deepEqual(m!.chunks, [Buffer.byteLength(BODY)]);
  assert.equal(m!.raw.toString('latin1'), BODY, 'BDAT carries the bytes as they are: no dot-stuffing');
});

test('exchange dialect: an 8-bit message goes with BODY=8BITMIME in BDAT; a shaping rule chunking=false keeps DATA', async (t) => {
  const ex = await exchange(t);
  const tr = transport(t);
  const body = 'Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n.\r\n';
  const res = await tr.deliver(dest(ex.port, 'none'), deliveryRequest('a@postern.test', ['x@corp.example'], Buffer.from(body, 'latin1'), { bodyType: '8BITMIME' }));
  assert.deepEqual(res.map((r) => r.kind), ['delivered']);
  assert.match(ex.sessions[0]!.commands.find((c) => c.startsWith('MAIL'))!, / BODY=8BITMIME$/);
  assert.equal(ex.messages()[0]!.raw.toString('latin1'), body);
  const noChunking: Destination = { ...dest(ex.port, 'none'), key: `smtp:127.0.0.1:${ex.port}~nochunk`, shape: { site: 'exchange', source: 'default', chunking: false } } as Destination;
  const res2 = await tr.deliver(noChunking, deliveryRequest('a@postern.test', ['x@corp.example'], BODY));
  assert.deepEqual(res2.map((r) => [r.kind, r.reply.command]), [['delivered', 'END-OF-DATA']]);
  assert.ok(ex.sessions[1]!.commands.includes('DATA'));
  assert.equal(ex.messages()[1]!.chunks, undefined);
  assert.equal(ex.messages()[1]!.body.toString('latin1'), BODY);
});

/** Exchange's recipient limit per message (default 5,000 on premises; 2 here). */
function recipientLimit(limit: number): ReplyScript {
  return (cmd, s) => (/^RCPT /i.test(cmd) && s.current !== null && s.current.rcptTo.length >= limit ? '452 4.5.3 Too many recipients' : undefined);
}

test('exchange dialect: past the recipient limit (452 4.5.3) the other recipients go in further transactions on the same connection, none deferred or failed', async (t) => {
  const ex = await exchange(t, recipientLimit(2));
  const tr = transport(t);
  const rcpts = ['r1', 'r2', 'r3', 'r4', 'r5'].map((l) => `${l}@corp.example`);
  const res = await tr.deliver(dest(ex.port, 'none'), deliveryRequest('a@postern.test', rcpts, BODY));
  assert.deepEqual(res.map((r) => [r.address, r.kind]), rcpts.map((a) => [a, 'delivered']));
  assert.equal(ex.sessions.length, 1, 'one connection');
  assert.deepEqual(ex.messages().map((m) => m.accepted.length), [2, 2, 1]);
  assert.deepEqual(ex.messages().flatMap((m) => m.accepted.map((l) => /<(.*)>/.exec(l)![1])), rcpts);
  for (const m of ex.messages()) assert.equal(m.raw.toString('latin1'), BODY);
});

test('exchange dialect: a 452 4.5.3 for every recipient, or a 452 4.2.2 (mailbox full), is a deferral, not a loop', async (t) => {
  let rcpts = 0;
  const ex = await exchange(t, (cmd) => {
    if (!/^RCPT /i.test(cmd)) return undefined;
    rcpts++;
    return /full/.test(cmd) ? '452 4.2.2 Mailbox full' : '452 4.5.3 Too many recipients';
  });
  const tr = transport(t);
  const res = await tr.deliver(dest(ex.port, 'none'), deliveryRequest('a@postern.test', ['a@corp.example', 'b@corp.example'], BODY));
  assert.deepEqual(res.map((r) => [r.kind, r.reply.code, r.reply.enhanced]), [['deferred', 452, '4.5.3'], ['deferred', 452, '4.5.3']]);
  assert.equal(rcpts, 2, 'one transaction');
  rcpts = 0;
  const ex2 = await exchange(t, (cmd) => (/^RCPT TO:<full/i.test(cmd) ? '452 4.2.2 Mailbox full' : undefined));
  const res2 = await tr.deliver(dest(ex2.port, 'none'), deliveryRequest('a@postern.test', ['ok@corp.example', 'full@corp.example'], BODY));
  assert.deepEqual(res2.map((r) => r.kind), ['delivered', 'deferred']);
  assert.equal(res2[1]!.reply.enhanced, '4.2.2');
  assert.equal(ex2.messages().length, 1, 'a full mailbox is not retried at once');
});

test('exchange dialect: 421 under load (at the greeting, at MAIL, after the data) defers every recipient and bounces none', async (t) => {
  const tr = transport(t);
  const cases: Array<[string, ScriptedServerOptions]> = [
    ['greeting 421 4.3.2', { greeting: '421 4.3.2 The maximum number of concurrent server connections has exceeded a limit, closing transmission channel' }],
    ['MAIL 421 4.4.2', { reply: (cmd) => (/^MAIL /i.test(cmd) ? { cut: true } : undefined), greeting: GREETING }],
    ['BDAT 421 4.7.0', { reply: (cmd) => (/^BDAT /i.test(cmd) ? '421 4.7.0 Temporary server error. Please try again later. PRX4' : undefined) }],
    ['RCPT 421 4.7.66', { reply: (cmd) => (/^RCPT /i.test(cmd) ? '421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2' : undefined) }],
  ];
  for (const [name, o] of cases) {
    const ex = await exchange(t, undefined, o);
    const res = await tr.deliver(dest(ex.port, 'none'), deliveryRequest('a@postern.test', ['x@corp.example', 'y@corp.example'], BODY));
    assert.deepEqual(res.map((r) => [r.kind, r.reply.transient]), [['deferred', true], ['deferred', true]], `${name}: ${JSON.stringify(res)}`);
    if (name !== 'MAIL 421 4.4.2') assert.equal(res[0]!.reply.code, 421, name);
  }
});

test('exchange dialect: through a node: 421 4.7.0 then the recipient limit: the message is deferred without a bounce, then every recipient delivered', async (t) => {
  let refusals = 2;
  const limit = recipientLimit(2);
  const ex = await exchange(t, (cmd, s) => {
    if (/^EHLO /i.test(cmd) && refusals > 0) {
      refusals--;
      return '421 4.7.0 Too many connections, try again later';
    }
    return limit(cmd, s);
  });
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `corp.example=smtp:127.0.0.1:${ex.port}/tls=opportunistic`, POSTERN_RETRY_SCHEDULE: '300ms', POSTERN_HOSTNAME: 'out.postern.test' }, { delivery: { pollIntervalMs: 50 } });
  const senders = new Set<string>();
  const rcpts = ['a', 'b', 'c'].map((l) => `${l}@corp.example`);
  await sendMessage(node.ports.smtpPort, 'me@postern.test', rcpts, 'Subject: load\n\nbody\n', 'client.test');
  await waitFor('delivery after the 421s', () => {
    for (const m of node.queue.list()) senders.add(m.sender);
    return ex.messages().length === 2 && node.queue.counts().total === 0;
  }, 20_000);
  assert.deepEqual([...senders], ['me@postern.test'], 'no bounce (null-sender message) was ever queued');
  assert.deepEqual(ex.messages().map((m) => m.accepted.length), [2, 1]);
  assert.equal(node.delivery!.counters.delivered, 3);
});
