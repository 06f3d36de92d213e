// Reliability: the SMTP session fuzzed for FUZZ_MS over real connections: random bytes and
// mutated SMTP (commands, DATA and BDAT with random bodies, NULs, bare CR and LF, overlong
// lines, pipelined junk), cut into random chunks, 16 connections at a time, each closed
// gracefully, half-closed or reset at a random point. Seeded: the seed is printed, and
// RELIABILITY_SEED=<seed> replays the same inputs (timing differs). Checked: the node never
// exits, its RSS stays bounded, and afterwards a proper client still gets its message queued.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sendMessage } from '../helpers/smtp-client.js';
import { freePort, prng, report, scratchDir, seedFromEnv, startNodeChild } from '../helpers/reliability.js';

const FUZZ_MS = Number(process.env.RELIABILITY_FUZZ_S ?? 20) * 1000;
const PARALLEL = 16;
/** At most this many bytes per fuzzed session (bounded load). */
const MAX_SESSION_BYTES = 256 * 1024;
/**
 * RSS growth allowed over the warmed-up node during the fuzz: sessions hold at most a command
 * line (2 KiB) or a chunk of message data in flight, 16 at a time, and messages go to LMDB;
 * the rest is V8's heap growing between collections. Measured: 79-81 MiB in three 20 s runs,
 * and a 60 s run levelled off (137 MiB RSS at half time, 143 MiB at the end, +66 MiB), so
 * the growth is the heap's sizing, not a leak; 128 MiB leaves room for that noise.
 */
const MAX_RSS_GROWTH_KIB = 128 * 1024;

const VERBS = ['EHLO', 'HELO', 'MAIL FROM:', 'RCPT TO:', 'DATA', 'BDAT', 'RSET', 'NOOP', 'QUIT', 'VRFY', 'EXPN', 'HELP', 'STARTTLS', 'AUTH PLAIN', 'AUTH LOGIN', 'XCLIENT', ''];
const PIECES = ['<a@rel.test>', '<b@dest.test>', '<>', '<@x,@y:a@b>', 'SIZE=1000', 'BODY=8BITMIME', 'SMTPUTF8', 'RET=HDRS', 'NOTIFY=NEVER', 'MT-PRIORITY=9', ' LAST', '\u00e9\u00e8', '%', '!', '"q@"@x', '\r', '\n', '\0', '.', '\r\n.\r\n', '\n.\n', '..'];

/** One random session as a list of byte blocks. */
function script(rnd: () => number): Buffer[] {
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(a: readonly T[]): T => a[int(a.length)]!;
  const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const out: Buffer[] = [];
  let total = 0;
  const push = (b: Buffer) => {
    out.push(b);
    total += b.length;
  };
  const steps = 1 + int(30);
  for (let i = 0; i < steps && total < MAX_SESSION_BYTES; i++) {
    const r = rnd();
    if (r < 0.15) push(randomBytes(int(600)));
    else if (r < 0.2) push(Buffer.alloc(1000 + int(5000), pick(['A', '\r', '\n', '.', '\0'])));
    else if (r < 0.3) {
      // A whole plausible transaction, possibly pipelined.
      push(Buffer.from(`EHLO fuzz.test\r\nMAIL FROM:<a@rel.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n`, 'latin1'));
      const body = Buffer.concat(Array.from({ length: int(20) }, () => (rnd() < 0.3 ? randomBytes(int(200)) : Buffer.from(`${pick(PIECES)}line ${int(1e6)}\r\n`, 'latin1'))));
      push(body);
      push(Buffer.from(rnd() < 0.8 ? '\r\n.\r\n' : pick(['\n.\n', '\r\n.\n', '.\r\n']), 'latin1'));
    } else if (r < 0.38) {
      const n = int(3000);
      push(Buffer.from(`BDAT ${rnd() < 0.1 ? pick(['-1', '99999999999', 'x', '']) : n}${rnd() < 0.5 ? ' LAST' : ''}\r\n`, 'latin1'));
      push(randomBytes(rnd() < 0.8 ? n : int(n * 2)));
    } else {
      let line = pick(VERBS);
      for (let k = int(4); k > 0; k--) line += (rnd() < 0.5 ? ' ' : '') + pick(PIECES);
      if (rnd() < 0.05) line += 'x'.repeat(int(4000));
      push(Buffer.from(line + pick(['\r\n', '\r\n', '\r\n', '\n', '\r', '']), rnd() < 0.1 ? 'utf8' : 'latin1'));
    }
  }
  return out;
}

