// The HTTP API against a real node (SMTP listener, LMDB queue): health/ready, bearer auth, the
// refusal to serve without a token off loopback, injection (durable, exact bytes, Received,
// priority, send_at), its errors, the Prometheus exposition, and queue administration.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { startTestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait-for.js';
import { RawClient } from '../helpers/smtp-client.js';
import { startHttpServer } from '../../src/http/server.js';
import { QUEUE_COUNTS_MAX_AGE_MS } from '../../src/http/cached-counts.js';
import { silentLogger } from '../../src/log/logger.js';
import { PosternError } from '../../src/errors.js';
import type { Config } from '../../src/config/schema.js';
import type { PosternNode } from '../../src/main.js';

const TOKEN = 'test-token-0123456789';

interface Api {
  node: PosternNode;
  base: string;
  queued: number;
  call(method: string, path: string, opts?: { json?: unknown; body?: string | Buffer; token?: string | null; type?: string }): Promise<{ status: number; json: any; headers: Headers }>;
}

async function startApi(t: TestContext, env: Record<string, string> = {}, over: Partial<Config> = {}): Promise<Api> {
  // t.after hooks run in the order registered: this one, before the node's, closes the API
  // before the queue it writes to.
  let server: Awaited<ReturnType<typeof startHttpServer>> | null = null;
  t.after(() => server?.close());
  const node = await startTestNode(t, { POSTERN_MAX_RECIPIENTS: '3', POSTERN_MAX_MESSAGE_BYTES: '8K', POSTERN_HTTP_MAX_BODY_BYTES: '64K', ...env });
  const config: Config = { ...node.config, httpHost: '127.0.0.1', httpPort: 0, apiToken: TOKEN, ...over };
  const a: Api = {
    node,
    base: '',
    queued: 0,
    async call(method, path, opts = {}) {
      const headers: Record<string, string> = {};
      const token = opts.token === undefined ? TOKEN : opts.token;
      if (token !== null) headers.authorization = `Bearer ${token}`;
      let body: string | Buffer | undefined = opts.body;
      if (opts.json !== undefined) body = JSON.stringify(opts.json);
      if (body !== undefined) headers['content-type'] = opts.type ?? 'application/json';
      const res = await fetch(a.base + path, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let json: unknown = text;
      if ((res.headers.get('content-type') ?? '').startsWith('application/json')) json = JSON.parse(text);
      return { status: res.status, json, headers: res.headers };
    },
  };
  server = await startHttpServer({
    config,
    queue: node.queue,
    log: silentLogger(),
    smtpCounters: () => node.ctx.counters,
    delivery: () => node.delivery?.counters ?? null,
    onQueued: () => a.queued++,
    ready: () => !node.ctx.draining,
  });
  a.base = `http://127.0.0.1:${server.port}`;
  return a;
}

function errorCode(r: { json: any }): string {
  return r.json?.error?.code;
}

const RAW = 'From: Sender <s@sender.example>\nTo: r@rcpt.example\nSubject: hello\n\nline one\r\nline two\rlast line';
const RAW_CRLF = 'From: Sender <s@sender.example>\r\nTo: r@rcpt.example\r\nSubject: hello\r\n\r\nline one\r\nline two\r\nlast line\r\n';

test('health, ready, 404 and 405 need no token; errors are JSON with a code', async (t) => {
  const a = await startApi(t);
  const h = await a.call('GET', '/health', { token: null });
  assert.equal(h.status, 200);
  assert.deepEqual(h.json, { status: 'ok' });
  assert.equal((await a.call('GET', '/ready', { token: null })).status, 200);
  a.node.ctx.draining = true;
  const r = await a.call('GET', '/ready', { token: null });
  assert.equal(r.status, 503);
  assert.equal(errorCode(r), 'PST_HTTP_NOT_READY');
  a.node.ctx.draining = false;

  const nf = await a.call('GET', '/v2/nothing');
  assert.equal(nf.status, 404);
  assert.equal(errorCode(nf), 'PST_HTTP_NOT_FOUND');
  assert.equal(typeof nf.json.error.message, 'string');
  const m = await a.call('PUT', '/v1/messages', { json: {} });
  assert.equal(m.status, 405);
  assert.equal(errorCode(m), 'PST_HTTP_METHOD_NOT_ALLOWED');
  assert.equal(m.headers.get('allow'), 'POST');
});

test('bearer token: 401 without or with a wrong one, 200 with it; health and metrics are open', async (t) => {
  const a = await startApi(t);
  for (const token of [null, 'wrong', `${TOKEN}x`, '']) {
    const r = await a.call('GET', '/v1/queue', { token });
    assert.equal(r.status, 401, String(token));
    assert.equal(errorCode(r), 'PST_HTTP_UNAUTHORIZED');
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
  }
  const inj = await a.call('POST', '/v1/messages', { token: 'wrong', json: { from: 'a@b.example', to: ['c@d.example'], raw: RAW } });
  assert.equal(inj.status, 401);
  assert.equal(a.node.queue.counts().total, 0);
  const ok = await a.call('GET', '/v1/queue');
  assert.equal(ok.status, 200);
  assert.equal(ok.json.total, 0);
  assert.equal((await a.call('GET', '/health', { token: null })).status, 200);
  assert.equal((await a.call('GET', '/metrics', { token: null })).status, 200);
});

test('no token: refuses to start on a non-loopback address, starts on loopback', async (t) => {
  await assert.rejects(startTestNode(t, { POSTERN_HTTP_HOST: '0.0.0.0', POSTERN_HTTP_PORT: '0' }), /POSTERN_HTTP_HOST=0\.0\.0\.0 without POSTERN_API_TOKEN/, 'the configuration is refused first');
  const node = await startTestNode(t);
  const deps = { queue: node.queue, log: silentLogger(), smtpCounters: () => node.ctx.counters, delivery: () => null, ready: () => true };
  for (const host of ['0.0.0.0', '::', '192.0.2.1']) {
    await assert.rejects(
      startHttpServer({ ...deps, config: { ...node.config, httpHost: host, httpPort: 0, apiToken: '' } }),
      (err: unknown) => err instanceof PosternError && err.code === 'PST_ERR_LISTEN' && /POSTERN_HTTP_HOST/.test(err.message) && /POSTERN_API_TOKEN/.test(err.message),
      host,
    );
  }
  const s = await startHttpServer({ ...deps, config: { ...node.config, httpHost: '127.0.0.1', httpPort: 0, apiToken: '' } });
  t.after(() => s.close());
  const r = await fetch(`http://127.0.0.1:${s.port}/v1/queue`);
  assert.equal(r.status, 200, 'no token: no auth needed on loopback');
  // With a token, any address is allowed.
  const s2 = await startHttpServer({ ...deps, config: { ...node.config, httpHost: '0.0.0.0', httpPort: 0, apiToken: TOKEN } });
  await s2.close();
});

test('injection: 202 after the commit; exact body with CRLF and Received; priority and send_at honoured', async (t) => {
  const a = await startApi(t);
  const sendAt = new Date(Date.now() + 3600_000);
  sendAt.setMilliseconds(0);
  const r = await a.call('POST', '/v1/messages', {
    json: { from: 's@sender.example', to: ['r@rcpt.example'], raw: RAW, priority: 'bulk', send_at: sendAt.toISOString() },
  });
  assert.equal(r.status, 202, JSON.stringify(r.json));
  const id = r.json.id as string;
  assert.match(id, /^[0-9a-v]{16}$/);
  assert.equal(r.headers.get('location'), `/v1/queue/messages/${id}`);
  assert.equal(a.queued, 1, 'onQueued called');

  const rec = a.node.queue.get(id);
  assert.ok(rec, 'in the queue as soon as the 202 is seen');
  assert.equal(rec.sender, 's@sender.example');
  assert.deepEqual(rec.recipients.map((x) => [x.address, x.domain, x.state]), [['r@rcpt.example', 'rcpt.example', 'pending']]);
  assert.equal(rec.priority, 2);
  assert.equal(rec.nextAttemptAt, sendAt.getTime());
  assert.equal(rec.client?.ip, '127.0.0.1');
  assert.equal(rec.bodyType, undefined);
  const counts = a.node.queue.counts();
  assert.equal(counts.byState.scheduled, 1);
  assert.equal(counts.byPriority.bulk, 1);

  const body = a.node.queue.withBody(id, (b) => Buffer.from(b).toString('utf8'));
  const m = /^(Received: from api \(\[127\.0\.0\.1\]\)\r\n\tby mx\.test\.example \(postern\) with HTTP id ([0-9a-v]+)\r\n\tfor <r@rcpt\.example>;\r\n\t[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000\r\n)/.exec(body);
  assert.ok(m, body);
  assert.equal(m[2], id);
  assert.equal(body.slice(m[1]!.length), RAW_CRLF);
  assert.equal(rec.size, Buffer.byteLength(body));

  // raw_base64 (with MIME line breaks), 8-bit content, urgent, no send_at: due now.
  const raw8 = Buffer.from('Subject: caf\xe9\r\n\r\n\x00\xff bytes\r\n', 'latin1');
  const b64 = raw8.toString('base64').replace(/(.{8})/g, '$1\r\n');
  const r2 = await a.call('POST', '/v1/messages', { json: { from: '', to: ['x@rcpt.example', 'y@other.example'], raw_base64: b64, priority: 'urgent' } });
  assert.equal(r2.status, 202, JSON.stringify(r2.json));
  const rec2 = a.node.queue.get(r2.json.id)!;
  assert.equal(rec2.sender, '');
  assert.equal(rec2.priority, 0);
  assert.equal(rec2.bodyType, '8BITMIME');
  assert.ok(rec2.nextAttemptAt <= Date.now());
  const body2 = a.node.queue.withBody(r2.json.id, (b) => Buffer.from(b));
  assert.doesNotMatch(body2.toString('latin1'), /\tfor </, 'no for clause with two recipients');
  assert.ok(body2.subarray(body2.length - raw8.length).equals(raw8), 'exact bytes after the Received header');
  assert.equal(a.node.queue.counts().byState.ready, 1);
});

test('injection errors: control characters, bad addresses, limits, bad JSON, content type; nothing stored', async (t) => {
  const a = await startApi(t);
  const good = { from: 's@sender.example', to: ['r@rcpt.example'], raw: RAW };
  const cases: [string, unknown, number, string, RegExp][] = [
    ['CRLF in from', { ...good, from: 's@sender.example\r\nRCPT TO:<evil@x.example>' }, 400, 'PST_HTTP_BAD_FIELD', /^from: control/],
    ['LF in a recipient', { ...good, to: ['r@rcpt.example', 'x@y.example\nBcc: z@z.example'] }, 400, 'PST_HTTP_BAD_FIELD', /^to\[1\]: control/],
    ['NUL in a recipient', { ...good, to: ['r@rcpt.example\u0000'] }, 400, 'PST_HTTP_BAD_FIELD', /^to\[0\]: control/],
    ['CR in send_at', { ...good, send_at: '2030-01-01T00:00:00Z\r' }, 400, 'PST_HTTP_BAD_FIELD', /^send_at/],
    ['bad from', { ...good, from: 'not an address' }, 400, 'PST_HTTP_BAD_FIELD', /^from: .* not a mailbox/],
    ['bad recipient', { ...good, to: ['r@rcpt.example', 'nodomain@'] }, 400, 'PST_HTTP_BAD_FIELD', /^to\[1\]/],
    ['angle brackets', { ...good, to: ['<r@rcpt.example>'] }, 400, 'PST_HTTP_BAD_FIELD', /^to\[0\]/],
    ['no recipients', { ...good, to: [] }, 400, 'PST_HTTP_BAD_FIELD', /^to:/],
    ['to not an array', { ...good, to: 'r@rcpt.example' }, 400, 'PST_HTTP_BAD_FIELD', /^to:/],
    ['too many recipients', { ...good, to: ['a@x.example', 'b@x.example', 'c@x.example', 'd@x.example'] }, 400, 'PST_HTTP_BAD_FIELD', /^to: 4 recipients, at most 3/],
    ['bad priority', { ...good, priority: 'high' }, 400, 'PST_HTTP_BAD_FIELD', /^priority/],
    ['bad send_at', { ...good, send_at: 'tomorrow' }, 400, 'PST_HTTP_BAD_FIELD', /^send_at/],
    ['send_at past the lifetime', { ...good, send_at: '2999-01-01T00:00:00Z' }, 400, 'PST_HTTP_BAD_FIELD', /^send_at: more than/],
    ['raw and raw_base64', { ...good, raw_base64: 'QQ==' }, 400, 'PST_HTTP_BAD_FIELD', /^raw: give exactly one/],
    ['no raw', { from: good.from, to: good.to }, 400, 'PST_HTTP_BAD_FIELD', /^raw/],
    ['bad base64', { from: good.from, to: good.to, raw_base64: 'not base64!' }, 400, 'PST_HTTP_BAD_FIELD', /^raw_base64/],
    ['unknown field', { ...good, subjet: 'x' }, 400, 'PST_HTTP_BAD_FIELD', /^subjet: unknown field/],
    ['not an object', [good], 400, 'PST_HTTP_BAD_JSON', /object/],
    ['message over maxMessageBytes', { ...good, raw: `Subject: big\r\n\r\n${'x'.repeat(9000)}` }, 413, 'PST_HTTP_MESSAGE_TOO_LARGE', /POSTERN_MAX_MESSAGE_BYTES/],
  ];
  for (const [name, json, status, code, msg] of cases) {
    const r = await a.call('POST', '/v1/messages', { json });
    assert.equal(r.status, status, `${name}: ${JSON.stringify(r.json)}`);
    assert.equal(errorCode(r), code, name);
    assert.match(r.json.error.message, msg, name);
  }
  const badJson = await a.call('POST', '/v1/messages', { body: '{"from": "a@b.example",' });
  assert.equal(badJson.status, 400);
  assert.equal(errorCode(badJson), 'PST_HTTP_BAD_JSON');
  const type = await a.call('POST', '/v1/messages', { body: JSON.stringify(good), type: 'text/plain' });
  assert.equal(type.status, 415);
  assert.equal(errorCode(type), 'PST_HTTP_UNSUPPORTED_MEDIA_TYPE');
  // Over POSTERN_HTTP_MAX_BODY_BYTES (64 KiB): refused from Content-Length, the body unread.
  const huge = await a.call('POST', '/v1/messages', { json: { ...good, raw: 'x'.repeat(200 * 1024) } });
  assert.equal(huge.status, 413);
  assert.equal(errorCode(huge), 'PST_HTTP_BODY_TOO_LARGE');
  assert.equal(huge.headers.get('connection'), 'close');
  // The same without Content-Length (chunked): reading stops at the limit.
  const chunks = [Buffer.from('{"raw":"'), Buffer.alloc(100 * 1024, 0x78), Buffer.from('"}')];
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (const ch of chunks) c.enqueue(ch);
      c.close();
    },
  });
  const res = await fetch(`${a.base}/v1/messages`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: stream, duplex: 'half' } as RequestInit);
  assert.equal(res.status, 413);
  assert.equal(((await res.json()) as any).error.code, 'PST_HTTP_BODY_TOO_LARGE');

  assert.equal(a.node.queue.counts().total, 0, 'nothing stored');
  assert.equal(a.queued, 0);
  // The server still works after all that.
  assert.equal((await a.call('POST', '/v1/messages', { json: good })).status, 202);
});

