// postern's maildir route read back through a real Dovecot IMAP server (dovecot-imapd) on
// loopback, as a user's mail client sees it: the message byte for byte (FETCH BODY.PEEK[] is
// the file postern wrote), unseen and \Recent until fetched, in INBOX (postern's maildir routes
// have no subfolders: a +extension lands in INBOX too). Dovecot never reads mail as root: when
// the tests run as root, postern (in this process) writes root-owned files, and the test hands
// the mailbox to the user Dovecot reads it as (nobody), as an operator running postern as the
// mail user would have it from the start. Skipped when dovecot-imapd is not installed.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { dovecotImapSkip, startDovecotLmtp, type DovecotLmtp } from '../helpers/dovecot.js';
import { ImapClient } from '../helpers/imap-client.js';
import { startTestNode, writeFile } from '../helpers/node.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { withoutTrace } from '../helpers/exim.js';

const skip = dovecotImapSkip();

/** postern delivering post.test into Maildirs under <root>, and a Dovecot reading alice's. */
async function setup(t: TestContext): Promise<{ node: Awaited<ReturnType<typeof startTestNode>>; root: string; maildir: string; dc: DovecotLmtp; handOver: () => void }> {
  const root = tmpdir(t, 'postern-maildir-');
  // Dovecot's processes (nobody under root) must reach the Maildir below the temp folder.
  chmodSync(root, 0o755);
  const maildir = join(root, 'post.test', 'alice');
  const map = writeFile(t, 'recipients', 'alice@post.test\n');
  const node = await startTestNode(t, {
    POSTERN_DELIVERY: 'routes',
    POSTERN_LOCAL_DOMAINS: 'post.test',
    POSTERN_RECIPIENTS: map,
    POSTERN_ROUTES: `post.test=maildir:${root}`,
    POSTERN_HOSTNAME: 'mx.postern.interop',
  }, { delivery: { pollIntervalMs: 50 } });
  const dc = await startDovecotLmtp(t, { imapUsers: [{ user: 'alice@post.test', password: 'alice-pw', maildir }] });
  const handOver = (): void => {
    if (process.getuid?.() !== 0) return;
    const own = (p: string): void => {
      chownSync(p, dc.uid, dc.gid);
      for (const e of readdirSync(p, { withFileTypes: true })) {
        if (e.isDirectory()) own(join(p, e.name));
        else chownSync(join(p, e.name), dc.uid, dc.gid);
      }
    };
    own(join(root, 'post.test'));
  };
  return { node, root, maildir, dc, handOver };
}

/** An IMAP connection to Dovecot; a failure says what Dovecot logged. */
async function connect(dc: DovecotLmtp): Promise<ImapClient> {
  return ImapClient.connect(dc.imapPort!).catch((err: Error) => {
    throw new Error(`${err.message}\n${dc.log()}`);
  });
}

function newFiles(maildir: string): string[] {
  const d = join(maildir, 'new');
  return existsSync(d) ? readdirSync(d).sort() : [];
}

/** The FLAGS of a FETCH response, sorted. */
function flagsOf(text: string): string[] {
  const m = /FLAGS \(([^)]*)\)/.exec(text);
  assert.ok(m, `FLAGS in ${text}`);
  return m[1]!.split(' ').filter((f) => f !== '').sort();
}

