// DANE (RFC 7672) on loopback. The validating resolver here is a small DNS server written in
// the test that sets the AD bit itself: postern trusts the AD bit of the resolver it is given
// (POSTERN_DNSSEC_RESOLVER, a local unbound in production), so what is tested is how it reads
// and acts on the answers, not DNSSEC validation itself. The DNS wire client is tested against
// it too: UDP, TCP after a truncated answer, hostile packets.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { createHash, X509Certificate } from 'node:crypto';
import { makeTestCa } from '../helpers/test-ca.js';
import { deliveryRequest, startScriptedServer, DEFAULT_CAPS } from '../helpers/scripted-server.js';
import { DOMAIN, MX, ENFORCE, startPolicyServer, stsFor, mxDest, transport, startStripper } from '../helpers/tls-policy-fixtures.js';
import { query, decodeAnswer, encodeQuery, TYPE, DnsWireError } from '../../src/delivery/dns-wire.js';
import { DaneResolver } from '../../src/delivery/dane.js';
import { applyTlsPolicy } from '../../src/delivery/tls-policy.js';
import { MxResolver, destinationFor, siteKey, type DestinationResult, type DnsResolver, type RoutingContext } from '../../src/delivery/mx.js';
import { parseRoutes } from '../../src/config/routes.js';
import type { Destination } from '../../src/delivery/types.js';
import type { TlsOutcome } from '../../src/delivery/tls-outcome.js';

interface Rr {
  type: number;
  ttl?: number;
  rdata: Buffer;
}
interface Zone {
  records: Map<string, Rr[]>;
  /** Names answered without AD (insecure), with SERVFAIL (bogus), or truncated over UDP. */
  insecure: Set<string>;
  bogus: Set<string>;
  truncate: Set<string>;
  /** CNAME owner → target (the CNAME record itself is in `records`, set by `cname`). */
  cnameTargets: Map<string, string>;
  queries: string[];
}

function name(n: string): Buffer {
  const parts: Buffer[] = [];
  for (const l of n.split('.')) parts.push(Buffer.from([l.length]), Buffer.from(l, 'ascii'));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

const mxRdata = (pref: number, host: string): Buffer => Buffer.concat([Buffer.from([pref >> 8, pref & 0xff]), name(host)]);
const tlsaRdata = (u: number, s: number, m: number, hex: string): Buffer => Buffer.concat([Buffer.from([u, s, m]), Buffer.from(hex, 'hex')]);

/** The answer to a query packet from the zone (no compression; the question echoed). */
function answer(zone: Zone, q: Buffer, udp: boolean): Buffer {
  const id = q.readUInt16BE(0);
  let pos = 12;
  const labels: string[] = [];
  while (q[pos]! !== 0) {
    labels.push(q.toString('latin1', pos + 1, pos + 1 + q[pos]!));
    pos += 1 + q[pos]!;
  }
  const qname = labels.join('.').toLowerCase();
  const qtype = q.readUInt16BE(pos + 1);
  const question = q.subarray(12, pos + 5);
  zone.queries.push(`${qtype}/${qname}${udp ? '' : ' tcp'}`);
  // As a recursive resolver does: a CNAME at the name is followed within the zone (bounded), the
  // answer carries the chain, and it is validated (AD) only if every name on it is.
  const chain: Array<{ owner: string; r: Rr }> = [];
  let cur = qname;
  let bogus = false;
  let secure = true;
  for (let i = 0; i < 12; i++) {
    bogus ||= zone.bogus.has(cur);
    if (zone.insecure.has(cur)) secure = false;
    const own = zone.records.get(`${qtype}/${cur}`);
    const cname = zone.records.get(`${TYPE.CNAME}/${cur}`);
    if (own || !cname || qtype === TYPE.CNAME) {
      for (const r of own ?? []) chain.push({ owner: cur, r });
      break;
    }
    chain.push({ owner: cur, r: cname[0]! });
    cur = zone.cnameTargets.get(cur)!;
  }
  const trunc = udp && zone.truncate.has(qname);
  const recs = bogus || trunc ? [] : chain;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  let flags = 0x8000 | 0x0100 | 0x0080; // QR RD RA
  if (secure && !bogus) flags |= 0x0020; // AD
  if (trunc) flags |= 0x0200;
  if (bogus) flags |= 2; // SERVFAIL
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(recs.length, 6);
  const rrs = recs.map(({ owner, r }) => {
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(r.type, 0);
    fixed.writeUInt16BE(1, 2);
    fixed.writeUInt32BE(r.ttl ?? 300, 4);
    fixed.writeUInt16BE(r.rdata.length, 8);
    return Buffer.concat([name(owner), fixed, r.rdata]);
  });
  return Buffer.concat([header, question, ...rrs]);
}

async function startDns(t: TestContext, zone: Zone): Promise<{ host: string; port: number }> {
  // One port number for UDP and TCP, as a resolver has.
  const tcp = createNetServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('error', () => {});
    s.on('data', (b: Buffer) => {
      buf = Buffer.concat([buf, b]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const a = answer(zone, buf.subarray(2, 2 + buf.readUInt16BE(0)), false);
        const len = Buffer.alloc(2);
        len.writeUInt16BE(a.length, 0);
        s.end(Buffer.concat([len, a]));
      }
    });
  });
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  const port = (tcp.address() as AddressInfo).port;
  const udp = createSocket('udp4');
  udp.on('message', (msg, rinfo) => udp.send(answer(zone, msg, true), rinfo.port, rinfo.address));
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, '127.0.0.1', () => resolve());
  });
  t.after(() => {
    udp.close();
    return new Promise<void>((resolve) => tcp.close(() => resolve()));
  });
  return { host: '127.0.0.1', port };
}

