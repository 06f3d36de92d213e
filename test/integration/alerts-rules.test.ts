// The alert rules beyond the rates, each raised and cleared on a running node by a real
// scenario (docs/alerts.md): a receiving server whose TLS handshake fails where TLS is
// required (tls-failures; opportunistic TLS would deliver in clear on a retry instead), one
// that goes down so the circuit breaker opens (circuit-open), a queue that grows because the
// destination defers everything (queue-growth, queue-age), a filter pool of one worker kept
// busy (filter-utilization, filter-wait); rate alerts per site and per egress source (sources
// bound on 127.0.0.2 and 127.0.0.3); the [alerts] table re-read without a restart (a broken
// file keeps the thresholds in force); the shaping state in /v1/stats. Windows of a second or
// two, set in the shaping file, keep each test to a few seconds.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, renameSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startTestNode, writeFile } from '../helpers/node.js';
import { DEFAULT_CAPS, startScriptedServer } from '../helpers/scripted-server.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { makeTestCa } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';
import type { PosternNode } from '../../src/main.js';
import type { Alert } from '../../src/delivery/alerts.js';

const TOKEN = 'test-token-0123456789';
const FILTER = fileURLToPath(new URL('../../../test/fixtures/test-filter.mjs', import.meta.url));

function ids(node: PosternNode, rule?: string): string[] {
  return node.alerts!.engine.active.filter((a) => rule === undefined || a.rule === rule).map((a) => a.id).sort();
}

/** Send messages in the background, one every `everyMs`, until stopped (bounded in count and time). */
function traffic(t: TestContext, node: PosternNode, o: { to: (n: number) => string[]; from?: (n: number) => string; body?: string; everyMs: number; max?: number; parallel?: number }): { stop: () => Promise<void>; sent: () => number } {
  let stop = false;
  let n = 0;
  const started = Date.now();
  const one = async (): Promise<void> => {
    while (!stop && n < (o.max ?? 400) && Date.now() - started < 60_000) {
      const i = ++n;
      await sendMessage(node.ports.smtpPort, o.from?.(i) ?? 's@example.org', o.to(i), `Subject: ${i}\r\n\r\n${o.body ?? 'hello'}\r\n`).catch(() => {});
      await new Promise((r) => setTimeout(r, o.everyMs));
    }
  };
  const running = Promise.all(Array.from({ length: o.parallel ?? 1 }, one));
  const halt = async (): Promise<void> => {
    stop = true;
    await running;
  };
  t.after(halt);
  return { stop: halt, sent: () => n };
}

test('tls-failures: a server whose TLS handshake fails raises it per destination and overall; it clears once the handshakes stop failing', async (t) => {
  let breaking = true;
  const ca = makeTestCa(t);
  const srv = await startScriptedServer(t, {
    capabilities: [...DEFAULT_CAPS, 'STARTTLS'],
    tls: ca.issue(['127.0.0.1']),
    // After the 220 the client's handshake meets text; then a real handshake, verified.
    brokenTls: () => (breaking ? 'garbage' : undefined),
  });
  const shaping = writeFile(t, 'shaping.toml', '[alerts]\nwindow = "2s"\ntls_failures = 3\n');
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `tls.example=smtp:127.0.0.1:${srv.port}/tls=required`, POSTERN_RETRY_SCHEDULE: '1s', POSTERN_SHAPING: shaping }, { delivery: { pollIntervalMs: 50, trustedCa: [ca.caPem] } });
  const mail = traffic(t, node, { to: (n) => [`r${n}@tls.example`], everyMs: 100, max: 200 });
  await waitFor('the tls-failures alerts', () => ids(node, 'tls-failures').length >= 2, { timeoutMs: 10_000, diag: () => ids(node).join(' ') });
  const up = node.alerts!.engine.active.filter((a) => a.rule === 'tls-failures');
  assert.deepEqual(up.map((a) => a.scope.replace(/^destination:.*/, 'destination')).sort(), ['destination', 'overall']);
  for (const a of up) assert.ok(a.value >= 3 && a.threshold === 3, `${a.id} ${a.value}`);
  assert.ok(srv.sessions.some((s) => s.commands.includes('STARTTLS')), 'STARTTLS was tried');
  breaking = false;
  await waitFor('the tls-failures alerts to clear', () => ids(node, 'tls-failures').length === 0, { timeoutMs: 15_000, diag: () => ids(node).join(' ') });
  await waitFor('mail delivered over TLS', () => srv.messages().length > 0, 15_000);
  assert.ok(srv.sessions.filter((s) => s.messages.length > 0).every((s) => s.tls), 'never in clear');
  await mail.stop();
});

