// Reading DSNs and ARF reports (src/delivery/bounce-report.ts): the fields of real-looking
// reports, several recipient groups, folded fields, the global (RFC 6533) form, and what is
// not a report; only the start of a report is parsed, so hostile bodies of many short lines
// cost milliseconds, not seconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressOf, parseReport, readFieldGroups, reportPrefix, MAX_PARSE_BYTES, MAX_PARSE_DELIMITERS, MAX_PARSE_LINES } from '../../src/delivery/bounce-report.js';

const crlf = (lines: string[]): Buffer => Buffer.from(lines.join('\r\n'));

const dsn = (statusType = 'message/delivery-status', groups: string[][] = [['Final-Recipient: rfc822; a@x.test', 'Action: failed', 'Status: 5.2.2', 'Diagnostic-Code: smtp; 552 5.2.2 Mailbox full']]): Buffer =>
  crlf([
    'From: MAILER-DAEMON@mx.x.test',
    'Content-Type: multipart/report; report-type="delivery-status"; boundary=b1',
    '',
    '--b1',
    'Content-Type: text/plain',
    '',
    'failed',
    '--b1',
    `Content-Type: ${statusType}`,
    '',
    'Reporting-MTA: dns; mx.x.test',
    '',
    ...groups.flatMap((g) => [...g, '']),
    '--b1',
    'Content-Type: message/rfc822',
    '',
    'Return-Path: <b+abc@bounces.test>',
    'To: A <a@x.test>',
    'Message-ID: <m1@sender.test>',
    '',
    'body',
    '--b1--',
    '',
  ]);

test('a DSN: the recipient group, the status, the diagnostic without its type, the original headers', async () => {
  const r = await parseReport(dsn());
  assert.deepEqual(r, {
    kind: 'dsn',
    reportingMta: 'mx.x.test',
    recipients: [{ action: 'failed', finalRecipient: 'a@x.test', status: '5.2.2', diagnostic: '552 5.2.2 Mailbox full' }],
    original: { messageId: '<m1@sender.test>', returnPath: 'b+abc@bounces.test', to: 'a@x.test' },
  });
});

test('several groups, a folded Diagnostic-Code, the global form; groups without Action are skipped', async () => {
  const r = await parseReport(
    dsn('message/global-delivery-status', [
      ['Final-Recipient: rfc822;b@x.test', 'Action: delayed', 'Status: 4.4.1'],
      ['Original-Recipient: rfc822;C@x.test', 'Final-Recipient: rfc822;c@y.test', 'Action: Failed', 'Status: 5.1.1 (no such user)', 'Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried', '  to reach does not exist.'],
      ['X-Nothing: here'],
    ]),
  );
  assert.equal(r.kind, 'dsn');
  if (r.kind !== 'dsn') return;
  assert.equal(r.recipients.length, 2);
  assert.deepEqual(r.recipients[1], { action: 'failed', originalRecipient: 'C@x.test', finalRecipient: 'c@y.test', status: '5.1.1', diagnostic: '550-5.1.1 The email account that you tried to reach does not exist.' });
});

test('an ARF report: feedback type, original mail from and recipients, user agent', async () => {
  const r = await parseReport(
    crlf([
      'Content-Type: multipart/report; report-type=feedback-report; boundary="p"',
      '',
      '--p',
      'Content-Type: text/plain',
      '',
      'abuse report',
      '--p',
      'Content-Type: message/feedback-report',
      '',
      'Feedback-Type: Abuse',
      'User-Agent: Yahoo!-Mail-Feedback/2.0',
      'Version: 0.1',
      'Original-Mail-From: <b+x@bounces.test>',
      'Original-Rcpt-To: <u1@x.test>',
      'Original-Rcpt-To: <u2@x.test>',
      '',
      '--p',
      'Content-Type: text/rfc822-headers',
      '',
      'Message-ID: <m2@sender.test>',
      '',
      '--p--',
    ]),
  );
  assert.deepEqual(r, { kind: 'arf', feedbackType: 'abuse', originalMailFrom: 'b+x@bounces.test', originalRcptTo: ['u1@x.test', 'u2@x.test'], userAgent: 'Yahoo!-Mail-Feedback/2.0', original: { messageId: '<m2@sender.test>' } });
});

test('not a report: plain mail, another report type, a DSN without its status part, garbage', async () => {
  assert.deepEqual(await parseReport(Buffer.from('Subject: Out of office\r\n\r\nAway.\r\n')), { kind: 'other', why: 'not a multipart/report' });
  assert.equal((await parseReport(Buffer.from('Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n\r\n--x--\r\n'))).kind, 'other');
  const r = await parseReport(Buffer.from('Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n'));
  assert.deepEqual(r, { kind: 'other', why: 'a delivery-status report without its message/delivery-status part' });
  assert.equal((await parseReport(Buffer.from([0, 1, 2, 255, 254]))).kind, 'other');
});

