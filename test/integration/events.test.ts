// Event webhooks: events are queued durably with the change they describe and POSTed in
// batches; a failing receiver keeps them queued (retried with backoff), never slows delivery.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { startTestNode } from '../helpers/node.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { startHttpReceiver } from '../helpers/http-receiver.js';
import { Queue } from '../../src/queue/store.js';
import { EventSender } from '../../src/events/sender.js';
import { silentLogger } from '../../src/log/logger.js';

interface Received {
  type: string;
  id?: string;
  recipient?: string;
  destination?: string;
}

test('received and delivered events reach the webhook; a failing receiver keeps them until it recovers', async (t) => {
  const got: Received[] = [];
  let failing = true;
  let posts = 0;
  const { port } = await startHttpReceiver(t, (_req, res, body) => {
    posts++;
    if (failing) {
      res.statusCode = 503;
      res.end('down');
      return;
    }
    got.push(...(JSON.parse(body.toString()) as { events: Received[] }).events);
    res.end('ok');
  });
  const root = tmpdir(t);
  mkdirSync(root, { recursive: true });
  const node = await startTestNode(
    t,
    { POSTERN_EVENTS_URL: `http://127.0.0.1:${port}/events`, POSTERN_DELIVERY: 'routes', POSTERN_MAILDIR_CREATE: 'true', POSTERN_ROUTES: `local.test=maildir:${root}` },
    { delivery: { pollIntervalMs: 50 } },
  );
  const id = await sendMessage(node.ports.smtpPort, 'a@example.org', ['bob@local.test'], 'Subject: ev\n\nhello\n');
  // Delivery is not held up by the dead receiver.
  await waitFor('delivery', () => node.queue.counts().total === 0);
  await waitFor('a failed POST', () => posts >= 1, 5000);
  assert.ok(node.queue.events.pending >= 2, 'events are kept while the receiver fails');
  failing = false;
  await waitFor('events delivered after recovery', () => got.some((e) => e.type === 'delivered'), 10000);
  const mine = got.filter((e) => e.id === id);
  assert.deepEqual(mine.map((e) => e.type), ['received', 'delivered']);
  assert.equal(mine[1]!.recipient, 'bob@local.test');
  await waitFor('the log emptied', () => node.queue.events.pending === 0);
});

test('a bad POSTERN_EVENTS_URL stops start-up naming the variable', async (t) => {
  await assert.rejects(startTestNode(t, { POSTERN_EVENTS_URL: 'ftp://x' }), /POSTERN_EVENTS_URL="ftp:\/\/x" is invalid/);
});

test('an HTTP injection emits a received event with source http', async (t) => {
  const got: Array<{ type: string; id?: string; source?: string }> = [];
  const receiver = await startHttpReceiver(t, (_req, res, body) => {
    got.push(...(JSON.parse(body.toString()) as { events: typeof got }).events);
    res.end('ok');
  });
  const node = await startTestNode(t, { POSTERN_EVENTS_URL: `${receiver.origin}/`, POSTERN_HTTP_PORT: '0' });
  const r = await fetch(`http://127.0.0.1:${node.ports.httpPort}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ from: 'a@example.org', to: ['b@example.com'], raw: 'Subject: x\r\n\r\nhi\r\n' }),
  });
  assert.equal(r.status, 202);
  const { id } = (await r.json()) as { id: string };
  await waitFor('the event', () => got.some((e) => e.id === id));
  assert.deepEqual(got.filter((e) => e.id === id).map((e) => [e.type, e.source]), [['received', 'http']]);
});

test('a receiver that answers 200 and then streams its body without end, fast or a byte at a time: the batch counts as sent, bounded in time and bytes', async (t) => {
  let mode: 'fast' | 'drip' = 'fast';
  const closedAt: number[] = [];
  const { port } = await startHttpReceiver(t, (req, res) => {
    req.socket.once('close', () => closedAt.push(Date.now()));
    res.writeHead(200, { 'content-type': 'text/plain' });
    const until = Date.now() + 5000;
    const block = Buffer.alloc(mode === 'fast' ? 65536 : 1, 'b');
    const pump = (): void => {
      while (!res.destroyed && Date.now() < until) {
        const more = res.write(block);
        if (mode === 'drip') return void setTimeout(pump, 50);
        if (!more) return void res.once('drain', pump);
      }
      if (!res.destroyed) res.end();
    };
    pump();
  });
  let queue: Queue | null = null;
  let sender: EventSender | null = null;
  t.after(async () => {
    await sender?.close();
    await queue?.close();
  });
  queue = Queue.open({ path: tmpdir(t, 'postern-events-'), mapSizeBytes: 64 * 1024 * 1024 });
  // The body timeout (between chunks) is the 500 ms too; a byte every 50 ms never trips it.
  sender = new EventSender(queue.events, { url: `http://127.0.0.1:${port}/ev`, log: silentLogger(), lingerMs: 10, timeoutMs: 500 });
  sender.start();
  for (const m of ['fast', 'drip'] as const) {
    mode = m;
    const before = sender.sent;
    const t0 = Date.now();
    queue.events.append({ type: 'delivered', time: new Date().toISOString(), id: m, recipient: 'a@b.example' });
    await waitFor(`${m}: the event stored`, () => queue!.events.pending > 0, 2000); // append does not wait for its commit
    sender.nudge();
    await waitFor(`${m}: the batch sent`, () => sender!.sent > before, 3000);
    assert.ok(Date.now() - t0 < 2000, `${m}: took ${Date.now() - t0} ms`);
    await waitFor(`${m}: the log emptied`, () => queue!.events.pending === 0, 2000);
    await waitFor(`${m}: the connection dropped`, () => closedAt.length > 0 && closedAt[closedAt.length - 1]! >= t0, 2000);
    closedAt.length = 0;
  }
});
