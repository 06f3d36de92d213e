// Issue 13 items 1 and 3 through real sockets on loopback: the connector dials exactly the
// address that passed the policy (a name is never looked up again), a message with too many
// Received: headers is refused at the end of DATA (554 5.4.6) and bounced at delivery (5.4.6),
// and a route that points back at the node's own listener bounces "loops back to myself"
// before any connection is made.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../bench/lib/proc.js';
import { startScriptedServer, deliveryRequest } from '../helpers/scripted-server.js';
import { openTransaction, sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { startTestNode } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { SmtpTransport } from '../../src/delivery/smtp-transport.js';
import { countReceived } from '../../src/protocol/hop-count.js';

const fast = { delivery: { pollIntervalMs: 50 } };
const hops = (n: number): string => Array.from({ length: n }, (_, i) => `Received: from hop${i}.test by hop${i + 1}.test; Mon, 7 Dec 2026 00:00:00 +0000\r\n`).join('');

function maildirFiles(root: string, domain: string, local: string): string[] {
  const dir = join(root, domain, local, 'new');
  return existsSync(dir) ? readdirSync(dir).map((f) => readFileSync(join(dir, f), 'latin1')) : [];
}

test('countReceived: header section only, case-insensitive, stops past the limit', () => {
  const msg = Buffer.from(`${hops(3)}RECEIVED : x\r\nX-Received: no\r\nSubject: s\r\n\r\nReceived: in the body\r\n`);
  assert.equal(countReceived(msg, 50), 4);
  assert.equal(countReceived(msg, 1), 2, 'stops once past the limit');
  assert.equal(countReceived(Buffer.from('Received:x\nReceived:y\n\nReceived:z'), 50), 2, 'bare LF lines too');
  assert.equal(countReceived(Buffer.alloc(0), 50), 0);
});

test('the connector dials the checked address, never the name again (no DNS rebinding)', async (t) => {
  const peer = await startScriptedServer(t);
  const tr = new SmtpTransport({ heloName: 'client.test' });
  t.after(() => tr.close());
  // ".invalid" never resolves (RFC 6761): delivery can only work through the checked address.
  const dest = { kind: 'smtp' as const, key: 'smtp:mx.rebind.invalid:25', hosts: [{ host: 'mx.rebind.invalid', port: peer.port, address: '127.0.0.1' }], tlsPolicy: 'none' as const };
  const [r] = await tr.deliver(dest, deliveryRequest('a@x.test', ['b@y.test'], 'Subject: s\r\n\r\nbody\r\n'));
  assert.equal(r!.kind, 'delivered', JSON.stringify(r));
  assert.equal(peer.messages().length, 1);
});

test('end of DATA: more Received headers than POSTERN_MAX_HOPS is refused with 554 5.4.6', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_HOPS: '5', POSTERN_LOCAL_DOMAINS: 'local.test' });
  await sendMessage(node.ports.smtpPort, 'a@far.test', ['b@local.test'], `${hops(4)}Subject: four hops, ours is the fifth\r\n\r\nok\r\n`);
  const c = await openTransaction(t, node.ports.smtpPort, { helo: 'loop.test', from: 'a@far.test', to: 'b@local.test' });
  assert.equal((await c.cmd('DATA')).code, 354);
  const r = await c.cmd(`${hops(5)}Subject: loop\r\n\r\nbody\r\n.`);
  assert.equal(r.code, 554);
  assert.match(r.text, /^5\.4\.6 /);
  assert.equal(node.queue.counts().total, 1, 'only the first message was queued');
});

test('delivery: a queued message past the hop limit bounces 5.4.6 and is never sent', async (t) => {
  const root = tmpdir(t);
  const peer = await startScriptedServer(t);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_MAILDIR_CREATE: 'true', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${peer.port};home.test=maildir:${root}`, POSTERN_MAX_HOPS: '10' }, fast);
  // Queued without SMTP (as the HTTP API or an older node could have), so only delivery can catch it.
  await node.queue.enqueue({ sender: 'alice@home.test', recipients: [{ address: 'x@far.test' }] }, Buffer.from(`${hops(11)}Subject: loop\r\n\r\nbody\r\n`));
  await waitFor('bounce to the sender', () => maildirFiles(root, 'home.test', 'alice').length === 1);
  const dsn = maildirFiles(root, 'home.test', 'alice')[0]!;
  assert.match(dsn, /Status: 5\.4\.6/);
  assert.match(dsn, /Too many hops/);
  assert.equal(peer.messages().length, 0, 'nothing was relayed');
});

test('a route to the node itself bounces "loops back to myself" without connecting', async (t) => {
  const root = tmpdir(t);
  const port = await freePort();
  const node = await startTestNode(t, { POSTERN_SMTP_PORT: String(port), POSTERN_DELIVERY: 'routes', POSTERN_MAILDIR_CREATE: 'true', POSTERN_ROUTES: `loop.test=smtp:127.0.0.1:${port};home.test=maildir:${root}` }, fast);
  await sendMessage(node.ports.smtpPort, 'alice@home.test', ['x@loop.test'], 'Subject: to myself\r\n\r\nbody\r\n');
  await waitFor('bounce to the sender', () => maildirFiles(root, 'home.test', 'alice').length === 1);
  const dsn = maildirFiles(root, 'home.test', 'alice')[0]!;
  assert.match(dsn, /Status: 5\.4\.6/);
  assert.match(dsn, /loops back to myself/);
  assert.equal(node.ctx.counters.messagesAccepted, 1, 'the message never came back in over SMTP');
});
