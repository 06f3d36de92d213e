// The transport in LMTP mode (RFC 2033): LHLO, and one reply per accepted recipient after
// the data, against the scripted server (against a real Dovecot: test/interop/dovecot-lmtp).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startScriptedServer, deliveryRequest } from '../helpers/scripted-server.js';
import { SmtpTransport } from '../../src/delivery/smtp-transport.js';
import type { Destination } from '../../src/delivery/types.js';
import type { TestContext } from 'node:test';

const TIMEOUTS = { connectMs: 2000, greetingMs: 5000, commandMs: 5000, dataInitMs: 5000, dataBlockMs: 5000, finalMs: 10000, tlsMs: 2000 };

function dest(port: number): Destination {
  return { kind: 'lmtp', key: `lmtp:127.0.0.1:${port}`, hosts: [{ host: '127.0.0.1', port }], tlsPolicy: 'none' };
}

function transport(t: TestContext): SmtpTransport {
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts: TIMEOUTS });
  t.after(() => tr.close());
  return tr;
}

test('LMTP: LHLO, and a reply per accepted recipient after the data', async (t) => {
  const srv = await startScriptedServer(t, {
    mode: 'lmtp',
    reply: (cmd, s) => {
      if (cmd.includes('<nouser@')) return '550 5.1.1 No such user';
      // Accepted: ok, full, bad (in that order); nouser was refused at RCPT. Only the first
      // message: a reply per recipient it does not have would be replies nobody asked for.
      if (cmd === '.' && s.messages.length === 1) return '250 2.0.0 <ok@example.net> saved\r\n452 4.2.2 <full@example.net> Mailbox full\r\n552 5.2.2 <bad@example.net> Quota';
      return undefined;
    },
  });
  const tr = transport(t);
  const res = await tr.deliver(dest(srv.port), deliveryRequest('s@example.org', ['ok@example.net', 'nouser@example.net', 'full@example.net', 'bad@example.net'], 'Subject: lmtp\r\n\r\nhi\r\n'));
  assert.deepEqual(
    res.map((r) => [r.address, r.kind, r.reply.code, r.reply.enhanced, r.reply.command]),
    [
      ['ok@example.net', 'delivered', 250, '2.0.0', 'END-OF-DATA'],
      ['nouser@example.net', 'failed', 550, '5.1.1', 'RCPT'],
      ['full@example.net', 'deferred', 452, '4.2.2', 'END-OF-DATA'],
      ['bad@example.net', 'failed', 552, '5.2.2', 'END-OF-DATA'],
    ],
  );
  assert.equal(srv.sessions[0]!.commands[0], 'LHLO client.test');
  // In step afterwards: a second message on the same connection.
  const again = await tr.deliver(dest(srv.port), deliveryRequest('s@example.org', ['ok@example.net'], 'x\r\n'));
  assert.equal(again[0]!.kind, 'delivered');
  assert.equal(srv.sessions.length, 1);
});

test('LMTP: a missing per-recipient reply times out as transient', async (t) => {
  const srv = await startScriptedServer(t, { mode: 'lmtp', reply: (cmd) => (cmd === '.' ? '250 2.0.0 first only' : undefined) });
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts: { ...TIMEOUTS, finalMs: 300 } });
  t.after(() => tr.close());
  const res = await tr.deliver(dest(srv.port), deliveryRequest('s@example.org', ['a@example.net', 'b@example.net'], 'x\r\n'));
  assert.deepEqual(res.map((r) => r.kind), ['delivered', 'deferred']);
});
