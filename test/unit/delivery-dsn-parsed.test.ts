// buildDsn read back by an independent, widely used MIME parser (postal-mime): the DSN must
// parse as a well-formed RFC 6522 multipart/report, and every RFC 3464 field must carry what
// the queue record and the reply said. The message/delivery-status part is split into its
// per-message group and per-recipient groups (blank-line separated, RFC 3464 §2.1) here.
//
// Note on postal-mime: part contents come back with LF line ends, and with the CRLF that
// belongs to the following delimiter (RFC 2046 §5.1.1) kept as one extra "\n"; the
// expectations below account for that (see the probe in the first test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import PostalMime from 'postal-mime';
import { buildDsn, type DsnEntry } from '../../src/delivery/dsn.js';
import { replyRecord } from '../../src/delivery/types.js';
import type { MessageRecord, Recipient } from '../../src/queue/store.js';

type Email = Awaited<ReturnType<typeof PostalMime.parse>>;
type Fields = Map<string, string>;

const ORIGINAL = Buffer.from(
  'From: Sender <s@sender.example>\r\nTo: r@dest.example\r\nSubject: quarterly report\r\nMessage-ID: <orig@sender.example>\r\n\r\nSECRET BODY LINE\r\nsecond line\r\n',
  'latin1',
);
const ARRIVAL = Date.UTC(2026, 0, 2, 3, 4, 5);
const ATTEMPT = Date.UTC(2026, 0, 3, 0, 0, 0);
const NOW = new Date(Date.UTC(2026, 0, 3, 1, 2, 3));

function rcpt(address: string, extra: Partial<Recipient> = {}): Recipient {
  return { address, domain: address.slice(address.lastIndexOf('@') + 1), state: 'failed', attempts: 2, ...extra };
}

function message(extra: Partial<MessageRecord> = {}): MessageRecord {
  return {
    id: 'Q42', seq: 1, priority: 1, sender: 's@sender.example', recipients: [], state: 'leased',
    receivedAt: ARRIVAL, nextAttemptAt: 0, attempts: 2, size: ORIGINAL.length, ...extra,
  };
}

function entry(address: string, code: number | undefined, enhanced: string | undefined, text: string, action: DsnEntry['action'], extra: Partial<Recipient> = {}, destination = 'smtp:mx1.dest.example:25', at: number | null = ATTEMPT): DsnEntry {
  const reply = replyRecord(code, enhanced, text, 'RCPT', destination);
  if (at === null) delete reply.at;
  else reply.at = at;
  return { recipient: rcpt(address, extra), reply, action };
}

async function parse(body: Buffer): Promise<Email> {
  return PostalMime.parse(body, { attachmentEncoding: 'utf8', forceRfc822Attachments: true });
}

function header(e: Email, name: string): string[] {
  return e.headers.filter((h) => h.key === name.toLowerCase()).map((h) => h.value);
}

function one(e: Email, name: string): string {
  const v = header(e, name);
  assert.equal(v.length, 1, `${name} appears ${v.length} times`);
  return v[0]!;
}

/** A field group: unfolded, names case-insensitive, each field at most once. */
function fields(group: string): Fields {
  const out: Fields = new Map();
  let last: string | null = null;
  for (const line of group.split('\n')) {
    if (line === '') continue;
    if (line[0] === ' ' || line[0] === '\t') {
      assert.ok(last !== null, `continuation without a field: ${JSON.stringify(line)}`);
      out.set(last, out.get(last)! + line);
      continue;
    }
    const m = /^([\x21-\x39\x3b-\x7e]+):[ \t]*(.*)$/.exec(line);
    assert.ok(m, `not a field: ${JSON.stringify(line)}`);
    const name = m[1]!.toLowerCase();
    assert.ok(!out.has(name), `${m[1]} twice in one group`);
    out.set(name, m[2]!);
    last = name;
  }
  return out;
}

/** The three parts of a DSN as postal-mime sees them, with the status part split into groups. */
function report(e: Email): { human: string; perMessage: Fields; perRecipient: Fields[]; original: { mimeType: string; description: string | undefined; content: string } } {
  assert.equal(typeof e.text, 'string', 'part 1 (text/plain) is the body text');
  assert.equal(e.html, undefined, 'no html part');
  assert.equal(e.attachments.length, 2, `parts 2 and 3: ${e.attachments.map((a) => a.mimeType).join(', ')}`);
  const [status, original] = e.attachments as [Email['attachments'][0], Email['attachments'][0]];
  assert.equal(status.mimeType, 'message/delivery-status');
  assert.equal(status.description, 'Delivery report');
  assert.equal(typeof status.content, 'string');
  const groups = (status.content as string).replace(/\r\n/g, '\n').split(/\n{2,}/).filter((g) => g.trim() !== '');
  assert.ok(groups.length >= 2, 'a per-message group and at least one per-recipient group');
  return {
    human: e.text!,
    perMessage: fields(groups[0]!),
    perRecipient: groups.slice(1).map(fields),
    original: { mimeType: original.mimeType, description: original.description ?? undefined, content: original.content as string },
  };
}

