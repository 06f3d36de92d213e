// Outbound AUTH (RFC 4954) to a relay: PLAIN when offered, else LOGIN; only over TLS whose
// certificate verified (a test CA; expired, wrong-name and unverified certificates get no
// AUTH line at all); a 535 defers and holds those credentials back; the password never shows
// in a reply record even when the server echoes it; the credentials file re-read when it
// changes; and a real postern with AUTH as the relay, through a node with an /auth= route.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startScriptedServer, deliveryRequest, type ScriptSession } from '../helpers/scripted-server.js';
import { makeTestCa, type TestCa } from '../helpers/cert-authority.js';
import { makeCert, startTestNode } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { SmtpTransport, AUTH_HOLD_MS } from '../../src/delivery/smtp-transport.js';
import { hashPassword } from '../../src/auth/users.js';
import type { Destination, RecipientResult } from '../../src/delivery/types.js';

const TIMEOUTS = { connectMs: 2000, greetingMs: 2000, commandMs: 2000, dataInitMs: 2000, dataBlockMs: 2000, finalMs: 2000, tlsMs: 2000 };
const MSG = 'Subject: t\r\n\r\nhello\r\n';
const USER = 'relay-user';
const PASSWORD = 'S3cret:pass\u00e9';
/** The host form takes a password with blanks. */
const SPACED = 'S3cret pass word';
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/** A credentials file of mode 600 holding `text`. */
function credentials(t: TestContext, text: string, mode = 0o600): string {
  const p = join(tmpdir(t, 'postern-auth-'), 'relay.auth');
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
}

function dest(port: number, auth: string, host = 'relay.test'): Destination {
  return { kind: 'smtp', key: `smtp:${host}:${port}/tls=required/auth=${auth}`, hosts: [{ host, port, address: '127.0.0.1' }], tlsPolicy: 'required', auth };
}

function transport(t: TestContext, ca: TestCa, extra: { now?: () => number; rejectUnauthorized?: boolean } = {}): SmtpTransport {
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts: TIMEOUTS, tls: { ca: [ca.pem], ...(extra.rejectUnauthorized !== undefined ? { rejectUnauthorized: extra.rejectUnauthorized } : {}) }, ...(extra.now ? { now: extra.now } : {}) });
  t.after(() => tr.close());
  return tr;
}

/** A relay that speaks AUTH PLAIN and LOGIN over STARTTLS and takes `good` (user, password). */
async function relay(t: TestContext, tls: { cert: string; key: string }, o: { mechanisms?: string; good?: () => [string, string]; refusal?: string } = {}) {
  const logins = new Map<number, { step: 'user' | 'password'; user?: string }>();
  const ok = (u: string, p: string): boolean => {
    const [gu, gp] = o.good?.() ?? [USER, PASSWORD];
    return u === gu && p === gp;
  };
  const refusal = o.refusal ?? '535 5.7.8 Authentication credentials invalid';
  const authed = new Set<number>();
  const srv = await startScriptedServer(t, {
    tls,
    capabilities: ['PIPELINING', 'STARTTLS', 'ENHANCEDSTATUSCODES', ...(o.mechanisms === '' ? [] : [`AUTH ${o.mechanisms ?? 'LOGIN PLAIN'}`])],
    reply: (cmd: string, s: ScriptSession) => {
      const login = logins.get(s.id);
      if (login) {
        if (cmd === '*') {
          logins.delete(s.id);
          return '501 5.7.0 cancelled';
        }
        const text = Buffer.from(cmd, 'base64').toString('utf8');
        if (login.step === 'user') {
          logins.set(s.id, { step: 'password', user: text });
          return '334 UGFzc3dvcmQ6';
        }
        logins.delete(s.id);
        if (ok(login.user ?? '', text)) {
          authed.add(s.id);
          return '235 2.7.0 Authentication successful';
        }
        return refusal;
      }
      if (/^AUTH PLAIN /i.test(cmd)) {
        const [, u, p] = Buffer.from(cmd.slice(11), 'base64').toString('utf8').split('\0');
        if (ok(u ?? '', p ?? '')) {
          authed.add(s.id);
          return '235 2.7.0 Authentication successful';
        }
        return refusal;
      }
      if (/^AUTH LOGIN$/i.test(cmd)) {
        logins.set(s.id, { step: 'user' });
        return '334 VXNlcm5hbWU6';
      }
      if (cmd.startsWith('MAIL') && !authed.has(s.id)) return '530 5.7.0 Authentication required';
      return undefined;
    },
  });
  return srv;
}

const kinds = (r: RecipientResult[]): string[] => r.map((x) => x.kind);