test('circuit-open: a destination that goes down opens its breaker (alert up while open); it clears when a probe gets through', async (t) => {
  let down = true;
  const srv = await startScriptedServer(t, { reply: (cmd) => (down && cmd.startsWith('EHLO') ? { cut: true } : undefined) });
  const events: Alert[] = [];
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `down.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_RETRY_SCHEDULE: '1s', POSTERN_DEST_PROBE_INTERVAL_MS: '1s' }, { delivery: { pollIntervalMs: 50 } });
  const mail = traffic(t, node, { to: (n) => [`r${n}@down.example`], everyMs: 100, max: 30 });
  await waitFor('the circuit-open alert', () => ids(node, 'circuit-open').length === 1, { timeoutMs: 15_000, diag: () => ids(node).join(' ') });
  const a = node.alerts!.engine.active.find((x) => x.rule === 'circuit-open')!;
  assert.match(a.scope, /^destination:smtp:127\.0\.0\.1:\d+/);
  assert.equal(node.alerts!.engine.openCircuits, 1);
  events.push(a);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(ids(node, 'circuit-open').length, 1, 'up as long as the destination is down');
  down = false;
  await waitFor('the circuit-open alert to clear', () => ids(node, 'circuit-open').length === 0, { timeoutMs: 15_000, diag: () => ids(node).join(' ') });
  await waitFor('the waiting mail delivered', () => srv.messages().length > 0, 15_000);
  await mail.stop();
});

test('queue-growth and queue-age: a destination deferring everything lets the queue grow and age; both clear once it takes the mail', async (t) => {
  let deferring = true;
  const srv = await startScriptedServer(t, { reply: (cmd) => (deferring && cmd.startsWith('RCPT') ? '451 4.2.1 mailbox temporarily unavailable' : undefined) });
  const shaping = writeFile(t, 'shaping.toml', '[alerts]\nwindow = "2s"\nqueue_window = "2s"\nqueue_growth = 10\nqueue_age = "3s"\nmin_recipients = 1000\n');
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `slow.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_RETRY_SCHEDULE: '1s', POSTERN_SHAPING: shaping }, { delivery: { pollIntervalMs: 50 } });
  const mail = traffic(t, node, { to: (n) => [`r${n}@slow.example`], everyMs: 50, max: 150 });
  await waitFor('the queue-growth alert', () => ids(node, 'queue-growth').length === 1, { timeoutMs: 15_000, diag: () => `${ids(node).join(' ')} queued ${node.queue.counts().total}` });
  const g = node.alerts!.engine.active.find((a) => a.rule === 'queue-growth')!;
  assert.equal(g.scope, 'queue');
  assert.ok(g.value >= 10, `grew by ${g.value}`);
  await waitFor('the queue-age alert', () => ids(node, 'queue-age').length === 1, { timeoutMs: 15_000, diag: () => ids(node).join(' ') });
  assert.ok(node.alerts!.engine.active.find((a) => a.rule === 'queue-age')!.value >= 3000);
  await mail.stop();
  deferring = false;
  await waitFor('the queue drained', () => node.queue.counts().total === 0, 20_000);
  await waitFor('both queue alerts to clear', () => ids(node, 'queue-growth').length === 0 && ids(node, 'queue-age').length === 0, { timeoutMs: 10_000, diag: () => ids(node).join(' ') });
});

