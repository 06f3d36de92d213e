// postern and a real OpenSMTPD 6.8 (unpacked by scripts/unpack-mta.sh, test/helpers/opensmtpd.ts)
// in both directions on loopback: postern delivers to OpenSMTPD in plain SMTP (8BITMIME; OpenSMTPD
// offers no PIPELINING, and the wire, seen through a recording relay, shows postern waiting for
// every reply) and over STARTTLS, OpenSMTPD relays into postern (`relay host`, STARTTLS) which
// delivers into a Maildir route, and a permanent failure on either side comes back as a DSN the
// other side accepts, read as RFC 3464 by an independent parser (postal-mime). OpenSMTPD stores
// Maildir files with LF line ends; bodies are compared byte for byte apart from trace fields.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { opensmtpdSkip, startOpenSmtpd } from '../helpers/opensmtpd.js';
import { readDsn } from '../helpers/mail-text.js';
import { makeCert, startTestNode } from '../helpers/node.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { startRecordingProxy } from '../helpers/recording-proxy.js';
import { waitFor } from '../helpers/wait-for.js';
import { startPostTestMailbox } from '../helpers/post-test-mailbox.js';
import { EIGHT_BIT, allArrived, assertMailboxes, deliverToPeer, messageMaker, relayIntoMaildir, sendAll, sendNeedingSmtputf8, toPeer } from '../helpers/peer-mta.js';

const skip = opensmtpdSkip();

const msg = messageMaker('opensmtpd', 'po');

const TO_OSD = toPeer(msg, 'osd.test');

test('opensmtpd: postern delivers to OpenSMTPD in plain SMTP with 8BITMIME, not pipelining since it is not offered: every copy arrives byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const osd = await startOpenSmtpd(t);
  const wire = await startRecordingProxy(t, osd.port);
  const node = await deliverToPeer(t, { peer: osd, port: wire.port, domain: 'osd.test', list: TO_OSD, what: 'the copies in OpenSMTPD\'s Maildirs', diag: osd.log });
  await waitFor('postern\'s queue empty', () => node.queue.counts().total === 0);
  assertMailboxes(osd, TO_OSD);
  for (const m of osd.mailbox('alice')) {
    assert.match(m, /^Received: from mx\.postern\.interop \(localhost \[127\.0\.0\.1\]\)\n\tby osd\.interop\.test \(OpenSMTPD\) with ESMTP id [0-9a-f]+[;\n]/m, 'OpenSMTPD names postern, in plain SMTP');
  }
  // OpenSMTPD 6.8 offers no PIPELINING (and refuses commands sent ahead): postern wrote one
  // command per read, each after the reply to the one before; the 8-bit message declared
  // BODY=8BITMIME.
  const reads = wire.reads();
  assert.ok(reads.length > 0);
  const commands = (r: string): number => r.split('\r\n').filter((l) => /^(EHLO |HELO |MAIL FROM:|RCPT TO:|DATA$|RSET$|NOOP$|QUIT$)/.test(l)).length;
  for (const r of reads) assert.ok(commands(r) <= 1, `one command per read: ${JSON.stringify(r)}`);
  const mails = reads.filter((r) => r.startsWith('MAIL FROM:'));
  assert.equal(mails.length, 3, reads.join('|'));
  for (const r of mails) assert.match(r, /^MAIL FROM:<sender@post\.test>[^\r]*\r\n$/);
  assert.equal(mails.filter((r) => / BODY=8BITMIME/.test(r)).length, 1, 'only the 8-bit message declares BODY=8BITMIME');
  assert.equal(reads.filter((r) => r.startsWith('RCPT TO:')).length, 4);
});

