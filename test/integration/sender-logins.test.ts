// Sender login maps through the whole node (implicit TLS, AUTH, the filter pool's DKIM
// signer): an authenticated user may use in MAIL FROM only what POSTERN_SENDER_LOGINS gives
// it (553 5.7.1 otherwise, <> allowed), and DKIM signs only a From: the user may use, not
// another hosted domain's; the map is reloaded with the users; a bad map stops start-up and
// `postern config` naming file:line; POSTERN_DKIM_SIGN_TRUSTED=false leaves trusted mail unsigned.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { RawClient, sendMessage, type SmtpReply } from '../helpers/smtp-client.js';
import { startTestNode, makeCert } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { runCli } from '../helpers/cli.js';
import { addUser } from '../../src/auth/users.js';
import { loadKeys, dkimDnsRecord, type DkimKeySpec } from '../../src/filter/dkim/keys.js';
import type { PosternNode } from '../../src/main.js';

type T = Parameters<typeof startTestNode>[0];
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

interface Setup {
  env: Record<string, string>;
  map: string;
  resolver: (name: string) => Promise<string[][]>;
}

/** Users alice and bob, DKIM keys for example.com and example.net, and a map file. */
async function setup(t: T, map: string): Promise<Setup> {
  const dir = tmpdir(t);
  const { cert, key } = makeCert(t);
  const users = join(dir, 'users');
  await addUser(users, 'alice', 'alice pw');
  await addUser(users, 'bob', 'bob pw');
  const specs: DkimKeySpec[] = ['example.com', 'example.net'].map((domain) => ({ domain, selector: 's1', keyFile: join(dir, `${domain}.pem`) }));
  for (const s of specs) writeFileSync(s.keyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const records = new Map(loadKeys(specs).map((k) => [`${k.selector}._domainkey.${k.domain}`, dkimDnsRecord(k)]));
  const mapFile = join(dir, 'sender-logins');
  writeFileSync(mapFile, map);
  return {
    map: mapFile,
    resolver: async (name) => {
      const r = records.get(name.toLowerCase());
      if (!r) throw Object.assign(new Error(`ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
      return [[r]];
    },
    env: {
      POSTERN_TLS_CERT: cert,
      POSTERN_TLS_KEY: key,
      POSTERN_SMTPS_PORT: '0',
      POSTERN_AUTH_USERS: users,
      POSTERN_SENDER_LOGINS: mapFile,
      POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24',
      POSTERN_DKIM_KEYS: specs.map((s) => `${s.domain}:${s.selector}:${s.keyFile}`).join(','),
      POSTERN_WORKERS: '1',
    },
  };
}

async function login(node: PosternNode, t: T, user: string, password: string): Promise<RawClient> {
  const c = await RawClient.connect(node.ports.smtpsPort!, { tls: true });
  t.after(() => c.end());
  await c.read();
  await c.cmd('EHLO client.example');
  const r = await c.cmd('AUTH PLAIN ' + b64(`\0${user}\0${password}`));
  assert.equal(r.code, 235, r.text);
  return c;
}

/** One message in an open session; the queued bytes, or the refusing reply. */
async function send(node: PosternNode, c: RawClient, mailFrom: string, headerFrom: string): Promise<Buffer | SmtpReply> {
  const m = await c.cmd(`MAIL FROM:<${mailFrom}>`);
  if (m.code !== 250) return m;
  assert.equal((await c.cmd('RCPT TO:<rcpt@far.example>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  const q = await c.cmd(`From: ${headerFrom}\r\nTo: rcpt@far.example\r\nSubject: hi\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <${Date.now()}.${Math.random()}@x>\r\n\r\nHello.\r\n.`, 10_000);
  assert.equal(q.code, 250, q.text);
  const id = /queued as (\S+)/.exec(q.text)![1]!;
  return node.queue.withBody(id, (b) => Buffer.from(b));
}

const MAP = 'alice@example.com  alice\n@example.net       bob\n';

test('MAIL FROM: a user may use only what the map gives it (553 5.7.1); <> is allowed; other users and domains refused', async (t) => {
  const s = await setup(t, MAP);
  const node = await startTestNode(t, s.env);
  const alice = await login(node, t, 'alice', 'alice pw');
  for (const other of ['bob@example.net', 'other@example.com', 'alice@example.org']) {
    const r = await alice.cmd(`MAIL FROM:<${other}>`);
    assert.equal(r.code, 553, `${other}: ${r.text}`);
    assert.match(r.text, /^5\.7\.1 Sender address not owned by user alice/);
  }
  assert.equal((await alice.cmd('MAIL FROM:<Alice@Example.COM>')).code, 250);
  assert.equal((await alice.cmd('RSET')).code, 250);
  assert.equal((await alice.cmd('MAIL FROM:<>')).code, 250, 'the null sender (MDNs, RFC 8098)');
  const bob = await login(node, t, 'bob', 'bob pw');
  assert.equal((await bob.cmd('MAIL FROM:<anyone@example.net>')).code, 250);
  // Unauthenticated clients are not held to the map (inbound mail from the world).
  const anon = await RawClient.connect(node.ports.smtpPort);
  t.after(() => anon.end());
  await anon.read();
  await anon.cmd('EHLO c');
  assert.equal((await anon.cmd('MAIL FROM:<alice@example.com>')).code, 250);
});

test('DKIM signs a From the user may use, not another hosted domain nor another address of its own domain', async (t) => {
  const s = await setup(t, MAP);
  const node = await startTestNode(t, s.env);
  const alice = await login(node, t, 'alice', 'alice pw');
  const own = await send(node, alice, 'alice@example.com', 'Alice <alice@example.com>');
  assert.ok(Buffer.isBuffer(own));
  assert.match(own.toString('latin1'), /\r\nDKIM-Signature: v=1; a=ed25519-sha256;[^]*d=example\.com;/);
  const v = await dkimVerify(own, { resolver: s.resolver });
  assert.equal(v.results[0]!.status.result, 'pass', v.results[0]!.info);
  for (const from of ['Boss <ceo@example.net>', 'Other <other@example.com>']) {
    const body = await send(node, alice, 'alice@example.com', from);
    assert.ok(Buffer.isBuffer(body));
    assert.doesNotMatch(body.toString('latin1'), /DKIM-Signature/, `${from} must not be signed for alice`);
  }
  const bob = await login(node, t, 'bob', 'bob pw');
  const net = await send(node, bob, 'bob@example.net', 'anyone@example.net');
  assert.ok(Buffer.isBuffer(net));
  assert.match(net.toString('latin1'), /d=example\.net;/);
  const notBobs = await send(node, bob, 'bob@example.net', 'alice@example.com');
  assert.ok(Buffer.isBuffer(notBobs));
  assert.doesNotMatch(notBobs.toString('latin1'), /DKIM-Signature/);
});

test('the map is reloaded with the users file (SIGHUP); a bad map on reload keeps the running one', async (t) => {
  const s = await setup(t, MAP);
  const node = await startTestNode(t, s.env);
  const alice = await login(node, t, 'alice', 'alice pw');
  assert.equal((await alice.cmd('MAIL FROM:<alias@example.com>')).code, 553);
  writeFileSync(s.map, MAP + 'alias@example.com alice\n');
  await node.reloadUsers();
  assert.equal((await alice.cmd('MAIL FROM:<alias@example.com>')).code, 250, 'the new map applies at once, to open sessions too');
  await alice.cmd('RSET');
  writeFileSync(s.map, 'broken line\n');
  await assert.rejects(node.reloadUsers(), /sender-logins:1: "broken" is not an address/);
  assert.equal((await alice.cmd('MAIL FROM:<alias@example.com>')).code, 250);
});

test('a bad map stops start-up and `postern config` naming file:line; the map needs AUTH users', async (t) => {
  const s = await setup(t, '@example.com alice\nnot-an-address bob\n');
  await assert.rejects(startTestNode(t, s.env), /POSTERN_SENDER_LOGINS=".*sender-logins" is invalid: .*sender-logins:2: "not-an-address" is not an address/);
  const cli = await runCli(['config'], { POSTERN_AUTH_USERS: s.env.POSTERN_AUTH_USERS!, POSTERN_SENDER_LOGINS: s.map });
  assert.equal(cli.code, 78, cli.stderr);
  assert.match(cli.stderr, /sender-logins:2: "not-an-address" is not an address/);
  await assert.rejects(startTestNode(t, { POSTERN_SENDER_LOGINS: s.map }), /POSTERN_SENDER_LOGINS=".*" needs POSTERN_AUTH_USERS/);
});

test('trusted clients without AUTH are signed for any keyed From, unless POSTERN_DKIM_SIGN_TRUSTED=false', async (t) => {
  const s = await setup(t, MAP);
  for (const [signTrusted, signed] of [['true', true], ['false', false]] as const) {
    const node = await startTestNode(t, { ...s.env, POSTERN_TRUSTED_NETWORKS: '127.0.0.0/8', POSTERN_DKIM_SIGN_TRUSTED: signTrusted });
    const id = await sendMessage(node.ports.smtpPort, 'app@example.net', ['rcpt@far.example'], 'From: app@example.net\r\nSubject: x\r\n\r\nbody\r\n');
    const body = node.queue.withBody(id, (b) => b.toString('latin1'));
    assert.equal(/DKIM-Signature: [^]*d=example\.net;/.test(body), signed, `POSTERN_DKIM_SIGN_TRUSTED=${signTrusted}`);
  }
});