test('filter-utilization and filter-wait: one filter worker kept busy raises both; they clear once the load stops', async (t) => {
  const srv = await startScriptedServer(t);
  const shaping = writeFile(t, 'shaping.toml', '[alerts]\nwindow = "2s"\nfilter_for = "1s"\nfilter_wait = "400ms"\nfilter_utilization_percent = 90\n');
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `f.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_SHAPING: shaping, POSTERN_FILTER_MODULES: FILTER, POSTERN_WORKERS: '1', POSTERN_FILTER_TIMEOUT_MS: '30s' }, { delivery: { pollIntervalMs: 50 } });
  // Idle pool: nothing.
  await new Promise((r) => setTimeout(r, 1500));
  assert.deepEqual(ids(node), []);
  // 300 ms per message, six clients at once: the worker never rests and messages queue behind it.
  const mail = traffic(t, node, { to: (n) => [`r${n}@f.example`], body: 'SLOWME', everyMs: 0, max: 60, parallel: 6 });
  await waitFor('both filter alerts', () => ids(node).filter((id) => id.startsWith('filter-')).length === 2, { timeoutMs: 15_000, diag: () => ids(node).join(' ') });
  const u = node.alerts!.engine.active.find((a) => a.rule === 'filter-utilization')!;
  assert.ok(u.value >= 0.9 && u.scope === 'filter', `utilization ${u.value}`);
  await mail.stop();
  await waitFor('the filter alerts to clear', () => ids(node).filter((id) => id.startsWith('filter-')).length === 0, { timeoutMs: 10_000, diag: () => ids(node).join(' ') });
});

const SOURCES = `[source.ip2]
address = "127.0.0.2"
ehlo = "mta2.test.example"

[source.ip3]
address = "127.0.0.3"
ehlo = "mta3.test.example"

[pool.news]
sources = { ip2 = 1 }
sender_domains = ["news.example"]

[pool.main]
sources = { ip3 = 1 }
default = true

[site.bigmail]
domains = ["bigmail.example", "bigmail2.example"]
`;

test('rate alerts per site and per source: only the source the server defers is alerted on; the site and overall too', async (t) => {
  // The receiver defers every RCPT that comes from 127.0.0.3 (source ip3), and none from ip2.
  const srv = await startScriptedServer(t, { reply: (cmd, s) => (cmd.startsWith('RCPT') && s.remoteAddress.endsWith('127.0.0.3') ? '451 4.3.0 not from you' : undefined) });
  const shaping = writeFile(t, 'shaping.toml', `${SOURCES}\n[alerts]\nwindow = "2s"\nmin_recipients = 6\n`);
  const node = await startTestNode(
    t,
    { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `bigmail.example=smtp:127.0.0.1:${srv.port};bigmail2.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_SHAPING: shaping },
    { delivery: { pollIntervalMs: 50 } },
  );
  const mail = traffic(t, node, { from: (n) => (n % 2 === 0 ? 'a@news.example' : 'b@shop.example'), to: (n) => [`r${n}@bigmail${n % 4 < 2 ? '' : '2'}.example`], everyMs: 50, max: 200 });
  await waitFor('the source and site alerts', () => ids(node, 'deferral-rate').includes('deferral-rate:source:ip3') && ids(node, 'deferral-rate').includes('deferral-rate:site:bigmail'), { timeoutMs: 15_000, diag: () => ids(node).join(' ') });
  const up = ids(node, 'deferral-rate');
  assert.ok(!up.includes('deferral-rate:source:ip2'), `ip2's mail is delivered: ${up.join(' ')}`);
  assert.ok(up.includes('deferral-rate:overall'));
  const site = node.alerts!.engine.active.find((a) => a.id === 'deferral-rate:site:bigmail')!;
  assert.ok(site.value > 0.2 && site.value < 0.8, `the site defers about half: ${site.value}`);
  assert.equal(node.alerts!.engine.active.find((a) => a.id === 'deferral-rate:source:ip3')!.value, 1);
  await mail.stop();
  assert.ok(srv.messages().length > 0, 'ip2 delivered');
});

