// AffinityTransport: SMTP pools in worker threads, one thread per destination key by a stable
// hash. Two real postern sinks as two destinations: bytes arrive exactly, connections are
// reused inside a destination's thread, a key always maps to the same thread, the body is
// handed over as a transferred ArrayBuffer (copied by default, zero-copy when asked), and a
// worker that dies mid-delivery yields transient results instead of a hang.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startTestNode } from '../helpers/node.js';
import { deliveryRequest, startScriptedServer } from '../helpers/scripted-server.js';
import { AffinityTransport, fnv1a, type AffinityTransportOptions } from '../../src/delivery/affinity-transport.js';
import type { Destination } from '../../src/delivery/types.js';
import type { PosternNode } from '../../src/main.js';
import type { TlsOutcome } from '../../src/delivery/tls-outcome.js';
import { makeTestCa } from '../helpers/test-ca.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { join } from 'node:path';
import { DOMAIN, MX, smtpServer } from '../helpers/tls-policy-fixtures.js';

const TIMEOUTS = { connectMs: 2000, greetingMs: 3000, commandMs: 3000, dataInitMs: 3000, dataBlockMs: 3000, finalMs: 5000, tlsMs: 3000 };

function dest(port: number, key = `smtp:127.0.0.1:${port}`): Destination {
  return { kind: 'smtp', key, hosts: [{ host: '127.0.0.1', port }], tlsPolicy: 'none' };
}

function transport(t: TestContext, extra: Partial<AffinityTransportOptions> = {}): AffinityTransport {
  const tr = new AffinityTransport({ threads: 2, smtp: { heloName: 'client.test', timeouts: TIMEOUTS, maxConnectionsPerDestination: 2 }, ...extra });
  t.after(() => tr.close());
  return tr;
}

/** A body ending in CRLF (so the sink stores exactly these bytes after its Received header). */
function body(token: string, size: number): Buffer {
  const head = `From: a@example.org\r\nTo: b@example.net\r\nSubject: ${token}\r\n\r\n.leading dot\r\n..two\r\n.\r\n\u00e9t\u00e9 8bit\r\n`;
  const line = 'y'.repeat(78) + '\r\n';
  const n = Math.max(0, Math.floor((size - Buffer.byteLength(head)) / line.length));
  return Buffer.from(head + line.repeat(n), 'utf8');
}

function storedBodies(node: PosternNode): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const m of node.queue.list()) {
    const b = node.queue.withBody(m.id, (x) => Buffer.from(x));
    const subj = /\r\nSubject: (\S+)\r\n/.exec(b.toString('latin1'));
    assert.ok(subj, 'stored message has a Subject');
    out.set(subj[1]!, b);
  }
  return out;
}

function assertArrived(node: PosternNode, sent: Map<string, Buffer>): void {
  const got = storedBodies(node);
  assert.deepEqual([...got.keys()].sort(), [...sent.keys()].sort());
  for (const [token, b] of sent) {
    const stored = got.get(token)!;
    assert.match(stored.subarray(0, 9).toString(), /^Received:/);
    assert.ok(stored.subarray(stored.length - b.length).equals(b), `body bytes differ for ${token}`);
    assert.equal(stored.indexOf(b.subarray(0, 20)), stored.length - b.length, `${token}: only the Received header precedes the body`);
  }
}

/** A key for `port` that lands on a different slot than `other` (the key is only an identifier). */
function keyOnOtherSlot(tr: AffinityTransport, port: number, other: string): string {
  for (let i = 0; ; i++) {
    const k = `smtp:127.0.0.1:${port}${i === 0 ? '' : `#${i}`}`;
    if (tr.threadFor(k) !== tr.threadFor(other)) return k;
  }
}

