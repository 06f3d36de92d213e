// Egress sources and pools in the shaping file (config/shaping.ts, delivery/shaping/shaper.ts):
// [source.NAME] and [pool.NAME] parse and every problem names its line; a sender domain picks
// its pool (exact, then *.parent, else the default pool); the source is picked by weight, the
// same for every route of one message; the destination key and the shaper's state carry it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseShaping, type ShapingFile } from '../../src/config/shaping.js';
import { Shaper } from '../../src/delivery/shaping/shaper.js';
import type { Destination } from '../../src/delivery/types.js';

const POOLS = `[source.ip2]
address = "127.0.0.2"
ehlo = "mta2.example.net"

[source.ip3]
address = "127.0.0.3"
ehlo = "mta3.example.net"

[source.v6]
address = "::1"
ehlo = "mta6.example.net"

[pool.news]
sources = { ip2 = 1 }
sender_domains = ["news.example.com", "*.lists.example.com"]

[pool.main]
sources = { ip2 = 1, ip3 = 3 }
default = true

[site.google]
domains = ["gmail.com"]

[site.google.source."ip3"]
max_connections = 2
`;

function ok(text: string): ShapingFile {
  const r = parseShaping(text, 'f.toml');
  if (!r.ok) assert.fail(r.error.join('\n'));
  return r.value;
}

function errors(text: string): string[] {
  const r = parseShaping(text, 'f.toml');
  assert.ok(!r.ok, 'expected errors');
  return r.error;
}

const smtp = (host: string): Destination => ({ kind: 'smtp', key: `smtp:${host}:25`, hosts: [{ host, port: 25 }], tlsPolicy: 'opportunistic' });

test('parseShaping: sources and weighted pools', () => {
  const f = ok(POOLS);
  assert.deepEqual([...f.sources.values()], [
    { name: 'ip2', address: '127.0.0.2', ehlo: 'mta2.example.net' },
    { name: 'ip3', address: '127.0.0.3', ehlo: 'mta3.example.net' },
    { name: 'v6', address: '::1', ehlo: 'mta6.example.net' },
  ]);
  assert.deepEqual(f.pools.map((p) => ({ ...p })), [
    { name: 'news', sources: [{ source: 'ip2', weight: 1 }], senderDomains: ['news.example.com', '*.lists.example.com'], isDefault: false, warmupOverflow: 'defer' },
    { name: 'main', sources: [{ source: 'ip2', weight: 1 }, { source: 'ip3', weight: 3 }], senderDomains: [], isDefault: true, warmupOverflow: 'defer' },
  ]);
});

test('parseShaping: every source and pool problem at once, each naming its line', () => {
  const text = `[source.a]
address = "not-an-ip"
ehlo = "a.example"

[source.default]
address = "127.0.0.2"
ehlo = "x.example"

[source.b]
address = "127.0.0.3"
ehlo = "b.example"

[source.c]
address = "127.0.0.4"
ehlo = "bad name!"
port = 25

[pool.p]
sources = { a = 1, missing = 1, b = 0 }
sender_domains = ["x.example"]
default = true

[pool.q]
sources = { b = 1 }
sender_domains = ["x.example"]
default = true

[pool.r]
sources = {}
`;
  assert.deepEqual(errors(text), [
    'f.toml:2: address must be an IPv4 or IPv6 address, got "not-an-ip"',
    'f.toml:5: source name "default" is reserved (mail outside every pool leaves from it)',
    'f.toml:16: unknown key "port" (a source has "address", "ehlo", "warmup_start", "warmup_first" and "warmup_factor")',
    'f.toml:15: ehlo must be a host name, got "bad name!"',
    'f.toml:19: source "a" has no valid [source.a] table',
    'f.toml:19: source "missing" has no valid [source.missing] table',
    'f.toml:19: the weight of "b" must be a whole number from 1 to 1000, got 0',
    'f.toml:25: sender domain "x.example" is already in pool "p"',
    'f.toml:26: pool "p" is already the default pool',
    'f.toml:29: sources must be a table of source names and weights, like { ip2 = 1, ip3 = 2 }',
  ]);
});