test('postal-mime probe: a part body comes back with LF ends and the delimiter CRLF as one extra LF', async () => {
  // This fixes how the assertions below read postal-mime's output, so that a change in the
  // parser shows up here and not as a confusing DSN failure.
  const m = 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nA: b\r\n\r\nC: d\r\n--x--\r\n';
  const e = await PostalMime.parse(Buffer.from(m), { attachmentEncoding: 'utf8' });
  assert.equal(e.text, 'hello\n');
  assert.equal(e.attachments[0]!.content, 'A: b\n\nC: d\n');
});

test('failure DSN (no RET): headers, three parts, per-message and per-recipient fields, headers-only original', async () => {
  const dsn = buildDsn({
    message: message({ envid: 'env-42' }),
    reportingMta: 'mx.postern.example',
    originalBody: ORIGINAL,
    now: NOW,
    failed: [
      entry('r@dest.example', 550, '5.1.1', 'user unknown', 'failed', { orcpt: 'rfc822;R@Dest.Example' }),
      entry('t@dest.example', 552, undefined, 'mailbox full', 'failed', {}, 'smtp:[192.0.2.7]:2525'),
    ],
  });
  assert.ok(dsn);
  assert.equal(dsn.sender, '', 'sent from the null reverse-path');
  assert.deepEqual(dsn.recipients, ['s@sender.example']);
  const e = await parse(dsn.body);

  // Top-level header.
  assert.deepEqual(e.from, { address: 'MAILER-DAEMON@mx.postern.example', name: '' });
  assert.deepEqual(e.to, [{ address: 's@sender.example', name: '' }]);
  assert.equal(e.subject, 'Undelivered Mail Returned to Sender');
  assert.equal(one(e, 'Auto-Submitted'), 'auto-replied');
  assert.equal(one(e, 'MIME-Version'), '1.0');
  assert.equal(e.date, NOW.toISOString());
  assert.match(e.messageId ?? '', /^<[^<>@\s]+@mx\.postern\.example>$/);
  const ct = one(e, 'Content-Type');
  assert.match(ct, /^multipart\/report;/i);
  assert.match(ct, /;\s*report-type=delivery-status\s*;/i);
  assert.match(ct, /boundary="=_postern_[0-9a-f]+"/);

  const r = report(e);
  // Part 1: for humans, one line per recipient.
  assert.match(r.human, /^This is the mail system at host mx\.postern\.example\.\n/);
  assert.match(r.human, /could not be delivered to one or more recipients/);
  assert.match(r.human, /^<r@dest\.example>: failed: 550 5\.1\.1 user unknown$/m);
  assert.match(r.human, /^<t@dest\.example>: failed: 552 mailbox full$/m);

  // Part 2, per-message fields (RFC 3464 §2.2).
  assert.equal(r.perMessage.get('reporting-mta'), 'dns; mx.postern.example');
  assert.equal(r.perMessage.get('original-envelope-id'), 'env-42');
  assert.equal(r.perMessage.get('arrival-date'), 'Fri, 02 Jan 2026 03:04:05 +0000');
  assert.equal(r.perMessage.get('x-postern-queue-id'), 'Q42');
  assert.equal(r.perMessage.has('final-recipient'), false, 'no recipient field in the per-message group');

  // Part 2, per-recipient fields (RFC 3464 §2.3), in the order given.
  assert.equal(r.perRecipient.length, 2);
  const [a, b] = r.perRecipient as [Fields, Fields];
  assert.equal(a.get('original-recipient'), 'rfc822; R@Dest.Example');
  assert.equal(a.get('final-recipient'), 'rfc822; r@dest.example');
  assert.equal(a.get('action'), 'failed');
  assert.equal(a.get('status'), '5.1.1');
  assert.equal(a.get('remote-mta'), 'dns; mx1.dest.example');
  assert.equal(a.get('diagnostic-code'), 'smtp; 550 5.1.1 user unknown');
  assert.equal(a.get('last-attempt-date'), 'Sat, 03 Jan 2026 00:00:00 +0000');
  assert.equal(b.has('original-recipient'), false, 'no ORCPT, no Original-Recipient');
  assert.equal(b.get('final-recipient'), 'rfc822; t@dest.example');
  assert.equal(b.get('action'), 'failed');
  assert.equal(b.get('status'), '5.0.0', 'class from the reply code when there is no enhanced code');
  assert.equal(b.get('remote-mta'), 'dns; [192.0.2.7]', 'an address literal is a remote MTA too');
  assert.equal(b.get('diagnostic-code'), 'smtp; 552 mailbox full');
  for (const g of r.perRecipient) {
    for (const required of ['final-recipient', 'action', 'status']) assert.ok(g.has(required), `${required} is required`);
  }

  // Part 3: without RET, headers only (never the body).
  assert.equal(r.original.mimeType, 'text/rfc822-headers');
  assert.equal(r.original.description, 'Undelivered Message Headers');
  assert.equal(r.original.content, 'From: Sender <s@sender.example>\nTo: r@dest.example\nSubject: quarterly report\nMessage-ID: <orig@sender.example>\n\n');
  assert.doesNotMatch(r.original.content, /SECRET/);
});

