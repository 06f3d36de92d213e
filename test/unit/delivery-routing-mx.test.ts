// MX resolution against a fake DNS (the one place a fake is right: no DNS is reachable here):
// preference order and spreading, implicit MX, null MX, NXDOMAIN vs SERVFAIL, unusable hosts,
// TTL caching (positive and negative), coalescing, and the bounce/defer replies of destinationFor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { MxResolver, destinationFor, type DnsResolver, type MxResult } from '../../src/delivery/mx.js';
import { parseRoutes } from '../../src/config/routes.js';
import { valueOf } from '../../src/lib/result.js';

// Compile-time: node's own resolver satisfies the injected interface.
const _real: DnsResolver = new Resolver();
void _real;

type Rec = { address: string; ttl: number };
interface Zone {
  mx?: Record<string, Array<{ exchange: string; priority: number }> | string>;
  a?: Record<string, Rec[] | string>;
  aaaa?: Record<string, Rec[] | string>;
}

function dnsError(code: string): Error {
  return Object.assign(new Error(`query failed ${code}`), { code });
}

/** A fake DNS: a string value is an error code; a missing name is ENOTFOUND. Counts queries. */
function fakeDns(zone: Zone): DnsResolver & { queries: string[] } {
  const queries: string[] = [];
  const answer = <T>(table: Record<string, T[] | string> | undefined, type: string, name: string): Promise<T[]> => {
    queries.push(`${type} ${name}`);
    const v = table?.[name];
    if (v === undefined) return Promise.reject(dnsError(name.endsWith('.test') && name.split('.').length > 2 ? 'ENODATA' : 'ENOTFOUND'));
    return typeof v === 'string' ? Promise.reject(dnsError(v)) : Promise.resolve(v);
  };
  return {
    queries,
    resolveMx: (n) => answer(zone.mx, 'MX', n),
    resolve4: (n) => answer(zone.a, 'A', n),
    resolve6: (n) => answer(zone.aaaa, 'AAAA', n),
  };
}

const A = (address: string, ttl = 600): Rec[] => [{ address, ttl }];

function hosts(r: MxResult): string[] {
  assert.equal(r.kind, 'hosts', JSON.stringify(r));
  return r.kind === 'hosts' ? r.hosts.map((h) => `${h.host}:${h.port}`) : [];
}

test('MX hosts come in preference order; equal preferences are spread', async () => {
  const dns = fakeDns({
    mx: { 'ex.test': [{ exchange: 'c.ex.test', priority: 20 }, { exchange: 'a.ex.test', priority: 10 }, { exchange: 'b.ex.test', priority: 10 }] },
    a: { 'a.ex.test': A('192.0.2.1'), 'b.ex.test': A('192.0.2.2'), 'c.ex.test': A('192.0.2.3') },
  });
  const seen = new Set<string>();
  let rnd = 0;
  const mx = new MxResolver(dns, { random: () => (rnd++ % 2 === 0 ? 0.99 : 0) });
  for (let i = 0; i < 4; i++) {
    const h = hosts(await mx.resolve('EX.test.'));
    assert.equal(h[2], 'c.ex.test:25', 'the higher preference value comes last');
    seen.add(h.slice(0, 2).join(' '));
  }
  assert.deepEqual([...seen].sort(), ['a.ex.test:25 b.ex.test:25', 'b.ex.test:25 a.ex.test:25'], 'both orders of the equal pair occur, also from the cache');
  assert.equal(dns.queries.filter((q) => q.startsWith('MX')).length, 1, 'answered from the cache after the first lookup');
});

test('no MX but an address → the domain itself (implicit MX); neither → permanent no-hosts', async () => {
  const dns = fakeDns({ mx: { 'v6only.test': 'ENODATA', 'bare.test': 'ENODATA' }, aaaa: { 'v6only.test': A('2001:db8::25') } });
  const mx = new MxResolver(dns);
  assert.deepEqual(hosts(await mx.resolve('v6only.test')), ['v6only.test:25']);
  const r = await mx.resolve('bare.test');
  assert.equal(r.kind, 'no-hosts');
});