function newZone(): Zone {
  return { records: new Map(), insecure: new Set(), bogus: new Set(), truncate: new Set(), cnameTargets: new Map(), queries: [] };
}

function cname(zone: Zone, from: string, to: string): void {
  zone.records.set(`${TYPE.CNAME}/${from}`, [{ type: TYPE.CNAME, rdata: name(to) }]);
  zone.cnameTargets.set(from, to);
}

const spkiSha256 = (pem: string): string => createHash('sha256').update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
const certSha256 = (pem: string): string => createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');

const REQ = (): ReturnType<typeof deliveryRequest> => deliveryRequest('a@sender.test', [`b@${DOMAIN}`], 'Subject: t\r\n\r\nsecret body\r\n');
const results = (o: TlsOutcome[]): string[] => o.map((x) => (typeof x.result === 'string' ? x.result : x.result.failure));

test('wire client: AD read over UDP; a truncated answer is asked again over TCP; records bounded and decoded', async (t) => {
  const zone = newZone();
  zone.records.set(`${TYPE.MX}/${DOMAIN}`, [{ type: TYPE.MX, rdata: mxRdata(10, MX) }]);
  zone.records.set(`${TYPE.TLSA}/_25._tcp.${MX}`, [{ type: TYPE.TLSA, rdata: tlsaRdata(3, 1, 1, 'ab'.repeat(32)) }]);
  zone.truncate.add(`_25._tcp.${MX}`);
  zone.insecure.add('insecure.test');
  const dns = await startDns(t, zone);
  const mx = await query(dns, DOMAIN, TYPE.MX, 2000);
  assert.equal(mx.ad, true);
  assert.deepEqual(mx.answers.map((r) => [r.exchange, r.priority]), [[MX, 10]]);
  const tlsa = await query(dns, `_25._tcp.${MX}`, TYPE.TLSA, 2000);
  assert.deepEqual(tlsa.answers[0]!.tlsa, { usage: 3, selector: 1, matching: 1, data: 'ab'.repeat(32) });
  assert.deepEqual(zone.queries.slice(-2), [`${TYPE.TLSA}/_25._tcp.${MX}`, `${TYPE.TLSA}/_25._tcp.${MX} tcp`]);
  assert.equal((await query(dns, 'insecure.test', TYPE.MX, 2000)).ad, false);
});

test('wire client: hostile packets are errors, never answers', () => {
  const q = encodeQuery(7, 'a.test', TYPE.MX);
  const ok = Buffer.from(q);
  ok.writeUInt16BE(0x8180, 2);
  assert.equal(decodeAnswer(ok, 7, 'a.test', TYPE.MX).answers.length, 0);
  assert.throws(() => decodeAnswer(ok, 8, 'a.test', TYPE.MX), DnsWireError, 'another id');
  assert.throws(() => decodeAnswer(ok, 7, 'b.test', TYPE.MX), DnsWireError, 'another question');
  assert.throws(() => decodeAnswer(q, 7, 'a.test', TYPE.MX), DnsWireError, 'not a response');
  // An answer whose name is a pointer to itself (a loop) and one that points forward.
  const base = ok.subarray(0, ok.length - 11); // without the OPT record
  const loop = Buffer.concat([base, Buffer.from([0xc0, base.length, 0, 15, 0, 1, 0, 0, 0, 60, 0, 0])]);
  loop.writeUInt16BE(1, 6);
  loop.writeUInt16BE(0, 10);
  assert.throws(() => decodeAnswer(loop, 7, 'a.test', TYPE.MX), DnsWireError);
  // A CNAME whose target runs past its record's length; a good one is decoded.
  const cn = Buffer.concat([base, Buffer.from([0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 1]), name('x.test')]);
  cn.writeUInt16BE(1, 6);
  cn.writeUInt16BE(0, 10);
  assert.throws(() => decodeAnswer(cn, 7, 'a.test', TYPE.MX), /CNAME name past its record/);
  cn.writeUInt16BE(8, base.length + 10);
  assert.equal(decodeAnswer(cn, 7, 'a.test', TYPE.MX).answers[0]!.target, 'x.test');
  // 300 answers claimed: over the bound.
  const many = Buffer.from(ok);
  many.writeUInt16BE(300, 6);
  assert.throws(() => decodeAnswer(many, 7, 'a.test', TYPE.MX), /too many answers/);
  // A record whose data runs past the packet.
  const cut = Buffer.concat([ok.subarray(0, ok.length - 11), Buffer.from([0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 200, 0, 10])]);
  cut.writeUInt16BE(1, 6);
  cut.writeUInt16BE(0, 10);
  assert.throws(() => decodeAnswer(cut, 7, 'a.test', TYPE.MX), DnsWireError);
});

