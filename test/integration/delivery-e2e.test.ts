// End to end through the whole node: SMTP in, the LMDB queue, the scheduler, routes, and out
// over SMTP to another postern, to Maildir, with deferral, expiry and RFC 3464 bounces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { startTestNode } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { startScriptedServer } from '../helpers/scripted-server.js';
import type { PosternNode } from '../../src/main.js';

const send = (port: number, from: string, rcpts: string[], body: string) => sendMessage(port, from, rcpts, body, 'e2e.example');


function maildirFiles(root: string, domain: string, local: string): string[] {
  const dir = join(root, domain, local, 'new');
  return existsSync(dir) ? readdirSync(dir).map((f) => readFileSync(join(dir, f), 'latin1')) : [];
}

const fast = { delivery: { pollIntervalMs: 50 } };

test('relay: postern → postern over SMTP, recipients of one destination in one transaction, queue emptied', async (t) => {
  const b = await startTestNode(t, { POSTERN_LOCAL_DOMAINS: 'b.test,c.test', POSTERN_HOSTNAME: 'b.mx.test' });
  const a = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `b.test=smtp:127.0.0.1:${b.ports.smtpPort};c.test=smtp:127.0.0.1:${b.ports.smtpPort}`, POSTERN_HOSTNAME: 'a.mx.test', POSTERN_HTTP_PORT: '0' }, fast);
  const id = await send(a.ports.smtpPort, 'alice@a.test', ['x@b.test', 'y@b.test', 'z@c.test'], 'Subject: relay\n\n.leading dot\nbody\n');
  await waitFor('delivery from a to b', () => a.queue.counts().total === 0 && b.queue.counts().total >= 1);
  const msgs = b.queue.list();
  assert.equal(msgs.length, 1, 'b.test and c.test share the destination: one transaction');
  assert.deepEqual(msgs[0]!.recipients.map((r) => r.address).sort(), ['x@b.test', 'y@b.test', 'z@c.test']);
  assert.equal(msgs[0]!.sender, 'alice@a.test');
  const body = b.queue.withBody(msgs[0]!.id, (x) => x.toString('latin1'));
  assert.match(body, /^Received: from a\.mx\.test \(\[127\.0\.0\.1\]\)/, "b's Received header names a");
  assert.ok(body.includes(`by a.mx.test (postern) with ESMTP id ${id}`), "a's Received header is carried along");
  assert.ok(body.endsWith('Subject: relay\r\n\r\n.leading dot\r\nbody\r\n'), 'the body arrives intact (dot-stuffing round trip)');
  assert.equal(a.delivery!.counters.delivered, 3);
  // Per-destination counters and the latency histogram on /metrics.
  const metrics = await (await fetch(`http://127.0.0.1:${a.ports.httpPort}/metrics`)).text();
  const dest = `smtp:127.0.0.1:${b.ports.smtpPort}`;
  assert.ok(metrics.includes(`postern_destination_deliveries_total{destination="${dest}",outcome="delivered"} 3\n`), metrics);
  assert.ok(metrics.includes(`postern_destination_delivery_seconds_count{destination="${dest}"} 1\n`));
  assert.match(metrics, /postern_destination_delivery_seconds_bucket\{destination="[^"]+",le="\+Inf"\} 1\n/);
  assert.match(metrics, /^postern_queue_file_bytes [1-9]\d*$/m);
});

test('Maildir route for a local domain', async (t) => {
  const root = tmpdir(t);
  const a = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_MAILDIR_CREATE: 'true', POSTERN_ROUTES: `local.test=maildir:${root}`, POSTERN_LOCAL_DOMAINS: 'local.test' }, fast);
  mkdirSync(root, { recursive: true });
  await send(a.ports.smtpPort, 'sender@far.test', ['Bob@local.test'], 'Subject: to maildir\n\nhello\n');
  await waitFor('maildir delivery', () => maildirFiles(root, 'local.test', 'bob').length === 1);
  const [file] = maildirFiles(root, 'local.test', 'bob');
  assert.match(file!, /^Return-Path: <sender@far\.test>\r\nDelivered-To: Bob@local\.test\r\nReceived: /);
  assert.ok(file!.endsWith('Subject: to maildir\r\n\r\nhello\r\n'));
  await waitFor('queue empty', () => a.queue.counts().total === 0);
});

