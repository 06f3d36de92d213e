// postern and a real Cyrus IMAP 3 (unpacked by scripts/unpack-mta.sh, test/helpers/cyrus.ts)
// on loopback: postern's lmtp route delivers into mailboxes the test created as Cyrus's admin,
// and IMAP reads each copy back byte for byte apart from the fields Cyrus prepends
// (Return-Path, Received, X-Cyrus-Session-Id, X-Sieve; Cyrus also adds a Date or Message-ID
// field a message lacks, so every message here has both); an unknown mailbox is Cyrus's
// per-recipient 550 5.1.1 at RCPT, which postern turns into an RFC 3464 DSN (read by
// postal-mime) while the other recipient's copy is delivered once; with POSTERN_RCPT_VERIFY=lmtp
// the same refusal reaches the SMTP client at RCPT instead.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { cyrusSkip, startCyrus, type CyrusInstance } from '../helpers/cyrus.js';
import type { ImapClient } from '../helpers/imap-client.js';
import { readDsn } from '../helpers/mail-text.js';
import { startTestNode } from '../helpers/node.js';
import { RawClient, sendMessage } from '../helpers/smtp-client.js';
import { startScriptedServer } from '../helpers/scripted-server.js';
import { waitFor } from '../helpers/wait-for.js';

const skip = cyrusSkip();
const USERS = { alice: 'alice-pw', bob: 'bob-pw' };

/** The message without the trace fields Cyrus's lmtpd and postern prepend. */
function withoutTrace(text: string): string {
  const lines = text.split('\r\n');
  let i = 0;
  const trace = /^(Return-Path|Received|X-Cyrus-Session-Id|X-Sieve|X-Postern-[A-Za-z-]+):/i;
  while (i < lines.length && trace.test(lines[i]!)) {
    i++;
    while (i < lines.length && /^[ \t]/.test(lines[i]!)) i++;
  }
  return lines.slice(i).join('\r\n');
}

/** The messages of a user's INBOX: flags and the bytes of BODY.PEEK[]. */
async function inbox(cy: CyrusInstance, user: string): Promise<Array<{ flags: string[]; raw: Buffer }>> {
  const c: ImapClient = await cy.login(user);
  try {
    const sel = await c.ok('SELECT INBOX');
    const exists = Number(sel.map((r) => /^\* (\d+) EXISTS$/.exec(r.text)?.[1]).find((n) => n !== undefined) ?? 0);
    if (exists === 0) return [];
    return (await c.ok('FETCH 1:* (FLAGS BODY.PEEK[])')).map((r) => ({ flags: (/FLAGS \(([^)]*)\)/.exec(r.text)?.[1] ?? '').split(' ').filter((f) => f !== '').sort(), raw: r.literals[0]! }));
  } finally {
    await c.logout();
  }
}

async function setup(t: TestContext, env: Record<string, string> = {}): Promise<{ cy: CyrusInstance; node: Awaited<ReturnType<typeof startTestNode>>; peer: Awaited<ReturnType<typeof startScriptedServer>> }> {
  const cy = await startCyrus(t, USERS);
  for (const u of Object.keys(USERS)) await cy.createMailbox(u);
  // Bounces to the senders (far.test) go to a scripted SMTP server.
  const peer = await startScriptedServer(t);
  const node = await startTestNode(t, {
    POSTERN_DELIVERY: 'routes',
    POSTERN_ROUTES: `cyrus.test=lmtp:127.0.0.1:${cy.lmtpPort};far.test=smtp:127.0.0.1:${peer.port}`,
    POSTERN_HOSTNAME: 'mx.postern.interop',
    ...env,
  }, { delivery: { pollIntervalMs: 50 } });
  return { cy, node, peer };
}

test('cyrus: postern delivers over LMTP into the mailboxes the test created; IMAP reads each copy back byte for byte, unseen and \\Recent', { skip }, async (t) => {
  const { cy, node } = await setup(t);
  const body = 'From: Sender <sender@far.test>\r\nTo: alice@cyrus.test, bob@cyrus.test\r\nSubject: postern to Cyrus\r\nDate: Mon, 07 Dec 2026 15:00:00 +0000\r\nMessage-ID: <cyrus-1@far.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n.\r\n..two dots\r\n.leading dot\r\nGrüße — 8-bit text.\r\n';
  await sendMessage(node.ports.smtpPort, 'sender@far.test', ['alice@cyrus.test', 'bob@cyrus.test'], body, 'client.far.test');
  await waitFor('postern\'s queue empty', () => node.queue.counts().total === 0, 20_000);
  for (const user of ['alice', 'bob']) {
    const got = await inbox(cy, user);
    assert.equal(got.length, 1, `${user}: ${got.length} messages`);
    assert.deepEqual(got[0]!.flags, ['\\Recent'], user);
    const text = got[0]!.raw.toString('utf8');
    assert.match(text, /^Return-Path: <sender@far\.test>\r\nReceived: from mx\.postern\.interop \(localhost \[127\.0\.0\.1\]\)\r\n\t by cyrus\.interop\.test \(Cyrus [^)]+\) with LMTPA;/, text);
    assert.equal(withoutTrace(text), body, `${user}: the message as sent, apart from the trace fields`);
  }
});

