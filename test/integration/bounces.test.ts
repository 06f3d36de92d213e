// Asynchronous bounces and complaints through a real node on loopback: a message goes out with a
// VERP envelope sender to a scripted server that accepts it; a DSN (as Gmail writes them), or
// an ARF complaint, comes back over SMTP to the node's VERP address or feedback address; it
// becomes an event with its category and a suppression entry, and the next injection to that
// recipient is refused (HTTP 422, SMTP 550 5.7.1). Forged reports suppress nothing, also from
// a co-recipient who knows the Message-ID while the message is still queued; a hostile 2 MiB
// report does not stop the node answering.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestNode } from '../helpers/node.js';
import { startScriptedServer, type ScriptedServer } from '../helpers/scripted-server.js';
import { RawClient, sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { MailEvent } from '../../src/queue/events.js';
import type { PosternNode } from '../../src/main.js';

const VERP_DOMAIN = 'bounces.a.test';

async function inject(node: PosternNode, to: string, extra: Record<string, unknown> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${node.ports.httpPort}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ from: 'news@a.test', to: [to], raw: 'Subject: news\r\nMessage-ID: <n1@a.test>\r\n\r\nhello\r\n', ...extra }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function startPair(t: Parameters<typeof startTestNode>[0], env: Record<string, string> = {}, peerOptions: Parameters<typeof startScriptedServer>[1] = {}): Promise<{ node: PosternNode; peer: ScriptedServer; events: MailEvent[] }> {
  const peer = await startScriptedServer(t, peerOptions);
  const events: MailEvent[] = [];
  const node = await startTestNode(
    t,
    { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${peer.port}`, POSTERN_HOSTNAME: 'a.mx.test', POSTERN_HTTP_PORT: '0', POSTERN_VERP: VERP_DOMAIN, POSTERN_LOCAL_DOMAINS: 'a.test', POSTERN_BOUNCE_ADDRESSES: 'fbl@a.test', ...env },
    { delivery: { pollIntervalMs: 50, onEvent: (e) => events.push(e) } },
  );
  return { node, peer, events };
}

function gmailDsn(verp: string, rcpt: string): string {
  return [
    'From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>',
    `To: ${verp}`,
    'Subject: Delivery Status Notification (Failure)',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; boundary="000000000000abc"; report-type=delivery-status',
    '',
    '--000000000000abc',
    'Content-Type: text/plain; charset="UTF-8"',
    '',
    `Address not found. Your message wasn't delivered to ${rcpt} because the address couldn't be found.`,
    '',
    '--000000000000abc',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; googlemail.com',
    'Arrival-Date: Mon, 07 Dec 2026 05:00:00 -0800 (PST)',
    '',
    `Final-Recipient: rfc822; ${rcpt}`,
    'Action: failed',
    'Status: 5.1.1',
    'Remote-MTA: dns; gmail-smtp-in.l.google.com. (192.0.2.27, the server for the domain far.test.)',
    'Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try',
    ' 550-5.1.1 double-checking the recipient\'s email address for typos or',
    ' 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser',
    'Last-Attempt-Date: Mon, 07 Dec 2026 05:00:01 -0800 (PST)',
    '',
    '--000000000000abc',
    'Content-Type: text/rfc822-headers',
    '',
    `Return-Path: <${verp}>`,
    'Subject: news',
    'Message-ID: <n1@a.test>',
    '',
    '--000000000000abc--',
    '',
  ].join('\n');
}

function arfReport(verp: string, rcpt: string): string {
  return [
    'From: feedback@fbl.example.net',
    'To: fbl@a.test',
    'Subject: FW: news',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=feedback-report;',
    '    boundary="part1_13d.2e68ed54_boundary"',
    '',
    '--part1_13d.2e68ed54_boundary',
    'Content-Type: text/plain; charset="US-ASCII"',
    '',
    'This is an email abuse report for an email message received from IP 192.0.2.1.',
    '',
    '--part1_13d.2e68ed54_boundary',
    'Content-Type: message/feedback-report',
    '',
    'Feedback-Type: abuse',
    'User-Agent: SomeGenerator/1.0',
    'Version: 1',
    `Original-Mail-From: <${verp}>`,
    `Original-Rcpt-To: <${rcpt}>`,
    'Arrival-Date: Mon, 07 Dec 2026 05:00:00 +0000',
    '',
    '--part1_13d.2e68ed54_boundary',
    'Content-Type: message/rfc822',
    'Content-Disposition: inline',
    '',
    `Return-Path: <${verp}>`,
    'From: news@a.test',
    `To: ${rcpt}`,
    'Subject: news',
    'Message-ID: <n1@a.test>',
    '',
    'hello',
    '--part1_13d.2e68ed54_boundary--',
    '',
  ].join('\n');
}

const sentFrom = (peer: ScriptedServer, rcpt: string): string => {
  const m = peer.messages().find((x) => x.rcptTo.some((r) => r.includes(rcpt)));
  return /<(.*)>/.exec(m!.mailFrom)![1]!;
};

test('a DSN sent back to the VERP address: bounced event (async, invalid-recipient), suppression, next injection refused', async (t) => {
  const { node, peer, events } = await startPair(t);
  const first = await inject(node, 'Nobody@far.test');
  assert.equal(first.status, 202);
  const id = first.json.id as string;
  await waitFor('delivery to the peer', () => peer.messages().length === 1 && node.queue.counts().total === 0);
  const verp = sentFrom(peer, 'Nobody@far.test');
  assert.match(verp, new RegExp(`^b\\+${id}\\.[0-9a-v]{8}=nobody=far\\.test@bounces\\.a\\.test$`), 'the envelope sender is the VERP address');
  assert.equal(node.queue.list().length, 0, 'the stored record was never changed: nothing left behind');

  // The DSN arrives over SMTP from the null sender, like any bounce.
  await sendMessage(node.ports.smtpPort, '', [verp], gmailDsn(verp, 'nobody@far.test'), 'mail-ot1-f69.google.com');
  await waitFor('the async bounce event', () => events.some((e) => e.type === 'bounced' && e.async === true));
  const ev = events.find((e) => e.type === 'bounced' && e.async === true)!;
  assert.equal(ev.id, id);
  assert.equal(ev.recipient, 'nobody@far.test');
  assert.equal(ev.category, 'invalid-recipient');
  assert.equal(ev.enhanced, '5.1.1');
  assert.equal(ev.code, 550);
  assert.equal(ev.matchedBy, 'verp');
  assert.equal(ev.suppressed, true);
  assert.match(ev.reply!, /does not exist/);
  const s = node.queue.suppressions.get('nobody@far.test');
  assert.ok(s, 'suppressed');
  assert.match(s.reason!, /^hard bounce \(invalid-recipient\): 550 5\.1\.1 The email account/);
  await waitFor('the report itself delivered (processed, not relayed)', () => node.queue.counts().total === 0);
  assert.equal(peer.messages().length, 1, 'the DSN was not relayed anywhere');

  // The next injection to that recipient is refused, with the reason.
  const again = await inject(node, 'nobody@far.test');
  assert.equal(again.status, 422);
  const err = again.json.error as { code: string; message: string; suppressed: Array<{ address: string; reason: string }> };
  assert.equal(err.code, 'PST_HTTP_RECIPIENT_SUPPRESSED');
  assert.match(err.message, /nobody@far\.test is on the suppression list \(hard bounce/);
  assert.deepEqual(err.suppressed.map((x) => x.address), ['nobody@far.test']);
  // Structured form and several recipients too: all refused, nothing queued.
  const structured = await inject(node, 'ok@far.test', { raw: undefined, subject: 'x', text: 'y', cc: ['NOBODY@far.test'] });
  assert.equal(structured.status, 422);
  assert.equal(node.queue.counts().total, 0);
  // SMTP: RCPT refused 550 5.7.1, other recipients still fine.
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  await c.cmd('EHLO client.test');
  assert.equal((await c.cmd('MAIL FROM:<news@a.test>')).code, 250);
  const r = await c.cmd('RCPT TO:<nobody@far.test>');
  assert.equal(r.code, 550);
  assert.match(r.text, /^5\.7\.1 Recipient address is on the suppression list/);
  assert.equal((await c.cmd('RCPT TO:<other@far.test>')).code, 250);

  // Metrics: the category is counted.
  const metrics = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  assert.ok(metrics.includes('postern_delivery_failures_total{category="invalid-recipient",kind="async-bounced"} 1\n'), metrics);
  assert.ok(metrics.includes('postern_bounce_reports_total{type="dsn"} 1\n'));
  assert.ok(metrics.includes('postern_suppressions_added_total 1\n'));
  const stats = (await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/v1/stats`)).json()) as { bounces: { failures: unknown[]; reports: { dsn: number } } };
  assert.deepEqual(stats.bounces.failures, [{ category: 'invalid-recipient', kind: 'async-bounced', count: 1 }]);
  assert.equal(stats.bounces.reports.dsn, 1);
});