test('opensmtpd: OpenSMTPD 6.8 on OpenSSL 3 offers STARTTLS but fails every handshake: postern (opportunistic) retries the same address in clear and delivers; with /tls=required it defers, nothing sent', { skip }, async (t: TestContext) => {
  const osd = await startOpenSmtpd(t, { tls: makeCert(t) });
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `osd.test=smtp:127.0.0.1:${osd.port}`, POSTERN_HOSTNAME: 'mx.postern.interop', POSTERN_HTTP_PORT: '0' }, { delivery: { pollIntervalMs: 50 } });
  await sendAll(node.ports.smtpPort, 'sender@post.test', TO_OSD);
  // Debian 12's OpenSMTPD keeps its private keys in a separate process behind an OpenSSL
  // engine that OpenSSL 3 does not accept: the server's half of the handshake fails with
  // "EVP lib", for any client and key type (OpenSMTPD issues #1171, #1239). postern then
  // connects once more in clear (docs/delivery.md, "When opportunistic TLS fails").
  await waitFor('the copies in OpenSMTPD\'s Maildirs', allArrived(osd), { timeoutMs: 20_000, diag: osd.log });
  await waitFor('postern\'s queue empty', () => node.queue.counts().total === 0);
  assert.match(osd.log(), /smtp disconnected reason="io-error: error:[0-9A-F]+:SSL routines::EVP lib"/);
  assertMailboxes(osd, TO_OSD);
  for (const m of osd.mailbox('alice')) assert.match(m, /by osd\.interop\.test \(OpenSMTPD\) with ESMTP id /, 'in clear');
  const metrics = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  // A failed handshake, retried in clear (connections opened at once each retry), then the host held in clear.
  const retries = Number(/^postern_delivery_tls_fallbacks_total\{kind="retry"\} (\d+)$/m.exec(metrics)?.[1]);
  assert.ok(retries >= 1 && retries <= TO_OSD.length, `retries: ${retries}`);

  // Where TLS is required there is no clear retry: deferred, nothing sent.
  const strict = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `osd.test=smtp:127.0.0.1:${osd.port}/tls=required`, POSTERN_HOSTNAME: 'mx.postern.interop' }, { delivery: { pollIntervalMs: 50 } });
  const id = await sendMessage(strict.ports.smtpPort, 'sender@post.test', TO_OSD[1]!.rcpts, TO_OSD[1]!.body, 'client.post.test');
  await waitFor('a failed TLS handshake recorded by postern', () => /TLS handshake failed/.test(strict.queue.get(id)?.recipients[0]?.lastReply?.text ?? ''), { timeoutMs: 20_000, diag: osd.log });
  const r = strict.queue.get(id)!.recipients[0]!;
  assert.equal(r.state, 'pending', 'deferred, not bounced');
  assert.equal(r.lastReply?.transient, true);
  assert.equal(osd.mailbox('carol').length, 1, 'only the copy sent in clear before');
});

test('opensmtpd: OpenSMTPD relays into postern (relay host, STARTTLS), and postern queues and delivers what it sent into a Maildir, byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const { peer: osd, copies } = await relayIntoMaildir(t, { start: (relayPort) => startOpenSmtpd(t, { relayPort }), msg, peerName: 'OpenSMTPD', peerDomain: 'osd.test', diag: (osd) => osd.log() });
  for (const { file: f } of copies) {
    // postern's trace field: OpenSMTPD came over TLS, naming itself with its `helo`.
    assert.match(f, /^Received: from osd\.interop\.test \(\[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.[23] with cipher \S+\)\r\n\tby mx\.postern\.interop \(postern\) with ESMTPS /m, f.slice(0, 400));
    // OpenSMTPD's own trace field is there below postern's.
    assert.match(f, /^Received: from client\.post\.test \(localhost \[127\.0\.0\.1\]\)\r\n\tby osd\.interop\.test \(OpenSMTPD\) with ESMTP id [0-9a-f]+[;\r]/m);
  }
  await osd.stop();
});

