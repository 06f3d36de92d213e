// Reading DSNs and ARF reports (src/delivery/bounce-report.ts): the fields of real-looking
// reports, several recipient groups, folded fields, the global (RFC 6533) form, and what is
// not a report.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressOf, parseReport, readFieldGroups } from '../../src/delivery/bounce-report.js';

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
