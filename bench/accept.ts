// `npm run bench:accept`: postern's durable accept rate, side by side with Postfix.
//
// N messages of S bytes over C reused connections into each target, R interleaved runs
// (postern, postfix, sink, postern, postfix, sink, ...), each target fresh for every run:
//   postern    node dist/cli.js start, fresh LMDB data folder; a 250 means committed to disk
//   postfix    a private Postfix instance (bench/peers/postfix), mail accepted into its hold
//              queue (cleanup fsyncs the queue file before smtpd says 250), never delivered
//   sink       bench/lib/sink.ts in its own process: answers 250, stores nothing (the client's
//              ceiling); smtp-sink, Postfix's own discarding server, is available too
// Prints a markdown table (median msg/s with min–max, MB/s, peak memory, CPU per message,
// postern's messages per commit, disk flushes and sync calls per message, what the target
// stored against the 250s counted) and the ratios postern/postfix and postern/sink, and writes
// every raw figure to bench/results/accept-*.json. Exits 1 if any run lost or refused a message.
// Prerequisites (Debian, root): scripts/bench-accept-peers.sh installs postfix and strace.
//
// Knobs (environment):
//   BENCH_SCENARIO     default | small (small = 1 KiB messages over 50 sessions)
//   BENCH_MESSAGES     messages per run (20000)
//   BENCH_SIZE         payload bytes per message (10240; 1024 for small)
//   BENCH_CONNECTIONS  concurrent sessions (20; 50 for small)
//   BENCH_RUNS         interleaved runs (3)
//   BENCH_CLIENT       smtp-source (Postfix's, no pipelining; default when installed) | loadgen
//                      (ours, pipelining)
//   BENCH_REUSE        1 (default) = each session sends many messages (smtp-source -d);
//                      0 = a new connection per message (smtp-source without -d)
//   BENCH_PEERS        comma list from postfix,sink,smtp-sink (default postfix,sink, those available)
//   BENCH_TIME_LIMIT_S time limit of one load (300); the load stops by itself at it
//   BENCH_STRACE       1 (default when strace is installed) = one extra, untimed pass per
//                      durable target under `strace -f` counting fsync/fdatasync/msync calls and
//                      writes through O_DSYNC descriptors
//   BENCH_STRACE_MESSAGES messages in that pass (2000)
//   BENCH_NOISY_RETRIES how often a run spoilt by other work on the machine (more than 15% of
//                      its CPU used by neither target nor client) is run again (1)
//   BENCH_POSTFIX_SET  extra main.cf settings for the Postfix peer, "k=v;k=v"
//   BENCH_POSTERN_ENV  extra POSTERN_* variables for postern, "K=V;K=V"
//   BENCH_NO_POSTERN   1 = measure the peers only
import { mkdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runLoad, type LoadResult } from './lib/loadgen.js';
import { haveSmtpSource, runSmtpSource, smtpSourceArgs, type SmtpSourceResult } from './lib/smtp-source.js';
import { startTarget, targetAvailable, type TargetName, type Target, type Finished } from './lib/targets.js';
import { blockDeviceOf, deviceFlushes, deviceSectorsWritten, haveStrace, machineCpu, MemorySampler, selfAndReapedCpuSeconds, SyncCounter } from './lib/proc.js';
import { repoRoot } from './lib/postern.js';

type ClientName = 'smtp-source' | 'loadgen';

export interface Settings {
  scenario: string;
  messages: number;
  size: number;
  connections: number;
  runs: number;
  client: ClientName;
  /** Reuse connections for many messages (true), or one message per connection. */
  reuse: boolean;
  targets: TargetName[];
  timeLimitMs: number;
  strace: boolean;
  straceMessages: number;
  noisyRetries: number;
  postfixOverrides: Record<string, string>;
  posternEnv: Record<string, string>;
}

