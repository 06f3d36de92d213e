// postern and a real Exim 4 (unpacked by scripts/unpack-mta.sh, test/helpers/exim.ts) in both
// directions on loopback: postern delivers to Exim (STARTTLS, PIPELINING, CHUNKING/BDAT,
// 8BITMIME, SMTPUTF8), Exim relays into postern (with BDAT, which Exim tries when offered, and
// over STARTTLS when its transport requires TLS), and a permanent failure on either side comes
// back as a DSN the other side accepts, read as RFC 3464 by an independent parser
// (postal-mime). Bodies are compared byte for byte apart from the trace fields; Exim stores
// Maildir files with LF line ends, so those are compared in LF.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { eximSkip, startExim } from '../helpers/exim.js';
import { readDsn, withoutTrace } from '../helpers/mail-text.js';
import { makeCert, startTestNode } from '../helpers/node.js';
import { RawClient, sendMessage } from '../helpers/smtp-client.js';
import { startScriptedServer } from '../helpers/scripted-server.js';
import { waitFor } from '../helpers/wait-for.js';
import { startPostTestMailbox } from '../helpers/post-test-mailbox.js';

const skip = eximSkip();

function msg(n: number, to: string, extra = ''): string {
  return `From: <sender${n}@post.test>\nTo: <${to}>\nSubject: postern-exim #${n}\nDate: Mon, 07 Dec 2026 13:00:0${n} +0000\nMessage-ID: <pe${n}@post.test>\nMIME-Version: 1.0\n${extra}\n`;
}

const TO_EXIM = [
  { rcpts: ['alice@exim.test', 'bob@exim.test'], body: msg(1, 'alice@exim.test, bob@exim.test') + 'Two recipients, one transaction.\n' },
  { rcpts: ['carol@exim.test'], body: msg(2, 'carol@exim.test') + '\n.\n..\n.leading dot\nend\n\n' },
  { rcpts: ['alice@exim.test'], body: msg(3, 'alice@exim.test', 'Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n') + 'Grüße — 8-bit text.\n' },
];

async function sendAll(port: number, from: string, list: Array<{ rcpts: string[]; body: string }>): Promise<void> {
  for (const m of list) await sendMessage(port, from, m.rcpts, m.body, 'client.post.test');
}

test('exim: postern delivers to Exim with STARTTLS, PIPELINING, CHUNKING (BDAT) and 8BITMIME: every copy arrives byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const ex = await startExim(t, { tls: makeCert(t) });
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `exim.test=smtp:127.0.0.1:${ex.port}/tls=opportunistic`, POSTERN_HOSTNAME: 'mx.postern.interop' }, { delivery: { pollIntervalMs: 50 } });
  await sendAll(node.ports.smtpPort, 'sender@post.test', TO_EXIM);
  await waitFor('the copies in Exim\'s Maildirs', () => ex.mailbox('alice').length === 2 && ex.mailbox('bob').length === 1 && ex.mailbox('carol').length === 1, 20_000);
  await waitFor('postern\'s queue empty', () => node.queue.counts().total === 0);
  const byBox = { alice: [TO_EXIM[0]!, TO_EXIM[2]!], bob: [TO_EXIM[0]!], carol: [TO_EXIM[1]!] };
  for (const [box, expected] of Object.entries(byBox)) {
    const got = ex.mailbox(box).map(withoutTrace).sort();
    // The files are read as latin1: the expected text as the UTF-8 bytes it was sent as.
    assert.deepEqual(got, expected.map((m) => Buffer.from(m.body, 'utf8').toString('latin1')).sort(), box);
    for (const f of ex.mailbox(box)) {
      assert.match(f, /^Return-path: <sender@post\.test>\n/);
      assert.match(f, /^Received: from \[127\.0\.0\.1\] \(helo=mx\.postern\.interop\)\n\tby exim\.interop\.test with esmtps /m, 'Exim names postern, over TLS');
    }
  }
  // Exim's log of each arrival: TLS (X=), pipelined commands (L), CHUNKING (K).
  const arrivals = ex.mainlog().split('\n').filter((l) => / <= sender@post\.test /.test(l));
  assert.equal(arrivals.length, 3, ex.mainlog());
  for (const l of arrivals) {
    assert.match(l, / P=esmtps /, l);
    assert.match(l, / X=TLS1\.[23]/, l);
    // "L" (Exim 4.96 writes "L."): PIPELINING offered and used; "L.-" would be offered, unused.
    assert.match(l, / L\.? /, `pipelined: ${l}`);
    assert.match(l, / K /, `CHUNKING: ${l}`);
  }
});