test('[alerts] is re-read with the shaping file: a new threshold applies without a restart; a broken file keeps the one in force', async (t) => {
  let rcpts = 0;
  const srv = await startScriptedServer(t, { reply: (cmd) => (cmd.startsWith('RCPT') && rcpts++ % 2 === 1 ? '451 4.2.1 mailbox temporarily unavailable' : undefined) });
  // First no rate alert at all: too few outcomes for any window (and no baseline learnt either).
  const shaping = writeFile(t, 'shaping.toml', '[alerts]\nwindow = "2s"\nmin_recipients = 100000\n');
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `half.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_SHAPING: shaping }, { delivery: { pollIntervalMs: 50, shapingPollMs: 100 } });
  const mail = traffic(t, node, { to: (n) => [`a${n}@half.example`, `b${n}@half.example`], everyMs: 100, max: 300 });
  await new Promise((r) => setTimeout(r, 2500));
  assert.ok(srv.messages().length >= 5, 'delivering');
  assert.deepEqual(ids(node, 'deferral-rate'), [], 'never enough outcomes');
  // A broken version: reported, the thresholds in force stay.
  const write = (text: string): void => {
    writeFileSync(`${shaping}.new`, text);
    renameSync(`${shaping}.new`, shaping);
  };
  write('[alerts]\nwindow = "2s"\nmin_recipients = 6\ndeferral_percent = 500\n');
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(node.alerts!.engine.thresholds.minSamples, 100_000, 'a bad file changes nothing');
  assert.deepEqual(ids(node, 'deferral-rate'), []);
  write('[alerts]\nwindow = "2s"\nmin_recipients = 6\ndeferral_percent = 20\n');
  await waitFor('the new thresholds', () => node.alerts!.engine.thresholds.minSamples === 6, 5000);
  await waitFor('the deferral-rate alert under the new threshold', () => ids(node, 'deferral-rate').includes('deferral-rate:overall'), { timeoutMs: 10_000, diag: () => ids(node).join(' ') });
  assert.equal(node.alerts!.engine.active.find((a) => a.id === 'deferral-rate:overall')!.threshold, 0.2);
  await mail.stop();
});

interface ShapingStats { states: Array<{ source: string; site: string; window: number | null; maxConnections: number | null; ratePerSecond: number | null; inflight: number; waiting: number; admitted: number; suspended: { until: string; reason: string; reply: string } | null; warmup: { sent: number; budget: number } | null }>; more: number }

test('/v1/stats shows the shaping state per source x site: window, rate, suspension and warm-up', async (t) => {
  const srv = await startScriptedServer(t, { reply: (cmd) => (cmd.includes('<blocked@') ? '554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org' : undefined) });
  const today = new Date().toISOString().slice(0, 10);
  const file = `${SOURCES.replace('ehlo = "mta2.test.example"', `ehlo = "mta2.test.example"\nwarmup_start = ${today}\nwarmup_first = 50`)}
[site.bigmail.limits]
[defaults]
max_connections = 3
rate = "20/s"
`.replace('[site.bigmail.limits]\n', '');
  const shaping = writeFile(t, 'shaping.toml', file);
  const node = await startTestNode(
    t,
    { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `bigmail.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_SHAPING: shaping, POSTERN_HTTP_PORT: '0', POSTERN_API_TOKEN: TOKEN },
    { delivery: { pollIntervalMs: 50 } },
  );
  for (let i = 0; i < 3; i++) await sendMessage(node.ports.smtpPort, 'a@news.example', [`r${i}@bigmail.example`], 'Subject: w\r\n\r\nhello\r\n');
  await sendMessage(node.ports.smtpPort, 'b@shop.example', ['blocked@bigmail.example'], 'Subject: b\r\n\r\nhello\r\n');
  await waitFor('delivered and refused', () => srv.messages().length >= 3 && node.delivery!.counters.bounced >= 1, 15_000);
  const r = await fetch(`http://127.0.0.1:${node.ports.httpPort!}/v1/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200);
  const { shaping: view } = (await r.json()) as { shaping: ShapingStats };
  assert.equal(view.more, 0);
  const ip2 = view.states.find((s) => s.source === 'ip2' && s.site === 'bigmail');
  const ip3 = view.states.find((s) => s.source === 'ip3' && s.site === 'bigmail');
  assert.ok(ip2 && ip3, JSON.stringify(view));
  assert.deepEqual(ip2.warmup, { sent: 3, budget: 50 }, 'three of the day\'s fifty');
  assert.equal(ip2.suspended, null);
  assert.deepEqual([ip2.window, ip2.maxConnections, ip2.ratePerSecond], [3, 3, 20]);
  assert.equal(ip3.warmup, null, 'ip3 is not warming up');
  assert.equal(ip3.suspended?.reason, 'blocklist');
  assert.match(ip3.suspended!.reply, /blocked using zen\.spamhaus\.org/);
  assert.ok(Date.parse(ip3.suspended!.until) > Date.now() + 3_000_000, `until ${ip3.suspended!.until}`);
  assert.equal(view.states[0], ip3, 'the suspended state comes first');
});
