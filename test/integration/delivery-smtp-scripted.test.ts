// The SMTP client and transport against a scripted server: per-recipient 4xx/5xx, MX
// failover, PIPELINING on and off, the refusals made before sending (5.6.7, 5.6.3, 5.3.4),
// TLS required without STARTTLS (4.7.0), HELO fallback, RSET only after an unclean end, and
// timeouts.
import { freePort } from '../../bench/lib/proc.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startScriptedServer, deliveryRequest, DEFAULT_CAPS, type ScriptedServerOptions } from '../helpers/scripted-server.js';
import { SmtpTransport } from '../../src/delivery/smtp-transport.js';
import type { SmtpTimeouts } from '../../src/delivery/smtp-client.js';
import type { Destination, TlsPolicy } from '../../src/delivery/types.js';
import type { TestContext } from 'node:test';

const TIMEOUTS = { connectMs: 1000, greetingMs: 1000, commandMs: 1000, dataInitMs: 1000, dataBlockMs: 1000, finalMs: 1000, tlsMs: 1000 };

function dest(ports: number[], tlsPolicy: TlsPolicy = 'none'): Destination {
  return { kind: 'smtp', key: `smtp:test:${ports.join(',')}`, hosts: ports.map((port) => ({ host: '127.0.0.1', port })), tlsPolicy };
}

function transport(t: TestContext, timeouts: Partial<SmtpTimeouts> = TIMEOUTS): SmtpTransport {
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts, maxConnectionsPerDestination: 1 });
  t.after(() => tr.close());
  return tr;
}

async function server(t: TestContext, o: ScriptedServerOptions = {}) {
  return startScriptedServer(t, o);
}

/** A port with nothing listening on it. */
const deadPort = freePort;

const MSG = 'Subject: t\r\n\r\nhello\r\n';

test('PIPELINING: MAIL, every RCPT and DATA go in one write', async (t) => {
  const srv = await server(t);
  const tr = transport(t);
  const res = await tr.deliver(dest([srv.port]), deliveryRequest('s@example.org', ['a@example.net', 'b@example.net'], MSG));
  assert.deepEqual(res.map((r) => r.kind === 'delivered'), [true, true]);
  const s = srv.sessions[0]!;
  const batch = s.batches.find((b) => b[0]!.startsWith('MAIL'));
  assert.deepEqual(batch, ['MAIL FROM:<s@example.org> SIZE=' + Buffer.byteLength(MSG), 'RCPT TO:<a@example.net>', 'RCPT TO:<b@example.net>', 'DATA']);
  assert.equal(srv.messages()[0]!.body.toString(), MSG);
});

test('without PIPELINING the commands go one by one', async (t) => {
  const srv = await server(t, { capabilities: ['SIZE 1000000', '8BITMIME'] });
  const tr = transport(t);
  const res = await tr.deliver(dest([srv.port]), deliveryRequest('s@example.org', ['a@example.net', 'b@example.net'], MSG));
  assert.deepEqual(res.map((r) => r.kind === 'delivered'), [true, true]);
  const s = srv.sessions[0]!;
  for (const b of s.batches) assert.equal(b.length, 1, `pipelined without PIPELINING: ${JSON.stringify(b)}`);
  assert.deepEqual(s.commands.slice(1), ['MAIL FROM:<s@example.org> SIZE=' + Buffer.byteLength(MSG), 'RCPT TO:<a@example.net>', 'RCPT TO:<b@example.net>', 'DATA']);
});

test('per-recipient 4xx and 5xx; the rest delivered; no RSET after a clean end', async (t) => {
  const srv = await server(t, {
    reply: (cmd) => {
      if (cmd.includes('<soft@')) return '450 4.2.1 Mailbox busy';
      if (cmd.includes('<hard@')) return '550-5.1.1 No such user\r\n550 5.1.1 here';
      return undefined;
    },
  });
  const tr = transport(t);
  const d = dest([srv.port]);
  const res = await tr.deliver(d, deliveryRequest('s@example.org', ['ok@example.net', 'soft@example.net', 'hard@example.net'], MSG));
  assert.deepEqual(
    res.map((r) => [r.address, r.kind, r.reply.code, r.reply.enhanced, r.reply.command]),
    [
      ['ok@example.net', 'delivered', 250, '2.0.0', 'END-OF-DATA'],
      ['soft@example.net', 'deferred', 450, '4.2.1', 'RCPT'],
      ['hard@example.net', 'failed', 550, '5.1.1', 'RCPT'],
    ],
  );
  assert.equal(res[2]!.reply.text, 'No such user here');
  assert.equal(res[2]!.reply.destination, d.key);
  await tr.deliver(d, deliveryRequest('s@example.org', ['ok@example.net'], MSG));
  assert.equal(srv.sessions.length, 1);
  assert.ok(!srv.sessions[0]!.commands.includes('RSET'));
  assert.equal(srv.messages().length, 2);
});

