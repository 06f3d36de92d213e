// Interop with a real Postfix (Debian postfix 3.7) in both directions, each on loopback with a
// private instance (test/helpers/postfix.ts):
//   1. postern's SMTP client delivers to Postfix's smtpd; Postfix's virtual(8) agent writes
//      Maildir files, which are compared byte for byte with what was sent. Postfix's refusals
//      (unknown mailbox) and limits (SIZE) turn into postern DSNs that Postfix delivers back.
//   2. Postfix's smtp(8) client relays (relayhost) into postern's smtpd; postern's queue is
//      compared with what was handed to Postfix (over SMTP and through sendmail/pickup).
// Skipped only when Postfix is missing outside CI; .ci/run installs it. Run with
// `npm run test:interop`. Needs root (Postfix's daemons drop privileges to `postfix`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawClient } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { startTestNode } from '../helpers/node.js';
import { postfixSkip, startPostfix } from '../helpers/postfix.js';
import type { PosternNode } from '../../src/main.js';

interface Outgoing {
  from: string;
  rcpts: string[];
  /** LF line ends; sent with CRLF and dot-stuffed. */
  body: string;
  mailParams?: string;
}

/** One SMTP session, one transaction per message; returns the queue ids from the 250 replies. */
async function sendSession(port: number, msgs: Outgoing[]): Promise<string[]> {
  const c = await RawClient.connect(port);
  const ids: string[] = [];
  try {
    assert.equal((await c.read()).code, 220);
    assert.equal((await c.cmd('EHLO client.interop.test')).code, 250);
    for (const m of msgs) {
      const mail = await c.cmd(`MAIL FROM:<${m.from}>${m.mailParams ? ' ' + m.mailParams : ''}`);
      assert.equal(mail.code, 250, mail.text);
      for (const r of m.rcpts) {
        const rr = await c.cmd(`RCPT TO:<${r}>`);
        assert.equal(rr.code, 250, `${r}: ${rr.text}`);
      }
      assert.equal((await c.cmd('DATA')).code, 354);
      const wire = m.body.replace(/\n$/, '').replace(/^\./gm, '..').replace(/\n/g, '\r\n') + '\r\n.';
      const r = await c.cmd(wire, 10_000);
      assert.equal(r.code, 250, r.text);
      ids.push(/queued as (\S+)/.exec(r.text)?.[1] ?? '');
    }
    await c.cmd('QUIT').catch(() => undefined);
  } finally {
    c.end();
  }
  return ids;
}

/** The header block of a message (up to, not including, the blank line), unfolded into fields. */
function headerFields(text: string): string[] {
  const end = text.indexOf('\n\n');
  const block = end < 0 ? text : text.slice(0, end);
  const out: string[] = [];
  for (const line of block.split('\n')) {
    if (/^[ \t]/.test(line) && out.length > 0) out[out.length - 1] += '\n' + line;
    else out.push(line);
  }
  return out;
}

const SUBJECT = (n: number) => `Subject: postern-to-postfix #${n}`;

// Three messages: a plain one; one from the null sender whose body has lines that need
// dot-stuffing (".", "..", ".x"), trailing blanks and an empty last line; an 8-bit one for two
// recipients.
function outgoingToPostfix(): Outgoing[] {
  const head = (n: number, from: string, to: string) =>
    `From: <${from || 'mailer-daemon@src.test'}>\nTo: <${to}>\n${SUBJECT(n)}\nDate: Sat, 28 Nov 2026 12:00:0${n} +0000\nMessage-ID: <msg${n}@src.test>\nMIME-Version: 1.0\n`;
  return [
    {
      from: 'alice@src.test',
      rcpts: ['bob@pf.test'],
      body: head(1, 'alice@src.test', 'bob@pf.test') + 'Content-Type: text/plain; charset=us-ascii\n\nHello Bob,\nthis is plain 7-bit text.\n',
    },
    {
      from: '',
      rcpts: ['carol@pf.test'],
      body:
        head(2, '', 'carol@pf.test') +
        'Content-Type: text/plain; charset=us-ascii\n\n.leading dot\n.\n..\n...three\n. space after dot\nnot a dot.\ntrailing blanks   \n\ttab-indented\n\n',
    },
    {
      from: 'dave@src.test',
      rcpts: ['bob@pf.test', 'erin+tag@pf.test'],
      mailParams: 'BODY=8BITMIME',
      body: head(3, 'dave@src.test', 'bob@pf.test, erin+tag@pf.test') + 'Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße aus Köln — ünïcödé\n.ünicode after a dot\n',
    },
  ];
}

