// WebhookTransport against a real node:http server on 127.0.0.1:0: exact headers and body,
// the HTTP status → SMTP outcome mapping, timeouts, network errors and connection reuse.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebhookTransport, type WebhookTransportOptions } from '../../src/delivery/webhook-transport.js';
import type { DeliveryRequest, Destination, RecipientResult } from '../../src/delivery/types.js';
import type { MessageRecord, Recipient } from '../../src/queue/store.js';
import { startHttpReceiver } from '../helpers/http-receiver.js';

function transport(t: TestContext, opts?: WebhookTransportOptions): WebhookTransport {
  const tr = new WebhookTransport(opts);
  t.after(() => tr.close());
  return tr;
}

function rcpt(address: string): Recipient {
  return { address, domain: address.slice(address.lastIndexOf('@') + 1), state: 'pending', attempts: 0 };
}

function request(id: string, sender: string, recipients: string[], body: Buffer): DeliveryRequest {
  const message: MessageRecord = {
    id, seq: 1, priority: 1, sender, recipients: recipients.map(rcpt), state: 'leased',
    receivedAt: Date.now(), nextAttemptAt: 0, attempts: 0, size: body.length,
  };
  return { message, recipients: message.recipients, body };
}

const BODY = Buffer.concat([Buffer.from('Subject: x\r\n\r\nhello\r\n'), Buffer.from(Array.from({ length: 256 }, (_, i) => i))]);

test('2xx: body and envelope headers arrive exactly; all recipients delivered', async (t) => {
  const srv = await startHttpReceiver(t, (_req, res) => { res.writeHead(202); res.end('queued ok'); });
  const tr = transport(t);
  const dest: Destination = { kind: 'webhook', key: 'webhook:a', url: `${srv.origin}/hook/in?token=a%20b` };
  const res = await tr.deliver(dest, request('Q1-abc', 'Sénder+x@example.com', ['a@example.org', 'b,c@example.org'], BODY));
  assert.equal(srv.requests.length, 1);
  const s = srv.requests[0]!;
  assert.equal(s.method, 'POST');
  assert.equal(s.url, '/hook/in?token=a%20b');
  assert.deepEqual(s.body, BODY);
  assert.equal(s.headers['content-type'], 'message/rfc822');
  assert.equal(s.headers['content-length'], String(BODY.length));
  assert.equal(s.headers['x-postern-message-id'], 'Q1-abc');
  assert.equal(s.headers['x-postern-sender'], 'S%C3%A9nder%2Bx@example.com');
  assert.equal(decodeURIComponent(s.headers['x-postern-sender'] as string), 'Sénder+x@example.com');
  assert.equal(s.headers['x-postern-recipients'], 'a@example.org,b%2Cc@example.org');
  assert.deepEqual((s.headers['x-postern-recipients'] as string).split(',').map(decodeURIComponent), ['a@example.org', 'b,c@example.org']);
  assert.deepEqual(res.map((r) => [r.address, r.kind, r.reply.code, r.reply.enhanced, r.reply.destination]), [
    ['a@example.org', 'delivered', 250, '2.0.0', srv.origin],
    ['b,c@example.org', 'delivered', 250, '2.0.0', srv.origin],
  ]);
  assert.match(res[0]!.reply.text, /HTTP 202: queued ok/);
  assert.equal(res[0]!.reply.command, 'POST');
});

test('no header injection through envelope values', async (t) => {
  const srv = await startHttpReceiver(t, (_req, res) => { res.end(); });
  const tr = transport(t);
  const evil = 'x@y\r\nX-Evil: 1';
  const res = await tr.deliver({ kind: 'webhook', key: 'w', url: srv.origin }, request('id\r\nX-Evil: 2', evil, [evil, 'ok@example.org'], BODY));
  assert.equal(res[0]!.kind, 'delivered');
  const s = srv.requests[0]!;
  assert.equal(s.headers['x-evil'], undefined);
  assert.equal(s.url, '/');
  assert.equal(decodeURIComponent(s.headers['x-postern-sender'] as string), evil);
  assert.equal(decodeURIComponent(s.headers['x-postern-message-id'] as string), 'id\r\nX-Evil: 2');
  assert.deepEqual((s.headers['x-postern-recipients'] as string).split(',').map(decodeURIComponent), [evil, 'ok@example.org']);
});

