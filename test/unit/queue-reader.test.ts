// QueueReader, the command line's read-only view of a queue folder: it never creates the
// folder, refuses another layout, and reads what a Queue open beside it (the running node)
// committed: counts, records in arrival order, one record, the header section (bounded).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open as openLmdb } from 'lmdb';
import { PosternError } from '../../src/errors.js';
import { Queue } from '../../src/queue/store.js';
import { MAX_HEADER_BYTES, QueueReader } from '../../src/queue/queue-reader.js';
import { tmpdir } from '../helpers/tmpdir.js';

const code = (c: string) => (err: unknown) => err instanceof PosternError && err.code === c;

test('no queue in the folder: PST_ERR_QUEUE_MISSING, and nothing is created', (t) => {
  const dir = join(tmpdir(t), 'data');
  assert.throws(() => QueueReader.open(dir), (err: unknown) => code('PST_ERR_QUEUE_MISSING')(err) && /the folder does not exist/.test((err as Error).message));
  assert.equal(existsSync(dir), false);
  mkdirSync(dir);
  assert.throws(() => QueueReader.open(dir), (err: unknown) => code('PST_ERR_QUEUE_MISSING')(err) && /has no data\.mdb/.test((err as Error).message));
  assert.equal(existsSync(join(dir, 'data.mdb')), false);
});

test('reads what a Queue open beside it committed; the header section is bounded', async (t) => {
  const dir = join(tmpdir(t), 'data');
  const q = Queue.open({ path: dir, mapSizeBytes: 64 * 1024 * 1024 });
  t.after(() => q.close());
  const a = await q.enqueue({ sender: 'a@x.example', recipients: [{ address: 'r@d1.example' }] }, Buffer.from('Subject: a\r\nX: 1\r\n\r\nbody a\r\n'));
  const b = await q.enqueue({ sender: 'b@x.example', recipients: [{ address: 'r@d2.example' }], notBefore: Date.now() + 60_000 }, Buffer.from('no header end'));
  const big = await q.enqueue({ sender: 'c@x.example', recipients: [{ address: 'r@d2.example' }] }, Buffer.from(`X-Long: ${'y'.repeat(MAX_HEADER_BYTES)}\r\n\r\nz`));
  await q.hold(a);
  const r = QueueReader.open(dir, 64 * 1024 * 1024);
  t.after(() => r.close());
  assert.deepEqual(r.counts(), q.counts());
  assert.deepEqual([...r.records()].map((m) => m.id), [a, b, big]);
  assert.equal(r.get(a)!.state, 'held');
  assert.equal(r.get('nosuch'), undefined);
  assert.equal(r.headers(a)!.toString(), 'Subject: a\r\nX: 1\r\n');
  assert.equal(r.headers(b)!.toString(), 'no header end');
  assert.equal(r.headers(big)!.length, MAX_HEADER_BYTES);
  assert.equal(r.headers('nosuch'), null);
  assert.equal(r.corruptCount(), 0);
  // A later commit of the writer is seen by the reader's next read.
  await q.remove(b);
  assert.deepEqual([...r.records()].map((m) => m.id), [a, big]);
});

test('a queue of another layout is refused', async (t) => {
  const dir = join(tmpdir(t), 'data');
  await Queue.open({ path: dir }).close();
  const env = openLmdb({ path: dir, maxDbs: 16 });
  env.openDB<number, string>({ name: 'meta', encoding: 'ordered-binary' }).putSync('layout', 999);
  await env.close();
  assert.throws(() => QueueReader.open(dir), (err: unknown) => code('PST_ERR_QUEUE_CORRUPT')(err) && /queue layout 999/.test((err as Error).message));
});