test('postern delivers to a real Postfix over SMTP: bodies byte-exact, envelopes right, queue emptied', { skip: postfixSkip() }, async (t) => {
  const pf = await startPostfix(t, { role: 'receiver', virtualDomain: 'pf.test', mailboxes: ['bob', 'carol', 'erin'] });
  const node: PosternNode = await startTestNode(
    t,
    { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `pf.test=smtp:127.0.0.1:${pf.port}`, POSTERN_HOSTNAME: 'mx.postern.interop' },
    { delivery: { pollIntervalMs: 50 } },
  );
  const msgs = outgoingToPostfix();
  const ids = await sendSession(node.ports.smtpPort, msgs);
  assert.equal(ids.length, 3);
  assert.ok(ids.every((id) => id.length > 0), `queue ids from the 250 replies: ${ids.join(',')}`);

  // bob gets #1 and #3, carol #2, erin #3.
  const expected: Array<{ box: string; rcpt: string; n: number }> = [
    { box: 'bob', rcpt: 'bob@pf.test', n: 1 },
    { box: 'carol', rcpt: 'carol@pf.test', n: 2 },
    { box: 'bob', rcpt: 'bob@pf.test', n: 3 },
    { box: 'erin', rcpt: 'erin+tag@pf.test', n: 3 },
  ];
  const delivered = () => pf.maildir('bob').length + pf.maildir('carol').length + pf.maildir('erin').length;
  const diag = () => `postern queue: ${JSON.stringify(node.queue.list().map((m) => m.recipients))}\npostfix log:\n${pf.log().split('\n').slice(-30).join('\n')}`;
  await waitFor('4 Maildir files from Postfix', () => delivered() >= 4, { timeoutMs: 30_000, intervalMs: 50, diag });
  await waitFor("postern's queue to empty", () => node.queue.counts().total === 0, { timeoutMs: 10_000, intervalMs: 50, diag });
  assert.equal(delivered(), 4, 'exactly one copy per recipient');
  assert.equal(node.delivery!.counters.delivered, 4);

  for (const e of expected) {
    const m = msgs[e.n - 1]!;
    const files = pf.maildir(e.box).map((f) => f.bytes.toString('utf8'));
    const file = files.find((f) => f.includes(`\n${SUBJECT(e.n)}\n`));
    assert.ok(file, `${e.box} has message #${e.n}`);
    // Byte-exact: what Postfix stored is its own added headers, postern's Received header, and
    // then exactly the bytes sent to postern (LF line ends: virtual(8) writes Maildir in UNIX
    // form). In particular dot-stuffing went both ways and the 8-bit text is untouched.
    assert.ok(file.endsWith(m.body), `#${e.n} for ${e.rcpt}: the body arrived byte for byte\n--- got ---\n${file}`);
    const added = headerFields(file.slice(0, file.length - m.body.length) + '\n');
    assert.equal(added.length, 5, `five added header fields (Return-Path, X-Original-To, Delivered-To, Postfix's Received, postern's Received):\n${added.join('\n')}`);
    // The envelope as Postfix saw it.
    assert.equal(added[0], `Return-Path: <${m.from}>`, 'MAIL FROM relayed as given (null sender stays <>)');
    assert.equal(added[1], `X-Original-To: ${e.rcpt}`, 'RCPT TO relayed as given');
    assert.equal(added[2], `Delivered-To: ${e.rcpt}`);
    assert.match(added[3]!, /^Received: from mx\.postern\.interop \(unknown \[127\.0\.0\.1\]\)\n\tby rx\.postfix\.interop \(Postfix\) with ESMTP id \w+/, "postern said EHLO with its hostname; Postfix's trace header");
    // Postfix writes "for <rcpt>" only when the transaction had one recipient: its absence on
    // #3 shows postern sent both pf.test recipients in one transaction.
    if (m.rcpts.length === 1) assert.match(added[3]!, new RegExp(`\\n\\tfor <${e.rcpt.replace(/[+.]/g, '\\$&')}>;`), 'the one recipient');
    else assert.doesNotMatch(added[3]!, /\tfor </, 'several recipients in one transaction');
    const id = ids[e.n - 1]!;
    assert.match(added[4]!, new RegExp(`^Received: from client\\.interop\\.test \\(\\[127\\.0\\.0\\.1\\]\\)[\\s\\S]*by mx\\.postern\\.interop \\(postern\\) with ESMTP id ${id}`), "postern's own trace header");
  }

  // Postfix's side of the story: each message accepted once (one queue id per transaction),
  // #3's two recipients in one transaction, the 8-bit message announced as such.
  const log = pf.log();
  const froms = [...log.matchAll(/: from=<([^>]*)>, size=\d+, nrcpt=(\d+)/g)].map((x) => `${x[1]}:${x[2]}`);
  assert.deepEqual(froms.sort(), [':1', 'alice@src.test:1', 'dave@src.test:2'], `qmgr from= lines:\n${log}`);
  const sent = [...log.matchAll(/: to=<([^>]+)>, relay=virtual, .*status=sent/g)].map((x) => x[1]);
  assert.deepEqual(sent.sort(), ['bob@pf.test', 'bob@pf.test', 'carol@pf.test', 'erin+tag@pf.test']);
  // SMTP sessions postern opened (the helper's own port probe shows up as "lost connection
  // after CONNECT" and is not counted).
  const sessions = (text: string) => (text.match(/smtpd\[\d+\]: connect from /g) ?? []).length - (text.match(/lost connection after CONNECT from /g) ?? []).length;
  const first = sessions(log);
  t.diagnostic(`Postfix saw ${first} SMTP session(s) from postern for the first 3 messages`);
  assert.ok(first >= 1 && first <= 3, `at most one session per message (saw ${first})`);

  // Connection reuse: a 4th message while those sessions are idle in postern's pool goes over
  // one of them (RSET/MAIL on an open session), not over a new connection.
  const fourth: Outgoing = { from: 'alice@src.test', rcpts: ['carol@pf.test'], body: `From: <alice@src.test>\nTo: <carol@pf.test>\n${SUBJECT(4)}\nMessage-ID: <msg4@src.test>\n\nreuse me\n` };
  await sendSession(node.ports.smtpPort, [fourth]);
  await waitFor('message #4 in carol\'s Maildir', () => pf.maildir('carol').some((f) => f.bytes.toString('utf8').endsWith(fourth.body)), { timeoutMs: 20_000, intervalMs: 50, diag });
  await waitFor("postern's queue to empty again", () => node.queue.counts().total === 0, { timeoutMs: 10_000, intervalMs: 50, diag });
  const after = sessions(pf.log());
  t.diagnostic(`after message #4: ${after} session(s)`);
  assert.equal(after, first, `message #4 reused an open session (sessions: ${first} before, ${after} after)\n${pf.log()}`);

  assert.deepEqual(pf.problems(), [], 'no warnings in the Postfix log');
  assert.ok(pf.queueEmpty(), `Postfix's queue drained: ${pf.queueListing()}`);
});