test('status mapping: 4xx permanent 5.0.0, 5xx/408/429 transient 4.0.0, status in the text', async (t) => {
  const srv = await startHttpReceiver(t, (req, res) => {
    const status = Number(req.url!.slice(1));
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(`status\r\n${status}\x00body`);
  });
  const tr = transport(t, { connections: 1 });
  const cases: Array<[number, RecipientResult['kind'], number, string]> = [
    [200, 'delivered', 250, '2.0.0'], [204, 'delivered', 250, '2.0.0'],
    [400, 'failed', 550, '5.0.0'], [404, 'failed', 550, '5.0.0'], [413, 'failed', 550, '5.0.0'],
    [408, 'deferred', 451, '4.0.0'], [429, 'deferred', 451, '4.0.0'],
    [500, 'deferred', 451, '4.0.0'], [503, 'deferred', 451, '4.0.0'], [302, 'deferred', 451, '4.0.0'],
  ];
  for (const [status, kind, code, enhanced] of cases) {
    const res = await tr.deliver({ kind: 'webhook', key: 'w', url: `${srv.origin}/${status}` }, request('M', 's@x.example', ['a@x.example', 'b@x.example'], BODY));
    assert.equal(res.length, 2);
    for (const r of res) {
      assert.deepEqual([r.kind, r.reply.code, r.reply.enhanced, r.reply.transient], [kind, code, enhanced, kind === 'deferred'], String(status));
      assert.ok(r.reply.text.includes(`HTTP ${status}`), r.reply.text);
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(r.reply.text, /[\r\n\x00]/);
    }
  }
  assert.equal(srv.connections(), 1, 'every status answer left the connection reusable');
});

test('timeouts and network errors are transient 4.0.0', async (t) => {
  const srv = await startHttpReceiver(t, (req, res) => {
    if (req.url === '/hang') return; // never answer
    if (req.url === '/slow-body') { res.writeHead(200); res.write('part'); return; } // never finish
    res.end();
  });
  const tr = transport(t, { headersTimeoutMs: 200, bodyTimeoutMs: 200 });
  const started = Date.now();
  let res = await tr.deliver({ kind: 'webhook', key: 'w', url: `${srv.origin}/hang` }, request('M', 's@x.example', ['a@x.example'], BODY));
  assert.deepEqual([res[0]!.kind, res[0]!.reply.code, res[0]!.reply.enhanced], ['deferred', 451, '4.0.0']);
  assert.match(res[0]!.reply.text, /UND_ERR_HEADERS_TIMEOUT/);
  assert.ok(Date.now() - started < 5000);

  res = await tr.deliver({ kind: 'webhook', key: 'w', url: `${srv.origin}/slow-body` }, request('M', 's@x.example', ['a@x.example'], BODY));
  assert.deepEqual([res[0]!.kind], ['deferred']);
  assert.match(res[0]!.reply.text, /UND_ERR_BODY_TIMEOUT/);

  // A port nobody listens on: bind one, close it, use it.
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const port = (dead.address() as AddressInfo).port;
  await new Promise<void>((r) => dead.close(() => r()));
  res = await tr.deliver({ kind: 'webhook', key: 'w', url: `http://127.0.0.1:${port}/` }, request('M', 's@x.example', ['a@x.example'], BODY));
  assert.deepEqual([res[0]!.kind, res[0]!.reply.enhanced, res[0]!.reply.destination], ['deferred', '4.0.0', `http://127.0.0.1:${port}`]);
  assert.match(res[0]!.reply.text, /ECONNREFUSED/);

  res = await tr.deliver({ kind: 'webhook', key: 'w-bad', url: 'ftp://example.org/' }, request('M', 's@x.example', ['a@x.example'], BODY));
  assert.deepEqual([res[0]!.kind, res[0]!.reply.enhanced], ['deferred', '4.3.5']);
});

test('one pool per origin: sequential messages reuse a connection; the limit caps concurrency', async (t) => {
  const srv = await startHttpReceiver(t, (_req, res) => { setTimeout(() => res.end('ok'), 20); });
  const tr = transport(t, { connections: 1 });
  const dest: Destination = { kind: 'webhook', key: 'w', url: `${srv.origin}/a` };
  for (let i = 0; i < 10; i++) {
    const res = await tr.deliver(dest, request(`M${i}`, 's@x.example', ['a@x.example'], BODY));
    assert.equal(res[0]!.kind, 'delivered');
  }
  assert.equal(srv.connections(), 1, 'ten messages over one keep-alive connection');
  assert.equal(tr.poolCount, 1);

  // With a larger limit, concurrent deliveries open at most `connections` sockets, and
  // sequential ones still reuse them. (undici marks a client free again one tick after the
  // response body ends, so back-to-back requests may open a second socket: ≤ 2, not 10.)
  const srv2 = await startHttpReceiver(t, (_req, res) => { setTimeout(() => res.end('ok'), 20); });
  const tr2 = transport(t, { connections: 3 });
  const many = await Promise.all(Array.from({ length: 9 }, (_, i) => tr2.deliver({ kind: 'webhook', key: 'w', url: `${srv2.origin}/b?${i}` }, request(`C${i}`, 's@x.example', ['a@x.example'], BODY))));
  assert.ok(many.every((r) => r[0]!.kind === 'delivered'));
  assert.equal(srv2.connections(), 3, 'concurrency capped at `connections`');
  for (let i = 0; i < 10; i++) await tr2.deliver({ kind: 'webhook', key: 'w', url: `${srv2.origin}/c` }, request(`S${i}`, 's@x.example', ['a@x.example'], BODY));
  assert.equal(srv2.connections(), 3, 'sequential deliveries reuse the pooled sockets');
  assert.equal(tr2.poolCount, 1, 'paths and queries share the origin pool');

  await tr.close();
  assert.equal(tr.poolCount, 0);
  const after = await tr.deliver(dest, request('late', 's@x.example', ['a@x.example'], BODY));
  assert.deepEqual([after[0]!.kind], ['deferred']);
  assert.equal(srv.requests.length, 10, 'nothing sent after close()');
});