test('two sinks, two threads: bytes exact, connections reused, the key pins the thread', async (t) => {
  const [a, b] = await Promise.all([startTestNode(t), startTestNode(t)]);
  const tr = transport(t);
  const destA = dest(a.ports.smtpPort);
  const destB = dest(b.ports.smtpPort, keyOnOtherSlot(tr, b.ports.smtpPort, destA.key));
  const slotA = tr.threadFor(destA.key);
  const slotB = tr.threadFor(destB.key);
  assert.notEqual(slotA, slotB);

  // Sizes cover both body paths: < 4 KiB comes from Node's pool (a slice of a shared slab),
  // larger bodies own their ArrayBuffer; plus a view at a non-zero offset.
  const sentA = new Map<string, Buffer>();
  const sentB = new Map<string, Buffer>();
  const sizes = [300, 3000, 5000, 70_000, 600_000];
  // Sequential, interleaved between the destinations.
  for (const [i, size] of sizes.entries()) {
    for (const [d, sent, tag] of [[destA, sentA, 'A'], [destB, sentB, 'B']] as const) {
      const token = `${tag}-seq-${i}`;
      const bytes = body(token, size);
      const req = deliveryRequest('sender@example.org', [`r${i}@example.net`, `s${i}@example.net`], bytes);
      const results = await tr.deliver(d, req);
      assert.equal(results.length, 2);
      for (const r of results) assert.equal(r.kind, 'delivered', JSON.stringify(r));
      assert.equal(req.body.length, bytes.length, 'the default mode leaves the caller’s body intact');
      sent.set(token, Buffer.from(bytes));
    }
  }
  // A body that is a view into a bigger buffer.
  {
    const inner = body('A-view', 2000);
    const outer = Buffer.concat([Buffer.from('garbage before'), inner, Buffer.from('garbage after')]);
    const view = outer.subarray(14, 14 + inner.length);
    assert.ok(view.equals(inner));
    const results = await tr.deliver(destA, deliveryRequest('sender@example.org', ['v@example.net'], view));
    assert.equal(results[0]!.kind, 'delivered', JSON.stringify(results));
    sentA.set('A-view', inner);
  }
  // Concurrent: 8 per destination at once.
  await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      [[destA, sentA, 'A'], [destB, sentB, 'B']].map(async ([d, sent, tag]) => {
        const token = `${tag as string}-par-${i}`;
        const bytes = body(token, 1000 + i * 1500);
        const results = await tr.deliver(d as Destination, deliveryRequest('sender@example.org', [`p${i}@example.net`], bytes));
        assert.equal(results[0]!.kind, 'delivered', JSON.stringify(results));
        (sent as Map<string, Buffer>).set(token, bytes);
      }),
    ).flat(),
  );

  assertArrived(a, sentA);
  assertArrived(b, sentB);
  // The pool lives in the destination's thread: at most maxConnectionsPerDestination (2)
  // connections per sink across 14/13 messages (one thread per key, so no second pool).
  assert.ok(a.ctx.counters.connections >= 1 && a.ctx.counters.connections <= 2, `sink A saw ${a.ctx.counters.connections} connections`);
  assert.ok(b.ctx.counters.connections >= 1 && b.ctx.counters.connections <= 2, `sink B saw ${b.ctx.counters.connections} connections`);

  // The key → slot mapping is stable and is the FNV-1a hash mod threads; requests went there.
  for (let i = 0; i < 5; i++) assert.equal(tr.threadFor(destA.key), slotA);
  assert.equal(slotA, fnv1a(destA.key) % 2);
  assert.equal(new AffinityTransport({ threads: 2, smtp: { heloName: 'x' } }).threadFor(destB.key), slotB, 'another instance maps the same way');
  const stats = tr.stats();
  assert.equal(stats[slotA]!.requests, sentA.size);
  assert.equal(stats[slotB]!.requests, sentB.size);
  assert.equal(stats[slotA]!.started, 1);
  assert.equal(stats[slotB]!.started, 1);
  assert.notEqual(stats[slotA]!.threadId, stats[slotB]!.threadId);
  assert.equal(stats[slotA]!.crashes + stats[slotB]!.crashes, 0);
  // Default mode: every body byte was copied once into a fresh exact-size ArrayBuffer.
  const total = (m: Map<string, Buffer>): number => [...m.values()].reduce((n, x) => n + x.length, 0);
  assert.equal(stats[slotA]!.bytesCopied, total(sentA));
  assert.equal(stats[slotA]!.bytesTransferred, 0);
  // Close before the sinks (t.after runs them first otherwise; they would wait out their
  // shutdown timeout on our idle pooled connections).
  await tr.close();
});

