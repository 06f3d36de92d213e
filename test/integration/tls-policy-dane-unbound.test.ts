// DANE (RFC 7672) against a real validating resolver: a zone signed in the test, served by a
// local unbound with the zone's key as trust anchor, so the AD bit postern reads is unbound's
// own validation; and data tampered with after signing, which unbound answers with SERVFAIL.
import { test } from 'node:test';
import { Resolver } from 'node:dns/promises';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { makeTestCa } from '../helpers/test-ca.js';
import { startUnbound, UNBOUND_SKIP } from '../helpers/unbound.js';
import { deliveryRequest, startScriptedServer, DEFAULT_CAPS } from '../helpers/scripted-server.js';
import { DOMAIN, MX, mxDest, transport, startStripper } from '../helpers/tls-policy-fixtures.js';
import { DaneResolver } from '../../src/delivery/dane.js';
import { applyTlsPolicy } from '../../src/delivery/tls-policy.js';
import { MxResolver, type DnsResolver } from '../../src/delivery/mx.js';
import type { Destination } from '../../src/delivery/types.js';
import type { TlsOutcome } from '../../src/delivery/tls-outcome.js';

const REQ = (): ReturnType<typeof deliveryRequest> => deliveryRequest('a@sender.test', [`b@${DOMAIN}`], 'Subject: t\r\n\r\nsecret body\r\n');
const BOGUS_DATA = 'cd'.repeat(32);

test('DANE with unbound and a signed zone: validated TLSA delivers, a stripping man in the middle is deferred, tampered data defers; CNAMEd MX and TLSA names are followed; a forged system-resolver MX is not used', { skip: UNBOUND_SKIP }, async (t) => {
  const ca = makeTestCa(t, 'not trusted by the client');
  const trusted = makeTestCa(t, 'trusted by the client');
  const c = ca.issue([MX]);
  const spki = createHash('sha256').update(new X509Certificate(c.certPem).publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
  const smtp = await startScriptedServer(t, { capabilities: [...DEFAULT_CAPS, 'STARTTLS'], tls: { cert: c.cert, key: c.key } });
  const dns = await startUnbound(t, [
    {
      origin: DOMAIN,
      records: [
        `@ IN MX 10 ${MX}.`,
        'mx IN A 127.0.0.1',
        `_25._tcp.mx IN TLSA 3 1 1 ${spki}`,
        'bogus IN MX 10 mx2.example.test.',
        'mx2 IN A 127.0.0.1',
        `_25._tcp.mx2 IN TLSA 3 1 1 ${BOGUS_DATA}`,
        // An MX host that is a CNAME: the TLSA records of the expanded name apply (§2.2.2).
        'alias IN MX 10 mx3.example.test.',
        'mx3 IN CNAME mxt',
        'mxt IN A 127.0.0.1',
        `_25._tcp.mxt IN TLSA 3 1 1 ${spki}`,
        // A TLSA name that is a CNAME (RFC 7671 §7).
        'shared IN MX 10 mx4.example.test.',
        'mx4 IN A 127.0.0.1',
        '_25._tcp.mx4 IN CNAME _dane',
        `_dane IN TLSA 3 1 1 ${spki}`,
      ],
      // The TLSA record of mx2 changed after signing: its signature no longer holds.
      tamper: (signed) => signed.split(BOGUS_DATA).join('ce'.repeat(32)),
    },
  ]);
  const dane = new DaneResolver({ server: dns, timeoutMs: 3000 });

  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane });
  assert.equal(d.kind === 'smtp' && d.tlsAuth?.type, 'tlsa', JSON.stringify(d));
  assert.deepEqual(d.kind === 'smtp' && d.tlsAuth?.tlsa?.[MX], [{ usage: 3, selector: 1, matching: 1, data: spki }]);
  const outcomes: TlsOutcome[] = [];
  const res = await transport(t, trusted, outcomes).deliver(d as Destination, REQ());
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.deepEqual(outcomes.map((o) => o.result), ['success']);

  const mitm = await startStripper(t, smtp.port);
  const d2 = await applyTlsPolicy(DOMAIN, mxDest(mitm), { sts: null, dane });
  const res2 = await transport(t, trusted, []).deliver(d2 as Destination, REQ());
  assert.equal(res2[0]!.kind, 'deferred');
  assert.equal(res2[0]!.reply.enhanced, '4.7.0');
  assert.equal(smtp.messages().length, 1, 'only the first delivery reached the server');

  for (const [domain, host] of [['alias.example.test', 'mx3.example.test'], ['shared.example.test', 'mx4.example.test']] as const) {
    const dc = await applyTlsPolicy(domain, mxDest(smtp.port, host), { sts: null, dane });
    assert.deepEqual(dc.kind === 'smtp' && dc.tlsAuth?.tlsa?.[host], [{ usage: 3, selector: 1, matching: 1, data: spki }], JSON.stringify(dc));
  }

  // Node's resolver forged the MX answer: it names the attacker's host. The validated MX set is
  // delivered to: MX (its address asked by a node Resolver, here of the same unbound), the forged
  // host dropped, REQUIRETLS mail only to MX.
  const sys = new Resolver({ timeout: 3000, tries: 1 });
  sys.setServers([`${dns.host}:${dns.port}`]);
  const mx = new MxResolver(sys as unknown as DnsResolver, { allowLoopback: true });
  const forged = await applyTlsPolicy(DOMAIN, mxDest(smtp.port, 'evil.attacker.test'), { sts: null, dane, mx }, 'yes');
  assert.deepEqual(forged.kind === 'smtp' && forged.hosts.map((h) => [h.host, h.port, h.address]), [[MX, 25, '127.0.0.1']], JSON.stringify(forged));
  assert.equal(forged.kind === 'smtp' && forged.tlsAuth?.type, 'tlsa');

  const d3 = await applyTlsPolicy('bogus.example.test', mxDest(smtp.port, 'mx2.example.test'), { sts: null, dane });
  assert.equal(d3.kind, 'defer', JSON.stringify(d3));
  assert.equal(d3.kind === 'defer' && d3.reply.enhanced, '4.7.5');
});
