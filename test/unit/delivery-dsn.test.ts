// buildDsn (RFC 3464 / 6522 / 3461 / 3834): the DSN is parsed back with a small MIME splitter
// written here (not the code under test) and every required field is checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDsn, notifyAllows, type DsnEntry } from '../../src/delivery/dsn.js';
import { replyRecord } from '../../src/delivery/types.js';
import type { MessageRecord, Recipient } from '../../src/queue/store.js';

// ---- a minimal, independent MIME reader ---------------------------------------------------

type Fields = Array<[string, string]>;

/** Header block → [name, unfolded value] pairs; asserts every line is a field or a fold. */
function parseFields(block: string): Fields {
  const out: Fields = [];
  for (const line of block.split('\r\n')) {
    if (line === '') continue;
    if (line[0] === ' ' || line[0] === '\t') {
      assert.ok(out.length > 0, `fold without field: ${line}`);
      out[out.length - 1]![1] += line;
      continue;
    }
    const m = /^([\x21-\x39\x3b-\x7e]+):[ \t]*(.*)$/.exec(line);
    assert.ok(m, `not a header field: ${JSON.stringify(line)}`);
    out.push([m[1]!, m[2]!]);
  }
  return out;
}

function get(f: Fields, name: string): string | undefined {
  const all = f.filter(([n]) => n.toLowerCase() === name.toLowerCase());
  assert.ok(all.length <= 1, `${name} appears ${all.length} times`);
  return all[0]?.[1];
}

interface Part { headers: Fields; body: Buffer }

function splitHead(b: Buffer): Part {
  const i = b.indexOf('\r\n\r\n');
  assert.ok(i >= 0, 'no blank line after the header');
  return { headers: parseFields(b.subarray(0, i).toString('latin1')), body: b.subarray(i + 4) };
}

function parseDsn(body: Buffer) {
  // CRLF everywhere, lines ≤ 998.
  for (let i = 0; i < body.length; i++) {
    if (body[i] === 0x0a) assert.equal(body[i - 1], 0x0d, `bare LF at ${i}`);
    if (body[i] === 0x0d) assert.equal(body[i + 1], 0x0a, `bare CR at ${i}`);
  }
  for (const line of body.toString('latin1').split('\r\n')) assert.ok(line.length <= 998, `line of ${line.length}`);
  const top = splitHead(body);
  const ct = get(top.headers, 'Content-Type')!;
  assert.match(ct, /^multipart\/report; report-type=delivery-status;\s+boundary="[^"]+"$/);
  const boundary = /boundary="([^"]+)"/.exec(ct)![1]!;
  const delim = Buffer.from(`\r\n--${boundary}`);
  const parts: Part[] = [];
  let at = top.body.indexOf(`--${boundary}\r\n`);
  assert.ok(at >= 0);
  at = at - 2; // treat as if preceded by CRLF
  for (;;) {
    const start = at + delim.length;
    if (top.body.subarray(start, start + 2).toString() === '--') {
      assert.equal(top.body.subarray(start + 2).toString(), '\r\n', 'nothing after the close delimiter');
      break;
    }
    assert.equal(top.body.subarray(start, start + 2).toString(), '\r\n');
    const next = top.body.indexOf(delim, start);
    assert.ok(next > 0, 'unterminated part');
    parts.push(splitHead(top.body.subarray(start + 2, next)));
    at = next;
  }
  return { top, parts, boundary };
}

/** message/delivery-status body → per-message fields + per-recipient field groups. */
function parseStatus(b: Buffer): { perMessage: Fields; perRecipient: Fields[] } {
  const groups = b.toString('latin1').split('\r\n\r\n').filter((g) => g.trim() !== '');
  return { perMessage: parseFields(groups[0]!), perRecipient: groups.slice(1).map(parseFields) };
}

// ---- fixtures ----------------------------------------------------------------------------

const ORIGINAL = Buffer.from('From: Sender <s@sender.example>\r\nTo: r@dest.example\r\nSubject: quarterly report\r\nMessage-ID: <orig@sender.example>\r\n\r\nSECRET BODY LINE\r\n', 'latin1');

function rcpt(address: string, extra: Partial<Recipient> = {}): Recipient {
  return { address, domain: address.slice(address.lastIndexOf('@') + 1), state: 'failed', attempts: 3, ...extra };
}