/** Send a script cut into random chunks with random pauses; end it one of three ways. */
function run(port: number, rnd: () => number, stats: { sessions: number; bytes: number; resets: number; replies: number }): Promise<void> {
  const blocks = script(rnd);
  const all = Buffer.concat(blocks);
  const chunks: Buffer[] = [];
  for (let at = 0; at < all.length; ) {
    const n = 1 + Math.floor(rnd() * (rnd() < 0.3 ? 8 : 4000));
    chunks.push(all.subarray(at, at + n));
    at += n;
  }
  const ending = rnd();
  const pauses = chunks.map(() => (rnd() < 0.1 ? Math.floor(rnd() * 30) : 0));
  return new Promise<void>((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    stats.sessions++;
    const timer = setTimeout(() => s.destroy(), 5000); // a session never outlives 5 s
    s.on('data', (d: Buffer) => (stats.replies += d.length));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    s.once('connect', async () => {
      for (let i = 0; i < chunks.length && !s.destroyed; i++) {
        s.write(chunks[i]!);
        stats.bytes += chunks[i]!.length;
        if (pauses[i]) await sleep(pauses[i]);
      }
      if (ending < 0.4) s.end();
      else if (ending < 0.7) {
        stats.resets++;
        s.resetAndDestroy();
      } else setTimeout(() => s.end(), 200);
    });
  });
}

test(`the SMTP session fuzzed with random bytes and chunking for ${FUZZ_MS / 1000} s: no crash, bounded memory, a proper client served after`, async (t) => {
  const seed = seedFromEnv();
  const dir = scratchDir(t, 'postern-rel-fuzz-');
  const port = await freePort();
  const node = await startNodeChild(t, {
    smtpPort: port,
    dataDir: join(dir, 'queue'),
    env: { POSTERN_DELIVERY: 'off', POSTERN_MAX_MESSAGE_BYTES: '1M', POSTERN_COMMAND_TIMEOUT_MS: '2s', POSTERN_IDLE_TIMEOUT_MS: '3s', POSTERN_DATA_TIMEOUT_MS: '3s' },
  });
  for (let i = 0; i < 5; i++) await sendMessage(port, 'a@rel.test', ['b@dest.test'], `Subject: warm ${i}\r\n\r\nhello\r\n`);
  await sleep(500);
  const rss0 = node.rssKiB()!;
  let peak = rss0;
  const sampler = setInterval(() => {
    const r = node.rssKiB();
    if (r !== null && r > peak) peak = r;
  }, 100);
  t.after(() => clearInterval(sampler));

  const stats = { sessions: 0, bytes: 0, resets: 0, replies: 0 };
  const deadline = Date.now() + FUZZ_MS;
  // The peak over the first half, to tell a plateau (garbage, heap sizing) from a leak.
  let peakFirstHalf = 0;
  const half = setTimeout(() => (peakFirstHalf = peak), FUZZ_MS / 2);
  t.after(() => clearTimeout(half));
  let n = 0;
  const worker = async (w: number) => {
    while (Date.now() < deadline) await run(port, prng(seed + 1_000_003 * w + n++), stats);
  };
  await Promise.all(Array.from({ length: PARALLEL }, (_, w) => worker(w)));
  clearInterval(sampler);
  const aliveAfterFuzz = node.alive();
  await sleep(1000);
  const rssAfter = node.rssKiB();

  // A proper client afterwards.
  const id = await sendMessage(port, 'a@rel.test', ['b@dest.test'], 'Subject: after the fuzz\r\n\r\n.dot first\r\nhello\r\n');
  const stop = await node.stop();

  const figures = {
    seed,
    fuzzMs: FUZZ_MS,
    sessions: stats.sessions,
    bytesSent: stats.bytes,
    resets: stats.resets,
    replyBytes: stats.replies,
    rssBaselineKiB: rss0,
    rssPeakKiB: peak,
    rssGrowthKiB: peak - rss0,
    rssPeakFirstHalfKiB: peakFirstHalf,
    rssAfterKiB: rssAfter,
    servedAfter: id,
    errorLogLines: node.errors.length,
  };
  report(t, 'session-fuzz', figures);
  assert.ok(aliveAfterFuzz, `the node died under the fuzz (seed ${seed}): ${node.stderrTail()}`);
  assert.ok(stats.sessions >= 200, `fuzz ran: ${stats.sessions} sessions`);
  assert.ok(peak - rss0 <= MAX_RSS_GROWTH_KIB, `RSS grew by ${peak - rss0} KiB (seed ${seed})`);
  assert.match(id, /\S/);
  assert.equal(stop.code, 0, `clean shutdown after the fuzz: ${node.stderrTail()}`);
  assert.deepEqual(node.errors, [], `error log lines (seed ${seed})`);
});
