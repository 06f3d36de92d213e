// Opportunistic TLS that fails (src/delivery/tls-fallback.ts): a server that offers STARTTLS
// and then breaks the handshake (garbage, a close, a reset, silence, only protocol versions we
// refuse) gets the message in clear on a second connection to the same address, counted as one
// pool connection; the next connections to it skip STARTTLS until the hold expires. Nothing
// falls back where TLS is demanded (required, MTA-STS enforce, DANE, credentials, REQUIRETLS),
// and a server that fails in clear too gets the TLS failure, with no third connection. Through
// a whole node: the /metrics counter and one log line per host per hold.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startScriptedServer, deliveryRequest, type ScriptedServerOptions, type ScriptSession } from '../helpers/scripted-server.js';
import { makeCert, startTestNode } from '../helpers/node.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { createLogger } from '../../src/log/logger.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { SmtpTransport, type SmtpTransportOptions, type TlsFallbackEvent } from '../../src/delivery/smtp-transport.js';
import { AffinityTransport } from '../../src/delivery/affinity-transport.js';
import { TLS_FALLBACK_HOLD_MS } from '../../src/delivery/tls-fallback.js';
import type { TlsOutcome } from '../../src/delivery/tls-outcome.js';
import type { Destination, TlsAuth, TlsPolicy } from '../../src/delivery/types.js';

const TIMEOUTS = { connectMs: 2000, greetingMs: 3000, commandMs: 3000, dataInitMs: 3000, dataBlockMs: 3000, finalMs: 3000, tlsMs: 1000 };
const MSG = 'Subject: t\r\n\r\nhello\r\n';
const CAPS = ['PIPELINING', '8BITMIME', 'ENHANCEDSTATUSCODES', 'STARTTLS'];
const NO_POLICY: TlsAuth = { policyDomain: 'example.net', type: 'no-policy-found', enforce: false };

function dest(port: number, tlsPolicy: TlsPolicy = 'opportunistic', extra: Partial<Extract<Destination, { kind: 'smtp' }>> = {}): Destination {
  return { kind: 'smtp', key: `smtp:mx.example.net:${port}/${tlsPolicy}`, hosts: [{ host: 'mx.example.net', port, address: '127.0.0.1' }], tlsPolicy, ...extra };
}

interface Harness {
  tr: SmtpTransport;
  events: TlsFallbackEvent[];
  outcomes: TlsOutcome[];
  clock: { now: number };
}

/** A transport that opens a new connection per message (so each delivery shows what a new connection does). */
function transport(t: TestContext, extra: Partial<SmtpTransportOptions> = {}): Harness {
  const events: TlsFallbackEvent[] = [];
  const outcomes: TlsOutcome[] = [];
  const clock = { now: Date.now() };
  const tr = new SmtpTransport({
    heloName: 'client.test',
    timeouts: TIMEOUTS,
    maxConnectionsPerDestination: 1,
    maxMessagesPerConnection: 1,
    now: () => clock.now,
    onTlsFallback: (e) => events.push(e),
    tlsOutcomes: { record: (o) => outcomes.push(o) },
    ...extra,
  });
  t.after(() => tr.close());
  return { tr, events, outcomes, clock };
}

function broken(t: TestContext, o: ScriptedServerOptions = {}) {
  return startScriptedServer(t, { capabilities: CAPS, brokenTls: 'garbage', ...o });
}

const sent = (s: ScriptSession): boolean => s.commands.some((c) => c.startsWith('MAIL'));
const starttls = (s: ScriptSession): boolean => s.commands.includes('STARTTLS');

