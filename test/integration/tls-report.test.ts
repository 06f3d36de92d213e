// SMTP TLS reporting (RFC 8460): outcomes fed into the TlsReporter are counted per policy
// domain per UTC day, bounded; the JSON has the §4 fields; the counts survive a restart; after
// the day ends (an injected clock) each domain's report goes to the rua of its _smtp._tls TXT
// record (an injected resolver): gzip'd over HTTPS to a loopback receiver (test CA), and by
// mail through a node into a loopback Maildir with the §5.3 headers. Hostile TXT records and
// receivers (several records, bad URIs, loopback refused by the address policy, a redirect)
// send nothing they should not.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { TlsReporter, utcDay, type TlsReporterOptions } from '../../src/delivery/tls-report.js';
import type { TlsOutcome } from '../../src/delivery/tls-outcome.js';
import { AddressPolicy } from '../../src/delivery/address-policy.js';
import { makeTestCa, type TestCa } from '../helpers/cert-authority.js';
import { startTestNode } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';

const DAY = Date.parse('2026-03-01T10:00:00Z');
const NEXT = Date.parse('2026-03-02T00:30:00Z');

function reporter(t: TestContext, o: Partial<TlsReporterOptions> & { clock?: { now: number } } = {}): TlsReporter {
  const clock = o.clock ?? { now: DAY };
  const r = new TlsReporter({
    dataDir: o.dataDir ?? tmpdir(t, 'postern-tlsrpt-'),
    organization: 'Postern Test Org',
    contact: 'tls-admin@sender.test',
    hostname: 'mx.sender.test',
    resolver: o.resolver ?? { resolveTxt: async () => [] },
    enqueue: o.enqueue ?? (async () => 'x'),
    now: () => clock.now,
    ...o,
  });
  t.after(() => r.close());
  return r;
}

const sts = { type: 'sts' as const, strings: ['version: STSv1', 'mode: enforce', 'mx: mx1.example.com', 'max_age: 86400'], mxHosts: ['mx1.example.com'] };
function outcome(domain: string, result: TlsOutcome['result'], extra: Partial<TlsOutcome> = {}): TlsOutcome {
  return { policyDomain: domain, policy: sts, mxHost: 'mx1.example.com', receivingIp: '192.0.2.25', result, at: DAY, ...extra };
}

test('counts per policy domain and day; the report has the RFC 8460 §4 fields', (t) => {
  const r = reporter(t);
  for (let i = 0; i < 5; i++) r.record(outcome('Example.COM', 'success'));
  r.record(outcome('example.com', { failure: 'certificate-expired', detail: 'expired' }));
  r.record(outcome('example.com', { failure: 'certificate-expired' }));
  r.record(outcome('example.com', { failure: 'starttls-not-supported' }, { mxHost: 'mx2.example.com', receivingIp: '192.0.2.26' }));
  r.record(outcome('example.com', 'success', { policy: { type: 'no-policy-found' } }));
  r.record(outcome('other.test', 'success', { at: DAY + 86_400_000 }));
  const rep = r.report('2026-03-01', 'example.com') as Record<string, unknown>;
  assert.deepEqual(rep, {
    'organization-name': 'Postern Test Org',
    'date-range': { 'start-datetime': '2026-03-01T00:00:00Z', 'end-datetime': '2026-03-02T00:00:00Z' },
    'contact-info': 'tls-admin@sender.test',
    'report-id': '2026-03-01T00:00:00Z_example.com@mx.sender.test',
    policies: [
      {
        policy: { 'policy-type': 'sts', 'policy-string': sts.strings, 'policy-domain': 'example.com', 'mx-host': ['mx1.example.com'] },
        summary: { 'total-successful-session-count': 5, 'total-failure-session-count': 3 },
        'failure-details': [
          { 'result-type': 'certificate-expired', 'receiving-mx-hostname': 'mx1.example.com', 'receiving-ip': '192.0.2.25', 'failed-session-count': 2 },
          { 'result-type': 'starttls-not-supported', 'receiving-mx-hostname': 'mx2.example.com', 'receiving-ip': '192.0.2.26', 'failed-session-count': 1 },
        ],
      },
      { policy: { 'policy-type': 'no-policy-found', 'policy-domain': 'example.com' }, summary: { 'total-successful-session-count': 1, 'total-failure-session-count': 0 } },
    ],
  });
  assert.equal(r.report('2026-03-01', 'other.test'), null, 'another UTC day');
  assert.ok(r.report('2026-03-02', 'other.test'));
});