test('RET=FULL: part 3 is message/rfc822 holding the whole original, which parses back', async () => {
  const dsn = buildDsn({
    message: message({ ret: 'FULL' }),
    reportingMta: 'mx.postern.example',
    originalBody: ORIGINAL,
    now: NOW,
    failed: [entry('r@dest.example', 550, '5.1.1', 'user unknown', 'failed')],
  });
  assert.ok(dsn);
  const e = await parse(dsn.body);
  const r = report(e);
  assert.equal(r.perMessage.has('original-envelope-id'), false, 'no ENVID, no Original-Envelope-Id');
  assert.equal(r.original.mimeType, 'message/rfc822');
  assert.equal(r.original.description, 'Undelivered Message');
  assert.equal(r.original.content, ORIGINAL.toString('latin1').replace(/\r\n/g, '\n') + '\n');
  const inner = await PostalMime.parse(r.original.content);
  assert.equal(inner.subject, 'quarterly report');
  assert.equal(inner.messageId, '<orig@sender.example>');
  assert.match(inner.text ?? '', /^SECRET BODY LINE\nsecond line\n/);
});

test('RET=HDRS: text/rfc822-headers', async () => {
  const dsn = buildDsn({ message: message({ ret: 'HDRS' }), reportingMta: 'mx.postern.example', originalBody: ORIGINAL, now: NOW, failed: [entry('r@dest.example', 550, '5.1.1', 'no', 'failed')] });
  const r = report(await parse(dsn!.body));
  assert.equal(r.original.mimeType, 'text/rfc822-headers');
  assert.doesNotMatch(r.original.content, /SECRET/);
  assert.match(r.original.content, /^Subject: quarterly report$/m);
});

test('delay DSN: subject, Action delayed, 4.x.x status; no code → X-Postern diagnostic; non-host destination → no Remote-MTA', async () => {
  const dsn = buildDsn({
    message: message(),
    reportingMta: 'mx.postern.example',
    originalBody: ORIGINAL,
    now: NOW,
    failed: [
      entry('slow@dest.example', 451, '4.3.0', 'try again later', 'delayed'),
      entry('box@local.example', undefined, '4.2.2', 'mailbox over quota', 'delayed', {}, 'maildir', null),
    ],
  });
  assert.ok(dsn);
  const e = await parse(dsn.body);
  assert.equal(e.subject, 'Delivery Status Notification (Delay)');
  const r = report(e);
  assert.match(r.human, /will keep trying/);
  const [a, b] = r.perRecipient as [Fields, Fields];
  assert.equal(a.get('action'), 'delayed');
  assert.equal(a.get('status'), '4.3.0');
  assert.equal(a.get('diagnostic-code'), 'smtp; 451 4.3.0 try again later');
  assert.equal(b.get('action'), 'delayed');
  assert.equal(b.get('status'), '4.2.2');
  assert.equal(b.get('diagnostic-code'), 'X-Postern; mailbox over quota');
  assert.equal(b.has('remote-mta'), false, '"maildir" is a key, not an MTA');
  assert.equal(b.get('last-attempt-date'), 'Sat, 03 Jan 2026 01:02:03 +0000', 'no reply time → now');
});

test('a long diagnostic is folded and unfolds to the whole text; a UTF-8 ORCPT is utf-8 xtext', async () => {
  const long = 'mailbox unavailable: ' + Array.from({ length: 30 }, (_, i) => `word${i}`).join(' ');
  const dsn = buildDsn({
    message: message(),
    reportingMta: 'mx.postern.example',
    originalBody: ORIGINAL,
    now: NOW,
    failed: [entry('j@dest.example', 550, '5.2.1', long, 'failed', { orcpt: 'utf-8;jörg@dëst.example' })],
  });
  assert.ok(dsn);
  for (const line of dsn.body.toString('latin1').split('\r\n')) assert.ok(line.length <= 998);
  const raw = dsn.body.toString('latin1');
  assert.match(raw, /Diagnostic-Code: [^\r]*\r\n /, 'the field is folded in the bytes');
  const [g] = report(await parse(dsn.body)).perRecipient as [Fields];
  assert.equal(g.get('diagnostic-code'), `smtp; 550 5.2.1 ${long}`);
  assert.equal(g.get('original-recipient'), 'utf-8; j\\x{F6}rg@d\\x{EB}st.example');
  assert.equal(g.get('final-recipient'), 'rfc822; j@dest.example');
});

test('success DSN when NOTIFY=SUCCESS: Action delivered, 2.x.x', async () => {
  const dsn = buildDsn({
    message: message(),
    reportingMta: 'mx.postern.example',
    originalBody: ORIGINAL,
    now: NOW,
    failed: [entry('ok@dest.example', 250, '2.0.0', 'queued as X', 'delivered', { notify: ['SUCCESS'] })],
  });
  assert.ok(dsn);
  const e = await parse(dsn.body);
  assert.equal(e.subject, 'Delivery Status Notification (Success)');
  const [g] = report(e).perRecipient as [Fields];
  assert.equal(g.get('action'), 'delivered');
  assert.equal(g.get('status'), '2.0.0');
});
