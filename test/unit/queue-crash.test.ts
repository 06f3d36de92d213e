// The queue's failure behaviour, in child processes of this same file: a real write failure
// (`ulimit -f` makes LMDB's writes fail with EIO) rejects enqueue with PST_ERR_QUEUE_WRITE,
// loses nothing acknowledged and does not crash the process (lmdb-js drops a commit promise
// that would reject unhandled); SIGKILL amid a stream of enqueues loses nothing acknowledged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PosternError } from '../../src/errors.js';
import { Queue, type EnvelopeInput } from '../../src/queue/store.js';
import { tmpdir } from '../helpers/tmpdir.js';

const SELF = fileURLToPath(import.meta.url);
const MODE = process.env['PST_QUEUE_CHILD'];
const DIR = process.env['PST_QUEUE_DIR'] ?? '';

function env(i: number): EnvelopeInput {
  return { sender: 'child@example.org', recipients: [{ address: `r${i}@d${i % 5}.example` }], priority: (i % 3) as 0 | 1 | 2 };
}

function bodyFor(i: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let k = 0; k < size; k += 4) b.writeUInt32LE((i * 2654435761 + k) >>> 0, k);
  return b;
}

function line(s: string): void {
  writeSync(1, s + '\n'); // synchronous: the parent sees exactly what was acknowledged
}

/** Child: enqueue 256 KiB bodies, 4 at a time, until the file size limit makes one fail. */
async function childFill(): Promise<void> {
  const q = Queue.open({ path: DIR });
  const acked: number[] = [];
  let failure: unknown;
  for (let i = 0; failure === undefined && i < 400; i += 4) {
    const results = await Promise.allSettled([0, 1, 2, 3].map((k) => q.enqueue(env(i + k), bodyFor(i + k, 256 * 1024))));
    results.forEach((r, k) => {
      if (r.status === 'fulfilled') {
        acked.push(i + k);
        line(`ACK ${r.value} ${i + k}`);
      } else failure ??= r.reason;
    });
  }
  const e = failure as PosternError & { cause?: { code?: unknown; message?: string } };
  // The queue still reads fine after a failed commit, and a second failure is clean too.
  const second = await q.enqueue(env(999), bodyFor(999, 4 * 1024 * 1024)).then(
    () => 'resolved',
    (err: unknown) => (err instanceof PosternError ? err.code : String(err)),
  );
  line(
    'RESULT ' +
      JSON.stringify({
        isPosternError: e instanceof PosternError,
        code: e?.code,
        causeCode: e?.cause?.code,
        causeMessage: e?.cause?.message,
        acked: acked.length,
        total: q.counts().total,
        second,
        failedCommits: q.stats().failedCommits,
      }),
  );
  await q.close();
  line('CLOSED');
}

/** Child: enqueue forever, 16 at a time, printing each acknowledged id; the parent kills us. */
async function childStream(): Promise<void> {
  const q = Queue.open({ path: DIR });
  for (let i = 0; ; i += 16) {
    await Promise.all(
      Array.from({ length: 16 }, (_, k) =>
        q.enqueue(env(i + k), bodyFor(i + k, 4096)).then((id) => line(`ACK ${id} ${i + k}`)),
      ),
    );
  }
}

interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  lines: string[];
  stderr: string;
  timedOut: boolean;
}

const CHILD_TIMEOUT_MS = 30_000;

function runChild(mode: string, dir: string, shell: string, killAfterAcks?: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `${shell} exec "$0" "$@"`, process.execPath, SELF], {
      env: { ...process.env, PST_QUEUE_CHILD: mode, PST_QUEUE_DIR: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    let buf = '';
    let stderr = '';
    let acks = 0;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const l = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(l);
        if (l.startsWith('ACK ') && ++acks === killAfterAcks) child.kill('SIGKILL');
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => (stderr += c));
    // A child that hangs (e.g. lmdb-js dying on an unhandled rejection does not always exit)
    // fails the test instead of stalling the run.
    const watchdog = setTimeout(() => {
      stderr += `\n[killed by the test after ${CHILD_TIMEOUT_MS} ms]`;
      child.kill('SIGKILL');
    }, CHILD_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      resolve({ code, signal, lines, stderr, timedOut: stderr.includes('[killed by the test') });
    });
  });
}