test('null MX (RFC 7505), NXDOMAIN and SERVFAIL/timeouts are told apart', async () => {
  const dns = fakeDns({
    mx: { 'null.test': [{ exchange: '', priority: 0 }], 'dot.test': [{ exchange: '.', priority: 0 }], 'fail.test': 'ESERVFAIL', 'slow.test': 'ETIMEOUT' },
  });
  const mx = new MxResolver(dns);
  assert.deepEqual(await mx.resolve('null.test'), { kind: 'null-mx' });
  assert.deepEqual(await mx.resolve('dot.test'), { kind: 'null-mx' });
  assert.deepEqual(await mx.resolve('gone.example'), { kind: 'no-domain' });
  assert.deepEqual(await mx.resolve('fail.test'), { kind: 'temp-error', reason: 'MX lookup for fail.test: ESERVFAIL' });
  assert.equal((await mx.resolve('slow.test')).kind, 'temp-error');
});

test('a "." among real MX records is skipped, not treated as null MX', async () => {
  const dns = fakeDns({ mx: { 'mixed.test': [{ exchange: '', priority: 0 }, { exchange: 'mx.mixed.test', priority: 10 }] }, a: { 'mx.mixed.test': A('192.0.2.9') } });
  assert.deepEqual(hosts(await new MxResolver(dns).resolve('mixed.test')), ['mx.mixed.test:25']);
});

test('MX hosts without a usable address are refused; a host whose lookup failed transiently is left out, never dialled unchecked', async () => {
  const dns = fakeDns({
    mx: {
      'ex.test': [
        { exchange: 'gone.ex.test', priority: 5 },
        { exchange: 'loop.ex.test', priority: 10 },
        { exchange: 'zero.ex.test', priority: 10 },
        { exchange: 'flaky.ex.test', priority: 15 },
        { exchange: 'good.ex.test', priority: 20 },
      ],
      'bad.test': [{ exchange: 'loop.ex.test', priority: 10 }, { exchange: 'gone.ex.test', priority: 20 }],
    },
    a: { 'loop.ex.test': A('127.0.0.1'), 'zero.ex.test': A('0.0.0.0'), 'flaky.ex.test': 'ESERVFAIL', 'good.ex.test': A('192.0.2.20') },
    aaaa: { 'loop.ex.test': A('::1'), 'flaky.ex.test': 'ETIMEOUT' },
  });
  const mx = new MxResolver(dns);
  assert.deepEqual(hosts(await mx.resolve('ex.test')), ['good.ex.test:25']);
  const onlyFlaky = new MxResolver(fakeDns({ mx: { 'f.test': [{ exchange: 'flaky.ex.test', priority: 10 }] }, a: { 'flaky.ex.test': 'ESERVFAIL' } }));
  assert.equal((await onlyFlaky.resolve('f.test')).kind, 'temp-error', 'a domain whose only MX cannot be checked now is deferred, not bounced');
  const bad = await mx.resolve('bad.test');
  assert.deepEqual(bad, { kind: 'no-hosts', reason: 'loop.ex.test: only unusable addresses (127.0.0.1, ::1); gone.ex.test: no A/AAAA records for gone.ex.test' });
  // Loopback is allowed when asked for (tests, a lab); 0.0.0.0 never is.
  const loop = await new MxResolver(dns, { allowLoopback: true }).resolve('bad.test');
  assert.deepEqual(hosts(loop), ['loop.ex.test:25', 'loop.ex.test:25'], 'one entry per checked address');
  assert.deepEqual(loop.kind === 'hosts' && loop.hosts.map((h) => h.address).sort(), ['127.0.0.1', '::1']);
});

