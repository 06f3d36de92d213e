// The filter stage: messages go through a Piscina worker before their 250; verdicts map to
// SMTP replies; a filter that throws, hangs or kills its worker is a 451, never an accept;
// a full pool answers 451 4.3.2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { RawClient } from '../helpers/smtp-client.js';
import { startTestNode } from '../helpers/node.js';

const FILTER = fileURLToPath(new URL('../../../test/fixtures/test-filter.mjs', import.meta.url));

async function open(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  await c.read();
  await c.cmd('EHLO filter.example');
  return c;
}

async function message(c: RawClient, body: string): Promise<{ code: number; text: string }> {
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<b@example.com>');
  await c.cmd('DATA');
  return c.cmd(`Subject: filter test\r\n\r\n${body}\r\n.`, 10000);
}

test('verdicts: accept (tagged), reject 550 5.7.1, quarantine (held), throw and crash 451', async (t) => {
  const node = await startTestNode(t, { POSTERN_FILTER_MODULES: FILTER, POSTERN_WORKERS: '1', POSTERN_FILTER_TIMEOUT_MS: '2s' });
  const c = await open(node.ports.smtpPort);
  t.after(() => c.end());

  const ok = await message(c, 'hello');
  assert.equal(ok.code, 250, ok.text);
  const id = /queued as (\S+)/.exec(ok.text)![1]!;
  const body = node.queue.withBody(id, (b) => b.toString('latin1'));
  assert.match(body, new RegExp(`^Received: from filter\\.example \\(\\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby mx\\.test\\.example \\(postern\\) with ESMTP id ${id}`));
  assert.ok(body.includes(`;\r\n\t`), 'the Received header is whole');
  assert.match(body, /\r\nX-Spam-Score: 1\.5\r\nX-Test-Recipients: 1\r\nSubject: filter test\r\n\r\nhello\r\n$/);

  const rej = await message(c, 'REJECTME');
  assert.equal(rej.code, 550);
  assert.match(rej.text, /^5\.7\.1 Message rejected: looks like spam/);

  const q = await message(c, 'QUARANTINE');
  assert.equal(q.code, 250);
  const qid = /queued as (\S+)/.exec(q.text)![1]!;
  assert.equal(node.queue.get(qid)!.state, 'held');
  assert.match(node.queue.withBody(qid, (b) => b.toString('latin1')), /X-Spam-Status: Quarantined\r\n/);

  const thrown = await message(c, 'THROWME');
  assert.equal(thrown.code, 451);
  assert.match(thrown.text, /^4\.7\.1 .*filter error: filter bug/);

  const crashed = await message(c, 'CRASHME');
  assert.equal(crashed.code, 451, 'a worker that dies is a tempfail');
  assert.match(crashed.text, /^4\.7\.1 /);

  const after = await message(c, 'still serving');
  assert.equal(after.code, 250, 'the pool replaces the dead worker');
  assert.equal(node.queue.counts().total, 3);
  assert.equal(node.ctx.counters.filterRejected, 1);
  assert.equal(node.ctx.counters.filterTempfailed, 2);
  assert.equal(node.ctx.counters.filterQuarantined, 1);
});

test('a filter that hangs past POSTERN_FILTER_TIMEOUT_MS is a 451, and the node keeps serving', async (t) => {
  // Long enough that an ordinary message never hits it on a loaded machine (CI shares 2 cores).
  const node = await startTestNode(t, { POSTERN_FILTER_MODULES: FILTER, POSTERN_WORKERS: '1', POSTERN_FILTER_TIMEOUT_MS: '1500ms' });
  const c = await open(node.ports.smtpPort);
  t.after(() => c.end());
  const r = await message(c, 'HANGME');
  assert.equal(r.code, 451);
  assert.match(r.text, /filter timeout after 1500 ms/);
  assert.equal((await message(c, 'fine')).code, 250);
  assert.equal(node.queue.counts().total, 1);
});

test('a full pool answers 451 4.3.2 instead of queueing without bound', async (t) => {
  const node = await startTestNode(t, { POSTERN_FILTER_MODULES: FILTER, POSTERN_WORKERS: '1', POSTERN_FILTER_QUEUE: '1', POSTERN_FILTER_TIMEOUT_MS: '3s' });
  const clients = await Promise.all([0, 1, 2, 3].map(() => open(node.ports.smtpPort)));
  t.after(() => clients.forEach((c) => c.end()));
  // Occupy the worker and the one queue slot with hanging messages, then one more.
  const first = message(clients[0]!, 'HANGME');
  await new Promise((r) => setTimeout(r, 150));
  const second = message(clients[1]!, 'HANGME');
  await new Promise((r) => setTimeout(r, 150));
  const third = await message(clients[2]!, 'hello');
  assert.equal(third.code, 451);
  assert.match(third.text, /^4\.3\.2 /);
  assert.equal((await first).code, 451);
  assert.equal((await second).code, 451);
  assert.equal((await message(clients[3]!, 'hello')).code, 250, 'back to normal once drained');
});