test("bodyTransfer 'transfer': owned buffers move without a copy, pool slices and views are copied", async (t) => {
  const node = await startTestNode(t);
  const tr = transport(t, { threads: 1, bodyTransfer: 'transfer' });
  const d = dest(node.ports.smtpPort);
  const sent = new Map<string, Buffer>();

  const big = body('owned', 100_000);
  const keep = Buffer.from(big);
  const owned = Buffer.allocUnsafeSlow(big.length);
  big.copy(owned);
  const req = deliveryRequest('sender@example.org', ['o@example.net'], owned);
  const r1 = await tr.deliver(d, req);
  assert.equal(r1[0]!.kind, 'delivered', JSON.stringify(r1));
  sent.set('owned', keep);
  assert.equal(req.body.length, 0, 'the transferred buffer is detached in the caller');
  assert.equal(tr.stats()[0]!.bytesTransferred, keep.length);
  assert.equal(tr.stats()[0]!.bytesCopied, 0);

  // Reusing a detached body (what the scheduler would do for a second destination group) is
  // refused as transient, never sent empty.
  const again = await tr.deliver(d, req);
  assert.equal(again[0]!.kind, 'deferred');
  assert.match(again[0]!.reply.text, /detached/);

  const small = body('pooled', 500); // Buffer.from(string) of < 4 KiB: a slice of the pool slab
  assert.ok(small.buffer.byteLength > small.length, 'expected a pooled buffer');
  const r2 = await tr.deliver(d, deliveryRequest('sender@example.org', ['p@example.net'], small));
  assert.equal(r2[0]!.kind, 'delivered');
  assert.ok(small.equals(body('pooled', 500)), 'a pooled buffer is copied, not detached');
  sent.set('pooled', small);
  assert.equal(tr.stats()[0]!.bytesCopied, small.length);

  assertArrived(node, sent);
  await tr.close();
});

