// postern and a real Courier (courier-mta and courier-imap, unpacked by scripts/unpack-mta.sh,
// test/helpers/courier.ts) on loopback: postern delivers to Courier (plain with PIPELINING,
// 8BITMIME and SMTPUTF8 seen on the wire; STARTTLS), Courier relays into postern through its
// smarthost route, a permanent failure on either side comes back as a DSN the other side
// accepts, read as RFC 3464 by an independent parser (postal-mime), and courier-imap serves a
// Maildir postern delivered: LOGIN, SELECT, FETCH byte for byte, flags, folders. Courier stores
// Maildir files with LF line ends, so its files are compared in LF.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { courierSkip, startCourier } from '../helpers/courier.js';
import { ImapClient } from '../helpers/imap-client.js';
import { readDsn, withoutTrace } from '../helpers/mail-text.js';
import { startRecordingProxy } from '../helpers/recording-proxy.js';
import { makeCert, startTestNode, writeFile } from '../helpers/node.js';
import { RawClient, sendMessage } from '../helpers/smtp-client.js';
import { startScriptedServer } from '../helpers/scripted-server.js';
import { waitFor } from '../helpers/wait-for.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { startPostTestMailbox } from '../helpers/post-test-mailbox.js';

const skip = courierSkip();

function msg(n: number, to: string, extra = '', from = `sender${n}@post.test`): string {
  return `From: <${from}>\nTo: <${to}>\nSubject: postern-courier #${n}\nDate: Mon, 07 Dec 2026 13:00:0${n} +0000\nMessage-ID: <pc${n}@post.test>\nMIME-Version: 1.0\n${extra}\n`;
}

const UTF8 = 'Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n';

/** One message in its own session with MAIL parameters (sendMessage sends none). */
async function sendWith(port: number, from: string, rcpts: string[], body: string, params: string): Promise<void> {
  const c = await RawClient.connect(port);
  try {
    await c.read();
    await c.cmd('EHLO client.post.test');
    for (const [cmd, code] of [[`MAIL FROM:<${from}> ${params}`, 250], ...rcpts.map((r) => [`RCPT TO:<${r}>`, 250] as const), ['DATA', 354]] as const) {
      const r = await c.cmd(cmd);
      assert.equal(r.code, code, `${cmd}: ${r.code} ${r.text}`);
    }
    const r = await c.cmd(body.replace(/^\./gm, '..').replace(/\n/g, '\r\n') + '.', 10_000);
    assert.equal(r.code, 250, r.text);
  } finally {
    c.end();
  }
}

/** Expected Maildir text: the UTF-8 bytes as sent, read as latin1 like the files. */
const asFile = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

const TO_COURIER = [
  { rcpts: ['alice@courier.test', 'bob@courier.test'], body: msg(1, 'alice@courier.test, bob@courier.test') + 'Two recipients, one transaction.\n' },
  { rcpts: ['carol@courier.test'], body: msg(2, 'carol@courier.test') + '\n.\n..\n.leading dot\nend\n\n' },
  { rcpts: ['alice@courier.test'], body: msg(3, 'alice@courier.test', UTF8) + 'Grüße — 8-bit text.\n' },
];
const UTF8_SENDER = 'jörg@post.test';
const TO_COURIER_UTF8 = { rcpt: 'bob@courier.test', body: msg(4, 'bob@courier.test', UTF8, UTF8_SENDER) + 'Ein Absender in UTF-8 (SMTPUTF8).\n' };

