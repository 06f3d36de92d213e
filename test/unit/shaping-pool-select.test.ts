// Choosing the pool and spilling (delivery/shaping/shaper.ts): a pool named by the message
// (X-Postern-Pool, the API) wins over the sender domain; one the re-read file lacks falls back
// to the sender's rule with one warning per name; a pool with warmup_overflow = "spill" routes
// a message whose source spent its budget at the site to another source with budget, and
// keeps it when none has; warm-up counts are read from and written to a store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseShaping, type ShapingFile } from '../../src/config/shaping.js';
import { Shaper, type WarmupStore } from '../../src/delivery/shaping/shaper.js';
import type { Destination } from '../../src/delivery/types.js';
import type { Logger } from '../../src/log/logger.js';

const FILE = (overflow: string): string => `[source.a]
address = "127.0.0.2"
ehlo = "a.example.net"
warmup_start = 2026-12-01
warmup_first = 1

[source.b]
address = "127.0.0.3"
ehlo = "b.example.net"
warmup_start = 2026-12-01
warmup_first = 1

[source.c]
address = "127.0.0.4"
ehlo = "c.example.net"

[pool.warm]
sources = { a = 1000, b = 1 }
warmup_overflow = "${overflow}"

[pool.main]
sources = { c = 1 }
default = true

[pool.news]
sources = { b = 1 }
sender_domains = ["news.example"]

[site.google]
domains = ["gmail.com"]
`;

function ok(text: string): ShapingFile {
  const r = parseShaping(text, 'f.toml');
  if (!r.ok) assert.fail(r.error.join('\n'));
  return r.value;
}

const smtp = (host: string): Destination => ({ kind: 'smtp', key: `smtp:${host}:25`, hosts: [{ host, port: 25 }], tlsPolicy: 'opportunistic' });
const defaults = { maxConnections: 20, messagesPerConnection: 1000, rate: null };
type Smtp = Extract<Destination, { kind: 'smtp' }>;

function memoryStore(): WarmupStore & { data: Map<string, number> } {
  const data = new Map<string, number>();
  return { data, get: (day, key) => data.get(`${day}|${key}`) ?? 0, set: (day, key, n) => void data.set(`${day}|${key}`, n) };
}

function captureLog(): { log: Logger; warnings: Array<{ obj: Record<string, unknown>; msg: string }> } {
  const warnings: Array<{ obj: Record<string, unknown>; msg: string }> = [];
  const noop = (): void => {};
  const log = { warn: (obj: Record<string, unknown>, msg: string) => warnings.push({ obj, msg }), info: noop, debug: noop, error: noop, trace: noop, fatal: noop } as unknown as Logger;
  return { log, warnings };
}

test('a named pool wins over the sender domain; the destination carries it; without a name the sender rule stands', () => {
  const sh = new Shaper({ file: ok(FILE('defer')), defaults });
  const named = sh.route('x.example', smtp('mx.x.example'), 'opportunistic', { id: 'm1', sender: 'a@news.example', pool: 'main' }) as Smtp;
  assert.equal(named.shape?.source, 'c');
  assert.equal(named.shape?.pool, 'main');
  assert.equal(named.key, 'smtp:mx.x.example:25~c');
  const plain = sh.route('x.example', smtp('mx.x.example'), 'opportunistic', { id: 'm1', sender: 'a@news.example' }) as Smtp;
  assert.equal(plain.shape?.source, 'b');
  assert.equal(plain.shape?.pool, 'news');
  assert.equal(sh.poolOf({ id: 'm', sender: 'x@shop.example', pool: 'warm' })?.name, 'warm', 'a pool no sender domain names is still chosen by name');
});

test('a named pool the re-read file lacks: the sender rule applies, one warning per pool name', () => {
  const { log, warnings } = captureLog();
  const sh = new Shaper({ file: ok(FILE('defer')), defaults, log });
  sh.setFile(ok(FILE('defer').replace('[pool.warm]', '[pool.warm2]')));
  for (let i = 0; i < 5; i++) {
    const d = sh.route('x.example', smtp('mx.x.example'), 'opportunistic', { id: `m${i}`, sender: 'a@news.example', pool: 'warm' }) as Smtp;
    assert.equal(d.shape?.pool, 'news', 'falls back to the sender domain\'s pool');
    sh.route('x.example', smtp('mx.x.example'), 'opportunistic', { id: `n${i}`, sender: 'a@shop.example', pool: 'gone' });
  }
  assert.deepEqual(warnings.map((w) => w.obj.pool), ['warm', 'gone']);
  assert.match(warnings[0]!.msg, /no longer has/);
});

