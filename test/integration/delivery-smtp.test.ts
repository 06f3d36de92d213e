// The SMTP transport against a real postern node on 127.0.0.1: body bytes through
// dot-stuffing, the envelope and DSN parameters as queued, connection reuse through the
// destination pool, and STARTTLS (opportunistic and required).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestNode, makeCert } from '../helpers/node.js';
import { deliveryRequest } from '../helpers/scripted-server.js';
import { SmtpTransport } from '../../src/delivery/smtp-transport.js';
import { SmtpConnection } from '../../src/delivery/smtp-client.js';
import type { Destination, RecipientResult, TlsPolicy } from '../../src/delivery/types.js';
import { valueOf } from '../../src/lib/result.js';

const TIMEOUTS = { connectMs: 2000, greetingMs: 3000, commandMs: 3000, dataInitMs: 3000, dataBlockMs: 3000, finalMs: 5000, tlsMs: 3000 };

function dest(port: number, tlsPolicy: TlsPolicy = 'none'): Destination {
  return { kind: 'smtp', key: `smtp:127.0.0.1:${port}`, hosts: [{ host: '127.0.0.1', port }], tlsPolicy };
}

function transport(t: import('node:test').TestContext, extra: Partial<ConstructorParameters<typeof SmtpTransport>[0]> = {}): SmtpTransport {
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts: TIMEOUTS, ...extra });
  t.after(() => tr.close());
  return tr;
}

const BODY = Buffer.from(
  'From: a@example.org\r\nTo: b@example.net\r\nSubject: dots\r\n\r\n' +
    '.starts with a dot\r\n..two dots\r\n.\r\nmiddle line\r\n. space after dot\r\n' +
    ('x'.repeat(900) + '\r\n.').repeat(4) +
    '\r\n.',
  'utf8',
);