test('positive answers live for the smallest address TTL (bounded); negative ones briefly', async () => {
  let now = 1_000_000;
  const dns = fakeDns({
    mx: { 'ex.test': [{ exchange: 'mx.ex.test', priority: 10 }], 'long.test': [{ exchange: 'mx.long.test', priority: 10 }], 'fail.test': 'ESERVFAIL' },
    a: { 'mx.ex.test': [{ address: '192.0.2.1', ttl: 120 }, { address: '192.0.2.2', ttl: 90 }], 'mx.long.test': A('192.0.2.3', 86400) },
  });
  const mx = new MxResolver(dns, { now: () => now, negativeTtlMs: 60_000, tempErrorTtlMs: 5_000, maxTtlMs: 3_600_000 });
  const first = await mx.resolve('ex.test');
  assert.equal(first.kind === 'hosts' && first.ttlMs, 90_000);
  assert.equal((await mx.resolve('long.test')).kind === 'hosts' && ((await mx.resolve('long.test')) as { ttlMs: number }).ttlMs, 3_600_000, 'clamped to maxTtlMs');
  await mx.resolve('gone.example');
  await mx.resolve('fail.test');
  const count = (q: string): number => dns.queries.filter((x) => x === q).length;

  now += 4_000;
  await Promise.all(['ex.test', 'gone.example', 'fail.test'].map((d) => mx.resolve(d)));
  assert.deepEqual([count('MX ex.test'), count('MX gone.example'), count('MX fail.test')], [1, 1, 1], 'all cached at +4 s');
  const aged = await mx.resolve('ex.test');
  assert.equal(aged.kind === 'hosts' && aged.ttlMs, 86_000, 'ttlMs counts down');

  now += 2_000;
  await Promise.all(['ex.test', 'gone.example', 'fail.test'].map((d) => mx.resolve(d)));
  assert.deepEqual([count('MX ex.test'), count('MX gone.example'), count('MX fail.test')], [1, 1, 2], 'a transient failure is retried after 5 s');

  now += 60_000;
  await Promise.all(['ex.test', 'gone.example'].map((d) => mx.resolve(d)));
  assert.deepEqual([count('MX ex.test'), count('MX gone.example')], [1, 2], 'NXDOMAIN is forgotten after 60 s, the 90 s answer is not');
  now += 30_000;
  await mx.resolve('ex.test');
  assert.equal(count('MX ex.test'), 2);
});

test('concurrent lookups of one domain share one query', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let mxQueries = 0;
  const dns: DnsResolver = {
    resolveMx: async () => {
      mxQueries++;
      await gate;
      return [{ exchange: 'mx.ex.test', priority: 0 }];
    },
    resolve4: async () => A('192.0.2.1'),
    resolve6: async () => Promise.reject(dnsError('ENODATA')),
  };
  const mx = new MxResolver(dns);
  const all = Promise.all([mx.resolve('ex.test'), mx.resolve('EX.TEST'), mx.resolve('ex.test.')]);
  release();
  const results = await all;
  assert.equal(mxQueries, 1);
  for (const r of results) assert.deepEqual(hosts(r), ['mx.ex.test:25']);
});

test('a lookup that never answers becomes a transient error after timeoutMs', async () => {
  const dns: DnsResolver = { resolveMx: () => new Promise(() => {}), resolve4: () => new Promise(() => {}), resolve6: () => new Promise(() => {}) };
  const r = await new MxResolver(dns, { timeoutMs: 20 }).resolve('hang.test');
  assert.deepEqual(r, { kind: 'temp-error', reason: 'MX lookup for hang.test: ETIMEOUT' });
});

test('the cache is bounded', async () => {
  const dns = fakeDns({});
  const mx = new MxResolver(dns, { maxEntries: 3 });
  for (const d of ['a.example', 'b.example', 'c.example', 'd.example']) await mx.resolve(d);
  assert.equal(mx.size, 3);
  await mx.resolve('a.example');
  assert.equal(dns.queries.filter((q) => q === 'MX a.example').length, 2, 'the oldest entry was evicted');
});

