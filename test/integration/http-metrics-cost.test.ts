// /metrics on the open Internet: a flood of scrapes recounts the queue at most once a second
// (Queue.counts() walks every scheduled message), and POSTERN_METRICS_AUTH puts it behind the
// bearer token.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startTestNode } from '../helpers/node.js';
import { startHttpServer } from '../../src/http/server.js';
import { QUEUE_COUNTS_MAX_AGE_MS } from '../../src/http/cached-counts.js';
import { silentLogger } from '../../src/log/logger.js';
import type { Config } from '../../src/config/schema.js';
import type { PosternNode } from '../../src/main.js';

const TOKEN = 'metrics-test-token-0123456789';

async function startApi(t: TestContext, over: Partial<Config>): Promise<{ node: PosternNode; base: string; countCalls: () => number }> {
  let server: Awaited<ReturnType<typeof startHttpServer>> | null = null;
  t.after(() => server?.close());
  const node = await startTestNode(t);
  // The real queue, its counts() counted.
  const q = node.queue;
  const real = q.counts.bind(q);
  let calls = 0;
  q.counts = () => {
    calls++;
    return real();
  };
  server = await startHttpServer({
    config: { ...node.config, httpHost: '127.0.0.1', httpPort: 0, apiToken: TOKEN, ...over },
    queue: q,
    log: silentLogger(),
    smtpCounters: () => node.ctx.counters,
    delivery: () => null,
    ready: () => true,
  });
  return { node, base: `http://127.0.0.1:${server.port}`, countCalls: () => calls };
}

const ready = (text: string): number => Number(/^postern_queue_messages\{state="ready"\} (\d+)$/m.exec(text)![1]);

test('scrapes within a second share one count of the queue; a later one recounts', async (t) => {
  const a = await startApi(t, {});
  const t0 = performance.now();
  const first = await (await fetch(`${a.base}/metrics`)).text();
  assert.equal(a.countCalls(), 1);
  assert.equal(ready(first), 0);
  await a.node.queue.enqueue({ sender: 's@sender.example', recipients: [{ address: 'r@rcpt.example' }] }, [Buffer.from('Subject: x\r\n\r\nx\r\n')]);
  // A burst of scrapes, and the dashboard's /v1/stats, within the window: no recount.
  for (let i = 0; i < 20; i++) assert.equal((await fetch(`${a.base}/metrics`)).status, 200);
  assert.equal((await fetch(`${a.base}/v1/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
  if (performance.now() - t0 < QUEUE_COUNTS_MAX_AGE_MS) assert.equal(a.countCalls(), 1, 'one count for the whole burst');
  // GET /v1/queue (administration) counts afresh.
  const exact = (await (await fetch(`${a.base}/v1/queue`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { total: number };
  assert.equal(exact.total, 1);
  // Past the window, the next scrape sees the new message.
  await new Promise((r) => setTimeout(r, QUEUE_COUNTS_MAX_AGE_MS + 50));
  const before = a.countCalls();
  const later = await (await fetch(`${a.base}/metrics`)).text();
  assert.equal(a.countCalls(), before + 1);
  assert.equal(ready(later), 1);
});

test('POSTERN_METRICS_AUTH: /metrics needs the bearer token; /health and /ready stay open', async (t) => {
  const open = await startApi(t, {});
  assert.equal((await fetch(`${open.base}/metrics`)).status, 200, 'open by default');

  const a = await startApi(t, { metricsAuth: true });
  const none = await fetch(`${a.base}/metrics`);
  assert.equal(none.status, 401);
  assert.equal(((await none.json()) as any).error.code, 'PST_HTTP_UNAUTHORIZED');
  assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="postern"');
  assert.equal((await fetch(`${a.base}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  assert.equal(a.countCalls(), 0, 'refused scrapes count nothing');
  const ok = await fetch(`${a.base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(ok.status, 200);
  assert.match(await ok.text(), /^postern_queue_messages\{state="ready"\} 0$/m);
  assert.equal((await fetch(`${a.base}/health`)).status, 200);
  assert.equal((await fetch(`${a.base}/ready`)).status, 200);
});
