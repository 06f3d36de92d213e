// Anomaly alerts on a running node: a scripted receiving server starts answering 451 to half the
// RCPTs mid-run; the deferral-rate alert comes up (GET /v1/alerts, /metrics, an alert.raised
// event) within the window, and clears (alert.cleared) once the server is healthy again.
// Short windows (window = "2s" in the shaping file's [alerts] table) keep it to a few seconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestNode } from '../helpers/node.js';
import { startScriptedServer } from '../helpers/scripted-server.js';
import { startHttpReceiver } from '../helpers/http-receiver.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { writeFile } from '../helpers/node.js';

const TOKEN = 'test-token-0123456789';

interface AlertView { id: string; rule: string; scope: string; since: string; value?: number; threshold?: number }

test('half the RCPTs deferred mid-run raise a deferral-rate alert that clears when the server is healthy', async (t) => {
  let deferring = false;
  let rcpts = 0;
  const srv = await startScriptedServer(t, { reply: (cmd) => (cmd.startsWith('RCPT') && deferring && rcpts++ % 2 === 1 ? '451 4.7.1 try again later' : undefined) });
  const events: Array<Record<string, unknown>> = [];
  const receiver = await startHttpReceiver(t, (_req, res, body) => {
    events.push(...(JSON.parse(body.toString()) as { events: Array<Record<string, unknown>> }).events);
    res.end('ok');
  });
  const shaping = writeFile(t, 'shaping.toml', '[alerts]\nwindow = "2s"\nmin_recipients = 6\n');
  const node = await startTestNode(
    t,
    {
      POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `flaky.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none',
      POSTERN_HTTP_PORT: '0', POSTERN_API_TOKEN: TOKEN, POSTERN_EVENTS_URL: `${receiver.origin}/events`,
      POSTERN_SHAPING: shaping, POSTERN_ALERT_WINDOW_MS: '10m', // the file's window wins
    },
    { delivery: { pollIntervalMs: 50 } },
  );
  const base = `http://127.0.0.1:${node.ports.httpPort!}`;
  const alerts = async (): Promise<AlertView[]> => {
    const r = await fetch(`${base}/v1/alerts`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 200);
    return ((await r.json()) as { alerts: AlertView[] }).alerts;
  };
  const noToken = await fetch(`${base}/v1/alerts`);
  assert.equal(noToken.status, 401, 'behind the API token');
  await noToken.arrayBuffer();

  // Steady traffic: a message to two recipients every 100 ms, bounded in count and time.
  let stop = false;
  let n = 0;
  const started = Date.now();
  const traffic = (async () => {
    while (!stop && n < 400 && Date.now() - started < 60_000) {
      n++;
      await sendMessage(node.ports.smtpPort, 's@example.org', [`a${n}@flaky.example`, `b${n}@flaky.example`], `Subject: ${n}\r\n\r\nhello\r\n`);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  t.after(async () => {
    stop = true;
    await traffic;
  });

  // Healthy for a full window: no alert.
  await new Promise((r) => setTimeout(r, 2500));
  assert.ok(srv.messages().length >= 5, `delivering (${srv.messages().length} messages)`);
  assert.deepEqual(await alerts(), [], 'healthy: no alert');

  deferring = true;
  const changedAt = Date.now();
  let up: AlertView[] = [];
  await waitFor('the deferral-rate alert', async () => (up = (await alerts()).filter((a) => a.rule === 'deferral-rate')).length >= 2, { timeoutMs: 10_000, intervalMs: 100 });
  const raisedAfter = Date.now() - changedAt;
  assert.ok(raisedAfter < 5000, `raised ${raisedAfter} ms after the change (window 2 s)`);
  const scopes = up.map((a) => a.scope).sort();
  assert.equal(scopes[0]!.startsWith('destination:'), true, `scopes ${scopes.join(', ')}`);
  assert.equal(scopes[1], 'overall');
  for (const a of up) {
    assert.equal(a.id, `deferral-rate:${a.scope}`);
    assert.equal(a.threshold, 0.2);
    assert.ok(a.value! > 0.2 && a.value! <= 0.6, `value ${a.value}`);
    assert.ok(Date.parse(a.since) >= changedAt - 200);
  }
  const stats = (await (await fetch(`${base}/v1/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { alerts: AlertView[] };
  assert.deepEqual(stats.alerts.filter((a) => a.rule === 'deferral-rate').map((a) => a.id).sort(), up.map((a) => a.id).sort(), 'the dashboard\'s snapshot lists them');
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^postern_alert_active\{rule="deferral-rate",scope="overall"\} 1$/m);
  await waitFor('the alert.raised event', () => events.some((e) => e.type === 'alert.raised' && e.scope === 'overall'), 10_000);
  const ev = events.find((e) => e.type === 'alert.raised' && e.scope === 'overall')!;
  assert.equal(ev.rule, 'deferral-rate');
  assert.equal(ev.alert, 'deferral-rate:overall');

  deferring = false;
  const healedAt = Date.now();
  let still: AlertView[] = [];
  await waitFor('the alerts to clear', async () => (still = await alerts()).length === 0, { timeoutMs: 10_000, intervalMs: 100 }).catch((err: Error) => {
    throw new Error(`${err.message}; still up: ${JSON.stringify(still)}`);
  });
  const clearedAfter = Date.now() - healedAt;
  assert.ok(clearedAfter < 5000, `cleared ${clearedAfter} ms after the server healed`);
  await waitFor('the alert.cleared events', () => events.filter((e) => e.type === 'alert.cleared').length >= 2, 10_000);
  const after = await (await fetch(`${base}/metrics`)).text();
  assert.doesNotMatch(after, /^postern_alert_active\{/m, 'no active series left');
  assert.match(after, /^postern_alerts_raised_total 2$/m);
  stop = true;
  await traffic;
});
