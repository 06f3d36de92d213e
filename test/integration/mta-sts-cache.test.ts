// The MTA-STS policy cache against hostile policy servers (RFC 8461 §10.2: the cache is what
// stops a man in the middle from stripping STARTTLS): a loopback HTTPS server (test CA) serves
// one policy per domain by path, hostile ones with a 64 KiB unknown line. What is kept is
// bounded, a flood of new policies cannot push out an enforce policy kept earlier (it survives a
// restart), the file is written behind (a burst of fetches costs one write), and a corrupt line
// in the file costs that policy only.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestCa, type TestCa } from '../helpers/test-ca.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { MtaSts, type MtaStsOptions } from '../../src/delivery/mta-sts.js';
import { AddressPolicy } from '../../src/delivery/address-policy.js';

const HOST = 'mta-sts.example.test';
const LEGIT = 'version: STSv1\r\nmode: enforce\r\nmx: mx.legit.test\r\nmax_age: 86400\r\n';
const NONE = 'version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n';
const HOSTILE = `version: STSv1\r\nmode: enforce\r\nmx: mx.attacker.test\r\nmax_age: 31557600\r\njunk: ${'x'.repeat(65_000)}\r\n`;

/** One policy per domain, by path (`/<domain>/.well-known/mta-sts.txt`): legit.test, none.test, else the hostile one. */
async function policyServer(t: TestContext, ca: TestCa): Promise<{ port: number; hits: number }> {
  const { cert, key } = ca.issue([HOST]);
  const state = { port: 0, hits: 0 };
  const srv = createHttpsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
    state.hits++;
    const d = (req.url ?? '').split('/')[1] ?? '';
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(d === 'legit.test' ? LEGIT : d === 'none.test' ? NONE : HOSTILE);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  state.port = (srv.address() as AddressInfo).port;
  t.after(() => new Promise<void>((resolve) => { srv.closeAllConnections(); srv.close(() => resolve()); }));
  return state;
}

function sts(t: TestContext, ca: TestCa, port: number, o: Partial<MtaStsOptions> & { txtDown?: boolean } = {}): MtaSts {
  const m = new MtaSts({
    dns: {
      resolveTxt: async () => {
        if (o.txtDown) throw Object.assign(new Error('timed out'), { code: 'ETIMEOUT' });
        return [['v=STSv1; id=1']];
      },
    },
    policy: new AddressPolicy({ allowLoopback: true, ownAddresses: [] }),
    origin: (d) => `https://${HOST}:${port}/${d}`,
    resolveHost: async () => ['127.0.0.1'],
    ca: [ca.caPem],
    fetchTimeoutMs: 5000,
    ...o,
  });
  t.after(() => m.close());
  return m;
}

test('a policy with a 64 KiB unknown line is kept bounded: its known lines only, in memory and in the file', async (t) => {
  const ca = makeTestCa(t);
  const srv = await policyServer(t, ca);
  const cacheFile = join(tmpdir(t), 'sts.json');
  const m = sts(t, ca, srv.port, { cacheFile });
  const r = await m.policyFor('d1.attacker.test');
  assert.equal(r.kind === 'policy' && r.policy.mode, 'enforce');
  assert.deepEqual(r.kind === 'policy' && r.policy.lines, ['version: STSv1', 'mode: enforce', 'mx: mx.attacker.test', 'max_age: 31557600']);
  await m.flushed();
  assert.ok(statSync(cacheFile).size < 512, `cache file of ${statSync(cacheFile).size} bytes`);
});

