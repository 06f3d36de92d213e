// Slow message data: each block must come within POSTERN_DATA_TIMEOUT_MS, and the whole message
// at least at POSTERN_MIN_DATA_RATE (Postfix smtpd_min_data_rate), so a client that dribbles a
// byte at a time inside DATA or BDAT cannot keep its connection for as long as it dribbles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openTransaction, RawClient, type SmtpReply } from '../helpers/smtp-client.js';
import { startTestNode } from '../helpers/node.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Opens DATA, sends `burst` bytes at once (lines of 78), then one byte every `everyMs` until the
 * server answers or `forMs` passes.
 */
async function dribble(port: number, everyMs: number, forMs: number, burst = 0): Promise<{ reply: SmtpReply | null; elapsedMs: number; c: RawClient }> {
  const c = await openTransaction(null, port, { helo: 'slow.test', from: 'a@slow.test', to: 'b@local.test' });
  assert.equal((await c.cmd('DATA')).code, 354);
  if (burst > 0) c.socket.write(('x'.repeat(78) + '\r\n').repeat(Math.ceil(burst / 80)));
  const t0 = Date.now();
  let reply: SmtpReply | null = null;
  const got = c.read(forMs + 2000).then((r) => (reply = r), () => null);
  while (reply === null && Date.now() - t0 < forMs && !c.closed) {
    c.socket.write('x');
    await sleep(everyMs);
  }
  await Promise.race([got, sleep(50)]);
  return { reply, elapsedMs: Date.now() - t0, c };
}

test('a client dribbling bytes inside DATA is cut at the minimum data rate', async (t) => {
  const node = await startTestNode(t, { POSTERN_LOCAL_DOMAINS: 'local.test', POSTERN_DATA_TIMEOUT_MS: '1000', POSTERN_MIN_DATA_RATE: '100' });
  const { reply, elapsedMs, c } = await dribble(node.ports.smtpPort, 200, 4000);
  t.after(() => c.end());
  assert.ok(reply !== null, 'the server ended the transaction');
  assert.equal(reply.code, 421);
  assert.match(reply.text, /^4\.4\.2 /);
  assert.ok(elapsedMs < 2500, `cut after ${elapsedMs} ms: 1 s plus 10 ms per byte received`);
});

test('the time bought by data sent at once is capped: a burst then a dribble is cut soon after twice the data timeout, not when the banked time runs out', async (t) => {
  // 8,000 bytes at 100 bytes/s buy 80 s; the cap keeps at most 2 × 1 s ahead.
  const node = await startTestNode(t, { POSTERN_LOCAL_DOMAINS: 'local.test', POSTERN_DATA_TIMEOUT_MS: '1000', POSTERN_MIN_DATA_RATE: '100' });
  const { reply, elapsedMs, c } = await dribble(node.ports.smtpPort, 200, 8000, 8000);
  t.after(() => c.end());
  assert.ok(reply !== null, `the server ended the transaction (no reply after ${elapsedMs} ms)`);
  assert.equal(reply.code, 421);
  assert.match(reply.text, /^4\.4\.2 /);
  assert.ok(elapsedMs < 4500, `cut after ${elapsedMs} ms: 2 s banked plus 10 ms per byte dribbled`);
});

test('a client keeping to the minimum rate is not cut by the cap', async (t) => {
  // 100 bytes/s required; 80 bytes every 200 ms is 400 bytes/s, for 4 s (about 40 s banked).
  const node = await startTestNode(t, { POSTERN_LOCAL_DOMAINS: 'local.test', POSTERN_DATA_TIMEOUT_MS: '1000', POSTERN_MIN_DATA_RATE: '100' });
  const c = await openTransaction(t, node.ports.smtpPort, { helo: 'steady.test', from: 'a@steady.test', to: 'b@local.test' });
  assert.equal((await c.cmd('DATA')).code, 354);
  for (let i = 0; i < 20; i++) {
    c.socket.write('y'.repeat(78) + '\r\n');
    await sleep(200);
  }
  assert.equal((await c.cmd('.')).code, 250);
});

test('with POSTERN_MIN_DATA_RATE=0 only the per-block timeout applies (the dribbler stays)', async (t) => {
  const node = await startTestNode(t, { POSTERN_LOCAL_DOMAINS: 'local.test', POSTERN_DATA_TIMEOUT_MS: '1000', POSTERN_MIN_DATA_RATE: '0' });
  const { reply, c } = await dribble(node.ports.smtpPort, 200, 2500);
  t.after(() => c.end());
  assert.equal(reply, null, 'no reply while each byte comes within the block timeout');
  assert.equal(c.closed, false);
});