async function daneSetup(t: TestContext, tlsa: (certPem: string, caPem: string) => Buffer[], o: { names?: string[]; expired?: boolean; withChain?: boolean } = {}) {
  // The SMTP server's certificate comes from a CA the transport does not trust: only DANE can vouch for it.
  const ca = makeTestCa(t, 'unrelated CA');
  const trusted = makeTestCa(t, 'the only trusted CA');
  const c = ca.issue(o.names ?? [MX], { expired: o.expired ?? false, withChain: o.withChain ?? false });
  const smtp = await startScriptedServer(t, { capabilities: [...DEFAULT_CAPS, 'STARTTLS'], tls: { cert: c.cert, key: c.key } });
  const zone = newZone();
  zone.records.set(`${TYPE.MX}/${DOMAIN}`, [{ type: TYPE.MX, rdata: mxRdata(10, MX) }]);
  zone.records.set(`${TYPE.TLSA}/_25._tcp.${MX}`, tlsa(c.certPem, ca.caPem).map((rdata) => ({ type: TYPE.TLSA, rdata })));
  const dns = await startDns(t, zone);
  const dane = new DaneResolver({ server: dns, timeoutMs: 2000 });
  return { smtp, zone, dane, trusted, dns, certPem: c.certPem };
}

test('DANE-EE(3 1 1): a certificate no CA vouches for, matched by its key: delivered, reported as tlsa success', async (t) => {
  const { smtp, dane, trusted } = await daneSetup(t, (pem) => [tlsaRdata(3, 1, 1, spkiSha256(pem)), tlsaRdata(1, 1, 1, 'ff'.repeat(32))]);
  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane });
  assert.equal(d.kind === 'smtp' && d.tlsAuth?.type, 'tlsa');
  assert.equal(d.kind === 'smtp' && d.tlsAuth?.tlsa?.[MX]?.length, 1, 'the PKIX-EE(1) record is not usable (RFC 7672 §3.1)');
  const outcomes: TlsOutcome[] = [];
  const res = await transport(t, trusted, outcomes).deliver(d as Destination, REQ());
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.deepEqual(results(outcomes), ['success']);
  assert.equal(outcomes[0]!.policy.type, 'tlsa');
});

test('an IDN recipient domain (SMTPUTF8, U-labels): DANE is looked up under its A-labels and applies; the wire client refuses a non-ASCII name', async (t) => {
  const { smtp, zone, dane, trusted } = await daneSetup(t, (pem) => [tlsaRdata(3, 1, 1, spkiSha256(pem))]);
  const idn = 'MÜNCHEN.example.test';
  const alabels = 'xn--mnchen-3ya.example.test';
  zone.records.set(`${TYPE.MX}/${alabels}`, [{ type: TYPE.MX, rdata: mxRdata(10, MX) }]);
  const d = await applyTlsPolicy(idn, mxDest(smtp.port), { sts: null, dane });
  assert.equal(d.kind === 'smtp' && d.tlsAuth?.type, 'tlsa', JSON.stringify(d));
  assert.equal(d.kind === 'smtp' && d.tlsAuth?.policyDomain, alabels, 'reported under the A-labels');
  assert.ok(zone.queries.includes(`${TYPE.MX}/${alabels}`), zone.queries.join(' '));
  assert.ok(!zone.queries.some((q) => /[^\x20-\x7e]|m.nchen\.example/.test(q)), `no mangled name asked: ${zone.queries.join(' ')}`);
  const outcomes: TlsOutcome[] = [];
  const res = await transport(t, trusted, outcomes).deliver(d as Destination, REQ());
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.equal(outcomes[0]!.policyDomain, alabels);
  // Before, Buffer's 'ascii' encoding turned "ü" into another byte and asked for a name that
  // does not exist (the validating resolver's NXDOMAIN then deferred the mail as 4.4.3).
  assert.throws(() => encodeQuery(1, 'münchen.example.test', TYPE.MX), DnsWireError);
  assert.throws(() => encodeQuery(1, 'a b.test', TYPE.MX), DnsWireError);
  assert.equal((await dane.lookup('[127.0.0.1]')).kind, 'none', 'not a DNS name: no DANE, no query');
  // MTA-STS (no DANE) asks for the policy record under the A-labels too.
  const ca = makeTestCa(t);
  const asked: string[] = [];
  const sts = stsFor(t, ca, await startPolicyServer(t, ca, ENFORCE), { id: null }, {
    dns: {
      resolveTxt: async (n: string) => {
        asked.push(n);
        throw Object.assign(new Error('no data'), { code: 'ENODATA' });
      },
    },
  });
  const viaSts = await applyTlsPolicy(idn, mxDest(smtp.port), { sts, dane: null });
  assert.deepEqual(asked, [`_mta-sts.${alabels}`]);
  assert.equal(viaSts.kind === 'smtp' && viaSts.tlsAuth?.policyDomain, alabels);
});

