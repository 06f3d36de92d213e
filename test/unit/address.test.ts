import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePathArgs, decodeXtext, encodeXtext, isMailbox, hasRoutingLocalPart } from '../../src/protocol/address.js';
import { receivedHeader, protocolKeyword } from '../../src/smtp/received.js';
import { NetworkList } from '../../src/lib/networks.js';

test('paths and parameters', () => {
  const r = parsePathArgs('FROM:<a@b.example> SIZE=10 body=8bitmime SMTPUTF8', 'FROM', true);
  assert.ok(r.ok);
  assert.equal(r.value.address, 'a@b.example');
  assert.deepEqual([...r.value.params], [['SIZE', '10'], ['BODY', '8bitmime'], ['SMTPUTF8', undefined]]);
  assert.deepEqual(parsePathArgs('FROM:<a@b.example> SIZE=1 SIZE=2', 'FROM', true), { ok: false, error: 'duplicate-param' });
  assert.equal(parsePathArgs('from: <a@b.example>', 'FROM', true).ok, true, 'one space after the colon is tolerated');
  assert.equal(parsePathArgs('FROM:<>', 'FROM', true).ok, true);
  assert.equal(parsePathArgs('TO:<>', 'TO', false).ok, false);
  assert.equal(parsePathArgs('TO:<a@b.example>x', 'TO', false).ok, false);
  assert.equal(parsePathArgs('TO:<"a>b"@c.example>', 'TO', false).ok, true, '> inside a quoted local part');
  assert.equal(parsePathArgs(`TO:<${'a'.repeat(65)}@b.example>`, 'TO', false).ok, false, 'local part over 64 octets');
});

test('mailboxes', () => {
  for (const ok of ['a@b.c', 'first.last+tag@sub.example.com', '"x y"@b.c', 'a@[192.0.2.1]', 'a@[IPv6:2001:db8::1]', 'ü@exämple.com']) assert.ok(isMailbox(ok), ok);
  for (const bad of ['a', '@b.c', 'a@', 'a..b@c.d', '.a@b.c', 'a@b..c', 'a@-b.c', 'a b@c.d', 'a@[999.1.1.1]']) assert.ok(!isMailbox(bad), bad);
});

test('xtext', () => {
  assert.equal(decodeXtext('a+2Bb+3D'), 'a+b=');
  assert.equal(decodeXtext('a+2b'), undefined);
  assert.equal(decodeXtext('a=b'), undefined);
  assert.equal(encodeXtext('a+b= c'), 'a+2Bb+3D+20c');
  assert.equal(encodeXtext('é'), '+E9', 'one byte: its own code');
  assert.equal(encodeXtext('€'), '+E2+82+AC', 'beyond one byte: the UTF-8 bytes');
  for (const s of ['plain', 'a+b=c', ' \t\x7f~!', '\u00ff\u0001']) assert.equal(decodeXtext(encodeXtext(s)), s, s);
});

test('Received header and protocol keywords', () => {
  assert.equal(protocolKeyword({ esmtp: false, utf8: false }), 'SMTP');
  assert.equal(protocolKeyword({ esmtp: true, utf8: false, tls: { version: 'TLSv1.3', cipher: 'x' }, authUser: 'u' }), 'ESMTPSA');
  assert.equal(protocolKeyword({ esmtp: true, utf8: true, authUser: 'u' }), 'UTF8SMTPA');
  const h = receivedHeader({ helo: 'evil\r\nX-Injected: 1 (x)', ip: '192.0.2.1', hostname: 'mx.example', esmtp: true, utf8: false, id: 'ID1', recipient: 'r@example.com', date: new Date(Date.UTC(2026, 10, 28, 12, 0, 0)) }).toString();
  assert.equal(h, 'Received: from evil??X-Injected:?1??x? ([192.0.2.1])\r\n\tby mx.example (postern) with ESMTP id ID1\r\n\tfor <r@example.com>;\r\n\tSat, 28 Nov 2026 12:00:00 +0000\r\n');
});

test('trusted networks, IPv4-mapped addresses', () => {
  const n = new NetworkList(['127.0.0.0/8', '::1/128', '10.1.0.0/16']);
  assert.ok(n.has('127.0.0.5'));
  assert.ok(n.has('::ffff:127.0.0.1'));
  assert.ok(n.has('::1'));
  assert.ok(n.has('10.1.200.3'));
  assert.ok(!n.has('10.2.0.1'));
  assert.ok(!n.has('192.0.2.1'));
  assert.ok(!n.has(undefined));
});

test('hasRoutingLocalPart: the %-hack, bang paths and quoted @ are routing; plain and quoted names are not', () => {
  for (const a of ['victim%ext@local.example', 'ext!victim@local.example', '"v@ext"@local.example', '"v\\@ext"@local.example', '"a%b"@x.example']) {
    assert.equal(hasRoutingLocalPart(a), true, a);
  }
  for (const a of ['user@local.example', 'first.last+tag@local.example', '"quoted local"@local.example', 'postmaster']) {
    assert.equal(hasRoutingLocalPart(a), false, a);
  }
});