test('a sender domain picks its pool: exact, then *.parent, else the default pool; no pools, no source', () => {
  const sh = new Shaper({ file: ok(POOLS), defaults: { maxConnections: 20, messagesPerConnection: 1000, rate: null } });
  assert.equal(sh.poolFor('a@news.example.com')?.name, 'news');
  assert.equal(sh.poolFor('a@NEWS.Example.com')?.name, 'news');
  assert.equal(sh.poolFor('a@x.lists.example.com')?.name, 'news');
  assert.equal(sh.poolFor('a@lists.example.com')?.name, 'main', '*.d does not match d itself');
  assert.equal(sh.poolFor('')?.name, 'main', 'bounces (null sender) use the default pool');
  assert.equal(sh.sourceFor({ id: 'm1', sender: 'a@news.example.com' })?.name, 'ip2');
  const bare = new Shaper({ file: ok('[site.x]\ndomains = ["x.example"]\n'), defaults: { maxConnections: 20, messagesPerConnection: 1000, rate: null } });
  assert.equal(bare.sourceFor({ id: 'm1', sender: 'a@b.example' }), null);
  const d = bare.route('b.example', smtp('mx.b.example'), 'opportunistic', { id: 'm1', sender: 'a@b.example' }) as Extract<Destination, { kind: 'smtp' }>;
  assert.equal(d.key, 'smtp:mx.b.example:25', 'no pool: the key is unchanged');
  assert.equal(d.shape?.source, 'default');
  assert.equal(d.shape?.localAddress, undefined);
});

test('the source is picked by weight and is the same for every route of one message', () => {
  const sh = new Shaper({ file: ok(POOLS), defaults: { maxConnections: 20, messagesPerConnection: 1000, rate: null } });
  const n = { ip2: 0, ip3: 0 } as Record<string, number>;
  for (let i = 0; i < 2000; i++) {
    const m = { id: `msg-${i}`, sender: 'a@shop.example' };
    const s = sh.sourceFor(m)!.name;
    n[s]!++;
    const a = sh.route('gmail.com', smtp('mx1.example'), 'opportunistic', m) as Extract<Destination, { kind: 'smtp' }>;
    const b = sh.route('other.example', smtp('mx2.example'), 'opportunistic', m) as Extract<Destination, { kind: 'smtp' }>;
    assert.equal(a.shape?.source, s);
    assert.equal(b.shape?.source, s);
  }
  // Weights 1:3: 500 and 1500 expected; a hash spread, not an exact split.
  assert.ok(n.ip2! > 350 && n.ip2! < 650, JSON.stringify(n));
  assert.ok(n.ip3! > 1350 && n.ip3! < 1650, JSON.stringify(n));
});

test('the destination key, the connection settings and the shaper state carry the source', async () => {
  const sh = new Shaper({ file: ok(POOLS), defaults: { maxConnections: 20, messagesPerConnection: 1000, rate: null } });
  let m2 = { id: '', sender: 'a@shop.example' };
  let m3 = { id: '', sender: 'a@shop.example' };
  for (let i = 0; m2.id === '' || m3.id === ''; i++) {
    const m = { id: `m${i}`, sender: 'a@shop.example' };
    if (sh.sourceFor(m)!.name === 'ip2') m2 = m;
    else m3 = m;
  }
  const d2 = sh.route('gmail.com', smtp('mx1.example'), 'opportunistic', m2) as Extract<Destination, { kind: 'smtp' }>;
  const d3 = sh.route('gmail.com', smtp('mx1.example'), 'opportunistic', m3) as Extract<Destination, { kind: 'smtp' }>;
  assert.equal(d2.key, 'smtp:mx1.example:25@google~ip2');
  assert.equal(d3.key, 'smtp:mx1.example:25@google~ip3');
  assert.deepEqual({ s: d2.shape?.source, a: d2.shape?.localAddress, h: d2.shape?.heloName, c: d2.shape?.maxConnections }, { s: 'ip2', a: '127.0.0.2', h: 'mta2.example.net', c: 20 });
  assert.deepEqual({ s: d3.shape?.source, a: d3.shape?.localAddress, h: d3.shape?.heloName, c: d3.shape?.maxConnections }, { s: 'ip3', a: '127.0.0.3', h: 'mta3.example.net', c: 2 }, '[site.google.source."ip3"] applies');
  const a2 = await sh.admit(d2);
  const a3 = await sh.admit(d3);
  assert.ok(a2.ok && a3.ok);
  assert.deepEqual([...sh.states.keys()].sort(), ['ip2|google', 'ip3|google']);
  assert.equal(sh.states.get('ip3|google')!.ceilings.maxConnections, 2);
  a2.value.done([]);
  a3.value.done([]);
});