test('an ARF complaint to the feedback address, matched by the VERP Return-Path: complained event, suppression, injection refused', async (t) => {
  const { node, peer, events } = await startPair(t);
  const first = await inject(node, 'complainer@far.test');
  await waitFor('delivery to the peer', () => peer.messages().length === 1 && node.queue.counts().total === 0);
  const verp = sentFrom(peer, 'complainer@far.test');
  await sendMessage(node.ports.smtpPort, 'feedback@fbl.example.net', ['fbl@a.test'], arfReport(verp, 'complainer@far.test'), 'fbl.example.net');
  await waitFor('the complaint event', () => events.some((e) => e.type === 'complained'));
  const ev = events.find((e) => e.type === 'complained')!;
  assert.equal(ev.id, first.json.id);
  assert.equal(ev.recipient, 'complainer@far.test');
  assert.equal(ev.feedbackType, 'abuse');
  assert.equal(ev.suppressed, true);
  assert.match(node.queue.suppressions.get('complainer@far.test')!.reason!, /^complaint \(abuse\) from SomeGenerator/);
  const again = await inject(node, 'complainer@far.test');
  assert.equal(again.status, 422);
  const metrics = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  assert.ok(metrics.includes('postern_complaints_total 1\n'));
  assert.ok(metrics.includes('postern_bounce_reports_total{type="arf"} 1\n'));
});

