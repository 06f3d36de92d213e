// The built-in dkim filter through the real Piscina pool: signs mail from trusted or
// authenticated clients, leaves other mail alone, and the composed body (Received on top)
// verifies with mailauth against keys served from memory. A key file that cannot be read in
// the worker is a tempfail, not unsigned mail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { FilterPool } from '../../src/filter/pool.js';
import type { FilterEnvelope } from '../../src/filter/messages.js';
import { loadKeys, dkimDnsRecord, type DkimKeySpec } from '../../src/filter/dkim/keys.js';
import { tmpdir } from '../helpers/tmpdir.js';

const MODULE = fileURLToPath(new URL('../../src/filter/dkim/filter.js', import.meta.url));

const MSG = 'From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: pool test\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <p1@example.com>\r\n\r\nHello  from the pool.\r\n';

function envelope(client: Partial<FilterEnvelope['client']>): FilterEnvelope {
  return { sender: 'alice@example.com', recipients: ['bob@example.org'], client: { ip: '192.0.2.7', helo: 'client.example', tls: true, trusted: false, ...client } };
}

function setup(t: import('node:test').TestContext): { specs: DkimKeySpec[]; resolver: (name: string, rr: string) => Promise<string[][]>; dir: string } {
  const dir = tmpdir(t, 'postern-dkim-pool-');
  const specs: DkimKeySpec[] = [
    { domain: 'example.com', selector: 'ed', keyFile: join(dir, 'ed.pem') },
    { domain: 'example.net', selector: 'rsa', keyFile: join(dir, 'rsa.pem') },
  ];
  writeFileSync(specs[0]!.keyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(specs[1]!.keyFile, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const records = new Map(loadKeys(specs).map((k) => [`${k.selector}._domainkey.${k.domain}`, dkimDnsRecord(k)]));
  const resolver = async (name: string): Promise<string[][]> => {
    const r = records.get(name.toLowerCase());
    if (!r) throw Object.assign(new Error(`ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return [[r]];
  };
  return { specs, resolver, dir };
}

function pool(t: import('node:test').TestContext, keys: DkimKeySpec[]): FilterPool {
  const p = new FilterPool({ workers: 1, modules: [], timeoutMs: 5000, maxQueue: 10, builtins: [{ name: 'dkim', module: MODULE, settings: { keys } }] });
  t.after(() => p.close());
  return p;
}

test('trusted and authenticated submissions are signed; the stored body verifies under Received', async (t) => {
  const { specs, resolver } = setup(t);
  const p = pool(t, specs);

  for (const [client, from, alg] of [
    [{ trusted: true }, 'alice@example.com', 'ed25519-sha256'],
    [{ authUser: 'alice' }, 'alice@mail.example.net', 'rsa-sha256'], // subdomain: the parent's key
  ] as const) {
    const msg = MSG.replace('alice@example.com', from);
    const out = await p.filter('ID1', envelope(client), 'Received: x\r\n', Buffer.from(msg));
    assert.equal(out.verdict.action, 'accept');
    const body = out.body.toString('latin1');
    assert.ok(body.startsWith('Received: x\r\nDKIM-Signature: v=1; a=' + alg), body.slice(0, 200));
    assert.ok(body.endsWith(msg));
    const r = await dkimVerify(out.body, { resolver });
    assert.equal(r.results.length, 1);
    assert.equal(r.results[0]!.status.result, 'pass', r.results[0]!.info);
    // And a changed body in transit fails.
    const tampered = await dkimVerify(Buffer.from(body.replace('Hello', 'Jello'), 'latin1'), { resolver });
    assert.notEqual(tampered.results[0]!.status.result, 'pass');
  }
});

test('not signed: untrusted unauthenticated clients, foreign From domains, no From', async (t) => {
  const { specs } = setup(t);
  const p = pool(t, specs);
  const cases: Array<[Partial<FilterEnvelope['client']>, string]> = [
    [{}, MSG],
    [{ trusted: true }, MSG.replace('alice@example.com', 'alice@example.org')],
    [{ trusted: true }, MSG.replace(/^From: .*\r\n/, '')],
    [{ trusted: true }, 'garbage without headers'],
  ];
  for (const [client, msg] of cases) {
    const out = await p.filter('ID2', envelope(client), 'Received: x\r\n', Buffer.from(msg));
    assert.equal(out.verdict.action, 'accept', out.verdict.reason);
    assert.equal(out.body.toString('latin1'), 'Received: x\r\n' + msg);
  }
});

test('a key file unreadable in the worker is a tempfail, not unsigned mail', async (t) => {
  const { specs, dir } = setup(t);
  const p = pool(t, [...specs, { domain: 'example.org', selector: 'gone', keyFile: join(dir, 'missing.pem') }]);
  const out = await p.filter('ID3', envelope({ trusted: true }), 'Received: x\r\n', Buffer.from(MSG));
  assert.equal(out.verdict.action, 'tempfail');
  assert.match(out.verdict.reason ?? '', /DKIM key example\.org:gone .*missing\.pem/);
  // Unsigned traffic (untrusted client) is not held up by it.
  assert.equal((await p.filter('ID4', envelope({}), 'Received: x\r\n', Buffer.from(MSG))).verdict.action, 'accept');
});

test('through the whole node: POSTERN_DKIM_KEYS signs a trusted submission over SMTP, and the queued bytes verify', async (t) => {
  const { startTestNode } = await import('../helpers/node.js');
  const { sendMessage } = await import('../helpers/smtp-client.js');
  const { specs, resolver } = setup(t);
  const node = await startTestNode(t, { POSTERN_DKIM_KEYS: specs.map((s) => `${s.domain}:${s.selector}:${s.keyFile}`).join(','), POSTERN_WORKERS: '1' });
  const id = await sendMessage(node.ports.smtpPort, 'alice@example.com', ['bob@example.org'], MSG);
  const stored = node.queue.withBody(id, (b) => Buffer.from(b));
  assert.match(stored.toString('latin1'), /^Received: from test\.example [^]*?\r\nDKIM-Signature: v=1; a=ed25519-sha256/);
  const r = await dkimVerify(stored, { resolver });
  assert.equal(r.results[0]!.status.result, 'pass', r.results[0]!.info);
});

test('a bad POSTERN_DKIM_KEYS stops start-up naming the variable', async (t) => {
  const { startTestNode } = await import('../helpers/node.js');
  await assert.rejects(startTestNode(t, { POSTERN_DKIM_KEYS: 'example.com:sel:/nonexistent/key.pem' }), /POSTERN_DKIM_KEYS is invalid: .*ENOENT/);
});