test('courier: postern delivers to Courier in plain text with PIPELINING, 8BITMIME and SMTPUTF8 (seen on the wire): every copy arrives byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const co = await startCourier(t);
  const wire = await startRecordingProxy(t, co.port);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `courier.test=smtp:127.0.0.1:${wire.port}/tls=none`, POSTERN_HOSTNAME: 'mx.postern.interop' }, { delivery: { pollIntervalMs: 50 } });
  for (const m of TO_COURIER) await sendWith(node.ports.smtpPort, 'sender@post.test', m.rcpts, m.body, m.body.includes('8bit') ? 'BODY=8BITMIME' : '');
  await sendWith(node.ports.smtpPort, UTF8_SENDER, [TO_COURIER_UTF8.rcpt], TO_COURIER_UTF8.body, 'SMTPUTF8 BODY=8BITMIME');
  await waitFor('the copies in Courier\'s Maildirs', () => co.mailbox('alice').length === 2 && co.mailbox('bob').length === 2 && co.mailbox('carol').length === 1, 20_000);
  await waitFor('postern\'s queue empty', () => node.queue.counts().total === 0);
  const byBox = { alice: [TO_COURIER[0]!.body, TO_COURIER[2]!.body], bob: [TO_COURIER[0]!.body, TO_COURIER_UTF8.body], carol: [TO_COURIER[1]!.body] };
  for (const [box, expected] of Object.entries(byBox)) {
    assert.deepEqual(co.mailbox(box).map(withoutTrace).sort(), expected.map(asFile).sort(), box);
    for (const f of co.mailbox(box)) {
      assert.match(f, /^Delivered-To: \w+@courier\.test\nReturn-Path: <[^>]+>\nReceived: from mx\.postern\.interop \(\[(::ffff:)?127\.0\.0\.1\]\)\n  by courier\.interop\.test with \w*SMTP\n/, f.slice(0, 300));
    }
  }
  assert.ok(co.mailbox('bob').some((f) => f.includes(`Return-Path: <${asFile(UTF8_SENDER)}>`)), 'the UTF-8 envelope sender kept');
  // What postern wrote: MAIL, the RCPTs and DATA in one write (PIPELINING), BODY=8BITMIME for
  // the 8-bit message, SMTPUTF8 for the UTF-8 sender.
  const sent = wire.reads().map((r) => Buffer.from(r, 'latin1').toString('utf8'));
  const batch = sent.find((c) => c.startsWith('MAIL FROM:<sender@post.test>') && c.includes('RCPT TO:<bob@courier.test>'));
  assert.ok(batch, `MAIL and RCPTs pipelined: ${JSON.stringify(sent)}`);
  assert.match(batch, /^MAIL FROM:<sender@post\.test>[^\r]*\r\nRCPT TO:<alice@courier\.test>\r\nRCPT TO:<bob@courier\.test>\r\nDATA\r\n$/);
  assert.ok(sent.some((c) => /^MAIL FROM:<sender@post\.test>.* BODY=8BITMIME/.test(c) && c.includes('RCPT TO:<alice@courier.test>\r\nDATA')), `BODY=8BITMIME: ${JSON.stringify(sent)}`);
  assert.ok(sent.some((c) => c.startsWith(`MAIL FROM:<${UTF8_SENDER}>`) && / SMTPUTF8/.test(c.split('\r\n')[0]!)), `SMTPUTF8: ${JSON.stringify(sent)}`);
  assert.ok(!sent.some((c) => c.startsWith('STARTTLS')), 'no STARTTLS on a /tls=none route');
});

test('courier: postern delivers to Courier over STARTTLS (TLS 1.3 in Courier\'s Received field), byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const co = await startCourier(t, { tls: makeCert(t) });
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `courier.test=smtp:127.0.0.1:${co.port}/tls=opportunistic`, POSTERN_HOSTNAME: 'mx.postern.interop' }, { delivery: { pollIntervalMs: 50 } });
  for (const m of TO_COURIER) await sendMessage(node.ports.smtpPort, 'sender@post.test', m.rcpts, m.body, 'client.post.test');
  await waitFor('the copies in Courier\'s Maildirs', () => co.mailbox('alice').length === 2 && co.mailbox('bob').length === 1 && co.mailbox('carol').length === 1, 20_000).catch((e: Error) => {
    throw new Error(`${e.message}\n${co.log()}\n${JSON.stringify(node.queue.counts())}`);
  });
  await waitFor('postern\'s queue empty', () => node.queue.counts().total === 0);
  assert.deepEqual(co.mailbox('alice').map(withoutTrace).sort(), [TO_COURIER[0]!.body, TO_COURIER[2]!.body].map(asFile).sort());
  assert.deepEqual(co.mailbox('carol').map(withoutTrace), [asFile(TO_COURIER[1]!.body)]);
  for (const f of [...co.mailbox('alice'), ...co.mailbox('bob'), ...co.mailbox('carol')]) {
    assert.match(f, /\nReceived: from mx\.postern\.interop \(\[(::ffff:)?127\.0\.0\.1\]\)\n  \(TLS: TLS1\.3,\d+bits,[\w-]+\)\n  by courier\.interop\.test with ESMTPS\n/, f.slice(0, 400));
  }
});