test('forged reports suppress nothing: a bad tag is refused at RCPT from an untrusted client; a Message-ID match alone is an event only', async (t) => {
  // 127.0.0.1 is not trusted here: the VERP domain must still take reports from anyone.
  const { node, peer, events } = await startPair(t, { POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24' });
  const first = await inject(node, 'victim@far.test');
  await waitFor('delivery to the peer', () => peer.messages().length === 1 && node.queue.counts().total === 0);
  const verp = sentFrom(peer, 'victim@far.test');
  // A forger who knows the form but not the key: another recipient under the same id.
  const forged = verp.replace('victim', 'target');
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  await c.cmd('EHLO forger.test');
  assert.equal((await c.cmd('MAIL FROM:<>')).code, 250);
  const r = await c.cmd(`RCPT TO:<${forged}>`);
  assert.equal(r.code, 550);
  assert.match(r.text, /^5\.1\.1 /);
  assert.equal((await c.cmd(`RCPT TO:<${verp}>`)).code, 250, 'the genuine VERP address is accepted from an untrusted client');
  assert.equal((await c.cmd('RSET')).code, 250);
  // A DSN to the feedback address naming our Message-ID (<id@hostname>) and another recipient:
  // the message is gone from the queue, so nothing can confirm it: an event, no suppression.
  const dsn = gmailDsn('fbl@a.test', 'target@far.test').replace('Message-ID: <n1@a.test>', `Message-ID: <${first.json.id as string}@a.mx.test>`).replace(/Return-Path: <[^>]*>/, 'Return-Path: <news@a.test>');
  await sendMessage(node.ports.smtpPort, '', ['fbl@a.test'], dsn, 'forger.test');
  await waitFor('the unconfirmed bounce event', () => events.some((e) => e.type === 'bounced' && e.async === true));
  const ev = events.find((e) => e.type === 'bounced' && e.async === true)!;
  assert.equal(ev.matchedBy, 'message-id');
  assert.equal(ev.suppressed, false);
  assert.equal(node.queue.suppressions.count(), 0);
  // Not a report at all (an auto-reply to the VERP address): ignored.
  await sendMessage(node.ports.smtpPort, 'someone@far.test', [verp], 'Subject: Out of office\n\nI am away.\n', 'far.test');
  await waitFor('processed', () => node.queue.counts().total === 0);
  assert.equal(node.queue.suppressions.count(), 0);
  const metrics = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  assert.ok(metrics.includes('postern_bounce_reports_total{type="other"} 1\n'), metrics);
});

test('a co-recipient cannot get another recipient suppressed: a forged DSN or ARF report naming the Message-ID of a message still queued is an event only; the genuine report suppresses', async (t) => {
  // The attack: the attacker is a recipient of a message with several recipients, reads its
  // Message-ID and the victim's address in its own copy, and keeps the message queued (a
  // co-recipient whose server answers 4xx). Its forged reports go to the bounce address.
  const { node, peer, events } = await startPair(t, { POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24' }, { reply: (cmd) => (/^RCPT TO:<later@/i.test(cmd) ? '451 4.3.0 try again later' : undefined) });
  const sent = await inject(node, 'victim@far.test', { raw: undefined, subject: 'news', text: 'hello', cc: ['attacker@far.test', 'later@far.test'] });
  assert.equal(sent.status, 202);
  const id = sent.json.id as string;
  await waitFor('victim and attacker delivered, later deferred', () => {
    const rec = node.queue.get(id);
    const state = (a: string) => rec?.recipients.find((r) => r.address === a)?.state;
    return state('victim@far.test') === 'delivered' && state('attacker@far.test') === 'delivered' && (rec?.recipients.find((r) => r.address === 'later@far.test')?.attempts ?? 0) > 0;
  });
  const copy = peer.messages().find((m) => m.rcptTo.some((r) => r.includes('attacker@far.test')))!.body.toString();
  const messageId = /^Message-ID: (<[^>]+>)/im.exec(copy)![1]!;
  assert.equal(messageId, `<${id}@a.mx.test>`, 'the attacker sees the Message-ID postern made');

  const dsn = gmailDsn('fbl@a.test', 'victim@far.test').replace('Message-ID: <n1@a.test>', `Message-ID: ${messageId}`).replace(/Return-Path: <[^>]*>/, 'Return-Path: <news@a.test>');
  await sendMessage(node.ports.smtpPort, '', ['fbl@a.test'], dsn, 'forger.test');
  const arf = arfReport('news@a.test', 'victim@far.test').replace('Message-ID: <n1@a.test>', `Message-ID: ${messageId}`);
  await sendMessage(node.ports.smtpPort, 'forger@evil.test', ['fbl@a.test'], arf, 'forger.test');
  await waitFor('both forged reports read', () => events.some((e) => e.type === 'bounced' && e.async === true) && events.some((e) => e.type === 'complained'));
  for (const ev of events.filter((e) => e.async === true || e.type === 'complained')) {
    assert.equal(ev.id, id);
    assert.equal(ev.recipient, 'victim@far.test');
    assert.equal(ev.matchedBy, 'message-id');
    assert.equal(ev.suppressed, false, `${ev.type}: a Message-ID match suppresses nobody`);
  }
  assert.ok(node.queue.get(id) !== undefined, 'the message was still queued when the reports came');
  assert.equal(node.queue.suppressions.count(), 0);
  assert.equal((await inject(node, 'victim@far.test', { from: 'other-app@another.test' })).status, 202, 'another sender still reaches the victim');

  // The victim's own server bounces it later, to the VERP address only its copy carried: that
  // report is tied to the victim by the tag, and suppresses.
  const verp = sentFrom(peer, 'victim@far.test');
  await sendMessage(node.ports.smtpPort, '', [verp], gmailDsn(verp, 'victim@far.test'), 'mail-ot1-f69.google.com');
  await waitFor('the genuine bounce', () => events.some((e) => e.type === 'bounced' && e.matchedBy === 'verp'));
  const genuine = events.find((e) => e.type === 'bounced' && e.matchedBy === 'verp')!;
  assert.equal(genuine.id, id);
  assert.equal(genuine.suppressed, true);
  assert.ok(node.queue.suppressions.get('victim@far.test'));
  assert.equal(node.queue.suppressions.count(), 1);
});

test('a hostile 2 MiB report of empty lines to the bounce address is read without stopping the node: /health keeps answering', async (t) => {
  const { node, events } = await startPair(t, { POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24' });
  const head = 'From: mailer-daemon@evil.test\r\nTo: fbl@a.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="BB"\r\n\r\n--BB\r\nContent-Type: message/delivery-status\r\n\r\n';
  const body = head + '\r\n'.repeat(1024 * 1024 - 200) + '--BB--\r\n';
  let worst = 0;
  let stop = false;
  const probe = (async () => {
    while (!stop) {
      const t0 = performance.now();
      await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/health`)).arrayBuffer();
      worst = Math.max(worst, performance.now() - t0);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await sendMessage(node.ports.smtpPort, '', ['fbl@a.test'], body, 'evil.test');
  await waitFor('the report processed', () => node.queue.counts().total === 0);
  await new Promise((r) => setTimeout(r, 200));
  stop = true;
  await probe;
  const metrics = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  assert.ok(metrics.includes('postern_bounce_reports_total{type="other"} 1\n') || metrics.includes('postern_bounce_reports_total{type="dsn"} 1\n'), 'the report was read');
  assert.equal(events.filter((e) => e.async === true).length, 0);
  // Parsing the whole message blocked the event loop for 12-21 s; its start takes milliseconds.
  // The bound leaves room for a loaded machine (and for the SMTP reception of 2 MiB).
  assert.ok(worst < 2000, `/health took ${worst.toFixed(0)} ms`);
});

test('a synchronous failure carries its category: in the bounced and deferred events and /metrics', async (t) => {
  const peer = await startScriptedServer(t, {
    reply: (cmd) => (/^RCPT TO:<gone@/i.test(cmd) ? '550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550 5.1.1 double-checking the recipient\'s email address' : /^RCPT TO:<full@/i.test(cmd) ? '452 4.2.2 The email account that you tried to reach is over quota.' : undefined),
  });
  const events: MailEvent[] = [];
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${peer.port}`, POSTERN_HTTP_PORT: '0' }, { delivery: { pollIntervalMs: 50, onEvent: (e) => events.push(e) } });
  const r = await inject(node, 'gone@far.test');
  assert.equal(r.status, 202);
  assert.equal((await inject(node, 'full@far.test')).status, 202);
  await waitFor('both outcomes', () => events.some((e) => e.type === 'bounced') && events.some((e) => e.type === 'deferred' && e.recipient === 'full@far.test'));
  const b = events.find((e) => e.type === 'bounced')!;
  assert.equal(b.category, 'invalid-recipient');
  assert.equal(b.async, undefined, 'a reply of the next hop, not a report');
  assert.equal(events.find((e) => e.type === 'deferred' && e.recipient === 'full@far.test')!.category, 'mailbox-full');
  // The DSN to news@a.test waits: a.test has no route here (routing: dns).
  await waitFor('the DSN deferred', () => events.some((e) => e.type === 'deferred' && e.recipient === 'news@a.test'));
  assert.equal(events.find((e) => e.type === 'deferred' && e.recipient === 'news@a.test')!.category, 'dns');
  const metrics = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  assert.match(metrics, /^postern_delivery_failures_total\{category="invalid-recipient",kind="bounced"\} 1$/m);
  assert.match(metrics, /^postern_delivery_failures_total\{category="mailbox-full",kind="deferred"\} [1-9]\d*$/m);
  assert.ok(metrics.includes('postern_bounce_reports_total{type="dsn"} 0\n'), 'the families are there without a bounce processor');
  assert.equal(node.queue.suppressions.count(), 0, 'synchronous failures do not suppress');
});

test('a bounce address in a routed domain: the report goes to the processor, the other recipients of the transaction to their route', async (t) => {
  const root = tmpdir(t, 'postern-bounces-maildir-');
  const { node, peer, events } = await startPair(t, { POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${(await startScriptedServer(t)).port};a.test=maildir:${root}`, POSTERN_MAILDIR_CREATE: 'true' });
  void peer;
  await sendMessage(node.ports.smtpPort, 'feedback@fbl.example.net', ['fbl@a.test', 'bob@a.test'], arfReport('b+0123456789abcdef.aaaaaaaa=x=far.test@bounces.a.test', 'x@far.test'), 'fbl.example.net');
  await waitFor('bob got his copy', () => existsSync(join(root, 'a.test', 'bob', 'new')) && readdirSync(join(root, 'a.test', 'bob', 'new')).length === 1);
  await waitFor('queue empty', () => node.queue.counts().total === 0);
  assert.ok(!existsSync(join(root, 'a.test', 'fbl')), 'the feedback address is not a mailbox');
  const metrics = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  assert.ok(metrics.includes('postern_bounce_reports_total{type="arf"} 1\n'), 'the report was read');
  assert.ok(metrics.includes('postern_bounce_reports_unmatched_total 1\n'), 'a forged tag matches nothing');
  assert.equal(events.filter((e) => e.type === 'complained').length, 0);
  assert.equal(node.queue.suppressions.count(), 0);
});
