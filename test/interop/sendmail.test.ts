// postern and a real Sendmail 8.17 (unpacked by scripts/unpack-mta.sh, test/helpers/sendmail.ts)
// in both directions on loopback: postern delivers to Sendmail in plain SMTP (PIPELINING seen on
// the wire through a recording relay, 8BITMIME) and over STARTTLS, Sendmail relays into postern
// (smart host, STARTTLS) which delivers into a Maildir route, and a permanent failure on either
// side comes back as a DSN the other side accepts, read as RFC 3464 by an independent parser
// (postal-mime). Sendmail stores mail in mbox files (aliases to files), in LF; bodies are
// compared byte for byte apart from the "From " line and the trace fields.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { sendmailSkip, startSendmail } from '../helpers/sendmail.js';
import { readDsn, withoutTrace } from '../helpers/mail-text.js';
import { makeCert, startTestNode } from '../helpers/node.js';
import { RawClient, sendMessage } from '../helpers/smtp-client.js';
import { startRecordingProxy } from '../helpers/recording-proxy.js';
import { waitFor } from '../helpers/wait-for.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { startPostTestMailbox } from '../helpers/post-test-mailbox.js';

const skip = sendmailSkip();

function msg(n: number, to: string, extra = ''): string {
  const list = to.split(', ').map((a) => `<${a}>`).join(', ');
  return `From: <sender${n}@post.test>\nTo: ${list}\nSubject: postern-sendmail #${n}\nDate: Mon, 07 Dec 2026 13:00:0${n} +0000\nMessage-ID: <ps${n}@post.test>\nMIME-Version: 1.0\n${extra}\n`;
}

const EIGHT_BIT = 'Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n';

const TO_SENDMAIL = [
  { rcpts: ['alice@sendmail.test', 'bob@sendmail.test'], body: msg(1, 'alice@sendmail.test, bob@sendmail.test') + 'Two recipients, one transaction.\n' },
  { rcpts: ['carol@sendmail.test'], body: msg(2, 'carol@sendmail.test') + '\n.\n..\n.leading dot\nend\n\n' },
  { rcpts: ['alice@sendmail.test'], body: msg(3, 'alice@sendmail.test', EIGHT_BIT) + 'Grüße — 8-bit text.\n', params: 'BODY=8BITMIME' },
];

/** The text as stored: the UTF-8 bytes it was sent as, read back as latin1. */
const asStored = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

async function sendAll(port: number, from: string, list: Array<{ rcpts: string[]; body: string; params?: string }>): Promise<void> {
  for (const m of list) await sendMessage(port, from, m.rcpts, m.body, 'client.post.test', m.params);
}

/** Each mailbox holds exactly its messages, byte for byte apart from trace fields. */
function assertMailboxes(sm: Awaited<ReturnType<typeof startSendmail>>): void {
  const byBox = { alice: [TO_SENDMAIL[0]!, TO_SENDMAIL[2]!], bob: [TO_SENDMAIL[0]!], carol: [TO_SENDMAIL[1]!] };
  for (const [box, expected] of Object.entries(byBox)) {
    assert.deepEqual(sm.mailbox(box).map(withoutTrace).sort(), expected.map((m) => asStored(m.body)).sort(), box);
    for (const m of sm.mailbox(box)) assert.match(m, /^Return-Path: <sender@post\.test>\n/);
  }
}

