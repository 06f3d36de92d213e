// MTA-STS (RFC 8461) on loopback: a policy server with a test CA (mta-sts.<domain> mapped to
// 127.0.0.1), the cache in a file, and SMTP servers with good, expired and wrong-name
// certificates, plus a man in the middle that strips STARTTLS from the EHLO reply. Under
// `enforce` postern defers (4.7.x) rather than send in plaintext or to an unverified peer;
// under `testing` it delivers and reports the failure.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestCa, type TestCa } from '../helpers/test-ca.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { deliveryRequest } from '../helpers/scripted-server.js';
import { DOMAIN, MX, ENFORCE, startPolicyServer, stsFor, mxDest, transport, smtpServer, startStripper, type PolicyServer } from '../helpers/tls-policy-fixtures.js';
import { AddressPolicy } from '../../src/delivery/address-policy.js';
import { applyTlsPolicy } from '../../src/delivery/tls-policy.js';
import type { MtaSts } from '../../src/delivery/mta-sts.js';
import type { Destination } from '../../src/delivery/types.js';
import type { TlsOutcome } from '../../src/delivery/tls-outcome.js';

const REQ = (): ReturnType<typeof deliveryRequest> => deliveryRequest('a@sender.test', [`b@${DOMAIN}`], 'Subject: t\r\n\r\nsecret body\r\n');

test('an enforce policy: fetched over verified HTTPS, cached in a file, read back after a restart without a fetch', async (t) => {
  const ca = makeTestCa(t);
  const server = await startPolicyServer(t, ca, ENFORCE);
  const dir = tmpdir(t);
  const cacheFile = join(dir, 'mta-sts-policies.json');
  const txt = { id: 'abc123' as string | null };
  const sts = stsFor(t, ca, server, txt, { cacheFile });
  const r = await sts.policyFor(DOMAIN);
  assert.equal(r.kind, 'policy');
  assert.equal(r.kind === 'policy' && r.policy.mode, 'enforce');
  assert.deepEqual(r.kind === 'policy' && r.policy.mx, [MX, '*.backup.example.test']);
  assert.equal(server.hits, 1);
  // A second call is served from the cache.
  await sts.policyFor(DOMAIN);
  assert.equal(server.hits, 1);
  await sts.flushed();
  assert.ok(existsSync(cacheFile));
  // "Restart": a new instance, the TXT record gone and the server refusing: the policy stands.
  server.respond = { status: 500, type: 'text/plain', body: 'down' };
  txt.id = null;
  const again = stsFor(t, ca, server, txt, { cacheFile });
  const r2 = await again.policyFor(DOMAIN);
  assert.equal(r2.kind, 'policy');
  assert.equal(r2.kind === 'policy' && r2.policy.mode, 'enforce');
});

test('a failed refresh never downgrades: a new TXT id with the server down keeps the cached enforce policy; a working refresh replaces it', async (t) => {
  const ca = makeTestCa(t);
  const server = await startPolicyServer(t, ca, ENFORCE);
  const txt = { id: 'one' as string | null };
  const failures: string[] = [];
  const sts = stsFor(t, ca, server, txt, { txtRecheckMs: 0, onFailure: (_d, f) => failures.push(f) });
  assert.equal((await sts.policyFor(DOMAIN)).kind, 'policy');
  txt.id = 'two';
  server.respond = { status: 503, type: 'text/plain', body: '' };
  const r = await sts.policyFor(DOMAIN); // answers from the cache, refreshes behind
  assert.equal(r.kind === 'policy' && r.policy.mode, 'enforce');
  await new Promise((res) => setTimeout(res, 300));
  assert.deepEqual(failures, ['sts-policy-fetch-error']);
  const r2 = await sts.policyFor(DOMAIN);
  assert.equal(r2.kind === 'policy' && r2.policy.mode, 'enforce', 'still enforced after the failed refresh');
  assert.equal(r2.kind === 'policy' && r2.id, 'one');
  server.respond = { status: 200, type: 'text/plain', body: 'version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 600\n' };
  await sts.policyFor(DOMAIN);
  await new Promise((res) => setTimeout(res, 300));
  const r3 = await sts.policyFor(DOMAIN);
  assert.equal(r3.kind === 'policy' && r3.policy.mode, 'testing');
  assert.equal(r3.kind === 'policy' && r3.id, 'two');
});