test('exim: Exim relays into postern (BDAT, PIPELINING) and postern queues and delivers what it sent, byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const peer = await startScriptedServer(t);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${peer.port}`, POSTERN_HOSTNAME: 'mx.postern.interop' }, { delivery: { pollIntervalMs: 50 } });
  const ex = await startExim(t, { relayPort: node.ports.smtpPort });
  const list = [
    { rcpts: ['x@far.test', 'y@far.test'], body: msg(4, 'x@far.test, y@far.test') + 'Relayed by Exim.\n' },
    { rcpts: ['dots@far.test'], body: msg(5, 'dots@far.test') + '.\n..\n.leading dot\nend\n' },
    { rcpts: ['utf@far.test'], body: msg(6, 'utf@far.test', 'Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n') + 'Grüße — 8-bit.\n' },
  ];
  await sendAll(ex.port, 'sender@exim.test', list);
  await waitFor('the three messages at the final server', () => peer.messages().length === 3 && node.queue.counts().total === 0, 20_000);
  const got = peer.messages().map((m) => withoutTrace(m.body.toString('latin1').replace(/\r\n/g, '\n'))).sort();
  assert.deepEqual(got, list.map((m) => Buffer.from(m.body, 'utf8').toString('latin1')).sort());
  assert.deepEqual(peer.messages().map((m) => m.accepted.length).sort(), [1, 1, 2]);
  for (const m of peer.messages()) assert.match(m.mailFrom, /^MAIL FROM:<sender@exim\.test>/);
  // Exim's log of each delivery to postern: K when it went with CHUNKING.
  // "=>" for the first recipient of a delivery, "->" for the others in the same transaction.
  const out = ex.mainlog().split('\n').filter((l) => / [=-]> \S+@far\.test /.test(l));
  assert.equal(out.length, 4, ex.mainlog());
  for (const l of out) assert.match(l, / K /, `CHUNKING: ${l}`);
});

test('exim: a permanent failure on either side comes back as an RFC 3464 DSN that the other side accepts and delivers', { skip }, async (t: TestContext) => {
  const { node, meNew } = await startPostTestMailbox(t);
  const ex = await startExim(t, { relayPort: node.ports.smtpPort });
  // postern's routes learn Exim's port only now: a second node sends to it.
  const sender = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `exim.test=smtp:127.0.0.1:${ex.port}`, POSTERN_HOSTNAME: 'out.postern.interop' }, { delivery: { pollIntervalMs: 50 } });

  // 1. postern → Exim, unknown mailbox: Exim says 550 5.1.1 at RCPT, postern bounces to the
  //    sender, bob@exim.test, and Exim accepts the bounce from the null sender.
  await sendMessage(sender.ports.smtpPort, 'bob@exim.test', ['nobody@exim.test'], msg(7, 'nobody@exim.test') + 'Will bounce at Exim.\n', 'client.test');
  await waitFor('postern\'s DSN in bob\'s Exim Maildir', () => ex.mailbox('bob').length === 1, 20_000);
  const d1 = ex.mailbox('bob')[0]!;
  assert.match(d1, /^Return-path: <>\n/, 'from the null sender');
  const r1 = await readDsn(d1);
  assert.equal(r1.reportType, 'delivery-status');
  assert.match(r1.groups[0]!.get('reporting-mta') ?? '', /^dns; ?out\.postern\.interop$/);
  const rc1 = r1.groups.find((g) => g.has('final-recipient'))!;
  assert.match(rc1.get('final-recipient')!, /^rfc822; ?nobody@exim\.test$/i);
  assert.equal(rc1.get('action'), 'failed');
  assert.equal(rc1.get('status'), '5.1.1');
  assert.match(rc1.get('diagnostic-code') ?? '', /^smtp; ?550 5\.1\.1 unknown user <nobody@exim\.test>/);
  assert.match(ex.mainlog(), / <= <> .*P=esmtp/, 'Exim logged the bounce arriving with the null sender');

  // 2. Exim → postern, unknown mailbox: postern says 550 5.1.1 at RCPT, Exim bounces to the
  //    sender me@post.test through postern, which accepts the bounce and delivers it.
  await sendMessage(ex.port, 'me@post.test', ['ghost@post.test'], msg(8, 'ghost@post.test') + 'Will bounce at postern.\n', 'client.test');
  await waitFor('Exim\'s DSN in me@post.test\'s Maildir', () => meNew().length === 1, 20_000);
  const d2 = meNew()[0]!;
  assert.match(d2, /^Return-Path: <>\r\n/);
  const r2 = await readDsn(d2);
  assert.equal(r2.reportType, 'delivery-status');
  assert.match(r2.groups[0]!.get('reporting-mta') ?? '', /^dns; ?exim\.interop\.test$/i);
  const rc2 = r2.groups.find((g) => g.has('final-recipient'))!;
  assert.match(rc2.get('final-recipient')!, /^rfc822; ?ghost@post\.test$/i);
  assert.equal(rc2.get('action'), 'failed');
  // Exim's Status is its own 5.0.0; postern's reply is in the Diagnostic-Code.
  assert.match(rc2.get('status') ?? '', /^5\.\d{1,3}\.\d{1,3}$/);
  assert.match(rc2.get('diagnostic-code') ?? '', /^smtp; ?550 5\.1\.1/);
});