test("Postfix's refusals come back as postern DSNs (550 unknown mailbox; over Postfix's SIZE), which Postfix then delivers", { skip: postfixSkip() }, async (t) => {
  // Postfix knows bob and alice only, and takes at most 20,000 bytes.
  const pf = await startPostfix(t, { role: 'receiver', virtualDomain: 'pf.test', mailboxes: ['alice', 'bob'], overrides: { message_size_limit: '20000' } });
  const node: PosternNode = await startTestNode(
    t,
    { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `pf.test=smtp:127.0.0.1:${pf.port}`, POSTERN_HOSTNAME: 'mx.postern.interop' },
    { delivery: { pollIntervalMs: 50 } },
  );
  const unknown: Outgoing = { from: 'alice@pf.test', rcpts: ['bob@pf.test', 'ghost@pf.test'], body: 'From: <alice@pf.test>\nSubject: to bob and a ghost\nMessage-ID: <ghost@pf.test>\n\nhello\n' };
  const big: Outgoing = { from: 'alice@pf.test', rcpts: ['bob@pf.test'], body: `From: <alice@pf.test>\nSubject: too big for Postfix\nMessage-ID: <big@pf.test>\n\n${'x'.repeat(76).concat('\n').repeat(400)}` };
  const [idUnknown, idBig] = await sendSession(node.ports.smtpPort, [unknown, big]);
  const diag = () => `postern queue: ${JSON.stringify(node.queue.list())}\npostfix log:\n${pf.log().split('\n').slice(-30).join('\n')}`;
  await waitFor('two DSNs in alice\'s Maildir and one message in bob\'s', () => pf.maildir('alice').length >= 2 && pf.maildir('bob').length >= 1, { timeoutMs: 30_000, intervalMs: 50, diag });
  await waitFor("postern's queue to empty", () => node.queue.counts().total === 0, { timeoutMs: 10_000, intervalMs: 50, diag });
  assert.equal(pf.maildir('bob').length, 1, 'bob got the first message only');
  assert.ok(pf.maildir('bob')[0]!.bytes.toString('utf8').endsWith(unknown.body));

  const dsns = pf.maildir('alice').map((f) => f.bytes.toString('utf8'));
  assert.equal(dsns.length, 2);
  const forGhost = dsns.find((d) => d.includes(idUnknown!));
  const forBig = dsns.find((d) => d.includes(idBig!));
  assert.ok(forGhost && forBig, `one DSN per message:\n${dsns.join('\n=====\n')}`);
  for (const d of [forGhost, forBig]) {
    assert.match(d, /^Return-Path: <>\n/, 'a DSN comes from the null sender');
    assert.match(d, /\nDelivered-To: alice@pf\.test\n/);
    assert.match(d, /Content-Type: multipart\/report; report-type=delivery-status/i);
    assert.match(d, /Reporting-MTA: dns; ?mx\.postern\.interop/);
    assert.match(d, /Action: failed/);
  }
  // Postfix's own words for the unknown mailbox, at RCPT: 550 5.1.1.
  assert.match(forGhost, /Final-Recipient: rfc822; ?ghost@pf\.test/i);
  assert.doesNotMatch(forGhost, /Final-Recipient: rfc822; ?bob@pf\.test/i, 'bob was delivered');
  assert.match(forGhost, /Status: 5\.1\.1/);
  assert.match(forGhost, /Diagnostic-Code: smtp; ?550 5\.1\.1 <ghost@pf\.test>: Recipient address rejected/);
  // Too big: postern reads Postfix's EHLO "SIZE 20000" and fails the message itself, 5.3.4,
  // without sending it (RFC 1870 §6), so Postfix never sees a MAIL for it.
  assert.match(forBig, /Final-Recipient: rfc822; ?bob@pf\.test/i);
  assert.match(forBig, /Status: 5\.3\.4/);
  assert.match(forBig, /Diagnostic-Code: X-Postern; message of \d+ bytes exceeds 127\.0\.0\.1's SIZE\n? 20000/);
  const log = pf.log();
  assert.match(log, /: reject: RCPT from unknown\[127\.0\.0\.1\]: 550 5\.1\.1 <ghost@pf\.test>/);
  assert.doesNotMatch(log, /552 5\.3\.4/, 'the big message was never offered to Postfix');
  const froms = [...log.matchAll(/: from=<([^>]*)>, size=\d+, nrcpt=(\d+)/g)].map((x) => `${x[1]}:${x[2]}`);
  assert.deepEqual(froms.sort(), [':1', ':1', 'alice@pf.test:1'], `Postfix queued bob's copy and the two DSNs:\n${log}`);
  assert.equal(node.delivery!.counters.delivered, 3, 'bob and the two DSNs');
});

test('Postfix relays into postern (relayhost): envelopes and bodies intact, Postfix queue drains', { skip: postfixSkip() }, async (t) => {
  const node: PosternNode = await startTestNode(t, { POSTERN_HOSTNAME: 'mx.postern.interop' });
  const pf = await startPostfix(t, { role: 'relay', relayPort: node.ports.smtpPort });

  const head = (n: number, to: string) => `From: <sender${n}@pfsrc.test>\nTo: <${to}>\nSubject: postfix-to-postern #${n}\nDate: Sat, 28 Nov 2026 13:00:0${n} +0000\nMessage-ID: <relay${n}@pfsrc.test>\nMIME-Version: 1.0\n`;
  const viaSmtp: Outgoing[] = [
    { from: 'sender1@pfsrc.test', rcpts: ['x@far.test', 'y@far.test'], body: head(1, 'x@far.test, y@far.test') + '\nTwo recipients, one message.\n' },
    { from: 'sender2@pfsrc.test', rcpts: ['dots@far.test'], body: head(2, 'dots@far.test') + '\n.\n..\n.leading dot\nend\n\n' },
    { from: 'sender3@pfsrc.test', rcpts: ['utf@other.test'], mailParams: 'BODY=8BITMIME', body: head(3, 'utf@other.test') + 'Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße — 8-bit text.\n' },
  ];
  await sendSession(pf.port, viaSmtp);
  // And one local submission: sendmail -C → postdrop → maildrop → pickup → cleanup.
  const local: Outgoing = { from: 'sender4@pfsrc.test', rcpts: ['local@other.test'], body: head(4, 'local@other.test') + '\nSubmitted with sendmail.\n.\nNot the end (-i).\n' };
  const sm = pf.sendmail(local.from, local.rcpts, local.body);
  assert.equal(sm.code, 0, `sendmail -C: ${sm.out}`);
  const all = [...viaSmtp, local];

  const diag = () => `postern queue: ${JSON.stringify(node.queue.list())}\npostqueue -p:\n${pf.queueListing()}\npostfix log:\n${pf.log().split('\n').slice(-30).join('\n')}`;
  let flushed = false;
  await waitFor(
    'the 4 messages in postern and an empty Postfix queue',
    () => {
      if (node.queue.counts().total >= 4 && pf.queueEmpty()) return true;
      // pickup is woken by postdrop, but should anything sit deferred, ask for a run once.
      if (!flushed && pf.queueListing().includes('deferred')) {
        flushed = true;
        pf.flush();
      }
      return false;
    },
    { timeoutMs: 30_000, intervalMs: 50, diag },
  );
  assert.equal(node.queue.counts().total, 4, diag());

  const records = node.queue.list();
  for (const [i, m] of all.entries()) {
    const n = i + 1;
    const rec = records.find((r) => node.queue.withBody(r.id, (b) => b.toString('utf8')).includes(`\r\nSubject: postfix-to-postern #${n}\r\n`));
    assert.ok(rec, `message #${n} is in postern's queue`);
    assert.equal(rec.sender, m.from, `#${n}: MAIL FROM`);
    assert.deepEqual(rec.recipients.map((r) => r.address).sort(), [...m.rcpts].sort(), `#${n}: RCPT TO, one transaction for all of them`);
    assert.equal(rec.client?.helo, 'relay.postfix.interop', `#${n}: Postfix's EHLO name`);
    if (m.mailParams === 'BODY=8BITMIME') assert.equal(rec.bodyType, '8BITMIME', `#${n}: Postfix passed BODY=8BITMIME on`);
    const body = node.queue.withBody(rec.id, (b) => b.toString('utf8'));
    const sent = m.body.replace(/\n/g, '\r\n');
    assert.ok(body.endsWith(sent), `#${n}: body byte for byte (CRLF on the wire, dots unstuffed)\n--- got ---\n${body}`);
    const added = headerFields(body.slice(0, body.length - sent.length).replace(/\r\n/g, '\n') + '\n');
    assert.equal(added.length, 2, `#${n}: only postern's and Postfix's Received were added:\n${added.join('\n')}`);
    assert.match(added[0]!, /^Received: from relay\.postfix\.interop \(\[127\.0\.0\.1\]\)[\s\S]*by mx\.postern\.interop \(postern\) with E?SMTP/, `#${n}: postern's Received`);
    if (n <= 3) assert.match(added[1]!, /^Received: from client\.interop\.test \(unknown \[127\.0\.0\.1\]\)\n\tby relay\.postfix\.interop \(Postfix\) with ESMTP id \w+/, `#${n}: Postfix's smtpd Received`);
    else assert.match(added[1]!, /^Received: by relay\.postfix\.interop \(Postfix, from userid \d+\)/, `#${n}: Postfix's pickup Received`);
  }

  const log = pf.log();
  const relayed = [...log.matchAll(/: to=<([^>]+)>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent \(250 /g)].map((x) => x[1]);
  assert.deepEqual(relayed.sort(), ['dots@far.test', 'local@other.test', 'utf@other.test', 'x@far.test', 'y@far.test']);
  assert.deepEqual(pf.problems(), [], 'no warnings in the Postfix log');
});

