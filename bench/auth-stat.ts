// `npm run bench:auth-stat`: does a burst of AUTH attempts slow the node's file I/O?
// Password checks (scrypt) that run on libuv's thread pool share its 4 threads with fs.*,
// dns.lookup and Maildir writes; this measures fs.stat latency in the node's own process,
// idle and then while BENCH_AUTH_CLIENTS (40) clients each send a wrong AUTH PLAIN at once,
// BENCH_AUTH_ROUNDS (3) times. Every client connects from its own 127.x address with its own
// user name, so no per-address or per-user penalty applies: only the cost of the checks shows.
// Prints the stat latency (median, p99, max) idle and under the burst, and the AUTH replies/s.
// Settings: any POSTERN_* variable of the environment is passed on (POSTERN_AUTH_CONCURRENCY).
// Loopback only; bounded by the client and round counts.
import { stat } from 'node:fs/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../src/config/load.js';
import { startNode } from '../src/main.js';
import { silentLogger } from '../src/log/logger.js';
import { hashPassword } from '../src/auth/users.js';
import { RawClient } from '../test/helpers/smtp-client.js';

const CLIENTS = Number(process.env.BENCH_AUTH_CLIENTS ?? 40);
const ROUNDS = Number(process.env.BENCH_AUTH_ROUNDS ?? 3);
const PROBE_EVERY_MS = 5;

function summary(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return `n=${s.length} median ${at(0.5).toFixed(2)} ms, p99 ${at(0.99).toFixed(2)} ms, max ${(s[s.length - 1] ?? NaN).toFixed(2)} ms`;
}

/** Calls fs.stat every PROBE_EVERY_MS until stopped; returns each call's latency. */
function probe(path: string): { stop(): Promise<number[]> } {
  const out: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      await stat(path);
      out.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, PROBE_EVERY_MS));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return out;
    },
  };
}

const dir = mkdtempSync(join(tmpdir(), 'postern-auth-stat-'));
try {
  const users = join(dir, 'users');
  writeFileSync(users, `alice:${await hashPassword('right')}\n`);
  const config = loadConfig({
    POSTERN_SMTP_HOST: '127.0.0.1',
    POSTERN_SMTP_PORT: '0',
    POSTERN_HTTP_PORT: '',
    POSTERN_DELIVERY: 'off',
    POSTERN_DATA_DIR: join(dir, 'queue'),
    POSTERN_QUEUE_MAP_BYTES: '64M',
    POSTERN_AUTH_USERS: users,
    POSTERN_REQUIRE_TLS_FOR_AUTH: 'false',
    POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24',
    POSTERN_STATS_INTERVAL_MS: '0',
    // Any POSTERN_* of the environment wins (e.g. POSTERN_AUTH_CONCURRENCY).
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('POSTERN_'))),
  });
  const node = await startNode(config, silentLogger());
  const port = node.ports.smtpPort;
  const idle = probe(users);
  await new Promise((r) => setTimeout(r, 1000));
  const idleMs = await idle.stop();

  let address = 0;
  const burst = probe(users);
  const t0 = performance.now();
  let replies = 0;
  for (let round = 0; round < ROUNDS; round++) {
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        const n = ++address;
        const c = await RawClient.connect(port, { localAddress: `127.0.${1 + (n >> 8)}.${n & 0xff || 1}` });
        try {
          await c.read();
          await c.cmd('EHLO bench');
          const r = await c.cmd('AUTH PLAIN ' + Buffer.from(`\0user${n}\0wrong`).toString('base64'), 60_000);
          if (r.code !== 535 && r.code !== 454) throw new Error(`unexpected reply ${r.code} ${r.text}`);
          replies++;
        } finally {
          c.end();
        }
      }),
    );
  }
  const seconds = (performance.now() - t0) / 1000;
  const burstMs = await burst.stop();
  await node.close();
  console.log(`fs.stat idle:          ${summary(idleMs)}`);
  console.log(`fs.stat during AUTH:   ${summary(burstMs)}`);
  console.log(`AUTH: ${replies} replies (${CLIENTS} at once x ${ROUNDS}) in ${seconds.toFixed(2)} s = ${(replies / seconds).toFixed(1)}/s`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