test('policy fetches that are refused: a redirect, a wrong content type, a body over 64 KiB, a bad policy, an untrusted certificate', async (t) => {
  const ca = makeTestCa(t);
  const server = await startPolicyServer(t, ca, ENFORCE);
  const cases: Array<[PolicyServer['respond'], string]> = [
    [{ status: 301, type: 'text/plain', body: '', location: `https://mta-sts.${DOMAIN}:${server.port}/.well-known/mta-sts.txt` }, 'sts-policy-fetch-error'],
    [{ status: 200, type: 'text/html', body: ENFORCE }, 'sts-policy-invalid'],
    [{ status: 200, type: 'text/plain', body: ENFORCE + `x: ${'y'.repeat(70_000)}\n` }, 'sts-policy-invalid'],
    [{ status: 200, type: 'text/plain', body: 'version: STSv1\nmode: enforce\nmax_age: 100\n' }, 'sts-policy-invalid'],
  ];
  for (const [respond, want] of cases) {
    server.respond = respond;
    const failures: string[] = [];
    const sts = stsFor(t, ca, server, { id: 'x1' }, { onFailure: (_d, f) => failures.push(f) });
    const r = await sts.policyFor(DOMAIN);
    assert.equal(r.kind, 'none', JSON.stringify(respond).slice(0, 80));
    assert.deepEqual(failures, [want], JSON.stringify(respond).slice(0, 80));
  }
  // The policy server's certificate from another CA: not trusted.
  server.respond = { status: 200, type: 'text/plain', body: ENFORCE };
  const other = makeTestCa(t, 'another CA');
  const failures: string[] = [];
  const sts = stsFor(t, other, server, { id: 'x1' }, { onFailure: (_d, f) => failures.push(f) });
  assert.equal((await sts.policyFor(DOMAIN)).kind, 'none');
  assert.deepEqual(failures, ['sts-webpki-invalid']);
});

test('the address policy applies to the policy fetch: a host that resolves to loopback is not connected to', async (t) => {
  const ca = makeTestCa(t);
  const server = await startPolicyServer(t, ca, ENFORCE);
  const failures: string[] = [];
  const sts = stsFor(t, ca, server, { id: 'x1' }, { policy: new AddressPolicy({ allowLoopback: false, ownAddresses: [] }), onFailure: (_d, f, detail) => failures.push(`${f} ${detail}`) });
  assert.equal((await sts.policyFor(DOMAIN)).kind, 'none');
  assert.equal(server.hits, 0);
  assert.match(failures[0] ?? '', /sts-policy-fetch-error .*no usable address/);
});

async function enforced(t: TestContext, ca: TestCa, body = ENFORCE): Promise<MtaSts> {
  const server = await startPolicyServer(t, ca, body);
  return stsFor(t, ca, server, { id: 'p1' });
}

test('enforce: a good certificate delivers over verified TLS and reports success', async (t) => {
  const ca = makeTestCa(t);
  const sts = await enforced(t, ca);
  const smtp = await smtpServer(t, ca, 'good');
  const outcomes: TlsOutcome[] = [];
  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts, dane: null });
  assert.equal(d.kind, 'smtp');
  assert.equal(d.kind === 'smtp' && d.tlsPolicy, 'required');
  const res = await transport(t, ca, outcomes).deliver(d as Destination, REQ());
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.equal(smtp.sessions[0]!.tls, true);
  assert.equal(outcomes.length, 1);
  assert.equal(outcomes[0]!.result, 'success');
  assert.equal(outcomes[0]!.policy.type, 'sts');
  assert.deepEqual(outcomes[0]!.policy.mxHosts, [MX, '*.backup.example.test']);
});