test('cyrus: an unknown mailbox is a per-recipient LMTP refusal: the known recipient gets one copy, postern bounces the other with an RFC 3464 DSN', { skip }, async (t) => {
  const { cy, node, peer } = await setup(t);
  const body = 'From: <sender@far.test>\r\nTo: alice@cyrus.test, ghost@cyrus.test\r\nSubject: half known\r\nDate: Mon, 07 Dec 2026 15:00:01 +0000\r\nMessage-ID: <cyrus-2@far.test>\r\n\r\nOne of two.\r\n';
  await sendMessage(node.ports.smtpPort, 'sender@far.test', ['alice@cyrus.test', 'ghost@cyrus.test'], body, 'client.far.test');
  await waitFor('postern\'s DSN at the sender\'s server', () => peer.messages().length === 1 && node.queue.counts().total === 0, 20_000);
  const got = await inbox(cy, 'alice');
  assert.equal(got.length, 1);
  assert.equal(withoutTrace(got[0]!.raw.toString('utf8')), body);

  const dsn = peer.messages()[0]!;
  assert.match(dsn.mailFrom, /^MAIL FROM:<>/, 'from the null sender');
  assert.deepEqual(dsn.accepted, ['RCPT TO:<sender@far.test>']);
  const r = await readDsn(dsn.body);
  assert.equal(r.reportType, 'delivery-status');
  assert.match(r.groups[0]!.get('reporting-mta') ?? '', /^dns; ?mx\.postern\.interop$/);
  const rcpts = r.groups.filter((g) => g.has('final-recipient'));
  assert.equal(rcpts.length, 1, 'only the refused recipient is reported');
  assert.match(rcpts[0]!.get('final-recipient')!, /^rfc822; ?ghost@cyrus\.test$/i);
  assert.equal(rcpts[0]!.get('action'), 'failed');
  assert.equal(rcpts[0]!.get('status'), '5.1.1');
  // Cyrus's reply is three lines ("550-Mailbox unknown. …", "550 5.1.1 User unknown").
  assert.match(rcpts[0]!.get('diagnostic-code') ?? '', /^smtp; ?550 .*Mailbox unknown.*User unknown/i, rcpts[0]!.get('diagnostic-code'));
  assert.match(rcpts[0]!.get('remote-mta') ?? '', /127\.0\.0\.1/);
});

test('cyrus: with POSTERN_RCPT_VERIFY=lmtp postern asks Cyrus at RCPT: an unknown mailbox is refused to the client, a created one accepted', { skip }, async (t) => {
  const { cy, node } = await setup(t, { POSTERN_RCPT_VERIFY: 'lmtp' });
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  await c.cmd('EHLO client.far.test');
  assert.equal((await c.cmd('MAIL FROM:<sender@far.test>')).code, 250);
  const ghost = await c.cmd('RCPT TO:<ghost@cyrus.test>');
  assert.equal(ghost.code, 550, ghost.text);
  assert.match(ghost.text, /^5\.1\.1 /);
  assert.equal((await c.cmd('RCPT TO:<bob@cyrus.test>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  const body = 'From: <sender@far.test>\r\nTo: bob@cyrus.test\r\nSubject: verified\r\nDate: Mon, 07 Dec 2026 15:00:02 +0000\r\nMessage-ID: <cyrus-3@far.test>\r\n\r\nChecked at RCPT.\r\n';
  assert.equal((await c.cmd(`${body}.`, 10_000)).code, 250);
  await waitFor('postern\'s queue empty', () => node.queue.counts().total === 0, 20_000);
  const got = await inbox(cy, 'bob');
  assert.equal(got.length, 1);
  assert.equal(withoutTrace(got[0]!.raw.toString('utf8')), body);
});
