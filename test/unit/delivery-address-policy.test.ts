// Issue 13 item 1: one address policy for literals, MX hosts and every A/AAAA answer, and the
// exact checked address handed to the connector (no second lookup: no DNS rebinding). No test
// here connects anywhere: refusals are decided before any socket is opened.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressPolicy, classifyAddress } from '../../src/delivery/address-policy.js';
import { MxResolver, destinationFor, type DnsResolver } from '../../src/delivery/mx.js';
import { EMPTY_ROUTES } from '../../src/config/routes.js';

test('classifyAddress: internal, special and public ranges, IPv4 inside IPv6 judged as IPv4', () => {
  const cases: Array<[string, string]> = [
    ['127.0.0.1', 'loopback'], ['127.255.0.9', 'loopback'], ['::1', 'loopback'],
    ['10.0.0.1', 'private'], ['172.16.5.4', 'private'], ['172.31.255.255', 'private'], ['192.168.1.1', 'private'], ['fd00::1', 'private'], ['fc12::1', 'private'],
    ['100.64.0.1', 'shared'], ['169.254.169.254', 'link-local'], ['fe80::1', 'link-local'],
    ['224.0.0.1', 'multicast'], ['ff02::1', 'multicast'], ['0.0.0.0', 'unspecified'], ['0.1.2.3', 'unspecified'], ['::', 'unspecified'],
    ['240.0.0.1', 'reserved'], ['255.255.255.255', 'reserved'], ['198.18.0.1', 'reserved'],
    ['::ffff:127.0.0.1', 'loopback'], ['::ffff:7f00:1', 'loopback'], ['64:ff9b::a00:1', 'private'], ['64:ff9b::169.254.169.254', 'link-local'], ['2002:a9fe:a9fe::1', 'link-local'],
    ['8.8.8.8', 'public'], ['172.32.0.1', 'public'], ['2606:4700::1111', 'public'], ['192.0.2.1', 'public'],
    ['not-an-ip', 'invalid'],
  ];
  for (const [ip, cls] of cases) assert.equal(classifyAddress(ip), cls, ip);
});

test("the node's own addresses are 'self' and refused even where private ranges are allowed", () => {
  const p = new AddressPolicy({ allowPrivate: true, ownAddresses: ['10.1.2.3', '2001:db8::5'] });
  assert.equal(p.classify('10.1.2.3'), 'self');
  assert.equal(p.check('10.1.2.3').ok, false);
  assert.equal(p.check('2001:DB8::5').ok, false);
  assert.equal(p.check('10.1.2.4').ok, true, 'allowPrivate lets the rest of 10/8 through');
  assert.equal(p.check('169.254.169.254').ok, false, 'never link-local');
  assert.equal(p.check('127.0.0.1').ok, false, 'never loopback unless asked');
  assert.equal(new AddressPolicy({ ownAddresses: [] }).check('10.1.2.4').ok, false, 'private refused by default');
});

const noDns: DnsResolver = {
  resolveMx: () => Promise.reject(Object.assign(new Error('no dns'), { code: 'ESERVFAIL' })),
  resolve4: () => Promise.reject(Object.assign(new Error('no dns'), { code: 'ESERVFAIL' })),
  resolve6: () => Promise.reject(Object.assign(new Error('no dns'), { code: 'ESERVFAIL' })),
};

test('address literals to internal addresses bounce before any connection (5.4.6 for ourselves, 5.4.4 otherwise)', async () => {
  const ctx = { routes: EMPTY_ROUTES, smarthost: null, tlsPolicy: 'opportunistic' as const, mx: new MxResolver(noDns, { policy: new AddressPolicy({ ownAddresses: ['203.0.113.7'] }) }) };
  const outcome = async (domain: string): Promise<string> => {
    const d = await destinationFor(domain, ctx);
    return d.kind === 'bounce' ? `${d.reply.code} ${d.reply.enhanced}` : d.kind;
  };
  assert.equal(await outcome('[127.0.0.1]'), '554 5.4.6');
  assert.equal(await outcome('[IPv6:::1]'), '554 5.4.6');
  assert.equal(await outcome('[203.0.113.7]'), '554 5.4.6', 'our own address');
  assert.equal(await outcome('[169.254.169.254]'), '550 5.4.4');
  assert.equal(await outcome('[10.0.0.1]'), '550 5.4.4');
  assert.equal(await outcome('[IPv6:fd00::1]'), '550 5.4.4');
  assert.equal(await outcome('[IPv6:::ffff:10.0.0.1]'), '550 5.4.4');
  assert.equal(await outcome('[192.0.2.10]'), 'smtp', 'a public literal is delivered to');
  const open = { ...ctx, mx: new MxResolver(noDns, { policy: new AddressPolicy({ allowPrivate: true, ownAddresses: [] }) }) };
  assert.equal((await destinationFor('[10.0.0.1]', open)).kind, 'smtp', 'POSTERN_DELIVERY_ALLOW_PRIVATE');
  assert.equal((await destinationFor('[169.254.169.254]', open)).kind, 'bounce');
});