test('courier: Courier relays into postern (smarthost) and postern queues and delivers what it sent, byte for byte apart from trace fields', { skip }, async (t: TestContext) => {
  const peer = await startScriptedServer(t);
  const cert = makeCert(t);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${peer.port}`, POSTERN_HOSTNAME: 'mx.postern.interop', POSTERN_TLS_CERT: cert.cert, POSTERN_TLS_KEY: cert.key }, { delivery: { pollIntervalMs: 50 } });
  const co = await startCourier(t, { relayPort: node.ports.smtpPort });
  const list = [
    { rcpts: ['x@far.test', 'y@far.test'], body: msg(5, 'x@far.test, y@far.test') + 'Relayed by Courier.\n' },
    { rcpts: ['dots@far.test'], body: msg(6, 'dots@far.test') + '.\n..\n.leading dot\nend\n' },
    { rcpts: ['utf@far.test'], body: msg(7, 'utf@far.test', UTF8) + 'Grüße — 8-bit.\n' },
  ];
  for (const m of list) await sendMessage(co.port, 'sender@courier.test', m.rcpts, m.body, 'client.test');
  await waitFor('the three messages at the final server', () => peer.messages().length === 3 && node.queue.counts().total === 0, 30_000);
  const got = peer.messages().map((m) => withoutTrace(m.body.toString('latin1').replace(/\r\n/g, '\n'))).sort();
  // Courier's esmtp output module rewrites the address fields of mail it relays into its own
  // form ("<a@b>" → "a@b", lists without spaces), whatever NOADDRREWRITE says (that setting
  // only governs the rewriting on submission); the rest arrives byte for byte.
  const courierForm = (s: string): string => s.replace(/^(From|To): <(.*)>$/gm, (_m, f: string, v: string) => `${f}: ${v.replace(/, /g, ',')}`);
  assert.deepEqual(got, list.map((m) => asFile(courierForm(m.body))).sort());
  for (const m of peer.messages()) assert.match(m.body.toString('latin1'), /^From: sender\d@post\.test\r\n/m, 'the address fields rewritten');
  assert.deepEqual(peer.messages().map((m) => m.accepted.length).sort(), [1, 1, 2]);
  for (const m of peer.messages()) {
    assert.match(m.mailFrom, /^MAIL FROM:<sender@courier\.test>/);
    // Courier took postern's STARTTLS (ESMTP_USE_STARTTLS, on in Debian's courierd) and asks
    // for SMTPUTF8 whenever it is offered, even for an ASCII message.
    assert.match(m.body.toString('latin1'), /^Received: from courier\.interop\.test \(\[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.3 with cipher \w+\)\r\n\tby mx\.postern\.interop \(postern\) with UTF8SMTPS /m);
  }
  // Courier logs each delivery to the smarthost with its reply.
  const done = co.log().split('\n').filter((l) => /courieresmtp: .*addr=<\w+@far\.test>,status: success/.test(l));
  assert.equal(done.length, 4, co.log());
});

test('courier: a permanent failure on either side comes back as an RFC 3464 DSN that the other side accepts and delivers', { skip }, async (t: TestContext) => {
  const { node, meNew } = await startPostTestMailbox(t);
  const co = await startCourier(t, { relayPort: node.ports.smtpPort });
  // postern's routes learn Courier's port only now: a second node sends to it.
  const sender = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `courier.test=smtp:127.0.0.1:${co.port}`, POSTERN_HOSTNAME: 'out.postern.interop' }, { delivery: { pollIntervalMs: 50 } });

  // 1. postern → Courier, unknown mailbox: Courier refuses at RCPT, postern bounces to the
  //    sender, bob@courier.test, and Courier accepts the bounce from the null sender.
  await sendMessage(sender.ports.smtpPort, 'bob@courier.test', ['nobody@courier.test'], msg(8, 'nobody@courier.test') + 'Will bounce at Courier.\n', 'client.test');
  await waitFor('postern\'s DSN in bob\'s Courier Maildir', () => co.mailbox('bob').length === 1, 20_000);
  const d1 = co.mailbox('bob')[0]!;
  assert.match(d1, /\nReturn-Path: <>\n/, 'from the null sender');
  const r1 = await readDsn(d1);
  assert.equal(r1.reportType, 'delivery-status');
  assert.match(r1.groups[0]!.get('reporting-mta') ?? '', /^dns; ?out\.postern\.interop$/);
  const rc1 = r1.groups.find((g) => g.has('final-recipient'))!;
  assert.match(rc1.get('final-recipient')!, /^rfc822; ?nobody@courier\.test$/i);
  assert.equal(rc1.get('action'), 'failed');
  assert.match(rc1.get('status') ?? '', /^5\.\d{1,3}\.\d{1,3}$/);
  assert.match(rc1.get('diagnostic-code') ?? '', /^smtp; ?550 User <nobody> unknown/);

  // 2. Courier → postern, unknown mailbox: postern says 550 5.1.1 at RCPT, Courier bounces to
  //    the sender me@post.test through postern, which accepts the bounce and delivers it.
  await sendMessage(co.port, 'me@post.test', ['ghost@post.test'], msg(9, 'ghost@post.test') + 'Will bounce at postern.\n', 'client.test');
  await waitFor('Courier\'s DSN in me@post.test\'s Maildir', () => meNew().length === 1, 20_000);
  const d2 = meNew()[0]!;
  assert.match(d2, /^Return-Path: <>\r\n/);
  const r2 = await readDsn(d2);
  assert.equal(r2.reportType, 'delivery-status');
  assert.match(r2.groups[0]!.get('reporting-mta') ?? '', /^dns; ?courier\.interop\.test$/i);
  const rc2 = r2.groups.find((g) => g.has('final-recipient'))!;
  assert.match(rc2.get('final-recipient')!, /^rfc822; ?ghost@post\.test$/i);
  assert.equal(rc2.get('action'), 'failed');
  assert.match(rc2.get('status') ?? '', /^5\.\d{1,3}\.\d{1,3}$/);
  assert.match(rc2.get('diagnostic-code') ?? '', /^smtp; ?550 5\.1\.1/);
});

test('courier: courier-imap serves a Maildir postern delivered: LOGIN, SELECT INBOX, FETCH byte for byte, \\Recent then \\Seen, the flag on disk, INBOX the only folder', { skip }, async (t: TestContext) => {
  const root = tmpdir(t);
  const mail = join(root, 'mail');
  mkdirSync(mail);
  const map = writeFile(t, 'recipients', 'pat@post.test\nquinn@post.test\n');
  const env = { POSTERN_DELIVERY: 'routes', POSTERN_LOCAL_DOMAINS: 'post.test', POSTERN_RECIPIENTS: map, POSTERN_ROUTES: `post.test=maildir:${mail}`, POSTERN_HOSTNAME: 'mx.postern.interop' };
  // pat's mail in the Unix form Courier expects; quinn's as postern writes by default (CRLF).
  const lf = await startTestNode(t, { ...env, POSTERN_MAILDIR_LINE_ENDS: 'lf' }, { delivery: { pollIntervalMs: 50 } });
  const crlf = await startTestNode(t, env, { delivery: { pollIntervalMs: 50 } });
  const sent = [
    msg(1, 'pat@post.test', UTF8) + 'Grüße — 8-bit text.\n.\n..\n.leading dot\n',
    msg(2, 'pat@post.test') + 'The second one.\n\n',
  ];
  for (const body of sent) await sendWith(lf.ports.smtpPort, 'sender@post.test', ['pat@post.test'], body, 'BODY=8BITMIME');
  await sendMessage(crlf.ports.smtpPort, 'sender@post.test', ['quinn@post.test'], msg(3, 'quinn@post.test') + 'CRLF on disk.\n', 'client.post.test');
  const box = (u: string, sub: string): string => join(mail, 'post.test', u, sub);
  await waitFor('the three files in postern\'s Maildirs', () => existsSync(box('pat', 'new')) && readdirSync(box('pat', 'new')).length === 2 && existsSync(box('quinn', 'new')) && readdirSync(box('quinn', 'new')).length === 1, 20_000);
  const co = await startCourier(t, {
    imapUsers: [
      { name: 'pat', password: 'pat pass', maildir: join(mail, 'post.test', 'pat') },
      { name: 'quinn', password: 'quinn pass', maildir: join(mail, 'post.test', 'quinn') },
    ],
  });

  const client = await ImapClient.connect(co.imapPort);
  t.after(() => client.close());
  assert.match(client.greeting, /^\* OK /);
  assert.match((await client.command('LOGIN pat "wrong"')).line, /^NO /, 'a wrong password refused');
  assert.match((await client.command('LOGIN pat "pat pass"')).line, /^OK /, co.log());
  const sel = await client.command('SELECT INBOX');
  assert.match(sel.line, /^OK \[READ-WRITE\]/);
  assert.ok(sel.untagged.some((u) => u.text === '* 2 EXISTS'), JSON.stringify(sel.untagged));
  assert.ok(sel.untagged.some((u) => u.text === '* 2 RECENT'), JSON.stringify(sel.untagged));
  const peek = await client.command('FETCH 1:2 (FLAGS BODY.PEEK[])');
  assert.match(peek.line, /^OK /);
  assert.equal(peek.untagged.length, 2);
  const bodies = peek.untagged.map((u) => {
    assert.match(u.text, /^\* \d FETCH \(FLAGS \(\\Recent\) BODY\[\] \{\d+\}\)$/, 'new mail: \\Recent, not \\Seen');
    return u.literals[0]!.toString('latin1');
  });
  for (const b of bodies) {
    // What a client reads: the message as postern received it, CRLF line ends, after the
    // fields postern added (Return-Path, Delivered-To, its Received).
    assert.match(b, /^Return-Path: <sender@post\.test>\r\nDelivered-To: pat@post\.test\r\nReceived: from client\.post\.test /);
    assert.equal(b.replace(/\r\n/g, '').includes('\r') || b.replace(/\r\n/g, '').includes('\n'), false, 'only CRLF line ends');
  }
  // Both arrived within a second: Courier's order of the two is its own.
  assert.deepEqual(bodies.map((b) => withoutTrace(b.replace(/\r\n/g, '\n'))).sort(), sent.map(asFile).sort());
  // Reading the body (not peeking) sets \Seen on the first message only.
  const read = await client.command('FETCH 1 BODY[TEXT]');
  assert.match(read.line, /^OK /);
  const flags = await client.command('FETCH 1:2 (FLAGS)');
  assert.deepEqual(flags.untagged.map((u) => u.text), ['* 1 FETCH (FLAGS (\\Seen \\Recent))', '* 2 FETCH (FLAGS (\\Recent))']);
  const list = await client.command('LIST "" "*"');
  assert.deepEqual(list.untagged.map((u) => u.text.replace(/^\* LIST \([^)]*\) /, '')), ['"." "INBOX"'], 'postern delivers into INBOX only');
  assert.match((await client.command('LOGOUT')).line, /^OK /);
  // On disk: Courier moved both files to cur/ and wrote \Seen as the ":2,S" info.
  await waitFor('the flag in the file name', () => readdirSync(box('pat', 'cur')).some((f) => f.endsWith(':2,S')));
  assert.equal(readdirSync(box('pat', 'new')).length, 0);
  assert.deepEqual(readdirSync(box('pat', 'cur')).map((f) => f.replace(/^.*:2,/, ':2,')).sort(), [':2,', ':2,S']);

  // A CRLF file (postern's default): Courier-IMAP puts a CR before every LF, so the client
  // gets CR CR LF; hence POSTERN_MAILDIR_LINE_ENDS=lf for Courier.
  const b = await ImapClient.connect(co.imapPort);
  t.after(() => b.close());
  assert.match((await b.command('LOGIN quinn "quinn pass"')).line, /^OK /);
  assert.match((await b.command('SELECT INBOX')).line, /^OK /);
  const doubled = (await b.command('FETCH 1 BODY.PEEK[]')).untagged[0]!.literals[0]!.toString('latin1');
  assert.match(doubled, /^Return-Path: <sender@post\.test>\r\r\nDelivered-To: quinn@post\.test\r\r\n/);
  assert.ok(doubled.endsWith('CRLF on disk.\r\r\n'), JSON.stringify(doubled.slice(-40)));
});