test('destinationFor: MX site keys are shared across domains; null MX, NXDOMAIN, no hosts bounce; SERVFAIL defers', async () => {
  const dns = fakeDns({
    mx: {
      'one.test': [{ exchange: 'mx1.host.test', priority: 10 }, { exchange: 'mx2.host.test', priority: 10 }],
      'two.test': [{ exchange: 'mx2.host.test', priority: 5 }, { exchange: 'mx1.host.test', priority: 5 }],
      'null.test': [{ exchange: '', priority: 0 }],
      'bare.test': 'ENODATA',
      'fail.test': 'ESERVFAIL',
    },
    a: { 'mx1.host.test': A('192.0.2.1'), 'mx2.host.test': A('192.0.2.2') },
  });
  const routes = valueOf(parseRoutes(''));
  const ctx = { routes, smarthost: null, tlsPolicy: 'opportunistic' as const, mx: new MxResolver(dns) };
  const one = await destinationFor('one.test', ctx);
  const two = await destinationFor('two.test', ctx);
  assert.equal(one.kind, 'smtp');
  assert.equal(one.key, 'smtp:mx1.host.test:25,mx2.host.test:25');
  assert.equal(two.key, one.key, 'one pool for both domains');

  const reply = async (d: string): Promise<[string, number | undefined, string | undefined, boolean | undefined]> => {
    const r = await destinationFor(d, ctx);
    assert.ok(r.kind === 'bounce' || r.kind === 'defer', JSON.stringify(r));
    return [r.kind, r.reply.code, r.reply.enhanced, r.reply.transient];
  };
  assert.deepEqual(await reply('null.test'), ['bounce', 556, '5.1.10', false]);
  assert.deepEqual(await reply('gone.example'), ['bounce', 550, '5.1.2', false]);
  assert.deepEqual(await reply('bare.test'), ['bounce', 550, '5.4.4', false]);
  assert.deepEqual(await reply('fail.test'), ['defer', 451, '4.4.3', true]);
});

test('resolveExchanges (DANE\'s validated MX set): no MX query, addresses checked by the policy, preference order, cached apart from resolve()', async () => {
  const dns = fakeDns({
    mx: { 'ex.test': [{ exchange: 'other.ex.test', priority: 1 }] },
    a: { 'a.ex.test': A('192.0.2.1'), 'b.ex.test': A('192.0.2.2'), 'lo.ex.test': A('127.0.0.1'), 'other.ex.test': A('192.0.2.9') },
  });
  const mx = new MxResolver(dns);
  const set = [{ host: 'B.ex.test.', preference: 20 }, { host: 'lo.ex.test', preference: 5 }, { host: 'a.ex.test', preference: 10 }];
  assert.deepEqual(hosts(await mx.resolveExchanges('ex.test', set)), ['a.ex.test:25', 'b.ex.test:25'], 'lo.ex.test refused (loopback), the rest by preference');
  assert.equal(dns.queries.filter((q) => q.startsWith('MX')).length, 0);
  const before = dns.queries.length;
  assert.deepEqual(hosts(await mx.resolveExchanges('ex.test', set)), ['a.ex.test:25', 'b.ex.test:25']);
  assert.equal(dns.queries.length, before, 'the second call is answered from the cache');
  assert.deepEqual(hosts(await mx.resolve('ex.test')), ['other.ex.test:25'], 'the domain\'s own answer is cached apart');
  assert.equal((await mx.resolveExchanges('ex.test', [{ host: 'lo.ex.test', preference: 0 }])).kind, 'no-hosts');
  assert.equal((await mx.resolveExchanges('ex.test', [])).kind, 'no-hosts');
  const many = Array.from({ length: 30 }, (_, i) => ({ host: `h${i}.ex.test`, preference: i }));
  await mx.resolveExchanges('ex.test', many);
  assert.equal(dns.queries.filter((q) => q.startsWith('A h')).length, 10, 'at most maxHosts (10) hosts looked up');
});
