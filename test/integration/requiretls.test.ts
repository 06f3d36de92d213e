// REQUIRETLS (RFC 8689): inbound, the EHLO keyword and the MAIL parameter only under TLS, kept
// on the record, and "TLS-Required: No" noted; outbound, a REQUIRETLS message goes only over
// verified TLS (MTA-STS, or a route with TLS required) to a server that offers REQUIRETLS and
// passes it on, else it is returned with 5.7.30; "TLS-Required: No" relaxes an enforce policy
// to reports; the report of a REQUIRETLS message returns headers only and requires TLS too.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { RawClient } from '../helpers/smtp-client.js';
import { startTestNode, makeCert } from '../helpers/node.js';
import { makeTestCa, type TestCa } from '../helpers/test-ca.js';
import { deliveryRequest } from '../helpers/scripted-server.js';
import { DOMAIN, ENFORCE, startPolicyServer, stsFor, mxDest, transport, smtpServer, startStripper } from '../helpers/tls-policy-fixtures.js';
import { applyTlsPolicy } from '../../src/delivery/tls-policy.js';
import { enqueueDsn } from '../../src/delivery/dsn.js';
import type { MtaSts } from '../../src/delivery/mta-sts.js';
import type { Destination } from '../../src/delivery/types.js';
import type { TlsOutcome } from '../../src/delivery/tls-outcome.js';

async function session(t: TestContext, node: Awaited<ReturnType<typeof startTestNode>>, tls: boolean): Promise<RawClient> {
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  const e = await c.cmd('EHLO c');
  assert.ok(!e.lines.includes('REQUIRETLS'), 'REQUIRETLS is not offered in plaintext');
  if (tls) {
    assert.equal((await c.cmd('STARTTLS')).code, 220);
    await c.startTls();
    const e2 = await c.cmd('EHLO c');
    assert.ok(e2.lines.includes('REQUIRETLS'), 'REQUIRETLS is offered under TLS');
  }
  return c;
}

async function queued(c: RawClient, mail: string, body: string): Promise<string> {
  assert.equal((await c.cmd(mail)).code, 250);
  assert.equal((await c.cmd('RCPT TO:<y@example.com>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  const q = await c.cmd(`${body}\r\n.`);
  assert.equal(q.code, 250, q.text);
  return /queued as (\S+)/.exec(q.text)![1]!;
}

test('inbound: REQUIRETLS only under TLS, kept on the record; TLS-Required: No noted (and ignored beside REQUIRETLS)', async (t) => {
  const { cert, key } = makeCert(t);
  const node = await startTestNode(t, { POSTERN_TLS_CERT: cert, POSTERN_TLS_KEY: key });
  const plain = await session(t, node, false);
  const r = await plain.cmd('MAIL FROM:<a@example.com> REQUIRETLS');
  assert.equal(r.code, 555);
  const noId = await queued(plain, 'MAIL FROM:<a@example.com>', 'TLS-Required: No\r\nSubject: t\r\n\r\nx');
  assert.equal(node.queue.get(noId)!.tlsRequired, 'no');
  const c = await session(t, node, true);
  assert.equal((await c.cmd('MAIL FROM:<a@example.com> REQUIRETLS=1')).code, 555);
  const id = await queued(c, 'MAIL FROM:<a@example.com> REQUIRETLS', 'TLS-Required: No\r\nSubject: t\r\n\r\nx');
  assert.equal(node.queue.get(id)!.tlsRequired, 'yes');
  const id2 = await queued(c, 'MAIL FROM:<a@example.com>', 'Subject: t\r\n\r\nTLS-Required: No');
  assert.equal(node.queue.get(id2)!.tlsRequired, undefined, 'a field-like line in the body is not a field');
});

const REQ = (tlsRequired?: 'yes' | 'no'): ReturnType<typeof deliveryRequest> => deliveryRequest('a@sender.test', [`b@${DOMAIN}`], 'Subject: t\r\n\r\nsecret body\r\n', tlsRequired ? { tlsRequired } : {});

async function policy(t: TestContext, ca: TestCa, body = ENFORCE): Promise<MtaSts> {
  const server = await startPolicyServer(t, ca, body);
  return stsFor(t, ca, server, { id: 'p1' });
}

const failures = (o: TlsOutcome[]): string[] => o.map((x) => (typeof x.result === 'string' ? x.result : x.result.failure));

test('outbound REQUIRETLS: over verified TLS (MTA-STS, testing counts as enforce) to a server that offers it, passed on in MAIL', async (t) => {
  const ca = makeTestCa(t);
  const smtp = await smtpServer(t, ca, 'good', ['REQUIRETLS']);
  const sts = await policy(t, ca, ENFORCE.replace('enforce', 'testing'));
  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts, dane: null }, 'yes');
  assert.equal(d.kind === 'smtp' && d.tlsPolicy, 'required');
  const res = await transport(t, ca, []).deliver(d as Destination, REQ('yes'));
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.match(smtp.messages()[0]!.mailFrom, /REQUIRETLS/);
});

test('outbound REQUIRETLS: a verified server that does not offer REQUIRETLS: returned with 5.7.30, nothing sent', async (t) => {
  const ca = makeTestCa(t);
  const smtp = await smtpServer(t, ca, 'good');
  const sts = await policy(t, ca);
  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts, dane: null }, 'yes');
  const res = await transport(t, ca, []).deliver(d as Destination, REQ('yes'));
  assert.equal(res[0]!.kind, 'failed', JSON.stringify(res));
  assert.equal(res[0]!.reply.enhanced, '5.7.30');
  assert.ok(!smtp.sessions.some((s) => s.commands.some((c) => /^MAIL/i.test(c))));
});