function message(extra: Partial<MessageRecord> = {}): MessageRecord {
  return {
    id: 'Q0001', seq: 1, priority: 1, sender: 's@sender.example', recipients: [], state: 'leased',
    receivedAt: Date.UTC(2026, 0, 2, 3, 4, 5), nextAttemptAt: 0, attempts: 3, size: ORIGINAL.length, ...extra,
  };
}

function entry(address: string, code: number, enhanced: string | undefined, text: string, action: DsnEntry['action'], extra: Partial<Recipient> = {}, destination = 'smtp:mx1.dest.example:25'): DsnEntry {
  const reply = replyRecord(code, enhanced, text, 'RCPT TO', destination);
  reply.at = Date.UTC(2026, 0, 3, 0, 0, 0);
  return { recipient: rcpt(address, extra), reply, action };
}

const NOW = new Date(Date.UTC(2026, 0, 3, 1, 2, 3));

// ---- tests -------------------------------------------------------------------------------

test('failure DSN: headers, three parts, every required field; ORCPT and ENVID carried', () => {
  const msg = message({ envid: 'env-42' });
  const dsn = buildDsn({
    message: msg, reportingMta: 'mx.postern.example', originalBody: ORIGINAL, now: NOW,
    failed: [
      entry('r@dest.example', 550, '5.1.1', 'user unknown', 'failed', { orcpt: 'rfc822;R@Dest.Example' }),
      entry('t@dest.example', 552, undefined, 'mailbox full', 'failed'),
    ],
  });
  assert.ok(dsn);
  assert.equal(dsn.sender, '');
  assert.deepEqual(dsn.recipients, ['s@sender.example']);
  const { top, parts, boundary } = parseDsn(dsn.body);
  assert.ok(!ORIGINAL.includes(boundary));
  assert.equal(get(top.headers, 'From'), 'MAILER-DAEMON@mx.postern.example');
  assert.equal(get(top.headers, 'To'), '<s@sender.example>');
  assert.equal(get(top.headers, 'Subject'), 'Undelivered Mail Returned to Sender');
  assert.equal(get(top.headers, 'Date'), 'Sat, 03 Jan 2026 01:02:03 +0000');
  assert.match(get(top.headers, 'Message-ID')!, /^<[^<>@\s]+@mx\.postern\.example>$/);
  assert.equal(get(top.headers, 'Auto-Submitted'), 'auto-replied');
  assert.equal(get(top.headers, 'MIME-Version'), '1.0');

  assert.equal(parts.length, 3);
  assert.match(get(parts[0]!.headers, 'Content-Type')!, /^text\/plain; charset=us-ascii$/);
  const human = parts[0]!.body.toString('latin1');
  assert.match(human, /<r@dest\.example>: failed: 550 5\.1\.1 user unknown/);
  assert.match(human, /<t@dest\.example>: failed: 552 mailbox full/);

  assert.equal(get(parts[1]!.headers, 'Content-Type'), 'message/delivery-status');
  const st = parseStatus(parts[1]!.body);
  assert.equal(get(st.perMessage, 'Reporting-MTA'), 'dns; mx.postern.example');
  assert.equal(get(st.perMessage, 'Original-Envelope-Id'), 'env-42');
  assert.equal(get(st.perMessage, 'Arrival-Date'), 'Fri, 02 Jan 2026 03:04:05 +0000');
  assert.equal(st.perRecipient.length, 2);
  const [r1, r2] = st.perRecipient as [Fields, Fields];
  assert.equal(get(r1, 'Original-Recipient'), 'rfc822; R@Dest.Example');
  assert.equal(get(r1, 'Final-Recipient'), 'rfc822; r@dest.example');
  assert.equal(get(r1, 'Action'), 'failed');
  assert.equal(get(r1, 'Status'), '5.1.1');
  assert.equal(get(r1, 'Remote-MTA'), 'dns; mx1.dest.example');
  assert.equal(get(r1, 'Diagnostic-Code'), 'smtp; 550 5.1.1 user unknown');
  assert.equal(get(r1, 'Last-Attempt-Date'), 'Sat, 03 Jan 2026 00:00:00 +0000');
  assert.equal(get(r2, 'Original-Recipient'), undefined);
  assert.equal(get(r2, 'Status'), '5.0.0', 'derived from the 5xx code');
  assert.equal(get(r2, 'Diagnostic-Code'), 'smtp; 552 mailbox full');

  // RET absent → headers only.
  assert.equal(get(parts[2]!.headers, 'Content-Type'), 'text/rfc822-headers');
  const hdrs = parts[2]!.body.toString('latin1');
  assert.match(hdrs, /^From: Sender <s@sender\.example>\r\n/);
  assert.match(hdrs, /Subject: quarterly report\r\n/);
  assert.doesNotMatch(hdrs, /SECRET/);
});