test('a handshake answered with garbage: delivered in clear on a second connection to the same address, counted as one', async (t) => {
  const srv = await broken(t);
  const h = transport(t);
  const d = dest(srv.port, 'opportunistic', { tlsAuth: NO_POLICY });
  const res = await h.tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.equal(srv.sessions.length, 2);
  const [first, second] = srv.sessions as [ScriptSession, ScriptSession];
  assert.ok(starttls(first) && !sent(first), first.commands.join('|'));
  assert.deepEqual(second.commands.slice(0, 2), ['EHLO client.test', 'MAIL FROM:<s@example.org>']);
  assert.equal(second.tls, false);
  assert.equal(srv.messages()[0]!.body.toString(), MSG);
  // One connection for the pool, though two were made.
  assert.equal(h.tr.counts()[d.key]!.opened, 1);
  // The failed handshake is reported as before (TLS reporting), once.
  assert.deepEqual(h.outcomes.map((o) => (o.result === 'success' ? 'success' : o.result.failure)), ['validation-failure']);
  assert.equal(h.events.length, 1);
  const e = h.events[0]!;
  assert.deepEqual([e.kind, e.destination, e.host, e.port, e.address, e.heldUntil], ['retry', d.key, 'mx.example.net', srv.port, '127.0.0.1', h.clock.now + TLS_FALLBACK_HOLD_MS]);
  assert.match(e.detail!, /TLS handshake failed/);
});

test('the host is then held in clear: no STARTTLS until the hold expires, then TLS is tried again', async (t) => {
  const srv = await broken(t);
  const h = transport(t);
  const d = dest(srv.port, 'opportunistic', { tlsAuth: NO_POLICY });
  const deliver = () => h.tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal((await deliver())[0]!.kind, 'delivered');
  assert.equal(srv.sessions.length, 2);
  // Next connection (one message per connection here): straight in clear, one connection.
  h.clock.now += TLS_FALLBACK_HOLD_MS - 1000;
  assert.equal((await deliver())[0]!.kind, 'delivered');
  assert.equal(srv.sessions.length, 3);
  assert.equal(starttls(srv.sessions[2]!), false, srv.sessions[2]!.commands.join('|'));
  assert.ok(sent(srv.sessions[2]!));
  assert.deepEqual(h.events.map((e) => [e.kind, e.heldUntil !== undefined]), [['retry', true], ['clear', false]]);
  assert.equal(h.outcomes.length, 1, 'a connection held in clear reports nothing');
  // Past the hold: STARTTLS again (it fails again: retried in clear, held again, logged again).
  h.clock.now += 2000;
  assert.equal((await deliver())[0]!.kind, 'delivered');
  assert.equal(srv.sessions.length, 5);
  assert.ok(starttls(srv.sessions[3]!));
  assert.equal(starttls(srv.sessions[4]!), false);
  assert.deepEqual(h.events.map((e) => [e.kind, e.heldUntil !== undefined]), [['retry', true], ['clear', false], ['retry', true]]);
  assert.equal(h.outcomes.length, 2);
});