test('every RCPT refused: no data sent, and RSET before the next transaction', async (t) => {
  let refuse = true;
  const srv = await server(t, { reply: (cmd) => (cmd.startsWith('RCPT') && refuse ? '550 5.1.1 nobody' : undefined) });
  const tr = transport(t);
  const d = dest([srv.port]);
  const res = await tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual([res[0]!.kind, res[0]!.reply.code], ['failed', 550]);
  assert.equal(srv.messages().length, 0);
  refuse = false;
  const ok = await tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(ok[0]!.kind, 'delivered');
  const cmds = srv.sessions[0]!.commands;
  assert.equal(srv.sessions.length, 1);
  assert.equal(cmds.filter((c) => c === 'RSET').length, 1);
  assert.ok(cmds.indexOf('RSET') < cmds.lastIndexOf('DATA') && cmds.indexOf('RSET') > cmds.indexOf('DATA'));
});

test('MAIL refused with 4xx: every recipient transient; final 5xx: every recipient permanent', async (t) => {
  const srv = await server(t, { reply: (cmd) => (cmd.startsWith('MAIL') ? '452 4.3.1 Insufficient storage' : undefined) });
  const tr = transport(t);
  const res = await tr.deliver(dest([srv.port]), deliveryRequest('s@example.org', ['a@example.net', 'b@example.net'], MSG));
  assert.deepEqual(res.map((r) => [r.kind, r.reply.code, r.reply.enhanced, r.reply.command]), [
    ['deferred', 452, '4.3.1', 'MAIL'],
    ['deferred', 452, '4.3.1', 'MAIL'],
  ]);
  const srv2 = await server(t, { reply: (cmd) => (cmd === '.' ? '554 5.7.1 Spam' : undefined) });
  const res2 = await tr.deliver(dest([srv2.port]), deliveryRequest('s@example.org', ['a@example.net', 'b@example.net'], MSG));
  assert.deepEqual(res2.map((r) => [r.kind, r.reply.code, r.reply.enhanced, r.reply.command]), [
    ['failed', 554, '5.7.1', 'END-OF-DATA'],
    ['failed', 554, '5.7.1', 'END-OF-DATA'],
  ]);
});

test('MX failover: a refused connection and a 421 greeting move on to the next host', async (t) => {
  const dead = await deadPort();
  const busy = await server(t, { greeting: '421 4.3.2 busy, try later' });
  const good = await server(t);
  const tr = transport(t);
  const res = await tr.deliver(dest([dead, busy.port, good.port]), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.equal(busy.sessions.length, 1);
  assert.equal(busy.sessions[0]!.commands.length, 0);
  assert.equal(good.messages().length, 1);
});

test('every host failing: all recipients transient, the last failure recorded', async (t) => {
  const dead = await deadPort();
  const busy = await server(t, { greeting: '421 4.3.2 busy, try later' });
  const tr = transport(t);
  const res = await tr.deliver(dest([dead, busy.port]), deliveryRequest('s@example.org', ['a@example.net', 'b@example.net'], MSG));
  assert.deepEqual(res.map((r) => [r.kind, r.reply.code, r.reply.enhanced, r.reply.command]), [
    ['deferred', 421, '4.3.2', 'CONNECT'],
    ['deferred', 421, '4.3.2', 'CONNECT'],
  ]);
  const res2 = await tr.deliver(dest([dead]), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual([res2[0]!.kind, res2[0]!.reply.command, res2[0]!.reply.code], ['deferred', 'CONNECT', undefined]);
  assert.match(res2[0]!.reply.text, /ECONNREFUSED/);
});

test('no SMTPUTF8 → 5.6.7, no 8BITMIME → 5.6.3, SIZE exceeded → 5.3.4; nothing sent', async (t) => {
  const srv = await server(t, { capabilities: ['PIPELINING', 'SIZE 100', 'DSN'] });
  const tr = transport(t);
  const d = dest([srv.port]);
  const cases: Array<[Parameters<typeof deliveryRequest>, string]> = [
    [['s@example.org', ['ü@example.net'], 'x\r\n', { smtputf8: true }], '5.6.7'],
    [['s@example.org', ['a@example.net'], 'ü\r\n', { bodyType: '8BITMIME' }], '5.6.3'],
    [['s@example.org', ['a@example.net'], 'y'.repeat(101)], '5.3.4'],
  ];
  for (const [args, enhanced] of cases) {
    const res = await tr.deliver(d, deliveryRequest(...args));
    assert.equal(res[0]!.kind, 'failed');
    assert.equal(res[0]!.reply.enhanced, enhanced);
    assert.equal(res[0]!.reply.code, undefined);
  }
  assert.ok(!srv.sessions[0]!.commands.some((c) => c.startsWith('MAIL')));
  // At the limit it goes.
  const ok = await tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], 'y'.repeat(100)));
  assert.equal(ok[0]!.kind, 'delivered');
});