test('PLAIN when offered (with LOGIN), after STARTTLS on a certificate the CA vouches for; the message follows', async (t) => {
  const ca = makeTestCa(t);
  const srv = await relay(t, ca.leaf('relay.test'));
  const file = credentials(t, `# the relay\n${USER}:${PASSWORD}\n`);
  const res = await transport(t, ca).deliver(dest(srv.port, file), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual(kinds(res), ['delivered'], JSON.stringify(res));
  const s = srv.sessions[0]!;
  assert.equal(s.tls, true);
  assert.deepEqual(s.commands.slice(0, 4), ['EHLO client.test', 'STARTTLS', 'EHLO client.test', `AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`]);
});

test('LOGIN when PLAIN is not offered; a host line wins over the line for every host', async (t) => {
  const ca = makeTestCa(t);
  const srv = await relay(t, ca.leaf('relay.test'), { mechanisms: 'LOGIN CRAM-MD5', good: () => [USER, SPACED] });
  const file = credentials(t, `other:wrong\nrelay.test ${USER} ${SPACED}\n`);
  const res = await transport(t, ca).deliver(dest(srv.port, file), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual(kinds(res), ['delivered']);
  assert.deepEqual(srv.sessions[0]!.commands.slice(3, 6), ['AUTH LOGIN', b64(USER), b64(SPACED)]);
});

test('535: deferred (not bounced), the password redacted from the echo, the same credentials held back, new ones tried at once', async (t) => {
  const ca = makeTestCa(t);
  // A hostile relay that echoes what it was sent.
  const echo = `535 5.7.8 no: ${b64(`\0${USER}\0wrong-password`)} wrong-password`;
  const srv = await relay(t, ca.leaf('relay.test'), { refusal: echo });
  let now = Date.now();
  const tr = transport(t, ca, { now: () => now });
  const file = credentials(t, `${USER}:wrong-password\n`);
  const first = await tr.deliver(dest(srv.port, file), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual(kinds(first), ['deferred']);
  const reply = first[0]!.reply;
  assert.equal(reply.command, 'AUTH');
  assert.equal(reply.code, 535);
  assert.equal(reply.transient, true);
  assert.ok(!reply.text.includes('wrong-password') && !reply.text.includes(b64(`\0${USER}\0wrong-password`)), reply.text);
  assert.equal(reply.text, 'no: *** ***');
  assert.equal(srv.sessions.length, 1);

  // Held: no connection at all while the hold lasts.
  const second = await tr.deliver(dest(srv.port, file), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual(kinds(second), ['deferred']);
  assert.match(second[0]!.reply.text, /refused these credentials \(535\); not offered again before/);
  assert.ok(!second[0]!.reply.text.includes('wrong-password'));
  assert.equal(srv.sessions.length, 1, 'no new connection while held');

  // The operator fixes the file: re-read (after a second), tried at once, delivered.
  writeFileSync(file, `${USER}:${PASSWORD}\n`);
  now += 1500;
  const third = await tr.deliver(dest(srv.port, file), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual(kinds(third), ['delivered']);
  assert.equal(srv.sessions.length, 2);

  // A hold ends by itself after AUTH_HOLD_MS (a fresh transport: the pooled connection above is logged in).
  const tr2 = transport(t, ca, { now: () => now });
  const wrong = credentials(t, `${USER}:wrong-password\n`);
  const n = srv.sessions.length;
  await tr2.deliver(dest(srv.port, wrong), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  await tr2.deliver(dest(srv.port, wrong), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(srv.sessions.length, n + 1);
  now += AUTH_HOLD_MS + 1;
  await tr2.deliver(dest(srv.port, wrong), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.equal(srv.sessions.length, n + 2, 'tried again once the hold is over');
});

test('no AUTH line unless TLS verified: expired, wrong-name and unverified certificates, and a relay without AUTH', async (t) => {
  const ca = makeTestCa(t);
  const file = credentials(t, `${USER}:${PASSWORD}\n`);
  const cases: Array<[string, { cert: string; key: string }, boolean | undefined, RegExp]> = [
    ['expired', ca.leaf('relay.test', { expired: true }), undefined, /certificate has expired|CERT_HAS_EXPIRED/i],
    ['wrong name', ca.leaf('other.test'), undefined, /altnames|does not match|Hostname/i],
    // The test-only switch that skips verification: the handshake passes, AUTH still refuses.
    ['self-signed, verification off', makeCert(t), false, /not authenticating: the connection is not TLS with a verified certificate/],
  ];
  for (const [name, cert, rejectUnauthorized, why] of cases) {
    const srv = await relay(t, cert);
    const res = await transport(t, ca, rejectUnauthorized === undefined ? {} : { rejectUnauthorized }).deliver(dest(srv.port, file), deliveryRequest('s@example.org', ['a@example.net'], MSG));
    assert.deepEqual(kinds(res), ['deferred'], name);
    assert.match(res[0]!.reply.text, why, `${name}: ${res[0]!.reply.text}`);
    assert.ok(srv.sessions.every((s) => !s.commands.some((c) => c.startsWith('AUTH'))), `${name}: ${JSON.stringify(srv.sessions.map((s) => s.commands))}`);
    assert.ok(!JSON.stringify(res).includes(PASSWORD));
  }
  const bare = await relay(t, ca.leaf('relay.test'), { mechanisms: '' });
  const res = await transport(t, ca).deliver(dest(bare.port, file), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual(kinds(res), ['deferred']);
  assert.equal(res[0]!.reply.enhanced, '4.7.0');
  assert.match(res[0]!.reply.text, /offers no AUTH mechanism postern uses \(PLAIN, LOGIN\)/);
  assert.ok(!bare.sessions[0]!.commands.some((c) => c.startsWith('MAIL')), 'nothing sent unauthenticated');
});

test('a host missing from the file defers without connecting', async (t) => {
  const ca = makeTestCa(t);
  const srv = await relay(t, ca.leaf('relay.test'));
  const file = credentials(t, `elsewhere.test ${USER} ${PASSWORD}\n`);
  const res = await transport(t, ca).deliver(dest(srv.port, file), deliveryRequest('s@example.org', ['a@example.net'], MSG));
  assert.deepEqual(kinds(res), ['deferred']);
  assert.match(res[0]!.reply.text, /has no entry for relay\.test:\d+/);
  assert.equal(srv.sessions.length, 0);
});

test('a real postern with AUTH as the relay, through a node with an /auth= route; start-up refusals name the setting', async (t) => {
  const ca = makeTestCa(t);
  const leaf = ca.leaf('127.0.0.1');
  const users = join(tmpdir(t, 'postern-users-'), 'users');
  writeFileSync(users, `${USER}:${await hashPassword(PASSWORD)}\n`);
  const sink = await startTestNode(t, { POSTERN_TLS_CERT: leaf.cert, POSTERN_TLS_KEY: leaf.key, POSTERN_AUTH_USERS: users, POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24', POSTERN_HOSTNAME: 'sink.test' });
  const file = credentials(t, `[127.0.0.1]:${sink.ports.smtpPort} ${USER}:${PASSWORD}\n`);
  const route = `example.net=smtp:[127.0.0.1]:${sink.ports.smtpPort}/tls=required/auth=${file}`;
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: route, POSTERN_RETRY_SCHEDULE: '200ms' }, { delivery: { pollIntervalMs: 50, trustedCa: [ca.pem] } });
  await sendMessage(node.ports.smtpPort, 's@example.org', ['a@example.net'], MSG);
  // The sink relays for nobody but authenticated clients (its trusted network is elsewhere).
  await waitFor('the relay has the message', () => sink.queue.counts().total >= 1, 15_000);
  await waitFor('the sender is empty', () => node.queue.counts().total === 0, 15_000);

  await assert.rejects(startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `example.net=smtp:[127.0.0.1]:25/auth=${file}` }), /route "example\.net" has \/auth= but its TLS is opportunistic \(POSTERN_TLS_POLICY\): AUTH needs verified TLS, add \/tls=required or \/tls=implicit/);
  const open = credentials(t, `${USER}:${PASSWORD}\n`, 0o644);
  await assert.rejects(startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `example.net=smtp:[127.0.0.1]:25/tls=required/auth=${open}` }), (err: Error) => {
    assert.match(err.message, /POSTERN_ROUTES \(route "example\.net"\): .*relay\.auth is open to group or others \(mode 0644\); chmod 600 it/);
    assert.ok(!err.message.includes(PASSWORD));
    return true;
  });
  await assert.rejects(startTestNode(t, { POSTERN_SMARTHOST: '[127.0.0.1]:2600', POSTERN_SMARTHOST_AUTH_FILE: file, POSTERN_TLS_POLICY: 'required' }), /POSTERN_SMARTHOST_AUTH_FILE: .* has no credentials for 127\.0\.0\.1:2600/);
  await assert.rejects(startTestNode(t, { POSTERN_SMARTHOST: '[127.0.0.1]:2600', POSTERN_SMARTHOST_AUTH_FILE: file }), /POSTERN_SMARTHOST_AUTH_FILE=".*" needs verified TLS to the smarthost: set POSTERN_TLS_POLICY=required, or use port 465 \(implicit TLS\) \(it is opportunistic\)/);
});