/** Write `unit` repeatedly onto the response, `every` ms apart (0: as fast as it drains), for at most `forMs`. */
function stream(res: ServerResponse, unit: Buffer, every: number, forMs: number, sent: { bytes: number }): void {
  const until = Date.now() + forMs;
  const pump = (): void => {
    while (!res.destroyed && Date.now() < until) {
      sent.bytes += unit.length;
      const more = res.write(unit);
      if (every > 0) {
        setTimeout(pump, every);
        return;
      }
      if (!more) {
        res.once('drain', pump);
        return;
      }
    }
    if (!res.destroyed) res.end();
  };
  pump();
}

/** deliver(), or null if it has not answered within `ms`. */
async function within<T>(ms: number, p: Promise<T>): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)))]);
  clearTimeout(timer);
  return r;
}

test('an endless response body: the status stands, at most 64 KiB is read, the connection is dropped, not reused', async (t) => {
  const sent = { bytes: 0 };
  const closed: number[] = [];
  const srv = await startHttpReceiver(t, (req, res) => {
    if (req.url !== '/endless') return void res.end('ok');
    req.socket.once('close', () => closed.push(Date.now()));
    res.writeHead(200, { 'content-type': 'text/plain' });
    stream(res, Buffer.alloc(65536, 'a'), 0, 3000, sent);
  });
  const tr = transport(t, { connections: 1 });
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = Date.now();
  const res = await within(3000, tr.deliver({ kind: 'webhook', key: 'w', url: `${srv.origin}/endless` }, request('M', 's@x.example', ['a@x.example'], BODY)));
  assert.ok(res, 'deliver() answered');
  assert.deepEqual([res[0]!.kind === 'delivered', res[0]!.reply.code, res[0]!.reply.enhanced], [true, 250, '2.0.0']);
  assert.match(res[0]!.reply.text, /^webhook answered HTTP 200: a{10}/);
  assert.ok(res[0]!.reply.text.length < 400, 'only the start of the body is quoted');
  assert.match(res[0]!.reply.text, /\(body over 65536 bytes not read\)$/);
  for (let i = 0; i < 100 && closed.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(closed.length === 1 && closed[0]! - t0 < 2000, 'the server saw the connection closed at once');
  assert.ok(process.memoryUsage().heapUsed - heap0 < 32 * 1024 * 1024);
  const again = await tr.deliver({ kind: 'webhook', key: 'w', url: `${srv.origin}/next` }, request('N', 's@x.example', ['a@x.example'], BODY));
  assert.equal(again[0]!.kind, 'delivered');
  assert.equal(srv.connections(), 2, 'the drained-no-further connection was not reused');
});

test('a response body that trickles in: the response deadline (responseTimeoutMs) ends it, transient 4.0.0', async (t) => {
  const sent = { bytes: 0 };
  const srv = await startHttpReceiver(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    // One byte every 50 ms: each arrives well within the body timeout, so only a deadline on
    // the whole response ends it (at this pace 64 KiB would take an hour).
    stream(res, Buffer.from('z'), 50, 5000, sent);
  });
  const tr = transport(t, { bodyTimeoutMs: 1000, headersTimeoutMs: 1000, responseTimeoutMs: 500 });
  const t0 = Date.now();
  const res = await within(3000, tr.deliver({ kind: 'webhook', key: 'w', url: `${srv.origin}/drip` }, request('M', 's@x.example', ['a@x.example'], BODY)));
  assert.ok(res, `deliver() still waiting after 3 s (${sent.bytes} bytes trickled)`);
  assert.ok(Date.now() - t0 < 1500);
  assert.deepEqual([res[0]!.kind, res[0]!.reply.code, res[0]!.reply.enhanced], ['deferred', 451, '4.0.0']);
  assert.match(res[0]!.reply.text, /no complete response within 500 ms/);
});
