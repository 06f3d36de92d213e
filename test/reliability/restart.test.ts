// Reliability: restarts under a steady SMTP load refuse no connection and lose no message.
// The test makes the listening sockets itself and hands them to a socket holder (a stand-in
// for systemd's .socket unit), which starts each node with them as LISTEN_FDS. Two restarts:
// as `systemctl restart` does with socket activation (SIGTERM the node, start the next one on
// the same sockets once it has exited: connections wait in the kernel's backlog meanwhile),
// then a takeover (SIGUSR2: the node starts its successor on its sockets, drains and exits).
// Every message a client got 250 for must reach the sink whole; duplicates are counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, cleanEnv } from '../helpers/cli.js';
import { helperScript, Load, nodeStats, prng, RecordingSink, report, scratchDir, seedFromEnv, taggedMessage, until } from '../helpers/reliability.js';
import { onLines, pidAlive } from '../../bench/lib/proc.js';

/** A listening socket on a free loopback port, and its fd (to hand to a child). */
async function listeningSocket(): Promise<{ server: Server; port: number; fd: number }> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, backlog: 1024 }, () => resolve());
  });
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  assert.ok(fd > 2, `a listening socket's fd: ${fd}`);
  return { server, port: (server.address() as { port: number }).port, fd };
}

test('a restart (socket activation) and a takeover (SIGUSR2) under load: no connection refused, no acknowledged message lost', async (t) => {
  const seed = seedFromEnv();
  const dir = scratchDir(t, 'postern-rel-restart-');
  const sink = new RecordingSink();
  await sink.listen(0);
  t.after(() => sink.close());

  // The sockets are made here, given to the holder, and closed here at once: from then on
  // only the holder (which never accepts) and the nodes have them.
  const smtp = await listeningSocket();
  const http = await listeningSocket();
  const holder = spawn(process.execPath, [helperScript('socket-holder'), 'smtp', 'http'], { stdio: ['pipe', 'pipe', 'pipe', smtp.fd, http.fd] });
  await Promise.all([smtp, http].map((s) => new Promise<void>((r) => s.server.close(() => r()))));
  const events: Array<{ started?: number; exited?: number; code?: number | null; signal?: string | null }> = [];
  onLines(holder.stdout!, (line) => events.push(JSON.parse(line) as (typeof events)[number]));
  const errors: string[] = [];
  let successorPid = 0;
  onLines(holder.stderr!, (line) => {
    if (/"level":(5|6)\d/.test(line) && errors.length < 50) errors.push(line.slice(0, 600));
    const m = /"successor":(\d+).*"msg":"the new process is ready/.exec(line);
    if (m) successorPid = Number(m[1]);
  });
  const started: number[] = [];
  t.after(() => {
    for (const pid of [...started, successorPid]) if (pid > 0 && pidAlive(pid)) process.kill(pid, 'SIGKILL');
    holder.stdin!.end();
  });
  const env = cleanEnv({
    POSTERN_SMTP_HOST: '127.0.0.1',
    // The port the holder's socket has: a node that bound instead of taking the socket would
    // fail with EADDRINUSE.
    POSTERN_SMTP_PORT: String(smtp.port),
    POSTERN_HTTP_PORT: String(http.port),
    POSTERN_HOSTNAME: 'node.rel.test',
    POSTERN_DATA_DIR: join(dir, 'queue'),
    POSTERN_QUEUE_MAP_BYTES: '256M',
    POSTERN_LOG_LEVEL: 'info',
    POSTERN_STATS_INTERVAL_MS: '0',
    POSTERN_SHUTDOWN_TIMEOUT_MS: '5000',
    POSTERN_WORKERS: '1',
    POSTERN_DELIVERY: 'routes',
    POSTERN_SMARTHOST: `127.0.0.1:${sink.port}`,
    POSTERN_RETRY_SCHEDULE: '1s',
  });
  const exitOf = async (pid: number, timeoutMs: number) => {
    assert.ok(await until(() => events.some((e) => e.exited === pid), timeoutMs, 50), `node ${pid} did not exit within ${timeoutMs} ms`);
    return events.find((e) => e.exited === pid)!;
  };
  const start = async (): Promise<number> => {
    const before = events.filter((e) => e.started !== undefined).length;
    holder.stdin!.write(`${JSON.stringify({ file: process.execPath, args: [CLI, 'start'], env })}\n`);
    assert.ok(await until(() => events.filter((e) => e.started !== undefined).length > before, 10_000, 20));
    const pid = events.filter((e) => e.started !== undefined).at(-1)!.started!;
    started.push(pid);
    return pid;
  };
  const ready = () => until(async () => (await fetch(`http://127.0.0.1:${http.port}/ready`)).status === 200, 30_000, 100);

  const a = await start();
  assert.ok(await ready(), `node A did not become ready: ${errors.join('\n')}`);
  const load = new Load({
    port: smtp.port,
    connections: 8,
    maxMessages: 5000,
    timeLimitMs: 60_000,
    pauseMs: 20,
    make: (n) => taggedMessage(`r${seed}-${n}`, 500 + Math.floor(prng(seed + n)() * 8 * 1024), prng(seed * 31 + n)),
  });
  t.after(() => load.stop());
  const acked = () => load.acked().length;

  // 1. As `systemctl restart postern` with postern.socket: stop A, then start B on the sockets.
  await sleep(1500);
  const beforeRestart = acked();
  const t0 = Date.now();
  process.kill(a, 'SIGTERM');
  const aExit = await exitOf(a, 30_000);
  const b = await start();
  assert.ok(await ready(), `node B did not become ready: ${errors.join('\n')}`);
  const restartMs = Date.now() - t0;

  // 2. A takeover: SIGUSR2 to B, which starts C on its sockets, drains and exits.
  await sleep(1500);
  const beforeTakeover = acked();
  const t1 = Date.now();
  process.kill(b, 'SIGUSR2');
  const bExit = await exitOf(b, 60_000);
  const takeoverMs = Date.now() - t1;
  assert.ok(successorPid > 0 && pidAlive(successorPid), `B logged its successor's pid and it runs (${successorPid}): ${errors.join('\n')}`);
  await sleep(1500);
  const afterTakeover = acked();
  await load.stop();

  const all = load.acked();
  const drained = await until(async () => all.every((s) => sink.byTag.has(s.tag)) && (await nodeStats(http.port)).queue?.total === 0, 60_000, 250);
  process.kill(successorPid, 'SIGTERM');
  assert.ok(await until(() => !pidAlive(successorPid), 30_000, 50), 'C stopped on SIGTERM');

  let lost = 0;
  let torn = 0;
  for (const s of all) {
    const got = sink.byTag.get(s.tag);
    if (got === undefined) lost++;
    else if (got.hash !== s.hash) torn++;
  }
  const figures = {
    seed,
    attempted: load.sent.length,
    acked: all.length,
    ackedBeforeRestart: beforeRestart,
    ackedDuringRestartAndBeforeTakeover: beforeTakeover - beforeRestart,
    ackedAfterTakeover: afterTakeover - beforeTakeover,
    restartMs,
    takeoverMs,
    refusedConnections: load.connectFailures,
    droppedConnections: load.drops,
    lost,
    torn,
    duplicates: sink.duplicates(),
    mismatchedRedeliveries: sink.mismatched,
    sinkMessages: sink.messages,
    replies: load.replies,
  };
  report(t, 'restart', figures);
  assert.equal(aExit.code, 0, 'A drained and exited cleanly on SIGTERM');
  assert.equal(bExit.code, 0, 'B drained and exited cleanly after handing over');
  assert.ok(beforeRestart >= 20 && beforeTakeover - beforeRestart >= 20 && afterTakeover - beforeTakeover >= 20, `load ran across both restarts: ${JSON.stringify(figures)}`);
  assert.equal(load.connectFailures, 0, 'no connection refused');
  assert.equal(load.drops, 0, 'no connection reset or left without a reply');
  assert.equal(load.replies['greeting:421'] ?? 0, 0, 'no connection turned away at the greeting by a draining node');
  assert.equal(lost, 0, `${lost} acknowledged messages never delivered`);
  assert.equal(torn, 0);
  assert.equal(sink.mismatched, 0);
  // One deliverer at a time (the successor delivers once the node replaced has exited): a
  // message is not sent twice by two processes.
  assert.equal(sink.duplicates(), 0, 'no message delivered twice');
  assert.ok(drained, 'everything acknowledged was delivered and the queue is empty');
  assert.deepEqual(errors, []);
});