test('bounded: domains per day (the rest counted as dropped), failure details per policy', (t) => {
  const r = reporter(t, { maxDomainsPerDay: 2 });
  r.record(outcome('a.test', 'success'));
  r.record(outcome('b.test', 'success'));
  r.record(outcome('c.test', 'success'));
  r.record(outcome('a.test', 'success'));
  assert.equal(r.dropped, 1);
  assert.equal(r.report('2026-03-01', 'c.test'), null);
  for (let i = 0; i < 500; i++) r.record(outcome('a.test', { failure: 'validation-failure' }, { mxHost: `mx${i}.a.test` }));
  const p = (r.report('2026-03-01', 'a.test')!.policies as Array<Record<string, unknown>>)[0]!;
  assert.equal((p['failure-details'] as unknown[]).length, 20);
  assert.deepEqual(p.summary, { 'total-successful-session-count': 2, 'total-failure-session-count': 500 });
  r.record(outcome('not a domain!', 'success'));
  assert.equal(r.report('2026-03-01', 'not a domain!'), null);
});

test('the counts survive a restart (written behind, and on close)', async (t) => {
  const dir = tmpdir(t, 'postern-tlsrpt-');
  const a = reporter(t, { dataDir: dir });
  a.record(outcome('example.com', 'success'));
  a.record(outcome('example.com', { failure: 'certificate-host-mismatch' }));
  await a.close();
  const b = reporter(t, { dataDir: dir });
  assert.deepEqual(b.report('2026-03-01', 'example.com'), a.report('2026-03-01', 'example.com'));
  assert.ok(existsSync(join(dir, 'tlsrpt.json')));
});

async function httpsReceiver(t: TestContext, ca: TestCa, answer: (url: string) => [number, Record<string, string>?] = () => [200]) {
  const leaf = ca.leaf('127.0.0.1');
  const got: Array<{ url: string; type: string | undefined; body: Buffer }> = [];
  const srv = createHttpsServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ url: req.url ?? '', type: req.headers['content-type'], body: Buffer.concat(chunks) });
      const [code, headers] = answer(req.url ?? '');
      res.writeHead(code, headers).end('ok');
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { srv.closeAllConnections(); srv.close(() => resolve()); }));
  return { got, origin: `https://127.0.0.1:${(srv.address() as AddressInfo).port}` };
}

test('after the day: gzip\'d JSON POSTed to the https rua (test CA), then forgotten; nothing before the day ends', async (t) => {
  const ca = makeTestCa(t);
  const rx = await httpsReceiver(t, ca);
  const clock = { now: DAY };
  const asked: string[] = [];
  const r = reporter(t, {
    clock,
    ca: [ca.pem],
    addressPolicy: new AddressPolicy({ allowLoopback: true }),
    resolver: { resolveTxt: async (name) => (asked.push(name), [['v=TLSRPTv1; ', `rua=${rx.origin}/tlsrpt`]]) },
  });
  r.record(outcome('example.com', 'success'));
  await r.sendDue();
  assert.equal(rx.got.length, 0, 'the day has not ended');
  clock.now = NEXT;
  await r.sendDue();
  assert.deepEqual(asked, ['_smtp._tls.example.com']);
  assert.equal(rx.got.length, 1);
  assert.equal(rx.got[0]!.type, 'application/tlsrpt+gzip');
  const json = JSON.parse(gunzipSync(rx.got[0]!.body).toString('utf8'));
  assert.equal(json['report-id'], '2026-03-01T00:00:00Z_example.com@mx.sender.test');
  assert.equal(json.policies[0].summary['total-successful-session-count'], 1);
  assert.equal(r.report('2026-03-01', 'example.com'), null, 'sent days are forgotten');
  await r.sendDue();
  assert.equal(rx.got.length, 1);
});