test('sendmail: postern delivers to Sendmail in plain SMTP with PIPELINING and 8BITMIME: every copy arrives byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const sm = await startSendmail(t);
  const wire = await startRecordingProxy(t, sm.port);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `sendmail.test=smtp:127.0.0.1:${wire.port}`, POSTERN_HOSTNAME: 'mx.postern.interop' }, { delivery: { pollIntervalMs: 50 } });
  await sendAll(node.ports.smtpPort, 'sender@post.test', TO_SENDMAIL);
  await waitFor('the copies in Sendmail\'s mbox files', () => sm.mailbox('alice').length === 2 && sm.mailbox('bob').length === 1 && sm.mailbox('carol').length === 1, { timeoutMs: 20_000, diag: sm.stderr });
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
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `sendmail.test=smtp:127.0.0.1:${sm.port}/tls=opportunistic`, POSTERN_HOSTNAME: 'mx.postern.interop' }, { delivery: { pollIntervalMs: 50 } });
  await sendAll(node.ports.smtpPort, 'sender@post.test', TO_SENDMAIL);
  await waitFor('the copies in Sendmail\'s mbox files', () => sm.mailbox('alice').length === 2 && sm.mailbox('bob').length === 1 && sm.mailbox('carol').length === 1, { timeoutMs: 20_000, diag: sm.stderr });
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
  const root = tmpdir(t);
  const cert = makeCert(t);
  const node = await startTestNode(t, {
    POSTERN_DELIVERY: 'routes',
    POSTERN_ROUTES: `far.test=maildir:${join(root, 'mail')}`,
    POSTERN_MAILDIR_CREATE: 'true',
    POSTERN_HOSTNAME: 'mx.postern.interop',
    POSTERN_TLS_CERT: cert.cert,
    POSTERN_TLS_KEY: cert.key,
  }, { delivery: { pollIntervalMs: 50 } });
  mkdirSync(join(root, 'mail'));
  const sm = await startSendmail(t, { relayPort: node.ports.smtpPort });
  const list = [
    { rcpts: ['x@far.test', 'y@far.test'], body: msg(4, 'x@far.test, y@far.test') + 'Relayed by Sendmail.\n' },
    { rcpts: ['dots@far.test'], body: msg(5, 'dots@far.test') + '.\n..\n.leading dot\nend\n' },
    { rcpts: ['utf@far.test'], body: msg(6, 'utf@far.test', EIGHT_BIT) + 'Grüße — 8-bit.\n', params: 'BODY=8BITMIME' },
  ];
  await sendAll(sm.port, 'sender@sendmail.test', list);
  const box = (local: string): string[] => {
    const d = join(root, 'mail', 'far.test', local, 'new');
    return existsSync(d) ? readdirSync(d).sort().map((f) => readFileSync(join(d, f), 'latin1')) : [];
  };
  const locals = ['x', 'y', 'dots', 'utf'];
  await waitFor('the four copies in postern\'s Maildirs', () => locals.every((l) => box(l).length === 1) && node.queue.counts().total === 0, { timeoutMs: 20_000, diag: sm.stderr });
  const expected: Record<string, string> = { x: list[0]!.body, y: list[0]!.body, dots: list[1]!.body, utf: list[2]!.body };
  for (const l of locals) {
    const f = box(l)[0]!;
    assert.match(f, /^Return-Path: <sender@sendmail\.test>\r\n/, l);
    // postern's trace field: Sendmail came over TLS, naming itself by its host name.
    assert.match(f, /^Received: from sendmail\.interop\.test \(\[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.[23] with cipher \S+\)\r\n\tby mx\.postern\.interop \(postern\) with ESMTPS /m, f.slice(0, 400));
    // Sendmail's own trace field is there below postern's.
    assert.match(f, /^Received: from client\.post\.test \(localhost \[127\.0\.0\.1\]\)\r\n\tby sendmail\.interop\.test /m);
    assert.equal(withoutTrace(f.replace(/\r\n/g, '\n')), asStored(expected[l]!), l);
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
  const c = await RawClient.connect(sender.ports.smtpPort);
  try {
    await c.read();
    await c.cmd('EHLO client.test');
    assert.equal((await c.cmd('MAIL FROM:<carol@sendmail.test> SMTPUTF8')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<alice@sendmail.test>')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    const r = await c.cmd(`${msg(8, 'alice@sendmail.test', EIGHT_BIT).replace('Subject: postern-sendmail #8', 'Subject: Grüße, SMTPUTF8').replace(/\n/g, '\r\n')}Needs SMTPUTF8.\r\n.`);
    assert.equal(r.code, 250, r.text);
  } finally {
    c.end();
  }
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