export interface RunRecord {
  run: number;
  target: TargetName;
  client: ClientName;
  ok: boolean;
  error?: string;
  elapsedMs: number;
  /** 250s the client counted (loadgen) or DATA completions (smtp-source). */
  accepted: number;
  failed: number;
  msgsPerSec: number;
  mbPerSec: number;
  latencyMs?: LoadResult['latencyMs'];
  peakMemKiB: number;
  peakMemProcs: number;
  hwmKiB: number | null;
  targetCpuSeconds: number | null;
  /** The target's main thread alone (one-process targets: postern, Haraka, smtp-server). */
  targetMainThreadCpuSeconds?: number | null;
  /** The client's CPU (loadgen: this process; smtp-source: the reaped child, plus this process). */
  clientCpuSeconds: number;
  /** Machine CPU busy minus target and client: other work on the machine during the run. */
  otherCpuSeconds: number | null;
  /** Other work took more than 15% of the machine's CPU during the run: its figure is suspect. */
  noisy: boolean;
  machineBusyPct: number | null;
  deviceFlushes: number | null;
  deviceMBWritten: number | null;
  /** postern: LMDB write transactions the load caused (last txn id minus an idle start/stop's). */
  commits: number | null;
  /** The machine's 1-minute load average just before the target started (other work running?). */
  loadAvgBefore: number;
  finished: Finished | null;
  clientDetail: Partial<LoadResult> | Partial<SmtpSourceResult>;
}

export interface SyncRecord {
  target: TargetName;
  messages: number;
  accepted: number;
  calls: Record<string, number>;
  /** Descriptors opened O_DSYNC in the traced process (fd → path). */
  dsyncFds: Record<string, string>;
  perMessage: number | null;
  error?: string;
}