test('DANE-EE(3 0 1) ignores the name and the dates: an expired certificate for another name is delivered to', async (t) => {
  const { smtp, dane, trusted } = await daneSetup(t, (pem) => [tlsaRdata(3, 0, 1, certSha256(pem))], { names: ['other.example.net'], expired: true });
  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane });
  const res = await transport(t, trusted, []).deliver(d as Destination, REQ());
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
});

test('DANE: no TLSA record matches: deferred with 4.7.5, nothing sent; a STARTTLS-stripping man in the middle: deferred with 4.7.0', async (t) => {
  const { smtp, dane, trusted } = await daneSetup(t, () => [tlsaRdata(3, 1, 1, '00'.repeat(32))]);
  const outcomes: TlsOutcome[] = [];
  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane });
  const res = await transport(t, trusted, outcomes).deliver(d as Destination, REQ());
  assert.equal(res[0]!.kind, 'deferred');
  assert.equal(res[0]!.reply.enhanced, '4.7.5');
  assert.deepEqual(results(outcomes), ['validation-failure']);
  const mitm = await startStripper(t, smtp.port);
  const d2 = await applyTlsPolicy(DOMAIN, mxDest(mitm), { sts: null, dane });
  const res2 = await transport(t, trusted, []).deliver(d2 as Destination, REQ());
  assert.equal(res2[0]!.kind, 'deferred');
  assert.equal(res2[0]!.reply.enhanced, '4.7.0');
  assert.ok(!smtp.sessions.some((s) => s.commands.some((c) => /^(MAIL|DATA|BDAT)/i.test(c))), 'nothing of the message went through');
});

test('DANE-TA(2 0 1): the presented chain up to the anchor, and the MX name on the leaf', async (t) => {
  const good = await daneSetup(t, (_pem, caPem) => [tlsaRdata(2, 0, 1, certSha256(caPem))], { withChain: true });
  const d = await applyTlsPolicy(DOMAIN, mxDest(good.smtp.port), { sts: null, dane: good.dane });
  assert.equal((await transport(t, good.trusted, []).deliver(d as Destination, REQ()))[0]!.kind, 'delivered');
  const wrong = await daneSetup(t, (_pem, caPem) => [tlsaRdata(2, 0, 1, certSha256(caPem))], { withChain: true, names: ['other.example.net'] });
  const outcomes: TlsOutcome[] = [];
  const d2 = await applyTlsPolicy(DOMAIN, mxDest(wrong.smtp.port), { sts: null, dane: wrong.dane });
  const res = await transport(t, wrong.trusted, outcomes).deliver(d2 as Destination, REQ());
  assert.equal(res[0]!.kind, 'deferred');
  assert.deepEqual(results(outcomes), ['certificate-host-mismatch']);
});

test('DANE only on validated answers: an MX answer without AD is no DANE; a bogus (SERVFAIL) TLSA answer defers; DANE wins over MTA-STS', async (t) => {
  const { smtp, zone, dane } = await daneSetup(t, (pem) => [tlsaRdata(3, 1, 1, spkiSha256(pem))]);
  const ca = makeTestCa(t);
  const server = await startPolicyServer(t, ca, ENFORCE);
  const sts = stsFor(t, ca, server, { id: 'p1' });
  const both = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts, dane });
  assert.equal(both.kind === 'smtp' && both.tlsAuth?.type, 'tlsa');
  assert.equal(server.hits, 0, 'no MTA-STS fetch when DANE applies');

  const z2 = newZone();
  for (const [k, v] of zone.records) z2.records.set(k, v);
  z2.insecure.add(DOMAIN);
  const insecure = new DaneResolver({ server: await startDns(t, z2), timeoutMs: 2000 });
  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: insecure });
  assert.equal(d.kind === 'smtp' && d.tlsAuth?.type, 'no-policy-found');

  const z3 = newZone();
  for (const [k, v] of zone.records) z3.records.set(k, v);
  z3.bogus.add(`_25._tcp.${MX}`);
  const bogus = new DaneResolver({ server: await startDns(t, z3), timeoutMs: 2000 });
  const d3 = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: bogus });
  assert.equal(d3.kind, 'defer');
  assert.equal(d3.kind === 'defer' && d3.reply.enhanced, '4.7.5');

  // A resolver that does not answer at all: deferred too, never "no DANE".
  const silent = new DaneResolver({ server: { host: '127.0.0.1', port: 9 }, timeoutMs: 300 });
  const d4 = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: silent });
  assert.equal(d4.kind, 'defer');
});