test('MX answers: private and link-local A/AAAA records are refused; handed-out hosts carry the checked address', async () => {
  const zone: Record<string, Array<{ address: string; ttl: number }>> = {
    'internal.mx.test': [{ address: '10.0.0.5', ttl: 60 }],
    'meta.mx.test': [{ address: '169.254.169.254', ttl: 60 }],
    'mixed.mx.test': [{ address: '192.168.0.9', ttl: 60 }, { address: '192.0.2.44', ttl: 60 }],
  };
  const dns: DnsResolver = {
    resolveMx: async (d) => ({ 'a.test': [{ exchange: 'internal.mx.test', priority: 10 }], 'b.test': [{ exchange: 'meta.mx.test', priority: 10 }], 'c.test': [{ exchange: 'mixed.mx.test', priority: 10 }] })[d] ?? Promise.reject(Object.assign(new Error('x'), { code: 'ENOTFOUND' })),
    resolve4: async (h) => zone[h] ?? Promise.reject(Object.assign(new Error('x'), { code: 'ENODATA' })),
    resolve6: async () => Promise.reject(Object.assign(new Error('x'), { code: 'ENODATA' })),
  };
  const mx = new MxResolver(dns, { policy: new AddressPolicy({ ownAddresses: [] }) });
  const a = await mx.resolve('a.test');
  assert.equal(a.kind, 'no-hosts');
  assert.match(a.kind === 'no-hosts' ? a.reason : '', /10\.0\.0\.5/);
  assert.equal((await mx.resolve('b.test')).kind, 'no-hosts');
  const c = await mx.resolve('c.test');
  assert.deepEqual(c.kind === 'hosts' ? c.hosts : c, [{ host: 'mixed.mx.test', port: 25, address: '192.0.2.44' }], 'only the address that passed, bound to the name');
});

test("the node's own addresses are found whatever their spelling (mapped, zero runs, zone ids, NAT64)", () => {
  const p = new AddressPolicy({ ownAddresses: ['203.0.113.5', '2001:db8::5', 'fe80::9%eth0'] });
  for (const a of ['::ffff:203.0.113.5', '::FFFF:cb00:7105', '0:0:0:0:0:ffff:203.0.113.5', '64:ff9b::203.0.113.5', '2001:db8:0::5', '2001:db8:0:0:0:0:0:5', '2001:0db8::0005', '2001:db8::5%eth0']) {
    assert.equal(p.classify(a), 'self', a);
    assert.equal(p.check(a).ok, false, a);
  }
  assert.equal(p.classify('2001:db8::6'), 'public');
  assert.equal(p.classify('203.0.113.6'), 'public');
});

test('IPv4-compatible, SIIT and local-use NAT64 forms are not public', () => {
  const cases: Array<[string, string]> = [
    ['::127.0.0.1', 'reserved'], ['::7f00:1', 'reserved'], ['::8.8.8.8', 'reserved'],
    ['::ffff:0:127.0.0.1', 'loopback'], ['::ffff:0:a9fe:a9fe', 'link-local'], ['::ffff:0:8.8.8.8', 'public'],
    ['64:ff9b:1::7f00:1', 'private'], ['::ffff:127.0.0.1%eth0', 'loopback'],
  ];
  for (const [ip, cls] of cases) assert.equal(classifyAddress(ip), cls, ip);
});

test('address literals and MX hosts naming the node in another spelling are refused before any connection', async () => {
  const policy = new AddressPolicy({ ownAddresses: ['203.0.113.7'] });
  const dns: DnsResolver = {
    resolveMx: async (d) => ({ 'self.test': [{ exchange: '::ffff:203.0.113.7', priority: 10 }], 'compat.test': [{ exchange: '::127.0.0.1', priority: 10 }] })[d] ?? Promise.reject(Object.assign(new Error('x'), { code: 'ENOTFOUND' })),
    resolve4: async () => Promise.reject(Object.assign(new Error('x'), { code: 'ENODATA' })),
    resolve6: async () => Promise.reject(Object.assign(new Error('x'), { code: 'ENODATA' })),
  };
  const ctx = { routes: EMPTY_ROUTES, smarthost: null, tlsPolicy: 'opportunistic' as const, mx: new MxResolver(dns, { policy }) };
  const outcome = async (domain: string): Promise<string> => {
    const d = await destinationFor(domain, ctx);
    return d.kind === 'bounce' ? `${d.reply.code} ${d.reply.enhanced}` : d.kind;
  };
  assert.equal(await outcome('[IPv6:::ffff:203.0.113.7]'), '554 5.4.6');
  assert.equal(await outcome('[IPv6:::ffff:cb00:7107]'), '554 5.4.6');
  assert.equal(await outcome('[IPv6:::127.0.0.1]'), '550 5.4.4');
  assert.equal(await outcome('self.test'), '550 5.4.4');
  assert.equal(await outcome('compat.test'), '550 5.4.4');
});