test('exim: Exim relays into postern over STARTTLS when its smtp transport requires TLS (hosts_require_tls): Exim logs X=TLS, postern records ESMTPS', { skip }, async (t: TestContext) => {
  const peer = await startScriptedServer(t);
  const tls = makeCert(t);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${peer.port}`, POSTERN_HOSTNAME: 'mx.postern.interop', POSTERN_TLS_CERT: tls.cert, POSTERN_TLS_KEY: tls.key }, { delivery: { pollIntervalMs: 50 } });
  const ex = await startExim(t, { relayPort: node.ports.smtpPort, relayRequireTls: true });
  const list = [
    { rcpts: ['tls1@far.test'], body: msg(1, 'tls1@far.test') + 'Over TLS to postern.\n' },
    { rcpts: ['tls2@far.test', 'tls3@far.test'], body: msg(2, 'tls2@far.test, tls3@far.test') + '.\n..\nTwo recipients over TLS.\n' },
  ];
  await sendAll(ex.port, 'sender@exim.test', list);
  await waitFor('the two messages at the final server', () => peer.messages().length === 2 && node.queue.counts().total === 0, 20_000);
  const got = peer.messages().map((m) => withoutTrace(m.body.toString('latin1').replace(/\r\n/g, '\n'))).sort();
  assert.deepEqual(got, list.map((m) => m.body).sort());
  // postern's Received field of each: taken from Exim over TLS (RFC 3848 ESMTPS).
  for (const m of peer.messages()) assert.match(m.body.toString('latin1'), /^Received: from exim\.interop\.test \(\[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.[23] with cipher \S+\)\r\n\tby mx\.postern\.interop \(postern\) with ESMTPS /m);
  // Exim's log of each delivery to postern: X=TLS1.2 or 1.3 with the cipher, CHUNKING (K).
  const out = ex.mainlog().split('\n').filter((l) => / [=-]> \S+@far\.test /.test(l));
  assert.equal(out.length, 3, ex.mainlog());
  for (const l of out) {
    assert.match(l, / X=TLS1\.[23]:\S+/, `TLS: ${l}`);
    assert.match(l, / K /, `CHUNKING: ${l}`);
  }
  assert.doesNotMatch(ex.mainlog(), /TLS session: .*failure|== \S+@far\.test/, 'no deferral on the way');
});

test('exim: postern relays a UTF-8 sender and a UTF-8 local part to Exim with SMTPUTF8 (Exim 4.96 is built with I18N), byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const ex = await startExim(t);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `exim.test=smtp:127.0.0.1:${ex.port}`, POSTERN_HOSTNAME: 'mx.postern.interop' }, { delivery: { pollIntervalMs: 50 } });
  const body = 'From: Jörg <jörg@post.test>\nTo: José <josé@exim.test>, alice@exim.test\nSubject: Grüße über SMTPUTF8\nDate: Mon, 07 Dec 2026 13:00:09 +0000\nMessage-ID: <utf8-9@post.test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nÜnïcödé in the header fields and the body (RFC 6532).\n';
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  assert.match((await c.cmd('EHLO client.post.test')).text, /^SMTPUTF8$/m, 'postern offers SMTPUTF8');
  assert.equal((await c.cmd('MAIL FROM:<jörg@post.test> SMTPUTF8')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<josé@exim.test>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<alice@exim.test>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  assert.equal((await c.cmd(body.replace(/\n/g, '\r\n') + '.', 10_000)).code, 250);
  await waitFor('the copies in Exim\'s Maildirs', () => ex.mailbox('josé').length === 1 && ex.mailbox('alice').length === 1, 20_000);
  await waitFor('postern\'s queue empty', () => node.queue.counts().total === 0);
  for (const box of ['josé', 'alice']) {
    const f = ex.mailbox(box)[0]!;
    assert.equal(withoutTrace(f), Buffer.from(body, 'utf8').toString('latin1'), box);
    assert.match(Buffer.from(f, 'latin1').toString('utf8'), /^Return-path: <jörg@post\.test>\n/, `${box}: the UTF-8 sender as given`);
    // Exim's Received names the protocol: UTF8SMTP (RFC 6531 §3.7.3), here without TLS.
    assert.match(f, /^Received: from \[127\.0\.0\.1\] \(helo=mx\.postern\.interop\)\n\tby exim\.interop\.test with utf8esmtp /m, `${box}: received with SMTPUTF8`);
  }
  const arrival = ex.mainlog().split('\n').filter((l) => / <= /.test(l));
  assert.equal(arrival.length, 1, ex.mainlog());
  // The arrival in Exim's log: the UTF-8 sender and recipients, protocol utf8esmtp, BDAT (K).
  assert.match(arrival[0]!, / <= jörg@post\.test .* P=utf8esmtp .*K .* for josé@exim\.test alice@exim\.test$/, arrival[0]);
});