test('a flood of hostile policies cannot push out an earlier enforce policy: it survives a restart; none and expired ones make room first', async (t) => {
  const ca = makeTestCa(t);
  const srv = await policyServer(t, ca);
  const cacheFile = join(tmpdir(t), 'sts.json');
  const clock = { now: Date.now() };
  const m = sts(t, ca, srv.port, { cacheFile, maxEntries: 10, now: () => clock.now });
  assert.equal((await m.policyFor('legit.test')).kind, 'policy');
  assert.equal((await m.policyFor('none.test')).kind, 'policy');
  for (let i = 0; i < 40; i++) {
    const r = await m.policyFor(`d${i}.attacker.test`);
    // Past the cache's room the policy is still used (from the memory-only overflow).
    assert.equal(r.kind === 'policy' && r.policy.mode, 'enforce', `d${i}`);
  }
  assert.equal(m.cached('legit.test')?.kind, 'policy', 'the enforce policy stays');
  assert.equal(m.cached('none.test'), null, 'the none policy made room');
  const hits = srv.hits;
  assert.equal((await m.policyFor('d39.attacker.test')).kind, 'policy');
  assert.equal(srv.hits, hits, 'an overflow policy is served without a fetch');
  await m.close();

  // Restart with the TXT lookup blocked (the man in the middle): the enforce policy still stands.
  const after = sts(t, ca, srv.port, { cacheFile, maxEntries: 10, txtDown: true, now: () => clock.now });
  const r = await after.policyFor('legit.test');
  assert.equal(r.kind === 'policy' && r.policy.mode, 'enforce', JSON.stringify(r));
  assert.deepEqual(r.kind === 'policy' && r.policy.mx, ['mx.legit.test']);
  await after.close();

  // A day and a half later legit.test (max_age 1 day) has expired: its place goes to a new policy.
  const later = sts(t, ca, srv.port, { cacheFile, maxEntries: 10, now: () => clock.now });
  assert.equal(later.cached('legit.test')?.kind, 'policy');
  clock.now += 36 * 3600_000;
  assert.equal((await later.policyFor('new.attacker.test')).kind, 'policy');
  await later.flushed();
  const kept = readFileSync(cacheFile, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { d: string }).d);
  assert.equal(kept.length, 10);
  assert.ok(kept.includes('new.attacker.test') && !kept.includes('legit.test'), kept.join(' '));
});

test('written behind: a burst of fetches costs one or two file writes, none on the fetch path', async (t) => {
  const ca = makeTestCa(t);
  const srv = await policyServer(t, ca);
  const cacheFile = join(tmpdir(t), 'sts.json');
  const m = sts(t, ca, srv.port, { cacheFile, saveDelayMs: 60_000 });
  for (let i = 0; i < 30; i++) await m.policyFor(`d${i}.attacker.test`);
  assert.equal(m.cacheWrites, 0, 'nothing written while fetching');
  await m.flushed();
  assert.equal(m.cacheWrites, 1);
  assert.equal(readFileSync(cacheFile, 'utf8').trim().split('\n').length, 30);
  await m.flushed();
  assert.equal(m.cacheWrites, 1, 'nothing changed: no write');
});

test('a cache file with a corrupt line loads the others; the older one-array form still loads', async (t) => {
  const ca = makeTestCa(t);
  const srv = await policyServer(t, ca);
  const dir = tmpdir(t);
  const now = Date.now();
  const entry = (d: string, mode = 'enforce'): Record<string, unknown> => ({ d, id: 'abc', lines: ['version: STSv1', `mode: ${mode}`, `mx: mx.${d}`, 'max_age: 86400'], fetchedAt: now, expiresAt: now + 86_400_000 });
  const file = join(dir, 'sts.json');
  writeFileSync(file, [
    JSON.stringify(entry('a.test')),
    JSON.stringify(entry('b.test')).slice(0, 30), // torn
    JSON.stringify({ ...entry('c.test'), lines: ['version: STSv1', 'mode: bogus'] }), // does not parse as a policy
    JSON.stringify({ ...entry('not a domain!') }),
    '{"d": 1}',
    JSON.stringify(entry('e.test', 'testing')),
    '',
  ].join('\n'));
  const m = sts(t, ca, srv.port, { cacheFile: file, txtDown: true });
  assert.equal(m.cached('a.test')?.kind, 'policy');
  assert.equal(m.cached('e.test')?.kind, 'policy');
  assert.equal(m.cached('b.test'), null);
  assert.equal(m.cached('c.test'), null);
  const old = join(dir, 'old.json');
  writeFileSync(old, JSON.stringify([{ ...entry('f.test'), lines: ['version: STSv1', 'mode: enforce', 'mx: mx.f.test', 'max_age: 86400', `junk: ${'y'.repeat(60_000)}`] }]));
  const m2 = sts(t, ca, srv.port, { cacheFile: old, txtDown: true });
  const f = m2.cached('f.test');
  assert.equal(f?.kind === 'policy' && f.policy.mode, 'enforce');
  assert.equal(f?.kind === 'policy' && f.policy.lines.length, 4, 'the unknown line is not kept');
  assert.equal(srv.hits, 0);
});