test('RET=FULL returns the whole message as message/rfc822; RET=HDRS only its headers; the cap applies', () => {
  const base = { reportingMta: 'mx.postern.example', originalBody: ORIGINAL, now: NOW, failed: [entry('r@dest.example', 550, '5.1.1', 'no', 'failed')] };
  const full = parseDsn(buildDsn({ ...base, message: message({ ret: 'FULL' }) })!.body);
  assert.equal(get(full.parts[2]!.headers, 'Content-Type'), 'message/rfc822');
  assert.deepEqual(full.parts[2]!.body, ORIGINAL);

  const hdrs = parseDsn(buildDsn({ ...base, message: message({ ret: 'HDRS' }) })!.body);
  assert.equal(get(hdrs.parts[2]!.headers, 'Content-Type'), 'text/rfc822-headers');
  assert.deepEqual(hdrs.parts[2]!.body.toString('latin1'), ORIGINAL.toString('latin1').split('\r\n\r\n')[0] + '\r\n');

  // FULL but over the cap: headers only, never a truncated message/rfc822, and the human part says so.
  const big = Buffer.concat([ORIGINAL, Buffer.from('x'.repeat(100) + '\r\n').fill(0x78, 0, 100)]);
  const capped = parseDsn(buildDsn({ ...base, originalBody: big, maxOriginalBytes: 150, message: message({ ret: 'FULL' }) })!.body);
  assert.equal(get(capped.parts[2]!.headers, 'Content-Type'), 'text/rfc822-headers');
  assert.match(capped.parts[0]!.body.toString(), /too large/);
  assert.ok(capped.parts[2]!.body.length <= 150);
  assert.match(capped.parts[2]!.body.toString(), /\r\n$/, 'cut at a line boundary');

  // Bare LF in the original becomes CRLF; 8-bit content is declared.
  const lf = Buffer.from('Subject: caf\xe9\n\nbody\n', 'latin1');
  const d = buildDsn({ ...base, originalBody: lf, message: message({ ret: 'FULL' }) })!;
  const p = parseDsn(d.body);
  assert.deepEqual(p.parts[2]!.body, Buffer.from('Subject: caf\xe9\r\n\r\nbody\r\n', 'latin1'));
  assert.equal(get(p.parts[2]!.headers, 'Content-Transfer-Encoding'), '8bit');
});

test('NOTIFY and null sender: NEVER → null, <> → null, default FAILURE,DELAY, SUCCESS only when asked', () => {
  const base = { reportingMta: 'mx.postern.example', originalBody: ORIGINAL, now: NOW };
  assert.equal(buildDsn({ ...base, message: message(), failed: [entry('r@d.example', 550, '5.1.1', 'no', 'failed', { notify: ['NEVER'] })] }), null);
  assert.equal(buildDsn({ ...base, message: message({ sender: '' }), failed: [entry('r@d.example', 550, '5.1.1', 'no', 'failed')] }), null, 'never bounce a bounce');
  assert.equal(buildDsn({ ...base, message: message(), failed: [entry('r@d.example', 550, '5.1.1', 'no', 'failed', { notify: ['SUCCESS', 'DELAY'] })] }), null);
  assert.equal(buildDsn({ ...base, message: message(), failed: [entry('r@d.example', 250, '2.0.0', 'ok', 'delivered')] }), null, 'no SUCCESS by default');
  assert.equal(buildDsn({ ...base, message: message(), failed: [] }), null);

  // Mixed: only the recipients whose NOTIFY allows it are listed.
  const dsn = buildDsn({
    ...base, message: message(), failed: [
      entry('never@d.example', 550, '5.1.1', 'no', 'failed', { notify: ['NEVER'] }),
      entry('deflt@d.example', 451, '4.4.1', 'timeout', 'delayed'),
      entry('succ@d.example', 250, '2.0.0', 'ok', 'delivered', { notify: ['success'] }),
    ],
  });
  assert.ok(dsn);
  const p = parseDsn(dsn.body);
  assert.equal(get(p.top.headers, 'Subject'), 'Delivery Status Notification (Delay)');
  const st = parseStatus(p.parts[1]!.body);
  assert.deepEqual(st.perRecipient.map((f) => [get(f, 'Final-Recipient'), get(f, 'Action'), get(f, 'Status')]), [
    ['rfc822; deflt@d.example', 'delayed', '4.4.1'],
    ['rfc822; succ@d.example', 'delivered', '2.0.0'],
  ]);
  assert.equal(get(st.perMessage, 'Original-Envelope-Id'), undefined);

  assert.equal(notifyAllows(undefined, 'failed'), true);
  assert.equal(notifyAllows(undefined, 'delayed'), true);
  assert.equal(notifyAllows(undefined, 'delivered'), false);
  assert.equal(notifyAllows(['FAILURE'], 'delayed'), false);
  assert.equal(notifyAllows(['NEVER'], 'failed'), false);
});

