// The cluster limiter against a real redis-server on loopback: two limiters (two nodes) sharing
// a rate of 10/s are admitted about 10 a second together, not 10 each; a connection lease held
// by a node process killed with SIGKILL is given back when its TTL runs out (and not before:
// the live node's renewals keep it); a link to a Redis that is not there fails at once; a
// warming-up source's day budget is spent once by the cluster, not once per node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RedisLink } from '../../src/cluster/redis-link.js';
import { ClusterLimiter } from '../../src/cluster/cluster-limiter.js';
import { REDIS_SKIP, startRedis } from '../helpers/redis-server.js';
import { SharedWarmupCounts } from '../../src/cluster/shared-warmup.js';
import { parseShaping } from '../../src/config/shaping.js';
import { Shaper } from '../../src/delivery/shaping/shaper.js';
import type { Destination } from '../../src/delivery/types.js';
import { waitFor } from '../helpers/wait-for.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function limiter(t: { after(fn: () => Promise<void>): void }, url: string, nodeId: string, leaseMs = 15_000): { link: RedisLink; limiter: ClusterLimiter } {
  // 1 s: on a loaded test machine a 100 ms answer can be late, and a late answer is a local decision.
  const link = new RedisLink({ url, timeoutMs: 1000 });
  const l = new ClusterLimiter({ link, prefix: 'test:', nodeId, leaseMs });
  link.start();
  l.start();
  t.after(async () => {
    await l.close();
    await link.close();
  });
  return { link, limiter: l };
}

test('two nodes sharing 10/s are admitted about 10 a second together', { skip: REDIS_SKIP }, async (t) => {
  const redis = await startRedis(t);
  const a = limiter(t, redis.url, 'a');
  const b = limiter(t, redis.url, 'b');
  await waitFor('both links up', () => a.link.up && b.link.up, 5000);
  const limits = { rate: 10 / 1000, maxConnections: Infinity };
  const runMs = 2000;
  const end = Date.now() + runMs;
  const admitted = { a: 0, b: 0 };
  const run = async (name: 'a' | 'b', l: ClusterLimiter): Promise<void> => {
    // Bounded: at most one question per ms of the run, and never past `end`.
    for (let i = 0; i < runMs && Date.now() < end; i++) {
      const r = await l.admit('default|sink', limits);
      if (r.ok) {
        admitted[name]++;
        r.release();
      } else await sleep(Math.min(r.waitMs, Math.max(1, end - Date.now())));
    }
  };
  await Promise.all([run('a', a.limiter), run('b', b.limiter)]);
  const total = admitted.a + admitted.b;
  // 10/s over 2 s is 20, plus the first at once; each node alone would take ~20 (~40 together).
  assert.ok(total >= 15 && total <= 22, `admitted ${JSON.stringify(admitted)}: ${total} in ${runMs} ms`);
  assert.ok(admitted.a >= 3 && admitted.b >= 3, `both nodes got a share: ${JSON.stringify(admitted)}`);
  assert.equal(a.limiter.counts.local + b.limiter.counts.local, 0, 'every admission decided by Redis');
  assert.equal(a.limiter.liveNodes, 2, 'the heartbeats: two live nodes');
});