for (const [kind, failure] of [['expired', 'certificate-expired'], ['wrong-name', 'certificate-host-mismatch']] as const) {
  test(`enforce: a ${kind} certificate defers with 4.7.5 and nothing is sent; testing: delivered and reported as ${failure}`, async (t) => {
    const ca = makeTestCa(t);
    const smtp = await smtpServer(t, ca, kind);
    const outcomes: TlsOutcome[] = [];
    const sts = await enforced(t, ca);
    const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts, dane: null });
    const res = await transport(t, ca, outcomes).deliver(d as Destination, REQ());
    assert.equal(res[0]!.kind, 'deferred', JSON.stringify(res));
    assert.equal(res[0]!.reply.enhanced, '4.7.5');
    assert.equal(smtp.messages().length, 0);
    assert.ok(!smtp.sessions.some((s) => s.commands.some((c) => /^MAIL/i.test(c))), 'no MAIL was sent');
    assert.deepEqual(outcomes.map((o) => typeof o.result === 'string' ? o.result : o.result.failure), [failure]);

    const testing = await enforced(t, ca, ENFORCE.replace('enforce', 'testing'));
    const outcomes2: TlsOutcome[] = [];
    const d2 = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: testing, dane: null });
    const res2 = await transport(t, ca, outcomes2).deliver(d2 as Destination, REQ());
    assert.equal(res2[0]!.kind, 'delivered', JSON.stringify(res2));
    assert.deepEqual(outcomes2.map((o) => typeof o.result === 'string' ? o.result : o.result.failure), [failure]);
  });
}

test('enforce: a man in the middle that strips STARTTLS gets a deferral (4.7.0), never the message in plaintext', async (t) => {
  const ca = makeTestCa(t);
  const smtp = await smtpServer(t, ca, 'good');
  const mitm = await startStripper(t, smtp.port);
  const sts = await enforced(t, ca);
  const outcomes: TlsOutcome[] = [];
  const d = await applyTlsPolicy(DOMAIN, mxDest(mitm), { sts, dane: null });
  const res = await transport(t, ca, outcomes).deliver(d as Destination, REQ());
  assert.equal(res[0]!.kind, 'deferred', JSON.stringify(res));
  assert.equal(res[0]!.reply.enhanced, '4.7.0');
  assert.ok(!smtp.sessions.some((s) => s.commands.some((c) => /^(MAIL|DATA|BDAT)/i.test(c))), 'nothing of the message went through');
  assert.deepEqual(outcomes.map((o) => typeof o.result === 'string' ? o.result : o.result.failure), ['starttls-not-supported']);
  // Without a policy the same stripped path goes in clear (opportunistic): the contrast the policy makes.
  const plain = await transport(t, ca, []).deliver(mxDest(mitm), REQ());
  assert.equal(plain[0]!.kind, 'delivered');
});

test('enforce: an MX host the policy does not name is not used; none left defers with 4.7.0', async (t) => {
  const ca = makeTestCa(t);
  const sts = await enforced(t, ca);
  const d = await applyTlsPolicy(DOMAIN, mxDest(25, 'evil.attacker.test'), { sts, dane: null });
  assert.equal(d.kind, 'defer');
  assert.equal(d.kind === 'defer' && d.reply.enhanced, '4.7.0');
  // Two hosts, one named (by the wildcard): only that one is kept.
  const two: Extract<Destination, { kind: 'smtp' }> = { ...mxDest(25), hosts: [{ host: 'evil.attacker.test', port: 25, address: '127.0.0.1' }, { host: 'mx1.backup.example.test', port: 25, address: '127.0.0.1' }] };
  const d2 = await applyTlsPolicy(DOMAIN, two, { sts, dane: null });
  assert.deepEqual(d2.kind === 'smtp' && d2.hosts.map((h) => h.host), ['mx1.backup.example.test']);
});