test('a 5xx bounces that recipient at once: one DSN to the sender, the others delivered', async (t) => {
  const root = tmpdir(t);
  const peer = await startScriptedServer(t, { reply: (cmd) => (/^RCPT TO:<nobody@/i.test(cmd) ? '550 5.1.1 <nobody@far.test>: user unknown' : undefined) });
  const a = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_MAILDIR_CREATE: 'true', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${peer.port};home.test=maildir:${root}`, POSTERN_HOSTNAME: 'a.mx.test' }, fast);
  const id = await send(a.ports.smtpPort, 'me@home.test', ['nobody@far.test', 'someone@far.test', 'ghost@far.test'].slice(0, 2), 'Subject: will bounce\nMessage-ID: <orig@home.test>\n\nbody\n');
  await waitFor('the bounce in the sender maildir', () => maildirFiles(root, 'home.test', 'me').length === 1);
  await waitFor('queue empty', () => a.queue.counts().total === 0);
  assert.equal(peer.messages().length, 1);
  assert.deepEqual(peer.messages()[0]!.accepted.map((r) => /<(.*)>/.exec(r)?.[1] ?? r), ['someone@far.test']);
  const dsn = maildirFiles(root, 'home.test', 'me')[0]!;
  assert.match(dsn, /^Return-Path: <>\r\n/m, 'bounces come from the null sender');
  assert.match(dsn, /Content-Type: multipart\/report; report-type=delivery-status/i);
  assert.match(dsn, /Final-Recipient: rfc822; ?nobody@far\.test/i);
  assert.match(dsn, /Action: failed/);
  assert.match(dsn, /Status: 5\.1\.1/);
  assert.match(dsn, /Diagnostic-Code: smtp; 550 5\.1\.1/);
  assert.ok(!/Final-Recipient: rfc822; ?someone@far\.test/i.test(dsn), 'the delivered recipient is not in the bounce');
  assert.ok(dsn.includes(id), 'the DSN names the queue id');
  assert.match(dsn, /Message-ID: <orig@home\.test>/, 'the original headers are attached');
});

test('a 4xx defers with backoff, then the message expires and bounces; a null-sender message never bounces', async (t) => {
  const root = tmpdir(t);
  let calls = 0;
  const peer = await startScriptedServer(t, {
    reply: (cmd) => {
      if (/^RCPT/i.test(cmd)) {
        calls++;
        return '451 4.3.0 try again later';
      }
      return undefined;
    },
  });
  const a = await startTestNode(
    t,
    { POSTERN_DELIVERY: 'routes', POSTERN_MAILDIR_CREATE: 'true', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${peer.port};home.test=maildir:${root}`, POSTERN_RETRY_SCHEDULE: '200ms', POSTERN_MAX_QUEUE_LIFETIME: '1500ms', POSTERN_HOSTNAME: 'a.mx.test' },
    fast,
  );
  const id = await send(a.ports.smtpPort, 'me@home.test', ['later@far.test'], 'Subject: deferred\n\nbody\n');
  await waitFor('a first deferral', () => (a.queue.get(id)?.recipients[0]!.attempts ?? 0) >= 1);
  const m = a.queue.get(id)!;
  assert.equal(m.recipients[0]!.state, 'pending');
  assert.equal(m.recipients[0]!.lastReply?.code, 451);
  assert.equal(m.recipients[0]!.lastReply?.enhanced, '4.3.0');
  assert.ok(m.nextAttemptAt > Date.now() - 1000);
  await send(a.ports.smtpPort, '', ['later@far.test'], 'Subject: null sender\n\nbody\n').catch(() => {});
  await waitFor('expiry and the bounce', () => maildirFiles(root, 'home.test', 'me').length === 1, 15000);
  await waitFor('queue empty', () => a.queue.counts().total === 0, 15000);
  assert.ok(calls >= 2, `retried (${calls} attempts)`);
  const dsn = maildirFiles(root, 'home.test', 'me')[0]!;
  assert.match(dsn, /Status: 4\.4\.7|Status: 5\.4\.7/);
  assert.match(dsn, /delivery time expired/);
  assert.equal(maildirFiles(root, 'home.test', 'me').length, 1, 'no bounce for the null-sender message');
});

test('POSTERN_DELIVERY=routes never looks up MX: unrouted mail waits in the queue with a clear reason', async (t) => {
  const a: PosternNode = await startTestNode(t, { POSTERN_DELIVERY: 'routes' }, fast);
  const id = await send(a.ports.smtpPort, 'me@home.test', ['user@example.com'], 'Subject: unrouted\n\nbody\n');
  await waitFor('a deferral', () => (a.queue.get(id)?.recipients[0]!.attempts ?? 0) >= 1);
  const r = a.queue.get(id)!.recipients[0]!;
  assert.equal(r.state, 'pending');
  assert.match(r.lastReply!.text, /no route for example\.com/);
  assert.equal(a.delivery!.counters.attempts, 0, 'no transport was tried');
});

test('a bad POSTERN_ROUTES stops start-up naming the variable', async (t) => {
  await assert.rejects(startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: 'x.test=ftp:host' }), /POSTERN_ROUTES="x\.test=ftp:host" is invalid: .*unknown kind "ftp"/);
});