test('opensmtpd: a permanent failure on either side comes back as an RFC 3464 DSN that the other side accepts and delivers; a message that needs SMTPUTF8 is never sent to OpenSMTPD, which does not offer it', { skip }, async (t: TestContext) => {
  const { node, meNew } = await startPostTestMailbox(t);
  const osd = await startOpenSmtpd(t, { relayPort: node.ports.smtpPort });
  // postern's routes learn OpenSMTPD's port only now: a second node sends to it.
  const sender = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `osd.test=smtp:127.0.0.1:${osd.port}`, POSTERN_HOSTNAME: 'out.postern.interop' }, { delivery: { pollIntervalMs: 50 } });

  // 1. postern → OpenSMTPD, unknown mailbox: OpenSMTPD refuses it at RCPT (a reject rule),
  //    postern bounces to the sender, bob@osd.test, and OpenSMTPD accepts the bounce.
  await sendMessage(sender.ports.smtpPort, 'bob@osd.test', ['ghost@osd.test'], msg(7, 'ghost@osd.test') + 'Will bounce at OpenSMTPD.\n', 'client.test');
  await waitFor('postern\'s DSN in bob\'s Maildir', () => osd.mailbox('bob').length === 1, { timeoutMs: 20_000, diag: osd.log });
  const d1 = osd.mailbox('bob')[0]!;
  const r1 = await readDsn(d1);
  assert.equal(r1.reportType, 'delivery-status');
  assert.match(r1.groups[0]!.get('reporting-mta') ?? '', /^dns; ?out\.postern\.interop$/);
  const rc1 = r1.groups.find((g) => g.has('final-recipient'))!;
  assert.match(rc1.get('final-recipient')!, /^rfc822; ?ghost@osd\.test$/i);
  assert.equal(rc1.get('action'), 'failed');
  assert.match(rc1.get('status') ?? '', /^5\.\d{1,3}\.\d{1,3}$/);
  assert.match(rc1.get('diagnostic-code') ?? '', /^smtp; ?550 /);
  assert.match(osd.log(), /smtp (?:message|envelope) .*from=<>/, 'OpenSMTPD took the bounce from the null sender');

  // 2. A message that needs SMTPUTF8 (so declared, UTF-8 in a header field): OpenSMTPD 6.8 does
  //    not offer it, so postern never sends it there and bounces it, 5.6.7.
  await sendNeedingSmtputf8(sender.ports.smtpPort, 'carol@osd.test', 'alice@osd.test', `${msg(8, 'alice@osd.test', EIGHT_BIT).replace('Subject: postern-opensmtpd #8', 'Subject: Grüße, SMTPUTF8')}Needs SMTPUTF8.\n`);
  await waitFor('postern\'s 5.6.7 DSN in carol\'s Maildir', () => osd.mailbox('carol').length === 1, { timeoutMs: 20_000, diag: osd.log });
  assert.equal(osd.mailbox('alice').length, 0, 'nothing reached alice');
  const r2 = await readDsn(osd.mailbox('carol')[0]!);
  const rc2 = r2.groups.find((g) => g.has('final-recipient'))!;
  assert.match(rc2.get('final-recipient')!, /^rfc822; ?alice@osd\.test$/i);
  assert.equal(rc2.get('status'), '5.6.7');

  // 3. OpenSMTPD → postern, unknown mailbox: postern says 550 5.1.1 at RCPT, OpenSMTPD bounces
  //    to the sender me@post.test through postern, which accepts the bounce and delivers it.
  await sendMessage(osd.port, 'me@post.test', ['ghost@post.test'], msg(9, 'ghost@post.test') + 'Will bounce at postern.\n', 'client.test');
  await waitFor('OpenSMTPD\'s DSN in me@post.test\'s Maildir', () => meNew().length === 1, { timeoutMs: 20_000, diag: osd.log });
  const d3 = meNew()[0]!;
  assert.match(d3, /^Return-Path: <>\r\n/);
  // OpenSMTPD 6.8's bounce carries an RFC 3464 message/delivery-status part, but in a
  // multipart/mixed (not the multipart/report of RFC 6522), with its own Status 5.0.0 and
  // postern's reply only in the text part (no Diagnostic-Code).
  const r3 = await readDsn(d3, { anyContainer: true });
  assert.equal(r3.container, 'multipart/mixed');
  assert.match(r3.groups[0]!.get('reporting-mta') ?? '', /^dns; ?osd\.interop\.test$/i);
  const rc3 = r3.groups.find((g) => g.has('final-recipient'))!;
  assert.match(rc3.get('final-recipient')!, /^rfc822; ?ghost@post\.test$/i);
  assert.equal(rc3.get('action'), 'failed');
  assert.match(rc3.get('status') ?? '', /^5\.\d{1,3}\.\d{1,3}$/);
  assert.match(r3.text, /ghost@post\.test: 550 5\.1\.1 Recipient address rejected: unknown user/);
  await osd.stop();
});