test('DANE and REQUIRETLS: only the MX hosts with TLSA records carry the message; the others stay opportunistic for other mail', async (t) => {
  const zone = newZone();
  zone.records.set(`${TYPE.MX}/${DOMAIN}`, [{ type: TYPE.MX, rdata: mxRdata(10, MX) }, { type: TYPE.MX, rdata: mxRdata(20, 'plain.example.test') }]);
  zone.records.set(`${TYPE.TLSA}/_25._tcp.${MX}`, [{ type: TYPE.TLSA, rdata: tlsaRdata(3, 1, 1, 'ab'.repeat(32)) }]);
  const dane = new DaneResolver({ server: await startDns(t, zone), timeoutMs: 2000 });
  const two: Extract<Destination, { kind: 'smtp' }> = { ...mxDest(25), hosts: [{ host: MX, port: 25, address: '127.0.0.1' }, { host: 'plain.example.test', port: 25, address: '127.0.0.1' }] };
  const all = await applyTlsPolicy(DOMAIN, two, { sts: null, dane });
  assert.deepEqual(all.kind === 'smtp' && all.hosts.map((h) => h.host), [MX, 'plain.example.test']);
  const req = await applyTlsPolicy(DOMAIN, two, { sts: null, dane }, 'yes');
  assert.deepEqual(req.kind === 'smtp' && req.hosts.map((h) => h.host), [MX]);
});

test('DANE needs validated MX host addresses (RFC 7672 §2.2.2): insecure A/AAAA: no TLSA lookup, no DANE; bogus: deferred', async (t) => {
  const { smtp, zone, dns } = await daneSetup(t, (pem) => [tlsaRdata(3, 1, 1, spkiSha256(pem))]);
  const fresh = (): DaneResolver => new DaneResolver({ server: dns, timeoutMs: 2000 });
  zone.insecure.add(MX);
  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: fresh() });
  assert.equal(d.kind === 'smtp' && d.tlsAuth?.type, 'no-policy-found', JSON.stringify(d));
  assert.deepEqual(zone.queries.filter((q) => q.startsWith(`${TYPE.TLSA}/`)), [], 'no TLSA lookup for a host with insecure addresses');
  assert.ok(zone.queries.includes(`${TYPE.A}/${MX}`) && zone.queries.includes(`${TYPE.AAAA}/${MX}`));
  zone.insecure.delete(MX);
  zone.bogus.add(MX);
  const d2 = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: fresh() });
  assert.equal(d2.kind, 'defer', JSON.stringify(d2));
  assert.equal(d2.kind === 'defer' && d2.reply.enhanced, '4.7.5');
  zone.bogus.delete(MX);
  const d3 = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: fresh() });
  assert.equal(d3.kind === 'smtp' && d3.tlsAuth?.type, 'tlsa', 'secure addresses: DANE');
});

test('DANE with a CNAME\'d MX host (RFC 7672 §2.2.2): the expanded name\'s TLSA first, then the MX name; an insecure chain: no DANE', async (t) => {
  const TARGET = 'mx.provider.test';
  const { smtp, zone, dns, trusted, certPem } = await daneSetup(t, () => [tlsaRdata(3, 1, 1, '00'.repeat(32))]);
  const fresh = (): DaneResolver => new DaneResolver({ server: dns, timeoutMs: 2000 });
  cname(zone, MX, TARGET);
  zone.records.set(`${TYPE.A}/${TARGET}`, [{ type: TYPE.A, rdata: Buffer.from([127, 0, 0, 1]) }]);
  zone.records.set(`${TYPE.TLSA}/_25._tcp.${TARGET}`, [{ type: TYPE.TLSA, rdata: tlsaRdata(3, 1, 1, spkiSha256(certPem)) }]);
  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: fresh() });
  assert.deepEqual(d.kind === 'smtp' && d.tlsAuth?.tlsa?.[MX], [{ usage: 3, selector: 1, matching: 1, data: spkiSha256(certPem) }], JSON.stringify(d));
  const res = await transport(t, trusted, []).deliver(d as Destination, REQ());
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  // No TLSA records at the expanded name: the MX host name's records (here: not matching) apply.
  zone.records.delete(`${TYPE.TLSA}/_25._tcp.${TARGET}`);
  const d2 = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: fresh() });
  assert.deepEqual(d2.kind === 'smtp' && d2.tlsAuth?.tlsa?.[MX]?.map((r) => r.data), ['00'.repeat(32)]);
  // The target's zone is not signed: the addresses are insecure, so no DANE at all.
  zone.insecure.add(TARGET);
  const d3 = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: fresh() });
  assert.equal(d3.kind === 'smtp' && d3.tlsAuth?.type, 'no-policy-found', JSON.stringify(d3));
});