const WARM = `[source.new]
address = "127.0.0.2"
ehlo = "new.example.net"
warmup_start = 2026-12-01
warmup_first = 2
warmup_factor = 2

[pool.all]
sources = { new = 1 }
default = true

[site.google]
domains = ["gmail.com"]
`;

test('warm-up: the day\'s budget per source × site, growing by the factor each UTC day; past it the message waits for tomorrow, untried', async () => {
  let now = Date.parse('2026-12-01T10:00:00Z');
  const sh = new Shaper({ file: ok(WARM), defaults: { maxConnections: 20, messagesPerConnection: 1000, rate: null }, now: () => now, random: () => 0 });
  const m = { id: 'm1', sender: 'a@shop.example' };
  const g = sh.route('gmail.com', smtp('mx1.example'), 'opportunistic', m) as Destination;
  const other = sh.route('other.example', smtp('mx.other.example'), 'opportunistic', m) as Destination;
  const send = async (d: Destination): Promise<boolean> => {
    const a = await sh.admit(d);
    if (a.ok) a.value.done([]);
    return a.ok;
  };
  assert.equal(await send(g), true);
  assert.equal(await send(g), true);
  const third = await sh.admit(g);
  assert.ok(!third.ok, 'day 1: 2 messages per site');
  assert.equal(third.error.enhanced, '4.7.0');
  assert.match(third.error.text, /source new is warming up: its 2 messages for google today are sent/);
  assert.equal(sh.retryAt(third.error, 0, false, now), Date.parse('2026-12-02T00:00:00Z'), 'due when the next UTC day starts');
  assert.equal(await send(other), true, 'another site has its own budget');
  now = Date.parse('2026-12-02T00:00:01Z');
  for (let i = 0; i < 4; i++) assert.equal(await send(g), true, `day 2, message ${i + 1} of 4`);
  assert.equal(await send(g), false, 'day 2: 2 × 2');
  now = Date.parse('2027-03-01T00:00:00Z');
  for (let i = 0; i < 50; i++) assert.equal(await send(g), true, 'a warm-up long past is no limit');
});

test('parseShaping: warm-up settings are checked', () => {
  assert.deepEqual(errors('[source.a]\naddress = "127.0.0.2"\nehlo = "a.example"\nwarmup_start = "tomorrow"\nwarmup_first = 0\nwarmup_factor = 11\n'), [
    'f.toml:4: warmup_start must be a date like 2026-12-01, got "tomorrow"',
    'f.toml:5: warmup_first must be a whole number from 1 to 10000000, got 0',
    'f.toml:6: warmup_factor must be a number from 1 to 10, got 11',
  ]);
  const f = ok('[source.a]\naddress = "127.0.0.2"\nehlo = "a.example"\nwarmup_start = "2026-12-01"\nwarmup_first = 50\n');
  assert.deepEqual(f.sources.get('a')!.warmup, { startMs: Date.parse('2026-12-01T00:00:00Z'), first: 50, factor: 2 });
});

test('warm-up: transactions waiting together for a slot cannot overshoot the budget', async () => {
  const now = Date.parse('2026-12-01T10:00:00Z');
  const sh = new Shaper({ file: ok(WARM.replace('domains = ["gmail.com"]', 'domains = ["gmail.com"]\nmax_connections = 1')), defaults: { maxConnections: 20, messagesPerConnection: 1000, rate: null }, now: () => now, random: () => 0 });
  const g = sh.route('gmail.com', smtp('mx1.example'), 'opportunistic', { id: 'm1', sender: 'a@shop.example' }) as Destination;
  const first = await sh.admit(g);
  assert.ok(first.ok);
  const second = sh.admit(g); // waits for the one connection
  const third = await sh.admit(g);
  assert.ok(!third.ok, 'the budget of 2 is taken by the one sending and the one waiting');
  assert.match(third.error.text, /warming up/);
  first.value.done([]);
  const s = await second;
  assert.ok(s.ok, 'the waiting one goes when the slot frees');
  s.value.done([]);
});
