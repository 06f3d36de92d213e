// Implicit TLS (RFC 8314) for routes: TLS from the first byte to a port-465-style listener (a
// real postern's POSTERN_SMTPS_PORT on a free port, certificate from a test CA), verified
// against the route's host; a wrong-name or expired certificate, or a plaintext server, defers
// with nothing sent in clear; AUTH over it; a node with a /tls=implicit route end to end.
// The refused certificates are served by a bare TLS listener (aborted handshakes against
// postern's own implicit-TLS port are covered by smtp-tls-abort.test.ts).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { deliveryRequest } from '../helpers/scripted-server.js';
import { makeTestCa, type Leaf } from '../helpers/cert-authority.js';
import { startTestNode } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { SmtpTransport } from '../../src/delivery/smtp-transport.js';
import { hashPassword } from '../../src/auth/users.js';
import type { Destination } from '../../src/delivery/types.js';
import { applyTlsPolicy } from '../../src/delivery/tls-policy.js';

const TIMEOUTS = { connectMs: 2000, greetingMs: 2000, commandMs: 2000, dataInitMs: 2000, dataBlockMs: 2000, finalMs: 2000, tlsMs: 2000 };
const MSG = 'Subject: t\r\n\r\nhello\r\n';

/** A postern whose implicit-TLS port (a free one, standing in for 465) serves `leaf`. */
async function smtpsSink(t: TestContext, leaf: Leaf, env: Record<string, string> = {}) {
  return startTestNode(t, { POSTERN_TLS_CERT: leaf.cert, POSTERN_TLS_KEY: leaf.key, POSTERN_SMTPS_PORT: '0', POSTERN_LOCAL_DOMAINS: 'example.net', POSTERN_HOSTNAME: 'sink.test', ...env });
}

/** A bare port-465-style listener: greets inside TLS; counts the sessions that came up. */
async function tlsListener(t: TestContext, leaf: Leaf): Promise<{ port: number; greeted: number }> {
  const state = { port: 0, greeted: 0 };
  const conns = new Set<TLSSocket>();
  const srv = createTlsServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, (sock) => {
    conns.add(sock);
    state.greeted++;
    sock.on('error', () => {});
    sock.write('220 tls.test ESMTP\r\n');
  });
  srv.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  state.port = (srv.address() as AddressInfo).port;
  t.after(() => new Promise<void>((resolve) => {
    for (const c of conns) c.destroy();
    srv.close(() => resolve());
  }));
  return state;
}

function implicit(port: number, host = 'relay.test', auth?: string): Destination {
  return { kind: 'smtp', key: `smtp:${host}:${port}/tls=implicit`, hosts: [{ host, port, address: '127.0.0.1' }], tlsPolicy: 'implicit', ...(auth ? { auth } : {}) };
}

test('a route with /tls=implicit: TLS before the greeting, the certificate verified against the host name', async (t) => {
  const ca = makeTestCa(t);
  const sink = await smtpsSink(t, ca.leaf('relay.test'));
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts: TIMEOUTS, tls: { ca: [ca.pem] } });
  t.after(() => tr.close());
  const res = await tr.deliver(implicit(sink.ports.smtpsPort!), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual(res.map((r) => r.kind), ['delivered'], JSON.stringify(res));
  await waitFor('the sink has it', () => sink.queue.counts().total === 1);
});

test('a REQUIRETLS message goes over a /tls=implicit route (verified TLS from the first byte), with REQUIRETLS passed on', async (t) => {
  const ca = makeTestCa(t);
  const sink = await smtpsSink(t, ca.leaf('relay.test'));
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts: TIMEOUTS, tls: { ca: [ca.pem] } });
  t.after(() => tr.close());
  const dest = await applyTlsPolicy('example.net', implicit(sink.ports.smtpsPort!) as Extract<Destination, { kind: 'smtp' }>, { sts: null, dane: null }, 'yes');
  assert.equal(dest.kind, 'smtp', 'an implicit-TLS route may carry REQUIRETLS mail');
  const res = await tr.deliver(dest as Destination, deliveryRequest('s@example.org', ['a@example.net'], MSG, { tlsRequired: 'yes' }));
  assert.deepEqual(res.map((r) => r.kind), ['delivered'], JSON.stringify(res));
  await waitFor('the sink has it', () => sink.queue.counts().total === 1);
  assert.equal(sink.queue.list(1)[0]?.tlsRequired, 'yes', 'REQUIRETLS was on the MAIL command');
});