test('hostile DNS and receivers: two records, bad URIs, loopback under the default policy, a redirect', async (t) => {
  const ca = makeTestCa(t);
  const rx = await httpsReceiver(t, ca, (url) => (url === '/moved' ? [302, { location: '/elsewhere' }] : [200]));
  const errors: string[] = [];
  const txt: Record<string, string[][]> = {
    '_smtp._tls.two.test': [[`v=TLSRPTv1; rua=${rx.origin}/two`], [`v=TLSRPTv1; rua=${rx.origin}/two-b`]],
    '_smtp._tls.bad.test': [['v=TLSRPTv1; rua=http://127.0.0.1/x,ftp://h/y,javascript:alert(1),mailto:no-at-sign']],
    '_smtp._tls.moved.test': [[`v=TLSRPTv1; rua=${rx.origin}/moved`]],
    '_smtp._tls.long.test': [[`v=TLSRPTv1; rua=${rx.origin}/${'x'.repeat(5000)}`]],
  };
  const clock = { now: DAY };
  const strict = reporter(t, {
    clock,
    ca: [ca.pem],
    resolver: { resolveTxt: async () => [[`v=TLSRPTv1;rua=${rx.origin}/loop`]] },
    onError: (what, err) => errors.push(`${what}: ${(err as Error).message}`),
  });
  strict.record(outcome('example.com', 'success'));
  const loose = reporter(t, {
    clock,
    ca: [ca.pem],
    addressPolicy: new AddressPolicy({ allowLoopback: true }),
    resolver: { resolveTxt: async (name) => txt[name] ?? [] },
    onError: (what, err) => errors.push(`${what}: ${(err as Error).message}`),
  });
  for (const d of ['two.test', 'bad.test', 'moved.test', 'long.test']) loose.record(outcome(d, 'success'));
  clock.now = NEXT;
  await strict.sendDue();
  await loose.sendDue();
  assert.deepEqual(rx.got.map((g) => g.url), ['/moved'], 'only the redirecting one was reached, and its Location not followed');
  assert.ok(errors.some((e) => /refusing https:\/\/127\.0\.0\.1:\d+: 127\.0\.0\.1 is loopback/.test(e)), errors.join('\n'));
  assert.ok(errors.some((e) => /moved\.test .* answered 302/.test(e)), errors.join('\n'));
});

