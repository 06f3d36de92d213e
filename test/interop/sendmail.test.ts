// postern and a real Sendmail 8.17 (unpacked by scripts/unpack-mta.sh, test/helpers/sendmail.ts)
// in both directions on loopback: postern delivers to Sendmail in plain SMTP (PIPELINING seen on
// the wire through a recording relay, 8BITMIME) and over STARTTLS, Sendmail relays into postern
// (smart host, STARTTLS) which delivers into a Maildir route, and a permanent failure on either
// side comes back as a DSN the other side accepts, read as RFC 3464 by an independent parser
// (postal-mime). Sendmail stores mail in mbox files (aliases to files), in LF; bodies are
// compared byte for byte apart from the "From " line and the trace fields.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { sendmailSkip, startSendmail, type SendmailInstance } from '../helpers/sendmail.js';
import { readDsn } from '../helpers/mail-text.js';
import { makeCert, startTestNode } from '../helpers/node.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { startRecordingProxy } from '../helpers/recording-proxy.js';
import { waitFor } from '../helpers/wait-for.js';
import { startPostTestMailbox } from '../helpers/post-test-mailbox.js';
import { EIGHT_BIT, assertMailboxes as assertCopies, deliverToPeer, messageMaker, relayIntoMaildir, sendNeedingSmtputf8, toPeer } from '../helpers/peer-mta.js';

const skip = sendmailSkip();

const msg = messageMaker('sendmail', 'ps');

const TO_SENDMAIL = toPeer(msg, 'sendmail.test');

/** Each mailbox holds exactly its messages, byte for byte apart from trace fields, each from sender@post.test. */
function assertMailboxes(sm: SendmailInstance): void {
  assertCopies(sm, TO_SENDMAIL);
  for (const box of ['alice', 'bob', 'carol']) {
    for (const m of sm.mailbox(box)) assert.match(m, /^Return-Path: <sender@post\.test>\n/);
  }
}

test('sendmail: postern delivers to Sendmail in plain SMTP with PIPELINING and 8BITMIME: every copy arrives byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const sm = await startSendmail(t);
  const wire = await startRecordingProxy(t, sm.port);
  const node = await deliverToPeer(t, { peer: sm, port: wire.port, domain: 'sendmail.test', list: TO_SENDMAIL, what: 'the copies in Sendmail\'s mbox files', diag: sm.stderr });
  await waitFor('postern\'s queue empty', () => node.queue.counts().total === 0);
  assertMailboxes(sm);
  for (const m of sm.mailbox('alice')) {
    assert.match(m, /^Received: from mx\.postern\.interop \(localhost \[127\.0\.0\.1\]\)\n\tby sendmail\.interop\.test \(8\.17\.[\d.]+\/8\.17\.[\d.]+\) with ESMTP id /m, 'Sendmail names postern, in plain SMTP');
  }
  // What postern wrote, per read on Sendmail's side: MAIL, RCPT… and DATA together in one read
  // (pipelined, RFC 2920), the 8-bit message declared BODY=8BITMIME.
  const reads = wire.reads();
  const transactions = reads.filter((r) => r.startsWith('MAIL FROM:'));
  assert.equal(transactions.length, 3, reads.join('|'));
  for (const r of transactions) assert.match(r, /^MAIL FROM:<sender@post\.test>[^\r]*\r\n(RCPT TO:<[^>]+@sendmail\.test>[^\r]*\r\n)+DATA\r\n$/, `pipelined: ${JSON.stringify(r)}`);
  assert.equal(transactions.filter((r) => / BODY=8BITMIME/.test(r)).length, 1, 'only the 8-bit message declares BODY=8BITMIME');
  assert.ok(!reads.some((r) => /^STARTTLS/m.test(r)), 'Sendmail without a certificate offers no STARTTLS');
});

test('sendmail: postern delivers to Sendmail over STARTTLS: every copy arrives byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const sm = await startSendmail(t, { tls: makeCert(t) });
  const node = await deliverToPeer(t, { peer: sm, port: sm.port, domain: 'sendmail.test', routeSuffix: '/tls=opportunistic', list: TO_SENDMAIL, what: 'the copies in Sendmail\'s mbox files', diag: sm.stderr });
  await waitFor('postern\'s queue empty', () => node.queue.counts().total === 0);
  assertMailboxes(sm);
  for (const box of ['alice', 'bob', 'carol']) {
    for (const m of sm.mailbox(box)) {
      // Sendmail's trace field names the TLS version it negotiated with postern; postern does
      // not present a client certificate (verify=NO).
      assert.match(m, /^Received: from mx\.postern\.interop \(localhost \[127\.0\.0\.1\]\)\n\tby sendmail\.interop\.test \([^)]*\) with ESMTPS id \S+\n\t\(version=TLSv1\.[23] cipher=\S+ bits=\d+ verify=NO\)[;\n]/m, m.slice(0, 400));
    }
  }
});

