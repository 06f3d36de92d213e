// A destination that is down, then back, through the whole node (SMTP in, LMDB queue,
// scheduler, real SMTP client out) on loopback: the messages deferred by its refused
// connections wait for it (visible in /metrics and /v1/stats), and are delivered within the
// probe interval of its return, not after their 5-minute retry delay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { startTestNode } from '../helpers/node.js';
import { freePort, RecordingSink, taggedMessage, prng } from '../helpers/reliability.js';

test('a destination down then back: its deferred messages wait for it (metrics, stats) and go within the probe interval of its return', async (t) => {
  const port = await freePort();
  const sink = new RecordingSink();
  t.after(() => sink.close());
  const node = await startTestNode(t, {
    POSTERN_DELIVERY: 'routes',
    POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${port}`,
    POSTERN_HTTP_PORT: '0',
    POSTERN_DEST_PROBE_INTERVAL_MS: '400ms',
  }, { delivery: { pollIntervalMs: 50 } });
  const tags: string[] = [];
  for (let i = 0; i < 3; i++) {
    const m = taggedMessage(`ret-${i}`, 600, prng(i + 1), `r${i}@far.test`);
    tags.push(m.tag);
    await sendMessage(node.ports.smtpPort, 'me@home.test', [`r${i}@far.test`], m.bytes.toString('latin1'), 'home.test');
  }
  await waitFor('3 messages waiting for the destination', () => Object.values(node.queue.waitingCounts()).reduce((a, b) => a + b, 0) === 3, 10_000);
  const [key] = Object.keys(node.queue.waitingCounts());
  assert.match(key!, new RegExp(`127\\.0\\.0\\.1:${port}`));
  for (const m of node.queue.list()) assert.ok(m.nextAttemptAt > Date.now() + 60_000, 'their own retry is minutes away');
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  await waitFor('the gauge', async () => (await (await fetch(`${base}/metrics`)).text()).includes(`postern_destination_waiting{destination="${key}"} 3`), 5000);
  const stats = (await (await fetch(`${base}/v1/stats`)).json()) as { destinations: Array<{ key: string; waitingForReturn: number }> };
  assert.equal(stats.destinations[0]?.key, key, 'the destination with mail waiting is listed first');
  assert.equal(stats.destinations[0]?.waitingForReturn, 3);

  await sink.listen(port);
  const back = Date.now();
  await waitFor('all delivered', () => node.queue.counts().total === 0, 10_000);
  const took = Date.now() - back;
  t.diagnostic(`delivered ${took} ms after the destination came back`);
  assert.ok(took < 5000, `within a few probe intervals, not the 5-minute retry: ${took} ms`);
  for (const tag of tags) assert.equal(sink.byTag.get(tag)?.count, 1, tag);
  assert.equal(sink.duplicates(), 0);
  await waitFor('the gauge is gone', async () => !(await (await fetch(`${base}/metrics`)).text()).includes(`postern_destination_waiting{destination=`), 3000);
  assert.equal(node.delivery!.counters.bounced, 0);
});