test('mailto: a multipart/report through the node itself into a loopback Maildir, with the §5.3 headers', async (t) => {
  const root = tmpdir(t, 'postern-maildir-');
  mkdirSync(join(root, 'reports.test', 'tls', 'new'), { recursive: true });
  mkdirSync(join(root, 'reports.test', 'tls', 'tmp'), { recursive: true });
  mkdirSync(join(root, 'reports.test', 'tls', 'cur'), { recursive: true });
  const clock = { now: DAY };
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `reports.test=maildir:${root}`, POSTERN_TLSRPT: 'true', POSTERN_TLSRPT_ORG: 'Node Org' }, {
    delivery: { pollIntervalMs: 50 },
    tlsReport: { now: () => clock.now, resolver: { resolveTxt: async (n) => (n === '_smtp._tls.example.com' ? [['v=TLSRPTv1; rua=mailto:tls@reports.test']] : []) } },
  });
  const r = node.tlsReport!;
  assert.ok(r);
  r.record(outcome('example.com', 'success'));
  r.record(outcome('example.com', { failure: 'sts-policy-invalid' }));
  clock.now = NEXT;
  await r.sendDue();
  const dir = join(root, 'reports.test', 'tls', 'new');
  await waitFor('the report in the Maildir', () => readdirSync(dir).length === 1, 15_000);
  const text = readFileSync(join(dir, readdirSync(dir)[0]!), 'utf8');
  assert.match(text, /^TLS-Report-Domain: example\.com$/m);
  assert.match(text, /^TLS-Report-Submitter: Node Org$/m);
  assert.match(text, /^Content-Type: multipart\/report; report-type="tlsrpt"; boundary="/m);
  assert.match(text, /^Subject: Report Domain: example\.com Submitter: Node Org Report-ID: <2026-03-01T00:00:00Z_example\.com@mx\.test\.example>$/m);
  assert.match(text, /^Content-Type: application\/tlsrpt\+gzip$/m);
  const b64 = /Content-Disposition: attachment; filename="mx\.test\.example!example\.com!\d+!\d+\.json\.gz"\n\n([A-Za-z0-9+/=\n]+)\n--/.exec(text.replace(/\r\n/g, '\n'))?.[1];
  assert.ok(b64, text);
  const json = JSON.parse(gunzipSync(Buffer.from(b64.replace(/\n/g, ''), 'base64')).toString('utf8'));
  assert.equal(json['organization-name'], 'Node Org');
  assert.equal(json['contact-info'], 'postmaster@mx.test.example');
  assert.deepEqual(json.policies[0].summary, { 'total-successful-session-count': 1, 'total-failure-session-count': 1 });
  assert.equal(utcDay(DAY), '2026-03-01');
});

test('bounded: policy strings and MX names a policy, and the size of a day (the rest counted as dropped)', async (t) => {
  const dir = tmpdir(t, 'postern-tlsrpt-');
  const errors: string[] = [];
  const r = reporter(t, { dataDir: dir, onError: (what, err) => errors.push(`${what}: ${(err as Error).message}`) });
  const big = { type: 'sts' as const, strings: Array.from({ length: 64 }, (_, i) => `junk${i}: ${'x'.repeat(600)}`), mxHosts: Array.from({ length: 64 }, () => 'm'.repeat(600)) };
  r.record(outcome('big.test', 'success', { policy: big }));
  const p = (r.report('2026-03-01', 'big.test')!.policies as Array<{ policy: Record<string, string[]> }>)[0]!.policy;
  assert.ok(p['policy-string']!.join('').length <= 4096, `${p['policy-string']!.join('').length} characters of policy strings`);
  assert.ok(p['mx-host']!.join('').length <= 4096);
  assert.ok(p['policy-string']!.every((x) => x.length <= 512));
  // Each domain with its own large policy: the day fills up long before 10,000 domains.
  for (let i = 0; i < 2000; i++) r.record(outcome(`d${i}.test`, 'success', { policy: { ...big, strings: [`id: ${i}`, ...big.strings] } }));
  assert.ok(r.dropped > 0, 'new domains refused once the day is full');
  assert.equal(errors.filter((e) => /the day is full/.test(e)).length, 1, 'told once a day');
  await r.flush();
  const size = statSync(join(dir, 'tlsrpt.json')).size;
  assert.ok(size < 10 * 1024 * 1024, `tlsrpt.json of ${size} bytes`);
});

test('flush writes only what changed, and off this thread: it returns before the file is written', async (t) => {
  const dir = tmpdir(t, 'postern-tlsrpt-');
  const file = join(dir, 'tlsrpt.json');
  const r = reporter(t, { dataDir: dir });
  r.record(outcome('example.com', 'success'));
  assert.equal(existsSync(file), false, 'written behind, not at once');
  const p = r.flush();
  assert.equal(existsSync(file), false, 'the write is asynchronous');
  await p;
  assert.ok(existsSync(file));
  rmSync(file);
  await r.flush();
  assert.equal(existsSync(file), false, 'nothing changed: nothing written');
});

