// Event webhooks: events are queued durably with the change they describe and POSTed in
// batches; a failing receiver keeps them queued (retried with backoff), never slows delivery.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { startTestNode, tempDir } from '../helpers/node.js';
import { sendMessage, waitFor } from '../helpers/smtp-client.js';

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
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      posts++;
      if (failing) {
        res.statusCode = 503;
        res.end('down');
        return;
      }
      got.push(...(JSON.parse(body) as { events: Received[] }).events);
      res.end('ok');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const root = tempDir(t);
  mkdirSync(root, { recursive: true });
  const node = await startTestNode(
    t,
    { POSTERN_EVENTS_URL: `http://127.0.0.1:${port}/events`, POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `local.test=maildir:${root}` },
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
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      got.push(...(JSON.parse(body) as { events: typeof got }).events);
      res.end('ok');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const node = await startTestNode(t, { POSTERN_EVENTS_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, POSTERN_HTTP_PORT: '0' });
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
