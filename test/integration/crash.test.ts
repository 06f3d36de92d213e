// Durability: a node killed with SIGKILL while clients send keeps every message it answered
// 250 for. The 250 is only sent after the LMDB commit (with fsync) that holds the message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startCliNode } from '../helpers/cli.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { RawClient } from '../helpers/smtp-client.js';
import { Queue } from '../../src/queue/store.js';

async function sender(port: number, n: number, tag: string, acked: Map<string, string>): Promise<void> {
  let c: RawClient;
  try {
    c = await RawClient.connect(port);
    await c.read();
    await c.cmd('EHLO crash.example');
  } catch {
    return;
  }
  try {
    for (let i = 0; i < n; i++) {
      const subject = `${tag}-${i}`;
      c.write(`MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n`);
      const rs = await c.readN(3);
      if (rs[2]!.code !== 354) return;
      const r = await c.cmd(`Subject: ${subject}\r\n\r\n${('x'.repeat(78) + '\r\n').repeat(25)}.`);
      if (r.code === 250) acked.set(/queued as (\S+)/.exec(r.text)![1]!, subject);
    }
  } catch {
    // the node died under us: expected
  } finally {
    c.end();
  }
}

test('SIGKILL while clients send: every acknowledged message is in the queue after restart', async (t) => {
  const dir = tmpdir(t);
  const path = join(dir, 'q');
  const env = { POSTERN_SMTP_PORT: '0', POSTERN_DATA_DIR: path, POSTERN_QUEUE_MAP_BYTES: '256M', POSTERN_HTTP_PORT: '' };
  const { child, port } = await startCliNode(env);
  t.after(() => child.kill('SIGKILL'));
  const acked = new Map<string, string>();
  const senders = Array.from({ length: 8 }, (_, i) => sender(port, 100000, `s${i}`, acked));
  // Kill once a good number of messages were acknowledged (bounded by time either way).
  const deadline = Date.now() + 10000;
  while (acked.size < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  await Promise.all(senders);
  assert.ok(acked.size >= 50, `too few messages acknowledged before the kill: ${acked.size}`);
  const q = Queue.open({ path, mapSizeBytes: 256 * 1024 * 1024 });
  t.after(() => q.close());
  let missing = 0;
  for (const [id, subject] of acked) {
    const m = q.get(id);
    if (!m) {
      missing++;
      continue;
    }
    const body = q.withBody(id, (b) => b.toString('latin1'));
    assert.ok(body.includes(`Subject: ${subject}\r\n`), `body of ${id}`);
  }
  assert.equal(missing, 0, `${missing} of ${acked.size} acknowledged messages lost`);
  assert.ok(q.counts().total >= acked.size);
});