test('a TLSA name that is a CNAME (RFC 7671 §7): a validated chain gives the target\'s records; insecure: none; a loop or a long chain: deferred', async (t) => {
  const SHARED = '_dane.provider.test';
  const { smtp, zone, dns, trusted, certPem } = await daneSetup(t, () => []);
  const fresh = (): DaneResolver => new DaneResolver({ server: dns, timeoutMs: 2000 });
  zone.records.delete(`${TYPE.TLSA}/_25._tcp.${MX}`);
  cname(zone, `_25._tcp.${MX}`, SHARED);
  zone.records.set(`${TYPE.TLSA}/${SHARED}`, [{ type: TYPE.TLSA, rdata: tlsaRdata(3, 1, 1, spkiSha256(certPem)) }]);
  const d = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: fresh() });
  assert.equal(d.kind === 'smtp' && d.tlsAuth?.type, 'tlsa', JSON.stringify(d));
  assert.equal((await transport(t, trusted, []).deliver(d as Destination, REQ()))[0]!.kind, 'delivered');
  zone.insecure.add(SHARED);
  const d2 = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: fresh() });
  assert.equal(d2.kind === 'smtp' && d2.tlsAuth?.type, 'no-policy-found', JSON.stringify(d2));
  zone.insecure.delete(SHARED);
  zone.records.delete(`${TYPE.TLSA}/${SHARED}`);
  cname(zone, SHARED, `_25._tcp.${MX}`);
  const d3 = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: fresh() });
  assert.equal(d3.kind, 'defer', `a loop: ${JSON.stringify(d3)}`);
  for (let i = 0; i < 10; i++) cname(zone, i === 0 ? SHARED : `c${i}.provider.test`, `c${i + 1}.provider.test`);
  const d4 = await applyTlsPolicy(DOMAIN, mxDest(smtp.port), { sts: null, dane: fresh() });
  assert.equal(d4.kind, 'defer', `11 links: ${JSON.stringify(d4)}`);
});

// Under DANE the MX set comes from the validating resolver. The hosts of a destination come from
// node's resolver (MxResolver), which nothing validates: here it is a real node Resolver pointed at
// a second DNS server of the test that answers what an attacker forged (or a stale or lying
// upstream would). The servers of the test listen on ports of their own, so once the policy has
// chosen the hosts, port 25 is mapped to each host's server by name before delivering.
const EVIL = 'evil.attacker.test';
const BACKUP = 'backup.example.test';

function aRecord(zone: Zone, host: string): void {
  zone.records.set(`${TYPE.A}/${host}`, [{ type: TYPE.A, rdata: Buffer.from([127, 0, 0, 1]) }]);
}

async function systemMx(t: TestContext, mx: Array<[number, string]>, hosts: string[]): Promise<{ mx: MxResolver; zone: Zone; routing: RoutingContext }> {
  const zone = newZone();
  if (mx.length > 0) zone.records.set(`${TYPE.MX}/${DOMAIN}`, mx.map(([p, h]) => ({ type: TYPE.MX, rdata: mxRdata(p, h) })));
  for (const h of hosts) aRecord(zone, h);
  const srv = await startDns(t, zone);
  const r = new Resolver({ timeout: 2000, tries: 1 });
  r.setServers([`${srv.host}:${srv.port}`]);
  const resolver = new MxResolver(r as unknown as DnsResolver, { allowLoopback: true });
  const routes = parseRoutes('');
  assert.ok(routes.ok);
  return { mx: resolver, zone, routing: { routes: routes.value, smarthost: null, tlsPolicy: 'opportunistic', mx: resolver } };
}

/** The validating resolver's zone: DOMAIN's MX set, every host with an address, the given TLSA records. */
async function validating(t: TestContext, mx: Array<[number, string]>, hosts: string[], tlsa: Record<string, Buffer>): Promise<{ dane: DaneResolver; zone: Zone }> {
  const zone = newZone();
  if (mx.length > 0) zone.records.set(`${TYPE.MX}/${DOMAIN}`, mx.map(([p, h]) => ({ type: TYPE.MX, rdata: mxRdata(p, h) })));
  for (const h of hosts) aRecord(zone, h);
  for (const [h, rdata] of Object.entries(tlsa)) zone.records.set(`${TYPE.TLSA}/_25._tcp.${h}`, [{ type: TYPE.TLSA, rdata }]);
  return { dane: new DaneResolver({ server: await startDns(t, zone), timeoutMs: 2000 }), zone };
}

/** The destination as the engine builds it: node's MX answer, then the TLS policies. */
async function routed(routing: RoutingContext, dane: DaneResolver, tlsRequired?: 'yes'): Promise<DestinationResult> {
  const d0 = await destinationFor(DOMAIN, routing);
  assert.equal(d0.kind, 'smtp', JSON.stringify(d0));
  return applyTlsPolicy(DOMAIN, d0 as Extract<Destination, { kind: 'smtp' }>, { sts: null, dane, mx: routing.mx }, tlsRequired);
}

const hostsOf = (d: DestinationResult): string[] | string => (d.kind === 'smtp' ? d.hosts.map((h) => h.host) : `${d.kind}: ${JSON.stringify(d)}`);

function onPorts(d: DestinationResult, ports: Record<string, number>): Destination {
  assert.equal(d.kind, 'smtp');
  const s = d as Extract<Destination, { kind: 'smtp' }>;
  return { ...s, hosts: s.hosts.map((h) => ({ ...h, port: ports[h.host]! })) };
}