function acks(lines: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of lines) {
    const [tag, id, i] = l.split(' ');
    if (tag === 'ACK') m.set(id!, Number(i));
  }
  return m;
}

if (MODE === 'fill') {
  await childFill();
} else if (MODE === 'stream') {
  await childStream();
} else {
  test('a real write failure (file size limit) rejects enqueue with PST_ERR_QUEUE_WRITE and loses nothing acknowledged', async (t) => {
    const dir = tmpdir(t);
    // 4 MiB file size limit for the child only (bash's ulimit -f counts KiB).
    const run = await runChild('fill', dir, 'ulimit -f 4096 &&');
    assert.equal(run.timedOut, false, run.stderr);
    assert.equal(run.signal, null, run.stderr);
    assert.equal(run.code, 0, `child exit (an unhandled rejection would make it 1):\n${run.stderr}`);
    const resultLine = run.lines.find((l) => l.startsWith('RESULT '));
    assert.ok(resultLine, run.stderr);
    const r = JSON.parse(resultLine.slice(7)) as Record<string, unknown>;
    assert.equal(r['isPosternError'], true);
    assert.equal(r['code'], 'PST_ERR_QUEUE_WRITE');
    assert.equal(typeof r['causeMessage'], 'string', 'the cause is the LMDB/OS error');
    assert.ok((r['acked'] as number) > 0 && (r['acked'] as number) < 16, `acked ${String(r['acked'])}`);
    assert.equal(r['total'], r['acked'], 'counters only count what was acknowledged');
    assert.equal(r['second'], 'PST_ERR_QUEUE_WRITE');
    assert.ok((r['failedCommits'] as number) >= 1);
    assert.ok(run.lines.includes('CLOSED'));
    // Reopened without the limit: every acknowledged message is there with its exact body.
    const q = Queue.open({ path: dir });
    t.after(() => q.close());
    const acked = acks(run.lines);
    assert.equal(q.counts().total, acked.size);
    for (const [id, i] of acked) {
      assert.ok(q.withBody(id, (b) => b.equals(bodyFor(i, 256 * 1024))), `body of ${id}`);
    }
    const more = await q.enqueue(env(1000), bodyFor(1000, 256 * 1024));
    assert.equal(q.counts().total, acked.size + 1, `queue writable again (${more})`);
  });

  test('SIGKILL during a stream of enqueues: everything acknowledged is there after restart', async (t) => {
    const dir = tmpdir(t);
    const run = await runChild('stream', dir, '', 300);
    assert.equal(run.timedOut, false, run.stderr);
    assert.equal(run.signal, 'SIGKILL', run.stderr);
    const acked = acks(run.lines);
    assert.ok(acked.size >= 300);
    const q = Queue.open({ path: dir });
    t.after(() => q.close());
    for (const [id, i] of acked) {
      assert.equal(q.get(id)?.recipients[0]?.address, `r${i}@d${i % 5}.example`, `record of ${id}`);
      assert.ok(q.withBody(id, (b) => b.equals(bodyFor(i, 4096))), `body of ${id}`);
    }
    // Counters are transactional with the data: they match the records exactly.
    const recs = q.list();
    assert.equal(q.counts().total, recs.length);
    assert.ok(recs.length >= acked.size);
    const seqs = recs.map((r) => r.seq);
    assert.equal(new Set(seqs).size, seqs.length, 'no seq reused');
    const next = await q.enqueue(env(0), bodyFor(0, 16));
    assert.ok(q.get(next)!.seq > Math.max(...seqs), 'seq continues after the crash');
  });
}