test('delivers to postern: body bytes, envelope and DSN parameters survive the trip', async (t) => {
  const node = await startTestNode(t);
  const tr = transport(t);
  const req = deliveryRequest(
    'sender@example.org',
    [{ address: 'one@example.net', notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;one+x@example.net' }, { address: 'two@example.net', notify: ['NEVER'] }],
    BODY,
    { ret: 'HDRS', envid: 'env id+1=2', bodyType: '8BITMIME' },
  );
  const results = await tr.deliver(dest(node.ports.smtpPort), req);
  assert.equal(results.length, 2);
  for (const r of results) {
    assert.equal(r.kind, 'delivered', JSON.stringify(r));
    assert.equal(r.reply.code, 250);
    // postern offers CHUNKING, so the body goes with BDAT (the DATA path is covered against servers without it).
    assert.equal(r.reply.command, 'BDAT');
    assert.equal(r.reply.enhanced, '2.0.0');
  }
  const list = node.queue.list();
  assert.equal(list.length, 1);
  const m = list[0]!;
  assert.equal(m.sender, 'sender@example.org');
  assert.deepEqual(
    m.recipients.map((r) => [r.address, r.notify, r.orcpt]),
    [
      ['one@example.net', ['SUCCESS', 'FAILURE'], 'rfc822;one+x@example.net'],
      ['two@example.net', ['NEVER'], undefined],
    ],
  );
  assert.equal(m.ret, 'HDRS');
  assert.equal(m.envid, 'env id+1=2');
  assert.equal(m.bodyType, '8BITMIME');
  // The stored body is postern's Received header followed by exactly our bytes (+ the CRLF
  // dotStuff adds to a body that does not end with one).
  const stored = node.queue.withBody(m.id, (b) => Buffer.from(b));
  assert.match(stored.subarray(0, 9).toString(), /^Received:/);
  const expected = Buffer.concat([BODY, Buffer.from('\r\n')]);
  assert.ok(stored.subarray(stored.length - expected.length).equals(expected), 'body bytes differ');
});

test('PIPELINING is offered by postern and the connection learns it', async (t) => {
  const node = await startTestNode(t);
  const r = await SmtpConnection.open({ host: '127.0.0.1', port: node.ports.smtpPort, protocol: 'smtp', heloName: 'client.test', tlsPolicy: 'none', destination: 'x', timeouts: TIMEOUTS });
  const conn = valueOf(r);
  t.after(() => conn.quit());
  assert.equal(conn.capabilities.pipelining, true);
  assert.equal(conn.capabilities.dsn, true);
  assert.equal(conn.capabilities.smtputf8, true);
  assert.ok(conn.capabilities.size! > 0);
  // Two transactions on one connection.
  for (let i = 0; i < 2; i++) {
    const res: RecipientResult[] = await conn.send(deliveryRequest('s@example.org', ['r@example.net'], `Subject: ${i}\r\n\r\nhi\r\n`));
    assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  }
  assert.equal(node.queue.list().length, 2);
  assert.equal(node.ctx.counters.connections, 1);
});

test('connection reuse: 20 messages with maxConnectionsPerDestination 2 use at most 2 connections', async (t) => {
  const node = await startTestNode(t);
  const tr = transport(t, { maxConnectionsPerDestination: 2, maxMessagesPerConnection: 100 });
  const d = dest(node.ports.smtpPort);
  const all = await Promise.all(Array.from({ length: 20 }, (_, i) => tr.deliver(d, deliveryRequest('s@example.org', [`r${i}@example.net`], `Subject: ${i}\r\n\r\nbody ${i}\r\n`))));
  for (const res of all) assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.equal(node.queue.list().length, 20);
  assert.ok(node.ctx.counters.connections <= 2, `peer saw ${node.ctx.counters.connections} connections`);
  const c = tr.counts()[d.key]!;
  assert.ok(c.opened <= 2 && c.opened >= 1, JSON.stringify(c));
  assert.equal(c.busy, 0);
  assert.equal(c.waiting, 0);
  // Sequential sends reuse the idle connection rather than opening a new one.
  await tr.deliver(d, deliveryRequest('s@example.org', ['late@example.net'], 'Subject: late\r\n\r\nx\r\n'));
  assert.equal(tr.counts()[d.key]!.opened, c.opened);
});

test('maxMessagesPerConnection: a worn-out connection is replaced', async (t) => {
  const node = await startTestNode(t);
  const tr = transport(t, { maxConnectionsPerDestination: 1, maxMessagesPerConnection: 2 });
  const d = dest(node.ports.smtpPort);
  for (let i = 0; i < 5; i++) {
    const res = await tr.deliver(d, deliveryRequest('s@example.org', ['r@example.net'], 'Subject: x\r\n\r\nx\r\n'));
    assert.equal(res[0]!.kind, 'delivered');
  }
  assert.equal(tr.counts()[d.key]!.opened, 3);
});

test('STARTTLS opportunistic: the queued message says ESMTPS', async (t) => {
  const { cert, key } = makeCert(t);
  const node = await startTestNode(t, { POSTERN_TLS_CERT: cert, POSTERN_TLS_KEY: key });
  const tr = transport(t);
  const res = await tr.deliver(dest(node.ports.smtpPort, 'opportunistic'), deliveryRequest('s@example.org', ['r@example.net'], 'Subject: tls\r\n\r\nsecret\r\n'));
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  const m = node.queue.list()[0]!;
  const head = node.queue.withBody(m.id, (b) => b.toString('latin1', 0, 400));
  assert.match(head, / with ESMTPS id /);
});

test('STARTTLS required: verified certificate fails transiently, rejectUnauthorized false delivers', async (t) => {
  const { cert, key } = makeCert(t);
  const node = await startTestNode(t, { POSTERN_TLS_CERT: cert, POSTERN_TLS_KEY: key });
  const strict = transport(t);
  const res = await strict.deliver(dest(node.ports.smtpPort, 'required'), deliveryRequest('s@example.org', ['r@example.net'], 'x\r\n'));
  assert.equal(res[0]!.kind, 'deferred');
  assert.equal(res[0]!.reply.command, 'STARTTLS');
  assert.match(res[0]!.reply.text, /TLS handshake failed/);
  assert.equal(node.queue.list().length, 0);
  const lax = transport(t, { tls: { rejectUnauthorized: false } });
  const ok = await lax.deliver(dest(node.ports.smtpPort, 'required'), deliveryRequest('s@example.org', ['r@example.net'], 'x\r\n'));
  assert.equal(ok[0]!.kind, 'delivered', JSON.stringify(ok));
  const m = node.queue.list()[0]!;
  assert.match(node.queue.withBody(m.id, (b) => b.toString('latin1', 0, 400)), / with ESMTPS id /);
});

test('SMTPUTF8 message to postern carries the SMTPUTF8 parameter', async (t) => {
  const node = await startTestNode(t);
  const tr = transport(t);
  const res = await tr.deliver(dest(node.ports.smtpPort), deliveryRequest('sénder@example.org', ['récipient@example.net'], 'Subject: ü\r\n\r\nü\r\n', { smtputf8: true, bodyType: '8BITMIME' }));
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  const m = node.queue.list()[0]!;
  assert.equal(m.smtputf8, true);
  assert.equal(m.sender, 'sénder@example.org');
  assert.equal(m.recipients[0]!.address, 'récipient@example.net');
});
