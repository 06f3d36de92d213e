// Queue leases against deliveries that outlast them, through the whole node on loopback: a
// sink that answers the final "." after several lease times gets the message once (the lease
// is renewed while the delivery runs, and one scheduler never leases a message it is still
// delivering), and such a delivery holds one delivery slot, not all of them. The lease is the
// minimum (1 s) so that "several lease times" is seconds. docs/queue.md "Leases and recovery".
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { sendMessage } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { startTestNode } from '../helpers/node.js';
import { startScriptedServer, type ScriptedServer } from '../helpers/scripted-server.js';

const LEASE_MS = 1000;
const send = (port: number, rcpts: string[], body: string) => sendMessage(port, 'me@home.test', rcpts, body, 'lease.example');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const fast = { delivery: { pollIntervalMs: 50 } };

/** A sink whose reply to the final "." comes after `finalDelayMs` (0: at once). */
function sink(t: TestContext, finalDelayMs: number): Promise<ScriptedServer> {
  return startScriptedServer(t, {
    capabilities: ['PIPELINING', '8BITMIME', 'ENHANCEDSTATUSCODES'],
    ...(finalDelayMs > 0 ? { reply: (cmd: string) => (cmd === '.' ? { delayMs: finalDelayMs } : undefined) } : {}),
  });
}

/** Sessions that got this message's data (complete or still waiting for the reply to "."). */
const copies = (s: ScriptedServer): number => s.sessions.filter((x) => x.dataBytes > 0).length;

test('a reply to the final "." after 3.5 lease times: one transaction, one copy, settled once; the lease is renewed meanwhile', async (t) => {
  const slow = await sink(t, 3.5 * LEASE_MS);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `far.test=smtp:127.0.0.1:${slow.port}`, POSTERN_QUEUE_LEASE_MS: String(LEASE_MS), POSTERN_RETRY_SCHEDULE: '300ms' }, fast);
  const id = await send(node.ports.smtpPort, ['a@far.test'], 'Subject: slow\n\nMARKER-SLOW\n');
  await waitFor('the data sent', () => copies(slow) > 0);
  const first = node.queue.get(id)!.lease!.expiresAt;
  await sleep(2.5 * LEASE_MS);
  const m = node.queue.get(id);
  assert.equal(m?.state, 'leased', 'still leased by the delivery under way');
  assert.ok(m!.lease!.expiresAt > first, 'the lease was renewed');
  assert.equal(copies(slow), 1, 'not leased and sent again while the first attempt waits');
  await waitFor('delivered', () => node.queue.counts().total === 0, 5000);
  await sleep(1.5 * LEASE_MS);
  assert.equal(slow.messages().length, 1, 'exactly one copy accepted');
  assert.equal(slow.sessions.length, 1, 'one connection');
  assert.equal(node.delivery!.counters.delivered, 1, 'one delivered outcome');
  assert.equal(node.delivery!.counters.attempts, 1);
});

test('while one delivery hangs for several lease times, other mail still gets a delivery slot', async (t) => {
  const slow = await sink(t, 6 * LEASE_MS);
  const quick = await sink(t, 0);
  const node = await startTestNode(
    t,
    {
      POSTERN_DELIVERY: 'routes',
      POSTERN_ROUTES: `slow.test=smtp:127.0.0.1:${slow.port};quick.test=smtp:127.0.0.1:${quick.port}`,
      POSTERN_QUEUE_LEASE_MS: String(LEASE_MS),
      POSTERN_DELIVERY_CONCURRENCY: '2',
      POSTERN_RETRY_SCHEDULE: '300ms',
    },
    fast,
  );
  await send(node.ports.smtpPort, ['a@slow.test'], 'Subject: slow\n\nMARKER-SLOW\n');
  await waitFor('the slow data sent', () => copies(slow) > 0);
  // Three lease times: a lease that is neither renewed nor guarded would have been reclaimed and
  // taken again by now, its copies holding both slots.
  await sleep(3 * LEASE_MS);
  const started = Date.now();
  await send(node.ports.smtpPort, ['b@quick.test'], 'Subject: quick\n\nMARKER-QUICK\n');
  await waitFor('the quick message delivered', () => quick.messages().length === 1, 5000);
  const took = Date.now() - started;
  assert.ok(took < 1500, `delivered in ${took} ms while the slow one still waits`);
  assert.equal(copies(slow), 1, 'the slow message holds one transaction');
  await waitFor('all delivered', () => node.queue.counts().total === 0, 8000);
  assert.equal(slow.messages().length, 1, 'exactly one copy of the slow message');
});