function num(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v} is not a number >= 0`);
  return n;
}

function pairs(v: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (v ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

export function settingsFromEnv(): Settings {
  const scenario = process.env.BENCH_SCENARIO || 'default';
  if (scenario !== 'default' && scenario !== 'small') throw new Error(`BENCH_SCENARIO=${scenario}: default or small`);
  const small = scenario === 'small';
  const clientEnv = process.env.BENCH_CLIENT || (haveSmtpSource() ? 'smtp-source' : 'loadgen');
  if (clientEnv !== 'smtp-source' && clientEnv !== 'loadgen') throw new Error(`BENCH_CLIENT=${clientEnv}: smtp-source or loadgen`);
  if (clientEnv === 'smtp-source' && !haveSmtpSource()) throw new Error('BENCH_CLIENT=smtp-source but /usr/sbin/smtp-source is not installed (apt-get install postfix)');
  const peersEnv = process.env.BENCH_PEERS;
  const peers = (peersEnv ?? 'postfix,sink')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '' && s !== 'postern');
  for (const p of peers) if (!['postfix', 'sink', 'smtp-sink'].includes(p)) throw new Error(`BENCH_PEERS: unknown peer ${p}`);
  // BENCH_NO_POSTERN=1 measures the peers alone (e.g. to check the Postfix setup).
  const targets: TargetName[] = process.env.BENCH_NO_POSTERN === '1' ? [] : ['postern'];
  for (const p of peers as TargetName[]) {
    if (targetAvailable(p)) targets.push(p);
    else if (peersEnv !== undefined) throw new Error(`BENCH_PEERS asks for ${p}, which is not installed`);
    else console.error(`(${p} is not installed: skipped)`);
  }
  return {
    scenario,
    messages: Math.floor(num('BENCH_MESSAGES', 20000)),
    size: Math.floor(num('BENCH_SIZE', small ? 1024 : 10240)),
    connections: Math.max(1, Math.floor(num('BENCH_CONNECTIONS', small ? 50 : 20))),
    runs: Math.max(1, Math.floor(num('BENCH_RUNS', 3))),
    client: clientEnv,
    reuse: (process.env.BENCH_REUSE ?? '1') !== '0',
    targets,
    timeLimitMs: num('BENCH_TIME_LIMIT_S', 300) * 1000,
    strace: (process.env.BENCH_STRACE ?? (haveStrace() ? '1' : '0')) === '1' && haveStrace(),
    straceMessages: Math.floor(num('BENCH_STRACE_MESSAGES', 2000)),
    noisyRetries: Math.floor(num('BENCH_NOISY_RETRIES', 1)),
    postfixOverrides: pairs(process.env.BENCH_POSTFIX_SET),
    posternEnv: pairs(process.env.BENCH_POSTERN_ENV),
  };
}

async function drive(client: ClientName, port: number, s: Settings, messages: number): Promise<{ accepted: number; failed: number; elapsedMs: number; msgsPerSec: number; mbPerSec: number; ok: boolean; error?: string; detail: Partial<LoadResult> | Partial<SmtpSourceResult>; latencyMs?: LoadResult['latencyMs'] }> {
  if (client === 'loadgen') {
    const r = await runLoad({ port, messages, size: s.size, connections: s.connections, timeLimitMs: s.timeLimitMs, ...(s.reuse ? {} : { messagesPerConnection: 1 }) });
    const ok = r.accepted === messages && r.failed === 0;
    return {
      accepted: r.accepted,
      failed: r.failed,
      elapsedMs: r.elapsedMs,
      msgsPerSec: r.msgsPerSec,
      mbPerSec: r.mbPerSec,
      ok,
      ...(ok ? {} : { error: `${r.failed} failed, ${messages - r.attempted} not attempted${r.timedOut ? ' (time limit)' : ''}: ${r.errors.slice(0, 3).join(' | ')}` }),
      latencyMs: r.latencyMs,
      detail: { replies: r.replies, errors: r.errors, connectionsOpened: r.connectionsOpened, connectionErrors: r.connectionErrors, timedOut: r.timedOut, wireBytesPerMessage: r.wireBytesPerMessage, attempted: r.attempted },
    };
  }
  const r = await runSmtpSource({ port, messages, size: s.size, connections: s.connections, timeLimitMs: s.timeLimitMs, reuse: s.reuse });
  const ok = r.exitCode === 0 && !r.timedOut && r.completed === messages;
  return {
    accepted: r.completed,
    failed: messages - r.completed,
    elapsedMs: r.elapsedMs,
    msgsPerSec: r.msgsPerSec,
    mbPerSec: r.mbPerSec,
    ok,
    ...(ok ? {} : { error: `smtp-source exit ${r.exitCode}${r.signal ? ` signal ${r.signal}` : ''}${r.timedOut ? ' (time limit)' : ''}, ${r.completed}/${messages} done: ${r.stderr.slice(0, 300)}` }),
    detail: { argv: r.argv, exitCode: r.exitCode, stderr: r.stderr, completed: r.completed },
  };
}

function settle(): void {
  // Write back what the previous target left dirty, so it doesn't land on the next one's time.
  try {
    execFileSync('sync', { timeout: 60_000 });
  } catch {
    /* best effort */
  }
}

export async function timedRun(run: number, name: TargetName, s: Settings, diskStat: string | null, txnBase: number | null): Promise<RunRecord> {
  let target: Target | null = null;
  const base = { run, target: name, client: s.client, loadAvgBefore: Math.round(loadavg()[0]! * 100) / 100 };
  try {
    target = await startTarget(name, { posternEnv: s.posternEnv, postfixOverrides: s.postfixOverrides });
    const t = target;
    const sampler = new MemorySampler(() => t.pids());
    const cpu0 = t.cpuSeconds();
    const main0 = t.mainThreadCpuSeconds?.() ?? null;
    const m0 = machineCpu();
    const f0 = deviceFlushes(diskStat);
    const w0 = deviceSectorsWritten(diskStat);
    const c0 = selfAndReapedCpuSeconds();
    const r = await drive(s.client, t.port, s, s.messages);
    const c1 = selfAndReapedCpuSeconds();
    const f1 = deviceFlushes(diskStat);
    const w1 = deviceSectorsWritten(diskStat);
    const m1 = machineCpu();
    const cpu1 = t.cpuSeconds();
    const main1 = t.mainThreadCpuSeconds?.() ?? null;
    const hwm = t.hwmKiB();
    sampler.stop();
    const finished = await t.finish();
    target = null;
    let ok = r.ok;
    let error = r.error;
    // Every 250 must be in the durable target's queue.
    if (finished.stored !== null && finished.stored !== r.accepted) {
      ok = false;
      error = `${error ? error + '; ' : ''}the client counted ${r.accepted} accepted but the queue holds ${finished.stored}`;
    }
    if (name === 'sink' && finished.reported !== null && finished.reported !== r.accepted) {
      error = `${error ? error + '; ' : ''}the sink counted ${finished.reported} messages, the client ${r.accepted}`;
    }
    const other = m0 && m1 && cpu0 !== null && cpu1 !== null ? Math.max(0, Math.round(((m1.busy - m0.busy) / m1.hz - (cpu1 - cpu0) - (c1 - c0)) * 100) / 100) : null;
    return {
      ...base,
      ok,
      noisy: other !== null && other > 0.15 * (r.elapsedMs / 1000) * cpus().length,
      ...(error !== undefined ? { error } : {}),
      elapsedMs: r.elapsedMs,
      accepted: r.accepted,
      failed: r.failed,
      msgsPerSec: r.msgsPerSec,
      mbPerSec: r.mbPerSec,
      ...(r.latencyMs ? { latencyMs: r.latencyMs } : {}),
      peakMemKiB: sampler.peakKiB,
      peakMemProcs: sampler.peakProcs,
      hwmKiB: hwm,
      targetCpuSeconds: cpu0 !== null && cpu1 !== null ? Math.round((cpu1 - cpu0) * 100) / 100 : null,
      targetMainThreadCpuSeconds: main0 !== null && main1 !== null ? Math.round((main1 - main0) * 100) / 100 : null,
      clientCpuSeconds: Math.round((c1 - c0) * 100) / 100,
      otherCpuSeconds: other,
      machineBusyPct: m0 && m1 && m1.total > m0.total ? Math.round(((m1.busy - m0.busy) / (m1.total - m0.total)) * 1000) / 10 : null,
      deviceFlushes: f0 !== null && f1 !== null ? f1 - f0 : null,
      deviceMBWritten: w0 !== null && w1 !== null ? Math.round(((w1 - w0) * 512) / 1e5) / 10 : null,
      commits: finished.lastTxnId !== null && txnBase !== null ? finished.lastTxnId - txnBase : null,
      finished,
      clientDetail: r.detail,
    };
  } catch (err) {
    if (target) await target.finish().catch(() => null);
    return { ...base, ok: false, error: (err as Error).message, elapsedMs: 0, accepted: 0, failed: s.messages, msgsPerSec: 0, mbPerSec: 0, peakMemKiB: 0, peakMemProcs: 0, hwmKiB: null, targetCpuSeconds: null, clientCpuSeconds: 0, otherCpuSeconds: null, noisy: false, machineBusyPct: null, deviceFlushes: null, deviceMBWritten: null, commits: null, finished: null, clientDetail: {} };
  } finally {
    settle();
  }
}

async function syncPass(name: TargetName, s: Settings, outDir: string): Promise<SyncRecord> {
  const messages = Math.min(s.straceMessages, s.messages);
  let target: Target | null = null;
  try {
    target = await startTarget(name, { posternEnv: s.posternEnv, postfixOverrides: s.postfixOverrides });
    const counter = new SyncCounter(target.mainPid, join(outDir, `strace-${name}.txt`));
    await counter.attached();
    const r = await drive(s.client, target.port, s, messages);
    const calls = await counter.stop();
    await target.finish();
    target = null;
    const total = Object.values(calls).reduce((a, b) => a + b, 0);
    return { target: name, messages, accepted: r.accepted, calls, dsyncFds: counter.dsyncDescriptors, perMessage: r.accepted > 0 ? Math.round((total / r.accepted) * 100) / 100 : null, ...(r.ok ? {} : { error: r.error ?? 'failed' }) };
  } catch (err) {
    if (target) await target.finish().catch(() => null);
    return { target: name, messages, accepted: 0, calls: {}, dsyncFds: {}, perMessage: null, error: (err as Error).message };
  } finally {
    settle();
  }
}

const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const v = [...xs].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
};

const fmt = (x: number | null | undefined, digits = 0): string => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

export interface Summary {
  target: TargetName;
  runs: number;
  okRuns: number;
  noisyRuns: number;
  msgsPerSec: { median: number; min: number; max: number };
  mbPerSec: number;
  peakMemMiB: number;
  hwmMiB: number | null;
  peakMemProcs: number;
  cpuMsPerMsg: number | null;
  clientCpuMsPerMsg: number | null;
  otherCpuSeconds: number | null;
  machineBusyPct: number | null;
  flushesPerMsg: number | null;
  msgsPerCommit: number | null;
  syncCallsPerMsg: number | null;
  stored: string;
  p99Ms: number | null;
}

export function summarize(records: RunRecord[], syncs: SyncRecord[], targets: TargetName[]): Summary[] {
  return targets.map((t) => {
    const all = records.filter((r) => r.target === t);
    const ok = all.filter((r) => r.ok);
    const use = ok.length > 0 ? ok : all;
    const rates = use.map((r) => r.msgsPerSec);
    const per = (f: (r: RunRecord) => number | null) => {
      const xs = use.map(f).filter((x): x is number => x !== null && Number.isFinite(x));
      return xs.length > 0 ? median(xs) : null;
    };
    const sync = syncs.find((x) => x.target === t);
    const stored = all.map((r) => (r.finished?.stored !== null && r.finished?.stored !== undefined ? `${r.finished.stored}/${r.accepted}` : r.finished?.reported != null ? `(${r.finished.reported} discarded)` : '–'));
    return {
      target: t,
      runs: all.length,
      okRuns: ok.length,
      noisyRuns: use.filter((r) => r.noisy).length,
      msgsPerSec: { median: median(rates), min: Math.min(...rates), max: Math.max(...rates) },
      mbPerSec: median(use.map((r) => r.mbPerSec)),
      peakMemMiB: Math.max(...use.map((r) => r.peakMemKiB)) / 1024,
      hwmMiB: use.some((r) => r.hwmKiB !== null) ? Math.max(...use.map((r) => r.hwmKiB ?? 0)) / 1024 : null,
      peakMemProcs: Math.max(...use.map((r) => r.peakMemProcs)),
      cpuMsPerMsg: per((r) => (r.targetCpuSeconds !== null && r.accepted > 0 ? (r.targetCpuSeconds * 1000) / r.accepted : null)),
      clientCpuMsPerMsg: per((r) => (r.accepted > 0 ? (r.clientCpuSeconds * 1000) / r.accepted : null)),
      otherCpuSeconds: per((r) => r.otherCpuSeconds),
      machineBusyPct: per((r) => r.machineBusyPct),
      flushesPerMsg: per((r) => (r.deviceFlushes !== null && r.accepted > 0 ? r.deviceFlushes / r.accepted : null)),
      msgsPerCommit: per((r) => (r.commits !== null && r.commits > 0 ? r.accepted / r.commits : null)),
      syncCallsPerMsg: sync?.perMessage ?? null,
      stored: [...new Set(stored)].join(', '),
      p99Ms: per((r) => r.latencyMs?.p99 ?? null),
    };
  });
}

export function table(sum: Summary[], withLatency: boolean): string {
  const head = ['target', 'msg/s median (min–max)', 'MB/s', 'peak PSS MiB', 'target CPU ms/msg', 'client CPU ms/msg', 'machine CPU busy (other work)', 'msgs/commit', 'disk flushes/msg', 'sync calls/msg', 'queued/250s'];
  if (withLatency) head.push('p99 ms');
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => ' --- ').join('|')}|`];
  for (const x of sum) {
    const mem = `${fmt(x.peakMemMiB, 0)}${x.peakMemProcs > 1 ? ` (${x.peakMemProcs} procs)` : ''}${x.hwmMiB !== null ? ` (VmHWM ${fmt(x.hwmMiB, 0)})` : ''}`;
    const row = [
      `${x.target}${x.okRuns < x.runs ? ` (${x.okRuns}/${x.runs} runs ok)` : ''}${x.noisyRuns > 0 ? ` (${x.noisyRuns} noisy)` : ''}`,
      `${fmt(x.msgsPerSec.median)} (${fmt(x.msgsPerSec.min)}–${fmt(x.msgsPerSec.max)})`,
      fmt(x.mbPerSec, 1),
      mem,
      fmt(x.cpuMsPerMsg, 3),
      fmt(x.clientCpuMsPerMsg, 3),
      x.machineBusyPct === null ? '–' : `${fmt(x.machineBusyPct)}%${x.otherCpuSeconds !== null ? ` (other ${fmt(x.otherCpuSeconds, 1)} s)` : ''}`,
      fmt(x.msgsPerCommit, 1),
      fmt(x.flushesPerMsg, 2),
      fmt(x.syncCallsPerMsg, 2),
      x.stored,
    ];
    if (withLatency) row.push(fmt(x.p99Ms, 1));
    lines.push(`| ${row.join(' | ')} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const s = settingsFromEnv();
  const root = repoRoot();
  const diskStat = blockDeviceOf(tmpdir());
  const startedAt = new Date();
  const cmd = `${Object.entries(process.env)
    .filter(([k]) => k.startsWith('BENCH_'))
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')} npm run bench:accept`.trim();
  console.log(`# postern accept bench — ${startedAt.toISOString()}`);
  console.log(`scenario ${s.scenario}: ${s.messages} messages × ${s.size} B payload over ${s.connections} ${s.reuse ? 'reused connections' : 'concurrent connections, a new one per message'}, ${s.runs} interleaved runs; client ${s.client}${s.client === 'smtp-source' ? ` (${['smtp-source', ...smtpSourceArgs({ port: 0, messages: s.messages, size: s.size, connections: s.connections, reuse: s.reuse })].join(' ').replace(':0', ':PORT')})` : ' (bench/lib/loadgen.ts, PIPELINING)'}`);
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Linux ${release()}, node ${process.version}; temp dir ${tmpdir()} on ${diskStat ?? 'an unknown device'}`);
  console.log(`targets: ${s.targets.join(', ')}`);
  const idle0 = machineCpu();
  await new Promise((r) => setTimeout(r, 1000));
  const idle1 = machineCpu();
  const busyBefore = idle0 && idle1 && idle1.total > idle0.total ? Math.round(((idle1.busy - idle0.busy) / (idle1.total - idle0.total)) * 100) : null;
  console.log(`machine CPU busy in the second before the bench: ${busyBefore ?? '?'}%${busyBefore !== null && busyBefore > 20 ? '  WARNING: other work is running; the figures will be low and noisy' : ''}\n`);

  // An idle start/stop of postern: checks that it starts at all, and counts the LMDB write
  // transactions it makes by itself (opening the queue), to subtract from each run's.
  let txnBase: number | null = null;
  if (s.targets.includes('postern')) {
    const idle = await startTarget('postern', { posternEnv: s.posternEnv });
    txnBase = (await idle.finish()).lastTxnId;
    console.log(`postern idle start/stop: ${txnBase ?? '?'} LMDB write transactions of its own\n`);
  }

  const records: RunRecord[] = [];
  const discarded: RunRecord[] = [];
  for (let run = 1; run <= s.runs; run++) {
    for (const t of s.targets) {
      let r = await timedRun(run, t, s, diskStat, txnBase);
      // Other work on the machine (noisy) spoils a figure: run it again, once, and keep the
      // spoilt one in the JSON only.
      for (let retry = 0; r.noisy && retry < s.noisyRetries; retry++) {
        console.log(`run ${run} ${t.padEnd(9)} ${fmt(r.msgsPerSec).padStart(7)} msg/s  NOISY (other work used ${fmt(r.otherCpuSeconds, 1)} s of CPU): running it again`);
        discarded.push(r);
        r = await timedRun(run, t, s, diskStat, txnBase);
      }
      records.push(r);
      const extra = (r.ok ? '' : `  FAILED: ${r.error}`) + (r.noisy ? '  NOISY: other work used the CPU' : '');
      const probs = r.finished?.problems.length ? `  [log: ${r.finished.problems.slice(0, 3).join(' | ')}]` : '';
      console.log(`run ${run} ${t.padEnd(9)} ${fmt(r.msgsPerSec).padStart(7)} msg/s  ${fmt(r.mbPerSec, 1).padStart(6)} MB/s  ${(r.elapsedMs / 1000).toFixed(1).padStart(6)} s  cpu target ${fmt(r.targetCpuSeconds, 1)} s client ${fmt(r.clientCpuSeconds, 1)} s other ${fmt(r.otherCpuSeconds, 1)} s  busy ${fmt(r.machineBusyPct)}%  flushes ${fmt(r.deviceFlushes)}${r.commits !== null ? `  commits ${fmt(r.commits)}` : ''}  stored ${r.finished?.stored ?? '–'}${extra}${probs}`);
    }
  }

  const syncs: SyncRecord[] = [];
  if (s.strace) {
    const scratch = mkdtempSync(join(tmpdir(), 'postern-bench-strace-'));
    for (const t of s.targets) {
      if (t !== 'postern' && t !== 'postfix') continue;
      const x = await syncPass(t, s, scratch);
      syncs.push(x);
      console.log(`strace pass ${t}: ${x.accepted} messages, ${JSON.stringify(x.calls)} → ${fmt(x.perMessage, 2)} sync calls/msg${x.error ? `  (${x.error})` : ''}`);
    }
    rmSync(scratch, { recursive: true, force: true });
  }

  const sum = summarize(records, syncs, s.targets);
  console.log('');
  console.log(table(sum, s.client === 'loadgen'));
  const med = (t: TargetName) => sum.find((x) => x.target === t)?.msgsPerSec.median ?? NaN;
  const ratios: Record<string, number> = {};
  for (const peer of ['postfix', 'sink', 'smtp-sink'] as TargetName[]) {
    if (s.targets.includes(peer)) ratios[`postern/${peer}`] = Math.round((med('postern') / med(peer)) * 100) / 100;
  }
  console.log('');
  console.log(Object.entries(ratios).map(([k, v]) => `${k}: ${fmt(v, 2)}×`).join('   '));
  console.log(`\nmsg/s counts only 250s (after the 354) per wall-clock second of the whole load, connections and QUIT included; MB = 10^6 payload bytes. Peak PSS: the largest sum of proportional set sizes over the target's processes, sampled every 250 ms (shared pages split between Postfix's processes; for postern it includes LMDB's mapped file pages it touched); VmHWM: the kernel's peak RSS of a one-process target. CPU ms/msg: user+system time of the target's processes, and of the client, per accepted message; machine CPU busy: all CPUs, all processes, during the load; "other" is what neither the target nor the client used (the kernel's own threads, e.g. ext4's journal, and any other work on the machine); a run where it exceeds 15% of the machine is marked noisy (its figure is suspect: run again on a quiet machine). msgs/commit: postern's messages per LMDB write transaction (its last transaction id after the run, less an idle start/stop's). Disk flushes: flush requests completed by the device holding ${tmpdir()} during the load (machine-wide). Sync calls: fsync/fdatasync/msync calls and writes through O_DSYNC descriptors (LMDB's meta page), counted by strace in a separate untimed pass of ${s.straceMessages} messages.`);
  console.log(`command: ${cmd}`);

  const outDir = join(root, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `accept-${s.scenario}-${s.client}${s.reuse ? '' : '-noreuse'}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ startedAt: startedAt.toISOString(), command: cmd, machineBusyPctBefore: busyBefore, settings: s, machine: { cpus: cpus().length, model: cpus()[0]?.model, kernel: release(), node: process.version, diskStat }, summary: sum, ratios, runs: records, noisyDiscarded: discarded, syncPasses: syncs }, null, 2) + '\n');
  console.log(`raw results: ${file}`);
  if (records.some((r) => !r.ok)) process.exitCode = 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