test('dovecot: a message postern delivers into a Maildir reads back over IMAP byte for byte, unseen and \\Recent in INBOX, \\Seen once fetched', { skip }, async (t) => {
  const { node, maildir, dc, handOver } = await setup(t);
  const body = 'From: Sender <sender@far.test>\r\nTo: alice@post.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= via Maildir\r\nDate: Mon, 07 Dec 2026 14:00:00 +0000\r\nMessage-ID: <imap-1@far.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n.\r\n..two dots\r\nGrüße — 8-bit text.\r\n\r\ntrailing blank line above\r\n';
  await sendMessage(node.ports.smtpPort, 'sender@far.test', ['alice@post.test'], body, 'client.far.test');
  await waitFor('the file in alice\'s new/', () => newFiles(maildir).length === 1, 20_000);
  await waitFor('postern\'s queue empty', () => node.queue.counts().total === 0);
  const file = readFileSync(join(maildir, 'new', newFiles(maildir)[0]!));
  handOver();

  const c = await connect(dc);
  t.after(() => c.close());
  assert.match(c.greeting, /Dovecot/, c.greeting);
  await c.login('alice@post.test', 'alice-pw');
  // The folder: INBOX, the only one.
  const list = await c.ok('LIST "" "*"');
  assert.deepEqual(list.map((r) => r.text), ['* LIST (\\HasNoChildren) "." INBOX'], dc.log());
  const status = await c.ok('STATUS INBOX (MESSAGES RECENT UNSEEN)');
  assert.match(status[0]!.text, /^\* STATUS INBOX \(MESSAGES 1 RECENT 1 UNSEEN 1\)$/);
  const sel = (await c.ok('SELECT INBOX')).map((r) => r.text);
  assert.ok(sel.includes('* 1 EXISTS'), sel.join('\n'));
  assert.ok(sel.includes('* 1 RECENT'), sel.join('\n'));
  assert.ok(sel.some((l) => /^\* OK \[UNSEEN 1\]/.test(l)), sel.join('\n'));

  // BODY.PEEK[]: the bytes of the file postern wrote (CRLF, its Return-Path and Delivered-To,
  // its Received), flags untouched: unread and new to this session.
  const peek = await c.ok('FETCH 1 (FLAGS RFC822.SIZE BODY.PEEK[])');
  assert.equal(peek.length, 1);
  assert.deepEqual(flagsOf(peek[0]!.text), ['\\Recent']);
  assert.match(peek[0]!.text, new RegExp(`RFC822\\.SIZE ${file.length}\\b`));
  assert.equal(peek[0]!.literals.length, 1);
  const got = peek[0]!.literals[0]!;
  assert.ok(got.equals(file), `BODY[] is the file:\n${got.toString('latin1')}\n---\n${file.toString('latin1')}`);
  const text = got.toString('utf8');
  assert.match(text, /^Return-Path: <sender@far\.test>\r\nDelivered-To: alice@post\.test\r\n/);
  assert.equal(withoutTrace(text), body, 'the message as sent, apart from the trace fields');

  // BODY[] (no PEEK) sets \Seen, which Dovecot records in the file name (new/ → cur/…:2,S).
  const fetched = await c.ok('FETCH 1 (BODY[])');
  assert.ok(fetched[0]!.literals[0]!.equals(file));
  assert.deepEqual(flagsOf((await c.ok('FETCH 1 (FLAGS)'))[0]!.text), ['\\Recent', '\\Seen']);
  await c.logout();
  assert.deepEqual(newFiles(maildir), []);
  const cur = readdirSync(join(maildir, 'cur'));
  assert.equal(cur.length, 1, cur.join(','));
  assert.match(cur[0]!, /:2,S$/);
});

test('dovecot: a +extension and a second message land in the same INBOX, in arrival order, both unseen', { skip }, async (t) => {
  const { node, maildir, dc, handOver } = await setup(t);
  const mk = (n: number): string => `From: <sender@far.test>\r\nTo: alice+news@post.test\r\nSubject: order ${n}\r\nMessage-ID: <imap-order-${n}@far.test>\r\n\r\nmessage ${n}\r\n`;
  await sendMessage(node.ports.smtpPort, 'sender@far.test', ['alice+news@post.test'], mk(1), 'client.far.test');
  await waitFor('the first file', () => newFiles(maildir).length === 1, 20_000);
  await sendMessage(node.ports.smtpPort, 'sender@far.test', ['alice@post.test'], mk(2), 'client.far.test');
  await waitFor('the second file', () => newFiles(maildir).length === 2, 20_000);
  handOver();

  const c = await connect(dc);
  t.after(() => c.close());
  await c.login('alice@post.test', 'alice-pw');
  assert.deepEqual((await c.ok('LIST "" "*"')).map((r) => r.text), ['* LIST (\\HasNoChildren) "." INBOX']);
  await c.ok('SELECT INBOX');
  const f = await c.ok('UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT DELIVERED-TO)])');
  assert.equal(f.length, 2, dc.log());
  const rows = f.map((r) => ({ uid: Number(/UID (\d+)/.exec(r.text)?.[1]), flags: flagsOf(r.text), fields: r.literals[0]!.toString('utf8') }));
  assert.ok(rows[0]!.uid < rows[1]!.uid);
  assert.deepEqual(rows.map((r) => r.fields), [
    'Delivered-To: alice+news@post.test\r\nSubject: order 1\r\n\r\n',
    'Delivered-To: alice@post.test\r\nSubject: order 2\r\n\r\n',
  ]);
  for (const r of rows) assert.deepEqual(r.flags, ['\\Recent']);
  const search = await c.ok('SEARCH UNSEEN');
  assert.equal(search[0]!.text, '* SEARCH 1 2');
  await c.logout();
});