async function servers(t: TestContext) {
  const ca = makeTestCa(t, 'unrelated CA');
  const trusted = makeTestCa(t, 'the only trusted CA');
  const real = ca.issue([MX]);
  const evil = ca.issue([EVIL]);
  const caps = [...DEFAULT_CAPS, 'STARTTLS', 'REQUIRETLS'];
  return {
    trusted,
    realSpki: spkiSha256(real.certPem),
    evilSpki: spkiSha256(evil.certPem),
    real: await startScriptedServer(t, { capabilities: caps, tls: { cert: real.cert, key: real.key } }),
    // The attacker's host: plaintext only, or TLS with its own certificate (and its own TLSA).
    evilPlain: await startScriptedServer(t, { capabilities: DEFAULT_CAPS }),
    evilTls: await startScriptedServer(t, { capabilities: caps, tls: { cert: evil.cert, key: evil.key } }),
  };
}

test('DANE MX set (a): node\'s resolver forges the MX answer to name only the attacker\'s host: the validated MX host is used, with its TLSA; the attacker\'s never', async (t) => {
  const s = await servers(t);
  const sys = await systemMx(t, [[10, EVIL]], [EVIL, MX]);
  const { dane } = await validating(t, [[10, MX]], [MX], { [MX]: tlsaRdata(3, 1, 1, s.realSpki) });
  const d = await routed(sys.routing, dane);
  assert.deepEqual(hostsOf(d), [MX]);
  assert.equal(d.kind === 'smtp' && d.tlsAuth?.type, 'tlsa');
  assert.equal(d.kind === 'smtp' && d.key.includes(EVIL), false, `the destination key names the hosts used: ${d.key}`);
  assert.equal(d.key, d.kind === 'smtp' ? siteKey('smtp', d.hosts, 'opportunistic', { tlsAuth: d.tlsAuth }) : '');
  const res = await transport(t, s.trusted, []).deliver(onPorts(d, { [MX]: s.real.port, [EVIL]: s.evilPlain.port }), REQ());
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.equal(s.real.messages().length, 1);
  assert.equal(s.evilPlain.sessions.length, 0, 'the forged host is never connected to');

  // A validated MX set without any TLSA record: no DANE, but the forged host is still not used.
  const { dane: noTlsa } = await validating(t, [[10, MX]], [MX], {});
  const d2 = await routed(sys.routing, noTlsa);
  assert.deepEqual(hostsOf(d2), [MX]);
  assert.equal(d2.kind === 'smtp' && d2.tlsAuth?.type, 'no-policy-found');
  assert.equal(d2.kind === 'smtp' && d2.key, `smtp:${MX}:25`);

  // An MX answer the validating resolver does not validate: no DANE, node's answer as before.
  const { dane: unsigned, zone } = await validating(t, [[10, MX]], [MX], { [MX]: tlsaRdata(3, 1, 1, s.realSpki) });
  zone.insecure.add(DOMAIN);
  assert.deepEqual(hostsOf(await routed(sys.routing, unsigned)), [EVIL]);
});

test('DANE MX set (b): a forged host in front of the real one is dropped; the validated set wins, in its own preference order, hosts only it names added', async (t) => {
  const s = await servers(t);
  const sys = await systemMx(t, [[5, EVIL], [10, MX]], [EVIL, MX]);
  const { dane } = await validating(t, [[10, MX]], [MX], { [MX]: tlsaRdata(3, 1, 1, s.realSpki) });
  const d = await routed(sys.routing, dane);
  assert.deepEqual(hostsOf(d), [MX]);
  const res = await transport(t, s.trusted, []).deliver(onPorts(d, { [MX]: s.real.port, [EVIL]: s.evilPlain.port }), REQ());
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.equal(s.evilPlain.sessions.length, 0, 'the forged host (opportunistic, preferred by the forged answer) is never connected to');

  // node's resolver: EVIL 5, BACKUP 30; validated: MX 10, BACKUP 20 (BACKUP without TLSA).
  const sys2 = await systemMx(t, [[5, EVIL], [30, BACKUP]], [EVIL, MX, BACKUP]);
  const { dane: two } = await validating(t, [[20, BACKUP], [10, MX]], [MX, BACKUP], { [MX]: tlsaRdata(3, 1, 1, s.realSpki) });
  const d2 = await routed(sys2.routing, two);
  assert.deepEqual(hostsOf(d2), [MX, BACKUP], 'MX added (its address from node\'s resolver), EVIL dropped, validated preferences');
  assert.deepEqual(d2.kind === 'smtp' && Object.keys(d2.tlsAuth?.tlsa ?? {}), [MX]);
});