test('a connection lease held by a killed node is given back when its TTL runs out, and renewed while it lives', { skip: REDIS_SKIP }, async (t) => {
  const redis = await startRedis(t);
  const leaseMs = 1000;
  // The other node: a separate process that takes the only lease of the site and holds it.
  const mod = fileURLToPath(new URL('../../src/cluster/', import.meta.url));
  const script = `
    import { RedisLink } from ${JSON.stringify(mod + 'redis-link.js')};
    import { ClusterLimiter } from ${JSON.stringify(mod + 'cluster-limiter.js')};
    const link = new RedisLink({ url: ${JSON.stringify(redis.url)}, timeoutMs: 200 });
    const l = new ClusterLimiter({ link, prefix: 'test:', nodeId: 'doomed', leaseMs: ${leaseMs} });
    link.start(); l.start();
    while (!link.up) await new Promise((r) => setTimeout(r, 20));
    const r = await l.admit('default|sink', { rate: null, maxConnections: 1 });
    console.log(r.ok ? 'held' : 'refused');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor('the other node holds the lease', () => out.includes('held') || out.includes('refused'), 10_000);
  assert.match(out, /held/);
  const me = limiter(t, redis.url, 'survivor', leaseMs);
  await waitFor('link up', () => me.link.up, 5000);
  const limits = { rate: null, maxConnections: 1 };
  // Twice the lease: the other node's renewals keep its lease; nothing is free.
  const until = Date.now() + 2 * leaseMs;
  while (Date.now() < until) {
    const r = await me.limiter.admit('default|sink', limits);
    assert.equal(r.ok, false, 'a lease was free while its holder lived');
    await sleep(100);
  }
  const killedAt = Date.now();
  child.kill('SIGKILL');
  let got: { ok: boolean } = { ok: false };
  await waitFor('the dead node\'s lease given back', async () => {
    const r = await me.limiter.admit('default|sink', limits);
    if (r.ok) {
      got = r;
      r.release();
    }
    return r.ok;
  }, { timeoutMs: 5 * leaseMs, intervalMs: 50 });
  const after = Date.now() - killedAt;
  assert.ok(got.ok);
  assert.ok(after <= leaseMs + 1500, `given back ${after} ms after the kill (lease ${leaseMs} ms)`);
});

test('with no Redis listening a call fails at once and the limiter decides on its own', { skip: REDIS_SKIP }, async (t) => {
  const redis = await startRedis(t);
  await redis.stop(); // a port where nothing listens now
  const me = limiter(t, redis.url, 'alone');
  const t0 = Date.now();
  const r = await me.limiter.admit('default|sink', { rate: 10 / 1000, maxConnections: 2 });
  assert.ok(Date.now() - t0 < 600, 'no wait for the 1 s deadline on an absent Redis');
  assert.equal(r.ok, true);
  assert.equal(me.limiter.counts.local, 1);
  assert.equal(me.limiter.counts.shared, 0);
  // Alone (it never saw another node): its share is the whole limit, 2 connections.
  const r2 = await me.limiter.admit('default|sink2', { rate: null, maxConnections: 2 });
  const r3 = await me.limiter.admit('default|sink2', { rate: null, maxConnections: 2 });
  const r4 = await me.limiter.admit('default|sink2', { rate: null, maxConnections: 2 });
  assert.deepEqual([r2.ok, r3.ok, r4.ok], [true, true, false]);
  await waitFor('down', () => me.link.state === 'down', 5000);
});

test('a warm-up budget is the cluster\'s: two nodes with a budget of 2 a day send 2 together', { skip: REDIS_SKIP }, async (t) => {
  const redis = await startRedis(t);
  const today = new Date().toISOString().slice(0, 10);
  const parsed = parseShaping(`[source.new]\naddress = "127.0.0.2"\nehlo = "new.example.net"\nwarmup_start = "${today}"\nwarmup_first = 2\n\n[pool.all]\nsources = { new = 1 }\ndefault = true\n\n[site.google]\ndomains = ["gmail.com"]\n`, 'f.toml');
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.error.join('\n'));
  const links: RedisLink[] = [];
  const node = (name: string): Shaper => {
    const { link } = limiter(t, redis.url, name);
    links.push(link);
    const sh = new Shaper({ file: parsed.value, defaults: { maxConnections: 20, messagesPerConnection: 1000, rate: null }, sharedWarmup: new SharedWarmupCounts({ link, prefix: 'test:' }) });
    t.after(() => sh.close());
    return sh;
  };
  const a = node('a');
  const b = node('b');
  await waitFor('links up', () => links.every((l) => l.up), 5000);
  const dest = (sh: Shaper): Destination => sh.route('gmail.com', { kind: 'smtp', key: 'smtp:mx1.example:25', hosts: [{ host: 'mx1.example', port: 25 }], tlsPolicy: 'opportunistic' }, 'opportunistic', { id: 'm1', sender: 's@shop.example' }) as Destination;
  const send = async (sh: Shaper): Promise<string> => {
    const r = await sh.admit(dest(sh));
    if (!r.ok) return r.error.text;
    r.value.done([]);
    return 'sent';
  };
  assert.equal(await send(a), 'sent');
  assert.equal(await send(b), 'sent');
  // Each node has sent one: on its own each would have budget left.
  assert.match(await send(b), /source new is warming up: its 2 messages for google today are sent/);
  assert.match(await send(a), /source new is warming up: its 2 messages for google today are sent/);
});
