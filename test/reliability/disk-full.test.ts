// Reliability: the disk fills up under the queue. The data folder is on a 16 MiB tmpfs (we
// mount it; skipped with the reason when mounting is not permitted), the LMDB map starts at
// the 1 MiB minimum (POSTERN_QUEUE_MAP_BYTES): lmdb-js grows the map by itself, so a small map
// never fills (docs/queue.md, "The map") and the limit the queue meets is the disk. A filler
// file leaves about 3 MiB; clients then get 452 4.3.1, never 250 for a message not stored, and
// once the filler is deleted the node accepts again. Every 250'd message is checked in the
// queue afterwards, byte for byte, and nothing refused is in it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, statfsSync, unlinkSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, Load, prng, report, scratchDir, seedFromEnv, startNodeChild, taggedMessage, readTagged } from '../helpers/reliability.js';
import { Queue } from '../../src/queue/store.js';

const TMPFS_BYTES = 16 * 1024 * 1024;
const LEAVE_BYTES = 3 * 1024 * 1024;
const MESSAGE_BYTES = 32 * 1024;

function tryMount(dir: string): string | null {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_BYTES}`, 'tmpfs', dir], { stdio: 'pipe' });
    return null;
  } catch (err) {
    return `cannot mount a tmpfs (${(err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message}); needs root or CAP_SYS_ADMIN`;
  }
}

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Write `bytes` of zeros to a new file, in 1 MiB writes (a tmpfs stores them all). */
function fill(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(1024 * 1024);
  try {
    for (let left = bytes; left > 0; left -= block.length) writeSync(fd, block, 0, Math.min(left, block.length));
  } finally {
    closeSync(fd);
  }
}

test('disk full under the queue (16 MiB tmpfs, 1 MiB initial LMDB map): 452 4.3.1, never 250 for a message not stored; accepts again when space returns', async (t) => {
  let mounted = false;
  // Unmounted once the node is dead, before the folder is removed.
  const base = scratchDir(t, 'postern-rel-disk-', () => {
    if (!mounted) return;
    try {
      execFileSync('umount', [mnt], { stdio: 'pipe' });
    } catch {
      execFileSync('umount', ['-l', mnt], { stdio: 'pipe' });
    }
  });
  const mnt = join(base, 'mnt');
  mkdirSync(mnt);
  const why = tryMount(mnt);
  if (why !== null) {
    t.skip(why);
    return;
  }
  mounted = true;
  const seed = seedFromEnv();
  const dataDir = join(mnt, 'queue');
  const smtpPort = await freePort();
  // POSTERN_MAX_ERRORS raised: with the disk full every message is refused at once, and a
  // session that had 20 refusals before the stopper below saw them would get 421 4.7.0 (too
  // many errors) to its next MAIL, which this test would count as a reply other than 250 or 452.
  const node = await startNodeChild(t, { smtpPort, dataDir, env: { POSTERN_DELIVERY: 'off', POSTERN_QUEUE_MAP_BYTES: '1M', POSTERN_MAX_ERRORS: '1000' } });

  const filler = join(mnt, 'filler');
  const freeAtStart = freeBytes(mnt);
  fill(filler, freeAtStart - LEAVE_BYTES);
  const freeAfterFill = freeBytes(mnt);

  // Phase 1: send until the disk is full (bounded: 400 messages or 40 s).
  const make = (i: number) => taggedMessage(`f${seed}-${i}`, MESSAGE_BYTES, prng(seed + i));
  const full = new Load({ port: smtpPort, connections: 2, maxMessages: 400, timeLimitMs: 40_000, make });
  // Stop after 20 refusals: the disk stays full, more would only repeat them.
  const stopper = setInterval(() => {
    if (full.sent.filter((s) => s.code === 452).length >= 20) void full.stop();
  }, 50);
  await full.done;
  clearInterval(stopper);
  const phase1 = full.sent;
  const acked1 = phase1.filter((s) => s.code === 250);
  const refused1 = phase1.filter((s) => s.code === 452);
  const aliveWhenFull = node.alive();

  // Phase 2: space returns.
  unlinkSync(filler);
  const again = new Load({ port: smtpPort, connections: 1, maxMessages: 20, timeLimitMs: 20_000, make: (i) => make(1000 + i) });
  await again.done;
  const acked2 = again.acked();
  const stop = await node.stop();

  // Every 250 is in the queue with its exact bytes, and nothing else is.
  const q = Queue.open({ path: dataDir, mapSizeBytes: 64 * 1024 * 1024 });
  let missing = 0;
  let torn = 0;
  for (const a of [...acked1, ...acked2]) {
    if (a.id === null || q.get(a.id) === undefined) {
      missing++;
      continue;
    }
    const r = q.withBody(a.id, (b) => readTagged(b));
    if (r === null || r.tag !== a.tag || r.hash !== a.hash) torn++;
  }
  const stored = q.counts().total;
  await q.close();

  const figures = {
    seed,
    tmpfsBytes: TMPFS_BYTES,
    freeAtStart,
    freeAfterFill,
    messageBytes: MESSAGE_BYTES,
    ackedBeforeFull: acked1.length,
    refused452: refused1.length,
    otherReplies: phase1.length - acked1.length - refused1.length,
    refusalText: refused1[0]?.text ?? null,
    ackedAfterSpaceReturned: acked2.length,
    triedAfterSpaceReturned: again.sent.length,
    storedInQueue: stored,
    missing,
    torn,
    nodeAliveWhenFull: aliveWhenFull,
    replies1: full.replies,
    replies2: again.replies,
  };
  report(t, 'disk-full', figures);
  assert.ok(aliveWhenFull, `the node survived the full disk: ${node.stderrTail()}`);
  assert.ok(acked1.length >= 10, 'messages were accepted before the disk filled');
  assert.ok(refused1.length >= 20, `the full disk was reached and refused with 452: ${JSON.stringify(full.replies)}`);
  assert.ok(refused1.every((s) => /^4\.3\.1 /.test(s.text)), `452 4.3.1: ${refused1[0]?.text}`);
  assert.equal(phase1.length - acked1.length - refused1.length, 0, `only 250 or 452: ${JSON.stringify(full.replies)}`);
  assert.equal(missing, 0, `${missing} messages answered 250 are not in the queue`);
  assert.equal(torn, 0);
  assert.equal(stored, acked1.length + acked2.length, 'the queue holds exactly the messages answered 250');
  assert.equal(acked2.length, again.sent.length, `every message is accepted once space returned: ${JSON.stringify(again.replies)}`);
  assert.ok(acked2.length >= 10);
  assert.equal(stop.code, 0, `clean shutdown after the full disk: ${node.stderrTail()}`);
});