/** An HTTPS receiver that never answers /stall (the request is read, no reply) and answers 200 to the rest. */
async function stallingReceiver(t: TestContext, ca: TestCa) {
  const leaf = ca.leaf('127.0.0.1');
  const got: string[] = [];
  const srv = createHttpsServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, (req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/stall') return;
      got.push(req.url ?? '');
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { srv.closeAllConnections(); srv.close(() => resolve()); }));
  return { got, origin: `https://127.0.0.1:${(srv.address() as AddressInfo).port}` };
}

function within<T>(p: Promise<T>, ms: number): Promise<'done' | 'late'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p.then(() => 'done' as const), new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), ms); })]).finally(() => clearTimeout(timer));
}

test('stalling receivers for many domains do not hold a good domain\'s report: sent in parallel, each exchange bounded', async (t) => {
  const ca = makeTestCa(t);
  const rx = await stallingReceiver(t, ca);
  const clock = { now: DAY };
  const r = reporter(t, {
    clock,
    ca: [ca.pem],
    addressPolicy: new AddressPolicy({ allowLoopback: true }),
    httpsTimeoutMs: 400,
    runLimitMs: 20_000,
    resolver: { resolveTxt: async (name) => [[`v=TLSRPTv1; rua=${rx.origin}/${name.startsWith('_smtp._tls.good') ? 'good' : 'stall'}`]] },
    onError: () => {},
  });
  for (let i = 0; i < 40; i++) r.record(outcome(`s${i}.test`, 'success'));
  r.record(outcome('good.test', 'success'));
  clock.now = NEXT;
  const t0 = Date.now();
  // Sequential, 40 stalls of 400 ms would be 16 s before good.test; 8 at a time, 2 s.
  assert.equal(await within(r.sendDue(), 8000), 'done', 'the run ended in time');
  assert.deepEqual(rx.got, ['/good']);
  assert.ok(Date.now() - t0 < 8000);
});

test('a run stops at its limit; what it did not reach waits for the next run, and a day older than that is dropped (logged)', async (t) => {
  const ca = makeTestCa(t);
  const rx = await stallingReceiver(t, ca);
  const clock = { now: DAY };
  const errors: string[] = [];
  const r = reporter(t, {
    clock,
    ca: [ca.pem],
    addressPolicy: new AddressPolicy({ allowLoopback: true }),
    httpsTimeoutMs: 60_000,
    runLimitMs: 1500,
    resolver: { resolveTxt: async () => [[`v=TLSRPTv1; rua=${rx.origin}/stall`]] },
    onError: (what, err) => errors.push(`${what}: ${(err as Error).message}`),
  });
  for (let i = 0; i < 20; i++) r.record(outcome(`old${i}.test`, 'success'));
  for (let i = 0; i < 20; i++) r.record(outcome(`new${i}.test`, 'success', { at: DAY + 86_400_000 }));
  clock.now = NEXT + 86_400_000; // 2026-03-03T00:30Z: 03-02 is yesterday, 03-01 had its run
  const t0 = Date.now();
  assert.equal(await within(r.sendDue(), 6000), 'done', 'the run ended at its limit');
  assert.ok(Date.now() - t0 >= 1400);
  for (let i = 0; i < 20; i++) assert.equal(r.report('2026-03-01', `old${i}.test`), null, `old${i}`);
  assert.ok(errors.some((e) => /^reports of 2026-03-01: 20 domain\(s\) not sent .*dropped/.test(e)), errors.join('\n'));
  const left = Array.from({ length: 20 }, (_, i) => r.report('2026-03-02', `new${i}.test`)).filter((x) => x !== null).length;
  assert.equal(left, 12, 'yesterday: 8 tried (cut at the limit), 12 kept for the next run');
  assert.equal(errors.filter((e) => /cut: the run/.test(e)).length, 8);
});