test('field groups and addresses are bounded and strict', () => {
  const many = Array.from({ length: 500 }, (_, i) => `Action: failed\nFinal-Recipient: rfc822; u${i}@x.test\n`).join('\n');
  assert.equal(readFieldGroups(many, 101).length, 101);
  const long = readFieldGroups(`Diagnostic-Code: ${'x'.repeat(5000)}\n ${'y'.repeat(5000)}\n`, 1)[0]!;
  assert.equal(long.get('diagnostic-code')![0]!.length, 1000);
  assert.equal(addressOf('rfc822; <a@b>'), 'a@b');
  assert.equal(addressOf('a b@c'), undefined);
  assert.equal(addressOf('<>'), undefined);
  assert.equal(addressOf(`${'a'.repeat(400)}@b`), undefined);
});

test('only the start is parsed: at most MAX_PARSE_LINES lines, MAX_PARSE_DELIMITERS "--" lines and MAX_PARSE_BYTES, cut after a line break', () => {
  const lines = Buffer.from('a\n'.repeat(MAX_PARSE_LINES + 10));
  assert.equal(reportPrefix(lines).length, 2 * MAX_PARSE_LINES);
  const long = Buffer.from(('y'.repeat(299) + '\n').repeat(MAX_PARSE_LINES));
  assert.ok(long.length > MAX_PARSE_BYTES);
  const cut = reportPrefix(long);
  assert.ok(cut.length <= MAX_PARSE_BYTES && cut.length > MAX_PARSE_BYTES - 300);
  assert.equal(cut[cut.length - 1], 0x0a, 'ends at a whole line');
  assert.equal(reportPrefix(Buffer.alloc(MAX_PARSE_BYTES * 2, 0x41)).length, MAX_PARSE_BYTES, 'no line break at all: the first MAX_PARSE_BYTES');
  const parts = Buffer.from('--b\r\nx\r\n'.repeat(MAX_PARSE_DELIMITERS + 5));
  assert.equal(reportPrefix(parts).length, 8 * MAX_PARSE_DELIMITERS, 'cut before the first delimiter too many');
  const small = dsn();
  assert.equal(reportPrefix(small), small, 'a report under both bounds is parsed whole');
});

test('a DSN whose human-readable part and returned message are large is still read: the parts used come first', async () => {
  const html = Array.from({ length: 600 }, (_, i) => `<p>line ${i} of a long notice about your message</p>`);
  const body = Array.from({ length: 50_000 }, (_, i) => `line ${i} of the returned message`);
  const raw = Buffer.concat([
    crlf(['Content-Type: multipart/report; report-type=delivery-status; boundary=b1', '', '--b1', 'Content-Type: text/html', '', ...html, '--b1', 'Content-Type: message/delivery-status', '', 'Reporting-MTA: dns; mx.x.test', '']),
    crlf(['', 'Final-Recipient: rfc822; a@x.test', 'Action: failed', 'Status: 5.1.1', '', '--b1', 'Content-Type: message/rfc822', '', 'Message-ID: <m1@sender.test>', 'Subject: hi', '', ...body, '--b1--', '']),
  ]);
  assert.ok(raw.length > 1024 * 1024);
  const r = await parseReport(raw);
  assert.deepEqual(r, { kind: 'dsn', reportingMta: 'mx.x.test', recipients: [{ action: 'failed', finalRecipient: 'a@x.test', status: '5.1.1' }], original: { messageId: '<m1@sender.test>' } });
});

// The shapes that froze the node when postal-mime parsed the whole message (12-19 s of one
// event-loop turn and 1.8 GB for 2 MiB of empty lines). Now tens of milliseconds each; the
// bound leaves room for a loaded CI machine and is still far below the old cost.
test('hostile reports of 2 MiB (empty lines, one-character lines, deep nesting, many parts) are read in well under a second each', async () => {
  const MiB2 = 2 * 1024 * 1024;
  const head = 'Content-Type: multipart/report; report-type=delivery-status; boundary="BB"\r\n\r\n--BB\r\nContent-Type: message/delivery-status\r\n\r\n';
  const fill = (unit: string): Buffer => Buffer.from(head + unit.repeat(Math.floor((MiB2 - head.length) / unit.length)));
  let open = '';
  for (let i = 0; open.length < MiB2 - 200; i++) open += `--b${i}\r\nContent-Type: multipart/mixed; boundary="b${i + 1}"\r\n\r\n`;
  const shapes: Record<string, Buffer> = {
    'CRLF lines': fill('\r\n'),
    'LF lines': fill('\n'),
    'one-character lines': fill('x\n'),
    'header-like lines': fill('b: c\r\n'),
    'a field folded on every line': fill(' a\r\n'),
    'empty parts': Buffer.from('Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n' + '--B\r\n'.repeat(400_000)),
    'deeply nested multiparts': Buffer.from('Content-Type: multipart/report; report-type=delivery-status; boundary="b0"\r\n\r\n' + open),
  };
  for (const [name, raw] of Object.entries(shapes)) {
    assert.ok(raw.length > 1.9 * 1024 * 1024, name);
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const r = await parseReport(raw);
    const ms = performance.now() - t0;
    assert.ok(['dsn', 'other'].includes(r.kind), name);
    assert.ok(ms < 1000, `${name}: ${ms.toFixed(0)} ms`);
    assert.ok(process.memoryUsage().rss - rss0 < 100 * 1024 * 1024, `${name}: memory`);
  }
});