test('outbound REQUIRETLS: no policy to authenticate the MX, or a route without required TLS: returned with 5.7.30 before any connection', async () => {
  const d = await applyTlsPolicy(DOMAIN, mxDest(25), { sts: null, dane: null }, 'yes');
  assert.equal(d.kind, 'bounce');
  assert.equal(d.kind === 'bounce' && d.reply.enhanced, '5.7.30');
  const route: Extract<Destination, { kind: 'smtp' }> = { kind: 'smtp', key: 'smtp:127.0.0.1:25', hosts: [{ host: '127.0.0.1', port: 25 }], tlsPolicy: 'opportunistic' };
  const r2 = await applyTlsPolicy(DOMAIN, route, { sts: null, dane: null }, 'yes');
  assert.equal(r2.kind === 'bounce' && r2.reply.enhanced, '5.7.30');
  const r3 = await applyTlsPolicy(DOMAIN, { ...route, tlsPolicy: 'required' }, { sts: null, dane: null }, 'yes');
  assert.equal(r3.kind, 'smtp');
});

test('outbound REQUIRETLS through a STARTTLS-stripping man in the middle: deferred, never in plaintext', async (t) => {
  const ca = makeTestCa(t);
  const smtp = await smtpServer(t, ca, 'good', ['REQUIRETLS']);
  const mitm = await startStripper(t, smtp.port);
  const sts = await policy(t, ca, ENFORCE.replace('enforce', 'testing'));
  const d = await applyTlsPolicy(DOMAIN, mxDest(mitm), { sts, dane: null }, 'yes');
  const res = await transport(t, ca, []).deliver(d as Destination, REQ('yes'));
  assert.equal(res[0]!.kind, 'deferred', JSON.stringify(res));
  assert.ok(!smtp.sessions.some((s) => s.commands.some((c) => /^MAIL/i.test(c))));
});

test('TLS-Required: No under an enforce policy: a wrong-name certificate is reported, and the message delivered', async (t) => {
  const ca = makeTestCa(t);
  const smtp = await smtpServer(t, ca, 'wrong-name');
  const sts = await policy(t, ca);
  const outcomes: TlsOutcome[] = [];
  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts, dane: null }, 'no');
  const res = await transport(t, ca, outcomes).deliver(d as Destination, REQ('no'));
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.equal(smtp.sessions[0]!.tls, true, 'STARTTLS is still used');
  assert.deepEqual(failures(outcomes), ['certificate-host-mismatch']);
});

test('the report of a REQUIRETLS message: headers only even with RET=FULL, and queued with REQUIRETLS', async () => {
  const req = REQ('yes');
  const queuedEnv: Array<{ env: Record<string, unknown>; body: Buffer }> = [];
  const queue = { enqueue: async (env: Record<string, unknown>, body: Buffer) => (queuedEnv.push({ env, body }), 'X') } as unknown as Parameters<typeof enqueueDsn>[0];
  const m = { ...req.message, ret: 'FULL' as const };
  await enqueueDsn(queue, 'mx.test', m, [{ recipient: m.recipients[0]!, reply: { code: 550, enhanced: '5.7.30', text: 'no', transient: false, at: Date.now() }, action: 'failed' }] as unknown as Parameters<typeof enqueueDsn>[3], req.body);
  assert.equal(queuedEnv.length, 1);
  assert.equal(queuedEnv[0]!.env['tlsRequired'], 'yes');
  const text = queuedEnv[0]!.body.toString('latin1');
  assert.match(text, /text\/rfc822-headers/);
  assert.doesNotMatch(text, /secret body/);
});