test('spill: a source past its budget at a site sends the message from another source of the pool; none left: it stays and waits for tomorrow', async () => {
  const now = Date.parse('2026-12-01T10:00:00Z');
  const sh = new Shaper({ file: ok(FILE('spill')), defaults, now: () => now, random: () => 0 });
  // Weights 1000:1: find a message the hash gives to a, and one it gives to a as well.
  const ids = Array.from({ length: 50 }, (_, i) => `msg-${i}`).filter((id) => sh.sourceFor({ id, sender: 'x@shop.example', pool: 'warm' })?.name === 'a');
  assert.ok(ids.length >= 3);
  const m = (id: string): { id: string; sender: string; pool: string } => ({ id, sender: 'x@shop.example', pool: 'warm' });
  const route = (id: string): Smtp => sh.route('gmail.com', smtp('mx1.google.example'), 'opportunistic', m(id)) as Smtp;
  const first = route(ids[0]!);
  assert.equal(first.shape?.source, 'a');
  const a1 = await sh.admit(first);
  assert.ok(a1.ok);
  a1.value.done([]);
  const second = route(ids[1]!);
  assert.equal(second.shape?.source, 'b', 'a has spent its 1 message for google today: b has budget');
  assert.equal(second.shape?.localAddress, '127.0.0.3');
  assert.equal(second.key, 'smtp:mx1.google.example:25@google~b');
  assert.equal(route(ids[1]!).key, second.key, 'the same message keeps its spilled source while nothing changes');
  const other = sh.route('other.example', smtp('mx.other.example'), 'opportunistic', m(ids[1]!)) as Smtp;
  assert.equal(other.shape?.source, 'a', 'another site has its own budget: the message stays on its source there');
  const a2 = await sh.admit(second);
  assert.ok(a2.ok);
  a2.value.done([]);
  const third = route(ids[2]!);
  assert.equal(third.shape?.source, 'a', 'every source spent: the message stays on its own source');
  const a3 = await sh.admit(third);
  assert.ok(!a3.ok);
  assert.match(a3.error.text, /warming up/);
  assert.equal(sh.retryAt(a3.error, 0, false, now), Date.parse('2026-12-02T00:00:00Z'), 'waits for the next UTC day');
});

test('spill: a transaction routed to a source that ran out meanwhile comes back in seconds, to be routed again', async () => {
  const now = Date.parse('2026-12-01T10:00:00Z');
  const sh = new Shaper({ file: ok(FILE('spill')), defaults, now: () => now, random: () => 0 });
  const ids = Array.from({ length: 50 }, (_, i) => `msg-${i}`).filter((id) => sh.sourceFor({ id, sender: 'x@shop.example', pool: 'warm' })?.name === 'a');
  const routes = ids.slice(0, 2).map((id) => sh.route('gmail.com', smtp('mx1.google.example'), 'opportunistic', { id, sender: 'x@shop.example', pool: 'warm' }) as Smtp);
  assert.deepEqual(routes.map((r) => r.shape?.source), ['a', 'a'], 'both routed before either was sent');
  const a = await sh.admit(routes[0]!);
  assert.ok(a.ok);
  a.value.done([]);
  const late = await sh.admit(routes[1]!);
  assert.ok(!late.ok);
  const due = sh.retryAt(late.error, 0, false, now)!;
  assert.ok(due > now && due <= now + 3000, `due in seconds, not tomorrow: ${due - now} ms`);
  const again = sh.route('gmail.com', smtp('mx1.google.example'), 'opportunistic', { id: ids[1]!, sender: 'x@shop.example', pool: 'warm' }) as Smtp;
  assert.equal(again.shape?.source, 'b');
});

test('defer (the default): the message waits for tomorrow on its own source', async () => {
  const now = Date.parse('2026-12-01T10:00:00Z');
  const sh = new Shaper({ file: ok(FILE('defer')), defaults, now: () => now, random: () => 0 });
  const ids = Array.from({ length: 50 }, (_, i) => `msg-${i}`).filter((id) => sh.sourceFor({ id, sender: 'x@shop.example', pool: 'warm' })?.name === 'a');
  const r = (id: string): Smtp => sh.route('gmail.com', smtp('mx1.google.example'), 'opportunistic', { id, sender: 'x@shop.example', pool: 'warm' }) as Smtp;
  const a = await sh.admit(r(ids[0]!));
  assert.ok(a.ok);
  a.value.done([]);
  const d = r(ids[1]!);
  assert.equal(d.shape?.source, 'a');
  const refused = await sh.admit(d);
  assert.ok(!refused.ok);
  assert.equal(sh.retryAt(refused.error, 0, false, now), Date.parse('2026-12-02T00:00:00Z'));
  assert.deepEqual(errorsOf(FILE('sometimes')), ['f.toml:19: warmup_overflow must be "defer" or "spill", got "sometimes"']);
});

test('warm-up counts: each change is told to the store, and a new shaper (a restart) starts from the stored count', async () => {
  const now = Date.parse('2026-12-01T10:00:00Z');
  const store = memoryStore();
  const day = Math.floor(now / 86_400_000);
  const sh = new Shaper({ file: ok(FILE('defer')), defaults, now: () => now, random: () => 0, warmup: store });
  const d = sh.route('gmail.com', smtp('mx1.google.example'), 'opportunistic', { id: 'x', sender: 'x@news.example' }) as Smtp;
  assert.equal(d.shape?.source, 'b');
  const a = await sh.admit(d);
  assert.ok(a.ok);
  a.value.done([]);
  assert.deepEqual([...store.data], [[`${day}|b|google`, 1]]);
  const restarted = new Shaper({ file: ok(FILE('defer')), defaults, now: () => now, random: () => 0, warmup: store });
  const refused = await restarted.admit(d);
  assert.ok(!refused.ok, 'the stored count is today\'s spending');
  assert.match(refused.error.text, /warming up/);
  const fresh = new Shaper({ file: ok(FILE('defer')), defaults, now: () => now + 86_400_000, random: () => 0, warmup: store });
  const tomorrow = await fresh.admit(d);
  assert.ok(tomorrow.ok, 'the count of another day does not apply');
  tomorrow.value.done([]);
});

function errorsOf(text: string): string[] {
  const r = parseShaping(text, 'f.toml');
  assert.ok(!r.ok, 'expected errors');
  return r.error;
}