test('every way a handshake breaks falls back: close, reset, silence (timeout), only TLS 1.0/1.1 offered, the link cut before the EHLO over TLS', async (t) => {
  const { cert, key } = makeCert(t);
  const cases: Array<[string, ScriptedServerOptions, RegExp]> = [
    ['close', { brokenTls: 'close' }, /TLS handshake failed|closed/],
    ['reset', { brokenTls: 'reset' }, /TLS handshake failed|ECONNRESET|closed/],
    ['silent', { brokenTls: 'silent' }, /TLS handshake timeout after 1000 ms/],
    ['old protocols', { brokenTls: undefined, tls: { cert, key, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' } }, /TLS handshake failed/],
    // The handshake completes, then the link dies before the EHLO reply over TLS.
    ['cut after the handshake', { brokenTls: undefined, tls: { cert, key }, reply: (cmd, s) => (s.tls && cmd.startsWith('EHLO') ? { cut: true } : undefined) }, /connection closed by the peer/],
  ];
  for (const [name, o, why] of cases) {
    const srv = await broken(t, o);
    const h = transport(t);
    const res = await h.tr.deliver(dest(srv.port), deliveryRequest('s@example.org', ['a@example.net'], MSG));
    assert.equal(res[0]!.kind, 'delivered', `${name}: ${JSON.stringify(res)}`);
    assert.equal(srv.sessions.length, 2, name);
    assert.ok(starttls(srv.sessions[0]!) && !starttls(srv.sessions[1]!), name);
    assert.equal(h.events[0]?.kind, 'retry', name);
    assert.match(h.events[0]!.detail!, why, name);
  }
});

test('a pooled clear connection carries the next messages; at most one connection open for a cap of 1', async (t) => {
  const srv = await broken(t);
  const h = transport(t, { maxMessagesPerConnection: 100 });
  const d = dest(srv.port);
  const res = await Promise.all([1, 2, 3].map((i) => h.tr.deliver(d, deliveryRequest('s@example.org', [`r${i}@example.net`], MSG))));
  assert.deepEqual(res.map((r) => r[0]!.kind), ['delivered', 'delivered', 'delivered']);
  assert.equal(srv.sessions.length, 2, 'one broken TLS session, then one in clear for all three');
  assert.equal(srv.sessions[1]!.messages.length, 3);
  assert.equal(h.tr.counts()[d.key]!.opened, 1);
  assert.equal(h.events.length, 1);
});

test('a server that fails TLS and then fails in clear too: the TLS failure, transient; no third connection, no hold', async (t) => {
  // Even sessions are the clear retries: cut at EHLO.
  const srv = await broken(t, { reply: (cmd, s) => (s.id % 2 === 0 && cmd.startsWith('EHLO') ? { cut: true } : undefined) });
  const h = transport(t);
  const deliver = () => h.tr.deliver(dest(srv.port), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  const res = await deliver();
  assert.equal(res[0]!.kind, 'deferred');
  assert.deepEqual([res[0]!.reply.transient, res[0]!.reply.command], [true, 'STARTTLS']);
  assert.match(res[0]!.reply.text, /TLS handshake failed.*; then in clear: .*connection closed by the peer/s);
  assert.equal(srv.sessions.length, 2);
  assert.equal(h.events.length, 0);
  // Not held: the next attempt tries TLS first again (and again at most two connections).
  const again = await deliver();
  assert.equal(again[0]!.kind, 'deferred');
  assert.equal(srv.sessions.length, 4);
  assert.ok(starttls(srv.sessions[2]!));
  assert.equal(srv.messages().length, 0);
});

test('no fallback where TLS is demanded: required, MTA-STS enforce, DANE, credentials; deferred with the TLS failure, one connection', async (t) => {
  const sts: TlsAuth = { policyDomain: 'example.net', type: 'sts', enforce: true, strings: ['version: STSv1', 'mode: enforce', 'mx: mx.example.net', 'max_age: 86400'], mxHosts: ['mx.example.net'] };
  const tlsa = { 'mx.example.net': [{ usage: 3, selector: 1, matching: 1, data: 'ab'.repeat(32) }] };
  const creds = join(tmpdir(t, 'postern-fallback-'), 'relay.auth');
  writeFileSync(creds, 'user:secret\n');
  chmodSync(creds, 0o600);
  const cases: Array<[string, (port: number) => Destination]> = [
    ['a required route or site', (p) => dest(p, 'required')],
    // tls-policy.ts turns enforce into 'required'; the policy alone also stops the fallback.
    ['MTA-STS enforce', (p) => dest(p, 'required', { tlsAuth: sts })],
    ['MTA-STS enforce, opportunistic', (p) => dest(p, 'opportunistic', { tlsAuth: sts })],
    // "TLS-Required: No" makes DANE report only (enforce false): still no clear retry.
    ['DANE, not enforced', (p) => dest(p, 'opportunistic', { tlsAuth: { policyDomain: 'example.net', type: 'tlsa', enforce: false, tlsa } })],
    ['credentials', (p) => dest(p, 'opportunistic', { auth: creds })],
  ];
  for (const [name, mk] of cases) {
    const srv = await broken(t);
    const h = transport(t);
    const res = await h.tr.deliver(mk(srv.port), deliveryRequest('s@example.org', ['a@example.net'], MSG));
    assert.deepEqual([res[0]!.kind, res[0]!.reply.transient, res[0]!.reply.command], ['deferred', true, 'STARTTLS'], `${name}: ${JSON.stringify(res)}`);
    assert.match(res[0]!.reply.text, /TLS handshake failed/, name);
    assert.equal(srv.sessions.length, 1, name);
    assert.equal(h.events.length, 0, name);
  }
});

test('a host held in clear for opportunistic mail still gets STARTTLS from a delivery that demands TLS', async (t) => {
  const srv = await broken(t);
  const h = transport(t);
  assert.equal((await h.tr.deliver(dest(srv.port), deliveryRequest('s@example.org', ['a@example.net'], MSG)))[0]!.kind, 'delivered');
  const res = await h.tr.deliver(dest(srv.port, 'required'), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(res[0]!.kind, 'deferred');
  assert.equal(srv.sessions.length, 3);
  assert.ok(starttls(srv.sessions[2]!));
  assert.equal(sent(srv.sessions[2]!), false);
});

test('REQUIRETLS: never sent over a connection that fell back to clear; deferred 4.7.0, the others on it delivered', async (t) => {
  const srv = await broken(t, { capabilities: [...CAPS, 'REQUIRETLS'] });
  const h = transport(t, { maxMessagesPerConnection: 100 });
  const d = dest(srv.port);
  const res = await h.tr.deliver(d, deliveryRequest('s@example.org', ['a@example.net'], MSG, { tlsRequired: 'yes' }));
  assert.deepEqual([res[0]!.kind, res[0]!.reply.transient, res[0]!.reply.code, res[0]!.reply.enhanced, res[0]!.reply.command], ['deferred', true, 451, '4.7.0', 'MAIL'], JSON.stringify(res));
  assert.match(res[0]!.reply.text, /REQUIRETLS: TLS with mx\.example\.net failed .*TLS handshake failed.*; not sent/s);
  assert.equal(srv.sessions.some(sent), false);
  const plain = await h.tr.deliver(d, deliveryRequest('s@example.org', ['b@example.net'], MSG));
  assert.equal(plain[0]!.kind, 'delivered');
  assert.equal(srv.messages().length, 1);
});

test('delivery threads: the fallback event comes back to the main thread', async (t) => {
  const srv = await broken(t);
  const events: TlsFallbackEvent[] = [];
  const tr = new AffinityTransport({ threads: 1, smtp: { heloName: 'client.test', timeouts: TIMEOUTS, onTlsFallback: (e) => events.push(e) } });
  t.after(() => tr.close());
  const res = await tr.deliver(dest(srv.port), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(res[0]!.kind, 'delivered');
  assert.deepEqual(events.map((e) => [e.kind, e.port]), [['retry', srv.port]]);
});

test('a whole node: delivered in clear, counted on /metrics per connection, logged once per host per hold', async (t) => {
  const srv = await broken(t);
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const node = await startTestNode(t, {
    POSTERN_DELIVERY: 'routes',
    POSTERN_ROUTES: `far.test=smtp:[127.0.0.1]:${srv.port}`,
    POSTERN_HTTP_PORT: '0',
    POSTERN_DEST_MAX_MESSAGES_PER_CONNECTION: '1',
  }, { delivery: { pollIntervalMs: 50 } }, logger);
  for (let i = 0; i < 2; i++) {
    await sendMessage(node.ports.smtpPort, 'me@home.test', [`r${i}@far.test`], `Subject: ${i}\r\n\r\nhello\r\n`, 'home.test');
    await waitFor(`message ${i} delivered`, () => srv.messages().length === i + 1, 10_000);
  }
  assert.deepEqual(srv.sessions.map(starttls), [true, false, false]);
  const text = await (await fetch(`http://127.0.0.1:${node.ports.httpPort}/metrics`)).text();
  assert.match(text, /^postern_delivery_tls_fallbacks_total\{kind="retry"\} 1$/m);
  assert.match(text, /^postern_delivery_tls_fallbacks_total\{kind="clear"\} 1$/m);
  const logged = lines.filter((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('opportunistic TLS with this host failed'));
  assert.equal(logged.length, 1, JSON.stringify(lines.map((l) => l['msg'])));
  assert.equal(logged[0]!['level'], 'warn');
  assert.equal(logged[0]!['port'], srv.port);
  assert.match(String(logged[0]!['detail']), /TLS handshake failed/);
});