test('DSN parameters only when the peer offers DSN', async (t) => {
  const withDsn = await server(t);
  const without = await server(t, { capabilities: ['PIPELINING'] });
  const tr = transport(t);
  const req = () => deliveryRequest('s@example.org', [{ address: 'a@example.net', notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;a=b@example.net' }], MSG, { ret: 'FULL', envid: 'Q+1' });
  await tr.deliver(dest([withDsn.port]), req());
  await tr.deliver(dest([without.port]), req());
  const c1 = withDsn.sessions[0]!.commands;
  assert.ok(c1.includes(`MAIL FROM:<s@example.org> SIZE=${MSG.length} RET=FULL ENVID=Q+2B1`), c1.join('|'));
  assert.ok(c1.includes('RCPT TO:<a@example.net> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+3Db@example.net'), c1.join('|'));
  const c2 = without.sessions[0]!.commands;
  assert.ok(c2.includes('MAIL FROM:<s@example.org>'), c2.join('|'));
  assert.ok(c2.includes('RCPT TO:<a@example.net>'), c2.join('|'));
});

test('TLS required but STARTTLS not offered → transient 4.7.0, nothing sent', async (t) => {
  const srv = await server(t);
  const tr = transport(t);
  const res = await tr.deliver(dest([srv.port], 'required'), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual([res[0]!.kind, res[0]!.reply.enhanced, res[0]!.reply.command], ['deferred', '4.7.0', 'STARTTLS']);
  assert.deepEqual(srv.sessions[0]!.commands, ['EHLO client.test', 'QUIT']);
});

test('opportunistic TLS: a refused STARTTLS goes on in clear', async (t) => {
  const srv = await server(t, { capabilities: [...DEFAULT_CAPS, 'STARTTLS'] }); // no certificate: 502
  const tr = transport(t);
  const res = await tr.deliver(dest([srv.port], 'opportunistic'), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(res[0]!.kind, 'delivered');
  assert.equal(srv.sessions[0]!.commands[1], 'STARTTLS');
});

test('EHLO refused → HELO, and then no ESMTP parameters', async (t) => {
  const srv = await server(t, { capabilities: null });
  const tr = transport(t);
  const res = await tr.deliver(dest([srv.port]), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(res[0]!.kind, 'delivered');
  assert.deepEqual(srv.sessions[0]!.commands.slice(0, 4), ['EHLO client.test', 'HELO client.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<a@example.net>']);
});

test('timeouts: no final reply → transient for all, the connection is dropped; no greeting → transient', async (t) => {
  const srv = await server(t, { reply: (cmd) => (cmd === '.' ? null : undefined) });
  const tr = transport(t, { ...TIMEOUTS, finalMs: 300 });
  const d = dest([srv.port]);
  const t0 = Date.now();
  const res = await tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net', 'b@example.net'], MSG));
  assert.ok(Date.now() - t0 < 3000);
  assert.deepEqual(res.map((r) => [r.kind, r.reply.command]), [
    ['deferred', 'END-OF-DATA'],
    ['deferred', 'END-OF-DATA'],
  ]);
  assert.match(res[0]!.reply.text, /timeout/);
  assert.equal(tr.counts()[d.key]!.open, 0);

  const mute = await server(t, { greeting: null });
  const tr2 = transport(t, { ...TIMEOUTS, greetingMs: 300 });
  const res2 = await tr2.deliver(dest([mute.port]), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual([res2[0]!.kind, res2[0]!.reply.command], ['deferred', 'CONNECT']);
  assert.match(res2[0]!.reply.text, /timeout after 300 ms/);
});

test('a connection the peer closed while idle is not reused', async (t) => {
  const srv = await server(t);
  const tr = transport(t);
  const d = dest([srv.port]);
  assert.equal((await tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], MSG)))[0]!.kind, 'delivered');
  assert.equal(tr.counts()[d.key]!.idle, 1);
  await srv.close(); // destroys the session; nothing listens any more
  for (let i = 0; i < 50 && tr.counts()[d.key]!.idle > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(tr.counts()[d.key]!.idle, 0);
  assert.equal(tr.counts()[d.key]!.open, 0);
});

test('a destination whose MX addresses changed is dialled at the new address, not the one its pool first saw', async (t) => {
  const before = await server(t);
  const after = await server(t);
  const tr = transport(t);
  // One destination key (the MX host names), two checked answers in turn: DNS moved the host.
  const at = (port: number): Destination => ({ kind: 'smtp', key: 'smtp:mx.moved.test:25', hosts: [{ host: 'mx.moved.test', port, address: '127.0.0.1' }], tlsPolicy: 'none' });
  assert.equal((await tr.deliver(at(before.port), deliveryRequest('s@example.org', ['a@example.net'], MSG)))[0]!.kind, 'delivered');
  assert.equal((await tr.deliver(at(after.port), deliveryRequest('s@example.org', ['b@example.net'], MSG)))[0]!.kind, 'delivered');
  assert.equal(before.messages().length, 1, 'the first message went to the first address');
  assert.equal(after.messages().length, 1, 'the second went to the address of the new answer, not over the idle connection to the old one');
  await before.sessions[0]!.closed; // the idle connection to the old address was closed
});

test('pools of destinations with nothing open are dropped: the pool map does not grow with every MX set ever seen', async (t) => {
  const srv = await server(t);
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts: TIMEOUTS, maxConnectionsPerDestination: 1, idleTimeoutMs: 10 });
  t.after(() => tr.close());
  const at = (i: number): Destination => ({ kind: 'smtp', key: `smtp:mx${i}.many.test:25`, hosts: [{ host: `mx${i}.many.test`, port: srv.port, address: '127.0.0.1' }], tlsPolicy: 'none' });
  const n = 300; // bounded: one short session each on 127.0.0.1
  for (let i = 0; i < n; i++) {
    assert.equal((await tr.deliver(at(i), deliveryRequest('s@example.org', ['a@example.net'], MSG)))[0]!.kind, 'delivered');
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 50)); // let the idle connections time out
  }
  await new Promise((r) => setTimeout(r, 50));
  assert.equal((await tr.deliver(at(n), deliveryRequest('s@example.org', ['a@example.net'], MSG)))[0]!.kind, 'delivered');
  const pools = Object.keys(tr.counts()).length;
  assert.ok(pools < 100, `${pools} pools kept after ${n + 1} destinations`);
  assert.equal(srv.messages().length, n + 1);
});

test('BDAT LAST refused (5xx): the next transaction on the connection starts with RSET (RFC 1830: the state is not known)', async (t) => {
  let refuse = true;
  const srv = await server(t, { capabilities: [...DEFAULT_CAPS, 'CHUNKING'], reply: (cmd) => (cmd.startsWith('BDAT') && refuse ? '554 5.6.0 content refused' : undefined) });
  const tr = transport(t);
  const d = dest([srv.port]);
  const res = await tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual([res[0]!.kind, res[0]!.reply.code, res[0]!.reply.command], ['failed', 554, 'BDAT']);
  refuse = false;
  const ok = await tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(ok[0]!.kind, 'delivered');
  assert.equal(srv.sessions.length, 1, 'the connection was reused');
  const cmds = srv.sessions[0]!.commands.map((c) => c.split(' ')[0]);
  const second = cmds.lastIndexOf('MAIL');
  assert.equal(cmds[second - 1], 'RSET', cmds.join(' '));
  // A clean BDAT end needs none.
  await tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(srv.sessions[0]!.commands.filter((c) => c === 'RSET').length, 1);
});

test('opening a connection is bounded as a whole (transactionMs): a greeting and EHLO each just in time fail the open, and no further host is tried past the budget', async (t) => {
  const slow = await server(t, { reply: (cmd) => (cmd.startsWith('EHLO') ? { delayMs: 1200 } : undefined) });
  const good = await server(t);
  const tr = transport(t, { ...TIMEOUTS, commandMs: 3000, transactionMs: 1000 });
  const t0 = Date.now();
  const res = await tr.deliver(dest([slow.port, good.port]), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual([res[0]!.kind, res[0]!.reply.transient, res[0]!.reply.command], ['deferred', true, 'EHLO']);
  assert.match(res[0]!.reply.text, /connection not ready after 1000 ms.*no further host tried/);
  assert.equal(good.sessions.length, 0, 'the budget was spent on the first host');
  assert.ok(Date.now() - t0 < 2500, `${Date.now() - t0} ms`);
  // Within the budget the next host is tried as before.
  const quick = await tr.deliver(dest([await deadPort(), good.port]), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(quick[0]!.kind, 'delivered');
});