test('sendmail: Sendmail relays into postern (smart host, STARTTLS), and postern queues and delivers what it sent into a Maildir, byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const { copies } = await relayIntoMaildir(t, { start: (relayPort) => startSendmail(t, { relayPort }), msg, peerName: 'Sendmail', peerDomain: 'sendmail.test', diag: (sm) => sm.stderr() });
  for (const { file: f } of copies) {
    // postern's trace field: Sendmail came over TLS, naming itself by its host name.
    assert.match(f, /^Received: from sendmail\.interop\.test \(\[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.[23] with cipher \S+\)\r\n\tby mx\.postern\.interop \(postern\) with ESMTPS /m, f.slice(0, 400));
    // Sendmail's own trace field is there below postern's.
    assert.match(f, /^Received: from client\.post\.test \(localhost \[127\.0\.0\.1\]\)\r\n\tby sendmail\.interop\.test /m);
  }
});

test('sendmail: a permanent failure on either side comes back as an RFC 3464 DSN that the other side accepts and delivers; a message that needs SMTPUTF8 is never sent to Sendmail, which does not offer it', { skip }, async (t: TestContext) => {
  const { node, meNew } = await startPostTestMailbox(t);
  const sm = await startSendmail(t, { relayPort: node.ports.smtpPort });
  // postern's routes learn Sendmail's port only now: a second node sends to it.
  const sender = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `sendmail.test=smtp:127.0.0.1:${sm.port}`, POSTERN_HOSTNAME: 'out.postern.interop' }, { delivery: { pollIntervalMs: 50 } });

  // 1. postern → Sendmail, unknown mailbox: Sendmail says 550 5.1.1 at RCPT, postern bounces to
  //    the sender, bob@sendmail.test, and Sendmail accepts the bounce from the null sender.
  await sendMessage(sender.ports.smtpPort, 'bob@sendmail.test', ['ghost@sendmail.test'], msg(7, 'ghost@sendmail.test') + 'Will bounce at Sendmail.\n', 'client.test');
  await waitFor('postern\'s DSN in bob\'s mbox', () => sm.mailbox('bob').length === 1, { timeoutMs: 20_000, diag: sm.stderr });
  const d1 = sm.mailbox('bob')[0]!;
  assert.match(d1, /^Return-Path: <>\n/, 'from the null sender');
  const r1 = await readDsn(d1);
  assert.equal(r1.reportType, 'delivery-status');
  assert.match(r1.groups[0]!.get('reporting-mta') ?? '', /^dns; ?out\.postern\.interop$/);
  const rc1 = r1.groups.find((g) => g.has('final-recipient'))!;
  assert.match(rc1.get('final-recipient')!, /^rfc822; ?ghost@sendmail\.test$/i);
  assert.equal(rc1.get('action'), 'failed');
  assert.equal(rc1.get('status'), '5.1.1');
  assert.match(rc1.get('diagnostic-code') ?? '', /^smtp; ?550 5\.1\.1 <ghost@sendmail\.test>\.\.\. User unknown$/);

  // 2. A message that needs SMTPUTF8 (so declared, UTF-8 in a header field): Sendmail (built
  //    without EAI) does not offer it, so postern never sends it there and bounces it, 5.6.7.
  await sendNeedingSmtputf8(sender.ports.smtpPort, 'carol@sendmail.test', 'alice@sendmail.test', `${msg(8, 'alice@sendmail.test', EIGHT_BIT).replace('Subject: postern-sendmail #8', 'Subject: Grüße, SMTPUTF8')}Needs SMTPUTF8.\n`);
  await waitFor('postern\'s 5.6.7 DSN in carol\'s mbox', () => sm.mailbox('carol').length === 1, { timeoutMs: 20_000, diag: sm.stderr });
  assert.equal(sm.mailbox('alice').length, 0, 'nothing reached alice');
  const r2 = await readDsn(sm.mailbox('carol')[0]!);
  const rc2 = r2.groups.find((g) => g.has('final-recipient'))!;
  assert.match(rc2.get('final-recipient')!, /^rfc822; ?alice@sendmail\.test$/i);
  assert.equal(rc2.get('status'), '5.6.7');

  // 3. Sendmail → postern, unknown mailbox: postern says 550 5.1.1 at RCPT, Sendmail bounces to
  //    the sender me@post.test through postern, which accepts the bounce and delivers it.
  await sendMessage(sm.port, 'me@post.test', ['ghost@post.test'], msg(9, 'ghost@post.test') + 'Will bounce at postern.\n', 'client.test');
  await waitFor('Sendmail\'s DSN in me@post.test\'s Maildir', () => meNew().length === 1, { timeoutMs: 20_000, diag: sm.stderr });
  const d3 = meNew()[0]!;
  assert.match(d3, /^Return-Path: <>\r\n/);
  const r3 = await readDsn(d3);
  assert.equal(r3.reportType, 'delivery-status');
  assert.match(r3.groups[0]!.get('reporting-mta') ?? '', /^dns; ?sendmail\.interop\.test$/i);
  const rc3 = r3.groups.find((g) => g.has('final-recipient'))!;
  assert.match(rc3.get('final-recipient')!, /^rfc822; ?ghost@post\.test$/i);
  assert.equal(rc3.get('action'), 'failed');
  assert.equal(rc3.get('status'), '5.1.1');
  // Sendmail writes the diagnostic type in capitals ("SMTP;"), which RFC 3464 allows.
  assert.match(rc3.get('diagnostic-code') ?? '', /^smtp; ?550 5\.1\.1 Recipient address rejected: unknown user$/i);
});