test('no header or field injection through reply text, ORCPT, ENVID or addresses', () => {
  const evil = 'bad\r\nX-Injected: 1\r\n\r\n--fake-boundary\r\nContent-Type: text/html\r\n\r\n<b>';
  const dsn = buildDsn({
    message: message({ envid: 'e\r\nX-Injected: 2', ret: 'FULL' }),
    reportingMta: 'mx.postern.example\r\nX-Injected: 3', originalBody: ORIGINAL, now: NOW,
    failed: [
      entry('r@dest.example', 550, '5.7.1', evil + 'x'.repeat(3000), 'failed', { orcpt: `rfc822;a@b\r\nX-Injected: 4` }),
      entry('ü@dest.example', 451, 'not-a-code\r\nX', 'temp\nfail', 'failed', {}, 'http://127.0.0.1:8080'),
    ],
  });
  assert.ok(dsn);
  const p = parseDsn(dsn.body); // would throw on a line that is neither a field nor a fold
  const text = dsn.body.toString('latin1');
  assert.doesNotMatch(text, /\r\nX-Injected/);
  assert.equal(p.parts.length, 3, 'no extra part smuggled in');
  assert.equal(get(p.top.headers, 'From'), 'MAILER-DAEMON@mx.postern.exampleX-Injected3');
  const st = parseStatus(p.parts[1]!.body);
  assert.equal(st.perRecipient.length, 2);
  const [r1, r2] = st.perRecipient as [Fields, Fields];
  assert.equal(get(st.perMessage, 'Original-Envelope-Id'), 'e X-Injected: 2');
  assert.equal(get(r1, 'Original-Recipient'), 'rfc822; a@b X-Injected: 4');
  assert.match(get(r1, 'Diagnostic-Code')!, /^smtp; 550 5\.7\.1 bad X-Injected: 1 --fake-boundary Content-Type: text\/html <b>x+$/);
  assert.ok(get(r1, 'Diagnostic-Code')!.length < 998);
  assert.equal(get(r2, 'Final-Recipient'), 'utf-8; \\x{FC}@dest.example', 'RFC 6533 utf-8-addr-xtext');
  assert.equal(get(r2, 'Status'), '4.0.0', 'invalid enhanced code ignored, derived from 451');
  assert.equal(get(r2, 'Remote-MTA'), undefined, 'a webhook origin is not an MTA');
  assert.equal(get(r2, 'Diagnostic-Code'), 'smtp; 451 temp fail');
});

test('runs of spaces in a reply never fold into lines of only whitespace: no recipient group of the server\'s making', () => {
  const pad = ' '.repeat(160);
  const evil = `user unknown${pad}Final-Recipient: rfc822; victim@example.com${pad}Action: failed${pad}Status: 5.1.1`;
  const dsn = buildDsn({ message: message(), reportingMta: 'mx.postern.example', originalBody: ORIGINAL, now: NOW, failed: [entry('r@dest.example', 550, '5.1.1', evil, 'failed')] });
  assert.ok(dsn);
  const status = parseStatus(parseDsn(dsn.body).parts[1]!.body);
  assert.equal(status.perRecipient.length, 1, 'one recipient group, the real one');
  const lines = parseDsn(dsn.body).parts[1]!.body.toString('latin1').split('\r\n');
  const blankInside = lines.slice(0, -2).filter((l, i, a) => l.trim() === '' && i > 0 && a[i - 1]!.trim() !== '' && l !== '');
  assert.deepEqual(blankInside, [], 'no line of only whitespace');
  assert.match(get(status.perRecipient[0]!, 'Diagnostic-Code')!, /user unknown Final-Recipient: rfc822; victim@example\.com Action: failed/);
});
