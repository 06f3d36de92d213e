// Credentials in URLs never leave postern except in the request they authenticate: a webhook
// route with user:password@ and ?key= delivers with them, while /metrics, /v1/stats, the logs
// and `postern config` only ever show "***". Runs the real command line (`postern start`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { once } from 'node:events';
import { runCli, startCliNode } from '../helpers/cli.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { startHttpReceiver } from '../helpers/http-receiver.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';

const TOKEN = 'leak-test-token-0123456789';
const SECRETS = ['hookuser', 'Hook-Pa55', 's3cret-key', 'evuser', 'Ev-Pa55', 'ev-q-secret'];

function leaks(text: string): string[] {
  return SECRETS.filter((s) => text.includes(s));
}

test('webhook credentials reach the webhook, and no label, stats, log line or config output', async (t) => {
  const { port: hookPort, requests: seen } = await startHttpReceiver(t);

  const dir = tmpdir(t);
  const env = {
    POSTERN_SMTP_PORT: '0',
    POSTERN_HTTP_PORT: '0',
    POSTERN_DATA_DIR: join(dir, 'q'),
    POSTERN_HOSTNAME: 'leak.test.example',
    POSTERN_QUEUE_MAP_BYTES: '64M',
    POSTERN_API_TOKEN: TOKEN,
    POSTERN_LOG_LEVEL: 'debug',
    POSTERN_DELIVERY: 'routes',
    POSTERN_ROUTES: `hooks.test=webhook:http://hookuser:Hook-Pa55@127.0.0.1:${hookPort}/in?key=s3cret-key`,
    // Nothing listens there: the sender fails and logs, which must not print the URL either.
    POSTERN_EVENTS_URL: `http://evuser:Ev-Pa55@127.0.0.1:9/events?t=ev-q-secret`,
  };
  const { child, port, httpPort, logs } = await startCliNode(env);
  t.after(() => child.kill('SIGKILL'));

  await sendMessage(port, 'a@sender.example', ['x@hooks.test'], 'Subject: leak\r\n\r\nhello\r\n');
  await waitFor('the webhook delivery', () => seen.length > 0);
  // The request itself carries them: Basic auth from the userinfo, the query kept.
  assert.equal(seen[0]!.url, '/in?key=s3cret-key');
  assert.equal(seen[0]!.headers.authorization, `Basic ${Buffer.from('hookuser:Hook-Pa55').toString('base64')}`);

  const base = `http://127.0.0.1:${httpPort}`;
  let metrics = '';
  for (let i = 0; i < 100 && !/postern_destination_deliveries_total\{destination="webhook:[^"]*",outcome="delivered"\} 1/.test(metrics); i++) {
    metrics = await (await fetch(`${base}/metrics`)).text();
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(metrics, new RegExp(`destination="webhook:http://\\*\\*\\*@127\\.0\\.0\\.1:${hookPort}/in\\?\\*\\*\\*",outcome="delivered"\\} 1`));
  assert.deepEqual(leaks(metrics), [], 'no secret in /metrics');
  const stats = await (await fetch(`${base}/v1/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  assert.match(stats, /"key":"webhook:http:\/\/\*\*\*@127\.0\.0\.1:\d+\/in\?\*\*\*"/);
  assert.deepEqual(leaks(stats), [], 'no secret in /v1/stats');

  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
  const logText = logs.join('\n');
  assert.match(logText, /x@hooks\.test/, 'the delivery was logged');
  assert.deepEqual(leaks(logText), [], 'no secret in the log');

  for (const args of [['config'], ['config', '--json']]) {
    const out = await runCli(args, env);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /http:\/\/\*\*\*@127\.0\.0\.1:9\/events\?\*\*\*/, args.join(' '));
    assert.deepEqual(leaks(out.stdout), [], `no secret in postern ${args.join(' ')}`);
    assert.doesNotMatch(out.stdout, new RegExp(TOKEN));
  }
  // A bad POSTERN_ROUTES is reported without the credentials of its other entries.
  const bad = await runCli(['start'], { ...env, POSTERN_ROUTES: `${env.POSTERN_ROUTES};broken` });
  assert.equal(bad.code, 78, bad.stderr);
  assert.match(bad.stderr, /POSTERN_ROUTES=/);
  assert.deepEqual(leaks(bad.stderr), [], 'no secret in the config error');
});