test('a worker that dies mid-delivery gives transient results, and the slot restarts', async (t) => {
  let stall = true;
  const srv = await startScriptedServer(t, { reply: (cmd) => (cmd === '.' && stall ? null : undefined) });
  const tr = transport(t);
  const d = dest(srv.port);
  const slot = tr.threadFor(d.key);

  const pending = tr.deliver(d, deliveryRequest('sender@example.org', ['x@example.net', 'y@example.net'], body('stalled', 2000)));
  // Wait until the sink has the data (so the request is truly in flight inside the worker).
  for (let i = 0; i < 200 && srv.messages().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(srv.messages().length, 1);
  const before = Date.now();
  await tr._terminateThread(slot);
  const results = await pending;
  assert.ok(Date.now() - before < 1000, 'resolved promptly, not at the final-reply timeout');
  assert.equal(results.length, 2);
  for (const r of results) {
    assert.equal(r.kind, 'deferred');
    assert.equal(r.reply.enhanced, '4.3.0');
    assert.match(r.reply.text, /exited/);
  }
  assert.equal(tr.stats()[slot]!.crashes, 1);
  assert.equal(tr.stats()[slot]!.threadId, null);

  // The next request for the key starts a new worker on the same slot.
  stall = false;
  const ok = await tr.deliver(d, deliveryRequest('sender@example.org', ['z@example.net'], body('after', 800)));
  assert.equal(ok[0]!.kind, 'delivered', JSON.stringify(ok));
  assert.equal(tr.stats()[slot]!.started, 2);
  assert.equal(srv.messages().length, 2);
});

test('close(): waits for workers, in-flight work is not lost to a hang, later deliveries are transient', async (t) => {
  const node = await startTestNode(t);
  const srv = await startScriptedServer(t, { reply: (cmd) => (cmd === '.' ? null : undefined) });
  const tr = new AffinityTransport({ threads: 2, smtp: { heloName: 'client.test', timeouts: { ...TIMEOUTS, finalMs: 30_000 } }, closeTimeoutMs: 500 });
  t.after(() => tr.close());
  const good = await tr.deliver(dest(node.ports.smtpPort), deliveryRequest('s@example.org', ['a@example.net'], body('c1', 400)));
  assert.equal(good[0]!.kind, 'delivered');
  // One request stuck waiting for a final reply: close() must give up on it after 500 ms.
  const stuck = tr.deliver(dest(srv.port), deliveryRequest('s@example.org', ['b@example.net'], body('c2', 400)));
  for (let i = 0; i < 200 && srv.messages().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  const t0 = Date.now();
  await tr.close();
  const took = Date.now() - t0;
  assert.ok(took < 3000, `close took ${took} ms`);
  const r = await stuck;
  assert.equal(r[0]!.kind, 'deferred');
  assert.deepEqual(tr.stats().map((s) => s.threadId), [null, null]);
  const late = await tr.deliver(dest(node.ports.smtpPort), deliveryRequest('s@example.org', ['c@example.net'], body('c3', 400)));
  assert.equal(late[0]!.kind, 'deferred');
  assert.match(late[0]!.reply.text, /closed/);
});

test('TLS outcomes and credentials errors made in the threads reach the callbacks on the main thread', async (t) => {
  const ca = makeTestCa(t);
  const good = await smtpServer(t, ca, 'good');
  const plain = await smtpServer(t, ca, 'none');
  const outcomes: TlsOutcome[] = [];
  const credentialErrors: string[] = [];
  const tr = transport(t, {
    smtp: {
      heloName: 'client.test',
      timeouts: TIMEOUTS,
      tls: { ca: [ca.caPem] },
      tlsOutcomes: { record: (o) => outcomes.push(o) },
      onCredentialsError: (err) => credentialErrors.push(err.message),
    },
  });
  const auth = { policyDomain: DOMAIN, type: 'no-policy-found' as const, enforce: false };
  const toHost = (port: number): Extract<Destination, { kind: 'smtp' }> => ({ kind: 'smtp', key: `smtp:${MX}:${port}`, hosts: [{ host: MX, port, address: '127.0.0.1' }], tlsPolicy: 'opportunistic', viaMx: true, tlsAuth: auth });
  for (const server of [good, plain]) {
    const results = await tr.deliver(toHost(server.port), deliveryRequest('sender@example.org', [`r@${DOMAIN}`], body(`tls-${server.port}`, 500)));
    assert.equal(results[0]!.kind, 'delivered', JSON.stringify(results));
  }
  assert.equal(outcomes.length, 2, JSON.stringify(outcomes));
  assert.deepEqual(outcomes[0]!.result, 'success', 'the verified STARTTLS session');
  assert.equal(outcomes[0]!.receivingIp, '127.0.0.1');
  assert.equal(outcomes[0]!.policyDomain, DOMAIN);
  assert.equal(outcomes[0]!.mxHost, MX);
  assert.equal(outcomes[0]!.policy.type, 'no-policy-found');
  assert.deepEqual(outcomes[1]!.result, { failure: 'starttls-not-supported', detail: `${MX} does not offer STARTTLS` });
  // Outbound AUTH with a credentials file that cannot be read: the delivery is deferred in the
  // thread, and the error reaches the main thread's callback (the node logs it there).
  assert.equal(credentialErrors.length, 0);
  const missing = join(tmpdir(t), 'no-such-credentials');
  const withAuth: Destination = { ...toHost(good.port), key: `smtp:${MX}:${good.port}:auth`, auth: missing };
  const deferred = await tr.deliver(withAuth, deliveryRequest('sender@example.org', [`r@${DOMAIN}`], body('tls-auth', 500)));
  assert.equal(deferred[0]!.kind, 'deferred', JSON.stringify(deferred));
  assert.equal(credentialErrors.length, 1, JSON.stringify(credentialErrors));
  assert.ok(credentialErrors[0]!.includes(missing), credentialErrors[0]);
  await tr.close();
});