test('DANE MX set (c): an attacker\'s own signed zone with its own TLSA never gets a REQUIRETLS message; the validated host does', async (t) => {
  const s = await servers(t);
  // The validating resolver validates the attacker's zone too: the host has secure addresses and TLSA.
  const { dane } = await validating(t, [[10, MX]], [MX, EVIL], { [MX]: tlsaRdata(3, 1, 1, s.realSpki), [EVIL]: tlsaRdata(3, 1, 1, s.evilSpki) });
  const only = await systemMx(t, [[10, EVIL]], [EVIL, MX]);
  const d = await routed(only.routing, dane, 'yes');
  assert.deepEqual(hostsOf(d), [MX]);
  assert.equal(d.kind === 'smtp' && d.tlsAuth?.tlsa?.[EVIL], undefined);

  const both = await systemMx(t, [[5, EVIL], [10, MX]], [EVIL, MX]);
  const d2 = await routed(both.routing, dane, 'yes');
  assert.deepEqual(hostsOf(d2), [MX]);
  const req = deliveryRequest('a@sender.test', [`b@${DOMAIN}`], 'Subject: t\r\n\r\nsecret body\r\n', { tlsRequired: 'yes' });
  const res = await transport(t, s.trusted, []).deliver(onPorts(d2, { [MX]: s.real.port, [EVIL]: s.evilTls.port }), req);
  assert.equal(res[0]!.kind, 'delivered', JSON.stringify(res));
  assert.match(s.real.messages()[0]!.mailFrom, /REQUIRETLS/);
  assert.equal(s.evilTls.sessions.length, 0, 'the attacker\'s host is never connected to');

  // node's resolver hides the address of the one host with TLSA records: REQUIRETLS mail waits
  // (never to the opportunistic backup, never returned on the attacker's word).
  const { dane: withBackup } = await validating(t, [[10, MX], [20, BACKUP]], [MX, BACKUP], { [MX]: tlsaRdata(3, 1, 1, s.realSpki) });
  const hidden = await systemMx(t, [[5, EVIL], [20, BACKUP]], [EVIL, BACKUP]);
  assert.deepEqual(hostsOf(await routed(hidden.routing, withBackup)), [BACKUP], 'other mail: the backup, opportunistic');
  const d3 = await routed(hidden.routing, withBackup, 'yes');
  assert.equal(d3.kind, 'defer', JSON.stringify(d3));
  assert.equal(d3.kind === 'defer' && d3.reply.enhanced, '4.4.3');
});

test('DANE MX set: no MX records (implicit MX, the domain itself), a domain that is a CNAME, a null MX, and no usable address', async (t) => {
  const s = await servers(t);
  const sys = await systemMx(t, [[10, EVIL]], [EVIL, MX, DOMAIN, BACKUP]);
  // Validated: no MX records: the domain itself is the MX host (RFC 7672 §2.2.1), with its own TLSA.
  const { dane: implicit } = await validating(t, [], [DOMAIN], { [DOMAIN]: tlsaRdata(3, 1, 1, s.realSpki) });
  const d = await routed(sys.routing, implicit);
  assert.deepEqual(hostsOf(d), [DOMAIN]);
  assert.equal(d.kind === 'smtp' && d.tlsAuth?.tlsa?.[DOMAIN]?.length, 1);

  // Validated: DOMAIN is a CNAME to a name whose MX is BACKUP: BACKUP; the chain not validated: no DANE.
  const { dane: viaCname, zone } = await validating(t, [], [BACKUP], { [BACKUP]: tlsaRdata(3, 1, 1, s.realSpki) });
  cname(zone, DOMAIN, 'mail.provider.test');
  zone.records.set(`${TYPE.MX}/mail.provider.test`, [{ type: TYPE.MX, rdata: mxRdata(10, BACKUP) }]);
  assert.deepEqual(hostsOf(await routed(sys.routing, viaCname)), [BACKUP]);
  zone.insecure.add('mail.provider.test');
  const viaInsecure = new DaneResolver({ server: await startDns(t, zone), timeoutMs: 2000 });
  const d3 = await routed(sys.routing, viaInsecure);
  assert.deepEqual(hostsOf(d3), [EVIL]);
  assert.equal(d3.kind === 'smtp' && d3.tlsAuth?.type, 'no-policy-found');

  // Validated null MX (RFC 7505) while node's resolver names a host: deferred, nothing sent.
  const { dane: nullMx, zone: z4 } = await validating(t, [], [], {});
  z4.records.set(`${TYPE.MX}/${DOMAIN}`, [{ type: TYPE.MX, rdata: Buffer.from([0, 0, 0]) }]);
  const d4 = await routed(sys.routing, nullMx);
  assert.equal(d4.kind, 'defer', JSON.stringify(d4));
  assert.equal(d4.kind === 'defer' && d4.reply.enhanced, '4.4.3');
  assert.match(d4.kind === 'defer' ? d4.reply.text : '', /null MX/);

  // The validated MX host has no address node's resolver gives: deferred, never the forged host.
  const { dane: gone } = await validating(t, [[10, 'nowhere.example.test']], [], {});
  const d5 = await routed(sys.routing, gone);
  assert.equal(d5.kind, 'defer', JSON.stringify(d5));
  assert.equal(d5.kind === 'defer' && d5.reply.enhanced, '4.4.3');
  assert.match(d5.kind === 'defer' ? d5.reply.text : '', /no host of the DNSSEC-validated MX set of example\.test \(nowhere\.example\.test\) has a usable address/);
});