/** Prometheus 0.0.4 text: every line a comment or `name{labels} value`. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  const typed = new Map<string, string>();
  assert.ok(text.endsWith('\n'));
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) continue;
    const tm = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (tm) {
      assert.ok(!typed.has(tm[1]!), `one TYPE per family: ${line}`);
      typed.set(tm[1]!, tm[2]!);
      if (tm[2] === 'counter') assert.match(tm[1]!, /_total$/, 'counters end in _total');
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (-?(?:[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)|NaN|[+-]Inf)$/.exec(line);
    assert.ok(m, `not a valid sample line: ${JSON.stringify(line)}`);
    // A histogram's samples are its name plus _bucket (with le), _sum and _count.
    const h = /^(.*)_(bucket|sum|count)$/.exec(m[1]!);
    assert.ok(typed.has(m[1]!) || (h !== null && typed.get(h[1]!) === 'histogram'), `sample before its TYPE: ${line}`);
    if (h?.[2] === 'bucket') assert.match(m[2] ?? '', /le="/, `a bucket without le: ${line}`);
    out.set(m[1]! + (m[2] ?? ''), Number(m[3]));
  }
  return out;
}

test('metrics: Prometheus text that parses; counters move after an SMTP message and an injection', async (t) => {
  const a = await startApi(t);
  const res = await fetch(`${a.base}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const before = parseMetrics(await res.text());
  for (const name of [
    'postern_smtp_connections_total',
    'postern_messages_received_total{source="smtp"}',
    'postern_messages_received_total{source="http"}',
    'postern_messages_rejected_total{source="smtp"}',
    'postern_received_bytes_total{source="smtp"}',
    'postern_deliveries_total{outcome="delivered"}',
    'postern_deliveries_total{outcome="deferred"}',
    'postern_deliveries_total{outcome="bounced"}',
    'postern_queue_messages{state="ready"}',
    'postern_queue_messages{state="held"}',
    'postern_queue_messages_by_priority{priority="urgent"}',
    'postern_queue_messages_by_priority{priority="bulk"}',
    'postern_queue_commits_total',
    'postern_queue_committed_messages_total',
    'postern_queue_enqueue_commits_total',
    'process_resident_memory_bytes',
    'nodejs_eventloop_lag_seconds_count',
    'postern_filter_worker_utilization_ratio',
  ]) {
    assert.ok(before.has(name), `missing ${name}`);
  }
  assert.ok(before.get('process_resident_memory_bytes')! > 1e6);

  const c = await RawClient.connect(a.node.ports.smtpPort);
  await c.read();
  await c.cmd('EHLO metrics.example');
  assert.equal((await c.cmd('MAIL FROM:<s@sender.example>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<r@rcpt.example>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  assert.equal((await c.cmd('Subject: via smtp\r\n\r\nhi\r\n.')).code, 250);
  c.end();
  assert.equal((await a.call('POST', '/v1/messages', { json: { from: 's@sender.example', to: ['r@rcpt.example'], raw: RAW, priority: 'urgent' } })).status, 202);

  // Queue counts on /metrics may be up to QUEUE_COUNTS_MAX_AGE_MS old (cached-counts.ts).
  await new Promise((r) => setTimeout(r, QUEUE_COUNTS_MAX_AGE_MS));
  const after = parseMetrics(await (await fetch(`${a.base}/metrics`)).text());
  const d = (k: string): number => after.get(k)! - (before.get(k) ?? 0);
  assert.equal(d('postern_smtp_connections_total'), 1);
  assert.equal(d('postern_messages_received_total{source="smtp"}'), 1);
  assert.equal(d('postern_messages_received_total{source="http"}'), 1);
  assert.ok(d('postern_received_bytes_total{source="smtp"}') > 0);
  assert.equal(d('postern_received_bytes_total{source="http"}'), Buffer.byteLength(RAW_CRLF));
  assert.equal(d('postern_queue_committed_messages_total'), 2);
  assert.ok(d('postern_queue_commits_total') >= 1);
  assert.equal(after.get('postern_queue_messages{state="ready"}'), 2);
  assert.equal(after.get('postern_queue_corrupt_records'), 0);
  assert.equal(after.get('postern_queue_messages_by_priority{priority="urgent"}'), 1);
  assert.equal(after.get('postern_queue_messages_by_priority{priority="normal"}'), 1);
  assert.equal(after.get('postern_http_requests_total{method="POST",route="/v1/messages",code="202"}'), 1);
  assert.equal(after.get('postern_http_requests_total{method="GET",route="/metrics",code="200"}'), 1);
});

test('metrics: build info, process and heap gauges, open descriptors, GC and event-loop lag histograms that no scrape resets', async (t) => {
  const a = await startApi(t);
  const scrape = async (): Promise<Map<string, number>> => parseMetrics(await (await fetch(`${a.base}/metrics`)).text());
  const first = await scrape();
  const version = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  assert.equal(first.get(`postern_build_info{version="${version}",node="${process.version}"}`), 1);
  for (const name of ['process_cpu_seconds_total', 'process_start_time_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_heap_size_total_bytes', 'nodejs_external_memory_bytes']) {
    assert.ok((first.get(name) ?? 0) > 0, name);
  }
  assert.ok(Math.abs(first.get('process_start_time_seconds')! - (Date.now() / 1000 - process.uptime())) < 2);
  if (existsSync('/proc/self/fd')) {
    // Three more sockets held open: the gauge follows.
    const held = await Promise.all([0, 1, 2].map(() => RawClient.connect(a.node.ports.smtpPort)));
    const fds = (await scrape()).get('process_open_fds')!;
    assert.ok(fds >= first.get('process_open_fds')! + 3, `${fds} open descriptors`);
    assert.ok(first.get('process_max_fds')! >= fds);
    for (const c of held) c.end();
    assert.ok(first.get('process_heap_bytes')! > 0 && first.get('process_virtual_memory_bytes')! > first.get('process_resident_memory_bytes')!);
  }
  for (const kind of ['major', 'minor', 'incremental', 'weakcb']) assert.ok(first.has(`nodejs_gc_duration_seconds_count{kind="${kind}"}`), kind);

  // Garbage made and a loop blocked for 120 ms: both show, and stay shown by later scrapes.
  let made = 0;
  for (let i = 0; i < 200_000; i++) made += JSON.stringify({ i, pad: 'x'.repeat(64) }).length;
  assert.ok(made > 0);
  await new Promise((r) => setTimeout(r, 50));
  const busyUntil = performance.now() + 120;
  while (performance.now() < busyUntil);
  await new Promise((r) => setTimeout(r, 50));
  const second = await scrape();
  const third = await scrape();
  const gcCount = (m: Map<string, number>): number => [...m].filter(([k]) => k.startsWith('nodejs_gc_duration_seconds_count')).reduce((n, [, v]) => n + v, 0);
  assert.ok(gcCount(second) > gcCount(first), `GC pauses recorded: ${gcCount(first)} then ${gcCount(second)}`);
  const slow = (m: Map<string, number>): number => m.get('nodejs_eventloop_lag_seconds_count')! - m.get('nodejs_eventloop_lag_seconds_bucket{le="0.1"}')!;
  assert.ok(slow(second) >= slow(first) + 1, 'the 120 ms block is one more sample over 100 ms');
  assert.ok(slow(third) >= slow(second), 'a scrape does not reset the histogram');
  assert.ok(third.get('nodejs_eventloop_lag_seconds_count')! >= second.get('nodejs_eventloop_lag_seconds_count')!);
  assert.ok(third.get('nodejs_eventloop_lag_seconds_sum')! >= 0.1);
  assert.equal(third.get('nodejs_eventloop_lag_seconds_bucket{le="+Inf"}'), third.get('nodejs_eventloop_lag_seconds_count'));
});

test('/ready answers 503 while SMTP drains on close(), the HTTP API staying up until it has', async (t) => {
  const node = await startTestNode(t, { POSTERN_HTTP_HOST: '127.0.0.1', POSTERN_HTTP_PORT: '0', POSTERN_SHUTDOWN_TIMEOUT_MS: '10000' });
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  assert.equal((await fetch(`${base}/ready`)).status, 200);
  // A transaction in progress holds the drain open.
  const c = await RawClient.connect(node.ports.smtpPort);
  await c.read();
  await c.cmd('EHLO drain.example');
  assert.equal((await c.cmd('MAIL FROM:<s@sender.example>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<r@rcpt.example>')).code, 250);
  let closed = false;
  const closing = node.close().then(() => (closed = true));
  await waitFor('the node draining', () => node.ctx.draining);
  const r = await fetch(`${base}/ready`);
  assert.equal(r.status, 503);
  assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'PST_HTTP_NOT_READY');
  assert.equal((await fetch(`${base}/health`)).status, 200, 'alive while draining');
  assert.equal((await fetch(`${base}/metrics`)).status, 200, 'metrics while draining');
  assert.equal(closed, false);
  // The transaction ends: the drain completes and only then does the API stop.
  assert.equal((await c.cmd('DATA')).code, 354);
  assert.equal((await c.cmd('Subject: drain\r\n\r\nhi\r\n.')).code, 250);
  await closing;
  await assert.rejects(fetch(`${base}/ready`), 'the API is closed after the drain');
});

test('queue admin: counts, list, show, hold, release, delete; 404 for unknown ids', async (t) => {
  const a = await startApi(t);
  const ids: string[] = [];
  for (const p of ['normal', 'bulk', 'urgent']) {
    const r = await a.call('POST', '/v1/messages', { json: { from: 's@sender.example', to: ['r@rcpt.example', 'q@other.example'], raw: RAW, priority: p } });
    assert.equal(r.status, 202);
    ids.push(r.json.id);
  }
  const counts = await a.call('GET', '/v1/queue');
  assert.deepEqual(counts.json, {
    total: 3,
    by_state: { ready: 3, scheduled: 0, leased: 0, held: 0 },
    by_priority: { urgent: 1, normal: 1, bulk: 1 },
    by_domain: { 'rcpt.example': 3, 'other.example': 3 },
    corrupt_records: 0,
  });

  const list = await a.call('GET', '/v1/queue/messages?limit=2');
  assert.equal(list.status, 200);
  assert.deepEqual(list.json.messages.map((m: any) => m.id), ids.slice(0, 2));
  assert.equal(list.json.truncated, true);
  assert.equal(list.json.messages[1].priority, 'bulk');
  assert.equal(list.json.messages[0].recipients, 2);
  assert.equal((await a.call('GET', '/v1/queue/messages')).json.truncated, false);
  assert.equal((await a.call('GET', '/v1/queue/messages?limit=0')).status, 400);
  assert.equal(errorCode(await a.call('GET', '/v1/queue/messages?limit=abc')), 'PST_HTTP_BAD_FIELD');

  const id = ids[0]!;
  const show = await a.call('GET', `/v1/queue/messages/${id}`);
  assert.equal(show.status, 200);
  assert.equal(show.json.id, id);
  assert.equal(show.json.state, 'ready');
  assert.equal(show.json.priority, 'normal');
  assert.equal(show.json.sender, 's@sender.example');
  assert.equal(show.json.attempts, 0);
  assert.equal(show.json.pool, null, 'no pool named: the sender domain picks it');
  assert.deepEqual(show.json.recipients, [
    { address: 'r@rcpt.example', domain: 'rcpt.example', state: 'pending', attempts: 0, source: null, last_reply: null, history: [] },
    { address: 'q@other.example', domain: 'other.example', state: 'pending', attempts: 0, source: null, last_reply: null, history: [] },
  ]);
  assert.ok(!Number.isNaN(Date.parse(show.json.received_at)));

  const held = await a.call('POST', `/v1/queue/messages/${id}/hold`);
  assert.equal(held.status, 200);
  assert.equal(held.json.state, 'held');
  assert.equal(a.node.queue.get(id)!.state, 'held');
  assert.equal((await a.call('GET', '/v1/queue')).json.by_state.held, 1);
  const queuedBefore = a.queued;
  const rel = await a.call('POST', `/v1/queue/messages/${id}/release`);
  assert.equal(rel.status, 200);
  assert.equal(rel.json.state, 'ready');
  assert.equal(a.node.queue.get(id)!.state, 'ready');
  assert.equal(a.queued, queuedBefore + 1, 'release wakes the scheduler');

  const del = await a.call('DELETE', `/v1/queue/messages/${id}`);
  assert.equal(del.status, 200);
  assert.deepEqual(del.json, { id, deleted: true });
  assert.equal(a.node.queue.get(id), undefined);
  for (const [method, path] of [
    ['GET', `/v1/queue/messages/${id}`],
    ['DELETE', `/v1/queue/messages/${id}`],
    ['POST', `/v1/queue/messages/${id}/hold`],
    ['POST', `/v1/queue/messages/${id}/release`],
    ['GET', '/v1/queue/messages/not-an-id'],
    ['GET', '/v1/queue/messages/%0d%0a'],
  ] as const) {
    const r = await a.call(method, path);
    assert.equal(r.status, 404, `${method} ${path}`);
    assert.equal(errorCode(r), 'PST_HTTP_MESSAGE_NOT_FOUND');
  }
  assert.equal((await a.call('GET', '/v1/queue/messages/%zz')).status, 400);
  assert.equal((await a.call('GET', '/v1/queue')).json.total, 2);
});

test('POSTERN_HTTP_RATE: past the per-address rate, 429 with Retry-After; /health is never limited', async (t) => {
  const { startTestNode: start } = await import('../helpers/node.js');
  const node = await start(t, { POSTERN_HTTP_PORT: '0', POSTERN_HTTP_RATE: '2/s' });
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  const codes: number[] = [];
  for (let i = 0; i < 8; i++) codes.push((await fetch(`${base}/v1/queue`)).status);
  assert.deepEqual(codes.slice(0, 4), [200, 200, 200, 200], 'a burst of two seconds is allowed');
  assert.ok(codes.slice(4).includes(429), `then 429: ${codes.join(',')}`);
  const r = await fetch(`${base}/v1/queue`);
  if (r.status === 429) {
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'PST_HTTP_RATE_LIMITED');
  }
  for (let i = 0; i < 5; i++) assert.equal((await fetch(`${base}/health`)).status, 200);
});

test('queue listing pages with a cursor (next / after)', async (t) => {
  const { startTestNode: start } = await import('../helpers/node.js');
  const { sendMessage } = await import('../helpers/smtp-client.js');
  const node = await start(t, { POSTERN_HTTP_PORT: '0' });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await sendMessage(node.ports.smtpPort, 'a@example.org', [`r${i}@example.com`], `Subject: ${i}\n\nx\n`));
  const base = `http://127.0.0.1:${node.ports.httpPort}/v1/queue/messages`;
  const seen: string[] = [];
  let after: string | null = null;
  for (let page = 0; page < 5; page++) {
    const r = (await (await fetch(`${base}?limit=2${after ? `&after=${after}` : ''}`)).json()) as { messages: Array<{ id: string }>; next: string | null };
    seen.push(...r.messages.map((m) => m.id));
    after = r.next;
    if (after === null) break;
  }
  assert.deepEqual(seen, [...ids].sort());
});

test('requests without the right token never draw on POSTERN_HTTP_RATE; they have their own budget (20, then 5 a second: 429)', async (t) => {
  const { startTestNode: start } = await import('../helpers/node.js');
  const node = await start(t, { POSTERN_HTTP_PORT: '0', POSTERN_HTTP_RATE: '2/s', POSTERN_API_TOKEN: 'right-token-right-token-right-token' });
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  const wrong: number[] = [];
  for (let i = 0; i < 30; i++) wrong.push((await fetch(`${base}/v1/queue`, { headers: { authorization: 'Bearer wrong' } })).status);
  assert.deepEqual(wrong.slice(0, 20), Array(20).fill(401), 'a burst of 20 wrong tokens: 401');
  assert.ok(wrong.slice(20).includes(429), `then 429: ${wrong.join(',')}`);
  // The client with the token, on the same address, still has its whole burst.
  const right: number[] = [];
  for (let i = 0; i < 4; i++) right.push((await fetch(`${base}/v1/queue`, { headers: { authorization: 'Bearer right-token-right-token-right-token' } })).status);
  assert.deepEqual(right, [200, 200, 200, 200]);
});

test('HTTP connections are bounded per address and in total: past a limit a new connection is closed at once, unanswered', async (t) => {
  const { startTestNode: start } = await import('../helpers/node.js');
  const { connect } = await import('node:net');
  const open = async (port: number): Promise<{ closedWithin: (ms: number) => Promise<boolean>; end: () => void }> => {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    let closed = false;
    const onClose = new Promise<void>((r) => s.once('close', () => ((closed = true), r())));
    await new Promise<void>((r) => s.once('connect', () => r()));
    t.after(() => s.destroy());
    return {
      closedWithin: async (ms) => {
        await Promise.race([onClose, new Promise((r) => setTimeout(r, ms))]);
        return closed;
      },
      end: () => s.destroy(),
    };
  };
  const perIp = await start(t, { POSTERN_HTTP_PORT: '0', POSTERN_HTTP_MAX_CONNECTIONS_PER_IP: '3' });
  const held = [await open(perIp.ports.httpPort!), await open(perIp.ports.httpPort!), await open(perIp.ports.httpPort!)];
  const fourth = await open(perIp.ports.httpPort!);
  assert.equal(await fourth.closedWithin(2000), true, 'the 4th connection from the address is closed');
  assert.equal(await held[0]!.closedWithin(50), false, 'the three held ones stay');
  held[0]!.end();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await fetch(`http://127.0.0.1:${perIp.ports.httpPort}/health`)).status, 200, 'room again once one is closed');

  const total = await start(t, { POSTERN_HTTP_PORT: '0', POSTERN_HTTP_MAX_CONNECTIONS: '2', POSTERN_HTTP_MAX_CONNECTIONS_PER_IP: '0' });
  await open(total.ports.httpPort!);
  await open(total.ports.httpPort!);
  const third = await open(total.ports.httpPort!);
  assert.equal(await third.closedWithin(2000), true, 'past POSTERN_HTTP_MAX_CONNECTIONS');
});