test('wrong name, expired, unknown CA, a plaintext server: deferred, nothing sent in clear', async (t) => {
  const ca = makeTestCa(t);
  const other = makeTestCa(t);
  const cases: Array<[string, Leaf, RegExp]> = [
    ['wrong name', ca.leaf('other.test'), /TLS handshake failed: .*(altnames|does not match)/i],
    ['expired', ca.leaf('relay.test', { expired: true }), /TLS handshake failed: certificate has expired/],
    ['another CA', other.leaf('relay.test'), /TLS handshake failed: .*(unable to (get|verify)|self.signed)/i],
  ];
  for (const [name, leaf, why] of cases) {
    const srv = await tlsListener(t, leaf);
    const tr = new SmtpTransport({ heloName: 'client.test', timeouts: TIMEOUTS, tls: { ca: [ca.pem] } });
    t.after(() => tr.close());
    const res = await tr.deliver(implicit(srv.port), deliveryRequest('s@example.org', ['a@example.net'], MSG));
    assert.deepEqual(res.map((r) => r.kind), ['deferred'], name);
    assert.match(res[0]!.reply.text, why, `${name}: ${res[0]!.reply.text}`);
    assert.equal(res[0]!.reply.transient, true);
    assert.equal(srv.greeted, 0, `${name}: no TLS session came up`);
  }
  // A server that greets in clear on the implicit port: a TLS ClientHello is all it gets.
  const got: Buffer[] = [];
  const conns = new Set<Socket>();
  const plain = createServer((sock) => {
    conns.add(sock);
    sock.on('error', () => {});
    sock.on('data', (d) => got.push(d));
    sock.write('220 plain.test ESMTP\r\n');
  });
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => {
    for (const c of conns) c.destroy();
    plain.close(() => resolve());
  }));
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts: TIMEOUTS, tls: { ca: [ca.pem] } });
  t.after(() => tr.close());
  const res = await tr.deliver(implicit((plain.address() as AddressInfo).port), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual(res.map((r) => r.kind), ['deferred']);
  assert.match(res[0]!.reply.text, /TLS handshake failed: .*wrong version number/);
  const bytes = Buffer.concat(got);
  assert.ok(bytes.length === 0 || bytes[0] === 0x16, 'at most a TLS handshake record');
  assert.ok(!bytes.includes('EHLO') && !bytes.includes('MAIL FROM'), 'no SMTP command in clear');
});

test('a node with a /tls=implicit/auth= route delivers to a postern that requires AUTH on its implicit port', async (t) => {
  const ca = makeTestCa(t);
  const users = join(tmpdir(t, 'postern-users-'), 'users');
  writeFileSync(users, `relay:${await hashPassword('pw-implicit')}\n`);
  // Relays for authenticated clients only: example.org is not its domain and 127.0.0.1 is not trusted.
  const sink = await smtpsSink(t, ca.leaf('127.0.0.1'), { POSTERN_AUTH_USERS: users, POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24', POSTERN_LOCAL_DOMAINS: '' });
  const auth = join(tmpdir(t, 'postern-auth-'), 'relay.auth');
  writeFileSync(auth, 'relay:pw-implicit\n');
  chmodSync(auth, 0o600);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `example.org=smtp:[127.0.0.1]:${sink.ports.smtpsPort}/tls=implicit/auth=${auth}`, POSTERN_RETRY_SCHEDULE: '200ms' }, { delivery: { pollIntervalMs: 50, trustedCa: [ca.pem] } });
  await sendMessage(node.ports.smtpPort, 's@example.net', ['a@example.org'], MSG);
  await waitFor('the relay has it', () => sink.queue.counts().total === 1, 15_000);
  await waitFor('the sender is empty', () => node.queue.counts().total === 0, 15_000);
});
