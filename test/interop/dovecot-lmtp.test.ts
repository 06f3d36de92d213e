// The transport in LMTP mode (RFC 2033) against a real Dovecot LMTP server: every recipient's
// copy lands in its Maildir, dot-stuffing undone, with Dovecot's own trace fields. Skipped
// when dovecot-lmtpd is not installed.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliveryRequest } from '../helpers/scripted-server.js';
import { startDovecotLmtp, dovecotBinary } from '../helpers/dovecot.js';
import { SmtpTransport } from '../../src/delivery/smtp-transport.js';
import type { Destination } from '../../src/delivery/types.js';

const TIMEOUTS = { connectMs: 2000, greetingMs: 5000, commandMs: 5000, dataInitMs: 5000, dataBlockMs: 5000, finalMs: 10000, tlsMs: 2000 };

function dest(port: number): Destination {
  return { kind: 'lmtp', key: `lmtp:127.0.0.1:${port}`, hosts: [{ host: '127.0.0.1', port }], tlsPolicy: 'none' };
}

function transport(t: TestContext): SmtpTransport {
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts: TIMEOUTS });
  t.after(() => tr.close());
  return tr;
}

test('Dovecot LMTP: two recipients land in their Maildirs', { skip: dovecotBinary() ? false : 'dovecot-lmtpd not installed' }, async (t) => {
  const dc = await startDovecotLmtp(t);
  const tr = transport(t);
  const body = 'From: s@example.org\r\nTo: alice@example.net\r\nSubject: via lmtp\r\nMessage-ID: <lmtp-test@example.org>\r\n\r\n.dot line\r\nhello\r\n';
  const res = await tr.deliver(dest(dc.port), deliveryRequest('s@example.org', ['alice@example.net', 'bob@example.net'], body));
  assert.deepEqual(res.map((r) => [r.address, r.kind === 'delivered', r.reply.code]), [
    ['alice@example.net', true, 250],
    ['bob@example.net', true, 250],
  ], dc.log());
  for (const user of ['alice@example.net', 'bob@example.net']) {
    const newDir = join(dc.mailRoot, user, 'new');
    const files = readdirSync(newDir);
    assert.equal(files.length, 1, `${newDir}: ${files.join(',')}`);
    const text = readFileSync(join(newDir, files[0]!), 'utf8');
    assert.match(text, /Subject: via lmtp/);
    assert.match(text, /\n\.dot line\r?\nhello/);
    assert.match(text, /^Return-Path: <s@example\.org>/);
    assert.match(text, /with LMTP/);
  }
});
